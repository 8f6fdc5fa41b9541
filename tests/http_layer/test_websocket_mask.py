"""The websocket mask Tornado's HTTP layer uses on tornado_lite: Tornado's C one when it has it.

``tornado.util`` is tornado_lite's after install(), so Tornado's own pick of its C
``tornado.speedups.websocket_mask`` never happens there; install() makes it instead, before
``tornado.websocket`` copies the name.  These tests run on real Tornado too
(``TORNADO_LITE_TEST_IMPL=tornado``), which makes the same choice itself.
"""

import importlib.util
import os

import pytest

import tornado.util
import tornado.web
import tornado.websocket
from tornado.testing import AsyncHTTPTestCase, gen_test

IMPL = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
pytestmark = pytest.mark.timeout(60)

MASK = b"\x01\x80\xff\x3c"
SIZES = [0, 1, 3, 4, 5, 64, 125, 126, 1000, 70000]


def _xor(mask: bytes, data: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("size", SIZES)
def test_the_mask_websocket_uses_gives_the_pure_python_bytes(size: int) -> None:
    data = os.urandom(size)
    expected = _xor(MASK, data)
    assert tornado.util._websocket_mask_python(MASK, data) == expected
    assert tornado.websocket._websocket_mask(MASK, data) == expected
    assert tornado.util._websocket_mask(MASK, expected) == data


def test_a_mask_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError):
        tornado.websocket._websocket_mask(b"abc", b"data")


@pytest.mark.skipif(importlib.util.find_spec("tornado.speedups") is None, reason="this Tornado has no C extension")
@pytest.mark.skipif(
    bool(os.environ.get("TORNADO_NO_EXTENSION")) or os.environ.get("TORNADO_EXTENSION") == "0",
    reason="the pure-Python mask was asked for",
)
def test_websocket_uses_tornados_c_mask_when_it_is_there() -> None:
    import tornado.speedups

    assert tornado.websocket._websocket_mask is tornado.speedups.websocket_mask
    assert tornado.util._websocket_mask is tornado.speedups.websocket_mask
    if IMPL == "tornado_lite":
        import tornado_lite.util

        assert tornado.util is tornado_lite.util  # installed: the swap was made in our module


class _Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message) -> None:  # type: ignore[no-untyped-def]
        self.write_message(message, binary=isinstance(message, bytes))


class MaskedFramesTest(AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application([("/ws", _Echo)])

    @gen_test
    async def test_masked_client_frames_of_every_length_class_echo_back_intact(self) -> None:
        # The client masks what it sends (the server unmasks it): 7-bit, 16-bit and 64-bit lengths.
        conn = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{self.get_http_port()}/ws")
        try:
            for size in (1, 64, 126, 70000):
                data = os.urandom(size)
                await conn.write_message(data, binary=True)
                assert await conn.read_message() == data
        finally:
            conn.close()
