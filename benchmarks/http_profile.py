"""Where a request's CPU goes: cProfile of servers/http_app.py under load, split by layer.

    python benchmarks/http_profile.py                          # tornado_lite (install()), GET /, 3 s
    python benchmarks/http_profile.py --stack tornado --path /json
    python benchmarks/http_profile.py --mode ws --path /ws --conns 10
    python benchmarks/http_profile.py --stats /tmp/lite.prof   # also keep the raw pstats file

A developer's tool (the suite does not run it).  It starts the app as the suite does (for tornado_lite:
``install()`` then the unchanged script, as ``python -m tornado_lite`` does), warms it up, turns a
``cProfile`` profiler on with SIGUSR1, drives it with wrk (or benchmarks/http_loadgen.py) for
--seconds, and with SIGUSR2 turns it off and writes the stats.  The profiler's clock is the process's
CPU time, so time spent preempted by other work on a shared machine does not count, and neither does
the loop's idle wait.

Every function's own time is put in one bucket: its module's (``tornado_lite.iostream``,
``tornado.web``, ``re``, ...), and a C function's (``bytes.find``, ``str.format``, a regex match...)
goes to the module of the Python function that called it, in proportion to the calls each caller
made: so ``tornado.httputil`` includes the regex and string work it asks for.  The socket and poller
methods (``send``, ``recv``, ``setsockopt``, ``epoll.poll``/``modify``...) are a bucket of their own:
that time is the kernel's (a loopback ``send`` also runs the receiver's TCP work).  The table gives each bucket's share
and microseconds per request (or message).  cProfile adds a fixed cost to every Python call, so the
absolute figures are inflated (most for code made of many small calls); read the shares, and compare
stacks with each other under the same profiler.
"""

import argparse
import cProfile
import os
import pstats
import runpy
import shutil
import signal
import subprocess
import sys
import time
import typing

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HTTP_APP = os.path.join(HERE, "servers", "http_app.py")
HTTP_LOADGEN = os.path.join(HERE, "http_loadgen.py")
STDLIB = os.path.dirname(os.__file__)


# -- the server side: the app with a profiler switched by signals ------------------------------------


def serve(stack: str, stats_path: str, profile: bool = True) -> None:
    if stack.startswith("tornado_lite"):
        import tornado_lite

        if stack == "tornado_lite-bridge":  # issue 14's asyncio bridge, installed first as http_bridge.py does
            import tornado_lite.platform.asyncio

            tornado_lite.platform.asyncio.install()
        tornado_lite.install()
    elif stack == "tornado-uvloop":
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if not profile:  # under callgrind: the app alone
        sys.argv = [HTTP_APP]
        runpy.run_path(HTTP_APP, run_name="__main__")
        return
    profiler = cProfile.Profile(time.process_time)

    def start(signum: int, frame: typing.Any) -> None:
        profiler.enable()

    def stop(signum: int, frame: typing.Any) -> None:
        profiler.disable()
        profiler.dump_stats(stats_path)
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [HTTP_APP]
    runpy.run_path(HTTP_APP, run_name="__main__")


# -- the analysis -----------------------------------------------------------------------------------


KERNEL = "system calls (socket send/recv/setsockopt, epoll)"


def bucket_of(filename: str, funcname: str) -> typing.Optional[str]:
    """The module a Python function belongs to, KERNEL for a socket or poller method (the time is the
    system call's), or None for any other C function (its callers get its time)."""
    if filename == "~":
        return KERNEL if "_socket.socket' objects" in funcname or "'select." in funcname else None
    if filename.startswith("<"):
        return "<frozen/other>"
    path = os.path.abspath(filename)
    for pkg in ("tornado_lite", "tornado", "uvloop"):
        marker = os.sep + pkg + os.sep
        if marker in path:
            rest = path.rsplit(marker, 1)[1]
            return pkg + "." + rest[:-3].replace(os.sep, ".") if rest.endswith(".py") else pkg
    if path.startswith(STDLIB):
        rel = os.path.relpath(path, STDLIB)
        return "stdlib " + rel.split(os.sep)[0].replace(".py", "")
    if os.path.basename(path) == "http_app.py":
        return "the app (http_app.py)"
    return "other " + os.path.basename(path)


CORE = "core: loop, streams, futures (tornado_lite / Tornado's core + asyncio)"
HTTP = "Tornado HTTP layer (web, http1connection, httputil, escape, routing, websocket)"
TORNADO_CORE = {"ioloop", "iostream", "tcpserver", "netutil", "gen", "concurrent", "locks", "queues", "util",
                "log", "platform", "process", "tcpclient", "options"}


def layer_of(bucket: str) -> str:
    """The layer a bucket's code belongs to; 'stdlib (other)' and '<frozen/other>' are nobody's own."""
    if bucket == KERNEL:
        return KERNEL
    if bucket.startswith("tornado_lite.") or bucket.startswith("uvloop"):
        return CORE
    if bucket.startswith("tornado."):
        return CORE if bucket.split(".")[1] in TORNADO_CORE else HTTP
    if bucket.split(" ")[-1] in ("asyncio", "selectors"):
        return CORE
    if bucket.startswith("the app"):
        return "the app (http_app.py)"
    return "stdlib (other)"


def attribute(stats: pstats.Stats) -> typing.Dict[str, float]:
    """Own time per bucket, other C functions' time given to their callers' buckets by call counts."""
    raw = stats.stats  # type: ignore[attr-defined]
    out: typing.Dict[str, float] = {}
    for (filename, _line, funcname), (_cc, _nc, tt, _ct, callers) in raw.items():
        b = bucket_of(filename, funcname)
        if b is not None:
            out[b] = out.get(b, 0.0) + tt
            continue
        total_calls = sum(edge[1] for edge in callers.values())
        if not total_calls:
            out["C (no Python caller)"] = out.get("C (no Python caller)", 0.0) + tt
            continue
        for (cf, _cl, cn), edge in callers.items():
            cb = bucket_of(cf, cn) or "C called from C"
            out[cb] = out.get(cb, 0.0) + tt * edge[1] / total_calls
    return out


def charged_layers(stats: pstats.Stats) -> typing.Dict[str, float]:
    """Own time per layer, where the time of stdlib code and C functions outside the layers (regex, copy,
    email.utils, str methods ...) is charged to the layer of the code that called it, by call counts."""
    raw = stats.stats  # type: ignore[attr-defined]
    memo: typing.Dict[typing.Any, typing.Dict[str, float]] = {}

    def weights(func: typing.Any, busy: typing.Set[typing.Any]) -> typing.Dict[str, float]:
        if func in memo:
            return memo[func]
        b = bucket_of(func[0], func[2])
        layer = layer_of(b) if b is not None else None
        if layer is not None and layer != "stdlib (other)":
            return {layer: 1.0}
        callers = raw.get(func, (0, 0, 0, 0, {}))[4]
        total = sum(edge[1] for edge in callers.values())
        if not total or func in busy:
            return {"unattributed": 1.0}
        out: typing.Dict[str, float] = {}
        for caller, edge in callers.items():
            for name, w in weights(caller, busy | {func}).items():
                out[name] = out.get(name, 0.0) + w * edge[1] / total
        memo[func] = out
        return out

    result: typing.Dict[str, float] = {}
    for func, (_cc, _nc, tt, _ct, _callers) in raw.items():
        for name, w in weights(func, set()).items():
            result[name] = result.get(name, 0.0) + tt * w
    return result


def report(stats_path: str, units: int, unit: str, top: int) -> str:
    stats = pstats.Stats(stats_path)
    buckets = attribute(stats)
    total = sum(buckets.values())
    own: typing.Dict[str, float] = {}
    for b, t in buckets.items():
        own[layer_of(b)] = own.get(layer_of(b), 0.0) + t
    charged = charged_layers(stats)
    per = 1e6 / max(1, units)
    lines = [f"Profiled CPU: {total:.3f} s for {units} {unit}s = {total * per:.0f} µs/{unit} under cProfile", "",
             "| layer | own code (C calls in their caller's) | with the stdlib code it calls |", "|---|---|---|"]
    for name in sorted(set(own) | set(charged), key=lambda n: -charged.get(n, 0.0)):
        own_pct, charged_pct = own.get(name, 0.0) / total * 100, charged.get(name, 0.0) / total * 100
        lines.append(f"| {name} | {own_pct:.0f}% | {charged_pct:.0f}% |")
    lines += ["", f"| module (C calls counted in their caller's) | share | µs/{unit} (profiled) |", "|---|---|---|"]
    for name, t in sorted(buckets.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {name} | {t / total * 100:.1f}% | {t * per:.1f} |")
    return "\n".join(lines)


# -- callgrind: instructions per request, deterministic where timings on a shared machine are not ---------


def callgrind_instructions(args: argparse.Namespace) -> typing.Tuple[float, int]:
    """(user-space instructions per request, requests): the server under callgrind, counters zeroed
    after a warm-up, then --requests answers from the Python generator, then a dump."""
    out = f"/tmp/http_callgrind.{os.getpid()}.out"
    server = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
                               sys.executable, __file__, "--serve", "--no-profiler", "--stack", args.stack],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        port = read_port(server, timeout=600)
        base = [sys.executable, HTTP_LOADGEN, "--mode", args.mode, "--path", args.path, "--port", str(port),
                "--conns", str(args.conns), "--warmup", "0", "--duration", "600", "--max-time", "900"]
        subprocess.run(base + ["--requests", str(max(100, args.requests // 5))], capture_output=True, timeout=900)
        subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True, timeout=120)
        import json

        r = json.loads(subprocess.run(base + ["--requests", str(args.requests)], capture_output=True, text=True,
                                      timeout=900).stdout.strip().splitlines()[-1])
        subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True, timeout=120)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    dumps = sorted(f for f in os.listdir("/tmp") if f.startswith(os.path.basename(out)) and f != os.path.basename(out))
    total = 0
    for name in dumps[-1:]:
        with open(os.path.join("/tmp", name)) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    total = int(line.split()[1])
    for name in os.listdir("/tmp"):
        if name.startswith(os.path.basename(out)):
            os.unlink(os.path.join("/tmp", name))
    return total / max(1, r["msgs"]), r["msgs"]


# -- user / system CPU split -----------------------------------------------------------------------


def user_sys_seconds(pid: int) -> typing.Tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime


def cpu_split(args: argparse.Namespace) -> str:
    """Server user and system CPU per request over --seconds of load, the app without a profiler."""
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--no-profiler", "--stack", args.stack],
                              stdout=subprocess.PIPE, cwd=ROOT)
    try:
        port = read_port(server)
        drive(args, port, server.pid, 1.0)
        u0, s0 = user_sys_seconds(server.pid)
        r = drive(args, port, server.pid, args.seconds)
        u1, s1 = user_sys_seconds(server.pid)
    finally:
        server.kill()
        server.wait()
    n = max(1, r.get("msgs", 0))
    return (f"{args.stack}, {args.mode} {args.path}: {n} answers; server CPU per answer: user "
            f"{(u1 - u0) / n * 1e6:.1f} µs, system {(s1 - s0) / n * 1e6:.1f} µs (clock ticks of 10 ms: "
            f"run a few seconds)")


# -- the driver -------------------------------------------------------------------------------------


def read_port(p: subprocess.Popen, timeout: float = 60) -> int:
    assert p.stdout is not None
    import select

    if not select.select([p.stdout], [], [], timeout)[0]:
        raise SystemExit("server did not start in time")
    line = p.stdout.readline().decode().split()
    if len(line) < 2 or line[0] != "LISTENING":
        raise SystemExit(f"server did not start: {line}")
    return int(line[1])


def drive(args: argparse.Namespace, port: int, pid: int, seconds: float) -> dict:
    import json

    cmd = [sys.executable, HTTP_LOADGEN, "--mode", args.mode, "--path", args.path, "--port", str(port),
           "--conns", str(args.conns), "--warmup", "0", "--duration", str(seconds), "--server-pid", str(pid)]
    if args.mode == "get" and shutil.which("wrk") and not args.python_loadgen:
        cmd += ["--wrk", typing.cast(str, shutil.which("wrk"))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description="cProfile of the HTTP benchmark app under load, by layer")
    p.add_argument("--stack", default="tornado_lite",
                   choices=["tornado_lite", "tornado_lite-bridge", "tornado", "tornado-uvloop"])
    p.add_argument("--mode", default="get", choices=["get", "ws"])
    p.add_argument("--path", default="/")
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--stats", help="keep the pstats file here")
    p.add_argument("--python-loadgen", action="store_true")
    p.add_argument("--callgrind", action="store_true",
                   help="instead of cProfile: user-space instructions per request under valgrind's callgrind")
    p.add_argument("--requests", type=int, default=2000, help="--callgrind: answers counted")
    p.add_argument("--cpu-split", action="store_true",
                   help="instead of cProfile: the server's user and system CPU per answer, no profiler")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-profiler", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    stats_path = args.stats or f"/tmp/http_profile.{os.getpid()}.prof"
    if args.serve:
        serve(args.stack, stats_path, profile=not args.no_profiler)
        return 0
    if args.cpu_split:
        print(cpu_split(args))
        return 0
    if args.callgrind:
        per, n = callgrind_instructions(args)
        print(f"{args.stack}, {args.mode} {args.path}, {args.conns} conns: {per:,.0f} instructions per "
              f"{'request' if args.mode == 'get' else 'message'} (callgrind, {n} counted after a warm-up)")
        return 0
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--stack", args.stack, "--stats", stats_path],
                              stdout=subprocess.PIPE, cwd=ROOT)
    try:
        port = read_port(server)
        drive(args, port, server.pid, 1.0)  # warm-up, not profiled
        server.send_signal(signal.SIGUSR1)
        time.sleep(0.1)
        r = drive(args, port, server.pid, args.seconds)
        server.send_signal(signal.SIGUSR2)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    if "error" in r or not r.get("msgs"):
        raise SystemExit(f"load generator failed: {r}")
    print(f"{args.stack}, {args.mode} {args.path}, {args.conns} conns, {args.seconds} s: {r['msgs']} "
          f"{'requests' if args.mode == 'get' else 'messages'} by {r['impl']}")
    # The profiler ran a little longer than the load generator's window; both ends are idle.
    print(report(stats_path, r["msgs"], "request" if args.mode == "get" else "message", args.top))
    if not args.stats:
        os.unlink(stats_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
