"""Misbehaving TLS clients against a TLS ``TCPServer``: each fails alone and cleanly.

Garbage bytes, plain text (an HTTP request) on the TLS port, a ClientHello cut short, resets and
hang-ups in the middle of the handshake, clients that reject the server's certificate, certificates
the server rejects, and clients that say nothing at all.  For every one: the handler sees an error,
the server closes that connection by itself (the client sees the end), every descriptor is released,
the loop does not spin while the bad client lingers, and a good client is served right after.

Silent clients are closed by ``TCPServer(handshake_timeout=...)``, and, for code that wants it in the
application, by ``gen.with_timeout`` around ``wait_for_handshake()``.

The server runs on a loop thread (``LoopThread``); the test thread plays each client with the
blocking ``socket`` and ``ssl`` modules.
"""

import collections
import contextlib
import datetime
import logging
import socket
import ssl
import struct
import threading
import time
import types

import pytest
import trustme

from conftest import LoopThread, fd_count
from tornado_lite import gen
from tornado_lite.netutil import bind_sockets
from tornado_lite.tcpserver import HandshakeTimeoutError, TCPServer

IDLE_WINDOW = 0.3
IDLE_MAX_PASSES = 20
CLIENT_TIMEOUT = 10


@pytest.fixture(scope="module")
def pki():
    ca = trustme.CA()
    stranger_ca = trustme.CA()  # nobody trusts this one
    now = datetime.datetime.now(datetime.timezone.utc)
    return types.SimpleNamespace(
        ca=ca,
        cert=ca.issue_cert("localhost", "127.0.0.1"),
        expired=ca.issue_cert(
            "localhost",
            "127.0.0.1",
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        ),
        wrong_name=ca.issue_cert("elsewhere.example"),
        client=ca.issue_cert("client@example.com"),
        stranger=stranger_ca.issue_cert("localhost", "127.0.0.1", "client@example.com"),
    )


class TLSEchoServer(TCPServer):
    """Echoes lines once the handshake is done; records how each connection ended."""

    def __init__(self, app_handshake_timeout=None, **kwargs):
        super().__init__(**kwargs)
        self.app_handshake_timeout = app_handshake_timeout
        self.accepted = 0
        self.finished = 0
        self.outcomes = collections.Counter()

    async def handle_stream(self, stream, address):
        self.accepted += 1
        try:
            handshake = stream.wait_for_handshake()
            if self.app_handshake_timeout is not None:
                handshake = gen.with_timeout(datetime.timedelta(seconds=self.app_handshake_timeout), handshake)
            await handshake
            while True:
                line = await stream.read_until(b"\n", max_bytes=65536)
                await stream.write(line)
        except Exception as e:
            cause = getattr(e, "real_error", None) or e
            self.outcomes[type(cause).__name__] += 1
        finally:
            stream.close()
            self.finished += 1


class Harness:
    def __init__(self, lt: LoopThread, pki, server_kwargs, require_client_cert=False, cert=None):
        self.lt = lt
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        (cert or pki.cert).configure_cert(context)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            pki.ca.configure_trust(context)
        self.pki = pki

        def start():
            server = TLSEchoServer(ssl_options=context, **server_kwargs)
            sockets = bind_sockets(0, "127.0.0.1")
            server.add_sockets(sockets)
            return server, sockets[0].getsockname()[1]

        self.server, self.port = lt.call(start)
        self.base_handlers = lt.stats().handlers

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=CLIENT_TIMEOUT)

    def client_context(self, trust=True, cert=None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if trust:
            self.pki.ca.configure_trust(context)
        if cert is not None:
            cert.configure_cert(context)
        return context

    def wait_finished(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.lt.call(lambda: self.server.finished) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} connections should have ended; outcomes {self.server.outcomes}")
            time.sleep(0.01)

    def assert_idle(self) -> None:
        before = self.lt.stats().passes
        time.sleep(IDLE_WINDOW)
        passes = self.lt.stats().passes - before
        assert passes < IDLE_MAX_PASSES, f"{passes} loop passes in {IDLE_WINDOW}s with nothing to do"

    def assert_released(self) -> None:
        assert self.lt.stats().handlers == self.base_handlers

    def good_client_works(self) -> None:
        with self.client_context().wrap_socket(self.connect(), server_hostname="localhost") as tls:
            tls.sendall(b"hello after the storm\n")
            assert read_line(tls) == b"hello after the storm\n"

    @contextlib.contextmanager
    def loop_blocked(self):
        """Keeps the loop busy in a callback, so connections made meanwhile wait in the backlog."""
        release, entered = threading.Event(), threading.Event()

        def block():
            entered.set()
            release.wait(30)

        self.lt.loop.add_callback(block)
        assert entered.wait(10)
        try:
            yield
        finally:
            release.set()

    def stop(self) -> None:
        self.lt.call(self.server.stop)


def read_line(sock) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def server_hangs_up(sock: socket.socket) -> bool:
    """True once the server has closed its end: we read EOF (after any alert bytes) or a reset."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, ssl.SSLError, ssl.SSLEOFError):
        return True
    except socket.timeout:
        return False


def client_hello() -> bytes:
    """The first flight of a real TLS client, captured through a memory BIO (nothing is sent)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def rst_close(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture
def lt():
    loop_thread = LoopThread()
    try:
        yield loop_thread
    finally:
        loop_thread.stop()


@pytest.fixture
def no_app_errors(caplog):
    caplog.set_level(logging.WARNING)
    yield caplog
    bad = [r for r in caplog.records if r.name == "tornado.application" and r.levelno >= logging.ERROR]
    bad += [r for r in caplog.records if "Uncaught exception" in r.getMessage()]
    assert not bad, [r.getMessage() for r in bad]


def test_garbage_and_plain_text_on_a_tls_port_fail_per_connection(lt, pki, no_app_errors):
    h = Harness(lt, pki, {})
    base_fds = fd_count()
    payloads = {
        "random bytes": bytes(range(256)) * 8,
        "zeros": b"\x00" * 4096,
        "plain http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "smtp greeting": b"EHLO client.example\r\n",
        "bogus handshake record": b"\x16\x03\x01\x00\x20" + b"\xee" * 32,
        "huge record length": b"\x16\x03\x01\xff\xff" + b"\x01" * 100,
    }
    for n, (what, payload) in enumerate(payloads.items(), 1):
        sock = h.connect()
        try:
            sock.sendall(payload)
            assert server_hangs_up(sock), what
            h.wait_finished(n)
            h.assert_released()
            h.assert_idle()  # the bad client still holds its end: nothing to poll for
        finally:
            sock.close()
    assert sum(h.server.outcomes.values()) == len(payloads)
    assert set(h.server.outcomes) <= {"SSLError", "SSLZeroReturnError", "SSLEOFError", "ConnectionResetError"}
    h.good_client_works()
    h.stop()
    assert fd_count() == base_fds - 1  # our listening socket is gone too


def test_handshakes_cut_short_fail_per_connection(lt, pki, no_app_errors):
    h = Harness(lt, pki, {})
    base_fds = fd_count()
    hello = client_hello()
    cuts = [
        ("hello then FIN", lambda s: (s.sendall(hello), s.shutdown(socket.SHUT_WR))),
        ("half a hello then FIN", lambda s: (s.sendall(hello[: len(hello) // 2]), s.shutdown(socket.SHUT_WR))),
        ("connect then FIN", lambda s: s.shutdown(socket.SHUT_WR)),
    ]
    for n, (what, act) in enumerate(cuts, 1):
        sock = h.connect()
        try:
            act(sock)
            assert server_hangs_up(sock), what
            h.wait_finished(n)
            h.assert_released()
            h.assert_idle()
        finally:
            sock.close()
    # Resets: the client vanishes with an RST, before or after part of its hello; once while the
    # server is free to accept at once, once while it is busy, so it accepts an already reset socket.
    resets = [b"", hello[:10], hello]
    for data in resets:
        sock = h.connect()
        if data:
            sock.sendall(data)
        rst_close(sock)
    with h.loop_blocked():
        for data in resets:
            sock = h.connect()
            if data:
                sock.sendall(data)
            rst_close(sock)
    deadline = time.monotonic() + 20
    while h.lt.stats().handlers != h.base_handlers or h.lt.call(lambda: h.server.accepted != h.server.finished):
        assert time.monotonic() < deadline, "reset connections were not all cleaned up"
        time.sleep(0.01)
    h.assert_idle()
    h.good_client_works()
    h.stop()
    assert fd_count() == base_fds - 1


def test_certificate_rejections_fail_per_connection(lt, pki, no_app_errors):
    """The client rejects the server (untrusted CA, wrong name, expired), or the server rejects the
    client (no certificate, or one from a CA it does not trust)."""
    finished = 0
    base_fds = fd_count()
    for server_cert, trust in ((pki.cert, False), (pki.wrong_name, True), (pki.expired, True)):
        h = Harness(lt, pki, {}, cert=server_cert)
        with pytest.raises(ssl.SSLCertVerificationError):
            h.client_context(trust=trust).wrap_socket(h.connect(), server_hostname="localhost")
        h.wait_finished(1)
        h.assert_released()
        h.assert_idle()
        assert sum(h.server.outcomes.values()) == 1
        h.stop()

    h = Harness(lt, pki, {}, require_client_cert=True)
    for client_cert in (None, pki.stranger):
        context = h.client_context(cert=client_cert)
        # TLS 1.3 finishes the client's side of the handshake before the server has looked at the
        # certificate: the rejection arrives as an alert on the first read.
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            with context.wrap_socket(h.connect(), server_hostname="localhost") as tls:
                tls.sendall(b"let me in\n")
                if read_line(tls) == b"":
                    raise ConnectionResetError("closed without an alert")
        finished += 1
        h.wait_finished(finished)
        h.assert_released()
        h.assert_idle()
    assert set(h.server.outcomes) <= {"SSLError", "SSLCertVerificationError"}, h.server.outcomes
    # A client with a certificate the server trusts is still served.
    with h.client_context(cert=pki.client).wrap_socket(h.connect(), server_hostname="localhost") as tls:
        tls.sendall(b"trusted\n")
        assert read_line(tls) == b"trusted\n"
    h.stop()
    assert fd_count() == base_fds


@pytest.mark.parametrize("where", ["TCPServer(handshake_timeout)", "application gen.with_timeout"])
def test_silent_tls_clients_are_closed_by_a_handshake_timeout(lt, pki, no_app_errors, where):
    if where.startswith("TCPServer"):
        h = Harness(lt, pki, {"handshake_timeout": 0.3})
        expected = HandshakeTimeoutError.__name__
    else:
        h = Harness(lt, pki, {"app_handshake_timeout": 0.3})
        expected = "TimeoutError"
    base_fds = fd_count()
    hello = client_hello()
    silent = [h.connect() for _ in range(5)]
    stalled = [h.connect() for _ in range(5)]
    for sock in stalled:
        sock.sendall(hello[:20])  # starts a handshake and stops
    try:
        for sock in silent + stalled:
            assert server_hangs_up(sock)
        h.wait_finished(10)
        assert h.server.outcomes == {expected: 10}, h.server.outcomes
        h.assert_released()
        h.assert_idle()
        # The timeout is for handshakes only: an established, quiet connection stays open.
        with h.client_context().wrap_socket(h.connect(), server_hostname="localhost") as tls:
            time.sleep(0.6)
            tls.sendall(b"slow but fine\n")
            assert read_line(tls) == b"slow but fine\n"
    finally:
        for sock in silent + stalled:
            sock.close()
    h.stop()
    assert fd_count() == base_fds - 1
