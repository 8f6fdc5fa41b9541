"""Tests for tornado_lite.gen: coroutines (``@gen.coroutine`` and ``async def``) on tornado_lite's own loop,
and the helpers around them (convert_yielded, multi, with_timeout, sleep, moment, WaitIterator).

They encode Tornado 6's behaviour, so they also run against real Tornado:
``TORNADO_LITE_TEST_IMPL=tornado pytest tests/test_gen.py`` (in a venv that has tornado).  Only assertions
about tornado_lite's own extensions (awaiting ``gen.moment`` or a converted concurrent future in an
``async def``) are skipped there.
"""

import concurrent.futures
import contextvars
import datetime
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
gen = importlib.import_module(impl + ".gen")
ioloop = importlib.import_module(impl + ".ioloop")
tc = importlib.import_module(impl + ".concurrent")
IOLoop = ioloop.IOLoop
Future = tc.Future

if impl == "tornado":
    import asyncio  # real Tornado's cancellation error is asyncio's

    CancelledError = asyncio.CancelledError
else:
    CancelledError = concurrent.futures.CancelledError

lite_only = pytest.mark.skipif(impl != "tornado_lite", reason="a tornado_lite extension, not Tornado behaviour")

SAFETY = 20  # seconds: an upper bound for waits, never an expectation


@pytest.fixture
def io_loop():
    loop = IOLoop(make_current=False)
    yield loop
    loop.close()


def run(loop, func, timeout=SAFETY):
    return loop.run_sync(func, timeout=timeout)


@types.coroutine
def next_pass():
    """A bare ``yield`` inside ``await``: the coroutine resumes on the loop's next pass."""
    yield


@gen.coroutine
def delayed(value, passes=1):
    for _ in range(passes):
        yield gen.moment
    return value


@gen.coroutine
def delayed_error(exc, passes=1):
    for _ in range(passes):
        yield gen.moment
    raise exc


# -- @gen.coroutine ------------------------------------------------------------------------------


def test_coroutine_return_forms(io_loop) -> None:
    @gen.coroutine
    def raise_return():
        yield gen.moment
        raise gen.Return(42)

    @gen.coroutine
    def plain_return():
        yield gen.moment
        return (1, 2)

    @gen.coroutine
    def sync_raise_return():
        raise gen.Return("sync")

    @gen.coroutine
    def no_yield():
        return "no yield"

    @gen.coroutine
    def bare_return():
        yield gen.moment
        return

    @gen.coroutine
    def empty_return_exception():
        raise gen.Return()

    @gen.coroutine
    def main():
        results = []
        for f in (raise_return, plain_return, sync_raise_return, no_yield, bare_return, empty_return_exception):
            results.append((yield f()))
        return results

    assert run(io_loop, main) == [42, (1, 2), "sync", "no yield", None, None]


def test_coroutine_returns_a_future_and_runs_its_first_step_at_once(io_loop) -> None:
    steps = []

    @gen.coroutine
    def f():
        steps.append("first step")
        yield gen.moment
        steps.append("second step")
        return "done"

    async def main():
        fut = f()
        assert tc.is_future(fut)
        assert steps == ["first step"]  # synchronously, up to the first yield
        assert not fut.done()
        return await fut

    assert run(io_loop, main) == "done"
    assert steps == ["first step", "second step"]


def test_coroutine_exceptions_are_delivered_through_the_future(io_loop) -> None:
    @gen.coroutine
    def fails_at_once():
        return 1 / 0

    @gen.coroutine
    def fails_later():
        yield gen.moment
        raise KeyError("later")

    async def main():
        early = fails_at_once()  # not raised by the call
        late = fails_later()
        with pytest.raises(ZeroDivisionError):
            await early
        with pytest.raises(KeyError):
            await late

    run(io_loop, main)


def test_coroutine_raising_cancelled_error_is_cancelled(io_loop) -> None:
    @gen.coroutine
    def at_once():
        raise CancelledError()

    @gen.coroutine
    def later():
        yield gen.moment
        raise CancelledError()

    async def main():
        for fut in (at_once(), later()):
            with pytest.raises(CancelledError):
                await fut
            assert fut.cancelled()

    run(io_loop, main)


def test_coroutine_yielding_a_cancelled_future(io_loop) -> None:
    @gen.coroutine
    def waits_on(fut):
        yield fut

    @gen.coroutine
    def catches():
        fut = Future()
        IOLoop.current().add_callback(fut.cancel)
        try:
            yield fut
        except CancelledError:
            pass
        yield gen.moment
        return "caught"

    async def main():
        already = Future()
        already.cancel()
        outer = waits_on(already)
        with pytest.raises(CancelledError):
            await outer
        assert outer.cancelled()
        pending = Future()
        outer = waits_on(pending)
        io_loop.add_callback(pending.cancel)
        with pytest.raises(CancelledError):
            await outer
        assert outer.cancelled()
        return await catches()

    assert run(io_loop, main) == "caught"


def test_coroutine_catches_and_replaces_exceptions(io_loop) -> None:
    @gen.coroutine
    def replaces():
        try:
            yield delayed_error(ZeroDivisionError())
        except ZeroDivisionError:
            raise KeyError("replaced")

    @gen.coroutine
    def swallows():
        try:
            yield delayed_error(ZeroDivisionError())
        except ZeroDivisionError:
            raise gen.Return("swallowed")

    async def main():
        with pytest.raises(KeyError):
            await replaces()
        return await swallows()

    assert run(io_loop, main) == "swallowed"


def test_exception_context_does_not_leak_between_yields(io_loop) -> None:
    class Leaked(Exception):
        pass

    @gen.coroutine
    def inner(i):
        raise Leaked(i)

    @gen.coroutine
    def main():
        contexts = []
        for i in range(2):
            try:
                yield inner(i)
            except Leaked as e:
                contexts.append((str(e), e.__context__))
        return contexts

    assert run(io_loop, main) == [("0", None), ("1", None)]


def test_coroutine_attributes_and_is_coroutine_function() -> None:
    def plain_gen():
        yield gen.moment

    async def native():
        pass

    wrapped = gen.coroutine(plain_gen)
    assert wrapped.__name__ == "plain_gen"
    assert wrapped.__module__ == plain_gen.__module__
    assert wrapped.__wrapped__ is plain_gen
    assert gen.is_coroutine_function(wrapped)
    assert not gen.is_coroutine_function(native)  # Tornado: only @gen.coroutine functions count
    assert not gen.is_coroutine_function(plain_gen)
    assert not gen.is_coroutine_function(lambda: None)


def test_coroutine_result_is_not_a_coroutine_function(io_loop) -> None:
    async def main():
        fut = delayed(1)
        assert not gen.is_coroutine_function(fut)
        return await fut

    assert run(io_loop, main) == 1


def test_bad_yields(io_loop) -> None:
    @gen.coroutine
    def yields_int():
        yield 42

    @gen.coroutine
    def yields_tuple():
        yield (delayed(1), delayed(2))

    with pytest.raises(gen.BadYieldError):
        io_loop.run_sync(yields_int)
    with pytest.raises(gen.BadYieldError):
        io_loop.run_sync(yields_tuple)


def test_coroutine_is_reusable_and_releases_locals(io_loop) -> None:
    refs = []

    @gen.coroutine
    def inner():
        class Local:
            pass

        local = Local()
        refs.append(weakref.ref(local))
        yield gen.moment
        raise ValueError("error")

    @gen.coroutine
    def outer():
        try:
            yield inner()
        except ValueError:
            pass

    io_loop.run_sync(outer)
    io_loop.run_sync(outer)
    gc.collect()
    assert [r() for r in refs] == [None, None]


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="relies on CPython's reference counting")
@pytest.mark.parametrize("style", ["gen", "native", "native task", "gen after moment"])
def test_failed_coroutines_are_freed_by_refcount(io_loop, style) -> None:
    # A failure must not leave the coroutine's locals in a reference cycle (exception -> traceback ->
    # frame -> future -> exception): they go as soon as nothing refers to them, without the cyclic GC.
    if style == "gen after moment" and impl == "tornado":
        pytest.skip("Tornado's own runner keeps this case in a cycle; tornado_lite does better")
    refs = []

    class Local:
        pass

    @gen.coroutine
    def gen_inner():
        local = Local()
        refs.append(weakref.ref(local))
        if style == "gen after moment":
            yield gen.moment
        else:
            yield gen.coroutine(lambda: None)()
        raise ValueError("error")

    async def native_inner():
        local = Local()
        refs.append(weakref.ref(local))
        await gen.sleep(0)
        raise ValueError("error")

    async def outer():
        try:
            if style.startswith("gen"):
                await gen_inner()
            elif style == "native":
                await native_inner()
            else:
                await gen.convert_yielded(native_inner())
        except ValueError:
            pass

    gc.collect()
    gc.disable()
    try:
        io_loop.run_sync(outer)
        assert [r() for r in refs] == [None]
    finally:
        gc.enable()


# -- native coroutines ---------------------------------------------------------------------------


def test_native_and_decorated_coroutines_await_each_other(io_loop) -> None:
    async def native(x):
        await next_pass()
        return await delayed(x + 1)

    @gen.coroutine
    def decorated(x):
        y = yield native(x)
        return y * 10

    async def main():
        return await decorated(1), await gen.multi([native(5), decorated(2)])

    assert run(io_loop, main) == (20, [6, 30])


def test_native_coroutine_awaits_our_future(io_loop) -> None:
    async def main():
        fut = Future()
        io_loop.call_later(0.001, fut.set_result, "later")
        return await fut

    assert run(io_loop, main) == "later"


def test_bare_yield_resumes_on_the_next_pass(io_loop) -> None:
    order = []

    async def main():
        io_loop.add_callback(order.append, "callback queued first")
        order.append("before yield")
        await next_pass()
        order.append("after yield")

    run(io_loop, main)
    assert order == ["before yield", "callback queued first", "after yield"]


def test_yield_none_in_gen_coroutine_gives_up_one_pass(io_loop) -> None:
    order = []

    @gen.coroutine
    def main():
        IOLoop.current().add_callback(order.append, "callback")
        order.append("before")
        yield None
        order.append("after")

    run(io_loop, main)
    assert order == ["before", "callback", "after"]


def test_converted_native_coroutine_starts_on_the_next_pass(io_loop) -> None:
    started = []

    async def child():
        started.append(True)
        return "child"

    async def main():
        fut = gen.convert_yielded(child())
        assert tc.is_future(fut)
        assert started == []
        return await fut

    assert run(io_loop, main) == "child"


def test_cancelling_a_running_coroutine_raises_inside_it(io_loop) -> None:
    seen = []

    async def sleeper():
        try:
            await gen.sleep(3600)
        except CancelledError:
            seen.append("cancelled inside")
            raise

    async def swallower():
        try:
            await gen.sleep(3600)
        except CancelledError:
            seen.append("swallowed")
        return "carried on"

    async def main():
        task = gen.convert_yielded(sleeper())
        await next_pass()
        await next_pass()
        assert task.cancel() is True
        with pytest.raises(CancelledError):
            await task
        assert task.cancelled()
        other = gen.convert_yielded(swallower())
        await next_pass()
        await next_pass()
        other.cancel()
        return await other

    assert run(io_loop, main) == "carried on"
    assert seen == ["cancelled inside", "swallowed"]


def test_cancelled_error_type(io_loop) -> None:
    if impl == "tornado":
        pytest.skip("real Tornado raises asyncio.CancelledError")

    async def main():
        task = gen.convert_yielded(_await(gen.sleep(3600)))
        await next_pass()
        task.cancel()
        try:
            await task
        except BaseException as exc:
            return type(exc)

    assert run(io_loop, main) is concurrent.futures.CancelledError


async def _await(fut):
    return await fut


def test_awaiting_many_resolved_futures_does_not_recurse(io_loop) -> None:
    n = 100_000

    def resolved(i):
        fut = Future()
        fut.set_result(i)
        return fut

    async def native():
        total = 0
        for i in range(n):
            total += await resolved(i)
        return total

    @gen.coroutine
    def decorated():
        total = 0
        for i in range(n):
            total += yield resolved(i)
        return total

    expected = n * (n - 1) // 2
    assert run(io_loop, native, timeout=120) == expected
    assert run(io_loop, decorated, timeout=120) == expected


def test_chain_of_a_thousand_tasks_does_not_recurse(io_loop) -> None:
    depth = 1000
    assert depth >= sys.getrecursionlimit() // 2

    async def link(n):
        if n == 0:
            await next_pass()
            return 0
        return 1 + await gen.convert_yielded(link(n - 1))

    async def spawned_link(n, results):
        if n == 0:
            results.append(0)
            return
        done = Future()

        async def child():
            inner = []
            await spawned_link(n - 1, inner)
            done.set_result(inner[0] + 1)

        IOLoop.current().spawn_callback(child)
        results.append(await done)

    async def via_spawn():
        out = []
        await spawned_link(depth, out)  # every level is its own task: no deep Python stack
        return out[0]

    assert run(io_loop, lambda: link(depth), timeout=120) == depth
    assert run(io_loop, via_spawn, timeout=120) == depth


def test_chain_of_spawned_callbacks(io_loop) -> None:
    # Each link is its own task (spawn_callback of a coroutine function), resolved one after another.
    depth = 1000

    async def main():
        futures = [Future() for _ in range(depth + 1)]

        async def link(i):
            value = await futures[i + 1]
            futures[i].set_result(value + 1)

        for i in range(depth):
            IOLoop.current().spawn_callback(link, i)
        futures[depth].set_result(0)
        return await futures[0]

    assert run(io_loop, main, timeout=120) == depth


# -- context variables ---------------------------------------------------------------------------

ctx_var: contextvars.ContextVar = contextvars.ContextVar("tornado_lite_test_ctx_var")


def test_each_task_has_its_own_context(io_loop) -> None:
    async def native_task(x, log):
        ctx_var.set(x)
        for _ in range(3):
            await next_pass()
            log.append((x, ctx_var.get()))

    @gen.coroutine
    def gen_task(x, log):
        ctx_var.set(x)
        for _ in range(3):
            yield gen.moment
            log.append((x, ctx_var.get()))

    async def main():
        ctx_var.set("parent")
        log = []
        await gen.multi([native_task(1, log), native_task(2, log), gen_task(3, log), gen_task(4, log)])
        # Interleaved, and each saw only its own value; the parent's value is untouched.
        assert sorted(set(log)) == [(1, 1), (2, 2), (3, 3), (4, 4)]
        assert len(log) == 12
        return ctx_var.get()

    assert run(io_loop, main) == "parent"


def test_context_is_inherited_at_creation(io_loop) -> None:
    async def child():
        return ctx_var.get("unset")

    @gen.coroutine
    def gen_child():
        yield gen.moment
        return ctx_var.get("unset")

    async def main():
        ctx_var.set("inherited")
        results = await gen.multi([child(), gen_child()])
        ctx_var.set("changed afterwards")
        return results

    assert run(io_loop, main) == ["inherited", "inherited"]


def test_context_token_reset_across_yields(io_loop) -> None:
    @gen.coroutine
    def main():
        token = ctx_var.set(1)
        yield None
        yield gen.moment
        ctx_var.reset(token)  # still the same context: reset is allowed
        return "reset"

    assert run(io_loop, main) == "reset"


def test_run_in_executor_does_not_copy_context(io_loop) -> None:
    async def main():
        ctx_var.set("loop thread")
        in_thread = await io_loop.run_in_executor(None, lambda: ctx_var.get("unset in thread"))
        return in_thread, ctx_var.get()

    assert run(io_loop, main) == ("unset in thread", "loop thread")


# -- convert_yielded -----------------------------------------------------------------------------


def test_convert_yielded_kinds(io_loop) -> None:
    async def coro():
        return "coro"

    async def main():
        ours = Future()
        assert gen.convert_yielded(ours) is ours
        assert gen.convert_yielded(None) is gen.moment
        assert gen.convert_yielded(gen.moment) is gen.moment
        converted = gen.convert_yielded(coro())
        assert tc.is_future(converted)
        assert await converted == "coro"
        many = gen.convert_yielded([delayed(1), delayed(2)])
        assert await many == [1, 2]
        keyed = gen.convert_yielded({"a": delayed("A"), "b": delayed("B", 2)})
        assert await keyed == {"a": "A", "b": "B"}
        with pytest.raises(gen.BadYieldError):
            gen.convert_yielded(42)
        with pytest.raises(gen.BadYieldError):
            gen.convert_yielded("a string")

    run(io_loop, main)


def test_yield_concurrent_future(io_loop) -> None:
    @gen.coroutine
    def main():
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            value = yield pool.submit(lambda: threading.get_ident())
        return value

    assert run(io_loop, main) != threading.get_ident()


@lite_only  # Tornado's multi() resolves from the worker thread without waking the loop (it waits for a timer)
def test_multi_with_a_concurrent_future_from_a_thread(io_loop) -> None:
    @gen.coroutine
    def main():
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            both = yield [pool.submit(abs, -1), delayed(2)]
        return both

    assert run(io_loop, main) == [1, 2]


@lite_only
def test_convert_yielded_makes_concurrent_futures_awaitable(io_loop) -> None:
    async def main():
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fut = gen.convert_yielded(pool.submit(lambda: "from thread"))
            assert isinstance(fut, Future)
            return await fut

    assert run(io_loop, main) == "from thread"


def test_convert_yielded_can_be_extended(io_loop) -> None:
    class Custom:
        def __init__(self, value):
            self.value = value

    @gen.convert_yielded.register(Custom)
    def _(custom):
        fut = Future()
        IOLoop.current().add_callback(fut.set_result, custom.value * 2)
        return fut

    @gen.coroutine
    def main():
        return (yield Custom(21))

    assert run(io_loop, main) == 42


# -- multi ---------------------------------------------------------------------------------------


def test_multi_list_dict_and_empty(io_loop) -> None:
    @gen.coroutine
    def main():
        as_list = yield gen.multi([delayed("v1", 3), delayed("v2", 1)])
        as_dict = yield gen.multi({"foo": delayed("v1", 3), "bar": delayed("v2", 1)})
        implicit = yield [delayed(1), delayed(2)]
        empty_list = yield []
        empty_dict = yield {}
        futures = yield gen.multi_future([delayed(1), delayed(2)])
        alias = yield gen.Multi([delayed(3)])
        return as_list, as_dict, implicit, empty_list, empty_dict, futures, alias

    as_list, as_dict, implicit, empty_list, empty_dict, futures, alias = run(io_loop, main)
    assert as_list == ["v1", "v2"]
    assert as_dict == {"foo": "v1", "bar": "v2"}
    assert implicit == [1, 2]
    assert empty_list == [] and isinstance(empty_list, list)
    assert empty_dict == {} and isinstance(empty_dict, dict)
    assert futures == [1, 2]
    assert alias == [3]


def test_multi_with_duplicates_and_moments(io_loop) -> None:
    @gen.coroutine
    def main():
        shared = delayed(2)
        duplicated = yield [delayed(1), shared, delayed(3), shared]
        moments = yield gen.multi([gen.moment, gen.moment])
        many = yield [gen.moment for _ in range(2000)]
        return duplicated, moments, len(many)

    assert run(io_loop, main) == ([1, 2, 3, 2], [None, None], 2000)


def _multiple_exception_logs(caplog):
    return [r for r in caplog.records if "Multiple exceptions in yield list" in r.getMessage()]


@pytest.mark.parametrize("combine", ["multi", "multi_future", "implicit"])
def test_multi_exceptions(io_loop, caplog, combine) -> None:
    def combined(children, **kwargs):
        if combine == "implicit" and not kwargs:
            return children
        return getattr(gen, "multi" if combine == "implicit" else combine)(children, **kwargs)

    @gen.coroutine
    def two_failures():
        yield combined([delayed_error(RuntimeError("error 1")), delayed_error(RuntimeError("error 2"))])

    @gen.coroutine
    def one_failure():
        yield combined([delayed_error(RuntimeError("only")), delayed(2)])

    @gen.coroutine
    def quiet():
        yield combined(
            [delayed_error(RuntimeError("q1")), delayed_error(RuntimeError("q2"))], quiet_exceptions=RuntimeError
        )

    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        with pytest.raises(RuntimeError, match="error 1"):
            io_loop.run_sync(two_failures)
    logged = _multiple_exception_logs(caplog)
    assert len(logged) == 1 and logged[0].name == "tornado.application"
    assert str(logged[0].exc_info[1]) == "error 2"
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        with pytest.raises(RuntimeError, match="only"):
            io_loop.run_sync(one_failure)
        with pytest.raises(RuntimeError, match="q1"):
            io_loop.run_sync(quiet)
    assert _multiple_exception_logs(caplog) == []


def test_multi_with_cancelled_children(io_loop, caplog) -> None:
    async def main():
        # Like asyncio.gather: a cancelled child makes the result raise CancelledError, but the combined
        # future itself is not cancelled.
        fut = Future()
        io_loop.add_callback(fut.cancel)
        combined = gen.multi([fut, delayed(2)])
        with pytest.raises(CancelledError):
            await combined
        assert not combined.cancelled()
        already = Future()
        already.cancel()
        with pytest.raises(CancelledError):
            await gen.multi([already])
        # A cancellation after the first failure is not logged.
        late = Future()
        io_loop.add_callback(io_loop.add_callback, late.cancel)
        with pytest.raises(RuntimeError):
            await gen.multi([delayed_error(RuntimeError("first")), late])

    with caplog.at_level(logging.ERROR):
        run(io_loop, main)
    assert _multiple_exception_logs(caplog) == []


# -- with_timeout ----------------------------------------------------------------------------------


def test_with_timeout_expires(io_loop) -> None:
    async def main():
        with pytest.raises(TimeoutError) as info:
            await gen.with_timeout(datetime.timedelta(seconds=0.01), Future())
        assert str(info.value) == "Timeout"
        with pytest.raises(TimeoutError):
            await gen.with_timeout(io_loop.time() + 0.01, Future())  # absolute deadline
        with pytest.raises(TimeoutError):
            await gen.with_timeout(io_loop.time() - 1, Future())  # already past
        with pytest.raises(TimeoutError, match="custom"):
            await gen.with_timeout(datetime.timedelta(seconds=0.01), Future(), message="custom")
        with pytest.raises(TimeoutError, match="lazy"):
            await gen.with_timeout(datetime.timedelta(seconds=0.01), Future(), message=lambda: "lazy")

    run(io_loop, main)


def test_with_timeout_result_before_the_deadline(io_loop) -> None:
    def never_called():
        raise AssertionError("message() must only be called on timeout")

    async def native():
        return 42

    async def main():
        fut = Future()
        io_loop.call_later(0.01, fut.set_result, "in time")
        results = [await gen.with_timeout(datetime.timedelta(hours=1), fut, message=never_called)]
        done = Future()
        done.set_result("already")
        results.append(await gen.with_timeout(datetime.timedelta(hours=1), done))
        results.append(await gen.with_timeout(datetime.timedelta(hours=1), native()))
        failing = Future()
        io_loop.call_later(0.01, failing.set_exception, ZeroDivisionError())
        with pytest.raises(ZeroDivisionError):
            await gen.with_timeout(datetime.timedelta(hours=1), failing)
        cancelled = Future()
        io_loop.call_later(0.01, cancelled.cancel)
        wrapped = gen.with_timeout(datetime.timedelta(hours=1), cancelled)
        with pytest.raises(CancelledError):
            await wrapped
        assert wrapped.cancelled()
        return results

    assert run(io_loop, main) == ["in time", "already", 42]


def test_with_timeout_on_concurrent_futures(io_loop) -> None:
    @gen.coroutine
    def main():
        release = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            try:
                with pytest.raises(TimeoutError):
                    yield gen.with_timeout(IOLoop.current().time(), pool.submit(release.wait, SAFETY))
            finally:
                release.set()
            finished = pool.submit(lambda: "done")
            finished.result(SAFETY)
            first = yield gen.with_timeout(datetime.timedelta(hours=1), finished)
            second = yield gen.with_timeout(datetime.timedelta(hours=1), pool.submit(lambda: "soon"))
        return first, second

    assert run(io_loop, main) == ("done", "soon")


def test_with_timeout_logs_a_late_failure_unless_quiet(io_loop, caplog) -> None:
    async def main():
        loud, quiet = Future(), Future()
        with pytest.raises(TimeoutError):
            await gen.with_timeout(datetime.timedelta(seconds=0.001), loud)
        with pytest.raises(TimeoutError):
            await gen.with_timeout(datetime.timedelta(seconds=0.001), quiet, quiet_exceptions=(KeyError,))
        loud.set_exception(ValueError("late and loud"))
        quiet.set_exception(KeyError("late and quiet"))
        for _ in range(3):
            await next_pass()

    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        run(io_loop, main)
    late = [r for r in caplog.records if "after timeout" in r.getMessage()]
    assert [str(r.exc_info[1]) for r in late] == ["late and loud"]


def test_with_timeout_keeps_a_weakly_held_coroutine_alive(io_loop) -> None:
    holder = []

    def resolve():
        gc.collect()
        holder[0]().set_result(123)

    @gen.coroutine
    def tester():
        fut = Future()
        holder.append(weakref.ref(fut))
        IOLoop.current().add_callback(resolve)
        return (yield fut)

    async def main():
        return await gen.with_timeout(datetime.timedelta(seconds=SAFETY), tester())

    assert run(io_loop, main) == 123


# -- sleep and moment ----------------------------------------------------------------------------


def test_sleep(io_loop) -> None:
    order = []

    async def sleeper(delay, name):
        result = await gen.sleep(delay)
        order.append((name, result))

    async def main():
        await gen.multi([sleeper(0.03, "slow"), sleeper(0.0, "zero"), sleeper(0.01, "fast")])

    run(io_loop, main)
    assert order == [("zero", None), ("fast", None), ("slow", None)]


def test_sleep_lasts_at_least_its_duration(io_loop) -> None:
    async def main():
        start = time.monotonic()
        await gen.sleep(0.02)
        return time.monotonic() - start

    assert run(io_loop, main) >= 0.019  # a lower bound only: never "fast enough" checks


def test_moment_lets_coroutines_take_turns(io_loop) -> None:
    calls = []

    @gen.coroutine
    def worker(name, yieldable):
        for _ in range(5):
            calls.append(name)
            yield yieldable

    @gen.coroutine
    def main():
        immediate = Future()
        immediate.set_result(None)
        yield [worker("a", immediate), worker("b", immediate)]
        runs = ["".join(calls)]
        del calls[:]
        yield [worker("a", gen.moment), worker("b", gen.moment)]
        runs.append("".join(calls))
        del calls[:]
        yield [worker("a", gen.moment), worker("b", immediate)]
        runs.append("".join(calls))
        return runs

    assert run(io_loop, main) == ["aaaaabbbbb", "ababababab", "abbbbbaaaa"]


@lite_only
def test_moment_is_awaitable_in_native_coroutines(io_loop) -> None:
    order = []

    async def main():
        io_loop.add_callback(order.append, "callback")
        await gen.moment
        order.append("after moment")

    run(io_loop, main)
    assert order == ["callback", "after moment"]


# -- maybe_future --------------------------------------------------------------------------------


def test_maybe_future(io_loop) -> None:
    async def main():
        fut = Future()
        assert gen.maybe_future(fut) is fut
        wrapped = gen.maybe_future(42)
        assert tc.is_future(wrapped) and wrapped.done()
        return await wrapped

    assert run(io_loop, main) == 42


# -- WaitIterator --------------------------------------------------------------------------------


def test_wait_iterator_empty() -> None:
    it = gen.WaitIterator()
    assert it.done()
    assert it.current_index is None and it.current_future is None


def test_wait_iterator_args_and_kwargs_together_is_an_error(io_loop) -> None:
    async def main():
        with pytest.raises(ValueError):
            gen.WaitIterator(Future(), bar=Future())

    run(io_loop, main)


def test_wait_iterator_already_done(io_loop) -> None:
    @gen.coroutine
    def main():
        f1, f2, f3 = Future(), Future(), Future()
        f1.set_result(24)
        f2.set_result(42)
        f3.set_result(84)
        seen = []
        it = gen.WaitIterator(f1, f2, f3)
        while not it.done():
            result = yield it.next()
            seen.append((it.current_index, it.current_future, result))
        assert it.current_index is None and it.current_future is None
        assert seen == [(0, f1, 24), (1, f2, 42), (2, f3, 84)]
        keyed = gen.WaitIterator(first=f1, second=f2)
        by_key = {}
        while not keyed.done():
            result = yield keyed.next()
            by_key[keyed.current_index] = (keyed.current_future, result)
        assert by_key == {"first": (f1, 24), "second": (f2, 42)}
        return True

    assert run(io_loop, main)


def test_wait_iterator_duplicates(io_loop) -> None:
    @gen.coroutine
    def main():
        fut = Future()
        fut.set_result(42)
        out = []
        for it, count in ((gen.WaitIterator(fut, fut, fut), 3), (gen.WaitIterator(a=fut, b=fut), 2)):
            results, indices = [], []
            while not it.done():
                results.append((yield it.next()))
                indices.append(it.current_index)
            out.append((results == [42] * count, indices))
        return out

    assert run(io_loop, main) == [(True, [0, 1, 2]), (True, ["a", "b"])]


def _finish_in_steps(loop, futures):
    # Resolves futures[2], then futures[0] (failing), then 1 and 3, a few loop passes apart.
    def step(i):
        if i == 3:
            futures[2].set_result(24)
        elif i == 5:
            futures[0].set_exception(ZeroDivisionError())
        elif i == 8:
            futures[1].set_result(42)
            futures[3].set_result(84)
        if i < 8:
            loop.add_callback(step, i + 1)

    step(0)


def test_wait_iterator_in_completion_order(io_loop) -> None:
    @gen.coroutine
    def main():
        futures = [Future() for _ in range(4)]
        _finish_in_steps(IOLoop.current(), futures)
        it = gen.WaitIterator(*futures)
        seen = []
        while not it.done():
            try:
                result = yield it.next()
            except ZeroDivisionError:
                seen.append(("error", it.current_index, it.current_future is futures[0]))
            else:
                seen.append((result, it.current_index))
        return seen

    seen = run(io_loop, main)
    assert seen[:2] == [(24, 2), ("error", 0, True)]
    assert sorted(seen[2:]) == [(42, 1), (84, 3)]


def test_wait_iterator_async_for(io_loop) -> None:
    async def main():
        futures = [Future() for _ in range(4)]
        _finish_in_steps(IOLoop.current(), futures)
        it = gen.WaitIterator(*futures)
        seen = []
        try:
            async for result in it:
                seen.append((result, it.current_index))
        except ZeroDivisionError:
            seen.append(("error", it.current_index))
        async for result in it:  # iteration goes on after the failure
            seen.append((result, it.current_index))
        return seen

    seen = run(io_loop, main)
    assert seen[:2] == [(24, 2), ("error", 0)]
    assert sorted(seen[2:]) == [(42, 1), (84, 3)]


def test_wait_iterator_without_a_reference_to_it(io_loop) -> None:
    async def main():
        return await gen.with_timeout(datetime.timedelta(seconds=SAFETY), gen.WaitIterator(delayed("x")).next())

    assert run(io_loop, main) == "x"


# -- closing a loop with suspended coroutines ----------------------------------------------------


def test_suspended_gen_coroutine_is_collected_after_close() -> None:
    # A coroutine suspended forever (even in a reference cycle) goes away with its closed loop, and its
    # generator is finalized (its finally block runs).
    loop = IOLoop(make_current=False)
    wakeups = []
    refs = []

    @gen.coroutine
    def forever():
        try:
            while True:
                yield gen.sleep(0.001)
                wakeups.append(True)
        finally:
            wakeups.append(None)

    @gen.coroutine
    def start_it():
        fut = forever()
        if hasattr(fut, "__dict__"):
            fut._refcycle = fut
        refs.append(weakref.ref(fut))
        yield gen.sleep(0.05)

    loop.run_sync(start_it)
    loop.close()
    gc.collect()
    assert refs[0]() is None
    assert wakeups.count(True) >= 1
    assert wakeups[-1] is None


@lite_only  # asyncio logs "Task was destroyed but it is pending" and the log record keeps the task alive
def test_suspended_native_task_is_collected_after_close() -> None:
    loop = IOLoop(make_current=False)
    events = []
    refs = []

    async def forever():
        try:
            while True:
                await gen.sleep(0.001)
                events.append("woke")
        finally:
            events.append("finally")

    async def start_it():
        refs.append(weakref.ref(gen.convert_yielded(forever())))
        await gen.sleep(0.05)

    loop.run_sync(start_it)
    loop.close()
    gc.collect()
    assert refs[0]() is None
    assert "woke" in events and events[-1] == "finally"


# -- names ---------------------------------------------------------------------------------------


def test_error_classes() -> None:
    for name in ("KeyReuseError", "UnknownKeyError", "LeakedCallbackError", "BadYieldError", "ReturnValueIgnoredError"):
        cls = getattr(gen, name)
        assert issubclass(cls, Exception)
    ret = gen.Return((1, 2))
    assert ret.value == (1, 2) and ret.args == ((1, 2),)
    assert gen.Return().value is None
    assert gen.TimeoutError is TimeoutError


# -- current_task and cancelling (tornado_lite's counterparts of asyncio's) --------------------------


@lite_only
def test_current_task_is_the_task_running_its_step(io_loop) -> None:
    seen = {}

    @gen.coroutine
    def inner():
        seen["inner_start"] = gen.current_task()
        yield gen.moment
        seen["inner_after"] = gen.current_task()

    async def outer():
        seen["outer_start"] = gen.current_task()
        fut = inner()  # a @gen.coroutine's first step runs inside this step
        seen["outer_after_inner_started"] = gen.current_task()
        await fut
        seen["outer_end"] = gen.current_task()
        return fut

    assert gen.current_task(io_loop) is None
    inner_task = run(io_loop, outer)
    assert seen["outer_start"] is seen["outer_after_inner_started"] is seen["outer_end"]
    assert seen["outer_start"] is not None
    assert seen["inner_start"] is seen["inner_after"] is inner_task
    assert inner_task is not seen["outer_start"]
    # Outside any step (a plain callback) there is no current task.
    got = []
    io_loop.add_callback(lambda: got.append(gen.current_task()))
    io_loop.add_callback(io_loop.stop)
    io_loop.start()
    assert got == [None]


@lite_only
def test_cancelling_counts_requests_until_uncancelled(io_loop) -> None:
    async def main():
        waiter = Future()

        async def sleeper():
            try:
                await waiter
            except CancelledError:
                me = gen.current_task()
                assert me.cancelling() == 1
                assert me.uncancel() == 0
                return "survived"

        task = gen.convert_yielded(sleeper())
        await gen.moment
        assert task.cancelling() == 0
        assert task.cancel()
        assert task.cancelling() == 1
        return await task

    assert run(io_loop, main) == "survived"


# -- start_task: a task with an end-callback (tornado_lite's hook for servers) ----------------------


@lite_only
def test_start_task_calls_on_end_in_the_last_step_before_done_callbacks(io_loop) -> None:
    events = []

    async def main():
        async def handler():
            events.append("started")
            await gen.moment
            events.append("returning")
            return 42

        def on_end(task):
            # Inline in the last step: the task is done, it is still the current task, and its
            # done-callbacks have not run yet.
            events.append(("on_end", task.result(), gen.current_task() is task))

        task = gen.start_task(handler(), on_end)
        task.add_done_callback(lambda f: events.append("done-callback"))
        assert events == []  # started on the next pass, as convert_yielded starts a coroutine
        assert await task == 42
        await gen.moment
        return task

    run(io_loop, main)
    assert events == ["started", "returning", ("on_end", 42, True), "done-callback"]


@lite_only
def test_start_task_on_end_sees_failure_and_cancellation(io_loop) -> None:
    seen = []

    def on_end(task):
        if task.cancelled():
            seen.append("cancelled")
        else:
            seen.append(type(task.exception()).__name__)

    async def main():
        async def fails():
            await gen.moment
            raise ZeroDivisionError("boom")

        async def waits_forever():
            await Future()

        failed = gen.start_task(fails(), on_end)
        waiting = gen.start_task(waits_forever(), on_end)
        await gen.moment
        assert waiting.cancel()
        for _ in range(3):
            await gen.moment
        assert failed.done() and waiting.cancelled()

    run(io_loop, main)
    assert sorted(seen) == ["ZeroDivisionError", "cancelled"]


@lite_only
def test_start_task_on_end_error_goes_to_handle_callback_exception(io_loop) -> None:
    reported = []
    io_loop.handle_callback_exception = lambda callback: reported.append((callback, sys.exc_info()[0]))

    def on_end(task):
        raise KeyError("in on_end")

    async def main():
        async def handler():
            return "fine"

        task = gen.start_task(handler(), on_end)
        assert await task == "fine"  # the task's own outcome is not touched by on_end's error

    run(io_loop, main)
    assert reported == [(on_end, KeyError)]


@lite_only
def test_with_timeout_of_a_settled_future_sets_no_timer(io_loop) -> None:
    async def main():
        done = Future()
        done.set_result("ready")
        before = io_loop.stats().timers_pending
        wrapped = gen.with_timeout(datetime.timedelta(seconds=5), done)
        assert io_loop.stats().timers_pending == before
        assert await wrapped == "ready"
        pending = Future()
        wrapped = gen.with_timeout(datetime.timedelta(seconds=5), pending)
        assert io_loop.stats().timers_pending == before + 1
        pending.set_result("later")
        assert await wrapped == "later"

    run(io_loop, main)


def test_tasks_waiting_on_one_future_resume_in_order_and_a_cancelled_one_ends(io_loop) -> None:
    # Several waiters on one future (tasks and a plain callback): each resumes with the result, in the
    # order they started waiting.  A task cancelled while it waits (on a future of its own) ends
    # cancelled, and its future with it.
    async def main():
        shared, own = Future(), Future()
        order = []

        async def waiter(name, future):
            value = await future
            order.append((name, value))
            return name

        first = gen.convert_yielded(waiter("first", shared))
        doomed = gen.convert_yielded(waiter("doomed", own))
        await next_pass()  # both tasks are now waiting
        shared.add_done_callback(lambda f: order.append(("callback", f.result())))
        last = gen.convert_yielded(waiter("last", shared))
        await next_pass()
        assert doomed.cancel()
        shared.set_result(42)
        results = [await first, await last]
        with pytest.raises(CancelledError):
            await doomed
        return order, results, own.cancelled()

    order, results, own_cancelled = run(io_loop, main)
    assert order == [("first", 42), ("callback", 42), ("last", 42)]
    assert results == ["first", "last"]
    assert own_cancelled
