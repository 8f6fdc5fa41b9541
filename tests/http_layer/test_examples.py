"""examples/web_hello.py and examples/websocket_chat.py, started as a user would and spoken to over sockets.

With the default implementation each runs as ``python -m tornado_lite examples/X.py 0``; with
``TORNADO_LITE_TEST_IMPL=tornado``, as ``python examples/X.py 0`` on real Tornado.  The port is the one the
example prints.
"""

import json
import os
import sys
from typing import Iterator, List

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)  # for proc_helpers, shared with the rest of the suite

from http_helpers import connect, masked_frame, read_frame, read_to_eof, status_of, websocket_handshake  # noqa: E402
from proc_helpers import ROOT, ServerProcess  # noqa: E402

IMPL = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
pytestmark = pytest.mark.timeout(60)


def launch(example: str) -> List[str]:
    path = os.path.join(ROOT, "examples", example)
    if IMPL == "tornado_lite":
        return ["-m", "tornado_lite", path, "0"]
    return [path, "0"]


@pytest.fixture
def web_hello() -> Iterator[int]:
    server = ServerProcess(launch("web_hello.py"))
    try:
        yield int(server.expect(r"listening on http://127\.0\.0\.1:(\d+)/").group(1))
    finally:
        server.kill()


@pytest.fixture
def chat() -> Iterator[int]:
    server = ServerProcess(launch("websocket_chat.py"))
    try:
        yield int(server.expect(r"listening on http://127\.0\.0\.1:(\d+)/").group(1))
    finally:
        server.kill()


def get(port: int, path: str) -> bytes:
    sock = connect(port)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return read_to_eof(sock)
    finally:
        sock.close()


def test_web_hello_serves_its_pages(web_hello: int) -> None:
    answer = get(web_hello, "/")
    assert status_of(answer) == 200
    assert answer.endswith(b"\r\n\r\nHello, world")
    assert get(web_hello, "/greet/lite").endswith(b"Hello, lite")
    assert status_of(get(web_hello, "/greet/" + "x" * 50)) == 400
    assert status_of(get(web_hello, "/nowhere")) == 404


def test_web_hello_runs_on_the_expected_loop(web_hello: int) -> None:
    answer = get(web_hello, "/json")
    assert status_of(answer) == 200
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    # Tornado imports asyncio, so the bridge made the loop an AsyncIOLoop, as on Tornado.
    expected = "tornado_lite.platform.asyncio" if IMPL == "tornado_lite" else "tornado.platform.asyncio"
    assert body == {"hello": "world", "loop": expected}


def test_web_hello_keeps_a_connection_alive(web_hello: int) -> None:
    sock = connect(web_hello)
    try:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while not answer.endswith(b"Hello, world"):
                chunk = sock.recv(65536)
                assert chunk, answer
                answer += chunk
            assert status_of(answer) == 200
    finally:
        sock.close()


def test_chat_broadcasts_to_every_member(chat: int) -> None:
    alice = websocket_handshake(chat, "/chat")
    bob = websocket_handshake(chat, "/chat")
    try:
        alice.sendall(masked_frame(0x1, b"hi from alice"))
        assert read_frame(alice) == (0x1, b"hi from alice")
        assert read_frame(bob) == (0x1, b"hi from alice")
        bob.sendall(masked_frame(0x1, "ünïcode from bob".encode()))
        assert read_frame(alice) == (0x1, "ünïcode from bob".encode())
        assert read_frame(bob) == (0x1, "ünïcode from bob".encode())
    finally:
        alice.close()
        bob.close()


def test_chat_goes_on_after_a_member_leaves(chat: int) -> None:
    leaver = websocket_handshake(chat, "/chat")
    stayer = websocket_handshake(chat, "/chat")
    try:
        leaver.sendall(masked_frame(0x8, b"\x03\xe8"))  # a clean close, code 1000
        assert read_frame(leaver)[0] == 0x8
        leaver.close()
        for n in range(3):
            stayer.sendall(masked_frame(0x1, b"still here %d" % n))
            assert read_frame(stayer) == (0x1, b"still here %d" % n)
    finally:
        leaver.close()
        stayer.close()


def test_chat_serves_its_page(chat: int) -> None:
    answer = get(chat, "/")
    assert status_of(answer) == 200
    assert b"new WebSocket" in answer


@pytest.fixture
def asyncio_web_app() -> Iterator[int]:
    server = ServerProcess(launch("asyncio_web_app.py"))
    try:
        yield int(server.expect(r"listening on http://127\.0\.0\.1:(\d+)/").group(1))
    finally:
        server.kill()


def test_asyncio_run_web_app_serves_pages_and_asyncio_handlers(asyncio_web_app: int) -> None:
    # Tornado's documented asyncio.run(main()) form: the handler's asyncio.sleep/gather run on the same loop.
    answer = get(asyncio_web_app, "/")
    assert status_of(answer) == 200 and answer.endswith(b"\r\n\r\nHello, world")
    answer = get(asyncio_web_app, "/sum")
    assert status_of(answer) == 200
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"sum": 6, "same_loop": True}


def test_asyncio_run_web_app_echoes_websocket_messages(asyncio_web_app: int) -> None:
    sock = websocket_handshake(asyncio_web_app, "/ws")
    try:
        for text in ("one", "two", "ünï"):
            sock.sendall(masked_frame(0x1, text.encode()))
            assert read_frame(sock) == (0x1, ("echo: " + text).encode())
    finally:
        sock.close()
