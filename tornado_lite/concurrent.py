"""Futures for tornado_lite: our own awaitable ``Future``, and helpers to bridge it with threads.

This layer defines what a pending result is and how code is told when it is ready.  It knows nothing
about file descriptors or timers, and it must never import the event loop at module level (the loop
sits above it).  A future that was given callbacks while a loop was current delivers them through that
loop, on a later pass, exactly as Tornado 6 users observe with asyncio's futures; the loop tells this
module how to find "the current loop" through :func:`_set_loop_lookup` when it is imported.

``Future`` is not asyncio's.  It is awaitable (``await fut``, ``yield from fut``) and its cancellation
raises :class:`concurrent.futures.CancelledError`.

Hooks for the layers above, not Tornado API: ``_resolve_read`` finishes a stream's read future and
``_fail_looked_at`` fails the one a close ends; ``_ResolvedFuture`` / ``_WrittenFuture`` are the
futures born finished that a stream returns for a read or write done at once (the stream fills in
their ``_result`` and ``_loop``, as it sets a new pending future's ``_loop`` to its own loop).
"""

import concurrent.futures
import functools
import sys
import traceback
import types
import typing
from typing import Any, Callable, Optional, Tuple, TypeVar, Union

from tornado_lite.log import app_log

_T = TypeVar("_T")

CancelledError = concurrent.futures.CancelledError
InvalidStateError = concurrent.futures.InvalidStateError


class ReturnValueIgnoredError(Exception):
    """Raised when a callback's return value would be silently thrown away."""


_PENDING = 0
_FINISHED = 1
_CANCELLED = 2


def _no_loop() -> Any:
    return None


# Replaced by the ioloop module: a zero-argument function returning the thread's current loop or None.
_current_loop: Callable[[], Any] = _no_loop


def _set_loop_lookup(lookup: Callable[[], Any]) -> None:
    global _current_loop
    _current_loop = lookup


# -- hooks for the opt-in asyncio bridge (tornado_lite.platform.asyncio); unused until it installs ---------
# The class a cancelled future raises.  The bridge replaces it with a subclass of both this and
# asyncio.CancelledError, so either ``except`` catches a cancellation.  Read only when a cancellation is
# raised, never on the success path.
_cancelled_error_class: type = CancelledError
# Maps a future's tornado_lite loop to the loop ``get_loop()`` reports (the bridge's asyncio loop).
_loop_for_asyncio: Optional[Callable[[Any], Any]] = None


def _new_cancelled_error() -> BaseException:
    """A fresh cancellation exception of the class in force (see ``_set_asyncio_hooks``)."""
    return _cancelled_error_class()


def _set_asyncio_hooks(cancelled_error_class: type, loop_for_asyncio: Callable[[Any], Any]) -> None:
    """Called by the asyncio bridge's ``install()``: what a cancellation raises, and what get_loop() says."""
    global _cancelled_error_class, _loop_for_asyncio
    if not issubclass(cancelled_error_class, CancelledError):
        raise TypeError("the cancellation class must derive from concurrent.futures.CancelledError")
    _cancelled_error_class = cancelled_error_class
    _loop_for_asyncio = loop_for_asyncio


class _UnretrievedException:
    """Logs an exception that was set on a future and never looked at.

    A separate object (made only when a future fails) keeps ``__del__`` off the ``Future`` class itself,
    so successful futures pay nothing for this diagnostic.
    """

    __slots__ = ("exc", "__weakref__")

    def __init__(self, exc: BaseException) -> None:
        self.exc: Optional[BaseException] = exc

    def __del__(self) -> None:
        exc = self.exc
        if exc is not None and sys.meta_path is not None:  # not during interpreter shutdown
            app_log.error(
                "Future exception was never retrieved: %s",
                "".join(_format_exception(exc)).rstrip(),
            )


def _format_exception(exc: BaseException) -> list:
    return traceback.format_exception(type(exc), exc, exc.__traceback__)


class Future(typing.Generic[_T]):
    """A result that will be available later; awaitable, with done-callbacks run by the IOLoop.

    The API is the one Tornado 6 users know from ``asyncio.Future``: ``result()``, ``exception()``,
    ``done()``, ``cancel()``, ``cancelled()``, ``add_done_callback()``, ``remove_done_callback()``,
    ``set_result()`` and ``set_exception()``.  Callbacks are never run inside ``set_result``: they are
    queued on the loop that was current when they were added, and run on its next pass.  When no loop
    was current, they run at once when the future resolves.
    """

    __slots__ = ("_state", "_result", "_exception", "_callbacks", "_loop", "_logger", "__weakref__")

    # Marks instances for code that checks whether an object is a future without importing this class.
    _tornado_lite_future = True

    def __init__(self) -> None:
        self._state = _PENDING
        self._result: Any = None
        self._exception: Optional[BaseException] = None
        # None, the one done-callback itself, or a list of two or more: most futures have a single
        # waiter, and a list of one would cost 64 B more per idle connection (its pending read).
        # (Typed Any: the hot paths tell the shapes apart with ``type(...) is list``, which mypy cannot narrow.)
        self._callbacks: Any = None
        self._loop: Any = None
        self._logger: Optional[_UnretrievedException] = None

    def __repr__(self) -> str:
        state = ("pending", "finished", "cancelled")[self._state]
        if self._state == _FINISHED:
            if self._exception is not None:
                return f"<Future {state} exception={self._exception!r}>"
            return f"<Future {state} result={self._result!r}>"
        return f"<Future {state}>"

    # -- inspecting -------------------------------------------------------------------------------

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> _T:
        if self._state == _FINISHED:
            exc = self._exception
            if exc is None:
                return self._result
            if self._logger is not None:
                self._logger.exc = None
                self._logger = None
            try:
                raise exc
            finally:
                # This frame goes into exc's traceback: its locals must not lead back to exc, or every
                # failed future read this way would wait for the cyclic GC (with everything it holds).
                self = exc = None  # type: ignore[assignment]
        if self._state == _CANCELLED:
            raise _cancelled_error_class()
        raise InvalidStateError("Result is not ready.")

    def exception(self) -> Optional[BaseException]:
        if self._state == _FINISHED:
            if self._logger is not None:
                self._logger.exc = None
                self._logger = None
            return self._exception
        if self._state == _CANCELLED:
            raise _cancelled_error_class()
        raise InvalidStateError("Exception is not set.")

    def _retrieve_failure(self) -> BaseException:
        """What ``result()`` would raise for this failed or cancelled future, marked as retrieved."""
        if self._state == _CANCELLED:
            return _cancelled_error_class()
        if self._logger is not None:
            self._logger.exc = None
            self._logger = None
        return self._exception  # type: ignore[return-value]

    def get_loop(self) -> Any:
        loop = self._loop
        hook = _loop_for_asyncio
        if hook is None:
            return loop
        # Bridge installed: asyncio's tasks compare this with their own (asyncio) loop.
        return hook(loop if loop is not None else _current_loop())

    # -- asyncio interop (read only by asyncio code, once the bridge is installed) -----------------------

    @property
    def _asyncio_future_blocking(self) -> bool:
        # asyncio's Task reads this on whatever a coroutine yields: true means "a future to wait on".  Our
        # __await__ yields only a future that must be waited on (gen.moment included: one pass).
        return True

    @_asyncio_future_blocking.setter
    def _asyncio_future_blocking(self, value: bool) -> None:
        pass  # asyncio's Task resets it after each yield; we keep no state for it

    def _make_cancelled_error(self) -> BaseException:
        """What asyncio's gather() and friends call on a cancelled future for its exception."""
        return _cancelled_error_class()

    # -- resolving --------------------------------------------------------------------------------

    def set_result(self, result: _T) -> None:
        if self._state != _PENDING:
            raise InvalidStateError(f"invalid state: {self!r}")
        self._result = result
        self._state = _FINISHED
        callbacks = self._callbacks
        if callbacks is not None:
            # _schedule_callbacks, inlined: every read that a coroutine waited for ends here.
            self._callbacks = None
            loop = self._loop
            if type(callbacks) is not list:
                if loop is not None:
                    loop._schedule_future_callback(callbacks, self)
                else:
                    callbacks(self)
            elif loop is not None:
                loop._schedule_future_callbacks(callbacks, self)
            else:
                for fn in callbacks:
                    fn(self)

    def set_exception(self, exception: Union[BaseException, type]) -> None:
        if self._state != _PENDING:
            raise InvalidStateError(f"invalid state: {self!r}")
        if isinstance(exception, type):
            exception = typing.cast(BaseException, exception())
        if type(exception) is StopIteration:
            # A StopIteration escaping through a coroutine's send() would end it silently.
            raise TypeError("StopIteration interacts badly with generators and cannot be raised into a Future")
        self._exception = exception
        self._state = _FINISHED
        self._logger = _UnretrievedException(exception)
        if self._callbacks is not None:
            self._schedule_callbacks()

    def cancel(self, msg: Any = None) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        if self._callbacks is not None:
            self._schedule_callbacks()
        return True

    # -- callbacks --------------------------------------------------------------------------------

    def add_done_callback(self, fn: Callable[["Future[_T]"], Any], *, context: Any = None) -> None:
        if context is not None:
            fn = functools.partial(context.run, fn)
        if self._loop is None:
            self._loop = _current_loop()
        if self._state != _PENDING:
            loop = self._loop
            if loop is None:
                fn(self)
            else:
                loop._schedule_future_callback(fn, self)
            return
        callbacks = self._callbacks
        if callbacks is None:
            self._callbacks = fn
        elif type(callbacks) is list:
            callbacks.append(fn)
        else:
            self._callbacks = [callbacks, fn]

    def remove_done_callback(self, fn: Callable[["Future[_T]"], Any]) -> int:
        callbacks = self._callbacks
        if callbacks is None:
            return 0
        if type(callbacks) is not list:
            if callbacks != fn:
                return 0
            self._callbacks = None
            return 1
        kept = [cb for cb in callbacks if cb != fn]
        removed = len(callbacks) - len(kept)
        self._callbacks = kept if len(kept) > 1 else (kept[0] if kept else None)
        return removed

    def _schedule_callbacks(self) -> None:
        callbacks = self._callbacks
        self._callbacks = None
        loop = self._loop
        if type(callbacks) is not list:
            if loop is None:
                callbacks(self)
            else:
                loop._schedule_future_callback(callbacks, self)
            return
        if loop is None:
            for fn in callbacks:
                fn(self)
            return
        loop._schedule_future_callbacks(callbacks, self)

    # -- awaiting ---------------------------------------------------------------------------------

    def __await__(self) -> typing.Generator[Any, None, _T]:
        if self._state == _PENDING:
            try:
                yield self
            except BaseException:
                # The runner threw this future's failure in here: drop this frame's hold on the future
                # before the exception (whose traceback keeps the frame) travels on.
                self = None  # type: ignore[assignment]
                raise
            if self._exception is None and self._state == _FINISHED:
                return self._result  # (the usual resumption: one test fewer than the general case below)
            if self._state == _PENDING:
                raise RuntimeError("await wasn't used with future")
        if self._state == _FINISHED and self._exception is None:
            return self._result
        # Raised from this generator frame, not through result(): a plain frame in the traceback would
        # keep its caller's frame (and locals) alive, and this one's locals are cleared on the way out.
        exc = self._retrieve_failure()
        try:
            raise exc
        finally:
            self = exc = None  # type: ignore[assignment]

    __iter__ = __await__


def _resolve_read(future: Future, result: Any) -> None:
    """Gives a stream's read ``future`` its result, unless it was cancelled meanwhile.

    iostream's hook for finishing a read that a coroutine waits for (not Tornado API): ``set_result``'s
    steps without its state error, and the usual single waiter queued on the loop at once, so that the
    stream neither writes a future's fields itself nor pays for ``set_result``'s extra call on the path
    of every such read.
    """
    if future._state != _PENDING:
        return
    future._result = result
    future._state = _FINISHED
    callbacks = future._callbacks
    if callbacks is not None:
        loop = future._loop
        if type(callbacks) is not list and loop is not None:
            future._callbacks = None
            loop._schedule_future_callback(callbacks, future)
        else:
            future._schedule_callbacks()


def _fail_looked_at(future: Future, exc: BaseException) -> None:
    """Fails pending ``future`` with ``exc``, counted as looked at: nothing is logged if nobody retrieves it.

    iostream's hook for the read that a close fails (one per closed connection, and not an unhandled
    error): ``set_exception``'s steps without making the never-retrieved logger only to disarm it.
    """
    future._exception = exc
    future._state = _FINISHED
    if future._callbacks is not None:
        future._schedule_callbacks()


class _ResolvedFuture(Future):
    """A future born finished with a result: what a stream returns for a read it could finish at once.

    A server echoing pipelined requests makes two of these per request, so they are made without
    ``__init__``: ``object.__new__`` plus the two fields that vary (``_result`` and ``_loop``); the
    others are class attributes standing in for slots that can never change on a finished future.
    (Code that tried to assign one would get an AttributeError; nothing does, since every mutator
    of ``Future`` refuses a finished future first.)  Awaiting one returns the result with no checks.
    """

    __slots__ = ()
    _state = _FINISHED
    _exception = None
    _callbacks = None
    _logger = None
    # ``_ResolvedFuture()`` then skips ``Future.__init__`` (object's own __init__ is a C slot) and
    # costs less than ``_new_object(_ResolvedFuture)``, whose call packs its argument in a tuple.
    __init__ = object.__init__  # type: ignore[assignment]

    def __await__(self) -> typing.Generator[Any, None, _T]:
        return self._result
        yield  # makes this a generator function: awaiting it runs no further than the return

    __iter__ = __await__


class _WrittenFuture(_ResolvedFuture):
    """A finished future whose result is None: what a stream returns for a write it finished at once.

    Awaiting it runs no Python code at all: ``__await__`` is an empty tuple's iterator, which ends
    at once with the value None.
    """

    __slots__ = ()
    _result = None
    __await__ = staticmethod(().__iter__)  # type: ignore[assignment]
    __iter__ = __await__  # type: ignore[assignment]


# ``_new_object(_ResolvedFuture)`` makes an instance without calling ``__init__``.
_new_object = object.__new__


FUTURES = (Future, concurrent.futures.Future)


def is_future(x: Any) -> bool:
    return isinstance(x, FUTURES)


class DummyExecutor(concurrent.futures.Executor):
    """An executor that runs the function at once, in the calling thread."""

    def submit(  # type: ignore[override]
        self, fn: Callable[..., _T], *args: Any, **kwargs: Any
    ) -> "concurrent.futures.Future[_T]":
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        try:
            future_set_result_unless_cancelled(future, fn(*args, **kwargs))
        except Exception:
            future_set_exc_info(future, sys.exc_info())
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


dummy_executor = DummyExecutor()


def run_on_executor(*args: Any, **kwargs: Any) -> Callable:
    """Decorator: run a method on ``self.executor`` (or the named attribute) and return our Future.

    Usable bare (``@run_on_executor``) or with ``executor="name"``.
    """

    def decorate(fn: Callable, executor_attr: str) -> Callable:
        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Future:
            result: Future = Future()
            conc_future = getattr(self, executor_attr).submit(fn, self, *args, **kwargs)
            chain_future(conc_future, result)
            return result

        return wrapper

    if args and kwargs:
        raise ValueError("cannot combine positional and keyword args")
    if len(args) == 1:
        return decorate(args[0], "executor")
    if len(args) != 0:
        raise ValueError("expected 1 argument, got %d" % len(args))
    return functools.partial(decorate, executor_attr=kwargs.get("executor", "executor"))


def chain_future(
    a: "Union[Future[_T], concurrent.futures.Future[_T]]", b: "Union[Future[_T], concurrent.futures.Future[_T]]"
) -> None:
    """Copy the outcome of future ``a`` onto ``b`` when ``a`` finishes (unless ``b`` is already done)."""

    def copy(a: Any) -> None:
        if b.done():
            return
        if a.cancelled():
            # Tornado 6.6: cancellation propagates (a.exception() would raise CancelledError here).
            b.cancel()
            return
        if hasattr(a, "exc_info") and a.exc_info() is not None:  # pragma: no cover - Tornado 4 futures
            future_set_exc_info(b, a.exc_info())
            return
        exc = a.exception()
        if exc is not None:
            b.set_exception(exc)
        else:
            b.set_result(a.result())

    if isinstance(a, Future):
        future_add_done_callback(a, copy)
    else:
        # A concurrent.futures.Future completes on another thread: hop to the loop first.  The loop is
        # a layer above this one, so the import is deferred (Tornado's chain_future has this shape).
        from tornado_lite.ioloop import IOLoop

        IOLoop.current().add_future(a, copy)


def future_set_result_unless_cancelled(future: "Union[Future[_T], concurrent.futures.Future[_T]]", value: _T) -> None:
    if not future.cancelled():
        future.set_result(value)


def future_set_exception_unless_cancelled(
    future: "Union[Future[_T], concurrent.futures.Future[_T]]", exc: BaseException
) -> None:
    if not future.cancelled():
        future.set_exception(exc)
    else:
        app_log.error("Exception after Future was cancelled", exc_info=exc)


def future_set_exc_info(
    future: "Union[Future[_T], concurrent.futures.Future[_T]]",
    exc_info: Tuple[Optional[type], Optional[BaseException], Optional[types.TracebackType]],
) -> None:
    if exc_info[1] is None:
        raise Exception("future_set_exc_info called with no exception")
    future_set_exception_unless_cancelled(future, exc_info[1])


@typing.overload
def future_add_done_callback(
    future: "concurrent.futures.Future[_T]", callback: Callable[["concurrent.futures.Future[_T]"], None]
) -> None: ...


@typing.overload
def future_add_done_callback(future: "Future[_T]", callback: Callable[["Future[_T]"], None]) -> None: ...


def future_add_done_callback(future: Any, callback: Callable[[Any], None]) -> None:
    """Call ``callback(future)`` when it is done: at once if it already is, otherwise via the future."""
    if future.done():
        callback(future)
    else:
        future.add_done_callback(callback)
