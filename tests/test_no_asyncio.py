"""tornado_lite runs on its own loop: no module of the package may pull in asyncio (or uvloop, trio, anyio).

Checked three ways, each in a fresh interpreter so that nothing this test process imported interferes:
importing every module of the package, running real work on the loop (coroutines, timers, threads,
executors, sockets), and ``-X importtime``'s record of every module imported.  A static scan of the
source catches imports hidden in functions that the runtime checks happen not to reach.

The one exception is the opt-in asyncio bridge, ``tornado_lite.platform.asyncio``: it imports asyncio by
design, so it is left out of "every module", and further checks make sure that nothing else imports it:
not the core, not ``tornado_lite.platform`` itself, and not a program that uses the loop without it.

These checks are about tornado_lite itself; real Tornado is built on asyncio, so they are skipped when
the suite runs against it (``TORNADO_LITE_TEST_IMPL=tornado``).
"""

import ast
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

impl = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
pytestmark = pytest.mark.skipif(impl != "tornado_lite", reason="real Tornado is built on asyncio by design")

FORBIDDEN = ("asyncio", "uvloop", "trio", "anyio")
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "tornado_lite"
BRIDGE = "tornado_lite.platform.asyncio"  # the opt-in asyncio bridge: the one module allowed to import asyncio
BRIDGE_FILE = PACKAGE_DIR / "platform" / "asyncio.py"


def _all_module_names() -> list:
    """Every module of the package except the asyncio bridge."""
    names = ["tornado_lite"]
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="tornado_lite."):
        if info.name != BRIDGE:
            names.append(info.name)
    return sorted(names)


def _is_forbidden(module_name: str) -> bool:
    return module_name.split(".")[0] in FORBIDDEN


def _run_fresh(code: str, *python_flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    return subprocess.run(
        [sys.executable, *python_flags, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=str(PACKAGE_DIR.parent),
    )


def test_the_package_has_the_core_modules() -> None:
    names = _all_module_names()
    for core in ("tornado_lite.concurrent", "tornado_lite.ioloop", "tornado_lite.gen", "tornado_lite.util"):
        assert core in names
    assert "tornado_lite.platform" in names  # the package that holds the bridge is checked like the rest
    assert BRIDGE not in names and BRIDGE_FILE.exists()


IMPORT_ALL = """
import importlib, json, sys
assert not [m for m in sys.modules if m.split('.')[0] in {forbidden!r}], 'interpreter started with one'
for name in {names!r}:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})))
"""


def test_importing_every_module_does_not_import_asyncio() -> None:
    names = _all_module_names()
    code = IMPORT_ALL.format(names=names, forbidden=FORBIDDEN)
    proc = _run_fresh(code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_import_time_record_has_no_asyncio() -> None:
    # -X importtime lists every module actually imported, with its nesting: a module imported by a
    # module we import shows up here even if it was removed from sys.modules afterwards.
    names = _all_module_names()
    code = "import importlib\n" + "".join(f"importlib.import_module({n!r})\n" for n in names)
    proc = _run_fresh(code, "-X", "importtime")
    assert proc.returncode == 0, proc.stderr
    imported = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        module = line.rsplit("|", 1)[1].strip()
        if module and module != "package":
            imported.append(module)
    assert "tornado_lite.ioloop" in imported  # the record really covers our imports
    assert [m for m in imported if _is_forbidden(m)] == []


EXERCISE = r"""
import concurrent.futures, json, socket, sys, threading
import tornado_lite
from tornado_lite import gen, ioloop, concurrent as tl_concurrent
from tornado_lite.ioloop import IOLoop, PeriodicCallback

loop = IOLoop(make_current=False)

@gen.coroutine
def legacy(x):
    yield gen.moment
    yield None
    raise gen.Return(x + 1)

class Worker:
    executor = concurrent.futures.ThreadPoolExecutor(1)
    @tl_concurrent.run_on_executor
    def work(self, x):
        return x * 2

async def main():
    a, b = socket.socketpair()
    got = tl_concurrent.Future()
    loop.add_handler(a, lambda fd, ev: got.set_result(fd.recv(10)), IOLoop.READ)
    b.send(b"ping")
    assert await got == b"ping"
    loop.remove_handler(a)
    a.close(); b.close()
    await gen.sleep(0.001)
    await gen.moment
    assert await legacy(1) == 2
    assert await loop.run_in_executor(None, sum, [1, 2]) == 3
    assert await Worker().work(4) == 8
    assert await gen.multi([legacy(1), legacy(2)]) == [2, 3]
    try:
        await gen.with_timeout(loop.time() + 0.001, tl_concurrent.Future())
    except TimeoutError:
        pass
    it = gen.WaitIterator(legacy(5), legacy(6))
    results = [r async for r in it]
    assert sorted(results) == [6, 7]
    done = tl_concurrent.Future()
    threading.Thread(target=lambda: loop.add_callback(done.set_result, 1)).start()
    await done
    ticks = []
    pc = PeriodicCallback(lambda: ticks.append(1), 1)
    pc.start()
    while len(ticks) < 2:
        await gen.sleep(0.001)
    pc.stop()
    return "ok"

assert loop.run_sync(main, timeout=30) == "ok"
loop.close()
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in %r)))
"""


def test_running_real_work_does_not_import_asyncio() -> None:
    # Lazy imports inside functions only happen at run time: exercise the common paths.
    proc = _run_fresh(EXERCISE % (FORBIDDEN,))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def _forbidden_imports_in(path: Path) -> list:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if _is_forbidden(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.module and node.level == 0 and _is_forbidden(node.module):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args:
            # importlib.import_module("asyncio") / __import__("asyncio")
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and _is_forbidden(first.value)
            ):
                found.append((node.lineno, first.value))
    return found


def test_no_source_file_imports_asyncio() -> None:
    files = sorted(p for p in PACKAGE_DIR.rglob("*.py") if p != BRIDGE_FILE)
    assert files
    offenders = {str(p.relative_to(PACKAGE_DIR)): hits for p in files if (hits := _forbidden_imports_in(p))}
    assert offenders == {}


def test_the_scan_sees_the_bridge_import_asyncio() -> None:
    # The static scan would catch an asyncio import: it does catch the bridge's own.
    assert [name for _, name in _forbidden_imports_in(BRIDGE_FILE)].count("asyncio") >= 1


def _imports_of_bridge_in(path: Path) -> list:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = node.module if node.level == 0 else "tornado_lite." + node.module
            names = [module + "." + alias.name for alias in node.names] + [module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == BRIDGE or n.startswith(BRIDGE + ".")]
    return found


def test_no_core_module_imports_the_bridge() -> None:
    # Not even lazily: a core code path that imported the bridge would import asyncio behind the user's back.
    files = sorted(p for p in PACKAGE_DIR.rglob("*.py") if p != BRIDGE_FILE and p.name != "__main__.py")
    offenders = {str(p.relative_to(PACKAGE_DIR)): hits for p in files if (hits := _imports_of_bridge_in(p))}
    assert offenders == {}


BRIDGE_UNUSED_EXERCISE = r"""
import json, sys
import tornado_lite.platform  # the package is importable without its asyncio module
from tornado_lite import locks, netutil
from tornado_lite.concurrent import CancelledError
from tornado_lite.ioloop import IOLoop
from tornado_lite.tcpclient import TCPClient
from tornado_lite.tcpserver import TCPServer

class Echo(TCPServer):
    async def handle_stream(self, stream, address):
        await stream.write(await stream.read_until(b"\n"))
        stream.close()

async def main():
    [sock] = netutil.bind_sockets(0, "127.0.0.1")
    server = Echo()
    server.add_sockets([sock])
    for _ in range(3):
        stream = await TCPClient().connect("127.0.0.1", sock.getsockname()[1])
        await stream.write(b"x\n")
        assert await stream.read_until(b"\n") == b"x\n"
        stream.close()
    waiter = locks.Condition().wait()
    waiter.cancel()
    try:
        await waiter
    except CancelledError:
        pass
    server.stop()

IOLoop.current().run_sync(main, timeout=30)
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in %r)))
"""


def test_a_server_and_client_that_never_import_the_bridge_import_no_asyncio() -> None:
    proc = _run_fresh(BRIDGE_UNUSED_EXERCISE % (FORBIDDEN,))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_installing_the_bridge_is_what_imports_asyncio() -> None:
    # The other side of the promise: the bridge really is the one door to asyncio.
    code = (
        "import sys\n"
        "import tornado_lite.ioloop, tornado_lite.gen\n"
        "before = 'asyncio' in sys.modules\n"
        "from tornado_lite.platform.asyncio import install\n"
        "install()\n"
        "print(before, 'asyncio' in sys.modules)\n"
    )
    proc = _run_fresh(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]
