"""A non-blocking TCP server: accepts connections and hands each to ``handle_stream`` as an IOStream.

Subclass ``TCPServer`` and override ``handle_stream`` (a plain method or a coroutine).  Start it in
one of three ways: ``listen(port)`` in one process; ``bind(port)`` then ``start(n)`` to fork workers;
or ``bind_sockets`` + ``process.fork_processes`` + ``add_sockets``.

This layer owns listening sockets and turns accepted ones into streams; it never reads or writes a
connection's bytes itself, and a failure in one connection's handler never stops the server.
"""

import errno
import functools
import os
import socket
import ssl
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Union, cast

from tornado_lite import gen, process
from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import IOStream, SSLIOStream
from tornado_lite.log import app_log
from tornado_lite.netutil import (
    _DEFAULT_BACKLOG,
    add_accept_handler,
    bind_sockets,
    ssl_options_to_context,
    ssl_wrap_socket,
)
from tornado_lite.util import errno_from_exception

__all__ = ["TCPServer"]


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


def _finish_handler(stream: IOStream, future: Any) -> None:
    """Runs when a handle_stream coroutine ends: on failure, closes its stream and lets the loop log it."""
    if future.cancelled() or future.exception() is not None:
        # Nobody will use the connection now; without this the client would wait until it is collected.
        stream.close()
    future.result()  # raises here, inside a loop callback: the loop logs it to app_log


class TCPServer:
    """A non-blocking, single-threaded TCP server; override :meth:`handle_stream`.

    ``ssl_options`` (an ``ssl.SSLContext``, or a dict of ``ssl.wrap_socket``-style keywords, of which
    ``certfile`` is required) makes it serve TLS through ``SSLIOStream``.  ``max_buffer_size`` and
    ``read_chunk_size`` are passed to every stream.
    """

    def __init__(
        self,
        ssl_options: Union[Dict[str, Any], ssl.SSLContext, None] = None,
        max_buffer_size: Optional[int] = None,
        read_chunk_size: Optional[int] = None,
    ) -> None:
        self.ssl_options = ssl_options
        self._ssl_context = _check_ssl_options(ssl_options) if ssl_options is not None else None
        self._sockets: Dict[int, socket.socket] = {}
        self._handlers: Dict[int, Callable[[], None]] = {}
        self._pending_sockets: List[socket.socket] = []
        self._started = False
        self._stopped = False
        self.max_buffer_size = max_buffer_size
        self.read_chunk_size = read_chunk_size

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

    def _handle_connection(self, connection: socket.socket, address: Any) -> None:
        context = self._ssl_context
        if context is not None:
            try:
                connection = ssl_wrap_socket(connection, context, server_side=True, do_handshake_on_connect=False)
            except ssl.SSLError as err:
                connection.close()
                if err.args[0] == ssl.SSL_ERROR_EOF:
                    return
                raise
            except OSError as err:
                # A client that connects and leaves at once (a port scan) makes wrap_socket's
                # getpeername fail; that is not the server's problem.
                connection.close()
                if errno_from_exception(err) in (errno.ECONNABORTED, errno.EINVAL, errno.ENOTCONN):
                    return
                raise
        stream: Optional[IOStream] = None
        try:
            if context is not None:
                stream = SSLIOStream(
                    connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
                )
            else:
                stream = IOStream(
                    connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
                )
            result = self.handle_stream(stream, address)
            if result is not None:
                future = gen.convert_yielded(result)
                cast(IOLoop, IOLoop.current()).add_future(future, functools.partial(_finish_handler, stream))
        except Exception:
            app_log.error("Error in connection callback", exc_info=True)
            # A handler that failed cannot be serving this connection: close it rather than leak it.
            if stream is not None:
                stream.close()
            else:
                connection.close()

