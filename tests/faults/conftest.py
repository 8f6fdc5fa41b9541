"""Shared helpers for the reliability (fault) suite: real sockets on 127.0.0.1, bounded, both pollers.

Scenarios that need their own resource limits or that fork run a server in a child interpreter
(``fault_server.py``) started with ``proc_helpers.ServerProcess``; the rest run the loop in a thread of
the test process (``LoopThread``) and play the client from the test thread with plain sockets.
"""

import concurrent.futures
import os
import sys
import threading
from typing import Any, Callable, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)  # for proc_helpers, shared with the rest of the suite

from tornado_lite import gen  # noqa: E402
from tornado_lite.ioloop import IOLoop  # noqa: E402

FAULT_SERVER = os.path.join(HERE, "fault_server.py")


def fd_count(pid: Optional[int] = None) -> int:
    """How many descriptors process ``pid`` (default: this one) has open right now."""
    return len(os.listdir(f"/proc/{pid or 'self'}/fd"))


def fd_targets(pid: Optional[int] = None) -> dict:
    """``{fd: what it points at}`` for process ``pid`` (``socket:[...]``, ``anon_inode:[eventpoll]``...)."""
    base = f"/proc/{pid or 'self'}/fd"
    found = {}
    for name in os.listdir(base):
        try:
            found[int(name)] = os.readlink(os.path.join(base, name))
        except OSError:
            pass  # closed between listdir and readlink
    return found


class LoopThread:
    """An IOLoop running on its own thread; ``call(fn)`` runs ``fn`` there and returns its result.

    ``fn`` may return an awaitable, which is awaited on the loop.  Lets a test play a blocking client
    on the test thread against a server on the loop, with nothing mocked.
    """

    def __init__(self) -> None:
        self.loop: Optional[IOLoop] = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fault-loop", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("loop thread did not start")

    def _run(self, ready: threading.Event) -> None:
        self.loop = IOLoop(make_current=True)
        self.loop.add_callback(ready.set)
        self.loop.start()
        self.loop.close(all_fds=True)

    def call(self, fn: Callable[[], Any], timeout: float = 30) -> Any:
        assert self.loop is not None
        result: "concurrent.futures.Future[Any]" = concurrent.futures.Future()

        async def runner() -> None:
            try:
                value = fn()
                if value is not None and hasattr(value, "__await__"):
                    value = await gen.convert_yielded(value)
                elif value is not None and hasattr(value, "add_done_callback") and hasattr(value, "result"):
                    value = await value
            except BaseException as e:  # handed to the test thread, re-raised there
                result.set_exception(e)
            else:
                result.set_result(value)

        self.loop.add_callback(runner)
        return result.result(timeout)

    def stats(self) -> Any:
        assert self.loop is not None
        return self.call(self.loop.stats)

    def stop(self) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.add_callback(self.loop.stop)
            self._thread.join(30)
        assert not self._thread.is_alive(), "loop thread did not stop"


@pytest.fixture
def loop_thread():
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.stop()
