"""Tests of Tornado's own HTTP layer (tornado.web, httpserver, websocket, httpclient) on tornado_lite.

The test modules here import ``tornado.*`` exactly as a Tornado application does.  With the default
``TORNADO_LITE_TEST_IMPL=tornado_lite`` this conftest calls ``tornado_lite.install()`` first, so those
imports give tornado_lite's core under Tornado's HTTP layer; with ``TORNADO_LITE_TEST_IMPL=tornado`` it
does nothing and the same tests run on real Tornado, which proves them right.

install() is process-wide: the rest of the suite, collected in the same process, then sees ``tornado.*``
mapped as well.  That is harmless because no other test module imports ``tornado`` (they import
``tornado_lite.*``, or ``TORNADO_LITE_TEST_IMPL + ".X"``, which is then also tornado_lite's module).
"""

import os

IMPL = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")

if IMPL == "tornado_lite":
    import tornado_lite

    tornado_lite.install()
