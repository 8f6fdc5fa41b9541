"""Tests for tornado_lite.netutil, over real sockets (IPv4, IPv6 where the machine has it, Unix)."""

import concurrent.futures
import errno
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tornado_lite import netutil
from tornado_lite.ioloop import IOLoop
from tornado_lite.netutil import (
    BlockingResolver,
    DefaultExecutorResolver,
    DefaultLoopResolver,
    ExecutorResolver,
    OverrideResolver,
    Resolver,
    ThreadedResolver,
    add_accept_handler,
    bind_sockets,
    bind_unix_socket,
    is_valid_ip,
    ssl_options_to_context,
    ssl_wrap_socket,
)


def _machine_has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAVE_IPV6 = _machine_has_ipv6()
needs_ipv6 = pytest.mark.skipif(not HAVE_IPV6, reason="this machine has no IPv6 loopback")


@pytest.fixture
def io_loop():
    loop = IOLoop()
    loop.make_current()
    yield loop
    loop.close(all_fds=True)
    IOLoop.clear_current()


@pytest.fixture
def closing():
    """Collects sockets (and other closables) to close at the end of the test."""
    things: list = []
    yield things
    for thing in things:
        thing.close()


def _round_trip(listener: socket.socket, host: str) -> None:
    """A blocking client connects to ``listener`` and the accepted socket sees its bytes."""
    port = listener.getsockname()[1]
    family = listener.family
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect((host, port))
        listener.setblocking(True)
        listener.settimeout(10)
        try:
            conn, addr = listener.accept()
        finally:
            listener.setblocking(False)
        with conn:
            client.sendall(b"ping")
            conn.settimeout(10)
            assert conn.recv(4) == b"ping"
            assert addr[0] == host


# -- bind_sockets ---------------------------------------------------------------------------------


def test_bind_sockets_all_interfaces_gives_every_family_on_one_port(closing) -> None:
    sockets = bind_sockets(0)
    closing.extend(sockets)
    families = {s.family for s in sockets}
    expected = {socket.AF_INET, socket.AF_INET6} if HAVE_IPV6 else {socket.AF_INET}
    assert families == expected
    ports = {s.getsockname()[1] for s in sockets}
    assert len(ports) == 1 and ports.pop() != 0
    for sock in sockets:
        assert sock.getblocking() is False
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        if sock.family == socket.AF_INET6:
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
            _round_trip(sock, "::1")
        else:
            _round_trip(sock, "127.0.0.1")


def test_bind_sockets_empty_address_means_all_interfaces(closing) -> None:
    sockets = bind_sockets(0, "")
    closing.extend(sockets)
    assert {s.getsockname()[0] for s in sockets} <= {"0.0.0.0", "::"}


def test_bind_sockets_same_port_repeatedly(closing) -> None:
    # Port 0 on two families: the port is shared, however often we ask.
    for _ in range(20):
        sockets = bind_sockets(0, None)
        closing.extend(sockets)
        assert len({s.getsockname()[1] for s in sockets}) == 1


def test_bind_sockets_localhost_same_port(closing) -> None:
    sockets = bind_sockets(0, "localhost")
    closing.extend(sockets)
    assert sockets
    port = sockets[0].getsockname()[1]
    assert all(s.getsockname()[1] == port for s in sockets)


def test_bind_sockets_family_restricts(closing) -> None:
    sockets = bind_sockets(0, None, family=socket.AF_INET)
    closing.extend(sockets)
    assert [s.family for s in sockets] == [socket.AF_INET]
    assert sockets[0].getsockname()[0] == "0.0.0.0"
    _round_trip(sockets[0], "127.0.0.1")


@needs_ipv6
def test_bind_sockets_ipv6_only(closing) -> None:
    sockets = bind_sockets(0, "::1")
    closing.extend(sockets)
    assert [s.family for s in sockets] == [socket.AF_INET6]
    _round_trip(sockets[0], "::1")
    sockets = bind_sockets(0, None, family=socket.AF_INET6)
    closing.extend(sockets)
    assert [s.family for s in sockets] == [socket.AF_INET6]


def test_bind_sockets_flags_reach_getaddrinfo(closing) -> None:
    with pytest.raises(socket.gaierror):
        bind_sockets(0, "localhost", flags=socket.AI_NUMERICHOST)
    sockets = bind_sockets(0, "127.0.0.1", flags=socket.AI_NUMERICHOST)
    closing.extend(sockets)
    assert sockets[0].getsockname()[0] == "127.0.0.1"


def test_bind_sockets_port_in_use(closing) -> None:
    [first] = bind_sockets(0, "127.0.0.1")
    closing.append(first)
    port = first.getsockname()[1]
    with pytest.raises(OSError) as info:
        bind_sockets(port, "127.0.0.1")
    assert info.value.errno == errno.EADDRINUSE


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT on this platform")
def test_bind_sockets_reuse_port(closing) -> None:
    [first] = bind_sockets(0, "127.0.0.1", reuse_port=True)
    closing.append(first)
    port = first.getsockname()[1]
    assert first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    again = bind_sockets(port, "127.0.0.1", reuse_port=True)
    closing.extend(again)
    assert [s.getsockname()[1] for s in again] == [port]
    # Both listen on the port at once; the kernel spreads connections over them, so close the first
    # and the second alone must serve the port.
    first.close()
    _round_trip(again[0], "127.0.0.1")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the accept queue from /proc/net/tcp")
def test_bind_sockets_backlog_limits_the_accept_queue(closing) -> None:
    # Linux keeps backlog + 1 finished handshakes queued and drops further SYNs while nobody accepts,
    # and /proc/net/tcp shows a listening socket's queue length in its rx_queue column.
    backlog = 2
    [listener] = bind_sockets(0, "127.0.0.1", backlog=backlog)
    closing.append(listener)
    port = listener.getsockname()[1]
    for _ in range(backlog + 4):
        client = socket.socket()
        closing.append(client)
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))

    def queued() -> int:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, state = fields[1], fields[3]
                if state == "0A" and int(local.split(":")[1], 16) == port:
                    return int(fields[4].split(":")[1], 16)
        raise AssertionError("listening socket not found")

    deadline = time.monotonic() + 10
    while queued() < backlog + 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # give any extra (wrongly admitted) handshake time to show up
    assert queued() == backlog + 1


def test_bind_sockets_rejects_reuse_port_where_missing(monkeypatch) -> None:
    # Simulates a platform without SO_REUSEPORT (the constant, not the socket, is removed).
    if hasattr(socket, "SO_REUSEPORT"):
        monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(ValueError):
        bind_sockets(0, "127.0.0.1", reuse_port=True)


def test_default_backlog() -> None:
    assert netutil._DEFAULT_BACKLOG == 128


# -- bind_unix_socket ------------------------------------------------------------------------------


def test_bind_unix_socket_mode_and_round_trip(tmp_path, closing) -> None:
    path = str(tmp_path / "s.sock")
    sock = bind_unix_socket(path, mode=0o640)
    closing.append(sock)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert sock.getblocking() is False
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(path)
        client.sendall(b"hi")
        sock.settimeout(10)
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(10)
            assert conn.recv(2) == b"hi"


def test_bind_unix_socket_default_mode(tmp_path, closing) -> None:
    path = str(tmp_path / "d.sock")
    closing.append(bind_unix_socket(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_bind_unix_socket_replaces_a_stale_socket_file(tmp_path, closing) -> None:
    path = str(tmp_path / "stale.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.listen(1)
    dead.close()  # the file stays behind, with nobody listening
    assert os.path.exists(path)
    sock = bind_unix_socket(path)
    closing.append(sock)
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(path)


def test_bind_unix_socket_refuses_a_live_socket(tmp_path, closing) -> None:
    path = str(tmp_path / "live.sock")
    live = bind_unix_socket(path)
    closing.append(live)
    with pytest.raises(OSError) as info:
        bind_unix_socket(path)
    assert info.value.errno == errno.EADDRINUSE
    # The live server keeps its socket file and still takes connections.
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(path)


def test_bind_unix_socket_refuses_other_files(tmp_path) -> None:
    path = tmp_path / "regular"
    path.write_text("data")
    with pytest.raises(ValueError):
        bind_unix_socket(str(path))
    assert path.read_text() == "data"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract Unix sockets are Linux-only")
def test_bind_unix_socket_abstract(closing) -> None:
    name = "\0tornado_lite_test_%d" % os.getpid()
    sock = bind_unix_socket(name)
    closing.append(sock)
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(name)


# -- add_accept_handler ----------------------------------------------------------------------------


def _connect_blocking(port: int, host: str = "127.0.0.1", family: int = socket.AF_INET) -> socket.socket:
    client = socket.socket(family, socket.SOCK_STREAM)
    client.settimeout(10)
    client.connect((host, port))
    return client


def test_add_accept_handler_accepts_ipv4_and_ipv6(io_loop, closing) -> None:
    sockets = bind_sockets(0, None)
    closing.extend(sockets)
    port = sockets[0].getsockname()[1]
    accepted: list = []
    removers = [add_accept_handler(s, lambda conn, addr: accepted.append((conn, addr))) for s in sockets]
    targets = [("127.0.0.1", socket.AF_INET)] + ([("::1", socket.AF_INET6)] if HAVE_IPV6 else [])
    for host, family in targets:
        closing.append(_connect_blocking(port, host, family))

    def check() -> None:
        if len(accepted) < len(targets):
            io_loop.call_later(0.01, check)
            return
        io_loop.stop()

    io_loop.add_callback(check)
    io_loop.add_timeout(io_loop.time() + 10, io_loop.stop)
    io_loop.start()
    for conn, _ in accepted:
        closing.append(conn)
    assert sorted(addr[0] for _, addr in accepted) == sorted(host for host, _ in targets)
    for remove in removers:
        remove()


def test_add_accept_handler_unix_socket(io_loop, closing, tmp_path) -> None:
    path = str(tmp_path / "a.sock")
    sock = bind_unix_socket(path)
    closing.append(sock)
    accepted: list = []

    def on_connection(conn: socket.socket, addr: object) -> None:
        accepted.append(conn)
        closing.append(conn)
        io_loop.stop()

    remove = add_accept_handler(sock, on_connection)
    client = socket.socket(socket.AF_UNIX)
    closing.append(client)
    client.connect(path)
    io_loop.add_timeout(io_loop.time() + 10, io_loop.stop)
    io_loop.start()
    assert len(accepted) == 1
    assert accepted[0].family == socket.AF_UNIX
    remove()


def test_add_accept_handler_gives_sockets_like_socket_accept(io_loop, closing) -> None:
    # The acceptor builds the connection's socket itself: it must be what socket.accept() returns.
    [sock] = bind_sockets(0, "127.0.0.1")
    closing.append(sock)
    accepted: list = []

    def on_connection(conn: socket.socket, addr: object) -> None:
        accepted.append((conn, addr))
        closing.append(conn)
        io_loop.stop()

    remove = add_accept_handler(sock, on_connection)
    client = _connect_blocking(sock.getsockname()[1])
    closing.append(client)
    io_loop.add_timeout(io_loop.time() + 10, io_loop.stop)
    io_loop.start()
    remove()
    [(conn, addr)] = accepted
    assert type(conn) is socket.socket
    assert conn.family is socket.AF_INET and conn.type is socket.SOCK_STREAM
    assert conn.proto == sock.proto
    assert addr == client.getsockname() == conn.getpeername()
    assert conn.gettimeout() is None  # as socket.accept leaves it (the stream makes it non-blocking)
    client.sendall(b"ping")
    conn.settimeout(10)
    assert conn.recv(4) == b"ping"
    # Its file objects keep the descriptor open past close(), as any socket.socket's do.
    reader = conn.makefile("rb")
    conn.close()
    client.sendall(b"pong")
    assert reader.read(4) == b"pong"
    assert conn.fileno() != -1
    reader.close()
    assert conn.fileno() == -1


def test_add_accept_handler_uses_a_socket_class_own_accept(io_loop, closing) -> None:
    calls: list = []

    class CountingSocket(socket.socket):
        def accept(self):  # type: ignore[no-untyped-def]
            result = super().accept()
            calls.append(result[1])
            return result

    sock = CountingSocket(socket.AF_INET, socket.SOCK_STREAM)
    closing.append(sock)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    accepted: list = []

    def on_connection(conn: socket.socket, addr: object) -> None:
        accepted.append(addr)
        closing.append(conn)
        io_loop.stop()

    remove = add_accept_handler(sock, on_connection)
    closing.append(_connect_blocking(sock.getsockname()[1]))
    io_loop.add_timeout(io_loop.time() + 10, io_loop.stop)
    io_loop.start()
    remove()
    assert accepted and calls[: len(accepted)] == accepted


def test_add_accept_handler_takes_a_batch_per_event(io_loop, closing) -> None:
    [sock] = bind_sockets(0, "127.0.0.1")
    closing.append(sock)
    port = sock.getsockname()[1]
    # Five handshakes finish (in the accept queue) before the loop ever looks at the socket.
    clients = [_connect_blocking(port) for _ in range(5)]
    closing.extend(clients)
    accepted: list = []
    seen_on_next_pass: list = []

    def on_connection(conn: socket.socket, addr: object) -> None:
        closing.append(conn)
        if not accepted:
            # Runs on the loop's next pass: by then one readiness event has been handled.
            io_loop.add_callback(lambda: seen_on_next_pass.append(len(accepted)))
        accepted.append(addr)
        if len(accepted) == 5:
            io_loop.add_callback(io_loop.stop)

    add_accept_handler(sock, on_connection)
    io_loop.add_timeout(io_loop.time() + 10, io_loop.stop)
    io_loop.start()
    assert len(accepted) == 5
    assert seen_on_next_pass == [5]
    # Each connection gets its own peer address (host and port), as socket.accept() gives it.
    assert sorted(accepted) == sorted(client.getsockname() for client in clients)
    assert all(type(addr) is tuple and type(addr[0]) is str for addr in accepted)


def test_add_accept_handler_batch_is_capped_at_the_default_backlog(io_loop, closing) -> None:
    # More connections than one batch may take: the rest wait for the next poll, so one busy
    # listening socket cannot hold the loop for ever.
    cap = netutil._DEFAULT_BACKLOG
    [sock] = bind_sockets(0, "127.0.0.1", backlog=cap + 64)
    closing.append(sock)
    port = sock.getsockname()[1]
    total = cap + 20
    for _ in range(total):
        closing.append(_connect_blocking(port))
    accepted: list = []
    seen_on_next_pass: list = []

    def on_connection(conn: socket.socket, addr: object) -> None:
        closing.append(conn)
        if not accepted:
            io_loop.add_callback(lambda: seen_on_next_pass.append(len(accepted)))
        accepted.append(addr)
        if len(accepted) == total:
            io_loop.add_callback(io_loop.stop)

    add_accept_handler(sock, on_connection)
    io_loop.add_timeout(io_loop.time() + 30, io_loop.stop)
    io_loop.start()
    assert seen_on_next_pass == [cap]
    assert len(accepted) == total


def test_add_accept_handler_remover(io_loop, closing) -> None:
    [sock] = bind_sockets(0, "127.0.0.1")
    closing.append(sock)
    port = sock.getsockname()[1]
    accepted: list = []
    remove = add_accept_handler(sock, lambda conn, addr: (accepted.append(conn), closing.append(conn)))
    remove()
    remove()  # a second call is harmless
    closing.append(_connect_blocking(port))  # queued by the kernel, never accepted by us
    io_loop.add_timeout(io_loop.time() + 0.2, io_loop.stop)
    io_loop.start()
    assert accepted == []
    # The socket may be handed to a new handler after the old one was removed.
    remove = add_accept_handler(sock, lambda conn, addr: (accepted.append(conn), closing.append(conn), io_loop.stop()))
    io_loop.add_timeout(io_loop.time() + 10, io_loop.stop)
    io_loop.start()
    assert len(accepted) == 1
    remove()


def test_add_accept_handler_remove_from_inside_the_callback(io_loop, closing) -> None:
    [sock] = bind_sockets(0, "127.0.0.1")
    closing.append(sock)
    port = sock.getsockname()[1]
    for _ in range(4):
        closing.append(_connect_blocking(port))
    accepted: list = []
    removers: list = []

    def on_connection(conn: socket.socket, addr: object) -> None:
        accepted.append(conn)
        closing.append(conn)
        removers[0]()
        sock.close()  # what TCPServer.stop does: the rest of the batch must not touch the closed socket
        io_loop.add_callback(io_loop.stop)

    removers.append(add_accept_handler(sock, on_connection))
    io_loop.add_timeout(io_loop.time() + 10, io_loop.stop)
    io_loop.start()
    assert len(accepted) == 1
    removers[0]()


_EMFILE_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, resource, socket, sys, time
    from tornado_lite.ioloop import IOLoop
    from tornado_lite.log import gen_log
    from tornado_lite.netutil import add_accept_handler, bind_sockets

    CLIENTS = 12
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append((record.levelname, record.getMessage()))
            if record.levelno >= logging.ERROR and window["start"] is None:
                window["start"] = time.process_time()
                loop.call_later(1.5, end_window)

    gen_log.addHandler(Collect())
    gen_log.setLevel(logging.INFO)
    gen_log.propagate = False
    window = {"start": None, "cpu": None}
    loop = IOLoop()
    [listener] = bind_sockets(0, "127.0.0.1")
    port = listener.getsockname()[1]
    clients = []
    for _ in range(CLIENTS):
        c = socket.socket()
        c.connect(("127.0.0.1", port))  # completes into the accept queue
        clients.append(c)
    held = []
    accepted = [0]
    recovering = [False]

    def on_connection(conn, addr):
        accepted[0] += 1
        if recovering[0]:
            conn.close()
        else:
            held.append(conn)
        if accepted[0] == CLIENTS:
            loop.add_callback(loop.stop)

    def end_window():
        window["cpu"] = time.process_time() - window["start"]
        recovering[0] = True
        for conn in held:
            conn.close()  # descriptors are free again: accepting must resume by itself

    add_accept_handler(listener, on_connection)
    # Leave room for just two more descriptors.
    open_fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds + 1, hard))
    loop.add_timeout(loop.time() + 20, loop.stop)
    loop.start()
    print(json.dumps({"accepted": accepted[0], "held": len(held), "cpu": window["cpu"], "records": records}))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs resource limits")
def test_add_accept_handler_out_of_descriptors_backs_off_and_recovers() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _EMFILE_SCRIPT], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    errors = [msg for level, msg in report["records"] if level == "ERROR"]
    # Logged once for the whole episode, however many times accepting was retried.
    assert len(errors) == 1, report
    assert "Too many open files" in errors[0]
    # A few connections got in before the limit, the rest after descriptors were freed.
    assert 0 < report["held"] < 12
    assert report["accepted"] == 12
    assert any("again" in msg for level, msg in report["records"] if level == "INFO")
    # Not spinning: over a 1.5 s stretch of refusals the process used little CPU (a busy loop uses ~all).
    assert report["cpu"] is not None and report["cpu"] < 0.5, report


# -- is_valid_ip -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["127.0.0.1", "4.4.4.4", "::1", "2620:0:1cfe:face:b00c::3", "0.0.0.0", "::"])
def test_is_valid_ip_accepts(ip: str) -> None:
    assert is_valid_ip(ip) is True


@pytest.mark.parametrize(
    "ip", ["www.google.com", "localhost", "4.4.4.4<", " 127.0.0.1", "", " ", "\n", "\x00", "a" * 100, "1.2.3.4\x00"]
)
def test_is_valid_ip_rejects(ip: str) -> None:
    assert is_valid_ip(ip) is False


# -- resolvers --------------------------------------------------------------------------------------


def _resolve(resolver: Resolver, host: str, port: int, family: int = socket.AF_UNSPEC) -> list:
    async def go() -> list:
        return await resolver.resolve(host, port, family)

    loop = IOLoop()
    try:
        return loop.run_sync(go, timeout=30)
    finally:
        loop.close()
        IOLoop.clear_current()


def _threaded_resolver() -> Resolver:
    return ThreadedResolver()


RESOLVER_FACTORIES = {
    "DefaultLoopResolver": DefaultLoopResolver,
    "DefaultExecutorResolver": DefaultExecutorResolver,
    "BlockingResolver": BlockingResolver,
    "ThreadedResolver": _threaded_resolver,
    "ExecutorResolver": lambda: ExecutorResolver(concurrent.futures.ThreadPoolExecutor(2)),
    "ExecutorResolver-inline": ExecutorResolver,
    "OverrideResolver": lambda: OverrideResolver(BlockingResolver(), {}),
}


@pytest.mark.parametrize("name", sorted(RESOLVER_FACTORIES))
def test_resolver_localhost(name: str) -> None:
    resolver = RESOLVER_FACTORIES[name]()
    try:
        addrinfo = _resolve(resolver, "localhost", 80)
        assert (socket.AF_INET, ("127.0.0.1", 80)) in addrinfo or (socket.AF_INET6, ("::1", 80, 0, 0)) in addrinfo
        assert all(isinstance(family, int) for family, _ in addrinfo)
        v4 = _resolve(resolver, "127.0.0.1", 8080, socket.AF_INET)
        assert v4 == [(socket.AF_INET, ("127.0.0.1", 8080))]
        if HAVE_IPV6:
            v6 = _resolve(resolver, "::1", 8080, socket.AF_INET6)
            assert v6 == [(socket.AF_INET6, ("::1", 8080, 0, 0))]
    finally:
        resolver.close()


@pytest.mark.parametrize("name", sorted(RESOLVER_FACTORIES))
def test_resolver_bad_host_is_an_oserror(name: str) -> None:
    resolver = RESOLVER_FACTORIES[name]()
    try:
        with pytest.raises(IOError):
            _resolve(resolver, "an invalid domain", 80)
    finally:
        resolver.close()


def test_resolver_default_and_configure() -> None:
    saved = Resolver._save_configuration()
    try:
        assert type(Resolver()) is DefaultLoopResolver
        Resolver.configure("tornado_lite.netutil.ThreadedResolver", num_threads=3)
        resolver = Resolver()
        assert isinstance(resolver, ThreadedResolver)
        assert _resolve(resolver, "127.0.0.1", 1) == [(socket.AF_INET, ("127.0.0.1", 1))]
        Resolver.configure(BlockingResolver)
        assert isinstance(Resolver(), BlockingResolver)
    finally:
        Resolver._restore_configuration(saved)


def test_threaded_resolvers_share_one_pool() -> None:
    a, b = ThreadedResolver(), ThreadedResolver(num_threads=2)
    assert a.executor is b.executor
    a.close()
    # Closing one ThreadedResolver leaves the shared pool usable by the others.
    assert _resolve(b, "127.0.0.1", 2) == [(socket.AF_INET, ("127.0.0.1", 2))]
    b.close()


def test_executor_resolver_closes_its_executor_unless_told_not_to() -> None:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    ExecutorResolver(executor=pool, close_executor=False).close()
    assert pool.submit(lambda: 5).result(timeout=10) == 5
    ExecutorResolver(executor=pool).close()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: 5)


def test_executor_resolver_runs_on_its_executor() -> None:
    # The pool's only thread is kept busy: the resolution must wait for it, so it runs there.
    pool = concurrent.futures.ThreadPoolExecutor(1)
    gate = threading.Event()
    pool.submit(gate.wait, 10)
    resolver = ExecutorResolver(executor=pool)
    loop = IOLoop()
    try:
        future = resolver.resolve("127.0.0.1", 3)
        loop.run_sync(lambda: None)
        assert not future.done()
        gate.set()
        assert loop.run_sync(lambda: future, timeout=10) == [(socket.AF_INET, ("127.0.0.1", 3))]
    finally:
        loop.close()
        IOLoop.clear_current()
        resolver.close()


def test_override_resolver_mapping_forms() -> None:
    mapping = {
        "example.com": "127.0.0.1",
        ("login.example.com", 443): ("127.0.0.2", 1443),
        ("login.example.com", 443, socket.AF_INET): ("127.0.0.3", 2443),
        ("google.com", 80, socket.AF_INET6): ("2a02:6b8:7c:40c:c51e:495f:e23a:3", 80),
    }
    resolver = OverrideResolver(BlockingResolver(), mapping)
    try:
        assert _resolve(resolver, "example.com", 80, socket.AF_INET) == [(socket.AF_INET, ("127.0.0.1", 80))]
        assert _resolve(resolver, "login.example.com", 443, socket.AF_INET) == [
            (socket.AF_INET, ("127.0.0.3", 2443))
        ]
        assert _resolve(resolver, "login.example.com", 443) == [(socket.AF_INET, ("127.0.0.2", 1443))]
        if socket.has_ipv6:
            assert (socket.AF_INET6, ("2a02:6b8:7c:40c:c51e:495f:e23a:3", 80, 0, 0)) in _resolve(
                resolver, "google.com", 80, socket.AF_INET6
            )
        # Unmapped names go to the wrapped resolver.
        assert _resolve(resolver, "127.0.0.9", 7) == [(socket.AF_INET, ("127.0.0.9", 7))]
    finally:
        resolver.close()


# -- TLS ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    d = tmp_path_factory.mktemp("tls")
    cert_file = str(d / "cert.pem")
    key_file = str(d / "key.pem")
    ca_file = str(d / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(cert_file)
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(cert_file, append=True)
    cert.private_key_pem.write_to_path(key_file)
    ca.cert_pem.write_to_path(ca_file)
    return {"certfile": cert_file, "keyfile": key_file, "ca_certs": ca_file}


def test_ssl_options_context_passes_through() -> None:
    context = ssl.create_default_context()
    assert ssl_options_to_context(context) is context
    assert ssl_options_to_context(context, server_side=True) is context


def test_ssl_options_rejects_unknown_keys(tls_files) -> None:
    with pytest.raises(ValueError) as info:
        ssl_options_to_context({"certfile": tls_files["certfile"], "cert_file": "x"}, server_side=True)
    assert "cert_file" in str(info.value)
    with pytest.raises(TypeError):
        ssl_options_to_context(["certfile"], server_side=True)  # type: ignore[arg-type]


def test_ssl_options_dict_server_and_client(tls_files) -> None:
    server = ssl_options_to_context({"certfile": tls_files["certfile"], "keyfile": tls_files["keyfile"]}, True)
    assert server.protocol == ssl.PROTOCOL_TLS_SERVER
    assert server.options & ssl.OP_NO_COMPRESSION
    client = ssl_options_to_context({"ca_certs": tls_files["ca_certs"]}, server_side=False)
    assert client.protocol == ssl.PROTOCOL_TLS_CLIENT
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    relaxed = ssl_options_to_context({"cert_reqs": ssl.CERT_NONE}, server_side=False)
    assert relaxed.verify_mode == ssl.CERT_NONE and not relaxed.check_hostname
    ciphers = ssl_options_to_context({"ciphers": "ECDHE+AESGCM"}, server_side=True)
    assert all("ECDHE" in c["name"] or c["protocol"] == "TLSv1.3" for c in ciphers.get_ciphers())
    versioned = ssl_options_to_context({"ssl_version": ssl.PROTOCOL_TLS_CLIENT}, server_side=True)
    assert versioned.protocol == ssl.PROTOCOL_TLS_CLIENT


def test_ssl_options_bad_certfile_fails_early(tmp_path) -> None:
    with pytest.raises(OSError):
        ssl_options_to_context({"certfile": str(tmp_path / "missing.pem")}, server_side=True)


def test_ssl_defaults() -> None:
    client = netutil._client_ssl_defaults()
    server = netutil._server_ssl_defaults()
    assert client is netutil._client_ssl_defaults()  # made once
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    assert server.verify_mode == ssl.CERT_NONE
    assert client.options & ssl.OP_NO_COMPRESSION and server.options & ssl.OP_NO_COMPRESSION


def test_ssl_wrap_socket_handshake_over_tcp(tls_files, closing) -> None:
    [listener] = bind_sockets(0, "127.0.0.1")
    closing.append(listener)
    listener.setblocking(True)
    port = listener.getsockname()[1]
    server_options = {"certfile": tls_files["certfile"], "keyfile": tls_files["keyfile"]}
    received: list = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        tls = ssl_wrap_socket(conn, server_options, server_side=True, do_handshake_on_connect=False)
        with tls:
            tls.do_handshake()
            received.append(tls.recv(5))
            tls.sendall(b"world")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        client = ssl_wrap_socket(
            raw, {"ca_certs": tls_files["ca_certs"]}, server_hostname="localhost", server_side=False
        )
        with client:
            assert client.server_side is False
            client.sendall(b"hello")
            assert client.recv(5) == b"world"
    finally:
        thread.join(10)
    assert received == [b"hello"]


def test_ssl_wrap_socket_client_verifies_the_name(tls_files, closing) -> None:
    [listener] = bind_sockets(0, "127.0.0.1")
    closing.append(listener)
    listener.setblocking(True)
    port = listener.getsockname()[1]
    server_context = ssl_options_to_context({"certfile": tls_files["certfile"], "keyfile": tls_files["keyfile"]}, True)

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        try:
            with server_context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl_wrap_socket(
                raw, {"ca_certs": tls_files["ca_certs"]}, server_hostname="wrong.example", server_side=False
            )
        raw.close()
    finally:
        thread.join(10)
