#!/usr/bin/env python3
"""A TCP echo server in the form Tornado's documentation gives every program since 6.2: ``asyncio.run(main())``.

The code is plain Tornado (``import tornado.X``).  Run it on tornado_lite, unmodified::

    python -m tornado_lite examples/asyncio_echo_server.py --port 8888

(``python -m tornado_lite`` maps ``tornado.*`` to ``tornado_lite.*`` and installs the asyncio bridge, so
``asyncio.run`` runs on tornado_lite's loop.)  It prints ``ready <port>`` once it accepts connections and
stops after ``--seconds`` if given.  Each handler also uses asyncio itself (``asyncio.sleep(0)``,
``asyncio.wait_for``), as handlers in real applications do.
"""

import argparse
import asyncio
import sys

from tornado.iostream import StreamClosedError
from tornado.netutil import bind_sockets
from tornado.tcpserver import TCPServer


class EchoServer(TCPServer):
    async def handle_stream(self, stream, address):
        while True:
            try:
                data = await asyncio.wait_for(stream.read_until(b"\n"), timeout=60)
                await asyncio.sleep(0)
                await stream.write(data)
            except (StreamClosedError, asyncio.TimeoutError):
                break


async def main(port: int, seconds: float) -> None:
    sockets = bind_sockets(port, "127.0.0.1")
    server = EchoServer()
    server.add_sockets(sockets)
    sys.stdout.write("ready %d\n" % sockets[0].getsockname()[1])
    sys.stdout.flush()
    if seconds > 0:
        await asyncio.sleep(seconds)
    else:
        await asyncio.Event().wait()
    server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8888, help="0 picks a free port (printed)")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: run forever)")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.seconds))
