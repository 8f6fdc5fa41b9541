"""Several processes: forking workers that share listening sockets, and child programs watched by the loop.

``fork_processes`` turns one process into a parent that only supervises (restarting workers that die
abnormally) and N workers that each go on to run their own IOLoop.  ``Subprocess`` runs a program with
its pipes as ``PipeIOStream``s and reports its exit on the loop, through a SIGCHLD handler.

This layer must never fork a process that already has an IOLoop (the child would share the parent's
poller and waker), and its signal handler does nothing but hand the work to a loop: reaping happens
in an ordinary callback, never inside the handler.
"""

import os
import signal
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, cast

from tornado_lite.concurrent import (
    Future,
    future_set_exception_unless_cancelled,
    future_set_result_unless_cancelled,
)
from tornado_lite.ioloop import IOLoop
from tornado_lite.iostream import PipeIOStream
from tornado_lite.log import gen_log

__all__ = ["CalledProcessError", "Subprocess", "cpu_count", "fork_processes", "task_id"]

# The stdlib's error, so ``except subprocess.CalledProcessError`` catches ours.
CalledProcessError = subprocess.CalledProcessError


def cpu_count() -> int:
    """The number of processors on this machine (1 if it cannot be found out)."""
    count = os.cpu_count()
    if count:
        return count
    try:
        count = os.sysconf("SC_NPROCESSORS_CONF")
    except (AttributeError, ValueError, OSError):
        count = 0
    if count and count > 0:
        return count
    gen_log.error("Could not detect number of processors; assuming 1")
    return 1


def _reseed_random() -> None:
    # Workers forked from one parent would otherwise draw the same "random" numbers.
    if "random" not in sys.modules:
        return
    import random

    random.seed(int.from_bytes(os.urandom(16), "big"))


_task_id: Optional[int] = None


def fork_processes(num_processes: Optional[int], max_restarts: Optional[int] = None) -> int:
    """Forks ``num_processes`` workers (``None`` or <= 0: one per CPU) and returns in each its task id.

    Task ids run from 0 to ``num_processes - 1``.  The parent never returns: it waits for its
    workers, restarts with the same id any that exits with a non-zero status or is killed by a
    signal (at most ``max_restarts`` times in all, default 100, then ``RuntimeError``), and calls
    ``sys.exit(0)`` once every worker has exited with status 0.

    No IOLoop may exist in this thread before the call: each worker must make its own after it.
    """
    if sys.platform == "win32":
        raise Exception("fork not available on windows")
    if max_restarts is None:
        max_restarts = 100
    if _task_id is not None:
        raise RuntimeError("fork_processes() was called in a process it had already forked")
    if IOLoop.current(instance=False) is not None:
        raise RuntimeError(
            "Cannot run in multiple processes: an IOLoop has already been created. No IOLoop may be "
            "created or made current before fork_processes() (or TCPServer.start(n)); make it in each worker."
        )
    if num_processes is None or num_processes <= 0:
        num_processes = cpu_count()
    gen_log.info("Starting %d processes", num_processes)
    # Whatever sits in the parent's stdio buffers would otherwise be written once by every worker.
    _flush_stdio()
    children: Dict[int, int] = {}
    for i in range(num_processes):
        if _fork_worker(i, children):
            return i
    restarts = 0
    while children:
        pid, status = os.wait()
        if pid not in children:
            continue  # some other child of ours; not a worker
        worker = children.pop(pid)
        if not _worker_failed(worker, pid, status):
            continue
        restarts += 1
        if restarts > max_restarts:
            raise RuntimeError("Too many child restarts, giving up")
        if _fork_worker(worker, children):
            return worker
    # Every worker finished cleanly.  Exiting (rather than returning) keeps the parent from falling
    # through into the code meant for workers.
    sys.exit(0)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _fork_worker(worker: int, children: Dict[int, int]) -> bool:
    """Forks worker number ``worker``; True in the new worker, False in the parent."""
    pid = os.fork()
    if pid == 0:
        global _task_id
        _task_id = worker
        _reseed_random()
        return True
    children[pid] = worker
    return False


def _worker_failed(worker: int, pid: int, status: int) -> bool:
    if os.WIFSIGNALED(status):
        gen_log.warning("child %d (pid %d) killed by signal %d, restarting", worker, pid, os.WTERMSIG(status))
        return True
    code = os.WEXITSTATUS(status)
    if code != 0:
        gen_log.warning("child %d (pid %d) exited with status %d, restarting", worker, pid, code)
        return True
    gen_log.info("child %d (pid %d) exited normally", worker, pid)
    return False


def task_id() -> Optional[int]:
    """This worker's id from ``fork_processes``, or None in a process it did not fork."""
    return _task_id


class Subprocess:
    """``subprocess.Popen`` for the IOLoop: pipes as streams, and the exit reported on the loop.

    Takes Popen's arguments.  ``stdin``, ``stdout`` and ``stderr`` may be ``Subprocess.STREAM``,
    which makes that attribute a :class:`~tornado_lite.iostream.PipeIOStream` (the caller closes it).
    ``set_exit_callback`` and ``wait_for_exit`` learn of the exit through a SIGCHLD handler.
    """

    STREAM = object()

    _initialized = False
    _waiting: Dict[int, "Subprocess"] = {}
    _signal_loop: Optional[IOLoop] = None
    _previous_handler: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.io_loop = cast(IOLoop, IOLoop.current())
        # Our end of each STREAM pipe, by attribute name, and the child's ends (closed here once the
        # child has them).  Every fd made here is closed if Popen fails.
        ours: Dict[str, int] = {}
        theirs: List[int] = []
        try:
            for name, child_end_is_read in (("stdin", True), ("stdout", False), ("stderr", False)):
                if kwargs.get(name) is Subprocess.STREAM:
                    read_fd, write_fd = os.pipe()
                    child_fd, our_fd = (read_fd, write_fd) if child_end_is_read else (write_fd, read_fd)
                    ours[name] = our_fd
                    theirs.append(child_fd)
                    kwargs[name] = child_fd
            self.proc = subprocess.Popen(*args, **kwargs)
        except BaseException:
            for fd in list(ours.values()) + theirs:
                os.close(fd)
            raise
        for fd in theirs:
            os.close(fd)
        self.pid = self.proc.pid
        self.stdin: Any = PipeIOStream(ours["stdin"]) if "stdin" in ours else self.proc.stdin
        self.stdout: Any = PipeIOStream(ours["stdout"]) if "stdout" in ours else self.proc.stdout
        self.stderr: Any = PipeIOStream(ours["stderr"]) if "stderr" in ours else self.proc.stderr
        self._exit_callback: Optional[Callable[[int], None]] = None
        self.returncode: Optional[int] = None

    def set_exit_callback(self, callback: Callable[[int], None]) -> None:
        """Calls ``callback(returncode)`` on this object's IOLoop when the process exits.

        Installs the SIGCHLD handler (``Subprocess.initialize``) if it is not installed; with several
        IOLoops, call ``initialize`` first on the one that should handle the signal.
        """
        self._exit_callback = callback
        Subprocess.initialize()
        Subprocess._waiting[self.pid] = self
        # It may have exited before we started listening for SIGCHLD.
        Subprocess._try_cleanup_process(self.pid)

    def wait_for_exit(self, raise_error: bool = True) -> "Future[int]":
        """A Future for the exit status; with ``raise_error``, a non-zero status is a CalledProcessError."""
        future: Future[int] = Future()

        def on_exit(returncode: int) -> None:
            if returncode != 0 and raise_error:
                future_set_exception_unless_cancelled(future, CalledProcessError(returncode, self.proc.args))
            else:
                future_set_result_unless_cancelled(future, returncode)

        self.set_exit_callback(on_exit)
        return future

    @classmethod
    def initialize(cls) -> None:
        """Installs the SIGCHLD handler, which reaps exited children on the current IOLoop.

        Must be called from the main thread (Python runs signal handlers only there).  The loop
        chosen here runs the reaping; each Subprocess's callback still runs on its own loop.
        """
        if cls._initialized:
            return
        loop = cast(IOLoop, IOLoop.current())

        def on_sigchld(signum: int, frame: Any) -> None:
            # Signal context: only queue the work (this also wakes a loop blocked in poll).  The
            # private form does not warn: a warning turned into an error (-W error) would be raised
            # into whatever code the signal interrupted.
            loop._add_callback_from_signal(cls._cleanup)

        cls._previous_handler = signal.signal(signal.SIGCHLD, on_sigchld)
        cls._signal_loop = loop
        cls._initialized = True

    @classmethod
    def uninitialize(cls) -> None:
        """Removes the SIGCHLD handler, putting back the one that was there before."""
        if not cls._initialized:
            return
        previous = cls._previous_handler
        signal.signal(signal.SIGCHLD, previous if previous is not None else signal.SIG_DFL)
        cls._previous_handler = None
        cls._signal_loop = None
        cls._initialized = False

    @classmethod
    def _cleanup(cls) -> None:
        for pid in list(cls._waiting):
            cls._try_cleanup_process(pid)

    @classmethod
    def _try_cleanup_process(cls, pid: int) -> None:
        try:
            found, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if found == 0:
            return  # still running
        subproc = cls._waiting.pop(pid, None)
        if subproc is not None:
            subproc.io_loop.add_callback(subproc._set_returncode, status)

    def _set_returncode(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        # Popen must learn the status too: it reaped nothing itself and would otherwise warn (and
        # its poll()/wait() would look for a process that is gone).
        self.proc.returncode = self.returncode
        callback = self._exit_callback
        if callback is not None:
            self._exit_callback = None
            callback(self.returncode)
