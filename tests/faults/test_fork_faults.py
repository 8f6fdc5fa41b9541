"""Forking and child processes: the loop's own descriptors never reach another process.

* ``fork_processes`` (and ``TCPServer.start(n)``) in a process that already has an IOLoop refuses
  with ``RuntimeError`` before forking anything: the workers would share the parent's poller and
  waker.  That runs in a child interpreter (the test process never forks with a loop).
* The loop's poller and waker (eventfd, or the pipe fallback), listening and accepted sockets, and
  the parent's ends of a ``Subprocess``'s pipes are close-on-exec: a program started even with
  ``close_fds=False`` does not get them.
"""

import fcntl
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import fd_targets
from proc_helpers import run_python
from tornado_lite import process
from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import IOStream
from tornado_lite.netutil import bind_sockets

REFUSE_SCRIPT = r"""
import os, sys
from tornado_lite import process
from tornado_lite.ioloop import IOLoop
from tornado_lite.tcpserver import TCPServer

how = sys.argv[1]
if how == "constructed":
    loop = IOLoop()
elif how == "current":
    IOLoop.current()  # creates one implicitly, as Tornado code often does at import time
for attempt in ("fork_processes", "TCPServer.start"):
    try:
        if attempt == "fork_processes":
            process.fork_processes(2)
        else:
            server = TCPServer()
            server.bind(0, "127.0.0.1")
            server.start(2)
    except RuntimeError as e:
        print("REFUSED", attempt, e, flush=True)
    else:
        print("FORKED", attempt, os.getpid(), flush=True)
        os._exit(0)
try:
    os.waitpid(-1, os.WNOHANG)
    print("HAS-CHILDREN", flush=True)
except ChildProcessError:
    print("NO-CHILDREN", flush=True)
"""


@pytest.mark.parametrize("how", ["constructed", "current"])
def test_forking_after_an_ioloop_exists_fails_loudly_and_forks_nothing(how):
    result = run_python(REFUSE_SCRIPT, [how], timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout + result.stderr
    for line, attempt in zip(lines, ("fork_processes", "TCPServer.start")):
        assert line.startswith(f"REFUSED {attempt} "), line
        assert "IOLoop" in line
    assert lines[2] == "NO-CHILDREN"


CHILD_FDS = r"""
import json, os
found = {}
for name in os.listdir("/proc/self/fd"):
    try:
        found[name] = os.readlink("/proc/self/fd/" + name)
    except OSError:
        pass
print(json.dumps(found))
"""


def fds_of_an_execed_child():
    """``{fd: target}`` as seen by a program started with every inheritable descriptor passed on."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD_FDS], close_fds=False, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return {int(fd): target for fd, target in json.loads(out).items()}


def assert_private(fds, child):
    for fd, target in fds.items():
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC, (fd, target)
        assert not os.get_inheritable(fd), (fd, target)
        # The child may reuse a number for its own files, but never holds the same open file.
        assert child.get(fd) != target, (fd, target)
        if target.startswith(("pipe:", "socket:")):
            assert target not in child.values(), (fd, target)


@pytest.mark.parametrize("waker", ["default-waker", "pipe-waker"])
def test_the_loops_own_descriptors_are_close_on_exec(waker, monkeypatch):
    if waker == "pipe-waker":
        monkeypatch.delattr(os, "eventfd", raising=False)
    before = fd_targets()
    loop = IOLoop(make_current=False)
    try:
        internal = {fd: t for fd, t in fd_targets().items() if fd not in before}
        # The waker always; the poller too unless it is the fd-less selectors fallback.
        assert len(internal) >= (2 if waker == "pipe-waker" else 1), internal
        assert_private(internal, fds_of_an_execed_child())
    finally:
        loop.close(all_fds=True)


def test_sockets_and_subprocess_pipes_are_close_on_exec():
    before = fd_targets()
    loop = IOLoop(make_current=False)
    try:

        async def main():
            listeners = bind_sockets(0, "127.0.0.1")
            port = listeners[0].getsockname()[1]
            client = IOStream(socket.socket())
            await client.connect(("127.0.0.1", port))
            accepted, _ = listeners[0].accept()
            child = process.Subprocess(
                [sys.executable, "-c", "import sys; sys.stdin.read()"],
                stdin=process.Subprocess.STREAM,
                stdout=process.Subprocess.STREAM,
            )
            opened = {fd: t for fd, t in fd_targets().items() if fd not in before}
            try:
                # listening, connected and accepted sockets, the loop's fds, our ends of the pipes
                assert sum(t.startswith("socket:") for t in opened.values()) >= 3, opened
                assert sum(t.startswith("pipe:") for t in opened.values()) >= 2, opened
                assert_private(opened, fds_of_an_execed_child())
            finally:
                child.stdin.close()
                await child.wait_for_exit(raise_error=False)
                child.stdout.close()
                client.close()
                accepted.close()
                for sock in listeners:
                    sock.close()

        loop.run_sync(main, timeout=60)
    finally:
        loop.close(all_fds=True)
        process.Subprocess.uninitialize()
