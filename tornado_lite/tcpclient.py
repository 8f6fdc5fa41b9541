"""Outgoing TCP connections: resolve a name, connect to one of its addresses, optionally start TLS.

``TCPClient.connect(host, port)`` resolves ``host`` with a ``netutil.Resolver``, then connects with
"Happy Eyeballs" (RFC 6555): the addresses are split by family, the first family (the one the
resolver listed first) is tried first, and if it has not connected within
``_INITIAL_CONNECT_TIMEOUT`` (or fails at once) the other family is tried alongside.  Each family has
at most one attempt in flight; the first attempt to connect wins and every other one is closed.

This layer creates client sockets and hands them to ``IOStream``; it never reads or writes data,
and it must not import ``tcpserver`` or ``testing`` (it sits beside the former, below the latter).
"""

import datetime
import functools
import numbers
import socket
import ssl
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union, cast

from tornado_lite import gen
from tornado_lite.concurrent import CancelledError, Future, future_add_done_callback
from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import IOStream
from tornado_lite.netutil import Resolver

# Seconds the first family gets to itself before the other family is tried too.
_INITIAL_CONNECT_TIMEOUT = 0.3

_AddrInfo = List[Tuple[Any, Any]]
_Attempt = Callable[[socket.AddressFamily, Tuple], Tuple[IOStream, "Future[IOStream]"]]


def _format_addr(addr: Any) -> str:
    """``1.2.3.4:443`` for IPv4, ``[::1]:443`` for IPv6, ``str(addr)`` for anything else."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        if isinstance(host, str) and ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    return str(addr)


class _Connector:
    """One Happy Eyeballs race over a resolved address list; ``start()`` returns its future.

    ``connect(af, addr)`` makes one attempt and returns ``(stream, future)``; it may also raise
    (say, for a family this host lacks), which counts as an immediate failure of that address.
    The race's future resolves to ``(af, addr, stream)`` of the winner, or fails with the last
    attempt's error once every address has failed.  ``streams`` holds every attempt's stream but
    the winner's; all of them are closed once the race is decided, so no socket outlives it.
    """

    __slots__ = (
        "io_loop",
        "connect",
        "future",
        "timeout",
        "connect_timeout",
        "last_error",
        "remaining",
        "primary_addrs",
        "secondary_addrs",
        "streams",
        "pending_addrs",
    )

    def __init__(self, addrinfo: _AddrInfo, connect: _Attempt) -> None:
        self.io_loop: IOLoop = cast(IOLoop, IOLoop.current())
        self.connect = connect
        self.future: Future[Tuple[socket.AddressFamily, Any, IOStream]] = Future()
        self.timeout: Any = None  # the handle that starts the secondary family
        self.connect_timeout: Any = None  # the handle of the caller's overall deadline
        self.last_error: Optional[BaseException] = None
        self.remaining = len(addrinfo)  # attempts not yet finished (or not yet made)
        self.primary_addrs, self.secondary_addrs = self.split(addrinfo)
        self.streams: Set[Any] = set()
        # Addresses being connected to right now: named in the message of a connect timeout.
        self.pending_addrs: Set[Any] = set()

    @staticmethod
    def split(addrinfo: _AddrInfo) -> Tuple[_AddrInfo, _AddrInfo]:
        """``(primary, secondary)``: the first entry's family, in order, and everything else."""
        first_family = addrinfo[0][0]
        primary = [(af, addr) for af, addr in addrinfo if af == first_family]
        secondary = [(af, addr) for af, addr in addrinfo if af != first_family]
        return primary, secondary

    def start(
        self,
        timeout: float = _INITIAL_CONNECT_TIMEOUT,
        connect_timeout: Optional[Union[float, datetime.timedelta]] = None,
    ) -> "Future[Tuple[socket.AddressFamily, Any, IOStream]]":
        """Starts the race.  ``timeout``: seconds before the secondary family joins;
        ``connect_timeout``: a deadline (``IOLoop.time()`` or a timedelta) for the whole race."""
        # Timers first: a first attempt that fails synchronously moves on to the secondary family
        # at once, which cancels the timer.
        self.set_timeout(timeout)
        if connect_timeout is not None:
            self.set_connect_timeout(connect_timeout)
        self.try_connect(iter(self.primary_addrs))
        future_add_done_callback(self.future, self.on_future_done)
        return self.future

    def try_connect(self, addrs: Iterator[Tuple[socket.AddressFamily, Any]]) -> None:
        """Starts an attempt on the next address of one family's queue."""
        entry = next(addrs, None)
        if entry is None:
            # This family is exhausted.  The race is lost only once the other one is too.
            if self.remaining == 0 and not self.future.done():
                self.future.set_exception(self.last_error or IOError("connection failed"))
                # A cancelled attempt finishes without its stream being closed: close it now.
                self.close_streams()
            return
        af, addr = entry
        try:
            stream, attempt = self.connect(af, addr)
        except Exception as e:
            attempt = Future()
            # Without its traceback: that holds this frame, whose ``self`` would hold the error
            # (as ``last_error``), a reference cycle per failed race.
            attempt.set_exception(e.with_traceback(None))
        else:
            self.streams.add(stream)
            self.pending_addrs.add(addr)
        future_add_done_callback(attempt, functools.partial(self.on_connect_done, addrs, af, addr))

    def on_connect_done(
        self,
        addrs: Iterator[Tuple[socket.AddressFamily, Any]],
        af: socket.AddressFamily,
        addr: Any,
        attempt: "Future[IOStream]",
    ) -> None:
        self.remaining -= 1
        self.pending_addrs.discard(addr)
        # The failure is looked at, not raised: raised here, its traceback would hold this frame and
        # so this connector, which keeps it as last_error (a reference cycle per failed attempt).
        failure = CancelledError() if attempt.cancelled() else attempt.exception()
        if failure is not None:
            if self.future.done():
                return
            # A cancelled attempt is a failed one, but its CancelledError is not the race's error:
            # nobody cancelled the caller.
            if not isinstance(failure, CancelledError):
                self.last_error = failure
            self.try_connect(addrs)
            if self.timeout is not None:
                # Something failed: no reason to wait before giving the other family its turn.
                self.on_timeout()
            return
        stream = attempt.result()
        self.clear_timeouts()
        if self.future.done():
            stream.close()  # a late winner: the race is already decided
            return
        self.streams.discard(stream)
        self.future.set_result((af, addr, stream))
        self.close_streams()

    def on_future_done(self, future: "Future[Tuple[socket.AddressFamily, Any, IOStream]]") -> None:
        if future.cancelled():
            # The caller gave up: stop the attempts rather than let the OS time them out.
            self.clear_timeouts()
            self.close_streams()

    def set_timeout(self, timeout: float) -> None:
        self.timeout = self.io_loop.add_timeout(self.io_loop.time() + timeout, self.on_timeout)

    def on_timeout(self) -> None:
        """The primary family had its head start: let the secondary family race too."""
        if self.timeout is not None:
            self.io_loop.remove_timeout(self.timeout)
            self.timeout = None
        if not self.future.done():
            self.try_connect(iter(self.secondary_addrs))

    def clear_timeout(self) -> None:
        if self.timeout is not None:
            self.io_loop.remove_timeout(self.timeout)
            self.timeout = None

    def set_connect_timeout(self, connect_timeout: Union[float, datetime.timedelta]) -> None:
        self.connect_timeout = self.io_loop.add_timeout(connect_timeout, self.on_connect_timeout)

    def on_connect_timeout(self) -> None:
        self.connect_timeout = None
        if not self.future.done():
            if self.pending_addrs:
                where = ", ".join(sorted(_format_addr(addr) for addr in self.pending_addrs))
                message = "Timeout while connecting to " + where
            else:
                message = "Timeout while connecting"
            self.future.set_exception(TimeoutError(message))
        self.close_streams()

    def clear_timeouts(self) -> None:
        self.clear_timeout()
        if self.connect_timeout is not None:
            self.io_loop.remove_timeout(self.connect_timeout)
            self.connect_timeout = None

    def close_streams(self) -> None:
        for stream in self.streams:
            stream.close()


def _deadline(timeout: Union[float, datetime.timedelta]) -> float:
    """A relative timeout (seconds or timedelta) as a deadline on the current loop's clock."""
    now = cast(IOLoop, IOLoop.current()).time()
    if isinstance(timeout, numbers.Real):
        return now + float(timeout)
    if isinstance(timeout, datetime.timedelta):
        return now + timeout.total_seconds()
    raise TypeError("Unsupported timeout %r" % (timeout,))


class TCPClient:
    """Makes outgoing TCP (and TLS) connections; ``connect()`` returns a connected ``IOStream``.

    ``resolver`` turns host names into addresses; without one, the client makes (and ``close()``
    closes) a default ``Resolver()``.
    """

    def __init__(self, resolver: Optional[Resolver] = None) -> None:
        if resolver is not None:
            self.resolver = resolver
            self._own_resolver = False
        else:
            self.resolver = Resolver()
            self._own_resolver = True

    def close(self) -> None:
        """Releases the resolver if this client created it."""
        if self._own_resolver:
            self.resolver.close()

    async def connect(
        self,
        host: str,
        port: int,
        af: socket.AddressFamily = socket.AF_UNSPEC,
        ssl_options: Optional[Union[Dict[str, Any], ssl.SSLContext]] = None,
        max_buffer_size: Optional[int] = None,
        source_ip: Optional[str] = None,
        source_port: Optional[int] = None,
        timeout: Optional[Union[float, datetime.timedelta]] = None,
    ) -> IOStream:
        """Connects to ``host``:``port`` and returns the stream (an ``SSLIOStream`` with ``ssl_options``).

        ``af`` restricts the address family.  ``source_ip`` / ``source_port`` bind the local end
        first (a port without an IP binds to the loopback address of the family).  ``timeout`` (in
        seconds or a timedelta) bounds the whole operation; ``TimeoutError``'s message names the
        phase that ran out: resolving, connecting (with the addresses tried) or the TLS handshake.
        A refused or failed connection raises the last attempt's error (``StreamClosedError``,
        whose ``real_error`` is the ``OSError``).
        """
        deadline = _deadline(timeout) if timeout is not None else None
        # The futures awaited below are never kept in locals: a failure raised into this frame keeps
        # the frame in its traceback, and a local holding the failed future would close a cycle.
        addrinfo = await self._resolve(host, port, af, deadline)
        attempt = functools.partial(
            self._create_stream, max_buffer_size, source_ip=source_ip, source_port=source_port
        )
        af, addr, stream = await _Connector(addrinfo, attempt).start(connect_timeout=deadline)
        if ssl_options is None:
            return stream
        return await self._start_tls(stream, host, addr, ssl_options, deadline)

    def _resolve(self, host: str, port: int, af: socket.AddressFamily, deadline: Optional[float]) -> Any:
        resolving = self.resolver.resolve(host, port, af)
        if deadline is None:
            return resolving
        return gen.with_timeout(deadline, resolving, message=f"Timeout while resolving {host}")

    async def _start_tls(
        self,
        stream: IOStream,
        host: str,
        addr: Any,
        ssl_options: Union[Dict[str, Any], ssl.SSLContext],
        deadline: Optional[float],
    ) -> IOStream:
        # Connections are always made in clear text; TLS starts once one has won the race.
        try:
            handshake = stream.start_tls(False, ssl_options=ssl_options, server_hostname=host)
        except BaseException:
            stream.close()  # the caller never sees this stream, so nobody else would close it
            raise
        try:
            if deadline is not None:
                return await gen.with_timeout(
                    deadline, handshake, message=lambda: "Timeout during TLS handshake with " + _format_addr(addr)
                )
            return await handshake
        finally:
            # On a timeout or a cancellation the handshake is still running: cancelling it closes
            # the TLS stream, which now owns the socket.  Once the handshake is done this does nothing.
            handshake.cancel()

    def _create_stream(
        self,
        max_buffer_size: Optional[int],
        af: socket.AddressFamily,
        addr: Tuple,
        source_ip: Optional[str] = None,
        source_port: Optional[int] = None,
    ) -> Tuple[IOStream, "Future[IOStream]"]:
        """Makes one connection attempt: a new socket (bound first if asked) and its connect future."""
        bind_port = source_port if isinstance(source_port, int) else 0
        bind_ip = source_ip
        if bind_port and not source_ip:
            # A port alone: bind to the loopback address of the socket's family.
            bind_ip = "::1" if af == socket.AF_INET6 else "127.0.0.1"
        sock = socket.socket(af)
        try:
            if bind_port or bind_ip:
                sock.bind((bind_ip, bind_port))
            stream = IOStream(sock, max_buffer_size=max_buffer_size)
        except BaseException:
            sock.close()
            raise
        return stream, stream.connect(addr)


__all__ = ["TCPClient"]
