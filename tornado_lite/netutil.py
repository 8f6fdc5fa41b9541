"""Sockets and names: listening sockets, the accept loop, name resolution and TLS contexts.

This layer turns addresses into bound, listening sockets, hands accepted connections to a callback,
resolves host names without blocking the loop, and builds ``ssl.SSLContext`` objects from Tornado's
``ssl_options``.  It never reads or writes a connection's data (that is iostream's job), never forks,
and never imports the stream layer.
"""

import concurrent.futures
import errno
import functools
import os
import socket
import ssl
import stat
import sys
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Union, cast

from tornado_lite.concurrent import dummy_executor, run_on_executor
from tornado_lite.ioloop import IOLoop
from tornado_lite.log import gen_log
from tornado_lite.util import Configurable, errno_from_exception

__all__ = [
    "BlockingResolver",
    "DefaultExecutorResolver",
    "DefaultLoopResolver",
    "ExecutorResolver",
    "OverrideResolver",
    "Resolver",
    "ThreadedResolver",
    "add_accept_handler",
    "bind_sockets",
    "bind_unix_socket",
    "is_valid_ip",
    "ssl_options_to_context",
    "ssl_wrap_socket",
]

# The listen() backlog when none is given, and the most connections taken per readiness event.
_DEFAULT_BACKLOG = 128

# Encoding with these codecs imports their modules now, in the importing thread: a first use from a
# resolver thread while another thread holds the import lock could otherwise deadlock.
"localhost".encode("idna")
"localhost".encode("latin1")


@functools.lru_cache(maxsize=1)
def _client_ssl_defaults() -> ssl.SSLContext:
    """The context clients use when given no ssl_options: system CAs, hostname checks, no compression."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.options |= getattr(ssl, "OP_NO_COMPRESSION", 0)
    return context


@functools.lru_cache(maxsize=1)
def _server_ssl_defaults() -> ssl.SSLContext:
    """The server-side counterpart of :func:`_client_ssl_defaults` (it still needs a certificate)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.options |= getattr(ssl, "OP_NO_COMPRESSION", 0)
    return context


# --------------------------------------------------------------------------------------------------
# Listening sockets
# --------------------------------------------------------------------------------------------------

# With port 0 on several families, the port the first family got may already be taken on another;
# then everything is closed and a fresh port is tried, this many times in all.
_SAME_PORT_ATTEMPTS = 10


class _PortTakenElsewhere(Exception):
    """The port picked for the first address is in use on a later one (only when port 0 was asked)."""


def bind_sockets(
    port: int,
    address: Optional[str] = None,
    family: socket.AddressFamily = socket.AF_UNSPEC,
    backlog: int = _DEFAULT_BACKLOG,
    flags: Optional[int] = None,
    reuse_port: bool = False,
) -> List[socket.socket]:
    """Returns non-blocking listening sockets for ``port`` on every address ``address`` names.

    ``address`` may be a host name, an IP literal, or ``None``/``""`` for all interfaces; with
    ``family=AF_UNSPEC`` that gives an IPv4 and an IPv6 socket where the machine has both.  Port 0
    picks a free port, the same one on every socket.  ``flags`` are ``AI_*`` flags for getaddrinfo
    (default ``AI_PASSIVE``); ``reuse_port`` sets ``SO_REUSEPORT`` (``ValueError`` where the platform
    lacks it).  IPv6 sockets are IPv6-only, so they never collide with the IPv4 ones.
    """
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("the platform doesn't support SO_REUSEPORT")
    if address == "":
        address = None
    if family == socket.AF_UNSPEC and not socket.has_ipv6:
        family = socket.AF_INET
    if flags is None:
        flags = socket.AI_PASSIVE
    infos = _addresses_to_bind(address, port, family, flags)
    attempts = _SAME_PORT_ATTEMPTS if port == 0 and len(infos) > 1 else 1
    for attempt in range(attempts):
        try:
            return _bind_each(infos, address, backlog, reuse_port)
        except _PortTakenElsewhere:
            if attempt == attempts - 1:
                raise OSError(errno.EADDRINUSE, "could not find a port free on every address") from None
    raise AssertionError("unreachable")


def _addresses_to_bind(address: Optional[str], port: int, family: int, flags: int) -> List[tuple]:
    """getaddrinfo's answers, de-duplicated, IPv4 first (so an IPv4 socket picks the shared port)."""
    seen = set()
    infos = []
    for info in sorted(socket.getaddrinfo(address, port, family, socket.SOCK_STREAM, 0, flags), key=lambda i: i[0]):
        if info in seen:
            continue
        seen.add(info)
        af, _, _, _, sockaddr = info
        # macOS lists link-local IPv6 ("fe80::1%lo0") for localhost; binding it as well as ::1 fails.
        if sys.platform == "darwin" and address == "localhost" and af == socket.AF_INET6 and sockaddr[3] != 0:
            continue
        infos.append(info)
    return infos


def _bind_each(infos: List[tuple], address: Optional[str], backlog: int, reuse_port: bool) -> List[socket.socket]:
    sockets: List[socket.socket] = []
    bound_port: Optional[int] = None
    try:
        for af, socktype, proto, _, sockaddr in infos:
            try:
                sock = socket.socket(af, socktype, proto)
            except OSError as e:
                if errno_from_exception(e) == errno.EAFNOSUPPORT:
                    continue  # e.g. IPv6 compiled in but disabled in this kernel
                raise
            sockets.append(sock)
            _set_listening_options(sock, af, reuse_port)
            asked_for_any_port = sockaddr[1] == 0
            if asked_for_any_port and bound_port is not None:
                sockaddr = (sockaddr[0], bound_port) + tuple(sockaddr[2:])
            sock.setblocking(False)
            try:
                sock.bind(sockaddr)
            except OSError as e:
                code = errno_from_exception(e)
                if code == errno.EADDRNOTAVAIL and address == "localhost" and sockaddr[0] == "::1":
                    # "localhost" resolves to ::1 on hosts (containers) where IPv6 is switched off.
                    sockets.pop().close()
                    continue
                if code == errno.EADDRINUSE and asked_for_any_port and bound_port is not None:
                    raise _PortTakenElsewhere()
                raise
            bound_port = sock.getsockname()[1]
            sock.listen(backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _set_listening_options(sock: socket.socket, af: int, reuse_port: bool) -> None:
    if os.name != "nt":
        # Lets a restarted server bind while old connections to the port sit in TIME_WAIT.
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        except OSError as e:
            if errno_from_exception(e) != errno.ENOPROTOOPT:
                raise
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
        # Otherwise "::" would also take the IPv4 port and the IPv4 socket's bind would fail.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)


if hasattr(socket, "AF_UNIX"):

    def bind_unix_socket(file: str, mode: int = 0o600, backlog: int = _DEFAULT_BACKLOG) -> socket.socket:
        """Returns one non-blocking listening Unix socket at path ``file``, with permissions ``mode``.

        A socket file left behind by a server that is gone is replaced; one that a live server is
        listening on is refused (``OSError`` EADDRINUSE); any other kind of file is refused
        (``ValueError``).  A name starting with NUL is a Linux abstract socket (no file, no mode).
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            except OSError as e:
                if errno_from_exception(e) != errno.ENOPROTOOPT:
                    raise
            sock.setblocking(False)
            if file.startswith("\0"):
                sock.bind(file)
            else:
                _remove_stale_socket_file(file)
                sock.bind(file)
                os.chmod(file, mode)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    def _remove_stale_socket_file(path: str) -> None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ValueError(f"File {path} exists and is not a socket")
        if _someone_listens_on(path):
            raise OSError(errno.EADDRINUSE, f"Unix socket {path} is in use by a running server")
        os.remove(path)

    def _someone_listens_on(path: str) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            probe.connect(path)
        except (BlockingIOError, InterruptedError):
            return True  # a listener whose accept queue is full is still alive
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return False  # e.g. EACCES: no server we could reach; removing it is what Tornado always does
        finally:
            probe.close()
        return True


# --------------------------------------------------------------------------------------------------
# Accepting connections
# --------------------------------------------------------------------------------------------------

# accept() errors meaning "the process or system is out of something", not "this connection failed".
# Retrying at once would fail the same way, and the listening socket stays readable, so the loop
# would spin; the acceptor instead stops watching the socket for a while.
_OUT_OF_RESOURCES = frozenset(
    code for code in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM) if code is not None
)
_FIRST_PAUSE = 0.1
_LONGEST_PAUSE = 1.0


class _Acceptor:
    """Watches one listening socket and passes each accepted connection to ``callback``."""

    __slots__ = ("sock", "callback", "io_loop", "removed", "watching", "pause", "timer", "kind", "last_host")

    def __init__(self, sock: socket.socket, callback: Callable[[socket.socket, Any], None]) -> None:
        self.sock = sock
        self.callback = callback
        self.io_loop = cast(IOLoop, IOLoop.current())
        self.removed = False
        self.pause = 0.0  # non-zero while recovering from running out of file descriptors
        self.timer: Any = None
        # What the accepted sockets are made with (see on_readable): read once, as plain integers.
        self.kind = (int(sock.family), int(sock.type), sock.proto)
        self.last_host: Optional[str] = None  # the IPv4 peer of the last connection (see on_readable)
        self.io_loop.add_handler(sock, self.on_readable, IOLoop.READ)
        self.watching = True

    def on_readable(self, fd: Any, events: int) -> None:
        # Level-triggered: whatever is left after this batch is reported again on the next poll.
        sock = self.sock
        callback = self.callback
        # ``socket.accept`` converts the family and type to enum members on every call, which costs
        # more than the rest of it: for the standard class, the same socket is built here from the
        # descriptor with what the listening socket was made with, read once as plain integers.
        # (A socket class with its own accept is honoured.)
        plain = type(sock).accept is _plain_accept
        if plain:
            family, kind, proto = self.kind
            # As the standard method decides per call: a listening socket with a timeout must not pass
            # its non-blocking flag on (some platforms inherit it) unless a default timeout is set.
            blocking = socket.getdefaulttimeout() is None and bool(sock.gettimeout())
            accept_fd = sock._accept  # type: ignore[attr-defined]
            # Peers often repeat (a proxy, a load balancer, a pool of clients): an IPv4 address that
            # is the previous connection's gets that connection's host string, and its own (which
            # the handler would keep for the connection's life, ~60 bytes) is freed at once.
            share_host = family == socket.AF_INET
            last_host = self.last_host
        for _ in range(_DEFAULT_BACKLOG):
            if self.removed or not self.watching:
                return  # the callback stopped the server (or we paused) part-way through the batch
            try:
                if plain:
                    fd_num, address = accept_fd()
                    connection = socket.socket(family, kind, proto, fd_num)
                    if blocking:
                        connection.setblocking(True)
                    if share_host:
                        if address[0] == last_host:
                            address = (last_host, address[1])
                        else:
                            last_host = self.last_host = address[0]
                else:
                    connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued; take the next one
            except OSError as e:
                if errno_from_exception(e) in _OUT_OF_RESOURCES:
                    self.back_off(e)
                    return
                raise
            if self.pause:
                self.pause = 0.0
                gen_log.info("Accepting connections again on %s", _describe(self.sock))
            callback(connection, address)

    def back_off(self, error: OSError) -> None:
        if not self.pause:
            gen_log.error(
                "Cannot accept connections on %s: %s; pausing accepts until descriptors are freed",
                _describe(self.sock),
                error,
            )
            self.pause = _FIRST_PAUSE
        else:
            self.pause = min(self.pause * 2, _LONGEST_PAUSE)
        self.io_loop.remove_handler(self.sock)
        self.watching = False
        self.timer = self.io_loop.call_later(self.pause, self.resume)

    def resume(self) -> None:
        self.timer = None
        if self.removed or self.sock.fileno() == -1:
            return  # stopped, or the socket was closed behind our back, while paused
        self.io_loop.add_handler(self.sock, self.on_readable, IOLoop.READ)
        self.watching = True

    def remove(self) -> None:
        if self.removed:
            return
        self.removed = True
        if self.timer is not None:
            self.io_loop.remove_timeout(self.timer)
            self.timer = None
        if self.watching:
            self.watching = False
            self.io_loop.remove_handler(self.sock)


_plain_accept = socket.socket.accept


def _describe(sock: socket.socket) -> str:
    try:
        return repr(sock.getsockname())
    except OSError:
        return "a closed socket"


def add_accept_handler(sock: socket.socket, callback: Callable[[socket.socket, Any], None]) -> Callable[[], None]:
    """Calls ``callback(connection, address)`` on the current IOLoop for each connection ``sock`` accepts.

    Up to the default backlog of connections are taken per readiness event.  Returns a function that
    stops accepting (it is safe to call from inside ``callback``, and more than once).  When the
    process or system runs out of file descriptors, this is logged once and accepting pauses for a
    short, growing interval (0.1s up to 1s) instead of spinning, then resumes by itself.
    """
    return _Acceptor(sock, callback).remove


def is_valid_ip(ip: str) -> bool:
    """True when ``ip`` is a literal IPv4 or IPv6 address (as getaddrinfo reads it), not a host name."""
    if not ip or "\x00" in ip:
        return False
    try:
        found = socket.getaddrinfo(ip, 0, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror as e:
        if e.args[0] == socket.EAI_NONAME:
            return False
        raise
    except UnicodeError:
        return False
    return bool(found)


# --------------------------------------------------------------------------------------------------
# Resolvers
# --------------------------------------------------------------------------------------------------

_Resolved = List[Tuple[int, Any]]


class Resolver(Configurable):
    """Turns a host name into addresses without blocking the loop; pick an implementation with configure().

    ``Resolver()`` builds :class:`DefaultLoopResolver` unless ``Resolver.configure(...)`` chose another
    class (by class or dotted name, with default constructor arguments).
    """

    @classmethod
    def configurable_base(cls) -> type:
        return Resolver

    @classmethod
    def configurable_default(cls) -> type:
        return DefaultLoopResolver

    def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> Awaitable[_Resolved]:
        """Resolves to a list of ``(family, address)``; ``address`` is ready for ``socket.connect``.

        Fails with ``OSError`` (``socket.gaierror``) when the name does not resolve.
        """
        raise NotImplementedError()

    def close(self) -> None:
        """Releases what the resolver holds (threads, other resolvers)."""


def _resolve_addr(host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC) -> _Resolved:
    return [(info[0], info[4]) for info in socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)]


class DefaultExecutorResolver(Resolver):
    """Resolves with getaddrinfo on the IOLoop's default thread pool (deprecated in Tornado 6.2)."""

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> _Resolved:
        return await cast(IOLoop, IOLoop.current()).run_in_executor(None, _resolve_addr, host, port, family)


class DefaultLoopResolver(Resolver):
    """The default resolver: the loop's own getaddrinfo, which runs on the loop's default thread pool."""

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> _Resolved:
        return await cast(IOLoop, IOLoop.current()).run_in_executor(None, _resolve_addr, host, port, family)


class ExecutorResolver(Resolver):
    """Resolves on a given ``concurrent.futures.Executor`` (shut down on close unless ``close_executor=False``).

    Without an executor, resolution runs in the calling thread (blocking), as :class:`BlockingResolver`.
    """

    def initialize(
        self, executor: Optional[concurrent.futures.Executor] = None, close_executor: bool = True
    ) -> None:
        if executor is None:
            self.executor: Any = dummy_executor
            self.close_executor = False
        else:
            self.executor = executor
            self.close_executor = close_executor

    def close(self) -> None:
        if self.close_executor and self.executor is not None:
            self.executor.shutdown()
        self.executor = None

    @run_on_executor
    def resolve(  # type: ignore[override]
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> _Resolved:
        return _resolve_addr(host, port, family)


class BlockingResolver(ExecutorResolver):
    """Resolves in the loop's thread, blocking it (deprecated; the result still arrives on a later pass)."""

    def initialize(self) -> None:  # type: ignore[override]
        super().initialize()


class ThreadedResolver(ExecutorResolver):
    """Resolves on a thread pool shared by every ThreadedResolver of this process (size set by the first)."""

    _threadpool: Optional[concurrent.futures.ThreadPoolExecutor] = None
    _threadpool_pid: Optional[int] = None

    def initialize(self, num_threads: int = 10) -> None:  # type: ignore[override]
        super().initialize(executor=ThreadedResolver._create_threadpool(num_threads), close_executor=False)

    @classmethod
    def _create_threadpool(cls, num_threads: int) -> concurrent.futures.ThreadPoolExecutor:
        # A pool inherited through fork has no threads in the child: make a new one there.
        pid = os.getpid()
        if cls._threadpool_pid != pid:
            cls._threadpool = None
        if cls._threadpool is None:
            cls._threadpool = concurrent.futures.ThreadPoolExecutor(num_threads)
            cls._threadpool_pid = pid
        return cls._threadpool


class OverrideResolver(Resolver):
    """Answers some names from a fixed mapping, passing everything to another resolver.

    Keys are a host (``"example.com": "127.0.1.1"``), a ``(host, port)`` pair or a
    ``(host, port, family)`` triple mapped to a ``(host, port)`` pair; the most specific match wins.
    """

    def initialize(self, resolver: Resolver, mapping: Dict[Any, Any]) -> None:
        self.resolver = resolver
        self.mapping = mapping

    def close(self) -> None:
        self.resolver.close()

    def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> Awaitable[_Resolved]:
        mapping = self.mapping
        if (host, port, family) in mapping:
            host, port = mapping[(host, port, family)]
        elif (host, port) in mapping:
            host, port = mapping[(host, port)]
        elif host in mapping:
            host = mapping[host]
        return self.resolver.resolve(host, port, family)


# --------------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------------

# The ssl.wrap_socket()-style keys a dict of ssl_options may use.
_SSL_CONTEXT_KEYWORDS = frozenset(["ssl_version", "certfile", "keyfile", "cert_reqs", "ca_certs", "ciphers"])


def ssl_options_to_context(
    ssl_options: Union[Dict[str, Any], ssl.SSLContext], server_side: Optional[bool] = None
) -> ssl.SSLContext:
    """Returns ``ssl_options`` as an ``ssl.SSLContext``: itself if it is one, else built from the dict.

    The dict takes the keys of the old ``ssl.wrap_socket``: ``ssl_version``, ``certfile``,
    ``keyfile``, ``cert_reqs``, ``ca_certs``, ``ciphers``; any other key is a ``ValueError``.
    ``server_side`` picks the protocol default (``PROTOCOL_TLS_SERVER`` / ``PROTOCOL_TLS_CLIENT``);
    leaving it ``None`` uses the generic ``PROTOCOL_TLS``, which Python deprecates.
    """
    if isinstance(ssl_options, ssl.SSLContext):
        return ssl_options
    if not isinstance(ssl_options, dict):
        raise TypeError(f"ssl_options must be an ssl.SSLContext or a dict, not {type(ssl_options).__name__}")
    unknown = set(ssl_options) - _SSL_CONTEXT_KEYWORDS
    if unknown:
        raise ValueError(
            f"unsupported ssl_options key(s) {sorted(unknown)}; "
            f"allowed keys are {sorted(_SSL_CONTEXT_KEYWORDS)} (or pass an ssl.SSLContext)"
        )
    if server_side:
        default_version = ssl.PROTOCOL_TLS_SERVER
    elif server_side is None:
        default_version = ssl.PROTOCOL_TLS
    else:
        default_version = ssl.PROTOCOL_TLS_CLIENT
    context = ssl.SSLContext(ssl_options.get("ssl_version", default_version))
    if "certfile" in ssl_options:
        context.load_cert_chain(ssl_options["certfile"], ssl_options.get("keyfile"))
    if "cert_reqs" in ssl_options:
        if ssl_options["cert_reqs"] == ssl.CERT_NONE:
            # A client context checks host names by default, which requires verification; turn it off first.
            context.check_hostname = False
        context.verify_mode = ssl_options["cert_reqs"]
    if "ca_certs" in ssl_options:
        context.load_verify_locations(ssl_options["ca_certs"])
    if "ciphers" in ssl_options:
        context.set_ciphers(ssl_options["ciphers"])
    context.options |= getattr(ssl, "OP_NO_COMPRESSION", 0)
    return context


def ssl_wrap_socket(
    socket: socket.socket,
    ssl_options: Union[Dict[str, Any], ssl.SSLContext],
    server_hostname: Optional[str] = None,
    server_side: Optional[bool] = None,
    **kwargs: Any,
) -> ssl.SSLSocket:
    """Wraps ``socket`` in an ``ssl.SSLSocket`` made from ``ssl_options`` (a context or a dict).

    Extra keyword arguments (e.g. ``do_handshake_on_connect=False``) go to ``SSLContext.wrap_socket``.
    """
    context = ssl_options_to_context(ssl_options, server_side=server_side)
    return context.wrap_socket(socket, server_hostname=server_hostname, server_side=bool(server_side), **kwargs)
