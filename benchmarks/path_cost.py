"""The cost of tornado_lite's echo path, measured in one process with deterministic batching.

A developer's tool for tuning the hot path (``make bench`` is the real suite).  N socketpairs: the
server end of each is an ``IOStream`` served by the documentation's echo coroutine (``read_until``
then ``await write``); the client end is a raw non-blocking socket driven by a handler on the same
loop, which sends one round (a line per connection, or ``--depth`` lines in ``pipeline`` mode) and
sends the next once every echo is back.  Every loop pass therefore sees the same batch, whatever the
machine is doing, so an instruction count is reproducible to a fraction of a percent where timings on
a shared machine vary by tens of percent.  The client's work is included; it is the same for every
version of the server being compared.

    python benchmarks/path_cost.py pingpong --conns 100 --rounds 1000     # CPU µs per message
    python benchmarks/path_cost.py bulk --conns 4 --rounds 200            # per 256 KiB round per conn

``--server raw`` replaces the streams and coroutines with a bare echo on the same loop (a handler
that ``recv``s and ``send``s the chunk back): the floor a stream-and-coroutine echo is measured
against (what it costs beyond a bare epoll echo).

``bulk`` echoes 256 KiB per connection per round with ``read_bytes(65536, partial=True)``;
``bulk_lines`` the same bytes as four 64 KiB lines with ``read_until``.  Socketpairs are not TCP, so
only the user-space (Python) share of a bulk echo is comparable with the suite's; the kernel's share
(segments, Nagle, ACKs, wake-ups: most of a bulk echo's CPU) is counted per MB by bulk_profile.py.

Instructions per message, the figure benchmarks/README.md quotes (two run lengths, so start-up cancels):

    for r in 20 120; do valgrind --tool=callgrind --callgrind-out-file=cg.$r \\
        python benchmarks/path_cost.py pingpong --conns 100 --rounds $r; done
    # (totals of cg.120 - totals of cg.20) / (100 rounds * 100 messages)
"""

import argparse
import socket
import time
import typing

from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import IOStream, StreamClosedError

LINE = b"x" * 63 + b"\n"


async def echo(stream: IOStream) -> None:
    while True:
        try:
            data = await stream.read_until(b"\n")
            await stream.write(data)
        except StreamClosedError:
            break


async def bulk_echo(stream: IOStream) -> None:
    while True:
        try:
            data = await stream.read_bytes(65536, partial=True)
            await stream.write(data)
        except StreamClosedError:
            break


class RawEcho:
    """The bare echo of ``--server raw``: the loop's handler sends back whatever one recv got."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock

    def on_readable(self, fd: int, events: int) -> None:
        data = self.sock.recv(65536)
        if data:
            self.sock.send(data)  # (a line echo's reply always fits the socket buffer)

    def close(self) -> None:
        self.sock.close()


class RoundClient:
    """Raw client sockets on the loop: a round is one payload per socket, the next once all came back."""

    def __init__(self, loop: IOLoop, conns: int, payload: bytes, rounds: int, handler: typing.Any = echo) -> None:
        self.loop = loop
        self.payload = payload
        self.rounds_left = rounds
        self.sockets: typing.Dict[int, socket.socket] = {}
        self.received: typing.Dict[int, int] = {}
        self.complete = 0
        self.scratch = bytearray(65536)
        self.servers = []
        self.unsent: typing.Dict[int, memoryview] = {}
        for _ in range(conns):
            server_end, client_end = socket.socketpair()
            client_end.setblocking(False)
            self.sockets[client_end.fileno()] = client_end
            self.received[client_end.fileno()] = 0
            loop.add_handler(client_end.fileno(), self.on_readable, IOLoop.READ)
            if handler is None:
                raw = RawEcho(server_end)
                loop.add_handler(server_end.fileno(), raw.on_readable, IOLoop.READ)
                self.servers.append(raw)
                continue
            stream = IOStream(server_end)
            self.servers.append(stream)
            loop.spawn_callback(handler, stream)

    def send_round(self) -> None:
        for fd, sock in self.sockets.items():
            sent = sock.send(self.payload)
            if sent < len(self.payload):  # a bulk payload larger than the socket buffer
                self.unsent[fd] = memoryview(self.payload)[sent:]
                self.loop.update_handler(fd, IOLoop.READ | IOLoop.WRITE)

    def on_readable(self, fd: int, events: int) -> None:
        if events & IOLoop.WRITE:
            rest = self.unsent[fd]
            try:
                sent = self.sockets[fd].send(rest)
            except BlockingIOError:
                sent = 0
            if sent >= len(rest):
                del self.unsent[fd]
                self.loop.update_handler(fd, IOLoop.READ)
            else:
                self.unsent[fd] = rest[sent:]
            if not events & IOLoop.READ:
                return
        try:
            count = self.sockets[fd].recv_into(self.scratch)
        except BlockingIOError:
            return
        total = self.received[fd] + count
        if total >= len(self.payload):
            total -= len(self.payload)
            self.complete += 1
            if self.complete == len(self.sockets):
                self.complete = 0
                self.rounds_left -= 1
                if self.rounds_left:
                    self.send_round()
                else:
                    self.loop.stop()
        self.received[fd] = total

    def close(self) -> None:
        for fd, sock in self.sockets.items():
            self.loop.remove_handler(fd)
            sock.close()
        for server in self.servers:
            if isinstance(server, RawEcho):
                self.loop.remove_handler(server.sock.fileno())
            server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["pingpong", "pipeline", "bulk", "bulk_lines"])
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=16, help="lines per connection per round (pipeline)")
    parser.add_argument(
        "--server", choices=["stream", "raw"], default="stream",
        help="stream: IOStream + echo coroutine; raw: a bare recv/send handler (pingpong/pipeline only)",
    )
    args = parser.parse_args()
    depth = args.depth if args.mode == "pipeline" else 1
    loop = IOLoop(make_current=True)
    if args.mode.startswith("bulk"):
        line = b"x" * 65535 + b"\n"
        client = RoundClient(loop, args.conns, line * 4, args.rounds, bulk_echo if args.mode == "bulk" else echo)
        depth = 4  # four 64 KiB units per round
    else:
        client = RoundClient(loop, args.conns, LINE * depth, args.rounds, None if args.server == "raw" else echo)
    loop.add_callback(client.send_round)
    started = time.process_time()
    loop.start()
    elapsed = time.process_time() - started
    client.close()
    loop.close()
    messages = args.rounds * args.conns * depth
    per_message = elapsed / messages * 1e6
    print(f"{args.mode}, {args.conns} connections: {per_message:.2f} µs CPU per message ({messages} messages)")


if __name__ == "__main__":
    main()
