#!/usr/bin/env python3
"""The echo server from Tornado's ``TCPServer`` documentation, running on tornado_lite.

``EchoServer`` is the documentation's class unchanged (only ``tornado`` became ``tornado_lite``).
Start it in any of the documented start-up patterns::

    python examples/echo_server.py --mode listen --port 8888                 # one process
    python examples/echo_server.py --mode bind-start --port 8888 --processes 0   # bind() + start(n)
    python examples/echo_server.py --mode add-sockets --port 8888 --processes 4  # bind_sockets + fork

``--processes 0`` means one worker per CPU.  Every serving process prints ``ready <task id> <pid>``
once it accepts connections.  Try it with ``examples/echo_client.py`` or ``nc localhost 8888``.
"""

import argparse
import os
import sys

from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import StreamClosedError
from tornado_lite.locks import Event
from tornado_lite.netutil import bind_sockets
from tornado_lite.process import fork_processes, task_id
from tornado_lite.tcpserver import TCPServer


class EchoServer(TCPServer):
    async def handle_stream(self, stream, address):
        while True:
            try:
                data = await stream.read_until(b"\n")
                await stream.write(data)
            except StreamClosedError:
                break


def announce() -> None:
    # One write per line: the workers share stdout, and print() may write text and newline apart.
    sys.stdout.write("ready %s %d\n" % (task_id(), os.getpid()))
    sys.stdout.flush()


def run_listen(args: argparse.Namespace) -> None:
    """Pattern 1: ``listen`` in a single process."""

    async def main() -> None:
        server = EchoServer()
        server.listen(args.port, args.address, reuse_port=args.reuse_port)
        announce()
        await Event().wait()

    IOLoop.current().run_sync(main)


def run_bind_start(args: argparse.Namespace) -> None:
    """Pattern 3 of the documentation: ``bind`` then ``start(n)``, which forks the workers."""
    server = EchoServer()
    server.bind(args.port, args.address, reuse_port=args.reuse_port)
    server.start(args.processes)
    announce()
    IOLoop.current().start()


def run_add_sockets(args: argparse.Namespace) -> None:
    """Pattern 2: ``bind_sockets``, then ``fork_processes``, then ``add_sockets`` in each worker."""
    sockets = bind_sockets(args.port, args.address, reuse_port=args.reuse_port)
    print("port %d" % sockets[0].getsockname()[1], flush=True)
    fork_processes(args.processes)

    async def post_fork_main() -> None:
        server = EchoServer()
        server.add_sockets(sockets)
        announce()
        await Event().wait()

    IOLoop.current().run_sync(post_fork_main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["listen", "bind-start", "add-sockets"], default="listen")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--address", default=None, help="address to listen on (default: all interfaces)")
    parser.add_argument("--processes", type=int, default=0, help="workers to fork (0: one per CPU)")
    parser.add_argument("--reuse-port", action="store_true", help="set SO_REUSEPORT on the listening sockets")
    args = parser.parse_args()
    {"listen": run_listen, "bind-start": run_bind_start, "add-sockets": run_add_sockets}[args.mode](args)


if __name__ == "__main__":
    main()
