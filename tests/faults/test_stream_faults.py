"""Reliability of IOStream against misbehaving peers, over real TCP sockets on 127.0.0.1 and ::1.

Each test builds a connected pair (``tcp_pair``): the side under test is wrapped in an IOStream on a
fresh loop, the peer is a plain socket the test drives by hand (reset, half-close, flood, stall).
"No busy loop" is judged by the loop's pass counter (``IOLoop.stats().passes``), never by timing;
every wait is bounded.
"""

import errno
import logging
import os
import socket

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


# ---------------------------------------------------------------------------------------------
# 6. Slow reader: the writer's buffer stays within max_write_buffer_size.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", FAMILIES)
@pytest.mark.parametrize("ending", ["local-close", "peer-reset", "reader-drains"])
def test_slow_reader_bounds_write_buffer(io_loop, host, ending):
    limit = 256 * 1024
    piece = b"w" * (32 * 1024)
    server, client = tcp_pair(host, rcvbuf=8192, sndbuf=8192)
    stream = IOStream(server, max_write_buffer_size=limit)
    seen = Counter()
    stream.set_close_callback(seen.on_close)

    async def main():
        futures = []
        for i in range(10000):
            try:
                futures.append(seen.watch(i, stream.write(piece)))
            except StreamBufferFullError:
                break  # raised by write() itself, not left for a future to report
            assert len(stream._write_buffer or b"") <= limit
        else:
            raise AssertionError("the write buffer never filled up")
        queued = len(stream._write_buffer)
        assert limit - len(piece) < queued <= limit
        assert not stream.closed(), "a full write buffer is the caller's problem, not a reason to close"
        pending = [f for f in futures if not f.done()]
        assert pending
        sent_total = len(piece) * len(futures)
        if ending == "local-close":
            stream.close()
        elif ending == "peer-reset":
            reset_close(client)
        else:

            def drain():
                got = 0
                while got < sent_total:
                    data = client.recv(1 << 20)
                    assert data, "EOF before all the data"
                    got += len(data)
                return got

            assert await io_loop.run_in_executor(None, drain) == sent_total
        await wait_until(lambda: all(f.done() for f in futures), what="every write future resolved")
        await settle()
        if ending == "reader-drains":
            assert all(f.exception() is None for f in futures)
            assert not stream.closed()
            await stream.write(b"more")  # room again
            stream.close()
        else:
            for future in pending:
                closed_error(future)

    run(io_loop, main)
    assert all(count == 1 for count in seen.done.values()), seen.done
    assert seen.closes == 1
    client.close()


# ---------------------------------------------------------------------------------------------
# 7. Flooding peer: reads stop at their target, TCP backpressure holds, the buffer stays bounded.
# ---------------------------------------------------------------------------------------------

PATTERN = bytes(range(256)) * 1024  # the flood is the byte sequence i % 256, so loss or reordering shows


def expected_flood(start, size):
    offset = start % 256
    return (PATTERN[offset:] + PATTERN)[:size] if size <= len(PATTERN) - 256 else None


class Flooder:
    """Sends the i % 256 sequence on a non-blocking socket whenever the loop says it is writable."""

    def __init__(self, loop, sock):
        self.loop = loop
        self.sock = sock
        self.sent = 0
        sock.setblocking(False)
        loop.add_handler(sock, self.on_writable, loop.WRITE)

    def on_writable(self, fd, events):
        try:
            while self.sent < 256 * 1024 * 1024:
                offset = self.sent % 256
                self.sent += self.sock.send(PATTERN[offset : offset + 65536])
        except BlockingIOError:
            pass

    def stop(self):
        self.loop.remove_handler(self.sock)

    async def wait_stalled(self, rounds=5):
        """Waits until the kernel has stopped taking data (no progress over several short waits)."""
        still = 0
        last = -1
        for _ in range(2000):
            if self.sent == last:
                still += 1
                if still >= rounds:
                    return
            else:
                still = 0
                last = self.sent
            await gen.sleep(0.01)
        raise AssertionError("the flood never stalled: no backpressure")


async def passes_during(loop, seconds):
    """The loop passes made while waiting ``seconds`` with nothing to do."""
    before = loop.stats().passes
    await gen.sleep(seconds)
    return loop.stats().passes - before


@pytest.mark.parametrize("host", FAMILIES)
@pytest.mark.parametrize("mode", ["after-read-bytes", "after-read-until", "idle-with-close-callback"])
def test_flooding_peer_is_held_back(io_loop, host, mode):
    chunk = 16 * 1024
    target = 100_000
    server, client = tcp_pair(host)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    kernel_room = server.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) + client.getsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF
    )
    stream = IOStream(server, read_chunk_size=chunk)
    stream.set_close_callback(lambda: None)

    async def main():
        flood = Flooder(io_loop, client)
        taken = 0
        if mode == "after-read-bytes":
            data = await stream.read_bytes(target)
            assert data == expected_flood(0, target)
            taken = target
        elif mode == "after-read-until":
            # Byte 255 of the pattern works as a delimiter: one line is 256 bytes.
            data = await stream.read_until(b"\xff")
            assert data == PATTERN[:256]
            taken = 256
        await flood.wait_stalled()
        # Nobody reads now: the stream holds what the read left over (less than a chunk) plus at
        # most the one chunk an unasked-for READ takes (how a close is noticed) ...
        assert len(stream._read_buffer) <= 2 * chunk
        # ... the rest waits in the kernel, which stopped the sender ...
        assert flood.sent <= taken + 2 * chunk + kernel_room, (flood.sent, kernel_room)
        with pytest.raises(BlockingIOError):
            client.send(b"\0")
        # ... and nothing spins meanwhile (a level-triggered READ nobody serves would).
        assert await passes_during(io_loop, 0.3) < 30
        # Reading again releases the backpressure, and not a byte was lost or reordered.
        flood.stop()
        rest = flood.sent - taken
        got = await stream.read_bytes(rest)
        assert len(got) == rest
        offset = taken % 256
        assert got == (PATTERN[offset:] * (rest // len(PATTERN) + 2))[:rest]
        assert not stream._read_buffer
        stream.close()

    run(io_loop, main)
    client.close()


# ---------------------------------------------------------------------------------------------
# 8. Close races: every future resolves once; the loop forgets the fd before it is closed.
# ---------------------------------------------------------------------------------------------


class CheckedStream(IOStream):
    """Records, when its socket is about to be closed, whether the loop still watches its fd."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fd_closes = []

    def close_fd(self):
        fd = self.socket.fileno()
        try:
            # The loop refuses a second handler for an fd it still watches.
            self.io_loop.add_handler(fd, lambda fd, events: None, self.io_loop.READ)
        except ValueError:
            self.fd_closes.append("still watched")
        else:
            self.io_loop.remove_handler(fd)
            self.fd_closes.append("forgotten")
        super().close_fd()


class CallbackErrors(logging.Handler):
    """Collects records logged with a traceback (an exception that escaped a callback)."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        if record.exc_info or record.levelno >= logging.WARNING:
            self.records.append(record)

    def __enter__(self):
        for name in ("tornado.application", "tornado.general"):
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc):
        for name in ("tornado.application", "tornado.general"):
            logging.getLogger(name).removeHandler(self)


@pytest.mark.parametrize("host", FAMILIES)
def test_close_from_read_callback_with_write_pending(io_loop, host):
    server, client = tcp_pair(host, rcvbuf=8192, sndbuf=8192)
    stream = CheckedStream(server)
    seen = Counter()
    stream.set_close_callback(seen.on_close)

    async def main():
        writes = [seen.watch(f"write{i}", f) for i, f in enumerate(stall_writes(stream))]
        read = seen.watch("read", stream.read_until(b"\n"))
        read.add_done_callback(lambda f: stream.close())
        client.sendall(b"bye\n")
        await wait_until(lambda: seen.closes, what="close callback")
        await settle()
        assert read.result() == b"bye\n"
        assert any(f.exception() is not None for f in writes)
        for future in writes:
            if future.exception() is not None:
                assert closed_error(future).real_error is None

    with CallbackErrors() as errors:
        run(io_loop, main)
    assert not errors.records
    assert all(count == 1 for count in seen.done.values()), seen.done
    assert seen.closes == 1
    assert stream.fd_closes == ["forgotten"]
    client.close()


@pytest.mark.parametrize("host", FAMILIES)
def test_close_from_another_coroutine_while_write_pending(io_loop, host):
    server, client = tcp_pair(host, rcvbuf=8192, sndbuf=8192)
    stream = CheckedStream(server)
    seen = Counter()
    stream.set_close_callback(seen.on_close)
    outcomes = []

    async def writer():
        try:
            await seen.watch("big", stream.write(b"z" * (4 * 1024 * 1024)))
        except StreamClosedError as e:
            outcomes.append(("closed", e.real_error))
        else:
            outcomes.append(("written", None))

    async def closer():
        await wait_until(stream.writing, what="write pending")
        await settle()
        stream.close()

    async def main():
        await gen.multi([writer(), closer()])
        await settle()

    with CallbackErrors() as errors:
        run(io_loop, main)
    assert not errors.records
    assert outcomes == [("closed", None)]
    assert seen.done == {"big": 1}
    assert seen.closes == 1
    assert stream.fd_closes == ["forgotten"]
    client.close()


@pytest.mark.parametrize("host", FAMILIES)
@pytest.mark.parametrize("how", ["from-close-callback", "twice", "twice-with-errors"])
def test_close_reentrant_and_repeated(io_loop, host, how):
    server, client = tcp_pair(host)
    stream = CheckedStream(server)
    seen = Counter()

    def close_again():
        seen.on_close()
        stream.close()
        stream.close(exc_info=ValueError("late"))

    stream.set_close_callback(close_again if how == "from-close-callback" else seen.on_close)

    async def main():
        read = seen.watch("read", stream.read_bytes(10))
        await settle()
        if how == "twice-with-errors":
            first = OSError(errno.EIO, "first")
            stream.close(exc_info=first)
            stream.close(exc_info=ValueError("second"))
            assert stream.error is first
        else:
            stream.close()
            if how == "twice":
                stream.close()
        await wait_until(lambda: seen.closes, what="close callback")
        await settle(10)
        error = closed_error(read)
        assert error.real_error is stream.error
        with pytest.raises(StreamClosedError):
            stream.write(b"x")

    with CallbackErrors() as errors:
        run(io_loop, main)
    assert not errors.records
    assert seen.done == {"read": 1}
    assert seen.closes == 1
    assert stream.fd_closes == ["forgotten"]
    client.close()


@pytest.mark.parametrize("host", FAMILIES)
def test_close_by_another_handler_in_the_same_pass(io_loop, host):
    """Another fd's handler closes the stream while the stream's own event waits in the same batch."""
    server, client = tcp_pair(host)
    other_server, other_client = tcp_pair(host)
    stream = CheckedStream(server)
    seen = Counter()
    stream.set_close_callback(seen.on_close)
    other_server.setblocking(False)

    def close_stream(fd, events):
        other_server.recv(100)
        io_loop.remove_handler(other_server)
        stream.close()

    async def main():
        read = seen.watch("read", stream.read_until(b"\n"))
        await settle()
        io_loop.add_handler(other_server, close_stream, io_loop.READ)
        # Both become readable before the loop polls again: one poll reports both.
        client.sendall(b"data\n")
        other_client.sendall(b"x")
        await wait_until(lambda: seen.closes, what="close callback")
        await settle()
        # Whichever handler ran first, the read resolved exactly once (data or close).
        assert read.done()

    with CallbackErrors() as errors:
        run(io_loop, main)
    assert not errors.records, [r.getMessage() for r in errors.records]
    assert seen.done == {"read": 1}
    assert seen.closes == 1
    assert stream.fd_closes == ["forgotten"]
    for sock in (client, other_server, other_client):
        sock.close()


# ---------------------------------------------------------------------------------------------
# 9. An fd closed behind the loop's back, its number reused by a new socket.
# ---------------------------------------------------------------------------------------------


def move_to(sock, number):
    """``sock`` moved onto descriptor ``number`` (which must be free): the reuse of a closed fd's number."""
    if sock.fileno() == number:
        return sock
    os.dup2(sock.fileno(), number)
    moved = socket.socket(sock.family, sock.type, sock.proto, fileno=number)
    sock.close()
    return moved


@pytest.mark.parametrize("host", FAMILIES)
def test_raw_fd_closed_behind_the_loops_back(io_loop, host):
    baseline = fd_count()
    old, old_peer = tcp_pair(host)
    old.setblocking(False)
    old_events = []
    new_events = []

    def on_old(fd, events):
        old_events.append(events)
        if old.fileno() >= 0:
            old.recv(100)

    async def main():
        io_loop.add_handler(old, on_old, io_loop.READ)
        old_peer.sendall(b"1")
        await wait_until(lambda: old_events, what="first event")
        number = old.fileno()
        new, new_peer = tcp_pair(host)
        old.close()  # behind the loop's back: no remove_handler
        old_peer.sendall(b"2")
        called = len(old_events)
        # Nothing to report for a closed fd, and certainly no spinning on it.
        assert await passes_during(io_loop, 0.3) < 30
        assert len(old_events) == called
        new = move_to(new, number)
        new.setblocking(False)

        def on_new(fd, events):
            new_events.append(new.recv(100))

        # The number's stale entry is replaced, not refused.
        io_loop.add_handler(new, on_new, io_loop.READ)
        new_peer.sendall(b"for the new socket")
        await wait_until(lambda: new_events, what="event for the new socket")
        assert new_events == [b"for the new socket"]
        assert len(old_events) == called
        io_loop.remove_handler(new)
        for sock in (new, new_peer, old_peer):
            sock.close()

    run(io_loop, main)
    assert fd_count() == baseline


@pytest.mark.parametrize("host", FAMILIES)
@pytest.mark.parametrize("register_new", [True, False], ids=["new-stream", "new-raw-socket"])
def test_stream_socket_closed_behind_its_back(io_loop, host, register_new):
    baseline = fd_count()
    handlers_before = io_loop.stats().handlers
    old_sock, old_peer = tcp_pair(host)
    old = IOStream(old_sock)
    old.set_close_callback(lambda: None)

    async def main():
        old_peer.sendall(b"first\n")
        assert await old.read_until(b"\n") == b"first\n"
        pending = old.read_until(b"\n")
        number = old_sock.fileno()
        new_sock, new_peer = tcp_pair(host)
        old_sock.close()  # behind the stream's (and the loop's) back
        assert await passes_during(io_loop, 0.3) < 30
        new_sock = move_to(new_sock, number)
        old_peer.sendall(b"lost\n")
        new_peer.sendall(b"for the new socket\n")
        if register_new:
            new = IOStream(new_sock)
            assert await new.read_until(b"\n") == b"for the new socket\n"
            await new.write(b"reply\n")
            assert new_peer.recv(100) == b"reply\n"
        else:
            await gen.sleep(0.05)
            new_sock.setblocking(False)
            # The old stream took nothing from the socket that now has its number.
            assert new_sock.recv(100) == b"for the new socket\n"
        assert await passes_during(io_loop, 0.3) < 30
        # The old stream never read the new socket's data: its read, if over, failed.
        if pending.done():
            closed_error(pending)
        old.close()
        if register_new:
            # Closing the old stream must not unhook the new one that took its number.
            new_peer.sendall(b"still there\n")
            assert await new.read_until(b"\n") == b"still there\n"
            new.close()
        else:
            new_sock.close()
        for sock in (new_peer, old_peer):
            sock.close()
        # The loop let go of the old stream too, though its socket no longer knew its number.
        assert io_loop.stats().handlers == handlers_before

    with ExpectLog("tornado.general", ".*", required=False):
        run(io_loop, main)
    assert fd_count() == baseline
