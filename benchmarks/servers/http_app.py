"""The HTTP benchmark app: plain Tornado code, run unchanged on every stack.

    python benchmarks/servers/http_app.py                        Tornado on asyncio
    python benchmarks/servers/http_uvloop.py benchmarks/servers/http_app.py   Tornado on uvloop
    python -m tornado_lite benchmarks/servers/http_app.py        Tornado's HTTP layer on tornado_lite's core

Routes (all answers are small, so the figures are per-request overhead, not bytes):

  GET /        hello world: ``self.write("Hello, world")``
  GET /json    an ``async`` handler that awaits a coroutine (which yields once through ``gen.sleep(0)``)
               and writes a dict (Tornado serialises it as JSON)
  /ws          WebSocket echo: every message is written back as it came
  /ws-asleep   the same echo from an ``async def on_message`` that first awaits ``asyncio.sleep(0)``
               (issue 14: asyncio code in a handler; on tornado_lite it needs the asyncio bridge)

It binds 127.0.0.1 on an ephemeral port with a listen backlog of 1024 (as the echo server does), prints
``LISTENING <port> <module of the running IOLoop class>`` (the driver checks that the tornado_lite column
really runs on tornado_lite's loop) and serves until it is killed (SIGTERM from the driver; SIGINT ends it
with a KeyboardInterrupt, which lets ``python -m cProfile`` write its stats).  ``--check`` imports everything, prints
``IMPORT-OK <module>`` and exits.

This file is benchmark scaffolding.  It must stay ordinary Tornado application code: no stack is named
in it, the launcher picks the loop.
"""

import argparse
import asyncio
import typing

import tornado.gen
import tornado.httpserver
import tornado.ioloop
import tornado.locks
import tornado.netutil
import tornado.web
import tornado.websocket

BACKLOG = 1024


class HelloHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("Hello, world")


async def lookup(item_id: int) -> typing.Dict[str, typing.Any]:
    """Stands for a small piece of async work (a cache or database call) that yields to the loop once."""
    await tornado.gen.sleep(0)
    return {"id": item_id, "name": "widget", "tags": ["a", "b"], "price": 12.5}


class JsonHandler(tornado.web.RequestHandler):
    async def get(self) -> None:
        item = await lookup(42)
        self.write({"ok": True, "item": item})


class EchoWebSocket(tornado.websocket.WebSocketHandler):
    def on_message(self, message: typing.Union[str, bytes]) -> None:
        self.write_message(message, binary=isinstance(message, bytes))


class AsyncioSleepEchoWebSocket(tornado.websocket.WebSocketHandler):
    async def on_message(self, message: typing.Union[str, bytes]) -> None:
        await asyncio.sleep(0)
        self.write_message(message, binary=isinstance(message, bytes))


def make_app() -> tornado.web.Application:
    return tornado.web.Application([(r"/", HelloHandler), (r"/json", JsonHandler), (r"/ws", EchoWebSocket),
                                    (r"/ws-asleep", AsyncioSleepEchoWebSocket)])


def loop_module() -> str:
    """Where the running loop comes from (for Tornado on asyncio: the asyncio loop under its IOLoop)."""
    loop = tornado.ioloop.IOLoop.current()
    return type(getattr(loop, "asyncio_loop", loop)).__module__


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="import, print IMPORT-OK <loop module>, exit")
    args = p.parse_args()
    if args.check:
        print("IMPORT-OK", tornado.ioloop.IOLoop.__module__, flush=True)
        return

    async def serve_until_killed() -> None:
        server = tornado.httpserver.HTTPServer(make_app())
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", backlog=BACKLOG)
        server.add_sockets(sockets)
        print("LISTENING", sockets[0].getsockname()[1], loop_module(), flush=True)
        await tornado.locks.Event().wait()  # the driver stops the process with SIGTERM

    tornado.ioloop.IOLoop().run_sync(serve_until_killed)

if __name__ == "__main__":
    main()
