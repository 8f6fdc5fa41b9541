"""Pure-Python fallback for loadgen.c: the same command line, the same JSON on stdout.

The suite uses it only where no C compiler is found (and for TLS when the C build lacks OpenSSL).
It is a plain ``selectors`` loop over non-blocking sockets.  It costs several microseconds per
message, about as much as the servers it drives, so the driver reports its CPU use next to the
server's: when it is near 100% the figures measure the generator, not the server, and the report
says so.
"""

import argparse
import errno
import json
import os
import resource
import selectors
import signal
import socket
import ssl
import sys
import time
import typing

CHUNK_READ = 65536
SETUP_BATCH = 200  # idle mode: connections in setup at once (keeps the listen backlog from overflowing)

FREE, CONNECTING, HANDSHAKE, RUNNING = range(4)


class Conn:
    __slots__ = ("sock", "state", "sent", "target", "recvd", "t_open", "times", "established", "mask", "retry")

    def __init__(self) -> None:
        self.sock: typing.Any = None
        self.state = FREE
        self.sent = 0
        self.target = 0
        self.recvd = 0
        self.t_open = 0.0
        self.times: typing.List[float] = []
        self.established = False
        self.mask = 0
        self.retry = 0


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def server_cpu(pid: int) -> float:
    """CPU seconds used by every thread of pid so far, or -1 when /proc cannot tell."""
    if not pid:
        return -1.0
    total = 0.0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0]) * 1e-9
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        return -1.0
    return total


class LoadGen:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.sel = selectors.DefaultSelector()
        self.phase = "setup"
        self.msgs = self.bytes = self.connections = self.errors = self.ready = 0
        self.lat: typing.List[float] = []
        self.last_error = ""
        size = args.size
        line = b"x" * (size - 1) + b"\n"
        self.pattern = memoryview(line * (args.chunk // size + 2))
        self.ssl_ctx: typing.Optional[ssl.SSLContext] = None
        if args.tls:
            ctx = ssl.create_default_context(cafile=args.ca)
            self.ssl_ctx = ctx
        self.conns = [Conn() for _ in range(args.conns)]

    # -- connection life cycle -------------------------------------------------------------
    def note_error(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{what}: {exc}"

    def open(self, c: Conn) -> None:
        c.sent = c.target = c.recvd = c.retry = 0
        c.times = []
        c.established = False
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.t_open = time.monotonic()
        err = s.connect_ex((self.a.host, self.a.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            c.state = FREE
            self.note_error("connect", OSError(err, os.strerror(err)))
            return
        c.sock = s
        c.state = CONNECTING
        c.mask = selectors.EVENT_WRITE
        self.sel.register(s, c.mask, c)

    def close(self, c: Conn) -> None:
        if c.sock is not None:
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()
        c.sock = None
        c.state = FREE

    def set_mask(self, c: Conn, mask: int) -> None:
        if mask != c.mask:
            c.mask = mask
            self.sel.modify(c.sock, mask, c)

    def connected(self, c: Conn) -> None:
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.note_error("connect", OSError(err, os.strerror(err)))
            self.close(c)
            return
        if self.ssl_ctx is not None:
            self.sel.unregister(c.sock)
            c.sock = self.ssl_ctx.wrap_socket(
                c.sock, server_hostname=self.a.sni, do_handshake_on_connect=False
            )
            self.sel.register(c.sock, c.mask, c)
            c.state = HANDSHAKE
            self.handshake(c)
            return
        self.start(c)

    def handshake(self, c: Conn) -> None:
        try:
            c.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.set_mask(c, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self.set_mask(c, selectors.EVENT_WRITE)
            return
        except (OSError, ssl.SSLError) as e:
            self.note_error("TLS handshake", e)
            self.close(c)
            return
        self.start(c)

    def start(self, c: Conn) -> None:
        c.state = RUNNING
        mode = self.a.mode
        lines = self.a.depth if mode in ("pingpong", "pipeline") else (0 if mode == "bulk" else 1)
        now = time.monotonic()
        for _ in range(lines):
            c.target += self.a.size
            c.times.append(now)
        self.flush(c)

    # -- data --------------------------------------------------------------------------------
    def wanted(self, c: Conn) -> int:
        if self.a.mode == "bulk":
            if self.phase == "done":
                return 0
            return max(0, c.recvd + self.a.window - c.sent)
        return c.target - c.sent

    def flush(self, c: Conn) -> bool:
        """Write what is wanted; False if the connection failed and was closed."""
        blocked = False
        size, chunk = self.a.size, self.a.chunk
        while True:
            want = self.wanted(c)
            if want <= 0:
                break
            n = c.retry or min(want, chunk)
            start = c.sent % size
            try:
                sent = c.sock.send(self.pattern[start : start + n])
            except (BlockingIOError, ssl.SSLWantWriteError):
                c.retry = n if self.ssl_ctx is not None else 0
                blocked = True
                break
            except ssl.SSLWantReadError:
                c.retry = n
                break
            except OSError as e:
                self.note_error("send", e)
                self.close(c)
                return False
            c.retry = 0
            c.sent += sent
        self.set_mask(c, selectors.EVENT_READ | (selectors.EVENT_WRITE if blocked else 0))
        return True

    def readable(self, c: Conn) -> None:
        sock = c.sock
        for _ in range(4):
            try:
                data = sock.recv(CHUNK_READ)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError as e:
                self.note_error("recv", e)
                self.close(c)
                return
            if not data:
                self.note_error("recv", ConnectionResetError("connection closed by the server"))
                self.close(c)
                return
            if self.consume(c, data):
                return
            if len(data) < CHUNK_READ and not (self.ssl_ctx and sock.pending()):
                break
        self.flush(c)

    def consume(self, c: Conn, data: bytes) -> bool:
        """Account for echoed bytes; True when the connection was closed here."""
        n = len(data)
        c.recvd += n
        measuring = self.phase == "measure"
        if measuring:
            self.bytes += n
        mode = self.a.mode
        if mode == "bulk":
            return False
        lines = data.count(b"\n")
        if not lines:
            return False
        now = time.monotonic()
        if mode == "connrate":
            if measuring:
                self.connections += 1
                self.msgs += 1
                self.lat.append(now - c.t_open)
            if c.sock is not None and self.ssl_ctx is not None:
                try:
                    c.sock.unwrap()  # best effort close_notify, like the C generator's SSL_shutdown
                except (OSError, ssl.SSLError, ValueError):
                    pass
            self.close(c)
            if self.phase != "done":
                self.open(c)
            return True
        if mode == "idle":
            if not c.established:
                c.established = True
                self.ready += 1
            return False
        times = c.times
        for _ in range(lines):
            sent_at = times.pop(0) if times else now
            if measuring:
                self.msgs += 1
                self.lat.append(now - sent_at)
            if self.phase != "done":
                c.target += self.a.size
                times.append(now)
        return False

    def event(self, c: Conn, mask: int) -> None:
        if c.state == CONNECTING:
            self.connected(c)
        elif c.state == HANDSHAKE:
            self.handshake(c)
        elif c.state == RUNNING:
            if mask & selectors.EVENT_READ:
                self.readable(c)
            elif c.sock is not None:
                self.flush(c)
        if self.a.mode == "connrate" and c.state == FREE and self.phase != "done":
            self.open(c)

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> typing.Dict[str, typing.Any]:
        a = self.a
        t_begin = t_phase = time.monotonic()
        t_measure = t_end = 0.0
        cpu0 = cpu1 = 0.0
        scpu0 = scpu1 = -1.0
        opened = 0
        if a.mode == "idle":
            stdin_fd = sys.stdin.fileno()
            os.set_blocking(stdin_fd, False)
            self.sel.register(stdin_fd, selectors.EVENT_READ, None)
        else:
            for c in self.conns:
                self.open(c)
            opened = len(self.conns)
            if a.mode == "connrate":
                self.phase = "warmup"
        while self.phase != "done":
            for key, mask in self.sel.select(0.005):
                c = key.data
                if c is None:
                    try:
                        chunk = os.read(key.fd, 64)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        self.phase = "done"
                    continue
                self.event(c, mask)
            if self.errors and a.mode != "connrate":
                break
            if self.errors > 1000:
                break
            now = time.monotonic()
            if self.phase == "setup":
                if a.mode == "idle":
                    while opened < len(self.conns) and opened - self.ready < SETUP_BATCH:
                        self.open(self.conns[opened])
                        opened += 1
                    if self.ready == len(self.conns):
                        sys.stdout.write(f"READY {self.ready}\n")
                        sys.stdout.flush()
                        self.phase = "measure"
                        t_measure = now
                elif all(c.state == RUNNING for c in self.conns):
                    self.phase = "warmup"
                    t_phase = now
            elif self.phase == "warmup" and now - t_phase >= a.warmup:
                self.phase = "measure"
                self.msgs = self.bytes = self.connections = 0
                self.lat = []
                cpu0 = self_cpu()
                scpu0 = server_cpu(a.server_pid)
                t_measure = time.monotonic()
            elif self.phase == "measure" and a.mode != "idle" and now - t_measure >= a.duration:
                t_end = time.monotonic()
                cpu1 = self_cpu()
                scpu1 = server_cpu(a.server_pid)
                self.phase = "done"
        if not t_end:
            t_end = time.monotonic()
            cpu1 = self_cpu()
            scpu1 = server_cpu(a.server_pid)
        for c in self.conns:
            self.close(c)
        lat = sorted(self.lat)

        def pct(q: float) -> float:
            return round(lat[int(q * (len(lat) - 1) + 0.5)] * 1e6, 2) if lat else -1

        return {
            "mode": a.mode,
            "impl": "python",
            "tls": bool(a.tls),
            "conns": a.conns,
            "depth": a.depth,
            "size": a.size,
            "elapsed": t_end - t_measure if t_measure else 0.0,
            "msgs": self.msgs,
            "bytes": self.bytes,
            "connections": self.connections,
            "errors": self.errors,
            "ready": self.ready,
            "lat_us": {"p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999), "n": len(lat)},
            "cpu_s": cpu1 - cpu0,
            "server_cpu_s": scpu1 - scpu0 if scpu0 >= 0 and scpu1 >= 0 else -1,
            "setup_s": t_phase - t_begin,
            "last_error": self.last_error,
        }


def parse_args(argv: typing.Optional[typing.List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Python fallback load generator (same CLI as loadgen.c)")
    p.add_argument("--mode", required=True, choices=["pingpong", "pipeline", "bulk", "connrate", "idle"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--chunk", type=int, default=65536)
    p.add_argument("--window", type=int, default=262144)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--max-time", type=float, default=60.0)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--sni", default="localhost")
    p.add_argument("--server-pid", type=int, default=0)
    args = p.parse_args(argv)
    if args.mode != "pipeline":
        args.depth = 1
    return args


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    args = parse_args()

    def on_alarm(signum: int, frame: typing.Any) -> None:
        sys.stdout.write(json.dumps({"error": "max-time reached"}) + "\n")
        sys.stdout.flush()
        os._exit(2)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, args.max_time)
    raise_fd_limit()
    result = LoadGen(args).run()
    sys.stdout.write(json.dumps(result) + "\n")
    return 1 if result["errors"] and args.mode != "connrate" else 0


if __name__ == "__main__":
    sys.exit(main())
