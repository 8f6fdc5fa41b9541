"""tornado.testing.AsyncHTTPTestCase and AsyncHTTPSTestCase (tornado_lite's, after install()).

Tornado's documented API: ``get_app``, ``fetch`` (relative path or absolute URL, ``raise_error``, other
keyword arguments to the client), ``get_url``, ``get_http_port``, ``get_protocol``,
``get_http_client``, ``get_http_server``, ``get_httpserver_options``, ``http_client``,
``http_server``; for HTTPS ``get_ssl_options`` and ``default_ssl_options``.  These tests run on real
Tornado too (``TORNADO_LITE_TEST_IMPL=tornado``).
"""

import os
import socket
import ssl
import unittest

import pytest

import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.httpserver import HTTPServer
from tornado.testing import AsyncHTTPSTestCase, AsyncHTTPTestCase, bind_unused_port, gen_test

IMPL = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
pytestmark = pytest.mark.timeout(60)


class _Echo(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(
            {
                "path": self.request.path,
                "remote_ip": self.request.remote_ip,
                "agent": self.request.headers.get("User-Agent"),
            }
        )

    def post(self) -> None:
        self.write(self.request.body)


class _Missing(tornado.web.RequestHandler):
    def get(self) -> None:
        raise tornado.web.HTTPError(404)


def _app() -> tornado.web.Application:
    return tornado.web.Application([("/echo", _Echo), ("/missing", _Missing)])


class FetchTest(AsyncHTTPTestCase):
    def setUp(self) -> None:
        super().setUp()
        sock, port = bind_unused_port()
        self.second_server = HTTPServer(_app())
        self.second_server.add_socket(sock)
        self.second_port = port

    def tearDown(self) -> None:
        self.second_server.stop()
        super().tearDown()

    def get_app(self) -> tornado.web.Application:
        return _app()

    def test_relative_path_goes_to_the_test_server(self) -> None:
        response = self.fetch("/echo")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.request.url, self.get_url("/echo"))
        self.assertEqual(self.get_url("/echo"), f"http://127.0.0.1:{self.get_http_port()}/echo")
        self.assertEqual(self.get_protocol(), "http")

    def test_absolute_url_is_fetched_as_is(self) -> None:
        url = f"http://127.0.0.1:{self.second_port}/echo"
        response = self.fetch(url)
        self.assertEqual(response.request.url, url)
        self.assertEqual(tornado.escape.json_decode(response.body)["path"], "/echo")

    def test_error_codes_are_returned_unless_raise_error(self) -> None:
        self.assertEqual(self.fetch("/missing").code, 404)
        with self.assertRaises(HTTPClientError) as caught:
            self.fetch("/missing", raise_error=True)
        self.assertEqual(caught.exception.code, 404)

    def test_keyword_arguments_go_to_the_client(self) -> None:
        response = self.fetch("/echo", method="POST", body=b"posted", headers={"X-Test": "1"})
        self.assertEqual(response.body, b"posted")

    def test_http_port_is_where_the_server_listens(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.get_http_port()))
        sock.close()
        self.assertIsInstance(self.http_server, HTTPServer)
        self.assertIsInstance(self.http_client, AsyncHTTPClient)

    @gen_test
    async def test_http_client_in_a_coroutine(self) -> None:
        response = await self.http_client.fetch(self.get_url("/echo"))
        self.assertEqual(response.code, 200)


class ServerOptionsTest(AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return _app()

    def get_httpserver_options(self) -> dict:
        return {"xheaders": True}

    def test_httpserver_options_reach_the_server(self) -> None:
        response = self.fetch("/echo", headers={"X-Real-Ip": "10.9.8.7"})
        self.assertEqual(tornado.escape.json_decode(response.body)["remote_ip"], "10.9.8.7")


class CustomClientAndServerTest(AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return _app()

    def get_http_client(self) -> AsyncHTTPClient:
        self.made_client = AsyncHTTPClient(force_instance=True, defaults={"user_agent": "custom-agent"})
        return self.made_client

    def get_http_server(self) -> HTTPServer:
        self.made_server = HTTPServer(self._app, xheaders=True)
        return self.made_server

    def test_overrides_are_used(self) -> None:
        self.assertIs(self.http_client, self.made_client)
        self.assertIs(self.http_server, self.made_server)
        response = self.fetch("/echo", headers={"X-Real-Ip": "10.1.2.3"})
        body = tornado.escape.json_decode(response.body)
        self.assertEqual((body["remote_ip"], body["agent"]), ("10.1.2.3", "custom-agent"))


class HTTPSTest(AsyncHTTPSTestCase):
    def get_app(self) -> tornado.web.Application:
        return _app()

    def test_fetch_over_tls(self) -> None:
        self.assertEqual(self.get_protocol(), "https")
        self.assertTrue(self.get_url("/echo").startswith(f"https://127.0.0.1:{self.get_http_port()}/"))
        response = self.fetch("/echo")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.request.url, self.get_url("/echo"))

    def test_default_ssl_options_are_tornados_test_certificate(self) -> None:
        options = AsyncHTTPSTestCase.default_ssl_options()
        self.assertEqual(sorted(options), ["certfile", "keyfile"])
        for path in options.values():
            self.assertTrue(os.path.isfile(path), path)
        self.assertEqual(self.get_ssl_options(), options)
        self.assertEqual(self.get_httpserver_options(), {"ssl_options": options})

    def test_server_speaks_tls(self) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def handshake() -> str:
            with socket.create_connection(("127.0.0.1", self.get_http_port()), timeout=5) as raw:
                with context.wrap_socket(raw) as tls:
                    return tls.version() or ""

        version = self.io_loop.run_sync(lambda: self.io_loop.run_in_executor(None, handshake), timeout=10)
        self.assertTrue(version.startswith("TLS"), version)


def test_get_app_must_be_overridden() -> None:
    class NoApp(AsyncHTTPTestCase):
        def test_nothing(self) -> None:
            pass

    result = unittest.TestResult()
    NoApp("test_nothing").run(result)
    assert len(result.errors) == 1 and "NotImplementedError" in result.errors[0][1]


def test_teardown_releases_app_server_and_port() -> None:
    seen = {}

    class SetUpTearDown(AsyncHTTPTestCase):
        def get_app(self) -> tornado.web.Application:
            return _app()

        def test_it(self) -> None:
            seen["port"] = self.get_http_port()
            seen["had"] = hasattr(self, "_app") and hasattr(self, "http_server")
            self.assertEqual(self.fetch("/echo").code, 200)

    case = SetUpTearDown("test_it")
    result = unittest.TestResult()
    case.run(result)
    assert result.wasSuccessful(), result.errors + result.failures
    assert seen["had"]
    assert not hasattr(case, "_app") and not hasattr(case, "http_server")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", seen["port"]), timeout=5).close()


@pytest.mark.skipif(IMPL != "tornado_lite", reason="tornado_lite.testing is tornado_lite's")
def test_same_classes_under_both_names() -> None:
    import tornado.testing
    import tornado_lite.testing

    assert tornado_lite.testing.AsyncHTTPTestCase is tornado.testing.AsyncHTTPTestCase is AsyncHTTPTestCase
    assert tornado_lite.testing.AsyncHTTPSTestCase is AsyncHTTPSTestCase
    assert AsyncHTTPTestCase.__qualname__ == "AsyncHTTPTestCase"
    assert issubclass(AsyncHTTPSTestCase, AsyncHTTPTestCase)
    assert issubclass(AsyncHTTPTestCase, tornado_lite.testing.AsyncTestCase)
