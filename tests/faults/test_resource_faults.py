"""Running out of descriptors while accepting: the server backs off instead of spinning, logs once per
episode, keeps serving the connections it has, and accepts again once descriptors are freed.

The server runs in a child interpreter with a low RLIMIT_NOFILE (``fault_server.py --nofile``); the
test is its client.  "No spin" is judged by the loop's own pass counter (``IOLoop.stats().passes``)
over a window, never by timing.
"""

import socket
import time

from conftest import FaultServer

# A loop waiting out its back-off makes a few passes a second (one timer, one failed accept, our
# stats commands); one spinning on a readable listening socket it cannot accept from makes thousands.
IDLE_WINDOW = 1.5
MAX_PASSES_IN_WINDOW = 60

CANNOT_ACCEPT = r"Cannot accept connections"
ACCEPTING_AGAIN = r"Accepting connections again"


def echo(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {got!r}")
        got += chunk
    return got


def wait_for(predicate, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_emfile_while_accepting_backs_off_serves_and_recovers():
    limit = 64
    queued = 20  # connections beyond what the server can take: they wait in the listen backlog
    server = FaultServer("--nofile", str(limit))
    clients = []
    try:
        base = server.stats()
        # base["fds"] counts the descriptor listdir itself used; every other free slot takes one connection.
        free = limit - (base["fds"] - 1)
        for _ in range(free + queued):
            clients.append(socket.create_connection(("127.0.0.1", server.port), timeout=20))

        server.wait_log(CANNOT_ACCEPT)
        stats = wait_for(lambda: (s := server.stats())["accepted"] == free and s, what=f"{free} accepted")
        assert stats["open"] == free

        # Paused, not spinning: a handful of passes over the window, however many retries it made.
        before = server.stats()
        time.sleep(IDLE_WINDOW)
        after = server.stats()
        assert after["passes"] - before["passes"] < MAX_PASSES_IN_WINDOW, (before, after)
        assert after["accepted"] == free
        # Logged once for the episode, not once per retry.
        assert len(server.log(CANNOT_ACCEPT)) == 1, server.stderr()

        # The connections it has are still served, every one of them.
        for i, sock in enumerate(clients[:free]):
            assert echo(sock, b"still here %d\n" % i) == b"still here %d\n" % i

        # Free ten descriptors: the next ten queued connections are taken and served.
        for sock in clients[:10]:
            sock.close()
        server.wait_log(ACCEPTING_AGAIN)
        for i, sock in enumerate(clients[free : free + 10]):
            assert echo(sock, b"queued %d\n" % i) == b"queued %d\n" % i
        # Ten more still wait: that is a second episode, logged once more.
        server.wait_log(CANNOT_ACCEPT, count=2)
        assert wait_for(lambda: server.stats()["accepted"] == free + 10, what="ten more accepted")

        # Everybody leaves: the last queued ones are accepted and closed too, every descriptor returns.
        for sock in clients:
            sock.close()
        clients = []
        final = wait_for(
            lambda: (s := server.stats())["open"] == 0 and s["accepted"] == free + queued and s,
            what="all connections accepted and closed",
        )
        assert final["fds"] == base["fds"], (base, final)
        assert final["handlers"] == base["handlers"]
        fresh = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        clients.append(fresh)
        assert echo(fresh, b"fresh\n") == b"fresh\n"
        assert not server.log(r"Traceback|ERROR tornado\.application"), server.stderr()
    finally:
        for sock in clients:
            sock.close()
        assert server.close() == 0, server.stderr()
