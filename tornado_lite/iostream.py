"""Buffered, non-blocking streams over sockets and pipes: Tornado 6's ``iostream`` API.

A stream owns one file descriptor.  Reads (``read_until``, ``read_until_regex``, ``read_bytes``,
``read_into``, ``read_until_close``) and writes (``write``) return futures; at most one read is
pending at a time, while writes queue up behind each other.

How the work is split:

* ``_ReadBuffer`` and ``_StreamBuffer`` are plain byte containers with no knowledge of sockets or the
  loop, tested on their own.  Incoming data lands in one buffer consumed by position; a delimiter
  search resumes where the previous one stopped, so neither reading nor searching is quadratic.
  Outgoing data is queued without copying large payloads.
* ``BaseIOStream`` is the state machine: which read is pending, what the loop is watching, how a
  close fails what is still outstanding.  It touches the OS only through four small methods that a
  subclass provides (``fileno``, ``close_fd``, ``read_from_fd``, ``write_to_fd``) plus
  ``get_fd_error`` and ``_handle_connect``.  ``IOStream`` supplies them for sockets and
  ``PipeIOStream`` for pipe file descriptors; a TLS stream is another such subclass.

The hot path stays plain: a read or write that can finish from what is already at hand finishes
before the method returns (its future is already resolved), the loop is asked to change what it
watches only when that really changes (each change is a system call), and no closure is made per
operation.

This layer never resolves host names, never accepts connections and never starts the loop; it sits
on ``ioloop`` and knows nothing of servers or clients.  It gives the layers above one hook, not
Tornado API: a stream's ``_tracker`` (None, or an object whose ``stream_closed(stream)`` the close
calls once) and the two byte counters it keeps, ``_bytes_read`` and ``_bytes_written`` (read-only for
others), which ``tcpserver`` uses for its per-connection accounting and idle sweep.
"""

import _socket
import collections
import errno
import numbers
import os
import re
import socket
import ssl
import sys
from types import TracebackType
from typing import Any, Callable, Deque, Dict, Optional, Pattern, Tuple, Type, TypeVar, Union

from tornado_lite.concurrent import (
    CancelledError,
    Future,
    _fail_looked_at,
    _new_object,
    _resolve_read,
    _ResolvedFuture,
    _WrittenFuture,
    future_set_result_unless_cancelled,
)
from tornado_lite.ioloop import IOLoop
from tornado_lite.log import gen_log
from tornado_lite.netutil import _client_ssl_defaults, _server_ssl_defaults, ssl_options_to_context, ssl_wrap_socket
from tornado_lite.util import errno_from_exception

# ``socket.socket.family`` is a property that makes an ``AddressFamily`` enum on every read (~0.45 µs);
# the C socket's own field is the plain int.  Tornado's HTTP layer calls set_nodelay twice per request.
_socket_family = _socket.socket.__dict__["family"].__get__
_TCP_FAMILIES = frozenset((int(socket.AF_INET), int(socket.AF_INET6)))

_IOStreamType = TypeVar("_IOStreamType", bound="IOStream")

_READ = IOLoop.READ
_WRITE = IOLoop.WRITE
_ERROR = IOLoop.ERROR

# Errors meaning "the peer went away": a normal end of a connection, closed quietly (never logged).
_ERRNO_CONNRESET: Tuple[int, ...] = (errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT)
if sys.platform == "darwin":
    # macOS may fail a send on a socket being torn down with EPROTOTYPE; it means the same thing.
    _ERRNO_CONNRESET += (errno.EPROTOTYPE,)

_DEFAULT_MAX_BUFFER_SIZE = 100 * 1024 * 1024
_DEFAULT_READ_CHUNK_SIZE = 64 * 1024
_DEFAULT_CAPPED_CHUNK_SIZE = min(_DEFAULT_READ_CHUNK_SIZE, _DEFAULT_MAX_BUFFER_SIZE // 2)
# The most a stream holds back ("corks") to send the replies to pipelined requests together.
_CORK_LIMIT = 64 * 1024
# Corked data goes out in one ``sendmsg`` of its pieces, rather than joined into one ``bytes`` first,
# when the pieces are few and large (a bulk echo's 64 KiB chunks): the join would copy every byte
# once more.  Many small pieces (pipelined replies) are cheaper joined.
_GATHER_MIN = 16 * 1024
_GATHER_PIECES = 8
# A send at least this large is a bulk transfer: its last, partial segment goes out at once rather than
# wait for the peer's ACK (Nagle), see ``IOStream._bulk_nodelay``.
_BULK_SEND = 64 * 1024
# How many streams have TCP_NODELAY on by their own doing (``IOStream._auto_nodelay``), and the size
# from which a send must look at its stream's flag: _BULK_SEND while none has, so that a small send
# (every reply of a request/response protocol) pays one comparison, not the slow read of a class-level
# default; 0 otherwise.
_auto_nodelay_streams = 0
_nodelay_check_from = _BULK_SEND

# The kinds of pending read (``BaseIOStream._read_kind``).
_NO_READ = 0
_READ_BYTES = 1
_READ_DELIMITER = 2
_READ_REGEX = 3
_READ_INTO = 4
_READ_UNTIL_CLOSE = 5


class StreamClosedError(IOError):
    """Raised by a stream's methods (or set on its futures) once the stream is closed.

    ``real_error`` is the error that closed it, if any (for example the ``ConnectionResetError``
    from the peer).  The close callback runs after the pending futures have failed, so this error
    can be seen before the callback runs.
    """

    real_error: Optional[BaseException]

    def __init__(self, real_error: Optional[BaseException] = None) -> None:
        _describe_closed(self, real_error)


_CLOSED_ARGS = ("Stream is closed",)


def _describe_closed(exc: StreamClosedError, real_error: Optional[BaseException]) -> None:
    """Fills in a StreamClosedError: its message, ``real_error``, and that error as the cause."""
    # What OSError.__init__ does with one argument (no errno, no strerror): the args, set directly.
    exc.args = _CLOSED_ARGS
    exc.real_error = real_error
    # Chained as the cause, so a traceback shows why the stream closed (e.g. "Connection refused").
    exc.__cause__ = real_error


def _closed_error(real_error: Optional[BaseException]) -> StreamClosedError:
    """``StreamClosedError(real_error=real_error)``, made without the type call's trip through
    ``__init__``: one is made per closed connection (about half the cost: ~5k instructions)."""
    exc = OSError.__new__(StreamClosedError)
    _describe_closed(exc, real_error)
    return exc


class UnsatisfiableReadError(Exception):
    """A ``read_until`` or ``read_until_regex`` cannot succeed within its ``max_bytes``."""


class StreamBufferFullError(Exception):
    """A read or write buffer went over its configured maximum size."""


def _fail_closed(future: Future, error: Optional[BaseException]) -> None:
    """Fails a stream's pending ``future`` (if not done) with StreamClosedError, and marks it looked at.

    A closed stream is not an unhandled error: nothing is logged if nobody retrieves the failure.
    """
    if type(future) is Future and not future.done():
        # The usual case, one per closed connection (the read that saw the EOF): failed without the
        # never-retrieved logger that set_exception would make only for us to look at it at once.
        _fail_looked_at(future, _closed_error(error))
        return
    if not future.done():
        future.set_exception(_closed_error(error))
    try:
        future.exception()  # looked at: a closed stream is not an unhandled error
    except CancelledError:
        pass


def _mark_retrieved(future: Future) -> None:
    """Done-callback that looks at a future's exception so that its failure is not logged as lost."""
    if not future.cancelled():
        future.exception()


# --------------------------------------------------------------------------------------------------
# Buffers: plain objects, no sockets, no loop.
# --------------------------------------------------------------------------------------------------


class _ReadBuffer:
    """Bytes received but not yet handed to a read, consumed from the front.

    The data is held in one object plus a read position.  A chunk that arrives while the buffer is
    empty is adopted as it is (``bytes`` from ``recv``, or a bytearray the caller gives up), so a read
    satisfied by exactly that chunk returns the very same object with no copy.  Appending to
    immutable ``bytes`` moves the unread part into a bytearray once; after that, data is appended in
    place.  The consumed prefix of a bytearray is dropped once it is more than half of it, so the
    cost of all drops stays linear in the bytes received.

    Invariant (the stream's hot paths test ``_data`` for truth on the strength of it): once all of
    ``_data`` is consumed it is replaced by ``b""``, so a non-empty ``_data`` always has unread bytes.
    """

    __slots__ = ("_data", "_pos")

    def __init__(self) -> None:
        self._data: Union[bytes, bytearray] = b""
        self._pos = 0

    def __len__(self) -> int:
        return len(self._data) - self._pos

    def __bool__(self) -> bool:
        return len(self._data) > self._pos

    def __repr__(self) -> str:
        return f"<_ReadBuffer {len(self)} bytes>"

    def append(self, chunk: Union[bytes, bytearray]) -> None:
        """Adds ``chunk`` at the end.  A bytearray chunk is taken over: the caller must not reuse it."""
        if not chunk:
            return
        data = self._data
        pos = self._pos
        if len(data) == pos:
            self._data = chunk
            self._pos = 0
        elif type(data) is bytes:
            with memoryview(data) as view:
                merged = bytearray(view[pos:])
            merged += chunk
            self._data = merged
            self._pos = 0
        else:
            data += chunk  # type: ignore[operator]

    def find(self, delimiter: bytes, start: int = 0) -> int:
        """Offset (from the read position) of the first ``delimiter`` at or after ``start``, or -1."""
        pos = self._pos
        loc = self._data.find(delimiter, pos + start)
        return loc - pos if loc >= 0 else -1

    def search(self, regex: "Pattern[bytes]") -> int:
        """Offset just past the first match of ``regex`` in the unread data, or -1.

        The pattern sees the unread data as a string of its own (``^`` matches at the read position).
        """
        data = self._data
        pos = self._pos
        if pos == 0:
            match = regex.search(data)
        else:
            with memoryview(data) as whole, whole[pos:] as unread:
                match = regex.search(unread)
        return match.end() if match is not None else -1

    def consume(self, size: int) -> bytes:
        """Removes and returns the first ``size`` bytes (``size`` must not exceed ``len(self)``)."""
        if size <= 0:
            return b""
        data = self._data
        pos = self._pos
        end = pos + size
        if end >= len(data):
            # Everything: the commonest case (a line or a chunk read whole).
            if pos == 0 and type(data) is bytes:
                result = data
            elif pos == 0:
                result = bytes(data)
            else:
                with memoryview(data) as view, view[pos:] as part:
                    result = part.tobytes()
            self._data = b""
            self._pos = 0
            return result
        if type(data) is bytes:
            result = data[pos:end]
            self._pos = end
            return result
        with memoryview(data) as view, view[pos:end] as part:
            result = part.tobytes()
        if end > (len(data) >> 1):
            # Drop the consumed prefix once it is the larger part, so memory use follows the unread data.
            del data[:end]  # type: ignore[union-attr]
            self._pos = 0
        else:
            self._pos = end
        return result

    def copy_to(self, target: Any, size: int) -> None:
        """Copies the first ``size`` bytes into the writable buffer ``target`` and removes them."""
        if size <= 0:
            return
        pos = self._pos
        with memoryview(self._data) as view, view[pos : pos + size] as part, memoryview(target) as out:
            out[:size] = part
        self.consume_silently(size)

    def consume_silently(self, size: int) -> None:
        """Removes the first ``size`` bytes without returning them."""
        data = self._data
        end = self._pos + size
        if end >= len(data):
            self._data = b""
            self._pos = 0
        elif type(data) is bytearray and end > (len(data) >> 1):
            del data[:end]
            self._pos = 0
        else:
            self._pos = end

    def clear(self) -> None:
        self._data = b""
        self._pos = 0


class _StreamBuffer:
    """Outgoing data waiting for the kernel, sent from the front with ``peek``/``advance``.

    Small pieces are copied into a shared bytearray (many tiny writes become one send); a piece larger
    than ``_large_buf_threshold`` is kept as a memoryview of the caller's object, with no copy, and
    the view is released as soon as it has been sent or the buffer is cleared, so the caller may resize
    its bytearray afterwards.  Entries are ``(is_view, chunk)`` pairs.
    """

    __slots__ = ("_buffers", "_first_pos", "_size", "_large_buf_threshold")

    def __init__(self) -> None:
        self._buffers: Deque[Tuple[bool, Union[bytearray, memoryview]]] = collections.deque()
        self._first_pos = 0
        self._size = 0
        self._large_buf_threshold = 2048

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def append(self, data: Union[bytes, bytearray, memoryview]) -> None:
        size = len(data)
        if not size:
            return
        buffers = self._buffers
        threshold = self._large_buf_threshold
        if size > threshold:
            # A view of our own (even of a memoryview) so it can be released independently.
            buffers.append((True, memoryview(data)))
        else:
            if buffers:
                is_view, last = buffers[-1]
                if not is_view and len(last) < threshold:
                    last += data  # type: ignore[operator]
                    self._size += size
                    return
            buffers.append((False, bytearray(data)))
        self._size += size

    def peek(self, size: int) -> memoryview:
        """A view of at most ``size`` bytes at the front; release it before changing the buffer."""
        assert size > 0
        if not self._buffers:
            return memoryview(b"")
        is_view, chunk = self._buffers[0]
        pos = self._first_pos
        if is_view:
            return chunk[pos : pos + size]  # type: ignore[return-value]
        # Only the returned slice may pin the bytearray: release the whole-array view at once.
        with memoryview(chunk) as view:
            return view[pos : pos + size]

    def advance(self, size: int) -> None:
        """Drops ``size`` bytes from the front (they have been sent)."""
        assert 0 < size <= self._size
        self._size -= size
        buffers = self._buffers
        pos = self._first_pos
        while size > 0:
            is_view, chunk = buffers[0]
            remaining = len(chunk) - pos
            if size >= remaining:
                buffers.popleft()
                size -= remaining
                pos = 0
                if is_view:
                    chunk.release()  # type: ignore[union-attr]
            elif is_view:
                pos += size
                size = 0
            else:
                del chunk[: pos + size]  # type: ignore[union-attr]
                pos = 0
                size = 0
        self._first_pos = pos

    def clear(self) -> None:
        for is_view, chunk in self._buffers:
            if is_view:
                chunk.release()  # type: ignore[union-attr]
        self._buffers.clear()
        self._first_pos = 0
        self._size = 0


_WriteBuffer = _StreamBuffer


# --------------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------------


class BaseIOStream:
    """Reads and writes on a non-blocking file descriptor, with futures.

    Every read method returns a future for its result and every ``write`` a future resolved once the
    data has been handed to the kernel.  When the stream closes, all outstanding futures fail with
    :class:`StreamClosedError`; ``set_close_callback`` also tells of a close that happens while no
    operation is pending.  After a close caused by an error, ``error`` holds that error.

    Subclasses implement ``fileno``, ``close_fd``, ``write_to_fd`` and ``read_from_fd`` (and may
    implement ``get_fd_error``).
    """

    # "__dict__" keeps instances open to ad-hoc attributes (code written for Tornado, tests that
    # replace a method on one stream); the dict itself is created only if one is ever set.
    __slots__ = (
        "io_loop",
        "max_buffer_size",
        "read_chunk_size",
        "_read_buffer",
        "_write_buffer",
        "_write_futures",
        "_read_future",
        "_read_kind",
        "_read_target",
        "_read_max_bytes",
        "_read_partial",
        "_read_scan",
        "_close_callback",
        "_connecting",
        "_state",
        "_closed",
        "_maybe_readable",
        "_read_pass",
        "_bytes_read",
        "_bytes_written",
        "_tracker",
        "_cork",
        "_cork_room",
        "__dict__",
        "__weakref__",
    )

    # Needed only by some streams (read_into, connect, TLS): class-level defaults rather than slots, so a
    # server's idle connection does not carry them; a stream that sets one gets it in its ``__dict__``
    # (a TLS stream has ``_ssl_connect_future`` as a slot of its own).
    _user_buffer: Any = None
    _user_filled = 0
    # Likewise the public ``error`` (set when a close has a cause) and ``max_write_buffer_size`` (set
    # when a limit is given): None until then.
    error: Optional[BaseException] = None
    max_write_buffer_size: Optional[int] = None
    _connect_future: Optional[Future] = None
    _ssl_connect_future: Optional[Future] = None
    # The count of bytes queued by writes the kernel did not take at once, and of those sent: most
    # streams' writes go straight through, so these stay class-level defaults until a stream
    # queues one (16 B less per idle connection).
    _total_write_index = 0
    _total_write_done_index = 0

    # True when ``_handle_write`` is this class's own: ``write`` may then send straight away without
    # queueing first.  Computed per subclass (a TLS stream that overrides it takes the queued path).
    _plain_handle_write = True

    # True when several buffers can be handed to the file in one call (``_gather_to_fd``): a plain
    # socket stream.
    _gather_writes = False
    # True when ``reading``/``writing`` are this class's own, so their answers can be read straight
    # from the attributes (a TLS stream overrides them to include its handshake).
    _plain_state = True
    # True when a READ event for a pending read can go straight to the read loop (no handshake etc.).
    _plain_read_events = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._plain_handle_write = cls._handle_write is BaseIOStream._handle_write
        cls._plain_state = cls.reading is BaseIOStream.reading and cls.writing is BaseIOStream.writing
        cls._plain_read_events = cls._plain_state and cls._handle_read is BaseIOStream._handle_read

    def __init__(
        self,
        max_buffer_size: Optional[int] = None,
        read_chunk_size: Optional[int] = None,
        max_write_buffer_size: Optional[int] = None,
    ) -> None:
        self.io_loop = IOLoop.current()
        if max_buffer_size is None and read_chunk_size is None:
            self.max_buffer_size = _DEFAULT_MAX_BUFFER_SIZE  # (every accepted connection)
            self.read_chunk_size = _DEFAULT_CAPPED_CHUNK_SIZE
        else:
            self.max_buffer_size = max_buffer_size or _DEFAULT_MAX_BUFFER_SIZE
            # A chunk as large as the whole buffer would overflow it on the first read.
            self.read_chunk_size = min(read_chunk_size or _DEFAULT_READ_CHUNK_SIZE, self.max_buffer_size // 2)
        if max_write_buffer_size is not None:
            self.max_write_buffer_size = max_write_buffer_size
        self._read_buffer = _ReadBuffer()
        # The write side is allocated on first need: most writes go straight to the kernel.
        self._write_buffer: Optional[_StreamBuffer] = None
        self._write_futures: Optional[Deque[Tuple[int, Future]]] = None  # (read by every write: a slot)
        self._read_future: Optional[Future] = None
        self._read_kind = _NO_READ
        self._read_target: Any = None
        self._read_max_bytes: Optional[int] = None
        self._read_partial = False
        self._read_scan = 0
        self._close_callback: Optional[Callable[[], None]] = None
        self._connecting = False
        # The events the loop watches for us (None: not registered with the loop at all).
        self._state: Optional[int] = None
        self._closed = False
        # False once a plain read came back short (the kernel had nothing more) and no readiness has
        # been reported since: a new read then waits for the loop instead of trying a read that
        # would only fail with EWOULDBLOCK.
        self._maybe_readable = True
        # The loop pass in which a new read of this stream last went to the kernel: a plain stream does
        # that at most once a pass (see ``_may_read_this_pass``).
        self._read_pass = -1
        # Bytes received and handed to the kernel so far (an integer add per syscall): a server's
        # statistics and idle checks read these two counters instead of timing every operation.
        self._bytes_read = 0
        self._bytes_written = 0
        # Set by a TCPServer that counts this connection: told (``stream_closed(stream)``) when the
        # stream closes, and (``stream_replaced(old, new)``) when start_tls hands it to a new stream.
        self._tracker: Any = None
        # Replies held back ("corked") while pipelined requests wait unread: a list of bytes, already
        # reported written, sent together by the next write that cannot join them, before the loop
        # next polls, or at close (see ``_flush_cork``).  While it is non-empty the write buffer is
        # empty and no write future is queued.  ``_cork_room``: how many more bytes it may take.
        self._cork: Optional[list] = None
        self._cork_room = 0

    # -- what a subclass provides -----------------------------------------------------------------

    def fileno(self) -> Any:
        """The file descriptor (or object with ``fileno()``) this stream watches."""
        raise NotImplementedError()

    def close_fd(self) -> None:
        """Closes the underlying file.  Called by ``close``; use ``close`` instead."""
        raise NotImplementedError()

    def write_to_fd(self, data: memoryview) -> int:
        """Writes as much of ``data`` as the file takes now; returns the count written."""
        raise NotImplementedError()

    def read_from_fd(self, buf: Union[bytearray, memoryview]) -> Optional[int]:
        """Reads into ``buf``: the count read, 0 at end of file, None if nothing is available."""
        raise NotImplementedError()

    def get_fd_error(self) -> Optional[Exception]:
        """The error pending on the file after the loop reported ERROR, if it can be known."""
        return None

    def _read_chunk(self, size: int) -> Optional[Union[bytes, bytearray]]:
        """Reads up to ``size`` bytes: the data, ``b""`` at end of file, None if nothing is available.

        Goes through ``read_from_fd`` here; subclasses whose file hands out fresh ``bytes`` directly
        (``recv``, ``os.read``) override this to skip the intermediate buffer.
        """
        buf = bytearray(size)
        count = self.read_from_fd(buf)
        if count is None:
            return None
        if count < size:
            del buf[count:]
        return buf

    # -- reading ------------------------------------------------------------------------------------

    def read_until_regex(self, regex: bytes, max_bytes: Optional[int] = None) -> "Future[bytes]":
        """Reads until ``regex`` matches; the result ends with the match.

        With ``max_bytes``, the stream is closed when no match is found within that many bytes.
        """
        future = self._start_read()
        self._read_kind = _READ_REGEX
        self._read_target = re.compile(regex)
        self._read_max_bytes = max_bytes
        self._read_scan = 0
        try:
            self._try_inline_read()
        except UnsatisfiableReadError as e:
            gen_log.info("Unsatisfiable read, closing connection: %s" % e)
            self.close(exc_info=e)
        except BaseException:
            future.add_done_callback(_mark_retrieved)
            raise
        return future

    def read_until(self, delimiter: bytes, max_bytes: Optional[int] = None) -> "Future[bytes]":
        """Reads until ``delimiter`` is found; the result ends with the delimiter.

        With ``max_bytes``, the stream is closed when the delimiter is not found within that many bytes.
        """
        buffer = self._read_buffer
        data = buffer._data
        if data and type(data) is bytes:
            # Pipelined requests: the line is already here.  Served straight from the buffer, with no
            # read state set up (nothing will wait for it).  (Consumed data is always dropped: a
            # non-empty ``_data`` has unread bytes.)
            start = buffer._pos
            loc = data.find(delimiter, start)
            end = loc + len(delimiter)
            # ``end > start`` leaves an empty delimiter to the general path.
            if (
                loc >= 0
                and end > start
                and (max_bytes is None or end - start <= max_bytes)
                and self._read_future is None
            ):
                if end < len(data):
                    # (Data left unread: _maybe_add_error_listener would do nothing, so it is not asked.)
                    result = data[start:end]
                    buffer._pos = end
                else:
                    result = data if start == 0 else data[start:]
                    buffer._data = b""
                    buffer._pos = 0
                    state = self._state
                    if (state is None or state == _ERROR) and self._close_callback is not None:
                        self._maybe_add_error_listener()
                done: Future[bytes] = _ResolvedFuture()
                done._result = result
                done._loop = None
                return done
        if self._read_future is not None:
            self._start_read()  # raises the right error
        future: Future[bytes] = Future()
        future._loop = self.io_loop
        self._read_future = future
        self._read_kind = _READ_DELIMITER
        self._read_target = delimiter
        self._read_max_bytes = max_bytes
        self._read_scan = 0
        try:
            if data:  # (``_data`` as read above: unchanged since, and non-empty only with unread bytes)
                # Data at hand (pipelined requests): look there first, no further ado.
                pos = self._find_delimiter()
                if pos is not None:
                    self._finish_read(pos)
                    return future
            elif not self._maybe_readable and not self._closed:
                state = self._state
                if state is not None and state & _READ:
                    # The next request of a request-response exchange: the kernel had nothing more
                    # and the poller watches for it (``_try_inline_read`` would decide the same).
                    return future
                if self._plain_read_events:
                    # ``_try_inline_read``'s decision, without its other cases (``_may_read_this_pass``
                    # of a plain stream): read now if this pass's turn is free, else wait for the loop
                    # (the read that just ended took the turn and found the kernel empty).
                    if self._take_read_turn():
                        self._try_inline_read(True, True)
                    else:
                        self._park_read(state)
                    return future
            self._try_inline_read(True)
        except UnsatisfiableReadError as e:
            gen_log.info("Unsatisfiable read, closing connection: %s" % e)
            self.close(exc_info=e)
        except BaseException:
            future.add_done_callback(_mark_retrieved)
            raise
        return future

    def read_bytes(self, num_bytes: int, partial: bool = False) -> "Future[bytes]":
        """Reads ``num_bytes`` bytes; with ``partial``, resolves as soon as any (at most that many) arrive."""
        if type(num_bytes) is not int and not isinstance(num_bytes, numbers.Integral):
            raise TypeError(f"num_bytes must be an integer, not {type(num_bytes).__name__}")
        buffer = self._read_buffer
        data = buffer._data
        if data and type(data) is bytes and num_bytes > 0 and self._read_future is None:
            # Enough is buffered already (a peer that sent several messages at once): served
            # straight from the buffer with no read state set up, as ``read_until`` does.  (A
            # non-empty ``_data`` has unread bytes.)
            start = buffer._pos
            end = start + num_bytes
            size = len(data)
            if end <= size or partial:
                if end < size:
                    result = data[start:end]
                    buffer._pos = end
                else:
                    result = data if start == 0 else data[start:]
                    buffer._data = b""
                    buffer._pos = 0
                done: Future[bytes] = _ResolvedFuture()
                done._result = result
                done._loop = None
                state = self._state
                if (state is None or state == _ERROR) and self._close_callback is not None:
                    self._maybe_add_error_listener()
                return done
        if self._read_future is not None:
            self._start_read()  # raises the right error
        future: Future[bytes] = Future()
        future._loop = self.io_loop
        self._read_future = future
        self._read_kind = _READ_BYTES
        self._read_target = num_bytes
        self._read_partial = partial
        try:
            buffer = self._read_buffer
            have = len(buffer._data) - buffer._pos
            if have >= num_bytes or (partial and have):
                # Enough at hand: finish here.
                self._finish_read(num_bytes if num_bytes < have else have)
                return future
            self._try_inline_read(True)
        except BaseException:
            future.add_done_callback(_mark_retrieved)
            raise
        return future

    def read_into(self, buf: Any, partial: bool = False) -> "Future[int]":
        """Fills the writable buffer ``buf``; the result is the number of bytes stored.

        Without ``partial`` the future resolves when ``buf`` is full; with it, as soon as any data is in.
        Data already buffered goes first; further data is read straight into ``buf``.
        """
        future = self._start_read()
        size = len(buf)
        buffered = len(self._read_buffer)
        filled = size if buffered >= size else buffered
        if filled:
            self._read_buffer.copy_to(buf, filled)
        self._read_kind = _READ_INTO
        self._read_target = size
        self._read_partial = partial
        self._user_buffer = buf
        self._user_filled = filled
        try:
            self._try_inline_read()
        except BaseException:
            future.add_done_callback(_mark_retrieved)
            raise
        return future

    def read_until_close(self) -> "Future[bytes]":
        """Reads everything until the stream closes (buffering up to ``max_buffer_size``)."""
        future = self._start_read()
        if self._closed:
            self._finish_read(len(self._read_buffer))
            return future
        self._read_kind = _READ_UNTIL_CLOSE
        self._read_max_bytes = None
        try:
            self._try_inline_read()
        except BaseException:
            future.add_done_callback(_mark_retrieved)
            raise
        return future

    # -- writing ------------------------------------------------------------------------------------

    def write(self, data: Union[bytes, bytearray, memoryview]) -> "Future[None]":
        """Queues ``data`` for writing; the future resolves once all of it has reached the kernel.

        Data is sent at once when nothing is queued ahead of it; a large bytes-like object is queued
        without a copy, so a bytearray must not be changed until its write's future resolves.
        """
        cork = self._cork
        if cork:
            # Another reply to a pipelined request while the earlier ones are corked: it joins them
            # if a request is still unread.  Checked first and with as little as possible, since it
            # runs once per pipelined reply.  (A non-empty cork means: open, nothing queued.)
            if type(data) is bytes and self._read_buffer._data:  # (a non-empty _data is unread)
                room = self._cork_room - len(data)
                if room >= 0:
                    cork.append(data)
                    self._cork_room = room
                    written: Future[None] = _WrittenFuture()
                    written._loop = None
                    return written
        if self._closed:
            raise StreamClosedError(real_error=self.error)
        if data:
            if type(data) is memoryview:
                data = data.cast("B")  # len() must count bytes, whatever the item format
            size = len(data)
            if self._read_buffer._data and self._plain_handle_write:
                if cork:
                    room = self._cork_room
                else:
                    room = self._cork_start_room()
                if size <= room:
                    # A reply while requests wait unread (pipelining): corked, reported done at once.
                    # A copy of a mutable object, since the caller may reuse it from now on.
                    if type(data) is not bytes:
                        data = bytes(data)
                    if cork:
                        cork.append(data)
                    else:
                        self._cork = [data]
                        self.io_loop._stream_hook.call_before_poll(self._flush_cork)
                    self._cork_room = room - size
                    written = _WrittenFuture()
                    written._loop = None
                    return written
            if cork:
                # This write cannot join the corked replies: they go first.
                self._cork = None
                if self.max_write_buffer_size is None and size <= _CORK_LIMIT:
                    # The usual end of a pipelined batch (its last request read): one send for all.
                    cork.append(data if type(data) is bytes else bytes(data))
                    if size >= _GATHER_MIN and len(cork) <= _GATHER_PIECES and self._gather_writes:
                        # Large pieces (a bulk echo's chunks): handed over together without joining.
                        return self._write_gathered_now(cork, _CORK_LIMIT - self._cork_room + size)
                    joined = b"".join(cork)
                    return self._write_now(joined, len(joined))
                # Corked bytes count as sent for the caller: they go to the kernel first rather than
                # count against this write's buffer limit.
                self._send_cork(cork)
                if self._closed:
                    raise StreamClosedError(real_error=self.error)
            buffer = self._write_buffer
            if buffer is None or not buffer._size:
                limit = self.max_write_buffer_size
                if limit is not None and size > limit:
                    raise StreamBufferFullError("Reached maximum write buffer size")
                if not self._write_futures and not self._connecting and self._plain_handle_write:
                    # _write_now, inline: this is every reply's path, and one Python call less.
                    try:
                        sent = self.write_to_fd(data)  # type: ignore[arg-type]  # (any bytes-like, as in _write_now)
                    except BlockingIOError:
                        sent = 0
                    except OSError as e:
                        return self._direct_write_failed(e, size)
                    self._bytes_written += sent
                    if sent >= size:
                        written = _WrittenFuture()
                        written._loop = None
                        state = self._state
                        if (state is None or state == _ERROR) and self._close_callback is not None:
                            self._maybe_add_error_listener()
                        return written
                    return self._wait_for_unsent([data], size, sent)
            elif self.max_write_buffer_size is not None and buffer._size + size > self.max_write_buffer_size:
                raise StreamBufferFullError("Reached maximum write buffer size")
            self._total_write_index += size
            if buffer is None:
                buffer = self._write_buffer = _StreamBuffer()
            buffer.append(data)
        elif cork:
            # An empty write after corked ones resolves only once they are in the kernel (as in order).
            self._cork = None
            self._send_cork(cork)
            if self._closed:
                raise StreamClosedError(real_error=self.error)
        future: Future[None] = Future()
        self._queue_write_future(future)
        if not self._connecting:
            self._handle_write()
            if self._write_buffer:
                self._watch_write()
            self._maybe_add_error_listener()
        return future

    def _cork_start_room(self) -> int:
        """How much a new cork may hold: 0 unless nothing at all is queued for the kernel."""
        buffer = self._write_buffer
        if (buffer is not None and buffer._size) or self._write_futures or self._connecting:
            return 0
        limit = self.max_write_buffer_size
        return _CORK_LIMIT if limit is None or limit > _CORK_LIMIT else limit

    def _write_now(self, data: Any, size: int) -> "Future[None]":
        """``write`` with nothing queued ahead: straight to the kernel, queueing only what it refuses."""
        try:
            sent = self.write_to_fd(data)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            return self._direct_write_failed(e, size)
        self._bytes_written += sent
        if sent >= size:
            # All in the kernel: done before returning.  (Both write indices would move by
            # ``size``; only their difference matters, so neither is touched.)  Inline, not a shared
            # helper with _write_gathered_now: this is every reply's path.
            written: Future[None] = _WrittenFuture()
            written._loop = None
            state = self._state
            if (state is None or state == _ERROR) and self._close_callback is not None:
                self._maybe_add_error_listener()
            return written
        # The kernel is full: queue the rest (a view of a large payload, not a copy) and wait
        # until the file is writable again.
        return self._wait_for_unsent([data], size, sent)

    def _direct_write_failed(self, error: OSError, size: int) -> "Future[None]":
        """A direct write's send failed: the stream closes, and the write's future fails with it."""
        self._total_write_index += size
        self._on_write_error(error)
        future: Future[None] = Future()
        future.set_exception(StreamClosedError(real_error=self.error))
        future.exception()  # looked at: the caller learns of it from the stream, if at all
        return future

    def _wait_for_unsent(self, pieces: list, size: int, sent: int) -> "Future[None]":
        """A direct write the kernel took ``sent`` of ``size`` bytes of: queue the rest, wait to flush it."""
        self._total_write_index += size
        self._total_write_done_index += sent
        self._queue_unsent(pieces, sent)
        future: Future[None] = Future()
        future._loop = self.io_loop
        self._queue_write_future(future)
        self._watch_write()
        return future

    def _gather_to_fd(self, pieces: list) -> int:
        """Writes as much of the buffers ``pieces`` (in order) as the file takes now, in one call.

        Only for classes that set ``_gather_writes``; the count written, like ``write_to_fd``.
        """
        raise NotImplementedError()

    def _write_gathered_now(self, pieces: list, size: int) -> "Future[None]":
        """``_write_now`` for several ``bytes`` pieces (``size`` in all), sent without joining them."""
        try:
            sent = self._gather_to_fd(pieces)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            return self._direct_write_failed(e, size)
        self._bytes_written += sent
        if sent >= size:
            written: Future[None] = _new_object(_WrittenFuture)
            written._loop = None
            state = self._state
            if (state is None or state == _ERROR) and self._close_callback is not None:
                self._maybe_add_error_listener()
            return written
        return self._wait_for_unsent(pieces, size, sent)

    def _queue_unsent(self, pieces: list, sent: int) -> None:
        """Queues what the kernel refused of ``pieces`` (the first ``sent`` bytes went out)."""
        buffer = self._write_buffer
        if buffer is None:
            buffer = self._write_buffer = _StreamBuffer()
        for piece in pieces:
            if sent >= len(piece):
                sent -= len(piece)
            elif sent:
                with memoryview(piece) as view:
                    buffer.append(view[sent:])
                sent = 0
            else:
                buffer.append(piece)

    def _flush_cork(self) -> None:
        """Sends the replies ``write`` held back ("corked") this pass, before the loop polls.

        ``write`` corks a reply (and reports it done at once) only while requests the application has
        not read yet wait in the read buffer (pipelining): the replies to them follow within the same
        pass, and one ``send`` for all of them costs what one costs for each.  The data goes out with
        the next write made when no request is left unread, here before the loop polls, or when the
        stream closes, whichever comes first.  (Tornado sends each write at once; see
        docs/differences.md.)
        """
        cork = self._cork
        if cork:
            self._cork = None
            self._send_cork(cork)

    def _send_cork(self, cork: list) -> None:
        """Hands the corked replies to the kernel; what it refuses is queued (the write buffer is empty)."""
        pieces = len(cork)
        if pieces == 1:
            data = cork[0]
        elif pieces <= _GATHER_PIECES and self._gather_writes and len(cork[0]) >= _GATHER_MIN:
            data = cork  # few large pieces: gathered by the kernel rather than joined here
        else:
            data = b"".join(cork)
        try:
            if data is cork:
                size = sum(map(len, cork))
                sent = self._gather_to_fd(cork)
            else:
                size = len(data)
                sent = self.write_to_fd(data)  # type: ignore[arg-type]
        except BlockingIOError:
            sent = 0
        except OSError as e:
            self._on_write_error(e)
            return
        self._bytes_written += sent
        if sent < size:
            self._total_write_index += size
            self._total_write_done_index += sent
            self._queue_unsent(cork if data is cork else [data], sent)
            self._watch_write()

    def _watch_write(self) -> None:
        """Waits for WRITE to send what is queued; with no read pending, READ is off meanwhile.

        Tornado means an idle stream to watch READ (to notice a close), but not one with a write
        pending: a peer that shut down its sending side after its request must still get the whole
        answer, not have its EOF close the stream under the write.  (A reset still shows, as an error.)
        """
        state = self._state
        if self._plain_state and self._read_future is None and state is not None and state & _READ:
            self._state = _ERROR | _WRITE
            self.io_loop.update_handler(self.fileno(), self._state)
        else:
            self._add_io_state(_WRITE)

    def _queue_write_future(self, future: Future) -> None:
        futures = self._write_futures
        if futures is None:
            futures = self._write_futures = collections.deque()
        futures.append((self._total_write_index, future))

    # -- closing and state --------------------------------------------------------------------------

    def set_close_callback(self, callback: Optional[Callable[[], None]]) -> None:
        """Calls ``callback()`` (once, on the loop) when the stream closes."""
        self._close_callback = callback
        self._maybe_add_error_listener()

    def close(
        self,
        exc_info: Union[
            None,
            bool,
            BaseException,
            Tuple[Optional[Type[BaseException]], Optional[BaseException], Optional[TracebackType]],
        ] = False,
    ) -> None:
        """Closes the stream.

        A true ``exc_info`` records an error in ``error``: an exception, an ``exc_info`` tuple, or
        ``True`` for the exception being handled.  A pending read that the buffered data satisfies is
        resolved first; everything else still pending fails with :class:`StreamClosedError`.
        """
        if not self._closed:
            if exc_info:
                if isinstance(exc_info, tuple):
                    self.error = exc_info[1]
                elif isinstance(exc_info, BaseException):
                    self.error = exc_info
                else:
                    current = sys.exc_info()
                    if current[1] is not None:
                        self.error = current[1]
                if self.error is not None and self.error.__traceback__ is not None:
                    # The traceback's frames hold this stream (``self`` in their locals): kept, every
                    # stream closed by an error would sit in a reference cycle until the cyclic GC.
                    self.error.__traceback__ = None
            kind = self._read_kind
            if kind == _READ_UNTIL_CLOSE:
                if self.error is None or self._is_connreset(self.error):
                    # A reset is how some peers end a connection: what arrived is the whole answer.
                    self._finish_read(len(self._read_buffer))
                # On a real error the read stays pending and fails below: a truncated result must
                # not pass for a complete one.
            elif kind != _NO_READ and self._read_future is not None and (kind == _READ_INTO or self._read_buffer._data):
                # (With nothing buffered no read other than read_into can end: the usual close, by EOF.)
                try:
                    pos = self._find_read_pos()
                except UnsatisfiableReadError:
                    pos = None
                if pos is not None:
                    self._finish_read(pos)
            if self._cork:
                self._send_corked_before_close()
            if self._state is not None:
                self.io_loop.remove_handler(self.fileno())
                self._state = None
            self.close_fd()
            self._closed = True
            tracker = self._tracker
            if tracker is not None:
                self._tracker = None
                tracker.stream_closed(self)
        self._signal_closed()

    def _send_corked_before_close(self) -> None:
        """Writes that were reported done must reach the kernel even if the stream closes this pass."""
        cork = self._cork
        self._cork = None
        if self.error is not None or not cork:
            return
        with memoryview(b"".join(cork)) as data:
            try:
                while data:
                    sent = self.write_to_fd(data)
                    if not sent:
                        break
                    self._bytes_written += sent
                    data = data[sent:]
            except OSError:
                pass  # the peer is gone (or the kernel is full): the close goes ahead either way

    def _signal_closed(self) -> None:
        error = self.error
        future = self._read_future
        if future is not None:
            self._read_future = None
            self._clear_read_state()
        if self._write_futures or self._connect_future is not None:
            # Failed in this order: the read, the writes (oldest first), the connect.  (Usually there
            # is only the read: a closed connection's handler waiting for its next request.)
            failing = [] if future is None else [future]
            if self._write_futures:
                failing.extend(future for _, future in self._write_futures)
                self._write_futures.clear()
            if self._connect_future is not None:
                failing.append(self._connect_future)
                self._connect_future = None
            for future in failing:
                _fail_closed(future, error)
        elif future is not None:
            _fail_closed(future, error)
        ssl_future = self._ssl_connect_future
        if ssl_future is not None:
            # A handshake waiter wants the real cause (typically an ssl.SSLError).
            self._ssl_connect_future = None
            if not ssl_future.done():
                ssl_future.set_exception(error if error is not None else StreamClosedError())
            try:
                ssl_future.exception()
            except CancelledError:
                pass
        callback = self._close_callback
        if callback is not None:
            self._close_callback = None
            self.io_loop.add_callback(callback)
        buffer = self._write_buffer
        if buffer is not None:
            buffer.clear()  # releases views of callers' data that never went out
        self._write_buffer = None
        self._cork = None

    def reading(self) -> bool:
        """True while a read is pending."""
        return self._read_future is not None

    def writing(self) -> bool:
        """True while written data is waiting to go to the kernel."""
        return bool(self._write_buffer) or bool(self._cork)

    def closed(self) -> bool:
        return self._closed

    def set_nodelay(self, value: bool) -> None:
        """Asks for data to be sent at once rather than coalesced (TCP_NODELAY); a no-op here."""

    def start_tls(
        self, server_side: bool, ssl_options: Any = None, server_hostname: Optional[str] = None
    ) -> "Future[Any]":
        """Switches the connection to TLS (see ``IOStream.start_tls``)."""
        raise NotImplementedError("start_tls needs a socket stream with TLS support")

    # -- event handling -----------------------------------------------------------------------------

    def _handle_connect(self) -> None:
        raise NotImplementedError()

    def _handle_events(self, fd: Any, events: int) -> None:
        kind = self._read_kind
        if (
            events == _READ
            and (kind == _READ_DELIMITER or kind == _READ_BYTES)
            and self._plain_read_events
            and not self._connecting
            and not self._closed
        ):
            # The common case, data for a pending read: nothing else to check, and nothing the
            # loop watches changes (READ stays on for the next read, WRITE is as it was).
            self._maybe_readable = True
            try:
                pos = self._read_to_buffer_loop()
            except Exception as e:
                self._close_for_read_error(e)
                return
            if pos is not None:
                self._finish_read(pos)
            return
        if self._closed:
            gen_log.warning("Got events for closed stream %s", fd)
            return
        try:
            if self._connecting:
                # A failed connect shows up as WRITE on most pollers, but as READ on some: check first.
                self._handle_connect()
                if self._closed:
                    return
            unserved = False
            if events & _READ:
                self._maybe_readable = True
                # With no read pending, one chunk is taken (that is how a close or reset is
                # noticed); then READ is dropped until a read wants more (flow control).
                unserved = not self.reading()
                self._handle_read()
                if self._closed:
                    return
            if events & _WRITE:
                self._handle_write()
                if self._closed:
                    return
            if events & _ERROR:
                self._handle_error_event()
                return
            self._update_state(unserved)
        except UnsatisfiableReadError as e:
            gen_log.info("Unsatisfiable read, closing connection: %s" % e)
            self.close(exc_info=e)
        except Exception as e:
            gen_log.error("Uncaught exception, closing connection.", exc_info=True)
            self.close(exc_info=e)
            raise

    def _update_state(self, unserved: bool = False) -> None:
        """Makes the loop watch what this stream needs now, touching the poller only on a change."""
        current = self._state
        state = _ERROR
        if self._plain_state:
            if self._read_future is not None:
                state = _ERROR | _READ
            buffer = self._write_buffer
            if buffer is not None and buffer._size:
                state |= _WRITE
        else:
            if self.reading():
                state |= _READ
            if self.writing():
                state |= _WRITE
        if not state & (_READ | _WRITE):
            if not self._read_buffer:
                # Idle: keep watching for reads, which is how a close by the peer is noticed.
                state |= _READ
            elif current is not None and current & _READ and not unserved:
                # A read is likely to follow the one that just finished: keep READ until data
                # arrives that nobody wants, rather than dropping and re-adding it (two syscalls).
                state |= _READ
        if state != current:
            assert current is not None, "_handle_events for a stream the loop does not watch"
            self._state = state
            self.io_loop.update_handler(self.fileno(), state)

    def _handle_error_event(self) -> None:
        """The poller reported an error or hang-up on the file.

        Tornado 6 runs on asyncio, whose selectors turn a hang-up into plain readiness: the peer's last
        data, then its EOF or error, are found by reading.  So the same happens here: pending writes
        are tried (and fail with the real error), then everything the kernel still holds is read,
        finishing the pending read on the way.  Only if the file is still open after that is the
        error fetched from the file and the stream closed, on the next pass so that the callbacks
        queued above run first.
        """
        if self.writing():
            self._handle_write()
            if self._closed:
                return
        try:
            while not self._closed:
                pos = self._find_read_pos()
                if pos is not None:
                    self._finish_read(pos)
                if not self._read_to_buffer():
                    break
        except UnsatisfiableReadError:
            raise
        except Exception as e:
            gen_log.warning("error on read: %s" % e)
            self.close(exc_info=e)
            return
        if not self._closed:
            self.error = self.get_fd_error()
            self.io_loop.add_callback(self.close)

    def _handle_read(self) -> None:
        try:
            pos = self._read_to_buffer_loop()
        except UnsatisfiableReadError:
            raise
        except Exception as e:
            gen_log.warning("error on read: %s" % e)
            self.close(exc_info=e)
            return
        if pos is not None:
            self._finish_read(pos)

    def _read_to_buffer_loop(self) -> Optional[int]:
        """Reads until the pending read can finish or the file has nothing more; returns its end or None.

        Stops early when a plain read comes back short (the kernel had no more), rather than
        asking again only to be told EWOULDBLOCK.
        """
        kind = self._read_kind
        if kind == _READ_INTO:
            return self._read_into_user_buffer()
        if kind == _READ_BYTES:
            target: Optional[int] = self._read_target
        elif kind == _NO_READ:
            # Nobody is reading: take one chunk (the loop saw data, or a close) -- unless it could
            # overflow the buffer, which must not fail a stream that nobody asked to read from.
            if len(self._read_buffer) + self.read_chunk_size > self.max_buffer_size:
                return None
            target = 0
        else:
            target = self._read_max_bytes  # None: a delimiter with no limit, or until close
        buffer = self._read_buffer
        chunk_size = self.read_chunk_size
        read_chunk = self._read_chunk
        # A delimiter search resumes where it stopped, so it is cheap after every chunk; a regex
        # must rescan, so it is tried again only once the data has doubled.
        next_search = 0
        while True:
            try:
                chunk = read_chunk(chunk_size)
            except OSError as e:
                self.close(exc_info=e)
                if self._is_connreset(e):
                    return None  # the peer went away: an ordinary end, closed quietly
                raise
            if chunk is None:
                if self._closed:
                    return None
                break
            if not chunk:
                self.close()  # end of file: the close finishes whatever read it can
                return None
            count = len(chunk)
            self._bytes_read += count
            if count >= chunk_size:
                self._maybe_readable = True  # a full chunk: there may well be more behind it
            if buffer._pos == len(buffer._data):
                buffer._data = chunk  # adopt it: a read it satisfies whole returns it uncopied
                buffer._pos = 0
                size = count
                if kind == _READ_DELIMITER and target is None:
                    # A request on an idle connection, the commonest read of all: the chunk is all
                    # there is, so the search is of it whole (``_find_delimiter`` without the call).
                    loc = chunk.find(self._read_target)
                    if loc >= 0:
                        return loc + len(self._read_target)
            else:
                if kind == _READ_DELIMITER and self._finish_line_across(chunk):
                    return None  # finished here: the line's end was in this chunk
                buffer.append(chunk)
                size = len(buffer)
            if size > self.max_buffer_size:
                self._buffer_overflow()
            if target is not None and size >= target:
                break
            if kind == _READ_DELIMITER:
                pos = self._find_delimiter()
                if pos is not None or not self._maybe_readable:
                    return pos
            elif kind == _READ_REGEX and size >= next_search:
                pos = self._find_read_pos()
                if pos is not None or not self._maybe_readable:
                    return pos
                next_search = size * 2
            elif not self._maybe_readable:
                break  # the kernel had no more: another read would only say EWOULDBLOCK
        return self._find_read_pos()

    def _finish_line_across(self, chunk: Any) -> bool:
        """Finishes the pending ``read_until`` whose line began in the buffer and ends in ``chunk``.

        The line is made with one copy of its own bytes, and the rest of ``chunk`` becomes the
        buffer as it is, rather than appending the whole chunk to the buffer (a copy of every byte
        received) and then cutting the line out of it (another).  Only for a one-byte delimiter
        (none can straddle the boundary), a buffer searched to its end already, and a line within
        the read's limits; returns False, having changed nothing, otherwise.
        """
        buffer = self._read_buffer
        data = buffer._data
        start = buffer._pos
        unread = len(data) - start
        delimiter = self._read_target
        if type(data) is not bytes or type(chunk) is not bytes or len(delimiter) != 1 or self._read_scan != unread:
            return False
        loc = chunk.find(delimiter)
        if loc < 0:
            return False
        end = loc + 1
        limit = self._read_max_bytes
        if (limit is not None and unread + end > limit) or unread + len(chunk) > self.max_buffer_size:
            return False  # the ordinary path reports these
        with memoryview(data) as whole, whole[start:] as tail, memoryview(chunk) as fresh, fresh[:end] as head:
            line = b"".join((tail, head))
        # The line stands in for the buffer while the read takes it whole, then the chunk's rest is the buffer.
        buffer._data = line
        buffer._pos = 0
        self._finish_read(len(line))
        if end < len(chunk):
            buffer._data = chunk
            buffer._pos = end
        return True

    def _read_into_user_buffer(self) -> Optional[int]:
        """The read loop of ``read_into``: straight into the caller's buffer, never past its end."""
        while not self._closed:
            if not self._read_to_buffer():
                break
            if self._user_filled >= self._read_target:
                break
        return self._find_read_pos()

    def _buffer_overflow(self) -> None:
        gen_log.error("Reached maximum read buffer size")
        full = StreamBufferFullError("Reached maximum read buffer size")
        self.close(exc_info=full)
        raise full

    def _read_to_buffer(self) -> int:
        """One read from the file into the buffer: the count read, 0 if none (nothing ready, or closed)."""
        try:
            if self._read_kind == _READ_INTO:
                filled = self._user_filled
                with memoryview(self._user_buffer) as whole, whole[filled:] as view:
                    wanted = len(view)
                    count = self.read_from_fd(view)
                if count is None:
                    return 0
                if count == 0:
                    self.close()
                    return 0
                if count >= wanted:
                    # Filled: there may be more behind it (in the kernel, or inside a TLS object),
                    # whatever an earlier short read suggested.
                    self._maybe_readable = True
                self._user_filled = size = filled + count
            else:
                chunk = self._read_chunk(self.read_chunk_size)
                if chunk is None:
                    return 0
                count = len(chunk)
                if count == 0:
                    self.close()
                    return 0
                buffer = self._read_buffer
                buffer.append(chunk)
                size = len(buffer)
        except OSError as e:
            self.close(exc_info=e)
            if self._is_connreset(e):
                # The peer went away: an ordinary end of the connection, not worth an error.
                return 0
            raise
        self._bytes_read += count
        if size > self.max_buffer_size:
            self._buffer_overflow()
        return count

    def _try_inline_read(self, buffer_checked: bool = False, turn_taken: bool = False) -> None:
        """Finishes the new read from buffered data or from what the kernel holds, else waits for READ.

        ``buffer_checked``: the caller already knows the buffered data does not satisfy the read.
        ``turn_taken``: the caller already took this pass's read turn for it (``_may_read_this_pass``).
        """
        if not buffer_checked:
            if self._read_kind == _READ_DELIMITER:
                buffer = self._read_buffer
                pos = self._find_delimiter() if buffer._pos < len(buffer._data) else None
            else:
                pos = self._find_read_pos()
            if pos is not None:
                self._finish_read(pos)
                return
        if self._closed:
            raise StreamClosedError(real_error=self.error)
        state = self._state
        if (self._maybe_readable or state is None or not state & _READ) and (turn_taken or self._may_read_this_pass()):
            pos = self._read_to_buffer_loop()
            if pos is not None:
                self._finish_read(pos)
                return
            if self._closed or self._read_future is None:  # (None: finished inside the loop)
                return
            state = self._state
        self._park_read(state)

    def _park_read(self, state: Optional[int]) -> None:
        """Leaves the new read to the loop: READ watched (``state``: the events watched now)."""
        # Wait for the loop.  (Level-triggered polling reports data that came in meanwhile.)
        if state is None or not state & _READ:
            self._add_io_state(_READ)
        if not self.io_loop._stream_hook.dispatching:
            # The turn taken above cannot matter any more: this read ends only in a later poll's
            # dispatch, so the next new read comes in a later pass anyway.  -1 is a cached small int,
            # where a pass number over 256 is an int object kept by every idle connection (~31 B).
            # (Parked inside a dispatch, the same dispatch may still end it: the turn must stay.)
            self._read_pass = -1

    def _may_read_this_pass(self) -> bool:
        """Whether a new read may go to the kernel now rather than wait for the poller.

        A new read of a plain stream goes to the kernel at most once per loop pass (besides the read
        the poller's report makes): a peer that always has more data (a bulk upload) would otherwise
        keep one coroutine reading and writing inline without ever returning to the loop, while
        every other connection waited.  Served in turns, all connections move at once, which is also
        faster: measured with 4 bulk connections, 1.2-1.4 GB/s against 0.6-0.9 GB/s read inline
        without limit; not counting the read the poller asked for (two 64 KiB chunks a stream a pass,
        not one) then took 5 alternating pairs of runs from a mean of 832 to 899 MB/s (4 of 5 faster).
        (A stream whose own events are not plain reads, such as TLS, decides for itself: see
        SSLIOStream.)
        """
        if not self._plain_read_events:
            return True
        return self._take_read_turn()

    def _take_read_turn(self) -> bool:
        """True, and this pass noted, unless a new read of this stream already went to the kernel in it."""
        passes = self.io_loop._stream_hook.pass_number
        if self._read_pass == passes:
            return False
        self._read_pass = passes
        return True

    def _find_read_pos(self) -> Optional[int]:
        """Where the pending read can end in the buffered data, or None if it cannot end yet."""
        kind = self._read_kind
        if kind == _READ_DELIMITER:
            return self._find_delimiter()
        if kind == _READ_BYTES or kind == _READ_INTO:
            want = self._read_target
            have = self._user_filled if kind == _READ_INTO else len(self._read_buffer)
            if have >= want or (self._read_partial and have > 0):
                return want if want < have else have
            return None
        if kind == _READ_REGEX:
            buffer = self._read_buffer
            if buffer:
                regex = self._read_target
                end = buffer.search(regex)
                if end >= 0:
                    self._check_max_bytes(regex, end)
                    return end
                self._check_max_bytes(regex, len(buffer))
            return None
        return None

    def _find_delimiter(self) -> Optional[int]:
        """``_find_read_pos`` for ``read_until``: the search resumes where the last one gave up.

        The new search starts ``len(delimiter) - 1`` bytes before the end of the data already
        searched, so a delimiter split across two chunks is still found, and no byte is searched
        more than once per read.
        """
        buffer = self._read_buffer
        data = buffer._data
        base = buffer._pos
        size = len(data) - base
        if size <= 0:
            return None
        delimiter = self._read_target
        dlen = len(delimiter)
        start = self._read_scan - dlen + 1
        loc = data.find(delimiter, base + start if start > 0 else base)
        limit = self._read_max_bytes
        if loc >= 0:
            end = loc - base + dlen
            if limit is not None and end > limit:
                self._raise_unsatisfiable(delimiter)
            return end
        self._read_scan = size
        if limit is not None and size > limit:
            self._raise_unsatisfiable(delimiter)
        return None

    def _check_max_bytes(self, delimiter: Any, size: int) -> None:
        limit = self._read_max_bytes
        if limit is not None and size > limit:
            self._raise_unsatisfiable(delimiter)

    def _raise_unsatisfiable(self, delimiter: Any) -> None:
        limit = self._read_max_bytes
        raise UnsatisfiableReadError("delimiter %r not found within %d bytes" % (delimiter, limit or 0))

    def _read_from_buffer(self, pos: int) -> None:
        """Finishes the pending read with the first ``pos`` bytes (or ``pos`` bytes stored, for read_into)."""
        self._finish_read(pos)

    def _finish_read(self, size: int) -> None:
        if self._read_kind == _READ_INTO:
            result: Any = size
            self._user_buffer = None  # the caller's buffer is theirs again
            self._user_filled = 0
        else:
            buffer = self._read_buffer
            data = buffer._data
            if type(data) is bytes:
                # The common cases, inline: all of one received chunk is handed over as it is;
                # part of it is sliced off (the rest stays in place, no copy).
                start = buffer._pos
                end = start + size
                if end >= len(data):
                    result = data if start == 0 else data[start:]
                    buffer._data = b""
                    buffer._pos = 0
                else:
                    result = data[start:end]
                    buffer._pos = end
            else:
                result = buffer.consume(size)
        self._read_kind = _NO_READ
        future = self._read_future
        if future is not None:
            self._read_future = None
            _resolve_read(future, result)
        state = self._state
        if (state is None or state == _ERROR) and self._close_callback is not None:
            self._maybe_add_error_listener()

    def _close_for_read_error(self, e: Exception) -> None:
        """Closes the stream for an error met while reading from the kernel into the buffer, logged as
        Tornado logs it: an unsatisfiable read (delimiter not within ``max_bytes``) at INFO, the rest
        as a warning."""
        if isinstance(e, UnsatisfiableReadError):
            gen_log.info("Unsatisfiable read, closing connection: %s" % e)
        else:
            gen_log.warning("error on read: %s" % e)
        self.close(exc_info=e)

    def _clear_read_state(self) -> None:
        self._read_kind = _NO_READ
        self._read_target = None
        self._read_max_bytes = None
        self._read_partial = False
        if self._user_buffer is not None:
            self._user_buffer = None
            self._user_filled = 0

    def _start_read(self) -> Future:
        if self._read_future is not None:
            # A read left pending by a close reports the close rather than a usage error.
            self._check_closed()
            raise AssertionError("Already reading")
        future: Future = Future()
        future._loop = self.io_loop
        self._read_future = future
        return future

    def _handle_write(self) -> None:
        buffer = self._write_buffer
        while buffer:
            try:
                with buffer.peek(buffer._size) as data:  # type: ignore[union-attr]
                    sent = self.write_to_fd(data)
                if not sent:
                    break
                buffer.advance(sent)  # type: ignore[union-attr]
                self._total_write_done_index += sent
                self._bytes_written += sent
            except BlockingIOError:
                break
            except OSError as e:
                self._on_write_error(e)
                return
        self._resolve_written_futures()

    def _resolve_written_futures(self) -> None:
        futures = self._write_futures
        if futures:
            done_index = self._total_write_done_index
            while futures:
                index, future = futures[0]
                if index > done_index:
                    break
                futures.popleft()
                future_set_result_unless_cancelled(future, None)

    def _on_write_error(self, e: OSError) -> None:
        if not self._is_connreset(e):
            # A reset or broken pipe is the peer leaving; anything else deserves a line in the log.
            gen_log.warning("Write error on %s: %s", self.fileno(), e)
        self.close(exc_info=e)

    def _check_closed(self) -> None:
        if self._closed:
            raise StreamClosedError(real_error=self.error)

    def _maybe_add_error_listener(self) -> None:
        # An idle stream watches READ only if someone wants to hear of a close (the close callback):
        # a fresh connection about to read or write anyway would just pay for an extra update.
        state = self._state
        if state is None or state == _ERROR:
            if not self._closed and not self._read_buffer and self._close_callback is not None:
                self._add_io_state(_READ)

    def _add_io_state(self, state: int) -> None:
        """Adds ``state`` (READ and/or WRITE) to what the loop watches for this stream."""
        if self._closed:
            return
        current = self._state
        if current is None:
            self._state = _ERROR | state
            self.io_loop.add_handler(self.fileno(), self._handle_events, self._state)
        elif not current & state:
            self._state = current | state
            self.io_loop.update_handler(self.fileno(), self._state)

    def _is_connreset(self, exc: BaseException) -> bool:
        """True if ``exc`` means the peer reset or abandoned the connection."""
        return isinstance(exc, OSError) and errno_from_exception(exc) in _ERRNO_CONNRESET


class IOStream(BaseIOStream):
    """A stream over a socket, connected already (from ``accept``) or connected with ``connect``.

    ``IOStream(sock, max_buffer_size=None, read_chunk_size=None, max_write_buffer_size=None)``.
    Writing while ``connect`` is still in progress is allowed: the data goes out once connected.
    """

    __slots__ = ("socket",)

    # True while this stream itself has turned TCP_NODELAY on for bulk sends (see ``_bulk_nodelay``);
    # a class-level default, so only a stream that makes large sends carries it.
    _auto_nodelay = False

    def __init__(self, socket: socket.socket, *args: Any, **kwargs: Any) -> None:
        self.socket = socket
        socket.setblocking(False)
        if args or kwargs or type(self) is not IOStream:
            super().__init__(*args, **kwargs)
        else:
            BaseIOStream.__init__(self)  # every accepted connection: no super object, no argument packing

    def fileno(self) -> Any:
        return self.socket

    def _handle_events(self, fd: Any, events: int) -> None:
        # The commonest event of all: a request line arrives for a ``read_until`` waiting with
        # nothing buffered (a request-response exchange).  One ``recv``, one search of what it
        # returned, the read finished: the general path's steps (read loop, chunk reader,
        # ``_finish_read``) in this one frame, with none of their other cases (about 170 bytecodes
        # less per message).  A waiting ``read_bytes`` (a bulk chunk) has its own short path.
        # Anything else, or anything unusual on the way, takes the general path.
        if (
            events == _READ
            and not self._read_buffer._data
            and self._plain_read_events
            and not self._connecting
            and not self._closed
            and getattr(self.read_from_fd, "__func__", None) is _socket_read_from_fd
        ):
            kind = self._read_kind
            if kind == _READ_DELIMITER and self._read_max_bytes is None:
                size = self.read_chunk_size
                try:
                    chunk = self.socket.recv(size)
                except BlockingIOError:
                    self._maybe_readable = False
                    return
                except OSError as e:
                    self._read_failed(e)
                    return
                delimiter = self._read_target
                loc = chunk.find(delimiter)
                if loc < 0:
                    self._read_on_from(chunk, size)  # (the end of the stream too: an empty chunk)
                    return
                count = len(chunk)
                self._bytes_read += count
                self._maybe_readable = count >= size
                end = loc + len(delimiter)
                if end < count:
                    buffer = self._read_buffer
                    buffer._data = chunk  # the rest stays buffered, uncopied
                    buffer._pos = end
                    chunk = chunk[:end]
                self._read_kind = _NO_READ
                future = self._read_future
                if future is not None:
                    self._read_future = None
                    _resolve_read(future, chunk)
                state = self._state
                if (state is None or state == _ERROR) and self._close_callback is not None:
                    self._maybe_add_error_listener()
                return
            if kind == _READ_BYTES:
                self._read_bytes_now()
                return
        BaseIOStream._handle_events(self, fd, events)

    def _read_bytes_now(self) -> None:
        """``_handle_events``'s path for a waiting ``read_bytes`` with nothing buffered (a bulk chunk):
        one ``recv`` and the read finished, without the general read loop's other cases."""
        size = self.read_chunk_size
        try:
            chunk = self.socket.recv(size)
        except BlockingIOError:
            self._maybe_readable = False
            return
        except OSError as e:
            self._read_failed(e)
            return
        count = len(chunk)
        want = self._read_target
        if count < want and not (count and self._read_partial):
            self._read_on_from(chunk, size)  # (the end of the stream too: an empty chunk)
            return
        buffer = self._read_buffer
        buffer._data = chunk  # a read it satisfies whole returns it uncopied
        buffer._pos = 0
        self._bytes_read += count
        self._maybe_readable = count >= size
        self._finish_read(want if want < count else count)

    def _read_failed(self, e: OSError) -> None:
        """What the general read path does when ``recv`` fails: close, and log unless the peer reset."""
        self.close(exc_info=e)
        if not self._is_connreset(e):
            gen_log.warning("error on read: %s" % e)

    def _read_on_from(self, chunk: bytes, size: int) -> None:
        """``_handle_events``'s fast paths, when the chunk ``recv`` returned does not finish the read:
        the general read loop's steps from its first chunk on (buffer it, look again, read more)."""
        if not chunk:
            self.close()  # end of file: the close finishes whatever read it can
            return
        buffer = self._read_buffer
        buffer._data = chunk
        buffer._pos = 0
        count = len(chunk)
        self._bytes_read += count
        self._maybe_readable = count >= size
        try:
            if count > self.max_buffer_size:
                self._buffer_overflow()
            pos = self._find_read_pos()
            if pos is None and self._maybe_readable:
                pos = self._read_to_buffer_loop()
        except Exception as e:
            self._close_for_read_error(e)
            return
        if pos is not None:
            self._finish_read(pos)

    def close_fd(self) -> None:
        if self._auto_nodelay:
            self._forget_auto_nodelay()
        try:
            self.socket.close()
        except OSError:
            pass  # the descriptor was already gone (closed behind our back): closed either way
        self.socket = None  # type: ignore[assignment]

    def get_fd_error(self) -> Optional[Exception]:
        code = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return socket.error(code, os.strerror(code))

    def read_from_fd(self, buf: Union[bytearray, memoryview]) -> Optional[int]:
        try:
            return self.socket.recv_into(buf, len(buf))
        except BlockingIOError:
            return None
        finally:
            del buf  # no lingering reference to a view of the caller's buffer

    def write_to_fd(self, data: memoryview) -> int:
        try:
            if len(data) >= _nodelay_check_from:
                size = len(data)
                if (size >= _BULK_SEND) is not self._auto_nodelay:
                    self._bulk_nodelay(size)  # a change between bulk and small sends (or a first bulk one)
            return self.socket.send(data)
        finally:
            del data

    _gather_writes = hasattr(socket.socket, "sendmsg")

    def _gather_to_fd(self, pieces: list) -> int:
        if getattr(self.write_to_fd, "__func__", None) is not _socket_write_to_fd:
            # write_to_fd is replaced (a test, or a subclass): honour it.
            return self.write_to_fd(b"".join(pieces))  # type: ignore[arg-type]
        size = sum(map(len, pieces))
        if size >= _nodelay_check_from and (size >= _BULK_SEND) is not self._auto_nodelay:
            self._bulk_nodelay(size)
        return self.socket.sendmsg(pieces)

    def _bulk_nodelay(self, size: int) -> None:
        """Turns TCP_NODELAY on for a send of ``size`` >= _BULK_SEND bytes, and back off for a smaller one.

        A large send rarely ends on a segment boundary, and Nagle's algorithm holds its last, partial
        segment until the peer has acknowledged the earlier data: with one large write after another
        (a bulk transfer, a proxy), every write's tail waits for an ACK, and the kernel sends it
        later from the ACK's processing (and a timer).  That hold costs the sender about a quarter of
        its CPU per MB on a loopback bulk echo (benchmarks/bulk_profile.py: kernel ms/MB 0.47 ->
        0.29-0.34) and coalesces nothing: the next write is large as well.  So while a stream sends
        large pieces, Nagle is off, turned back on before its next smaller send, where it can
        coalesce again.  (What decides is the size handed to the kernel at once: a large write's
        rest the kernel refused before counts by what is sent.)  Not for TLS: OpenSSL writes a
        large write as one socket write per 16 KiB record, which Nagle usefully coalesces (with
        TCP_NODELAY the TLS bulk echo was no cheaper: 2.06 -> 2.13 ms/MB, 3 rounds).
        A stream on which the application turned TCP_NODELAY on (``set_nodelay(True)``, or
        the socket came so) is left alone, as is a non-TCP socket.  (Tornado never changes
        TCP_NODELAY by itself; see docs/differences.md.)
        """
        global _auto_nodelay_streams, _nodelay_check_from
        sock = self.socket
        try:
            if size >= _BULK_SEND:
                if not self._auto_nodelay and _socket_family(sock) in _TCP_FAMILIES:
                    if not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY):
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        self._auto_nodelay = True
                        _auto_nodelay_streams += 1
                        _nodelay_check_from = 0
            elif self._auto_nodelay:
                self._forget_auto_nodelay()
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        except OSError:
            # A socket being torn down refuses options: the send that follows reports what matters.
            pass

    def _read_chunk(self, size: int) -> Optional[Union[bytes, bytearray]]:
        if getattr(self.read_from_fd, "__func__", None) is not _socket_read_from_fd:
            # read_from_fd is replaced (a TLS stream, or a test): honour it.
            return BaseIOStream._read_chunk(self, size)
        try:
            data = self.socket.recv(size)
        except BlockingIOError:
            self._maybe_readable = False
            return None
        if len(data) < size:
            # A stream socket returns less than asked only when its receive queue is empty.
            self._maybe_readable = False
        return data

    def connect(self: _IOStreamType, address: Any, server_hostname: Optional[str] = None) -> "Future[_IOStreamType]":
        """Connects the socket to ``address`` without blocking; the future's result is the stream.

        ``address`` is what ``socket.connect`` takes for this socket's family.  A host name is
        resolved synchronously (blocking the loop): use ``TCPClient`` to resolve asynchronously.
        ``server_hostname`` matters only to TLS streams.  Writes may be issued before the connection
        completes.
        """
        self._connecting = True
        future: Future[_IOStreamType] = Future()
        self._connect_future = future
        try:
            self.socket.connect(address)
        except BlockingIOError:
            pass  # in progress: completion is reported as writability
        except OSError as e:
            # Some systems refuse a local connection at once; treat it like a later failure.
            self.close(exc_info=e)
            return future
        self._add_io_state(_WRITE)
        return future

    def _handle_connect(self) -> None:
        try:
            err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as e:
            # Some systems refuse SO_ERROR on sockets whose errors are always reported synchronously.
            if errno_from_exception(e) != errno.ENOPROTOOPT:
                raise
            err = 0
        if err != 0:
            self.error = socket.error(err, os.strerror(err))
            if self._connect_future is None:
                gen_log.warning("Connect error on fd %s: %s", self.socket.fileno(), errno.errorcode[err])
            self.close()
            return
        future = self._connect_future
        if future is not None:
            self._connect_future = None
            future_set_result_unless_cancelled(future, self)
        self._connecting = False

    def _forget_auto_nodelay(self) -> None:
        """TCP_NODELAY is no longer this stream's own doing (turned back off, chosen by the application, closed)."""
        global _auto_nodelay_streams, _nodelay_check_from
        self._auto_nodelay = False
        _auto_nodelay_streams -= 1
        if not _auto_nodelay_streams:
            _nodelay_check_from = _BULK_SEND

    def set_nodelay(self, value: bool) -> None:
        sock = self.socket
        if self._auto_nodelay:
            self._forget_auto_nodelay()  # the application's choice from now on (see _bulk_nodelay)
        if sock is not None and _socket_family(sock) in _TCP_FAMILIES:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if value else 0)
            except OSError as e:
                # A socket closing under us refuses options; that is not worth an exception.
                if e.errno != errno.EINVAL and not self._is_connreset(e):
                    raise

    def start_tls(
        self,
        server_side: bool,
        ssl_options: Union[Dict[str, Any], ssl.SSLContext, None] = None,
        server_hostname: Optional[str] = None,
    ) -> "Future[SSLIOStream]":
        """Hands the connection over to a new ``SSLIOStream`` (STARTTLS); the future resolves with it.

        For protocols that start in clear text and switch to TLS (SMTP, IMAP, XMPP ...).  Only
        allowed while the stream is idle: no read, write or connect pending and nothing buffered
        either way (``ValueError`` otherwise); data still in the kernel is fine.  ``ssl_options`` is
        an ``ssl.SSLContext`` or a dict of ``ssl.wrap_socket``-style keywords (default: the system
        trust store for a client; a server must give its certificate); ``server_hostname`` is what
        a client checks the certificate against and sends as SNI.

        The future resolves once the handshake is done (failing with its error otherwise); the close
        callback moves to the new stream, and this stream must not be used any more.  Cancelling the
        future closes the new stream and its socket.
        """
        if self._cork:
            self._flush_cork()  # replies reported written go out in the clear, before the handshake
        if (
            self._read_future is not None
            or self._write_futures
            or self._connect_future is not None
            or self._closed
            or self._read_buffer
            or self._write_buffer
        ):
            raise ValueError("IOStream is not idle; cannot convert to SSL")
        if ssl_options is None:
            ssl_options = _server_ssl_defaults() if server_side else _client_ssl_defaults()
        sock = self.socket
        if self._auto_nodelay:
            # Nagle back on, as the application left it: the TLS stream decides for itself.
            self._bulk_nodelay(0)
        if self._state is not None:
            # The loop must forget the plain socket object before wrapping detaches it.
            self.io_loop.remove_handler(sock)
            self._state = None
        wrapped = ssl_wrap_socket(
            sock, ssl_options, server_hostname=server_hostname, server_side=server_side, do_handshake_on_connect=False
        )
        self.socket = None  # type: ignore[assignment]
        close_callback = self._close_callback
        self._close_callback = None
        future: Future[SSLIOStream] = Future()
        stream = SSLIOStream(
            wrapped,
            ssl_options=ssl_options,
            max_buffer_size=self.max_buffer_size,
            read_chunk_size=self.read_chunk_size,
            max_write_buffer_size=self.max_write_buffer_size,
        )
        stream._ssl_connect_future = future
        stream.set_close_callback(close_callback)
        tracker = self._tracker
        if tracker is not None:
            self._tracker = None
            tracker.stream_replaced(self, stream)
        # The caller can reach the new stream only through the future: if it gives up (cancels),
        # the stream closes itself rather than leak the socket.
        future.add_done_callback(stream._close_if_cancelled)
        return future


_socket_read_from_fd = IOStream.read_from_fd
_socket_write_to_fd = IOStream.write_to_fd


class PipeIOStream(BaseIOStream):
    """A stream over a pipe's file descriptor (an int, as ``os.pipe`` returns).

    Pipes go one way, so one stream either reads or writes.  Unix only.
    """

    __slots__ = ("fd", "_fd_closed")

    def __init__(self, fd: int, *args: Any, **kwargs: Any) -> None:
        if sys.platform == "win32":
            raise AssertionError("PipeIOStream is not supported on Windows")
        self.fd = fd
        self._fd_closed = False
        os.set_blocking(fd, False)
        super().__init__(*args, **kwargs)

    def fileno(self) -> int:
        return self.fd

    def close_fd(self) -> None:
        if not self._fd_closed:
            self._fd_closed = True
            try:
                os.close(self.fd)
            except OSError:
                pass  # already gone: closed either way

    def write_to_fd(self, data: memoryview) -> int:
        try:
            return os.write(self.fd, data)
        finally:
            del data

    def read_from_fd(self, buf: Union[bytearray, memoryview]) -> Optional[int]:
        try:
            return os.readv(self.fd, [buf])
        except BlockingIOError:
            return None
        except OSError as e:
            if errno_from_exception(e) == errno.EBADF:
                # Reported readable, yet unreadable: the descriptor is gone, and so is the stream.
                self.close(exc_info=e)
                return None
            raise
        finally:
            del buf

    def _read_chunk(self, size: int) -> Optional[Union[bytes, bytearray]]:
        if getattr(self.read_from_fd, "__func__", None) is not _pipe_read_from_fd:
            return BaseIOStream._read_chunk(self, size)
        try:
            data = os.read(self.fd, size)
        except BlockingIOError:
            self._maybe_readable = False
            return None
        except OSError as e:
            if errno_from_exception(e) == errno.EBADF:
                self.close(exc_info=e)
                return None
            raise
        if 0 < len(data) < size:
            self._maybe_readable = False  # a pipe read returns less than asked only when drained
        return data


_pipe_read_from_fd = PipeIOStream.read_from_fd


# --------------------------------------------------------------------------------------------------
# TLS: SSLIOStream (and IOStream.start_tls, above, which hands a connection over to one).
#
# The handshake runs on the loop like any other I/O: each step is one non-blocking do_handshake(),
# and between steps the loop watches exactly the direction OpenSSL asked for, so a peer that stalls
# costs nothing.  Reads and writes issued meanwhile wait; they are served the moment it completes.
# --------------------------------------------------------------------------------------------------

# An SSL object takes at most 2 GiB per call: reads and writes are clipped to 1 GiB (either may
# always do less than asked).
_TLS_MAX_IO = 1 << 30
# The most data one TLS record carries (2**14 bytes, in every TLS version).
_TLS_RECORD = 16384


class SSLIOStream(IOStream):
    """A stream over a TLS connection (Tornado's ``SSLIOStream``).

    A connected socket must already be wrapped, without a handshake::

        ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)

    An unconnected one is wrapped by ``connect`` once the TCP connection is up.  The keyword argument
    ``ssl_options`` (an ``ssl.SSLContext`` or a dict of ``ssl.wrap_socket``-style keywords) is what
    ``connect`` wraps with; by default the system's trust store and hostname checks.

    Reads and writes may be issued before the handshake completes; they proceed after it.  A failed
    handshake closes the stream: ``error`` holds the ``ssl.SSLError`` (or ``OSError``) and pending
    operations fail with :class:`StreamClosedError`.
    """

    __slots__ = (
        "_ssl_connect_future",
        "_ssl_options",
        "_ssl_accepting",
        "_handshake_reading",
        "_handshake_writing",
        "_server_hostname",
        "_tls_end",
        "_tls_bulk",
    )
    _gather_writes = False  # write_to_fd encrypts: corked data is joined first

    socket: ssl.SSLSocket

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        ssl_options = kwargs.pop("ssl_options", None)
        self._ssl_options: Union[Dict[str, Any], ssl.SSLContext] = (
            ssl_options if ssl_options is not None else _client_ssl_defaults()
        )
        super().__init__(*args, **kwargs)
        # Failed with the real error (not StreamClosedError) when the stream closes.
        self._ssl_connect_future: Optional[Future] = None
        self._ssl_accepting = True
        self._handshake_reading = False
        self._handshake_writing = False
        self._server_hostname: Optional[str] = None
        # What a read met after it had already got data (an error, or True for the end of the
        # stream): delivered by the next read, so the data in hand goes out first.
        self._tls_end: Union[None, bool, BaseException] = None
        # Full-size records are arriving (bulk data): read several per chunk (see _read_chunk).
        self._tls_bulk = False
        sock = self.socket
        if getattr(sock, "server_side", False):
            # Accepted, so connected: the client speaks first (its hello), so wait to read.
            self._handshake_reading = True
            self._add_io_state(_READ)
            return
        try:
            sock.getpeername()
        except OSError:
            return  # not connected yet: connect() wraps the socket and starts the handshake
        # A connected client (start_tls): it opens the handshake as soon as the socket is writable.
        self._handshake_writing = True
        self._add_io_state(_WRITE)

    # -- state ----------------------------------------------------------------------------------

    def reading(self) -> bool:
        return self._handshake_reading or self._read_future is not None

    def writing(self) -> bool:
        return self._handshake_writing or bool(self._write_buffer)

    def _add_io_state(self, state: int) -> None:
        if self._ssl_accepting and self._state is not None:
            # During the handshake the loop watches only what the handshake needs (else a write
            # queued meanwhile would have it report a writable socket on every pass); what reads and
            # writes wait for is taken up once the handshake is done.
            return
        IOStream._add_io_state(self, state)

    def _watch_handshake(self) -> None:
        state = _ERROR
        if self._handshake_reading:
            state |= _READ
        if self._handshake_writing:
            state |= _WRITE
        current = self._state
        if current is None:
            self._state = state
            self.io_loop.add_handler(self.fileno(), self._handle_events, state)
        elif state != current:
            self._state = state
            self.io_loop.update_handler(self.fileno(), state)

    # -- the handshake ----------------------------------------------------------------------------

    def _handle_events(self, fd: Any, events: int) -> None:
        if not self._ssl_accepting:
            BaseIOStream._handle_events(self, fd, events)
            return
        if self._closed:
            gen_log.warning("Got events for closed stream %s", fd)
            return
        try:
            if self._connecting:
                self._handle_connect()  # wraps the socket once the TCP connection is up
                if self._closed:
                    return
            self._do_ssl_handshake()
            if self._closed:
                return
            if self._ssl_accepting:
                if events & _ERROR:
                    # An error or hang-up the handshake did not trip over: it can never complete,
                    # and the poller would report the same condition on every pass.
                    self.close(exc_info=self.get_fd_error())
                    return
                self._watch_handshake()
                return
        except Exception as e:
            gen_log.error("Uncaught exception, closing connection.", exc_info=True)
            self.close(exc_info=e)
            raise
        # Just completed: serve what waited for it (a pending read may find data already there, queued
        # writes go out), then watch what the stream needs from now on.  With no read pending nothing
        # is read now (the poller still watches READ): the next new read then tries the socket at
        # once, as Tornado's does, where a read here would most likely find the kernel empty and
        # leave that read waiting for the poller (Tornado's test_inline_read_error: an error of the
        # socket is raised by the read call itself).
        if self._read_future is not None:
            events |= _READ
        else:
            events &= ~_READ
        BaseIOStream._handle_events(self, fd, events | _WRITE)

    def _do_ssl_handshake(self) -> None:
        """One step of the handshake; closes the stream if it fails."""
        self._handshake_reading = False
        self._handshake_writing = False
        sock = self.socket
        try:
            sslobj = sock._sslobj  # type: ignore[attr-defined]
            if sslobj is not None:
                # Straight to the SSL object: SSLSocket.do_handshake also resets the socket's timeout
                # (a system call) on every step.
                sslobj.do_handshake()
            else:
                sock.do_handshake()  # raises the right error (the socket was reset before wrapping)
        except ssl.SSLWantReadError:
            self._handshake_reading = True
            return
        except ssl.SSLWantWriteError:
            self._handshake_writing = True
            return
        except ssl.SSLError as err:
            code = err.args[0]
            if code in (ssl.SSL_ERROR_EOF, ssl.SSL_ERROR_ZERO_RETURN):
                # The peer hung up mid-handshake (a port scan, a health check): nothing to report.
                self.close(exc_info=err)
                return
            if code in (ssl.SSL_ERROR_SSL, ssl.SSL_ERROR_SYSCALL):
                try:
                    peer: Any = sock.getpeername()
                except Exception:
                    peer = "(not connected)"
                gen_log.warning("SSL Error on %s %s: %s", sock.fileno(), peer, err)
                self.close(exc_info=err)
                return
            raise
        except OSError as err:
            # A reset is a peer leaving; EBADF, ENOTCONN and errno 0 come from port scanners that
            # connect and drop at once.  All of them end this connection quietly.
            if self._is_connreset(err) or err.args[0] in (0, errno.EBADF, errno.ENOTCONN):
                self.close(exc_info=err)
                return
            raise
        except AttributeError as err:
            # The connection was reset before it was wrapped: the SSL socket has no SSL object.
            self.close(exc_info=err)
            return
        self._ssl_accepting = False
        self._finish_ssl_connect()

    def _finish_ssl_connect(self) -> None:
        future = self._ssl_connect_future
        if future is not None:
            self._ssl_connect_future = None
            future_set_result_unless_cancelled(future, self)

    def wait_for_handshake(self) -> "Future[SSLIOStream]":
        """A future resolved with this stream once the TLS handshake is done.

        Afterwards the peer's certificate, the cipher and the ALPN protocol are available on
        ``self.socket``.  Meant for server streams and after ``start_tls`` (``connect`` already waits
        for it).  Only one wait may be pending (``RuntimeError``); once done, a new call resolves at
        once.  If the handshake fails, the future fails with the error that closed the stream
        (usually an ``ssl.SSLError``).
        """
        if self._ssl_connect_future is not None:
            raise RuntimeError("Already waiting")
        future: Future[SSLIOStream] = Future()
        if not self._ssl_accepting:
            future.set_result(self)
        elif self._closed:
            # Failed before anyone waited: report it rather than leave the waiter hanging.
            future.set_exception(self.error if self.error is not None else StreamClosedError())
        else:
            self._ssl_connect_future = future
        return future

    def connect(  # type: ignore[override]
        self, address: Any, server_hostname: Optional[str] = None
    ) -> "Future[SSLIOStream]":
        """Connects, then runs the handshake; the future resolves with the stream when both are done.

        ``server_hostname`` is sent as SNI and is what the server's certificate is checked against
        (unless the context disables the check).
        """
        self._server_hostname = server_hostname
        # A dict of options becomes a context now, so a bad key fails this call (not the connection
        # later) and the context is built once.
        self._ssl_options = ssl_options_to_context(self._ssl_options, server_side=False)
        # The TCP-level future only matters through the handshake's: mark it seen so that a refused
        # connection is reported once, by the future returned here.
        IOStream.connect(self, address).add_done_callback(_mark_retrieved)
        return self.wait_for_handshake()

    def _handle_connect(self) -> None:
        IOStream._handle_connect(self)
        if self._closed:
            return
        # Now connected: wrap the socket.  The loop holds the plain socket object, which wrapping
        # detaches, so it forgets it first; _watch_handshake registers the wrapped one.
        self.io_loop.remove_handler(self.socket)
        self._state = None
        self.socket = ssl_wrap_socket(
            self.socket,
            self._ssl_options,
            server_hostname=self._server_hostname,
            server_side=False,
            do_handshake_on_connect=False,
        )

    def _close_if_cancelled(self, future: Future) -> None:
        # start_tls's caller gave up on the handshake: nobody else can reach this stream to close it.
        if future.cancelled():
            self.close()

    # -- data -------------------------------------------------------------------------------------
    #
    # OpenSSL hands out at most one record (16 KiB of data) per read.  Two facts shape the reads:
    # * a record shorter than the maximum ends what the peer wrote in one go, so after it the kernel
    #   is most likely empty: the stream then waits for the poller (``_maybe_readable = False``)
    #   instead of making a read that would only report WANT_READ (which costs as much as a small
    #   read).  OpenSSL reads exactly one record at a time from the socket, so whatever it has not
    #   handed out yet is still in the kernel, where the poller sees it;
    # * full-size records mean bulk data: those are gathered several at a time into one buffer.
    # Data left inside the SSL object (the rest of a record larger than the space given to a read,
    # ``SSLSocket.pending()``) is invisible to the poller: after such a read the stream stays
    # "maybe readable", so its next read tries the SSL object before waiting.

    def _may_read_this_pass(self) -> bool:
        # Turns as for a plain stream, but only while the poller sees everything left to read: not
        # during the handshake, nor with decrypted data or the end of the stream held by the TLS object.
        sslobj = getattr(self.socket, "_sslobj", None)
        if self._ssl_accepting or self._tls_end is not None or sslobj is None or sslobj.pending():
            return True
        return self._take_read_turn()

    def _read_chunk(self, size: int) -> Optional[Union[bytes, bytearray]]:
        sock = self.socket
        sslobj = sock._sslobj  # type: ignore[attr-defined]
        if (
            self._ssl_accepting
            or self._tls_end is not None
            or sslobj is None
            or getattr(self.read_from_fd, "__func__", None) is not _tls_read_from_fd
        ):
            # A case read_from_fd deals with (or read_from_fd was replaced: honour it).
            return BaseIOStream._read_chunk(self, size)
        # Records as the bytes OpenSSL makes: no zero-filled buffer to allocate, and a read that wants
        # exactly one record's data gets this very object.  In bulk (full records) the first is asked
        # for at its size, so that the bytes object is not made larger than it needs to be.
        want = size if size < _TLS_MAX_IO else _TLS_MAX_IO
        if self._tls_bulk and want > _TLS_RECORD:
            want = _TLS_RECORD
        try:
            data = sslobj.read(want)
        except ssl.SSLWantReadError:
            self._maybe_readable = False
            return None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
            end = self._end_of_stream(e)
            if end is not True:
                raise end  # type: ignore[misc]
            return b""  # see read_from_fd
        count = len(data)
        if count < _TLS_RECORD:
            self._tls_bulk = False
            if 0 < count < size:
                self._maybe_readable = False  # a short record, wholly read: the burst is over
            return data
        self._tls_bulk = True
        if count >= size:
            return data
        return self._gather_records(sslobj, data, size)

    def _gather_records(self, sslobj: Any, first: bytes, size: int) -> bytes:
        """A full record, ``first``, and the records already readable behind it: up to ``size`` bytes.

        Read as bytes objects and joined once (one copy), rather than decrypted into a zero-filled
        bytearray that a read then copies into bytes.  What stops the gathering after some data (an
        error, the end of the stream) is left in ``_tls_end`` for the next read.
        """
        records = [first]
        count = len(first)
        while count < size:
            want = size - count
            data = self._next_record(sslobj, want if want < _TLS_RECORD else _TLS_RECORD)
            if data is None:
                break
            records.append(data)
            count += len(data)
            if len(data) < _TLS_RECORD and count < size:
                self._maybe_readable = False  # a short record: the burst is over
                break
        return b"".join(records)

    def read_from_fd(self, buf: Union[bytearray, memoryview]) -> Optional[int]:
        """Decrypts into ``buf``: the count, 0 at the end of the stream, None if nothing is ready."""
        try:
            if self._ssl_accepting:
                return None  # nothing can be read before the handshake is done
            end = self._tls_end
            if end is not None:
                self._tls_end = None
                if end is True:
                    return 0
                raise end  # type: ignore[misc]
            sslobj = self.socket._sslobj  # type: ignore[attr-defined]
            if sslobj is None:
                return self.socket.recv_into(buf)  # raises the right error for a closed socket
            size = len(buf)
            if size > _TLS_MAX_IO:
                size = _TLS_MAX_IO
            try:
                count = sslobj.read(size, buf)
            except ssl.SSLWantReadError:
                self._maybe_readable = False  # OpenSSL drained the socket: wait for the poller
                return None
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
                # The peer closed without close_notify, or with it when we had sent ours: an end of
                # stream like any other (what ssl's suppress_ragged_eofs does for recv).
                end = self._end_of_stream(e)
                if end is not True:
                    raise end  # type: ignore[misc]
                return 0
            if count < _TLS_RECORD:
                if 0 < count < size:
                    self._maybe_readable = False  # a short record, wholly read: the burst is over
                return count
            # A full record: gather the ones behind it into the rest of buf.
            with memoryview(buf) as view:
                while count < size:
                    with view[count:size] as rest:
                        more = self._next_record(sslobj, size - count, rest)
                    if more is None:
                        break
                    count += more
                    if more < _TLS_RECORD and count < size:
                        self._maybe_readable = False
                        break
            return count
        finally:
            del buf

    def _next_record(self, sslobj: Any, want: int, into: Optional[memoryview] = None) -> Any:
        """One more record's data for a read gathering the records already readable: what
        ``sslobj.read`` gives (bytes, or a count when reading ``into`` a buffer), or None where the
        gathering stops: OpenSSL has nothing more decrypted (the poller will tell), or the stream
        ended or failed, which ``_tls_end`` keeps for the next read, after the data gathered."""
        try:
            data = sslobj.read(want) if into is None else sslobj.read(want, into)
        except ssl.SSLWantReadError:
            self._maybe_readable = False  # OpenSSL drained the socket: wait for the poller
            return None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
            self._tls_end = self._end_of_stream(e)
            return None
        except OSError as e:
            self._tls_end = e
            return None
        if not data:
            self._tls_end = True  # close_notify
            return None
        return data

    def _end_of_stream(self, error: BaseException) -> Union[bool, BaseException]:
        """What a read's EOF from OpenSSL means: True (the end of the stream), or the descriptor's error.

        OpenSSL reports a read on a descriptor closed behind the stream's back (``os.close``) as an EOF
        without close_notify, like a peer's ragged close.  A plain stream's ``recv`` raises EBADF
        there, and so does Tornado's TLS stream (from the close that follows): so a ragged EOF checks
        the descriptor (one system call, once per connection at most) and, if it is gone, that error
        is what the read raises.
        """
        if isinstance(error, ssl.SSLEOFError):
            try:
                self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
            except OSError as e:
                return e
        return True

    def write_to_fd(self, data: memoryview) -> int:
        try:
            if self._ssl_accepting:
                return 0  # queued until the handshake is done
            if len(data) > _TLS_MAX_IO:
                data = data[:_TLS_MAX_IO]
            sslobj = self.socket._sslobj  # type: ignore[attr-defined]
            if sslobj is None:
                return self.socket.send(data)
            # OpenSSL writes all of ``data`` or reports WANT_WRITE having kept its place; the retry
            # passes the same bytes (the write buffer's front, perhaps longer), as it requires.
            return sslobj.write(data)
        except ssl.SSLWantWriteError:
            # WANT_READ (a renegotiation) is not handled: like Tornado, it fails the write.
            return 0
        finally:
            del data

    def _is_connreset(self, exc: BaseException) -> bool:
        if isinstance(exc, ssl.SSLError) and exc.args[0] == ssl.SSL_ERROR_EOF:
            return True
        return IOStream._is_connreset(self, exc)


_tls_read_from_fd = SSLIOStream.read_from_fd


__all__ = [
    "BaseIOStream",
    "IOStream",
    "PipeIOStream",
    "SSLIOStream",
    "StreamBufferFullError",
    "StreamClosedError",
    "UnsatisfiableReadError",
]
