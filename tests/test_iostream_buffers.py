"""The stream buffers on their own, with no socket and no loop: _ReadBuffer and _StreamBuffer.

Each is checked against a plain ``bytes`` model, by hand and with hypothesis, including the
promises the streams rely on: a chunk read whole comes back as the very same object, a delimiter
split across chunks is found, and large outgoing payloads are referenced, not copied, and let go of
(their views released) as soon as they have been sent or cleared.
"""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tornado_lite.iostream import _ReadBuffer, _StreamBuffer

# -- _ReadBuffer ------------------------------------------------------------------------------------


def test_read_buffer_adopts_chunk_and_returns_it_whole():
    buf = _ReadBuffer()
    assert len(buf) == 0 and not buf
    chunk = b"hello\n"
    buf.append(chunk)
    assert len(buf) == 6 and buf
    assert buf.consume(6) is chunk
    assert len(buf) == 0


def test_read_buffer_partial_consumes_and_appends():
    buf = _ReadBuffer()
    buf.append(b"abcdef")
    assert buf.consume(2) == b"ab"
    buf.append(b"ghi")  # the unread part moves to a bytearray once
    assert len(buf) == 7
    assert buf.consume(3) == b"cde"
    buf.append(bytearray(b"jk"))
    assert buf.consume(100) == b"fghijk"
    assert buf.consume(0) == b""
    assert not buf


def test_read_buffer_find_is_relative_and_resumable():
    buf = _ReadBuffer()
    buf.append(b"xxab")
    buf.consume(2)
    assert buf.find(b"ab") == 0
    assert buf.find(b"b", 1) == 1
    assert buf.find(b"zz") == -1
    buf.append(b"\r")
    buf.append(b"\n")
    # Resuming len(delimiter) - 1 bytes before the previous end finds a split delimiter.
    assert buf.find(b"\r\n", 3 - 1) == 2


def test_read_buffer_search_anchors_at_read_position():
    buf = _ReadBuffer()
    buf.append(b"abc\nxyz\n")
    buf.consume(4)
    assert buf.search(re.compile(rb"^xyz")) == 3
    assert buf.search(re.compile(rb"^abc")) == -1
    assert buf.search(re.compile(rb"\n")) == 4


def test_read_buffer_copy_to_and_clear():
    buf = _ReadBuffer()
    buf.append(b"0123456789")
    target = bytearray(4)
    buf.copy_to(target, 4)
    assert target == b"0123"
    assert buf.consume(3) == b"456"
    view_target = memoryview(bytearray(3))
    buf.copy_to(view_target, 3)
    assert bytes(view_target) == b"789"
    buf.append(b"more")
    buf.clear()
    assert len(buf) == 0 and buf.consume(5) == b""


def test_read_buffer_memory_follows_unread_data():
    buf = _ReadBuffer()
    buf.append(b"a")
    buf.append(bytearray(b"b" * 100_000))  # now one bytearray of 100,001 bytes
    for _ in range(99):
        buf.consume(1000)
    # More than half consumed: the consumed prefix has been dropped, not kept alive.
    assert len(buf._data) < 60_000
    assert buf.consume(10_000) == b"b" * 1001


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.binary(max_size=40), st.booleans()),
            st.tuples(st.just("consume"), st.integers(0, 50)),
            st.tuples(st.just("find"), st.sampled_from([b"\n", b"\r\n", b"ab", b"xyz"]), st.integers(0, 10)),
        ),
        max_size=60,
    )
)
def test_read_buffer_matches_bytes_model(ops):
    buf = _ReadBuffer()
    model = b""
    for op in ops:
        if op[0] == "append":
            data = bytearray(op[1]) if op[2] else op[1]
            buf.append(data)
            model += op[1]
        elif op[0] == "consume":
            n = min(op[1], len(model))
            assert buf.consume(n) == model[:n]
            model = model[n:]
        else:
            _, delim, start = op
            assert buf.find(delim, start) == model.find(delim, start)
        assert len(buf) == len(model)
        assert bool(buf) == bool(model)


# -- _StreamBuffer (the write queue) ----------------------------------------------------------------


def make_stream_buffer(threshold: int = 10) -> _StreamBuffer:
    buf = _StreamBuffer()
    buf._large_buf_threshold = threshold
    return buf


def drain(buf: _StreamBuffer, step: int = 7) -> bytes:
    out = b""
    while len(buf):
        with buf.peek(step) as view:
            piece = view.tobytes()
        assert 0 < len(piece) <= step
        buf.advance(len(piece))
        out += piece
    return out


def test_stream_buffer_small_writes_coalesce():
    buf = make_stream_buffer(10)
    for _ in range(9):
        buf.append(b"x")
    assert len(buf._buffers) == 1
    for _ in range(9):
        buf.append(b"x")
    assert len(buf._buffers) == 2  # the first chunk reached the threshold, a new one started
    buf.advance(10)
    assert len(buf._buffers) == 1
    buf.advance(8)
    assert len(buf._buffers) == 0 and len(buf) == 0


def test_stream_buffer_large_writes_are_views():
    buf = make_stream_buffer(10)
    payloads = [bytes([65 + i]) * 11 for i in range(3)]
    for p in payloads:
        buf.append(p)
    assert len(buf._buffers) == 3
    assert all(is_view for is_view, _ in buf._buffers)
    buf.append(b"y")
    buf.append(b"z")
    assert len(buf._buffers) == 4
    assert drain(buf, 5) == b"".join(payloads) + b"yz"
    assert len(buf._buffers) == 0


def test_stream_buffer_releases_views_of_callers_bytearrays():
    buf = make_stream_buffer(10)
    a = bytearray(b"a" * 20)
    b = bytearray(b"b" * 20)
    buf.append(a)
    buf.append(b)
    with pytest.raises(BufferError):
        a += b"!"  # still referenced by the queue
    buf.advance(15)
    with pytest.raises(BufferError):
        a += b"!"
    buf.advance(10)
    a += b"!"  # sent: released
    del a[-1:]
    buf.append(b"small")
    buf.clear()
    b += b"!"  # cleared: released
    assert len(buf) == 0
    with buf.peek(10) as view:
        assert len(view) == 0
    buf.append(b"abc")
    assert drain(buf) == b"abc"


def test_stream_buffer_peek_does_not_pin_coalesced_chunk():
    buf = make_stream_buffer(100)
    buf.append(b"abc")
    with buf.peek(2) as view:
        assert view.tobytes() == b"ab"
    buf.append(b"def")  # the shared bytearray must be resizable again once the view is released
    assert drain(buf) == b"abcdef"


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 64),
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.binary(max_size=150), st.sampled_from(["bytes", "bytearray", "view"])),
            st.tuples(st.just("advance"), st.integers(1, 200)),
            st.tuples(st.just("peek"), st.integers(1, 300)),
        ),
        max_size=80,
    ),
)
def test_stream_buffer_matches_bytes_model(threshold, ops):
    buf = make_stream_buffer(threshold)
    model = b""
    callers = []
    for op in ops:
        if op[0] == "append":
            data = op[1]
            obj = {"bytes": bytes, "bytearray": bytearray, "view": memoryview}[op[2]](data)
            if isinstance(obj, bytearray):
                callers.append(obj)
            buf.append(obj)
            model += data
        elif op[0] == "advance":
            if model:
                n = min(op[1], len(model))
                buf.advance(n)
                model = model[n:]
        elif model:
            with buf.peek(op[1]) as view:
                got = view.tobytes()
            assert got and model.startswith(got) and len(got) <= op[1]
        assert len(buf) == len(model)
    assert drain(buf) == model
    for obj in callers:
        obj += b"!"  # nothing may still hold a view of a caller's bytearray
