"""Benchmark driver: tornado_lite side by side with Tornado on asyncio, Tornado on uvloop and asyncio streams.

``make bench`` / ``make bench-quick`` run this in .venv-bench.  For every scenario it starts one echo
server per stack (benchmarks/servers/echo_server.py, pinned to one core), warms each up, then runs
the load generator (benchmarks/loadgen.c built here with the system's C compiler, else
benchmarks/loadgen.py; pinned to another core) against each in turn, several times, rotating the
order so that a noisy neighbour does not always hit the same stack.  Every process it starts is
on 127.0.0.1, bounded in time, and stopped before the next scenario.

Outputs (in --out, default bench-results/): results.json (every raw run), results.md (the tables,
also printed), ratios.png (chart of each stack's ratio to Tornado on asyncio; needs matplotlib),
logs/ (server stderr) and build/ (the compiled load generator).

benchmarks/README.md explains the method.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
import typing

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ECHO_SERVER = os.path.join(HERE, "servers", "echo_server.py")
MICRO = os.path.join(HERE, "micro.py")
LOADGEN_C = os.path.join(HERE, "loadgen.c")
LOADGEN_PY = os.path.join(HERE, "loadgen.py")

STACKS = ("tornado", "tornado-uvloop", "asyncio-streams", "tornado_lite", "floor")
BASELINE = "tornado"
# Not a rival: a bare epoll echo in pure Python (servers/echo_server.py, run_floor), measured in the
# same run so that each target can be read against what Python itself allows for the same work.
FLOOR = "floor"
LABELS = {
    "tornado": "Tornado (asyncio)",
    "tornado-uvloop": "Tornado (uvloop)",
    "asyncio-streams": "asyncio streams",
    "tornado_lite": "tornado_lite",
    "floor": "pure-Python floor",
}

Run = typing.Dict[str, typing.Any]  # one load generator result (its JSON)


# --------------------------------------------------------------------------------------------
# What is measured
# --------------------------------------------------------------------------------------------


class Metric:
    def __init__(
        self,
        key: str,
        title: str,
        higher_better: bool,
        get: typing.Callable[[Run], typing.Optional[float]],
        digits: int = 0,
    ) -> None:
        self.key, self.title, self.higher_better, self.get, self.digits = key, title, higher_better, get, digits


def _per_s(field: str) -> typing.Callable[[Run], typing.Optional[float]]:
    return lambda r: r[field] / r["elapsed"] if r.get("elapsed") else None


def _mb_s(r: Run) -> typing.Optional[float]:
    return r["bytes"] / r["elapsed"] / 1e6 if r.get("elapsed") else None


def _lat(q: str) -> typing.Callable[[Run], typing.Optional[float]]:
    return lambda r: r["lat_us"][q] if r["lat_us"]["n"] else None


def _server_cpu_per(field: str, scale: float) -> typing.Callable[[Run], typing.Optional[float]]:
    """Server CPU seconds over the window divided by the work done (times scale)."""

    def get(r: Run) -> typing.Optional[float]:
        work = r[field] / (1e6 if field == "bytes" else 1)
        return r["server_cpu_s"] * scale / work if work and r["server_cpu_s"] >= 0 else None

    return get


MSGS = Metric("msgs_s", "msgs/s", True, _per_s("msgs"))
P50 = Metric("p50_us", "p50 latency µs", False, _lat("p50"))
P99 = Metric("p99_us", "p99 latency µs", False, _lat("p99"))
P999 = Metric("p999_us", "p99.9 latency µs", False, _lat("p999"))
CPU_MSG = Metric("cpu_us_per_msg", "server CPU µs/msg", False, _server_cpu_per("msgs", 1e6), 2)
MBS = Metric("mb_s", "MB/s", True, _mb_s)
CPU_MB = Metric("cpu_ms_per_mb", "server CPU ms/MB", False, _server_cpu_per("bytes", 1e3), 3)
CONNS = Metric("conns_s", "connections/s", True, _per_s("connections"))
CPU_CONN = Metric("cpu_us_per_conn", "server CPU µs/connection", False, _server_cpu_per("connections", 1e6))
HANDSHAKES = Metric("handshakes_s", "handshakes/s", True, _per_s("connections"))
CPU_HS = Metric("cpu_us_per_handshake", "server CPU µs/handshake", False, _server_cpu_per("connections", 1e6))
MEM = Metric("kib_per_conn", "RSS KiB per idle connection", False, lambda r: r.get("kib_per_conn"), 2)


class Scenario:
    def __init__(
        self,
        key: str,
        title: str,
        metrics: typing.List[Metric],
        server_mode: str = "line",
        tls: bool = False,
        loadgen: typing.Optional[typing.List[str]] = None,
    ) -> None:
        self.key, self.title, self.metrics = key, title, metrics
        self.server_mode, self.tls, self.loadgen = server_mode, tls, loadgen or []

    @property
    def primary(self) -> Metric:
        return self.metrics[0]

    @property
    def cpu_metric(self) -> typing.Optional[Metric]:
        """The server-CPU-per-unit-of-work metric, if the scenario has one."""
        return next((m for m in self.metrics if m.key.startswith("cpu_")), None)


SCENARIOS = [
    Scenario("pingpong_1", "Ping-pong, 1 connection", [MSGS, P50, P99, P999, CPU_MSG],
             loadgen=["--mode", "pingpong", "--conns", "1"]),
    Scenario("pingpong_100", "Ping-pong, 100 connections", [MSGS, P50, P99, P999, CPU_MSG],
             loadgen=["--mode", "pingpong", "--conns", "100"]),
    Scenario("pipelined", "Pipelined, 100 conns × 16 lines", [MSGS, P50, P99, CPU_MSG],
             loadgen=["--mode", "pipeline", "--conns", "100", "--depth", "16"]),
    Scenario("bulk", "Bulk, 4 conns × 64 KiB buffers", [MBS, CPU_MB], server_mode="bulk",
             loadgen=["--mode", "bulk", "--conns", "4", "--chunk", "65536", "--window", "262144"]),
    # The same stream cut into 64 KiB newline-terminated messages, echoed by the line server's
    # read_until(b"\n") + write: a message spans reads, so this one measures the read buffer's copies.
    Scenario("bulk_lines", "Bulk lines, 4 conns × 64 KiB messages", [MBS, CPU_MB], server_mode="bulk_lines",
             loadgen=["--mode", "bulk", "--conns", "4", "--chunk", "65536", "--window", "262144",
                      "--size", "65536"]),
    Scenario("connrate", "Connection rate (connect, 1 line, close; 8 at once)", [CONNS, CPU_CONN, P50, P99],
             loadgen=["--mode", "connrate", "--conns", "8"]),
    Scenario("memory", "Memory, idle connections", [MEM]),
    Scenario("tls_handshake", "TLS handshakes (connect, handshake, 1 line, close; 8 at once)",
             [HANDSHAKES, CPU_HS], tls=True, loadgen=["--mode", "connrate", "--conns", "8"]),
    Scenario("tls_bulk", "TLS bulk, 4 conns × 64 KiB buffers", [MBS, CPU_MB], server_mode="bulk", tls=True,
             loadgen=["--mode", "bulk", "--conns", "4", "--chunk", "65536", "--window", "262144"]),
]

# --------------------------------------------------------------------------------------------
# HTTP scenarios (issue 13): Tornado's own HTTP layer (web, httpserver, websocket) on each loop.
# One app file, servers/http_app.py, started three ways: plain (asyncio), through
# servers/http_uvloop.py, and through `python -m tornado_lite` (install(), then the script).
# --------------------------------------------------------------------------------------------

HTTP_APP = os.path.join(HERE, "servers", "http_app.py")
HTTP_UVLOOP = os.path.join(HERE, "servers", "http_uvloop.py")
HTTP_LOADGEN = os.path.join(HERE, "http_loadgen.py")
HTTP_BRIDGE = os.path.join(HERE, "servers", "http_bridge.py")
WS_CLIENT_C = os.path.join(HERE, "wsload.c")
HTTP_STACKS = ("tornado", "tornado-uvloop", "tornado_lite")
# What the app's LISTENING line must name as its loop's module, so a column never measures the wrong loop.
HTTP_EXPECTED_LOOP = {"tornado": "asyncio.", "tornado-uvloop": "uvloop", "tornado_lite": "tornado_lite."}

REQS = Metric("reqs_s", "requests/s", True, _per_s("msgs"))
CPU_REQ = Metric("cpu_us_per_req", "server CPU µs/request", False, _server_cpu_per("msgs", 1e6), 1)
CPU_WSMSG = Metric("cpu_us_per_msg", "server CPU µs/message", False, _server_cpu_per("msgs", 1e6), 1)


class HttpScenario(Scenario):
    """A scenario against servers/http_app.py, driven by http_loadgen.py (wrk for GETs where it exists).

    bridge: the tornado_lite column runs with the asyncio bridge installed (servers/http_bridge.py).
    """

    columns = HTTP_STACKS

    def __init__(self, key: str, title: str, metrics: typing.List[Metric], mode: str, path: str,
                 conns: int, bridge: bool = False) -> None:
        super().__init__(key, title, metrics, server_mode="http",
                         loadgen=["--mode", mode, "--path", path, "--conns", str(conns)])
        self.mode, self.bridge = mode, bridge


class BridgeEchoScenario(HttpScenario):
    """An echo row of the suite again, with tornado_lite's echo server started with the asyncio bridge
    installed (issue 14: a program that does not use asyncio must not pay for the bridge), next to
    Tornado on asyncio.  Run by the HTTP block's driver; the load generator is the echo rows' own."""

    columns = ("tornado", "tornado_lite")

    def __init__(self, key: str, title: str, metrics: typing.List[Metric], loadgen: typing.List[str]) -> None:
        Scenario.__init__(self, key, title, metrics, server_mode="line", loadgen=loadgen)
        self.mode, self.bridge = "echo", True


HTTP_SCENARIOS = [
    HttpScenario("http_hello", "HTTP hello world GET, 50 keep-alive conns", [REQS, P50, P99, CPU_REQ],
                 "get", "/", 50),
    HttpScenario("http_json", "HTTP async JSON handler GET, 50 keep-alive conns", [REQS, P50, P99, CPU_REQ],
                 "get", "/json", 50),
    HttpScenario("ws_echo", "WebSocket echo, 10 conns × 1 message in flight", [MSGS, P50, P99, CPU_WSMSG],
                 "ws", "/ws", 10),
    # Issue 14: asyncio code in a handler (tornado_lite: with the asyncio bridge), and echo rows with the
    # bridge installed but unused, to compare with the same rows above.
    HttpScenario("ws_asyncio_sleep", "WebSocket echo, `await asyncio.sleep(0)` per message (tornado_lite: bridge)",
                 [MSGS, P50, P99, CPU_WSMSG], "ws", "/ws-asleep", 10, bridge=True),
    BridgeEchoScenario("pingpong_100_bridge", "Ping-pong, 100 connections (tornado_lite: bridge installed)",
                       [MSGS, P50, P99, CPU_MSG], ["--mode", "pingpong", "--conns", "100"]),
    BridgeEchoScenario("pipelined_bridge", "Pipelined, 100 conns × 16 lines (tornado_lite: bridge installed)",
                       [MSGS, P50, P99, CPU_MSG], ["--mode", "pipeline", "--conns", "100", "--depth", "16"]),
]
SCENARIOS += HTTP_SCENARIOS
HTTP_TARGETS = [
    ("HTTP hello world: requests/s ≥ 1.5× Tornado", "http_hello", "reqs_s", ">=", 1.5),
    ("WebSocket echo: msgs/s ≥ 2× Tornado", "ws_echo", "msgs_s", ">=", 2.0),
]


def http_server_command(stack: str, bridge: bool = False) -> typing.List[str]:
    """How a Tornado user would start the app on each stack."""
    if stack == "tornado_lite" and bridge:
        return [sys.executable, HTTP_BRIDGE, HTTP_APP]
    return {"tornado": [sys.executable, HTTP_APP],
            "tornado-uvloop": [sys.executable, HTTP_UVLOOP, HTTP_APP],
            "tornado_lite": [sys.executable, "-m", "tornado_lite", HTTP_APP]}[stack]

MICRO_BENCHMARKS = [
    ("add_callback", "add_callback, callbacks/s"),
    ("call_later_cancel", "call_later + cancel, timers/s"),
    ("await_done_future", "await a completed Future, awaits/s"),
    ("coroutine_switch", "coroutine switches/s"),
]


class Config:
    """Durations and counts; --quick shrinks them to stay under a minute."""

    def __init__(self, args: argparse.Namespace) -> None:
        quick = args.quick
        self.quick = quick
        self.runs = args.runs or (3 if quick else 5)
        self.first_warmup = 0.2 if quick else 1.0  # once per server, thrown away
        self.warmup = 0.05 if quick else 0.3  # at the start of every run, thrown away
        self.duration = args.duration or (0.2 if quick else 2.0)
        self.memory_conns = args.memory_conns or (1000 if quick else 10_000)
        self.memory_runs = 3
        self.micro_target = 0.03 if quick else 0.2
        self.micro_repeats = 3 if quick else 5


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------

_children: typing.List[subprocess.Popen] = []


def _pin(cpu: typing.Optional[int]) -> typing.Optional[typing.Callable[[], None]]:
    """preexec_fn for a measured process: pin it to cpu."""
    if cpu is None:
        return None

    def preexec() -> None:
        os.sched_setaffinity(0, {cpu})

    return preexec


def _kill_children() -> None:
    for p in list(_children):
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        _children.remove(p)


def _readline(p: subprocess.Popen, timeout: float) -> str:
    """One line of p's stdout within timeout ('' on EOF or timeout)."""
    assert p.stdout is not None
    fd = p.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 1)  # byte by byte: what follows the line must stay in the pipe
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace").strip()


class Server:
    """One echo server process, on 127.0.0.1, pinned to cpu."""

    def __init__(self, stack: str, mode: str, tls: typing.Optional[typing.Tuple[str, str]],
                 cpu: typing.Optional[int], logdir: str, tag: str) -> None:
        self.stack, self.mode, self.tls, self.cpu = stack, mode, tls, cpu
        self.log_path = os.path.join(logdir, f"{tag}-{stack}.log")
        self.proc: typing.Optional[subprocess.Popen] = None
        self.port = 0
        self.error = ""

    def launch(self) -> "Server":
        cmd = [sys.executable, ECHO_SERVER, "--stack", self.stack, "--mode", self.mode]
        if self.tls:
            cmd += ["--certfile", self.tls[0], "--keyfile", self.tls[1]]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log,
                                     preexec_fn=_pin(self.cpu), cwd=ROOT)
        _children.append(self.proc)
        return self

    def wait_ready(self) -> bool:
        """Wait for "LISTENING <port>"; on failure keep the reason in self.error and stop the process."""
        assert self.proc is not None
        line = _readline(self.proc, 30)
        if line.startswith("LISTENING "):
            self.port = int(line.split()[1])
            return True
        self.error = line[len("IMPORT-FAILED "):] if line.startswith("IMPORT-FAILED ") else (
            f"server did not start ({line or 'no output'}; see {os.path.relpath(self.log_path, ROOT)})")
        self.stop()
        return False

    def start(self) -> bool:
        return self.launch().wait_ready()

    def log_hint(self) -> str:
        return f"see {os.path.relpath(self.log_path, ROOT)}"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self) -> None:
        p = self.proc
        if p is not None:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
            if p in _children:
                _children.remove(p)
            if p.stdout:
                p.stdout.close()
        if getattr(self, "log", None):
            self.log.close()
        self.proc = None


class LoadGen:
    """The command lines of the load generator: C if it builds, else Python."""

    def __init__(self, builddir: str, prefer: str) -> None:
        self.plain: typing.List[str] = [sys.executable, LOADGEN_PY]
        self.tls: typing.List[str] = self.plain
        self.description = "Python (benchmarks/loadgen.py: no C compiler found)"
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if prefer == "python":
            self.description = "Python (benchmarks/loadgen.py, by request)"
            return
        if not cc:
            return
        os.makedirs(builddir, exist_ok=True)
        exe = os.path.join(builddir, "loadgen")
        base = [cc, "-O2", "-o", exe, LOADGEN_C]
        for extra, tls in ((["-DWITH_TLS", "-lssl", "-lcrypto"], True), ([], False)):
            r = subprocess.run(base + extra, capture_output=True, text=True, timeout=120)
            if r.returncode == 0:
                self.plain = [exe]
                if tls:
                    self.tls = [exe]
                    self.description = f"C (benchmarks/loadgen.c, epoll, OpenSSL; built with {os.path.basename(cc)})"
                else:
                    self.description = (f"C (benchmarks/loadgen.c, epoll; built with {os.path.basename(cc)}); "
                                        "Python for TLS (no OpenSSL headers)")
                return
        self.description = "Python (benchmarks/loadgen.py: the C build failed)"

    def impl(self, tls: bool) -> str:
        return "c" if (self.tls if tls else self.plain)[0] != sys.executable else "python"

    def run(self, args: typing.List[str], tls: bool, cpu: typing.Optional[int], timeout: float) -> Run:
        cmd = (self.tls if tls else self.plain) + args
        return run_load_generator(cmd, cpu, timeout)

    def idle(self, args: typing.List[str], cpu: typing.Optional[int], timeout: float,
             on_ready: typing.Callable[[], typing.Any]) -> typing.Tuple[Run, typing.Any]:
        """Open connections, call on_ready() while they are all held open, then release them."""
        p = subprocess.Popen(self.plain + ["--mode", "idle"] + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, preexec_fn=_pin(cpu), cwd=ROOT)
        _children.append(p)
        measured = None
        try:
            line = _readline(p, timeout)
            if line.startswith("READY"):
                measured = on_ready()
            try:  # communicate() closes stdin first: EOF tells the generator to close everything and report
                out, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            if not line.startswith("READY"):
                r = _parse_result(line.encode() + b"\n" + out, err, p.returncode)
                r.setdefault("error", "connections were not all established in time")
                return r, None
            return _parse_result(out, err, p.returncode), measured
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            _children.remove(p)


def run_load_generator(cmd: typing.List[str], cpu: typing.Optional[int], timeout: float) -> "Run":
    """Runs one load generator (pinned to ``cpu``) to its end, or kills it after ``timeout``; its result."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=_pin(cpu), cwd=ROOT)
    _children.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return {"error": f"load generator timed out after {timeout:.0f} s"}
    finally:
        _children.remove(p)
    return _parse_result(out, err, p.returncode)


def _parse_result(out: bytes, err: bytes, status: int) -> Run:
    for line in reversed(out.decode(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                r = json.loads(line)
            except ValueError:
                break
            if "error" not in r and r.get("errors"):
                what = f"{r['errors']} connection errors ({r.get('last_error')})"
                # A connection-rate run survives a few failed connects, but not a run where none succeeded.
                if r.get("mode") != "connrate" or not r.get("connections"):
                    r["error"] = what
                else:
                    r["warning"] = what
            return r
    tail = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {status}"]
    return {"error": f"no result from the load generator: {tail[0]}"}


# --------------------------------------------------------------------------------------------
# Progress and bookkeeping
# --------------------------------------------------------------------------------------------


class Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last_scenario = ""

    def step(self, scenario: str, what: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.t0
        eta = elapsed / max(1, self.done - 1) * (self.total - self.done + 1) if self.done > 1 else 0
        line = (f"[{self.done:3d}/{self.total}] {scenario}: {what}  "
                f"({elapsed:4.0f} s elapsed, ~{eta:3.0f} s left)")
        if self.tty:
            sys.stderr.write("\r\033[K" + line[: shutil.get_terminal_size().columns - 1])
        elif scenario != self.last_scenario:
            sys.stderr.write(line + "\n")
        self.last_scenario = scenario
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(f"benchmarks done in {time.monotonic() - self.t0:.0f} s\n")


def cpu_stall_us() -> typing.Optional[int]:
    """Total µs some runnable task waited for a CPU (Linux PSI), or None where unavailable."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some "):
                    return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def summarize(values: typing.List[float]) -> typing.Optional[typing.Dict[str, typing.Any]]:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": values}


def rotated(items: typing.List[str], k: int) -> typing.List[str]:
    k %= max(1, len(items))
    return items[k:] + items[:k]


# --------------------------------------------------------------------------------------------
# The runs
# --------------------------------------------------------------------------------------------


class HttpServer(Server):
    """servers/http_app.py on one stack; checks that its LISTENING line names the stack's loop."""

    def launch(self) -> "Server":
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(http_server_command(self.stack, self.mode == "http-bridge"),
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.log, preexec_fn=_pin(self.cpu), cwd=ROOT)
        _children.append(self.proc)
        return self

    def wait_ready(self) -> bool:
        assert self.proc is not None
        line = _readline(self.proc, 30)
        parts = line.split()
        if len(parts) == 3 and parts[0] == "LISTENING":
            if parts[2].startswith(HTTP_EXPECTED_LOOP[self.stack]):
                self.port = int(parts[1])
                return True
            self.error = f"runs on the wrong loop ({parts[2]})"
        else:
            self.error = f"server did not start ({line or 'no output'}; {self.log_hint()})"
        self.stop()
        return False


class BridgeEchoServer(Server):
    """servers/echo_server.py --stack tornado_lite, started with the asyncio bridge installed."""

    def launch(self) -> "Server":
        self.log = open(self.log_path, "ab")
        cmd = [sys.executable, HTTP_BRIDGE, ECHO_SERVER, "--stack", "tornado_lite", "--mode", self.mode]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log,
                                     preexec_fn=_pin(self.cpu), cwd=ROOT)
        _children.append(self.proc)
        return self


class HttpBench:
    """The Bench methods of the HTTP scenarios (a mixin: Bench's set-up, outputs and bookkeeping are shared)."""

    cfg: Config
    args: argparse.Namespace
    stacks: typing.List[str]
    scenarios: typing.List[Scenario]
    results: typing.Dict[str, typing.Any]
    notes: typing.List[str]
    logdir: str
    server_cpu: typing.Optional[int]
    client_cpu: typing.Optional[int]

    lg: "LoadGen"

    def availability_key(self, sc: Scenario, stack: str) -> str:
        """Which check says whether `stack` can run scenario `sc` (results["stacks"][stack][key])."""
        if isinstance(sc, BridgeEchoScenario):
            return "bridge" if stack == "tornado_lite" else "server"
        if isinstance(sc, HttpScenario):
            return "bridge" if sc.bridge and stack == "tornado_lite" else "http"
        return "server"

    def http_stacks(self, sc: typing.Optional[Scenario] = None) -> typing.List[str]:
        sc = sc or HTTP_SCENARIOS[0]
        columns = getattr(sc, "columns", HTTP_STACKS)
        return [s for s in self.stacks
                if s in columns and self.results["stacks"][s].get(self.availability_key(sc, s))]

    def check_http_stacks(self) -> None:
        """Can each stack import the app (for tornado_lite: does `python -m tornado_lite` map Tornado's core)?"""
        checks = {s: subprocess.Popen(http_server_command(s) + ["--check"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=ROOT)
                  for s in self.stacks if s in HTTP_STACKS}
        for stack, p in checks.items():
            try:
                stdout, stderr = p.communicate(timeout=60)
                out = stdout.strip().splitlines() or stderr.strip().splitlines() or [f"exit {p.returncode}"]
                line = out[-1]
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                line = "import timed out"
            entry = self.results["stacks"][stack]
            ok = line.startswith("IMPORT-OK ") and (stack != "tornado_lite" or "tornado_lite" in line)
            entry["http"] = ok
            if not ok:
                entry["http_reason"] = ("import failed: " + line) if not line.startswith("IMPORT-OK") else (
                    "Tornado's IOLoop is not tornado_lite's: " + line)
        if "tornado_lite" in self.stacks:  # the asyncio bridge (issue 14), for the bridge rows
            p = subprocess.run(http_server_command("tornado_lite", bridge=True) + ["--check"], capture_output=True,
                               text=True, cwd=ROOT, timeout=60)
            line = (p.stdout.strip().splitlines() or p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
            entry = self.results["stacks"]["tornado_lite"]
            entry["bridge"] = line.startswith("IMPORT-OK ")
            if not entry["bridge"]:
                entry["bridge_reason"] = "asyncio bridge: " + line
        want = self.args.http_loadgen
        self.http_wrk = shutil.which("wrk") if want == "wrk" or (want == "auto" and not self.cfg.quick) else None
        if want == "wrk" and not self.http_wrk:
            self.notes.append("HTTP GET rows: wrk was asked for but is not installed; the Python generator ran")
        how = ("wrk (1 thread)" if self.http_wrk else
               "benchmarks/http_loadgen.py" + (" (quick run)" if self.cfg.quick else " (wrk is not installed)"))
        self.ws_client = self.build_ws_client()
        ws_how = "benchmarks/wsload.c (C)" if self.ws_client else "benchmarks/http_loadgen.py (Python)"
        self.notes.append(f"HTTP GET rows: load generator {how}; WebSocket rows: {ws_how}. "
                          "The app is benchmarks/servers/http_app.py, the same file on every stack "
                          "(tornado_lite: `python -m tornado_lite benchmarks/servers/http_app.py`).")

    def build_ws_client(self) -> typing.Optional[str]:
        """benchmarks/wsload.c compiled into the output's build directory, or None (Python client then)."""
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if not cc or self.args.loadgen == "python":
            return None
        build = os.path.join(os.path.abspath(self.args.out), "build")
        os.makedirs(build, exist_ok=True)
        exe = os.path.join(build, "wsload")
        r = subprocess.run([cc, "-O2", "-o", exe, WS_CLIENT_C], capture_output=True, text=True, timeout=120)
        return exe if r.returncode == 0 else None

    def http_steps(self, sc: Scenario) -> int:
        return len(self.http_stacks(sc)) * (1 + self.cfg.runs)

    def run_http_loadgen(self, args: typing.List[str], timeout: float) -> Run:
        ws_c = self.ws_client if args[:2] == ["--mode", "ws"] else None
        cmd = ([ws_c] if ws_c else [sys.executable, HTTP_LOADGEN]) + args
        return run_load_generator(cmd, self.client_cpu, timeout)

    def run_http_scenario(self, sc: HttpScenario, progress: "Progress") -> typing.Dict[str, typing.Any]:
        cfg = self.cfg
        echo = isinstance(sc, BridgeEchoScenario)
        why_not = "see the row without the bridge" if echo else "no HTTP server: not Tornado"
        out: typing.Dict[str, typing.Any] = {s: {"na": why_not, "runs": []}
                                             for s in self.stacks if s not in sc.columns}
        wrk = ["--wrk", self.http_wrk] if sc.mode == "get" and self.http_wrk else []
        servers: typing.Dict[str, Server] = {}

        def make_server(stack: str) -> Server:
            if echo:
                cls = BridgeEchoServer if stack == "tornado_lite" else Server
                return cls(stack, sc.server_mode, None, self.server_cpu, self.logdir, sc.key)
            mode = "http-bridge" if sc.bridge else "http"
            return HttpServer(stack, mode, None, self.server_cpu, self.logdir, sc.key)

        def run_lg(args: typing.List[str], timeout: float) -> Run:
            if echo:
                return self.lg.run(args, False, self.client_cpu, timeout)
            return self.run_http_loadgen(args, timeout)

        try:
            launched = [make_server(stack).launch() for stack in self.http_stacks(sc)]
            for srv in launched:
                if srv.wait_ready():
                    servers[srv.stack] = srv
                else:
                    out[srv.stack] = {"error": srv.error, "runs": []}
            for stack, srv in servers.items():
                progress.step(sc.title, f"{LABELS[stack]} warm-up")
                run_lg(sc.loadgen + wrk + ["--port", str(srv.port), "--warmup", "0", "--duration",
                                           str(cfg.first_warmup), "--max-time", "60"], timeout=90)
                out[stack] = {"runs": []}
            for i in range(cfg.runs):
                for stack in rotated(list(servers), i):
                    progress.step(sc.title, f"{LABELS[stack]} run {i + 1}/{cfg.runs}")
                    srv = servers[stack]
                    if not srv.alive():
                        out[stack].setdefault("error", f"server exited ({srv.log_hint()})")
                        continue
                    max_time = cfg.warmup + cfg.duration + 30
                    r = run_lg(sc.loadgen + wrk + [
                        "--port", str(srv.port), "--warmup", str(cfg.warmup), "--duration", str(cfg.duration),
                        "--max-time", str(max_time), "--server-pid", str(srv.pid)], timeout=max_time + 15)
                    if "error" in r:
                        r["log"] = srv.log_hint()
                    out[stack]["runs"].append(r)
        finally:
            for srv in servers.values():
                srv.stop()
        for entry in out.values():
            if "na" in entry:
                continue
            good = [r for r in entry["runs"] if "error" not in r]
            bad = [f"{r['error']} ({r['log']})" if "log" in r else r["error"] for r in entry["runs"] if "error" in r]
            if bad:
                entry["run_errors"] = bad
                if not good:
                    entry.setdefault("error", bad[0])
            entry["metrics"] = self.metrics_of(sc, good)
            if echo:
                entry["loadgen_impl"] = self.lg.impl(False)
            else:
                entry["loadgen_impl"] = "wrk" if wrk else ("c" if sc.mode == "ws" and self.ws_client else "python")
        return out

    def metrics_of(self, sc: Scenario, runs: typing.List[Run]) -> typing.Dict[str, typing.Any]:
        raise NotImplementedError  # Bench's


class Bench(HttpBench):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cfg = Config(args)
        self.out = os.path.abspath(args.out)
        self.logdir = os.path.join(self.out, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.stacks = [s for s in STACKS if s in args.stacks]
        self.scenarios = [s for s in SCENARIOS if s.key in args.scenarios]
        cpus = sorted(os.sched_getaffinity(0))
        if args.no_pin or len(cpus) < 2:
            self.server_cpu = self.client_cpu = None
            self.pinning = "none (" + ("disabled" if args.no_pin else f"only {len(cpus)} CPU available") + ")"
        else:
            self.server_cpu, self.client_cpu = cpus[0], cpus[1]
            self.pinning = f"server on CPU {cpus[0]}, load generator on CPU {cpus[1]}"
        self.results: typing.Dict[str, typing.Any] = {"scenarios": {}, "micro": {}, "stacks": {}}
        self.notes: typing.List[str] = []

    # -- set-up --------------------------------------------------------------------------------
    def check_stacks(self) -> None:
        """Can each stack be imported (server: iostream/tcpserver; micro: ioloop/gen/concurrent)?"""
        checks = {}
        for stack in self.stacks:
            self.results["stacks"][stack] = {"label": LABELS[stack]}
            if stack == FLOOR:  # it has no loop API for the micro-benchmarks to call
                self.results["stacks"][stack].update(micro=False, micro_reason="a bare epoll echo, no loop API")
            for key, script in (("server", ECHO_SERVER), ("micro", MICRO)):
                if stack == FLOOR and key == "micro":
                    continue
                checks[stack, key] = subprocess.Popen([sys.executable, script, "--stack", stack, "--check"],
                                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                      cwd=ROOT)
        for (stack, key), p in checks.items():
            try:
                stdout, stderr = p.communicate(timeout=60)
                line = (stdout.strip().splitlines() or [stderr.strip() or f"exit {p.returncode}"])[-1]
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                line = "IMPORT-FAILED import timed out"
            entry = self.results["stacks"][stack]
            entry[key] = line == "IMPORT-OK"
            if not entry[key]:
                entry[key + "_reason"] = "import failed: " + line.replace("IMPORT-FAILED ", "")

    def available(self, stack: str, key: str = "server") -> bool:
        return bool(self.results["stacks"][stack].get(key))

    def make_certs(self) -> typing.Optional[typing.Tuple[str, str, str]]:
        try:
            import trustme
        except ImportError:
            self.notes.append("TLS scenarios skipped: trustme is not installed")
            return None
        d = os.path.join(self.out, "tls")
        os.makedirs(d, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        paths = tuple(os.path.join(d, n) for n in ("ca.pem", "cert.pem", "key.pem"))
        ca.cert_pem.write_to_path(paths[0])
        cert.cert_chain_pems[0].write_to_path(paths[1])
        cert.private_key_pem.write_to_path(paths[2])
        return typing.cast(typing.Tuple[str, str, str], paths)

    def raise_fd_limit(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if self.cfg.memory_conns > limit - 200:
            self.notes.append(f"memory scenario: {limit - 200} connections, not {self.cfg.memory_conns} "
                              f"(the file descriptor limit is {limit})")
            self.cfg.memory_conns = max(100, limit - 200)

    def total_steps(self) -> int:
        total = 0
        n_server = sum(self.available(s) for s in self.stacks)
        for sc in self.scenarios:
            if isinstance(sc, HttpScenario):
                total += self.http_steps(sc)
            elif sc.key == "memory":
                total += n_server * self.cfg.memory_runs
            else:
                total += n_server * (1 + self.cfg.runs)
        if not self.args.skip_micro:
            total += sum(self.available(s, "micro") for s in self.stacks)
        return total

    # -- scenarios -----------------------------------------------------------------------------
    def run_load_scenario(self, sc: Scenario, certs: typing.Optional[typing.Tuple[str, str, str]],
                          progress: Progress) -> typing.Dict[str, typing.Any]:
        cfg = self.cfg
        out: typing.Dict[str, typing.Any] = {}
        servers: typing.Dict[str, Server] = {}
        tls_args: typing.List[str] = ["--tls", "--ca", certs[0]] if sc.tls and certs else []
        try:
            launched = [Server(stack, sc.server_mode, (certs[1], certs[2]) if sc.tls and certs else None,
                               self.server_cpu, self.logdir, sc.key).launch()
                        for stack in self.stacks if self.available(stack)]
            for srv in launched:  # all start at once; a slow import delays only itself
                if srv.wait_ready():
                    servers[srv.stack] = srv
                else:
                    out[srv.stack] = {"error": srv.error, "runs": []}
            for stack, srv in servers.items():  # first warm-up: JIT-free, but caches, allocators, accept queues
                progress.step(sc.title, f"{LABELS[stack]} warm-up")
                self.lg.run(sc.loadgen + tls_args + ["--port", str(srv.port), "--warmup", "0", "--duration",
                                                      str(cfg.first_warmup), "--max-time", "60"],
                            sc.tls, self.client_cpu, timeout=90)
                out[stack] = {"runs": []}
            for i in range(cfg.runs):
                for stack in rotated(list(servers), i):
                    progress.step(sc.title, f"{LABELS[stack]} run {i + 1}/{cfg.runs}")
                    srv = servers[stack]
                    if not srv.alive():
                        out[stack].setdefault("error", f"server exited (see {os.path.relpath(srv.log_path, ROOT)})")
                        continue
                    max_time = cfg.warmup + cfg.duration + 30
                    r = self.lg.run(sc.loadgen + tls_args + [
                        "--port", str(srv.port), "--warmup", str(cfg.warmup), "--duration", str(cfg.duration),
                        "--max-time", str(max_time), "--server-pid", str(srv.pid)],
                        sc.tls, self.client_cpu, timeout=max_time + 15)
                    if "error" in r or r.get("errors"):
                        r["log"] = srv.log_hint()
                    out[stack]["runs"].append(r)
        finally:
            for srv in servers.values():
                srv.stop()
        for entry in out.values():
            good = [r for r in entry["runs"] if "error" not in r]
            bad = [f"{r['error']} ({r['log']})" if "log" in r else r["error"]
                   for r in entry["runs"] if "error" in r]
            bad += [f"warning: {r['warning']}" for r in good if "warning" in r]
            if bad:
                entry["run_errors"] = bad
                if not good:
                    entry.setdefault("error", bad[0])
            entry["metrics"] = self.metrics_of(sc, good)
            entry["loadgen_impl"] = self.lg.impl(sc.tls)
        return out

    def metrics_of(self, sc: Scenario, runs: typing.List[Run]) -> typing.Dict[str, typing.Any]:
        metrics: typing.Dict[str, typing.Any] = {}
        for m in sc.metrics:
            metrics[m.key] = summarize([v for v in (m.get(r) for r in runs) if v is not None])
        for key, field in (("server_cpu_pct", "server_cpu_s"), ("loadgen_cpu_pct", "cpu_s")):
            metrics[key] = summarize([r[field] / r["elapsed"] * 100 for r in runs
                                      if r.get("elapsed") and r.get(field, -1) >= 0])
        return metrics

    def run_memory(self, sc: Scenario, progress: Progress) -> typing.Dict[str, typing.Any]:
        n = self.cfg.memory_conns
        out: typing.Dict[str, typing.Any] = {}
        stacks = [s for s in self.stacks if self.available(s)]
        for s in stacks:
            out[s] = {"runs": []}
        settle = 0.1 if self.cfg.quick else 0.3
        for i in range(self.cfg.memory_runs):
            # A fresh server for every run (freed memory is not given back to the OS, so a second run on
            # the same process would measure nothing); all stacks start at once.
            fresh = {s: Server(s, "line", None, self.server_cpu, self.logdir, sc.key).launch() for s in stacks}
            for stack in rotated(stacks, i):
                progress.step(sc.title, f"{LABELS[stack]} run {i + 1}/{self.cfg.memory_runs} ({n:,} connections)")
                srv = fresh[stack]
                if not srv.wait_ready():
                    out[stack]["runs"].append({"error": srv.error})
                    continue
                try:
                    common = ["--port", str(srv.port), "--max-time", "120", "--server-pid", str(srv.pid)]
                    # Warm-up: the first connections pay for imports, code paths and allocator arenas.
                    self.lg.idle(common + ["--conns", "100"], self.client_cpu, 60, lambda: None)
                    time.sleep(settle)
                    before = srv.rss_kib()

                    def settle_and_measure(srv: Server = srv) -> int:
                        time.sleep(settle)
                        return srv.rss_kib()

                    r, after = self.lg.idle(common + ["--conns", str(n)], self.client_cpu, 100, settle_and_measure)
                    if after is not None and srv.alive():
                        r.update(rss_before_kib=before, rss_after_kib=after, kib_per_conn=(after - before) / n)
                    elif "error" not in r:
                        r["error"] = "server exited while holding the connections"
                    if "error" in r:
                        r["log"] = srv.log_hint()
                    out[stack]["runs"].append(r)
                finally:
                    srv.stop()
        for entry in out.values():
            good = [r for r in entry["runs"] if "error" not in r]
            if len(good) < len(entry["runs"]):
                entry["run_errors"] = [f"{r['error']} ({r['log']})" if "log" in r else r["error"]
                                       for r in entry["runs"] if "error" in r]
                if not good:
                    entry["error"] = entry["run_errors"][0]
            entry["metrics"] = {MEM.key: summarize([r["kib_per_conn"] for r in good])}
            entry["connections"] = n
            entry["loadgen_impl"] = self.lg.impl(False)
        return out

    def run_micro(self, progress: Progress) -> None:
        for stack in self.stacks:
            if not self.available(stack, "micro"):
                continue
            progress.step("Loop micro-benchmarks", LABELS[stack])
            cmd = [sys.executable, MICRO, "--stack", stack, "--target-time", str(self.cfg.micro_target),
                   "--repeats", str(self.cfg.micro_repeats)]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=_pin(self.server_cpu),
                                   cwd=ROOT)
                data = json.loads(r.stdout.strip().splitlines()[-1])["results"]
            except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError) as e:
                self.results["micro"][stack] = {"error": f"micro-benchmarks failed: {type(e).__name__}"}
                continue
            entry: typing.Dict[str, typing.Any] = {}
            for name, values in data.items():
                entry[name] = values if isinstance(values, dict) else summarize(values)
            self.results["micro"][stack] = entry

    # -- all -----------------------------------------------------------------------------------
    def run(self) -> int:
        self.raise_fd_limit()
        self.check_stacks()
        if not any(self.available(s) for s in self.stacks):
            sys.stderr.write("no stack could be imported; nothing to measure\n")
        self.lg = LoadGen(os.path.join(self.out, "build"), self.args.loadgen)
        certs = self.make_certs() if any(s.tls for s in self.scenarios) else None
        if any(isinstance(sc, HttpScenario) for sc in self.scenarios):
            self.check_http_stacks()
        progress = Progress(self.total_steps())
        started = datetime.datetime.now(datetime.timezone.utc)
        stall0, t0 = cpu_stall_us(), time.monotonic()
        for sc in self.scenarios:
            if sc.tls and not certs:
                continue
            if isinstance(sc, HttpScenario):
                self.results["scenarios"][sc.key] = self.run_http_scenario(sc, progress)
            elif sc.key == "memory":
                self.results["scenarios"][sc.key] = self.run_memory(sc, progress)
            else:
                self.results["scenarios"][sc.key] = self.run_load_scenario(sc, certs, progress)
        if not self.args.skip_micro:
            self.run_micro(progress)
        progress.finish()
        stall1 = cpu_stall_us()
        self.results["meta"] = self.meta(started)
        if stall0 is not None and stall1 is not None:
            # The suite itself keeps about one task waiting now and then; far more means other work was running.
            pressure = (stall1 - stall0) / 1e6 / (time.monotonic() - t0) * 100
            self.results["meta"]["cpu_pressure_pct"] = round(pressure, 1)
            if pressure > 20:
                self.notes.append(
                    f"The machine was busy: some task waited for a CPU {pressure:.0f}% of the time (Linux PSI). "
                    "Throughput and latency figures are noisy; the 'server CPU per message/connection/MB' rows "
                    "are the steadier comparison.")
        self.results["ratios"] = self.ratios()
        self.results["targets"] = self.targets()
        self.results["notes"] = self.notes
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(self.results, f, indent=1)
        table = render_markdown(self)
        with open(os.path.join(self.out, "results.md"), "w") as f:
            f.write(table)
        chart = os.path.join(self.out, "ratios.png")
        chart_note = render_chart(self, chart) if not self.args.no_chart else "chart skipped (--no-chart)"
        print(table)
        print(f"Results: {os.path.relpath(self.out, os.getcwd())}/results.json, results.md; {chart_note}")
        return 0

    def meta(self, started: datetime.datetime) -> typing.Dict[str, typing.Any]:
        from importlib import metadata

        versions: typing.Dict[str, typing.Optional[str]] = {}
        for dist in ("tornado", "uvloop", "tornado_lite"):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = None
        c = self.cfg
        return {
            "started": started.isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "cpu_pressure_pct": None,
            "pinning": self.pinning,
            "loadgen": self.lg.description,
            "versions": versions,
            "quick": c.quick,
            "runs": c.runs,
            "warmup_s": c.warmup,
            "first_warmup_s": c.first_warmup,
            "duration_s": c.duration,
            "memory_connections": c.memory_conns,
            "memory_runs": c.memory_runs,
            "baseline": BASELINE,
        }

    def median(self, scenario: str, stack: str, metric: str) -> typing.Optional[float]:
        entry = self.results["scenarios"].get(scenario, {}).get(stack, {})
        m = entry.get("metrics", {}).get(metric)
        return m["median"] if m else None

    def micro_median(self, stack: str, name: str) -> typing.Optional[float]:
        m = self.results["micro"].get(stack, {}).get(name)
        return m["median"] if isinstance(m, dict) and "median" in m else None

    def ratios(self) -> typing.Dict[str, typing.Dict[str, typing.Optional[float]]]:
        """stack -> "scenario.metric" -> median(stack) / median(Tornado on asyncio)."""
        out: typing.Dict[str, typing.Dict[str, typing.Optional[float]]] = {}
        for stack in self.stacks:
            row: typing.Dict[str, typing.Optional[float]] = {}
            for sc in self.scenarios:
                for m in sc.metrics:
                    row[f"{sc.key}.{m.key}"] = _ratio(self.median(sc.key, stack, m.key),
                                                      self.median(sc.key, BASELINE, m.key))
            for name, _ in MICRO_BENCHMARKS:
                row[f"micro.{name}"] = _ratio(self.micro_median(stack, name), self.micro_median(BASELINE, name))
            out[stack] = row
        return out

    def targets(self) -> typing.List[typing.Dict[str, typing.Any]]:
        """The issue's targets for tornado_lite, each with its measured ratio and verdict."""
        by_key = {sc.key: sc for sc in self.scenarios}

        def verdict(ratio: typing.Optional[float], op: str, bound: float) -> typing.Optional[bool]:
            if ratio is None:
                return None
            return {">=": ratio >= bound, "<=": ratio <= bound, ">": ratio > bound, "<": ratio < bound}[op]

        def capacity(scenario: str, rival: str) -> typing.Optional[float]:
            """How much more work tornado_lite does per server CPU-second than rival (1 / CPU-per-op ratio).

            Under outside load a server's throughput follows the CPU share the scheduler happens to give
            it; its CPU time per unit of work does not, so this is the steadier form of a throughput ratio.
            """
            sc = by_key.get(scenario)
            m = sc.cpu_metric if sc else None
            if m is None:
                return None
            return _ratio(self.median(scenario, rival, m.key), self.median(scenario, "tornado_lite", m.key))

        def capacity_of(scenario: str, stack: str) -> typing.Optional[float]:
            """Like capacity(), for another stack against Tornado (asyncio)."""
            sc = by_key.get(scenario)
            m = sc.cpu_metric if sc else None
            if m is None:
                return None
            return _ratio(self.median(scenario, BASELINE, m.key), self.median(scenario, stack, m.key))

        # The performance issues' targets: issue 9's throughput rows, tightened by issue 15 (CPU per MB,
        # per connection and memory per idle connection).
        specs = [
            ("Ping-pong ×100: msgs/s ≥ 3× Tornado", "pingpong_100", "msgs_s", ">=", 3.0),
            ("Ping-pong ×100: p99 ≤ 0.5× Tornado", "pingpong_100", "p99_us", "<=", 0.5),
            ("Pipelined: msgs/s ≥ 8× Tornado", "pipelined", "msgs_s", ">=", 8.0),
            ("Bulk: MB/s ≥ 2× Tornado", "bulk", "mb_s", ">=", 2.0),
            ("Bulk: server CPU per MB ≤ 0.5× Tornado", "bulk", "cpu_ms_per_mb", "<=", 0.5),
            ("Bulk lines: MB/s ≥ 2× Tornado", "bulk_lines", "mb_s", ">=", 2.0),
            ("Bulk lines: server CPU per MB ≤ 0.5× Tornado", "bulk_lines", "cpu_ms_per_mb", "<=", 0.5),
            ("Server CPU per accepted connection ≤ 0.5× Tornado", "connrate", "cpu_us_per_conn", "<=", 0.5),
            ("Memory per idle connection ≤ 0.3× Tornado", "memory", "kib_per_conn", "<=", 0.3),
        ]
        specs += HTTP_TARGETS
        out = []
        for title, scenario, metric, op, bound in specs:
            ratio = _ratio(self.median(scenario, "tornado_lite", metric), self.median(scenario, BASELINE, metric))
            t = {"target": title, "key": f"{scenario}.{metric}", "ratio": ratio, "met": verdict(ratio, op, bound)}
            if op == ">=":  # a throughput target: also judge it by CPU per unit of work
                cap = capacity(scenario, BASELINE)
                t.update(cpu_ratio=cap, cpu_met=verdict(cap, op, bound))
            if FLOOR in self.stacks:  # what pure Python reaches for the same figure: how far a target is from it
                t["floor_ratio"] = (capacity_of(scenario, FLOOR) if op == ">=" else _ratio(
                    self.median(scenario, FLOOR, metric), self.median(scenario, BASELINE, metric)))
            out.append(t)
        # "Ahead of Tornado-on-uvloop and asyncio streams in every scenario" (each scenario's headline figure).
        for rival in ("tornado-uvloop", "asyncio-streams"):
            for sc in self.scenarios:
                if isinstance(sc, HttpScenario) and rival not in sc.columns:
                    continue
                m = sc.primary
                ratio = _ratio(self.median(sc.key, "tornado_lite", m.key), self.median(sc.key, rival, m.key))
                t = {"target": f"Ahead of {LABELS[rival]}: {sc.title} ({m.title})", "key": f"{sc.key}.{m.key}",
                     "vs": rival, "ratio": ratio, "met": verdict(ratio, ">" if m.higher_better else "<", 1.0)}
                if m.higher_better:
                    cap = capacity(sc.key, rival)
                    t.update(cpu_ratio=cap, cpu_met=None if cap is None else cap > 1)
                out.append(t)
        return out


def _ratio(a: typing.Optional[float], b: typing.Optional[float]) -> typing.Optional[float]:
    return a / b if a is not None and b else None


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _ratio_text(ratio: float) -> str:
    return f"{ratio:.2f}×" if ratio >= 0.095 else f"{ratio:.2g}×"


def _pct(v: typing.Optional[float]) -> str:
    return "unknown" if v is None else f"{v:.0f}%"


def _num(v: float, digits: int = 0) -> str:
    if digits == 0 and abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:,.{max(digits, 1 if abs(v) < 100 else 0)}f}"


def _cell(summary: typing.Optional[typing.Dict[str, typing.Any]], digits: int, ratio: typing.Optional[float],
          show_ratio: bool) -> str:
    if not summary:
        return "–"
    text = f"{_num(summary['median'], digits)} ({_num(summary['min'], digits)}–{_num(summary['max'], digits)})"
    if show_ratio and ratio is not None:
        text += f" **{_ratio_text(ratio)}**"
    return text


def _stack_unavailable(bench: Bench, stack: str, key: str = "server") -> typing.Optional[str]:
    entry = bench.results["stacks"].get(stack, {})
    if entry.get(key):
        return None
    return "n/a (" + entry.get(key + "_reason", "not run") + ")"


def render_markdown(bench: Bench) -> str:
    r, meta = bench.results, bench.results["meta"]
    stacks = bench.stacks
    lines = [f"# tornado_lite benchmarks ({'quick' if meta['quick'] else 'full'} run, {meta['started']})", ""]
    v = meta["versions"]
    lines += [
        f"- Machine: {meta['platform']}, {meta['cpus']} CPUs, load average at the end {meta['load_average'][0]:.2f},"
        f" CPU pressure during the run {_pct(meta.get('cpu_pressure_pct'))};"
        f" Python {meta['python']}; tornado {v.get('tornado')}, uvloop {v.get('uvloop')},"
        f" tornado_lite {v.get('tornado_lite')}",
        f"- Pinning: {meta['pinning']}. Load generator: {meta['loadgen']}.",
        f"- Each cell: median (min–max) of {meta['runs']} runs of {meta['duration_s']} s, each after a"
        f" {meta['warmup_s']} s warm-up (plus a {meta['first_warmup_s']} s warm-up per server);"
        f" **n×** = ratio to {LABELS[BASELINE]}. ↑ higher is better, ↓ lower is better.",
        "",
        "| Scenario | Metric | " + " | ".join(LABELS[s] for s in stacks) + " |",
        "|---|---|" + "---|" * len(stacks),
    ]
    for sc in bench.scenarios:
        res = r["scenarios"].get(sc.key)
        if res is None:
            continue
        for j, m in enumerate(sc.metrics):
            cells = []
            for stack in stacks:
                entry = res.get(stack, {})
                na = _stack_unavailable(bench, stack, bench.availability_key(sc, stack))
                na = f"n/a ({entry['na']})" if "na" in entry else na
                if na:
                    cells.append(na if j == 0 else "")
                elif entry.get("error") and not entry.get("metrics", {}).get(m.key):
                    cells.append(f"error: {entry['error']}" if j == 0 else "")
                else:
                    cells.append(_cell(entry.get("metrics", {}).get(m.key), m.digits,
                                       r["ratios"][stack].get(f"{sc.key}.{m.key}"), stack != BASELINE))
            title = sc.title
            if sc.key == "memory":
                title += f" ({bench.cfg.memory_conns:,} open)"
            lines.append(f"| {title if j == 0 else ''} | {m.title} {'↑' if m.higher_better else '↓'} | "
                         + " | ".join(cells) + " |")
    # CPU use
    lines += ["", "CPU use during the measured window (median % of one core): server / load generator."
              " A load generator near 100% would mean the figure measures the generator, not the server (⚠).", "",
              "| Scenario | " + " | ".join(LABELS[s] for s in stacks) + " |", "|---|" + "---|" * len(stacks)]
    for sc in bench.scenarios:
        if sc.key == "memory" or sc.key not in r["scenarios"]:
            continue
        cells = []
        for stack in stacks:
            ms = r["scenarios"][sc.key].get(stack, {}).get("metrics", {})
            s, g = ms.get("server_cpu_pct"), ms.get("loadgen_cpu_pct")
            if not s or not g:
                cells.append("–")
                continue
            warn = " ⚠" if g["median"] >= 90 else ""
            cells.append(f"{s['median']:.0f}% / {g['median']:.0f}%{warn}")
        impl = {r["scenarios"][sc.key].get(s, {}).get("loadgen_impl") for s in stacks} - {None}
        lines.append(f"| {sc.title}{' (Python generator)' if impl == {'python'} else ''} | " + " | ".join(cells) + " |")
    # Micro-benchmarks
    if r["micro"] or any(_stack_unavailable(bench, s, "micro") for s in stacks):
        lines += ["", "Loop micro-benchmarks (operations/s ↑; asyncio streams column = plain asyncio primitives).", "",
                  "| Benchmark | " + " | ".join(LABELS[s] for s in stacks) + " |", "|---|" + "---|" * len(stacks)]
        for name, title in MICRO_BENCHMARKS:
            cells = []
            for stack in stacks:
                na = _stack_unavailable(bench, stack, "micro")
                m = r["micro"].get(stack, {}).get(name) if not na else None
                if na:
                    cells.append(na)
                elif isinstance(m, dict) and "error" in m:
                    cells.append(f"error: {m['error']}")
                else:
                    cells.append(_cell(m, 0, r["ratios"][stack].get(f"micro.{name}"), stack != BASELINE))
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
    # Targets
    floor = any("floor_ratio" in t for t in r["targets"])
    lines += ["", f"Targets for tornado_lite (ratios to {LABELS[BASELINE]} unless stated). For throughput, the"
              " by-CPU columns judge the same target by server CPU per unit of work instead (work per CPU-second,"
              " the rival's CPU per op ÷ tornado_lite's), which outside load disturbs far less."
              + (f" The last column is the same ratio for the {LABELS[FLOOR]} (no futures, coroutines or streams):"
                 " how far Python itself lets a target be reached." if floor else ""), "",
              "| Target | Measured | Met | By server CPU | Met |" + (" Floor |" if floor else ""),
              "|---|---|---|---|---|" + ("---|" if floor else "")]

    def fmt(ratio: typing.Optional[float], met: typing.Optional[bool]) -> str:
        r_text = "–" if ratio is None else _ratio_text(ratio)
        return f"{r_text} | {'n/a' if met is None else ('yes' if met else '**no**')}"

    for t in r["targets"]:
        cpu = fmt(t["cpu_ratio"], t["cpu_met"]) if "cpu_ratio" in t else " | "
        row = f"| {t['target']} | {fmt(t['ratio'], t['met'])} | {cpu} |"
        if floor:
            fr = t.get("floor_ratio")
            row += f" {'' if 'floor_ratio' not in t else ('–' if fr is None else _ratio_text(fr))} |"
        lines.append(row)
    problems = []
    for sc_key, res in r["scenarios"].items():
        for stack, entry in res.items():
            for e in entry.get("run_errors", []):
                problems.append(f"{sc_key} / {LABELS[stack]}: {e}")
    if bench.notes or problems:
        lines += ["", "Notes:"] + [f"- {n}" for n in bench.notes] + [f"- {p}" for p in problems[:20]]
    return "\n".join(lines) + "\n"


def render_chart(bench: Bench, path: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart (matplotlib is not installed)"
    others = [s for s in bench.stacks if s != BASELINE]
    rows: typing.List[typing.Tuple[str, str]] = []
    for sc in bench.scenarios:
        if sc.key not in bench.results["scenarios"]:
            continue
        for m in sc.metrics:
            if m in (P50, P999) or (m in (P99,) and sc.key != "pingpong_100"):
                continue
            arrow = "↑" if m.higher_better else "↓"
            rows.append((f"{sc.title.split(' (')[0]}: {m.title} {arrow}", f"{sc.key}.{m.key}"))
    if bench.results["micro"]:
        rows += [(f"micro: {title} ↑", f"micro.{name}") for name, title in MICRO_BENCHMARKS]
    if not rows:
        return "no chart (nothing measured)"
    ratios = bench.results["ratios"]
    fig, ax = plt.subplots(figsize=(11, 0.14 * len(rows) * max(1, len(others)) + 1.5))
    height = 0.8 / max(1, len(others))
    colors = {"tornado-uvloop": "#8e8ee0", "asyncio-streams": "#9bc49b", "tornado_lite": "#e07a3a", FLOOR: "#c8c8c8"}
    for i, stack in enumerate(others):
        ys = [len(rows) - 1 - k + (i - (len(others) - 1) / 2) * height for k in range(len(rows))]
        vals = [ratios.get(stack, {}).get(key) for _, key in rows]
        ax.barh([y for y, v in zip(ys, vals) if v], [v for v in vals if v], height=height,
                color=colors.get(stack), label=LABELS[stack] + ("" if any(vals) else " (n/a)"))
        for y, val in zip(ys, vals):
            if val:
                ax.text(val, y, f" {_ratio_text(val)}", va="center", fontsize=7)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullLocator

    ticks = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}×" for t in ticks])
    lo, hi = ax.get_xlim()
    ax.set_xlim(min(lo, 0.5), max(hi, 2.0) * 1.3)  # room for the value labels
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label for label, _ in reversed(rows)], fontsize=8)
    ax.set_xlabel(f"ratio to {LABELS[BASELINE]} (log scale; ↑ rows: right is better, ↓ rows: left is better)")
    meta = bench.results["meta"]
    ax.set_title(f"tornado_lite benchmarks ({'quick' if meta['quick'] else 'full'} run, {meta['started']})",
                 fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="lower right", fontsize=8)  # same top-to-bottom order as the bars
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart: {os.path.relpath(path, os.getcwd())}"


# --------------------------------------------------------------------------------------------


def parse_args(argv: typing.Optional[typing.List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="tornado_lite benchmark suite")
    p.add_argument("--quick", action="store_true", help="short runs (under a minute)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench-results"))
    p.add_argument("--stacks", default=",".join(STACKS), help="comma-separated subset of " + ",".join(STACKS))
    p.add_argument("--scenarios", default=",".join(s.key for s in SCENARIOS),
                   help="comma-separated subset of " + ",".join(s.key for s in SCENARIOS))
    p.add_argument("--runs", type=int, default=0, help="measured runs per scenario and stack (>= 3)")
    p.add_argument("--duration", type=float, default=0, help="seconds per measured run")
    p.add_argument("--memory-conns", type=int, default=0)
    p.add_argument("--loadgen", choices=["auto", "python"], default="auto")
    p.add_argument("--http-loadgen", choices=["auto", "wrk", "python"], default="auto",
                   help="HTTP GET rows: auto = wrk if installed (Python in --quick: wrk counts whole seconds)")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and load generator to cores")
    p.add_argument("--skip-micro", action="store_true")
    p.add_argument("--no-chart", action="store_true")
    args = p.parse_args(argv)
    args.stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.stacks) - set(STACKS) | set(args.scenarios) - {s.key for s in SCENARIOS}
    if unknown:
        p.error(f"unknown stack or scenario: {', '.join(sorted(unknown))}")
    if BASELINE not in args.stacks:
        args.stacks.insert(0, BASELINE)  # every ratio is against it
    if args.runs and args.runs < 3:
        p.error("--runs must be at least 3 (figures are medians)")
    return args


def main() -> int:
    args = parse_args()

    def on_term(signum: int, frame: typing.Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return Bench(args).run()
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    finally:
        _kill_children()


if __name__ == "__main__":
    sys.exit(main())
