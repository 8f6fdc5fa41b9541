"""Tests for tornado_lite.testing.

They encode Tornado 6's behaviour, so they also run against real Tornado:
``TORNADO_LITE_TEST_IMPL=tornado pytest tests/test_testing.py`` (in a venv that has tornado).  The few
that cover tornado_lite's one addition (an exception escaping a loop callback fails the test) are
marked ``lite_only``: Tornado 6 merely logs such exceptions.

Most tests build a small ``AsyncTestCase`` subclass inside the test function (so pytest does not
collect it), run it with a ``unittest.TestResult`` and look at the outcome.
"""

import contextlib
import gc
import importlib
import logging
import os
import socket
import subprocess
import sys
import textwrap
import traceback
import unittest
import warnings
from typing import Any, Iterator

import pytest

impl = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
testing = importlib.import_module(impl + ".testing")
gen = importlib.import_module(impl + ".gen")
ioloop = importlib.import_module(impl + ".ioloop")
locks = None
try:
    locks = importlib.import_module(impl + ".locks")
except ImportError:  # tornado_lite.locks is written separately; the leak test uses a Future instead
    pass
concurrent = importlib.import_module(impl + ".concurrent")
IOLoop = ioloop.IOLoop
AsyncTestCase = testing.AsyncTestCase
ExpectLog = testing.ExpectLog
gen_test = testing.gen_test

lite_only = pytest.mark.skipif(impl != "tornado_lite", reason="tornado_lite's addition: Tornado 6 only logs these")

app_log = logging.getLogger("tornado.application")
gen_log = logging.getLogger("tornado.general")


@contextlib.contextmanager
def set_environ(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def run_case(case_class: type, name: str = "test") -> unittest.TestResult:
    result = unittest.TestResult()
    case_class(name).run(result)
    return result


def only_error(result: unittest.TestResult) -> str:
    problems = result.errors + result.failures
    assert len(problems) == 1, problems
    return problems[0][1]


def assert_logged_callback_exception(caplog: Any) -> None:
    # Failing the test does not hide the log record Tornado would have written.
    assert any(r.name == "tornado.application" and "Exception in callback" in r.getMessage() for r in caplog.records)


def assert_passed(result: unittest.TestResult) -> None:
    assert result.wasSuccessful(), result.errors + result.failures
    assert result.testsRun == 1


# -- the loop a test gets ----------------------------------------------------------------------------


def test_each_test_gets_a_fresh_current_loop_closed_with_its_fds() -> None:
    seen: list = []

    class Case(AsyncTestCase):
        def test_a(self) -> None:
            assert IOLoop.current() is self.io_loop
            client, server = socket.socketpair()
            self.io_loop.add_handler(client, lambda fd, events: None, IOLoop.READ)
            seen.append((self.io_loop, client, server))

        test_b = test_a

    result = unittest.TestResult()
    unittest.TestSuite([Case("test_a"), Case("test_b")]).run(result)
    assert result.wasSuccessful(), result.errors
    (loop_a, client_a, server_a), (loop_b, client_b, server_b) = seen
    assert loop_a is not loop_b
    # close(all_fds=True) closed the socket registered on the loop, not the other one.
    assert client_a.fileno() == -1 and client_b.fileno() == -1
    assert server_a.fileno() != -1
    server_a.close()
    server_b.close()


def test_set_up_and_tear_down_chain_to_super() -> None:
    events: list = []

    class Base(unittest.TestCase):
        def setUp(self) -> None:
            events.append("setUp")

        def tearDown(self) -> None:
            events.append("tearDown")

    class Both(AsyncTestCase, Base):
        def test(self) -> None:
            events.append("test")

    assert_passed(run_case(Both))
    assert events == ["setUp", "test", "tearDown"]


def test_overriding_get_new_ioloop_is_deprecated_but_used() -> None:
    made: list = []

    class Case(AsyncTestCase):
        def get_new_ioloop(self) -> Any:
            loop = IOLoop(make_current=False)
            made.append(loop)
            return loop

        def test(self) -> None:
            assert self.io_loop is made[0]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert_passed(run_case(Case))
    assert any("get_new_ioloop is deprecated" in str(w.message) for w in caught)


# -- stop() and wait() -------------------------------------------------------------------------------


def test_stop_argument_is_returned_by_wait() -> None:
    class Case(AsyncTestCase):
        def test(self) -> None:
            self.io_loop.add_callback(self.stop, "one")
            assert self.wait() == "one"
            self.io_loop.add_callback(lambda: self.stop(a=1, b=2))
            assert self.wait() == {"a": 1, "b": 2}
            # stop() before wait(): wait returns at once, without running the loop.
            self.stop("early")
            assert self.wait() == "early"

    assert_passed(run_case(Case))


def test_wait_with_condition_restarts_the_loop_until_true() -> None:
    class Case(AsyncTestCase):
        def test(self) -> None:
            count = [0]

            def tick() -> None:
                count[0] += 1
                self.stop()
                if count[0] < 3:
                    self.io_loop.add_callback(tick)

            self.io_loop.add_callback(tick)
            self.wait(condition=lambda: count[0] >= 3)
            assert count[0] == 3

    assert_passed(run_case(Case))


def test_wait_timeout_argument_and_environment_variable() -> None:
    class Case(AsyncTestCase):
        def test(self) -> None:
            # Finishes well within the default timeout.
            self.io_loop.add_timeout(self.io_loop.time() + 0.01, self.stop)
            self.wait()
            # timeout argument
            handle = self.io_loop.add_timeout(self.io_loop.time() + 30, self.stop)
            with self.assertRaises(self.failureException) as ctx:
                self.wait(timeout=0.01)
            assert "Async operation timed out after 0.01 seconds" in str(ctx.exception)
            # the environment variable, read on each call
            with set_environ("ASYNC_TEST_TIMEOUT", "0.01"):
                with self.assertRaises(self.failureException):
                    self.wait()
            self.io_loop.remove_timeout(handle)

    assert_passed(run_case(Case))


def test_a_second_wait_does_not_inherit_the_first_deadline() -> None:
    class Case(AsyncTestCase):
        def test(self) -> None:
            self.io_loop.add_timeout(self.io_loop.time(), self.stop)
            self.wait(timeout=0.1)
            # Would fail if the first wait's 0.1s deadline were still armed.
            self.io_loop.add_timeout(self.io_loop.time() + 0.2, self.stop)
            self.wait(timeout=2)

    assert_passed(run_case(Case))


# -- test methods that return something --------------------------------------------------------------


def test_undecorated_generator_test_is_an_error() -> None:
    class Case(AsyncTestCase):
        def test(self) -> Any:
            yield

    assert "should be decorated" in only_error(run_case(Case))


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="Python 3.12+ has its own check of test return values")
def test_undecorated_coroutine_test_is_an_error() -> None:
    class Case(AsyncTestCase):
        async def test(self) -> None:
            pass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Tornado leaves the coroutine un-awaited
        assert "should be decorated" in only_error(run_case(Case))


def test_undecorated_generator_that_is_skipped_is_not_an_error() -> None:
    class Case(AsyncTestCase):
        @unittest.skip("not run")
        def test(self) -> Any:
            yield

    result = run_case(Case)
    assert not result.errors and len(result.skipped) == 1


def test_other_return_value_is_an_error() -> None:
    class Case(AsyncTestCase):
        def test(self) -> int:
            return 42

    assert "Return value from test method ignored" in only_error(run_case(Case))


# -- gen_test ----------------------------------------------------------------------------------------


def test_gen_test_runs_generator_native_and_plain_tests() -> None:
    ran: list = []

    class Case(AsyncTestCase):
        @gen_test
        def test_plain(self) -> None:
            ran.append("plain")

        @gen_test
        def test_generator(self) -> Any:
            yield gen.moment
            value = yield gen.sleep(0)
            ran.append(("generator", value))

        @gen_test
        async def test_native(self) -> None:
            await gen.sleep(0)
            assert IOLoop.current() is self.io_loop
            ran.append("native")

    result = unittest.TestResult()
    unittest.TestSuite([Case("test_plain"), Case("test_generator"), Case("test_native")]).run(result)
    assert result.wasSuccessful(), result.errors + result.failures
    assert ran == ["plain", ("generator", None), "native"]


def test_gen_test_returns_what_the_coroutine_returns_and_passes_arguments() -> None:
    class Case(AsyncTestCase):
        def test(self) -> None:
            @gen_test
            def with_args(self: Any, *args: Any, **kwargs: Any) -> Any:
                yield gen.moment
                assert args == ("a",) and kwargs == {"k": "v"}

            with_args(self, "a", k="v")

            @gen_test
            async def native_args(self: Any, x: int) -> None:
                assert x == 3

            native_args(self, 3)

    assert_passed(run_case(Case))


def test_gen_test_failure_inside_the_coroutine_fails_the_test() -> None:
    class Case(AsyncTestCase):
        @gen_test
        async def test(self) -> None:
            await gen.sleep(0)
            self.assertEqual(1, 2)

    result = run_case(Case)
    assert len(result.failures) == 1 and "AssertionError" in result.failures[0][1]


def test_gen_test_timeout_blames_the_line_where_the_generator_waits() -> None:
    class Case(AsyncTestCase):
        def test(self) -> None:
            @gen_test(timeout=0.1)
            def slow(self: Any) -> Any:
                yield gen.sleep(30)  # the line the traceback must show

            # Not assertRaises: it drops the traceback, which is what this test is about.
            try:
                slow(self)
            except TimeoutError:
                text = traceback.format_exc()
            else:
                self.fail("no TimeoutError")
            assert "gen.sleep(30)" in text, text

    assert_passed(run_case(Case))


def test_gen_test_timeout_of_a_native_coroutine() -> None:
    class Case(AsyncTestCase):
        def test(self) -> None:
            @gen_test(timeout=0.1)
            async def slow(self: Any) -> None:
                await gen.sleep(30)  # the stuck line

            try:
                slow(self)
            except TimeoutError:
                text = traceback.format_exc()
            else:
                self.fail("no TimeoutError")
            if impl == "tornado_lite":
                # Tornado cancels a native coroutine before raising, so only tornado_lite can
                # show where it was stuck.
                assert "await gen.sleep(30)" in text, text

    assert_passed(run_case(Case))


def test_gen_test_timeout_still_fails_when_the_test_swallows_the_error() -> None:
    class Case(AsyncTestCase):
        def test(self) -> None:
            @gen_test(timeout=0.05)
            def stubborn(self: Any) -> Any:
                try:
                    yield gen.sleep(30)
                except Exception:
                    pass
                yield gen.sleep(30)

            with self.assertRaises(TimeoutError):
                stubborn(self)

    assert_passed(run_case(Case))


def test_gen_test_timeout_runs_the_coroutines_finally_blocks() -> None:
    cleaned: list = []

    class Case(AsyncTestCase):
        def test(self) -> None:
            @gen_test(timeout=0.05)
            async def slow(self: Any) -> None:
                try:
                    await gen.sleep(30)
                finally:
                    cleaned.append(True)

            with self.assertRaises(TimeoutError):
                slow(self)

    assert_passed(run_case(Case))
    assert cleaned == [True]


def test_gen_test_stopped_from_inside_is_an_error() -> None:
    class Case(AsyncTestCase):
        @gen_test(timeout=30)
        async def test(self) -> None:
            self.io_loop.stop()
            await concurrent.Future()

    result = run_case(Case)
    # (Tornado reports it a second time from tearDown, where it cancels the stranded task.)
    assert result.errors and "RuntimeError: Event loop stopped before Future completed." in result.errors[0][1]


def test_gen_test_explicit_timeout_wins_over_the_environment() -> None:
    class Case(AsyncTestCase):
        def test(self) -> None:
            @gen_test(timeout=5)
            def fine(self: Any) -> Any:
                yield gen.sleep(0.05)

            with set_environ("ASYNC_TEST_TIMEOUT", "0.01"):
                fine(self)

            @gen_test(timeout=0.01)
            def too_slow(self: Any) -> Any:
                yield gen.sleep(30)

            with set_environ("ASYNC_TEST_TIMEOUT", "30"):
                with self.assertRaises(TimeoutError):
                    too_slow(self)

    assert_passed(run_case(Case))


def test_gen_test_default_timeout_comes_from_the_environment_when_decorated() -> None:
    with set_environ("ASYNC_TEST_TIMEOUT", "0.05"):

        class Case(AsyncTestCase):
            @gen_test
            def test(self) -> Any:
                yield gen.sleep(30)

    assert "TimeoutError" in only_error(run_case(Case))


def test_leaked_coroutine_is_dropped_quietly_at_tear_down(caplog: Any) -> None:
    class Case(AsyncTestCase):
        def tearDown(self) -> None:
            super().tearDown()
            gc.collect()

        def test(self) -> None:
            never: Any = concurrent.Future()

            async def waiter() -> None:
                try:
                    await never
                except Exception:
                    pass

            self.io_loop.add_callback(waiter)
            # Two passes: the coroutine starts, then waits forever on a future nobody sets.
            self.io_loop.add_callback(self.io_loop.add_callback, self.stop)
            self.wait()

    with caplog.at_level(logging.WARNING):
        assert_passed(run_case(Case))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records


# -- exceptions raised on the loop (tornado_lite's addition) -----------------------------------------


@lite_only
def test_exception_in_a_callback_fails_a_waiting_test(caplog: Any) -> None:
    class Case(AsyncTestCase):
        def test(self) -> None:
            self.io_loop.add_callback(lambda: 1 / 0)
            self.wait()

    text = only_error(run_case(Case))
    assert_logged_callback_exception(caplog)
    assert "ZeroDivisionError" in text


@lite_only
def test_exception_in_a_callback_stops_a_gen_test_at_once(caplog: Any) -> None:
    class Case(AsyncTestCase):
        @gen_test(timeout=30)
        async def test(self) -> None:
            self.io_loop.add_callback(lambda: {}["missing"])
            # Never set: only the callback's failure can end this test before the 30s timeout.
            await concurrent.Future()

    text = only_error(run_case(Case))
    assert_logged_callback_exception(caplog)
    assert "KeyError: 'missing'" in text and "TimeoutError" not in text


@lite_only
def test_exception_in_an_fd_handler_fails_the_test(caplog: Any) -> None:
    class Case(AsyncTestCase):
        def test(self) -> None:
            left, right = socket.socketpair()
            self.addCleanup(right.close)

            def on_readable(fd: Any, events: int) -> None:
                raise RuntimeError("handler broke")

            self.io_loop.add_handler(left, on_readable, IOLoop.READ)
            right.send(b"x")
            self.wait()

    text = only_error(run_case(Case))
    assert_logged_callback_exception(caplog)
    assert "RuntimeError: handler broke" in text


@lite_only
def test_exception_in_a_spawned_coroutine_fails_the_test(caplog: Any) -> None:
    class Case(AsyncTestCase):
        @gen_test(timeout=30)
        async def test(self) -> None:
            async def broken() -> None:
                await gen.sleep(0)
                raise ValueError("spawned broke")

            self.io_loop.spawn_callback(broken)
            await concurrent.Future()

    text = only_error(run_case(Case))
    assert_logged_callback_exception(caplog)
    assert "ValueError: spawned broke" in text


@lite_only
def test_exception_outside_wait_fails_the_test_at_tear_down(caplog: Any) -> None:
    class Case(AsyncTestCase):
        def test(self) -> None:
            @gen_test
            async def quick(self: Any) -> None:
                self.io_loop.add_callback(lambda: 1 / 0)
                # Finishes in the same pass the callback fails in: the failure surfaces at tearDown.

            quick(self)

    assert "ZeroDivisionError" in only_error(run_case(Case))
    assert_logged_callback_exception(caplog)


def test_expected_callback_exception_does_not_fail_the_test() -> None:
    # Tornado's own tests assert these logs this way; it must keep working unchanged.
    class Case(AsyncTestCase):
        def test(self) -> None:
            self.io_loop.add_callback(lambda: 1 / 0)
            self.io_loop.add_callback(self.stop)
            with ExpectLog(app_log, "Exception in callback"):
                self.wait()

        @gen_test
        def test_gen(self) -> Any:
            with ExpectLog(app_log, "Exception in callback"):
                self.io_loop.add_callback(lambda: 1 / 0)
                yield gen.moment
                yield gen.moment

    assert_passed(run_case(Case))
    assert_passed(run_case(Case, "test_gen"))


def test_cancelled_spawned_coroutine_does_not_fail_the_test() -> None:
    class Case(AsyncTestCase):
        @gen_test
        async def test(self) -> None:
            waited: Any = concurrent.Future()

            async def waiter() -> None:
                await waited

            self.io_loop.spawn_callback(waiter)
            await gen.sleep(0)
            waited.cancel()
            for _ in range(3):
                await gen.sleep(0)

    result = unittest.TestResult()
    # The core may log the cancellation; what matters here is that the test passes.
    logging.getLogger("tornado.application").disabled = True
    try:
        Case("test").run(result)
    finally:
        logging.getLogger("tornado.application").disabled = False
    assert_passed(result)


# -- ExpectLog ---------------------------------------------------------------------------------------


def test_expect_log_swallows_matching_records(caplog: Any) -> None:
    with caplog.at_level(logging.INFO):
        with ExpectLog("tornado.general", "expected.*thing") as expect:
            gen_log.warning("expected %s thing", "this")
            gen_log.warning("unrelated")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["unrelated"]
    assert expect.matched == 1
    assert not expect.logged_stack


def test_expect_log_raises_when_a_required_match_is_missing() -> None:
    with pytest.raises(Exception, match="did not get expected log message"):
        with ExpectLog(gen_log, "never logged"):
            pass
    with ExpectLog(gen_log, "never logged", required=False) as expect:
        pass
    assert expect.matched == 0


def test_expect_log_lets_an_exception_in_the_block_through() -> None:
    with pytest.raises(KeyError):
        with ExpectLog(gen_log, "never logged"):
            raise KeyError("x")


def test_expect_log_matches_at_the_start_of_the_message_only() -> None:
    with pytest.raises(Exception, match="did not get expected log message"):
        with ExpectLog(gen_log, "thing"):
            with ExpectLog(gen_log, "a thing"):  # the inner one takes it
                gen_log.warning("a thing")


def test_expect_log_notices_logged_stacks() -> None:
    with ExpectLog(app_log, "boom") as expect:
        try:
            _ = 1 / 0
        except ZeroDivisionError:
            app_log.error("boom", exc_info=True)
    assert expect.logged_stack


def test_expect_log_level_lowers_the_logger_and_restores_it() -> None:
    logger = logging.getLogger("tornado_lite_test.expect_level")
    logger.setLevel(logging.WARNING)
    with ExpectLog(logger, "detail", level=logging.DEBUG) as expect:
        assert logger.getEffectiveLevel() == logging.DEBUG
        logger.debug("detail here")
    assert logger.level == logging.WARNING
    assert expect.matched == 1


def test_expect_log_level_mismatch_is_let_through_with_a_warning(caplog: Any) -> None:
    with caplog.at_level(logging.INFO):
        with ExpectLog(gen_log, "mismatch", level=logging.ERROR, required=False) as expect:
            gen_log.warning("mismatch here")
    assert expect.matched == 0
    messages = [r.getMessage() for r in caplog.records]
    assert "mismatch here" in messages
    assert any("at unexpected level" in m for m in messages)


def test_expect_log_info_match_without_level_is_deprecated() -> None:
    logger = logging.getLogger("tornado_lite_test.expect_info")
    logger.setLevel(logging.INFO)
    with pytest.warns(DeprecationWarning, match="matched at INFO or below"):
        with ExpectLog(logger, "chatter"):
            logger.info("chatter")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ExpectLog(logger, "chatter", level=logging.INFO):
            logger.info("chatter")


# -- small helpers -----------------------------------------------------------------------------------


def test_bind_unused_port_gives_a_listening_socket() -> None:
    sock, port = testing.bind_unused_port()
    try:
        assert sock.getsockname() == ("127.0.0.1", port)
        assert sock.family == socket.AF_INET
        assert not sock.getblocking()
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.close()
    finally:
        sock.close()


def test_bind_unused_port_address_and_reuse_port() -> None:
    sock, port = testing.bind_unused_port(address="127.0.0.2" if sys.platform == "linux" else "127.0.0.1")
    sock.close()
    if hasattr(socket, "SO_REUSEPORT"):
        sock, port = testing.bind_unused_port(reuse_port=True)
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        finally:
            sock.close()


def test_get_async_test_timeout() -> None:
    with set_environ("ASYNC_TEST_TIMEOUT", "2.5"):
        assert testing.get_async_test_timeout() == 2.5
    with set_environ("ASYNC_TEST_TIMEOUT", "not a number"):
        assert testing.get_async_test_timeout() == 5
    old = os.environ.pop("ASYNC_TEST_TIMEOUT", None)
    try:
        assert testing.get_async_test_timeout() == 5
    finally:
        if old is not None:
            os.environ["ASYNC_TEST_TIMEOUT"] = old


def test_setup_with_context_manager_exits_at_cleanup() -> None:
    events: list = []

    @contextlib.contextmanager
    def managed() -> Iterator[str]:
        events.append("enter")
        yield "value"
        events.append("exit")

    class Case(unittest.TestCase):
        def setUp(self) -> None:
            self.value = testing.setup_with_context_manager(self, managed())

        def test(self) -> None:
            events.append(self.value)

    assert_passed(run_case(Case))
    assert events == ["enter", "value", "exit"]


def test_gen_test_is_not_collected_as_a_test() -> None:
    assert gen_test.__test__ is False


@lite_only
def test_http_test_cases_come_with_the_http_layer() -> None:
    # Tornado is a test dependency, so they are there (built on Tornado's HTTP layer via install(); the
    # behaviour is tested in tests/http_layer, the missing-Tornado error in tests/test_install.py).
    for name in ("AsyncHTTPTestCase", "AsyncHTTPSTestCase"):
        case = getattr(testing, name)
        assert case.__name__ == name and case.__module__ == "tornado_lite.testing"
        assert issubclass(case, AsyncTestCase)
        for method in ("get_app", "fetch", "get_url", "get_http_port", "get_http_client", "get_http_server",
                       "get_httpserver_options", "get_protocol"):
            assert callable(getattr(case, method)), (name, method)
    assert callable(testing.AsyncHTTPSTestCase.default_ssl_options)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        testing.NoSuchThing  # noqa: B018


def test_main_runs_named_tests(tmp_path: Any) -> None:
    (tmp_path / "sample_tests.py").write_text(
        textwrap.dedent(
            f"""
            from {impl}.testing import AsyncTestCase, gen_test
            from {impl} import gen

            class Sample(AsyncTestCase):
                @gen_test
                async def test_passes(self):
                    await gen.sleep(0)

                def test_fails(self):
                    self.assertEqual(1, 2)
            """
        )
    )
    command = [sys.executable, "-m", impl + ".testing"]
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    good = subprocess.run(
        command + ["sample_tests.Sample.test_passes"], env=env, capture_output=True, text=True, timeout=60
    )
    assert good.returncode == 0, good.stderr
    assert "Ran 1 test" in good.stderr and "OK" in good.stderr
    bad = subprocess.run(
        command + ["--verbose", "sample_tests"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1
    assert "test_fails" in bad.stderr and "FAILED (failures=1)" in bad.stderr
    empty = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert empty.returncode == 1 and "No tests specified" in empty.stderr
