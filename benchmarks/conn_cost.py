"""The cost of one accepted connection, counted over a fixed number of connections.

A developer's tool for the ``connrate`` row (``make bench`` is the real suite).  This process is the
server: it serves exactly ``--conns`` connections (connect, one line echoed, close by the client),
then stops.  The client is benchmarks/loadgen.c in ``connrate`` mode (8 at once, as in the suite),
built into ``--build-dir`` and run as a child, or run by you (``--external-client``: the port is
printed as ``LISTENING <port>``) so that a tracer of this process sees the server alone.  A fixed
count, not a fixed time, so that instruction and syscall counts are per connection whatever the
machine does.  It prints the server's own CPU (user and system) per connection on stderr; on a
shared machine that figure moves by 10-20% between runs, the counts below by under 1%.

``--stack``:

  tornado_lite  the suite's echo server: TCPServer, ``read_until(b"\\n")`` then ``await write``
  tornado       the same on real Tornado (asyncio), to read its profile next to ours
  bare          the floor: a pure-Python epoll loop (accept, register, recv, send, close) with no
                framework at all
  lite-loop     tornado_lite's IOLoop and accept handler serving raw sockets (no stream)
  lite-stream   the same with an IOStream per connection, echoing by done-callbacks (no TCPServer)

``--handler callbacks`` runs the tornado_lite/tornado echo with done-callbacks instead of a coroutine.
Instructions per connection of these steps, by difference, give each layer's share.

Instructions per connection (two run lengths, so start-up cancels)::

    for n in 400 2400; do valgrind --tool=callgrind --callgrind-out-file=cg.$n \\
        python benchmarks/conn_cost.py --conns $n; done
    # (totals of cg.2400 - totals of cg.400) / 2000

Server CPU per connection side by side, stacks run in turn (each in a process of its own) for
``--rounds`` rounds, with each stack's ratio to the last one of the list per round and the medians::

    python benchmarks/conn_cost.py --compare bare,tornado_lite,tornado --rounds 5 --conns 20000

Syscalls per connection, by kernel tracepoints (strace slows the server so much that the client's
close is always there before the server reads again, which changes the syscall pattern)::

    perf stat -x, -e 'syscalls:sys_enter_*' python benchmarks/conn_cost.py --conns 20000 \
        --external-client > port.txt &
    loadgen --mode connrate --port $(awk '{print $2}' port.txt) --conns 8 --warmup 0 --duration 600 &
    # stop the load generator once the server has exited; counts / 20000
"""

import argparse
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import typing

HERE = os.path.dirname(os.path.abspath(__file__))
LOADGEN_C = os.path.join(HERE, "loadgen.c")


def build_loadgen(build_dir: str) -> str:
    exe = os.path.join(build_dir, "loadgen")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(LOADGEN_C):
        os.makedirs(build_dir, exist_ok=True)
        subprocess.run(["cc", "-O2", "-o", exe, LOADGEN_C], check=True, timeout=120)
    return exe


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def serve_tornado_style(
    stack: str, sock: socket.socket, conns: int, started: typing.Callable[[], None], handler: str = "coroutine"
) -> None:
    if stack == "tornado":
        from tornado.ioloop import IOLoop
        from tornado.iostream import StreamClosedError
        from tornado.tcpserver import TCPServer
    else:
        from tornado_lite.ioloop import IOLoop  # type: ignore[assignment]
        from tornado_lite.iostream import StreamClosedError  # type: ignore[assignment]
        from tornado_lite.tcpserver import TCPServer  # type: ignore[assignment]
    done = [0]
    loop = IOLoop.current()

    class EchoServer(TCPServer):  # type: ignore[misc, valid-type]
        async def handle_stream(self, stream: typing.Any, address: typing.Any) -> None:
            while True:
                try:
                    data = await stream.read_until(b"\n")
                    await stream.write(data)
                except StreamClosedError:
                    break
            done[0] += 1
            if done[0] == conns:
                loop.stop()

    class CallbackEchoServer(TCPServer):  # type: ignore[misc, valid-type]
        """The same echo with done-callbacks instead of a coroutine: the cost of the task, by difference."""

        def handle_stream(self, stream: typing.Any, address: typing.Any) -> None:
            def on_line(future: typing.Any) -> None:
                try:
                    data = future.result()
                except StreamClosedError:
                    done[0] += 1
                    if done[0] == conns:
                        loop.stop()
                    return
                stream.write(data)
                stream.read_until(b"\n").add_done_callback(on_line)

            stream.read_until(b"\n").add_done_callback(on_line)

    server = CallbackEchoServer() if handler == "callbacks" else EchoServer()
    server.add_sockets([sock])
    loop.add_callback(started)
    loop.start()


def serve_layers(stack: str, sock: socket.socket, conns: int, started: typing.Callable[[], None]) -> None:
    """tornado_lite's loop and accept handler, with IOStream (``lite-stream``) or raw sockets (``lite-loop``).

    Steps between ``bare`` and ``tornado_lite``, to tell the layers' shares apart by difference.
    """
    from tornado_lite.ioloop import IOLoop
    from tornado_lite.iostream import IOStream, StreamClosedError
    from tornado_lite.netutil import add_accept_handler

    loop = IOLoop.current()
    done = [0]

    def finished() -> None:
        done[0] += 1
        if done[0] == conns:
            loop.stop()

    def serve_stream(connection: socket.socket, address: typing.Any) -> None:
        stream = IOStream(connection)

        def on_line(future: typing.Any) -> None:
            try:
                data = future.result()
            except StreamClosedError:
                finished()
                return
            stream.write(data)
            stream.read_until(b"\n").add_done_callback(on_line)

        stream.read_until(b"\n").add_done_callback(on_line)

    def serve_raw(connection: socket.socket, address: typing.Any) -> None:
        connection.setblocking(False)

        def on_readable(fd: typing.Any, events: int) -> None:
            try:
                data = connection.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                connection.send(data)
                return
            loop.remove_handler(connection)
            connection.close()
            finished()

        loop.add_handler(connection, on_readable, IOLoop.READ)

    add_accept_handler(sock, serve_stream if stack == "lite-stream" else serve_raw)
    loop.add_callback(started)
    loop.start()


def serve_bare(sock: socket.socket, conns: int, started: typing.Callable[[], None]) -> None:
    """Accept, one recv/send per readiness, close at EOF: what any server must do, and nothing else."""
    ep = select.epoll()
    lfd = sock.fileno()
    ep.register(lfd, select.EPOLLIN)
    open_socks: typing.Dict[int, socket.socket] = {}
    done = 0
    started()
    while done < conns:
        for fd, _ in ep.poll():
            if fd == lfd:
                while True:
                    try:
                        conn, _addr = sock.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    open_socks[conn.fileno()] = conn
                    ep.register(conn.fileno(), select.EPOLLIN)
                continue
            conn = open_socks[fd]
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                conn.send(data)
                continue
            ep.unregister(fd)
            del open_socks[fd]
            conn.close()
            done += 1
    ep.close()


_CPU_LINE = re.compile(r"server CPU ([0-9.]+) us each \(user ([0-9.]+), system ([0-9.]+)\)")


def compare(stacks: typing.List[str], rounds: int, argv: typing.List[str]) -> None:
    """Runs each stack in turn, ``rounds`` times, and prints server CPU per connection and the ratios."""
    figures: typing.Dict[str, typing.List[typing.Tuple[float, float, float]]] = {stack: [] for stack in stacks}
    anchor = stacks[-1]
    for round_no in range(1, rounds + 1):
        for stack in stacks:
            done = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--stack", stack] + argv,
                capture_output=True, text=True, timeout=600,
            )
            found = _CPU_LINE.search(done.stderr)
            if done.returncode != 0 or found is None:
                raise SystemExit(f"{stack} failed:\n{done.stderr}")
            total, user, system = (float(value) for value in found.groups())
            figures[stack].append((total, user, system))
        print(f"round {round_no}: " + "  ".join(
            f"{stack} {figures[stack][-1][0]:.1f} ({figures[stack][-1][0] / figures[anchor][-1][0]:.2f}x)"
            for stack in stacks))
    print(f"medians of {rounds} rounds, server CPU us per connection (user + system), ratio to {anchor}:")
    for stack in stacks:
        total, user, system = (statistics.median(f[i] for f in figures[stack]) for i in range(3))
        ratios = [f[0] / a[0] for f, a in zip(figures[stack], figures[anchor])]
        print(f"  {stack:14s} {total:6.1f} (user {user:.1f}, system {system:.1f})  "
              f"{statistics.median(ratios):.2f}x  [{min(ratios):.2f}-{max(ratios):.2f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stack", choices=["tornado_lite", "tornado", "bare", "lite-loop", "lite-stream"], default="tornado_lite"
    )
    parser.add_argument("--conns", type=int, default=2000, help="connections to serve, then stop")
    parser.add_argument("--clients", type=int, default=8, help="connections in flight at once")
    parser.add_argument("--build-dir", default="/tmp/conn_cost_build")
    parser.add_argument("--handler", choices=["coroutine", "callbacks"], default="coroutine",
                        help="the echo as the suite's coroutine, or as done-callbacks (no task)")
    parser.add_argument("--external-client", action="store_true", help="print the port; start no client")
    parser.add_argument("--compare", metavar="STACK,STACK,...",
                        help="run these stacks in turn instead (server CPU; ratios to the last one)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of --compare")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare.split(","), args.rounds,
                ["--conns", str(args.conns), "--clients", str(args.clients), "--build-dir", args.build_dir,
                 "--handler", args.handler])
        return
    sock = listening_socket()
    port = sock.getsockname()[1]
    child: typing.List[subprocess.Popen] = []

    def started() -> None:
        if args.external_client:
            print("LISTENING", port, flush=True)
            return
        exe = build_loadgen(args.build_dir)
        child.append(
            subprocess.Popen(
                [exe, "--mode", "connrate", "--port", str(port), "--conns", str(args.clients),
                 "--warmup", "0", "--duration", "3600", "--max-time", "3600"],
                stdout=subprocess.DEVNULL,
            )
        )

    # The stack's modules are imported before the clock starts: start-up is no part of a connection's cost.
    if args.stack == "tornado":
        import tornado.tcpserver  # noqa: F401
    elif args.stack != "bare":
        import tornado_lite.tcpserver  # noqa: F401
    t0 = os.times()
    try:
        if args.stack == "bare":
            serve_bare(sock, args.conns, started)
        elif args.stack.startswith("lite-"):
            serve_layers(args.stack, sock, args.conns, started)
        else:
            serve_tornado_style(args.stack, sock, args.conns, started, args.handler)
    finally:
        for proc in child:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        sock.close()
    t1 = os.times()
    user, system = (t1.user - t0.user) * 1e6 / args.conns, (t1.system - t0.system) * 1e6 / args.conns
    print(f"{args.stack}: {args.conns} connections, server CPU {user + system:.1f} us each "
          f"(user {user:.1f}, system {system:.1f})", file=sys.stderr)


if __name__ == "__main__":
    main()
