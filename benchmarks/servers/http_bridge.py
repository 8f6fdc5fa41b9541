"""Run a script on tornado_lite with the asyncio bridge installed: ``python http_bridge.py SCRIPT [ARGS...]``.

``python -m tornado_lite SCRIPT`` after ``tornado_lite.platform.asyncio.install()``: asyncio's event loop
policy hands out tornado_lite's loop, so a handler's ``await asyncio.sleep(0)`` (real asyncio, in user
code) runs on it.  The issue-14 rows of the benchmark start servers this way; once ``tornado_lite.install()``
installs the bridge itself, this launcher and ``python -m tornado_lite`` do the same thing.
Benchmark scaffolding.
"""

import sys

import tornado_lite.platform.asyncio as bridge
from tornado_lite.__main__ import main

if __name__ == "__main__":
    bridge.install()
    sys.exit(main(sys.argv[1:]))
