"""A non-blocking TCP server: accepts connections and hands each to ``handle_stream`` as an IOStream.

Subclass ``TCPServer`` and override ``handle_stream`` (a plain method or a coroutine).  Start it in
one of three ways: ``listen(port)`` in one process; ``bind(port)`` then ``start(n)`` to fork workers;
or ``bind_sockets`` + ``process.fork_processes`` + ``add_sockets``.

This layer owns listening sockets and turns accepted ones into streams; it never reads or writes a
connection's bytes itself, and a failure in one connection's handler never stops the server.

Beyond Tornado, all opt-in (without them the server behaves as Tornado's): ``drain`` (stop
accepting, let handlers finish, cut the rest at a deadline) and ``drain_on_signal``; the keyword
arguments ``max_connections``, ``idle_timeout`` and ``handshake_timeout``; and ``stats()``, an
always-on snapshot of counters that cost an integer add per read/write syscall in iostream.
"""

import errno
import os
import signal
import socket
import ssl
import time
import types
import weakref
from typing import Any, Awaitable, Callable, Dict, Iterable, List, NamedTuple, Optional, Set, Tuple, Union, cast

from tornado_lite import gen, process
from tornado_lite.concurrent import Future
from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import BaseIOStream, IOStream, SSLIOStream
from tornado_lite.log import app_log, gen_log
from tornado_lite.netutil import (
    _DEFAULT_BACKLOG,
    add_accept_handler,
    bind_sockets,
    ssl_options_to_context,
    ssl_wrap_socket,
)
from tornado_lite.util import errno_from_exception

__all__ = [
    "DrainResult",
    "DrainTimeoutError",
    "HandshakeTimeoutError",
    "IdleTimeoutError",
    "ServerStats",
    "TCPServer",
]


# Loop passes a drain waits, after cutting, for the cut handlers to see their streams closed (a
# failed read resumes its coroutine on the next pass, whose end is reported on the one after).
_UNWIND_PASSES = 10


_MIN_SWEEP_SECONDS = 0.01

_CoroutineType = types.CoroutineType

class IdleTimeoutError(TimeoutError):
    """Why a stream was closed: no byte went either way for ``idle_timeout`` seconds.

    Found as ``StreamClosedError.real_error`` (and ``stream.error``) by the connection's handler.
    """


class HandshakeTimeoutError(TimeoutError):
    """Why a TLS stream was closed: its client did not finish the handshake within ``handshake_timeout``."""


class DrainTimeoutError(TimeoutError):
    """Why a stream was closed: the server was drained and the drain's deadline came first."""


class DrainResult(NamedTuple):
    """What :meth:`TCPServer.drain` did: connections that ended by themselves, and connections it cut."""

    finished: int
    cut: int


class ServerStats(NamedTuple):
    """A snapshot of a server's counters (see :meth:`TCPServer.stats`).

    Byte counts are application bytes (plain text on TLS) that reached or left the kernel, over
    every connection the server accepted, open or closed.  ``limit_hits`` counts the times
    ``max_connections`` made the server stop accepting.
    """

    open_connections: int
    accepted: int
    closed: int
    bytes_in: int
    bytes_out: int
    accepting: bool
    limit_hits: int
    idle_timeouts: int
    handshake_timeouts: int
    drains: int
    drain_finished: int
    drain_cut: int


def _check_ssl_options(ssl_options: Union[Dict[str, Any], ssl.SSLContext]) -> ssl.SSLContext:
    """Validates ``ssl_options`` now, so a mistake fails at start-up rather than on the first client."""
    if isinstance(ssl_options, dict):
        # certfile is the one required key (it may hold the key as well).
        if "certfile" not in ssl_options:
            raise KeyError('missing key "certfile" in ssl_options')
        if not os.path.exists(ssl_options["certfile"]):
            raise ValueError('certfile "%s" does not exist' % ssl_options["certfile"])
        if "keyfile" in ssl_options and not os.path.exists(ssl_options["keyfile"]):
            raise ValueError('keyfile "%s" does not exist' % ssl_options["keyfile"])
    # Builds the context once (rejecting unknown keys and unreadable certificates) instead of per connection.
    return ssl_options_to_context(ssl_options, server_side=True)


class _Counts:
    """A server's running totals; one object so that subclasses' attribute names cannot clash with them."""

    __slots__ = (
        "accepted",
        "closed",
        "bytes_in",
        "bytes_out",
        "limit_hits",
        "idle_timeouts",
        "handshake_timeouts",
        "drains",
        "drain_finished",
        "drain_cut",
    )

    def __init__(self) -> None:
        self.accepted = 0
        self.closed = 0
        self.bytes_in = 0  # of closed streams; open ones are summed when asked
        self.bytes_out = 0
        self.limit_hits = 0
        self.idle_timeouts = 0
        self.handshake_timeouts = 0
        self.drains = 0
        self.drain_finished = 0
        self.drain_cut = 0


class _Connection(weakref.ref):
    """One accepted connection: a weak reference to its stream, and everything the server tracks of it.

    One object per connection does every job, since one is made per accept: it is the stream's
    ``_tracker`` (the stream calls ``stream_closed``/``stream_replaced``), the weak reference whose
    callback tells the server if the stream is collected without being closed (Tornado lets an
    abandoned stream's socket close that way), the entry a drain waits on (in ``_live_conns`` while
    the stream is open or the ``handle_stream`` coroutine runs), and what is called when that
    coroutine ends: the end-callback of the task running a native coroutine (``gen.start_task``),
    else a done-callback.  On failure it closes the stream and raises the error, for the loop to log.

    It holds its stream strongly only while that coroutine runs (the coroutine holds it anyway), so
    tracking never keeps an abandoned stream alive.  ``seen`` and ``active_at`` are the idle check's
    memory: the bytes the stream had moved at the last sweep, and when that count last changed; they
    are set only when they matter (``active_at`` at the accept if a timeout is on, both by the
    sweep) and read with the defaults 0 and 0.0 until then (each store costs, on every connection).
    After a ``start_tls`` the connection goes on in another stream, tracked by a
    :class:`_SuccessorRecord` (the server's ``_successors``).

    ``__call__`` is the handler's end, so the stream is read with :func:`_deref`, not ``conn()``.
    """

    __slots__ = ("server", "stream_open", "handler_running", "stream", "seen", "active_at")
    # Made with ``_Connection(stream, _stream_collected)`` and the fields then set: no Python-level
    # constructor.  ``stream`` is set only for a coroutine handler, before this object is given to
    # its task or future.
    server: "TCPServer"
    stream_open: bool
    handler_running: bool
    stream: Optional[BaseIOStream]
    seen: int
    active_at: float

    def __call__(self, future: "Future[Any]") -> None:  # type: ignore[override]
        stream = self.stream
        self.stream = None
        self.server._handler_done(self)
        try:
            future.result()  # the common end: returned normally
        except BaseException:
            # Failed or cancelled.  Nobody will use the connection now; without this the client would
            # wait until it is collected.  The error goes on for the loop to log to app_log.
            if stream is not None:
                stream.close()
            raise

    def stream_closed(self, stream: BaseIOStream) -> None:
        server = self.server
        counts = server._counts
        counts.bytes_in += stream._bytes_read
        counts.bytes_out += stream._bytes_written
        server._stream_ended(self)
        if server._accept_paused:
            server._maybe_resume_accepting()

    def stream_replaced(self, old: BaseIOStream, new: BaseIOStream) -> None:
        self.server._stream_replaced(self, self, old, new)


# The referent of a _Connection (whose own call is the handler's end) or of a _SuccessorRecord.
_deref = weakref.ref.__call__


class _SuccessorRecord(weakref.ref):
    """The ``_tracker`` of a stream that took a connection over (``start_tls``): rare, so a second object.

    Fields and calls as for :class:`_Connection`'s stream; ``conn`` is the connection it belongs to.
    """

    __slots__ = ("conn", "seen", "active_at")
    conn: _Connection
    seen: int
    active_at: float

    def stream_closed(self, stream: BaseIOStream) -> None:
        self.conn.stream_closed(stream)

    def stream_replaced(self, old: BaseIOStream, new: BaseIOStream) -> None:
        self.conn.server._stream_replaced(self.conn, self, old, new)


_StreamRecord = Union[_Connection, _SuccessorRecord]


def _stream_collected(conn: _Connection) -> None:
    conn.server._stream_collected(conn, conn)


def _successor_collected(record: _SuccessorRecord) -> None:
    record.conn.server._stream_collected(record.conn, record)


def _wake(waiter: Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class TCPServer:
    """A non-blocking, single-threaded TCP server; override :meth:`handle_stream`.

    ``ssl_options`` (an ``ssl.SSLContext``, or a dict of ``ssl.wrap_socket``-style keywords, of which
    ``certfile`` is required) makes it serve TLS through ``SSLIOStream``.  ``max_buffer_size`` and
    ``read_chunk_size`` are passed to every stream.

    Optional limits (keyword only; None, the default, means none, as in Tornado):

    - ``max_connections``: with that many streams open, the server stops watching its listening
      sockets, so further clients wait in the kernel's backlog; it resumes when one closes.
    - ``idle_timeout``: a stream that moved no byte either way for that many seconds is closed with
      :class:`IdleTimeoutError` as its error.
    - ``handshake_timeout``: a TLS stream whose handshake is not done that long after the accept is
      closed with :class:`HandshakeTimeoutError`.

    The two timeouts are checked by one periodic sweep per server (only while it has streams), a
    quarter of the shorter timeout apart: a stream is closed after at least its timeout, and at most
    half as long again.
    """

    def __init__(
        self,
        ssl_options: Union[Dict[str, Any], ssl.SSLContext, None] = None,
        max_buffer_size: Optional[int] = None,
        read_chunk_size: Optional[int] = None,
        *,
        max_connections: Optional[int] = None,
        idle_timeout: Optional[float] = None,
        handshake_timeout: Optional[float] = None,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError("max_connections must be at least 1, not %r" % (max_connections,))
        for name, value in (("idle_timeout", idle_timeout), ("handshake_timeout", handshake_timeout)):
            if value is not None and not value > 0:
                raise ValueError("%s must be a positive number of seconds, not %r" % (name, value))
        self.ssl_options = ssl_options
        self._ssl_context = _check_ssl_options(ssl_options) if ssl_options is not None else None
        self._sockets: Dict[int, socket.socket] = {}
        self._handlers: Dict[int, Callable[[], None]] = {}
        self._pending_sockets: List[socket.socket] = []
        self._started = False
        self._stopped = False
        self.max_buffer_size = max_buffer_size
        self.read_chunk_size = read_chunk_size
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self._counts = _Counts()
        self._live_conns: Set[_Connection] = set()
        # The record of the stream each connection now runs in, for those that changed streams (start_tls).
        self._successors: Dict[_Connection, _SuccessorRecord] = {}
        self._accept_paused = False  # by max_connections
        self._io_loop: Optional[IOLoop] = None  # the loop the connections run on (set at the first)
        self._sweep_timer: Any = None
        self._drain_waiters: List[Future] = []
        self._signal_draining = False

    def listen(
        self,
        port: int,
        address: Optional[str] = None,
        family: socket.AddressFamily = socket.AF_UNSPEC,
        backlog: int = _DEFAULT_BACKLOG,
        flags: Optional[int] = None,
        reuse_port: bool = False,
    ) -> None:
        """Starts accepting on ``port`` at once (the IOLoop must run); arguments as for ``bind_sockets``.

        May be called several times, for several ports or addresses.
        """
        self.add_sockets(bind_sockets(port, address, family, backlog, flags, reuse_port))

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Starts accepting on listening sockets made elsewhere (e.g. ``bind_sockets`` before forking)."""
        for sock in sockets:
            fd = sock.fileno()
            self._sockets[fd] = sock
            if self._accept_paused:
                self._handlers[fd] = _not_watching  # watched when accepting resumes
            else:
                self._handlers[fd] = add_accept_handler(sock, self._handle_connection)

    def add_socket(self, socket: socket.socket) -> None:
        """``add_sockets`` for one socket."""
        self.add_sockets([socket])

    def bind(
        self,
        port: int,
        address: Optional[str] = None,
        family: socket.AddressFamily = socket.AF_UNSPEC,
        backlog: int = _DEFAULT_BACKLOG,
        flags: Optional[int] = None,
        reuse_port: bool = False,
    ) -> None:
        """Binds ``port`` now and starts accepting on it at :meth:`start` (deprecated since Tornado 6.2).

        Arguments as for ``bind_sockets``; may be called several times before ``start``.
        """
        sockets = bind_sockets(port, address, family, backlog, flags, reuse_port)
        if self._started:
            self.add_sockets(sockets)
        else:
            self._pending_sockets.extend(sockets)

    def start(self, num_processes: Optional[int] = 1, max_restarts: Optional[int] = None) -> None:
        """Starts accepting on the sockets from :meth:`bind`, after forking workers unless ``num_processes`` is 1.

        ``num_processes`` of ``None`` or <= 0 forks one worker per CPU; see ``process.fork_processes``
        (which also takes ``max_restarts``).  No IOLoop may exist before a forking start.
        """
        if self._started:
            raise RuntimeError("TCPServer.start() may only be called once")
        self._started = True
        if num_processes != 1:
            process.fork_processes(num_processes, max_restarts)
        sockets, self._pending_sockets = self._pending_sockets, []
        self.add_sockets(sockets)

    def stop(self) -> None:
        """Stops accepting and closes the listening sockets; open connections carry on.

        Safe to call twice, and from inside ``handle_stream``.
        """
        if self._stopped:
            return
        self._stopped = True
        for fd, sock in self._sockets.items():
            self._handlers.pop(fd)()
            sock.close()
        self._sockets.clear()
        for sock in self._pending_sockets:
            sock.close()
        self._pending_sockets = []

    def handle_stream(self, stream: IOStream, address: tuple) -> Optional[Awaitable[None]]:
        """Override to serve one connection.  May be a coroutine; a failure is logged and the stream closed.

        Accepting goes on while it runs.  With TLS, it may be called before the handshake is done
        (``SSLIOStream.wait_for_handshake`` waits for it).
        """
        raise NotImplementedError()

    # -- beyond Tornado: drain, statistics ---------------------------------------------------------

    async def drain(self, timeout: float) -> DrainResult:
        """Stops accepting, waits up to ``timeout`` seconds for every connection to end, then cuts the rest.

        A connection has ended once its stream is closed and its ``handle_stream`` coroutine (if it
        is one) has returned.  At the deadline every stream still open is closed with
        :class:`DrainTimeoutError` as its error (the handler sees ``StreamClosedError``).  The
        listening sockets are closed at once, as by :meth:`stop`.
        """
        self.stop()
        counts = self._counts
        counts.drains += 1
        start = len(self._live_conns)
        if start and timeout > 0:
            waiter: Future[None] = Future()
            self._drain_waiters.append(waiter)
            loop = cast(IOLoop, IOLoop.current())
            timer = loop.call_later(timeout, _wake, waiter)
            try:
                await waiter
            finally:
                loop.remove_timeout(timer)
                if waiter in self._drain_waiters:
                    self._drain_waiters.remove(waiter)
        cut = len(self._live_conns)
        if cut:
            for _, stream in self._open_streams():
                if not stream.closed():
                    stream.close(exc_info=DrainTimeoutError("server drained: deadline of %gs passed" % timeout))
            # Handlers blocked on a stream learn of the close a few loop passes later: let them
            # unwind (their except/finally blocks) before the caller, say, stops the loop.
            for _ in range(_UNWIND_PASSES):
                if not self._live_conns:
                    break
                await gen.moment
        finished = max(start - cut, 0)
        counts.drain_finished += finished
        counts.drain_cut += cut
        return DrainResult(finished, cut)

    def drain_on_signal(
        self, sig: int = signal.SIGTERM, timeout: float = 10.0, then: Optional[Callable[[], Any]] = None
    ) -> Any:
        """On signal ``sig``, drains the server (see :meth:`drain`), then calls ``then()`` if given.

        Typically ``server.drain_on_signal(signal.SIGTERM, 30, then=IOLoop.current().stop)``.  A
        second signal during the drain ends its wait at once (the remaining connections are cut).
        Call from the main thread, with the loop the server runs on current.  Returns the previous
        handler of ``sig`` (as ``signal.signal`` does).
        """
        loop = cast(IOLoop, IOLoop.current())

        def on_signal(signum: int, frame: Any) -> None:
            # Runs between two bytecodes of whatever the main thread was doing: only hand the work to
            # the loop (add_callback is safe here and wakes the loop's poll).
            loop.add_callback(self._drain_for_signal, timeout, then)

        return signal.signal(sig, on_signal)

    async def _drain_for_signal(self, timeout: float, then: Optional[Callable[[], Any]]) -> None:
        if self._signal_draining:
            for waiter in self._drain_waiters:
                _wake(waiter)  # a second signal: stop waiting
            return
        self._signal_draining = True
        try:
            result = await self.drain(timeout)
            gen_log.info("Drained on signal: %d connections finished, %d cut", result.finished, result.cut)
        finally:
            self._signal_draining = False
            if then is not None:
                then()

    def stats(self) -> ServerStats:
        """A snapshot of this server's counters (cost: a pass over its open connections)."""
        counts = self._counts
        bytes_in = counts.bytes_in
        bytes_out = counts.bytes_out
        for _, stream in self._open_streams():
            bytes_in += stream._bytes_read
            bytes_out += stream._bytes_written
        return ServerStats(
            open_connections=counts.accepted - counts.closed,
            accepted=counts.accepted,
            closed=counts.closed,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            accepting=bool(self._sockets) and not self._stopped and not self._accept_paused,
            limit_hits=counts.limit_hits,
            idle_timeouts=counts.idle_timeouts,
            handshake_timeouts=counts.handshake_timeouts,
            drains=counts.drains,
            drain_finished=counts.drain_finished,
            drain_cut=counts.drain_cut,
        )

    # -- connection bookkeeping --------------------------------------------------------------------

    def _track_limits(self, conn: _Connection, stream: BaseIOStream) -> None:
        """The part of tracking a new connection that only the first one, or the opt-in limits, need."""
        counts = self._counts
        if self._io_loop is None:
            self._io_loop = stream.io_loop
        if self.idle_timeout is not None or self.handshake_timeout is not None:
            conn.active_at = time.monotonic()
            if self._sweep_timer is None:
                self._schedule_sweep()
        limit = self.max_connections
        if limit is not None and counts.accepted - counts.closed >= limit and not self._accept_paused:
            self._pause_accepting()

    def _open_streams(self) -> List[Tuple[_StreamRecord, BaseIOStream]]:
        """The streams of this server not yet closed, each with its record (a snapshot)."""
        found = []
        successors = self._successors
        for conn in list(self._live_conns):
            if not conn.stream_open:
                continue
            record: _StreamRecord = successors.get(conn, conn) if successors else conn
            stream = _deref(record)
            if stream is not None:
                found.append((record, stream))
        return found

    def _stream_collected(self, conn: _Connection, record: _StreamRecord) -> None:
        # Abandoned without a close (its socket closes as it is freed): a closed connection whose
        # byte counts are lost.  This may run inside the garbage collector, at any point of the
        # loop's work: only bookkeeping here, the listening sockets are touched from the loop.
        # (A stream that was closed, or that handed the connection on by start_tls, is not news.)
        if not conn.stream_open or self._successors.get(conn, conn) is not record:
            return
        self._stream_ended(conn)
        if self._accept_paused and self._io_loop is not None:
            self._io_loop.add_callback(self._maybe_resume_accepting)

    def _stream_replaced(
        self, conn: _Connection, record: _StreamRecord, old: BaseIOStream, new: BaseIOStream
    ) -> None:
        # start_tls: the same connection goes on in a new stream.  The old one's bytes are done with.
        counts = self._counts
        counts.bytes_in += old._bytes_read
        counts.bytes_out += old._bytes_written
        successor = _SuccessorRecord(new, _successor_collected)
        successor.conn = conn
        if getattr(record, "active_at", 0.0):
            successor.active_at = time.monotonic()
        new._tracker = successor
        self._successors[conn] = successor

    def _stream_ended(self, conn: _Connection) -> None:
        self._counts.closed += 1
        conn.stream_open = False
        if not conn.handler_running:
            self._forget(conn)

    def _handler_done(self, conn: _Connection) -> None:
        conn.handler_running = False
        if not conn.stream_open:
            self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        live = self._live_conns
        live.discard(conn)
        if self._successors:
            self._successors.pop(conn, None)
        if not live and self._drain_waiters:
            for waiter in self._drain_waiters:
                _wake(waiter)

    def _pause_accepting(self) -> None:
        # The kernel keeps queueing new clients in the listen backlog meanwhile.
        self._accept_paused = True
        self._counts.limit_hits += 1
        for fd, remove in self._handlers.items():
            remove()
            self._handlers[fd] = _not_watching

    def _maybe_resume_accepting(self) -> None:
        if not self._accept_paused or self._stopped:
            return
        counts = self._counts
        limit = self.max_connections
        if limit is not None and counts.accepted - counts.closed >= limit:
            return
        self._accept_paused = False
        for fd, sock in self._sockets.items():
            self._handlers[fd] = add_accept_handler(sock, self._handle_connection)

    def _schedule_sweep(self) -> None:
        timeouts = [t for t in (self.idle_timeout, self.handshake_timeout) if t is not None]
        loop = self._io_loop
        if not timeouts or loop is None:
            return  # both turned off since (they are plain attributes)
        # A floor on the period: timeouts set to 0 (or tiny) after construction must not make the
        # sweep run on every loop pass.
        self._sweep_timer = loop.call_later(max(min(timeouts) / 4, _MIN_SWEEP_SECONDS), self._sweep)

    def _sweep(self) -> None:
        """Closes the streams past their idle or handshake timeout; runs only while there are streams."""
        self._sweep_timer = None
        now = time.monotonic()
        idle_timeout = self.idle_timeout
        handshake_timeout = self.handshake_timeout
        counts = self._counts
        for record, stream in self._open_streams():
            if stream.closed():
                continue
            moved = stream._bytes_read + stream._bytes_written
            if moved != getattr(record, "seen", 0):
                record.seen = moved
                record.active_at = now
                continue
            # No byte moved since the last sweep: quiet since active_at (the accept, if none ever did;
            # so during a TLS handshake, which moves no application bytes, this is its duration).
            quiet = now - getattr(record, "active_at", 0.0)
            if handshake_timeout is not None and getattr(stream, "_ssl_accepting", False):
                if quiet >= handshake_timeout:
                    counts.handshake_timeouts += 1
                    stream.close(exc_info=HandshakeTimeoutError("TLS handshake not done in %gs" % handshake_timeout))
            elif idle_timeout is not None and quiet >= idle_timeout:
                counts.idle_timeouts += 1
                stream.close(exc_info=IdleTimeoutError("no data either way for %gs" % idle_timeout))
        if counts.accepted > counts.closed:  # streams still open
            self._schedule_sweep()

    def _handle_connection(self, connection: socket.socket, address: Any) -> None:
        context = self._ssl_context
        if context is not None:
            try:
                connection.getpeername()
            except OSError:
                # Reset while it waited in the backlog (a port scan, a client that gave up): nothing to
                # serve.  Closed here, while we still own the descriptor; wrap_socket would fail on it
                # after taking the descriptor over, leaving it to the garbage collector.
                connection.close()
                return
            try:
                connection = ssl_wrap_socket(connection, context, server_side=True, do_handshake_on_connect=False)
            except ssl.SSLError as err:
                connection.close()
                # ENOTCONN: the client sent data and reset before the accept (the ssl module refuses to
                # wrap a closed socket with unread data in it); a client problem, like the EOF.
                if err.args[0] in (ssl.SSL_ERROR_EOF, errno.ENOTCONN):
                    return
                raise
            except OSError as err:
                # A client that connects and leaves at once (a port scan) makes wrap_socket's
                # getpeername fail, or its probe read find the reset; that is not the server's problem.
                connection.close()
                if errno_from_exception(err) in (errno.ECONNABORTED, errno.EINVAL, errno.ENOTCONN, errno.ECONNRESET):
                    return
                raise
        stream: Optional[IOStream] = None
        conn: Optional[_Connection] = None
        try:
            max_buffer_size, read_chunk_size = self.max_buffer_size, self.read_chunk_size
            if context is not None:
                stream = SSLIOStream(connection, max_buffer_size=max_buffer_size, read_chunk_size=read_chunk_size)
            elif max_buffer_size is None and read_chunk_size is None:
                stream = IOStream(connection)
            else:
                stream = IOStream(connection, max_buffer_size=max_buffer_size, read_chunk_size=read_chunk_size)
            # Tracked from here on (inline: once per connection; the rare part is _track_limits).
            conn = _Connection(stream, _stream_collected)
            conn.server = self
            conn.stream_open = True
            # Running until it is known not to be a coroutine: a coroutine's first step may close the
            # stream, and that is not the end of the connection yet.
            conn.handler_running = True
            stream._tracker = conn
            self._live_conns.add(conn)
            self._counts.accepted += 1
            if (
                self._io_loop is None
                or self.max_connections is not None
                or self.idle_timeout is not None
                or self.handshake_timeout is not None
            ):
                self._track_limits(conn, stream)
            result = self.handle_stream(stream, address)
            if result is None:
                self._handler_done(conn)
            else:
                conn.stream = stream
                if type(result) is _CoroutineType and len(gen.convert_yielded.registry) == 1:
                    # What convert_yielded and add_future do with a native coroutine (when nothing was
                    # registered that could claim it), without the dispatch on the way: a task started
                    # on the next loop pass, whose end is reported inline in its last step rather than
                    # by a done-callback a pass later.  The stream's loop is the current one.
                    gen.start_task(result, conn, stream.io_loop)
                else:
                    IOLoop.current().add_future(gen.convert_yielded(result), conn)
        except Exception:
            app_log.error("Error in connection callback", exc_info=True)
            if conn is not None:
                self._handler_done(conn)
            # A handler that failed cannot be serving this connection: close it rather than leak it.
            if stream is not None:
                stream.close()
            else:
                connection.close()


def _not_watching() -> None:
    """Stands for a listening socket's accept handler while accepting is paused (nothing to remove)."""
