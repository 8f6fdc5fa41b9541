"""The benchmark echo server, written once and run on each stack by swapping imports.

The line echo is the documentation's TCPServer example (``read_until(b"\\n")`` then
``await stream.write``); the bulk echo is the same loop with ``read_bytes(65536, partial=True)``.
``bulk_lines`` is the line echo again, fed 64 KiB lines (asyncio streams get a read limit that fits them).
``--stack`` picks where ``IOLoop``/``TCPServer``/``StreamClosedError`` come from:

  tornado_lite     tornado_lite's own loop
  tornado          Tornado 6 on asyncio's default loop
  tornado-uvloop   Tornado 6 on uvloop
  asyncio-streams  not Tornado at all: the same echo on ``asyncio.start_server`` (a comparison column)
  floor            not Tornado either: a bare epoll loop with no futures, coroutines or streams (a
                   reference column: what pure Python costs at the least, for the same work)

The server binds 127.0.0.1 on an ephemeral port, prints ``LISTENING <port>`` on stdout and runs
until it is killed (the driver sends SIGTERM).  If the stack cannot be imported it prints
``IMPORT-FAILED <reason>`` and exits with status 3, so the driver can show "n/a" for that column.

This file is benchmark scaffolding: it may import tornado, uvloop and asyncio.  tornado_lite itself
never does.
"""

import argparse
import signal
import socket
import ssl
import sys
import typing

BACKLOG = 1024  # the same on every stack, so a burst of connects never overflows into SYN retries
IMPORT_FAILED_STATUS = 3


def load_tornado_api(stack: str) -> typing.Tuple[typing.Any, typing.Any, typing.Any, typing.Any]:
    """Return (IOLoop, TCPServer, StreamClosedError, bind_sockets) from the chosen stack."""
    if stack == "tornado_lite":
        from tornado_lite.ioloop import IOLoop
        from tornado_lite.iostream import StreamClosedError
        from tornado_lite.netutil import bind_sockets
        from tornado_lite.tcpserver import TCPServer
    elif stack in ("tornado", "tornado-uvloop"):
        if stack == "tornado-uvloop":
            import asyncio

            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        from tornado.ioloop import IOLoop  # type: ignore[no-redef]
        from tornado.iostream import StreamClosedError  # type: ignore[no-redef]
        from tornado.netutil import bind_sockets  # type: ignore[no-redef]
        from tornado.tcpserver import TCPServer  # type: ignore[no-redef]
    else:
        raise ValueError(f"unknown stack {stack!r}")
    return IOLoop, TCPServer, StreamClosedError, bind_sockets


def run_tornado_style(stack: str, mode: str, ssl_ctx: typing.Optional[ssl.SSLContext]) -> None:
    IOLoop, TCPServer, StreamClosedError, bind_sockets = load_tornado_api(stack)

    class EchoServer(TCPServer):  # type: ignore[misc, valid-type]
        async def handle_stream(self, stream: typing.Any, address: typing.Any) -> None:
            while True:
                try:
                    data = await stream.read_until(b"\n")
                    await stream.write(data)
                except StreamClosedError:
                    break

    class BulkEchoServer(TCPServer):  # type: ignore[misc, valid-type]
        async def handle_stream(self, stream: typing.Any, address: typing.Any) -> None:
            while True:
                try:
                    data = await stream.read_bytes(65536, partial=True)
                    await stream.write(data)
                except StreamClosedError:
                    break

    server_class = BulkEchoServer if mode == "bulk" else EchoServer
    loop = IOLoop.current()
    sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET, backlog=BACKLOG)
    server = server_class(ssl_options=ssl_ctx)
    server.add_sockets(sockets)
    announce(sockets[0].getsockname()[1])
    loop.start()


def run_asyncio_streams(mode: str, ssl_ctx: typing.Optional[ssl.SSLContext]) -> None:
    import asyncio

    async def line_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.readuntil(b"\n")
                writer.write(data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def bulk_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        handler = bulk_echo if mode == "bulk" else line_echo
        # asyncio's readuntil refuses a line near its 64 KiB default limit: bulk_lines lines are 64 KiB.
        limit = 1 << 20 if mode == "bulk_lines" else 1 << 16
        server = await asyncio.start_server(
            handler, "127.0.0.1", 0, family=socket.AF_INET, backlog=BACKLOG, ssl=ssl_ctx, limit=limit
        )
        announce(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()  # run until killed

    asyncio.run(main())


class _FloorConn:
    """One connection of the floor server: its socket, the unfinished line, the unsent reply."""

    __slots__ = ("sock", "partial", "unsent", "handshaking")

    def __init__(self, sock: socket.socket, handshaking: bool) -> None:
        self.sock = sock
        self.partial = b""
        self.unsent: typing.Optional[typing.Union[bytes, memoryview]] = None
        self.handshaking = handshaking


def run_floor(mode: str, ssl_ctx: typing.Optional[ssl.SSLContext], read_size: int = 65536) -> None:
    """The pure-Python floor: epoll, recv, send, and nothing else.

    No futures, no coroutines, no stream objects: what any Python server must spend at the least
    for the same work, so that a target can be read against what Python itself allows (``read_size``
    other than 64 KiB is for benchmarks/bulk_profile.py's larger-read floor). In the bulk
    modes it turns Nagle's algorithm off (a 64 KiB send's short last segment would otherwise wait for
    the peer's ACK: benchmarks/README.md, "Bulk, session 4"); line echoes are single small sends. It reads
    64 KiB at a time, once per connection per poll (as a stream's ``read_bytes(65536)`` does), echoes
    a chunk as it comes in bulk mode, and up to the last complete line in the line modes (one
    ``send`` for all the lines a read brought), and stops reading a connection while a reply waits
    for room, so that its memory stays bounded like the streams'.
    """
    import select

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(BACKLOG)
    listener.setblocking(False)
    poller = select.epoll()
    listen_fd = listener.fileno()
    poller.register(listen_fd, select.EPOLLIN)
    conns: typing.Dict[int, _FloorConn] = {}
    by_lines = mode != "bulk"
    want_read = (ssl.SSLWantReadError, BlockingIOError)
    announce(listener.getsockname()[1])

    def close(fd: int) -> None:
        conn = conns.pop(fd)
        poller.unregister(fd)
        conn.sock.close()

    def send(fd: int, conn: _FloorConn, out: typing.Union[bytes, memoryview], head: bytes = b"") -> bool:
        """Send head + out (gathered, not joined); keep what the kernel did not take and watch for room.

        False if the peer is gone.
        """
        if head and ssl_ctx is not None:  # an SSLSocket cannot gather
            out, head = head + bytes(out), b""
        try:
            sent = conn.sock.sendmsg([head, out]) if head else conn.sock.send(out)
        except (BlockingIOError, ssl.SSLWantWriteError):
            sent = 0  # OpenSSL wants the same buffer again; the kernel took none of a plain send
        except OSError:
            close(fd)
            return False
        if sent < len(head) + len(out):
            if head:  # rare: a short gathered send; its rest is joined once
                out = head + bytes(out)
            conn.unsent = memoryview(out)[sent:] if sent else out
            poller.modify(fd, select.EPOLLOUT)
        return True

    def serve(fd: int, conn: _FloorConn) -> None:
        sock = conn.sock
        if conn.handshaking:
            try:
                sock.do_handshake()  # type: ignore[attr-defined]
            except ssl.SSLWantReadError:
                poller.modify(fd, select.EPOLLIN)
                return
            except ssl.SSLWantWriteError:
                poller.modify(fd, select.EPOLLOUT)
                return
            except OSError:  # ssl.SSLError included: a bad handshake ends the connection
                close(fd)
                return
            conn.handshaking = False
            poller.modify(fd, select.EPOLLIN)
        if conn.unsent is not None:
            rest, conn.unsent = conn.unsent, None
            if not send(fd, conn, rest) or conn.unsent is not None:
                return
            poller.modify(fd, select.EPOLLIN)
        while True:
            try:
                data = sock.recv(read_size)
            except want_read:
                return
            except OSError:
                close(fd)
                return
            if not data:
                close(fd)
                return
            head = b""
            out: typing.Union[bytes, memoryview] = data  # what to send after head
            if by_lines:  # send up to the last complete line: the earlier part and this read, not joined
                end = data.rfind(b"\n") + 1
                if not end:
                    conn.partial += data
                    out = b""
                elif end < len(data):
                    head, conn.partial, out = conn.partial, data[end:], memoryview(data)[:end]
                else:
                    head, conn.partial = conn.partial, b""
            if out and (not send(fd, conn, out, head) or conn.unsent is not None):
                return
            # Once per poll, as the streams read; but what OpenSSL already decrypted is invisible to epoll.
            if not (ssl_ctx and sock.pending()):  # type: ignore[attr-defined]
                return

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and kin: try again at the next poll
                return
            sock.setblocking(False)
            if mode != "line":
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl_ctx is not None:
                sock = ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            fd = sock.fileno()
            conns[fd] = conn = _FloorConn(sock, ssl_ctx is not None)
            poller.register(fd, select.EPOLLIN)
            if conn.handshaking:
                serve(fd, conn)

    while True:
        for fd, _events in poller.poll():
            if fd == listen_fd:
                accept()
            else:
                conn = conns.get(fd)
                if conn is not None:
                    serve(fd, conn)


def announce(port: int) -> None:
    sys.stdout.write(f"LISTENING {port}\n")
    sys.stdout.flush()


def make_ssl_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    # The load generator never resumes sessions, so TLS 1.3 session tickets would be pure waste;
    # without this every stack pays OpenSSL's ticket work (and a Nagle/delayed-ACK wait on stacks
    # that leave TCP_NODELAY off) and "handshakes/s" stops measuring the handshake.
    ctx.num_tickets = 0
    return ctx


def main(argv: typing.Optional[typing.List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--stack", required=True, choices=["tornado_lite", "tornado", "tornado-uvloop", "asyncio-streams", "floor"]
    )
    parser.add_argument("--mode", default="line", choices=["line", "bulk", "bulk_lines"])
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--check", action="store_true", help="only import the stack, then exit")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the server; stats go to FILE on SIGTERM")
    parser.add_argument("--read-size", type=int, default=65536, help="floor only: bytes per recv")
    args = parser.parse_args(argv)

    ssl_ctx = make_ssl_context(args.certfile, args.keyfile) if args.certfile else None
    if args.stack not in ("asyncio-streams", "floor"):
        try:
            load_tornado_api(args.stack)
        except Exception as e:  # an unfinished or broken stack is a "n/a" column, not a crash
            sys.stdout.write(f"IMPORT-FAILED {type(e).__name__}: {e}\n")
            sys.stdout.flush()
            return IMPORT_FAILED_STATUS
    if args.check:
        sys.stdout.write("IMPORT-OK\n")
        return 0
    profiler = None
    if args.profile:
        import cProfile

        def leave(signum: int, frame: typing.Any) -> None:
            raise SystemExit(0)  # unwinds out of the loop so that the stats get written

        signal.signal(signal.SIGTERM, leave)
        profiler = cProfile.Profile()
        profiler.enable()
    try:
        if args.stack == "asyncio-streams":
            run_asyncio_streams(args.mode, ssl_ctx)
        elif args.stack == "floor":
            run_floor(args.mode, ssl_ctx, args.read_size)
        else:
            run_tornado_style(args.stack, args.mode, ssl_ctx)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
