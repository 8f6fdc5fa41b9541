"""Tests for tornado_lite.locks: Condition, Event, Semaphore, BoundedSemaphore, Lock.

They encode Tornado 6's behaviour, so they also run against real Tornado:
``TORNADO_LITE_TEST_IMPL=tornado pytest tests/test_locks.py`` (in a venv that has tornado).  The few
tests of places where tornado_lite deliberately does better than Tornado 6.6.1 say so and are skipped
there.
"""

import builtins
import datetime
import functools
import gc
import importlib
import os
import weakref
from typing import Any, Callable, List

import pytest

impl = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
locks = importlib.import_module(impl + ".locks")
ioloop = importlib.import_module(impl + ".ioloop")
gen = importlib.import_module(impl + ".gen")

lite_only = pytest.mark.skipif(impl != "tornado_lite", reason="tornado_lite improves on Tornado 6.6.1 here")

# Deadlines far enough away that they never pass while a test is running, however loaded the machine.
FAR = datetime.timedelta(seconds=60)
SHORT = datetime.timedelta(seconds=0.01)


def async_test(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Runs an ``async def`` test to completion on a fresh IOLoop, which is closed afterwards."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        loop = ioloop.IOLoop(make_current=False)
        try:
            return loop.run_sync(functools.partial(fn, *args, **kwargs), timeout=60)
        finally:
            loop.close(all_fds=True)

    return wrapper


async def passes(n: int = 3) -> None:
    """Lets the loop run a few passes (callbacks scheduled by resolved futures run meanwhile)."""
    for _ in range(n):
        await gen.sleep(0)


async def until(predicate: Callable[[], bool], limit: int = 200) -> None:
    """Lets the loop run until ``predicate()`` holds (bounded in passes, not in time)."""
    for _ in range(limit):
        if predicate():
            return
        await gen.sleep(0)
    assert predicate()


def spawn(coro: Any) -> Any:
    """Starts a coroutine as a task on the current loop and returns its future."""
    return gen.convert_yielded(coro)


# -- Condition ----------------------------------------------------------------------------------------


@async_test
async def test_condition_repr_counts_waiters() -> None:
    c = locks.Condition()
    assert "Condition" in repr(c)
    assert "waiters" not in repr(c)
    c.wait()
    c.wait()
    assert "waiters[2]" in repr(c)
    c.notify_all()
    assert "waiters" not in repr(c)


@async_test
async def test_condition_notify_wakes_a_waiter_on_a_later_pass() -> None:
    c = locks.Condition()
    history: List[str] = []

    async def waiter() -> None:
        history.append("waiting")
        result = await c.wait()
        history.append(f"woken {result}")

    task = spawn(waiter())
    await until(lambda: history == ["waiting"])
    c.notify()
    history.append("notified")
    await task
    # The waiter did not run inside notify().
    assert history == ["waiting", "notified", "woken True"]


@async_test
async def test_condition_notify_one_at_a_time_in_fifo_order() -> None:
    c = locks.Condition()
    history: List[Any] = []
    for i in range(4):
        c.wait().add_done_callback(lambda f, i=i: history.append((i, f.result())))
    c.notify()
    await passes()
    assert history == [(0, True)]
    c.notify()
    await passes()
    assert history == [(0, True), (1, True)]


@async_test
async def test_condition_notify_n_and_notify_all() -> None:
    c = locks.Condition()
    history: List[int] = []
    for i in range(6):
        c.wait().add_done_callback(lambda f, i=i: history.append(i))
    c.notify(3)
    await passes()
    assert history == [0, 1, 2]
    c.notify(1)
    await passes()
    assert history == [0, 1, 2, 3]
    c.notify_all()
    await passes()
    assert history == [0, 1, 2, 3, 4, 5]
    # Notifying nobody is harmless.
    c.notify()
    c.notify_all()


@async_test
async def test_condition_wait_timeout_timedelta_resolves_false() -> None:
    c = locks.Condition()
    assert (await c.wait(SHORT)) is False
    # A notify after the deadline goes to nobody; the next waiter is not pre-notified.
    c.notify()
    w = c.wait()
    await passes()
    assert not w.done()
    c.notify()
    assert (await w) is True


@async_test
async def test_condition_wait_timeout_absolute_deadline() -> None:
    c = locks.Condition()
    loop = ioloop.IOLoop.current()
    assert (await c.wait(timeout=loop.time() + 0.01)) is False
    # A deadline already in the past (zero included) times out on the next pass, not never.
    assert (await c.wait(timeout=0)) is False
    assert (await c.wait(timeout=datetime.timedelta(0))) is False


@async_test
async def test_condition_notify_before_deadline_wins() -> None:
    c = locks.Condition()
    w = c.wait(datetime.timedelta(seconds=0.02))
    c.notify()
    await gen.sleep(0.05)  # well past the deadline: its timer must have been disarmed
    assert (await w) is True


@async_test
async def test_condition_timed_out_waiters_do_not_count_against_n() -> None:
    c = locks.Condition()
    history: List[Any] = []

    def record(f: Any, key: Any) -> None:
        history.append(key if f.result() else "timeout")

    c.wait().add_done_callback(lambda f: record(f, 0))
    timed = c.wait(SHORT)
    timed.add_done_callback(lambda f: record(f, 1))
    c.wait().add_done_callback(lambda f: record(f, 2))
    c.wait().add_done_callback(lambda f: record(f, 3))
    await timed
    await passes()
    assert history == ["timeout"]
    c.notify(2)
    await passes()
    assert history == ["timeout", 0, 2]
    c.notify_all()
    await passes()
    assert history == ["timeout", 0, 2, 3]


@async_test
async def test_condition_nested_notify_loses_nothing() -> None:
    c = locks.Condition()
    futures = [c.wait() for _ in range(3)]
    # Waking the second waiter notifies once more, from inside its callback: the third must wake.
    futures[1].add_done_callback(lambda _: c.notify())
    c.notify(2)
    await until(lambda: all(f.done() for f in futures))
    assert [f.result() for f in futures] == [True, True, True]


@async_test
async def test_condition_cancelled_waiter_is_skipped() -> None:
    c = locks.Condition()
    first, second = c.wait(), c.wait()
    assert first.cancel()
    c.notify()
    assert (await second) is True
    assert first.cancelled()


@async_test
async def test_condition_cancelled_task_leaves_the_line() -> None:
    c = locks.Condition()
    woken: List[str] = []

    async def waiter(name: str) -> None:
        await c.wait()
        woken.append(name)

    a, b = spawn(waiter("a")), spawn(waiter("b"))
    await passes()
    a.cancel()
    await until(lambda: a.done())
    assert a.cancelled()
    c.notify()  # goes to b, not to the cancelled a
    await b
    assert woken == ["b"]


@async_test
async def test_condition_garbage_collects_timed_out_waiters() -> None:
    c = locks.Condition()
    live = c.wait()  # a live waiter at the head: the dead ones pile up behind it
    futures = [c.wait(timeout=0) for _ in range(10_000)]
    assert len(c._waiters) == 10_001
    assert (await gen.multi(futures)) == [False] * 10_000
    refs = [weakref.ref(f) for f in futures]
    del futures
    await passes()  # the loop may hold the last callback's arguments until it runs another one
    gc.collect()
    assert len(c._waiters) <= 200
    assert sum(1 for r in refs if r() is not None) <= 200
    assert not live.done()
    c.notify()
    assert (await live) is True


@async_test
async def test_condition_repeated_short_waits_do_not_grow() -> None:
    c = locks.Condition()
    live = c.wait()
    for _ in range(2_000):
        assert (await c.wait(timeout=datetime.timedelta(0))) is False
    assert len(c._waiters) <= 200
    c.notify()
    assert (await live) is True


# -- Event --------------------------------------------------------------------------------------------


@async_test
async def test_event_repr() -> None:
    e = locks.Event()
    assert "clear" in str(e) and "set" not in str(e)
    e.set()
    assert "set" in str(e) and "clear" not in str(e)


@async_test
async def test_event_set_clear_is_set() -> None:
    e = locks.Event()
    assert not e.is_set()
    e.set()
    e.set()
    assert e.is_set()
    e.clear()
    assert not e.is_set()
    e.clear()
    assert not e.is_set()


@async_test
async def test_event_wait_returns_at_once_when_set() -> None:
    e = locks.Event()
    e.set()
    f = e.wait()
    assert f.done()
    assert (await f) is None
    assert e.wait(timeout=SHORT).done()


@async_test
async def test_event_set_wakes_every_waiter() -> None:
    e = locks.Event()
    before = [e.wait() for _ in range(5)]
    assert not any(f.done() for f in before)
    e.set()
    assert all(f.done() for f in before)
    e.clear()
    after = e.wait()
    assert not after.done()
    e.set()
    assert after.done()
    assert (await gen.multi(before + [after])) == [None] * 6


@async_test
async def test_event_waiter_started_before_clear_is_still_woken() -> None:
    e = locks.Event()
    f0 = e.wait()
    e.clear()
    f1 = e.wait()
    e.set()
    assert f0.done() and f1.done()


@async_test
async def test_event_wait_timeout_raises_builtin_timeout_error() -> None:
    e = locks.Event()
    with pytest.raises(builtins.TimeoutError):
        await e.wait(SHORT)
    loop = ioloop.IOLoop.current()
    with pytest.raises(TimeoutError):
        await e.wait(loop.time() + 0.01)
    # After timed-out waiters, the event works as before.
    loop.add_timeout(SHORT, e.set)
    await e.wait(FAR)
    assert e.is_set()


@async_test
async def test_event_set_before_deadline_wins() -> None:
    e = locks.Event()
    w = e.wait(datetime.timedelta(seconds=0.02))
    e.set()
    await gen.sleep(0.05)
    assert (await w) is None


@async_test
async def test_event_cancelled_waiter_does_not_disturb_the_others() -> None:
    e = locks.Event()
    a, b = e.wait(), e.wait(FAR)
    assert a.cancel()
    e.set()
    assert a.cancelled()
    assert (await b) is None


@async_test
async def test_event_timed_out_waiters_are_forgotten() -> None:
    e = locks.Event()
    futures = [e.wait(timeout=0) for _ in range(10_000)]
    for f in futures:
        with pytest.raises(TimeoutError):
            await f
    refs = [weakref.ref(f) for f in futures]
    del futures, f
    await until(lambda: len(e._waiters) == 0)
    await passes()  # the loop may hold the last callback's arguments until it runs another one
    gc.collect()
    assert sum(1 for r in refs if r() is not None) == 0


# -- Semaphore ----------------------------------------------------------------------------------------


def test_semaphore_negative_value() -> None:
    with pytest.raises(ValueError):
        locks.Semaphore(value=-1)


@async_test
async def test_semaphore_repr() -> None:
    sem = locks.Semaphore()
    assert "Semaphore" in repr(sem)
    assert "unlocked,value:1" in repr(sem)
    sem.acquire()
    assert "locked" in repr(sem)
    assert "waiters" not in repr(sem)
    sem.acquire()
    assert "waiters:1" in repr(sem)


@async_test
async def test_semaphore_acquire_and_release_in_fifo_order() -> None:
    sem = locks.Semaphore()
    assert sem.acquire().done()
    f1, f2 = sem.acquire(), sem.acquire()
    assert not f1.done() and not f2.done()
    sem.release()
    assert f1.done() and not f2.done()
    sem.release()
    assert f2.done()
    sem.release()
    assert sem.acquire().done()
    assert not sem.acquire().done()


@async_test
async def test_semaphore_unbounded_release_raises_the_counter() -> None:
    sem = locks.Semaphore()
    sem.release()
    sem.release()
    assert [sem.acquire().done() for _ in range(4)] == [True, True, True, False]


@async_test
async def test_semaphore_zero_blocks_until_released() -> None:
    sem = locks.Semaphore(0)
    f = sem.acquire()
    await passes()
    assert not f.done()
    sem.release()
    await f


@async_test
async def test_semaphore_acquire_timeout() -> None:
    sem = locks.Semaphore(2)
    await sem.acquire()
    await sem.acquire()
    with pytest.raises(TimeoutError):
        await sem.acquire(SHORT)
    loop = ioloop.IOLoop.current()
    with pytest.raises(TimeoutError):
        await sem.acquire(loop.time() + 0.01)
    with pytest.raises(TimeoutError):
        await sem.acquire(0)
    # The timed-out acquires took nothing: one release frees exactly one slot.
    sem.release()
    assert sem.acquire().done()
    f = sem.acquire()
    assert not f.done()
    sem.release()
    assert f.done()


@async_test
async def test_semaphore_release_before_deadline_wins() -> None:
    sem = locks.Semaphore(1)
    await sem.acquire()
    f = sem.acquire(datetime.timedelta(seconds=0.02))
    sem.release()
    await gen.sleep(0.05)
    await f  # no TimeoutError


@async_test
async def test_semaphore_limits_concurrency_and_serves_in_order() -> None:
    sem = locks.Semaphore(2)
    inside: List[int] = []
    most = [0]
    order: List[int] = []

    async def worker(i: int) -> None:
        async with sem:
            order.append(i)
            inside.append(i)
            most[0] = max(most[0], len(inside))
            await gen.sleep(0)
            await gen.sleep(0)
            inside.remove(i)

    await gen.multi([worker(i) for i in range(8)])
    assert most[0] == 2
    assert order == list(range(8))
    assert "unlocked,value:2" in repr(sem)


@async_test
async def test_semaphore_async_with_releases_on_exception() -> None:
    sem = locks.Semaphore()

    async def f() -> None:
        async with sem as entered:
            assert entered is None
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await f()
    assert sem.acquire().done()


@async_test
async def test_async_with_goes_through_an_overridden_acquire() -> None:
    calls: List[Any] = []

    class CountingSemaphore(locks.Semaphore):
        def acquire(self, timeout: Any = None) -> Any:
            calls.append(("sem", timeout))
            return super().acquire(timeout)

    class CountingLock(locks.Lock):
        def acquire(self, timeout: Any = None) -> Any:
            calls.append(("lock", timeout))
            return super().acquire(timeout)

    sem, lock = CountingSemaphore(), CountingLock()
    async with sem:
        async with lock:
            pass
    assert calls == [("sem", None), ("lock", None)]
    assert sem.acquire().done() and lock.acquire().done()


@async_test
async def test_semaphore_old_style_with_yield_acquire() -> None:
    sem = locks.Semaphore()

    @gen.coroutine
    def f() -> Any:
        with (yield sem.acquire()) as yielded:
            assert yielded is None
            assert "unlocked" not in repr(sem)  # held inside the block
        with (yield sem.acquire(FAR)):
            pass
        with pytest.raises(ZeroDivisionError):
            with (yield sem.acquire()):
                raise ZeroDivisionError

    await f()
    assert sem.acquire().done()


@async_test
async def test_semaphore_old_style_timeout_error_takes_nothing() -> None:
    sem = locks.Semaphore(value=0)

    @gen.coroutine
    def f() -> Any:
        with pytest.raises(TimeoutError):
            with (yield sem.acquire(SHORT)):
                pass

    await f()
    assert not sem.acquire().done()


@async_test
async def test_semaphore_old_style_contended() -> None:
    sem = locks.Semaphore()
    history: List[str] = []

    @gen.coroutine
    def f(i: int) -> Any:
        with (yield sem.acquire()):
            history.append("acquired %d" % i)
            yield gen.sleep(0.001)
            history.append("release %d" % i)

    await gen.multi([f(i) for i in range(3)])
    assert history == ["acquired 0", "release 0", "acquired 1", "release 1", "acquired 2", "release 2"]


@async_test
async def test_semaphore_misuse() -> None:
    with pytest.raises(RuntimeError):
        with locks.Semaphore():
            pass

    @gen.coroutine
    def f() -> Any:
        with (yield locks.Semaphore()):
            pass

    with pytest.raises(gen.BadYieldError):
        await f()


@async_test
async def test_semaphore_cancelled_waiter_does_not_take_a_slot() -> None:
    sem = locks.Semaphore(0)
    cancelled, waiting = sem.acquire(), sem.acquire(FAR)
    assert cancelled.cancel()
    sem.release()
    await waiting
    # The slot went to the live waiter and was not counted twice.
    assert not sem.acquire().done()


@async_test
async def test_semaphore_cancelled_task_does_not_break_it() -> None:
    sem = locks.Semaphore(1)
    await sem.acquire()
    entered: List[str] = []

    async def user(name: str) -> None:
        async with sem:
            entered.append(name)

    a, b = spawn(user("a")), spawn(user("b"))
    await passes()
    a.cancel()
    await until(lambda: a.done())
    sem.release()
    await b
    assert entered == ["b"]
    assert "unlocked,value:1" in repr(sem)


@async_test
async def test_semaphore_garbage_collects_timed_out_waiters() -> None:
    sem = locks.Semaphore(value=0)
    live = sem.acquire()
    futures = [sem.acquire(timeout=0) for _ in range(10_000)]
    for f in futures:
        with pytest.raises(TimeoutError):
            await f
    refs = [weakref.ref(f) for f in futures]
    del futures, f
    await passes()  # the loop may hold the last callback's arguments until it runs another one
    gc.collect()
    assert len(sem._waiters) <= 200
    assert sum(1 for r in refs if r() is not None) <= 200
    assert not live.done()
    sem.release()
    await live


@async_test
async def test_semaphore_many_cancelled_waiters_do_not_pile_up() -> None:
    sem = locks.Semaphore(value=0)
    live = sem.acquire()
    for _ in range(10_000):
        sem.acquire().cancel()
    await passes()
    # Tornado 6.6.1 keeps cancelled waiters until a release walks past them; tornado_lite drops them
    # as they leave, so the line stays short while nobody releases.
    if impl == "tornado_lite":
        assert len(sem._waiters) <= 200
    sem.release()
    await live
    if impl == "tornado_lite":
        assert len(sem._waiters) == 0
    assert not sem.acquire().done()


# -- BoundedSemaphore ---------------------------------------------------------------------------------


@async_test
async def test_bounded_semaphore_rejects_over_release() -> None:
    sem = locks.BoundedSemaphore()
    with pytest.raises(ValueError):
        sem.release()
    assert sem.acquire().done()
    waiting = sem.acquire()
    assert not waiting.done()
    sem.release()  # hands the slot to the waiter: the counter stays 0
    assert waiting.done()
    sem.release()
    with pytest.raises(ValueError):
        sem.release()
    assert isinstance(sem, locks.Semaphore)


@async_test
async def test_bounded_semaphore_larger_value() -> None:
    sem = locks.BoundedSemaphore(3)
    for _ in range(3):
        await sem.acquire()
    for _ in range(3):
        sem.release()
    with pytest.raises(ValueError):
        sem.release()
    assert "unlocked,value:3" in repr(sem)


# -- Lock ---------------------------------------------------------------------------------------------


@async_test
async def test_lock_repr() -> None:
    lock = locks.Lock()
    assert "Lock" in repr(lock) and "unlocked" in repr(lock)
    lock.acquire()
    assert "locked" in repr(lock) and "unlocked" not in repr(lock)


@async_test
async def test_lock_acquire_release() -> None:
    lock = locks.Lock()
    assert lock.acquire().done()
    f = lock.acquire()
    assert not f.done()
    lock.release()
    assert f.done()
    lock.release()
    assert lock.acquire().done()


@async_test
async def test_lock_release_unlocked_raises_runtime_error() -> None:
    lock = locks.Lock()
    with pytest.raises(RuntimeError):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


@async_test
async def test_lock_fifo_async_with() -> None:
    lock = locks.Lock()
    await lock.acquire()
    history: List[int] = []

    async def f(i: int) -> None:
        async with lock:
            history.append(i)
            await gen.sleep(0)

    futures = [spawn(f(i)) for i in range(5)]
    await passes()
    assert not any(fut.done() for fut in futures)
    lock.release()
    await gen.multi(futures)
    assert history == list(range(5))


@async_test
async def test_lock_fifo_old_style() -> None:
    lock = locks.Lock()
    await lock.acquire()
    history: List[int] = []

    @gen.coroutine
    def f(i: int) -> Any:
        with (yield lock.acquire()):
            history.append(i)

    futures = [f(i) for i in range(5)]
    assert not any(fut.done() for fut in futures)
    lock.release()
    await gen.multi(futures)
    assert history == list(range(5))


@async_test
async def test_lock_excludes_across_awaits() -> None:
    lock = locks.Lock()
    holders: List[int] = []
    overlaps = [0]
    total = [0]

    async def worker(i: int) -> None:
        for _ in range(5):
            async with lock:
                holders.append(i)
                if len(holders) > 1:
                    overlaps[0] += 1
                value = total[0]
                await gen.sleep(0)
                total[0] = value + 1
                holders.remove(i)

    await gen.multi([worker(i) for i in range(6)])
    assert overlaps[0] == 0
    assert total[0] == 30


@async_test
async def test_lock_acquire_timeout_leaves_it_locked() -> None:
    lock = locks.Lock()
    lock.acquire()
    with pytest.raises(TimeoutError):
        await lock.acquire(timeout=SHORT)
    with pytest.raises(TimeoutError):
        await lock.acquire(timeout=ioloop.IOLoop.current().time() + 0.01)
    assert not lock.acquire().done()


@async_test
async def test_lock_misuse() -> None:
    with pytest.raises(RuntimeError):
        with locks.Lock():
            pass

    @gen.coroutine
    def f() -> Any:
        with (yield locks.Lock()):
            pass

    with pytest.raises(gen.BadYieldError):
        await f()


@async_test
async def test_lock_cancelled_waiting_task_does_not_break_it() -> None:
    lock = locks.Lock()
    await lock.acquire()
    entered: List[str] = []

    async def user(name: str) -> None:
        async with lock:
            entered.append(name)

    a, b, c = spawn(user("a")), spawn(user("b")), spawn(user("c"))
    await passes()
    b.cancel()
    await until(lambda: b.done())
    lock.release()
    await gen.multi([a, c])
    assert entered == ["a", "c"]
    assert lock.acquire().done()


@lite_only
@async_test
async def test_lock_granted_then_cancelled_before_resuming_is_given_back() -> None:
    # The lock is handed to a waiting task, which is cancelled before it gets to run.  ``async with``
    # never reaches its body, so nobody would release the lock: Tornado 6.6.1 stays locked forever.
    lock = locks.Lock()
    await lock.acquire()

    async def user() -> None:
        async with lock:
            raise AssertionError("must not enter")

    task = spawn(user())
    await passes()
    lock.release()  # granted to task's waiter
    task.cancel()
    await until(lambda: task.done())
    assert task.cancelled()
    assert lock.acquire().done()


@async_test
async def test_lock_garbage_collects_timed_out_waiters() -> None:
    lock = locks.Lock()
    await lock.acquire()
    live = lock.acquire()
    for _ in range(2_000):
        with pytest.raises(TimeoutError):
            await lock.acquire(timeout=datetime.timedelta(0))
    assert len(lock._block._waiters) <= 200
    lock.release()
    await live
    lock.release()
