"""Where a bulk echo server's CPU goes, per MB echoed: CPU (user/kernel), syscalls, wake-ups.

Runs the suite's echo server (benchmarks/servers/echo_server.py, ``bulk`` or ``bulk_lines``, plain or
TLS) for each stack named, plus two pure-Python epoll echo "floors" that are not Tornado at all:

  floor       the suite's pure-Python floor (echo_server.py --stack floor) reading recv(262144), one
              send of what was read (what no read_bytes(65536) API can do)
  floor64     the same floor as run.py measures it: recv(65536), one read per stream per poll
  floorbio    (TLS only) an ``ssl.SSLObject`` over ``MemoryBIO``s: recv_into(262144) feeds OpenSSL,
              every record it holds is decrypted, re-encrypted, and sent with one send

and drives it with the suite's C load generator (benchmarks/loadgen.c, 4 connections streaming
64 KiB, 256 KiB window).  Server on CPU 0, load generator on CPU 1, as in the suite.  Inside the
load generator's measured window the server is counted with ``perf stat`` (syscall tracepoints and
context switches; a counter, not a tracer, so the server runs at its own speed) and
/proc/PID/{stat,status} (user/kernel split, voluntary context switches = times the server blocked,
in practice in epoll_wait, and was woken by the load generator's data).  Also counted: the load
generator's own wake-ups (which the server's sends pay for), page faults, hrtimer starts and softirq
entries in the server's context (a Nagle-held segment sent later from an ACK shows as these).

``stack@NAME=VALUE`` runs a stack with an environment variable set (``tornado_lite@PYTHONPATH=/tmp/old``
measures another tree of tornado_lite side by side).

Prints, per run and as medians over runs, per MB echoed: server CPU ms (the suite's figure, from the
load generator), user and kernel ms, recv/send/epoll_wait calls and wake-ups; and ratios of CPU/MB to
the first stack.  Stacks run one after another within a round, rounds alternate, so drift of the
machine's load falls on every stack alike.

  PYTHONPATH=. .venv-bench/bin/python benchmarks/bulk_profile.py --stacks tornado,tornado_lite,floor --runs 3

Needs perf (with tracepoints readable) and a C compiler; benchmark scaffolding, never imported by
tornado_lite.
"""

import argparse
import json
import os
import select
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import typing

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ECHO_SERVER = os.path.join(HERE, "servers", "echo_server.py")
LOADGEN_C = os.path.join(HERE, "loadgen.c")

# Syscalls a Python or libuv echo may use for each role.
RECV = ("recvfrom", "recvmsg", "read", "readv")
SEND = ("sendto", "sendmsg", "write", "writev")
POLL = ("epoll_wait", "epoll_pwait")
EVENTS = [f"syscalls:sys_enter_{n}" for n in RECV + SEND + POLL + ("epoll_ctl",)] + [
    "raw_syscalls:sys_enter", "context-switches", "page-faults",
    "timer:hrtimer_start", "irq:softirq_entry"]


# -- the memory-BIO floor: a server in this file, run with --serve-floor-bio ------------------------


def serve_floor_bio(certfile: str, keyfile: str) -> None:
    """A bare epoll TLS echo through MemoryBIOs: one large recv_into, all records, one send."""
    import select as sel

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    lsock.setblocking(False)
    ep = sel.epoll()
    ep.register(lsock.fileno(), sel.EPOLLIN)
    conns: typing.Dict[int, typing.Any] = {}
    scratch = bytearray(262144)
    view = memoryview(scratch)
    sys.stdout.write(f"LISTENING {lsock.getsockname()[1]}\n")
    sys.stdout.flush()

    def flush(s: socket.socket, out: ssl.MemoryBIO, unsent: typing.List[bytes]) -> bool:
        data = (unsent.pop() if unsent else b"") + out.read()
        if not data:
            return True
        try:
            n = s.send(data)
        except BlockingIOError:
            n = 0
        if n < len(data):
            unsent.append(data[n:])
            return False
        return True

    while True:
        for fd, events in ep.poll():
            if fd == lsock.fileno():
                s, _ = lsock.accept()
                s.setblocking(False)
                inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
                conns[s.fileno()] = [s, ctx.wrap_bio(inc, out, server_side=True), inc, out, [], True]
                ep.register(s.fileno(), sel.EPOLLIN)
                continue
            entry = conns[fd]
            s, obj, inc, out, unsent, shaking = entry
            if events & sel.EPOLLOUT:
                if not flush(s, out, unsent):
                    continue
                ep.modify(fd, sel.EPOLLIN)
            try:
                n = s.recv_into(scratch)
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if not n:
                ep.unregister(fd)
                s.close()
                del conns[fd]
                continue
            inc.write(view[:n])
            if shaking:
                try:
                    obj.do_handshake()
                    entry[5] = False
                except ssl.SSLWantReadError:
                    pass
                flush(s, out, unsent)
                if entry[5]:
                    continue
            while True:
                try:
                    data = obj.read(262144)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLError:
                    data = b""
                if not data:
                    break
                obj.write(data)
            if not flush(s, out, unsent):
                ep.modify(fd, sel.EPOLLIN | sel.EPOLLOUT)


def run_inproc(args: argparse.Namespace) -> None:
    """The TLS bulk echo in one process, for callgrind: user-space instructions per MB, deterministic.

    4 TCP loopback connections; server ends are SSLIOStreams running the suite's bulk echo
    (read_bytes(65536, partial=True), write), client ends SSLIOStreams that keep 256 KiB in flight
    each until ``--mb`` MB per connection came back.  Run it twice with two sizes under
    ``valgrind --tool=callgrind`` and divide the difference by the difference of MB echoed; the
    client's share is the same for every server variant compared.  ``--bio`` runs the server ends
    over memory BIOs: SSLIOStream's private switch of the experiment in commit 768b662 (reverted by
    the next commit, a wash: see benchmarks/README.md); on a tree without it, --bio is refused.
    """
    from tornado_lite import gen
    from tornado_lite.ioloop import IOLoop
    from tornado_lite.iostream import SSLIOStream, StreamClosedError

    with tempfile.TemporaryDirectory() as d:
        ca, cert, key = make_certs(d)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)
        client_ctx = ssl.create_default_context(cafile=ca)

    if args.bio and not hasattr(SSLIOStream, "_attach_memory_bios"):
        sys.exit("--bio needs the memory-BIO experiment's tree (commit 768b662)")

    class ServerStream(SSLIOStream):
        _memory_bio = bool(args.bio)

    chunk = b"x" * 65536
    per_conn = int(args.mb * 1e6) // len(chunk)

    async def echo(stream: SSLIOStream) -> None:
        try:
            while True:
                await stream.write(await stream.read_bytes(65536, partial=True))
        except StreamClosedError:
            pass

    async def client(port: int) -> None:
        stream = SSLIOStream(socket.socket(), ssl_options=client_ctx)
        await stream.connect(("127.0.0.1", port), server_hostname="localhost")

        async def send() -> None:
            for _ in range(per_conn):
                await stream.write(chunk)

        async def receive() -> None:
            left = per_conn * len(chunk)
            while left:
                left -= len(await stream.read_bytes(min(left, 65536), partial=True))

        await gen.multi([send(), receive()])
        stream.close()

    async def main() -> None:
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        lsock.setblocking(False)
        loop = IOLoop.current()

        def accept(fd: typing.Any, events: int) -> None:
            conn, _ = lsock.accept()
            wrapped = server_ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            loop.spawn_callback(echo, ServerStream(wrapped))

        loop.add_handler(lsock, accept, IOLoop.READ)
        started = time.process_time()
        await gen.multi([client(lsock.getsockname()[1]) for _ in range(4)])
        elapsed = time.process_time() - started
        loop.remove_handler(lsock)
        lsock.close()
        mb = 4 * per_conn * len(chunk) / 1e6
        print(f"{mb:.1f} MB echoed, {elapsed * 1e3 / mb:.3f} ms CPU per MB (client and server)")

    IOLoop.current().run_sync(main)


# -- measuring ---------------------------------------------------------------------------------------


def pin(cpu: int) -> typing.Callable[[], None]:
    return lambda: os.sched_setaffinity(0, {cpu})


def readline(p: subprocess.Popen, timeout: float) -> str:
    assert p.stdout is not None
    fd = p.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        ch = os.read(fd, 1)
        if not ch:
            break
        buf += ch
    return buf.decode(errors="replace").strip()


def proc_counts(pid: int) -> typing.Dict[str, float]:
    """User and kernel CPU seconds and context switches of every thread of ``pid`` so far."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"user": 0.0, "kernel": 0.0, "vol": 0.0, "invol": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out["user"] += int(fields[11]) / tick
        out["kernel"] += int(fields[12]) / tick
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    out["vol"] += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    out["invol"] += int(line.split()[1])
    return out


def build_loadgen(builddir: str, tls: bool) -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        sys.exit("no C compiler")
    exe = os.path.join(builddir, "loadgen")
    extra = ["-DWITH_TLS", "-lssl", "-lcrypto"] if tls else []
    subprocess.run([cc, "-O2", "-o", exe, LOADGEN_C] + extra, check=True, timeout=120)
    return exe


def make_certs(d: str) -> typing.Tuple[str, str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = tuple(os.path.join(d, n) for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(paths[0])
    cert.cert_chain_pems[0].write_to_path(paths[1])
    cert.private_key_pem.write_to_path(paths[2])
    return paths  # type: ignore[return-value]


def server_cmd(stack: str, mode: str, certs: typing.Optional[typing.Tuple[str, str, str]]) -> typing.List[str]:
    if stack == "floorbio":
        cmd = [sys.executable, os.path.abspath(__file__), "--serve-floor-bio"]
    elif stack in ("floor", "floor64"):  # the suite's floor server (run.py's "pure-Python floor" column)
        cmd = [sys.executable, ECHO_SERVER, "--stack", "floor", "--mode", mode,
               "--read-size", "262144" if stack == "floor" else "65536"]
    else:
        cmd = [sys.executable, ECHO_SERVER, "--stack", stack, "--mode", mode]
    if certs:
        cmd += ["--certfile", certs[1], "--keyfile", certs[2]]
    return cmd


def one_run(stack: str, args: argparse.Namespace, loadgen: str,
            certs: typing.Optional[typing.Tuple[str, str, str]]) -> typing.Dict[str, float]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # "stack@NAME=VALUE" runs the stack with that environment variable (an A/B of one switch).
    stack, _, setting = stack.partition("@")
    if setting:
        name, _, value = setting.partition("=")
        env[name] = value
    srv = subprocess.Popen(server_cmd(stack, args.mode, certs), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           preexec_fn=pin(0), cwd=ROOT, env=env)
    try:
        line = readline(srv, 30)
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"{stack}: server did not start: {line!r}")
        port = line.split()[1]
        lg_cmd = [loadgen, "--mode", "bulk", "--conns", "4", "--chunk", "65536", "--window", "262144",
                  "--port", port, "--warmup", str(args.warmup), "--duration", str(args.duration),
                  "--server-pid", str(srv.pid), "--max-time", str(args.warmup + args.duration + 30)]
        if args.mode == "bulk_lines":
            lg_cmd += ["--size", "65536"]
        if certs:
            lg_cmd += ["--tls", "--ca", certs[0]]
        lg = subprocess.Popen(lg_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=pin(1), cwd=ROOT)
        # Count inside the load generator's measured window: from just after its warm-up to just before its end.
        time.sleep(args.warmup + 0.3)
        window = args.duration - 0.6
        c0 = proc_counts(srv.pid)
        g0 = proc_counts(lg.pid)
        t0 = time.monotonic()
        perf = subprocess.run(["perf", "stat", "-x", ",", "-e", ",".join(EVENTS), "-p", str(srv.pid), "--",
                               "sleep", str(window)], capture_output=True, text=True, timeout=window + 30)
        t1 = time.monotonic()
        c1 = proc_counts(srv.pid)
        g1 = proc_counts(lg.pid)
        out, _ = lg.communicate(timeout=args.duration + 60)
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
    result = json.loads([ln for ln in out.decode().splitlines() if ln.startswith("{")][-1])
    if result.get("errors"):
        raise RuntimeError(f"{stack}: load generator errors: {result.get('last_error')}")
    rate = result["bytes"] / result["elapsed"]  # bytes per second over the measured window
    mb = rate * (t1 - t0) / 1e6  # MB echoed while perf counted
    counts: typing.Dict[str, float] = {}
    for ln in perf.stderr.splitlines():
        parts = ln.split(",")
        if len(parts) > 2 and parts[0].strip().isdigit():
            counts[parts[2].split(":")[-1].replace("sys_enter_", "")] = float(parts[0])
    row = {
        "mb_s": rate / 1e6,
        "cpu_ms": result["server_cpu_s"] * 1e3 / (result["bytes"] / 1e6),
        "user_ms": (c1["user"] - c0["user"]) * 1e3 / mb,
        "kernel_ms": (c1["kernel"] - c0["kernel"]) * 1e3 / mb,
        "recv": sum(counts.get(n, 0) for n in RECV) / mb,
        "send": sum(counts.get(n, 0) for n in SEND) / mb,
        "poll": sum(counts.get(n, 0) for n in POLL) / mb,
        "ctl": counts.get("epoll_ctl", 0) / mb,
        "syscalls": counts.get("raw_syscalls:sys_enter", counts.get("sys_enter", 0)) / mb,
        "wakeups": (c1["vol"] - c0["vol"]) / mb,
        "preempt": (c1["invol"] - c0["invol"]) / mb,
        "faults": counts.get("page-faults", 0) / mb,
        "peer_wake": (g1["vol"] - g0["vol"]) / mb,
        "hrtimer": counts.get("hrtimer_start", 0) / mb,
        "softirq": counts.get("softirq_entry", 0) / mb,
    }
    return row


COLUMNS = ["mb_s", "cpu_ms", "user_ms", "kernel_ms", "recv", "send", "poll", "ctl", "syscalls", "wakeups", "preempt",
           "faults", "peer_wake", "hrtimer", "softirq"]


def show(stack: str, row: typing.Dict[str, float], tag: str = "") -> None:
    cells = " ".join(f"{row[c]:9.3f}" if c.endswith("ms") else f"{row[c]:9.1f}" for c in COLUMNS)
    print(f"{stack:16s}{tag:>6s} {cells}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stacks", default="tornado,tornado-uvloop,tornado_lite,floor,floor64")
    p.add_argument("--mode", default="bulk", choices=["bulk", "bulk_lines"])
    p.add_argument("--tls", action="store_true")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--inproc", action="store_true", help="TLS bulk echo in one process (for callgrind)")
    p.add_argument("--bio", action="store_true", help="with --inproc: server streams over memory BIOs (commit 768b662)")
    p.add_argument("--mb", type=float, default=64.0, help="with --inproc: MB echoed per connection")
    p.add_argument("--serve-floor-bio", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--certfile", help=argparse.SUPPRESS)
    p.add_argument("--keyfile", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inproc:
        run_inproc(args)
        return 0
    if args.serve_floor_bio:
        try:
            serve_floor_bio(args.certfile, args.keyfile)
        except ConnectionError:
            pass
        return 0
    stacks = args.stacks.split(",")
    with tempfile.TemporaryDirectory() as d:
        loadgen = build_loadgen(d, args.tls)
        certs = make_certs(d) if args.tls else None
        print(f"per MB echoed ({args.mode}{', TLS' if args.tls else ''}); {args.runs} rounds, stacks alternating")
        print(f"{'stack':22s} " + " ".join(f"{c:>9s}" for c in COLUMNS), flush=True)
        rows: typing.Dict[str, typing.List[typing.Dict[str, float]]] = {s: [] for s in stacks}
        for i in range(args.runs):
            for s in stacks:
                row = one_run(s, args, loadgen, certs)
                rows[s].append(row)
                show(s, row, f"#{i + 1}")
        print("medians:")
        medians = {s: {c: statistics.median(r[c] for r in rows[s]) for c in COLUMNS} for s in stacks}
        for s in stacks:
            show(s, medians[s], "med")
        base = medians[stacks[0]]["cpu_ms"]
        print("CPU/MB ratio to " + stacks[0] + ": " + ", ".join(
            f"{s} {medians[s]['cpu_ms'] / base:.2f}x" for s in stacks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
