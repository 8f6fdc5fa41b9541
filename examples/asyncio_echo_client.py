#!/usr/bin/env python3
"""A TCP echo client in Tornado's documented ``asyncio.run(main())`` form (plain ``import tornado.X``).

Run it on tornado_lite, unmodified, against ``examples/asyncio_echo_server.py``::

    python -m tornado_lite examples/asyncio_echo_client.py --port 8888 --lines 3

It sends ``--lines`` lines from ``--clients`` concurrent connections (``asyncio.gather``), checks every
echo, and prints ``ok <lines received>``; it exits with status 1 on a wrong echo.
"""

import argparse
import asyncio
import sys

from tornado.tcpclient import TCPClient


async def one_client(port: int, client: int, lines: int) -> int:
    stream = await TCPClient().connect("127.0.0.1", port)
    try:
        for n in range(lines):
            line = b"client %d line %d\n" % (client, n)
            await stream.write(line)
            echoed = await asyncio.wait_for(stream.read_until(b"\n"), timeout=30)
            if echoed != line:
                raise SystemExit("wrong echo: %r for %r" % (echoed, line))
        return lines
    finally:
        stream.close()


async def main(port: int, clients: int, lines: int) -> None:
    counts = await asyncio.gather(*(one_client(port, c, lines) for c in range(clients)))
    sys.stdout.write("ok %d\n" % sum(counts))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--lines", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.clients, args.lines))
