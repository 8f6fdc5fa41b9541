"""Tests for tornado_lite.tcpclient: the Happy Eyeballs race and TCPClient.connect over real sockets.

They encode Tornado 6's behaviour, so they also run against real Tornado:
``TORNADO_LITE_TEST_IMPL=tornado pytest tests/test_tcpclient.py`` (in a venv that has tornado).

"Unreachable" addresses are made locally, so that the tests need no network: a listening socket
whose accept queue is full (backlog 0, one connection already queued) drops new SYNs, so a connect
to it stays in progress, like a connect to a host that does not answer.
"""

import datetime
import errno
import importlib
import os
import socket
import ssl
import sys
import threading
import unittest
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

impl = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
tcpclient = importlib.import_module(impl + ".tcpclient")
iostream = importlib.import_module(impl + ".iostream")
netutil = importlib.import_module(impl + ".netutil")
concurrent = importlib.import_module(impl + ".concurrent")
gen = importlib.import_module(impl + ".gen")
testing = importlib.import_module(impl + ".testing")
queues = importlib.import_module(impl + ".queues")

if impl == "tornado":
    import asyncio

    CancelledError: Any = asyncio.CancelledError
else:
    CancelledError = concurrent.CancelledError

TCPClient = tcpclient.TCPClient
_Connector = tcpclient._Connector
Future = concurrent.Future
AsyncTestCase = testing.AsyncTestCase
gen_test = testing.gen_test

AF_A, AF_B = 101, 102  # stand-in families for the race tests, which never make sockets

HAVE_IPV6 = False
if socket.has_ipv6:
    try:
        with socket.socket(socket.AF_INET6) as _probe:
            _probe.bind(("::1", 0))
        HAVE_IPV6 = True
    except OSError:
        pass
needs_ipv6 = unittest.skipUnless(HAVE_IPV6, "this host has no IPv6 loopback")
linux_only = unittest.skipUnless(sys.platform.startswith("linux"), "relies on Linux loopback behaviour")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- the race, with fake attempts --------------------------------------------------------------------


class FakeStream:
    def __init__(self, addr: Any) -> None:
        self.addr = addr
        self.closed = False

    def close(self) -> None:
        self.closed = True


class ConnectorRaceTest(AsyncTestCase):
    """Drives ``_Connector`` by hand: every attempt is a future the test resolves."""

    def setUp(self) -> None:
        super().setUp()
        self.attempts: Dict[Tuple[int, Any], Any] = {}
        self.streams: Dict[Any, FakeStream] = {}
        self.refuse_now: set = set()

    def make_attempt(self, af: int, addr: Any) -> Tuple[FakeStream, Any]:
        if addr in self.refuse_now:
            raise OSError(errno.EAFNOSUPPORT, "no such family here: %s" % addr)
        stream = FakeStream(addr)
        self.streams[addr] = stream
        future = Future()
        self.attempts[(af, addr)] = future
        return stream, future

    def race(self, addrinfo: List[Tuple[int, Any]]) -> Tuple[Any, Any]:
        connector = _Connector(addrinfo, self.make_attempt)
        # Timers far away: the tests fire them by hand.
        future = connector.start(3600, connect_timeout=self.io_loop.time() + 3600)
        return connector, future

    def in_flight(self) -> List[Tuple[int, Any]]:
        return sorted(key for key, future in self.attempts.items() if not future.done())

    def settle(self) -> None:
        # Done-callbacks run on a later loop pass.
        self.io_loop.add_callback(self.stop)
        self.wait()

    def succeed(self, af: int, addr: Any) -> None:
        self.attempts[(af, addr)].set_result(self.streams[addr])
        self.settle()

    def fail(self, af: int, addr: Any, error: Optional[BaseException] = None) -> None:
        self.attempts[(af, addr)].set_exception(error or ConnectionRefusedError(addr))
        self.settle()

    def test_split_keeps_order_within_each_family(self) -> None:
        primary, secondary = _Connector.split([(AF_B, "x"), (AF_A, "y"), (AF_B, "z"), (AF_A, "w")])
        assert primary == [(AF_B, "x"), (AF_B, "z")]
        assert secondary == [(AF_A, "y"), (AF_A, "w")]
        assert _Connector.split([(AF_A, "only")]) == ([(AF_A, "only")], [])

    def test_first_address_wins_alone(self) -> None:
        _, future = self.race([(AF_A, "a1"), (AF_A, "a2"), (AF_B, "b1")])
        assert self.in_flight() == [(AF_A, "a1")]
        self.succeed(AF_A, "a1")
        assert future.result() == (AF_A, "a1", self.streams["a1"])
        assert not self.streams["a1"].closed
        assert self.in_flight() == []

    def test_a_failure_tries_the_next_address_and_the_other_family_at_once(self) -> None:
        _, future = self.race([(AF_A, "a1"), (AF_A, "a2"), (AF_B, "b1")])
        self.fail(AF_A, "a1")
        assert self.in_flight() == [(AF_A, "a2"), (AF_B, "b1")]
        self.succeed(AF_B, "b1")
        assert future.result()[:2] == (AF_B, "b1")
        # The loser still in flight is closed as soon as the race is decided.
        assert self.streams["a2"].closed and not self.streams["b1"].closed

    def test_head_start_expiry_lets_the_other_family_race(self) -> None:
        connector, future = self.race([(AF_A, "a1"), (AF_B, "b1"), (AF_B, "b2")])
        connector.on_timeout()
        assert self.in_flight() == [(AF_A, "a1"), (AF_B, "b1")]
        self.succeed(AF_B, "b1")
        assert future.result()[2] is self.streams["b1"]
        assert self.streams["a1"].closed
        # A late success of the closed loser is dropped (and closed again, harmlessly).
        self.succeed(AF_A, "a1")
        assert future.result()[2] is self.streams["b1"]
        assert self.in_flight() == []

    def test_head_start_expiry_with_one_family_changes_nothing(self) -> None:
        connector, future = self.race([(AF_A, "a1"), (AF_A, "a2")])
        connector.on_timeout()
        assert self.in_flight() == [(AF_A, "a1")]
        self.fail(AF_A, "a1")
        self.succeed(AF_A, "a2")
        assert future.result()[1] == "a2"

    def test_everything_failing_raises_the_last_error_and_closes_all(self) -> None:
        connector, future = self.race([(AF_A, "a1"), (AF_B, "b1")])
        connector.on_timeout()
        self.fail(AF_B, "b1", ConnectionRefusedError("first"))
        assert not future.done()
        self.fail(AF_A, "a1", ConnectionResetError("last"))
        with pytest.raises(ConnectionResetError, match="last"):
            future.result()
        assert all(stream.closed for stream in connector.streams)

    def test_synchronous_failures_move_on(self) -> None:
        self.refuse_now.update(["a1", "a2"])
        connector, future = self.race([(AF_A, "a1"), (AF_A, "a2"), (AF_B, "b1")])
        # The whole first family failed while starting: the second starts without waiting.
        assert self.in_flight() == [(AF_B, "b1")]
        self.succeed(AF_B, "b1")
        assert future.result()[1] == "b1"

        self.refuse_now.update(["c1", "c2"])
        failed = _Connector([(AF_A, "c1"), (AF_B, "c2")], self.make_attempt).start(3600)
        with pytest.raises(OSError, match="no such family here: c2"):
            failed.result()

    def test_cancelled_attempts_are_failures_but_not_the_reported_error(self) -> None:
        connector, future = self.race([(AF_A, "a1"), (AF_A, "a2")])
        self.attempts[(AF_A, "a1")].cancel()
        self.settle()
        assert self.in_flight() == [(AF_A, "a2")]
        self.attempts[(AF_A, "a2")].cancel()
        self.settle()
        error = future.exception()
        assert isinstance(error, IOError) and not isinstance(error, CancelledError)
        assert self.streams["a1"].closed and self.streams["a2"].closed

    def test_caller_cancelling_closes_every_attempt(self) -> None:
        connector, future = self.race([(AF_A, "a1"), (AF_B, "b1")])
        connector.on_timeout()
        future.cancel()
        self.settle()
        assert self.streams["a1"].closed and self.streams["b1"].closed

    def test_connect_timeout_names_the_addresses_in_flight(self) -> None:
        connector, future = self.race([(AF_A, "a1"), (AF_A, "a2"), (AF_B, ("::1", 80, 0, 0))])
        self.fail(AF_A, "a1")  # no longer in flight: not named
        connector.on_connect_timeout()
        with pytest.raises(TimeoutError) as info:
            future.result()
        assert str(info.value) == "Timeout while connecting to [::1]:80, a2"
        assert all(stream.closed for stream in connector.streams)
        # The head-start timer no longer starts anything.
        connector.on_timeout()
        assert self.in_flight() == [(AF_A, "a2"), (AF_B, ("::1", 80, 0, 0))]

    def test_success_then_connect_timeout_keeps_the_winner(self) -> None:
        connector, future = self.race([(AF_A, "a1")])
        self.succeed(AF_A, "a1")
        connector.on_connect_timeout()
        assert future.result()[2] is self.streams["a1"]
        assert not self.streams["a1"].closed


def test_format_addr() -> None:
    assert tcpclient._format_addr(("10.0.0.1", 8080)) == "10.0.0.1:8080"
    assert tcpclient._format_addr(("fe80::1", 443, 0, 2)) == "[fe80::1]:443"
    assert tcpclient._format_addr("/run/sock") == "/run/sock"


def test_initial_connect_timeout_is_tornados() -> None:
    assert tcpclient._INITIAL_CONNECT_TIMEOUT == 0.3


# -- real sockets ------------------------------------------------------------------------------------


class Listener:
    """A listening socket on the test's loop that queues accepted connections as IOStreams."""

    def __init__(self, address: str = "127.0.0.1", family: int = socket.AF_INET) -> None:
        self.sockets = netutil.bind_sockets(0, address, family)
        self.port = self.sockets[0].getsockname()[1]
        self.accepted: Any = queues.Queue()
        self.streams: List[Any] = []
        self.removers = [netutil.add_accept_handler(sock, self._on_accept) for sock in self.sockets]

    def _on_accept(self, connection: socket.socket, address: Any) -> None:
        stream = iostream.IOStream(connection)
        self.streams.append(stream)
        self.accepted.put_nowait((stream, address))

    def close(self) -> None:
        for remove in self.removers:
            remove()
        for sock in self.sockets:
            sock.close()
        for stream in self.streams:
            stream.close()


class Blackhole:
    """A local address whose connects stay in progress: its listen queue is full."""

    def __init__(self, address: str = "127.0.0.1", family: int = socket.AF_INET) -> None:
        self.server = socket.socket(family)
        self.server.bind((address, 0))
        self.server.listen(0)
        self.addr = self.server.getsockname()
        self.filler = socket.create_connection(self.addr[:2], timeout=5)

    def close(self) -> None:
        self.filler.close()
        self.server.close()


class StaticResolver(netutil.Resolver):
    """Answers every name with a fixed list, in the given order."""

    def initialize(self, answers: List[Tuple[int, Any]]) -> None:
        self.answers = answers

    async def resolve(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> List[Tuple[int, Any]]:
        return [(af, addr) for af, addr in self.answers if family in (socket.AF_UNSPEC, af)]


class NeverResolver(netutil.Resolver):
    def resolve(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> Any:
        return Future()


class RecordingClient(TCPClient):
    """Keeps every stream it creates, to check that the losers are closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.created: List[Any] = []

    def _create_stream(self, max_buffer_size: Any, af: Any, addr: Any, **kwargs: Any) -> Any:
        stream, future = super()._create_stream(max_buffer_size, af, addr, **kwargs)
        self.created.append(stream)
        return stream, future


class TCPClientTest(AsyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client = TCPClient()
        self.cleanups: List[Callable[[], None]] = []

    def tearDown(self) -> None:
        for cleanup in reversed(self.cleanups):
            cleanup()
        self.client.close()
        super().tearDown()

    def listen(self, address: str = "127.0.0.1", family: int = socket.AF_INET) -> Listener:
        listener = Listener(address, family)
        self.cleanups.append(listener.close)
        return listener

    def blackhole(self, address: str = "127.0.0.1", family: int = socket.AF_INET) -> Blackhole:
        hole = Blackhole(address, family)
        self.cleanups.append(hole.close)
        return hole

    def client_with(self, answers: List[Tuple[int, Any]]) -> RecordingClient:
        client = RecordingClient(resolver=StaticResolver(answers))
        self.cleanups.append(client.close)
        return client

    async def exchange(self, stream: Any, listener: Listener) -> Tuple[Any, Any]:
        """Checks that bytes flow both ways; returns the server side and the client's address."""
        server_stream, address = await listener.accepted.get()
        await stream.write(b"ping\n")
        assert await server_stream.read_until(b"\n") == b"ping\n"
        await server_stream.write(b"pong\n")
        assert await stream.read_until(b"\n") == b"pong\n"
        return server_stream, address

    @gen_test
    async def test_connect_ipv4_literal(self) -> None:
        listener = self.listen()
        stream = await self.client.connect("127.0.0.1", listener.port)
        try:
            assert isinstance(stream, iostream.IOStream)
            assert stream.socket.family == socket.AF_INET
            await self.exchange(stream, listener)
        finally:
            stream.close()

    @gen_test
    async def test_connect_localhost_restricted_to_ipv4(self) -> None:
        listener = self.listen("127.0.0.1")
        stream = await self.client.connect("localhost", listener.port, af=socket.AF_INET)
        try:
            assert stream.socket.family == socket.AF_INET
            await self.exchange(stream, listener)
        finally:
            stream.close()

    @gen_test
    async def test_connect_localhost_any_family(self) -> None:
        # Listen on every address "localhost" has, whatever this host resolves it to.
        listener = self.listen("localhost", socket.AF_UNSPEC)
        stream = await self.client.connect("localhost", listener.port)
        try:
            await self.exchange(stream, listener)
        finally:
            stream.close()

    @needs_ipv6
    @gen_test
    async def test_connect_ipv6_literal(self) -> None:
        listener = self.listen("::1", socket.AF_INET6)
        stream = await self.client.connect("::1", listener.port)
        try:
            assert stream.socket.family == socket.AF_INET6
            await self.exchange(stream, listener)
        finally:
            stream.close()

    @needs_ipv6
    @linux_only
    @gen_test
    async def test_unanswered_first_family_loses_to_the_second(self) -> None:
        # A dual-stack name whose first (IPv4) address never answers: after the head start, IPv6
        # is tried and wins; the IPv4 attempt is closed.
        hole = self.blackhole("127.0.0.1")
        listener = self.listen("::1", socket.AF_INET6)
        client = self.client_with([(socket.AF_INET, hole.addr), (socket.AF_INET6, ("::1", listener.port, 0, 0))])
        stream = await client.connect("dual.example", listener.port, timeout=30)
        try:
            assert stream.socket.family == socket.AF_INET6
            await self.exchange(stream, listener)
            assert len(client.created) == 2
            loser = client.created[0]
            assert loser is not stream and loser.closed()
        finally:
            stream.close()

    @needs_ipv6
    @gen_test
    async def test_refused_first_family_hands_over_without_waiting(self) -> None:
        refused_port = self.refusing_port()
        listener = self.listen("::1", socket.AF_INET6)
        client = self.client_with(
            [(socket.AF_INET, ("127.0.0.1", refused_port)), (socket.AF_INET6, ("::1", listener.port, 0, 0))]
        )
        stream = await client.connect("dual.example", listener.port)
        try:
            assert stream.socket.family == socket.AF_INET6
            assert client.created[0].closed()
        finally:
            stream.close()

    def refusing_port(self) -> int:
        # Bound but not listening: a connect to it is refused.
        sock = socket.socket(socket.AF_INET)
        sock.bind(("127.0.0.1", 0))
        self.cleanups.append(sock.close)
        return sock.getsockname()[1]

    @gen_test
    async def test_refused_connection(self) -> None:
        port = self.refusing_port()
        with pytest.raises(iostream.StreamClosedError) as info:
            await self.client.connect("127.0.0.1", port)
        assert isinstance(info.value, IOError)
        assert isinstance(info.value.real_error, ConnectionRefusedError)

    @unittest.skipUnless(os.path.isdir("/proc/self/fd"), "needs /proc/self/fd")
    @gen_test
    async def test_refused_connections_leak_no_fds(self) -> None:
        port = self.refusing_port()
        client = RecordingClient()
        self.cleanups.append(client.close)
        with pytest.raises(IOError):
            await client.connect("127.0.0.1", port)  # warms up the resolver's threads
        before = open_fds()
        for _ in range(20):
            with pytest.raises(IOError):
                await client.connect("127.0.0.1", port)
        assert open_fds() == before
        assert len(client.created) == 21 and all(stream.closed() for stream in client.created)

    @linux_only
    @gen_test
    async def test_connect_timeout_names_the_address(self) -> None:
        hole = self.blackhole()
        client = self.client_with([(socket.AF_INET, hole.addr)])
        with pytest.raises(TimeoutError) as info:
            await client.connect("slow.example", hole.addr[1], timeout=0.2)
        assert str(info.value) == "Timeout while connecting to 127.0.0.1:%d" % hole.addr[1]
        assert client.created[0].closed()

    @linux_only
    @gen_test
    async def test_connect_timeout_as_timedelta(self) -> None:
        hole = self.blackhole()
        client = self.client_with([(socket.AF_INET, hole.addr)])
        with pytest.raises(TimeoutError):
            await client.connect("slow.example", hole.addr[1], timeout=datetime.timedelta(seconds=0.1))
        assert client.created[0].closed()

    @gen_test
    async def test_resolve_timeout(self) -> None:
        client = TCPClient(resolver=NeverResolver())
        self.cleanups.append(client.close)
        with pytest.raises(TimeoutError) as info:
            await client.connect("example.com", 80, timeout=0.05)
        assert str(info.value) == "Timeout while resolving example.com"

    @gen_test
    async def test_unsupported_timeout_type(self) -> None:
        with pytest.raises(TypeError):
            await self.client.connect("127.0.0.1", 1, timeout="soon")  # type: ignore[arg-type]

    @linux_only
    @gen_test
    async def test_cancelling_connect_closes_the_attempt(self) -> None:
        hole = self.blackhole()
        client = self.client_with([(socket.AF_INET, hole.addr)])
        task = gen.convert_yielded(client.connect("slow.example", hole.addr[1]))
        while not client.created:
            await gen.sleep(0.01)
        task.cancel()
        with pytest.raises(CancelledError):
            await task
        for _ in range(3):
            await gen.sleep(0)
        assert client.created[0].closed()

    @gen_test
    async def test_source_ip(self) -> None:
        listener = self.listen()
        stream = await self.client.connect("127.0.0.1", listener.port, source_ip="127.0.0.1")
        try:
            _, address = await self.exchange(stream, listener)
            assert address[0] == "127.0.0.1"
        finally:
            stream.close()

    @linux_only
    @gen_test
    async def test_source_ip_other_loopback(self) -> None:
        # All of 127/8 is local on Linux: the server sees the chosen source, not 127.0.0.1.
        listener = self.listen()
        stream = await self.client.connect("127.0.0.1", listener.port, source_ip="127.0.0.2")
        try:
            _, address = await self.exchange(stream, listener)
            assert address[0] == "127.0.0.2"
        finally:
            stream.close()

    @gen_test
    async def test_source_port(self) -> None:
        listener = self.listen()
        # A port free right now (bound then released); the client binds it on 127.0.0.1.
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
        probe.close()
        stream = await self.client.connect("127.0.0.1", listener.port, source_port=free_port)
        try:
            _, address = await self.exchange(stream, listener)
            assert address == ("127.0.0.1", free_port)
            assert stream.socket.getsockname() == ("127.0.0.1", free_port)
        finally:
            stream.close()

    @unittest.skipUnless(os.path.isdir("/proc/self/fd"), "needs /proc/self/fd")
    @gen_test
    async def test_unusable_source_ip_fails_without_leaking(self) -> None:
        listener = self.listen()
        await self.client.connect("127.0.0.1", listener.port)  # warm up, then count
        before = open_fds()
        # Not an address of this host: bind fails with EADDRNOTAVAIL.
        with pytest.raises(OSError) as info:
            await self.client.connect("127.0.0.1", listener.port, source_ip="192.0.2.77")
        assert info.value.errno == errno.EADDRNOTAVAIL
        assert open_fds() == before

    @needs_ipv6
    @gen_test
    async def test_source_ip_of_the_wrong_family_falls_back(self) -> None:
        # Binding an IPv4 source on the IPv6 attempt fails; the IPv4 address is tried next.
        listener = self.listen()
        client = self.client_with(
            [(socket.AF_INET6, ("::1", listener.port, 0, 0)), (socket.AF_INET, ("127.0.0.1", listener.port))]
        )
        stream = await client.connect("dual.example", listener.port, source_ip="127.0.0.1")
        try:
            assert stream.socket.family == socket.AF_INET
        finally:
            stream.close()

    @gen_test
    async def test_max_buffer_size_reaches_the_stream(self) -> None:
        listener = self.listen()
        stream = await self.client.connect("127.0.0.1", listener.port, max_buffer_size=12345)
        try:
            assert stream.max_buffer_size == 12345
        finally:
            stream.close()

    def test_close_releases_only_its_own_resolver(self) -> None:
        closed: List[str] = []

        class TrackingResolver(StaticResolver):
            def close(self) -> None:
                closed.append("given")

        given = TrackingResolver([])
        TCPClient(resolver=given).close()
        assert closed == []
        own = TCPClient()
        own_resolver = own.resolver
        assert isinstance(own_resolver, netutil.Resolver)
        own.close()


# -- TLS ---------------------------------------------------------------------------------------------


class TLSServer:
    """A blocking TLS server on a thread: handshakes, echoes one line, closes."""

    def __init__(self, context: Optional[ssl.SSLContext], handshake: bool = True) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.context = context
        self.handshake = handshake
        self.saw_close = threading.Event()
        self.got_hello = threading.Event()
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(10)
            with conn:
                if not self.handshake:
                    # Read the ClientHello, never answer, and wait for the client to give up.
                    while conn.recv(4096):
                        self.got_hello.set()
                    self.saw_close.set()
                    return
                assert self.context is not None
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    line = b""
                    while not line.endswith(b"\n"):
                        chunk = tls.recv(100)
                        if not chunk:
                            break
                        line += chunk
                    tls.sendall(line.upper())
        except BaseException as e:  # reported by the test
            self.error = e

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


class TLSConnectTest(AsyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        import trustme

        self.ca = trustme.CA()
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost", "127.0.0.1").configure_cert(self.server_context)
        self.client_context = ssl.create_default_context()
        self.ca.configure_trust(self.client_context)
        self.client = TCPClient()

    def tearDown(self) -> None:
        self.client.close()
        super().tearDown()

    @gen_test
    async def test_connect_with_tls(self) -> None:
        server = TLSServer(self.server_context)
        try:
            stream = await self.client.connect(
                "localhost", server.port, af=socket.AF_INET, ssl_options=self.client_context
            )
            try:
                assert isinstance(stream, iostream.SSLIOStream)
                await stream.write(b"secret\n")
                assert await stream.read_until(b"\n") == b"SECRET\n"
            finally:
                stream.close()
        finally:
            server.close()
        assert server.error is None

    @gen_test
    async def test_tls_handshake_timeout_closes_the_stream(self) -> None:
        server = TLSServer(None, handshake=False)
        try:
            with pytest.raises(TimeoutError) as info:
                await self.client.connect("127.0.0.1", server.port, ssl_options=self.client_context, timeout=0.5)
            assert str(info.value) == "Timeout during TLS handshake with 127.0.0.1:%d" % server.port
            # The server's read ends only when the client's socket is closed.
            while not server.saw_close.is_set():
                await gen.sleep(0.01)
        finally:
            server.close()

    @gen_test
    async def test_cancelling_during_the_handshake_closes_the_stream(self) -> None:
        server = TLSServer(None, handshake=False)
        try:
            task = gen.convert_yielded(
                self.client.connect("127.0.0.1", server.port, ssl_options=self.client_context, timeout=3600)
            )
            while not server.got_hello.is_set():
                await gen.sleep(0.01)
            task.cancel()
            with pytest.raises(CancelledError):
                await task
            while not server.saw_close.is_set():
                await gen.sleep(0.01)
        finally:
            server.close()

    @gen_test
    async def test_untrusted_certificate_fails_the_connect(self) -> None:
        server = TLSServer(self.server_context)
        try:
            untrusting = ssl.create_default_context()  # the test CA is not in the system store
            with pytest.raises((ssl.SSLError, iostream.StreamClosedError)) as info:
                await self.client.connect("localhost", server.port, af=socket.AF_INET, ssl_options=untrusting)
            error = info.value
            if isinstance(error, iostream.StreamClosedError):
                error = error.real_error
            assert isinstance(error, ssl.SSLCertVerificationError), error
        finally:
            server.close()
