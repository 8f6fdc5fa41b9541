"""Queues between coroutines: ``Queue`` (FIFO), ``PriorityQueue`` (lowest first), ``LifoQueue`` (newest first).

Tornado 6's queues, for producers and consumers on one IOLoop thread.  ``put`` waits while a bounded
queue is full and ``get`` while it is empty, each as a future to await, with an optional deadline (on
``IOLoop.time()``, or a ``timedelta``) after which it fails with ``TimeoutError``; ``task_done`` and
``join`` track how much of the work put in has been finished.  A queue is not thread-safe: another
thread hands items over with ``IOLoop.add_callback``.  Nothing here touches file descriptors or blocks.

Subclasses choose the storage through three hooks, as with Tornado: ``_init`` creates ``self._queue``,
``_put`` stores one item, ``_get`` takes the next one out.
"""

import collections
import datetime
import heapq
from typing import Any, Awaitable, Deque, Generic, Optional, Tuple, TypeVar, Union

from tornado_lite.concurrent import Future
from tornado_lite.locks import _PRUNE_MIN_DEAD, Event, _done_future, _grant, _Waiter

__all__ = ["Queue", "PriorityQueue", "LifoQueue", "QueueFull", "QueueEmpty"]

_T = TypeVar("_T")
_Timeout = Union[float, datetime.timedelta]


class QueueEmpty(Exception):
    """``get_nowait`` found no item in the queue."""


class QueueFull(Exception):
    """``put_nowait`` found the queue at its ``maxsize``."""


class _QueueIterator(Generic[_T]):
    """``async for item in queue``: each step is a ``get()``; the iteration never ends by itself."""

    __slots__ = ("_q",)

    def __init__(self, q: "Queue[_T]") -> None:
        self._q = q

    def __anext__(self) -> Awaitable[_T]:
        return self._q.get()


class Queue(Generic[_T]):
    """A FIFO queue for coroutines, bounded by ``maxsize`` (0, the default, means unbounded).

    Producers ``await q.put(item)`` (which waits while the queue is full: backpressure) or call
    ``put_nowait``; consumers ``await q.get()``, ``get_nowait()`` or ``async for item in q``, and call
    ``task_done()`` for each item they finish, so that ``await q.join()`` returns once all are done.
    Waiting producers and consumers are served in the order they arrived.
    """

    # Tornado's repr looks the storage up this way, so a subclass whose _init has not run still prints.
    _queue: Any = None

    def __init__(self, maxsize: int = 0) -> None:
        if maxsize is None:
            raise TypeError("maxsize can't be None")
        if maxsize < 0:
            raise ValueError("maxsize can't be negative")
        self._maxsize = maxsize
        self._init()
        self._getters: Deque[_Waiter] = collections.deque()
        self._putters: Deque[Tuple[Any, _Waiter]] = collections.deque()
        # Waiters in _getters/_putters that timed out or were cancelled (see _waiter_gone).
        self._dead = 0
        self._unfinished_tasks = 0
        self._finished = Event()
        self._finished.set()

    @property
    def maxsize(self) -> int:
        """How many items the queue holds before ``put`` waits (0: no limit)."""
        return self._maxsize

    def qsize(self) -> int:
        """How many items are in the queue now."""
        return len(self._queue)

    def empty(self) -> bool:
        return not self._queue

    def full(self) -> bool:
        if self._maxsize == 0:
            return False
        return self.qsize() >= self._maxsize

    # -- putting ----------------------------------------------------------------------------------

    def put(self, item: _T, timeout: Optional[_Timeout] = None) -> "Future[None]":
        """Puts ``item`` in, waiting for room while the queue is full.

        The future fails with ``TimeoutError`` if there is no room by ``timeout``; the item is then
        not put in.
        """
        try:
            self.put_nowait(item)
        except QueueFull:
            waiter = _Waiter(self)
            self._putters.append((item, waiter))
            if timeout is not None:
                waiter._arm(timeout)
            return waiter
        return _done_future(None)

    def put_nowait(self, item: _T) -> None:
        """Puts ``item`` in at once, or raises ``QueueFull``."""
        self._drop_dead_heads()
        if self._getters:
            # A consumer is waiting, so the queue is empty: the item goes through the storage (so a
            # subclass sees every item) and straight out again to that consumer.
            getter = self._getters.popleft()
            self._put_counted(item)
            _grant(getter, self._get())
        elif self.full():
            raise QueueFull
        else:
            self._put_counted(item)

    # -- getting ----------------------------------------------------------------------------------

    def get(self, timeout: Optional[_Timeout] = None) -> Awaitable[_T]:
        """Takes the next item out, waiting while the queue is empty.

        The awaitable fails with ``TimeoutError`` if no item came by ``timeout`` (a deadline on
        ``IOLoop.time()`` or a ``timedelta``; unlike the standard library's ``queue``, a number is
        not a duration).
        """
        try:
            item = self.get_nowait()
        except QueueEmpty:
            waiter = _Waiter(self)
            self._getters.append(waiter)
            if timeout is not None:
                waiter._arm(timeout)
            return waiter
        return _done_future(item)

    def get_nowait(self) -> _T:
        """Takes the next item out at once, or raises ``QueueEmpty``."""
        self._drop_dead_heads()
        if self._putters:
            # A producer is waiting, so the queue is full: its item goes in to take the place of the
            # one that comes out.
            item, putter = self._putters.popleft()
            self._put_counted(item)
            _grant(putter, None)
            return self._get()
        if self.qsize():
            return self._get()
        raise QueueEmpty

    # -- tracking finished work -------------------------------------------------------------------

    def task_done(self) -> None:
        """Marks one item taken out earlier as processed; ``ValueError`` if none is outstanding.

        When every item ever put in has been marked, ``join`` returns.
        """
        if self._unfinished_tasks <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished_tasks -= 1
        if self._unfinished_tasks == 0:
            self._finished.set()

    def join(self, timeout: Optional[_Timeout] = None) -> Awaitable[None]:
        """Waits until every item put in has been marked with ``task_done``.

        The awaitable fails with ``TimeoutError`` if that has not happened by ``timeout``.
        """
        return self._finished.wait(timeout)

    def __aiter__(self) -> _QueueIterator[_T]:
        return _QueueIterator(self)

    # -- storage hooks for subclasses ---------------------------------------------------------------

    def _init(self) -> None:
        self._queue = collections.deque()

    def _get(self) -> _T:
        return self._queue.popleft()

    def _put(self, item: _T) -> None:
        self._queue.append(item)

    # -- waiters ----------------------------------------------------------------------------------

    def _put_counted(self, item: _T) -> None:
        self._unfinished_tasks += 1
        self._finished.clear()
        self._put(item)

    def _drop_dead_heads(self) -> None:
        """Drops waiters that timed out or were cancelled from the heads of both lines.

        Only the heads matter here: the next item or slot goes to the first waiter still waiting.
        """
        putters = self._putters
        while putters and putters[0][1].done():
            putters.popleft()
            if self._dead:
                self._dead -= 1
        getters = self._getters
        while getters and getters[0].done():
            getters.popleft()
            if self._dead:
                self._dead -= 1

    def _waiter_gone(self, waiter: _Waiter) -> None:
        # Like Tornado, dead waiters at the heads wait for the next put or get to drop them; but those
        # stuck behind a live waiter are pruned here once they are many and outnumber the living.
        self._dead += 1
        dead = self._dead
        if dead >= _PRUNE_MIN_DEAD and dead * 2 > len(self._getters) + len(self._putters):
            live_getters = [w for w in self._getters if not w.done()]
            live_putters = [entry for entry in self._putters if not entry[1].done()]
            self._getters.clear()
            self._getters.extend(live_getters)
            self._putters.clear()
            self._putters.extend(live_putters)
            self._dead = 0

    def _waiter_expired(self, waiter: _Waiter) -> None:
        waiter.set_exception(TimeoutError())
        self._waiter_gone(waiter)

    # -- printing ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return "<%s at %s %s>" % (type(self).__name__, hex(id(self)), self._format())

    def __str__(self) -> str:
        return "<%s %s>" % (type(self).__name__, self._format())

    def _format(self) -> str:
        parts = ["maxsize=%r" % (self.maxsize,)]
        if getattr(self, "_queue", None):
            parts.append("queue=%r" % (self._queue,))
        if self._getters:
            parts.append("getters[%d]" % len(self._getters))
        if self._putters:
            parts.append("putters[%d]" % len(self._putters))
        if self._unfinished_tasks:
            parts.append("tasks=%d" % self._unfinished_tasks)
        return " ".join(parts)


class PriorityQueue(Queue):
    """A ``Queue`` that hands out its smallest item first (a heap); items are often ``(priority, data)``."""

    def _init(self) -> None:
        self._queue = []

    def _put(self, item: Any) -> None:
        heapq.heappush(self._queue, item)

    def _get(self) -> Any:
        return heapq.heappop(self._queue)


class LifoQueue(Queue):
    """A ``Queue`` that hands out the item put in most recently first (a stack)."""

    def _init(self) -> None:
        self._queue = []

    def _put(self, item: Any) -> None:
        self._queue.append(item)

    def _get(self) -> Any:
        return self._queue.pop()
