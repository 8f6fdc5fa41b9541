#!/usr/bin/env python3
"""CPython's own asyncio tests (``test.test_asyncio``) on tornado_lite's loop, through the asyncio bridge.

Usage::

    python tests/compat/run_asyncio_compat.py [--modules locks,queues,...] [--report FILE] [--timeout S]

Each module runs in its own interpreter that has called ``tornado_lite.platform.asyncio.install()``, so
every test that makes its loop through asyncio's policy (``asyncio.run``, ``asyncio.Runner``,
``IsolatedAsyncioTestCase``, ``asyncio.new_event_loop()``) runs on ``TornadoLiteEventLoop``.  The tests
put asyncio's default policy back in their teardowns (``set_event_loop_policy(None)``); in these
interpreters "the default" is tornado_lite's policy again, so later tests stay on our loop.  Tests that
build a loop class of their own (``test_utils.TestLoop``, ``SelectorEventLoop``) do not exercise our loop;
the report says how many loops of ours each module created.

Some Python builds leave ``test.test_asyncio`` out (Debian ships it in ``libpython3.X-testsuite``); the
script then says so and exits 0 without running anything.  The test modules cannot be fetched from
elsewhere (they are not on PyPI).

Output: one line per module (ran / passed / failed / errors / skipped / loops of ours), then each failing
test with the last line of its error; ``--report`` also writes that as Markdown.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

# The parts of asyncio the bridge's loop provides (issue 14): tasks, locks, queues, timeouts, wait_for,
# task groups, runners, futures, threads (to_thread), context; events exercises the loop API itself.
DEFAULT_MODULES = [
    "locks", "queues", "timeouts", "waitfor", "taskgroups", "runners", "tasks", "futures", "futures2",
    "threads", "context", "pep492", "events",
]

BOOTSTRAP = r"""
import asyncio, json, sys, unittest
from tornado_lite.platform import asyncio as bridge

bridge.install()
ours = [0]
_made = bridge.TornadoLiteEventLoop.__init__

def counting_init(self, *args, **kwargs):
    ours[0] += 1
    _made(self, *args, **kwargs)

bridge.TornadoLiteEventLoop.__init__ = counting_init
_set_policy = asyncio.set_event_loop_policy

def set_policy(policy):
    # "Back to the default" means back to tornado_lite's policy in this interpreter.
    _set_policy(bridge.TornadoLiteEventLoopPolicy() if policy is None else policy)

asyncio.set_event_loop_policy = set_policy
asyncio.events.set_event_loop_policy = set_policy

module = __import__("test.test_asyncio.test_" + sys.argv[1], fromlist=["*"])
if sys.argv[1] == "events":
    # The module's loop-API tests run on asyncio's own loop classes (EPoll/Poll/Select...EventLoopTests):
    # run the same mixin on ours instead.
    from test.test_asyncio import utils as test_utils

    class TornadoLiteEventLoopTests(module.EventLoopTestsMixin, test_utils.TestCase):
        def create_event_loop(self):
            return bridge.TornadoLiteEventLoop()

    for name in list(vars(module)):
        if name.endswith("EventLoopTests") and name != "AbstractEventLoopTests":
            delattr(module, name)
    module.TornadoLiteEventLoopTests = TornadoLiteEventLoopTests
suite = unittest.defaultTestLoader.loadTestsFromModule(module)


class Result(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1


runner = unittest.TextTestRunner(stream=open("/dev/null", "w"), resultclass=Result, verbosity=0)
result = runner.run(suite)
report = {"ran": result.testsRun, "passed": result.passed, "skipped": len(result.skipped), "ours": ours[0]}
report["failed"] = [[t.id(), tb.strip().splitlines()[-1][:300]] for t, tb in result.failures]
report["errors"] = [[t.id(), tb.strip().splitlines()[-1][:300]] for t, tb in result.errors]
report["unexpected_successes"] = [t.id() for t in result.unexpectedSuccesses]
sys.stdout.flush()
print("\nRESULT " + json.dumps(report))
"""


def testsuite_available() -> bool:
    try:
        import test.test_asyncio  # noqa: F401
    except ImportError:
        return False
    return True


def run_module(name: str, timeout: float) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", BOOTSTRAP, name],
            capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env,
        )
    except subprocess.TimeoutExpired:
        return {"name": name, "error": f"timed out after {timeout:.0f} s", "seconds": timeout}
    seconds = time.monotonic() - started
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            report = json.loads(line[len("RESULT "):])
            report.update(name=name, seconds=seconds)
            return report
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"name": name, "error": f"exit {proc.returncode}: " + " | ".join(tail), "seconds": seconds}


def summary_lines(reports: list) -> list:
    lines = [
        "| module | ran | passed | failed | errors | skipped | our loops | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    totals = [0, 0, 0, 0, 0]
    for r in reports:
        if "error" in r:
            lines.append(f"| test_{r['name']} | - | - | - | - | - | - | {r['seconds']:.0f} ({r['error']}) |")
            continue
        row = [r["ran"], r["passed"], len(r["failed"]), len(r["errors"]), r["skipped"]]
        totals = [a + b for a, b in zip(totals, row)]
        lines.append(f"| test_{r['name']} | " + " | ".join(map(str, row)) + f" | {r['ours']} | {r['seconds']:.0f} |")
    lines.append("| **total** | " + " | ".join(map(str, totals)) + " | | |")
    return lines


# Why a test cannot pass on TornadoLiteEventLoop, by the error it ends with.  Anything not matched here is
# reported as it is: a bug of the bridge until explained.
KNOWN_REASONS = [
    ("is not provided by tornado_lite's asyncio loop",
     "by design: asyncio transports/servers/pipes are not provided (docs/differences.md section 1)"),
    ("object has no attribute '_run_once'",
     "the test drives asyncio.BaseEventLoop's private _run_once, which another loop does not have"),
    ("object has no attribute '_stop_serving'",
     "the test calls asyncio.BaseSelectorEventLoop's private _stop_serving"),
]


def explain(reason: str) -> str:
    for needle, why in KNOWN_REASONS:
        if needle in reason:
            return why
    return "UNEXPLAINED: " + reason


def failure_lines(reports: list) -> list:
    by_reason: dict = {}
    for r in reports:
        for kind in ("failed", "errors"):
            for test_id, reason in r.get(kind, []):
                by_reason.setdefault(explain(reason), []).append(test_id.split(".")[-1])
    return [
        f"- {len(tests)} x {why}: " + ", ".join(f"`{t}`" for t in sorted(tests)) for why, tests in by_reason.items()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default=",".join(DEFAULT_MODULES), help="comma-separated, without test_")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per module")
    parser.add_argument("--report", help="also write the results as Markdown to this file")
    args = parser.parse_args()
    if not testsuite_available():
        print(
            f"run_asyncio_compat: this Python ({sys.version.split()[0]}) has no test.test_asyncio (distributions "
            "ship it separately, e.g. Debian's libpython3.X-testsuite); nothing run."
        )
        return 0
    reports = []
    for name in [m.strip() for m in args.modules.split(",") if m.strip()]:
        report = run_module(name, args.timeout)
        reports.append(report)
        print(summary_lines([report])[2], flush=True)
    text = "\n".join(summary_lines(reports) + ["", "Failures and errors:", ""] + (failure_lines(reports) or ["none"]))
    print()
    print(text)
    if args.report:
        Path(args.report).write_text(
            f"# CPython {sys.version.split()[0]} test.test_asyncio on TornadoLiteEventLoop\n\n" + text + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
