"""Quick iostream-only benchmark: tornado_lite's IOStream against Tornado 6's, same echo handler.

A developer's tool for tuning iostream (``make bench`` is the real suite).  The server side is a
bare accept handler plus the echo coroutine of benchmarks/servers/echo_server.py, so that only the
loop and the stream are measured (no TCPServer).  The client is benchmarks/loadgen.c, built into a
temporary directory.  Each process is pinned to its own core, bound to 127.0.0.1 and killed at the end.

    python benchmarks/iostream_pingpong.py --stack tornado_lite --scenario pingpong_100
    python benchmarks/iostream_pingpong.py --compare /path/to/venv-with-tornado/bin/python

``--compare PY`` runs every scenario on both stacks (Tornado's with interpreter PY, which must have
tornado and tornado_lite importable) and prints the ratios.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = {
    "pingpong_1": (["--mode", "pingpong", "--conns", "1"], "line"),
    "pingpong_100": (["--mode", "pingpong", "--conns", "100"], "line"),
    "pipelined": (["--mode", "pipeline", "--conns", "100", "--depth", "16"], "line"),
    "bulk": (["--mode", "bulk", "--conns", "4", "--chunk", "65536", "--window", "262144"], "bulk"),
}


def serve(stack: str, mode: str) -> None:
    if stack == "tornado_lite":
        from tornado_lite.ioloop import IOLoop
        from tornado_lite.iostream import IOStream, StreamClosedError
        from tornado_lite.netutil import add_accept_handler, bind_sockets
    else:
        from tornado.ioloop import IOLoop  # type: ignore[no-redef]
        from tornado.iostream import IOStream, StreamClosedError  # type: ignore[no-redef]
        from tornado.netutil import add_accept_handler, bind_sockets  # type: ignore[no-redef]

    async def line_echo(stream):  # type: ignore[no-untyped-def]
        while True:
            try:
                data = await stream.read_until(b"\n")
                await stream.write(data)
            except StreamClosedError:
                break

    async def bulk_echo(stream):  # type: ignore[no-untyped-def]
        while True:
            try:
                data = await stream.read_bytes(65536, partial=True)
                await stream.write(data)
            except StreamClosedError:
                break

    handler = bulk_echo if mode == "bulk" else line_echo
    loop = IOLoop.current()

    def on_accept(conn, address):  # type: ignore[no-untyped-def]
        if conn.family != socket.AF_UNIX:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop.spawn_callback(handler, IOStream(conn))

    sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET, backlog=1024)
    add_accept_handler(sockets[0], on_accept)
    sys.stdout.write(f"LISTENING {sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    loop.start()


def build_loadgen(tmp: str) -> str:
    exe = os.path.join(tmp, "loadgen")
    subprocess.run(["cc", "-O2", "-o", exe, os.path.join(HERE, "loadgen.c")], check=True)
    return exe


def measure(python: str, stack: str, scenario: str, loadgen: str, duration: float) -> dict:
    args, mode = SCENARIOS[scenario]
    server = subprocess.Popen(
        ["taskset", "-c", "0", python, os.path.abspath(__file__), "--serve", stack, "--mode", mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("LISTENING"):
            raise RuntimeError(f"server did not start: {line!r}")
        port = line.split()[1]
        cmd = ["taskset", "-c", "1", loadgen, "--port", port, "--duration", str(duration), "--warmup", "1",
               "--max-time", str(duration + 30), "--server-pid", str(server.pid)] + args
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
        result = json.loads(out.stdout)
    finally:
        server.terminate()
        server.wait(10)
    return result


def summary(r: dict) -> str:
    e = r["elapsed"]
    cpu = r.get("server_cpu_s", -1)
    if r["msgs"]:
        per = f"{cpu / r['msgs'] * 1e6:7.1f} us cpu/msg"
    else:
        per = f"{cpu / (r['bytes'] / 1e6) * 1e3:7.2f} ms cpu/MB"
    return (f"{r['msgs'] / e:10.0f} msgs/s {r['bytes'] / e / 1e6:8.1f} MB/s  p99 {r['lat_us'].get('p99', -1):8.0f} us"
            f"  {per} (server cpu {cpu / e * 100:3.0f}%)")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--serve", choices=["tornado_lite", "tornado"])
    p.add_argument("--mode", default="line")
    p.add_argument("--stack", default="tornado_lite")
    p.add_argument("--scenario", default="all")
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--compare", help="interpreter with tornado installed, to run the Tornado stack")
    a = p.parse_args()
    if a.serve:
        serve(a.serve, a.mode)
        return 0
    scenarios = list(SCENARIOS) if a.scenario == "all" else a.scenario.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        loadgen = build_loadgen(tmp)
        for sc in scenarios:
            if a.compare:
                t = measure(a.compare, "tornado", sc, loadgen, a.duration)
                time.sleep(0.5)
                lite = measure(sys.executable, "tornado_lite", sc, loadgen, a.duration)
                key = "bytes" if sc == "bulk" else "msgs"
                ratio = (lite[key] / lite["elapsed"]) / max(1e-9, t[key] / t["elapsed"])
                print(f"{sc:14s} tornado      {summary(t)}")
                print(f"{sc:14s} tornado_lite {summary(lite)}   ratio {ratio:.2f}x")
            else:
                print(f"{sc:14s} {a.stack:12s} {summary(measure(sys.executable, a.stack, sc, loadgen, a.duration))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
