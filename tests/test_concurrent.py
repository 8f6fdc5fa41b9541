"""Tests for tornado_lite.concurrent: the Future, and the helpers that bridge futures, threads and executors.

They encode Tornado 6's behaviour, so they also run against real Tornado:
``TORNADO_LITE_TEST_IMPL=tornado pytest tests/test_concurrent.py`` (in a venv that has tornado).  Only the
assertions about tornado_lite's own internals (``__slots__``, futures used with no loop at all) are
skipped there.
"""

import concurrent.futures
import gc
import importlib
import logging
import os
import sys
import threading
import time
import types
import weakref

import pytest

impl = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
tc = importlib.import_module(impl + ".concurrent")
gen = importlib.import_module(impl + ".gen")
ioloop = importlib.import_module(impl + ".ioloop")
IOLoop = ioloop.IOLoop
Future = tc.Future

if impl == "tornado":
    import asyncio  # real Tornado's futures are asyncio's

    CancelledError = asyncio.CancelledError
    InvalidStateError = asyncio.InvalidStateError
else:
    CancelledError = concurrent.futures.CancelledError
    InvalidStateError = concurrent.futures.InvalidStateError

lite_only = pytest.mark.skipif(impl != "tornado_lite", reason="checks tornado_lite internals, not Tornado behaviour")


@pytest.fixture
def io_loop():
    loop = IOLoop(make_current=False)
    yield loop
    loop.close()


def run(loop, func, timeout=10):
    return loop.run_sync(func, timeout=timeout)


@types.coroutine
def next_pass():
    """Lets the loop run one pass: a bare ``yield`` inside ``await`` (what ``asyncio.sleep(0)`` does)."""
    yield


# -- the Future itself -------------------------------------------------------------------------


def test_result_and_state(io_loop) -> None:
    async def main():
        fut = Future()
        assert not fut.done() and not fut.cancelled()
        with pytest.raises(InvalidStateError):
            fut.result()
        with pytest.raises(InvalidStateError):
            fut.exception()
        fut.set_result(42)
        assert fut.done() and not fut.cancelled()
        assert fut.result() == 42
        assert fut.exception() is None
        with pytest.raises(InvalidStateError):
            fut.set_result(43)
        with pytest.raises(InvalidStateError):
            fut.set_exception(ValueError())
        assert fut.cancel() is False
        assert fut.result() == 42

    run(io_loop, main)


def test_exception(io_loop) -> None:
    async def main():
        fut = Future()
        error = ValueError("boom")
        fut.set_exception(error)
        assert fut.done() and not fut.cancelled()
        assert fut.exception() is error
        with pytest.raises(ValueError, match="boom"):
            fut.result()
        # An exception class is instantiated.
        fut2 = Future()
        fut2.set_exception(KeyError)
        assert isinstance(fut2.exception(), KeyError)
        # StopIteration cannot travel through a coroutine's send(): refused.
        with pytest.raises(TypeError):
            Future().set_exception(StopIteration())

    run(io_loop, main)


def test_cancel(io_loop) -> None:
    async def main():
        fut = Future()
        assert fut.cancel() is True
        assert fut.cancelled() and fut.done()
        assert fut.cancel() is False
        with pytest.raises(CancelledError):
            fut.result()
        with pytest.raises(CancelledError):
            fut.exception()
        with pytest.raises(InvalidStateError):
            fut.set_result(1)
        with pytest.raises(CancelledError):
            await fut

    run(io_loop, main)


def test_cancellation_error_is_concurrent_futures() -> None:
    if impl == "tornado":
        pytest.skip("real Tornado raises asyncio.CancelledError")
    assert tc.CancelledError is concurrent.futures.CancelledError
    fut = Future()
    fut.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result()


def test_await_and_yield_from(io_loop) -> None:
    @types.coroutine
    def legacy(fut):
        return (yield from fut)

    async def main():
        fut = Future()
        io_loop.add_callback(fut.set_result, "awaited")
        assert await fut == "awaited"
        assert await fut == "awaited"  # awaiting a finished future again gives the same result
        fut2 = Future()
        io_loop.add_callback(fut2.set_result, "yielded from")
        assert await legacy(fut2) == "yielded from"
        failing = Future()
        io_loop.add_callback(failing.set_exception, RuntimeError("x"))
        with pytest.raises(RuntimeError):
            await legacy(failing)
        return "done"

    assert run(io_loop, main) == "done"


def test_yield_from_in_gen_coroutine(io_loop) -> None:
    @gen.coroutine
    def f():
        fut = Future()
        IOLoop.current().add_callback(fut.set_result, 7)
        value = yield from fut
        return value * 2

    assert run(io_loop, f) == 14


def test_generic_subscript() -> None:
    assert Future[int] is not None


@lite_only
def test_future_has_slots_and_no_dict() -> None:
    fut = Future()
    assert not hasattr(fut, "__dict__")
    with pytest.raises(AttributeError):
        fut.some_attribute = 1
    assert weakref.ref(fut)() is fut


# -- done-callbacks ------------------------------------------------------------------------------


def test_done_callbacks_run_on_a_later_loop_pass(io_loop) -> None:
    async def main():
        fut = Future()
        calls = []
        fut.add_done_callback(lambda f: calls.append(("first", f)))
        fut.add_done_callback(lambda f: calls.append(("second", f)))
        fut.set_result(1)
        assert calls == []  # not inside set_result
        await next_pass()
        assert calls == [("first", fut), ("second", fut)]
        # A callback added to a future that is already done is also deferred to the loop.
        fut.add_done_callback(lambda f: calls.append(("late", f)))
        assert len(calls) == 2
        await next_pass()
        assert calls[-1] == ("late", fut)

    run(io_loop, main)


def test_done_callbacks_on_exception_and_cancel(io_loop) -> None:
    async def main():
        seen = []
        failed = Future()
        failed.add_done_callback(lambda f: seen.append(type(f.exception())))
        failed.set_exception(ZeroDivisionError())
        cancelled = Future()
        cancelled.add_done_callback(lambda f: seen.append(f.cancelled()))
        cancelled.cancel()
        assert seen == []
        await next_pass()
        assert seen == [ZeroDivisionError, True]

    run(io_loop, main)


def test_remove_done_callback(io_loop) -> None:
    async def main():
        fut = Future()
        calls = []

        def cb(f):
            calls.append("cb")

        def other(f):
            calls.append("other")

        fut.add_done_callback(cb)
        fut.add_done_callback(other)
        fut.add_done_callback(cb)
        assert fut.remove_done_callback(cb) == 2
        assert fut.remove_done_callback(cb) == 0
        fut.set_result(None)
        await next_pass()
        assert calls == ["other"]

    run(io_loop, main)


def test_removing_the_only_done_callback_then_adding_others(io_loop) -> None:
    async def main():
        fut = Future()
        calls = []

        def cb(f):
            calls.append("cb")

        def other(f):
            calls.append("other")

        fut.add_done_callback(cb)
        assert fut.remove_done_callback(other) == 0  # not the one registered: cb stays
        assert fut.remove_done_callback(cb) == 1
        assert fut.remove_done_callback(cb) == 0
        fut.add_done_callback(other)
        fut.add_done_callback(cb)
        assert fut.remove_done_callback(other) == 1  # one of two removed: the other still runs
        fut.add_done_callback(other)
        fut.set_result(None)
        await next_pass()
        assert calls == ["cb", "other"]

    run(io_loop, main)


def test_failure_and_cancel_reach_the_one_callback_left_after_a_removal(io_loop) -> None:
    async def main():
        seen = []

        def unwanted(f):
            seen.append("unwanted")

        failed = Future()
        failed.add_done_callback(unwanted)
        failed.add_done_callback(lambda f: seen.append(type(f.exception())))
        failed.remove_done_callback(unwanted)
        failed.set_exception(ZeroDivisionError())
        cancelled = Future()
        cancelled.add_done_callback(unwanted)
        cancelled.add_done_callback(lambda f: seen.append(f.cancelled()))
        cancelled.remove_done_callback(unwanted)
        cancelled.cancel()
        emptied = Future()
        emptied.add_done_callback(unwanted)
        emptied.remove_done_callback(unwanted)
        emptied.cancel()
        await next_pass()
        assert seen == [ZeroDivisionError, True]

    run(io_loop, main)


def test_coroutines_and_plain_callbacks_waiting_on_one_future_all_run(io_loop) -> None:
    # A coroutine waiting alone, then joined by a plain callback and a second coroutine; and a plain
    # callback first, then a coroutine: every waiter is woken, in the order it started waiting.
    async def main():
        order = []

        async def waiter(fut, name):
            order.append((name, await fut))

        first = Future()
        a = gen.convert_yielded(waiter(first, "a"))
        await next_pass()
        first.add_done_callback(lambda f: order.append(("cb1", f.result())))
        b = gen.convert_yielded(waiter(first, "b"))
        await next_pass()
        first.set_result(1)
        await gen.multi([a, b])
        second = Future()
        second.add_done_callback(lambda f: order.append(("cb2", f.result())))
        c = gen.convert_yielded(waiter(second, "c"))
        await next_pass()
        second.set_result(2)
        await c
        return order

    assert run(io_loop, main) == [("a", 1), ("cb1", 1), ("b", 1), ("cb2", 2), ("c", 2)]


def test_done_callback_exception_is_logged_and_loop_goes_on(io_loop, caplog) -> None:
    async def main():
        fut = Future()
        calls = []

        def bad(f):
            raise RuntimeError("callback failed")

        fut.add_done_callback(bad)
        fut.add_done_callback(lambda f: calls.append(f.result()))
        fut.set_result(5)
        await next_pass()
        await next_pass()
        return calls

    with caplog.at_level(logging.ERROR):
        assert run(io_loop, main) == [5]
    records = [r for r in caplog.records if "Exception in callback" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info[1].args == ("callback failed",)
    if impl == "tornado_lite":
        assert records[0].name == "tornado.application"


@lite_only
def test_without_a_loop_callbacks_run_at_once() -> None:
    IOLoop.clear_current()
    fut = Future()
    calls = []
    fut.add_done_callback(calls.append)
    fut.set_result(1)
    assert calls == [fut]


@lite_only
def test_without_a_loop_one_or_several_callbacks_run_at_once_on_failure_and_cancel() -> None:
    IOLoop.clear_current()
    calls = []
    failed = Future()
    failed.add_done_callback(calls.append)
    failed.set_exception(ValueError())
    cancelled = Future()
    cancelled.add_done_callback(calls.append)
    cancelled.add_done_callback(calls.append)
    cancelled.cancel()
    assert calls == [failed, cancelled, cancelled]
    assert isinstance(failed.exception(), ValueError)


def test_done_callback_from_another_thread_wakes_the_loop(io_loop) -> None:
    async def main():
        fut = Future()
        fut.add_done_callback(lambda f: None)  # binds the future to this loop
        thread = threading.Thread(target=lambda: io_loop.add_callback(fut.set_result, "from thread"))
        thread.start()
        result = await fut
        thread.join()
        return result

    assert run(io_loop, main) == "from thread"


# -- unretrieved exceptions ------------------------------------------------------------------------


def _never_retrieved_records(caplog, text):
    found = []
    for record in caplog.records:
        message = record.getMessage()
        if "never retrieved" not in message:
            continue
        detail = message
        if record.exc_info:
            detail += logging.Formatter().formatException(record.exc_info)
        if text in detail:
            found.append(record)
    return found


def test_unretrieved_exception_is_logged(io_loop, caplog) -> None:
    async def main():
        fut = Future()
        fut.set_exception(ValueError("nobody looked at me"))
        del fut
        gc.collect()

    with caplog.at_level(logging.ERROR):
        run(io_loop, main)
    records = _never_retrieved_records(caplog, "nobody looked at me")
    assert len(records) == 1
    if impl == "tornado_lite":
        assert records[0].name == "tornado.application"


def test_retrieved_exception_is_not_logged(io_loop, caplog) -> None:
    async def main():
        by_result = Future()
        by_result.set_exception(ValueError("looked at via result"))
        with pytest.raises(ValueError):
            by_result.result()
        by_exception = Future()
        by_exception.set_exception(ValueError("looked at via exception"))
        assert by_exception.exception() is not None
        by_await = Future()
        by_await.set_exception(ValueError("looked at via await"))
        with pytest.raises(ValueError):
            await by_await
        del by_result, by_exception, by_await
        gc.collect()

    with caplog.at_level(logging.ERROR):
        run(io_loop, main)
    assert [r for r in caplog.records if "never retrieved" in r.getMessage()] == []


# -- helpers -------------------------------------------------------------------------------------


def test_is_future() -> None:
    assert tc.is_future(concurrent.futures.Future())
    assert not tc.is_future(42)
    assert not tc.is_future(None)
    assert not tc.is_future(object())


def test_is_future_on_our_futures(io_loop) -> None:
    async def main():
        assert tc.is_future(Future())

        async def coro():
            return 1

        c = coro()
        assert not tc.is_future(c)
        c.close()

    run(io_loop, main)


def test_future_set_result_unless_cancelled(io_loop) -> None:
    async def main():
        fut = Future()
        tc.future_set_result_unless_cancelled(fut, 42)
        assert fut.result() == 42
        cancelled = Future()
        cancelled.cancel()
        tc.future_set_result_unless_cancelled(cancelled, 42)  # no InvalidStateError
        assert cancelled.cancelled()
        conc = concurrent.futures.Future()
        tc.future_set_result_unless_cancelled(conc, "c")
        assert conc.result() == "c"

    run(io_loop, main)


def test_future_set_exception_unless_cancelled(io_loop, caplog) -> None:
    async def main():
        fut = Future()
        tc.future_set_exception_unless_cancelled(fut, KeyError("k"))
        assert isinstance(fut.exception(), KeyError)
        cancelled = Future()
        cancelled.cancel()
        with caplog.at_level(logging.ERROR, logger="tornado.application"):
            tc.future_set_exception_unless_cancelled(cancelled, KeyError("after cancel"))
        assert cancelled.cancelled()

    run(io_loop, main)
    records = [r for r in caplog.records if "Exception after Future was cancelled" in r.getMessage()]
    assert len(records) == 1
    assert records[0].name == "tornado.application"
    assert records[0].exc_info[1].args == ("after cancel",)


def test_future_set_exc_info(io_loop, caplog) -> None:
    async def main():
        fut = Future()
        try:
            raise ValueError("from exc_info")
        except ValueError:
            tc.future_set_exc_info(fut, sys.exc_info())
        with pytest.raises(ValueError, match="from exc_info") as info:
            fut.result()
        assert info.traceback  # the original traceback travels with it
        with pytest.raises(Exception, match="no exception"):
            tc.future_set_exc_info(Future(), (None, None, None))
        cancelled = Future()
        cancelled.cancel()
        try:
            raise ValueError("late")
        except ValueError:
            with caplog.at_level(logging.ERROR):
                tc.future_set_exc_info(cancelled, sys.exc_info())  # logged, not raised
        assert cancelled.cancelled()

    run(io_loop, main)
    assert any("Exception after Future was cancelled" in r.getMessage() for r in caplog.records)


def test_future_add_done_callback_is_immediate_when_done(io_loop) -> None:
    async def main():
        calls = []
        done = Future()
        done.set_result(1)
        tc.future_add_done_callback(done, calls.append)
        assert calls == [done]  # synchronously, before returning
        pending = Future()
        tc.future_add_done_callback(pending, calls.append)
        assert calls == [done]
        pending.set_result(2)
        await next_pass()
        assert calls == [done, pending]
        conc = concurrent.futures.Future()
        conc.set_result(3)
        tc.future_add_done_callback(conc, calls.append)
        assert calls[-1] is conc

    run(io_loop, main)


def test_chain_future_result_exception_cancel(io_loop) -> None:
    async def main():
        a, b = Future(), Future()
        tc.chain_future(a, b)
        a.set_result(42)
        assert await b == 42

        a, b = Future(), Future()
        tc.chain_future(a, b)
        a.set_exception(KeyError("chained"))
        with pytest.raises(KeyError):
            await b

        # Tornado 6.6: cancelling a cancels b.
        a, b = Future(), Future()
        tc.chain_future(a, b)
        a.cancel()
        with pytest.raises(CancelledError):
            await b
        assert b.cancelled()

        # b already finished: a's outcome is dropped without error.
        a, b = Future(), Future()
        tc.chain_future(a, b)
        b.set_result("first")
        a.set_result("second")
        await next_pass()
        assert b.result() == "first"

        # a already done when chained.
        a, b = Future(), Future()
        a.set_result("early")
        tc.chain_future(a, b)
        assert await b == "early"

    run(io_loop, main)


def test_chain_future_from_a_thread(io_loop) -> None:
    async def main():
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            started = threading.Event()

            def work():
                started.wait(5)
                return threading.get_ident()

            ours = Future()
            tc.chain_future(pool.submit(work), ours)
            started.set()
            ident = await ours
            assert ident != threading.get_ident()

            # concurrent -> concurrent -> ours, and a failure crossing threads.
            def fail():
                raise OSError("in thread")

            c1 = pool.submit(fail)
            c2 = concurrent.futures.Future()
            ours2 = Future()
            tc.chain_future(c1, c2)
            tc.chain_future(c2, ours2)
            with pytest.raises(OSError, match="in thread"):
                await ours2
            assert isinstance(c2.exception(timeout=5), OSError)

            # A cancelled concurrent future cancels the chained ones.
            c3 = concurrent.futures.Future()
            c4 = concurrent.futures.Future()
            ours3 = Future()
            tc.chain_future(c3, c4)
            tc.chain_future(c4, ours3)
            c3.cancel()
            with pytest.raises(CancelledError):
                await ours3
            assert c4.cancelled() and ours3.cancelled()

    run(io_loop, main)


# -- executors -------------------------------------------------------------------------------------


def test_dummy_executor() -> None:
    assert isinstance(tc.dummy_executor, tc.DummyExecutor)
    assert isinstance(tc.dummy_executor, concurrent.futures.Executor)
    caller = threading.get_ident()
    fut = tc.dummy_executor.submit(lambda x, y=0: (threading.get_ident(), x + y), 1, y=2)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.done()
    assert fut.result() == (caller, 3)
    failed = tc.DummyExecutor().submit(lambda: 1 / 0)
    assert failed.done()
    assert isinstance(failed.exception(), ZeroDivisionError)
    tc.dummy_executor.shutdown()
    assert tc.dummy_executor.submit(lambda: "still works").result() == "still works"  # shutdown is a no-op


class _Worker:
    def __init__(self) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(1)
        self.other = concurrent.futures.ThreadPoolExecutor(1)

    @tc.run_on_executor
    def plain(self, x, y=1):
        return (threading.current_thread().name, x * y)

    @tc.run_on_executor(executor="other")
    def named(self, x):
        if x < 0:
            raise ValueError("negative")
        return x + 1

    @tc.run_on_executor()
    def called_empty(self):
        return "empty call"

    def close(self):
        self.executor.shutdown()
        self.other.shutdown()


def test_run_on_executor_both_forms(io_loop) -> None:
    worker = _Worker()

    async def main():
        fut = worker.plain(6, y=7)
        assert isinstance(fut, Future)
        name, value = await fut
        assert value == 42
        assert name != threading.current_thread().name
        assert await worker.named(1) == 2
        with pytest.raises(ValueError, match="negative"):
            await worker.named(-1)
        assert await worker.called_empty() == "empty call"

    try:
        run(io_loop, main)
    finally:
        worker.close()
    assert _Worker.plain.__name__ == "plain"  # functools.wraps


def test_run_on_executor_in_gen_coroutine(io_loop) -> None:
    worker = _Worker()

    @gen.coroutine
    def main():
        _, value = yield worker.plain(2, 3)
        return value

    try:
        assert run(io_loop, main) == 6
    finally:
        worker.close()


def test_run_on_executor_argument_errors() -> None:
    with pytest.raises(ValueError):
        tc.run_on_executor(lambda self: None, executor="x")
    with pytest.raises(ValueError):
        tc.run_on_executor(1, 2)


def test_run_on_executor_with_dummy_executor(io_loop) -> None:
    class Inline:
        executor = tc.dummy_executor

        @tc.run_on_executor
        def work(self):
            return threading.get_ident()

    async def main():
        return await Inline().work()

    assert run(io_loop, main) == threading.get_ident()


def test_return_value_ignored_error() -> None:
    assert issubclass(tc.ReturnValueIgnoredError, Exception)
    with pytest.raises(tc.ReturnValueIgnoredError):
        raise tc.ReturnValueIgnoredError("x")


@lite_only  # asyncio's futures are not thread-safe: set_result from another thread does not wake its loop
@pytest.mark.parametrize("waiters", [1, 3])
def test_set_result_from_another_thread_wakes_a_loop_blocked_in_poll(io_loop, waiters) -> None:
    # The loop is blocked in poll (no timer due for the whole test) when another thread resolves the
    # future directly: its one waiter (kept bare) or several (a list) must still run promptly.
    started = threading.Event()

    async def main():
        fut = Future()
        seen = []
        for _ in range(waiters - 1):
            fut.add_done_callback(lambda f: seen.append(f.result()))

        def resolve():
            started.wait(10)
            time.sleep(0.05)  # let the loop settle into poll; correctness does not depend on it
            fut.set_result("from thread")

        thread = threading.Thread(target=resolve)
        thread.start()
        io_loop.add_callback(started.set)
        result = await fut
        thread.join()
        await next_pass()
        return result, seen

    assert run(io_loop, main) == ("from thread", ["from thread"] * (waiters - 1))
