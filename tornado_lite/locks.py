"""Synchronisation for coroutines: ``Condition``, ``Event``, ``Semaphore``, ``BoundedSemaphore``, ``Lock``.

These are Tornado 6's primitives, for coroutines that share one IOLoop thread.  A coroutine that has to
wait is handed a future to await; whoever notifies, sets or releases resolves that future, and the
coroutine resumes on a later loop pass.  Nothing here blocks the thread or is safe to call from another
thread, and nothing touches file descriptors: the loop is used only to arm timeouts.

Timeouts follow Tornado: a deadline on ``IOLoop.time()`` or a ``datetime.timedelta`` from now.  When
it passes, ``Condition.wait`` resolves to ``False`` and the other waits fail with ``TimeoutError`` (the
builtin).  A waiter that times out or whose future is cancelled leaves its line for good: it is never
granted anything afterwards, and the lines are pruned as waiters leave, so a program that waits with a
short timeout in a loop, forever, keeps a bounded number of dead waiters, however the waits are mixed.

``queues`` builds its waits from the same pieces, which are this module's hooks for it (not Tornado
API): ``_Waiter`` (with its ``_arm`` for a deadline), ``_grant``, ``_done_future`` and ``_PRUNE_MIN_DEAD``.
"""

import collections
import datetime
import types
from typing import Any, Awaitable, Deque, Dict, Optional, Type, Union

from tornado_lite.concurrent import Future
from tornado_lite.ioloop import IOLoop

__all__ = ["Condition", "Event", "Semaphore", "BoundedSemaphore", "Lock"]

_Timeout = Union[float, datetime.timedelta]

# A line of waiters is rebuilt without its dead ones once they are this many and outnumber the live
# ones.  The floor keeps small lines from being rebuilt over and over; the ratio makes the rebuild's
# cost proportional to the waiters that died, so it is amortised O(1) per wait.
_PRUNE_MIN_DEAD = 64


class _Waiter(Future):
    """The future a waiting coroutine awaits, knowing the line it stands in and its deadline timer.

    ``_owner`` is the primitive (or queue) whose line holds this waiter; it is told through
    ``_waiter_gone`` when the waiter is cancelled, and through ``_waiter_expired`` when its deadline
    passes.  It is cleared once the waiter has left the line, so the owner hears of each waiter once.
    """

    __slots__ = ("_owner", "_timer", "_timer_loop")

    def __init__(self, owner: Any) -> None:
        Future.__init__(self)
        self._owner = owner
        self._timer: Any = None
        self._timer_loop: Optional[IOLoop] = None

    def _arm(self, timeout: _Timeout) -> None:
        loop = IOLoop.current()
        self._timer_loop = loop
        # A module-level function as the callback: no bound method or closure per timed wait.
        self._timer = loop.add_timeout(timeout, _deadline_passed, self)  # type: ignore[union-attr]

    def _disarm(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            self._timer_loop.remove_timeout(timer)  # type: ignore[union-attr]

    def cancel(self, msg: Any = None) -> bool:
        # A coroutine cancelled while it waits cancels this future: it must leave the line at once,
        # so that a later release or notify goes to a waiter that is still there.
        if not Future.cancel(self, msg):
            return False
        self._disarm()
        owner = self._owner
        if owner is not None:
            self._owner = None
            owner._waiter_gone(self)
        return True


def _deadline_passed(waiter: _Waiter) -> None:
    waiter._timer = None
    owner = waiter._owner
    if owner is None or waiter.done():
        return
    waiter._owner = None
    owner._waiter_expired(waiter)


def _grant(waiter: _Waiter, value: Any) -> None:
    """Resolves a waiter its owner has just taken out of its line."""
    waiter._owner = None
    waiter._disarm()
    if not waiter.done():
        waiter.set_result(value)


def _done_future(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class _TimeoutGarbageCollector:
    """A FIFO line of waiters, for ``Condition`` and ``Semaphore``, that sheds the ones that left.

    Waiters that timed out or were cancelled are dropped at once when they are at the head of the line;
    behind a live waiter they stay, counted in ``_dead``, until the line is rebuilt without them (when
    they outnumber the living) or until the head reaches them.  Every done waiter still in the deque is
    counted in ``_dead``: granted waiters are always taken out before they are resolved.
    """

    def __init__(self) -> None:
        self._waiters: Deque[_Waiter] = collections.deque()
        self._dead = 0

    def _live_waiters(self) -> int:
        return len(self._waiters) - self._dead

    def _pop_dead_head(self) -> None:
        waiters = self._waiters
        while waiters and waiters[0].done():
            waiters.popleft()
            if self._dead:
                self._dead -= 1

    def _waiter_gone(self, waiter: _Waiter) -> None:
        self._dead += 1
        self._pop_dead_head()
        if self._dead >= _PRUNE_MIN_DEAD and self._dead * 2 > len(self._waiters):
            waiters = self._waiters
            live = [w for w in waiters if not w.done()]
            # In place: the deque object is what the owner and its callers hold.
            waiters.clear()
            waiters.extend(live)
            self._dead = 0

    def _waiter_expired(self, waiter: _Waiter) -> None:
        raise NotImplementedError()


class Condition(_TimeoutGarbageCollector):
    """Lets coroutines wait until another one notifies them; no underlying lock is involved.

    ``await condition.wait()`` parks the caller; ``notify(n)`` wakes the ``n`` that have waited longest,
    ``notify_all()`` wakes all of them.  A woken waiter resumes on the next loop pass, never inside
    ``notify``.  ``wait(timeout)`` resolves to ``False`` instead of ``True`` when the deadline passes first.
    """

    def __repr__(self) -> str:
        text = "<" + type(self).__name__
        live = self._live_waiters()
        if live > 0:
            text += " waiters[%d]" % live
        return text + ">"

    def wait(self, timeout: Optional[_Timeout] = None) -> Awaitable[bool]:
        """Waits for ``notify``: the future resolves to ``True``, or to ``False`` after ``timeout``.

        ``timeout`` is a deadline on ``IOLoop.time()`` or a ``timedelta`` from now; zero times out on
        the next loop pass.
        """
        waiter = _Waiter(self)
        self._waiters.append(waiter)
        if timeout is not None:
            waiter._arm(timeout)
        return waiter

    def _waiter_expired(self, waiter: _Waiter) -> None:
        waiter.set_result(False)
        self._waiter_gone(waiter)

    def notify(self, n: int = 1) -> None:
        """Wakes the ``n`` longest-waiting coroutines (waiters that timed out do not count)."""
        chosen = []
        waiters = self._waiters
        # Take them all out of the line first: resolving one may run code that notifies again.
        while n and waiters:
            waiter = waiters.popleft()
            if waiter.done():
                if self._dead:
                    self._dead -= 1
                continue
            chosen.append(waiter)
            n -= 1
        self._pop_dead_head()
        for waiter in chosen:
            _grant(waiter, True)

    def notify_all(self) -> None:
        """Wakes every waiting coroutine."""
        self.notify(len(self._waiters))


class Event:
    """A flag coroutines can wait for: ``wait()`` blocks while it is clear and returns at once once set.

    ``set()`` wakes every waiter, in the order they started waiting; ``clear()`` makes later waits
    block again.  ``wait(timeout)`` fails with ``TimeoutError`` when the deadline passes first.
    """

    def __init__(self) -> None:
        self._value = False
        # Insertion-ordered, so waiters are woken first come, first served, and one that leaves early
        # (timeout, cancellation) is removed in O(1).
        self._waiters: Dict[_Waiter, None] = {}

    def __repr__(self) -> str:
        return "<%s %s>" % (type(self).__name__, "set" if self._value else "clear")

    def is_set(self) -> bool:
        """True while the flag is set."""
        return self._value

    def set(self) -> None:
        """Sets the flag and wakes every waiter; waits that start afterwards return at once."""
        if self._value:
            return
        self._value = True
        waiters = self._waiters
        if waiters:
            self._waiters = {}
            for waiter in waiters:
                _grant(waiter, None)

    def clear(self) -> None:
        """Clears the flag: waits that start afterwards block until the next ``set``."""
        self._value = False

    def wait(self, timeout: Optional[_Timeout] = None) -> Awaitable[None]:
        """Waits until the flag is set; the awaitable fails with ``TimeoutError`` after ``timeout``."""
        if self._value:
            return _done_future(None)
        waiter = _Waiter(self)
        self._waiters[waiter] = None
        if timeout is not None:
            waiter._arm(timeout)
        return waiter

    def _waiter_gone(self, waiter: _Waiter) -> None:
        self._waiters.pop(waiter, None)

    def _waiter_expired(self, waiter: _Waiter) -> None:
        self._waiters.pop(waiter, None)
        waiter.set_exception(TimeoutError("Timeout"))


class _ReleasingContextManager:
    """What ``yield semaphore.acquire()`` gives: ``with`` it, and the semaphore is released on exit."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __enter__(self) -> None:
        pass

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_val: Optional[BaseException],
        exc_tb: Optional[types.TracebackType],
    ) -> None:
        self._obj.release()


class Semaphore(_TimeoutGarbageCollector):
    """A counter of free slots: ``acquire`` takes one (waiting while there are none), ``release`` returns one.

    Waiters get slots in the order they asked.  Use ``async with sem:``, or ``await sem.acquire()`` with
    ``try/finally: sem.release()``, or in a ``@gen.coroutine`` ``with (yield sem.acquire()):``.
    ``release`` may raise the counter above its initial value; ``BoundedSemaphore`` forbids that.
    """

    def __init__(self, value: int = 1) -> None:
        super().__init__()
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._value = value
        # Stateless, so one serves every acquire.
        self._releaser = _ReleasingContextManager(self)

    def __repr__(self) -> str:
        state = "locked" if self._value == 0 else "unlocked,value:%d" % self._value
        live = self._live_waiters()
        if live > 0:
            state += ",waiters:%d" % live
        return "<%s.%s object at %#x [%s]>" % (type(self).__module__, type(self).__qualname__, id(self), state)

    def release(self) -> None:
        """Returns a slot: the longest-waiting coroutine gets it, or the counter goes up by one."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if waiter.done():
                if self._dead:
                    self._dead -= 1
                continue
            self._pop_dead_head()
            _grant(waiter, self._releaser)
            return
        self._value += 1

    def acquire(self, timeout: Optional[_Timeout] = None) -> Awaitable[_ReleasingContextManager]:
        """Takes a slot; the awaitable fails with ``TimeoutError`` if none is free by ``timeout``.

        Its result is a context manager that releases the slot, for ``with (yield sem.acquire()):``.
        """
        if self._value > 0:
            self._value -= 1
            return _done_future(self._releaser)
        waiter = _Waiter(self)
        self._waiters.append(waiter)
        if timeout is not None:
            waiter._arm(timeout)
        return waiter

    def _waiter_expired(self, waiter: _Waiter) -> None:
        waiter.set_exception(TimeoutError())
        self._waiter_gone(waiter)

    def __enter__(self) -> None:
        raise RuntimeError("Use 'async with' instead of 'with' for Semaphore")

    def __exit__(
        self,
        typ: Optional[Type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[types.TracebackType],
    ) -> None:
        self.__enter__()

    async def __aenter__(self) -> None:
        # A free slot is taken on the spot, with no future to make and await (unless a subclass
        # changed what acquiring means).
        if self._value > 0 and type(self).acquire is Semaphore.acquire:
            self._value -= 1
            return
        await _acquire_or_give_back(self)

    async def __aexit__(
        self,
        typ: Optional[Type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[types.TracebackType],
    ) -> None:
        self.release()


async def _acquire_or_give_back(obj: Any) -> None:
    """``await obj.acquire()`` for ``async with``, handing the slot back if the wait is interrupted.

    A coroutine can be cancelled after its slot was granted but before it resumed; ``async with`` then
    never runs its exit, and the slot would be lost for good, so it is released here.
    """
    waiter = obj.acquire()
    try:
        await waiter
    except BaseException:
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            obj.release()
        raise


class BoundedSemaphore(Semaphore):
    """A ``Semaphore`` whose ``release`` raises ``ValueError`` rather than exceed the initial value."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value=value)
        self._initial_value = value

    def release(self) -> None:
        """Returns a slot; ``ValueError`` if every slot is already free."""
        if self._value >= self._initial_value:
            raise ValueError("Semaphore released too many times")
        super().release()


class Lock:
    """A mutual-exclusion lock for coroutines, granted in the order it was asked for.

    ``async with lock:`` holds it for a block; ``await lock.acquire(timeout)`` / ``lock.release()`` by
    hand (releasing an unlocked lock raises ``RuntimeError``); ``with (yield lock.acquire()):`` in a
    ``@gen.coroutine``.
    """

    def __init__(self) -> None:
        self._block = BoundedSemaphore(value=1)

    def __repr__(self) -> str:
        return "<%s _block=%s>" % (type(self).__name__, self._block)

    def acquire(self, timeout: Optional[_Timeout] = None) -> Awaitable[_ReleasingContextManager]:
        """Locks it, once free; the awaitable fails with ``TimeoutError`` if not done by ``timeout``."""
        return self._block.acquire(timeout)

    def release(self) -> None:
        """Unlocks it, handing it to the longest waiter if any; ``RuntimeError`` if it was not locked."""
        try:
            self._block.release()
        except ValueError:
            raise RuntimeError("release unlocked lock")

    def __enter__(self) -> None:
        raise RuntimeError("Use `async with` instead of `with` for Lock")

    def __exit__(
        self,
        typ: Optional[Type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[types.TracebackType],
    ) -> None:
        self.__enter__()

    async def __aenter__(self) -> None:
        block = self._block
        if block._value > 0 and type(self).acquire is Lock.acquire:
            block._value -= 1
            return
        await _acquire_or_give_back(self)

    async def __aexit__(
        self,
        typ: Optional[Type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[types.TracebackType],
    ) -> None:
        self.release()
