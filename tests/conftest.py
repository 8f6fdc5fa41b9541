"""Shared pytest configuration for tornado_lite's own tests."""

import os
import sys

# Sample Tornado apps for the migration tool's tests: they import tornado, which is not installed here;
# tests/test_migrate.py copies them, migrates them and runs their checks in a subprocess.
collect_ignore = ["migrate_samples"]

# tests/http_layer runs Tornado's HTTP layer on tornado_lite through install(), which is process-wide (it
# maps tornado.*, and installs the asyncio bridge, which changes the cancellation class and IOLoop()'s
# class).  So it runs in a process of its own, as a user runs an app: `python -m tornado_lite -m pytest
# tests/http_layer` (make test does both).  On real Tornado (TORNADO_LITE_TEST_IMPL=tornado) it is just
# collected.
if os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite") == "tornado_lite":
    _install = sys.modules.get("tornado_lite._install")
    if _install is None or not _install.installed():
        collect_ignore.append("http_layer")
