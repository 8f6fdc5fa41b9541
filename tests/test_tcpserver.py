"""Tests for tornado_lite.tcpserver, and for the echo server example in every start-up pattern.

In-process tests run the server and IOStream clients on one IOLoop.  Everything that forks runs as a
script in its own process group (see ``proc_helpers``); the pytest process never forks.
"""

import importlib.util
import logging
import os
import signal
import socket
import ssl
import sys
import textwrap
import threading

import pytest

from proc_helpers import ROOT, ServerProcess, run_python
from tornado_lite import gen, iostream
from tornado_lite.concurrent import Future
from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import IOStream, StreamClosedError
from tornado_lite.netutil import bind_sockets, bind_unix_socket
from tornado_lite.tcpserver import TCPServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix only")


def _load_example(name: str):  # type: ignore[no-untyped-def]
    path = os.path.join(ROOT, "examples", name + ".py")
    spec = importlib.util.spec_from_file_location("example_" + name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


echo_server = _load_example("echo_server")
echo_client = _load_example("echo_client")
EchoServer = echo_server.EchoServer
ECHO_SERVER = os.path.join(ROOT, "examples", "echo_server.py")


def _machine_has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAVE_IPV6 = _machine_has_ipv6()


@pytest.fixture
def io_loop():
    loop = IOLoop()
    loop.make_current()
    yield loop
    loop.close(all_fds=True)
    IOLoop.clear_current()


def _ports(server: TCPServer) -> set:
    return {sock.getsockname()[1] for sock in server._sockets.values()}


async def _connect(address, family=socket.AF_INET) -> IOStream:  # type: ignore[no-untyped-def]
    stream = IOStream(socket.socket(family, socket.SOCK_STREAM))
    await stream.connect(address)
    return stream


async def _echo_once(address, family=socket.AF_INET, line: bytes = b"hello\n") -> bytes:  # type: ignore[no-untyped-def]
    stream = await _connect(address, family)
    try:
        await stream.write(line)
        return await stream.read_until(b"\n")
    finally:
        stream.close()


# -- start-up patterns, in process ------------------------------------------------------------------


def test_listen_all_interfaces_ipv4_and_ipv6(io_loop) -> None:
    server = EchoServer()
    server.listen(0)
    [port] = _ports(server)
    families = {sock.family for sock in server._sockets.values()}
    assert families == ({socket.AF_INET, socket.AF_INET6} if HAVE_IPV6 else {socket.AF_INET})

    async def clients() -> list:
        replies = [await _echo_once(("127.0.0.1", port))]
        if HAVE_IPV6:
            replies.append(await _echo_once(("::1", port), socket.AF_INET6, b"over v6\n"))
        return replies

    try:
        replies = io_loop.run_sync(clients, timeout=30)
    finally:
        server.stop()
    assert replies == [b"hello\n"] + ([b"over v6\n"] if HAVE_IPV6 else [])


@pytest.mark.skipif(not HAVE_IPV6, reason="this machine has no IPv6 loopback")
def test_listen_ipv6_family_only(io_loop) -> None:
    server = EchoServer()
    server.listen(0, family=socket.AF_INET6)
    [port] = _ports(server)
    assert {sock.family for sock in server._sockets.values()} == {socket.AF_INET6}
    try:
        assert io_loop.run_sync(lambda: _echo_once(("::1", port), socket.AF_INET6), timeout=30) == b"hello\n"
    finally:
        server.stop()


def test_add_socket_unix(io_loop, tmp_path) -> None:
    path = str(tmp_path / "echo.sock")
    server = EchoServer()
    server.add_socket(bind_unix_socket(path))

    async def client() -> bytes:
        stream = IOStream(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        await stream.connect(path)
        await stream.write(b"unix\n")
        reply = await stream.read_until(b"\n")
        stream.close()
        return reply

    try:
        assert io_loop.run_sync(client, timeout=30) == b"unix\n"
    finally:
        server.stop()


def test_add_sockets_from_bind_sockets(io_loop) -> None:
    sockets = bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    server = EchoServer()
    server.add_sockets(sockets)
    try:
        assert io_loop.run_sync(lambda: _echo_once(("127.0.0.1", port)), timeout=30) == b"hello\n"
    finally:
        server.stop()
    assert all(sock.fileno() == -1 for sock in sockets)  # stop() closed them


def test_bind_then_start_in_one_process(io_loop) -> None:
    server = EchoServer()
    server.bind(0, "127.0.0.1")
    [pending] = server._pending_sockets
    port = pending.getsockname()[1]
    assert server._sockets == {}  # nothing accepted before start()
    server.start()  # num_processes=1: no fork
    with pytest.raises(RuntimeError):
        server.start()
    # bind() after start() takes effect at once.
    server.bind(0, "127.0.0.1")
    ports = _ports(server)
    assert port in ports and len(ports) == 2

    async def clients() -> list:
        return [await _echo_once(("127.0.0.1", p)) for p in sorted(ports)]

    try:
        assert io_loop.run_sync(clients, timeout=30) == [b"hello\n", b"hello\n"]
    finally:
        server.stop()


def test_stop_closes_sockets_bound_but_never_started(io_loop) -> None:
    server = EchoServer()
    server.bind(0, "127.0.0.1")
    [pending] = server._pending_sockets
    server.stop()
    assert pending.fileno() == -1


# -- handle_stream ----------------------------------------------------------------------------------


def test_handle_stream_plain_function(io_loop) -> None:
    class Server(TCPServer):
        def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            assert address[0] == "127.0.0.1"
            stream.write(b"plain")
            stream.close()

    [sock] = bind_sockets(0, "127.0.0.1")
    server = Server()
    server.add_socket(sock)

    async def client() -> bytes:
        stream = await _connect(sock.getsockname())
        return await stream.read_until_close()

    try:
        assert io_loop.run_sync(client, timeout=30) == b"plain"
    finally:
        server.stop()


def test_handle_stream_native_coroutine(io_loop) -> None:
    class Server(TCPServer):
        async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            await stream.write(b"data")
            stream.close()

    [sock] = bind_sockets(0, "127.0.0.1")
    server = Server()
    server.add_socket(sock)

    async def client() -> bytes:
        stream = await _connect(sock.getsockname())
        return await stream.read_until_close()

    try:
        assert io_loop.run_sync(client, timeout=30) == b"data"
    finally:
        server.stop()


def test_closed_stream_socket_stays_open_while_a_file_of_it_is_open(io_loop) -> None:
    # The stream closes its socket as socket.close() does: a file made from it with makefile() keeps
    # the descriptor until that file is closed too.
    seen: list = []

    class Server(TCPServer):
        async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            sock = stream.socket
            writer = sock.makefile("wb")
            stream.close()
            seen.append(sock.fileno() != -1)
            writer.write(b"from the file")
            writer.close()
            seen.append(sock.fileno() == -1)

    [sock] = bind_sockets(0, "127.0.0.1")
    server = Server()
    server.add_socket(sock)

    async def client() -> bytes:
        stream = await _connect(sock.getsockname())
        return await stream.read_until_close()

    try:
        assert io_loop.run_sync(client, timeout=30) == b"from the file"
        assert seen == [True, True]
    finally:
        server.stop()


def test_handle_stream_coroutine_failure_is_logged_and_server_goes_on(io_loop, caplog) -> None:
    class Server(TCPServer):
        @gen.coroutine
        def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            data = yield stream.read_bytes(5)
            if data == b"crash":
                stream.close()
                raise ZeroDivisionError("crash")
            yield stream.write(data.upper())
            stream.close()

    [sock] = bind_sockets(0, "127.0.0.1")
    server = Server()
    server.add_socket(sock)

    async def clients() -> list:
        replies = []
        for message in (b"crash", b"hello"):
            stream = await _connect(sock.getsockname())
            await stream.write(message)
            replies.append(await stream.read_until_close())
            await gen.sleep(0.01)  # let the loop log the failure
        return replies

    caplog.set_level(logging.ERROR, logger="tornado.application")
    try:
        assert io_loop.run_sync(clients, timeout=30) == [b"", b"HELLO"]
    finally:
        server.stop()
    failures = [r for r in caplog.records if r.name == "tornado.application"]
    assert len(failures) == 1
    assert "Exception in callback" in failures[0].getMessage()
    assert failures[0].exc_info[0] is ZeroDivisionError


def test_handle_stream_plain_failure_is_logged_and_server_goes_on(io_loop, caplog) -> None:
    calls: list = []

    class Server(TCPServer):
        def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            calls.append(stream)
            if len(calls) == 1:
                stream.close()
                raise ValueError("broken handler")
            stream.write(b"second")
            stream.close()

    [sock] = bind_sockets(0, "127.0.0.1")
    server = Server()
    server.add_socket(sock)

    async def clients() -> list:
        replies = []
        for _ in range(2):
            stream = await _connect(sock.getsockname())
            replies.append(await stream.read_until_close())
        return replies

    caplog.set_level(logging.ERROR, logger="tornado.application")
    try:
        assert io_loop.run_sync(clients, timeout=30) == [b"", b"second"]
    finally:
        server.stop()
    failures = [r for r in caplog.records if r.name == "tornado.application"]
    assert [r.getMessage() for r in failures] == ["Error in connection callback"]
    assert failures[0].exc_info[0] is ValueError


def test_handle_stream_default_is_not_implemented(io_loop, caplog) -> None:
    [sock] = bind_sockets(0, "127.0.0.1")
    server = TCPServer()
    server.add_socket(sock)
    caplog.set_level(logging.ERROR, logger="tornado.application")

    async def client() -> bytes:
        stream = await _connect(sock.getsockname())
        return await stream.read_until_close()  # the failed connection is closed, not left hanging

    try:
        assert io_loop.run_sync(client, timeout=30) == b""
    finally:
        server.stop()
    assert caplog.records and caplog.records[0].exc_info[0] is NotImplementedError


def test_handle_stream_coroutine_failure_closes_the_connection(io_loop, caplog) -> None:
    class Server(TCPServer):
        async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            await stream.write(b"partial")
            raise RuntimeError("handler died mid-way")

    [sock] = bind_sockets(0, "127.0.0.1")
    server = Server()
    server.add_socket(sock)
    caplog.set_level(logging.ERROR, logger="tornado.application")

    async def client() -> bytes:
        stream = await _connect(sock.getsockname())
        return await stream.read_until_close()

    try:
        assert io_loop.run_sync(client, timeout=30) == b"partial"
    finally:
        server.stop()
    assert [r.exc_info[0] for r in caplog.records] == [RuntimeError]
    # Logged as a failing loop callback, as Tornado logs a failed handler coroutine.
    assert "Exception in callback" in caplog.records[0].getMessage()


def test_stream_options_are_passed_on(io_loop) -> None:
    seen: Future = Future()

    class Server(TCPServer):
        async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            seen.set_result((stream.max_buffer_size, stream.read_chunk_size))
            try:
                await stream.read_until(b"\n")
            except Exception as e:
                stream.close()
                return type(e)

    [sock] = bind_sockets(0, "127.0.0.1")
    server = Server(max_buffer_size=1000, read_chunk_size=100)
    server.add_socket(sock)

    async def client() -> tuple:
        stream = await _connect(sock.getsockname())
        options = await seen
        await stream.write(b"x" * 5000)  # no newline within max_buffer_size: the server gives up
        rest = await stream.read_until_close()
        return options, rest

    try:
        assert io_loop.run_sync(client, timeout=30) == ((1000, 100), b"")
    finally:
        server.stop()


# -- stop ---------------------------------------------------------------------------------------------


def test_stop_stops_accepting_but_open_connections_keep_working(io_loop) -> None:
    [sock] = bind_sockets(0, "127.0.0.1")
    address = sock.getsockname()
    server = EchoServer()
    server.add_socket(sock)

    async def scenario() -> list:
        stream = await _connect(address)
        await stream.write(b"before\n")
        first = await stream.read_until(b"\n")
        server.stop()
        await stream.write(b"after stop\n")
        second = await stream.read_until(b"\n")
        stream.close()
        with pytest.raises((StreamClosedError, ConnectionRefusedError)):
            await _connect(address)
        return [first, second]

    assert io_loop.run_sync(scenario, timeout=30) == [b"before\n", b"after stop\n"]
    assert sock.fileno() == -1


def test_stop_twice() -> None:
    loop = IOLoop()
    try:
        [sock] = bind_sockets(0, "127.0.0.1")
        server = TCPServer()
        server.add_socket(sock)
        server.stop()
        server.stop()
    finally:
        loop.close()
        IOLoop.clear_current()


def test_stop_from_inside_handle_stream(io_loop, caplog) -> None:
    # Stopping in the middle of a batch of accepts must not touch the closed socket (EBADF).
    class Server(TCPServer):
        async def handle_stream(self, stream, address):  # type: ignore[no-untyped-def]
            server.stop()
            server.stop()
            await stream.read_until_close()

    [sock] = bind_sockets(0, "127.0.0.1")
    address = sock.getsockname()
    server = Server()
    server.add_socket(sock)
    caplog.set_level(logging.WARNING)

    async def connect_many() -> list:
        async def one() -> "IOStream | None":
            try:
                return await _connect(address)
            except (StreamClosedError, OSError):
                return None

        return await gen.multi([one() for _ in range(40)])

    streams = io_loop.run_sync(connect_many, timeout=30)
    connected = [s for s in streams if s is not None]
    assert connected, "no client could connect"
    io_loop.run_sync(lambda: gen.sleep(0.05))
    for s in connected:
        s.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert sock.fileno() == -1


# -- TLS ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    d = tmp_path_factory.mktemp("tls")
    files = {"certfile": str(d / "cert.pem"), "keyfile": str(d / "key.pem"), "ca_certs": str(d / "ca.pem")}
    cert.cert_chain_pems[0].write_to_path(files["certfile"])
    cert.private_key_pem.write_to_path(files["keyfile"])
    ca.cert_pem.write_to_path(files["ca_certs"])
    return files


def test_ssl_options_are_checked_at_construction(tls_files, tmp_path) -> None:
    with pytest.raises(KeyError):
        TCPServer(ssl_options={"keyfile": tls_files["keyfile"]})
    with pytest.raises(ValueError, match="certfile"):
        TCPServer(ssl_options={"certfile": str(tmp_path / "nope.pem")})
    with pytest.raises(ValueError, match="keyfile"):
        TCPServer(ssl_options={"certfile": tls_files["certfile"], "keyfile": str(tmp_path / "nope.key")})
    with pytest.raises(ValueError, match="certfle"):
        TCPServer(ssl_options={"certfile": tls_files["certfile"], "certfle": "typo"})
    with pytest.raises(TypeError):
        TCPServer(ssl_options="cert.pem")  # type: ignore[arg-type]
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        TCPServer(ssl_options={"certfile": str(broken)})


def test_ssl_options_accepted_forms(tls_files) -> None:
    options = {"certfile": tls_files["certfile"], "keyfile": tls_files["keyfile"]}
    server = TCPServer(ssl_options=options)
    assert server.ssl_options is options
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files["certfile"], tls_files["keyfile"])
    assert TCPServer(ssl_options=context).ssl_options is context


needs_ssl_iostream = pytest.mark.skipif(
    not hasattr(iostream, "SSLIOStream"), reason="SSLIOStream is not in tornado_lite.iostream yet"
)


@needs_ssl_iostream
@pytest.mark.parametrize("form", ["dict", "context"])
def test_tls_echo(io_loop, tls_files, form) -> None:
    if form == "dict":
        ssl_options: object = {"certfile": tls_files["certfile"], "keyfile": tls_files["keyfile"]}
    else:
        ssl_options = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_options.load_cert_chain(tls_files["certfile"], tls_files["keyfile"])  # type: ignore[attr-defined]
    [sock] = bind_sockets(0, "127.0.0.1")
    port = sock.getsockname()[1]
    server = EchoServer(ssl_options=ssl_options)
    server.add_socket(sock)
    result: list = []

    def blocking_client() -> None:
        try:
            # A client that connects and leaves at once (like a port scan) must not disturb the server.
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
            context = ssl.create_default_context(cafile=tls_files["ca_certs"])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"secret\n")
                    result.append(tls.recv(100))
        except Exception as e:  # reported by the assertion below
            result.append(e)
        finally:
            io_loop.add_callback(io_loop.stop)

    thread = threading.Thread(target=blocking_client)
    thread.start()
    io_loop.add_timeout(io_loop.time() + 30, io_loop.stop)
    io_loop.start()
    thread.join(10)
    server.stop()
    assert result == [b"secret\n"]


# -- the documented multi-process patterns (each worker prints its task id and exits) ------------------


def _run_pattern(code: str) -> str:
    result = run_python("import signal; signal.alarm(30)\n" + textwrap.dedent(code))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return "".join(sorted(result.stdout))


def test_pattern_listen_single() -> None:
    out = _run_pattern(
        """
        from tornado_lite.ioloop import IOLoop
        from tornado_lite.tcpserver import TCPServer

        async def main():
            server = TCPServer()
            server.listen(0, address="127.0.0.1")

        IOLoop.current().run_sync(main)
        print("012", end="")
        """
    )
    assert out == "012"


def test_pattern_bind_start() -> None:
    out = _run_pattern(
        """
        from tornado_lite.ioloop import IOLoop
        from tornado_lite.process import task_id
        from tornado_lite.tcpserver import TCPServer

        server = TCPServer()
        server.bind(0, address="127.0.0.1")
        server.start(3)
        IOLoop.current().run_sync(lambda: None)
        print(task_id(), end="")
        """
    )
    assert out == "012"


def test_pattern_add_sockets() -> None:
    out = _run_pattern(
        """
        from tornado_lite.ioloop import IOLoop
        from tornado_lite.netutil import bind_sockets
        from tornado_lite.process import fork_processes, task_id
        from tornado_lite.tcpserver import TCPServer

        sockets = bind_sockets(0, address="127.0.0.1")
        fork_processes(3)

        async def post_fork_main():
            server = TCPServer()
            server.add_sockets(sockets)

        IOLoop.current().run_sync(post_fork_main)
        print(task_id(), end="")
        """
    )
    assert out == "012"


def test_pattern_listen_multi_reuse_port() -> None:
    out = _run_pattern(
        """
        import socket
        from tornado_lite.ioloop import IOLoop
        from tornado_lite.netutil import bind_sockets
        from tornado_lite.process import fork_processes, task_id
        from tornado_lite.tcpserver import TCPServer

        (sock,) = bind_sockets(0, address="127.0.0.1", family=socket.AF_INET, reuse_port=True)
        port = sock.getsockname()[1]
        fork_processes(3)

        async def main():
            server = TCPServer()
            server.listen(port, address="127.0.0.1", reuse_port=True)

        IOLoop.current().run_sync(main)
        print(task_id(), end="")
        """
    )
    assert out == "012"


def test_bind_start_refuses_to_fork_with_a_loop() -> None:
    result = run_python(
        textwrap.dedent(
            """
            import signal; signal.alarm(30)
            from tornado_lite.ioloop import IOLoop
            from tornado_lite.tcpserver import TCPServer
            IOLoop.current()
            server = TCPServer()
            server.bind(0, address="127.0.0.1")
            try:
                server.start(2)
            except RuntimeError as e:
                print("refused")
            """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "refused\n"


# -- the echo server example, as a real program ---------------------------------------------------------


def _reserve_port() -> "tuple[socket.socket, int]":
    """A port kept ours by a bound (not listening) SO_REUSEPORT socket; servers join with reuse_port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def _start_echo_server(mode: str, port: int, processes: int) -> ServerProcess:
    return ServerProcess(
        [
            ECHO_SERVER,
            "--mode",
            mode,
            "--port",
            str(port),
            "--address",
            "127.0.0.1",
            "--processes",
            str(processes),
            "--reuse-port",
        ]
    )


def _wait_ready(server: ServerProcess, count: int) -> dict:
    """Reads ``count`` "ready <task id> <pid>" lines; returns {task id: pid}."""
    ready = {}
    for _ in range(count):
        match = server.expect(r"^ready (\S+) (\d+)$")
        ready[match.group(1)] = int(match.group(2))
    return ready


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="the port reservation needs SO_REUSEPORT")
@pytest.mark.parametrize("mode,processes", [("listen", 1), ("bind-start", 2), ("add-sockets", 2)])
def test_echo_example_serves_200_concurrent_clients(io_loop, mode: str, processes: int) -> None:
    reservation, port = _reserve_port()
    server = _start_echo_server(mode, port, processes)
    try:
        workers = _wait_ready(server, processes)
        if mode == "listen":
            assert list(workers) == ["None"]
        else:
            assert sorted(workers) == [str(i) for i in range(processes)]
        echoed = io_loop.run_sync(lambda: echo_client.run_clients("127.0.0.1", port, 200, 5), timeout=120)
        assert echoed == 200 * 5
    finally:
        server.kill()
        reservation.close()


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="the port reservation needs SO_REUSEPORT")
def test_echo_example_worker_killed_is_restarted_and_serves(io_loop) -> None:
    reservation, port = _reserve_port()
    server = _start_echo_server("bind-start", port, 2)
    try:
        workers = _wait_ready(server, 2)
        victim, survivor = workers["0"], workers["1"]
        server.signal_member(victim, signal.SIGKILL)
        replacement = _wait_ready(server, 1)
        assert list(replacement) == ["0"] and replacement["0"] not in (victim, survivor)
        # Freeze the other worker: every connection from now on can only be served by the new one.
        server.signal_member(survivor, signal.SIGSTOP)
        try:
            echoed = io_loop.run_sync(lambda: echo_client.run_clients("127.0.0.1", port, 20, 3), timeout=60)
        finally:
            server.signal_member(survivor, signal.SIGCONT)
        assert echoed == 20 * 3
    finally:
        server.kill()
        reservation.close()
    assert "child 0 (pid %d) killed by signal %d, restarting" % (victim, signal.SIGKILL) in server.stderr()
