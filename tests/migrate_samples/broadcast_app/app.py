"""A line broadcaster: every line a client sends is written to every connected client."""
import asyncio

import tornado.ioloop
from tornado import gen, iostream
from tornado.tcpserver import TCPServer


class Broadcaster(TCPServer):
    def __init__(self):
        super().__init__()
        self.clients = set()
        self.ready = asyncio.Event()

    async def handle_stream(self, stream, address):
        self.clients.add(stream)
        if len(self.clients) >= 2:
            self.ready.set()
        try:
            while True:
                line = await stream.read_until(b"\n")
                await gen.multi([c.write(line) for c in list(self.clients)])
        except iostream.StreamClosedError:
            pass
        finally:
            self.clients.discard(stream)


def main():
    Broadcaster().listen(8889)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
