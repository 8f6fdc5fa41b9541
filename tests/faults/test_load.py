"""Load: 10,000 connections open at once, each echoing 10 lines through one tornado_lite server.

The server is ``fault_server.py`` in a child interpreter with RLIMIT_NOFILE raised to the hard limit;
the client is ``load_client.py`` in another (raw non-blocking sockets and ``selectors``, nothing of
tornado_lite, so the server is judged by an independent peer).  Every line must come back intact and
in order on its own connection, and once the clients leave every server descriptor must be released.
"""

import json
import resource
import subprocess
import sys
import time

import pytest

from conftest import HERE, FaultServer

CONNECTIONS = 10_000
LINES = 10
LOAD_CLIENT = f"{HERE}/load_client.py"


def test_ten_thousand_concurrent_connections_echo_every_line_and_release_every_fd():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < CONNECTIONS + 100:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {CONNECTIONS + 100}: the server cannot hold the connections")
    nofile = CONNECTIONS + 1000 if hard == resource.RLIM_INFINITY else min(hard, CONNECTIONS + 1000)
    server = FaultServer("--nofile", str(nofile), "--backlog", "4096")
    try:
        base = server.stats()
        run = subprocess.run(
            [sys.executable, LOAD_CLIENT, "--port", str(server.port), "--connections", str(CONNECTIONS),
             "--lines", str(LINES), "--timeout", "90"],
            capture_output=True,
            text=True,
            timeout=150,
        )
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, run.stdout + run.stderr
        result = json.loads(lines[-1][len("RESULT "):])
        assert run.returncode == 0, (result, server.stderr())
        assert result["connections"] == CONNECTIONS
        assert result["lines_ok"] == CONNECTIONS * LINES
        assert result["errors"] == {}
        assert result["fds_after_close"] <= 3  # stdin, stdout, stderr

        deadline = time.monotonic() + 60
        while True:
            final = server.stats()
            if final["open"] == 0 and final["closed"] == CONNECTIONS:
                break
            assert time.monotonic() < deadline, final
            time.sleep(0.2)
        assert final["accepted"] == CONNECTIONS
        assert final["bytes_echoed"] == result["bytes"]
        assert final["errors"] == {}, final
        assert final["fds"] == base["fds"], (base, final)
        assert final["handlers"] == base["handlers"]
        assert not server.log(r"Traceback|ERROR"), server.stderr()
    finally:
        assert server.close() == 0, server.stderr()
