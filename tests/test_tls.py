"""Tests for TLS on the stream layer: SSLIOStream, IOStream.start_tls, and TLS on a TCPServer.

Certificates come from ``trustme`` and are made at test time (nothing is checked in).  Every test runs
real sockets on 127.0.0.1 on the tornado_lite loop.

The tests encode Tornado 6's behaviour, so they also run against real Tornado:
``TORNADO_LITE_TEST_IMPL=tornado pytest tests/test_tls.py`` (in a venv that has tornado and trustme).
Only the loop-iteration counts (``IOLoop.stats()``, a tornado_lite addition) are not checked there.
"""

import datetime
import hashlib
import importlib
import logging
import os
import socket
import ssl
import struct
import types
from collections import deque

import pytest
import trustme

impl = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
gen = importlib.import_module(impl + ".gen")
ioloop = importlib.import_module(impl + ".ioloop")
iostream = importlib.import_module(impl + ".iostream")
netutil = importlib.import_module(impl + ".netutil")
tcpserver = importlib.import_module(impl + ".tcpserver")
tcpclient = importlib.import_module(impl + ".tcpclient")
concurrent_mod = importlib.import_module(impl + ".concurrent")
IOLoop = ioloop.IOLoop
Future = concurrent_mod.Future
IOStream = iostream.IOStream
SSLIOStream = iostream.SSLIOStream
StreamClosedError = iostream.StreamClosedError

if impl == "tornado":
    import asyncio  # real Tornado's futures are asyncio's

    CancelledError = asyncio.CancelledError
else:
    import concurrent.futures

    CancelledError = concurrent.futures.CancelledError

GEN_LOG = "tornado.general"
# How many loop passes a loop that only waits may make in IDLE_WINDOW seconds.  A loop that spins on a
# readiness it never consumes makes tens of thousands; one that waits makes a handful (timers, wakeups).
IDLE_WINDOW = 0.3
IDLE_MAX_PASSES = 30


# -- certificates and contexts -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for localhost, a client certificate, and the same as PEM files."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1", "foo.example.com")
    client_cert = ca.issue_cert("client@example.com")
    d = tmp_path_factory.mktemp("pki")
    ca_file = str(d / "ca.pem")
    cert_file = str(d / "server.pem")
    key_file = str(d / "server.key")
    ca.cert_pem.write_to_path(ca_file)
    cert.private_key_pem.write_to_path(key_file)
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(cert_file, append=i > 0)
    return types.SimpleNamespace(
        ca=ca, cert=cert, client_cert=client_cert, ca_file=ca_file, cert_file=cert_file, key_file=key_file
    )


def server_context(pki, cert=None, alpn=None):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    (cert or pki.cert).configure_cert(ctx)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def client_context(pki, ca=None, alpn=None):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    (ca or pki.ca).configure_trust(ctx)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


# -- loop, listener and connection helpers -------------------------------------------------------


@pytest.fixture
def io_loop():
    loop = IOLoop(make_current=False)
    yield loop
    loop.close(all_fds=True)


@pytest.fixture(autouse=True)
def no_errors_logged(caplog):
    """A TLS failure is a warning for that connection at most; nothing in these tests may log an error."""
    caplog.set_level(logging.INFO, logger="tornado")
    yield
    errors = [r for r in caplog.records if r.name.startswith("tornado") and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def run(loop, func, timeout=30):
    return loop.run_sync(func, timeout=timeout)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def ssl_warnings(caplog):
    return [r for r in caplog.records if r.name == GEN_LOG and r.getMessage().startswith("SSL Error on")]


async def assert_loop_idle(io_loop):
    """Waits IDLE_WINDOW seconds and checks that the loop slept rather than spun meanwhile."""
    if impl != "tornado_lite":
        await gen.sleep(IDLE_WINDOW)
        return
    before = io_loop.stats().passes
    await gen.sleep(IDLE_WINDOW)
    passes = io_loop.stats().passes - before
    assert passes < IDLE_MAX_PASSES, f"the loop made {passes} passes in {IDLE_WINDOW}s while idle"


async def wait_until(predicate, seconds=5.0):
    deadline = IOLoop.current().time() + seconds
    while not predicate():
        assert IOLoop.current().time() < deadline, "condition not reached in time"
        await gen.sleep(0.01)


class Listener:
    """A listening socket on 127.0.0.1 whose accepted connections become (SSL)IOStreams, in order.

    With ``ssl_options`` each connection is wrapped server-side the way TCPServer does it (no
    handshake yet); ``accept()`` returns a future for the next stream.
    """

    def __init__(self, ssl_options=None, **stream_kwargs):
        self.ssl_options = ssl_options
        self.stream_kwargs = stream_kwargs
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.streams = []
        self._ready = deque()
        self._waiters = deque()
        self._remove = netutil.add_accept_handler(self.sock, self._on_accept)

    def _on_accept(self, connection, address):
        if self.ssl_options is not None:
            connection = netutil.ssl_wrap_socket(
                connection, self.ssl_options, server_side=True, do_handshake_on_connect=False
            )
            stream = SSLIOStream(connection, **self.stream_kwargs)
        else:
            stream = IOStream(connection, **self.stream_kwargs)
        self.streams.append(stream)
        if self._waiters:
            self._waiters.popleft().set_result(stream)
        else:
            self._ready.append(stream)

    def accept(self):
        future = Future()
        if self._ready:
            future.set_result(self._ready.popleft())
        else:
            self._waiters.append(future)
        return future

    def close(self):
        self._remove()
        self.sock.close()
        for stream in self.streams:
            if stream.socket is not None:  # None: handed over to a TLS stream by start_tls
                stream.close()


async def connect_tls(port, ssl_options, server_hostname="localhost"):
    stream = SSLIOStream(socket.socket(), ssl_options=ssl_options)
    return await stream.connect(("127.0.0.1", port), server_hostname=server_hostname)


async def connect_plain(port):
    stream = IOStream(socket.socket())
    return await stream.connect(("127.0.0.1", port))


async def tls_pair(listener, client_options, server_hostname="localhost"):
    accepted = listener.accept()
    client = await connect_tls(listener.port, client_options, server_hostname)
    server = await accepted
    await server.wait_for_handshake()
    return server, client


def client_hello(ctx, server_hostname="localhost"):
    """The bytes a TLS client sends first, made with an in-memory SSLObject (no socket)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


class BioPeer:
    """A TLS endpoint made of an in-memory SSLObject over a plain IOStream: every TLS byte it sends is
    visible to the test, which can cut records into pieces and pause between them."""

    def __init__(self, stream, ctx, server_hostname="localhost"):
        self.stream = stream
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)

    async def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                self.incoming.write(await self.stream.read_bytes(65536, partial=True))
            else:
                await self._flush()
                return

    async def _flush(self):
        data = self.outgoing.read()
        if data:
            await self.stream.write(data)

    def records(self, *messages):
        """The ciphertext of one TLS record per message (nothing is sent)."""
        out = []
        for message in messages:
            self.obj.write(message)
            out.append(self.outgoing.read())
        return out


async def bio_pair(listener, pki):
    """A server SSLIOStream from ``listener`` and a BioPeer client, handshake done."""
    accepted = listener.accept()
    raw = await connect_plain(listener.port)
    server = await accepted
    peer = BioPeer(raw, client_context(pki))
    await peer.handshake()
    await server.wait_for_handshake()
    return server, peer


def reset(stream):
    """Closes a plain stream's socket with an RST (SO_LINGER 0) instead of a FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.close()


async def expect_closed(future):
    with pytest.raises(StreamClosedError):
        await future


# -- handshake, verification, SNI, ALPN ----------------------------------------------------------


def test_handshake_and_echo_with_contexts(io_loop, pki):
    async def main():
        listener = Listener(server_context(pki))
        try:
            server, client = await tls_pair(listener, client_context(pki))
            assert isinstance(server, SSLIOStream) and isinstance(client, SSLIOStream)
            assert client.socket.version().startswith("TLS")
            assert server.socket.cipher() is not None
            await client.write(b"ping\n")
            assert await server.read_until(b"\n") == b"ping\n"
            await server.write(b"pong\n")
            assert await client.read_until(b"\n") == b"pong\n"
            assert not client.reading() and not client.writing()
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_handshake_with_dict_ssl_options(io_loop, pki):
    """The old ``ssl.wrap_socket``-style dicts work on both sides."""

    async def main():
        listener = Listener(dict(certfile=pki.cert_file, keyfile=pki.key_file))
        try:
            server, client = await tls_pair(listener, dict(cert_reqs=ssl.CERT_REQUIRED, ca_certs=pki.ca_file))
            await client.write(b"x" * 1000)
            assert await server.read_bytes(1000) == b"x" * 1000
            client.close()
            server.close()
            server, client = await tls_pair(listener, dict(cert_reqs=ssl.CERT_NONE))
            await server.write(b"hello")
            assert await client.read_bytes(5) == b"hello"
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_ssl_options_to_context_both_forms(pki):
    ctx = server_context(pki)
    assert netutil.ssl_options_to_context(ctx) is ctx
    built = netutil.ssl_options_to_context(dict(certfile=pki.cert_file, keyfile=pki.key_file), server_side=True)
    assert isinstance(built, ssl.SSLContext)
    client = netutil.ssl_options_to_context(dict(cert_reqs=ssl.CERT_NONE), server_side=False)
    assert client.verify_mode == ssl.CERT_NONE and not client.check_hostname


@pytest.mark.skipif(impl == "tornado", reason="Tornado rejects an unknown key with a bare assert")
def test_ssl_options_dict_with_unknown_key_is_rejected(pki):
    with pytest.raises(ValueError, match="certfil"):
        netutil.ssl_options_to_context(dict(certfil=pki.cert_file), server_side=True)
    with pytest.raises(ValueError):
        netutil.ssl_wrap_socket(socket.socket(), dict(do_handshake_on_connect=False))


@pytest.mark.skipif(impl == "tornado", reason="Tornado finds the bad key only once connected")
def test_client_dict_with_unknown_key_fails_connect_at_once(io_loop):
    async def main():
        stream = SSLIOStream(socket.socket(), ssl_options=dict(cert_reqs=ssl.CERT_NONE, verify="no"))
        with pytest.raises(ValueError, match="verify"):
            stream.connect(("127.0.0.1", 9), server_hostname="localhost")
        stream.close()

    run(io_loop, main)


def test_client_sends_sni_and_server_sees_it(io_loop, pki):
    async def main():
        seen = []
        ctx = server_context(pki)
        ctx.sni_callback = lambda sslobj, name, context: seen.append(name)
        listener = Listener(ctx)
        try:
            server, client = await tls_pair(listener, client_context(pki), server_hostname="foo.example.com")
            assert seen == ["foo.example.com"]
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_hostname_mismatch_fails_client_handshake(io_loop, pki, caplog):
    async def main():
        listener = Listener(server_context(pki))
        try:
            accepted = listener.accept()
            fds = open_fds()
            with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
                await connect_tls(listener.port, client_context(pki), server_hostname="bar.example.com")
            server = await accepted
            with pytest.raises(ssl.SSLError):
                await server.wait_for_handshake()
            assert server.closed()
            assert open_fds() == fds  # both ends' sockets are closed
        finally:
            listener.close()

    run(io_loop, main)
    # Tornado logs the failure on both ends as a warning, not an error.
    assert any("Hostname mismatch" in r.getMessage() for r in ssl_warnings(caplog))


def test_hostname_check_can_be_disabled(io_loop, pki):
    async def main():
        listener = Listener(server_context(pki))
        try:
            ctx = client_context(pki)
            ctx.check_hostname = False
            server, client = await tls_pair(listener, ctx, server_hostname="bar.example.com")
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_alpn_protocol_readable_after_handshake(io_loop, pki):
    async def main():
        listener = Listener(server_context(pki, alpn=["h2", "http/1.1"]))
        try:
            server, client = await tls_pair(listener, client_context(pki, alpn=["http/1.1"]))
            assert server.socket.selected_alpn_protocol() == "http/1.1"
            assert client.socket.selected_alpn_protocol() == "http/1.1"
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_wait_for_handshake_semantics(io_loop, pki):
    async def main():
        listener = Listener(server_context(pki))
        try:
            accepted = listener.accept()
            client_future = gen.convert_yielded(connect_tls(listener.port, client_context(pki)))
            server = await accepted
            # The server stream exists before its handshake is done.
            assert server.socket.cipher() is None
            waiting = server.wait_for_handshake()
            with pytest.raises(RuntimeError):
                server.wait_for_handshake()
            assert await waiting is server
            # Once done, a new wait resolves at once.
            again = server.wait_for_handshake()
            assert again.done() and again.result() is server
            client = await client_future
            assert server.socket.cipher() is not None
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_server_writes_before_handshake_completes(io_loop, pki):
    """A greeting written at accept time (before the handshake) reaches the client after it."""

    async def main():
        listener = Listener(server_context(pki))
        try:
            accepted = listener.accept()
            client_future = gen.convert_yielded(connect_tls(listener.port, client_context(pki)))
            server = await accepted
            written = server.write(b"220 welcome\r\n")
            reading = server.read_until(b"\r\n")
            client = await client_future
            await written
            assert await client.read_until(b"\r\n") == b"220 welcome\r\n"
            await client.write(b"QUIT\r\n")
            assert await reading == b"QUIT\r\n"
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_client_certificate_accepted(io_loop, pki):
    async def main():
        ctx = server_context(pki)
        ctx.verify_mode = ssl.CERT_REQUIRED
        pki.ca.configure_trust(ctx)
        listener = Listener(ctx)
        try:
            cctx = client_context(pki)
            pki.client_cert.configure_cert(cctx)
            server, client = await tls_pair(listener, cctx)
            peer = server.socket.getpeercert()
            assert ("email", "client@example.com") in peer["subjectAltName"]
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_connect_refused_fails_cleanly(io_loop, pki):
    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()  # nothing listens there now
        stream = SSLIOStream(socket.socket(), ssl_options=client_context(pki))
        # Tornado fails the handshake future with the real error here (ConnectionRefusedError).
        with pytest.raises(OSError):
            await stream.connect(("127.0.0.1", port), server_hostname="localhost")
        assert stream.closed()

    run(io_loop, main)


# -- faults and bad input: a clear error for that connection, nothing else harmed ----------------


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n", bytes(range(256)) * 4, b"\x16\x03\x01\x00\x05hello" + b"\0" * 64],
    ids=["http", "random", "bad-record"],
)
def test_non_tls_client_gets_closed_and_server_keeps_serving(io_loop, pki, caplog, garbage):
    async def main():
        listener = Listener(server_context(pki))
        try:
            accepted = listener.accept()
            plain = await connect_plain(listener.port)
            server = await accepted
            await plain.write(garbage)
            with pytest.raises(ssl.SSLError):
                await server.wait_for_handshake()
            assert server.closed()
            assert isinstance(server.error, ssl.SSLError)
            # The plain client sees the connection end (perhaps after an alert record).
            await plain.read_until_close()
            plain.close()
            # Another, proper client is served as usual.
            server2, client2 = await tls_pair(listener, client_context(pki))
            await client2.write(b"ok")
            assert await server2.read_bytes(2) == b"ok"
            client2.close()
            server2.close()
        finally:
            listener.close()

    run(io_loop, main)
    assert len(ssl_warnings(caplog)) == 1


@pytest.mark.skipif(impl == "tornado", reason="Tornado's future never resolves in this case")
def test_wait_for_handshake_after_it_failed(io_loop, pki, caplog):
    async def main():
        listener = Listener(server_context(pki))
        try:
            accepted = listener.accept()
            plain = await connect_plain(listener.port)
            server = await accepted
            closed = Future()
            server.set_close_callback(lambda: closed.set_result(None))
            await plain.write(b"\x00" * 64)
            await closed
            with pytest.raises(ssl.SSLError):
                await server.wait_for_handshake()
            plain.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_pending_read_fails_with_ssl_error_as_real_error(io_loop, pki, caplog):
    async def main():
        listener = Listener(server_context(pki))
        try:
            accepted = listener.accept()
            plain = await connect_plain(listener.port)
            server = await accepted
            reading = server.read_bytes(10)
            await plain.write(b"GET / HTTP/1.1\r\n\r\n")
            with pytest.raises(StreamClosedError) as info:
                await reading
            assert isinstance(info.value.real_error, ssl.SSLError)
            plain.close()
        finally:
            listener.close()

    run(io_loop, main)
    assert len(ssl_warnings(caplog)) == 1


def test_connect_and_close_without_a_word_is_silent(io_loop, pki, caplog):
    """A port scan (connect, then close) is closed quietly, as Tornado does."""

    async def main():
        listener = Listener(server_context(pki))
        try:
            accepted = listener.accept()
            plain = await connect_plain(listener.port)
            server = await accepted
            plain.close()
            with pytest.raises((ssl.SSLError, StreamClosedError, OSError)):
                await server.wait_for_handshake()
            assert server.closed()
        finally:
            listener.close()

    run(io_loop, main)
    assert ssl_warnings(caplog) == []


def test_untrusted_ca_fails_both_ends(io_loop, pki, caplog):
    async def main():
        listener = Listener(server_context(pki))
        try:
            accepted = listener.accept()
            with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
                await connect_tls(listener.port, client_context(pki, ca=trustme.CA()))
            server = await accepted
            with pytest.raises(ssl.SSLError, match="(?i)unknown.ca"):
                await server.wait_for_handshake()
            # Still serving.
            server2, client2 = await tls_pair(listener, client_context(pki))
            client2.close()
            server2.close()
        finally:
            listener.close()

    run(io_loop, main)
    assert ssl_warnings(caplog)


def test_untrusted_by_default_context(io_loop, pki, caplog):
    """With no ssl_options a client uses the system trust store, which does not know the test CA."""

    async def main():
        listener = Listener(server_context(pki))
        try:
            stream = SSLIOStream(socket.socket())
            with pytest.raises(ssl.SSLCertVerificationError):
                await stream.connect(("127.0.0.1", listener.port), server_hostname="localhost")
            assert stream.closed()
        finally:
            listener.close()

    run(io_loop, main)


def test_expired_certificate_fails_handshake(io_loop, pki, caplog):
    async def main():
        now = datetime.datetime.now(datetime.timezone.utc)
        expired = pki.ca.issue_cert(
            "localhost", not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1)
        )
        listener = Listener(server_context(pki, cert=expired))
        try:
            accepted = listener.accept()
            with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
                await connect_tls(listener.port, client_context(pki))
            server = await accepted
            with pytest.raises(ssl.SSLError):
                await server.wait_for_handshake()
        finally:
            listener.close()

    run(io_loop, main)


def test_missing_client_certificate_fails_handshake(io_loop, pki, caplog):
    async def main():
        ctx = server_context(pki)
        ctx.verify_mode = ssl.CERT_REQUIRED
        pki.ca.configure_trust(ctx)
        listener = Listener(ctx)
        try:
            accepted = listener.accept()
            client = None
            try:
                # With TLS 1.3 the client finishes its side before the server checks it; with 1.2 not.
                client = await connect_tls(listener.port, client_context(pki))
            except ssl.SSLError:
                pass
            server = await accepted
            with pytest.raises(ssl.SSLError, match="(?i)certificate"):
                await server.wait_for_handshake()
            assert server.closed()
            if client is not None:
                # The server's alert reaches the client's first read (raised inline, as Tornado does, when
                # it is already there; else the read fails with StreamClosedError).
                with pytest.raises((StreamClosedError, ssl.SSLError)):
                    await client.read_bytes(1)
                assert client.closed()
                assert isinstance(client.error, (ssl.SSLError, ConnectionError))
                client.close()
        finally:
            listener.close()

    run(io_loop, main)
    assert ssl_warnings(caplog)


def test_server_stalled_mid_handshake_idles_and_fails_cleanly(io_loop, pki, caplog):
    """The client sends its ClientHello, reads the server's reply, then stalls, then resets."""

    async def main():
        listener = Listener(server_context(pki))
        try:
            fds = open_fds()
            accepted = listener.accept()
            raw = await connect_plain(listener.port)
            server = await accepted
            reading = server.read_bytes(1)
            handshake = server.wait_for_handshake()
            await raw.write(client_hello(client_context(pki)))
            await raw.read_bytes(5)  # the server answered and now waits for the client's Finished
            await assert_loop_idle(io_loop)
            assert server.reading() and not server.closed()
            assert not handshake.done() and not reading.done()
            reset(raw)
            await expect_closed(reading)
            with pytest.raises(OSError):
                await handshake
            assert server.closed()
            assert open_fds() == fds
        finally:
            listener.close()

    run(io_loop, main)
    assert ssl_warnings(caplog) == []  # a reset is a peer leaving, not worth a warning


def test_server_waiting_for_client_hello_idles(io_loop, pki):
    async def main():
        listener = Listener(server_context(pki))
        try:
            accepted = listener.accept()
            raw = await connect_plain(listener.port)
            server = await accepted
            handshake = server.wait_for_handshake()
            await wait_until(server.reading)  # waiting to read the ClientHello
            assert not server.writing()
            await assert_loop_idle(io_loop)
            assert not handshake.done()
            raw.close()
            with pytest.raises(OSError):
                await handshake
        finally:
            listener.close()

    run(io_loop, main)


def test_client_stalled_mid_handshake_idles_and_fails_cleanly(io_loop, pki):
    """The server reads the ClientHello and never answers; then it resets the connection."""

    async def main():
        listener = Listener()  # plain: a fake TLS server
        try:
            fds = open_fds()
            accepted = listener.accept()
            client = SSLIOStream(socket.socket(), ssl_options=client_context(pki))
            connecting = client.connect(("127.0.0.1", listener.port), server_hostname="localhost")
            raw = await accepted
            header = await raw.read_bytes(5)
            assert header[0] == 0x16  # a handshake record
            await raw.read_bytes(struct.unpack("!H", header[3:5])[0])
            writing = client.write(b"early data")  # queued until the handshake completes
            await assert_loop_idle(io_loop)
            assert client.reading() and not connecting.done() and not writing.done()
            reset(raw)
            with pytest.raises(OSError):
                await connecting
            await expect_closed(writing)
            assert client.closed()
            listener.close()
            assert open_fds() == fds - 1  # the listening socket is gone too
        finally:
            listener.close()

    run(io_loop, main)


def test_peer_close_without_close_notify(io_loop, pki):
    """SSLSocket.close() sends no close_notify: the peer still sees a clean end of stream."""

    async def main():
        listener = Listener(server_context(pki))
        try:
            server, client = await tls_pair(listener, client_context(pki))
            closed = Future()
            server.set_close_callback(lambda: closed.set_result(None))
            await client.write(b"last words")
            client.close()
            assert await server.read_until_close() == b"last words"
            await closed
            assert server.closed()
            await assert_loop_idle(io_loop)
        finally:
            listener.close()

    run(io_loop, main)


def test_peer_close_with_close_notify(io_loop, pki):
    async def main():
        listener = Listener(server_context(pki))
        try:
            server, client = await tls_pair(listener, client_context(pki))
            reading = server.read_bytes(100)
            await client.write(b"partial")
            try:
                client.socket.unwrap()  # sends close_notify, then would wait for the peer's
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            await expect_closed(reading)
            assert server.closed()
            client.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_peer_reset_after_handshake_fails_pending_ops(io_loop, pki):
    async def main():
        listener = Listener(server_context(pki))
        try:
            server, client = await tls_pair(listener, client_context(pki))
            reading = client.read_until(b"\n")
            fds = open_fds()
            server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            server.close()
            await expect_closed(reading)
            assert client.closed()
            assert open_fds() == fds - 2
        finally:
            listener.close()

    run(io_loop, main)


# -- transfers -----------------------------------------------------------------------------------


def test_large_transfers_both_ways_at_once(io_loop, pki):
    size = 24 * 1024 * 1024
    up = os.urandom(size)
    down = os.urandom(size + 12345)

    async def main():
        listener = Listener(server_context(pki))
        try:
            server, client = await tls_pair(listener, client_context(pki))

            async def collect(stream, total):
                digest = hashlib.sha256()
                got = 0
                while got < total:
                    chunk = await stream.read_bytes(min(1 << 20, total - got), partial=True)
                    digest.update(chunk)
                    got += len(chunk)
                return digest.digest()

            results = await gen.multi(
                [client.write(up), server.write(down), collect(server, size), collect(client, len(down))]
            )
            assert results[2] == hashlib.sha256(up).digest()
            assert results[3] == hashlib.sha256(down).digest()
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main, timeout=120)


def test_write_blocks_on_want_write_then_completes(io_loop, pki):
    """A big write to a peer that does not read stays pending (writing()), then completes in order."""

    async def main():
        listener = Listener(server_context(pki))
        try:
            server, client = await tls_pair(listener, client_context(pki))
            payload = bytes(range(256)) * (96 * 1024)  # 24 MiB: far more than loopback socket buffers hold
            writing = server.write(payload)
            second = server.write(b"tail")
            await gen.sleep(0.05)
            assert server.writing() and not writing.done()
            await assert_loop_idle(io_loop)
            data = await client.read_bytes(len(payload) + 4)
            await writing
            await second
            assert data == payload + b"tail"
            assert not server.writing()
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_small_reads_drain_data_buffered_inside_tls(io_loop, pki):
    """Reads smaller than a TLS record leave the rest inside the SSL object, where epoll cannot see it."""

    async def main():
        listener = Listener(server_context(pki))
        try:
            server, client = await tls_pair(listener, client_context(pki))
            payload = os.urandom(40000)
            await server.write(payload)
            await gen.sleep(0.05)  # let everything reach the client's kernel buffer
            got = bytearray()
            buf = bytearray(7)
            for _ in range(200):
                n = await client.read_into(buf)
                got += buf[:n]
            while len(got) < 20000:
                got += await client.read_bytes(333)
            got += await client.read_bytes(len(payload) - len(got))
            assert bytes(got) == payload
            # Nothing more was sent: a further read waits, without spinning.
            reading = client.read_bytes(1)
            await assert_loop_idle(io_loop)
            assert not reading.done()
            await server.write(b"!")
            assert await reading == b"!"
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_data_and_close_in_same_segment_after_small_read(io_loop, pki):
    async def main():
        listener = Listener(server_context(pki))
        try:
            server, client = await tls_pair(listener, client_context(pki))
            await server.write(b"line one\nrest of it")
            server.close()
            assert await client.read_until(b"\n") == b"line one\n"
            assert await client.read_until_close() == b"rest of it"
            assert client.closed()
        finally:
            listener.close()

    run(io_loop, main)


def test_many_small_messages_in_order(io_loop, pki):
    async def main():
        listener = Listener(server_context(pki))
        try:
            server, client = await tls_pair(listener, client_context(pki))
            for i in range(300):
                server.write(b"%d\n" % i)
            for i in range(300):
                assert await client.read_until(b"\n") == b"%d\n" % i
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_record_split_across_segments_waits_without_spinning(io_loop, pki):
    """Half a record in the kernel: OpenSSL wants more (WANT_READ mid-record) and the loop waits."""

    async def main():
        listener = Listener(server_context(pki))
        try:
            server, peer = await bio_pair(listener, pki)
            (record,) = peer.records(b"A" * 5000)
            reading = server.read_bytes(5000)
            for cut in (3, 5, 2000):  # inside the header, just after it, inside the body
                await peer.stream.write(record[:cut])
                await assert_loop_idle(io_loop)
                assert not reading.done()
                await peer.stream.write(record[cut:])
                assert await reading == b"A" * 5000
                (record,) = peer.records(b"A" * 5000)
                reading = server.read_bytes(5000)
            server.close()
            await expect_closed(reading)
            peer.stream.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_many_records_in_one_segment(io_loop, pki):
    """Small records arriving together: each read takes one, the rest stay in the kernel and are found."""

    async def main():
        listener = Listener(server_context(pki))
        try:
            server, peer = await bio_pair(listener, pki)
            lines = [b"line %d\n" % i for i in range(50)]
            await peer.stream.write(b"".join(peer.records(*lines)))
            for line in lines:
                assert await server.read_until(b"\n") == line
            await peer.stream.write(b"".join(peer.records(*lines)))
            buf = bytearray(len(lines[0]))
            for line in lines[:10]:
                await server.read_into(buf)
                assert bytes(buf) == line
            rest = b"".join(lines[10:])
            assert await server.read_bytes(len(rest)) == rest
            reading = server.read_bytes(1)
            await assert_loop_idle(io_loop)
            assert not reading.done()
            server.close()
            await expect_closed(reading)
            peer.stream.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_small_read_chunk_size_leaves_data_in_tls_and_finds_it(io_loop, pki):
    async def main():
        listener = Listener(server_context(pki))
        try:
            accepted = listener.accept()
            client = SSLIOStream(socket.socket(), ssl_options=client_context(pki), read_chunk_size=1000)
            await client.connect(("127.0.0.1", listener.port), server_hostname="localhost")
            server = await accepted
            payload = os.urandom(50000).replace(b"\n", b"x")
            await server.write(payload + b"\nend\n")
            assert await client.read_bytes(30000) == payload[:30000]
            assert await client.read_until(b"\n") == payload[30000:] + b"\n"
            assert await client.read_until(b"\n") == b"end\n"
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


# -- start_tls -----------------------------------------------------------------------------------


async def plain_pair(listener):
    accepted = listener.accept()
    client = await connect_plain(listener.port)
    server = await accepted
    return server, client


async def send_line(src, dst, line):
    await src.write(line)
    assert await dst.read_until(b"\r\n") == line


def test_start_tls_smtp_style(io_loop, pki):
    async def main():
        listener = Listener()
        try:
            server, client = await plain_pair(listener)
            await send_line(server, client, b"220 mail.example.com ready\r\n")
            await send_line(client, server, b"EHLO mail.example.com\r\n")
            await send_line(server, client, b"250 STARTTLS\r\n")
            await send_line(client, server, b"STARTTLS\r\n")
            await send_line(server, client, b"220 Go ahead\r\n")
            client_future = client.start_tls(False, client_context(pki), server_hostname="localhost")
            server_future = server.start_tls(True, server_context(pki))
            client = await client_future
            server = await server_future
            assert isinstance(client, SSLIOStream) and isinstance(server, SSLIOStream)
            assert client.socket.version().startswith("TLS")
            await send_line(client, server, b"EHLO mail.example.com\r\n")
            await send_line(server, client, b"250 welcome\r\n")
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_start_tls_with_dict_options_and_close_callback(io_loop, pki):
    async def main():
        listener = Listener()
        try:
            server, client = await plain_pair(listener)
            closed = Future()
            server.set_close_callback(lambda: closed.set_result(None))
            client_future = client.start_tls(False, dict(cert_reqs=ssl.CERT_NONE))
            server = await server.start_tls(True, dict(certfile=pki.cert_file, keyfile=pki.key_file))
            client = await client_future
            await client.write(b"hi")
            assert await server.read_bytes(2) == b"hi"
            client.close()
            await closed  # the callback moved to the TLS stream
        finally:
            listener.close()

    run(io_loop, main)


def test_start_tls_refuses_when_not_idle(io_loop, pki):
    async def main():
        listener = Listener()
        try:
            server, client = await plain_pair(listener)
            reading = client.read_bytes(1)
            with pytest.raises(ValueError):
                client.start_tls(False, client_context(pki))
            await server.write(b"a\r\nleftover")
            assert await reading == b"a"
            assert await client.read_until(b"\r\n") == b"\r\n"
            # "leftover" now sits in the client's read buffer.
            await gen.sleep(0.02)
            with pytest.raises(ValueError):
                client.start_tls(False, client_context(pki))
            # A write that cannot complete (the peer does not read).
            big = server.write(b"z" * (32 * 1024 * 1024))
            assert not big.done()
            with pytest.raises(ValueError):
                server.start_tls(True, server_context(pki))
            client.close()
            await expect_closed(big)
            # A closed stream is not idle either.
            with pytest.raises(ValueError):
                client.start_tls(False, client_context(pki))
        finally:
            listener.close()

    run(io_loop, main)


def test_start_tls_handshake_failure(io_loop, pki, caplog):
    async def main():
        listener = Listener()
        try:
            server, client = await plain_pair(listener)
            server_future = server.start_tls(True, server_context(pki))
            # Default client options verify against the system store, which does not know our CA.
            client_future = client.start_tls(False, server_hostname="localhost")
            with pytest.raises(ssl.SSLError):
                await client_future
            with pytest.raises(OSError):
                await server_future
        finally:
            listener.close()

    run(io_loop, main)
    assert ssl_warnings(caplog)


def test_start_tls_checks_server_hostname(io_loop, pki, caplog):
    async def main():
        listener = Listener()
        try:
            server, client = await plain_pair(listener)
            server_future = server.start_tls(True, server_context(pki))
            client_future = client.start_tls(False, client_context(pki), server_hostname="bar.example.com")
            with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
                await client_future
            with pytest.raises(OSError):
                await server_future
        finally:
            listener.close()

    run(io_loop, main)


def test_start_tls_cancel_closes_socket(io_loop, pki):
    async def main():
        listener = Listener()
        try:
            server, client = await plain_pair(listener)
            fds = open_fds()
            client_future = client.start_tls(False, client_context(pki), server_hostname="localhost")
            client_future.cancel()
            assert client_future.cancelled()
            # The peer sees the end of the stream only if the client's socket was closed.
            await server.read_until_close()
            assert server.closed()
            assert open_fds() == fds - 2  # both ends' sockets are closed
        finally:
            listener.close()

    run(io_loop, main)


# -- TLS on a TCPServer ----------------------------------------------------------------------------


class EchoServer(tcpserver.TCPServer):
    """The echo server of Tornado's TCPServer documentation, unchanged."""

    async def handle_stream(self, stream, address):
        while True:
            try:
                data = await stream.read_until(b"\n")
                await stream.write(data)
            except StreamClosedError:
                break


def start_server(server):
    sockets = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server.add_sockets(sockets)
    return sockets[0].getsockname()[1]


def test_documentation_echo_server_over_tls_with_100_clients(io_loop, pki):
    async def main():
        server = EchoServer(ssl_options=server_context(pki))
        port = start_server(server)
        client = tcpclient.TCPClient()
        ctx = client_context(pki)  # one context for all: making one loads the system trust store
        try:

            async def one(i):
                stream = await client.connect("localhost", port, ssl_options=ctx)
                assert isinstance(stream, SSLIOStream)
                try:
                    for j in range(3):
                        line = b"client %d line %d\n" % (i, j)
                        await stream.write(line)
                        assert await stream.read_until(b"\n") == line
                finally:
                    stream.close()

            await gen.multi([one(i) for i in range(100)])
        finally:
            client.close()
            server.stop()

    run(io_loop, main, timeout=120)


def test_tcpserver_dict_options_handle_stream_runs_before_handshake(io_loop, pki):
    async def main():
        seen = Future()

        class Server(tcpserver.TCPServer):
            async def handle_stream(self, stream, address):
                before = stream.socket.cipher()
                await stream.wait_for_handshake()
                seen.set_result((before, stream.socket.cipher()))
                await stream.write(b"hello\n")

        server = Server(ssl_options=dict(certfile=pki.cert_file, keyfile=pki.key_file))
        port = start_server(server)
        try:
            stream = await connect_tls(port, dict(cert_reqs=ssl.CERT_REQUIRED, ca_certs=pki.ca_file))
            assert await stream.read_until(b"\n") == b"hello\n"
            before, after = await seen
            assert before is None and after is not None
            stream.close()
        finally:
            server.stop()

    run(io_loop, main)


@pytest.mark.skipif(impl == "tornado", reason="Tornado checks the keys only at the first connection")
def test_tcpserver_rejects_unknown_ssl_option_at_construction(pki):
    with pytest.raises(ValueError, match="keyfil"):
        tcpserver.TCPServer(ssl_options=dict(certfile=pki.cert_file, keyfil=pki.key_file))


def test_tcpserver_alpn(io_loop, pki):
    async def main():
        selected = Future()

        class Server(tcpserver.TCPServer):
            async def handle_stream(self, stream, address):
                await stream.wait_for_handshake()
                selected.set_result(stream.socket.selected_alpn_protocol())
                stream.close()

        server = Server(ssl_options=server_context(pki, alpn=["h2", "http/1.1"]))
        port = start_server(server)
        try:
            stream = await connect_tls(port, client_context(pki, alpn=["h2"]))
            assert stream.socket.selected_alpn_protocol() == "h2"
            assert await selected == "h2"
            stream.close()
        finally:
            server.stop()

    run(io_loop, main)


def test_tcpserver_survives_bad_clients(io_loop, pki, caplog):
    """Garbage, a port scan, a distrusting client and a stalled client, next to well-behaved ones."""

    async def main():
        server = EchoServer(ssl_options=server_context(pki))
        port = start_server(server)
        client = tcpclient.TCPClient()
        try:
            garbage = await connect_plain(port)
            await garbage.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            scan = await connect_plain(port)
            scan.close()
            stalled = await connect_plain(port)
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect_tls(port, client_context(pki, ca=trustme.CA()))

            ctx = client_context(pki)

            async def good(i):
                stream = await client.connect("localhost", port, ssl_options=ctx)
                await stream.write(b"%d\n" % i)
                assert await stream.read_until(b"\n") == b"%d\n" % i
                stream.close()

            await gen.multi([good(i) for i in range(10)])
            await garbage.read_until_close()  # the server hung up on it
            garbage.close()
            assert not stalled.closed()  # a stalled handshake only costs its own connection
            stalled.close()
        finally:
            client.close()
            server.stop()

    run(io_loop, main)
    messages = [r.getMessage() for r in ssl_warnings(caplog)]
    assert any("http request" in m.lower() or "wrong version" in m.lower() for m in messages), messages


@pytest.mark.skipif(impl == "tornado", reason="Tornado reads one stream for as long as it has data")
def test_tls_streams_with_data_waiting_are_read_in_turns(io_loop, pki):
    # As for plain streams (test_iostream): two TLS streams with plenty waiting in the kernel are read
    # in turns, not one drained before the other is looked at.  Reads of exactly one TLS record (16
    # KiB) leave nothing inside the TLS object, so the poller sees all that is left.
    record = 16384

    async def main():
        listener = Listener(server_context(pki), read_chunk_size=record)
        pairs = []
        try:
            for _ in range(2):
                pairs.append(await tls_pair(listener, client_context(pki)))
            for _, client in pairs:
                await client.write(b"x" * (6 * record))
            order = []

            async def drain(index, server):
                for _ in range(6):
                    assert len(await server.read_bytes(record)) == record
                    order.append(index)

            await gen.multi([drain(0, pairs[0][0]), drain(1, pairs[1][0])])
            switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
            assert switches >= 3, order
        finally:
            for server, client in pairs:
                client.close()
                server.close()
            listener.close()

    run(io_loop, main)


def test_bulk_tls_writes_leave_tcp_nodelay_alone(io_loop, pki):
    # OpenSSL sends a large write as one socket write per 16 KiB record; Nagle coalesces those, so a TLS
    # stream keeps the option as it is (a plain stream's bulk sends turn it off: see test_iostream.py).
    def nodelay(stream):
        return stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    async def main():
        listener = Listener(server_context(pki))
        try:
            server, client = await tls_pair(listener, client_context(pki))
            big = bytes(range(256)) * 1024  # 256 KiB
            await server.write(big)
            assert not nodelay(server)
            server.set_nodelay(True)
            await server.write(big)
            await server.write(b"end\n")
            assert nodelay(server)
            assert await client.read_until(b"end\n") == big + big + b"end\n"
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_start_tls_after_bulk_plain_data(io_loop, pki):
    # A plain stream that sent in bulk before STARTTLS hands the TLS stream the socket with
    # TCP_NODELAY as the application left it (off), and the data on both sides of the switch arrives.
    def nodelay(stream):
        return stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    async def main():
        listener = Listener()
        try:
            server, client = await plain_pair(listener)
            big = bytes(range(11, 256)) * 420 + b"\n"  # ~100 KiB, no newline before the last byte
            await server.write(big)
            assert await client.read_until(b"\n") == big
            client_future = client.start_tls(False, client_context(pki), server_hostname="localhost")
            server_future = server.start_tls(True, server_context(pki))
            client = await client_future
            server = await server_future
            assert not nodelay(server)
            await server.write(big)
            assert await client.read_until(b"\n") == big
            client.close()
            server.close()
        finally:
            listener.close()

    run(io_loop, main)


def test_new_read_after_handshake_goes_to_the_socket_at_once(io_loop, pki):
    """A new read right after the handshake tries the socket before waiting, as Tornado's does: on a
    descriptor closed behind the stream's back (Tornado's own test_inline_read_error) the read call
    itself raises the error, for a TLS stream as for a plain one."""

    async def main():
        listener = Listener(server_context(pki))
        server, client = await tls_pair(listener, client_context(pki))
        try:
            os.close(server.socket.fileno())
            with pytest.raises(OSError):
                server.read_bytes(1)
        finally:
            server.close()
            client.close()
            listener.close()

    run(io_loop, main)


@pytest.mark.parametrize("close_notify", [False, True], ids=["ragged", "close_notify"])
@pytest.mark.parametrize("tail", [0, 1792], ids=["full-records", "short-last-record"])
def test_bulk_records_then_close_all_data_first(io_loop, pki, close_notify, tail):
    """Full records arriving together with the peer's close (with or without close_notify): partial
    reads deliver every byte, in order, in chunks of at most what was asked, and only then the end."""
    payload = bytes(range(256)) * ((5 * 16384 + tail) // 256)  # five full records (and a short one)

    async def main():
        listener = Listener(server_context(pki))
        try:
            server, client = await tls_pair(listener, client_context(pki))
            await client.write(payload)
            if close_notify:
                try:
                    client.socket.unwrap()
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
            # A FIN, not close(): closing with the server's session tickets unread would send a reset,
            # and the server's kernel would drop what it holds.
            client.socket.shutdown(socket.SHUT_WR)
            await gen.sleep(0.05)  # all of it, and the end, wait in the server's kernel before the first read
            received = []
            while True:
                try:
                    chunk = await server.read_bytes(40000, partial=True)
                except StreamClosedError:
                    break
                assert 0 < len(chunk) <= 40000
                received.append(chunk)
            assert b"".join(received) == payload
            client.close()
        finally:
            listener.close()

    run(io_loop, main)
