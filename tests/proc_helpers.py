"""Running Python scripts that fork, from tests, without the test process ever forking with a loop.

Each script runs in its own session (process group) so that, whatever happens, everything it forked
can be killed through the group id of the process we started.  Nothing else is ever signalled.
"""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from typing import List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def kill_group(pgid: int) -> None:
    """SIGKILLs what is left of the process group we created with ``start_new_session``."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_python(code: str, args: Sequence[str] = (), timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs ``python -c code args...`` to completion (bounded by ``timeout``); returns its output."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=_env(),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(f"script timed out after {timeout}s\n--- stdout\n{out}\n--- stderr\n{err}")
    finally:
        kill_group(proc.pid)  # workers that outlived their parent
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class ServerProcess:
    """A long-running script whose stdout lines are read on a thread and matched with ``expect``."""

    def __init__(self, argv: List[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=_env(),
        )
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.seen: List[str] = []
        self.stderr_lines: List[str] = []
        self.threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._collect_stderr, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _pump(stream, lines) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def _collect_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def expect(self, pattern: str, timeout: float = 30) -> "re.Match[str]":
        """Waits for the next stdout line matching ``pattern`` (others are kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r}; seen {self.seen}; stderr {self.stderr()}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process ended before {pattern!r}; seen {self.seen}; stderr {self.stderr()}")
            self.seen.append(line)
            match = regex.search(line)
            if match:
                return match

    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def signal_member(self, pid: int, sig: int) -> None:
        """Sends ``sig`` to ``pid`` only if it is still a member of this script's process group."""
        try:
            if os.getpgid(pid) != self.proc.pid:
                raise AssertionError(f"pid {pid} is not one of ours")
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """Ends the script and everything it forked (its process group, which we created)."""
        kill_group(self.proc.pid)
        try:
            self.proc.wait(timeout=10)
        finally:
            # Every writer is gone, so the readers see end-of-file and finish.
            for thread in self.threads:
                thread.join(10)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except Exception:
                        pass
