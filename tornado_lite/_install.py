"""``install()``: existing Tornado programs, HTTP layer included, run on tornado_lite's core unchanged.

This is the top layer.  After ``install()``, ``import tornado.X`` gives ``tornado_lite.X`` (the very
same module object) for every module tornado_lite provides, and the real Tornado package for the rest:
``tornado.web``, ``httpserver``, ``websocket``, ``httpclient`` ... are Tornado's own code, which then
finds tornado_lite's ``IOLoop``, ``IOStream``, ``TCPServer`` and friends under Tornado's names.

Tornado's HTTP modules also call a few asyncio functions directly (``asyncio.sleep``,
``ensure_future``, ``create_task``, ``current_task``, ``except asyncio.CancelledError``).  Each real
HTTP-layer module gets one patch after it has run: its global name ``asyncio`` is rebound to an
:class:`AsyncioShim` that does those few things on tornado_lite's loop and hands every other attribute
to the real asyncio module.  That is the only change made to Tornado's modules.

This module must never import asyncio (the shim takes the real module from the globals of the Tornado
module it patches, which imported it already), must never be imported by the core at module level, and
must never load a second copy of a core module under another name.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tornado_lite import gen, util
from tornado_lite.concurrent import Future

# Tornado's module name (after "tornado.") -> the tornado_lite module that replaces it.
CORE_MODULES: Dict[str, str] = {
    name: "tornado_lite." + name
    for name in (
        "concurrent",
        "gen",
        "ioloop",
        "iostream",
        "locks",
        "log",
        "netutil",
        "options",
        "process",
        "queues",
        "tcpclient",
        "tcpserver",
        "testing",
        "util",
    )
}
# Provided only if this tornado_lite has it (the asyncio bridge is optional).
OPTIONAL_MODULES: Dict[str, str] = {"platform.asyncio": "tornado_lite.platform.asyncio"}

SUPPORTED_TORNADO = ((6, 3), (7, 0))  # lowest supported, first unsupported
_FIX = "pip install 'tornado_lite[http]' (which installs tornado>=6.3,<7)"


class InstallError(RuntimeError):
    """``install()`` was called too late: the real Tornado core is already loaded in this process."""


class TornadoHTTPLayerMissing(ImportError):
    """A module of Tornado's HTTP layer was asked for, and no supported Tornado is installed."""


# -- the asyncio shim -------------------------------------------------------------------------------


def _sleep(delay: float, result: Any = None) -> Any:
    """``asyncio.sleep`` on tornado_lite's loop: 0 is one loop pass, more is a timer."""
    if result is None:
        return gen.moment if delay <= 0 else gen.sleep(delay)
    return _sleep_then(delay, result)


async def _sleep_then(delay: float, result: Any) -> Any:
    await (gen.moment if delay <= 0 else gen.sleep(delay))
    return result


def _ensure_future(awaitable: Any, *, loop: Any = None) -> Future:
    """``asyncio.ensure_future``: a future of ours is returned as is, anything else becomes our task."""
    if isinstance(awaitable, Future):
        return awaitable
    return gen.convert_yielded(awaitable)


def _create_task(coro: Any, *, name: Optional[str] = None) -> Future:
    """``asyncio.create_task``: the coroutine runs as a tornado_lite task from the next loop pass."""
    return gen.convert_yielded(coro)


def _current_task(loop: Any = None) -> Any:
    """``asyncio.current_task``: the tornado_lite task whose step is running (None outside one)."""
    return gen.current_task()


class AsyncioShim:
    """What the name ``asyncio`` means inside Tornado's HTTP-layer modules after ``install()``.

    ``sleep``, ``ensure_future``, ``create_task`` and ``current_task`` act on tornado_lite's loop and
    tasks.  Every other attribute is the real asyncio module's, ``CancelledError`` included: a Tornado
    module imports asyncio, so the asyncio bridge is installed with it (see ``_ThenLoader``),
    and from then on a cancelled tornado_lite task raises the bridge's ``CancelledError``, a subclass of
    both asyncio's and ``concurrent.futures``'.  (A tuple of both classes would not do: Tornado writes
    ``except (Exception, asyncio.CancelledError)``, and Python refuses a tuple nested in ``except``.)
    """

    __slots__ = ("_asyncio",)
    sleep = staticmethod(_sleep)
    ensure_future = staticmethod(_ensure_future)
    create_task = staticmethod(_create_task)
    current_task = staticmethod(_current_task)

    def __init__(self, real_asyncio: types.ModuleType) -> None:
        self._asyncio = real_asyncio

    def __getattr__(self, name: str) -> Any:
        return getattr(self._asyncio, name)

    def __repr__(self) -> str:
        return "<tornado_lite asyncio shim over %r>" % (self._asyncio,)


_shims: Dict[int, AsyncioShim] = {}


def _shim_asyncio_global(module: types.ModuleType) -> None:
    """Rebinds ``module.asyncio`` (if the module imported asyncio) to the shim.  The only patch made."""
    real = module.__dict__.get("asyncio")
    if not isinstance(real, types.ModuleType) or real.__name__ != "asyncio":
        return
    shim = _shims.get(id(real))
    if shim is None:
        shim = _shims[id(real)] = AsyncioShim(real)
    module.__dict__["asyncio"] = shim


# -- loaders ----------------------------------------------------------------------------------------


class _AliasLoader(importlib.abc.Loader):
    """Loads ``tornado.X`` as the already existing module ``tornado_lite.X``: one object, two names."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._own_spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(self._target)
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system has just set __spec__ to the alias's spec; the module keeps its own, so
        # importlib.reload() and tools that read __spec__.name still see tornado_lite.X.
        module.__spec__ = self._own_spec


class _ThenLoader(importlib.abc.Loader):
    """Runs a module with its real loader, then does one thing to it (``after(module)``).

    (``before()``, if given, runs first: the HTTP layer's modules pick Tornado's C websocket mask there.)

    The three uses: a module of Tornado's HTTP layer gets the asyncio shim; the stdlib's asyncio, once it
    has run, gets tornado_lite's asyncio bridge installed on it (so ``asyncio.run()`` and Tornado's own
    asyncio calls run on tornado_lite's loop, while a program that never imports asyncio loads none);
    and the bridge module, imported under install(), installs itself once it is whole.  The module keeps
    its real loader afterwards, as if this one had never been there.
    """

    def __init__(
        self,
        real: Any,
        after: Callable[[types.ModuleType], None],
        before: Optional[Callable[[], None]] = None,
    ) -> None:
        self._real = real
        self._after = after
        self._before = before

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return self._real.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        if self._before is not None:
            self._before()
        module.__loader__ = self._real
        if module.__spec__ is not None:
            module.__spec__.loader = self._real
        self._real.exec_module(module)
        self._after(module)

    def __getattr__(self, name: str) -> Any:
        # get_source, get_resource_reader, is_package ... are the real loader's.
        return getattr(self._real, name)


_speedups_looked_for = False


def _use_tornado_speedups() -> None:
    """Once, before the first module of Tornado's HTTP layer runs: its C websocket mask, if it has one.

    ``tornado.util`` is ours, so Tornado's own choice of mask is never made; ``tornado.websocket``
    copies the name when it runs, so the swap comes before any HTTP-layer module does.  The
    environment variables that make Tornado use its pure-Python mask are honoured the same way.
    """
    global _speedups_looked_for
    if _speedups_looked_for:
        return
    _speedups_looked_for = True  # first: importing tornado.speedups comes back through this loader
    if os.environ.get("TORNADO_NO_EXTENSION") or os.environ.get("TORNADO_EXTENSION") == "0":
        return
    try:
        # Lazy: the real Tornado, which only its HTTP layer needs (and is being imported right now).
        from tornado.speedups import websocket_mask
    except ImportError:
        if os.environ.get("TORNADO_EXTENSION") == "1":
            raise
        return
    util.use_websocket_mask(websocket_mask)


_BRIDGE = "tornado_lite.platform.asyncio"


def _install_asyncio_bridge(_asyncio: Any = None) -> None:
    loading = sys.modules.get(_BRIDGE)
    if loading is not None and not hasattr(loading, "install"):
        # The bridge's own first line imported asyncio: it is half made, and installs itself once whole
        # (_install_the_bridge, after it has run).
        return
    # Lazy: the bridge imports asyncio, which only it may do, and only once something asked for asyncio.
    from tornado_lite.platform import asyncio as bridge

    bridge.install()


def _install_the_bridge(bridge: types.ModuleType) -> None:
    bridge.install()


class _StandInPackageLoader(importlib.abc.Loader):
    """The ``tornado`` package when the real Tornado is not installed: core modules only."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        module.__doc__ = "Stand-in for the tornado package (not installed): tornado_lite's core modules only."
        module.__path__ = []
        module.__dict__["__getattr__"] = _stand_in_getattr


def _stand_in_getattr(name: str) -> Any:
    if name in CORE_MODULES:
        return importlib.import_module("tornado." + name)
    raise AttributeError(f"module 'tornado' has no attribute {name!r}")


# -- the finder -------------------------------------------------------------------------------------


def _version_text(version_info: Any) -> str:
    return ".".join(str(part) for part in tuple(version_info)[:3])


def check_tornado_version(package: types.ModuleType) -> None:
    """Raises ``TornadoHTTPLayerMissing`` unless ``package`` is a supported real Tornado."""
    if getattr(package, "__loader__", None).__class__ is _StandInPackageLoader:
        raise TornadoHTTPLayerMissing(
            f"Tornado is not installed. tornado_lite provides Tornado's core; its HTTP layer (tornado.web, "
            f"httpserver, websocket, httpclient...) is the real Tornado's. Fix: {_FIX}"
        )
    version_info = getattr(package, "version_info", None)
    low, high = SUPPORTED_TORNADO
    if not isinstance(version_info, tuple) or not (low <= version_info[:2] < high):
        found = _version_text(version_info) if isinstance(version_info, tuple) else repr(version_info)
        raise TornadoHTTPLayerMissing(
            f"Tornado {found} (at {getattr(package, '__file__', '?')}) is not supported by tornado_lite's "
            f"install(): its HTTP layer needs 6.3 <= Tornado < 7. Fix: {_FIX}"
        )


class TornadoFinder(importlib.abc.MetaPathFinder):
    """The meta-path finder ``install()`` puts first: decides what every ``tornado.*`` name loads."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]] = None, target: Optional[types.ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname == "tornado":
            return self._package_spec(path, target)
        if fullname == "asyncio":
            return self._asyncio_spec(fullname, path, target, _install_asyncio_bridge)
        if fullname == _BRIDGE:
            return self._asyncio_spec(fullname, path, target, _install_the_bridge)
        if not fullname.startswith("tornado."):
            return None
        sub = fullname[len("tornado.") :]
        if sub in CORE_MODULES:
            return importlib.util.spec_from_loader(fullname, _AliasLoader(CORE_MODULES[sub]))
        if sub in OPTIONAL_MODULES:
            return self._optional_spec(fullname, OPTIONAL_MODULES[sub])
        package = sys.modules.get("tornado")
        if package is not None:
            check_tornado_version(package)
        spec = self._real_spec(fullname, path, target)
        if spec is None:
            return None
        if "." not in sub and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenLoader(spec.loader, _shim_asyncio_global, before=_use_tornado_speedups)
        return spec

    def _package_spec(
        self, path: Optional[Sequence[str]], target: Optional[types.ModuleType]
    ) -> importlib.machinery.ModuleSpec:
        spec = self._real_spec("tornado", path, target)
        if spec is not None:
            return spec
        return importlib.util.spec_from_loader("tornado", _StandInPackageLoader(), is_package=True)  # type: ignore

    def _asyncio_spec(
        self,
        fullname: str,
        path: Optional[Sequence[str]],
        target: Optional[types.ModuleType],
        after: Callable[[types.ModuleType], None],
    ) -> Optional[importlib.machinery.ModuleSpec]:
        """The spec of asyncio or of the bridge, with a loader that installs the bridge once it has run."""
        spec = self._real_spec(fullname, path, target)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenLoader(spec.loader, after)
        return spec

    def _optional_spec(self, fullname: str, target: str) -> importlib.machinery.ModuleSpec:
        try:
            found = importlib.util.find_spec(target)
        except ImportError:
            found = None
        if found is None:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: this tornado_lite has no {target} (tornado_lite's loop is not "
                "an asyncio loop; see docs/differences.md)",
                name=fullname,
            )
        return importlib.util.spec_from_loader(fullname, _AliasLoader(target))  # type: ignore[return-value]

    def _real_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[types.ModuleType]
    ) -> Optional[importlib.machinery.ModuleSpec]:
        """What the finders after this one would load for ``fullname``."""
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, TornadoFinder):
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


# -- install() --------------------------------------------------------------------------------------


def _ours(name: str) -> Optional[str]:
    sub = name[len("tornado.") :]
    return CORE_MODULES.get(sub) or OPTIONAL_MODULES.get(sub)


def _loaded_too_early() -> List[str]:
    """The ``tornado.*`` core modules already loaded from the real Tornado, by name."""
    early = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("tornado."):
            continue
        target = _ours(name)
        if target is not None and getattr(module, "__name__", None) != target:
            early.append(name)
    return sorted(early)


def installed() -> bool:
    """True once ``install()`` has run in this process."""
    return any(isinstance(finder, TornadoFinder) for finder in sys.meta_path)


def install() -> None:
    """Makes ``import tornado.X`` load tornado_lite's module X wherever tornado_lite has one.

    Call it before anything imports ``tornado``.  Afterwards, ``tornado.ioloop`` *is*
    ``tornado_lite.ioloop`` (and so on for every core module), while ``tornado.web``, ``httpserver``,
    ``websocket`` ... are the real Tornado's, running on tornado_lite's core.  Calling it again does
    nothing.  Raises ``InstallError`` if a Tornado core module was already imported (the process
    would otherwise mix two event loops).  The real Tornado (6.3 <= version < 7) is needed only when
    its HTTP layer is imported; without it, that import fails with ``TornadoHTTPLayerMissing``.

    asyncio runs on tornado_lite's loop too (the bridge, ``tornado_lite.platform.asyncio``), installed
    as soon as asyncio is imported (at once if it already is): ``asyncio.run(main())``, asyncio's
    primitives and Tornado's own asyncio calls all run on one loop.  A program that never imports
    asyncio loads none.
    """
    if installed():
        return
    early = _loaded_too_early()
    if early:
        raise InstallError(
            "tornado_lite.install() must be called before Tornado's core is imported; already imported: "
            + ", ".join(early)
            + ". Call tornado_lite.install() first (or run the program with python -m tornado_lite)."
        )
    sys.meta_path.insert(0, TornadoFinder())
    if "asyncio" in sys.modules:
        # Already loaded (by the program or a test runner's plugin): run it on our loop from now on.
        _install_asyncio_bridge()


def http_layer() -> types.ModuleType:
    """Installs, then returns the real ``tornado`` package after checking that it is supported."""
    install()
    package = importlib.import_module("tornado")
    check_tornado_version(package)
    return package


__all__: Tuple[str, ...] = (
    "AsyncioShim",
    "InstallError",
    "TornadoHTTPLayerMissing",
    "check_tornado_version",
    "http_layer",
    "install",
    "installed",
)
