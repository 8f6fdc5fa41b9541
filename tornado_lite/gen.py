"""Coroutines on tornado_lite's loop: ``async def`` and ``@gen.coroutine``, with no asyncio Task.

A coroutine is driven by a ``_Task``, which is itself our ``Future``: it sends each result into the
coroutine until the coroutine waits on a future that is not done yet, then resumes it from that
future's done-callback on a later loop pass.  A task never suspends on a future that is already done:
it goes straight on, in a loop (no recursion), so a coroutine that awaits 100,000 finished futures
runs in one pass.  Each task runs in its own ``contextvars`` context, as asyncio tasks do.

A native coroutine handed to ``convert_yielded`` (or ``start_task``, which also takes a callback run
inline when the task ends: a server's per-connection bookkeeping) starts on the next loop pass, as
an asyncio task would; a ``@gen.coroutine`` generator runs its first step at once, as Tornado's always has.
Cancelling a task's future throws ``concurrent.futures.CancelledError`` into the coroutine at its
suspension point.

This layer knows futures and the loop's callbacks and timers; it never touches file descriptors.

``_track_tasks()`` and ``_pending_tasks(loop)`` are gen's hooks for testing (``AsyncTestCase`` cancels
the tasks a test leaves pending), not Tornado API.
"""

import collections
import contextvars
import datetime
import functools
import itertools
import sys
import types
import typing
import weakref
from collections.abc import Generator
from functools import singledispatch
from inspect import isawaitable
from typing import (
    Any, Awaitable, Callable, Deque, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union,
)

from tornado_lite.concurrent import (
    _FINISHED,
    _PENDING,
    CancelledError,
    Future,
    _new_cancelled_error,
    chain_future,
    future_add_done_callback,
    future_set_exc_info,
    future_set_result_unless_cancelled,
    is_future,
)
from tornado_lite.ioloop import IOLoop
from tornado_lite.log import app_log
from tornado_lite.util import TimeoutError as TimeoutError

_T = TypeVar("_T")

_Yieldable = Union[None, Awaitable, List[Awaitable], Dict[Any, Awaitable], Future]


class KeyReuseError(Exception):
    pass


class UnknownKeyError(Exception):
    pass


class LeakedCallbackError(Exception):
    pass


class BadYieldError(Exception):
    pass


class ReturnValueIgnoredError(Exception):
    pass


class Return(Exception):
    """``raise gen.Return(value)`` ends a generator coroutine with ``value`` (``return value`` works too)."""

    def __init__(self, value: Any = None) -> None:
        super().__init__()
        self.value = value
        self.args = (value,)


def _value_of(stop: Union[StopIteration, Return]) -> Any:
    return getattr(stop, "value", None)


class _Moment(Future):
    """``gen.moment``: yielding or awaiting it gives the loop one pass before the coroutine goes on."""

    __slots__ = ()

    def __await__(self) -> typing.Generator[Any, None, None]:
        yield self

    __iter__ = __await__


moment: Future = _Moment()
moment.set_result(None)

# A finished future with result None, used where "nothing to wait for" must still be a future.
_null_future: Future = Future()
_null_future.set_result(None)


# What ends a task as cancelled (rather than failed) when its coroutine raises it.  The asyncio bridge adds
# asyncio.CancelledError at install (_set_cancellation_types); looked up only when a coroutine raises.
_cancellation_types: Tuple[Type[BaseException], ...] = (CancelledError,)


def _set_cancellation_types(types_: Tuple[Type[BaseException], ...]) -> None:
    global _cancellation_types
    _cancellation_types = tuple(types_)


_CoroutineType = types.CoroutineType
_coroutine_send = types.CoroutineType.send
# The unbound Context.run: a step calls it with the task's context, making no bound method per step.
_context_run = contextvars.Context.run


class _Task(Future):
    """Drives one coroutine (native or generator) on the loop; its own result is the coroutine's."""

    # __dict__ stays available (created only when used): code written for asyncio tasks sets its own
    # attributes on them.
    __slots__ = ("_coro", "_context", "_waiting", "_must_cancel", "__dict__")

    def __init__(self, coro: Any, context: Optional[contextvars.Context] = None, loop: Optional[IOLoop] = None) -> None:
        Future.__init__(self)
        # The current loop, unless the caller knows it already (IOLoop.current is ~1.3k instructions).
        self._loop = loop if loop is not None else IOLoop.current(instance=False)
        self._coro = coro
        self._context = context if context is not None else contextvars.copy_context()
        self._waiting: Optional[Future] = None
        self._must_cancel = False
        if _all_tasks is not None:
            _all_tasks.add(self)

    def __repr__(self) -> str:
        coro = self._coro
        name = getattr(coro, "__qualname__", None) or repr(coro)
        return f"<Task {('pending', 'finished', 'cancelled')[self._state]} {name}>"

    # How many cancellations were asked for and not withdrawn (asyncio's Task.cancelling()).  A class
    # default: a task gets a count of its own (in its __dict__) only once somebody cancels it.
    _cancel_requests = 0

    def cancel(self, msg: Any = None) -> bool:
        if self._state != _PENDING:
            return False
        self._cancel_requests += 1
        waiting = self._waiting
        if waiting is not None and waiting.cancel():
            # The coroutine learns of it from the cancelled future, on its next step.
            return True
        self._must_cancel = True
        return True

    def _step(self, future: Optional[Future] = None, error: Optional[BaseException] = None) -> None:
        """Runs the coroutine until it waits on a pending future (or ends).

        Also the done-callback of the future it waits on (called with that future) and the callback
        that resumes it after a loop pass (called with nothing).
        """
        self._waiting = None
        if self._state != _PENDING:
            return
        # current_task() is the loop's record of the task in a step (inline here, not a wrapper call:
        # this is the hot path).  Steps nest (a @gen.coroutine's first step runs inside its caller's),
        # so the outer one is put back.
        loop = self._loop
        if loop is not None:
            outer = loop._current_task
            loop._current_task = self
        try:
            coro = self._coro
            context = self._context
            while True:
                try:
                    if self._must_cancel:
                        self._must_cancel = False
                        yielded = _context_run(context, coro.throw, _new_cancelled_error())
                    elif error is not None:
                        exc, error = error, None
                        yielded = _context_run(context, coro.throw, exc)
                    elif future is None:
                        yielded = _context_run(context, coro.send, None)
                    elif future._state == _FINISHED and future._exception is None:
                        if type(coro) is _CoroutineType:
                            # The unbound send: no bound method object made (and freed) per step.
                            yielded = _context_run(context, _coroutine_send, coro, future._result)
                        else:
                            yielded = _context_run(context, coro.send, future._result)
                    else:
                        # Failed or cancelled.  Taken without raising it here: raised in this frame, it would
                        # become the __context__ of what the coroutine raises next, and this frame (with the
                        # futures in its locals) would enter its traceback, a cycle only the GC frees.
                        yielded = _context_run(context, coro.throw, future._retrieve_failure())
                except StopIteration as stop:
                    self._finish(stop.value)
                    return
                except Return as ret:
                    self._finish(ret.value)
                    return
                except _cancellation_types:
                    self._coro = None
                    Future.cancel(self)
                    if self._on_end is not None:
                        self._call_on_end()
                    return
                except (KeyboardInterrupt, SystemExit) as exc:
                    self._coro = None
                    Future.set_exception(self, exc)
                    if self._on_end is not None:
                        self._call_on_end()
                    raise
                except BaseException as exc:
                    self._coro = None
                    Future.set_exception(self, _without_this_frame(exc))
                    if self._on_end is not None:
                        self._call_on_end()
                    return

                if isinstance(yielded, Future):
                    if yielded is moment:
                        self._after_one_pass()
                        return
                    future = yielded
                elif yielded is None:
                    self._after_one_pass()
                    return
                else:
                    try:
                        # In the task's own context: a coroutine started from here inherits its variables.
                        future = _context_run(context, convert_yielded, yielded)
                    except BadYieldError as exc:
                        future, error = None, exc
                        continue
                    if future is moment:
                        self._after_one_pass()
                        return
                if future._state != _PENDING:
                    continue
                self._waiting = future
                if type(future) is Future and future._loop is not None:
                    # Future.add_done_callback, inlined for the common case (one of ours, loop known).
                    callbacks = future._callbacks
                    if callbacks is None:
                        future._callbacks = self  # one waiter is kept bare, with no list
                    elif type(callbacks) is list:
                        callbacks.append(self)
                    else:
                        future._callbacks = [callbacks, self]
                else:
                    future.add_done_callback(self)
                if self._must_cancel and future.cancel():
                    self._must_cancel = False
                return
        finally:
            if loop is not None:
                loop._current_task = outer

    # The task is its own callback: ``task(future)`` is ``task._step(future)``.  A future it waits on
    # keeps the task itself, not a bound ``_step`` made per wait (64 B for as long as it waits: one
    # per idle connection of a server, and one allocation per step).
    __call__ = _step

    def cancelling(self) -> int:
        """The number of pending cancellation requests, as ``asyncio.Task.cancelling()``."""
        return self._cancel_requests

    def uncancel(self) -> int:
        """Withdraws one cancellation request and returns how many remain (``asyncio.Task.uncancel``)."""
        if self._cancel_requests > 0:
            self._cancel_requests -= 1
        return self._cancel_requests

    # -- asyncio.Task's names, for code written against asyncio (asyncio.current_task() can return a
    # _Task once the asyncio bridge is installed).  Nothing in tornado_lite calls them.

    def get_name(self) -> str:
        name = self.__dict__.get("_name")
        if name is None:
            name = self.__dict__["_name"] = f"Task-{next(_task_names)}"
        return name

    def set_name(self, value: Any) -> None:
        self.__dict__["_name"] = str(value)

    def get_coro(self) -> Any:
        return self._coro

    def get_context(self) -> contextvars.Context:
        return self._context

    def get_stack(self, *, limit: Optional[int] = None) -> List[types.FrameType]:
        """The suspended coroutine's frames, outermost first (asyncio's Task.get_stack, pending tasks)."""
        frames: List[types.FrameType] = []
        coro = self._coro
        while coro is not None and (limit is None or len(frames) < limit):
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:
                break
            frames.append(frame)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        return frames

    def print_stack(self, *, limit: Optional[int] = None, file: Any = None) -> None:
        import traceback  # diagnostics only

        print(f"Stack for {self!r} (most recent call last):", file=file or sys.stderr)
        for frame in self.get_stack(limit=limit):
            traceback.print_stack(frame, limit=1, file=file or sys.stderr)

    def _finish(self, value: Any) -> None:
        self._coro = None
        if self._must_cancel:
            # Cancelled during its last step: asyncio reports such a task as cancelled.
            Future.cancel(self)
        else:
            Future.set_result(self, value)
        if self._on_end is not None:
            self._call_on_end()

    # The end-callback of a task made by start_task (a slot of _EndCallbackTask); None for the rest.
    _on_end: Optional[Callable[["_Task"], Any]] = None

    def _call_on_end(self) -> None:
        """Runs the end-callback once, now; an error in it is the loop's to report, as a callback's is."""
        on_end = self._on_end
        self._on_end = None
        try:
            on_end(self)  # type: ignore[misc]
        except Exception:
            (self._loop or IOLoop.current()).handle_callback_exception(on_end)

    def _after_one_pass(self) -> None:
        loop = IOLoop.current()
        loop.add_callback(self)


# Task names are numbered on first request only (get_name), so unnamed tasks cost nothing.
_task_names = itertools.count(1)


def current_task(loop: Optional[IOLoop] = None) -> "Optional[_Task]":
    """The task whose coroutine is running now on ``loop`` (default: this thread's loop), or None.

    tornado_lite's counterpart of ``asyncio.current_task()``; not part of Tornado's API.
    """
    if loop is None:
        loop = IOLoop.current(instance=False)
        if loop is None:
            return None
    return loop._current_task


def _without_this_frame(exc: BaseException) -> BaseException:
    """Drops the runner's own frame from the head of ``exc``'s traceback before the task stores it.

    That frame's locals include the task, which is the future holding ``exc``: keeping it would tie
    every failed coroutine (and all its locals) into a cycle only the cyclic GC can free.  The
    traceback then starts in the user's coroutine, which is what a reader wants anyway.
    """
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code is _Task._step.__code__:
        exc.__traceback__ = tb.tb_next
    return exc


# Every task, weakly, while a test case wants them: AsyncTestCase cancels the pending ones at tearDown
# so that no coroutine is left half-run (or, never started, warned about as "never awaited") when its
# loop closes.  Off by default: a server should not pay a weak reference per connection for it.
_all_tasks: "Optional[weakref.WeakSet[_Task]]" = None


def _track_tasks() -> None:
    """Starts remembering every task (idempotent); ``_pending_tasks`` then lists them."""
    global _all_tasks
    if _all_tasks is None:
        _all_tasks = weakref.WeakSet()


def _pending_tasks(loop: Optional[IOLoop] = None) -> List[_Task]:
    """The tasks not yet done that belong to ``loop`` (default: the current loop), if tracked."""
    if _all_tasks is None:
        return []
    if loop is None:
        loop = IOLoop.current(instance=False)
    return [task for task in list(_all_tasks) if task._loop is loop and not task.done()]


def _start_task(coro: Any, context: Optional[contextvars.Context] = None) -> _Task:
    """Runs a generator coroutine's first step now, as Tornado's ``@gen.coroutine`` always has."""
    task = _Task(coro, context)
    task._step(None)
    return task


class _EndCallbackTask(_Task):
    """A task with an end-callback (see :func:`start_task`): the one slot it adds to ``_Task``."""

    __slots__ = ("_on_end",)


def start_task(
    coro: Any, on_end: Callable[["Future[Any]"], Any], loop: Optional[IOLoop] = None
) -> "Future[Any]":
    """Runs native coroutine ``coro`` as a task, from the next loop pass, and calls ``on_end(task)`` when it ends.

    The task is returned (a Future with the coroutine's outcome), as ``convert_yielded`` would return
    it.  ``on_end`` is called once, inline in the task's last step, as soon as the task is done
    (returned, failed or cancelled): unlike a done-callback it costs no list and no further loop
    pass, and it runs before the done-callbacks (those run on a later pass).  An exception it
    raises is reported through the loop's ``handle_callback_exception``, as a failing callback's
    would be.  ``loop``, if given, must be the current loop (a caller that holds it saves the lookup);
    the first step is then queued as a resolved future's callback is, without ``add_callback``'s
    thread-safe path (the caller is on the loop's thread).  Not part of Tornado's API.
    """
    task = _EndCallbackTask(coro, None, loop)
    task._on_end = on_end
    if loop is not None:
        loop._schedule_future_callback(task, None)  # task(None) is its first step
        return task
    loop = task._loop
    if loop is None:  # no current loop yet: the task belongs to the one made for it
        loop = task._loop = IOLoop.current()
    loop.add_callback(task)
    return task


def _schedule_task(coro: Any) -> _Task:
    """Wraps a native coroutine in a task whose first step runs on the next loop pass.

    That is when an asyncio task would start, and it keeps a chain of coroutines that each spawn the
    next from nesting one Python frame deeper per link.
    """
    task = _Task(coro)
    loop = task._loop  # the current loop, unless there is none yet
    (loop if loop is not None else IOLoop.current()).add_callback(task)
    return task


# -- decorators -------------------------------------------------------------------------------------


def coroutine(func: Callable[..., Any]) -> Callable[..., "Future[Any]"]:
    """Decorator for generator-based coroutines: ``yield`` futures, ``return`` (or ``raise Return``).

    The decorated function returns a Future.  The generator runs at once up to its first suspension.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Future:
        context = contextvars.copy_context()
        try:
            result = context.run(func, *args, **kwargs)
        except (Return, StopIteration) as stop:
            result = _value_of(stop)
        except CancelledError:
            # As with a task, a coroutine that raises CancelledError is cancelled, not failed.
            cancelled: Future = Future()
            cancelled.cancel()
            return cancelled
        except Exception:
            failed: Future = Future()
            future_set_exc_info(failed, sys.exc_info())
            return failed
        else:
            if isinstance(result, Generator):
                return _start_task(result, context)
        done: Future = Future()
        done.set_result(result)
        return done

    wrapper.__wrapped__ = func  # type: ignore[attr-defined]
    wrapper.__tornado_coroutine__ = True  # type: ignore[attr-defined]
    return wrapper


def is_coroutine_function(func: Any) -> bool:
    """True for functions decorated with ``@gen.coroutine``.

    As in Tornado, ``async def`` functions are not included (``inspect.iscoroutinefunction`` tells those).
    """
    return getattr(func, "__tornado_coroutine__", False)


# -- converting what a coroutine yields into a future -----------------------------------------------


async def _await_it(awaitable: Awaitable) -> Any:
    return await awaitable


@singledispatch
def convert_yielded(yielded: _Yieldable) -> Future:
    """Turns anything a coroutine may yield into one of our Futures.

    Accepts None and ``moment`` (one loop pass), our futures, ``concurrent.futures.Future``, native
    coroutines and other awaitables (started as tasks), and lists or dicts of those (``multi``).
    Other types may be added with ``convert_yielded.register``.
    """
    if yielded is None or yielded is moment:
        return moment
    if isinstance(yielded, Future):
        return yielded
    if isinstance(yielded, (list, dict)):
        return multi(yielded)  # type: ignore[arg-type]
    if is_future(yielded):
        bridged: Future = Future()
        chain_future(yielded, bridged)  # type: ignore[arg-type]
        return bridged
    if isinstance(yielded, types.CoroutineType) or (
        isinstance(yielded, types.GeneratorType) and yielded.gi_code.co_flags & 0x100
    ):
        return _schedule_task(yielded)
    if isawaitable(yielded):
        return _schedule_task(_await_it(yielded))
    raise BadYieldError(f"yielded unknown object {yielded!r}")


# -- combining futures ------------------------------------------------------------------------------


def multi(
    children: Union[Sequence[_Yieldable], Dict[Any, _Yieldable]],
    quiet_exceptions: "Union[Type[Exception], Tuple[Type[Exception], ...]]" = (),
) -> "Union[Future[List], Future[Dict]]":
    """Waits for all of ``children`` (a list or dict of yieldables); the result has the same shape.

    If any fail, the result fails with the first failure (in order) once all are done; later
    failures are logged unless they are instances of ``quiet_exceptions``.
    """
    return multi_future(children, quiet_exceptions=quiet_exceptions)


Multi = multi


class _MultiWaiter:
    """Collects the outcome of several futures into one (the engine of ``multi``)."""

    __slots__ = ("keys", "futures", "pending", "result", "quiet")

    def __init__(self, keys: Optional[List[Any]], futures: List[Future], quiet: Any) -> None:
        self.keys = keys
        self.futures = futures
        self.pending = set(futures)
        self.result: Future = Future()
        self.quiet = quiet

    def on_child_done(self, child: Future) -> None:
        self.pending.discard(child)
        if self.pending:
            return
        result = self.result
        values = []
        for future in self.futures:
            try:
                values.append(future.result())
            except Exception as exc:
                if result.done():
                    # A cancelled child counts as a failure but, as in Tornado, is never logged.
                    if not isinstance(exc, (CancelledError, self.quiet)):
                        app_log.error("Multiple exceptions in yield list", exc_info=True)
                else:
                    future_set_exc_info(result, sys.exc_info())
        if not result.done():
            if self.keys is None:
                future_set_result_unless_cancelled(result, values)
            else:
                future_set_result_unless_cancelled(result, dict(zip(self.keys, values)))


def multi_future(
    children: Union[Sequence[_Yieldable], Dict[Any, _Yieldable]],
    quiet_exceptions: "Union[Type[Exception], Tuple[Type[Exception], ...]]" = (),
) -> "Union[Future[List], Future[Dict]]":
    if isinstance(children, dict):
        keys: Optional[List[Any]] = list(children.keys())
        values: Any = children.values()
    else:
        keys = None
        values = children
    futures = [convert_yielded(child) for child in values]
    waiter = _MultiWaiter(keys, futures, quiet_exceptions)
    if not futures:
        waiter.result.set_result({} if keys is not None else [])
        return waiter.result
    for future in set(futures):
        future_add_done_callback(future, waiter.on_child_done)
    return waiter.result


def maybe_future(x: Any) -> Future:
    """Deprecated: wraps a non-future value in a finished Future."""
    if is_future(x):
        return x
    done: Future = Future()
    done.set_result(x)
    return done


def with_timeout(
    timeout: Union[float, datetime.timedelta],
    future: _Yieldable,
    quiet_exceptions: "Union[Type[Exception], Tuple[Type[Exception], ...]]" = (),
    *,
    message: Union[None, str, Callable[[], str]] = None,
) -> Future:
    """A future that follows ``future`` but fails with ``TimeoutError`` at ``timeout``.

    ``timeout`` is a deadline on ``IOLoop.time()`` or a timedelta from now.  The wrapped future is not
    cancelled; if it later fails, the error is logged unless it is one of ``quiet_exceptions``.
    ``message`` (a string, or a function called only on timeout) replaces the default "Timeout".
    """
    inner = convert_yielded(future)
    outer: Future = Future()
    chain_future(inner, outer)
    if outer.done():
        # Already settled (Tornado's HTTP layer wraps header reads the buffer often serves at once): no
        # timer, and no late failure to log.
        return outer
    loop = IOLoop.current()

    def log_late_failure(done: Future) -> None:
        try:
            done.result()
        except CancelledError:
            pass
        except Exception as exc:
            if not isinstance(exc, quiet_exceptions):
                app_log.error("Exception in Future %r after timeout", done, exc_info=True)

    def on_timeout() -> None:
        if not outer.done():
            if message is None:
                text = "Timeout"
            else:
                text = message() if callable(message) else message
            outer.set_exception(TimeoutError(text))
        future_add_done_callback(inner, log_late_failure)

    handle = loop.add_timeout(timeout, on_timeout)
    future_add_done_callback(inner, lambda _: loop.remove_timeout(handle))
    return outer


def _resolve_none(future: Future) -> None:
    if not future.done():
        future.set_result(None)


def sleep(duration: float) -> "Future[None]":
    """A future that resolves after ``duration`` seconds (``await gen.sleep(0.5)``)."""
    future: Future[None] = Future()
    IOLoop.current().call_later(duration, _resolve_none, future)
    return future


# -- WaitIterator -----------------------------------------------------------------------------------


class WaitIterator:
    """Yields futures in the order they finish: ``while not it.done(): r = await it.next()``.

    ``current_index`` and ``current_future`` tell which input the last result came from.  Also an
    async iterator: ``async for result in WaitIterator(...)``.
    """

    def __init__(self, *args: Future, **kwargs: Future) -> None:
        if args and kwargs:
            raise ValueError("You must provide args or kwargs, not both")
        self._unfinished: Dict[Future, Deque[Any]] = {}
        sources: Any = kwargs.items() if kwargs else enumerate(args)
        for key, future in sources:
            self._unfinished.setdefault(future, collections.deque()).append(key)
        self._finished: Deque[Future] = collections.deque()
        self.current_index: Any = None
        self.current_future: Optional[Future] = None
        self._running_future: Optional[Future] = None
        for future in list(self._unfinished):
            future_add_done_callback(future, self._on_done)

    def done(self) -> bool:
        if self._finished or self._unfinished:
            return False
        self.current_index = self.current_future = None
        return True

    def next(self) -> Future:
        """A future for the next input to finish (or the next already finished)."""
        self._running_future = Future()
        if self._finished:
            return self._deliver(self._finished.popleft())
        return self._running_future

    def _on_done(self, done: Future) -> None:
        if self._running_future is not None and not self._running_future.done():
            self._deliver(done)
        else:
            self._finished.append(done)

    def _deliver(self, done: Future) -> Future:
        running = self._running_future
        if running is None:
            raise Exception("no future is running")
        chain_future(done, running)
        self._running_future = None
        self.current_future = done
        keys = self._unfinished[done]
        self.current_index = keys.popleft()
        if keys:
            # The same future was given more than once: deliver it again for its other positions.
            self._finished.append(done)
        else:
            del self._unfinished[done]
        return running

    def __aiter__(self) -> "WaitIterator":
        return self

    def __anext__(self) -> Future:
        if self.done():
            raise StopAsyncIteration()
        return self.next()


Runner = _Task

__all__ = [
    "BadYieldError",
    "KeyReuseError",
    "LeakedCallbackError",
    "Multi",
    "Return",
    "ReturnValueIgnoredError",
    "TimeoutError",
    "UnknownKeyError",
    "WaitIterator",
    "convert_yielded",
    "coroutine",
    "is_coroutine_function",
    "maybe_future",
    "moment",
    "multi",
    "multi_future",
    "sleep",
    "start_task",
    "with_timeout",
]

