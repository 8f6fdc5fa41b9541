"""tornado_lite: Tornado's networking core on its own event loop, with no asyncio underneath.

Change ``import tornado.X`` to ``import tornado_lite.X``; the names, signatures and observable
behaviour are Tornado 6's.  Or call ``tornado_lite.install()`` before anything imports ``tornado``
(or run ``python -m tornado_lite app.py``): then ``import tornado.X`` gives tornado_lite's module X,
and Tornado's own HTTP layer (``tornado.web``, ``websocket`` ...) runs on it unchanged.

Submodules are imported lazily so that ``import tornado_lite`` stays cheap and
``tornado_lite.ioloop`` works after a bare ``import tornado_lite``.
"""

import importlib
import typing

version = "0.1.0"
version_info = (0, 1, 0, 0)

_SUBMODULES = frozenset(
    [
        "concurrent",
        "gen",
        "ioloop",
        "iostream",
        "locks",
        "log",
        "migrate",
        "netutil",
        "options",
        "process",
        "queues",
        "tcpclient",
        "tcpserver",
        "testing",
        "util",
    ]
)


def install() -> None:
    """Maps ``tornado.X`` to ``tornado_lite.X`` for every core module; see ``tornado_lite._install``."""
    # Imported here so that ``import tornado_lite`` stays cheap: the machinery is needed only on request.
    from tornado_lite._install import install as _install

    _install()


def __getattr__(name: str) -> typing.Any:
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
