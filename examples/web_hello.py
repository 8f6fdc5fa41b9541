#!/usr/bin/env python3
"""A Tornado web application, in plain Tornado code: ``import tornado.web``, nothing of tornado_lite.

Run it on tornado_lite's loop, unchanged::

    python -m tornado_lite examples/web_hello.py [PORT]

(or on Tornado itself with ``python examples/web_hello.py [PORT]``).  PORT defaults to 8888; 0 picks a
free one.  It prints ``listening on http://127.0.0.1:PORT/`` once it accepts connections.  Try
``curl http://127.0.0.1:8888/``, ``/json`` and ``/greet/you``.
"""

import sys

import tornado.gen
import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web


class MainHandler(tornado.web.RequestHandler):
    def get(self):
        self.write("Hello, world")


class JSONHandler(tornado.web.RequestHandler):
    async def get(self):
        await tornado.gen.sleep(0)
        loop = tornado.ioloop.IOLoop.current()
        self.write({"hello": "world", "loop": type(loop).__module__})


class GreetHandler(tornado.web.RequestHandler):
    def get(self, name):
        if len(name) > 40:
            raise tornado.web.HTTPError(400, "name too long")
        self.write(f"Hello, {name}")


def make_app():
    return tornado.web.Application(
        [
            (r"/", MainHandler),
            (r"/json", JSONHandler),
            (r"/greet/([^/]+)", GreetHandler),
        ]
    )


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8888
    sockets = tornado.netutil.bind_sockets(port, address="127.0.0.1")
    server = tornado.httpserver.HTTPServer(make_app())
    server.add_sockets(sockets)
    print(f"listening on http://127.0.0.1:{sockets[0].getsockname()[1]}/", flush=True)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
