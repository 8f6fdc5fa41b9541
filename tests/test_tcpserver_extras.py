"""Tests for TCPServer's opt-in extras: drain, connection limits and timeouts, statistics.

Everything runs over real sockets on 127.0.0.1.  Waits are bounded loops on a condition (never
assertions on how long something took); the SIGTERM drain runs in a child process of its own.
"""

import gc
import logging
import signal
import socket
import ssl
import sys
import textwrap
import time
import weakref
from typing import Any, Callable, List

import pytest

from proc_helpers import ServerProcess
from tornado_lite import gen
from tornado_lite.concurrent import Future
from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import IOStream, SSLIOStream, StreamClosedError
from tornado_lite.netutil import bind_sockets
from tornado_lite.tcpserver import (
    DrainResult,
    DrainTimeoutError,
    HandshakeTimeoutError,
    IdleTimeoutError,
    ServerStats,
    TCPServer,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix only")


@pytest.fixture
def io_loop():
    loop = IOLoop()
    loop.make_current()
    yield loop
    loop.close(all_fds=True)
    IOLoop.clear_current()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    d = tmp_path_factory.mktemp("tls")
    files = {"certfile": str(d / "cert.pem"), "keyfile": str(d / "key.pem"), "ca_certs": str(d / "ca.pem")}
    cert.cert_chain_pems[0].write_to_path(files["certfile"])
    cert.private_key_pem.write_to_path(files["keyfile"])
    ca.cert_pem.write_to_path(files["ca_certs"])
    return files


def _serve(server: TCPServer) -> tuple:
    [sock] = bind_sockets(0, "127.0.0.1")
    server.add_socket(sock)
    return sock.getsockname()


async def _connect(address: Any) -> IOStream:
    stream = IOStream(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    await stream.connect(address)
    return stream


async def _until(condition: Callable[[], bool], limit: float = 20.0) -> None:
    """Waits (bounded) until ``condition()`` holds; fails the test otherwise."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in %gs" % limit)
        await gen.sleep(0.01)


class LineEcho(TCPServer):
    """Echoes lines until the client leaves; remembers why each of its streams ended."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.errors: List[Any] = []

    async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
        try:
            while True:
                line = await stream.read_until(b"\n")
                await stream.write(line)
        except StreamClosedError as e:
            self.errors.append(e.real_error)


# -- defaults: nothing changes -------------------------------------------------------------------


def test_defaults_are_tornados_and_arguments_are_checked() -> None:
    server = TCPServer()
    assert (server.max_connections, server.idle_timeout, server.handshake_timeout) == (None, None, None)
    for bad in ({"max_connections": 0}, {"idle_timeout": 0}, {"idle_timeout": -1.0}, {"handshake_timeout": 0}):
        with pytest.raises(ValueError):
            TCPServer(**bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TCPServer(None, None, None, 10)  # type: ignore[call-arg]  # the extras are keyword-only


def test_without_timeouts_no_sweep_runs_and_quiet_connections_stay(io_loop) -> None:
    server = LineEcho()
    address = _serve(server)

    async def scenario() -> bytes:
        client = await _connect(address)
        await client.write(b"one\n")
        assert await client.read_until(b"\n") == b"one\n"
        await gen.sleep(0.2)
        assert server._sweep_timer is None  # nothing scheduled on the loop for a default server
        await client.write(b"two\n")
        reply = await client.read_until(b"\n")
        client.close()
        return reply

    try:
        assert io_loop.run_sync(scenario, timeout=30) == b"two\n"
    finally:
        server.stop()


# -- statistics ----------------------------------------------------------------------------------


def test_stats_add_up_after_a_burst_of_connections(io_loop) -> None:
    server = LineEcho()
    address = _serve(server)
    clients = 40

    async def one(i: int) -> int:
        stream = await _connect(address)
        payload = b"x" * (i * 37 % 5000) + b"%d\n" % i
        await stream.write(payload)
        assert await stream.read_until(b"\n") == payload
        stream.close()
        return len(payload)

    async def burst() -> int:
        sizes = await gen.multi([one(i) for i in range(clients)])
        await _until(lambda: server.stats().closed == clients)
        return sum(sizes)

    try:
        total = io_loop.run_sync(burst, timeout=60)
        stats = server.stats()
        assert isinstance(stats, ServerStats)
        assert stats.accepted == clients
        assert stats.closed == clients
        assert stats.open_connections == 0
        assert stats.bytes_in == total
        assert stats.bytes_out == total
        assert stats.accepting is True
        assert (stats.limit_hits, stats.idle_timeouts, stats.handshake_timeouts) == (0, 0, 0)
        assert (stats.drains, stats.drain_finished, stats.drain_cut) == (0, 0, 0)
        assert repr(stats).startswith("ServerStats(open_connections=0, accepted=40, closed=40, bytes_in=")
        assert server._live_conns == set() and server._successors == {}
    finally:
        server.stop()
    assert server.stats().accepting is False


def test_stats_count_open_streams_bytes(io_loop) -> None:
    server = LineEcho()
    address = _serve(server)

    async def scenario() -> ServerStats:
        streams = [await _connect(address) for _ in range(3)]
        for stream in streams:
            await stream.write(b"abc\n")
            await stream.read_until(b"\n")
        stats = server.stats()
        for stream in streams:
            stream.close()
        return stats

    try:
        stats = io_loop.run_sync(scenario, timeout=30)
    finally:
        server.stop()
    assert (stats.open_connections, stats.accepted, stats.closed) == (3, 3, 0)
    assert (stats.bytes_in, stats.bytes_out) == (12, 12)


def test_streams_are_freed_without_the_cycle_collector(io_loop) -> None:
    refs: List[Any] = []

    class Server(TCPServer):
        async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            refs.append(weakref.ref(stream))
            await stream.write(b"bye")
            stream.close()

    server = Server()
    address = _serve(server)

    async def scenario() -> bytes:
        client = await _connect(address)
        data = await client.read_until_close()
        await _until(lambda: server.stats().closed == 1)
        for _ in range(3):
            await gen.moment
        return data

    gc.collect()
    gc.disable()
    try:
        assert io_loop.run_sync(scenario, timeout=30) == b"bye"
        assert len(refs) == 1 and refs[0]() is None
    finally:
        gc.enable()
        server.stop()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_abandoned_stream_is_still_freed_and_counted_closed(io_loop) -> None:
    # Tornado lets a stream nobody keeps go (its socket closes as it is freed); tracking must not
    # keep it alive.
    class Server(TCPServer):
        def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            stream.write(b"hello")  # sent at once; then the stream is dropped without a close

    server = Server()
    address = _serve(server)

    async def scenario() -> bytes:
        client = await _connect(address)
        data = await client.read_until_close()
        gc.collect()
        await _until(lambda: server.stats().closed == 1)
        return data

    try:
        assert io_loop.run_sync(scenario, timeout=30) == b"hello"
        stats = server.stats()
        assert (stats.accepted, stats.closed, stats.open_connections) == (1, 1, 0)
        assert server._live_conns == set()
    finally:
        server.stop()


def test_start_tls_keeps_counting_the_same_connection(io_loop, tls_files) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tls_files["certfile"], tls_files["keyfile"])
    client_context = ssl.create_default_context(cafile=tls_files["ca_certs"])

    class StartTLSServer(TCPServer):
        async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            assert await stream.read_until(b"\n") == b"STARTTLS\n"
            await stream.write(b"GO\n")
            tls = await stream.start_tls(server_side=True, ssl_options=server_context)
            line = await tls.read_until(b"\n")
            await tls.write(line.upper())
            self.open_during = self.stats().open_connections
            # The TLS stream's bytes count while it is open, as the plain stream's did before it.
            self.bytes_in_during = self.stats().bytes_in
            tls.close()

    server = StartTLSServer(max_connections=5)
    address = _serve(server)

    async def scenario() -> bytes:
        client = await _connect(address)
        await client.write(b"STARTTLS\n")
        assert await client.read_until(b"\n") == b"GO\n"
        tls = await client.start_tls(False, client_context, server_hostname="localhost")
        await tls.write(b"secret\n")
        reply = await tls.read_until(b"\n")
        await tls.read_until_close()
        tls.close()
        await _until(lambda: server.stats().closed == 1)
        return reply

    try:
        assert io_loop.run_sync(scenario, timeout=30) == b"SECRET\n"
        assert server.open_during == 1
        assert server.bytes_in_during == len(b"STARTTLS\n") + len(b"secret\n")
        stats = server.stats()
        assert (stats.accepted, stats.closed, stats.open_connections) == (1, 1, 0)
        assert stats.bytes_in == len(b"STARTTLS\n") + len(b"secret\n")
        assert stats.bytes_out == len(b"GO\n") + len(b"SECRET\n")
        assert server._live_conns == set() and server._successors == {}
    finally:
        server.stop()


# -- max_connections ------------------------------------------------------------------------------


def test_max_connections_leaves_new_clients_in_the_backlog(io_loop) -> None:
    release: List[Future] = []

    class Held(TCPServer):
        async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            waiter: Future[None] = Future()
            release.append(waiter)
            await stream.write(b"hi\n")
            await waiter
            stream.close()

    server = Held(max_connections=2)
    address = _serve(server)

    async def scenario() -> None:
        clients = [await _connect(address) for _ in range(5)]  # the kernel completes all five
        greeted = [c.read_until(b"\n") for c in clients]
        await _until(lambda: len(release) == 2)
        await gen.sleep(0.2)  # time for a wrongly accepted third one to show up
        stats = server.stats()
        assert (stats.accepted, stats.open_connections, stats.limit_hits) == (2, 2, 1)
        assert stats.accepting is False
        assert len(release) == 2
        assert sum(f.done() for f in greeted) == 2
        # One leaves: exactly one more is taken from the backlog.
        release[0].set_result(None)
        await _until(lambda: len(release) == 3)
        await gen.sleep(0.1)
        assert server.stats().accepted == 3
        assert len(release) == 3
        # Let everyone through.
        while len(release) < 5 or not all(f.done() for f in release):
            for waiter in release:
                if not waiter.done():
                    waiter.set_result(None)
            await gen.sleep(0.01)
        for reply in greeted:
            assert await reply == b"hi\n"
        for c in clients:
            assert await c.read_until_close() == b""
            c.close()
        await _until(lambda: server.stats().closed == 5)

    try:
        io_loop.run_sync(scenario, timeout=60)
        stats = server.stats()
        assert (stats.accepted, stats.closed, stats.open_connections) == (5, 5, 0)
        assert stats.limit_hits >= 2
        assert stats.accepting is True
    finally:
        server.stop()


def test_stop_while_paused_by_max_connections(io_loop) -> None:
    class Quiet(TCPServer):
        def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            self.stream = stream

    server = Quiet(max_connections=1)
    [sock] = bind_sockets(0, "127.0.0.1")
    server.add_socket(sock)

    async def scenario() -> None:
        client = await _connect(sock.getsockname())
        await _until(lambda: server.stats().accepted == 1)
        assert server.stats().accepting is False
        server.stop()
        assert sock.fileno() == -1
        server.stream.close()  # would resume accepting if the server were not stopped
        assert server.stats().accepting is False
        client.close()

    io_loop.run_sync(scenario, timeout=30)


# -- idle_timeout ---------------------------------------------------------------------------------


def test_idle_timeout_closes_a_quiet_stream_with_the_reason(io_loop) -> None:
    server = LineEcho(idle_timeout=0.2)
    address = _serve(server)

    async def scenario() -> bytes:
        client = await _connect(address)
        await client.write(b"ping\n")
        assert await client.read_until(b"\n") == b"ping\n"
        rest = await client.read_until_close()  # the server hangs up on us
        client.close()
        await _until(lambda: len(server.errors) == 1)
        return rest

    try:
        assert io_loop.run_sync(scenario, timeout=30) == b""
    finally:
        server.stop()
    [error] = server.errors
    assert isinstance(error, IdleTimeoutError) and isinstance(error, TimeoutError)
    stats = server.stats()
    assert (stats.idle_timeouts, stats.closed, stats.open_connections) == (1, 1, 0)
    assert server._sweep_timer is None  # the sweep stops with the last stream


def test_idle_timeout_spares_a_busy_stream(io_loop) -> None:
    # Activity in either direction counts: here the client talks and the server answers, for more
    # than twice the timeout, and the connection survives; then it goes quiet and is closed.
    server = LineEcho(idle_timeout=0.5)
    address = _serve(server)

    async def scenario() -> int:
        client = await _connect(address)
        exchanges = 0
        start = time.monotonic()
        while time.monotonic() - start < 1.2:
            await client.write(b"tick\n")
            assert await client.read_until(b"\n") == b"tick\n"
            exchanges += 1
            await gen.sleep(0.02)
        assert server.stats().idle_timeouts == 0
        assert await client.read_until_close() == b""
        client.close()
        return exchanges

    try:
        assert io_loop.run_sync(scenario, timeout=30) > 1
    finally:
        server.stop()
    assert server.stats().idle_timeouts == 1


def test_idle_timeout_counts_server_writes_as_activity(io_loop) -> None:
    class Talker(TCPServer):
        async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            try:
                for _ in range(60):
                    await stream.write(b".")
                    await gen.sleep(0.02)
                await stream.write(b"done")
                await stream.read_until(b"never")
            except StreamClosedError as e:
                self.error = e.real_error

    server = Talker(idle_timeout=0.4)
    address = _serve(server)

    async def scenario() -> bytes:
        client = await _connect(address)
        data = await client.read_until_close()
        client.close()
        await _until(lambda: hasattr(server, "error"))
        return data

    try:
        assert io_loop.run_sync(scenario, timeout=30) == b"." * 60 + b"done"
    finally:
        server.stop()
    assert isinstance(server.error, IdleTimeoutError)


# -- handshake_timeout ------------------------------------------------------------------------------


def _tls_server_context(tls_files: dict) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files["certfile"], tls_files["keyfile"])
    return context


def test_handshake_timeout_closes_a_silent_tls_client(io_loop, tls_files) -> None:
    server = LineEcho(ssl_options=_tls_server_context(tls_files), handshake_timeout=0.2)
    address = _serve(server)

    async def scenario() -> bytes:
        client = await _connect(address)  # plain TCP: never says hello
        data = await client.read_until_close()
        client.close()
        await _until(lambda: len(server.errors) == 1)
        return data

    try:
        assert io_loop.run_sync(scenario, timeout=30) == b""
    finally:
        server.stop()
    [error] = server.errors
    assert isinstance(error, HandshakeTimeoutError)
    assert server.stats().handshake_timeouts == 1


def test_handshake_timeout_spares_a_finished_handshake(io_loop, tls_files) -> None:
    server = LineEcho(ssl_options=_tls_server_context(tls_files), handshake_timeout=0.5)
    address = _serve(server)
    client_context = ssl.create_default_context(cafile=tls_files["ca_certs"])

    async def scenario() -> bytes:
        client = SSLIOStream(socket.socket(), ssl_options=client_context)
        await client.connect(address, server_hostname="localhost")
        await gen.sleep(1.0)  # quiet well past the handshake timeout: only the handshake is timed
        await client.write(b"still here\n")
        reply = await client.read_until(b"\n")
        client.close()
        return reply

    try:
        assert io_loop.run_sync(scenario, timeout=30) == b"still here\n"
    finally:
        server.stop()
    assert server.stats().handshake_timeouts == 0


def test_wait_for_handshake_reports_the_handshake_timeout(io_loop, tls_files) -> None:
    class Waiter(TCPServer):
        async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            try:
                await stream.wait_for_handshake()
            except Exception as e:
                self.error = e

    server = Waiter(ssl_options=_tls_server_context(tls_files), handshake_timeout=0.2, idle_timeout=0.05)
    address = _serve(server)

    async def scenario() -> None:
        client = await _connect(address)
        await client.read_until_close()
        client.close()
        await _until(lambda: hasattr(server, "error"))

    try:
        io_loop.run_sync(scenario, timeout=30)
    finally:
        server.stop()
    # During the handshake only handshake_timeout applies, even when idle_timeout is shorter.
    assert isinstance(server.error, HandshakeTimeoutError)
    assert server.stats().idle_timeouts == 0


# -- drain ------------------------------------------------------------------------------------------


class SlowServer(TCPServer):
    """Reads a line: 'slow' answers after a short pause; 'stuck' then waits for more forever."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.started = 0
        self.errors: List[Any] = []

    async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
        try:
            line = await stream.read_until(b"\n")
            self.started += 1
            if line == b"slow\n":
                await gen.sleep(0.2)
                await stream.write(b"done\n")
                stream.close()
            else:
                await stream.read_until(b"never")
        except StreamClosedError as e:
            self.errors.append(e.real_error)


def test_drain_lets_slow_handlers_finish_and_cuts_the_stuck(io_loop) -> None:
    server = SlowServer()
    [sock] = bind_sockets(0, "127.0.0.1")
    server.add_socket(sock)
    address = sock.getsockname()

    async def scenario() -> tuple:
        clients = [await _connect(address) for _ in range(4)]
        for client, line in zip(clients, [b"slow\n", b"slow\n", b"slow\n", b"stuck\n"]):
            await client.write(line)
        await _until(lambda: server.started == 4)
        replies = [c.read_until_close() for c in clients]
        result = await server.drain(2.0)
        return result, [await r for r in replies], clients

    try:
        result, replies, clients = io_loop.run_sync(scenario, timeout=30)
    finally:
        server.stop()
    for client in clients:
        client.close()
    assert result == DrainResult(finished=3, cut=1)
    assert replies == [b"done\n", b"done\n", b"done\n", b""]
    assert sock.fileno() == -1  # no longer accepting
    [error] = server.errors
    assert isinstance(error, DrainTimeoutError)
    stats = server.stats()
    assert (stats.drains, stats.drain_finished, stats.drain_cut) == (1, 3, 1)
    assert (stats.accepted, stats.closed, stats.open_connections) == (4, 4, 0)


def test_drain_returns_as_soon_as_everything_finished(io_loop) -> None:
    server = SlowServer()
    address = _serve(server)

    async def scenario() -> DrainResult:
        clients = [await _connect(address) for _ in range(3)]
        for client in clients:
            await client.write(b"slow\n")
        await _until(lambda: server.started == 3)
        result = await server.drain(3600)  # the run_sync bound below would fail a wait for the deadline
        for client in clients:
            assert await client.read_until_close() == b"done\n"
            client.close()
        return result

    try:
        assert io_loop.run_sync(scenario, timeout=30) == DrainResult(3, 0)
    finally:
        server.stop()


def test_drain_with_nothing_open_and_with_zero_timeout(io_loop) -> None:
    server = SlowServer()
    address = _serve(server)

    async def scenario() -> tuple:
        client = await _connect(address)
        await client.write(b"stuck\n")
        await _until(lambda: server.started == 1)
        cut_now = await server.drain(0)
        assert len(server.errors) == 1  # the drain let the cut handler unwind before returning
        assert await client.read_until_close() == b""
        client.close()
        again = await server.drain(5)  # already stopped, nothing left
        return cut_now, again

    try:
        assert io_loop.run_sync(scenario, timeout=30) == (DrainResult(0, 1), DrainResult(0, 0))
    finally:
        server.stop()
    assert server.stats().drains == 2


def test_drain_waits_for_streams_of_plain_handlers(io_loop) -> None:
    # A handle_stream that is not a coroutine is done when its stream closes.
    class Plain(TCPServer):
        def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            IOLoop.current().call_later(0.2, self.finish, stream)

        def finish(self, stream):  # type: ignore[no-untyped-def]
            stream.write(b"bye")
            stream.close()

    server = Plain()
    address = _serve(server)

    async def scenario() -> tuple:
        client = await _connect(address)
        await _until(lambda: server.stats().accepted == 1)
        result = await server.drain(20)
        data = await client.read_until_close()
        client.close()
        return result, data

    try:
        assert io_loop.run_sync(scenario, timeout=30) == (DrainResult(1, 0), b"bye")
    finally:
        server.stop()


def test_drain_also_waits_for_a_handler_whose_stream_closed(io_loop) -> None:
    # The client leaves, but the handler still has work to do (say, saving a result): a drain
    # waits for it; if it outlasts the deadline, it counts as cut.
    class Lingering(TCPServer):
        async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            try:
                await stream.read_until(b"\n")
            except StreamClosedError:
                pass
            await gen.sleep(0.2)
            self.done = True

    server = Lingering()
    address = _serve(server)

    async def scenario() -> DrainResult:
        client = await _connect(address)
        await _until(lambda: server.stats().accepted == 1)
        client.close()
        await _until(lambda: server.stats().closed == 1)
        return await server.drain(20)

    try:
        assert io_loop.run_sync(scenario, timeout=30) == DrainResult(1, 0)
        assert server.done is True
    finally:
        server.stop()


def test_drain_waits_for_a_decorated_coroutine_that_closed_in_its_first_step(io_loop) -> None:
    class Early(TCPServer):
        @gen.coroutine
        def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            stream.write(b"bye")
            stream.close()  # runs synchronously inside the accept, before a future exists
            yield self.release
            self.done = True

    server = Early()
    server.release = Future()
    address = _serve(server)

    async def scenario() -> DrainResult:
        client = await _connect(address)
        assert await client.read_until_close() == b"bye"
        client.close()
        drain = gen.convert_yielded(server.drain(20))
        await gen.moment
        assert not drain.done()  # waiting for the handler, whose stream is long closed
        server.release.set_result(None)
        return await drain

    try:
        assert io_loop.run_sync(scenario, timeout=30) == DrainResult(1, 0)
        assert server.done is True
    finally:
        server.stop()


def test_failing_handlers_leave_nothing_tracked(io_loop, caplog) -> None:
    class Failing(TCPServer):
        def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            if address[1] % 2:
                raise ValueError("plain failure")
            return self.fail_later(stream)

        async def fail_later(self, stream):  # type: ignore[no-untyped-def]
            await stream.read_bytes(1)
            raise ValueError("coroutine failure")

    server = Failing()
    address = _serve(server)

    async def scenario() -> None:
        for _ in range(6):
            client = await _connect(address)
            await client.write(b"x")
            assert await client.read_until_close() == b""
            client.close()
        await _until(lambda: server.stats().closed == 6 and not server._live_conns)

    caplog.set_level(logging.CRITICAL, logger="tornado.application")
    try:
        io_loop.run_sync(scenario, timeout=30)
        stats = server.stats()
        assert (stats.accepted, stats.closed, stats.open_connections) == (6, 6, 0)
        assert server._live_conns == set() and server._successors == {}
    finally:
        server.stop()


SIGTERM_SCRIPT = textwrap.dedent(
    """
    import signal, sys
    signal.alarm(60)
    from tornado_lite import gen
    from tornado_lite.ioloop import IOLoop
    from tornado_lite.iostream import StreamClosedError
    from tornado_lite.netutil import bind_sockets
    from tornado_lite.tcpserver import TCPServer

    class Server(TCPServer):
        async def handle_stream(self, stream, address):
            try:
                line = await stream.read_until(b"\\n")
                print("handling", line.strip().decode(), flush=True)
                if line == b"slow\\n":
                    await gen.sleep(0.3)
                    await stream.write(b"finished\\n")
                    stream.close()
                else:
                    await stream.read_until(b"never")
            except StreamClosedError as e:
                print("cut", type(e.real_error).__name__, flush=True)

    loop = IOLoop.current()
    server = Server()
    [sock] = bind_sockets(0, "127.0.0.1")
    server.add_socket(sock)
    server.drain_on_signal(signal.SIGTERM, float(sys.argv[1]), then=loop.stop)
    print("port", sock.getsockname()[1], flush=True)
    loop.start()
    stats = server.stats()
    print("stopped", stats.drain_finished, stats.drain_cut, stats.open_connections, flush=True)
    """
)


def test_sigterm_drains_then_stops_the_loop_in_a_subprocess() -> None:
    proc = ServerProcess(["-c", SIGTERM_SCRIPT, "2.0"])
    clients: List[socket.socket] = []
    try:
        port = int(proc.expect(r"^port (\d+)$").group(1))
        for line in (b"slow\n", b"stuck\n"):
            client = socket.create_connection(("127.0.0.1", port), timeout=30)
            client.sendall(line)
            clients.append(client)
            proc.expect("^handling " + line.strip().decode() + "$")
        proc.signal_member(proc.proc.pid, signal.SIGTERM)
        received = b""
        while True:
            chunk = clients[0].recv(100)
            if not chunk:
                break
            received += chunk
        assert received == b"finished\n"  # the slow handler was allowed to finish
        assert clients[1].recv(100) == b""  # the stuck one was cut at the deadline
        proc.expect("^cut DrainTimeoutError$")
        proc.expect(r"^stopped 1 1 0$")
        assert proc.proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr()
    finally:
        for client in clients:
            client.close()
        proc.kill()


def test_second_sigterm_cuts_at_once_in_a_subprocess() -> None:
    proc = ServerProcess(["-c", SIGTERM_SCRIPT, "3600"])
    client = None
    try:
        port = int(proc.expect(r"^port (\d+)$").group(1))
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        client.sendall(b"stuck\n")
        proc.expect("^handling stuck$")
        proc.signal_member(proc.proc.pid, signal.SIGTERM)
        # The first signal starts a drain with a one-hour deadline: the listener closes.
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except ConnectionRefusedError:
                break
            except ConnectionResetError:
                pass  # the listening socket closed while this connect was under way: ask again
            assert time.monotonic() < deadline, "still accepting after SIGTERM"
            time.sleep(0.02)
        proc.signal_member(proc.proc.pid, signal.SIGTERM)
        assert client.recv(100) == b""
        proc.expect("^cut DrainTimeoutError$")
        # (our probes may have been accepted before the listener closed: they finished)
        proc.expect(r"^stopped \d+ 1 0$")
        assert proc.proc.wait(timeout=30) == 0
    finally:
        if client is not None:
            client.close()
        proc.kill()


def test_drain_on_signal_returns_the_previous_handler(io_loop) -> None:
    server = TCPServer()
    previous = signal.getsignal(signal.SIGUSR2)
    try:
        assert server.drain_on_signal(signal.SIGUSR2, 1.0) == previous
        assert callable(signal.getsignal(signal.SIGUSR2))
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_drain_logs_nothing_for_a_clean_drain(io_loop, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = SlowServer()
    address = _serve(server)

    async def scenario() -> DrainResult:
        client = await _connect(address)
        await client.write(b"slow\n")
        await _until(lambda: server.started == 1)
        result = await server.drain(20)
        client.close()
        return result

    try:
        assert io_loop.run_sync(scenario, timeout=30) == DrainResult(1, 0)
    finally:
        server.stop()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
