"""Run a Tornado script on uvloop: ``python http_uvloop.py SCRIPT [ARGS...]``.

The uvloop column's counterpart of ``python -m tornado_lite SCRIPT``: it sets uvloop's event loop policy,
then runs the script as ``__main__``, so the benchmark app (servers/http_app.py) stays the same file on
every stack.  Benchmark scaffolding; tornado_lite never imports uvloop.
"""

import asyncio
import runpy
import sys

import uvloop


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: http_uvloop.py SCRIPT [ARGS...]")
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
