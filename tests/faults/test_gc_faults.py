"""Memory under garbage collection: what must live does, and ordinary work leaves no reference cycles.

* A coroutine suspended on a future that nobody has completed yet stays alive as long as that future
  does, even when nobody holds the coroutine's own task (the fire-and-forget ``spawn_callback``
  pattern), and finishes once the future is resolved.
* A burst of connections served by a ``TCPServer`` and made by ``TCPClient`` (echo, close, also a few
  failures: refused connects, resets, reads past the end) leaves nothing for the cyclic collector:
  with the collector disabled during the burst, ``gc.collect()`` afterwards finds 0 objects.
"""

import collections
import gc
import socket
import ssl
import struct
import weakref

import pytest
import trustme

from fault_server import EchoServer
from tornado_lite import gen
from tornado_lite.concurrent import Future
from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import IOStream, StreamClosedError
from tornado_lite.netutil import Resolver, bind_sockets
from tornado_lite.tcpclient import TCPClient


class LiteralResolver(Resolver):
    """IP literals only: no thread pool, no DNS."""

    def resolve(self, host, port, family=socket.AF_UNSPEC):
        future = Future()
        future.set_result([(socket.AF_INET, (host, port))])
        return future


@pytest.fixture
def loop():
    lp = IOLoop(make_current=False)
    try:
        yield lp
    finally:
        lp.close(all_fds=True)


def collect_quietly() -> int:
    found = 0
    for _ in range(3):
        found += gc.collect()
    return found


# -- liveness --------------------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["spawn_callback", "convert_yielded", "gen.coroutine"])
def test_a_coroutine_waiting_on_a_live_future_is_not_collected(loop, start):
    future = Future()
    progress = []
    witnesses = []

    class Witness:
        """A local of the coroutine: alive exactly as long as the coroutine's frame."""

    async def waiter():
        witness = Witness()
        witnesses.append(weakref.ref(witness))
        progress.append("waiting")
        progress.append(await future)
        del witness

    @gen.coroutine
    def gen_waiter():
        witness = Witness()
        witnesses.append(weakref.ref(witness))
        progress.append("waiting")
        progress.append((yield future))
        del witness

    async def main():
        if start == "spawn_callback":
            IOLoop.current().spawn_callback(waiter)
        elif start == "convert_yielded":
            gen.convert_yielded(waiter())  # the task is dropped at once
        else:
            gen_waiter()  # likewise its future
        for _ in range(3):
            await gen.moment
        assert progress == ["waiting"]
        collect_quietly()
        assert witnesses[0]() is not None, "the suspended coroutine was collected"
        future.set_result("resumed")
        for _ in range(3):
            await gen.moment
        assert progress == ["waiting", "resumed"]

    loop.run_sync(main, timeout=30)
    assert witnesses[0]() is None  # and once finished it is freed, by reference counting alone


# -- no cycles from ordinary work ------------------------------------------------------------------


def describe_garbage(found: int) -> str:
    kinds = collections.Counter(type(obj).__qualname__ for obj in gc.garbage)
    return f"{found} objects in cycles: {kinds.most_common(15)}"


def assert_no_cycles_from(loop, work) -> None:
    """Runs ``work`` once to warm up, then again with the collector off, and checks it made no cycle."""
    loop.run_sync(work, timeout=60)
    collect_quietly()
    gc.disable()
    try:
        loop.run_sync(work, timeout=60)
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            found = gc.collect()
            report = describe_garbage(found)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    finally:
        gc.enable()
    assert found == 0, report


def test_a_burst_of_echo_connections_leaves_no_reference_cycles(loop):
    server = EchoServer()
    sockets = bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    loop.add_callback(server.add_sockets, sockets)
    client = TCPClient(resolver=LiteralResolver())

    async def one_connection(i):
        stream = await client.connect("127.0.0.1", port)
        for j in range(5):
            line = b"connection %d line %d\n" % (i, j)
            await stream.write(line)
            assert await stream.read_until(b"\n") == line
        stream.close()

    async def burst():
        await gen.multi([one_connection(i) for i in range(100)])
        while server.open:  # the server side notices each close on a later pass
            await gen.sleep(0.01)

    try:
        assert_no_cycles_from(loop, burst)
    finally:
        loop.run_sync(server.stop)
        client.close()
    assert server.closed == 200


def test_a_burst_of_tls_echo_connections_leaves_no_reference_cycles(loop):
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    server = EchoServer(ssl_options=server_context)
    sockets = bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    loop.add_callback(server.add_sockets, sockets)
    client = TCPClient(resolver=LiteralResolver())

    async def one_connection(i):
        stream = await client.connect("127.0.0.1", port, ssl_options=client_context)
        for j in range(3):
            line = b"tls connection %d line %d\n" % (i, j)
            await stream.write(line)
            assert await stream.read_until(b"\n") == line
        stream.close()

    async def burst():
        await gen.multi([one_connection(i) for i in range(30)])
        while server.open:
            await gen.sleep(0.01)

    try:
        assert_no_cycles_from(loop, burst)
    finally:
        loop.run_sync(server.stop)
        client.close()
    assert server.closed == 60


def test_failing_connections_leave_no_reference_cycles(loop):
    """The error paths: refused connects, peers that reset, reads that hit the end of the stream."""
    server = EchoServer()
    sockets = bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    loop.add_callback(server.add_sockets, sockets)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = TCPClient(resolver=LiteralResolver())

    async def refused():
        try:
            await client.connect("127.0.0.1", closed_port)
        except StreamClosedError:
            return
        raise AssertionError("connect should have been refused")

    async def reset_by_client():
        stream = await client.connect("127.0.0.1", port)
        await stream.write(b"partial line without end")
        # An RST instead of a FIN: the server's pending read fails with a reset.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.close()

    async def read_past_end():
        sock = socket.socket()
        sock.connect(("127.0.0.1", port))
        stream = IOStream(sock)
        await stream.write(b"bye\n")
        assert await stream.read_until(b"\n") == b"bye\n"
        sock.shutdown(socket.SHUT_WR)  # the server sees end of file, closes; we then read past it
        try:
            await stream.read_until(b"\n")
        except StreamClosedError:
            pass
        else:
            raise AssertionError("read past the end should fail")
        stream.close()

    async def burst():
        await gen.multi([refused() for _ in range(20)])
        await gen.multi([reset_by_client() for _ in range(20)])
        await gen.multi([read_past_end() for _ in range(20)])
        while server.open:
            await gen.sleep(0.01)

    try:
        assert_no_cycles_from(loop, burst)
    finally:
        loop.run_sync(server.stop)
        client.close()


def test_failing_tls_connections_leave_no_reference_cycles(loop):
    """Garbage on the TLS port (the server's handshake fails) and a client that rejects the server's
    certificate (the client's handshake fails)."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    untrusting = ssl.create_default_context()  # knows nothing of our CA
    server = EchoServer(ssl_options=server_context)
    sockets = bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    loop.add_callback(server.add_sockets, sockets)
    client = TCPClient(resolver=LiteralResolver())

    async def garbage():
        sock = socket.socket()
        sock.connect(("127.0.0.1", port))
        stream = IOStream(sock)
        await stream.write(b"\x16\x03\x01\x00\x20" + b"\xee" * 32 + b"GET / HTTP/1.0\r\n\r\n")
        try:
            await stream.read_until_close()
        except StreamClosedError:
            pass
        stream.close()

    async def rejected():
        try:
            await client.connect("127.0.0.1", port, ssl_options=untrusting)
        except ssl.SSLError:
            return
        raise AssertionError("the certificate should have been rejected")

    async def burst():
        await gen.multi([garbage() for _ in range(20)])
        await gen.multi([rejected() for _ in range(20)])
        while server.open:
            await gen.sleep(0.01)

    try:
        assert_no_cycles_from(loop, burst)
    finally:
        loop.run_sync(server.stop)
        client.close()
