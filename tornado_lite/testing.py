"""Unit-testing support for code that runs on tornado_lite's IOLoop.

This is the top layer: it may use every other module, and nothing in tornado_lite imports it.  It
offers what Tornado 6's ``tornado.testing`` offers below the HTTP layer:

* ``AsyncTestCase``: a ``unittest.TestCase`` with a fresh IOLoop per test (``self.io_loop``), made
  current for the test and closed with all its fds afterwards, plus the older ``stop()``/``wait()``
  style of waiting.
* ``gen_test``: runs a coroutine test method (``async def`` or generator) to completion on that loop,
  failing it with ``TimeoutError`` when it does not finish in time.
* ``ExpectLog``: a context manager that swallows expected log records and insists they appear.
* ``bind_unused_port``, ``get_async_test_timeout``, ``setup_with_context_manager`` and ``main``.

One deliberate addition to Tornado 6: an exception escaping a loop callback (or fd handler) during
a test makes that test fail with the exception, unless an ``ExpectLog`` swallowed its
"Exception in callback" record.  Tornado 6 only logs such exceptions; a test that expects them
already wraps them in ``ExpectLog``, so it behaves the same here.

``AsyncHTTPTestCase`` and ``AsyncHTTPSTestCase`` (an HTTP(S) server and client per test) use
Tornado's own HTTP layer, running on tornado_lite through ``tornado_lite.install()``.  They are built
on first access (``from tornado_lite.testing import AsyncHTTPTestCase``), which calls ``install()``;
without a supported Tornado installed, that access fails with an ``ImportError`` naming the fix.

This module must never be imported by library code, and must never run a loop other than the one
the test case owns.
"""

import functools
import inspect
import logging
import os
import re
import signal
import socket
import sys
import types
import unittest
import warnings
from collections.abc import Coroutine, Generator
from typing import Any, Callable, List, Optional, Tuple, Type, Union

from tornado_lite import gen, netutil
from tornado_lite.concurrent import CancelledError, Future, future_add_done_callback
from tornado_lite.ioloop import IOLoop
from tornado_lite.log import app_log

_ExcInfo = Tuple[Optional[Type[BaseException]], Optional[BaseException], Optional[types.TracebackType]]
_TestMethod = Callable[..., Union[Generator, Coroutine]]

_DEFAULT_ASYNC_TEST_TIMEOUT = 5


def bind_unused_port(reuse_port: bool = False, address: str = "127.0.0.1") -> Tuple[socket.socket, int]:
    """Binds a listening, non-blocking IPv4 socket to a free port on ``address``.

    Returns ``(socket, port)``.  ``address`` defaults to ``127.0.0.1`` rather than ``localhost``, so
    the test never depends on how the name resolves; ``reuse_port`` sets ``SO_REUSEPORT``.
    """
    sock = netutil.bind_sockets(0, address, family=socket.AF_INET, reuse_port=reuse_port)[0]
    return sock, sock.getsockname()[1]


def get_async_test_timeout() -> float:
    """Seconds an async test may take: ``$ASYNC_TEST_TIMEOUT`` if it is a number, else 5."""
    value = os.environ.get("ASYNC_TEST_TIMEOUT")
    if value is not None:
        try:
            return float(value)
        except ValueError:
            pass
    return _DEFAULT_ASYNC_TEST_TIMEOUT


class _LastFilterProbe(logging.Filter):
    """Appended after a logger's other filters while one record is logged.

    Filters run in order and stop at the first that rejects, so the probe sees the record only if
    no ``ExpectLog`` claimed it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        self.seen = True
        return True


def _is_suspended(coro: Any) -> bool:
    """True when ``coro`` (a native coroutine or a generator) can have an exception thrown in."""
    if inspect.iscoroutine(coro):
        return inspect.getcoroutinestate(coro) in (inspect.CORO_SUSPENDED, inspect.CORO_CREATED)
    if inspect.isgenerator(coro):
        return inspect.getgeneratorstate(coro) in (inspect.GEN_SUSPENDED, inspect.GEN_CREATED)
    return False


def _abandon(future: Optional[Future]) -> None:
    """Marks a test's coroutine runner finished without stepping its coroutine again.

    Used after the coroutine was thrown into or closed directly: its runner is still subscribed to
    whatever it was waiting for, and must not resume a coroutine that has already ended.  The base
    ``Future.cancel`` only changes the state (the runner checks it before each step); the runner's
    own ``cancel`` would try to throw into the coroutine once more.
    """
    if isinstance(future, Future) and not future.done():
        Future.cancel(future)


class AsyncTestCase(unittest.TestCase):
    """A ``TestCase`` for code that runs on an IOLoop.

    Each test gets ``self.io_loop``, a new loop from ``get_new_ioloop()``, current while the test
    runs and closed (with every fd still registered on it) in ``tearDown``.  Coroutine tests use
    ``@gen_test``; callback-style tests call ``self.wait()`` and have callbacks call ``self.stop()``
    (whose argument ``wait`` returns).  ``wait`` may be called several times in one test.

    An exception that escapes a loop callback during the test fails the test with that exception
    (it stops a pending ``wait`` or ``gen_test`` at once), unless an ``ExpectLog`` on
    ``tornado.application`` matched its "Exception in callback" record.
    """

    def __init__(self, methodName: str = "runTest") -> None:
        super().__init__(methodName)
        self.__stopped = False
        self.__running = False
        self.__failure: Optional[_ExcInfo] = None
        self.__stop_args: Any = None
        self.__timeout: Any = None
        self.__gen_test_running = False
        self.__owns_loop = True
        # The coroutine (or generator) of the running @gen_test method, so that a timeout can be
        # raised at the point where it is stuck.
        self._test_generator: Optional[Union[Generator, Coroutine]] = None

    # -- life cycle ---------------------------------------------------------------------------------

    def setUp(self) -> None:
        super().setUp()
        gen._track_tasks()  # so that tearDown can find the coroutines this test leaves pending
        if type(self).get_new_ioloop is not AsyncTestCase.get_new_ioloop:
            warnings.warn("get_new_ioloop is deprecated", DeprecationWarning, stacklevel=2)
        previous = IOLoop.current(instance=False)
        self.io_loop = self.get_new_ioloop()
        # A loop that was already current (a subclass returning IOLoop.current()) belongs to
        # someone else: it is not closed at tearDown.
        self.__owns_loop = previous is None or self.io_loop is not previous
        self.io_loop.make_current()
        # Instance attribute: only this test's loop reports to this test case.
        self.io_loop.handle_callback_exception = self.__on_callback_exception  # type: ignore[method-assign]

    def tearDown(self) -> None:
        loop = self.io_loop
        self.__finish_leaked_tasks(loop)
        # Callbacks run from now on (e.g. while the loop closes) only log, as outside a test.
        loop.__dict__.pop("handle_callback_exception", None)
        process = sys.modules.get("tornado_lite.process")
        if process is not None:
            # Subprocess's SIGCHLD handling is bound to one loop; the next test has another.
            process.Subprocess.uninitialize()
        IOLoop.clear_current()
        if self.__owns_loop:
            loop.close(all_fds=True)
        super().tearDown()
        # The last moment a failure recorded outside wait()/gen_test can fail this test.
        self.__rethrow()

    @staticmethod
    def __finish_leaked_tasks(loop: IOLoop) -> None:
        """Cancels the coroutines still pending on the test's loop and lets them unwind.

        Otherwise a coroutine left waiting (or never started) when the loop closes would be warned
        about, or would run half its cleanup in another test.  A task that fails with anything but
        cancellation fails the test.
        """
        tasks = gen._pending_tasks(loop)
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        all_done: Future = Future()
        remaining = [len(tasks)]

        def one_done(_: Future) -> None:
            remaining[0] -= 1
            if remaining[0] == 0 and not all_done.done():
                all_done.set_result(None)

        for task in tasks:
            future_add_done_callback(task, one_done)
        loop.run_sync(lambda: all_done, timeout=get_async_test_timeout())
        for task in tasks:
            if not task.cancelled():
                task.result()

    def get_new_ioloop(self) -> IOLoop:
        """The loop for one test: a new one by default.  (Overriding it is deprecated, as in Tornado.)"""
        return IOLoop(make_current=False)

    def run(self, result: Optional[unittest.TestResult] = None) -> Optional[unittest.TestResult]:
        outcome = super().run(result)
        # A failure that escaped both the test and tearDown must still not pass silently.
        self.__rethrow()
        return outcome

    def _callTestMethod(self, method: Callable) -> None:
        result = method()
        if isinstance(result, Generator) or inspect.iscoroutine(result):
            if inspect.iscoroutine(result):
                result.close()  # never run: close it so Python does not warn it was never awaited
            raise TypeError("Generator and coroutine test methods should be decorated with tornado.testing.gen_test")
        if result is not None:
            raise ValueError("Return value from test method ignored: %r" % (result,))

    # -- failures raised on the loop ----------------------------------------------------------------

    def __on_callback_exception(self, callback: Any) -> None:
        exc_info = sys.exc_info()
        log_it = type(self.io_loop).handle_callback_exception.__get__(self.io_loop)
        if exc_info[1] is None or isinstance(exc_info[1], CancelledError):
            log_it(callback)
            return
        probe = _LastFilterProbe()
        app_log.addFilter(probe)
        try:
            log_it(callback)
        finally:
            app_log.removeFilter(probe)
        if probe.seen or not app_log.isEnabledFor(logging.ERROR):
            self._handle_exception(*exc_info)  # type: ignore[arg-type]

    def _handle_exception(
        self, typ: Type[BaseException], value: BaseException, tb: Optional[types.TracebackType]
    ) -> bool:
        """Records an exception raised on the loop so the test fails with it; stops the waiting."""
        if self.__failure is None:
            self.__failure = (typ, value, tb)
        else:
            app_log.error("multiple unhandled exceptions in test", exc_info=(typ, value, tb))
        if self.__gen_test_running:
            self.io_loop.stop()
        else:
            self.stop()
        return True

    def __rethrow(self) -> None:
        failure = self.__failure
        if failure is not None:
            self.__failure = None
            value = failure[1]
            assert value is not None
            raise value.with_traceback(failure[2])

    # -- stop() / wait() ----------------------------------------------------------------------------

    def stop(self, _arg: Any = None, **kwargs: Any) -> None:
        """Makes one pending (or the next) ``wait()`` return ``_arg`` (or the keyword arguments)."""
        assert _arg is None or not kwargs
        self.__stop_args = kwargs or _arg
        if self.__running:
            self.io_loop.stop()
            self.__running = False
        self.__stopped = True

    def wait(self, condition: Optional[Callable[..., bool]] = None, timeout: Optional[float] = None) -> Any:
        """Runs the loop until ``stop()`` is called (and ``condition()``, if given, is true).

        Fails the test (``self.failureException``) after ``timeout`` seconds, by default
        ``get_async_test_timeout()``.  Returns what was passed to ``stop()``.
        """
        if timeout is None:
            timeout = get_async_test_timeout()
        if not self.__stopped:
            if timeout:
                self.__timeout = self.io_loop.add_timeout(self.io_loop.time() + timeout, self.__wait_timed_out, timeout)
            while True:
                self.__running = True
                self.io_loop.start()
                if self.__failure is not None or condition is None or condition():
                    break
            if self.__timeout is not None:
                self.io_loop.remove_timeout(self.__timeout)
                self.__timeout = None
        assert self.__stopped
        self.__stopped = False
        self.__rethrow()
        result = self.__stop_args
        self.__stop_args = None
        return result

    def __wait_timed_out(self, timeout: float) -> None:
        try:
            raise self.failureException("Async operation timed out after %s seconds" % timeout)
        except Exception:
            self.__failure = sys.exc_info()
        self.stop()

    # -- gen_test's driver --------------------------------------------------------------------------

    def _run_test_coroutine(self, start: Callable[[], Any], timeout: Optional[float]) -> Any:
        """Runs the coroutine that ``start()`` returns on ``self.io_loop`` and returns its result.

        Unlike ``run_sync``, a timeout stops the loop with the coroutine still suspended, so the
        ``TimeoutError`` can be thrown in where it waits and its traceback shows that line.
        """
        loop = self.io_loop
        started: List[Future] = []
        timed_out: List[bool] = []

        def begin() -> None:
            try:
                future = gen.convert_yielded(start())
            except Exception:
                future = Future()
                future.set_exception(sys.exc_info()[1])  # type: ignore[arg-type]
            started.append(future)
            loop.add_future(future, lambda _: loop.stop())

        def on_timeout() -> None:
            timed_out.append(True)
            loop.stop()

        loop.add_callback(begin)
        timer = loop.call_later(timeout, on_timeout) if timeout is not None else None
        self.__gen_test_running = True
        try:
            loop.start()
        finally:
            self.__gen_test_running = False
            if timer is not None:
                loop.remove_timeout(timer)
        future = started[0] if started else None
        if future is not None and future.done():
            return future.result()
        coro = self._test_generator
        if self.__failure is not None:
            # A callback failed and stopped the test early: unwind the coroutine (running its
            # finally blocks) and fail with the callback's exception.
            if coro is not None and _is_suspended(coro):
                try:
                    coro.close()
                except Exception:
                    pass
            _abandon(future)
            self.__rethrow()
        if not timed_out:
            # Something else stopped the loop (a stray io_loop.stop()): run_sync's answer.
            raise RuntimeError("Event loop stopped before Future completed.")
        error = TimeoutError("Operation timed out after %s seconds" % timeout)
        if coro is not None and _is_suspended(coro):
            try:
                coro.throw(error)
            except StopIteration:
                pass  # it caught the error and returned: still a timeout
            finally:
                _abandon(future)
            # Here the coroutine swallowed the error (a broad except): the test still fails.
        raise error


def gen_test(
    func: Optional[_TestMethod] = None, timeout: Optional[float] = None
) -> Union[Callable[..., None], Callable[[_TestMethod], Callable[..., None]]]:
    """Runs an ``AsyncTestCase`` test written as a coroutine (``async def``, or a generator that
    yields futures) to completion on ``self.io_loop``.

    Usable bare (``@gen_test``) or with a timeout in seconds (``@gen_test(timeout=10)``); the default
    is ``get_async_test_timeout()`` when the test is defined.  A test still running at its deadline
    fails with ``TimeoutError``, raised inside the coroutine at the line where it was waiting.
    """
    if timeout is None:
        timeout = get_async_test_timeout()

    def wrap(f: _TestMethod) -> Callable[..., None]:
        @functools.wraps(f)
        def call_and_remember(self: AsyncTestCase, *args: Any, **kwargs: Any) -> Any:
            result = f(self, *args, **kwargs)
            if isinstance(result, Generator) or inspect.iscoroutine(result):
                self._test_generator = result
            else:
                self._test_generator = None
            return result

        if inspect.iscoroutinefunction(f):
            coro_fn: Callable[..., Any] = call_and_remember
        else:
            coro_fn = gen.coroutine(call_and_remember)

        @functools.wraps(f)
        def run_test(self: AsyncTestCase, *args: Any, **kwargs: Any) -> None:
            return self._run_test_coroutine(functools.partial(coro_fn, self, *args, **kwargs), timeout)

        return run_test

    if func is not None:
        return wrap(func)
    return wrap


# Test collectors (nose, some pytest plugins) would otherwise take gen_test for a test.
gen_test.__test__ = False  # type: ignore[attr-defined]


class ExpectLog(logging.Filter):
    """Swallows log records matching ``regex`` on ``logger`` while in the ``with`` block.

    ``logger`` is a ``Logger`` or a logger name (``""`` is the root logger; records propagated from
    child loggers are not seen by a parent's filters).  If ``required``, leaving the block without
    an exception and without a match raises.  With ``level``, only records at that level match (a
    match at another level is let through, with a warning) and the logger is lowered to it if
    needed.  ``matched`` counts the matches; ``logged_stack`` tells whether any record seen carried
    a traceback.  Not thread-safe.
    """

    def __init__(
        self, logger: Union[logging.Logger, str], regex: str, required: bool = True, level: Optional[int] = None
    ) -> None:
        super().__init__()
        if isinstance(logger, str):
            logger = logging.getLogger(logger)
        self.logger = logger
        self.regex = re.compile(regex)
        self.required = required
        self.level = level
        self.matched = 0
        # Matches below WARNING without an explicit level: Tornado deprecates relying on them.
        self.deprecated_level_matched = 0
        self.logged_stack = False
        self.orig_level: Optional[int] = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            self.logged_stack = True
        message = record.getMessage()
        if not self.regex.match(message):
            return True
        if self.level is None and record.levelno < logging.WARNING:
            # A warning raised inside logging would be swallowed or misplaced: counted, told at exit.
            self.deprecated_level_matched += 1
        if self.level is not None and record.levelno != self.level:
            app_log.warning(
                "Got expected log message %r at unexpected level (%s vs %s)"
                % (message, logging.getLevelName(self.level), record.levelname)
            )
            return True
        self.matched += 1
        return False

    def __enter__(self) -> "ExpectLog":
        if self.level is not None and self.level < self.logger.getEffectiveLevel():
            self.orig_level = self.logger.level
            self.logger.setLevel(self.level)
        self.logger.addFilter(self)
        return self

    def __exit__(
        self,
        typ: Optional[Type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[types.TracebackType],
    ) -> None:
        if self.orig_level is not None:
            self.logger.setLevel(self.orig_level)
        self.logger.removeFilter(self)
        if typ is None and self.required:
            if not self.matched:
                raise Exception("did not get expected log message")
            if self.deprecated_level_matched >= self.matched:
                warnings.warn(
                    "ExpectLog matched at INFO or below without level argument", DeprecationWarning, stacklevel=2
                )


def setup_with_context_manager(testcase: unittest.TestCase, cm: Any) -> Any:
    """Enters ``cm`` now and exits it in ``testcase``'s cleanups; returns what ``__enter__`` gave."""
    value = cm.__enter__()
    testcase.addCleanup(cm.__exit__, None, None, None)
    return value


def main(**kwargs: Any) -> None:
    """``unittest.main`` with tornado_lite's command-line options and log formatting.

    ``python -m tornado_lite.testing some.test_module`` runs the named tests; without names, runs
    the ``all()`` suite of ``__main__``.  ``--verbose``, ``--quiet``, ``--failfast``, ``--catch``
    and ``--buffer`` map to unittest's options; ``--exception_on_interrupt=false`` lets Ctrl-C kill
    the process instead of raising ``KeyboardInterrupt``.  Other keyword arguments go to
    ``unittest.main``.
    """
    from tornado_lite.options import define, options, parse_command_line

    define(
        "exception_on_interrupt",
        type=bool,
        default=True,
        help="Ctrl-C raises KeyboardInterrupt (with a traceback) when true; when false, it kills the process.",
    )
    for name in ("verbose", "quiet", "failfast", "catch", "buffer"):
        define(name, type=bool)

    argv = [sys.argv[0]] + parse_command_line(sys.argv)

    if not options.exception_on_interrupt:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    if options.verbose is not None:
        kwargs["verbosity"] = 2
    if options.quiet is not None:
        kwargs["verbosity"] = 0
    if options.failfast is not None:
        kwargs["failfast"] = True
    if options.catch is not None:
        kwargs["catchbreak"] = True
    if options.buffer is not None:
        kwargs["buffer"] = True

    if __name__ == "__main__" and len(argv) == 1:
        print("No tests specified", file=sys.stderr)
        sys.exit(1)
    if len(argv) > 1:
        # module=None lets the names on the command line be full dotted test names.
        unittest.main(module=None, argv=argv, **kwargs)  # type: ignore[arg-type]
    else:
        unittest.main(defaultTest="all", argv=argv, **kwargs)


# -- the HTTP layer's test cases ----------------------------------------------------------------------
#
# Tornado's HTTP server and client are the real Tornado's, run on tornado_lite via install().  Imports of
# tornado.* and of tornado_lite._install happen inside the methods: install sits above this layer, and the
# core must never need Tornado when nobody asks for HTTP.


def _http_layer() -> None:
    from tornado_lite._install import http_layer  # lazy: install is the layer above (see above)

    http_layer()


class _AsyncHTTPTestCase(AsyncTestCase):
    """A test case with an HTTP server on 127.0.0.1 serving ``get_app()`` and a client to reach it.

    Subclasses override ``get_app()`` (a ``tornado.web.Application`` or any ``HTTPServer``
    callback).  ``self.fetch(path)`` fetches from the server and returns the response (errors are
    responses unless ``raise_error=True``); ``self.http_client`` and ``self.http_server`` are there
    for anything else.  The server gets a new unused port per test (``get_http_port()``).
    """

    def setUp(self) -> None:
        super().setUp()
        _http_layer()
        sock, port = bind_unused_port()
        self.__port = port
        self.http_client = self.get_http_client()
        self._app = self.get_app()
        self.http_server = self.get_http_server()
        self.http_server.add_sockets([sock])

    def get_http_client(self) -> Any:
        """The client for this test: ``AsyncHTTPClient()`` (the loop's shared instance)."""
        from tornado.httpclient import AsyncHTTPClient

        return AsyncHTTPClient()

    def get_http_server(self) -> Any:
        """The server for this test: ``HTTPServer(app, **get_httpserver_options())``."""
        from tornado.httpserver import HTTPServer

        return HTTPServer(self._app, **self.get_httpserver_options())

    def get_app(self) -> Any:
        """Must be overridden: the application (or ``HTTPServer`` callback) under test."""
        raise NotImplementedError()

    def fetch(self, path: str, raise_error: bool = False, **kwargs: Any) -> Any:
        """Fetches ``path`` (or an absolute URL) from the test server, running the loop until done.

        With ``raise_error=False`` (the default) a non-200 answer is returned, not raised; other
        errors (a refused connection, a timeout) are raised.  Keyword arguments go to
        ``AsyncHTTPClient.fetch``.
        """
        if path.lower().startswith(("http://", "https://")):
            url = path
        else:
            url = self.get_url(path)
        return self.io_loop.run_sync(
            lambda: self.http_client.fetch(url, raise_error=raise_error, **kwargs),
            timeout=get_async_test_timeout(),
        )

    def get_httpserver_options(self) -> dict:
        """Keyword arguments for the ``HTTPServer`` (none by default)."""
        return {}

    def get_http_port(self) -> int:
        """The port the test server listens on."""
        return self.__port

    def get_protocol(self) -> str:
        return "http"

    def get_url(self, path: str) -> str:
        """The absolute URL of ``path`` on the test server."""
        return f"{self.get_protocol()}://127.0.0.1:{self.get_http_port()}{path}"

    def tearDown(self) -> None:
        self.http_server.stop()
        self.io_loop.run_sync(self.http_server.close_all_connections, timeout=get_async_test_timeout())
        self.http_client.close()
        del self.http_server
        del self._app
        super().tearDown()


class _AsyncHTTPSTestCase(_AsyncHTTPTestCase):
    """``AsyncHTTPTestCase`` over TLS, with Tornado's test certificate and a non-validating client."""

    def get_http_client(self) -> Any:
        from tornado.httpclient import AsyncHTTPClient

        return AsyncHTTPClient(force_instance=True, defaults=dict(validate_cert=False))

    def get_httpserver_options(self) -> dict:
        return dict(ssl_options=self.get_ssl_options())

    def get_ssl_options(self) -> dict:
        """The server's ``ssl_options``: ``default_ssl_options()`` unless overridden."""
        return _AsyncHTTPSTestCase.default_ssl_options()

    @staticmethod
    def default_ssl_options() -> dict:
        """Tornado's test certificate and key (for ``foo.example.com``), shipped in ``tornado/test``."""
        _http_layer()
        import tornado

        module_dir = os.path.dirname(tornado.__file__)
        return dict(
            certfile=os.path.join(module_dir, "test", "test.crt"),
            keyfile=os.path.join(module_dir, "test", "test.key"),
        )

    def get_protocol(self) -> str:
        return "https"


for _cls, _name in ((_AsyncHTTPTestCase, "AsyncHTTPTestCase"), (_AsyncHTTPSTestCase, "AsyncHTTPSTestCase")):
    _cls.__name__ = _cls.__qualname__ = _name
del _cls, _name

_HTTP_TEST_CASES = {"AsyncHTTPTestCase": _AsyncHTTPTestCase, "AsyncHTTPSTestCase": _AsyncHTTPSTestCase}


def __getattr__(name: str) -> Any:
    # Handed out only when asked for, after install(): the HTTP layer then is Tornado's on our core,
    # and a missing or unsupported Tornado is reported here, with the fix.
    case = _HTTP_TEST_CASES.get(name)
    if case is not None:
        _http_layer()
        return case
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AsyncTestCase",
    "ExpectLog",
    "bind_unused_port",
    "gen_test",
    "get_async_test_timeout",
    "main",
    "setup_with_context_manager",
]


if __name__ == "__main__":
    main()
