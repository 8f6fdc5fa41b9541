"""Reliability of IOStream against misbehaving peers, over real TCP sockets on 127.0.0.1 and ::1.

Each test builds a connected pair (``tcp_pair``): the side under test is wrapped in an IOStream on a
fresh loop, the peer is a plain socket the test drives by hand (reset, half-close, flood, stall).
"No busy loop" is judged by the loop's pass counter (``IOLoop.stats().passes``), never by timing;
every wait is bounded.
"""

import errno
import logging
import os

import pytest
from conftest import FAMILIES, fd_count, reset_close, tcp_pair, wait_until

from tornado_lite import gen
from tornado_lite.iostream import (
    IOStream,
    StreamBufferFullError,
    StreamClosedError,
    UnsatisfiableReadError,
)
from tornado_lite.testing import ExpectLog

TIMEOUT = 20
RESET_ERRNOS = (errno.ECONNRESET, errno.EPIPE)


def run(loop, func, timeout=TIMEOUT):
    return loop.run_sync(func, timeout=timeout)


class Counter:
    """Counts how often a future resolves (done callbacks) and how often a close callback runs."""

    def __init__(self):
        self.done = {}
        self.closes = 0

    def watch(self, name, future):
        self.done.setdefault(name, 0)

        def on_done(_):
            self.done[name] += 1

        future.add_done_callback(on_done)
        return future

    def on_close(self):
        self.closes += 1


def closed_error(future):
    """The StreamClosedError a done future failed with (asserts that it did)."""
    assert future.done()
    error = future.exception()
    assert isinstance(error, StreamClosedError), repr(error)
    return error


async def settle(passes=5):
    """A few loop passes, so that anything wrongly scheduled twice would have run."""
    for _ in range(passes):
        await gen.sleep(0)


def stall_writes(stream, chunk=256 * 1024, limit=64):
    """Writes until the kernel refuses more and data stays queued in the stream; returns the futures."""
    futures = []
    for _ in range(limit):
        futures.append(stream.write(b"x" * chunk))
        if stream.writing():
            return futures
    raise AssertionError("the peer's buffers never filled up")


# ---------------------------------------------------------------------------------------------
# 1. Peer resets (RST) while the stream reads, writes, or sits idle.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", FAMILIES)
@pytest.mark.parametrize("partial_data", [False, True], ids=["nothing-sent", "partial-line-sent"])
def test_reset_while_reading(io_loop, host, partial_data):
    baseline = fd_count()
    server, client = tcp_pair(host)
    stream = IOStream(server)
    seen = Counter()
    stream.set_close_callback(seen.on_close)

    async def main():
        read = seen.watch("read", stream.read_until(b"\n"))
        if partial_data:
            client.sendall(b"no newline yet")
            await wait_until(lambda: len(stream._read_buffer) or stream.closed(), what="data buffered")
        assert not read.done()
        reset_close(client)
        await wait_until(lambda: read.done() and seen.closes, what="read failed and close callback ran")
        await settle()
        error = closed_error(read)
        assert isinstance(error.real_error, ConnectionResetError), repr(error.real_error)
        assert stream.error is error.real_error

    run(io_loop, main)
    assert seen.done == {"read": 1}
    assert seen.closes == 1
    assert stream.closed() and stream.socket is None
    assert fd_count() == baseline


@pytest.mark.parametrize("host", FAMILIES)
@pytest.mark.parametrize("also_reading", [False, True], ids=["write-only", "write-and-read"])
def test_reset_while_writing(io_loop, host, also_reading):
    baseline = fd_count()
    server, client = tcp_pair(host, rcvbuf=8192, sndbuf=8192)
    stream = IOStream(server)
    seen = Counter()
    stream.set_close_callback(seen.on_close)

    async def main():
        writes = [seen.watch(f"write{i}", f) for i, f in enumerate(stall_writes(stream))]
        read = seen.watch("read", stream.read_bytes(10)) if also_reading else None
        await settle()
        assert stream.writing() and not writes[-1].done()
        reset_close(client)  # unread data in the client's buffer: a RST, whatever the linger
        await wait_until(lambda: stream.closed() and seen.closes, what="stream closed")
        await settle()
        for future in writes:
            if future.exception() is not None:
                error = closed_error(future)
                assert isinstance(error.real_error, OSError)
                assert error.real_error.errno in RESET_ERRNOS, error.real_error
        assert writes[-1].exception() is not None, "the stalled write cannot have succeeded"
        if read is not None:
            error = closed_error(read)
            assert error.real_error.errno in RESET_ERRNOS

    run(io_loop, main)
    assert all(count == 1 for count in seen.done.values()), seen.done
    assert seen.closes == 1
    assert stream.socket is None
    assert fd_count() == baseline


@pytest.mark.parametrize("host", FAMILIES)
def test_reset_while_idle(io_loop, host):
    baseline = fd_count()
    server, client = tcp_pair(host)
    stream = IOStream(server)
    seen = Counter()
    stream.set_close_callback(seen.on_close)

    async def main():
        # A round trip first, so the stream has been through a read and a write.
        client.sendall(b"ping\n")
        assert await stream.read_until(b"\n") == b"ping\n"
        await stream.write(b"pong\n")
        assert client.recv(100) == b"pong\n"
        await settle()
        reset_close(client)
        await wait_until(lambda: seen.closes, what="close callback")
        await settle()
        assert isinstance(stream.error, ConnectionResetError), repr(stream.error)
        with pytest.raises(StreamClosedError):
            stream.write(b"late")
        with pytest.raises(StreamClosedError) as info:
            await stream.read_bytes(1)
        assert info.value.real_error is stream.error

    run(io_loop, main)
    assert seen.closes == 1
    assert stream.socket is None
    assert fd_count() == baseline


# ---------------------------------------------------------------------------------------------
# 2. Peer sends data, then closes: everything it sent reaches the reads it satisfies.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", FAMILIES)
@pytest.mark.parametrize("read_early", [False, True], ids=["reads-after-close", "read-pending-at-close"])
def test_data_then_close_delivered_before_error(io_loop, host, read_early):
    server, client = tcp_pair(host)
    stream = IOStream(server)
    seen = Counter()
    stream.set_close_callback(seen.on_close)

    async def main():
        first = stream.read_until(b"\n") if read_early else None
        await settle()
        client.sendall(b"line1\nline2\ntail")
        client.close()
        if first is None:
            # The idle stream (it has a close callback) takes one chunk and then leaves the rest,
            # EOF included, in the kernel until a read wants it (flow control).
            await wait_until(lambda: len(stream._read_buffer) == 16, what="data taken by the idle stream")
            await gen.sleep(0.02)
            first = stream.read_until(b"\n")
        assert await first == b"line1\n"
        assert await stream.read_until(b"\n") == b"line2\n"
        with pytest.raises(StreamClosedError) as info:
            await stream.read_until(b"\n")  # "tail" has no newline: it cannot satisfy this read
        assert info.value.real_error is None  # a clean EOF
        # ... but it still satisfies a read that it can.
        assert await stream.read_bytes(4) == b"tail"
        with pytest.raises(StreamClosedError):
            await stream.read_bytes(1)
        await settle()

    run(io_loop, main)
    assert seen.closes == 1


@pytest.mark.parametrize("host", FAMILIES)
def test_large_transfer_then_close_fully_delivered(io_loop, host):
    server, client = tcp_pair(host)
    stream = IOStream(server)
    payload = os.urandom(3 * 1024 * 1024 + 17)

    async def main():
        first = stream.read_bytes(1000)
        sender = io_loop.run_in_executor(None, lambda: (client.sendall(payload), client.close()))
        chunks = [await first]
        while True:
            try:
                chunks.append(await stream.read_bytes(123457, partial=True))
            except StreamClosedError as e:
                assert e.real_error is None
                break
        await sender
        assert b"".join(chunks) == payload

    run(io_loop, main)


@pytest.mark.parametrize("host", FAMILIES)
def test_data_then_close_read_until_close(io_loop, host):
    server, client = tcp_pair(host)
    stream = IOStream(server)
    payload = b"".join(b"%06d\n" % i for i in range(20000))

    async def main():
        pending = stream.read_until_close()
        sender = io_loop.run_in_executor(None, lambda: (client.sendall(payload), client.close()))
        assert await pending == payload
        await sender

    run(io_loop, main)


@pytest.mark.parametrize("host", FAMILIES)
def test_buffered_lines_survive_a_reset(io_loop, host):
    """Data the stream already took from the kernel is still handed out after the peer's RST."""
    server, client = tcp_pair(host)
    stream = IOStream(server)

    async def main():
        client.sendall(b"a\nb\nc\n")
        assert await stream.read_until(b"\n") == b"a\n"  # one recv took all three lines
        reset_close(client)
        await settle()
        assert await stream.read_until(b"\n") == b"b\n"
        assert await stream.read_until(b"\n") == b"c\n"
        with pytest.raises(StreamClosedError) as info:
            await stream.read_until(b"\n")
        assert isinstance(info.value.real_error, ConnectionResetError), repr(info.value.real_error)

    run(io_loop, main)


# ---------------------------------------------------------------------------------------------
# 3. read_until / read_until_regex with max_bytes; the buffer bounded by max_buffer_size.
# ---------------------------------------------------------------------------------------------

READS = {
    "until": lambda stream, max_bytes: stream.read_until(b"\r\n", max_bytes=max_bytes),
    "regex": lambda stream, max_bytes: stream.read_until_regex(rb"\r\n", max_bytes=max_bytes),
}


def expect_unsatisfiable(stream, future):
    error = closed_error(future)
    assert isinstance(error.real_error, UnsatisfiableReadError), repr(error.real_error)
    assert stream.closed()


@pytest.mark.parametrize("kind", sorted(READS))
@pytest.mark.parametrize("host", FAMILIES)
@pytest.mark.parametrize(
    "pieces, ok",
    [
        ([b"01234567\r\n"], True),  # delimiter ends exactly at max_bytes
        ([b"0123456\r\n"], True),  # within
        ([b"012345678\r\n"], False),  # one byte over
        ([b"0123456789AB"], False),  # no delimiter, over the limit
        ([b"01234567\r", b"\n"], True),  # delimiter split across chunks, ends at the limit
        ([b"012345678\r", b"\n"], False),  # split, and ends one past the limit
        ([b"0123", b"4567", b"\r", b"\nrest"], True),  # many small chunks
    ],
    ids=["exact", "within", "over-by-one", "no-delimiter", "split-exact", "split-over", "many-chunks"],
)
def test_read_until_max_bytes(io_loop, kind, host, pieces, ok):
    max_bytes = 10
    server, client = tcp_pair(host)
    stream = IOStream(server)
    seen = Counter()
    stream.set_close_callback(seen.on_close)

    async def main():
        future = seen.watch("read", READS[kind](stream, max_bytes))
        for piece in pieces:
            before = len(stream._read_buffer)
            client.sendall(piece)
            # One chunk at a time: wait until the stream has taken it (or finished, or closed).
            await wait_until(
                lambda before=before: future.done() or len(stream._read_buffer) > before,
                what="chunk taken by the stream",
            )
        if ok:
            result = await future
            assert result == b"".join(pieces)[: result.index(b"\r\n") + 2]
            assert len(result) <= max_bytes
            assert not stream.closed()
        else:
            await wait_until(future.done, what="read failed")
            expect_unsatisfiable(stream, future)
            await wait_until(lambda: seen.closes, what="close callback")
            # Nothing past the limit was held: at most the chunks the peer sent.
            assert len(stream._read_buffer) <= sum(len(p) for p in pieces)
        await settle()

    with ExpectLog("tornado.general", "Unsatisfiable read", required=not ok, level=logging.INFO):
        run(io_loop, main)
    assert seen.done == {"read": 1}
    assert seen.closes == (0 if ok else 1)
    client.close()
    stream.close()


@pytest.mark.parametrize("kind", sorted(READS))
def test_read_until_max_bytes_already_buffered(io_loop, kind):
    """The buffered data already exceeds max_bytes when the read starts: it fails at once, closing."""
    server, client = tcp_pair()
    stream = IOStream(server)

    async def main():
        client.sendall(b"first\r\n" + b"z" * 100)
        assert await stream.read_until(b"\r\n") == b"first\r\n"
        await wait_until(lambda: len(stream._read_buffer) == 100, what="rest buffered")
        future = READS[kind](stream, 50)
        assert future.done()
        expect_unsatisfiable(stream, future)

    with ExpectLog("tornado.general", "Unsatisfiable read", level=logging.INFO):
        run(io_loop, main)
    client.close()


@pytest.mark.parametrize("kind", ["until", "regex", "until-max-bytes"])
@pytest.mark.parametrize("host", FAMILIES)
def test_flood_without_delimiter_bounded(io_loop, kind, host):
    """A peer streaming bytes with no delimiter cannot grow the buffer past its bound."""
    max_buffer = 256 * 1024
    chunk = 16 * 1024
    server, client = tcp_pair(host)
    client.setblocking(False)
    stream = IOStream(server, max_buffer_size=max_buffer, read_chunk_size=chunk)
    if kind == "until":
        future = stream.read_until(b"\n")
        bound = max_buffer + chunk
    elif kind == "regex":
        future = stream.read_until_regex(rb"\n")
        bound = max_buffer + chunk
    else:
        future = stream.read_until(b"\n", max_bytes=20000)
        bound = 20000 + chunk
    block = b"y" * 65536
    sent = [0]

    def flood(fd, events):
        try:
            while sent[0] < 64 * 1024 * 1024:
                sent[0] += client.send(block)
        except BlockingIOError:
            pass
        except OSError:
            io_loop.remove_handler(client)  # the stream closed on us: done

    async def main():
        io_loop.add_handler(client, flood, io_loop.WRITE)
        await wait_until(future.done, what="read gave up")
        io_loop.remove_handler(client)
        error = closed_error(future)
        if kind == "until-max-bytes":
            assert isinstance(error.real_error, UnsatisfiableReadError), repr(error.real_error)
        else:
            assert isinstance(error.real_error, StreamBufferFullError), repr(error.real_error)
        assert len(stream._read_buffer) <= bound

    if kind == "until-max-bytes":
        with ExpectLog("tornado.general", "Unsatisfiable read", level=logging.INFO):
            run(io_loop, main)
    else:
        with ExpectLog("tornado.general", "Reached maximum read buffer size"):
            run(io_loop, main)
    assert stream.closed()
    client.close()
