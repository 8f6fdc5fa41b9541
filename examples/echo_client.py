#!/usr/bin/env python3
"""A client for ``echo_server.py``: many concurrent connections, each sending lines and checking the echo.

    python examples/echo_client.py --port 8888 --clients 200 --messages 10

Prints ``ok <clients> clients, <lines> lines echoed`` and exits 0 when every line came back intact.
"""

import argparse
import sys

from tornado_lite import gen
from tornado_lite.ioloop import IOLoop
from tornado_lite.tcpclient import TCPClient


async def one_client(client: TCPClient, host: str, port: int, index: int, messages: int) -> int:
    """Connects, sends ``messages`` lines one by one, and checks each echo; returns the lines echoed."""
    stream = await client.connect(host, port)
    try:
        for i in range(messages):
            line = b"client %d says hello %d\n" % (index, i)
            await stream.write(line)
            reply = await stream.read_until(b"\n")
            if reply != line:
                raise AssertionError("client %d sent %r but got %r" % (index, line, reply))
    finally:
        stream.close()
    return messages


async def run_clients(host: str, port: int, clients: int, messages: int) -> int:
    """Runs ``clients`` connections at once; returns the total number of lines echoed."""
    client = TCPClient()
    try:
        counts = await gen.multi([one_client(client, host, port, i, messages) for i in range(clients)])
    finally:
        client.close()
    return sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    echoed = IOLoop.current().run_sync(
        lambda: run_clients(args.host, args.port, args.clients, args.messages), timeout=args.timeout
    )
    expected = args.clients * args.messages
    print("ok %d clients, %d lines echoed" % (args.clients, echoed))
    sys.exit(0 if echoed == expected else 1)


if __name__ == "__main__":
    main()
