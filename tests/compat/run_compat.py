"""`make compat`: run Tornado 6.6.1's own tests and API snapshot against tornado_lite.

Tornado (pinned, installed in a scratch venv) is used only as the source of the tests and of the
modules tornado_lite does not replace (tornado.web, tornado.httpclient, tornado.escape ...).  Every
pytest process of a lite run starts as ``python -m tornado_lite -m pytest``, so ``install()`` makes
``tornado.<core module>`` tornado_lite's and Tornado's HTTP layer runs on it.  The tests come in two
parts:

* **core**: the tests of the 14 core modules.  Each is copied into a work directory, with every
  reference to a core module (``tornado.ioloop``, ``from tornado import gen``,
  ``"tornado.iostream.X"`` in strings handed to ``mock.patch`` or to a subprocess ...) rewritten to
  ``tornado_lite``; Tornado's test helpers (``tornado.test.util``) are copied and rewritten the same
  way, so that their ``AsyncTestCase`` runs on tornado_lite's loop.
* **http**: the tests of the HTTP layer and of the helpers tornado_lite does not replace (web,
  httpserver, httpclient, websocket ...), run in place in the installed Tornado, unmodified: only
  ``install()`` points their core imports at tornado_lite.

Each module runs in its own pytest process, bounded in time (per test and per module), so that a
hang fails that module instead of the run; the runner counts, per module, the tests collected,
passed, failed, errored, skipped and excluded (``exclusions.txt`` and ``exclusions-http.txt`` list
each excluded test with its reason), checks that the core names were really served by tornado_lite,
and prints / writes the figures as JSON and as a Markdown table.

``--impl tornado`` runs the very same tests against real Tornado (no rewrite, no install()):
everything not excluded must pass there, which proves the harness and the exclusion lists right.

The API part runs Tornado's own describer (``tornado.test.api_test``) on each
``tornado_lite.<module>`` and compares the names with ``api.txt`` (see ``api_compare.py``).

Run it with the scratch venv's interpreter (``make compat`` does)::

    .venv-compat/bin/python tests/compat/run_compat.py [--impl lite|tornado] [--poller both] [--part both]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import typing

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PINNED_TORNADO = "6.6.1"

# The areas tornado_lite replaces.  Their test modules are run; references to them are rewritten.
CORE_MODULES = (
    "ioloop iostream tcpserver tcpclient netutil process concurrent gen locks queues testing util log options"
).split()
# Longest-running first, so that a parallel run finishes sooner.
TEST_MODULES = (
    "iostream gen ioloop tcpclient locks queues testing util options log process concurrent netutil tcpserver"
).split()
# The second part: Tornado's tests of the modules tornado_lite does NOT replace (the HTTP layer and
# the pure-Python helpers), run in place and unmodified under `python -m tornado_lite -m pytest`,
# where install() makes their `tornado.<core module>` imports give tornado_lite's.  options is in
# both parts: once rewritten, once through install().  security_corpus is not in issue 13's list
# but is the HTTP server fed hostile input, which install() must serve as Tornado does.
# Longest-running first.
HTTP_TEST_MODULES = (
    "web httpclient simple_httpclient websocket httpserver autoreload security_corpus wsgi routing"
    " http1connection auth httputil template escape locale options"
).split()
# The order of the report's rows (issue 13's list).
HTTP_DISPLAY_ORDER = (
    "web httpserver httpclient simple_httpclient websocket http1connection routing wsgi auth"
    " escape httputil template locale options autoreload security_corpus"
).split()
PARTS = ("core", "http")
PACKAGE = "compat_tests"  # the package the copies live in, in place of tornado.test
IN_PLACE_PACKAGE = "tornado/test"  # where the http part's node ids start: the installed Tornado's tests
PLUGIN = "compat_conftest"  # compat_conftest.py, copied into each work dir and loaded with -p
SUPPORT_MODULES = ("util", "resolve_test_helper", "runtests")  # tornado.test helpers the tests import
DATA_SUFFIXES = (".crt", ".key", ".cfg")
# Why a test may be left out: the only reason run_compat.py accepts is that it uses asyncio itself.
# (Tests needing Tornado's HTTP layer were once left out as "http"; install() now provides it.  Tests
# needing pycurl or twisted are all in curl_httpclient_test.py and twisted_test.py, which neither part
# runs: they test Tornado's optional alternatives, not the core.)
EXCLUSION_CATEGORIES = ("asyncio",)
POLLER_ENV = "TORNADO_LITE_POLLER"

# Adaptations applied to the lite copies only, each for a documented, intended difference
# (docs/differences.md).  They change what a test expects, never whether it runs.
LITE_ADAPTATIONS = (
    (
        re.compile(r"\basyncio\.CancelledError\b"),
        "concurrent.futures.CancelledError",
        "asyncio.CancelledError -> concurrent.futures.CancelledError: tornado_lite has no asyncio, "
        "its cancellations raise concurrent.futures.CancelledError (docs/differences.md)",
    ),
    (
        re.compile(r"^from tornado\.platform\.asyncio import (\w+)$", re.M),
        "try:\n    from tornado.platform.asyncio import \\1\nexcept ImportError:\n    \\1 = None",
        "a module-level import from tornado.platform.asyncio may fail (under install() that name is "
        "tornado_lite's optional asyncio bridge, which has no AddThreadSelectorEventLoop): the name is then None; "
        "only asyncio-excluded tests use it (iostream_test's test_inline_read_error)",
    ),
)


# ---------------------------------------------------------------------------------------------
# Rewriting
# ---------------------------------------------------------------------------------------------

_CORE_ALT = "|".join(CORE_MODULES)
_CORE_REF = re.compile(r"(?<![\w.])tornado\.(" + _CORE_ALT + r")(?!\w)")
_PACKAGE_ATTR = re.compile(r"(?<![\w.])tornado\.(version_info|version)(?!\w)")
_TEST_PACKAGE = re.compile(r"(?<![\w.])tornado\.test(?=\.)")
_FROM_TORNADO = re.compile(r"^(?P<indent>[ \t]*)from tornado import (?P<names>[\w ,]+?)[ \t]*$", re.M)
_IMPORT_TORNADO = re.compile(r"^(?P<indent>[ \t]*)import tornado[ \t]*$", re.M)


def _split_from_import(match: re.Match[str]) -> str:
    indent = match.group("indent")
    names = [n.strip() for n in match.group("names").split(",") if n.strip()]
    core = [n for n in names if n.split(" as ")[0].strip() in CORE_MODULES]
    other = [n for n in names if n not in core]
    lines = []
    if other:
        lines.append(f"{indent}from tornado import {', '.join(other)}")
    if core:
        lines.append(f"{indent}from tornado_lite import {', '.join(core)}")
    return "\n".join(lines)


def rewrite_source(text: str, impl: str) -> str:
    """Point a copied test module at the copies' package and, for lite, at tornado_lite."""
    text = _TEST_PACKAGE.sub(PACKAGE, text)
    if impl != "lite":
        return text
    text = _FROM_TORNADO.sub(_split_from_import, text)
    text = _IMPORT_TORNADO.sub(lambda m: f"{m.group(0)}\n{m.group('indent')}import tornado_lite", text)
    text = _CORE_REF.sub(r"tornado_lite.\1", text)
    text = _PACKAGE_ATTR.sub(r"tornado_lite.\1", text)
    for pattern, replacement, _why in LITE_ADAPTATIONS:
        text = pattern.sub(replacement, text)
    if "concurrent.futures.CancelledError" in text and not re.search(r"^import concurrent\.futures$", text, re.M):
        text = "import concurrent.futures\n" + text
    _check_no_core_left(text)
    return text


def _check_no_core_left(text: str) -> None:
    """Fail loudly if an import shape the rewriter does not know left a core module on Tornado."""
    for match in re.finditer(r"^[ \t]*from tornado import (.*)$", text, re.M):
        names = {n.split(" as ")[0].strip(" ()") for n in match.group(1).split("#")[0].split(",")}
        if names & set(CORE_MODULES):
            raise SystemExit(f"cannot rewrite {match.group(0).strip()!r}: extend rewrite_source()")


def tornado_test_dir() -> str:
    import tornado
    import tornado.test

    if tornado.version != PINNED_TORNADO:
        print(f"warning: Tornado {tornado.version} installed, the compat suite is pinned to {PINNED_TORNADO}")
    return os.path.dirname(os.path.abspath(tornado.test.__file__))


def prepare_work_dir(work: str, impl: str) -> str:
    """Write the rewritten copies for one implementation; returns the directory to run in."""
    src = tornado_test_dir()
    root = os.path.join(work, impl)
    shutil.rmtree(root, ignore_errors=True)
    pkg = os.path.join(root, PACKAGE)
    os.makedirs(pkg)
    with open(os.path.join(pkg, "__init__.py"), "w", encoding="utf-8") as f:
        f.write(f'"""Tornado {PINNED_TORNADO} tests, rewritten for {impl} by tests/compat/run_compat.py."""\n')
    for name in os.listdir(src):
        if name.endswith(DATA_SUFFIXES):
            shutil.copy(os.path.join(src, name), pkg)
        if name.endswith(".cfg"):  # options config files are Python: they import from the tests
            with open(os.path.join(src, name), encoding="utf-8") as f:
                text = f.read()
            with open(os.path.join(pkg, name), "w", encoding="utf-8") as f:
                f.write(rewrite_source(text, impl))
    for mod in SUPPORT_MODULES + tuple(f"{m}_test" for m in TEST_MODULES):
        with open(os.path.join(src, mod + ".py"), encoding="utf-8") as f:
            text = f.read()
        text = rewrite_source(text, impl)
        with open(os.path.join(pkg, mod + ".py"), "w", encoding="utf-8") as f:
            f.write(text)
    write_runner_files(root)
    return root


def write_runner_files(root: str) -> None:
    """The pytest plugin, pytest's configuration and the results directory of one work dir."""
    shutil.copy(os.path.join(HERE, "compat_conftest.py"), os.path.join(root, PLUGIN + ".py"))
    with open(os.path.join(root, "pytest.ini"), "w", encoding="utf-8") as f:
        # Tornado's runtests.py makes warnings errors, except deprecations raised outside Tornado.
        f.write(
            textwrap.dedent(
                r"""
                [pytest]
                addopts = -p no:cacheprovider -q
                filterwarnings =
                    error
                    ignore::ImportWarning
                    ignore::pytest.PytestCollectionWarning
                    ignore::DeprecationWarning
                    error::DeprecationWarning:tornado(_lite)?(\..*)?
                    ignore::PendingDeprecationWarning
                    error::PendingDeprecationWarning:tornado(_lite)?(\..*)?
                """
            ).lstrip()
        )
    os.makedirs(os.path.join(root, "results"), exist_ok=True)
    os.makedirs(os.path.join(root, CHILDREN_DIR), exist_ok=True)
    with open(os.path.join(root, CHILDREN_DIR, "sitecustomize.py"), "w", encoding="utf-8") as f:
        f.write(CHILDREN_SITECUSTOMIZE)


# Tests start Python processes of their own (process_test's forked servers, ioloop_test's `python -c`
# probes, autoreload_test's apps).  In a lite run, every one of them must run on tornado_lite too, or
# those tests would measure Tornado's own core: this sitecustomize, on the PYTHONPATH of the lite runs
# (and so of every interpreter their tests start), calls install() -- and in the bridge stage the
# asyncio bridge's install() -- before anything else runs.
CHILDREN_DIR = "on_tornado_lite"
CHILDREN_SITECUSTOMIZE = '''"""Written by run_compat.py: each Python process of a lite run starts on tornado_lite."""
import os

if os.environ.get("COMPAT_INSTALL"):
    import tornado_lite

    tornado_lite.install()
    if os.environ.get("COMPAT_ASYNCIO_BRIDGE"):
        from tornado_lite.platform import asyncio as bridge

        bridge.install()
'''


def prepare_in_place_dir(work: str, impl: str) -> str:
    """The work dir of the http part: nothing is copied, the tests run where Tornado installed them."""
    root = os.path.join(work, f"http-{impl}")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    write_runner_files(root)
    return root


class Part(typing.NamedTuple):
    """One half of the suite: where its pytest processes run, what starts them, how its tests are named."""

    name: str  # "core" (rewritten copies) or "http" (Tornado's own files, unmodified)
    root: str  # cwd of its pytest processes: pytest.ini, the plugin, results/
    rootdir: str  # pytest's --rootdir: node ids are relative to it
    prefix: str  # the directory part of its node ids, before "<module>_test.py"
    launcher: tuple[str, ...]  # what runs pytest: python -m pytest, or python -m tornado_lite -m pytest
    excluded_only: bool = False  # the bridge stage: run the tests the exclusions list, and only those
    asyncio_bridge: bool = False  # with tornado_lite.platform.asyncio.install() done before the tests load

    def test_file(self, module: str) -> str:
        return os.path.join(self.rootdir, self.prefix, f"{module}_test.py")

    def for_bridge(self) -> "Part":
        """The same tests' excluded ones; on tornado_lite with the asyncio bridge, on Tornado as they are."""
        lite = self.launcher != launcher("tornado")
        return self._replace(excluded_only=True, asyncio_bridge=lite)


def launcher(impl: str) -> tuple[str, ...]:
    """pytest on real Tornado, or pytest under tornado_lite's install() (`python -m tornado_lite`)."""
    if impl == "tornado":
        return (sys.executable, "-m", "pytest")
    return (sys.executable, "-m", "tornado_lite", "-m", "pytest")


def core_part(root: str, impl: str) -> Part:
    return Part("core", root, root, PACKAGE, launcher(impl))


def http_part(root: str, impl: str) -> Part:
    site = os.path.dirname(os.path.dirname(tornado_test_dir()))
    return Part("http", root, site, IN_PLACE_PACKAGE, launcher(impl))


# ---------------------------------------------------------------------------------------------
# Exclusions
# ---------------------------------------------------------------------------------------------


def load_exclusions(path: str) -> dict[str, str]:
    """``{"<module>_test.py::Class::test": "category: reason"}``; rejects a line without a reason."""
    excluded: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            test_id = parts[0]
            reason = parts[1].strip() if len(parts) > 1 else ""
            category = reason.split(":", 1)[0]
            if test_id.count("::") != 2 or category not in EXCLUSION_CATEGORIES or ":" not in reason:
                raise SystemExit(
                    f"{path}:{lineno}: expected '<module>_test.py::Class::test  "
                    f"<{'|'.join(EXCLUSION_CATEGORIES)}>: <reason>'"
                )
            if test_id in excluded:
                raise SystemExit(f"{path}:{lineno}: {test_id} listed twice")
            excluded[test_id] = reason
    return excluded


def module_of(test_id: str) -> str:
    return test_id.split("::", 1)[0].rsplit("/", 1)[-1][: -len("_test.py")]


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


class ModuleRun(typing.NamedTuple):
    module: str
    poller: str
    events: list[dict[str, typing.Any]]
    returncode: int | None  # None: killed for overrunning its time limit
    elapsed: float
    stderr_tail: str
    hang_dump: str
    incidents: list[str] = []
    part: str = "core"


def _read_tail(path: str, size: int = 3000) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()[-size:]
    except OSError:
        return ""


def lock_work_dir(work: str) -> typing.IO[str]:
    """One run at a time per work directory: a second one would wipe the first one's copies."""
    import fcntl

    os.makedirs(work, exist_ok=True)
    lock = open(os.path.join(work, ".lock"), "a+", encoding="utf-8")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        print(f"compat: waiting for another run using {work} ({lock.read().strip() or 'pid unknown'}); "
              "use --work DIR to run beside it", flush=True)  # fmt: skip
        fcntl.flock(lock, fcntl.LOCK_EX)
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}\n")
    lock.flush()
    return lock


def _read_events(path: str) -> list[dict[str, typing.Any]]:
    events = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass  # a line cut short by a kill
    return events


# A test that shows no sign of life for its own time limit plus this long is taken as hung even if the
# per-test timer did not stop it (the timer's exception can be swallowed, or land where it cannot act).
STALL_GRACE = 15.0


def _wait_or_kill(proc: subprocess.Popen[bytes], results: str, deadline: float, stall_limit: float) -> int | None:
    """Wait for a pytest process; kill its group (after a stack dump) at the deadline or when stalled.

    Returns its exit code, or None when it had to be killed.
    """
    last_size, last_change = -1, time.monotonic()
    while True:
        try:
            return proc.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        size = os.path.getsize(results) if os.path.exists(results) else 0
        if size != last_size:
            last_size, last_change = size, now
        if now >= deadline or (stall_limit and now - last_change > stall_limit):
            break
    try:
        os.kill(proc.pid, signal.SIGUSR1)  # ask faulthandler for the stacks of the hang
        time.sleep(0.1)  # faulthandler writes from the signal handler itself: no need to wait long
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return None


def run_module(
    part: Part,
    module: str,
    poller: str,
    excluded: dict[str, str],
    test_timeout: float,
    module_timeout: float,
    collect_only: bool = False,
    keyword: str = "",
    done: typing.Collection[str] = (),
    attempt: int = 0,
) -> ModuleRun:
    """One pytest process over one module; ``done`` (node ids) are left out, as already run."""
    root = part.root
    tag = ("bridge." if part.excluded_only else "") + f"{module}.{poller}"
    tag += (".collect" if collect_only else "") + (f".{attempt}" if attempt else "")
    results = os.path.join(root, "results", tag + ".jsonl")
    dump = os.path.join(root, "results", tag + ".stacks.txt")
    output = os.path.join(root, "results", tag + ".out")
    exclude_file = os.path.join(root, "results", tag + ".exclude.json")
    for path in (results, dump):
        if os.path.exists(path):
            os.remove(path)
    done_file = os.path.join(root, "results", tag + ".done.json")
    with open(exclude_file, "w", encoding="utf-8") as f:
        mine = {tid: why for tid, why in excluded.items() if module_of(tid) == module}
        json.dump({} if part.excluded_only else {f"{part.prefix}/{tid}": why for tid, why in mine.items()}, f)
    with open(done_file, "w", encoding="utf-8") as f:
        json.dump(sorted(done), f)
    env = dict(os.environ)
    env.update(
        PYTHONPATH=root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
        COMPAT_RESULTS=results,
        COMPAT_DUMP=dump,
        COMPAT_EXCLUDE=exclude_file,
        COMPAT_DONE=done_file,
        COMPAT_TEST_TIMEOUT=str(test_timeout),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop(POLLER_ENV, None)
    if poller != "default":
        env[POLLER_ENV] = poller
    env.pop("COMPAT_INSTALL", None)
    env.pop("COMPAT_ASYNCIO_BRIDGE", None)
    if part.launcher != launcher("tornado"):
        env["PYTHONPATH"] = os.path.join(root, CHILDREN_DIR) + os.pathsep + env["PYTHONPATH"]
        env["COMPAT_INSTALL"] = "1"
    if part.asyncio_bridge:
        env["COMPAT_ASYNCIO_BRIDGE"] = "1"
    cmd = [*part.launcher, "-c", "pytest.ini", f"--rootdir={part.rootdir}", "-p", PLUGIN]
    if part.excluded_only:
        cmd += sorted(part.test_file(module) + "::" + tid.split("::", 1)[1] for tid in mine)
    else:
        cmd.append(part.test_file(module))
    if collect_only:
        cmd.append("--collect-only")
    if keyword:
        cmd += ["-k", keyword]
    start = time.monotonic()
    errors = output[: -len(".out")] + ".err"
    with open(output, "wb") as out_file, open(errors, "wb") as err_file:  # pytest's own report, for reading by hand
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out_file,
            stderr=err_file,
            start_new_session=True,  # its own process group, so a kill takes its children too
        )
    returncode = _wait_or_kill(proc, results, start + module_timeout, test_timeout + STALL_GRACE if test_timeout else 0)
    elapsed = time.monotonic() - start
    hang = ""
    if returncode is None and os.path.exists(dump):
        with open(dump, encoding="utf-8", errors="replace") as f:
            hang = f.read()[:20000]
    tail = _read_tail(errors)
    if returncode not in (0, 1):  # 1 is "some tests failed"; anything else is pytest itself in trouble
        tail = (tail + "\n" + _read_tail(output)).strip()
    return ModuleRun(module, poller, _read_events(results), returncode, elapsed, tail, hang, [], part.name)


def run_module_resuming(
    part: Part,
    module: str,
    poller: str,
    excluded: dict[str, str],
    test_timeout: float,
    module_timeout: float,
    keyword: str = "",
    max_restarts: int = 3,
) -> ModuleRun:
    """Run a module; if pytest dies or is killed part-way, charge the test it was in and go on.

    One hung or interpreter-breaking test then costs that test, not the rest of its module.  The
    module's time limit covers all the attempts together.
    """
    deadline = time.monotonic() + module_timeout
    events: list[dict[str, typing.Any]] = []
    tails: list[str] = []
    dumps: list[str] = []
    incidents: list[str] = []
    done: set[str] = set()
    elapsed = 0.0
    returncode: int | None = 0
    for attempt in range(max_restarts + 1):
        remaining = deadline - time.monotonic()
        if remaining < 2.0:
            incidents.append("out of time")
            break
        run = run_module(part, module, poller, excluded, test_timeout, remaining, keyword=keyword, done=done,
                         attempt=attempt)  # fmt: skip
        events += run.events
        elapsed += run.elapsed
        returncode = run.returncode
        if run.stderr_tail:
            tails.append(run.stderr_tail)
        if run.hang_dump:
            dumps.append(run.hang_dump)
        finished = {ev["nodeid"] for ev in run.events if ev.get("event") == "result"}
        collected = {ev["nodeid"] for ev in events if ev.get("event") == "collected"}
        if not collected - done - finished:
            break  # everything ran (whatever pytest's exit code says)
        started = [ev["nodeid"] for ev in run.events if ev.get("event") == "start"]
        culprit = next((t for t in reversed(started) if t not in finished), None)
        if culprit is None and not finished - done:
            break  # died outside any test, having run nothing (e.g. at collection): nothing to resume from
        if culprit is None:
            incidents.append(f"pytest exited {returncode} between tests; resumed")
        else:
            if returncode is None:
                why = f"killed after {run.elapsed:.0f}s, hung in this test"
            else:
                why = f"pytest exited {returncode} during this test"
            incidents.append(f"{why.replace('this test', short_id(culprit))}; resumed after it")
            events.append({"event": "result", "nodeid": culprit, "outcome": "error", "message": why})
            finished.add(culprit)
        done |= finished
        if not collected - done:
            returncode = 1
            break
    else:
        incidents.append(f"gave up after {max_restarts} restarts")
    return ModuleRun(module, poller, events, returncode, elapsed, "\n".join(tails)[-6000:], "\n".join(dumps),
                     incidents, part.name)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------------------------


def short_id(nodeid: str) -> str:
    for prefix in (PACKAGE, IN_PLACE_PACKAGE):
        if nodeid.startswith(prefix + "/"):
            return nodeid[len(prefix) + 1 :]
    return nodeid


def summarize(run: ModuleRun, expected: set[str], expected_excluded: dict[str, str]) -> dict[str, typing.Any]:
    """Per-module counts.  Tests that Tornado's copy has but this run never ran are errors."""
    results: dict[str, dict[str, typing.Any]] = {}
    collected: set[str] = set()
    excluded_here: dict[str, str] = {}
    collect_errors: list[str] = []
    started: list[str] = []
    served_by: dict[str, str] = {}
    for ev in run.events:
        kind = ev.get("event")
        if kind == "core_modules":
            served_by.update(ev["serving"])
        elif kind == "collected":
            collected.add(short_id(ev["nodeid"]))
        elif kind == "excluded":
            excluded_here[short_id(ev["nodeid"])] = ev["reason"]
        elif kind == "collect_error":
            collect_errors.append(ev.get("message", ""))
        elif kind == "start":
            started.append(short_id(ev["nodeid"]))
        elif kind == "result":
            results[short_id(ev["nodeid"])] = ev
    all_tests = expected | collected
    counts = collections.Counter()
    failures: list[dict[str, str]] = []
    hung = next((t for t in reversed(started) if t not in results), None)
    for test in sorted(all_tests):
        ev = results.get(test)
        if ev is None:
            if run.returncode is None:
                why = f"module killed after {run.elapsed:.0f}s" + (" (hung in this test)" if test == hung else "")
            elif collect_errors:
                why = "not collected: " + collect_errors[0]
            else:
                why = f"not run (pytest exit {run.returncode})"
            counts["errors"] += 1
            failures.append({"test": test, "outcome": "error", "message": why, "where": ""})
            continue
        outcome = ev["outcome"]
        counts[{"passed": "passed", "failed": "failed", "skipped": "skipped"}.get(outcome, "errors")] += 1
        if outcome in ("failed", "error"):
            failures.append(
                {"test": test, "outcome": outcome, "message": ev.get("message", ""), "where": ev.get("where", "")}
            )
    notes = [i.replace(PACKAGE + "/", "").replace(IN_PLACE_PACKAGE + "/", "") for i in run.incidents]
    if run.returncode is None:
        notes.append(f"killed after {run.elapsed:.0f}s" + (f", hung in {hung}" if hung else ""))
    elif run.returncode not in (0, 1, 5) and not collect_errors:
        notes.append(f"pytest exited {run.returncode}")
    if collect_errors:
        notes.append("collection error: " + collect_errors[0])
    skipped_reasons = sorted(
        {f"{short_id(ev['nodeid'])}: {ev.get('message', '')}" for ev in results.values() if ev["outcome"] == "skipped"}
    )
    return {
        "part": run.part,
        "module": run.module,
        "poller": run.poller,
        "collected": len(all_tests) + len(expected_excluded),
        "excluded": len(expected_excluded),
        "passed": counts["passed"],
        "failed": counts["failed"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
        "seconds": round(run.elapsed, 1),
        "notes": notes,
        "core_served_by": served_by,
        "excluded_tests": expected_excluded,
        "skipped_tests": skipped_reasons,
        "failures": failures,
        "hang_stacks": run.hang_dump,
        "stderr_tail": run.stderr_tail if (run.returncode not in (0, 1) or collect_errors) else "",
    }


def check_core_implementation(row: dict[str, typing.Any], impl: str) -> None:
    """Flag a module whose ``tornado.<core>`` names were not served by the implementation under test.

    A lite run that fell back to Tornado's own ioloop (install() not in effect, a second copy of a
    module ...) would pass without measuring anything; it is reported, and fails the run.
    """
    package = "tornado_lite." if impl == "lite" else "tornado."
    wrong = {name: served for name, served in row["core_served_by"].items() if not served.startswith(package)}
    row["wrong_core"] = wrong
    if wrong:
        row["notes"].append("NOT RUN ON " + package[:-1] + ": " + ", ".join(f"{k} is {v}" for k, v in wrong.items()))


def expected_tests(
    part: Part, modules: list[str], excluded: dict[str, str], jobs: int, keyword: str = ""
) -> tuple[dict[str, set[str]], dict[str, dict[str, str]]]:
    """The runnable (non-excluded, non-abstract) test ids of each module, from Tornado's copy, and the
    excluded ones with their reasons."""
    expected: dict[str, set[str]] = {}
    expected_excluded: dict[str, dict[str, str]] = {}

    def collect(module: str) -> ModuleRun:
        return run_module(part, module, "default", excluded, 0, 120, collect_only=True, keyword=keyword)

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        runs = list(pool.map(collect, modules))
    for run in runs:
        ids = {short_id(ev["nodeid"]) for ev in run.events if ev.get("event") == "collected"}
        seen_excluded = {short_id(ev["nodeid"]) for ev in run.events if ev.get("event") == "excluded"}
        stale = {t for t in excluded if module_of(t) == run.module} - seen_excluded
        if stale and not keyword:
            raise SystemExit(
                f"the exclusions list tests that Tornado's {run.module}_test.py does not have: {sorted(stale)}"
            )
        if not ids and not run.events:
            raise SystemExit(f"could not collect Tornado's own {run.module}_test.py:\n{run.stderr_tail}")
        expected[run.module] = ids
        expected_excluded[run.module] = {t: excluded[t] for t in seen_excluded if t in excluded}
    return expected, expected_excluded


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------

COLUMNS = ("collected", "excluded", "passed", "failed", "errors", "skipped")


def _totals(rows: list[dict[str, typing.Any]]) -> dict[str, int]:
    return {c: sum(r[c] for r in rows) for c in COLUMNS}


def _rate(t: dict[str, int]) -> str:
    """Passed, out of the tests that ran to a verdict (not excluded, not skipped by the test itself)."""
    ran = t["collected"] - t["excluded"] - t["skipped"]
    return f"{100.0 * t['passed'] / ran:.1f}%" if ran else "n/a"


def print_tables(rows: list[dict[str, typing.Any]], pollers: list[str], impl: str, part: str) -> None:
    for poller in pollers:
        mine = [r for r in rows if r["poller"] == poller]
        print(f"\n== tests, {part} part: impl={impl}, poller={poller}")
        print(f"{'module':<17}" + "".join(f"{c:>10}" for c in COLUMNS) + f"{'secs':>8}  notes")
        for r in mine:
            print(
                f"{r['module']:<17}"
                + "".join(f"{r[c]:>10}" for c in COLUMNS)
                + f"{r['seconds']:>8}  "
                + "; ".join(r["notes"])
            )
        t = _totals(mine)
        print(
            f"{'TOTAL':<17}" + "".join(f"{t[c]:>10}" for c in COLUMNS) + f"   passed, of those not skipped: {_rate(t)}"
        )


def print_skips(rows: list[dict[str, typing.Any]]) -> None:
    skips = sorted({s for r in rows for s in r["skipped_tests"]})
    if skips:
        print(f"\n== tests that skipped themselves ({len(skips)})")
        for s in skips:
            print(f"  {s}")


def print_exclusions(rows: list[dict[str, typing.Any]]) -> None:
    seen: dict[str, str] = {}
    for r in rows:
        seen.update(r["excluded_tests"])
    if seen:
        print(f"\n== excluded tests ({len(seen)}), with reasons")
        for test, why in sorted(seen.items()):
            print(f"  {test}  --  {why}")


def failure_groups(rows: list[dict[str, typing.Any]]) -> list[dict[str, typing.Any]]:
    """Failures grouped by their message (numbers and addresses blurred), pollers merged per test."""
    groups: dict[str, dict[str, dict[str, typing.Any]]] = collections.defaultdict(dict)
    for r in rows:
        for f in r["failures"]:
            first_line = (f["message"].strip().splitlines() or [""])[0]
            key = re.sub(r"0x[0-9a-f]+|\d+(\.\d+)?", "N", first_line)[:200]
            label = f["test"] if r["part"] == "core" else f"[http] {f['test']}"  # options is in both parts
            entry = groups[key].setdefault(label, {"test": label, "pollers": [], "where": f["where"]})
            entry["pollers"].append(r["poller"])
    out = [{"message": key, "tests": list(tests.values())} for key, tests in groups.items()]
    out.sort(key=lambda g: (-len(g["tests"]), g["message"]))
    return out


def _hang_excerpt(dump: str, frames: int = 14) -> str:
    """The innermost frames of each thread (faulthandler lists the most recent call first)."""
    blocks = re.split(r"\n(?=(?:Thread|Current thread) 0x)", dump.strip())
    return "\n".join("\n".join(b.splitlines()[: frames + 1]) for b in blocks)


def print_failures(rows: list[dict[str, typing.Any]], limit: int) -> None:
    groups = failure_groups(rows)
    if not groups:
        return
    total = sum(len(g["tests"]) for g in groups)
    print(f"\n== failing tests ({total}), grouped by message")
    for g in groups[:limit]:
        print(f"  {len(g['tests']):>4} x {g['message']}")
        for t in g["tests"][:5]:
            where = f"  at {t['where']}" if t["where"] else ""
            print(f"         {t['test']} [{','.join(t['pollers'])}]{where}")
        if len(g["tests"]) > 5:
            print(f"         ... and {len(g['tests']) - 5} more")
    if len(groups) > limit:
        print(f"  ... and {len(groups) - limit} more groups (compat-report.json has them all)")
    for r in rows:
        if r["hang_stacks"]:
            print(f"\n== {r['module']} [{r['poller']}] when killed: innermost frames of each thread")
            print(textwrap.indent(_hang_excerpt(r["hang_stacks"]), "    "))


PART_TITLES = {
    "core": (
        "Core part: Tornado's tests of the 14 core modules",
        "Copied with their core imports rewritten to `tornado_lite`, run under `python -m tornado_lite -m pytest`.",
    ),
    "http": (
        "HTTP part: Tornado's tests of the modules tornado_lite does not replace",
        "Run in place and unmodified under `python -m tornado_lite -m pytest`: `install()` makes their "
        "`tornado.<core module>` imports tornado_lite's, and Tornado's HTTP layer runs on it.",
    ),
}


def markdown(report: dict[str, typing.Any]) -> str:
    """Per part, one table for the tests (a cell reads "default / selectors" when the pollers disagree);
    one for the API."""
    pollers = report["pollers"]
    out = [f"<!-- written by tests/compat/run_compat.py ({report['impl']}); do not edit -->", ""]
    for part, modules in report["parts"].items():
        rows = [r for r in report["tests"] if r["part"] == part]
        if rows:
            out += _markdown_part(part, modules, rows, pollers, report)
    if report.get("bridge"):
        out += _markdown_bridge(report["bridge"], pollers)
    api = report.get("api")
    if api:
        out += ["", f"Public API against `api.txt` of Tornado {report['tornado']}: {api['summary']}.", ""]
        out.append("| module | names | present | same signature | missing |")
        out.append("|---|---|---|---|---|")
        for m in api["modules"]:
            out.append(f"| {m['module']} | {m['names']} | {m['present']} | {m['same']} | {len(m['missing'])} |")
    out += [
        "",
        "Excluded tests, each with its category and reason: `tests/compat/exclusions.txt` (core part) and "
        "`tests/compat/exclusions-http.txt` (HTTP part).  Intended differences: `docs/differences.md`.",
        "",
    ]
    return "\n".join(out)


def _markdown_bridge(bridge: dict[str, typing.Any], pollers: list[str]) -> list[str]:
    out = [
        "## The asyncio-excluded tests, run again "
        + ("on tornado_lite's asyncio bridge" if bridge["how"].startswith("with") else "on Tornado, as they are"),
        "",
        "Every test excluded above for using asyncio itself, run again: on tornado_lite with "
        "`tornado_lite.platform.asyncio.install()` done in every Python process of the run (issue 14); "
        "on Tornado (`IMPL=tornado`) as they are, where each must pass.",
        "",
    ]
    for key, t in bridge["totals"].items():
        part, poller = key.split("/")
        out.append(
            f"- **{part}, {poller}**: {t['passed']} of {t['collected']} pass, {t['failed']} fail, "
            f"{t['errors']} error, {t['skipped']} skip themselves"
        )
    label = " / ".join(pollers)
    out += ["", f"| part | module | excluded | passed ({label}) | failed ({label}) | errors ({label}) |"]
    out.append("|---|---|---|---|---|---|")
    keys = sorted(
        {(m["part"], m["module"]) for m in bridge["modules"]}, key=lambda k: (PARTS.index(k[0]), module_order(*k))
    )
    for part, module in keys:
        per = [
            next(m for m in bridge["modules"] if (m["part"], m["module"], m["poller"]) == (part, module, p))
            for p in pollers
        ]
        cells = [
            " / ".join(str(x[c]) for x in per) if len({x[c] for x in per}) > 1 else str(per[0][c])
            for c in ("passed", "failed", "errors")
        ]
        out.append(f"| {part} | {module} | {per[0]['collected']} | " + " | ".join(cells) + " |")
    if bridge["failing"]:
        out += ["", "Still failing (their causes: `tests/compat/README.md`):", ""]
        for e in bridge["failing"]:
            message = e["message"].replace("|", "\\|")[:160]
            out.append(f"- [{e['part']}] `{e['test']}` ({', '.join(e['pollers'])}): {message}")
    out.append("")
    return out


def _markdown_part(
    part: str, modules: list[str], rows: list[dict[str, typing.Any]], pollers: list[str], report: dict[str, typing.Any]
) -> list[str]:
    title, how = PART_TITLES[part]
    if report["impl"] == "tornado":
        how = "The same tests on real Tornado, without rewriting or install(): a check of the harness and exclusions."
    out = [f"## {title}", "", f"Tornado {report['tornado']} against `{report['target']}`. " + how, ""]
    by_poller = {p: [r for r in rows if r["poller"] == p] for p in pollers}
    for p in pollers:
        t = _totals(by_poller[p])
        out.append(
            f"- **{p}**: {t['passed']} of {t['collected'] - t['excluded']} runnable tests pass, "
            f"{t['failed']} fail, {t['errors']} error, {t['skipped']} skip themselves "
            f"({_rate(t)} of those not skipped)"
        )
    label = " / ".join(pollers)
    out += ["", "| module | collected | excluded | runnable | " + " | ".join(f"{c} ({label})" for c in COLUMNS[2:])]
    out[-1] += " |"
    out.append("|---" * (len(COLUMNS) + 2) + "|")

    def cell(values: list[int]) -> str:
        return str(values[0]) if len(set(values)) == 1 else " / ".join(map(str, values))

    per_module = [(m, [next(r for r in by_poller[p] if r["module"] == m) for p in pollers]) for m in modules]
    for name, per in per_module + [("**total**", [_totals(by_poller[p]) for p in pollers])]:
        fields = [cell([x[c] for x in per]) for c in COLUMNS]
        fields.insert(2, cell([x["collected"] - x["excluded"] for x in per]))
        out.append(f"| {name} | " + " | ".join(fields) + " |")
    out.append("")
    return out


def compact(report: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """The figures without the per-test detail, for publishing next to the README."""
    heavy = ("failures", "hang_stacks", "stderr_tail", "excluded_tests", "skipped_tests", "core_served_by")
    out = {k: v for k, v in report.items() if k not in ("tests", "failure_groups", "api")}
    out["tests"] = [{k: v for k, v in r.items() if k not in heavy} for r in report["tests"]]
    out["failure_groups"] = [
        {"message": g["message"], "count": len(g["tests"]), "tests": [t["test"] for t in g["tests"][:10]]}
        for g in report.get("failure_groups", [])
    ]
    api = report.get("api")
    if api:
        out["api"] = dict(api, modules=[{k: v for k, v in m.items() if k != "extra"} for m in api["modules"]])
    return out


def bridge_summary(rows: list[dict[str, typing.Any]], pollers: list[str], impl: str) -> dict[str, typing.Any]:
    """The excluded tests' second run: per part and poller, how many pass; every other one with its error."""
    totals = {
        f"{part}/{poller}": {c: sum(r[c] for r in rows if r["part"] == part and r["poller"] == poller) for c in COLUMNS}
        for part in PARTS
        for poller in pollers
        if any(r["part"] == part and r["poller"] == poller for r in rows)
    }
    per_module = [
        {"part": r["part"], "module": r["module"], "poller": r["poller"], **{c: r[c] for c in COLUMNS}} for r in rows
    ]
    failing: dict[tuple[str, str], dict[str, typing.Any]] = {}
    for r in rows:
        for f in r["failures"]:
            entry = failing.setdefault(
                (r["part"], f["test"]),
                {"part": r["part"], "test": f["test"], "pollers": [], "message": f["message"], "where": f["where"]},
            )
            entry["pollers"].append(r["poller"])
    return {
        "how": "with tornado_lite.platform.asyncio.install()" if impl == "lite" else "on Tornado, as they are",
        "totals": totals,
        "modules": per_module,
        "failing": sorted(failing.values(), key=lambda e: (PARTS.index(e["part"]), e["test"])),
    }


def print_bridge(bridge: dict[str, typing.Any]) -> None:
    print(f"\n== the asyncio-excluded tests, run again {bridge['how']}")
    for key, t in bridge["totals"].items():
        print(f"  {key:<16} {t['passed']} of {t['collected']} pass, {t['failed']} fail, {t['errors']} error, "
              f"{t['skipped']} skip themselves")  # fmt: skip
    for e in bridge["failing"]:
        where = f"  at {e['where']}" if e["where"] else ""
        print(f"  [{e['part']}] {e['test']} [{','.join(e['pollers'])}]: {e['message'][:200]}{where}")


# ---------------------------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------------------------


def run_api(impl: str, timeout: float) -> dict[str, typing.Any] | None:
    # Under install() for lite: the describer's own module imports tornado.testing and tornado.web, which
    # must then be tornado_lite's and Tornado's-on-tornado_lite, so that tornado_lite.testing can hand out
    # its AsyncHTTP(S)TestCase (whose first access installs).
    runner = [sys.executable] if impl == "tornado" else [sys.executable, "-m", "tornado_lite"]
    cmd = [*runner, os.path.join(HERE, "api_compare.py"), "--json", "--impl", impl]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        print("\n== API: api_compare.py timed out")
        return None
    sys.stdout.write(proc.stderr)
    if proc.returncode != 0:
        print(f"\n== API: api_compare.py failed ({proc.returncode})")
        return None
    return typing.cast(dict[str, typing.Any], json.loads(proc.stdout))


# ---------------------------------------------------------------------------------------------


def module_order(part: str, module: str) -> int:
    return (CORE_MODULES if part == "core" else HTTP_DISPLAY_ORDER).index(module)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--impl",
        choices=("lite", "tornado"),
        default="lite",
        help="lite: the core on tornado_lite (default); tornado: the same tests on real Tornado",
    )
    parser.add_argument(
        "--poller",
        choices=("default", "selectors", "both"),
        default="both",
        help=f"tornado_lite poller(s) to run under (sets {POLLER_ENV}); ignored for --impl tornado",
    )
    parser.add_argument(
        "--part",
        choices=(*PARTS, "both"),
        default="both",
        help="core: the rewritten copies of the core modules' tests; http: Tornado's HTTP-layer tests, "
        "unmodified, under `python -m tornado_lite -m pytest` (default both)",
    )
    parser.add_argument(
        "--modules",
        default="",
        help="comma-separated subset of: core " + ",".join(TEST_MODULES) + "; http " + ",".join(HTTP_DISPLAY_ORDER),
    )
    parser.add_argument("--jobs", type=int, default=2, help="modules run at once (default 2)")
    parser.add_argument("--test-timeout", type=float, default=20.0, help="seconds one test may take (default 20)")
    parser.add_argument(
        "--module-timeout", type=float, default=0.0, help="seconds one module may take (default: 30 + 1 per test)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=600.0,
        help="seconds for all test runs together; later modules get what is left (default 600)",
    )
    parser.add_argument("--work", default=os.path.join(REPO, "compat-work"), help="work directory (gitignored)")
    parser.add_argument("--exclusions", default=os.path.join(HERE, "exclusions.txt"), help="the core part's")
    parser.add_argument("--http-exclusions", default=os.path.join(HERE, "exclusions-http.txt"), help="the http part's")
    parser.add_argument(
        "--bridge",
        choices=("auto", "yes", "no"),
        default="auto",
        help="after the main runs, run the asyncio-excluded tests again with tornado_lite's asyncio bridge "
        "installed (on Tornado: as they are); auto: if tornado_lite.platform.asyncio exists (default)",
    )
    parser.add_argument("-k", default="", help="pytest -k expression: run only the matching tests")
    parser.add_argument("--no-api", action="store_true", help="skip the API comparison")
    parser.add_argument("--no-tests", action="store_true", help="only the API comparison")
    parser.add_argument("--failures", type=int, default=25, help="failure groups to print (default 25)")
    parser.add_argument("--report-dir", default="", help="also write compat-report.{json,md} here (e.g. docs)")
    args = parser.parse_args(argv)

    parts = list(PARTS) if args.part == "both" else [args.part]
    all_modules = {"core": list(TEST_MODULES), "http": list(HTTP_TEST_MODULES)}
    wanted = [m.strip() for m in args.modules.split(",") if m.strip()]
    unknown = set(wanted) - set(TEST_MODULES) - set(HTTP_TEST_MODULES)
    if unknown:
        parser.error(f"unknown modules: {sorted(unknown)}")
    modules = {p: [m for m in all_modules[p] if not wanted or m in wanted] for p in parts}
    pollers = (
        ["default"]
        if args.impl == "tornado"
        else (["default", "selectors"] if args.poller == "both" else [args.poller])
    )
    import tornado

    report: dict[str, typing.Any] = {
        "impl": args.impl,
        "target": "tornado_lite" if args.impl == "lite" else f"tornado {tornado.version}",
        "tornado": tornado.version,
        "pollers": pollers,
        "parts": {p: sorted(modules[p], key=lambda m, p=p: module_order(p, m)) for p in parts},
        "adaptations": [why for _p, _r, why in LITE_ADAPTATIONS] if args.impl == "lite" else [],
        "tests": [],
    }
    lock = lock_work_dir(args.work)
    started = time.monotonic()
    exit_code = 0
    if not args.no_tests:
        all_rows = run_tests(args, parts, modules, pollers, report)
        rows = [r for r in all_rows if r["stage"] == "main"]
        bridge_rows = [r for r in all_rows if r["stage"] == "bridge"]
        report["tests"] = rows
        report["failure_groups"] = failure_groups(rows)
        for part in parts:
            print_tables([r for r in rows if r["part"] == part], pollers, args.impl, part)
        print_exclusions(rows)
        print_skips(rows)
        print_failures(rows, args.failures)
        if bridge_rows:
            report["bridge"] = bridge_summary(bridge_rows, pollers, args.impl)
            print_bridge(report["bridge"])
        if any(r["failed"] or r["errors"] or r["wrong_core"] for r in rows):
            exit_code = 1
        # On Tornado every excluded test must pass as it is; on tornado_lite, those the bridge cannot
        # run are the report's list, not a failure of the run.
        if args.impl == "tornado" and any(r["failed"] or r["errors"] for r in bridge_rows):
            exit_code = 1
    if not args.no_api:
        api = run_api(args.impl, 300)
        report["api"] = api
        if api is None:
            exit_code = exit_code or 1
    report["seconds"] = round(time.monotonic() - started, 1)
    os.makedirs(args.work, exist_ok=True)
    out_dirs = [args.work]
    if args.report_dir:
        # Only a complete run on tornado_lite is worth publishing next to the README.
        complete = args.impl == "lite" and len(pollers) == 2 and modules == all_modules
        complete = complete and not args.no_tests and not args.no_api and not args.k
        if complete:
            out_dirs.append(os.path.join(REPO, args.report_dir))
        else:
            print(f"(partial or sanity run: {args.report_dir} left as it was)")
    for d in out_dirs:
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "compat-report.json"), "w", encoding="utf-8") as f:
            json.dump(report if d == args.work else compact(report), f, indent=1, sort_keys=True)
        with open(os.path.join(d, "compat-report.md"), "w", encoding="utf-8") as f:
            f.write(markdown(report))
    print(
        f"\ncompat: done in {report['seconds']}s; report in "
        + ", ".join(os.path.join(os.path.relpath(d, REPO), "compat-report.{json,md}") for d in out_dirs)
    )
    lock.close()
    return exit_code


def run_tests(
    args: argparse.Namespace,
    parts: list[str],
    modules: dict[str, list[str]],
    pollers: list[str],
    report: dict[str, typing.Any],
) -> list[dict[str, typing.Any]]:
    """Collect each part on real Tornado (what must run), then run every (part, poller, module) job."""
    jobs_at_once = max(1, args.jobs)
    runs: dict[str, tuple[Part, dict[str, str], dict[str, set[str]], dict[str, dict[str, str]]]] = {}
    for name in parts:
        if name == "core":
            excluded = load_exclusions(args.exclusions)
            reference = core_part(prepare_work_dir(args.work, "tornado"), "tornado")
            part = reference if args.impl == "tornado" else core_part(prepare_work_dir(args.work, "lite"), "lite")
        else:
            excluded = load_exclusions(args.http_exclusions)
            reference = http_part(prepare_in_place_dir(args.work, "tornado"), "tornado")
            part = reference if args.impl == "tornado" else http_part(prepare_in_place_dir(args.work, "lite"), "lite")
        expected, expected_excluded = expected_tests(reference, modules[name], excluded, jobs_at_once, args.k)
        if args.k:
            modules[name] = [m for m in modules[name] if expected[m]]
            report["parts"][name] = sorted(modules[name], key=lambda m, n=name: module_order(n, m))
        runs[name] = (part, excluded, expected, expected_excluded)
        how = "rewritten copies" if name == "core" else "in place, unmodified"
        if args.impl == "lite":
            how += ", under python -m tornado_lite -m pytest"
        print(
            f"compat [{name}]: {sum(map(len, expected.values()))} runnable tests of Tornado {report['tornado']} "
            f"in {len(modules[name])} modules ({len(excluded)} excluded), {how}; impl={args.impl}, "
            f"pollers={','.join(pollers)}"
        )
    for why in report["adaptations"] if "core" in parts else ():
        print(f"  adaptation (core part): {why}")
    deadline = time.monotonic() + args.budget
    # Longest modules first across both parts (the lists are in that order), both pollers of one
    # module next to each other: a slow module starts early and a partial run covers every module.
    order = [(p, m) for m in HTTP_TEST_MODULES[:5] for p in parts if m in modules[p]]
    order += [("core", m) for m in modules.get("core", ())]
    order += [("http", m) for m in modules.get("http", ()) if ("http", m) not in order]
    jobs = [(name, "main", poller, module) for name, module in order for poller in pollers]
    if bridge_stage_wanted(args):
        # Then the excluded tests, again: on tornado_lite with the asyncio bridge installed (issue 14),
        # on Tornado as they are (each must pass there, or its exclusion proves nothing).
        jobs += [
            (name, "bridge", poller, module) for name, module in order for poller in pollers if runs[name][3][module]
        ]

    def one(job: tuple[str, str, str, str]) -> dict[str, typing.Any]:
        name, stage, poller, module = job
        part, excluded, expected, expected_excluded = runs[name]
        wanted, left_out = expected[module], expected_excluded[module]
        if stage == "bridge":
            part, wanted, left_out = part.for_bridge(), set(left_out), {}
        limit = args.module_timeout or 30.0 + len(wanted)
        limit = min(limit, max(5.0, deadline - time.monotonic()))
        run = run_module_resuming(part, module, poller, excluded, args.test_timeout, limit, keyword=args.k)
        row = summarize(run, wanted, left_out)
        row["stage"] = stage
        check_core_implementation(row, args.impl)
        label = name if stage == "main" else f"{name}, excluded, " + ("bridge" if part.asyncio_bridge else "as is")
        print(
            f"  {label:<4} {module:<17} [{poller}] {row['passed']}/{row['collected'] - row['excluded']} passed, "
            f"{row['failed']} failed, {row['errors']} errors, {row['skipped']} skipped "
            f"({row['seconds']}s){'  ' + '; '.join(row['notes']) if row['notes'] else ''}",
            flush=True,
        )
        return row

    with concurrent.futures.ThreadPoolExecutor(jobs_at_once) as pool:
        rows = list(pool.map(one, jobs))

    def position(r: dict[str, typing.Any]) -> tuple[str, int, int, int]:
        return (r["stage"], PARTS.index(r["part"]), pollers.index(r["poller"]), module_order(r["part"], r["module"]))

    rows.sort(key=position)
    return rows


def bridge_stage_wanted(args: argparse.Namespace) -> bool:
    """--bridge auto: whenever this tornado_lite has the asyncio bridge (always for --impl tornado)."""
    if args.bridge != "auto":
        return args.bridge == "yes"
    if args.impl == "tornado":
        return True
    import importlib.util

    return importlib.util.find_spec("tornado_lite.platform.asyncio") is not None


if __name__ == "__main__":
    sys.exit(main())
