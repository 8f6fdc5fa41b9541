#!/usr/bin/env python3
"""Tornado's documented web app form since 6.2, ``asyncio.run(main())``: plain Tornado and asyncio code.

A hello-world page, an ``async`` handler that awaits ``asyncio.sleep`` and ``asyncio.gather``, and a
WebSocket echo.  Run it on tornado_lite's loop, unchanged::

    python -m tornado_lite examples/asyncio_web_app.py [PORT]

(or on Tornado itself with ``python examples/asyncio_web_app.py [PORT]``).  PORT defaults to 8888; 0 picks
a free one.  It prints ``listening on http://127.0.0.1:PORT/`` once it accepts connections.
"""

import asyncio
import sys

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web
import tornado.websocket


class MainHandler(tornado.web.RequestHandler):
    def get(self):
        self.write("Hello, world")


class SlowSumHandler(tornado.web.RequestHandler):
    async def get(self):
        async def later(value):
            await asyncio.sleep(0.01)
            return value

        values = await asyncio.gather(later(1), later(2), later(3))
        loop = tornado.ioloop.IOLoop.current()
        self.write({"sum": sum(values), "same_loop": loop.asyncio_loop is asyncio.get_running_loop()})


class EchoWebSocket(tornado.websocket.WebSocketHandler):
    async def on_message(self, message):
        await asyncio.sleep(0)
        await self.write_message("echo: " + message)


def make_app():
    return tornado.web.Application(
        [
            (r"/", MainHandler),
            (r"/sum", SlowSumHandler),
            (r"/ws", EchoWebSocket),
        ]
    )


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8888
    # app.listen(port) in Tornado's docs; bound by hand here so that port 0 can say which port it got.
    sockets = tornado.netutil.bind_sockets(port, address="127.0.0.1")
    server = tornado.httpserver.HTTPServer(make_app())
    server.add_sockets(sockets)
    print(f"listening on http://127.0.0.1:{sockets[0].getsockname()[1]}/", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
