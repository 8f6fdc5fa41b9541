"""A bounded soak: one tornado_lite server process under a mix of normal and faulty clients.

    python tests/faults/soak.py [--seconds 60] [--workers 4] [--seed N]      (``make soak``; SOAK_SECONDS)

The server is ``fault_server.py`` (a line-echo server on a plain port and a TLS port, with a TLS
handshake timeout).  Client threads pick scenarios at random until time is up: echoes of lines of
every size, bursts of 100 concurrent connections, half-closes, slow readers, TLS echoes, and faults
(resets mid-line, garbage and plain text on the TLS port, silent TLS clients, over-long lines, port
scans).  Every echoed byte is checked.

The run has a warm-up (a quarter of it, at most 15 s) and a main phase; after each, the clients stop,
the server's connections drain, and its RSS and descriptors are read (from /proc).  It prints what
it saw and exits non-zero if any byte was lost or corrupted, any client met an error it did not
provoke, any descriptor leaked, or the server's RSS grew more than 10% after the warm-up.
"""

import argparse
import collections
import os
import random
import selectors
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import trustme  # noqa: E402

from conftest import FaultServer  # noqa: E402
from load_client import Failed, echo_round, open_connections, raise_nofile  # noqa: E402

IO_TIMEOUT = 30.0
HANDSHAKE_TIMEOUT = 1.0
MAX_LINE = 1 << 20  # the server's limit
RSS_GROWTH_LIMIT = 0.10


class Unexpected(Exception):
    """A client met something it did not provoke; ``kind`` names it in the report."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class Tally:
    """Counters shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: Dict[str, int] = collections.Counter()
        self.injected: Dict[str, int] = collections.Counter()
        self.unexpected: Dict[str, int] = collections.Counter()
        self.examples: List[str] = []
        self.verified = 0
        self.connections = 0

    def add(self, **counts: int) -> None:
        with self.lock:
            self.verified += counts.get("verified", 0)
            self.connections += counts.get("connections", 0)

    def count(self, table: str, kind: str) -> None:
        with self.lock:
            getattr(self, table)[kind] += 1


class Clients:
    """The scenarios; each makes its own connections and closes them."""

    def __init__(self, port: int, tls_port: int, context: ssl.SSLContext, tally: Tally) -> None:
        self.port = port
        self.tls_port = tls_port
        self.context = context
        self.tally = tally

    # -- helpers --

    def connect(self, port: Optional[int] = None) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port or self.port), timeout=IO_TIMEOUT)
        self.tally.add(connections=1)
        return sock

    @staticmethod
    def line(rng: random.Random, size: int) -> bytes:
        return rng.randbytes(size).replace(b"\n", b"\x00") + b"\n"

    @staticmethod
    def recv_exactly(sock: socket.socket, size: int) -> bytes:
        chunks = []
        while size:
            chunk = sock.recv(min(size, 1 << 20))
            if not chunk:
                raise Unexpected("lost: connection closed early", f"{size} bytes missing")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def check(self, got: bytes, expected: bytes) -> None:
        if got != expected:
            raise Unexpected("corrupted", f"{len(got)} bytes differ from the {len(expected)} sent")
        self.tally.add(verified=len(expected))

    @staticmethod
    def wait_for_hangup(sock: socket.socket) -> None:
        """Reads until the server closes (EOF or reset); anything else is unexpected."""
        try:
            while sock.recv(65536):
                pass
        except (ConnectionResetError, ssl.SSLError):
            pass
        except socket.timeout:
            raise Unexpected("server did not close a faulty connection") from None

    @staticmethod
    def rst_close(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    # -- normal traffic --

    def echo(self, rng: random.Random) -> None:
        with self.connect() as sock:
            for _ in range(rng.randint(1, 20)):
                size = rng.choice((rng.randint(0, 100), rng.randint(100, 16384), rng.randint(16384, 262144)))
                line = self.line(rng, size)
                sock.sendall(line)
                self.check(self.recv_exactly(sock, len(line)), line)

    def half_close(self, rng: random.Random) -> None:
        with self.connect() as sock:
            lines = b"".join(self.line(rng, rng.randint(0, 2000)) for _ in range(rng.randint(1, 10)))
            sock.sendall(lines)
            sock.shutdown(socket.SHUT_WR)
            got = self.recv_exactly(sock, len(lines))
            if sock.recv(1):
                raise Unexpected("corrupted", "bytes after the echo")
            self.check(got, lines)

    def slow_reader(self, rng: random.Random) -> None:
        """Sends 1 MiB in 16 KiB lines from a second thread while reading slowly at first."""
        lines = [self.line(rng, 16383) for _ in range(64)]
        expected = b"".join(lines)
        with self.connect() as sock:
            sender_error: List[BaseException] = []

            def send() -> None:
                try:
                    for line in lines:
                        sock.sendall(line)
                except BaseException as e:  # reported by the reader's thread
                    sender_error.append(e)

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            got = bytearray()
            while len(got) < len(expected):
                chunk = sock.recv(4096 if len(got) < 256 * 1024 else 1 << 20)
                if not chunk:
                    break
                got += chunk
                if len(got) < 256 * 1024:
                    time.sleep(0.002)  # a reader slower than the writer: the server must hold back
            sender.join(IO_TIMEOUT)
            if sender_error:
                raise Unexpected("lost: send failed", repr(sender_error[0]))
            if len(got) < len(expected):
                raise Unexpected("lost: connection closed early", f"{len(expected) - len(got)} bytes missing")
            self.check(bytes(got), expected)

    def burst(self, rng: random.Random) -> None:
        """100 connections open at once, three lines each (the load test's client)."""
        errors: Dict[str, int] = collections.Counter()
        deadline = time.monotonic() + 60
        try:
            conns = open_connections(self.port, 100, 100, deadline, errors)
        except Failed as e:
            raise Unexpected("burst connect failed", str(e)) from None
        self.tally.add(connections=len(conns))
        sel = selectors.DefaultSelector()
        try:
            for conn in conns:
                sel.register(conn.sock, selectors.EVENT_READ, conn)
            for round_ in range(3):
                self.tally.add(verified=echo_round(sel, conns, round_ + rng.randint(0, 1000), deadline))
        except Failed as e:
            raise Unexpected("corrupted" if "expected" in str(e) else "lost: burst", str(e)) from None
        finally:
            sel.close()
            for conn in conns:
                conn.sock.close()

    def tls_echo(self, rng: random.Random) -> None:
        with self.context.wrap_socket(self.connect(self.tls_port), server_hostname="localhost") as tls:
            for _ in range(rng.randint(1, 10)):
                line = self.line(rng, rng.randint(0, 50000))
                tls.sendall(line)
                self.check(self.recv_exactly(tls, len(line)), line)

    # -- faults --

    def reset_mid_line(self, rng: random.Random) -> None:
        sock = self.connect()
        sock.sendall(self.line(rng, rng.randint(1, 5000))[:-1])  # no end of line: the server is mid-read
        self.rst_close(sock)
        self.tally.count("injected", "reset mid-line")

    def scan(self, rng: random.Random) -> None:
        port = rng.choice((self.port, self.tls_port))
        sock = self.connect(port)
        if rng.random() < 0.5:
            self.rst_close(sock)
        else:
            sock.close()
        self.tally.count("injected", "port scan")

    def tls_garbage(self, rng: random.Random) -> None:
        with self.connect(self.tls_port) as sock:
            if rng.random() < 0.5:
                sock.sendall(rng.randbytes(rng.randint(1, 4096)))
                kind = "garbage on TLS port"
            else:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                kind = "plain text on TLS port"
            self.wait_for_hangup(sock)
        self.tally.count("injected", kind)

    def tls_silent(self, rng: random.Random) -> None:
        with self.connect(self.tls_port) as sock:
            self.wait_for_hangup(sock)  # closed by the server's handshake timeout
        self.tally.count("injected", "silent TLS client")

    def too_long(self, rng: random.Random) -> None:
        with self.connect() as sock:
            try:
                sock.sendall(b"x" * (MAX_LINE + 65536))  # never a newline
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may close before we are done
            self.wait_for_hangup(sock)
        self.tally.count("injected", "line over max_bytes")


# (scenario, weight): normal traffic dominates; every fault still comes up many times a minute.
MIX = [
    ("echo", 30),
    ("half_close", 10),
    ("burst", 3),
    ("slow_reader", 3),
    ("tls_echo", 10),
    ("reset_mid_line", 10),
    ("scan", 8),
    ("tls_garbage", 8),
    ("tls_silent", 2),
    ("too_long", 2),
]


def worker(clients: Clients, seed: int, until: float, tally: Tally, every_first: bool = False) -> None:
    rng = random.Random(seed)
    names = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    # In the warm-up each scenario runs once first, so the server meets all of them before its RSS is taken.
    first = rng.sample(names, len(names)) if every_first else []
    while time.monotonic() < until:
        name = first.pop() if first else rng.choices(names, weights)[0]
        tally.count("runs", name)
        try:
            getattr(clients, name)(rng)
        except Unexpected as e:
            tally.count("unexpected", e.kind)
            with tally.lock:
                if len(tally.examples) < 10:
                    tally.examples.append(f"{name}: {e}")
        except (OSError, ValueError) as e:
            kind = f"{name}: {type(e).__name__}"
            tally.count("unexpected", kind)
            with tally.lock:
                if len(tally.examples) < 10:
                    tally.examples.append(f"{name}: {e!r}")


def run_phase(clients: Clients, workers: int, seconds: float, seed: int, tally: Tally, warmup: bool) -> None:
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=worker, args=(clients, seed * 1000 + i, until, tally, warmup), daemon=True)
        for i in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 5 * IO_TIMEOUT)
        if thread.is_alive():
            raise SystemExit("soak: a client thread is stuck")


def proc_status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def quiesce(server: FaultServer, timeout: float = 60) -> dict:
    """Waits until the server has no connection left, collects its garbage, returns its stats."""
    deadline = time.monotonic() + timeout
    while True:
        stats = server.stats()
        if stats["open"] == 0:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"soak: the server still has {stats['open']} connections open")
        time.sleep(0.1)
    server.command("gc")
    server.expect(r"^GC \d+$")
    return server.stats()


class RssMonitor(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.25):
            try:
                self.peak = max(self.peak, proc_status(self.pid, "VmRSS"))
            except (OSError, KeyError):
                return


def mib(kb: int) -> str:
    return f"{kb / 1024:.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 60)))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    raise_nofile()
    warmup = min(15.0, args.seconds / 4)
    main_phase = args.seconds - warmup

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        cert.private_key_pem.write_to_path(key_file)
        for i, blob in enumerate(cert.cert_chain_pems):
            blob.write_to_path(cert_file, append=i > 0)
        server = FaultServer("--tls", cert_file, key_file, "--handshake-timeout", str(HANDSHAKE_TIMEOUT),
                             "--backlog", "1024")
        tls_port = int(server.expect(r"^TLSPORT (\d+)$").group(1))
    tally = Tally()
    clients = Clients(server.port, tls_port, context, tally)
    monitor = RssMonitor(server.pid)
    started = time.monotonic()
    try:
        fds_start = proc_fds(server.pid)
        client_fds_start = len(os.listdir("/proc/self/fd"))
        monitor.start()
        run_phase(clients, args.workers, warmup, args.seed, tally, warmup=True)
        after_warmup = quiesce(server)
        rss_warm = proc_status(server.pid, "VmRSS")
        fds_warm = proc_fds(server.pid)
        run_phase(clients, args.workers, main_phase, args.seed + 1, tally, warmup=False)
        final = quiesce(server)
        rss_end = proc_status(server.pid, "VmRSS")
        rss_peak = max(monitor.peak, proc_status(server.pid, "VmHWM"))
        fds_end = proc_fds(server.pid)
        client_fds_end = len(os.listdir("/proc/self/fd"))
        server_log_errors = server.log(r"Traceback|^ERROR|^CRITICAL")
    finally:
        monitor.stopping.set()
        status = server.close()
    elapsed = time.monotonic() - started

    growth = rss_end / rss_warm - 1
    lost_or_corrupted = sum(n for kind, n in tally.unexpected.items() if kind.startswith(("lost", "corrupted")))
    other_unexpected = sum(tally.unexpected.values()) - lost_or_corrupted
    poller = os.environ.get("TORNADO_LITE_POLLER") or "default"
    print(f"soak: {elapsed:.0f}s ({warmup:.0f}s warm-up), {args.workers} client threads, seed {args.seed}, "
          f"poller {poller}, server pid {server.pid}")
    print(f"connections served: {final['accepted']} (warm-up {after_warmup['accepted']})")
    print(f"bytes echoed and verified: {tally.verified} ({tally.verified / 2**20:.1f} MiB); "
          f"server echoed {final['bytes_echoed']}")
    print("scenarios run: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.runs.items())))
    print("faults injected: " + (", ".join(f"{k} {v}" for k, v in sorted(tally.injected.items())) or "none"))
    print("errors by kind, server side: "
          + (", ".join(f"{k} {v}" for k, v in sorted(final["errors"].items())) or "none"))
    print("errors by kind, unexpected (client side): "
          + (", ".join(f"{k} {v}" for k, v in sorted(tally.unexpected.items())) or "none"))
    for example in tally.examples:
        print(f"  e.g. {example}")
    print(f"server log errors/tracebacks: {len(server_log_errors)}")
    for line in server_log_errors[:5]:
        print(f"  {line}")
    print(f"peak RSS: {mib(rss_peak)}; after warm-up {mib(rss_warm)}, at end {mib(rss_end)} ({growth:+.1%})")
    print(f"server fds: at start {fds_start}, after warm-up {fds_warm}, at end {fds_end}; "
          f"client fds: {client_fds_start} -> {client_fds_end}")

    failures = []
    if lost_or_corrupted:
        failures.append(f"{lost_or_corrupted} echoes lost or corrupted")
    if other_unexpected:
        failures.append(f"{other_unexpected} unexpected client errors")
    if fds_end != fds_start or client_fds_end != client_fds_start:
        failures.append("descriptors leaked")
    if growth > RSS_GROWTH_LIMIT:
        failures.append(f"RSS grew {growth:.1%} after warm-up (limit {RSS_GROWTH_LIMIT:.0%})")
    if server_log_errors:
        failures.append("the server logged errors")
    if status != 0:
        failures.append(f"the server exited with status {status}")
    print("RESULT: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
