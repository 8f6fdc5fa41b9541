"""Tests for tornado_lite.queues: Queue, PriorityQueue, LifoQueue, QueueFull, QueueEmpty.

They encode Tornado 6's behaviour, so they also run against real Tornado:
``TORNADO_LITE_TEST_IMPL=tornado pytest tests/test_queues.py`` (in a venv that has tornado).  The few
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
queues = importlib.import_module(impl + ".queues")
ioloop = importlib.import_module(impl + ".ioloop")
gen = importlib.import_module(impl + ".gen")

lite_only = pytest.mark.skipif(impl != "tornado_lite", reason="tornado_lite improves on Tornado 6.6.1 here")

FAR = datetime.timedelta(seconds=60)
SHORT = datetime.timedelta(seconds=0.01)
QUEUE_CLASSES = [queues.Queue, queues.PriorityQueue, queues.LifoQueue]


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
    for _ in range(n):
        await gen.sleep(0)


async def until(predicate: Callable[[], bool], limit: int = 200) -> None:
    for _ in range(limit):
        if predicate():
            return
        await gen.sleep(0)
    assert predicate()


def spawn(coro: Any) -> Any:
    return gen.convert_yielded(coro)


async def cancel_and_wait(task: Any) -> None:
    task.cancel()
    await until(task.done)


# -- basics -------------------------------------------------------------------------------------------


def test_exceptions() -> None:
    assert issubclass(queues.QueueEmpty, Exception)
    assert issubclass(queues.QueueFull, Exception)
    assert not issubclass(queues.QueueEmpty, queues.QueueFull)


@async_test
async def test_repr_and_str() -> None:
    q = queues.Queue(maxsize=1)
    assert hex(id(q)) in repr(q)
    assert hex(id(q)) not in str(q)
    assert str(q) == "<Queue maxsize=1>"
    q.get()
    for text in (repr(q), str(q)):
        assert text.startswith("<Queue")
        assert "maxsize=1" in text
        assert "getters[1]" in text
        assert "putters" not in text and "tasks" not in text
    q.put("a")  # handed straight to the waiting getter
    q.put("b")
    q.put("c")  # the queue is full: this putter waits
    for text in (repr(q), str(q)):
        assert "getters" not in text
        assert "queue=deque(['b'])" in text
        assert "putters[1]" in text
        assert "tasks=2" in text  # a waiting put is not a task yet
    assert str(queues.LifoQueue()).startswith("<LifoQueue maxsize=0")


@async_test
async def test_maxsize_validation_and_state() -> None:
    with pytest.raises(TypeError):
        queues.Queue(maxsize=None)
    with pytest.raises(ValueError):
        queues.Queue(maxsize=-1)
    q = queues.Queue(maxsize=2)
    assert q.maxsize == 2
    assert q.empty() and not q.full() and q.qsize() == 0
    assert q.put(0).done()
    assert q.put(1).done()
    assert not q.empty() and q.full() and q.qsize() == 2
    put2 = q.put(2)
    assert not put2.done()
    assert (await q.get()) == 0  # makes room: the waiting put goes in
    assert put2.done()
    assert q.full() and q.qsize() == 2


@async_test
async def test_unbounded_queue_is_never_full() -> None:
    q = queues.Queue()
    assert q.maxsize == 0
    for i in range(1000):
        q.put_nowait(i)
    assert not q.full() and q.qsize() == 1000
    assert [q.get_nowait() for _ in range(1000)] == list(range(1000))


@async_test
async def test_float_maxsize_is_a_real_limit() -> None:
    q = queues.Queue(maxsize=1.3)
    q.put_nowait(0)
    q.put_nowait(1)
    assert q.full()
    with pytest.raises(queues.QueueFull):
        q.put_nowait(2)
    assert q.get_nowait() == 0
    assert not q.full()
    await q.put(2)
    put = q.put(3)
    assert not put.done()
    assert (await q.get()) == 1
    await put
    assert q.full()


def test_generic_subscription() -> None:
    q: Any = queues.Queue[int]()
    assert isinstance(q, queues.Queue)


# -- nowait -------------------------------------------------------------------------------------------


@async_test
async def test_nowait_fifo_and_exceptions() -> None:
    q = queues.Queue(maxsize=3)
    with pytest.raises(queues.QueueEmpty):
        q.get_nowait()
    for i in [1, 3, 2]:
        q.put_nowait(i)
    with pytest.raises(queues.QueueFull):
        q.put_nowait(4)
    assert [q.get_nowait() for _ in range(3)] == [1, 3, 2]
    with pytest.raises(queues.QueueEmpty):
        q.get_nowait()


@async_test
async def test_put_nowait_hands_item_to_waiting_getter() -> None:
    q = queues.Queue()
    get0, get1 = q.get(), q.get()
    q.put_nowait(0)
    assert get0.done() and not get1.done()
    assert q.empty()  # the item went straight to the getter
    assert (await get0) == 0
    q.put_nowait(1)
    assert (await get1) == 1


@async_test
async def test_get_nowait_lets_a_waiting_putter_in() -> None:
    q = queues.Queue(1)
    q.put_nowait(0)
    put = q.put(1)
    assert not put.done()
    assert q.get_nowait() == 0
    assert put.done() and (await put) is None
    assert q.get_nowait() == 1


# -- waiting get / put --------------------------------------------------------------------------------


@async_test
async def test_get_waits_for_put() -> None:
    q = queues.Queue()
    loop = ioloop.IOLoop.current()
    loop.call_later(0.001, q.put_nowait, "x")
    assert (await q.get(timeout=FAR)) == "x"


@async_test
async def test_waiting_getters_are_served_in_order() -> None:
    q = queues.Queue()
    got: List[Any] = []

    async def consumer(name: str) -> None:
        got.append((name, await q.get()))

    tasks = [spawn(consumer(name)) for name in "abcd"]
    await passes()
    for i in range(4):
        q.put_nowait(i)
    await gen.multi(tasks)
    assert got == [("a", 0), ("b", 1), ("c", 2), ("d", 3)]


@async_test
async def test_waiting_putters_are_served_in_order() -> None:
    q = queues.Queue(maxsize=1)
    q.put_nowait("first")
    puts = [q.put(i) for i in range(4)]
    assert not any(p.done() for p in puts)
    assert [(await q.get()) for _ in range(5)] == ["first", 0, 1, 2, 3]
    assert all(p.done() for p in puts)


@async_test
async def test_get_timeout() -> None:
    q = queues.Queue()
    timed = q.get(timeout=SHORT)
    waiting = q.get()
    with pytest.raises(builtins.TimeoutError):
        await timed
    # The item goes to the getter still waiting, not to the one that timed out.
    q.put_nowait(0)
    assert (await waiting) == 0
    loop = ioloop.IOLoop.current()
    with pytest.raises(TimeoutError):
        await q.get(timeout=loop.time() + 0.01)
    with pytest.raises(TimeoutError):
        await q.get(timeout=0)
    with pytest.raises(TimeoutError):
        await q.get(timeout=datetime.timedelta(0))
    assert q.empty()


@async_test
async def test_get_with_item_available_ignores_timeout() -> None:
    q = queues.Queue()
    q.put_nowait(5)
    f = q.get(timeout=0)
    assert f.done()
    assert (await f) == 5


@async_test
async def test_get_timeout_preempted() -> None:
    q = queues.Queue()
    get = q.get(timeout=datetime.timedelta(seconds=0.02))
    q.put(0)
    await gen.sleep(0.05)
    assert (await get) == 0


@async_test
async def test_put_timeout_drops_the_item() -> None:
    q = queues.Queue(1)
    q.put_nowait(0)
    timed = q.put(1, timeout=SHORT)
    waiting = q.put(2)
    with pytest.raises(TimeoutError):
        await timed
    assert q.get_nowait() == 0
    assert (await q.get()) == 2  # 1 never went in
    await waiting
    q.put_nowait(3)
    with pytest.raises(TimeoutError):
        await q.put(4, timeout=ioloop.IOLoop.current().time() + 0.01)
    assert q.get_nowait() == 3
    assert q.empty()


@async_test
async def test_put_timeout_preempted() -> None:
    q = queues.Queue(1)
    q.put_nowait(0)
    put = q.put(1, timeout=datetime.timedelta(seconds=0.02))
    q.get()
    await gen.sleep(0.05)
    await put
    assert q.get_nowait() == 1


# -- cancellation -------------------------------------------------------------------------------------


@async_test
async def test_cancelled_getter_does_not_swallow_an_item() -> None:
    q = queues.Queue()
    cancelled, waiting = q.get(), q.get()
    assert cancelled.cancel()
    q.put_nowait("item")
    assert (await waiting) == "item"
    assert q.empty()


@async_test
async def test_cancelled_consumer_task_leaves_the_line() -> None:
    q = queues.Queue()
    got: List[Any] = []

    async def consumer(name: str) -> None:
        got.append((name, await q.get()))

    a, b = spawn(consumer("a")), spawn(consumer("b"))
    await passes()
    await cancel_and_wait(a)
    assert a.cancelled()
    q.put_nowait(1)
    await b
    assert got == [("b", 1)]


@async_test
async def test_cancelled_putter_does_not_put_its_item() -> None:
    q = queues.Queue(maxsize=1)
    q.put_nowait(0)
    cancelled, waiting = q.put(1), q.put(2)
    assert cancelled.cancel()
    assert q.get_nowait() == 0
    await waiting
    assert q.get_nowait() == 2
    assert q.empty()


# -- task_done / join ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", QUEUE_CLASSES)
def test_task_done_underflow(cls: Any) -> None:
    q = cls()
    with pytest.raises(ValueError):
        q.task_done()


@pytest.mark.parametrize("cls", QUEUE_CLASSES)
@async_test
async def test_join_waits_for_task_done_not_get(cls: Any) -> None:
    q = cls()
    q.put_nowait(0)
    q.put_nowait(1)
    join = spawn(q.join())
    await passes()
    assert not join.done()
    q.get_nowait()
    q.get_nowait()
    await passes()
    assert not join.done()  # taking items out is not finishing them
    q.task_done()
    await passes()
    assert not join.done()
    q.task_done()
    await join
    with pytest.raises(ValueError):
        q.task_done()


@pytest.mark.parametrize("cls", QUEUE_CLASSES)
@async_test
async def test_join_empty_queue_returns(cls: Any) -> None:
    q = cls()
    await q.join()
    await q.join(timeout=FAR)


@pytest.mark.parametrize("cls", QUEUE_CLASSES)
@async_test
async def test_join_timeout(cls: Any) -> None:
    q = cls()
    q.put(0)
    with pytest.raises(TimeoutError):
        await q.join(timeout=SHORT)
    with pytest.raises(TimeoutError):
        await q.join(timeout=ioloop.IOLoop.current().time() + 0.01)
    q.get_nowait()
    q.task_done()
    await q.join(timeout=FAR)


@pytest.mark.parametrize("cls", QUEUE_CLASSES)
@async_test
async def test_workers_share_the_work(cls: Any) -> None:
    q = cls()
    for i in range(100):
        q.put_nowait(i)
    seen: List[int] = []

    async def worker() -> None:
        while True:
            item = await q.get()
            seen.append(item)
            q.task_done()
            await gen.sleep(0)

    workers = [spawn(worker()), spawn(worker())]
    await q.join()
    assert sorted(seen) == list(range(100))
    for w in workers:
        await cancel_and_wait(w)


# -- ordering of the subclasses -----------------------------------------------------------------------


@async_test
async def test_priority_queue_order_with_waiting_putters() -> None:
    q = queues.PriorityQueue(maxsize=2)
    q.put_nowait((1, "a"))
    q.put_nowait((0, "b"))
    assert q.full()
    q.put((3, "c"))
    q.put((2, "d"))
    assert q.get_nowait() == (0, "b")
    assert (await q.get()) == (1, "a")
    assert q.get_nowait() == (2, "d")
    assert (await q.get()) == (3, "c")
    assert q.empty()


@async_test
async def test_lifo_queue_order_with_waiting_putters() -> None:
    q = queues.LifoQueue(maxsize=2)
    q.put_nowait(1)
    q.put_nowait(0)
    assert q.full()
    q.put(3)
    q.put(2)
    assert q.get_nowait() == 3
    assert (await q.get()) == 2
    assert q.get_nowait() == 0
    assert (await q.get()) == 1
    assert q.empty()


@async_test
async def test_subclass_storage_hooks() -> None:
    class SetQueue(queues.Queue):
        """Keeps one copy of each item, handing out the smallest first."""

        def _init(self) -> None:
            self._queue = set()

        def _put(self, item: Any) -> None:
            self._queue.add(item)

        def _get(self) -> Any:
            item = min(self._queue)
            self._queue.discard(item)
            return item

    q = SetQueue()
    getter = q.get()
    q.put_nowait(7)  # goes through _put and _get on its way to the waiting getter
    assert (await getter) == 7
    for item in [5, 3, 5, 9, 3]:
        q.put_nowait(item)
    assert q.qsize() == 3
    assert "queue=" in str(q)
    assert [q.get_nowait() for _ in range(3)] == [3, 5, 9]
    with pytest.raises(queues.QueueEmpty):
        q.get_nowait()


# -- async for, producers and consumers ---------------------------------------------------------------


@async_test
async def test_async_for() -> None:
    q = queues.Queue()
    for i in range(5):
        q.put(i)

    async def consume() -> List[int]:
        results = []
        async for item in q:
            results.append(item)
            if item == 4:
                return results
        raise AssertionError("unreachable")

    assert (await consume()) == list(range(5))


@async_test
async def test_async_for_waits_for_items() -> None:
    q = queues.Queue()
    results: List[int] = []

    async def consume() -> None:
        async for item in q:
            results.append(item)
            q.task_done()
            if item == 2:
                return

    task = spawn(consume())
    for i in range(3):
        await passes()
        assert results == list(range(i))
        await q.put(i)
    await task
    await q.join()


@async_test
async def test_bounded_queue_backpressure() -> None:
    q = queues.Queue(maxsize=2)
    produced: List[int] = []

    async def producer() -> None:
        for i in range(6):
            await q.put(i)
            produced.append(i)

    task = spawn(producer())
    await until(lambda: len(produced) == 2)
    await passes()
    # The queue is full: the producer is stuck putting item 2.
    assert produced == [0, 1]
    assert q.full() and "putters[1]" in str(q)
    for step in range(4):
        assert q.get_nowait() == step
        q.task_done()
        # One slot freed lets exactly one more item in, and the producer waits again.
        await until(lambda step=step: len(produced) == 3 + step)
        await passes()
        assert len(produced) == 3 + step
        assert q.qsize() == 2
    await task
    assert produced == list(range(6))
    assert [q.get_nowait(), q.get_nowait()] == [4, 5]


@async_test
async def test_producer_consumer() -> None:
    q = queues.Queue(maxsize=3)
    history: List[int] = []
    largest = [0]

    async def consumer() -> None:
        async for item in q:
            history.append(item)
            await gen.sleep(0)
            q.task_done()

    async def producer() -> None:
        for item in range(30):
            await q.put(item)
            largest[0] = max(largest[0], q.qsize())
            assert q.qsize() <= 3

    worker = spawn(consumer())
    await producer()
    await q.join()
    assert history == list(range(30))
    assert largest[0] == 3  # the producer ran ahead until the queue was full, never further
    await cancel_and_wait(worker)


@async_test
async def test_producer_consumer_generator_coroutines() -> None:
    # The shape of Tornado's own example: get() must not resolve inline, or join() would return early.
    q = queues.Queue(maxsize=3)
    history: List[int] = []

    @gen.coroutine
    def consumer() -> Any:
        while True:
            history.append((yield q.get()))
            q.task_done()

    @gen.coroutine
    def producer() -> Any:
        for item in range(10):
            yield q.put(item)

    worker = consumer()
    await producer()
    await q.join()
    assert history == list(range(10))
    await cancel_and_wait(worker)


# -- dead waiters do not pile up ----------------------------------------------------------------------


@async_test
async def test_polling_get_with_timeout_does_not_grow() -> None:
    q = queues.Queue()
    for _ in range(2_000):
        with pytest.raises(TimeoutError):
            await q.get(timeout=datetime.timedelta(0))
    assert len(q._getters) <= 1
    q.put_nowait("x")
    assert (await q.get(FAR)) == "x"


@async_test
async def test_polling_put_with_timeout_does_not_grow() -> None:
    q = queues.Queue(maxsize=1)
    q.put_nowait(0)
    for i in range(2_000):
        with pytest.raises(TimeoutError):
            await q.put(i, timeout=datetime.timedelta(0))
    assert len(q._putters) <= 1
    assert q.get_nowait() == 0
    assert q.empty()


@lite_only
@async_test
async def test_timed_out_getters_behind_a_live_one_are_pruned() -> None:
    # Tornado 6.6.1 only drops dead waiters from the head of the line, so with a consumer waiting
    # without a timeout at the head, 10,000 timed-out gets stay queued until an item arrives.
    q = queues.Queue()
    live = q.get()
    futures = [q.get(timeout=0) for _ in range(10_000)]
    for f in futures:
        with pytest.raises(TimeoutError):
            await f
    refs = [weakref.ref(f) for f in futures]
    del futures, f
    await passes()
    gc.collect()
    assert len(q._getters) <= 200
    assert sum(1 for r in refs if r() is not None) <= 200
    q.put_nowait("x")
    assert (await live) == "x"


@lite_only
@async_test
async def test_timed_out_and_cancelled_putters_behind_a_live_one_are_pruned() -> None:
    q = queues.Queue(maxsize=1)
    q.put_nowait(0)
    live = q.put(1)
    timed = [q.put(i, timeout=0) for i in range(5_000)]
    for _ in range(5_000):
        q.put("never").cancel()
    for f in timed:
        with pytest.raises(TimeoutError):
            await f
    del timed, f
    await passes()
    assert len(q._putters) <= 200
    assert q.get_nowait() == 0
    await live
    assert q.get_nowait() == 1
    assert q.empty()
    assert len(q._putters) == 0
