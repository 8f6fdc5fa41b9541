"""tornado_lite: Tornado's networking core on its own event loop, with no asyncio underneath.

Change ``import tornado.X`` to ``import tornado_lite.X``; the names, signatures and observable
behaviour are Tornado 6's.  Submodules are imported lazily so that ``import tornado_lite`` stays
cheap and ``tornado_lite.ioloop`` works after a bare ``import tornado_lite``.
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


def __getattr__(name: str) -> typing.Any:
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
