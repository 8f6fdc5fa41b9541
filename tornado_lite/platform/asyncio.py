"""The opt-in asyncio bridge: asyncio code runs on tornado_lite's own loop (one loop, one poller, one thread).

``install()`` makes asyncio's event loop policy hand out ``TornadoLiteEventLoop``: an
``asyncio.AbstractEventLoop`` whose every callback, timer and fd wait is an ``IOLoop`` callback, timer or
fd handler.  ``asyncio.run()``, ``asyncio.Runner`` and ``unittest.IsolatedAsyncioTestCase`` then run on
tornado_lite's loop, and inside them ``IOLoop.current()`` is that loop.  Each bridged asyncio loop has
exactly one ``IOLoop`` and the other way round (``BaseAsyncIOLoop.asyncio_loop``).

Both kinds of awaitable work everywhere.  asyncio code keeps asyncio's own objects (``create_task``
gives a real ``asyncio.Task``, ``create_future`` an ``asyncio.Future``, driven by ``call_soon``), and
tornado_lite code keeps its own; each awaits the other's:

- an asyncio Task awaits a tornado_lite ``Future`` (streams, ``gen.sleep``, locks) through the
  ``_asyncio_future_blocking`` / ``get_loop()`` protocol that ``concurrent.Future`` speaks;
- a tornado_lite coroutine awaits an asyncio future or task through ``gen.convert_yielded``, for which
  this module registers ``asyncio.Future``; cancelling either side cancels the other.

Once installed, a cancelled tornado_lite future raises ``CancelledError`` of this module, a subclass of
both ``asyncio.CancelledError`` and ``concurrent.futures.CancelledError``: either ``except`` catches it.
``asyncio.current_task()`` also reports the tornado_lite task whose step runs (so ``asyncio.timeout`` and
``asyncio.TaskGroup`` work inside tornado_lite coroutines).

What this module must never do: be imported by the core (``check_layers.py`` enforces it), or add work
to the core's hot path.  A program that does not install the bridge creates no asyncio object at all.
asyncio's transports and servers (``create_connection``, ``create_server``, ``open_connection``,
``start_server``, subprocesses, datagrams, pipes) are not provided: they raise ``NotImplementedError``
naming the tornado_lite equivalent (``TCPClient``, ``TCPServer``, ``process.Subprocess``).
"""

import asyncio
import asyncio.events
import asyncio.log
import concurrent.futures
import contextvars
import errno
import functools
import importlib
import os
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from tornado_lite import concurrent as tl_concurrent
from tornado_lite import gen
from tornado_lite import ioloop as tl_ioloop
from tornado_lite.concurrent import Future
from tornado_lite.ioloop import IOLoop

_READ = IOLoop.READ
_WRITE = IOLoop.WRITE
_ERROR = IOLoop.ERROR

_logger = asyncio.log.logger
_local = threading.local()
_lazy_ioloop_lock = threading.Lock()
_set_running_loop = asyncio.events._set_running_loop
_get_running_loop = asyncio.events._get_running_loop


class CancelledError(asyncio.CancelledError, concurrent.futures.CancelledError):
    """What a cancelled tornado_lite future or task raises once the bridge is installed.

    ``except asyncio.CancelledError:`` (asyncio code, Tornado's own demos) and
    ``except concurrent.futures.CancelledError:`` (code written for tornado_lite) both catch it.
    """


# --------------------------------------------------------------------------------------------------
# The asyncio event loop
# --------------------------------------------------------------------------------------------------


def _run_handle(handle: asyncio.Handle) -> None:
    # The IOLoop callback behind call_soon / call_at / add_reader: a cancelled handle is skipped; an
    # exception goes to the asyncio loop's exception handler (inside Handle._run), as on any asyncio loop.
    if not handle.cancelled():
        handle._run()


_H = TypeVar("_H", bound=asyncio.Handle)


def _trim_source_traceback(handle: _H) -> _H:
    # In debug mode a handle records where it was made: drop this module's frame so it shows the caller.
    source = getattr(handle, "_source_traceback", None)
    if source:
        del source[-1]
    return handle


class _TimerHandle(asyncio.TimerHandle):
    """asyncio's timer handle, plus the IOLoop timer behind it (cancelled with it)."""

    __slots__ = ("_ioloop_timer",)
    _ioloop_timer: Any


class _FdWatch:
    """The asyncio reader and writer of one fd; the IOLoop has one handler per fd."""

    __slots__ = ("fileobj", "reader", "writer")

    def __init__(self, fileobj: Any) -> None:
        self.fileobj = fileobj
        self.reader: Optional[asyncio.Handle] = None
        self.writer: Optional[asyncio.Handle] = None

    def events(self) -> int:
        return (_READ if self.reader is not None else 0) | (_WRITE if self.writer is not None else 0)


def _fileno(fileobj: Any) -> int:
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


def _set_result_unless_done(future: "asyncio.Future[Any]", value: Any = None) -> None:
    if not future.done():
        future.set_result(value)


_TASK_TAKES_CONTEXT = sys.version_info >= (3, 11)

_NOT_PROVIDED = (
    "{name}() is not provided by tornado_lite's asyncio loop (asyncio transports do not run on it); "
    "use {instead}"
)


def _not_provided(name: str, instead: str) -> Callable[..., Any]:
    async def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(_NOT_PROVIDED.format(name=name, instead=instead))

    refuse.__name__ = name
    refuse.__doc__ = f"Raises NotImplementedError: use {instead}."
    return refuse


class TornadoLiteEventLoop(asyncio.AbstractEventLoop):
    """An asyncio event loop that is a view of one tornado_lite ``IOLoop``.

    Made by the policy (``asyncio.new_event_loop()`` once installed) or by a ``BaseAsyncIOLoop``.  Its
    ``IOLoop`` is made on first use when the loop was made without one.  ``time()`` is the monotonic
    clock (the IOLoop's timers wait on it too).
    """

    slow_callback_duration = 0.1

    def __init__(self, ioloop: Optional[IOLoop] = None) -> None:
        self._ioloop: Optional[IOLoop] = None
        self._closed = False
        self._thread_id: Optional[int] = None
        self._debug = sys.flags.dev_mode or bool(os.environ.get("PYTHONASYNCIODEBUG"))
        self._exception_handler: Optional[Callable[..., Any]] = None
        self._task_factory: Optional[Callable[..., Any]] = None
        self._default_executor: Optional[concurrent.futures.Executor] = None
        self._executor_shutdown_called = False
        self._fd_watches: Dict[int, _FdWatch] = {}
        self._signal_handlers: Dict[int, asyncio.Handle] = {}
        self._asyncgens: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._old_agen_hooks: Any = None
        if ioloop is not None:
            self._attach(ioloop)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} running={self.is_running()} closed={self._closed} debug={self._debug}>"

    # -- the IOLoop behind it ------------------------------------------------------------------------

    def _attach(self, ioloop: IOLoop) -> None:
        if self._ioloop is not None and self._ioloop is not ioloop:
            raise RuntimeError(f"IOLoop {self._ioloop!r} already associated with asyncio loop {self!r}")
        self._ioloop = ioloop

    def _get_ioloop(self) -> IOLoop:
        ioloop = self._ioloop
        if ioloop is None:
            ioloop = self._make_ioloop()
        return ioloop

    def _make_ioloop(self) -> IOLoop:
        # Under a lock: another thread's call_soon_threadsafe may be the first to need it.
        with _lazy_ioloop_lock:
            if self._ioloop is not None:
                return self._ioloop
            ioloop = AsyncIOLoop(make_current=False, asyncio_loop=self)
        if getattr(_local, "pending", None) is self:
            # This thread's asyncio loop, made before any IOLoop: its IOLoop is the current one.
            _local.pending = None
            ioloop.make_current()
        return ioloop

    @property
    def ioloop(self) -> IOLoop:
        """The tornado_lite IOLoop this loop runs on."""
        return self._get_ioloop()

    # -- running and stopping ------------------------------------------------------------------------

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed")

    def _check_running(self) -> None:
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if _get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def _enter_running(self) -> None:
        """The loop starts turning on this thread: asyncio's running loop is this one until it stops."""
        self._check_closed()
        self._check_running()
        self._thread_id = threading.get_ident()
        self._old_agen_hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook, finalizer=self._asyncgen_finalizer_hook)
        _set_running_loop(self)

    def _leave_running(self) -> None:
        self._thread_id = None
        _set_running_loop(None)
        if self._old_agen_hooks is not None:
            sys.set_asyncgen_hooks(*self._old_agen_hooks)
            self._old_agen_hooks = None

    def run_forever(self) -> None:
        self._check_closed()
        self._check_running()
        ioloop = self._get_ioloop()
        if isinstance(ioloop, BaseAsyncIOLoop):
            ioloop.start()  # enters and leaves the running state itself
            return
        self._enter_running()
        try:
            ioloop.start()
        finally:
            self._leave_running()

    def run_until_complete(self, future: Any) -> Any:
        self._check_closed()
        self._check_running()
        new_task = not asyncio.isfuture(future)
        if isinstance(future, Future):
            self._get_ioloop().add_future(future, self._stop_when_done)
        else:
            future = asyncio.ensure_future(future, loop=self)
            if new_task:
                # A task made here: its failure is reported by this call, not logged as unretrieved.
                future._log_destroy_pending = False
            future.add_done_callback(self._stop_when_done)
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                future.exception()
            raise
        finally:
            if not isinstance(future, Future):
                future.remove_done_callback(self._stop_when_done)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def _stop_when_done(self, future: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._get_ioloop().stop()

    def is_running(self) -> bool:
        return self._thread_id is not None

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        self._closed = True
        for fd in list(self._fd_watches):
            self._forget_fd(fd)
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
        executor = self._default_executor
        self._default_executor = None
        if executor is not None:
            executor.shutdown(wait=False)
        ioloop = self._ioloop
        if ioloop is not None:
            ioloop.close()  # one loop: closing the asyncio view closes the IOLoop (and the other way round)

    # -- callbacks and timers ------------------------------------------------------------------------

    def _check_thread(self) -> None:
        # asyncio's debug-mode check: call_soon from a foreign thread is a bug (call_soon_threadsafe is not).
        if self._thread_id is not None and self._thread_id != threading.get_ident():
            raise RuntimeError("Non-thread-safe operation invoked on an event loop other than the current one")

    def _check_callback(self, callback: Any, method: str) -> None:
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    def call_soon(  # type: ignore[override]
        self, callback: Callable[..., Any], *args: Any, context: Optional[contextvars.Context] = None
    ) -> asyncio.Handle:
        self._check_closed()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_soon")
        handle = _trim_source_traceback(asyncio.Handle(callback, args, self, context))
        self._get_ioloop().add_callback(_run_handle, handle)
        return handle

    def call_soon_threadsafe(  # type: ignore[override]
        self, callback: Callable[..., Any], *args: Any, context: Optional[contextvars.Context] = None
    ) -> asyncio.Handle:
        self._check_closed()
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        handle = _trim_source_traceback(asyncio.Handle(callback, args, self, context))
        self._get_ioloop().add_callback(_run_handle, handle)  # add_callback is the IOLoop's thread-safe entry
        return handle

    def call_later(  # type: ignore[override]
        self, delay: float, callback: Callable[..., Any], *args: Any, context: Optional[contextvars.Context] = None
    ) -> asyncio.TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        return _trim_source_traceback(self.call_at(self.time() + delay, callback, *args, context=context))

    def call_at(  # type: ignore[override]
        self, when: float, callback: Callable[..., Any], *args: Any, context: Optional[contextvars.Context] = None
    ) -> asyncio.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
        timer = _trim_source_traceback(_TimerHandle(when, callback, args, self, context))
        timer._ioloop_timer = self._get_ioloop().call_later(max(0.0, when - self.time()), _run_handle, timer)
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    def _timer_handle_cancelled(self, handle: Any) -> None:
        # asyncio.TimerHandle.cancel() calls this: drop the IOLoop timer (and what it references) now.
        if self._ioloop is not None:
            self._ioloop.remove_timeout(handle._ioloop_timer)

    def time(self) -> float:
        return time.monotonic()

    # -- futures and tasks ---------------------------------------------------------------------------

    def create_future(self) -> "asyncio.Future[Any]":
        return asyncio.Future(loop=self)

    def create_task(
        self, coro: Any, *, name: Optional[str] = None, context: Optional[contextvars.Context] = None
    ) -> Any:
        self._check_closed()
        if self._task_factory is None:
            if _TASK_TAKES_CONTEXT:
                task = asyncio.Task(coro, loop=self, name=name, context=context)  # type: ignore[call-arg]
            elif context is not None:
                task = context.run(asyncio.Task, coro, loop=self, name=name)  # 3.10: the Task copies this
            else:
                task = asyncio.Task(coro, loop=self, name=name)
            if task._source_traceback:  # type: ignore[attr-defined]
                del task._source_traceback[-1]  # type: ignore[attr-defined]
        else:
            if context is None:
                task = self._task_factory(self, coro)
            else:
                task = self._task_factory(self, coro, context=context)
            if name is not None:
                try:
                    task.set_name(name)
                except AttributeError:
                    pass
        return task

    def set_task_factory(self, factory: Optional[Callable[..., Any]]) -> None:
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self) -> Optional[Callable[..., Any]]:
        return self._task_factory

    # -- async generators ----------------------------------------------------------------------------

    def _asyncgen_firstiter_hook(self, agen: Any) -> None:
        if self._asyncgens_shutdown_called:
            warnings.warn(f"asynchronous generator {agen!r} was scheduled after loop.shutdown_asyncgens() call",
                          ResourceWarning, stacklevel=2, source=self)
        self._asyncgens.add(agen)

    def _asyncgen_finalizer_hook(self, agen: Any) -> None:
        self._asyncgens.discard(agen)
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    async def shutdown_asyncgens(self) -> None:
        self._asyncgens_shutdown_called = True
        if not len(self._asyncgens):
            return
        closing = list(self._asyncgens)
        self._asyncgens.clear()
        results = await asyncio.gather(*[ag.aclose() for ag in closing], return_exceptions=True)
        for result, agen in zip(results, closing):
            if isinstance(result, Exception):
                self.call_exception_handler({
                    "message": f"an error occurred during closing of asynchronous generator {agen!r}",
                    "exception": result,
                    "asyncgen": agen,
                })

    # -- executors -----------------------------------------------------------------------------------

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":  # type: ignore[override]
        self._check_closed()
        if asyncio.iscoroutine(func) or asyncio.iscoroutinefunction(func):
            raise TypeError("coroutines cannot be used with run_in_executor()")
        if executor is None:
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            executor = self._default_executor
            if executor is None:
                executor = self._default_executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
        return asyncio.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor: Any) -> None:
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor")
        self._default_executor = executor
        self._get_ioloop().set_default_executor(executor)  # one loop: IOLoop.run_in_executor uses it too

    async def shutdown_default_executor(self, timeout: Optional[float] = None) -> None:
        """Waits (up to ``timeout`` seconds, Python 3.12's argument) for the default executor's threads."""
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is None:
            return
        done = self.create_future()
        thread = threading.Thread(target=self._shut_executor_down, args=(executor, done))
        thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout)
        except asyncio.TimeoutError:
            warnings.warn(f"The executor did not finish joining its threads within {timeout} seconds.",
                          RuntimeWarning, stacklevel=2)
            executor.shutdown(wait=False)
        else:
            thread.join()

    def _shut_executor_down(self, executor: concurrent.futures.Executor, done: "asyncio.Future[Any]") -> None:
        try:
            executor.shutdown(wait=True)
            if not self.is_closed():
                self.call_soon_threadsafe(_set_result_unless_done, done, None)
        except Exception as exc:
            if not self.is_closed():
                self.call_soon_threadsafe(done.set_exception, exc)

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0, type: int = 0, proto: int = 0,
                          flags: int = 0) -> List[Tuple[Any, ...]]:
        return await self.run_in_executor(None, socket.getaddrinfo, host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr: Any, flags: int = 0) -> Tuple[str, str]:
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)

    # -- file descriptors ----------------------------------------------------------------------------

    def _watch(self, fd: Any, callback: Callable[..., Any], args: tuple, writing: bool) -> None:
        self._check_closed()
        fd_num = _fileno(fd)
        handle = asyncio.Handle(callback, args, self, None)
        ioloop = self._get_ioloop()
        watch = self._fd_watches.get(fd_num)
        if watch is None:
            watch = self._fd_watches[fd_num] = _FdWatch(fd)
            if writing:
                watch.writer = handle
            else:
                watch.reader = handle
            ioloop.add_handler(fd_num, self._on_fd_ready, watch.events())
            return
        old = watch.writer if writing else watch.reader
        if old is not None:
            old.cancel()
        if writing:
            watch.writer = handle
        else:
            watch.reader = handle
        ioloop.update_handler(fd_num, watch.events())

    def _unwatch(self, fd: Any, writing: bool) -> bool:
        if self.is_closed():
            return False
        fd_num = _fileno(fd)
        watch = self._fd_watches.get(fd_num)
        if watch is None:
            return False
        handle = watch.writer if writing else watch.reader
        if handle is None:
            return False
        handle.cancel()
        if writing:
            watch.writer = None
        else:
            watch.reader = None
        if watch.events():
            self._get_ioloop().update_handler(fd_num, watch.events())
        else:
            self._forget_fd(fd_num)
        return True

    def _forget_fd(self, fd_num: int) -> None:
        watch = self._fd_watches.pop(fd_num, None)
        if watch is not None and self._ioloop is not None:
            self._ioloop.remove_handler(fd_num)

    def _on_fd_ready(self, fd: int, events: int) -> None:
        watch = self._fd_watches.get(fd)
        if watch is None:
            return
        # An error or hang-up wakes both directions, as a selector reports them (the call then fails).
        if events & (_READ | _ERROR) and watch.reader is not None:
            _run_handle(watch.reader)
        if events & (_WRITE | _ERROR) and watch.writer is not None:
            _run_handle(watch.writer)

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:  # type: ignore[override]
        self._watch(fd, callback, args, writing=False)

    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:  # type: ignore[override]
        self._watch(fd, callback, args, writing=True)

    def remove_reader(self, fd: Any) -> bool:
        return self._unwatch(fd, writing=False)

    def remove_writer(self, fd: Any) -> bool:
        return self._unwatch(fd, writing=True)

    # -- sockets (non-blocking, awaited on the loop) -------------------------------------------------

    @staticmethod
    def _check_nonblocking(sock: socket.socket) -> None:
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    async def _wait_fd(self, sock: socket.socket, writing: bool) -> None:
        ready = self.create_future()
        if writing:
            self.add_writer(sock, _set_result_unless_done, ready)
        else:
            self.add_reader(sock, _set_result_unless_done, ready)
        try:
            await ready
        finally:
            self._unwatch(sock, writing)

    async def sock_recv(self, sock: socket.socket, nbytes: int) -> bytes:
        self._check_nonblocking(sock)
        while True:
            try:
                return sock.recv(nbytes)
            except (BlockingIOError, InterruptedError):
                await self._wait_fd(sock, writing=False)

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        self._check_nonblocking(sock)
        while True:
            try:
                return sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                await self._wait_fd(sock, writing=False)

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        self._check_nonblocking(sock)
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            try:
                sent += sock.send(view[sent:])
            except (BlockingIOError, InterruptedError):
                await self._wait_fd(sock, writing=True)

    async def sock_accept(self, sock: socket.socket) -> Tuple[socket.socket, Any]:
        self._check_nonblocking(sock)
        while True:
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                await self._wait_fd(sock, writing=False)
                continue
            conn.setblocking(False)
            return conn, address

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        self._check_nonblocking(sock)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            address = await self._resolve_for(sock, address)
        try:
            sock.connect(address)
            return
        except (BlockingIOError, InterruptedError):
            pass
        await self._wait_fd(sock, writing=True)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            raise OSError(err, f"Connect call failed {address}")

    async def _resolve_for(self, sock: socket.socket, address: Any) -> Any:
        host, port = address[:2]
        try:
            # A numeric address needs no resolver thread.
            infos = socket.getaddrinfo(host, port, sock.family, sock.type, sock.proto,
                                       socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
        except socket.gaierror:
            infos = await self.getaddrinfo(host, port, family=sock.family, type=sock.type, proto=sock.proto)
        if not infos:
            raise OSError(errno.EADDRNOTAVAIL, f"getaddrinfo() returned empty list for {host!r}")
        resolved = infos[0][4]
        return resolved if len(address) <= 2 else (resolved[0], resolved[1], *address[2:])

    async def sock_sendfile(self, sock: Any, file: Any, offset: int = 0, count: Optional[int] = None,  # type: ignore[override]
                            *, fallback: bool = True) -> int:
        self._check_nonblocking(sock)
        file.seek(offset)
        total = 0
        while count is None or total < count:
            chunk = file.read(min(65536, count - total) if count is not None else 65536)
            if not chunk:
                break
            await self.sock_sendall(sock, chunk)
            total += len(chunk)
        file.seek(offset + total)
        return total

    # -- transports and servers: not on this loop ----------------------------------------------------

    create_connection = _not_provided("create_connection", "tornado_lite.tcpclient.TCPClient().connect()")
    create_server = _not_provided("create_server", "tornado_lite.tcpserver.TCPServer")
    create_unix_connection = _not_provided("create_unix_connection", "tornado_lite.iostream.IOStream(sock).connect()")
    create_unix_server = _not_provided("create_unix_server", "tornado_lite.tcpserver.TCPServer.add_socket("
                                       "tornado_lite.netutil.bind_unix_socket(path))")
    create_datagram_endpoint = _not_provided("create_datagram_endpoint", "a socket with loop.add_reader()")
    connect_accepted_socket = _not_provided("connect_accepted_socket", "tornado_lite.iostream.IOStream(sock)")
    connect_read_pipe = _not_provided("connect_read_pipe", "tornado_lite.iostream.PipeIOStream")
    connect_write_pipe = _not_provided("connect_write_pipe", "tornado_lite.iostream.PipeIOStream")
    subprocess_exec = _not_provided("subprocess_exec", "tornado_lite.process.Subprocess")
    subprocess_shell = _not_provided("subprocess_shell", "tornado_lite.process.Subprocess(..., shell=True)")
    sendfile = _not_provided("sendfile", "IOStream.write() of the file's contents")
    start_tls = _not_provided("start_tls", "tornado_lite.iostream.IOStream.start_tls()")

    # -- signals -------------------------------------------------------------------------------------

    def add_signal_handler(self, sig: int, callback: Callable[..., Any], *args: Any) -> None:  # type: ignore[override]
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        handle = asyncio.Handle(callback, args, self, None)
        try:
            # Python runs the handler on the main thread between bytecodes; call_soon_threadsafe wakes a
            # loop blocked in poll (the IOLoop's waker), so the callback runs on the next pass.
            signal.signal(sig, functools.partial(self._on_signal, handle))
        except ValueError as exc:  # not the main thread
            raise RuntimeError(str(exc)) from None
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise
        self._signal_handlers[sig] = handle

    def _on_signal(self, handle: asyncio.Handle, signum: int, frame: Any) -> None:
        if not handle.cancelled() and not self._closed:
            self._get_ioloop().add_callback(_run_handle, handle)  # wakes the loop if it is polling

    def remove_signal_handler(self, sig: int) -> bool:
        self._check_signal(sig)
        handle = self._signal_handlers.pop(sig, None)
        if handle is None:
            return False
        handle.cancel()
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, default)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise
        return True

    @staticmethod
    def _check_signal(sig: Any) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    # -- errors and debugging ------------------------------------------------------------------------

    def get_exception_handler(self) -> Optional[Callable[..., Any]]:
        return self._exception_handler

    def set_exception_handler(self, handler: Optional[Callable[..., Any]]) -> None:
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context: Dict[str, Any]) -> None:
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info: Any = (type(exception), exception, exception.__traceback__) if exception is not None else False
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key == "source_traceback":
                value = "Object created at (most recent call last):\n" + "".join(
                    traceback.format_list(value)).rstrip()
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        _logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context: Dict[str, Any]) -> None:
        handler = self._exception_handler
        if handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                _logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler({
                    "message": "Unhandled error in exception handler",
                    "exception": exc,
                    "context": context,
                })
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                _logger.error("Exception in default exception handler while handling an unexpected error "
                              "in custom exception handler", exc_info=True)

    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = bool(enabled)


# --------------------------------------------------------------------------------------------------
# IOLoops that are the IOLoop of a bridged asyncio loop (Tornado's names)
# --------------------------------------------------------------------------------------------------


class BaseAsyncIOLoop(IOLoop):
    """An IOLoop paired with a ``TornadoLiteEventLoop`` (``asyncio_loop``): the same loop, seen both ways.

    While it runs (``start()``, ``run_sync()``), asyncio's running loop is ``asyncio_loop``, so asyncio
    code (``asyncio.sleep``, ``asyncio.Event`` ...) runs inside tornado_lite callbacks and coroutines.
    Unlike Tornado's, the asyncio loop must be a ``TornadoLiteEventLoop``: tornado_lite does not run on
    asyncio's own loops.
    """

    asyncio_loop: TornadoLiteEventLoop

    def initialize(self, asyncio_loop: Optional[TornadoLiteEventLoop] = None, **kwargs: Any) -> None:  # type: ignore[override]
        if asyncio_loop is None:
            asyncio_loop = TornadoLiteEventLoop()
        if not isinstance(asyncio_loop, TornadoLiteEventLoop):
            raise TypeError(
                f"tornado_lite's IOLoop runs only on its own asyncio loop (TornadoLiteEventLoop), not on "
                f"{asyncio_loop!r}; call tornado_lite.platform.asyncio.install() before creating loops"
            )
        if asyncio_loop._ioloop is not None:
            raise RuntimeError(f"IOLoop {asyncio_loop._ioloop!r} already associated with asyncio loop {asyncio_loop!r}")
        super().initialize(**kwargs)
        # Set after the IOLoop's own attributes, so instances keep the IOLoop's attribute order: set before,
        # the echo path cost 0.9% more instructions per message (callgrind), as set here it costs nothing.
        self.asyncio_loop = asyncio_loop
        self.selector_loop = asyncio_loop
        asyncio_loop._attach(self)  # only once complete: other threads may be waiting to use it

    def start(self) -> None:
        self.asyncio_loop._enter_running()
        try:
            super().start()
        finally:
            self.asyncio_loop._leave_running()

    def close(self, all_fds: bool = False) -> None:
        super().close(all_fds=all_fds)
        self.asyncio_loop.close()


class AsyncIOLoop(BaseAsyncIOLoop):
    """The IOLoop class ``IOLoop()`` makes once the bridge is installed.

    ``IOLoop()`` (made current) adopts the asyncio loop this thread's policy already handed out and that
    has no IOLoop yet, so ``asyncio.get_event_loop()`` and ``IOLoop.current()`` stay one loop.
    """

    def initialize(self, **kwargs: Any) -> None:  # type: ignore[override]
        if kwargs.get("asyncio_loop") is None and kwargs.get("make_current", True):
            pending = getattr(_local, "pending", None)
            if pending is not None and pending._ioloop is None and not pending.is_closed():
                _local.pending = None
                kwargs["asyncio_loop"] = pending
        super().initialize(**kwargs)


class AsyncIOMainLoop(BaseAsyncIOLoop):
    """The IOLoop of the asyncio loop ``asyncio.get_event_loop()`` returns (installs the bridge if needed).

    For programs written for Tornado 4/5: ``AsyncIOMainLoop().install()`` followed by
    ``asyncio.get_event_loop().run_forever()`` runs the program on tornado_lite's loop.
    """

    def initialize(self, **kwargs: Any) -> None:  # type: ignore[override]
        install()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio_loop = asyncio.get_event_loop()
        super().initialize(asyncio_loop=asyncio_loop, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# The policy
# --------------------------------------------------------------------------------------------------

# Bridges made for IOLoops of the plain class (created before install()).
_bridges: "weakref.WeakKeyDictionary[IOLoop, TornadoLiteEventLoop]" = weakref.WeakKeyDictionary()


def _asyncio_loop_for(ioloop: Optional[IOLoop]) -> Optional[TornadoLiteEventLoop]:
    """The asyncio loop that is ``ioloop`` (made on first request for a plain IOLoop)."""
    if ioloop is None:
        return None
    if isinstance(ioloop, BaseAsyncIOLoop):
        return ioloop.asyncio_loop
    bridge = _bridges.get(ioloop)
    if bridge is None:
        bridge = _bridges[ioloop] = TornadoLiteEventLoop(ioloop)
    return bridge


class TornadoLiteEventLoopPolicy(asyncio.AbstractEventLoopPolicy):
    """asyncio's event loop policy, on tornado_lite: this thread's asyncio loop is its current IOLoop.

    ``get_event_loop()`` gives the current IOLoop's asyncio loop (made, without an IOLoop yet, in the main
    thread if there is none); ``set_event_loop(loop)`` makes ``loop``'s IOLoop current;
    ``new_event_loop()`` gives a new ``TornadoLiteEventLoop``.
    """

    _creates_in_any_thread = False

    def get_event_loop(self) -> asyncio.AbstractEventLoop:
        foreign = getattr(_local, "foreign", None)
        if foreign is not None:
            return foreign
        bridge = _asyncio_loop_for(IOLoop.current(instance=False))
        if bridge is not None:
            return bridge
        pending = getattr(_local, "pending", None)
        if pending is not None and not pending.is_closed():
            return pending
        if not self._creates_in_any_thread and (
            threading.current_thread() is not threading.main_thread() or getattr(_local, "set_called", False)
        ):
            raise RuntimeError(f"There is no current event loop in thread {threading.current_thread().name!r}.")
        pending = _local.pending = self.new_event_loop()
        return pending

    def set_event_loop(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        _local.set_called = True
        _local.pending = None
        _local.foreign = None
        if loop is None:
            IOLoop.clear_current()
        elif isinstance(loop, TornadoLiteEventLoop):
            loop._get_ioloop().make_current()
        elif isinstance(loop, asyncio.AbstractEventLoop):
            _local.foreign = loop  # another implementation's loop: asyncio code may use it, IOLoop cannot
        else:
            raise TypeError(f"loop must be an instance of AbstractEventLoop or None, not {type(loop).__name__!r}")

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return TornadoLiteEventLoop()

    # Child watchers serve asyncio's own loops' subprocesses (a program may still make such a loop);
    # TornadoLiteEventLoop has no asyncio subprocesses (process.Subprocess instead).
    _child_watcher: Any = None

    def get_child_watcher(self) -> Any:
        if self._child_watcher is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self._child_watcher = asyncio.ThreadedChildWatcher()
        return self._child_watcher

    def set_child_watcher(self, watcher: Any) -> None:
        if self._child_watcher is not None and self._child_watcher is not watcher:
            self._child_watcher.close()
        self._child_watcher = watcher


class AddThreadSelectorEventLoop(asyncio.AbstractEventLoop):
    """Tornado's wrapper that lends a selector thread to a loop without ``add_reader`` (Windows' proactor).

    tornado_lite's loop has ``add_reader`` on every platform, so it never makes one of these; the name is
    here for code that refers to it (``isinstance`` checks, Tornado's own tests).  An instance hands every
    call of the event loop API to the loop it wraps, which needs no thread for readers and writers.
    """

    def __init__(self, real_loop: asyncio.AbstractEventLoop) -> None:
        self._real_loop = real_loop


def _hand_to_the_wrapped_loop(name: str) -> Callable[..., Any]:
    def method(self: AddThreadSelectorEventLoop, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._real_loop, name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


for _name, _value in list(vars(asyncio.AbstractEventLoop).items()):
    if not _name.startswith("_") and callable(_value):
        setattr(AddThreadSelectorEventLoop, _name, _hand_to_the_wrapped_loop(_name))
del _name, _value


class AnyThreadEventLoopPolicy(TornadoLiteEventLoopPolicy):
    """Tornado's deprecated policy: ``get_event_loop()`` makes a loop in any thread, not just the main one."""

    _creates_in_any_thread = True

    def __init__(self) -> None:
        super().__init__()
        warnings.warn(
            "AnyThreadEventLoopPolicy is deprecated, use asyncio.run or asyncio.new_event_loop instead",
            DeprecationWarning,
            stacklevel=2,
        )


# --------------------------------------------------------------------------------------------------
# Awaiting across the two worlds
# --------------------------------------------------------------------------------------------------


def _copy_asyncio_outcome(ours: Future, theirs: "asyncio.Future[Any]") -> None:
    if ours.done():
        return
    if theirs.cancelled():
        ours.cancel()
        return
    exc = theirs.exception()
    if exc is not None:
        ours.set_exception(exc)
    else:
        ours.set_result(theirs.result())


def _cancel_theirs_if_cancelled(theirs: "asyncio.Future[Any]", ours: Future) -> None:
    if ours.cancelled() and not theirs.done():
        theirs.cancel()


@gen.convert_yielded.register(asyncio.Future)
def _convert_asyncio_future(theirs: "asyncio.Future[Any]") -> Future:
    """A tornado_lite coroutine awaits an asyncio future or task: follow it with one of ours.

    Cancelling ours (the tornado_lite task was cancelled) cancels theirs, and the other way round.
    """
    ours: Future = Future()
    theirs.add_done_callback(functools.partial(_copy_asyncio_outcome, ours))
    ours.add_done_callback(functools.partial(_cancel_theirs_if_cancelled, theirs))
    return ours


def to_tornado_future(asyncio_future: "asyncio.Future[Any]") -> Future:
    """A tornado_lite Future following ``asyncio_future`` (in Tornado 6 both are the same class)."""
    return gen.convert_yielded(asyncio_future)


def to_asyncio_future(tornado_future: Any) -> "asyncio.Future[Any]":
    """An ``asyncio.Future`` following any tornado_lite yieldable (a future, coroutine, list ...).

    The asyncio future belongs to the current IOLoop's asyncio loop; cancelling it cancels the source.
    """
    source = gen.convert_yielded(tornado_future)
    loop = _asyncio_loop_for(IOLoop.current())
    assert loop is not None
    theirs = loop.create_future()

    def copy(done: Future) -> None:
        if theirs.done():
            return
        if done.cancelled():
            theirs.cancel()
        elif done.exception() is not None:
            theirs.set_exception(done.exception())  # type: ignore[arg-type]
        else:
            theirs.set_result(done.result())

    tl_concurrent.future_add_done_callback(source, copy)
    theirs.add_done_callback(lambda f: source.cancel() if f.cancelled() else None)
    return theirs


# --------------------------------------------------------------------------------------------------
# install()
# --------------------------------------------------------------------------------------------------

_c_current_task = asyncio.tasks.current_task
_installed = False


def _current_task(loop: Optional[asyncio.AbstractEventLoop] = None) -> Any:
    """asyncio.current_task(), seeing tornado_lite tasks too: the one whose step runs, else asyncio's."""
    if loop is None:
        loop = asyncio.get_running_loop()
    if isinstance(loop, TornadoLiteEventLoop) and loop._ioloop is not None:
        ours = gen.current_task(loop._ioloop)
        if ours is not None:
            return ours
    return _c_current_task(loop)


def _normalise_cancelled(aexit: Callable[..., Any]) -> Callable[..., Any]:
    """Python 3.11's (and 3.12.1's) Timeout and TaskGroup test ``exc_type is CancelledError``.

    Our cancellation is a subclass: present it as asyncio's own class so they convert a timeout into
    TimeoutError and handle their parent's cancellation as later Pythons (issubclass) do.
    """

    @functools.wraps(aexit)
    async def wrapper(self: Any, exc_type: Any, exc: Any, tb: Any) -> Any:
        if exc_type is CancelledError:
            exc_type = asyncio.CancelledError
        return await aexit(self, exc_type, exc, tb)

    wrapper._tornado_lite_normalised = True  # type: ignore[attr-defined]
    return wrapper


def _patch_asyncio() -> None:
    asyncio.tasks.current_task = _current_task  # type: ignore[assignment]
    asyncio.current_task = _current_task  # type: ignore[assignment]
    # asyncio.timeout and TaskGroup are new in 3.11; they test the class by identity up to early 3.12 (by
    # issubclass later, where presenting ours as asyncio's own changes nothing).
    if sys.version_info >= (3, 11):
        timeouts = importlib.import_module("asyncio.timeouts")
        taskgroups = importlib.import_module("asyncio.taskgroups")
        for cls in (timeouts.Timeout, taskgroups.TaskGroup):
            if not getattr(cls.__aexit__, "_tornado_lite_normalised", False):
                cls.__aexit__ = _normalise_cancelled(cls.__aexit__)  # type: ignore[method-assign]


def _make_implicit_loop() -> IOLoop:
    """The loop ``IOLoop.current()`` makes for a thread with none, as Tornado makes it: the IOLoop of
    asyncio's current loop (an ``AsyncIOMainLoop``), while ``IOLoop`` is configured to the bridge's class.

    Where asyncio has no loop for this thread (another thread, or after ``set_event_loop(None)``), a new
    one is made, as Tornado does.  Where asyncio's loop is of another implementation, or the program
    configured a class of its own, ``IOLoop()``.
    """
    if IOLoop.configured_class() is not AsyncIOLoop or not is_installed():
        return IOLoop()
    try:
        asyncio_loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        # The policy's pending loop is the one AsyncIOMainLoop's asyncio.get_event_loop() then finds.
        asyncio_loop = _local.pending = TornadoLiteEventLoop()
    if not isinstance(asyncio_loop, TornadoLiteEventLoop):
        return IOLoop()
    if asyncio_loop._ioloop is not None:
        return asyncio_loop._ioloop
    return AsyncIOMainLoop()


def install() -> None:
    """Runs asyncio on tornado_lite's loop from now on, in this process (idempotent).

    Sets asyncio's event loop policy to ``TornadoLiteEventLoopPolicy``; makes ``IOLoop()`` build
    ``AsyncIOLoop`` (so ``IOLoop.current().start()`` is asyncio's running loop too); makes cancelled
    tornado_lite futures raise this module's ``CancelledError`` (both classes) and tasks ended by
    ``asyncio.CancelledError`` cancelled; lets ``asyncio.current_task()`` see tornado_lite tasks.
    IOLoops created before this call stay plain: asyncio code does not see them as running.
    """
    global _installed
    if not isinstance(asyncio.get_event_loop_policy(), TornadoLiteEventLoopPolicy):
        asyncio.set_event_loop_policy(TornadoLiteEventLoopPolicy())
    if _installed:
        return
    _installed = True
    if IOLoop.configured_class() is IOLoop:
        IOLoop.configure(AsyncIOLoop)
    tl_ioloop._set_implicit_loop_maker(_make_implicit_loop)
    tl_concurrent._set_asyncio_hooks(CancelledError, _asyncio_loop_for)
    gen._set_cancellation_types((concurrent.futures.CancelledError, asyncio.CancelledError))
    _patch_asyncio()


def is_installed() -> bool:
    return _installed and isinstance(asyncio.get_event_loop_policy(), TornadoLiteEventLoopPolicy)


__all__ = [
    "AddThreadSelectorEventLoop",
    "AnyThreadEventLoopPolicy",
    "AsyncIOLoop",
    "AsyncIOMainLoop",
    "BaseAsyncIOLoop",
    "CancelledError",
    "TornadoLiteEventLoop",
    "TornadoLiteEventLoopPolicy",
    "install",
    "is_installed",
    "to_asyncio_future",
    "to_tornado_future",
]
