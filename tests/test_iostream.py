"""IOStream, PipeIOStream and BaseIOStream over real file descriptors.

Every stream kind is exercised through the same pairs: TCP over IPv4 and IPv6 (when the machine has
it), Unix-domain sockets, socketpairs and pipes.  A pair is (reader, writer); for sockets both ends
can do both.  Each test runs on a fresh IOLoop, bounded by a timeout.
"""

import errno
import logging
import os
import re
import socket
import struct
import sys
import tempfile

import pytest

from tornado_lite import gen
from tornado_lite.concurrent import Future
from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import (
    BaseIOStream,
    IOStream,
    PipeIOStream,
    StreamBufferFullError,
    StreamClosedError,
    UnsatisfiableReadError,
)

TIMEOUT = 10


def _has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_IPV6 = _has_ipv6()
SOCKET_KINDS = ["tcp4", "tcp6", "unix", "socketpair"]
ALL_KINDS = SOCKET_KINDS + ["pipe"]


@pytest.fixture
def io_loop():
    loop = IOLoop(make_current=True)
    yield loop
    loop.close(all_fds=True)
    IOLoop.clear_current()


def run(loop, func, timeout=TIMEOUT):
    return loop.run_sync(func, timeout=timeout)


async def _accepting(listener: socket.socket) -> socket.socket:
    """Waits on the loop (not blocking it) for one connection on ``listener``."""
    loop = IOLoop.current()
    accepted: Future = Future()

    def on_ready(fd, events):
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        loop.remove_handler(listener)
        accepted.set_result(conn)

    listener.setblocking(False)
    loop.add_handler(listener, on_ready, IOLoop.READ)
    return await accepted


async def make_pair(kind: str, **kwargs):
    """(reader, writer) streams of the given kind, connected to each other."""
    if kind == "pipe":
        r, w = os.pipe()
        return PipeIOStream(r, **kwargs), PipeIOStream(w, **kwargs)
    if kind == "socketpair":
        a, b = socket.socketpair()
        return IOStream(a, **kwargs), IOStream(b, **kwargs)
    if kind == "tcp6" and not HAS_IPV6:
        pytest.skip("IPv6 is not available on this machine")
    tmpdir = None
    if kind == "unix":
        tmpdir = tempfile.mkdtemp()
        address = os.path.join(tmpdir, "sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(address)
    else:
        family, host = (socket.AF_INET, "127.0.0.1") if kind == "tcp4" else (socket.AF_INET6, "::1")
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((host, 0))
        address = listener.getsockname()
    listener.listen(8)
    try:
        client = IOStream(socket.socket(listener.family, socket.SOCK_STREAM), **kwargs)
        connecting = client.connect(address)
        conn = await _accepting(listener)
        assert (await connecting) is client
    finally:
        listener.close()
        if tmpdir is not None:
            os.unlink(address)
            os.rmdir(tmpdir)
    return IOStream(conn, **kwargs), client


def close_all(*streams):
    for s in streams:
        s.close()


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_read_methods_basic(io_loop, kind):
    async def main():
        rs, ws = await make_pair(kind)
        try:
            ws.write(b"hel")
            ws.write(b"lo world\r\n")
            assert await rs.read_until(b" ") == b"hello "
            assert await rs.read_bytes(3) == b"wor"
            assert await rs.read_until_regex(rb"\r?\n") == b"ld\r\n"
            ws.write(b"0123456789")
            buf = bytearray(4)
            assert await rs.read_into(buf) == 4
            assert bytes(buf) == b"0123"
            assert await rs.read_bytes(100, partial=True) == b"456789"
            ws.write(b"tail")
            ws.close()
            assert await rs.read_until_close() == b"tail"
            assert rs.closed()
        finally:
            close_all(rs, ws)

    run(io_loop, main)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_read_waits_for_data(io_loop, kind):
    async def main():
        rs, ws = await make_pair(kind)
        try:
            fut = rs.read_until(b"\n")
            assert rs.reading()
            assert not fut.done()
            await gen.sleep(0.01)
            assert not fut.done()
            ws.write(b"abc")
            await gen.sleep(0.01)
            assert not fut.done()
            ws.write(b"def\nextra")
            assert await fut == b"abcdef\n"
            assert not rs.reading()
            assert await rs.read_bytes(5) == b"extra"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["socketpair", "pipe"])
def test_delimiter_split_across_chunks(io_loop, kind):
    async def main():
        rs, ws = await make_pair(kind)
        try:
            fut = rs.read_until(b"\r\n\r\n")
            for piece in [b"head", b"er\r", b"\n", b"\r", b"\n", b"body"]:
                await ws.write(piece)
                await gen.sleep(0.002)
            assert await fut == b"header\r\n\r\n"
            assert await rs.read_bytes(4) == b"body"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_completes_inline_from_buffer(io_loop):
    async def main():
        rs, ws = await make_pair("socketpair")
        try:
            await ws.write(b"line one\nline two\n")
            first = await rs.read_until(b"\n")
            assert first == b"line one\n"
            # The second line is already buffered: the future is resolved before read_until returns.
            fut = rs.read_until(b"\n")
            assert fut.done() and fut.result() == b"line two\n"
            # A write to an idle socket reaches the kernel inside write().
            wfut = ws.write(b"x" * 1000)
            assert wfut.done() and wfut.result() is None
            assert not ws.writing()
            assert await rs.read_bytes(1000) == b"x" * 1000
            # Zero-length reads finish at once.
            assert rs.read_bytes(0).result() == b""
            assert rs.read_into(bytearray()).result() == 0
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_futures_finished_inline_behave_like_any_future(io_loop):
    # Reads served from the buffer and writes that reach the kernel at once return finished futures;
    # whatever their making costs, they must do all a Future does.
    from concurrent.futures import InvalidStateError

    @gen.coroutine
    def yield_from(fut):
        result = yield from fut
        return result

    async def main():
        rs, ws = await make_pair("socketpair")
        try:
            await ws.write(b"one\ntwo\nthree\nfour\n")
            assert await rs.read_until(b"\n") == b"one\n"
            read, written = rs.read_until(b"\n"), ws.write(b"five\n")
            for fut, value in ((read, b"two\n"), (written, None)):
                assert isinstance(fut, Future) and fut.done() and not fut.cancelled()
                assert fut.result() == value and fut.exception() is None
                assert not fut.cancel()
                with pytest.raises(InvalidStateError):
                    fut.set_result(b"other")
                with pytest.raises(InvalidStateError):
                    fut.set_exception(ValueError())
                assert fut.remove_done_callback(print) == 0
                seen = []
                fut.add_done_callback(seen.append)
                assert seen == []  # done-callbacks run on a later pass, never inside the call
                await gen.moment
                assert seen == [fut]
                assert await fut == value
                assert await yield_from(fut) == value
            # Distinct objects, usable as keys (WaitIterator keys its futures).
            third, again = rs.read_until(b"\n"), ws.write(b"six\n")
            assert third is not read and again is not written
            waiter = gen.WaitIterator(read, third, written, again)
            results = set()
            while not waiter.done():
                results.add(await waiter.next())
            assert results == {b"two\n", b"three\n", None}
            assert await gen.multi([rs.read_until(b"\n"), ws.write(b"")]) == [b"four\n", None]
        finally:
            close_all(rs, ws)

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["tcp4", "pipe"])
def test_read_bytes_partial(io_loop, kind):
    async def main():
        rs, ws = await make_pair(kind)
        try:
            fut = rs.read_bytes(50, partial=True)
            ws.write(b"hello")
            assert await fut == b"hello"
            fut = rs.read_bytes(3, partial=True)
            ws.write(b"world")
            assert await fut == b"wor"
            assert await rs.read_bytes(0, partial=True) == b""
            assert await rs.read_bytes(10, partial=True) == b"ld"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["tcp4", "unix", "pipe"])
def test_read_into(io_loop, kind):
    async def main():
        rs, ws = await make_pair(kind)
        try:
            buf = bytearray(10)
            fut = rs.read_into(buf)
            ws.write(b"hello")
            await gen.sleep(0.01)
            assert rs.reading() and not fut.done()
            ws.write(b"world!!")
            assert await fut == 10
            assert bytes(buf) == b"helloworld"
            # What is left in the buffer goes first.
            fut = rs.read_into(buf)
            ws.write(b"1234567890")
            assert await fut == 10
            assert bytes(buf) == b"!!12345678"
            # Partial: resolves with what is there.
            fut = rs.read_into(buf, partial=True)
            assert await fut == 2
            assert bytes(buf[:2]) == b"90"
            fut = rs.read_into(buf, partial=True)
            ws.write(b"abc")
            assert await fut == 3
            assert bytes(buf[:3]) == b"abc"
            # The caller may resize its buffer afterwards: no view of it is left alive.
            del buf[:]
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_read_until_regex_semantics(io_loop):
    async def main():
        rs, ws = await make_pair("socketpair")
        try:
            ws.write(b"abc\nxyz\n")
            assert await rs.read_until(b"\n") == b"abc\n"
            # ^ anchors at the read position, as if the consumed data were gone.
            assert await rs.read_until_regex(rb"^xyz") == b"xyz"
            assert await rs.read_until_regex(re.compile(rb"\n").pattern) == b"\n"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_large_read_until_is_not_quadratic(io_loop):
    async def main():
        rs, ws = await make_pair("socketpair")
        try:
            for _ in range(4096):
                ws.write(b"A" * 1024)
            ws.write(b"\r\n")
            data = await rs.read_until(b"\r\n")
            assert len(data) == 4096 * 1024 + 2
        finally:
            close_all(rs, ws)

    run(io_loop, main, timeout=30)


@pytest.mark.parametrize("kind", ["tcp4", "pipe"])
def test_small_reads_from_large_buffer(io_loop, kind):
    # With a 10 KB buffer, 100 KB in flight is read a little at a time, never all at once.
    async def main():
        rs, ws = await make_pair(kind, max_buffer_size=10 * 1024)
        try:
            ws.write((b"a" * 1023 + b"\n") * 100)
            for _ in range(50):
                assert await rs.read_bytes(1024) == b"a" * 1023 + b"\n"
            for _ in range(50):
                assert await rs.read_until(b"\n", max_bytes=4096) == b"a" * 1023 + b"\n"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_second_read_while_reading_raises(io_loop):
    async def main():
        rs, ws = await make_pair("socketpair")
        try:
            fut = rs.read_bytes(1)
            with pytest.raises(AssertionError, match="Already reading"):
                rs.read_until(b"\n")
            ws.write(b"x")
            assert await fut == b"x"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_big_write_to_slow_reader(io_loop, kind):
    async def main():
        rs, ws = await make_pair(kind)
        try:
            payload = os.urandom(1 << 16) * 64  # 4 MB, more than any kernel buffer here
            wfut = ws.write(payload)
            assert not wfut.done()
            assert ws.writing()
            received = bytearray()
            while len(received) < len(payload):
                received += await rs.read_bytes(65536, partial=True)
                await gen.sleep(0)
            assert received == payload
            await wfut
            assert not ws.writing()
        finally:
            close_all(rs, ws)

    run(io_loop, main, timeout=30)


def test_write_types(io_loop):
    async def main():
        rs, ws = await make_pair("socketpair")
        try:
            await ws.write(b"")
            await ws.write(bytearray(b"ba"))
            await ws.write(memoryview(b"mv-xyz")[:2])
            typed = memoryview(struct.pack("<4I", 1, 2, 3, 4)).cast("I")
            await ws.write(typed)  # counted in bytes, not items
            assert await rs.read_bytes(4 + 16) == b"bamv" + struct.pack("<4I", 1, 2, 3, 4)
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_write_futures_resolve_in_order(io_loop):
    async def main():
        rs, ws = await make_pair("socketpair")
        try:
            big = b"z" * (8 << 20)
            futures = [ws.write(big), ws.write(b"small"), ws.write(b"")]
            assert not any(f.done() for f in futures)
            order = []
            for i, f in enumerate(futures):
                f.add_done_callback(lambda _f, i=i: order.append(i))
            assert await rs.read_bytes(len(big) + 5) == big + b"small"
            await gen.multi(futures)
            assert order == [0, 1, 2]
        finally:
            close_all(rs, ws)

    run(io_loop, main, timeout=30)


def test_bytearray_resizable_after_large_write(io_loop):
    async def main():
        rs, ws = await make_pair("socketpair")
        try:
            data = bytearray(b"x" * 10000)
            fut = rs.read_bytes(len(data))
            await ws.write(data)
            assert await fut == bytes(data)
            del data[:]  # no view of it may remain
            data = bytearray(b"y" * (10 << 20))
            wfut = ws.write(data)
            assert ws.writing()
            ws.close()
            with pytest.raises(StreamClosedError):
                await wfut
            del data[:]
        finally:
            close_all(rs, ws)

    run(io_loop, main, timeout=30)


def test_write_while_connecting(io_loop):
    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        stream = IOStream(socket.socket())
        connect_fut = stream.connect(listener.getsockname())
        write_fut = stream.write(b"early bird\n")
        assert not connect_fut.done()
        done_order = []
        connect_fut.add_done_callback(lambda f: done_order.append("connect"))
        write_fut.add_done_callback(lambda f: done_order.append("write"))
        conn = await _accepting(listener)
        listener.close()
        server = IOStream(conn)
        try:
            assert await server.read_until(b"\n") == b"early bird\n"
            await write_fut
            assert done_order == ["connect", "write"]
        finally:
            close_all(server, stream)

    run(io_loop, main)


def test_max_write_buffer_size(io_loop):
    async def main():
        rs, ws = await make_pair("socketpair", max_write_buffer_size=1 << 20)
        try:
            with pytest.raises(StreamBufferFullError):
                ws.write(b"x" * ((1 << 20) + 1))
            # Fill the kernel, then the buffer up to the limit; one more byte is refused.
            while ws.write(b"y" * 65536).done():
                pass
            while len(ws._write_buffer) + 65536 <= 1 << 20:
                ws.write(b"y" * 65536)
            with pytest.raises(StreamBufferFullError):
                ws.write(b"y" * 65536)
            assert not ws.closed()
        finally:
            close_all(rs, ws)

    run(io_loop, main)


# --------------------------------------------------------------------------------------------------
# Connecting, closing, options
# --------------------------------------------------------------------------------------------------


def test_connect_refused(io_loop):
    async def main():
        # A port that was just free: bind, note it, close without listening.
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
        probe.close()
        stream = IOStream(socket.socket())
        closed = []
        stream.set_close_callback(lambda: closed.append(True))
        with pytest.raises(StreamClosedError) as info:
            await stream.connect(address)
        assert isinstance(stream.error, ConnectionRefusedError)
        assert isinstance(info.value.real_error, ConnectionRefusedError)
        await gen.sleep(0)
        assert closed == [True]
        assert stream.closed()

    run(io_loop, main)


def test_connect_error_raised_by_connect_call(io_loop):
    async def main():
        stream = IOStream(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        # A Unix socket path that does not exist fails inside connect() itself.
        with pytest.raises(StreamClosedError) as info:
            await stream.connect(os.path.join(tempfile.gettempdir(), "no-such-dir-xyz", "sock"))
        assert isinstance(stream.error, FileNotFoundError)
        assert info.value.real_error is stream.error
        assert stream.closed()

    run(io_loop, main)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_close_callback_runs_once_after_futures_fail(io_loop, kind):
    async def main():
        rs, ws = await make_pair(kind)
        events = []
        rs.set_close_callback(lambda: events.append("callback"))
        fut = rs.read_bytes(10)
        fut.add_done_callback(lambda f: events.append("read failed"))
        ws.close()
        with pytest.raises(StreamClosedError):
            await fut
        await gen.sleep(0.01)
        rs.close()
        rs.close()
        await gen.sleep(0.01)
        assert events == ["read failed", "callback"]
        assert rs.closed()

    run(io_loop, main)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_idle_stream_notices_peer_close(io_loop, kind):
    async def main():
        rs, ws = await make_pair(kind)
        closed: Future = Future()
        rs.set_close_callback(lambda: closed.set_result(True))
        ws.write(b"a")
        assert await rs.read_bytes(1) == b"a"
        ws.close()
        assert await closed
        assert rs.closed()

    run(io_loop, main)


def test_operations_on_closed_stream(io_loop):
    async def main():
        rs, ws = await make_pair("socketpair")
        ws.write(b"buffered")
        assert await rs.read_bytes(2) == b"bu"
        rs.close()
        with pytest.raises(StreamClosedError):
            rs.write(b"x")
        # A read the buffer satisfies still works on a closed stream, others fail at once.
        assert await rs.read_bytes(3) == b"ffe"
        with pytest.raises(StreamClosedError):
            rs.read_bytes(10)
        ws.close()

    run(io_loop, main)


def test_reading_writing_closed_flags_and_fileno(io_loop):
    async def main():
        a, b = socket.socketpair()
        rs, ws = IOStream(a), IOStream(b)
        assert rs.fileno() is a
        assert not rs.reading() and not rs.writing() and not rs.closed()
        r, w = os.pipe()
        ps = PipeIOStream(r)
        assert ps.fileno() == r
        close_all(rs, ws, ps)
        os.close(w)
        assert rs.closed() and ps.closed()

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["tcp4", "tcp6"])
def test_set_nodelay(io_loop, kind):
    async def main():
        rs, ws = await make_pair(kind)
        try:
            ws.set_nodelay(True)
            assert ws.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            ws.set_nodelay(False)
            assert not ws.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            close_all(rs, ws)
        a, b = socket.socketpair()
        us = IOStream(a)
        us.set_nodelay(True)  # not TCP: ignored
        close_all(us, IOStream(b))

    run(io_loop, main)


def test_start_tls_without_tls_support_is_explicit(io_loop):
    async def main():
        rs, ws = await make_pair("socketpair")
        try:
            if type(rs).start_tls.__qualname__ == "IOStream.start_tls" and "SSLIOStream" not in dir(
                sys.modules["tornado_lite.iostream"]
            ):
                with pytest.raises(NotImplementedError):
                    rs.start_tls(False)
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_unsatisfiable_read_logs_and_closes(io_loop, caplog):
    async def main():
        rs, ws = await make_pair("socketpair")
        closed: Future = Future()
        rs.set_close_callback(lambda: closed.set_result(True))
        try:
            ws.write(b"123456")
            with caplog.at_level(logging.INFO, logger="tornado.general"):
                with pytest.raises(StreamClosedError) as info:
                    await rs.read_until(b"def", max_bytes=5)
                await closed
            assert isinstance(info.value.real_error, UnsatisfiableReadError)
            assert isinstance(rs.error, UnsatisfiableReadError)
            assert any("Unsatisfiable read" in r.getMessage() for r in caplog.records)
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_errno_constants_cover_resets():
    from tornado_lite.iostream import _ERRNO_CONNRESET

    assert errno.ECONNRESET in _ERRNO_CONNRESET and errno.EPIPE in _ERRNO_CONNRESET


# --------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------


def _reset(sock: socket.socket) -> None:
    """Closes ``sock`` so that the peer gets a TCP reset (RST) instead of an orderly FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _tcp_stream_and_raw_peer(**kwargs):
    """An IOStream and the raw (non-blocking) socket at the other end of its TCP connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    raw = socket.create_connection(listener.getsockname())
    conn = await _accepting(listener)
    listener.close()
    raw.setblocking(False)
    return IOStream(conn, **kwargs), raw


def test_peer_reset_fails_pending_read_with_real_error(io_loop):
    async def main():
        stream, raw = await _tcp_stream_and_raw_peer()
        closed: Future = Future()
        stream.set_close_callback(lambda: closed.set_result(True))
        fut = stream.read_until(b"\n")
        raw.send(b"partial line")
        await gen.sleep(0.01)
        _reset(raw)
        with pytest.raises(StreamClosedError) as info:
            await fut
        assert isinstance(info.value.real_error, ConnectionResetError)
        assert isinstance(stream.error, ConnectionResetError)
        assert await closed
        assert stream.closed()

    run(io_loop, main)


def test_reset_while_read_until_waits_with_nothing_buffered(io_loop, caplog):
    # The read that sees the reset is the one the poller's report makes for a waiting read_until.
    async def main():
        stream, raw = await _tcp_stream_and_raw_peer()
        closed: Future = Future()
        stream.set_close_callback(lambda: closed.set_result(True))
        fut = stream.read_until(b"\n")
        await gen.sleep(0.01)
        _reset(raw)
        with pytest.raises(StreamClosedError) as info:
            await fut
        assert isinstance(info.value.real_error, ConnectionResetError)
        assert await closed

    with caplog.at_level(logging.INFO):
        run(io_loop, main)
    assert not [r for r in caplog.records if "error on read" in r.getMessage()]  # a reset is an ordinary end


def test_waiting_read_until_sees_lines_in_any_pieces(io_loop):
    # A read_until waiting with nothing buffered, fed by the poller's reports: a line in pieces, a
    # line ending in the next chunk, several lines in one chunk (the rest stays buffered), a line
    # longer than a chunk, and the end of the stream within a line.
    async def main():
        stream, raw = await _tcp_stream_and_raw_peer(read_chunk_size=8)
        closed: Future = Future()
        stream.set_close_callback(lambda: closed.set_result(True))
        fut = stream.read_until(b"\n")
        raw.send(b"ab")
        await gen.sleep(0.01)
        assert not fut.done()
        raw.send(b"c\nde")
        assert await fut == b"abc\n"
        fut = stream.read_until(b"\n")
        assert not fut.done()  # "de" is buffered; the line is not complete
        raw.send(b"f\n")
        assert await fut == b"def\n"
        fut = stream.read_until(b"\n")
        await gen.sleep(0.01)
        raw.send(b"1\n2\n3\n")
        assert await fut == b"1\n"
        assert await stream.read_until(b"\n") == b"2\n"
        assert await stream.read_until(b"\n") == b"3\n"
        fut = stream.read_until(b"\n")
        await gen.sleep(0.01)
        raw.send(b"0123456789abcdef-tail\nnext")  # longer than read_chunk_size: read on until the line ends
        assert await fut == b"0123456789abcdef-tail\n"
        assert await stream.read_until(b"t") == b"next"
        fut = stream.read_until(b"\n")
        await gen.sleep(0.01)
        raw.send(b"unfinished")
        raw.close()
        with pytest.raises(StreamClosedError):
            await fut
        assert await closed

    run(io_loop, main)


def test_waiting_read_bytes_sees_data_in_any_pieces(io_loop):
    # A read_bytes waiting with nothing buffered, fed by the poller's reports: fewer bytes than asked
    # (waits, or finishes when partial), more (the rest stays buffered), more than a chunk, then EOF.
    async def main():
        stream, raw = await _tcp_stream_and_raw_peer(read_chunk_size=8)
        closed: Future = Future()
        stream.set_close_callback(lambda: closed.set_result(True))
        fut = stream.read_bytes(5)
        raw.send(b"abc")
        await gen.sleep(0.01)
        assert not fut.done()
        raw.send(b"defg")
        assert await fut == b"abcde"
        assert await stream.read_bytes(2) == b"fg"
        fut = stream.read_bytes(5, partial=True)
        await gen.sleep(0.01)
        raw.send(b"xy")
        assert await fut == b"xy"
        fut = stream.read_bytes(4, partial=True)
        await gen.sleep(0.01)
        raw.send(b"123456")
        assert await fut == b"1234"
        assert await stream.read_bytes(2) == b"56"
        fut = stream.read_bytes(20)
        await gen.sleep(0.01)
        raw.send(b"0123456789abcdefghijklm")  # more than read_chunk_size: read on until 20 are in
        assert await fut == b"0123456789abcdefghij"
        assert await stream.read_bytes(3) == b"klm"
        fut = stream.read_bytes(4)
        await gen.sleep(0.01)
        raw.send(b"ab")
        raw.close()
        with pytest.raises(StreamClosedError):
            await fut
        assert await closed

    run(io_loop, main)


def test_buffered_data_outlives_a_reset(io_loop):
    async def main():
        stream, raw = await _tcp_stream_and_raw_peer()
        closed: Future = Future()
        stream.set_close_callback(lambda: closed.set_result(True))
        raw.send(b"abcdef")
        assert await stream.read_bytes(1) == b"a"  # the rest is now in the stream's buffer
        _reset(raw)
        await closed
        # Reads the buffer satisfies are still served; the rest fail with the real error.
        assert await stream.read_bytes(3) == b"bcd"
        assert await stream.read_until(b"f") == b"ef"
        with pytest.raises(StreamClosedError) as info:
            await stream.read_bytes(1)
        assert isinstance(info.value.real_error, ConnectionResetError)

    run(io_loop, main)


def test_write_to_reset_peer(io_loop):
    async def main():
        stream, raw = await _tcp_stream_and_raw_peer()
        _reset(raw)
        await gen.sleep(0.01)
        with pytest.raises(StreamClosedError) as info:
            # The first write may still be accepted by the kernel; a reset connection refuses the rest.
            for _ in range(100):
                await stream.write(b"x" * 65536)
        assert isinstance(info.value.real_error, (ConnectionResetError, BrokenPipeError))
        assert stream.closed()

    run(io_loop, main)


def test_pending_write_fails_when_peer_resets(io_loop):
    async def main():
        stream, raw = await _tcp_stream_and_raw_peer()
        wfut = stream.write(os.urandom(1 << 16) * 256)  # 16 MB: stays queued, nobody reads
        assert not wfut.done()
        _reset(raw)
        with pytest.raises(StreamClosedError) as info:
            await wfut
        assert isinstance(info.value.real_error, (ConnectionResetError, BrokenPipeError))
        assert not stream.writing()

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["tcp4", "socketpair"])
def test_half_close_delivers_then_fails(io_loop, kind):
    async def main():
        rs, ws = await make_pair(kind)
        try:
            ws.write(b"abc\nxyz")
            ws.socket.shutdown(socket.SHUT_WR)
            assert await rs.read_until(b"\n") == b"abc\n"
            with pytest.raises(StreamClosedError):
                await rs.read_until(b"\n")
            assert rs.closed() and rs.error is None
            # The unsatisfied read did not consume anything: what is left can still be had.
            assert await rs.read_bytes(3) == b"xyz"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["tcp4", "unix", "pipe"])
def test_read_until_close_after_peer_shutdown(io_loop, kind):
    async def main():
        rs, ws = await make_pair(kind)
        try:
            fut = rs.read_until_close()
            ws.write(b"first ")
            await gen.sleep(0.01)
            ws.write(b"second")
            if kind == "pipe":
                ws.close()
            else:
                ws.socket.shutdown(socket.SHUT_WR)
            assert await fut == b"first second"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["socketpair", "pipe"])
def test_read_until_with_close_after_second_packet(io_loop, kind):
    # A smaller second packet arriving with the close must still satisfy the read (Tornado #2717).
    async def main():
        rs, ws = await make_pair(kind)
        try:
            rf = rs.read_until(b"done")
            await gen.sleep(0.01)
            await ws.write(b"x" * 2048)
            ws.write(b"done")
            ws.close()
            assert await rf == b"x" * 2048 + b"done"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["socketpair", "pipe"])
def test_read_until_unsatisfied_after_close(io_loop, kind):
    # A close with no delimiter in sight is a StreamClosedError, not an UnsatisfiableReadError.
    async def main():
        rs, ws = await make_pair(kind)
        try:
            rf = rs.read_until(b"done")
            await ws.write(b"x" * 2048)
            ws.write(b"foo")
            ws.close()
            with pytest.raises(StreamClosedError):
                await rf
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_inline_read_error_raises_synchronously(io_loop):
    async def main():
        rs, ws = await make_pair("socketpair")
        try:
            os.close(rs.socket.fileno())  # behind the stream's back
            with pytest.raises(OSError):
                rs.read_bytes(1)
            assert rs.closed()
        finally:
            try:
                rs.close()
            except OSError:
                pass
            ws.close()

    run(io_loop, main)


@pytest.mark.parametrize("method", ["read_until", "read_until_regex"])
def test_unsatisfiable_max_bytes_closes_stream(io_loop, caplog, method):
    async def main():
        rs, ws = await make_pair("socketpair")
        closed: Future = Future()
        rs.set_close_callback(lambda: closed.set_result(True))
        try:
            read = getattr(rs, method)
            fut = read(b"def", max_bytes=6)
            ws.write(b"abcdef")
            assert await fut == b"abcdef"  # exactly at the limit: fine
            with caplog.at_level(logging.INFO, logger="tornado.general"):
                fut = read(b"def", max_bytes=5)  # pending when the data arrives
                ws.write(b"123456def")
                with pytest.raises(StreamClosedError) as info:
                    await fut
                await closed
            assert isinstance(info.value.real_error, UnsatisfiableReadError)
            assert isinstance(rs.error, UnsatisfiableReadError)
            assert any("Unsatisfiable read" in r.getMessage() for r in caplog.records)
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_read_over_max_buffer_size_closes_stream(io_loop, caplog):
    async def main():
        rs, ws = await make_pair("socketpair", max_buffer_size=4096)
        try:
            fut = rs.read_until(b"\n")
            with caplog.at_level(logging.WARNING, logger="tornado.general"):
                ws.write(b"z" * 10000)
                with pytest.raises(StreamClosedError) as info:
                    await fut
            assert isinstance(info.value.real_error, StreamBufferFullError)
            assert any("Reached maximum read buffer size" in r.getMessage() for r in caplog.records)
            assert rs.closed()
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_read_until_close_fails_on_error_close(io_loop):
    async def main():
        rs, ws = await make_pair("socketpair")
        try:
            fut = rs.read_until_close()
            ws.write(b"hello")
            await gen.sleep(0.01)
            rs.close(exc_info=OSError("boom"))
            with pytest.raises(StreamClosedError) as info:
                await fut  # truncated data is not passed off as complete
            assert str(info.value.real_error) == "boom"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_close_with_exc_info_forms(io_loop):
    async def main():
        for form in ("exception", "tuple", "true"):
            rs, ws = await make_pair("socketpair")
            error = ValueError(form)
            if form == "exception":
                rs.close(exc_info=error)
            elif form == "tuple":
                rs.close(exc_info=(ValueError, error, None))
            else:
                try:
                    raise error
                except ValueError:
                    rs.close(exc_info=True)
            assert rs.error is error
            ws.close()

    run(io_loop, main)


def test_big_write_costs_no_copy(io_loop):
    # 100 MB queued for a reader that does not read: the stream references the payload, it does not
    # copy it, so its memory cost is a small constant.
    import tracemalloc

    async def main():
        rs, ws = await make_pair("socketpair")
        try:
            payload = b"p" * (100 << 20)
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                wfut = ws.write(payload)
                after = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
            assert not wfut.done()
            assert after - before < 64 * 1024
            (is_view, chunk), = ws._write_buffer._buffers
            assert is_view and chunk.obj is payload
        finally:
            close_all(rs, ws)

    run(io_loop, main)


# --------------------------------------------------------------------------------------------------
# Any split of a byte stream gives the same results (hypothesis)
# --------------------------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("until"), st.sampled_from([b"\n", b"\r\n", b"ab"])),
        st.tuples(st.just("regex"), st.sampled_from([rb"\r?\n", rb"b+a", rb"[0-9]{2}"])),
        st.tuples(st.just("bytes"), st.integers(0, 40)),
        st.tuples(st.just("partial"), st.integers(1, 40)),
        st.tuples(st.just("into"), st.integers(0, 40)),
        st.tuples(st.just("into_partial"), st.integers(1, 40)),
    ),
    max_size=12,
)
_PAYLOAD = st.lists(st.sampled_from([b"a", b"b", b"\r", b"\n", b"1", b"2", b"xyz", b"ab\r\n"]), max_size=60).map(
    b"".join
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=_PAYLOAD,
    cuts=st.lists(st.integers(1, 17), min_size=1, max_size=20),
    pauses=st.lists(st.sampled_from(["none", "moment", "sleep"]), min_size=1, max_size=20),
    ops=_OPS,
    kind=st.sampled_from(["socketpair", "pipe", "tcp4"]),
)
def test_any_split_gives_same_results(payload, cuts, pauses, ops, kind):
    loop = IOLoop(make_current=True)
    try:
        loop.run_sync(lambda: _split_scenario(payload, cuts, pauses, ops, kind), timeout=TIMEOUT)
    finally:
        loop.close(all_fds=True)
        IOLoop.clear_current()


async def _split_scenario(payload, cuts, pauses, ops, kind):
    rs, ws = await make_pair(kind)

    async def writer():
        pos = i = 0
        while pos < len(payload):
            n = cuts[i % len(cuts)]
            await ws.write(payload[pos : pos + n])
            pos += n
            pause = pauses[i % len(pauses)]
            if pause == "moment":
                await gen.moment
            elif pause == "sleep":
                await gen.sleep(0.001)
            i += 1
        ws.close()

    writing = gen.convert_yielded(writer())
    rest = payload
    try:
        for op, arg in ops:
            if op == "until":
                loc = rest.find(arg)
                if loc < 0:
                    with pytest.raises(StreamClosedError):
                        await rs.read_until(arg)
                    break
                assert await rs.read_until(arg) == rest[: loc + len(arg)]
                rest = rest[loc + len(arg) :]
            elif op == "regex":
                m = re.search(arg, rest)
                if m is None:
                    with pytest.raises(StreamClosedError):
                        await rs.read_until_regex(arg)
                    break
                got = await rs.read_until_regex(arg)
                # A regex may match differently on a prefix (b+ stops early): it ends at some match.
                assert rest.startswith(got) and re.search(arg, got)
                rest = rest[len(got) :]
            elif op in ("bytes", "into"):
                if arg > len(rest):
                    with pytest.raises(StreamClosedError):
                        if op == "bytes":
                            await rs.read_bytes(arg)
                        else:
                            await rs.read_into(bytearray(arg))
                    break
                if op == "bytes":
                    assert await rs.read_bytes(arg) == rest[:arg]
                else:
                    buf = bytearray(arg)
                    assert await rs.read_into(buf) == arg
                    assert buf == rest[:arg]
                rest = rest[arg:]
            else:
                if not rest:
                    with pytest.raises(StreamClosedError):
                        await rs.read_bytes(arg, partial=True)
                    break
                if op == "partial":
                    got = await rs.read_bytes(arg, partial=True)
                else:
                    buf = bytearray(arg)
                    n = await rs.read_into(buf, partial=True)
                    got = bytes(buf[:n])
                assert 0 < len(got) <= arg and rest.startswith(got)
                rest = rest[len(got) :]
        else:
            assert await rs.read_until_close() == rest
        await writing
    finally:
        close_all(rs, ws)


@pytest.mark.parametrize("kind", ["tcp4", "socketpair"])
def test_unread_data_never_overflows_a_small_buffer(io_loop, kind):
    # Data keeps arriving while earlier data sits unread in a nearly full buffer: the stream stops
    # taking more (flow control) instead of failing with StreamBufferFullError.
    async def main():
        rs, ws = await make_pair(kind, max_buffer_size=16 * 1024, read_chunk_size=8 * 1024)
        try:
            ws.write(b"a" * 12 * 1024 + b"\n" + b"b" * 200 * 1024 + b"\n")
            # The first line leaves about 8 KB of the next one buffered while nobody reads.
            assert await rs.read_bytes(12 * 1024 + 1) == b"a" * 12 * 1024 + b"\n"
            for _ in range(5):
                await gen.sleep(0.01)
            assert not rs.closed()
            got = b""
            while len(got) < 200 * 1024 + 1:
                got += await rs.read_bytes(4096, partial=True)
            assert got == b"b" * 200 * 1024 + b"\n"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


# -- replies to pipelined requests share one send (tornado_lite; see docs/differences.md) ------------


class CountingIOStream(IOStream):
    """Counts the sends: write_to_fd is the documented hook a subclass provides."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sends = 0

    def write_to_fd(self, data):
        self.sends += 1
        return super().write_to_fd(data)


def _socketpair_streams():
    a, b = socket.socketpair()
    return CountingIOStream(a), b


async def _echo_lines(stream, count):
    for _ in range(count):
        line = await stream.read_until(b"\n")
        await stream.write(line)


def _recv_exactly(sock, size):
    sock.settimeout(TIMEOUT)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "peer closed early"
        data += chunk
    return data


def test_pipelined_replies_share_sends_and_arrive_in_order(io_loop):
    async def main():
        stream, peer = _socketpair_streams()
        lines = [b"request %d\n" % i for i in range(16)]
        peer.sendall(b"".join(lines))
        await _echo_lines(stream, 16)
        received = _recv_exactly(peer, sum(map(len, lines)))
        assert received == b"".join(lines)
        # All 16 lines arrived in one read: their replies went out together, not one send each.
        assert stream.sends < 4
        stream.close()
        peer.close()

    run(io_loop, main)


def test_a_lone_request_is_answered_by_its_own_send(io_loop):
    async def main():
        stream, peer = _socketpair_streams()
        for i in range(3):
            peer.sendall(b"ping %d\n" % i)
            await _echo_lines(stream, 1)
            assert _recv_exactly(peer, 7) == b"ping %d\n" % i
        assert stream.sends == 3
        stream.close()
        peer.close()

    run(io_loop, main)


def test_corked_reply_is_sent_before_the_loop_polls(io_loop):
    async def main():
        stream, peer = _socketpair_streams()
        peer.sendall(b"first\nsecond\n")
        line = await stream.read_until(b"\n")
        future = stream.write(line)
        assert future.done()  # reported done: the request behind it is still unread
        # The application now waits on something else and writes nothing more: the reply must still
        # go out on this pass, not when the next request is answered.
        await gen.sleep(0.01)
        assert _recv_exactly(peer, 6) == b"first\n"
        stream.close()
        peer.close()

    run(io_loop, main)


def test_corked_reply_is_sent_when_the_stream_closes_at_once(io_loop):
    async def main():
        stream, peer = _socketpair_streams()
        peer.sendall(b"bye\nignored\n")
        line = await stream.read_until(b"\n")
        await stream.write(line)
        stream.close()
        assert _recv_exactly(peer, 4) == b"bye\n"
        assert peer.recv(10) == b""  # then the close
        peer.close()

    run(io_loop, main)


def test_corked_bytearray_reply_is_copied(io_loop):
    async def main():
        stream, peer = _socketpair_streams()
        peer.sendall(b"one\ntwo\n")
        line = await stream.read_until(b"\n")
        reply = bytearray(line)
        future = stream.write(reply)
        assert future.done()  # corked: reported written at once, so the caller may reuse its buffer
        reply[:] = b"XXXX"
        await stream.write(await stream.read_until(b"\n"))
        assert _recv_exactly(peer, 8) == b"one\ntwo\n"
        stream.close()
        peer.close()

    run(io_loop, main)


def test_empty_write_after_corked_replies_keeps_order(io_loop):
    async def main():
        stream, peer = _socketpair_streams()
        peer.sendall(b"a\nb\nc\n")
        await stream.write(await stream.read_until(b"\n"))
        await stream.write(b"")
        await stream.write(await stream.read_until(b"\n"))
        await stream.write(bytearray())
        await _echo_lines(stream, 1)
        assert _recv_exactly(peer, 6) == b"a\nb\nc\n"
        stream.close()
        peer.close()

    run(io_loop, main)


def test_start_tls_after_a_corked_reply_sends_it_in_the_clear_first(io_loop):
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_ctx)

    async def main():
        a, b = socket.socketpair()
        server, client = IOStream(a), IOStream(b)
        # The client sends a command and STARTTLS in one go; the server's reply to the first is
        # corked (STARTTLS is still unread), and it must go out before the handshake starts.
        await client.write(b"NOOP\r\nSTARTTLS\r\n")
        assert await server.read_until(b"\r\n") == b"NOOP\r\n"
        assert server.write(b"250 ok\r\n").done()
        assert await server.read_until(b"\r\n") == b"STARTTLS\r\n"
        server_future = server.start_tls(True, server_ctx)  # not refused: nothing unsent is left
        assert await client.read_until(b"\r\n") == b"250 ok\r\n"
        client = await client.start_tls(False, client_ctx, server_hostname="localhost")
        server = await server_future
        await client.write(b"secret\n")
        assert await server.read_until(b"\n") == b"secret\n"
        client.close()
        server.close()

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["tcp4", "socketpair", "pipe"])
@pytest.mark.parametrize("readers_first", [False, True])
def test_streams_with_data_waiting_are_read_in_turns(io_loop, kind, readers_first):
    # Two streams with plenty waiting in the kernel: a coroutine reading one of them must not take
    # it all before the other gets a turn (each stream reads from the kernel once per loop pass).
    # readers_first: each reader's first read waits for the loop before any data comes, and the
    # turns must hold just the same once that parked read has ended.
    chunk = 4096

    async def main():
        pairs = [await make_pair(kind, read_chunk_size=chunk) for _ in range(2)]
        try:
            order = []

            async def drain(index, rs):
                for _ in range(16):
                    assert len(await rs.read_bytes(chunk)) == chunk
                    order.append(index)

            async def write_all():
                for _, ws in pairs:
                    await ws.write(b"x" * (16 * chunk))  # resolved once all of it is in the kernel

            if readers_first:
                drains = [gen.convert_yielded(drain(i, pairs[i][0])) for i in range(2)]
                await gen.sleep(0.01)  # both reads parked, waiting for the loop
                assert order == []
                await write_all()
                await gen.multi(drains)
            else:
                await write_all()
                await gen.multi([drain(0, pairs[0][0]), drain(1, pairs[1][0])])
            switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
            assert switches >= 8, order
        finally:
            close_all(*(s for pair in pairs for s in pair))

    run(io_loop, main)


# --------------------------------------------------------------------------------------------------
# Bulk transfers: reads that grow while the kernel fills them, and corked replies sent together
# --------------------------------------------------------------------------------------------------

BULK = bytes(range(256)) * 4096  # 1 MiB that no misplaced slice could reproduce


async def _bulk_echo_round_trip(server, client, serve, payload, late_reader=False):
    """Writes ``payload`` from ``client``, which ``serve(server)`` echoes; returns what came back."""
    received = []

    async def read_back():
        if late_reader:
            await gen.sleep(0.05)  # the echo fills the kernel first: the server's sends come up short
        got = 0
        while got < len(payload):
            chunk = await client.read_bytes(len(payload) - got, partial=True)
            received.append(chunk)
            got += len(chunk)

    await gen.multi([client.write(payload), read_back(), serve(server)])
    return b"".join(received)


@pytest.mark.parametrize("kind", ["tcp4", "socketpair", "unix"])
@pytest.mark.parametrize("late_reader", [False, True])
def test_bulk_echo_of_partial_reads_arrives_whole_and_in_order(io_loop, kind, late_reader):
    # No partial read returns more than it asked for, and the echoed chunks (corked while more
    # input waits, then sent together, also when the kernel takes only part) come back complete
    # and in order.
    async def serve(stream):
        got = 0
        while got < len(BULK):
            data = await stream.read_bytes(65536, partial=True)
            assert 0 < len(data) <= 65536
            got += len(data)
            await stream.write(data)

    async def main():
        server, client = await make_pair(kind)
        try:
            assert await _bulk_echo_round_trip(server, client, serve, BULK, late_reader) == BULK
        finally:
            close_all(server, client)

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["tcp4", "socketpair"])
@pytest.mark.parametrize("late_reader", [False, True])
def test_bulk_echo_of_large_lines_arrives_whole_and_in_order(io_loop, kind, late_reader):
    # 64 KiB lines streamed back to back: most reads from the kernel hold several lines and end in
    # the middle of one; every read_until still returns exactly one line.
    lines = [bytes([65 + i % 26]) * 65535 + b"\n" for i in range(16)]
    payload = b"".join(lines)

    async def serve(stream):
        for line in lines:
            data = await stream.read_until(b"\n")
            assert data == line
            await stream.write(data)

    async def main():
        server, client = await make_pair(kind)
        try:
            assert await _bulk_echo_round_trip(server, client, serve, payload, late_reader) == payload
        finally:
            close_all(server, client)

    run(io_loop, main)


def test_bulk_transfer_into_a_small_buffer_limit(io_loop):
    # A transfer 64 times max_buffer_size, read a chunk at a time while the kernel keeps every read
    # full: the stream never buffers past its limit (which would close it).
    async def main():
        reader, writer = await make_pair("tcp4", max_buffer_size=4 * 4096, read_chunk_size=4096)
        try:
            payload = BULK[: 256 * 1024]
            writing = writer.write(payload)
            got = []
            while sum(map(len, got)) < len(payload):
                got.append(await reader.read_bytes(4096))
            await writing
            assert b"".join(got) == payload
            assert not reader.closed()
        finally:
            close_all(reader, writer)

    run(io_loop, main)


def test_read_bytes_served_from_the_buffer_is_a_done_future(io_loop):
    # After one kernel read of several messages, the reads it satisfies finish before read_bytes
    # returns, with exactly the bytes asked for (partial or not); later reads still wait for data.
    async def main():
        reader, writer = await make_pair("socketpair")
        try:
            await writer.write(b"a" * 100 + b"b" * 100)
            first = await reader.read_bytes(10)
            assert first == b"a" * 10
            rest_of_a = reader.read_bytes(90)
            assert rest_of_a.done() and rest_of_a.result() == b"a" * 90
            partial = reader.read_bytes(1000, partial=True)
            assert partial.done() and partial.result() == b"b" * 100
            pending = reader.read_bytes(5)
            assert not pending.done()
            await writer.write(b"12345")
            assert await pending == b"12345"
        finally:
            close_all(reader, writer)

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["tcp4", "socketpair", "pipe"])
def test_read_until_line_begun_in_buffer_and_ended_in_next_read(io_loop, kind):
    # The line's start waits in the buffer, its end arrives with more data behind it: the read gets
    # exactly the line, the rest is kept in order; the same with a two-byte delimiter split between
    # the reads, and a max_bytes the joined line exceeds still closes the stream.
    async def main():
        reader, writer = await make_pair(kind)
        try:
            pending = reader.read_until(b"\n")
            await writer.write(b"abc")
            await gen.sleep(0.01)
            assert not pending.done()
            await writer.write(b"def\nghi\njk")
            assert await pending == b"abcdef\n"
            assert await reader.read_until(b"\n") == b"ghi\n"
            split = reader.read_until(b"\r\n")
            await writer.write(b"\r")
            await gen.sleep(0.01)
            await writer.write(b"\nrest")
            assert await split == b"jk\r\n"
            assert await reader.read_bytes(4) == b"rest"
            limited = reader.read_until(b"\n", max_bytes=5)
            await writer.write(b"1234")
            await gen.sleep(0.01)
            await writer.write(b"5\n")
            with pytest.raises(StreamClosedError):
                await limited
            assert isinstance(reader.error, UnsatisfiableReadError)
        finally:
            close_all(reader, writer)

    run(io_loop, main)


# -- construction and close order (issue 15, connection rate) --------------------------------------


def test_iostream_init_runs_a_cooperative_base_between_it_and_basestream(io_loop):
    # IOStream's __init__ takes a shortcut for IOStream itself; a subclass whose MRO puts another
    # class between IOStream and BaseIOStream must still have that class's __init__ run, with the
    # arguments IOStream did not take (Tornado passes them on with super()).
    seen = []

    class Recording(BaseIOStream):
        def __init__(self, *args, **kwargs):
            seen.append((args, kwargs))
            super().__init__(*args, **kwargs)

    class MixedStream(IOStream, Recording):
        pass

    a, b = socket.socketpair()
    try:
        first = MixedStream(a)
        second = MixedStream(b, max_buffer_size=1000)
        assert seen == [((), {}), ((), {"max_buffer_size": 1000})]
        assert first.max_buffer_size == 100 * 1024 * 1024 and first.read_chunk_size == 64 * 1024
        assert second.max_buffer_size == 1000 and second.read_chunk_size == 500
    finally:
        a.close()
        b.close()


def test_iostream_defaults_match_explicit_none_and_socket_is_nonblocking(io_loop):
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        plain = IOStream(pairs[0][0])
        explicit = IOStream(pairs[1][0], max_buffer_size=None, read_chunk_size=None)
        positional = IOStream(pairs[2][0], None, None, None)
        for stream in (plain, explicit, positional):
            assert stream.max_buffer_size == 100 * 1024 * 1024
            assert stream.read_chunk_size == 64 * 1024
            assert stream.max_write_buffer_size is None
            assert stream.socket.gettimeout() == 0.0  # made non-blocking
            assert stream.io_loop is io_loop
            assert not stream.closed() and not stream.reading() and not stream.writing()
        # Zero means "the default", as in Tornado; a chunk is at most half the buffer.
        small = IOStream(pairs[0][1], max_buffer_size=0, read_chunk_size=0)
        assert small.max_buffer_size == 100 * 1024 * 1024 and small.read_chunk_size == 64 * 1024
        capped = IOStream(pairs[1][1], max_buffer_size=4096, read_chunk_size=1 << 20)
        assert capped.read_chunk_size == 2048
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_close_fails_read_then_writes_then_runs_close_callback(io_loop):
    # The order in which a close reports: the pending read, the pending writes oldest first (each
    # with StreamClosedError whose real_error is the close's cause), then the close callback.
    async def main():
        a, b = socket.socketpair()
        stream = IOStream(a)
        events = []
        stream.set_close_callback(lambda: events.append("callback"))
        read = stream.read_bytes(10)
        big = b"x" * (8 * 1024 * 1024)  # more than the socket buffers hold: the writes stay pending
        first = stream.write(big)
        second = stream.write(b"tail")
        assert not first.done() and not second.done()
        read.add_done_callback(lambda f: events.append("read"))
        first.add_done_callback(lambda f: events.append("write 1"))
        second.add_done_callback(lambda f: events.append("write 2"))
        cause = ConnectionResetError(errno.ECONNRESET, "reset for the test")
        stream.close(exc_info=cause)
        for future in (read, first, second):
            with pytest.raises(StreamClosedError) as info:
                await future
            assert info.value.real_error is cause
        await gen.sleep(0.01)
        assert events == ["read", "write 1", "write 2", "callback"]
        assert stream.error is cause
        b.close()

    run(io_loop, main)


def test_close_with_only_a_read_pending_fails_it_and_clears_the_read(io_loop):
    async def main():
        a, b = socket.socketpair()
        stream = IOStream(a)
        read = stream.read_until(b"\n", max_bytes=100)
        assert stream.reading()
        b.close()  # the peer's EOF closes the stream
        with pytest.raises(StreamClosedError) as info:
            await read
        assert info.value.real_error is None and stream.error is None
        assert stream.closed() and not stream.reading()
        with pytest.raises(StreamClosedError):
            await stream.read_until(b"\n")  # a new read after the close fails at once

    run(io_loop, main)


def _nodelay(stream) -> int:
    return stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.parametrize("kind", ["tcp4", "tcp6"])
def test_bulk_sends_turn_nagle_off_until_a_small_send(io_loop, kind):
    # A send of 64 KiB or more turns TCP_NODELAY on (its partial last segment is not held for an
    # ACK); the next small send turns it back off, so small writes are coalesced as before.  The
    # bytes arrive intact and in order either way.
    async def main():
        rs, ws = await make_pair(kind)
        try:
            big = bytes(range(256)) * 512  # 128 KiB
            assert not _nodelay(ws)
            await ws.write(big)
            assert _nodelay(ws)
            await ws.write(big[:65536])
            assert _nodelay(ws)
            await ws.write(b"tail\n")
            assert not _nodelay(ws)
            got = await rs.read_until(b"tail\n")
            assert got == big + big[:65536] + b"tail\n"
            ws.set_nodelay(False)
            await ws.write(big)
            assert _nodelay(ws)  # back to the default: bulk sends may turn it on again
        finally:
            close_all(rs, ws)

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["tcp4", "tcp6"])
def test_application_nodelay_is_kept_through_bulk_and_small_sends(io_loop, kind):
    async def main():
        rs, ws = await make_pair(kind)
        try:
            ws.set_nodelay(True)
            await ws.write(b"x" * 200000)
            await ws.write(b"y\n")
            assert _nodelay(ws)
            assert len(await rs.read_until(b"y\n")) == 200002
            # Turned on by a bulk send, then chosen by the application: the small send leaves it on.
            ws.set_nodelay(False)
            await ws.write(b"x" * 200000)
            ws.set_nodelay(True)
            await ws.write(b"y\n")
            assert _nodelay(ws)
            assert len(await rs.read_until(b"y\n")) == 200002
        finally:
            close_all(rs, ws)

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["unix", "socketpair"])
def test_bulk_sends_on_non_tcp_sockets(io_loop, kind):
    # No TCP options there: large and small sends just work.
    async def main():
        rs, ws = await make_pair(kind)
        try:
            big = b"z" * 300000
            ws.write(big)
            ws.write(b"!\n")
            assert await rs.read_until(b"!\n") == big + b"!\n"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


@pytest.mark.parametrize("kind", ["tcp4"])
def test_bulk_write_larger_than_the_kernel_takes_then_small_writes(io_loop, kind):
    # A large write the kernel takes only part of (the reader is not reading) is sent in pieces later,
    # with a small write queued behind it: all arrives in order, and once a small write goes out on
    # its own, Nagle is on again.
    async def main():
        rs, ws = await make_pair(kind)
        try:
            big = bytes(range(251)) * 33000  # ~8 MB: more than loopback's socket buffers hold
            written = ws.write(big)
            assert not written.done() and _nodelay(ws)
            queued = ws.write(b"queued\n")
            got = await rs.read_until(b"queued\n")
            await written
            await queued
            assert got == big + b"queued\n"
            await ws.write(b"small\n")
            assert not _nodelay(ws)
            assert await rs.read_until(b"small\n") == b"small\n"
        finally:
            close_all(rs, ws)

    run(io_loop, main)


def test_bulk_nagle_switch_with_many_streams_and_closes(io_loop):
    # Several streams in bulk at once, one closed while Nagle is off, others back to small sends: each
    # keeps its own state, and small sends on a stream that never sent in bulk leave it alone.
    async def main():
        pairs = [await make_pair("tcp4") for _ in range(3)]
        try:
            big = b"q" * 70000
            for _, ws in pairs:
                await ws.write(big)
                assert _nodelay(ws)
            pairs[0][1].close()
            await pairs[1][1].write(b"1\n")
            assert not _nodelay(pairs[1][1]) and _nodelay(pairs[2][1])
            rs, ws = await make_pair("tcp4")
            pairs.append((rs, ws))
            await ws.write(b"small\n")
            assert not _nodelay(ws)
            await pairs[2][1].write(b"2\n")
            assert not _nodelay(pairs[2][1])
            assert await pairs[1][0].read_until(b"1\n") == big + b"1\n"
            assert await pairs[2][0].read_until(b"2\n") == big + b"2\n"
            assert await rs.read_until(b"\n") == b"small\n"
        finally:
            close_all(*[s for pair in pairs for s in pair])

    run(io_loop, main)


def test_closed_error_of_a_pending_read_is_like_a_constructed_one(io_loop):
    # The error a pending read fails with when the peer resets looks exactly like
    # StreamClosedError(real_error=...): message, args, repr, real_error, and the cause chained.
    async def main():
        stream, raw = await _tcp_stream_and_raw_peer()
        fut = stream.read_until(b"\n")
        await gen.sleep(0.01)
        _reset(raw)
        with pytest.raises(StreamClosedError) as info:
            await fut
        error = info.value
        cause = error.real_error
        assert isinstance(cause, ConnectionResetError)
        made = StreamClosedError(real_error=cause)
        assert type(error) is StreamClosedError
        assert error.args == made.args == ("Stream is closed",)
        assert str(error) == str(made) == "Stream is closed"
        assert repr(error) == repr(made)
        assert error.__cause__ is cause and made.__cause__ is cause
        assert error.__suppress_context__ and made.__suppress_context__
        assert error.errno is None and error.strerror is None
        assert StreamClosedError().real_error is None and StreamClosedError().__cause__ is None

    run(io_loop, main)


def test_read_from_fd_replaced_on_one_stream_is_used_for_its_reads_only(io_loop):
    # Replacing read_from_fd on one stream (as Tornado's own tests do) routes that stream's reads
    # through the replacement; another stream of the class, and the class itself, are untouched;
    # deleting the replacement gives the stream its own method back.
    async def main():
        stream, raw = await _tcp_stream_and_raw_peer()
        other, other_raw = await _tcp_stream_and_raw_peer()
        assert IOStream.read_from_fd(stream, bytearray(1)) is None  # the class gives the plain function
        assert stream.read_from_fd.__func__ is IOStream.read_from_fd
        calls = []
        real = stream.read_from_fd

        def counting(buf):
            calls.append(len(buf))
            return real(buf)

        stream.read_from_fd = counting
        assert stream.read_from_fd is counting
        raw.send(b"one\n")
        other_raw.send(b"two\n")
        assert await stream.read_until(b"\n") == b"one\n"
        assert await other.read_until(b"\n") == b"two\n"
        assert calls and other.read_from_fd.__func__ is IOStream.read_from_fd
        # A read already waiting when the data comes (the poller's report finishes it) reads through it too.
        waiting = stream.read_until(b"\n")
        await gen.sleep(0.01)
        seen = len(calls)
        raw.send(b"waited\n")
        assert await waiting == b"waited\n"
        assert len(calls) > seen
        seen = len(calls)
        del stream.read_from_fd
        assert stream.read_from_fd.__func__ is IOStream.read_from_fd
        with pytest.raises(AttributeError):
            del stream.read_from_fd  # nothing replaced any more
        raw.send(b"three\n")
        assert await stream.read_until(b"\n") == b"three\n"
        waiting = stream.read_until(b"\n")
        await gen.sleep(0.01)
        raw.send(b"four\n")
        assert await waiting == b"four\n"
        assert len(calls) == seen
        for s in (stream, other):
            s.close()
        raw.close()
        other_raw.close()

    run(io_loop, main)


def test_read_from_fd_of_a_subclass_is_used(io_loop):
    # A subclass that provides only read_from_fd (not the stream's faster read path) is read through it.
    class Upper(IOStream):
        def read_from_fd(self, buf):
            count = super().read_from_fd(buf)
            if count:
                buf[:count] = bytes(buf[:count]).upper()
            return count

    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        raw = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        listener.close()
        stream = Upper(conn)
        raw.send(b"shout\n")
        assert await stream.read_until(b"\n") == b"SHOUT\n"
        stream.close()
        raw.close()

    run(io_loop, main)


def test_next_read_until_after_a_short_read_waits_or_reads_as_data_comes(io_loop):
    # A request-response exchange: after a read that emptied the kernel, the next read_until is
    # issued at once (it waits for the loop), later in the same task with the data already there
    # (it reads it), or before the data comes (it waits, then gets it).
    async def main():
        stream, raw = await _tcp_stream_and_raw_peer()
        raw.send(b"first\n")
        assert await stream.read_until(b"\n") == b"first\n"
        pending = stream.read_until(b"\n")  # same pass: the kernel was found empty just now
        await gen.sleep(0.01)
        assert not pending.done()
        raw.send(b"second\n")
        assert await pending == b"second\n"
        raw.send(b"third\n")
        await gen.sleep(0.01)  # a later pass: the line is in the kernel already
        assert await stream.read_until(b"\n") == b"third\n"
        later = stream.read_until(b"\n")
        io_loop.call_later(0.01, raw.send, b"fourth\n")
        assert await later == b"fourth\n"
        stream.close()
        raw.close()

    run(io_loop, main)
