"""Bad input through Tornado's HTTP layer on tornado_lite harms no one but its sender.

One server process (a Tornado app: a page, a streaming upload, a WebSocket echo) runs under
``python -m tornado_lite`` on the poller the suite runs with (``TORNADO_LITE_POLLER``).  Each test opens
bystanders first (a keep-alive HTTP client and a WebSocket client), then misbehaves on another
connection, and checks that the misbehaving client gets Tornado's answer while the bystanders and new
clients are still served and the server logged no traceback.  Tornado's answers, checked on Tornado
6.6.1 (``TORNADO_LITE_TEST_IMPL=tornado`` runs the same server on it):

- a malformed request line, or a header line without a colon: ``400 Bad Request``, then close;
- a header block over ``max_header_size`` (64 KiB by default): the connection is closed with no
  answer (Tornado does not send 431);
- a client that resets mid-body: the handler's ``on_connection_close`` runs, nothing else happens;
- a WebSocket client sending garbage (reserved bits or opcode, random bytes, a truncated frame): the
  connection is closed (at most a close frame before the end).  (An unmasked client frame is not
  garbage to Tornado: it accepts it.)
"""

import os
import random
import socket
import struct
import sys
import time
from typing import Iterator, List

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from proc_helpers import ServerProcess  # noqa: E402

IMPL = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
pytestmark = pytest.mark.timeout(60)

SERVER = '''\
import sys
import tornado.httpserver, tornado.ioloop, tornado.netutil, tornado.web, tornado.websocket


class Page(tornado.web.RequestHandler):
    def get(self):
        self.write("page")


@tornado.web.stream_request_body
class Upload(tornado.web.RequestHandler):
    def prepare(self):
        self.size = 0

    def data_received(self, chunk):
        self.size += len(chunk)

    def put(self):
        self.write(str(self.size))

    def on_connection_close(self):
        print("upload cut after", self.size, flush=True)


class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


sockets = tornado.netutil.bind_sockets(0, address="127.0.0.1")
app = tornado.web.Application([("/", Page), ("/upload", Upload), ("/ws", Echo)])
tornado.httpserver.HTTPServer(app).add_sockets(sockets)
print("port", sockets[0].getsockname()[1], flush=True)
tornado.ioloop.IOLoop.current().start()
'''


@pytest.fixture
def server(tmp_path) -> Iterator[ServerProcess]:
    script = tmp_path / "http_fault_app.py"
    script.write_text(SERVER)
    argv = ["-m", "tornado_lite", str(script)] if IMPL == "tornado_lite" else [str(script)]
    proc = ServerProcess(argv)
    try:
        proc.port = int(proc.expect(r"^port (\d+)$").group(1))  # type: ignore[attr-defined]
        yield proc
        assert "Traceback" not in proc.stderr(), proc.stderr()
        assert proc.proc.poll() is None, "the server died"
    finally:
        proc.kill()


# -- raw clients --------------------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (a reset counts as the end)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def get_page(sock: socket.socket) -> bytes:
    """One keep-alive GET / on ``sock``; returns the response."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while not data.endswith(b"page"):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def ws_open(port: int) -> socket.socket:
    sock = connect(port)
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame, FIN set."""
    assert len(payload) < 126
    mask = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(data)
        data += chunk
    return data


def ws_echo(sock: socket.socket, text: bytes) -> None:
    sock.sendall(frame(0x1, text))
    first, second = recv_exactly(sock, 2)
    assert (first & 0x0F, second & 0x7F) == (0x1, len(text))
    assert recv_exactly(sock, len(text)) == text


def server_frames_until_end(sock: socket.socket) -> List[int]:
    """The opcodes of the frames the server sends until it closes the connection."""
    opcodes = []
    while True:
        try:
            first, second = recv_exactly(sock, 2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", recv_exactly(sock, 2))
            elif length == 127:
                (length,) = struct.unpack(">Q", recv_exactly(sock, 8))
            recv_exactly(sock, length)
        except (EOFError, ConnectionResetError):
            return opcodes
        opcodes.append(first & 0x0F)


class Bystanders:
    """A keep-alive HTTP client and a WebSocket client, opened before a fault and checked after it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.http = connect(port)
        assert get_page(self.http).startswith(b"HTTP/1.1 200")
        self.ws = ws_open(port)
        ws_echo(self.ws, b"before")

    def still_served(self) -> None:
        assert get_page(self.http).startswith(b"HTTP/1.1 200")
        ws_echo(self.ws, b"after")
        fresh = connect(self.port)
        try:
            assert get_page(fresh).startswith(b"HTTP/1.1 200")
        finally:
            fresh.close()

    def close(self) -> None:
        self.http.close()
        self.ws.close()


@pytest.fixture
def bystanders(server: ServerProcess) -> Iterator[Bystanders]:
    b = Bystanders(server.port)  # type: ignore[attr-defined]
    try:
        yield b
    finally:
        b.close()


# -- the faults -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9 extra\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",  # a TLS hello
    ],
    ids=["no-version", "bad-version", "header-without-colon", "tls-on-plain-port"],
)
def test_malformed_request_gets_400_and_close(server: ServerProcess, bystanders: Bystanders, request_bytes) -> None:
    sock = connect(server.port)  # type: ignore[attr-defined]
    try:
        sock.sendall(request_bytes)
        assert read_all(sock) == b"HTTP/1.1 400 Bad Request\r\n\r\n"
    finally:
        sock.close()
    bystanders.still_served()


def test_oversized_header_block_is_closed_without_answer(server: ServerProcess, bystanders: Bystanders) -> None:
    sock = connect(server.port)  # type: ignore[attr-defined]
    try:
        headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"f" * 100) for i in range(1000))  # ~110 KiB
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still sending: the same answer
        assert read_all(sock) == b""
    finally:
        sock.close()
    bystanders.still_served()


def test_client_reset_mid_body(server: ServerProcess, bystanders: Bystanders) -> None:
    sock = connect(server.port)  # type: ignore[attr-defined]
    sock.sendall(b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"u" * 50000)
    bystanders.still_served()  # while the upload hangs half-sent
    # A reset instead of a FIN: linger on, with a zero timeout.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    match = server.expect(r"^upload cut after (\d+)$", timeout=10)
    assert 0 < int(match.group(1)) <= 50000
    bystanders.still_served()
    # A whole upload still works.
    whole = connect(server.port)  # type: ignore[attr-defined]
    try:
        whole.sendall(b"PUT /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 70000\r\n\r\n")
        whole.sendall(b"w" * 70000)
        assert read_all(whole).endswith(b"\r\n\r\n70000")
    finally:
        whole.close()


@pytest.mark.parametrize(
    "garbage",
    [
        bytes([0x40]) + frame(0x1, b"reserved bits")[1:],  # RSV1 without an extension that uses it
        frame(0x3, b"reserved opcode"),
        bytes(random.Random(13).getrandbits(8) for _ in range(4096)),
        frame(0x9, b"p" * 125)[:2] + b"\xff" * 4,  # a control frame that claims 125 bytes and sends 4
    ],
    ids=["reserved-bits", "reserved-opcode", "random-bytes", "truncated"],
)
def test_websocket_garbage_closes_the_connection(
    server: ServerProcess, bystanders: Bystanders, garbage: bytes
) -> None:
    sock = ws_open(server.port)  # type: ignore[attr-defined]
    try:
        ws_echo(sock, b"fine so far")
        sock.sendall(garbage)
        if garbage.endswith(b"\xff" * 4):
            # Truncated: the server waits for the rest, which never comes; the client gives up.
            time.sleep(0.2)
            bystanders.still_served()
            sock.shutdown(socket.SHUT_WR)
        opcodes = server_frames_until_end(sock)
        assert set(opcodes) <= {0x8}, opcodes  # nothing but (perhaps) a close frame, then the end
    finally:
        sock.close()
    bystanders.still_served()
