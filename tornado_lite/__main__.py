"""``python -m tornado_lite SCRIPT [ARGS...]`` / ``python -m tornado_lite -m MODULE [ARGS...]``.

Runs an unchanged Tornado program (or its test suite: ``python -m tornado_lite -m pytest tests/``) on
tornado_lite: calls ``tornado_lite.install()``, then runs the script or module the way ``python`` would
(``sys.argv``, ``__main__``, ``sys.path[0]``, exit status, tracebacks that start in the user's code).
This module only launches; it must never change what the program does beyond ``install()``.
"""

import os
import runpy
import sys
from typing import List, NoReturn, Optional

from tornado_lite._install import install

USAGE = """usage: python -m tornado_lite SCRIPT [ARGS...]
       python -m tornado_lite -m MODULE [ARGS...]

Runs SCRIPT (or MODULE, like python -m) with tornado_lite.install() in effect: every `import tornado.X`
of a core module (ioloop, iostream, tcpserver, ...) gives tornado_lite's, while Tornado's HTTP layer
(tornado.web, httpserver, websocket, ...) is the real Tornado's, running on tornado_lite.
"""


def _usage_error(message: str) -> NoReturn:
    sys.stderr.write(f"{message}\n{USAGE}")
    raise SystemExit(2)


def _report_uncaught(exc: BaseException) -> int:
    """Prints ``exc`` as Python does for an uncaught error, without this launcher's frames; returns 1."""
    tb = exc.__traceback__
    # By globals' identity: run as `-m tornado_lite`, this module's __name__ is "__main__", as is the
    # script's, and runpy may be frozen (no file name to compare).
    ours, runpys = globals(), vars(runpy)
    while tb is not None and (tb.tb_frame.f_globals is ours or tb.tb_frame.f_globals is runpys):
        tb = tb.tb_next
    sys.excepthook(type(exc), exc.with_traceback(tb), tb)
    return 1


def _run_script(path: str, args: List[str]) -> None:
    if not os.path.exists(path):
        _usage_error(f"python -m tornado_lite: can't open file {path!r}: no such file")
    sys.argv[:] = [path, *args]
    # As `python SCRIPT`: the script's directory comes first on sys.path, instead of the current one.
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    runpy.run_path(path, run_name="__main__")


def _run_module(name: str, args: List[str]) -> None:
    sys.argv[:] = [name, *args]  # run_module puts the module's file name in sys.argv[0]
    runpy.run_module(name, run_name="__main__", alter_sys=True)


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        if not args:
            _usage_error("python -m tornado_lite: nothing to run")
        sys.stdout.write(USAGE)
        return 0
    install()
    try:
        if args[0] == "-m":
            if len(args) < 2:
                _usage_error("python -m tornado_lite: -m needs a module name")
            _run_module(args[1], args[2:])
        else:
            _run_script(args[0], args[1:])
    except Exception as exc:  # SystemExit and KeyboardInterrupt go on up, as under plain python
        return _report_uncaught(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
