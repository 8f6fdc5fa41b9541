"""The event loop: file descriptors, timers and callbacks, on epoll / kqueue / selectors.

One ``IOLoop`` per thread runs one pass after another, each pass in four phases:

1. run the callbacks that were queued before the pass began (later ones wait for the next pass, so a
   callback that reschedules itself cannot starve I/O);
2. run the timers that are due;
3. poll: with a zero timeout when callbacks are waiting, otherwise until the next timer;
4. dispatch the events to the registered handlers.

The loop knows fds, timers and callbacks — never streams, sockets' contents or servers.  The OS
backend is a small poller object (register / modify / unregister / poll); only the poller knows the
quirks of epoll, kqueue, poll(2) or the selectors module.  ``TORNADO_LITE_POLLER`` chooses the
backend when a loop is created: ``selectors`` (the portable fallback: poll(2) where the OS has it,
else the selectors module), or ``epoll``, ``kqueue``, ``poll``, ``select``; the default is the
platform's best.

The loop's hooks for other layers, not Tornado API and not for applications:
``IOLoop._stream_hook`` (a ``_StreamHook``) is the hook for iostream: the pass number, whether the
loop is dispatching events, and work to run once before the next poll; ``IOLoop._current_task`` is
the hook for gen, which keeps it up to date (the task whose step is running: what
``gen.current_task`` reports); ``_schedule_future_callback(s)`` are the hooks through
which ``concurrent.Future`` hands its done-callbacks to the loop it belongs to; and
``_add_callback_from_signal`` (``add_callback_from_signal`` without its deprecation warning) is the
hook for ``process``'s SIGCHLD handler.  Nothing else of the loop's state is for other modules.
"""

import collections
import concurrent.futures
import datetime
import functools
import heapq
import itertools
import math
import os
import random
import select
import selectors
import sys
import threading
import time
import types
import typing
import warnings
from inspect import isawaitable
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

from tornado_lite import concurrent as _concurrent
from tornado_lite.concurrent import (
    Future,
    chain_future,
    future_set_exc_info,
    is_future,
)
from tornado_lite.log import app_log, gen_log
from tornado_lite.util import Configurable, TimeoutError as TimeoutError, import_object  # noqa: F401

_T = TypeVar("_T")

_READ = 0x001
_WRITE = 0x004
_ERROR = 0x018

# The longest single poll: a loop with nothing to do still wakes up now and then, which keeps a
# loop whose waker was somehow lost from sleeping forever.
_MAX_POLL_SECONDS = 3600.0

# Handlers of fds below this number are kept in a list indexed by the fd (8 B a slot, up to 1 MiB for
# the whole range), the rest in a dict.  The kernel hands out the lowest free number, so a server's fds
# are dense from 3 up; a dict entry would cost ~45 B more per fd, plus the key (an int object above 256).
_FD_TABLE_SIZE = 1 << 17

# Cancelled timers stay in the heap (removing from the middle of a heap is O(n)); once they are more
# than half of it, and numerous, the heap is rebuilt without them.
_COMPACT_MIN_CANCELLED = 512


# --------------------------------------------------------------------------------------------------
# Pollers: the only code that knows an OS readiness API.  Each takes and returns Tornado's event bits.
# --------------------------------------------------------------------------------------------------


class _EPollPoller:
    """Linux epoll, level-triggered.

    Tornado's READ/WRITE/ERROR bits are epoll's EPOLLIN/EPOLLOUT/EPOLLERR|EPOLLHUP, so no translation
    is needed.  The kernel drops an fd from the epoll set by itself once the last descriptor referring
    to the open file is closed; unregistering it afterwards fails with EBADF or ENOENT, which means
    "already gone" and is ignored.  select.epoll() is created with EPOLL_CLOEXEC.
    """

    __slots__ = ("_epoll",)

    name = "epoll"

    def __init__(self) -> None:
        self._epoll = select.epoll()

    def fileno(self) -> int:
        return self._epoll.fileno()

    def register(self, fd: int, events: int) -> None:
        try:
            self._epoll.register(fd, events)
        except FileExistsError:
            # The number was reused while a duplicate of the old descriptor kept it in the set.
            self._epoll.modify(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self._epoll.modify(fd, events)

    def unregister(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass

    def poll(self, timeout: float) -> List[Tuple[int, int]]:
        return self._epoll.poll(timeout)

    def close(self) -> None:
        self._epoll.close()


class _KQueuePoller:
    """BSD/macOS kqueue.

    kqueue watches reading and writing as two separate filters, and reports a peer's hang-up as the
    EV_EOF flag on a filter rather than as an event of its own.  A write filter reporting EOF means the
    connection can take no more data: that is Tornado's ERROR.
    """

    __slots__ = ("_kqueue", "_active")

    name = "kqueue"

    def __init__(self) -> None:
        self._kqueue = select.kqueue()  # type: ignore[attr-defined]
        self._active: Dict[int, int] = {}

    def fileno(self) -> int:
        return self._kqueue.fileno()

    def register(self, fd: int, events: int) -> None:
        if fd in self._active:
            raise FileExistsError(f"fd {fd} already registered")
        self._change(fd, events, select.KQ_EV_ADD)  # type: ignore[attr-defined]
        self._active[fd] = events

    def modify(self, fd: int, events: int) -> None:
        self.unregister(fd)
        self.register(fd, events)

    def unregister(self, fd: int) -> None:
        events = self._active.pop(fd, None)
        if events is not None:
            try:
                self._change(fd, events, select.KQ_EV_DELETE)  # type: ignore[attr-defined]
            except OSError:
                pass  # closed already: the kernel removed its filters with it

    def _change(self, fd: int, events: int, flags: int) -> None:
        changes = []
        if events & _READ:
            changes.append(select.kevent(fd, filter=select.KQ_FILTER_READ, flags=flags))  # type: ignore[attr-defined]
        if events & _WRITE:
            changes.append(select.kevent(fd, filter=select.KQ_FILTER_WRITE, flags=flags))  # type: ignore[attr-defined]
        for change in changes:
            # One change per call: a failure on one filter must not hide whether the other applied.
            self._kqueue.control([change], 0)

    def poll(self, timeout: float) -> List[Tuple[int, int]]:
        ready: Dict[int, int] = {}
        for kev in self._kqueue.control(None, 1000, timeout):
            fd = kev.ident
            bits = ready.get(fd, 0)
            if kev.filter == select.KQ_FILTER_READ:  # type: ignore[attr-defined]
                bits |= _READ
            elif kev.filter == select.KQ_FILTER_WRITE:  # type: ignore[attr-defined]
                bits |= _ERROR if kev.flags & select.KQ_EV_EOF else _WRITE  # type: ignore[attr-defined]
            if kev.flags & select.KQ_EV_ERROR:  # type: ignore[attr-defined]
                bits |= _ERROR
            ready[fd] = bits
        return list(ready.items())

    def close(self) -> None:
        self._kqueue.close()


class _InterestPoller:
    """What the two portable fallbacks share: the interest each fd asked for, kept here.

    The OS call they wrap (poll(2), or the selectors module) refuses an fd with no interest, while
    Tornado allows ``IOLoop.NONE``: such an fd is remembered here and left out of the OS set until it
    asks for something again.  Errors and hang-ups come back as readable/writable (whichever the fd
    watches), which is what a stream needs to notice them.  Subclasses provide ``_os_set(fd, events,
    known)`` (start or change watching ``events``, non-empty), ``_os_forget(fd)`` and ``poll``.
    """

    __slots__ = ("_interest",)

    def __init__(self) -> None:
        self._interest: Dict[int, int] = {}

    def fileno(self) -> int:
        return -1

    def register(self, fd: int, events: int) -> None:
        if fd in self._interest:
            raise FileExistsError(f"fd {fd} already registered")
        self._interest[fd] = events
        if events & (_READ | _WRITE):
            self._os_set(fd, events, False)

    def modify(self, fd: int, events: int) -> None:
        old = self._interest[fd] & (_READ | _WRITE)
        new = events & (_READ | _WRITE)
        self._interest[fd] = events
        if new:
            if new != old:
                self._os_set(fd, new, bool(old))
        elif old:
            self._os_forget(fd)

    def unregister(self, fd: int) -> None:
        events = self._interest.pop(fd, None)
        if events is not None and events & (_READ | _WRITE):
            self._os_forget(fd)

    def _os_set(self, fd: int, events: int, known: bool) -> None:
        raise NotImplementedError

    def _os_forget(self, fd: int) -> None:
        raise NotImplementedError


class _PollPoller(_InterestPoller):
    """The portable fallback where the OS has poll(2) (every Unix): poll used directly.

    Not through the selectors module, whose PollSelector reports POLLNVAL (a descriptor closed while
    still registered) as plain readiness: every poll would then return at once for it (a busy loop),
    and once its number was reused, the new file's readiness would go to the old handler.  Here such
    a descriptor leaves the set by itself, as a closed fd does with epoll and kqueue.
    """

    __slots__ = ("_poll",)

    name = "poll"

    def __init__(self) -> None:
        super().__init__()
        self._poll = select.poll()

    def _os_set(self, fd: int, events: int, known: bool) -> None:
        mask = 0
        if events & _READ:
            mask |= select.POLLIN
        if events & _WRITE:
            mask |= select.POLLOUT
        self._poll.register(fd, mask)  # registering again replaces the mask

    def _os_forget(self, fd: int) -> None:
        try:
            self._poll.unregister(fd)
        except KeyError:
            pass  # dropped already: it was reported closed

    def poll(self, timeout: float) -> List[Tuple[int, int]]:
        result = []
        interest = self._interest
        for fd, event in self._poll.poll(math.ceil(timeout * 1000)):
            if event & select.POLLNVAL:
                self._os_forget(fd)  # closed behind the loop's back: nothing more will come from it
                continue
            bits = 0
            if event & ~select.POLLOUT:
                bits |= _READ
            if event & ~select.POLLIN:
                bits |= _WRITE
            bits &= interest.get(fd, 0)
            if bits:
                result.append((fd, bits))
        return result

    def close(self) -> None:
        pass


class _SelectorsPoller(_InterestPoller):
    """The fallback of last resort, on the selectors module (select(2) where nothing better exists).

    Used where the OS has no poll(2), or when asked for with ``TORNADO_LITE_POLLER=select``.  The
    selectors module cannot tell a closed descriptor from a ready one; the loop's handlers notice
    the closed file when they try it.
    """

    __slots__ = ("_selector",)

    name = "select"

    def __init__(self) -> None:
        super().__init__()
        self._selector: selectors.BaseSelector = selectors.SelectSelector()

    def _os_set(self, fd: int, events: int, known: bool) -> None:
        mask = 0
        if events & _READ:
            mask |= selectors.EVENT_READ
        if events & _WRITE:
            mask |= selectors.EVENT_WRITE
        if known:
            self._selector.modify(fd, mask)
        else:
            self._selector.register(fd, mask)

    def _os_forget(self, fd: int) -> None:
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass

    def poll(self, timeout: float) -> List[Tuple[int, int]]:
        result = []
        for key, mask in self._selector.select(timeout):
            bits = 0
            if mask & selectors.EVENT_READ:
                bits |= _READ
            if mask & selectors.EVENT_WRITE:
                bits |= _WRITE
            result.append((key.fd, bits))
        return result

    def close(self) -> None:
        self._selector.close()


# TORNADO_LITE_POLLER=selectors: the portable fallback, poll(2) itself where there is one.
_FALLBACK_POLLER: Any = _PollPoller if hasattr(select, "poll") else _SelectorsPoller

_POLLERS = {
    "epoll": _EPollPoller,
    "kqueue": _KQueuePoller,
    "selectors": _FALLBACK_POLLER,
    "poll": _PollPoller,
    "select": _SelectorsPoller,
}


def _make_poller() -> Any:
    choice = os.environ.get("TORNADO_LITE_POLLER", "").strip().lower()
    if choice:
        if choice not in _POLLERS:
            raise ValueError(f"TORNADO_LITE_POLLER={choice!r}: expected one of {sorted(_POLLERS)}")
        return _POLLERS[choice]()
    if hasattr(select, "epoll"):
        return _EPollPoller()
    if hasattr(select, "kqueue"):
        return _KQueuePoller()
    return _FALLBACK_POLLER()


class _Waker:
    """Wakes a loop blocked in poll from another thread or a signal handler.

    An eventfd where the OS has one (a counter: writes never fill it up), else a non-blocking pipe
    whose writes are dropped when it is full — a full pipe already guarantees a wake-up.
    """

    __slots__ = ("_read_fd", "_write_fd", "_eventfd", "_closed")

    def __init__(self) -> None:
        eventfd = getattr(os, "eventfd", None)
        if eventfd is not None:
            fd = eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # type: ignore[attr-defined]
            self._read_fd = self._write_fd = fd
            self._eventfd = True
        else:
            self._read_fd, self._write_fd = os.pipe()  # close-on-exec since Python 3.4
            os.set_blocking(self._read_fd, False)
            os.set_blocking(self._write_fd, False)
            self._eventfd = False
        self._closed = False

    def fileno(self) -> int:
        return self._read_fd

    def wake(self) -> None:
        if self._closed:
            return  # never write to a closed fd: its number may already belong to another file
        try:
            if self._eventfd:
                os.eventfd_write(self._write_fd, 1)  # type: ignore[attr-defined]
            else:
                os.write(self._write_fd, b"x")
        except (BlockingIOError, OSError):
            pass  # full (a wake-up is already pending) or closed while the loop shuts down

    def consume(self, fd: Any = None, events: int = 0) -> None:
        try:
            while True:
                if not os.read(self._read_fd, 4096) or self._eventfd:
                    break
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        self._closed = True
        os.close(self._read_fd)
        if self._write_fd != self._read_fd:
            os.close(self._write_fd)


class _Timeout:
    """The handle returned by ``call_at``/``call_later``/``add_timeout``: pass it to ``remove_timeout``.

    Cancelling drops the callback and its arguments at once (so what they reference is freed); the
    heap entry itself goes when it reaches the top or when the heap is compacted.
    """

    __slots__ = ("deadline", "callback", "args", "loop")

    def __init__(self, deadline: float, callback: Callable, args: tuple, loop: "IOLoop") -> None:
        self.deadline = deadline
        self.callback: Optional[Callable] = callback
        self.args: Optional[tuple] = args
        # The loop whose heap holds this entry; None once the entry has left the heap (run or
        # discarded), so that a late cancel is not counted as a heap entry waiting to be compacted.
        self.loop: Optional["IOLoop"] = loop

    def cancel(self) -> None:
        if self.callback is None:
            return
        self.callback = None
        self.args = None
        loop = self.loop
        if loop is not None:
            loop._note_cancelled_timer()

    def cancelled(self) -> bool:
        return self.callback is None


class LoopStats:
    """Counters an IOLoop keeps as it runs; ``IOLoop.stats()`` returns a copy."""

    __slots__ = (
        "passes",
        "callbacks_run",
        "events",
        "slow_callbacks",
        "worst_busy",
        "current_started",
        "handlers",
        "timers_pending",
        "callbacks_pending",
    )

    def __init__(self) -> None:
        self.passes = 0  # (a live loop counts passes in its _stream_hook; stats() copies the count here)
        self.callbacks_run = 0
        self.events = 0
        self.slow_callbacks = 0
        self.worst_busy = 0.0
        self.current_started = 0.0
        self.handlers = 0
        self.timers_pending = 0
        self.callbacks_pending = 0

    def note_busy(self, seconds: float) -> None:
        if seconds > self.worst_busy:
            self.worst_busy = seconds

    def snapshot(self, **extra: int) -> "LoopStats":
        copy = LoopStats()
        for name in self.__slots__:
            setattr(copy, name, getattr(self, name))
        for name, value in extra.items():
            setattr(copy, name, value)
        return copy

    def as_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__ if name != "current_started"}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"LoopStats({fields})"


class _StreamHook:
    """The loop's hook for iostream (not Tornado API, not for applications): what a stream knows of passes.

    - ``pass_number``: counts the loop's passes (it moves on once per pass, before the poll; the
      loop's ``stats().passes`` is this count).  A plain stream makes at most one new read from the kernel
      per pass besides the poller's report (so one busy peer cannot keep the loop from the others).
    - ``dispatching``: True while the loop hands the poller's events to their handlers (a read parked
      then may still end in the same batch).
    - ``call_before_poll(callback)``: ``callback()`` runs once, after this pass's callbacks and timers
      and before the loop polls (a stream sends a pass's corked replies in one system call).
    - ``polling``: True while the loop is in (or about to enter) its poll, so that whoever queues a
      callback knows whether to wake it (the loop's own ``_schedule_future_callback`` reads it).

    Plain attributes the loop keeps up to date itself, so a stream reads them without a call: they are
    read once or twice per message.  Only the loop writes them.
    """

    __slots__ = ("pass_number", "dispatching", "polling", "_before_poll")

    def __init__(self) -> None:
        self.pass_number = 0
        self.dispatching = False
        self.polling = False
        self._before_poll: List[Callable[[], None]] = []

    def call_before_poll(self, callback: Callable[[], None]) -> None:
        """Runs ``callback()`` once, before the loop's next poll.  Callers register at most once per pass."""
        self._before_poll.append(callback)


class _Watchdog:
    """A daemon thread that logs the loop thread's stack while one callback blocks it too long."""

    def __init__(self, loop: "IOLoop", threshold: float) -> None:
        self._loop = loop
        self._threshold = threshold
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tornado_lite-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _watch(self) -> None:
        import traceback

        reported = 0.0
        while not self._stopping.wait(self._threshold / 2):
            loop = self._loop
            started = loop._stats.current_started
            ident = loop._thread_ident
            if not started or started == reported or ident is None:
                continue
            if time.perf_counter() - started < self._threshold:
                continue
            frame = sys._current_frames().get(ident)
            if frame is None:
                continue
            reported = started
            stack = "".join(traceback.format_stack(frame))
            gen_log.warning("IOLoop blocked for more than %.3f seconds; its stack:\n%s", self._threshold, stack)


_local = threading.local()
_get_ident = threading.get_ident

# What IOLoop.current() calls to make the loop of a thread that has none: None means ``IOLoop()``.
# The asyncio bridge (a layer above, so it cannot be imported here) sets its own: in Tornado the
# implicit loop is the IOLoop of asyncio's current loop, an ``AsyncIOMainLoop``, not an ``IOLoop()``.
_implicit_loop_maker: Optional[Callable[[], "IOLoop"]] = None


def _set_implicit_loop_maker(maker: Optional[Callable[[], "IOLoop"]]) -> None:
    """A hook for the asyncio bridge: ``maker()`` makes IOLoop.current()'s implicit loop (None: ``IOLoop()``)."""
    global _implicit_loop_maker
    _implicit_loop_maker = maker


def _handler_callable(entry: Tuple[Any, Callable, Any]) -> Callable:
    """The handler a loop's handler entry was registered with (for logs and the timed path)."""
    _, function, owner = entry
    return function if owner is None else types.MethodType(function, owner)


def _current_or_none() -> Optional["IOLoop"]:
    return getattr(_local, "loop", None)


class IOLoop(Configurable):
    """A level-triggered I/O loop, Tornado 6's API, on its own poller (no asyncio).

    Typical use is ``IOLoop.current().start()`` after registering servers, or
    ``IOLoop.current().run_sync(main)``.  Everything except ``add_callback`` (and
    ``add_callback_from_signal``) must be called on the loop's own thread.
    """

    NONE = 0
    READ = _READ
    WRITE = _WRITE
    ERROR = _ERROR

    _EPOLLIN = 0x001
    _EPOLLPRI = 0x002
    _EPOLLOUT = 0x004
    _EPOLLERR = 0x008
    _EPOLLHUP = 0x010
    _EPOLLRDHUP = 0x2000
    _EPOLLONESHOT = 1 << 30
    _EPOLLET = 1 << 31

    # -- configuration and the current loop ------------------------------------------------------------

    @classmethod
    def configure(cls, impl: "Union[None, str, type]", **kwargs: Any) -> None:
        if isinstance(impl, str):
            impl = import_object(impl)
        if isinstance(impl, type) and not issubclass(impl, IOLoop):
            # RuntimeError, as Tornado raises for a class that is not one of its loops.
            raise RuntimeError("IOLoop.configure() takes a subclass of IOLoop")
        super().configure(impl, **kwargs)

    @classmethod
    def configurable_base(cls) -> type:
        return IOLoop

    @classmethod
    def configurable_default(cls) -> type:
        return IOLoop

    @staticmethod
    def instance() -> "IOLoop":
        """Deprecated alias for ``IOLoop.current()``."""
        return IOLoop.current()

    def install(self) -> None:
        """Deprecated alias for ``make_current()``."""
        self.make_current()

    @staticmethod
    def clear_instance() -> None:
        """Deprecated alias for ``clear_current()``."""
        IOLoop.clear_current()

    @typing.overload
    @staticmethod
    def current() -> "IOLoop": ...

    @typing.overload
    @staticmethod
    def current(instance: bool = True) -> Optional["IOLoop"]: ...

    @staticmethod
    def current(instance: bool = True) -> Optional["IOLoop"]:
        """The thread's current loop: the running one, or the one made current; created if needed."""
        loop = getattr(_local, "loop", None)
        if loop is None and instance:
            loop = IOLoop() if _implicit_loop_maker is None else _implicit_loop_maker()
        return loop

    def make_current(self) -> None:
        _local.loop = self

    _make_current = make_current

    @staticmethod
    def clear_current() -> None:
        _local.loop = None

    # -- life cycle -------------------------------------------------------------------------------

    def initialize(self, make_current: bool = True) -> None:
        self._poller = _make_poller()
        # fd number -> (fileobj, function, owner): ``function(owner, fileobj, events)`` when the handler
        # was a bound method (a stream's), else ``function(fileobj, events)`` with owner None.  Kept
        # apart, the method's parts cost no bound-method object per registered fd (64 B for each idle
        # connection of a server).  In ``_fd_table`` (index: fd; None: no handler) below
        # _FD_TABLE_SIZE, in ``_far_handlers`` above; ``_handler_count`` counts both.
        self._fd_table: List[Optional[Tuple[Any, Callable, Any]]] = []
        self._far_handlers: Dict[int, Tuple[Any, Callable, Any]] = {}
        self._handler_count = 0
        # (callback, args tuple), or (callback, future) for a future's done-callback: the future is
        # queued as it is, which saves a 1-tuple per resolved future (never a tuple itself).
        self._callbacks: Deque[Tuple[Callable, Any]] = collections.deque()
        self._timeouts: List[Tuple[float, int, _Timeout]] = []
        self._cancellations = 0
        self._sequence = itertools.count()
        self._running = False
        self._stopped = False
        self._closing = False
        self._thread_ident: Optional[int] = None
        self._executor: Optional[concurrent.futures.Executor] = None
        # Handlers removed while a batch of events is being dispatched: their fd numbers may be reused
        # at once, and the rest of that batch was meant for the old file.
        self._removed_during_dispatch: set = set()
        self._waker = _Waker()
        self._stream_hook = _StreamHook()
        self.add_handler(self._waker.fileno(), self._waker.consume, _READ)
        self._blocking_threshold: Optional[float] = None
        self._watchdog: Optional["_Watchdog"] = None
        self._stats = LoopStats()
        # The gen task whose step is running on this loop (gen.current_task); gen keeps it up to date.
        self._current_task: Any = None
        if make_current:
            self.make_current()

    def close(self, all_fds: bool = False) -> None:
        """Frees the loop's resources; with ``all_fds``, also closes every fd still registered on it."""
        if self._running:
            raise RuntimeError("Cannot close a running IOLoop")
        if self._closing:
            return
        self._closing = True
        waker_fd = self._waker.fileno()
        for fd, (fileobj, _, _) in self._handler_items():
            if fd == waker_fd:
                continue  # the loop's own: closed below
            self.remove_handler(fd)
            if all_fds:
                self.close_fd(fileobj)
        del self._fd_table[:]
        self._far_handlers.clear()
        self._handler_count = 0
        self._poller.close()
        self._waker.close()
        self._callbacks.clear()
        self._timeouts.clear()
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        if _current_or_none() is self:
            IOLoop.clear_current()

    def start(self) -> None:
        """Runs passes until ``stop()`` is called."""
        if self._running:
            raise RuntimeError("This event loop is already running")
        if self._closing:
            raise RuntimeError("Event loop is closed")
        previous = _current_or_none()
        _local.loop = self
        self._running = True
        self._thread_ident = _get_ident()
        try:
            self._run_passes()
        finally:
            self._running = False
            self._stopped = False
            self._thread_ident = None
            _local.loop = previous

    def stop(self) -> None:
        """Stops the loop after the current pass; a stop before ``start()`` makes the next start one pass."""
        self._stopped = True
        if self._thread_ident is not None and self._thread_ident != _get_ident():
            self._waker.wake()

    def _run_passes(self) -> None:
        callbacks = self._callbacks
        timeouts = self._timeouts
        fd_table = self._fd_table  # (the same list object for the loop's life: it only grows in place)
        far_handlers = self._far_handlers
        removed = self._removed_during_dispatch
        poll = self._poller.poll
        popleft = callbacks.popleft
        clock = time.monotonic  # the heap's clock (see time())
        perf_counter = time.perf_counter
        stats = self._stats
        hook = self._stream_hook
        before_poll = hook._before_poll
        # "Busy" is the time from one poll's return to the next poll's start: the longest any ready fd or
        # due timer could have waited.  Two clock reads a pass keep the statistic always on.
        busy_since = perf_counter()
        while True:
            timed = self._blocking_threshold is not None
            run_callback = self._run_callback_timed if timed else self._run_callback

            # Phase 1: the callbacks queued before this pass.
            ncallbacks = len(callbacks)
            if timed:
                for _ in range(ncallbacks):
                    callback, args = popleft()
                    run_callback(callback, args)
            else:
                # _run_callback, inlined: this loop runs once for every coroutine step.
                for _ in range(ncallbacks):
                    callback, args = popleft()
                    try:
                        if type(args) is tuple:
                            result = callback(*args)
                        else:
                            result = callback(args)  # a future's done-callback
                    except Exception:
                        self.handle_callback_exception(callback)
                        continue
                    if result is not None:
                        self._watch_callback_result(callback, result)
                result = None
            # Don't let the last callback's arguments live on in this frame until the next one runs.
            callback = args = None  # type: ignore[assignment]

            # Phase 2: due timers.  They are collected first and run after, so a timer that schedules
            # another already-due timer cannot keep this phase going forever.
            if timeouts:
                due = self._pop_due_timers(clock())
                ncallbacks += len(due)
                for entry in due:
                    callback, args = entry.callback, entry.args  # type: ignore[assignment]
                    if callback is None:
                        continue  # cancelled by an earlier timer of this same batch
                    entry.callback = entry.args = None
                    run_callback(callback, args)  # type: ignore[arg-type]
                callback = args = due = entry = None  # type: ignore[assignment]

            if before_poll:
                self._run_before_poll()

            hook.pass_number += 1
            stats.callbacks_run += ncallbacks
            busy = perf_counter() - busy_since
            if busy > stats.worst_busy:
                stats.worst_busy = busy
            if self._stopped:
                break

            # Phase 3: poll, as long as nothing else is waiting.  "Polling" starts before the queue is
            # looked at: a signal handler's add_callback landing between that look and the poll must wake it.
            hook.polling = True
            if callbacks:
                timeout = 0.0
            elif timeouts:
                timeout = min(max(0.0, timeouts[0][0] - clock()), _MAX_POLL_SECONDS)
            else:
                timeout = _MAX_POLL_SECONDS
            try:
                events = poll(timeout)
            except InterruptedError:
                events = ()
            hook.polling = False
            busy_since = perf_counter()
            if not events:
                continue

            # Phase 4: dispatch.
            stats.events += len(events)
            hook.dispatching = True
            for fd, bits in events:
                if removed and fd in removed:
                    continue
                try:
                    handler = fd_table[fd]
                except IndexError:
                    handler = far_handlers.get(fd)
                if handler is None:
                    continue
                if timed:
                    self._run_handler_timed(handler, bits)
                    continue
                fileobj, function, owner = handler
                try:
                    if owner is None:
                        function(fileobj, bits)
                    else:
                        function(owner, fileobj, bits)
                except Exception:
                    self.handle_callback_exception(_handler_callable(handler))
            handler = fileobj = function = owner = None  # type: ignore[assignment]
            hook.dispatching = False
            if removed:
                removed.clear()

    # -- diagnostics: slow-callback alarm and statistics --------------------------------------------

    def set_blocking_log_threshold(self, seconds: Optional[float], watchdog: bool = False) -> None:
        """Logs a warning whenever one callback, handler or coroutine step runs longer than ``seconds``.

        The warning (on ``tornado.general``) names the callback and the time it took.  With
        ``watchdog=True``, a background thread also logs the loop thread's stack while it is still
        blocked, so the culprit line is visible even if it never returns.  ``None`` turns it off.
        (Tornado 4 had this method; Tornado 6 dropped it.)
        """
        self._blocking_threshold = seconds
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if seconds is not None and watchdog:
            self._watchdog = _Watchdog(self, seconds)

    def set_blocking_signal_threshold(self, seconds: Optional[float], action: Any = None) -> None:
        """Tornado 4's name for the same alarm; ``action`` is ignored (a watchdog thread logs the stack)."""
        self.set_blocking_log_threshold(seconds, watchdog=seconds is not None)

    def _run_callback_timed(self, callback: Callable, args: Any) -> None:
        started = time.perf_counter()
        self._stats.current_started = started
        try:
            self._run_callback(callback, args)
        finally:
            self._stats.current_started = 0.0
            self._warn_if_slow(callback, time.perf_counter() - started)

    def _run_handler_timed(self, handler: Tuple[Any, Callable, Any], bits: int) -> None:
        started = time.perf_counter()
        self._stats.current_started = started
        try:
            _handler_callable(handler)(handler[0], bits)
        except Exception:
            self.handle_callback_exception(_handler_callable(handler))
        finally:
            self._stats.current_started = 0.0
            self._warn_if_slow(_handler_callable(handler), time.perf_counter() - started)

    def _warn_if_slow(self, callback: Any, elapsed: float) -> None:
        threshold = self._blocking_threshold
        if threshold is not None and elapsed > threshold:
            self._stats.slow_callbacks += 1
            gen_log.warning("Blocked the IOLoop for %.3f seconds in %r", elapsed, callback)

    def stats(self, reset_interval: bool = True) -> "LoopStats":
        """A snapshot of the loop's counters (cheap; always kept).

        ``worst_busy`` is the longest the loop went without polling since the previous snapshot (the
        worst lag any fd or timer could have seen); ``reset_interval`` starts a new interval.
        """
        snapshot = self._stats.snapshot(
            passes=self._stream_hook.pass_number,
            handlers=self._handler_count - 1,  # not the waker
            timers_pending=len(self._timeouts) - self._cancellations,
            callbacks_pending=len(self._callbacks),
        )
        if reset_interval:
            self._stats.worst_busy = 0.0
        return snapshot

    def _run_before_poll(self) -> None:
        before_poll = self._stream_hook._before_poll
        pending = before_poll[:]
        del before_poll[:]
        for callback in pending:
            self._run_callback(callback, ())

    def _pop_due_timers(self, now: float) -> List[_Timeout]:
        timeouts = self._timeouts
        due = []
        while timeouts:
            entry = timeouts[0][2]
            if entry.callback is None:
                heapq.heappop(timeouts)
                entry.loop = None
                self._cancellations -= 1
                continue
            if entry.deadline > now:
                break
            heapq.heappop(timeouts)
            entry.loop = None
            due.append(entry)
        return due

    def _run_callback(self, callback: Callable, args: Any) -> None:
        try:
            result = callback(*args) if type(args) is tuple else callback(args)
        except Exception:
            self.handle_callback_exception(callback)
            return
        if result is not None:
            self._watch_callback_result(callback, result)

    def _watch_callback_result(self, callback: Callable, result: Any) -> None:
        """A callback that returned a coroutine or future: run it, and log it if it fails."""
        # gen sits above the loop, but a callback may be a coroutine function (Tornado's API lets
        # any callback be one), so the runner is looked up here, lazily.
        from tornado_lite import gen

        try:
            future = gen.convert_yielded(result)
        except gen.BadYieldError:
            return  # an ordinary return value: ignored, as Tornado does
        self.add_future(future, self._discard_future_result)

    def _discard_future_result(self, future: Future) -> None:
        if not future.cancelled():  # a cancelled callback coroutine is not an error (as in Tornado)
            future.result()

    def handle_callback_exception(self, callback: Any) -> None:
        app_log.error("Exception in callback %r", callback, exc_info=True)

    # -- callbacks ----------------------------------------------------------------------------------

    def add_callback(self, callback: Callable, *args: Any, **kwargs: Any) -> None:
        """Runs ``callback`` on the next pass.  Safe from any thread; wakes a loop blocked in poll."""
        if kwargs:
            callback = functools.partial(callback, *args, **kwargs)
            args = ()
        if self._closing:
            return
        self._callbacks.append((callback, args))
        ident = self._thread_ident
        # Wake the loop if it runs on another thread, or if this call comes from a signal handler that
        # interrupted the loop's own poll (Python would otherwise resume the poll, still blocked).
        if ident is not None and (self._stream_hook.polling or ident != _get_ident()):
            self._waker.wake()

    def add_callback_from_signal(self, callback: Callable, *args: Any, **kwargs: Any) -> None:
        """Like ``add_callback``, for signal handlers: always wakes, since the signal may have
        interrupted this very loop's poll (which Python would otherwise retry, still blocked).

        Deprecated, as in Tornado 6.6 (which warns the same way); it keeps working."""
        warnings.warn("add_callback_from_signal is deprecated", DeprecationWarning, stacklevel=2)
        self._add_callback_from_signal(callback, *args, **kwargs)

    def _add_callback_from_signal(self, callback: Callable, *args: Any, **kwargs: Any) -> None:
        # The same without the deprecation warning, for tornado_lite's own signal handlers (a warning
        # raised inside a signal handler would surface in whatever code the signal interrupted).
        self.add_callback(callback, *args, **kwargs)
        if not self._closing:
            self._waker.wake()

    def spawn_callback(self, callback: Callable, *args: Any, **kwargs: Any) -> None:
        self.add_callback(callback, *args, **kwargs)

    def _schedule_future_callback(self, callback: Callable, future: Any) -> None:
        # Future's usual case, one waiter (kept bare, not in a list): queued with no sequence to loop over.
        self._callbacks.append((callback, future))
        # Only a loop in (or about to enter) its poll needs waking, whichever thread resolved the
        # future: the loop sets ``polling`` before it looks at its queue, so either it sees this
        # callback or this sees ``polling``.  (No thread-ident call on every resolved future.)
        if self._stream_hook.polling:
            self._waker.wake()

    def _schedule_future_callbacks(self, callbacks: Sequence[Callable], future: Any) -> None:
        # Called by Future when it resolves with callbacks waiting: all run on a later pass.
        append = self._callbacks.append
        for callback in callbacks:
            append((callback, future))
        if self._stream_hook.polling:  # (see _schedule_future_callback)
            self._waker.wake()

    def add_future(
        self,
        future: "Union[Future[_T], concurrent.futures.Future[_T]]",
        callback: Callable[..., None],
    ) -> None:
        """Runs ``callback(future)`` on this loop once ``future`` is done."""
        if isinstance(future, Future):
            if future._loop is None:
                future._loop = self
            future.add_done_callback(callback)
        elif isinstance(future, concurrent.futures.Future):
            future.add_done_callback(lambda f: self.add_callback(callback, f))
        else:
            raise TypeError(f"add_future expects a Future, got {future!r}")

    def run_in_executor(
        self, executor: Optional[concurrent.futures.Executor], func: Callable[..., _T], *args: Any
    ) -> "Future[_T]":
        if executor is None:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="tornado_lite"
                )
            executor = self._executor
        c_future = executor.submit(func, *args)
        t_future: Future[_T] = Future()
        t_future._loop = self
        self.add_future(c_future, lambda f: chain_future(f, t_future))
        return t_future

    def set_default_executor(self, executor: concurrent.futures.Executor) -> None:
        self._executor = executor

    # -- time ---------------------------------------------------------------------------------------

    def time(self) -> float:
        """The loop's clock, the reference for ``call_at`` and ``add_timeout``: ``time.time()``, as in Tornado.

        Code written for Tornado says ``add_timeout(time.time() + 5, f)``, so that is the clock callers
        see.  Timers themselves wait on the monotonic clock: an absolute deadline becomes a delay when
        it is scheduled (as Tornado hands asyncio a delay), so a later step of the wall clock does not
        move a timer already scheduled.
        """
        return time.time()

    def call_at(self, when: float, callback: Callable, *args: Any, **kwargs: Any) -> _Timeout:
        return self._push_timer(time.monotonic() + (when - time.time()), callback, args, kwargs)

    def call_later(self, delay: float, callback: Callable, *args: Any, **kwargs: Any) -> _Timeout:
        return self._push_timer(time.monotonic() + delay, callback, args, kwargs)

    def _push_timer(self, deadline: float, callback: Callable, args: tuple, kwargs: dict) -> _Timeout:
        # deadline is on the monotonic clock.
        if kwargs:
            callback = functools.partial(callback, *args, **kwargs)
            args = ()
        timeout = _Timeout(deadline, callback, args, self)
        heapq.heappush(self._timeouts, (deadline, next(self._sequence), timeout))
        return timeout

    def add_timeout(
        self, deadline: Union[float, datetime.timedelta], callback: Callable, *args: Any, **kwargs: Any
    ) -> _Timeout:
        if isinstance(deadline, (int, float)):
            return self.call_at(deadline, callback, *args, **kwargs)
        if isinstance(deadline, datetime.timedelta):
            return self.call_later(deadline.total_seconds(), callback, *args, **kwargs)
        raise TypeError(f"Unsupported deadline {deadline!r}")

    def remove_timeout(self, timeout: Any) -> None:
        if isinstance(timeout, _Timeout):
            timeout.cancel()

    def _note_cancelled_timer(self) -> None:
        self._cancellations += 1
        if self._cancellations > _COMPACT_MIN_CANCELLED and self._cancellations * 2 > len(self._timeouts):
            self._compact_timeouts()

    def _compact_timeouts(self) -> None:
        live = []
        for entry in self._timeouts:
            if entry[2].callback is None:
                entry[2].loop = None
            else:
                live.append(entry)
        heapq.heapify(live)
        # In place: the running pass holds a reference to this list.
        self._timeouts[:] = live
        self._cancellations = 0

    # -- file descriptors ---------------------------------------------------------------------------

    # True when a subclass gives ``split_fd`` a meaning of its own: add_handler and remove_handler then
    # call it; otherwise they work out the number inline (one method call less per registration).
    _own_split_fd = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._own_split_fd = cls.split_fd is not IOLoop.split_fd

    def split_fd(self, fd: Any) -> Tuple[int, Any]:
        if isinstance(fd, int):
            return fd, fd
        return fd.fileno(), fd

    def close_fd(self, fd: Any) -> None:
        try:
            if isinstance(fd, int):
                os.close(fd)
            else:
                fd.close()
        except OSError:
            pass

    def add_handler(self, fd: Any, handler: Callable[..., None], events: int) -> None:
        """Calls ``handler(fd, events)`` when ``fd`` (an int or an object with ``fileno()``) is ready."""
        if self._own_split_fd:
            fd_num, fileobj = self.split_fd(fd)
        else:
            fd_num = fd if isinstance(fd, int) else fd.fileno()  # (split_fd's answer)
            fileobj = fd
        existing = self._handler_entry(fd_num)
        if existing is not None:
            if not self._is_stale(existing[0], fd_num):
                raise ValueError(f"fd {fd_num} added twice")
            # The old file was closed behind the loop's back and its number reused: drop the stale entry.
            self.remove_handler(fd_num)
        if type(handler) is types.MethodType:
            entry = (fileobj, handler.__func__, handler.__self__)
        else:
            entry = (fileobj, handler, None)
        if 0 <= fd_num < _FD_TABLE_SIZE:
            table = self._fd_table
            if fd_num >= len(table):
                table.extend([None] * (fd_num + 1 - len(table)))  # (list growth over-allocates by itself)
            table[fd_num] = entry
        else:
            self._far_handlers[fd_num] = entry
        self._handler_count += 1
        self._poller.register(fd_num, events | _ERROR)

    def _handler_entry(self, fd_num: int) -> Optional[Tuple[Any, Callable, Any]]:
        if 0 <= fd_num < len(self._fd_table):
            return self._fd_table[fd_num]
        return self._far_handlers.get(fd_num)

    def _handler_items(self) -> List[Tuple[int, Tuple[Any, Callable, Any]]]:
        """Every (fd number, entry) registered, as a list (safe to change the handlers while going through it)."""
        items = [(fd_num, entry) for fd_num, entry in enumerate(self._fd_table) if entry is not None]
        items.extend(self._far_handlers.items())
        return items

    @staticmethod
    def _is_stale(old: Any, fd_num: int) -> bool:
        if isinstance(old, int):
            return False
        try:
            return old.fileno() != fd_num
        except (OSError, ValueError):
            return True

    def update_handler(self, fd: Any, events: int) -> None:
        fd_num, _ = self.split_fd(fd)
        self._poller.modify(fd_num, events | _ERROR)

    def remove_handler(self, fd: Any) -> None:
        if self._own_split_fd:
            fd_num, _ = self.split_fd(fd)
        else:
            fd_num = fd if isinstance(fd, int) else fd.fileno()  # (split_fd's answer, as in add_handler)
        if fd_num < 0:
            # A socket closed before it was removed no longer knows its number: find its entry by
            # identity, or the loop would keep it (and whatever its handler holds) forever.
            fd_num = next((num for num, (obj, _, _) in self._handler_items() if obj is fd), -1)
        if 0 <= fd_num < len(self._fd_table):
            if self._fd_table[fd_num] is None:
                return
            self._fd_table[fd_num] = None
        elif self._far_handlers.pop(fd_num, None) is None:
            return
        self._handler_count -= 1
        self._poller.unregister(fd_num)
        if self._stream_hook.dispatching:
            self._removed_during_dispatch.add(fd_num)

    # -- running to completion ----------------------------------------------------------------------

    def run_sync(self, func: Callable, timeout: Optional[float] = None) -> Any:
        """Starts the loop, runs ``func`` (a coroutine function or plain one) and returns its result.

        With ``timeout`` (seconds), raises ``TimeoutError`` when the result is not ready by then.
        """
        # gen sits above the loop; run_sync must turn a coroutine into a future (Tornado's API).
        from tornado_lite.gen import convert_yielded

        holder: List[Any] = [None]
        timed_out: List[bool] = []

        def run() -> None:
            try:
                result = func()
                if result is not None:
                    result = convert_yielded(result)
            except Exception:
                failed: Future = Future()
                holder[0] = failed
                future_set_exc_info(failed, sys.exc_info())
            else:
                if is_future(result):
                    holder[0] = result
                else:
                    done: Future = Future()
                    done.set_result(result)
                    holder[0] = done
            self.add_future(holder[0], lambda future: self.stop())

        self.add_callback(run)
        timer = None
        if timeout is not None:

            def on_timeout() -> None:
                timed_out.append(True)
                # Cancel the work and let it unwind; if it cannot be cancelled, stop right away.
                if holder[0] is None or not holder[0].cancel():
                    self.stop()

            timer = self.add_timeout(self.time() + timeout, on_timeout)
        self.start()
        if timer is not None:
            self.remove_timeout(timer)
        future = holder[0]
        if future is None or future.cancelled() or not future.done():
            if timed_out:
                raise TimeoutError("Operation timed out after %s seconds" % timeout)
            # Tornado's wording: stop() was called (or the work was cancelled) before it finished.
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()


# Futures ask "which loop is current?" through this hook: the concurrent layer sits below the loop.
_concurrent._set_loop_lookup(_current_or_none)


class PeriodicCallback:
    """Calls ``callback`` every ``callback_time`` milliseconds (a number, or a timedelta).

    The period runs from the start of one call to the start of the next; a call that overruns skips
    the missed slots and resumes on the original schedule.  ``jitter`` varies each period by up to
    ``±jitter/2`` of it.  A callback returning an awaitable is awaited before the next is scheduled.
    """

    def __init__(
        self, callback: Callable[[], Any], callback_time: Union[datetime.timedelta, float], jitter: float = 0
    ) -> None:
        self.callback = callback
        if isinstance(callback_time, datetime.timedelta):
            self.callback_time = callback_time / datetime.timedelta(milliseconds=1)
        else:
            if callback_time <= 0:
                raise ValueError("Periodic callback must have a positive callback_time")
            self.callback_time = callback_time
        self.jitter = jitter
        self._running = False
        self._timeout: Optional[_Timeout] = None
        self._next_timeout = 0.0

    def start(self) -> None:
        # The loop is looked up here, so a PeriodicCallback made on another thread can be started
        # from an add_callback on its loop's thread.
        self.io_loop = IOLoop.current()
        self._running = True
        self._next_timeout = self.io_loop.time()
        self._schedule_next()

    def stop(self) -> None:
        self._running = False
        if self._timeout is not None:
            self.io_loop.remove_timeout(self._timeout)
            self._timeout = None

    def is_running(self) -> bool:
        return self._running

    def _run(self) -> Any:
        if not self._running:
            return None
        try:
            value = self.callback()
        except Exception:
            app_log.error("Exception in callback %r", self.callback, exc_info=True)
            self._schedule_next()
            return None
        if value is not None and isawaitable(value):
            return self._await_then_schedule(value)
        self._schedule_next()
        return None

    async def _await_then_schedule(self, awaitable: Any) -> None:
        try:
            await awaitable
        except Exception:
            app_log.error("Exception in callback %r", self.callback, exc_info=True)
        finally:
            self._schedule_next()

    def _schedule_next(self) -> None:
        if self._running:
            self._update_next(self.io_loop.time())
            self._timeout = self.io_loop.add_timeout(self._next_timeout, self._run)

    def _update_next(self, current_time: float) -> None:
        period = self.callback_time / 1000.0
        if self.jitter:
            period *= 1 + self.jitter * (random.random() - 0.5)
        if self._next_timeout <= current_time:
            missed = math.floor((current_time - self._next_timeout) / period)
            self._next_timeout += (missed + 1) * period
        else:
            # The clock went backwards (or the call returned early): still move forward one period.
            self._next_timeout += period


__all__ = ["IOLoop", "LoopStats", "PeriodicCallback", "TimeoutError"]
