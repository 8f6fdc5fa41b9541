"""Shared helpers for the reliability (fault) suite: real sockets on 127.0.0.1, bounded, both pollers.

Scenarios that need their own resource limits or that fork run a server in a child interpreter
(``fault_server.py``) started with ``proc_helpers.ServerProcess``; the rest run the loop in a thread of
the test process (``LoopThread``) and play the client from the test thread with plain sockets.
"""

import concurrent.futures
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from typing import Any, Callable, List, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)  # for proc_helpers, shared with the rest of the suite

from proc_helpers import _env, kill_group  # noqa: E402
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


class FaultServer:
    """``fault_server.py`` in a child interpreter (own session), driven through its stdin/stdout.

    ``stats()`` returns the child's counters; ``log(pattern)`` the stderr lines matching so far.
    ``close()`` asks it to quit and kills its process group if it does not.
    """

    def __init__(self, *args: str, start_timeout: float = 30) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, FAULT_SERVER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=_env(),
        )
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.stderr_lines: List[str] = []
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        try:
            self.port = int(self.expect(r"^PORT (\d+)$", start_timeout).group(1))
        except BaseException:
            self.close()
            raise

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, pattern: str, timeout: float = 30) -> "re.Match[str]":
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"server printed no line matching {pattern!r}; stderr:\n{self.stderr()}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"server exited before {pattern!r}; stderr:\n{self.stderr()}")
            match = regex.search(line)
            if match:
                return match

    def command(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stats(self, timeout: float = 30) -> dict:
        self.command("stats")
        return json.loads(self.expect(r"^STATS (.*)$", timeout).group(1))

    def log(self, pattern: str) -> List[str]:
        regex = re.compile(pattern)
        return [line for line in list(self.stderr_lines) if regex.search(line)]

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 30) -> List[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.log(pattern)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} log line(s) matching {pattern!r} expected; stderr:\n{self.stderr()}")
            time.sleep(0.02)

    def stderr(self) -> str:
        return "\n".join(self.stderr_lines[-200:])

    def close(self) -> int:
        """Asks the server to quit; returns its exit status (killed if it would not go)."""
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.command("quit")
                self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            status = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            status = -9
        kill_group(self.proc.pid)
        self.proc.wait(timeout=10)
        for thread in self._threads:
            thread.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return status


# -- part A (stream and server faults): a fresh loop per test, connected TCP pairs, resets --------

HAS_IPV6 = False
try:
    import socket as _socket

    with _socket.socket(_socket.AF_INET6, _socket.SOCK_STREAM) as _probe:
        _probe.bind(("::1", 0))
    HAS_IPV6 = True
except OSError:
    pass

# The address families a scenario runs over: IPv4 always, IPv6 where the machine has ::1.
FAMILIES = ["127.0.0.1"] + (["::1"] if HAS_IPV6 else [])


@pytest.fixture
def io_loop():
    """A fresh IOLoop, current for the test; closed (with every fd still registered) afterwards."""
    loop = IOLoop(make_current=True)
    try:
        yield loop
    finally:
        loop.close(all_fds=True)
        IOLoop.clear_current()


def tcp_pair(host: str = "127.0.0.1", rcvbuf: Optional[int] = None, sndbuf: Optional[int] = None) -> tuple:
    """A connected pair ``(server_side, client_side)`` of blocking TCP sockets on ``host``.

    ``rcvbuf`` shrinks the client's receive buffer and ``sndbuf`` the server's send buffer (set before
    connecting, so the window is small from the start), to make a stalled peer stall quickly.
    """
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen(1)
        client = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        client.connect(listener.getsockname()[:2])
        server, _ = listener.accept()
    if sndbuf:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return server, client


def reset_close(sock: Any) -> None:
    """Closes ``sock`` with SO_LINGER 0, so the peer gets a RST rather than a FIN."""
    import socket
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def wait_until(predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    """Lets the loop run until ``predicate()`` is true (bounded by ``timeout``); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await gen.sleep(0.002)
