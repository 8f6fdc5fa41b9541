from tornado.tcpclient import TCPClient
from tornado.testing import AsyncTestCase, bind_unused_port, gen_test

from app import EchoServer


class EchoTest(AsyncTestCase):
    @gen_test
    async def test_echo_lines(self):
        sock, port = bind_unused_port()
        server = EchoServer()
        server.add_socket(sock)
        stream = await TCPClient().connect("127.0.0.1", port)
        for i in range(5):
            await stream.write(b"line %d\n" % i)
            self.assertEqual(await stream.read_until(b"\n"), b"line %d\n" % i)
        stream.close()
        server.stop()
