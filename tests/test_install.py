"""tornado_lite.install() and ``python -m tornado_lite``: what ``import tornado.X`` gives afterwards.

install() changes the whole interpreter, so every check runs in a fresh child interpreter.  Where the
real Tornado must be missing or of an unsupported version, the child runs with ``-S`` (no
site-packages) and a PYTHONPATH that holds tornado_lite and, for the second case, a small fake
``tornado`` package.
"""

import os
import subprocess
import sys
import textwrap
from typing import Dict, Optional, Sequence

import pytest

from proc_helpers import ROOT, run_python

impl = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
pytestmark = pytest.mark.skipif(impl != "tornado_lite", reason="install() is tornado_lite's own")

CORE = [
    "concurrent",
    "gen",
    "ioloop",
    "iostream",
    "locks",
    "log",
    "netutil",
    "options",
    "process",
    "queues",
    "tcpclient",
    "tcpserver",
    "testing",
    "util",
]


def run_ok(code: str, *args: str) -> str:
    result = run_python(textwrap.dedent(code), args)
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def run_isolated(code: str, pythonpath: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -S -c code`` with only ``pythonpath`` added: no site-packages, so no installed Tornado."""
    env: Dict[str, str] = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return subprocess.run(
        [sys.executable, "-S", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def run_launcher(args: Sequence[str], cwd: Optional[str] = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return subprocess.run(
        [sys.executable, "-m", "tornado_lite", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


# -- install() ----------------------------------------------------------------------------------------


def test_core_modules_are_tornado_lites_own_objects() -> None:
    out = run_ok(
        f"""
        import importlib, sys
        import tornado_lite
        tornado_lite.install()
        import tornado
        for name in {CORE!r}:
            mapped = importlib.import_module("tornado." + name)
            ours = importlib.import_module("tornado_lite." + name)
            assert mapped is ours, name
            assert sys.modules["tornado." + name] is ours, name
            assert getattr(tornado, name) is ours, name
            assert ours.__spec__.name == "tornado_lite." + name, ours.__spec__
        from tornado.ioloop import IOLoop
        import tornado_lite.ioloop
        assert IOLoop is tornado_lite.ioloop.IOLoop
        from tornado import gen as g2
        assert g2 is tornado_lite.gen
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_http_layer_is_the_real_tornado_with_the_asyncio_shim() -> None:
    out = run_ok(
        """
        import os, sys
        import tornado_lite
        tornado_lite.install()
        import tornado, tornado.web, tornado.websocket, tornado.http1connection, tornado.escape
        from tornado_lite._install import AsyncioShim
        real_dir = os.path.dirname(tornado.__file__)
        for module in (tornado.web, tornado.websocket, tornado.http1connection, tornado.escape):
            assert os.path.dirname(module.__file__) == real_dir, module
        for module in (tornado.web, tornado.websocket, tornado.http1connection):
            assert isinstance(module.asyncio, AsyncioShim), module
        assert not hasattr(tornado.escape, "asyncio")
        # The HTTP layer's references to the core are tornado_lite's classes.
        import tornado_lite.iostream, tornado_lite.tcpserver
        assert tornado.http1connection.iostream is tornado_lite.iostream
        assert tornado.httpserver.HTTPServer.__mro__[1] is tornado_lite.tcpserver.TCPServer
        # Everything else about asyncio is the real module.
        import asyncio
        assert tornado.web.asyncio.Event is asyncio.Event
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_install_twice_is_harmless() -> None:
    out = run_ok(
        """
        import sys, tornado_lite
        from tornado_lite._install import TornadoFinder
        tornado_lite.install()
        import tornado.ioloop
        tornado_lite.install()
        assert sum(isinstance(f, TornadoFinder) for f in sys.meta_path) == 1
        import tornado_lite.ioloop
        assert tornado.ioloop is tornado_lite.ioloop
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_install_after_tornado_core_was_imported_names_the_modules() -> None:
    result = run_python(
        textwrap.dedent(
            """
            import tornado.ioloop, tornado.gen
            import tornado_lite
            try:
                tornado_lite.install()
            except RuntimeError as exc:
                print(type(exc).__name__, exc)
            """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("InstallError ")
    assert "tornado.ioloop" in result.stdout and "tornado.gen" in result.stdout
    assert "install() first" in result.stdout


def test_without_tornado_core_programs_run_and_the_http_layer_names_the_fix() -> None:
    result = run_isolated(
        """
        import tornado_lite
        tornado_lite.install()
        import tornado.ioloop, tornado.gen
        async def main():
            await tornado.gen.sleep(0.001)
            return "core ok"
        print(tornado.ioloop.IOLoop.current().run_sync(main))
        try:
            import tornado.web
        except ImportError as exc:
            print(type(exc).__name__, exc)
        try:
            from tornado_lite.testing import AsyncHTTPTestCase
        except ImportError as exc:
            print("testing:", type(exc).__name__)
        """,
        [ROOT],
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "core ok"
    assert lines[1].startswith("TornadoHTTPLayerMissing Tornado is not installed")
    assert "pip install 'tornado_lite[http]'" in lines[1]
    assert lines[2] == "testing: TornadoHTTPLayerMissing"


def test_unsupported_tornado_version_names_it_and_the_fix(tmp_path) -> None:
    fake = tmp_path / "tornado"
    fake.mkdir()
    (fake / "__init__.py").write_text('version = "5.1.1"\nversion_info = (5, 1, 1, 0)\n')
    (fake / "web.py").write_text("raise AssertionError('an unsupported Tornado module must not run')\n")
    result = run_isolated(
        """
        import tornado_lite
        tornado_lite.install()
        import tornado.ioloop
        print("core ok", tornado.ioloop.__name__)
        try:
            import tornado.web
        except ImportError as exc:
            print(type(exc).__name__, exc)
        """,
        [str(tmp_path), ROOT],
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "core ok tornado_lite.ioloop"
    assert lines[1].startswith("TornadoHTTPLayerMissing Tornado 5.1.1 ")
    assert "6.3 <= Tornado < 7" in lines[1] and "pip install 'tornado_lite[http]'" in lines[1]


def test_platform_asyncio_is_ours_when_we_have_it_else_a_clear_error() -> None:
    out = run_ok(
        """
        import importlib.util, tornado_lite
        tornado_lite.install()
        try:
            have = importlib.util.find_spec("tornado_lite.platform.asyncio") is not None
        except ImportError:
            have = False
        try:
            import tornado.platform.asyncio as mapped
        except ModuleNotFoundError as exc:
            assert not have, exc
            assert "tornado_lite.platform.asyncio" in str(exc), exc
            print("absent, clear error")
        else:
            import tornado_lite.platform.asyncio as ours
            assert have and mapped is ours
            print("mapped")
        """
    )
    assert out.strip() in ("absent, clear error", "mapped")


def test_the_shim_does_not_import_asyncio_itself() -> None:
    # A core-only program under install() still never loads asyncio.
    out = run_ok(
        """
        import sys, tornado_lite
        tornado_lite.install()
        import tornado.ioloop, tornado.tcpserver, tornado.testing
        tornado.ioloop.IOLoop.current().run_sync(lambda: None)
        print(sorted(m for m in sys.modules if m.split(".")[0] == "asyncio"))
        """
    )
    assert out.strip() == "[]"


# -- python -m tornado_lite -----------------------------------------------------------------------------


SCRIPT = """\
import sys
import tornado.ioloop, tornado_lite.ioloop
print("argv", sys.argv[1:], "name", __name__, "mapped", tornado.ioloop is tornado_lite.ioloop)
print("path0", sys.path[0])
def fail():
    raise ValueError("from the script")
if sys.argv[1:] == ["fail"]:
    fail()
sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
"""


def test_launcher_runs_a_script_like_python(tmp_path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    result = run_launcher([str(script), "a", "--b"])
    assert result.returncode == 0, result.stderr
    assert "argv ['a', '--b'] name __main__ mapped True" in result.stdout
    assert f"path0 {tmp_path}" in result.stdout
    assert run_launcher([str(script), "7"]).returncode == 7


def test_launcher_reports_an_uncaught_error_like_python(tmp_path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    result = run_launcher([str(script), "fail"])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: from the script"
    # It starts in the script, as under plain python: no launcher or runpy frames.
    assert f'File "{script}", line 8, in <module>' in lines[1]
    assert "runpy" not in result.stderr and "__main__.py" not in result.stderr


def test_launcher_runs_a_module_like_python_m(tmp_path) -> None:
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tool.py").write_text(SCRIPT)
    result = run_launcher(["-m", "mypkg.tool", "x"], cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "argv ['x'] name __main__ mapped True" in result.stdout
    assert run_launcher(["-m", "mypkg.tool", "3"], cwd=str(tmp_path)).returncode == 3


def test_launcher_usage_errors() -> None:
    assert run_launcher([]).returncode == 2
    missing = run_launcher(["/nonexistent/prog.py"])
    assert missing.returncode == 2 and "can't open file" in missing.stderr
    assert run_launcher(["-m"]).returncode == 2


APP_TEST = '''\
import tornado.web
from tornado.testing import AsyncHTTPTestCase


class Hello(tornado.web.RequestHandler):
    def get(self):
        self.write("Hello, " + self.get_argument("name", "world"))


class HelloTest(AsyncHTTPTestCase):
    def get_app(self):
        return tornado.web.Application([("/", Hello)])

    def test_hello(self):
        response = self.fetch("/?name=lite")
        self.assertEqual(response.body, b"Hello, lite")

    def test_runs_on_tornado_lite(self):
        import tornado_lite.ioloop
        self.assertIsInstance(self.io_loop, tornado_lite.ioloop.IOLoop)
'''


def test_launcher_runs_a_tornado_apps_own_pytest_suite(tmp_path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_app.py").write_text(APP_TEST)
    result = run_launcher(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_the_shims_functions_on_tornado_lites_loop() -> None:
    out = run_ok(
        """
        import concurrent.futures, tornado_lite
        tornado_lite.install()
        import tornado.web, tornado.ioloop
        from tornado_lite.concurrent import Future
        shim = tornado.web.asyncio

        async def child():
            return "child done"

        async def main():
            loop = tornado.ioloop.IOLoop.current()
            me = shim.current_task()
            assert me is not None and me.cancelling() == 0
            passes_before = loop.stats().passes
            assert await shim.sleep(0) is None
            assert loop.stats().passes > passes_before  # sleep(0) gave the loop a pass
            start = loop.time()
            assert await shim.sleep(0.05, "slept") == "slept"
            assert loop.time() - start >= 0.04
            pending = Future()
            assert shim.ensure_future(pending) is pending
            task = shim.create_task(child(), name="ignored")
            assert isinstance(task, Future) and task is not me
            assert await task == "child done"
            assert await shim.ensure_future(child()) == "child done"
            return "ok"

        print(tornado.ioloop.IOLoop.current().run_sync(main))
        assert shim.current_task() is None  # outside any task
        # Tornado's modules imported asyncio, so the bridge is installed: the shim's CancelledError is
        # asyncio's own, and a cancelled tornado_lite future raises a subclass of it and of ours.
        import asyncio
        assert shim.CancelledError is asyncio.CancelledError
        cancelled = Future()
        cancelled.cancel()
        try:
            cancelled.result()
        except shim.CancelledError as exc:
            assert isinstance(exc, concurrent.futures.CancelledError)
        else:
            raise AssertionError("not cancelled")
        assert shim.Queue is asyncio.Queue and shim.iscoroutinefunction is asyncio.iscoroutinefunction
        """
    )
    assert out.strip() == "ok"


# -- the asyncio bridge comes with asyncio --------------------------------------------------------------


@pytest.mark.parametrize(
    "first_import",
    ["import asyncio", "import tornado.platform.asyncio", "import tornado_lite.platform.asyncio", "import tornado.web"],
)
def test_the_asyncio_bridge_is_installed_when_asyncio_is_first_imported(first_import: str) -> None:
    out = run_ok(
        f"""
        import sys, tornado_lite
        tornado_lite.install()
        assert "asyncio" not in sys.modules
        {first_import}
        import asyncio
        from tornado_lite.platform import asyncio as bridge
        assert bridge.is_installed()

        async def main():
            import tornado.ioloop
            await asyncio.sleep(0.001)
            return tornado.ioloop.IOLoop.current().asyncio_loop is asyncio.get_running_loop()

        print(asyncio.run(main()))
        """
    )
    assert out.strip() == "True"


def test_install_after_asyncio_was_imported_installs_the_bridge_at_once() -> None:
    out = run_ok(
        """
        import asyncio, concurrent.futures, tornado_lite
        tornado_lite.install()
        from tornado_lite.platform import asyncio as bridge
        from tornado_lite.concurrent import Future
        assert bridge.is_installed()
        cancelled = Future()
        cancelled.cancel()
        try:
            cancelled.result()
        except asyncio.CancelledError as exc:  # a tornado_lite cancellation, as asyncio's
            print(isinstance(exc, concurrent.futures.CancelledError))
        """
    )
    assert out.strip() == "True"
