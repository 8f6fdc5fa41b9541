"""pytest plugin for `make compat`, copied into each work directory and loaded with ``-p compat_conftest``.

It sits between pytest and Tornado's test modules and does five things, all driven by
environment variables that ``run_compat.py`` sets for each module it runs:

* deselects the tests listed in ``COMPAT_EXCLUDE`` (a JSON object ``{nodeid: reason}``), the
  placeholder tests of Tornado's abstract base test classes (Tornado's own runner hides those too),
  and the tests in ``COMPAT_DONE`` (a JSON list), which an earlier, killed attempt already ran;
* writes one JSON line per event to ``COMPAT_RESULTS``, flushed at once, so that the results of a
  run that is killed for hanging survive up to the test that hung;
* bounds every test in time (``COMPAT_TEST_TIMEOUT`` seconds) with a real-time interval timer, so
  one hung test fails by itself instead of taking its whole module with it;
* dumps the stacks of all threads into ``COMPAT_DUMP`` on SIGUSR1, which the runner sends before
  killing a module that overran its own time limit;
* records which module serves each loaded ``tornado.<core module>`` name, so that the runner can
  tell a run on tornado_lite from one that silently fell back to Tornado's own core.

It mirrors the logging set-up of Tornado's ``runtests.py`` (the access log is silenced), so that a
test behaves here as it does in Tornado's own runner.  It must never decide a test's outcome.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import sys
import time
import typing

import pytest

_ABSTRACT_WRAPPER = "AbstractBaseWrapper"  # class made by tornado.test.util.abstract_base_test

_results_file: typing.IO[str] | None = None
_dump_file: typing.IO[str] | None = None
_outcomes: dict[str, dict[str, typing.Any]] = {}


class CompatTestTimeout(BaseException):
    """Raised from the interval timer when one test overruns.

    A BaseException so that a test's own ``except Exception`` cannot swallow it.
    """


def _emit(**record: typing.Any) -> None:
    if _results_file is not None:
        _results_file.write(json.dumps(record) + "\n")
        _results_file.flush()


def pytest_configure(config: pytest.Config) -> None:
    global _results_file, _dump_file
    # Tornado's runtests.py does the same: the access log is noise, not a test failure.
    logging.getLogger("tornado.access").setLevel(logging.CRITICAL)
    path = os.environ.get("COMPAT_RESULTS")
    if path:
        _results_file = open(path, "a", encoding="utf-8")
    dump = os.environ.get("COMPAT_DUMP")
    if dump:
        _dump_file = open(dump, "w", encoding="utf-8")
        faulthandler.register(signal.SIGUSR1, file=_dump_file, all_threads=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _results_file is not None:
        _emit(event="session_end")
        _results_file.close()


def _excluded() -> dict[str, str]:
    path = os.environ.get("COMPAT_EXCLUDE")
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return typing.cast(dict[str, str], json.load(f))


def _done() -> set[str]:
    path = os.environ.get("COMPAT_DONE")
    if not path:
        return set()
    with open(path, encoding="utf-8") as f:
        return set(json.load(f))


def _is_abstract_placeholder(item: pytest.Item) -> bool:
    cls = getattr(item, "cls", None)
    return cls is not None and cls.__qualname__.endswith(_ABSTRACT_WRAPPER)


@pytest.hookimpl(trylast=True)  # after pytest's own -k / -m deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    excluded = _excluded()
    done = _done()
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if item.nodeid in done:  # already run by an earlier attempt at this module
            dropped.append(item)
        elif _is_abstract_placeholder(item):
            dropped.append(item)
            _emit(event="abstract", nodeid=item.nodeid)
        elif item.nodeid in excluded:
            dropped.append(item)
            _emit(event="excluded", nodeid=item.nodeid, reason=excluded[item.nodeid])
        else:
            keep.append(item)
            _emit(event="collected", nodeid=item.nodeid)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# Tornado's core modules: which implementation serves them in this process is what the run measures.
_CORE = "ioloop iostream tcpserver tcpclient netutil process concurrent gen locks queues testing util log options"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Record which module answers to each loaded ``tornado.<core>`` name (tornado_lite's after install())."""
    serving = {}
    for name in _CORE.split():
        module = sys.modules.get("tornado." + name)
        if module is not None:
            serving["tornado." + name] = module.__name__
    _emit(event="core_modules", serving=serving)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _emit(event="collect_error", nodeid=report.nodeid, message=_last_error_line(report))


def _on_alarm(signum: int, frame: typing.Any) -> None:
    raise CompatTestTimeout(f"test exceeded {os.environ.get('COMPAT_TEST_TIMEOUT')} s (compat per-test limit)")


_deadline = 0.0  # when the running test's time is up (time.monotonic()), 0 if unbounded


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> typing.Generator[None, None, None]:
    global _deadline
    _emit(event="start", nodeid=item.nodeid)
    limit = float(os.environ.get("COMPAT_TEST_TIMEOUT", "0") or 0)
    _deadline = time.monotonic() + limit if limit > 0 else 0.0
    try:
        yield
    finally:
        _deadline = 0.0
    outcome = _outcomes.pop(item.nodeid, None) or {"outcome": "error", "message": "no report"}
    _emit(event="result", nodeid=item.nodeid, **outcome)


def _bounded_phase() -> typing.Generator[None, None, None]:
    """Arm the timer for one phase (setup, call, teardown) with what is left of the test's time.

    Only the phases are bounded, not pytest's reporting around them: pytest turns an exception
    raised inside a phase into that test's failure, but one raised in its own hooks ends the session.
    """
    if not _deadline:
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    # Then again every second: a test may swallow the first exception and go on hanging.
    signal.setitimer(signal.ITIMER_REAL, max(0.001, _deadline - time.monotonic()), 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> typing.Generator[None, None, None]:
    yield from _bounded_phase()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> typing.Generator[None, None, None]:
    yield from _bounded_phase()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> typing.Generator[None, None, None]:
    yield from _bounded_phase()


def _last_error_line(report: typing.Any) -> str:
    """The most telling one-line summary of a failure, for grouping failures by cause."""
    longrepr = getattr(report, "longrepr", None)
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        text = str(crash.message).splitlines()[0]
        chain = getattr(longrepr, "chain", None) or ()
        first = chain[0][1] if len(chain) > 1 else None
        if text.startswith("pytest.") and first is not None and getattr(first, "message", None):
            # e.g. pytest's "Exception ignored in ..." wrapper: the cause is the interesting part.
            text += " <- " + str(first.message).splitlines()[0]
    else:
        text = str(getattr(report, "longreprtext", "") or report.longrepr or "")
        lines = [line for line in text.splitlines() if line.startswith("E ")]
        text = lines[-1][1:].strip() if lines else (text.strip().splitlines() or [""])[-1]
    return text.strip()[:400]


def _crash_location(report: typing.Any) -> str:
    """Where it went wrong: the last frame in the test module and the last one in tornado_lite after it.

    The innermost frame alone is often unittest's ``assertEqual``, which says nothing.
    """
    longrepr = getattr(report, "longrepr", None)
    chain = getattr(longrepr, "chain", None)
    traceback = chain[-1][0] if chain else getattr(longrepr, "reprtraceback", None)
    test_loc = lib_loc = ""
    for entry in getattr(traceback, "reprentries", None) or ():
        loc = getattr(entry, "reprfileloc", None)
        if loc is None:
            continue
        path = str(loc.path).replace(os.sep, "/")
        short = f"{os.path.basename(path)}:{loc.lineno}"
        if "/compat_tests/" in path or path.startswith("compat_tests/") or "/tornado/test/" in path:
            test_loc, lib_loc = short, ""
        elif "tornado_lite/" in path:
            lib_loc = "tornado_lite/" + path.split("tornado_lite/", 1)[1] + f":{loc.lineno}"
    if not test_loc and not lib_loc:
        crash = getattr(longrepr, "reprcrash", None)
        return f"{os.path.basename(str(crash.path))}:{crash.lineno}" if crash is not None else ""
    return " > ".join(x for x in (test_loc, lib_loc) if x)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Fold the setup / call / teardown (and subtest) reports of one test into one outcome."""
    current = _outcomes.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0})
    current["duration"] = round(current["duration"] + (report.duration or 0.0), 3)
    if report.skipped and current["outcome"] == "passed":
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        current.update(outcome="skipped", message=str(reason)[:300])
    elif report.failed and current["outcome"] not in ("failed", "error"):
        outcome = "failed" if report.when == "call" else "error"
        current.update(
            outcome=outcome,
            when=report.when,
            message=_last_error_line(report),
            where=_crash_location(report),
        )
