"""The migration tool: unit checks on its rewrites, and three sample Tornado apps whose own tests pass
after ``python -m tornado_lite.migrate --write`` (Tornado itself is not installed in the test venv, so
they could not pass before)."""
import os
import shutil
import subprocess
import sys

import pytest

from tornado_lite.migrate import convert_source

SAMPLES = os.path.join(os.path.dirname(__file__), "migrate_samples")


def convert(text):
    return convert_source("x.py", text)


def test_core_imports_are_renamed():
    result = convert(
        "import tornado.ioloop\nfrom tornado import gen, iostream\n"
        "from tornado.tcpserver import TCPServer\nx = tornado.ioloop.IOLoop.current()\n"
    )
    assert result.converted == (
        "import tornado_lite.ioloop\nfrom tornado_lite import gen, iostream\n"
        "from tornado_lite.tcpserver import TCPServer\nx = tornado_lite.ioloop.IOLoop.current()\n"
    )
    assert result.problems == []


def test_http_layer_is_reported_not_changed():
    result = convert("from tornado.web import RequestHandler\nfrom tornado import web, gen\n")
    assert result.converted == "from tornado.web import RequestHandler\nfrom tornado import web, gen\n"
    assert [p.line for p in result.problems] == [1, 2]
    assert "tornado.web" in str(result.problems[0])


def test_asyncio_idioms_are_converted_and_import_dropped():
    src = (
        "import asyncio\n\n"
        "async def main(port):\n"
        "    ev = asyncio.Event()\n"
        "    q = asyncio.Queue(maxsize=2)\n"
        "    lock = asyncio.Lock()\n"
        "    await asyncio.sleep(0.5)\n"
        "    try:\n"
        "        pass\n"
        "    except asyncio.TimeoutError:\n"
        "        pass\n\n"
        "asyncio.run(main(8888))\n"
    )
    result = convert(src)
    out = result.converted
    assert "asyncio" not in out
    assert "tornado_lite.locks.Event()" in out
    assert "tornado_lite.queues.Queue(maxsize=2)" in out
    assert "tornado_lite.locks.Lock()" in out
    assert "await tornado_lite.gen.sleep(0.5)" in out
    assert "except TimeoutError:" in out
    assert "tornado_lite.ioloop.IOLoop.current().run_sync(lambda: main(8888))" in out
    for mod in ("gen", "ioloop", "locks", "queues"):
        assert f"import tornado_lite.{mod}\n" in out
    compile(out, "x.py", "exec")
    assert result.problems == []


def test_asyncio_run_without_arguments_passes_the_function():
    out = convert("import asyncio\nasyncio.run(main())\n").converted
    assert "tornado_lite.ioloop.IOLoop.current().run_sync(main)" in out


def test_unconvertible_asyncio_is_listed_with_line_and_import_kept():
    result = convert("import asyncio\n\nasync def f(c):\n    await asyncio.wait_for(c, 1)\n")
    assert "import asyncio" in result.converted
    assert [(p.line, "asyncio.wait_for" in p.message) for p in result.problems] == [(4, True)]


def test_comments_and_formatting_survive():
    src = "from tornado import gen  # keep me\n\n\n# a comment about tornado.ioloop\nx = 1\n"
    out = convert(src).converted
    assert out == "from tornado_lite import gen  # keep me\n\n\n# a comment about tornado.ioloop\nx = 1\n"


def test_command_line_shows_diff_and_writes(tmp_path):
    app = tmp_path / "a.py"
    app.write_text("from tornado.ioloop import IOLoop\n")
    shown = subprocess.run([sys.executable, "-m", "tornado_lite.migrate", str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    assert "+from tornado_lite.ioloop import IOLoop" in shown.stdout
    assert app.read_text() == "from tornado.ioloop import IOLoop\n"
    subprocess.run([sys.executable, "-m", "tornado_lite.migrate", "--write", str(app)],
                   capture_output=True, text=True, timeout=60, check=True)
    assert app.read_text() == "from tornado_lite.ioloop import IOLoop\n"


@pytest.mark.parametrize("sample", ["echo_app", "worker_app", "broadcast_app"])
def test_sample_app_passes_its_tests_after_migration(tmp_path, sample):
    work = tmp_path / sample
    shutil.copytree(os.path.join(SAMPLES, sample), work)
    before = (work / "app.py").read_text()
    assert "tornado." in before or "from tornado import" in before
    proc = subprocess.run([sys.executable, "-m", "tornado_lite.migrate", "--write", str(work)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in ("app.py", "sample_checks.py"):
        text = (work / name).read_text()
        assert "from tornado." not in text and "import tornado." not in text and "from tornado import" not in text
        assert "import asyncio" not in text
    env = dict(os.environ, PYTHONPATH=str(work))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "sample_checks.py"],
                         cwd=work, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout
