from tornado.tcpclient import TCPClient
from tornado.testing import AsyncTestCase, bind_unused_port, gen_test

from app import Broadcaster


class BroadcastTest(AsyncTestCase):
    @gen_test
    async def test_line_reaches_everyone(self):
        sock, port = bind_unused_port()
        server = Broadcaster()
        server.add_socket(sock)
        a = await TCPClient().connect("127.0.0.1", port)
        b = await TCPClient().connect("127.0.0.1", port)
        await server.ready.wait()
        await a.write(b"hello\n")
        self.assertEqual(await a.read_until(b"\n"), b"hello\n")
        self.assertEqual(await b.read_until(b"\n"), b"hello\n")
        a.close()
        b.close()
        server.stop()
