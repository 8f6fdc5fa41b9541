"""A many-connection line-echo client on raw non-blocking sockets and ``selectors`` (no tornado_lite).

    python load_client.py --port P [--connections N] [--lines L] [--max-pending K] [--timeout S]

Opens N connections to 127.0.0.1:P (at most K connecting at once) and keeps them all open; then, L
times, sends one line on every connection and waits until every connection has its line back.  Each
line names its connection and round and carries a payload derived from both, so a byte lost, altered,
reordered or delivered to the wrong connection is caught.  Prints ``RESULT {json}`` and exits 0 only
if every line came back intact; the client's own descriptors are counted after it closed everything.

``echo_round``/``open_connections`` are also used by the soak (``soak.py``).
"""

import argparse
import errno
import json
import os
import resource
import selectors
import socket
import sys
import time
from typing import Dict, List


def make_line(conn: int, round_: int) -> bytes:
    """A line of 32..543 bytes: its connection, its round, and a payload only they produce."""
    size = 16 + (conn * 7 + round_ * 13) % 512
    digit = b"0123456789abcdef"[(conn + round_) % 16 : (conn + round_) % 16 + 1]
    return b"c%d r%d " % (conn, round_) + digit * size + b"\n"


class Conn:
    __slots__ = ("sock", "index", "out", "expected", "got", "done")

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index
        self.out = b""
        self.expected = b""
        self.got = bytearray()
        self.done = True


class Failed(Exception):
    pass


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def open_connections(
    port: int, count: int, max_pending: int, deadline: float, errors: Dict[str, int]
) -> List[Conn]:
    """Connects ``count`` sockets (at most ``max_pending`` in flight); refused/failed ones are retried."""
    sel = selectors.DefaultSelector()
    conns: List[Conn] = []
    pending = 0
    started = 0
    try:
        while len(conns) < count:
            while started < count and pending < max_pending:
                sock = socket.socket()
                sock.setblocking(False)
                code = sock.connect_ex(("127.0.0.1", port))
                if code not in (0, errno.EINPROGRESS):
                    sock.close()
                    errors["connect:" + errno.errorcode.get(code, str(code))] += 1
                    raise Failed(f"connect failed at once: {os.strerror(code)}")
                sel.register(sock, selectors.EVENT_WRITE, started)
                started += 1
                pending += 1
            if time.monotonic() > deadline:
                raise Failed(f"only {len(conns)} of {count} connections established in time")
            for key, _ in sel.select(1.0):
                sock = key.fileobj  # type: ignore[assignment]
                sel.unregister(sock)
                pending -= 1
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    sock.close()
                    errors["connect:" + errno.errorcode.get(code, str(code))] += 1
                    raise Failed(f"connection failed: {os.strerror(code)}")
                conns.append(Conn(sock, key.data))
    except BaseException:
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        for conn in conns:
            conn.sock.close()
        raise
    finally:
        sel.close()
    conns.sort(key=lambda c: c.index)
    return conns


def echo_round(sel: selectors.BaseSelector, conns: List[Conn], round_: int, deadline: float) -> int:
    """Sends one line on every connection and waits for all of them to come back; returns bytes echoed."""
    waiting = 0
    total = 0
    for conn in conns:
        line = make_line(conn.index, round_)
        conn.expected = line
        conn.got.clear()
        conn.done = False
        waiting += 1
        total += len(line)
        try:
            sent = conn.sock.send(line)
        except BlockingIOError:
            sent = 0
        if sent < len(line):
            conn.out = line[sent:]
            sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
    while waiting:
        if time.monotonic() > deadline:
            raise Failed(f"round {round_}: {waiting} connections still waiting for their echo")
        for key, events in sel.select(1.0):
            conn = key.data
            if events & selectors.EVENT_WRITE and conn.out:
                try:
                    sent = conn.sock.send(conn.out)
                except BlockingIOError:
                    sent = 0
                conn.out = conn.out[sent:]
                if not conn.out:
                    sel.modify(conn.sock, selectors.EVENT_READ, conn)
            if events & selectors.EVENT_READ:
                try:
                    data = conn.sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    raise Failed(f"connection {conn.index} closed by the server in round {round_}")
                conn.got += data
                if len(conn.got) >= len(conn.expected):
                    if conn.got != conn.expected:
                        raise Failed(
                            f"connection {conn.index} round {round_}: got {bytes(conn.got[:80])!r}..., "
                            f"expected {conn.expected[:80]!r}..."
                        )
                    if not conn.done:
                        conn.done = True
                        waiting -= 1
    return total


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=10)
    parser.add_argument("--max-pending", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args()
    raise_nofile()
    started = time.monotonic()
    deadline = started + args.timeout
    errors: Dict[str, int] = __import__("collections").Counter()
    result = {"connections": 0, "lines_ok": 0, "bytes": 0, "errors": errors}
    conns: List[Conn] = []
    sel = selectors.DefaultSelector()
    ok = False
    try:
        conns = open_connections(args.port, args.connections, args.max_pending, deadline, errors)
        result["connections"] = len(conns)
        result["connect_seconds"] = round(time.monotonic() - started, 2)
        for conn in conns:
            sel.register(conn.sock, selectors.EVENT_READ, conn)
        for round_ in range(args.lines):
            result["bytes"] += echo_round(sel, conns, round_, deadline)
            result["lines_ok"] += len(conns)
        ok = True
    except Failed as e:
        result["failure"] = str(e)
    finally:
        sel.close()
        for conn in conns:
            conn.sock.close()
    result["seconds"] = round(time.monotonic() - started, 2)
    result["fds_after_close"] = len(os.listdir("/proc/self/fd")) - 1
    print("RESULT " + json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
