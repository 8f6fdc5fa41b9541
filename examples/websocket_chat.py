#!/usr/bin/env python3
"""A WebSocket chat room in plain Tornado code: every message a client sends goes to every client.

Run it on tornado_lite's loop, unchanged::

    python -m tornado_lite examples/websocket_chat.py [PORT]

(or on Tornado itself with ``python examples/websocket_chat.py [PORT]``).  PORT defaults to 8888; 0 picks
a free one.  It prints ``listening on http://127.0.0.1:PORT/`` once it accepts connections.  Open that
page in two browser tabs, or connect any WebSocket client to ``ws://127.0.0.1:PORT/chat``.
"""

import sys

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web
import tornado.websocket

PAGE = """<!doctype html>
<title>chat</title>
<ul id="log"></ul>
<form id="f"><input id="m" autocomplete="off" autofocus><button>send</button></form>
<script>
  const ws = new WebSocket(`ws://${location.host}/chat`);
  ws.onmessage = (e) => {
    const li = document.createElement("li");
    li.textContent = e.data;
    document.getElementById("log").appendChild(li);
  };
  document.getElementById("f").onsubmit = (e) => {
    e.preventDefault();
    const m = document.getElementById("m");
    ws.send(m.value);
    m.value = "";
  };
</script>
"""


class PageHandler(tornado.web.RequestHandler):
    def get(self):
        self.write(PAGE)


class ChatSocket(tornado.websocket.WebSocketHandler):
    members = set()

    def open(self):
        ChatSocket.members.add(self)

    def on_close(self):
        ChatSocket.members.discard(self)

    def on_message(self, message):
        for member in list(ChatSocket.members):
            try:
                member.write_message(message)
            except tornado.websocket.WebSocketClosedError:
                ChatSocket.members.discard(member)


def make_app():
    return tornado.web.Application(
        [(r"/", PageHandler), (r"/chat", ChatSocket)],
        websocket_max_message_size=64 * 1024,
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
