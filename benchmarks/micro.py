"""Event-loop micro-benchmarks, run on one stack per process.

  add_callback       schedule N callbacks from inside the loop, then wait until all have run
  call_later_cancel  schedule a timer 60 s ahead and cancel it at once, N times (plus one loop
                     iteration, so a loop that cleans cancelled timers up lazily pays for it too)
  await_done_future  ``await`` an already-resolved Future N times (must not suspend)
  coroutine_switch   two coroutines hand control back and forth through Futures, N round trips
                     (2 switches each); reported as switches per second

Stacks: tornado_lite, tornado, tornado-uvloop use the IOLoop API (``add_callback``,
``call_later``/``remove_timeout``, the stack's ``Future``, ``gen.convert_yielded``); asyncio-streams
uses plain asyncio (``call_soon``, ``call_later``/``cancel``, ``asyncio.Future``,
``ensure_future``), the floor that Tornado on asyncio is built on.

Times are the process's CPU time (so a busy machine slows the figures less).
Prints one JSON object: {"stack": ..., "results": {name: [ops/s of each repeat], ...}}.
With ``--check`` it only imports the stack (``IMPORT-OK`` or ``IMPORT-FAILED <reason>``).
"""

import argparse
import json
import sys
import time
import typing

# CPU time of this process, not wall time: on a shared machine the process is descheduled now and then,
# and those gaps would otherwise count as the loop being slow.  Everything measured here is CPU-bound.
clock = time.process_time

BENCHMARKS = ("add_callback", "call_later_cancel", "await_done_future", "coroutine_switch")


class Api:
    """What a benchmark needs from a stack, whatever its spelling."""

    def __init__(self, stack: str) -> None:
        self.stack = stack
        if stack == "asyncio-streams":
            import asyncio

            self.asyncio = asyncio
            self.Future: typing.Any = None  # bound to the running loop in run()
            return
        if stack == "tornado_lite":
            from tornado_lite import gen
            from tornado_lite.concurrent import Future
            from tornado_lite.ioloop import IOLoop
        elif stack in ("tornado", "tornado-uvloop"):
            if stack == "tornado-uvloop":
                import asyncio

                import uvloop

                asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            from tornado import gen  # type: ignore[no-redef]
            from tornado.concurrent import Future  # type: ignore[no-redef]
            from tornado.ioloop import IOLoop  # type: ignore[no-redef]
        else:
            raise ValueError(f"unknown stack {stack!r}")
        self.IOLoop = IOLoop
        self.Future = Future
        self.gen = gen

    # The four primitives, in each spelling.  Only loop *setup* differs; the measured loops below
    # are shared.
    def bind(self, loop: typing.Any) -> None:
        self.loop = loop
        if self.stack == "asyncio-streams":
            self.add_callback = loop.call_soon
            self.call_later = loop.call_later
            self.cancel_timeout: typing.Callable[[typing.Any], None] = lambda h: h.cancel()
            self.spawn = self.asyncio.ensure_future
            self.Future = loop.create_future
        else:
            self.add_callback = loop.add_callback
            self.call_later = loop.call_later
            self.cancel_timeout = loop.remove_timeout
            self.spawn = self.gen.convert_yielded

    def run(self, main: typing.Callable[[], typing.Awaitable[typing.Any]]) -> typing.Any:
        if self.stack == "asyncio-streams":

            async def wrapper() -> typing.Any:
                self.bind(self.asyncio.get_running_loop())
                return await main()

            return self.asyncio.run(wrapper())
        loop = self.IOLoop.current()
        self.bind(loop)
        return loop.run_sync(main, timeout=None)


async def one_iteration(api: Api) -> None:
    """Let the loop run one iteration (resume through a callback)."""
    f = api.Future()
    api.add_callback(f.set_result, None)
    await f


async def bench_add_callback(api: Api, n: int) -> float:
    done = api.Future()
    remaining = [n]

    def callback() -> None:
        remaining[0] -= 1
        if not remaining[0]:
            done.set_result(None)

    add_callback = api.add_callback
    t0 = clock()
    for _ in range(n):
        add_callback(callback)
    await done
    return clock() - t0


async def bench_call_later_cancel(api: Api, n: int) -> float:
    def never() -> None:
        raise AssertionError("a cancelled timer ran")

    call_later, cancel = api.call_later, api.cancel_timeout
    t0 = clock()
    for _ in range(n):
        cancel(call_later(60.0, never))
    await one_iteration(api)
    return clock() - t0


async def bench_await_done_future(api: Api, n: int) -> float:
    f = api.Future()
    f.set_result(None)
    t0 = clock()
    for _ in range(n):
        await f
    return clock() - t0


async def bench_coroutine_switch(api: Api, n: int) -> float:
    """Main and echo coroutines take turns: each round trip is two suspend/resume switches."""
    inbox: typing.List[typing.Any] = [None]  # the Future echo is waiting on
    ready = api.Future()

    async def echo() -> None:
        while True:
            waiting = api.Future()
            inbox[0] = waiting
            if not ready.done():
                ready.set_result(None)
            reply = await waiting
            if reply is None:
                return
            reply.set_result(None)

    task = api.spawn(echo())
    await ready
    t0 = clock()
    for _ in range(n):
        reply = api.Future()
        inbox[0].set_result(reply)
        await reply
    elapsed = clock() - t0
    inbox[0].set_result(None)
    await task
    return elapsed


FUNCS = {
    "add_callback": (bench_add_callback, 1),
    "call_later_cancel": (bench_call_later_cancel, 1),
    "await_done_future": (bench_await_done_future, 1),
    "coroutine_switch": (bench_coroutine_switch, 2),  # switches per iteration
}


def main() -> int:
    p = argparse.ArgumentParser(description="loop micro-benchmarks")
    p.add_argument("--stack", required=True, choices=["tornado_lite", "tornado", "tornado-uvloop", "asyncio-streams"])
    p.add_argument("--target-time", type=float, default=0.2, help="seconds per repeat (sets N per benchmark)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", action="append", choices=BENCHMARKS)
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    try:
        api = Api(args.stack)
    except Exception as e:  # an unfinished stack is an "n/a" column, not a crash
        print(f"IMPORT-FAILED {type(e).__name__}: {e}")
        return 3
    if args.check:
        print("IMPORT-OK")
        return 0

    names = args.only or list(BENCHMARKS)
    target, repeats = args.target_time, args.repeats

    async def calibrate(func: typing.Any) -> int:
        """Grow N until one repeat takes about target seconds (doubles as the warm-up)."""
        n = 1000
        while True:
            elapsed = await func(api, n)
            if elapsed >= target / 4 or n >= 50_000_000:
                return max(1000, int(n * target / max(elapsed, 1e-9)))
            n *= 4

    async def run_all() -> typing.Dict[str, typing.Any]:
        results: typing.Dict[str, typing.Any] = {}
        for name in names:
            func, per_op = FUNCS[name]
            try:
                n = await calibrate(func)
                results[name] = [round(n * per_op / await func(api, n), 1) for _ in range(repeats)]
            except Exception as e:  # report a broken primitive, keep measuring the others
                results[name] = {"error": f"{type(e).__name__}: {e}"}
        return results

    results = api.run(run_all)
    print(json.dumps({"stack": args.stack, "target_time": target, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
