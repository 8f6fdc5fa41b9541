"""Outgoing connections that fail: refused, unresolvable, never answered, TLS never started.

Each failure must surface as a clear error that carries its cause, and leave no descriptor behind.
No test touches DNS: names are answered by resolvers defined here (a ``.invalid`` name resolves
nowhere), and everything else is an IP literal on the loopback interface.
"""

import socket
import ssl
import traceback

import pytest

from conftest import fd_count
from tornado_lite.concurrent import Future
from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import StreamClosedError
from tornado_lite.netutil import OverrideResolver, Resolver
from tornado_lite.tcpclient import TCPClient


class LoopbackResolver(Resolver):
    """Answers IP literals and ``localhost`` itself, fails ``*.invalid``, hangs on ``*.hang``: no DNS."""

    def initialize(self) -> None:
        self.hanging = []

    def resolve(self, host, port, family=socket.AF_UNSPEC):
        future = Future()
        if host.endswith(".invalid"):
            future.set_exception(socket.gaierror(socket.EAI_NONAME, f"Name or service not known: {host}"))
        elif host.endswith(".hang"):
            self.hanging.append(future)  # never answered
        elif host == "localhost":
            answers = [(socket.AF_INET6, ("::1", port, 0, 0)), (socket.AF_INET, ("127.0.0.1", port))]
            future.set_result([a for a in answers if family in (socket.AF_UNSPEC, a[0])])
        else:
            af = socket.AF_INET6 if ":" in host else socket.AF_INET
            future.set_result([(af, (host, port))])
        return future


@pytest.fixture
def loop():
    lp = IOLoop(make_current=False)
    try:
        yield lp
    finally:
        lp.close(all_fds=True)


def unused_port(family=socket.AF_INET, host="127.0.0.1") -> int:
    """A port nothing listens on (bound for a moment, then released)."""
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def failure_of(loop, coro_fn, timeout=30):
    """Runs ``coro_fn`` on ``loop``; returns the exception it raised (fails the test if it did not)."""

    async def main():
        try:
            await coro_fn()
        except Exception as e:
            return e
        raise AssertionError("the connection did not fail")

    return loop.run_sync(main, timeout=timeout)


def rendered(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_connection_refused_is_a_stream_closed_error_caused_by_the_refusal(loop):
    port = unused_port()
    before = fd_count()
    client = TCPClient(resolver=LoopbackResolver())
    err = failure_of(loop, lambda: client.connect("127.0.0.1", port))
    client.close()
    assert isinstance(err, StreamClosedError)
    assert isinstance(err.real_error, ConnectionRefusedError)
    # Chained, so a traceback says why the stream closed, not just that it did.
    assert err.__cause__ is err.real_error
    assert "Connection refused" in rendered(err)
    assert fd_count() == before


def test_refused_on_both_families_reports_the_last_refusal_and_closes_both_sockets(loop):
    port = unused_port(socket.AF_INET6, "::1")
    before = fd_count()
    client = TCPClient(resolver=LoopbackResolver())
    for _ in range(20):  # repeated, so a leak of one socket per attempt would show
        err = failure_of(loop, lambda: client.connect("localhost", port))
        assert isinstance(err, StreamClosedError)
        assert isinstance(err.real_error, ConnectionRefusedError)
        assert err.__cause__ is err.real_error
    client.close()
    assert fd_count() == before


def test_unresolvable_name_raises_the_resolver_error_and_opens_nothing(loop):
    before = fd_count()
    resolver = OverrideResolver(resolver=LoopbackResolver(), mapping={"db.internal": "db.nothing.invalid"})
    client = TCPClient(resolver=resolver)
    for host, kwargs in (("nowhere.invalid", {}), ("db.internal", {}), ("nowhere.invalid", {"timeout": 10})):
        err = failure_of(loop, lambda h=host, kw=kwargs: client.connect(h, 80, **kw))
        assert isinstance(err, socket.gaierror), err
        assert err.errno == socket.EAI_NONAME
        assert ".invalid" in str(err)
    client.close()
    assert fd_count() == before


def test_resolver_that_never_answers_times_out_naming_the_phase(loop):
    before = fd_count()
    resolver = LoopbackResolver()
    client = TCPClient(resolver=resolver)
    err = failure_of(loop, lambda: client.connect("slow.hang", 80, timeout=0.2))
    assert isinstance(err, TimeoutError)
    assert "resolving slow.hang" in str(err)
    client.close()
    assert fd_count() == before


def test_connect_timeout_when_the_listener_never_answers(loop):
    """A listener whose accept queue is full drops new SYNs: the connect hangs until the timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.socket()
    filler.connect(("127.0.0.1", port))  # takes the only slot of the accept queue
    before = fd_count()
    client = TCPClient(resolver=LoopbackResolver())
    try:
        for _ in range(3):
            err = failure_of(loop, lambda: client.connect("127.0.0.1", port, timeout=0.3))
            assert isinstance(err, TimeoutError)
            assert f"connecting to 127.0.0.1:{port}" in str(err)
            # The attempt's socket is closed at once, not left to the OS's SYN retries.
            assert fd_count() == before
    finally:
        client.close()
        filler.close()
        listener.close()


def test_tls_handshake_timeout_against_a_silent_server(loop):
    """The TCP connect succeeds but the server never answers the ClientHello."""
    before = fd_count()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    client = TCPClient(resolver=LoopbackResolver())
    context = ssl.create_default_context()
    try:
        err = failure_of(loop, lambda: client.connect("127.0.0.1", port, ssl_options=context, timeout=0.3))
        assert isinstance(err, TimeoutError)
        assert "TLS handshake" in str(err)
        accepted, _ = listener.accept()
        with accepted:
            accepted.settimeout(10)
            # Our side was closed: the server sees the ClientHello, then end of file.
            data = b""
            while True:
                chunk = accepted.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data[:1] == b"\x16"  # a TLS handshake record
    finally:
        client.close()
        listener.close()
    assert fd_count() == before
