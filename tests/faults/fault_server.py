"""A tornado_lite line-echo server for the fault suite and the soak, run as a child process.

    python fault_server.py [--nofile N] [--backlog B] [--tls CERT KEY] [--handshake-timeout S]

It prints ``PORT <n>`` once listening (then ``TLSPORT <n>``: a second server, TLS, with ``--tls``;
``--handshake-timeout`` applies to it), then obeys commands read line by line from stdin, answering
each on stdout:

* ``stats``: ``STATS {json}`` with the loop's counters (passes, handlers...), connections accepted,
  open and closed, bytes echoed, errors by kind, open fds and RSS;
* ``gc``: ``GC <n>``, what ``gc.collect()`` found;
* ``quit`` (or end of stdin, i.e. the parent went away): stops and exits.

Each connection echoes every line (``\\n``-terminated, up to 1 MiB) back unchanged until the client
closes.  Log records go to stderr, so the parent can count them.
"""

import argparse
import collections
import gc
import json
import logging
import os
import resource
import ssl
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from tornado_lite.ioloop import IOLoop  # noqa: E402
from tornado_lite.iostream import StreamClosedError  # noqa: E402
from tornado_lite.netutil import bind_sockets  # noqa: E402
from tornado_lite.tcpserver import TCPServer  # noqa: E402

MAX_LINE = 1 << 20


class EchoServer(TCPServer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.accepted = 0
        self.open = 0
        self.closed = 0
        self.bytes_echoed = 0
        self.errors = collections.Counter()

    async def handle_stream(self, stream, address):
        self.accepted += 1
        self.open += 1
        try:
            while True:
                line = await stream.read_until(b"\n", max_bytes=MAX_LINE)
                self.bytes_echoed += len(line)
                await stream.write(line)
        except StreamClosedError as e:
            if e.real_error is not None:
                self.errors[type(e.real_error).__name__] += 1
        except Exception as e:  # a fault scenario's error: counted, the connection dropped
            self.errors[type(e).__name__] += 1
        finally:
            stream.close()
            self.open -= 1
            self.closed += 1


def rss_kb():
    """Current RSS in KiB; None while the process has no descriptor to spare for reading it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def fd_count():
    """Open descriptors (counting the one listdir uses); None at the descriptor limit."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nofile", type=int, default=0)
    parser.add_argument("--backlog", type=int, default=128)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--handshake-timeout", type=float, default=0)
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    if args.nofile:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))

    loop = IOLoop(make_current=True)
    server = EchoServer()
    sockets = bind_sockets(0, "127.0.0.1", backlog=args.backlog)
    server.add_sockets(sockets)
    servers = [server]
    tls_port = None
    if args.tls:
        # A second server on its own port speaks TLS; both report as one in "stats".
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.tls)
        tls_server = EchoServer(ssl_options=context, handshake_timeout=args.handshake_timeout or None)
        tls_sockets = bind_sockets(0, "127.0.0.1", backlog=args.backlog)
        tls_server.add_sockets(tls_sockets)
        servers.append(tls_server)
        tls_port = tls_sockets[0].getsockname()[1]
    port = sockets[0].getsockname()[1]

    def answer(command: str) -> None:
        if command == "stats":
            s = loop.stats(reset_interval=False)
            errors = collections.Counter()
            for srv in servers:
                errors.update(srv.errors)
            report = {
                "passes": s.passes,
                "events": s.events,
                "callbacks_run": s.callbacks_run,
                "handlers": s.handlers,
                "timers_pending": s.timers_pending,
                "accepted": sum(srv.accepted for srv in servers),
                "open": sum(srv.open for srv in servers),
                "closed": sum(srv.closed for srv in servers),
                "bytes_echoed": sum(srv.bytes_echoed for srv in servers),
                "errors": dict(errors),
                "fds": fd_count(),
                "rss_kb": rss_kb(),
            }
            print("STATS " + json.dumps(report), flush=True)
        elif command == "gc":
            print(f"GC {gc.collect()}", flush=True)
        elif command in ("quit", ""):
            for srv in servers:
                srv.stop()
            loop.stop()
        else:
            print(f"ERROR unknown command {command!r}", flush=True)

    def read_commands() -> None:
        for line in sys.stdin:
            loop.add_callback(answer, line.strip() or "?")
        loop.add_callback(answer, "")  # end of input: the parent is gone

    print(f"PORT {port}", flush=True)
    if tls_port is not None:
        print(f"TLSPORT {tls_port}", flush=True)
    threading.Thread(target=read_commands, daemon=True).start()
    loop.start()


if __name__ == "__main__":
    main()
