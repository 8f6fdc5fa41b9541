"""HTTP keep-alive GETs and WebSocket echo in Python: the HTTP scenarios' own load generator.

    http_loadgen.py --mode get --port P --path / --conns 50 --duration 2 --warmup 0.3 --server-pid PID
    http_loadgen.py --mode ws  --port P --path /ws --conns 10 ...

``get``: every connection sends ``GET path`` (HTTP/1.1, keep-alive), reads the whole answer (status 200
and ``Content-Length`` bytes of body), sends the next: one request in flight per connection.  The suite
uses wrk instead (``--wrk PATH``: this script then runs wrk and reports its figures in the same JSON),
and this loop only where wrk is missing and in ``--quick`` runs (wrk counts whole seconds).
``ws``: every connection upgrades to a WebSocket, then sends a 64-byte text message and
waits for it to come back, again and again (one message in flight per connection); it is the WebSocket
rows' generator on every run.

Prints one JSON object with the keys benchmarks/loadgen.py uses (``msgs`` = responses or echoed
messages in the measured window, ``elapsed``, ``lat_us``, ``cpu_s`` its own CPU time, ``server_cpu_s``
the server's from /proc/PID/task/*/schedstat over the same window, ``errors``, ``last_error``).

It is a plain epoll (or ``selectors``) loop over non-blocking sockets; a request or message costs it a
few microseconds, a fraction of what one costs a Tornado server, and the driver shows its CPU use next
to the server's so that a saturated generator is visible.
"""

import argparse
import base64
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
import typing

from loadgen import self_cpu, server_cpu  # the same CPU accounting as the echo load generator

RECV = 65536
WRK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "http_wrk.lua")
WS_KEY = base64.b64encode(b"tornado_lite-ben").decode()  # any 16 bytes: the generator checks only the 101
WS_MASK = b"\x12\x34\x56\x78"




def masked_text_frame(payload: bytes) -> bytes:
    """A client's text frame (FIN, opcode 1), masked as RFC 6455 requires; payload under 126 bytes."""
    assert len(payload) < 126
    body = bytes(b ^ WS_MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + WS_MASK + body


class Conn:
    __slots__ = ("sock", "buf", "upgraded", "t_sent")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.upgraded = False
        self.t_sent = 0.0


class Protocol:
    """What a connection sends and how to find the end of one answer in its buffer."""

    def __init__(self, args: argparse.Namespace) -> None:
        host = f"{args.host}:{args.port}"
        self.mode = args.mode
        if args.mode == "get":
            self.request = f"GET {args.path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        else:
            self.upgrade = (f"GET {args.path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                            f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n").encode()
            self.payload = b"x" * args.size
            self.request = masked_text_frame(self.payload)
            self.reply = bytes([0x81, len(self.payload)]) + self.payload  # the server's frame is not masked

    def first(self) -> bytes:
        return self.request if self.mode == "get" else self.upgrade

    def answer_end(self, c: Conn) -> int:
        """Length of the complete answer at the start of c.buf, 0 if incomplete; raises ValueError if wrong."""
        buf = c.buf
        if self.mode == "ws" and c.upgraded:
            n = len(self.reply)
            if len(buf) < n:
                return 0
            if buf[:n] != self.reply:
                raise ValueError(f"unexpected WebSocket frame {buf[:16]!r}")
            return n
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            return 0
        status = buf[:buf.find(b"\r\n")]
        if self.mode == "ws":
            if b" 101 " not in status:
                raise ValueError(f"upgrade refused: {status!r}")
            return head_end + 4
        if b" 200 " not in status:
            raise ValueError(f"status {status!r}")
        head = buf[:head_end].lower()
        i = head.find(b"\r\ncontent-length:")
        if i < 0:
            raise ValueError("no Content-Length (the generator does not parse chunked bodies)")
        j = head.find(b"\r\n", i + 2)
        length = int(head[i + 17:j if j > 0 else len(head)])
        end = head_end + 4 + length
        return end if len(buf) >= end else 0


class LoadGen:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.proto = Protocol(args)
        self.sel = selectors.DefaultSelector()
        self.conns: typing.List[Conn] = []
        self.msgs = self.bytes = self.errors = 0
        self.lat: typing.List[float] = []
        self.last_error = ""

    def fail(self, c: Conn, what: str) -> None:
        self.errors += 1
        self.last_error = what
        self.sel.unregister(c.sock)
        c.sock.close()
        self.conns.remove(c)

    def open_all(self) -> None:
        for _ in range(self.a.conns):
            s = socket.create_connection((self.a.host, self.a.port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            c = Conn(s)
            self.conns.append(c)
            self.sel.register(s, selectors.EVENT_READ, c)
            c.t_sent = time.monotonic()
            s.send(self.proto.first())

    def readable(self, c: Conn, measuring: bool) -> None:
        try:
            data = c.sock.recv(RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.fail(c, f"recv: {e}")
            return
        if not data:
            self.fail(c, "the server closed a connection")
            return
        c.buf += data
        try:
            end = self.proto.answer_end(c)
        except ValueError as e:
            self.fail(c, str(e))
            return
        if not end:
            return
        now = time.monotonic()
        if self.proto.mode == "ws" and not c.upgraded:
            c.upgraded = True
        elif measuring:
            self.msgs += 1
            self.bytes += end
            self.lat.append(now - c.t_sent)
        c.buf = c.buf[end:]
        c.t_sent = now
        try:
            c.sock.send(self.proto.request)  # small: the kernel always takes it whole
        except OSError as e:
            self.fail(c, f"send: {e}")

    def run(self) -> typing.Dict[str, typing.Any]:
        a = self.a
        t_begin = time.monotonic()
        try:
            self.open_all()
        except OSError as e:
            return {"error": f"connect: {e}"}
        t_warm = time.monotonic()
        t_measure = t_end = 0.0
        cpu0 = cpu1 = 0.0
        scpu0 = scpu1 = -1.0
        measuring = False
        while self.conns:
            for key, _ in self.sel.select(0.005):
                self.readable(key.data, measuring)
            if self.errors:
                break
            now = time.monotonic()
            if not measuring and now - t_warm >= a.warmup:
                measuring = True
                cpu0, scpu0, t_measure = self_cpu(), server_cpu(a.server_pid), time.monotonic()
            elif measuring and (now - t_measure >= a.duration or (a.requests and self.msgs >= a.requests)):
                t_end, cpu1, scpu1 = time.monotonic(), self_cpu(), server_cpu(a.server_pid)
                break
        if not t_end:
            t_end, cpu1, scpu1 = time.monotonic(), self_cpu(), server_cpu(a.server_pid)
        for c in self.conns:
            c.sock.close()
        lat = sorted(self.lat)

        def pct(q: float) -> float:
            return round(lat[int(q * (len(lat) - 1) + 0.5)] * 1e6, 2) if lat else -1

        return {
            "mode": a.mode,
            "impl": "python",
            "conns": a.conns,
            "elapsed": t_end - t_measure if t_measure else 0.0,
            "msgs": self.msgs,
            "bytes": self.bytes,
            "errors": self.errors,
            "lat_us": {"p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999), "n": len(lat)},
            "cpu_s": cpu1 - cpu0,
            "server_cpu_s": scpu1 - scpu0 if scpu0 >= 0 and scpu1 >= 0 else -1,
            "setup_s": t_warm - t_begin,
            "last_error": self.last_error,
        }


def run_wrk(a: argparse.Namespace) -> typing.Dict[str, typing.Any]:
    """``--mode get`` through wrk (one thread, a.conns connections): the same JSON as the Python loop.

    wrk counts whole seconds and has no warm-up, so --duration is rounded up to a whole second and
    --warmup is not used (the driver's first warm-up per server still runs; each run's own connection
    set-up is a few dozen connects against thousands of requests).  The server's CPU is read just before
    wrk starts and just after it exits (the server is idle on both sides of wrk's window); wrk's own CPU
    comes from wait4.
    """
    seconds = max(1, int(a.duration + 0.999))
    cmd = [a.wrk, "-t1", f"-c{a.conns}", f"-d{seconds}s", "--timeout", "10s", "-s", WRK_SCRIPT,
           f"http://{a.host}:{a.port}{a.path}"]
    scpu0 = server_cpu(a.server_pid)
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()  # bounded: wrk stops after `seconds`, and --max-time's alarm covers a hang
    scpu1 = server_cpu(a.server_pid)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # only child: wrk
    line = next((ln for ln in reversed(out.decode(errors="replace").splitlines()) if ln.startswith("{")), "")
    if p.returncode != 0 or not line:
        tail = (err or out).decode(errors="replace").strip().splitlines()[-1:] or [f"exit {p.returncode}"]
        return {"error": f"wrk: {tail[0]}"}
    w = json.loads(line)
    errors = sum(w["wrk_errors"].values())
    return {
        "mode": a.mode,
        "impl": "wrk",
        "conns": a.conns,
        "elapsed": w["wrk_duration_us"] / 1e6,
        "msgs": w["wrk_requests"],
        "bytes": w["wrk_bytes"],
        "errors": errors,
        "lat_us": {"p50": w["wrk_p50"], "p99": w["wrk_p99"], "p999": w["wrk_p999"], "n": w["wrk_requests"]},
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "server_cpu_s": scpu1 - scpu0 if scpu0 >= 0 and scpu1 >= 0 else -1,
        "last_error": ", ".join(f"{k} {v}" for k, v in w["wrk_errors"].items() if v),
    }


def parse_args(argv: typing.Optional[typing.List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="HTTP keep-alive / WebSocket echo load generator")
    p.add_argument("--mode", required=True, choices=["get", "ws"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/")
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--size", type=int, default=64, help="ws: message size in bytes (< 126)")
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--max-time", type=float, default=60.0)
    p.add_argument("--server-pid", type=int, default=0)
    p.add_argument("--requests", type=int, default=0,
                   help="stop after this many answers in the measured window (or --duration, if sooner)")
    p.add_argument("--wrk", help="get: run this wrk binary instead of the Python loop")
    return p.parse_args(argv)


def main() -> int:
    args = parse_args()

    def on_alarm(signum: int, frame: typing.Any) -> None:
        sys.stdout.write(json.dumps({"error": "max-time reached"}) + "\n")
        sys.stdout.flush()
        os._exit(2)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, args.max_time)
    result = run_wrk(args) if args.wrk and args.mode == "get" else LoadGen(args).run()
    sys.stdout.write(json.dumps(result) + "\n")
    return 1 if result.get("errors") or "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
