"""Tests for tornado_lite.process.

Everything that forks runs in a fresh interpreter (``proc_helpers.run_python``), in its own process
group, with alarms in parent and workers: the pytest process never forks, and nothing outlives a test.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from proc_helpers import run_python
from tornado_lite import gen
from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import PipeIOStream
from tornado_lite.process import CalledProcessError, Subprocess, cpu_count, task_id

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix only")

# Prepended to every forking script: logs to stderr, and a watchdog for the parent.
PRELUDE = textwrap.dedent(
    """
    import logging, os, signal, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    signal.alarm(30)
    from tornado_lite.process import fork_processes, task_id
    """
)


def script(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


# -- cpu_count / task_id ----------------------------------------------------------------------------


def test_cpu_count() -> None:
    assert cpu_count() == (os.cpu_count() or 1)
    assert cpu_count() >= 1


def test_task_id_is_none_outside_workers() -> None:
    assert task_id() is None


def test_called_process_error_is_the_stdlib_one() -> None:
    assert CalledProcessError is subprocess.CalledProcessError


# -- fork_processes ---------------------------------------------------------------------------------


def test_fork_processes_runs_workers_and_parent_exits_cleanly() -> None:
    result = run_python(
        script(
            """
            try:
                tid = fork_processes(3)
            except SystemExit as e:
                assert e.code == 0, e.code
                assert task_id() is None
                os.write(1, b"parent-exited ")
                raise
            signal.alarm(30)
            assert tid == task_id()
            os.write(1, b"worker-%d " % tid)
            """
        )
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert sorted(words) == ["parent-exited", "worker-0", "worker-1", "worker-2"]
    assert words[-1] == "parent-exited"  # only after every worker was done
    assert "Starting 3 processes" in result.stderr
    assert result.stderr.count("exited normally") == 3


def test_fork_processes_defaults_to_one_worker_per_cpu() -> None:
    result = run_python(
        script(
            """
            tid = fork_processes(None)
            signal.alarm(30)
            os.write(1, b"%d " % tid)
            """
        )
    )
    assert result.returncode == 0, result.stderr
    assert sorted(int(w) for w in result.stdout.split()) == list(range(cpu_count()))


def test_fork_processes_restarts_failed_workers_with_the_same_id(tmp_path) -> None:
    # Worker 0 dies by SIGKILL on its first run, worker 1 exits with status 3; both are restarted
    # under the same task id, then exit cleanly, and the parent exits 0.
    result = run_python(
        script(
            """
            tid = fork_processes(2, max_restarts=5)
            signal.alarm(30)
            marker = os.path.join(sys.argv[1], "ran-%d" % tid)
            first = not os.path.exists(marker)
            open(marker, "a").close()
            os.write(1, b"%d%s " % (tid, b"first" if first else b"again"))
            if first and tid == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            if first and tid == 1:
                os._exit(3)
            """
        ),
        args=[str(tmp_path)],
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["0again", "0first", "1again", "1first"]
    assert "child 0 (pid" in result.stderr and "killed by signal %d, restarting" % signal.SIGKILL in result.stderr
    assert "child 1 (pid" in result.stderr and "exited with status 3, restarting" in result.stderr


def test_fork_processes_gives_up_after_max_restarts(tmp_path) -> None:
    result = run_python(
        script(
            """
            try:
                tid = fork_processes(1, max_restarts=2)
            except RuntimeError as e:
                print("parent gave up:", e)
                sys.exit(0)
            signal.alarm(30)
            with open(os.path.join(sys.argv[1], "runs"), "a") as f:
                f.write("x")
            os._exit(1)
            """
        ),
        args=[str(tmp_path)],
    )
    assert result.returncode == 0, result.stderr
    assert "parent gave up: Too many child restarts, giving up" in result.stdout
    assert (tmp_path / "runs").read_text() == "xxx"  # the first run and two restarts


def test_fork_processes_refuses_when_an_ioloop_exists() -> None:
    result = run_python(
        script(
            """
            from tornado_lite.ioloop import IOLoop
            IOLoop.current()
            pid = os.getpid()
            try:
                fork_processes(2)
            except RuntimeError as e:
                assert os.getpid() == pid
                print("refused:", e)
            """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("refused:") == 1  # raised before any fork
    assert "IOLoop" in result.stdout
    assert "Starting" not in result.stderr


def test_fork_processes_refuses_inside_a_worker() -> None:
    result = run_python(
        script(
            """
            tid = fork_processes(1)
            signal.alarm(30)
            try:
                fork_processes(1)
            except RuntimeError:
                os.write(1, b"refused-in-worker")
            """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "refused-in-worker"


def test_fork_processes_does_not_duplicate_buffered_output() -> None:
    result = run_python(
        script(
            """
            sys.stdout = open(sys.stdout.fileno(), "w", buffering=8192, closefd=False)  # block-buffered
            sys.stdout.write("written-before-fork\\n")
            tid = fork_processes(2)
            signal.alarm(30)
            """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("written-before-fork") == 1


def test_workers_share_a_listening_socket_made_before_fork() -> None:
    result = run_python(
        script(
            """
            import socket
            from tornado_lite.netutil import bind_sockets
            [sock] = bind_sockets(0, "127.0.0.1")
            port = sock.getsockname()[1]
            tid = fork_processes(2)
            signal.alarm(30)
            if tid == 0:
                sock.settimeout(20)
                sock.setblocking(True)
                conn, _ = sock.accept()
                conn.sendall(b"from worker 0")
                conn.close()
            else:
                sock.close()
                with socket.create_connection(("127.0.0.1", port), timeout=20) as c:
                    os.write(1, c.recv(100))
            """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from worker 0"


# -- Subprocess -------------------------------------------------------------------------------------


@pytest.fixture
def io_loop():
    loop = IOLoop()
    loop.make_current()
    yield loop
    Subprocess.uninitialize()
    loop.close(all_fds=True)
    IOLoop.clear_current()


def _reap(subproc: Subprocess) -> None:
    """Makes sure the child is gone (for tests that fail half-way)."""
    if subproc.returncode is None and subproc.proc.poll() is None:
        subproc.proc.kill()
        subproc.proc.wait(10)


def test_subprocess_interactive_pipes(io_loop) -> None:
    subproc = Subprocess(
        [sys.executable, "-u", "-i", "-I"],
        stdin=Subprocess.STREAM,
        stdout=Subprocess.STREAM,
        stderr=subprocess.STDOUT,
    )
    assert isinstance(subproc.stdin, PipeIOStream) and isinstance(subproc.stdout, PipeIOStream)

    async def talk() -> bytes:
        await subproc.stdout.read_until(b">>> ")
        await subproc.stdin.write(b"print('hello')\n")
        line = await subproc.stdout.read_until(b"\n")
        await subproc.stdout.read_until(b">>> ")
        await subproc.stdin.write(b"raise SystemExit\n")
        rest = await subproc.stdout.read_until_close()
        return line + b"|" + rest

    try:
        assert io_loop.run_sync(talk, timeout=30) == b"hello\n|"
    finally:
        subproc.stdin.close()
        subproc.stdout.close()
        _reap(subproc)


def test_subprocess_close_stdin_is_seen_by_the_child(io_loop) -> None:
    subproc = Subprocess(
        [sys.executable, "-c", "import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data[::-1])"],
        stdin=Subprocess.STREAM,
        stdout=Subprocess.STREAM,
    )

    async def talk() -> bytes:
        await subproc.stdin.write(b"abc" * 50000)  # more than a pipe buffer holds
        subproc.stdin.close()
        return await subproc.stdout.read_until_close()

    try:
        assert io_loop.run_sync(talk, timeout=30) == b"cba" * 50000
    finally:
        subproc.stdout.close()
        _reap(subproc)


def test_subprocess_stderr_stream(io_loop) -> None:
    subproc = Subprocess(
        [sys.executable, "-u", "-c", r"import sys; sys.stderr.write('hello\n')"], stderr=Subprocess.STREAM
    )
    assert subproc.stdout is None and subproc.stdin is None
    try:
        assert io_loop.run_sync(lambda: subproc.stderr.read_until(b"\n"), timeout=30) == b"hello\n"
    finally:
        subproc.stderr.close()
        _reap(subproc)


def test_subprocess_plain_pipes_stay_popen_files(io_loop) -> None:
    subproc = Subprocess([sys.executable, "-c", "print('x')"], stdout=subprocess.PIPE)
    try:
        assert subproc.stdout is subproc.proc.stdout
        assert subproc.stdout.read() == b"x\n"
        assert io_loop.run_sync(subproc.wait_for_exit, timeout=30) == 0
    finally:
        subproc.stdout.close()
        _reap(subproc)


def test_subprocess_exit_callback(io_loop) -> None:
    Subprocess.initialize()
    subproc = Subprocess([sys.executable, "-c", "pass"])
    from tornado_lite.concurrent import Future

    done: Future = Future()
    subproc.set_exit_callback(done.set_result)
    ret = io_loop.run_sync(lambda: done, timeout=30)
    assert ret == 0
    assert subproc.returncode == 0
    assert subproc.proc.returncode == 0  # Popen was told, so it will not wait for the child itself
    assert subproc.pid == subproc.proc.pid


def test_subprocess_exit_callback_after_the_child_already_exited(io_loop) -> None:
    subproc = Subprocess([sys.executable, "-c", "import sys; sys.exit(7)"], stdout=Subprocess.STREAM)
    try:
        # The child has closed its stdout, so it has finished (or nearly): the callback comes either way.
        io_loop.run_sync(subproc.stdout.read_until_close, timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _is_zombie(subproc.pid):
            time.sleep(0.01)
        assert io_loop.run_sync(lambda: subproc.wait_for_exit(raise_error=False), timeout=30) == 7
    finally:
        subproc.stdout.close()


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_subprocess_killed_by_signal(io_loop) -> None:
    Subprocess.initialize()
    subproc = Subprocess(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"], stdout=Subprocess.STREAM
    )

    async def kill_and_wait() -> int:
        await subproc.stdout.read_until(b"up\n")
        os.kill(subproc.pid, signal.SIGTERM)
        return await subproc.wait_for_exit(raise_error=False)

    try:
        assert io_loop.run_sync(kill_and_wait, timeout=30) == -signal.SIGTERM
        assert subproc.returncode == -signal.SIGTERM
    finally:
        subproc.stdout.close()
        _reap(subproc)


def test_wait_for_exit_raises_on_failure(io_loop) -> None:
    Subprocess.initialize()
    args = [sys.executable, "-c", "import sys; sys.exit(1)"]
    subproc = Subprocess(args)
    with pytest.raises(CalledProcessError) as info:
        io_loop.run_sync(subproc.wait_for_exit, timeout=30)
    assert info.value.returncode == 1
    assert info.value.cmd == args


def test_wait_for_exit_without_raising(io_loop) -> None:
    Subprocess.initialize()
    subproc = Subprocess([sys.executable, "-c", "import sys; sys.exit(1)"])
    assert io_loop.run_sync(lambda: subproc.wait_for_exit(raise_error=False), timeout=30) == 1


def test_many_subprocesses_exit_together(io_loop) -> None:
    Subprocess.initialize()
    procs = [Subprocess([sys.executable, "-c", f"import sys; sys.exit({i})"]) for i in range(6)]

    async def wait_all() -> list:
        return await gen.multi([p.wait_for_exit(raise_error=False) for p in procs])

    assert io_loop.run_sync(wait_all, timeout=60) == list(range(6))
    assert Subprocess._waiting == {}


def test_subprocess_leaves_unrelated_children_alone(io_loop) -> None:
    # The SIGCHLD handler reaps only the processes it was asked about: a plain Popen keeps its status.
    Subprocess.initialize()
    plain = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(5)"])
    watched = Subprocess([sys.executable, "-c", "import time; time.sleep(0.3)"])
    assert io_loop.run_sync(watched.wait_for_exit, timeout=30) == 0
    assert plain.wait(30) == 5


def test_popen_failure_closes_the_pipes(io_loop) -> None:
    fd_dir = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    before = len(os.listdir(fd_dir))
    with pytest.raises(FileNotFoundError):
        Subprocess(
            ["/nonexistent/program"], stdin=Subprocess.STREAM, stdout=Subprocess.STREAM, stderr=Subprocess.STREAM
        )
    assert len(os.listdir(fd_dir)) == before


def test_initialize_and_uninitialize_restore_the_previous_handler(io_loop) -> None:
    seen: list = []

    def mine(signum: int, frame: object) -> None:
        seen.append(signum)

    original = signal.signal(signal.SIGCHLD, mine)
    try:
        Subprocess.initialize()
        assert signal.getsignal(signal.SIGCHLD) is not mine
        Subprocess.initialize()  # idempotent
        Subprocess.uninitialize()
        assert signal.getsignal(signal.SIGCHLD) is mine
        Subprocess.uninitialize()  # idempotent
        assert signal.getsignal(signal.SIGCHLD) is mine
    finally:
        signal.signal(signal.SIGCHLD, original)
