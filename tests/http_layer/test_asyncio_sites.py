"""Every place where Tornado's HTTP layer calls asyncio itself, exercised through its public API.

After ``tornado_lite.install()`` those calls go to the shim that replaces the name ``asyncio`` in
``tornado.web``, ``tornado.http1connection`` and ``tornado.websocket`` (docs/differences.md).  Each test
names the call sites it reaches (Tornado 6.6.1 line numbers; 6.3-6.5 have a subset of them):

- http1connection: ``await asyncio.sleep(0)`` in ``_read_fixed_body``, ``_read_chunked_body``,
  ``_read_body_until_close`` (after 256 KiB) and between keep-alive requests in
  ``_server_request_loop``; ``except asyncio.CancelledError`` in ``_server_request_loop``;
- web: ``except (Exception, asyncio.CancelledError)``, ``asyncio.current_task()`` and
  ``task.cancelling()`` in ``RequestHandler._execute``;
- websocket: ``asyncio.ensure_future`` in ``write_message`` and ``read_message(callback=)``,
  ``asyncio.create_task(self.periodic_ping())`` and ``asyncio.sleep(interval / timeout)``,
  ``await asyncio.sleep(0)`` in ``_receive_frame_loop``, ``except (Exception, asyncio.CancelledError)``
  in ``_run_callback`` and ``except asyncio.CancelledError`` in ``accept_connection``.

They run on real Tornado too (``TORNADO_LITE_TEST_IMPL=tornado``), where ``asyncio`` is the real one.
"""

import logging
import socket
import struct
import sys
from typing import Any, List, Tuple

import pytest

import tornado.web
import tornado.websocket
from http_helpers import connect, read_frame, websocket_handshake
from tornado import gen, httputil
from tornado.concurrent import Future
from tornado.httpclient import AsyncHTTPClient
from tornado.http1connection import HTTP1ServerConnection
from tornado.log import app_log, gen_log
from tornado.tcpserver import TCPServer
from tornado.testing import AsyncHTTPTestCase, AsyncTestCase, ExpectLog, bind_unused_port, gen_test

BIG = 600 * 1024  # over http1connection's and websocket's 256 KiB between two sleep(0)


class _Errors(logging.Handler):
    """Collects the ERROR records of a logger while installed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def in_executor(test: AsyncTestCase, fn: Any, *args: Any) -> Any:
    """Runs blocking socket code on a thread while the test's loop runs (so that the server answers)."""
    return test.io_loop.run_sync(lambda: test.io_loop.run_in_executor(None, fn, *args), timeout=10)


def _cancelled_future() -> Future:
    future: Future = Future()
    future.cancel()
    return future


def _web_module_asyncio() -> Any:
    """The ``asyncio`` that tornado.web sees: the shim under tornado_lite, asyncio itself on Tornado.

    Tests use it to reach the handler's task the way a Tornado app reaches it with asyncio.
    """
    return sys.modules["tornado.web"].asyncio


# -- http1connection ---------------------------------------------------------------------------------


@tornado.web.stream_request_body
class _CountingBodyHandler(tornado.web.RequestHandler):
    def prepare(self) -> None:
        self.received = 0
        self.pieces = 0

    def data_received(self, chunk: bytes) -> None:
        self.received += len(chunk)
        self.pieces += 1

    def put(self) -> None:
        self.write({"received": self.received, "pieces": self.pieces})


class _EchoLengthHandler(tornado.web.RequestHandler):
    def post(self) -> None:
        self.write(str(len(self.request.body)))


class BodyReadingTest(AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application([("/stream", _CountingBodyHandler), ("/len", _EchoLengthHandler)])

    def test_fixed_length_body_over_the_yield_threshold(self) -> None:
        # http1connection._read_fixed_body: asyncio.sleep(0) every 256 KiB.
        response = self.fetch("/stream", method="PUT", body=b"x" * BIG)
        self.assertEqual(response.code, 200)
        self.assertEqual(tornado.escape.json_decode(response.body)["received"], BIG)

    def test_chunked_body_over_the_yield_threshold(self) -> None:
        # http1connection._read_chunked_body: asyncio.sleep(0) per 256 KiB of chunks (and per chunk count).
        async def producer(write: Any) -> None:
            for _ in range(BIG // 1024):
                await write(b"y" * 1024)

        response = self.fetch("/stream", method="PUT", body_producer=producer)
        self.assertEqual(response.code, 200)
        self.assertEqual(tornado.escape.json_decode(response.body)["received"], BIG)

    def test_keep_alive_requests_are_all_answered(self) -> None:
        # http1connection._server_request_loop: asyncio.sleep(0) between two requests of one connection.
        request = b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        data = in_executor(self, _send_and_read_answers, self.get_http_port(), request * 3, 3)
        self.assertEqual(data.count(b"HTTP/1.1 200"), 3, data)


def _send_and_read_answers(port: int, requests: bytes, answers: int) -> bytes:
    sock = connect(port)
    try:
        sock.sendall(requests)
        data = b""
        while data.count(b"HTTP/1.1 ") < answers or not data.endswith(b"3"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


class _CloseDelimitedServer(TCPServer):
    """Answers with a body that only the connection's end delimits (no length, not chunked)."""

    async def handle_stream(self, stream: Any, address: Any) -> None:
        await stream.read_until(b"\r\n\r\n")
        await stream.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"z" * BIG)
        stream.close()


class CloseDelimitedBodyTest(AsyncTestCase):
    @gen_test
    async def test_body_until_close_over_the_yield_threshold(self) -> None:
        # http1connection._read_body_until_close (client side): asyncio.sleep(0) every 256 KiB.
        sock, port = bind_unused_port()
        server = _CloseDelimitedServer()
        server.add_sockets([sock])
        client = AsyncHTTPClient(force_instance=True)
        try:
            response = await client.fetch(f"http://127.0.0.1:{port}/")
            self.assertEqual(len(response.body), BIG)
        finally:
            client.close()
            server.stop()


class _RecordingDelegate(httputil.HTTPServerConnectionDelegate):
    """Serves nothing; records each server connection and when its request loop ends."""

    def __init__(self) -> None:
        self.connections: List[HTTP1ServerConnection] = []
        self.started: Future = Future()
        self.closed: Future = Future()

    def start_request(self, server_conn: Any, request_conn: Any) -> httputil.HTTPMessageDelegate:
        if not self.started.done():
            self.started.set_result(None)
        return httputil.HTTPMessageDelegate()

    def on_close(self, server_conn: Any) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _RawHTTPServer(TCPServer):
    """Serves each connection with ``HTTP1ServerConnection`` and one delegate (what HTTPServer does)."""

    def __init__(self, delegate: _RecordingDelegate) -> None:
        super().__init__()
        self.delegate = delegate

    def handle_stream(self, stream: Any, address: Any) -> None:
        conn = HTTP1ServerConnection(stream)
        self.delegate.connections.append(conn)
        conn.start_serving(self.delegate)


class ServerLoopCancellationTest(AsyncTestCase):
    @gen_test
    async def test_cancelled_request_loop_ends_quietly(self) -> None:
        # http1connection._server_request_loop: `except (..., asyncio.CancelledError): return`.  Without
        # it the cancellation would be logged as "Uncaught exception" on tornado.general.  Cancelling
        # the connection's serving task (held in _serving_future: Tornado has no public handle on it)
        # while it waits for a request's headers is what reaches that clause.
        delegate = _RecordingDelegate()
        sock, port = bind_unused_port()
        server = _RawHTTPServer(delegate)
        server.add_sockets([sock])
        errors = _Errors()
        for logger in (gen_log, app_log):
            logger.addHandler(errors)
        client = socket.create_connection(("127.0.0.1", port))
        try:
            await gen.with_timeout(self.io_loop.time() + 5, delegate.started)
            delegate.connections[0]._serving_future.cancel()
            await gen.with_timeout(self.io_loop.time() + 5, delegate.closed)
            await gen.sleep(0.01)  # anything logged when the task ends has been logged by now
            self.assertEqual([r.getMessage() for r in errors.records], [])
        finally:
            for logger in (gen_log, app_log):
                logger.removeHandler(errors)
            client.close()
            server.stop()


# -- web.RequestHandler._execute ----------------------------------------------------------------------


class _OwnTaskCancelledHandler(tornado.web.RequestHandler):
    async def get(self) -> None:
        test = self.application.settings["test"]
        test.handler_task = _web_module_asyncio().current_task()
        test.handler_started.set_result(None)
        await Future()  # until the test cancels this handler's task


class _AwaitsCancelledHandler(tornado.web.RequestHandler):
    async def get(self) -> None:
        await _cancelled_future()


class _HTTPErrorHandler(tornado.web.RequestHandler):
    async def get(self) -> None:
        await gen.sleep(0)
        raise tornado.web.HTTPError(403, "not you")


class _FailingHandler(tornado.web.RequestHandler):
    async def get(self) -> None:
        await gen.sleep(0)
        raise ValueError("handler bug")


class HandlerErrorsTest(AsyncHTTPTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.handler_task: Any = None
        self.handler_started: Future = Future()

    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application(
            [
                ("/own_task", _OwnTaskCancelledHandler),
                ("/awaits_cancelled", _AwaitsCancelledHandler),
                ("/http_error", _HTTPErrorHandler),
                ("/failing", _FailingHandler),
            ],
            test=self,
        )

    @gen_test
    async def test_cancelling_the_handlers_own_task_answers_500_without_logging(self) -> None:
        # web.py: asyncio.current_task() and task.cancelling() say the handler's own task was cancelled.
        errors = _Errors()
        app_log.addHandler(errors)
        try:
            response_future = self.http_client.fetch(self.get_url("/own_task"), raise_error=False)
            await gen.with_timeout(self.io_loop.time() + 5, self.handler_started)
            self.assertIsNotNone(self.handler_task)
            self.handler_task.cancel()
            response = await response_future
            self.assertEqual(response.code, 500)
            self.assertTrue(self.handler_task.cancelled())
            self.assertEqual([r.getMessage() for r in errors.records], [])
        finally:
            app_log.removeHandler(errors)

    def test_awaiting_a_cancelled_future_is_an_uncaught_exception(self) -> None:
        # web.py: `except (Exception, asyncio.CancelledError)` with cancelling() == 0: the usual 500.
        with ExpectLog(app_log, "Uncaught exception"):
            response = self.fetch("/awaits_cancelled")
        self.assertEqual(response.code, 500)

    def test_http_error_page(self) -> None:
        # web.py: the same except clause (a tuple of classes) on the ordinary error path.
        with ExpectLog(gen_log, ".*not you", required=False):
            response = self.fetch("/http_error")
        self.assertEqual(response.code, 403)
        self.assertIn(b"403: Forbidden", response.body)

    def test_exception_in_handler_is_500_and_logged(self) -> None:
        with ExpectLog(app_log, "Uncaught exception"):
            response = self.fetch("/failing")
        self.assertEqual(response.code, 500)
        self.assertIn(b"500: Internal Server Error", response.body)


# -- websocket ----------------------------------------------------------------------------------------


class _EchoSocket(tornado.websocket.WebSocketHandler):
    async def on_message(self, message: Any) -> None:
        await self.write_message(message, binary=isinstance(message, bytes))


class _WritesAfterCloseSocket(tornado.websocket.WebSocketHandler):
    def on_close(self) -> None:
        test = self.application.settings["test"]
        try:
            future = self.write_message("too late")
        except tornado.websocket.WebSocketClosedError:
            test.after_close.set_result("raised at once")
            return
        future.add_done_callback(lambda f: test.after_close.set_result(f.exception()))


class _PongCountingSocket(tornado.websocket.WebSocketHandler):
    def open(self) -> None:
        self.application.settings["test"].pongs = 0

    def on_pong(self, data: bytes) -> None:
        test = self.application.settings["test"]
        test.pongs += 1
        if test.pongs == 2 and not test.two_pongs.done():
            test.two_pongs.set_result(None)


class _SilentPingSocket(tornado.websocket.WebSocketHandler):
    def on_close(self) -> None:
        test = self.application.settings["test"]
        if not test.closed.done():
            test.closed.set_result((self.close_code, self.close_reason))


class _RaisingSocket(tornado.websocket.WebSocketHandler):
    def on_message(self, message: Any) -> None:
        raise ValueError("on_message bug")


class _AsyncRaisingSocket(tornado.websocket.WebSocketHandler):
    async def on_message(self, message: Any) -> None:
        await gen.sleep(0)
        raise ValueError("async on_message bug")


class _OpenCancelledSocket(tornado.websocket.WebSocketHandler):
    async def open(self) -> None:
        await _cancelled_future()

    def on_message(self, message: Any) -> None:
        self.write_message("should never get here")


class _CountingSocket(tornado.websocket.WebSocketHandler):
    def open(self) -> None:
        self.count = 0
        self.size = 0

    def on_message(self, message: Any) -> None:
        self.count += 1
        self.size += len(message)
        if message == "done":
            self.write_message(f"{self.count} {self.size}")


class WebSocketSitesTest(AsyncHTTPTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.after_close: Future = Future()

    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application(
            [
                ("/echo", _EchoSocket),
                ("/after_close", _WritesAfterCloseSocket),
                ("/raising", _RaisingSocket),
                ("/async_raising", _AsyncRaisingSocket),
                ("/open_cancelled", _OpenCancelledSocket),
                ("/counting", _CountingSocket),
            ],
            test=self,
        )

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.get_http_port()}{path}"

    @gen_test
    async def test_write_message_future_resolves(self) -> None:
        # websocket.write_message: asyncio.ensure_future(wrapper()), awaited on both ends.
        conn = await tornado.websocket.websocket_connect(self.ws_url("/echo"))
        try:
            self.assertIsNone(await conn.write_message("hello"))
            self.assertEqual(await conn.read_message(), "hello")
            await conn.write_message(b"\x00\x01", binary=True)
            self.assertEqual(await conn.read_message(), b"\x00\x01")
        finally:
            conn.close()

    @gen_test
    async def test_write_message_after_close_fails_with_websocket_closed_error(self) -> None:
        # websocket.write_message's wrapper turns StreamClosedError into WebSocketClosedError.
        conn = await tornado.websocket.websocket_connect(self.ws_url("/after_close"))
        conn.close()
        outcome = await gen.with_timeout(self.io_loop.time() + 5, self.after_close)
        if outcome != "raised at once":
            self.assertIsInstance(outcome, tornado.websocket.WebSocketClosedError)

    @gen_test
    async def test_read_message_callback(self) -> None:
        # websocket.read_message(callback=...): io_loop.add_future(asyncio.ensure_future(awaitable), cb).
        conn = await tornado.websocket.websocket_connect(self.ws_url("/echo"))
        try:
            got: Future = Future()
            conn.read_message(callback=got.set_result)
            await conn.write_message("via callback")
            delivered = await gen.with_timeout(self.io_loop.time() + 5, got)
            self.assertEqual(delivered.result(), "via callback")
        finally:
            conn.close()

    @gen_test
    async def test_many_small_messages_over_the_yield_threshold(self) -> None:
        # websocket._receive_frame_loop: asyncio.sleep(0) per 256 KiB of frames.
        conn = await tornado.websocket.websocket_connect(self.ws_url("/counting"))
        try:
            for _ in range(3000):
                conn.write_message("m" * 100)
            await conn.write_message("done")
            reply = await gen.with_timeout(self.io_loop.time() + 10, conn.read_message())
            self.assertEqual(reply, f"3001 {3000 * 100 + 4}")
        finally:
            conn.close()

    @gen_test
    async def test_exception_in_on_message_aborts_the_connection(self) -> None:
        # websocket._run_callback: `except (Exception, asyncio.CancelledError)` around a plain callback.
        conn = await tornado.websocket.websocket_connect(self.ws_url("/raising"))
        with ExpectLog(app_log, "Uncaught exception"):
            await conn.write_message("hello")
            self.assertIsNone(await gen.with_timeout(self.io_loop.time() + 5, conn.read_message()))

    @gen_test
    async def test_exception_in_async_on_message_aborts_the_connection(self) -> None:
        # websocket._run_callback's on_done: `except (Exception, asyncio.CancelledError)` on the result.
        conn = await tornado.websocket.websocket_connect(self.ws_url("/async_raising"))
        with ExpectLog(app_log, "Uncaught exception"):
            await conn.write_message("hello")
            self.assertIsNone(await gen.with_timeout(self.io_loop.time() + 5, conn.read_message()))

    @gen_test
    async def test_cancelled_open_aborts_the_connection(self) -> None:
        # websocket.accept_connection: `except asyncio.CancelledError: self._abort()`.
        errors = _Errors()
        for logger in (gen_log, app_log):
            logger.addHandler(errors)
        try:
            conn = await tornado.websocket.websocket_connect(self.ws_url("/open_cancelled"))
            self.assertIsNone(await gen.with_timeout(self.io_loop.time() + 5, conn.read_message()))
            await gen.sleep(0.01)  # anything logged when the handler's task ends has been logged by now
            self.assertEqual([r.getMessage() for r in errors.records], [])
        finally:
            for logger in (gen_log, app_log):
                logger.removeHandler(errors)


class PingTest(AsyncHTTPTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.two_pongs: Future = Future()
        self.closed: Future = Future()
        self.pongs = 0

    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application(
            [("/pongs", _PongCountingSocket), ("/silent", _SilentPingSocket)],
            websocket_ping_interval=0.05,
            websocket_ping_timeout=0.2,
            test=self,
        )

    @gen_test
    async def test_ping_interval_pings_an_idle_client(self) -> None:
        # websocket.start_pinging: asyncio.create_task(self.periodic_ping()); asyncio.sleep(interval).
        conn = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{self.get_http_port()}/pongs")
        try:
            await gen.with_timeout(self.io_loop.time() + 5, self.two_pongs)
            self.assertGreaterEqual(self.pongs, 2)
        finally:
            conn.close()

    def test_ping_timeout_closes_a_silent_client(self) -> None:
        # websocket.periodic_ping: asyncio.sleep(timeout), then close(reason="ping timed out"); the ping
        # task is cancelled when the connection closes.
        frames = in_executor(self, _frames_until_close, self.get_http_port(), "/silent")
        self.assertIn(0x9, [opcode for opcode, _ in frames])  # it was pinged
        self.assertEqual(frames[-1][0], 0x8)  # then closed
        code, reason = struct.unpack(">H", frames[-1][1][:2])[0], frames[-1][1][2:]
        self.assertEqual((code, reason), (1000, b"ping timed out"))


def _frames_until_close(port: int, path: str) -> List[Tuple[int, bytes]]:
    """Opens a WebSocket, never answers anything, and returns the frames received until a close frame."""
    sock = websocket_handshake(port, path)
    frames: List[Tuple[int, bytes]] = []
    try:
        while not frames or frames[-1][0] != 0x8:
            try:
                frames.append(read_frame(sock))
            except (EOFError, OSError):
                break
    finally:
        sock.close()
    return frames


pytestmark = pytest.mark.timeout(60)
