"""Tests for tornado_lite.ioloop: the loop's life cycle, fds, callbacks, timers, threads, signals, executors and
PeriodicCallback.

They encode Tornado 6's behaviour, so they also run against real Tornado:
``TORNADO_LITE_TEST_IMPL=tornado pytest tests/test_ioloop.py`` (in a venv that has tornado).  Only assertions
about tornado_lite's internals (the timer heap, FIFO order of equal deadlines, which logger asyncio's own
handler uses) are skipped there.  Everything here uses real sockets, pipes, threads and signals.
"""

import builtins
import concurrent.futures
import datetime
import gc
import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import warnings
import weakref

import pytest

impl = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
ioloop = importlib.import_module(impl + ".ioloop")
gen = importlib.import_module(impl + ".gen")
tc = importlib.import_module(impl + ".concurrent")
util = importlib.import_module(impl + ".util")
IOLoop = ioloop.IOLoop
PeriodicCallback = ioloop.PeriodicCallback
Future = tc.Future

if impl == "tornado":
    import asyncio  # real Tornado's cancellation error is asyncio's

    CancelledError = asyncio.CancelledError
else:
    CancelledError = concurrent.futures.CancelledError

lite_only = pytest.mark.skipif(impl != "tornado_lite", reason="checks tornado_lite internals, not Tornado behaviour")
# make_current/clear_current/instance()/add_callback_from_signal are deprecated in Tornado 6 and warn there.
deprecated_ok = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SAFETY = 20  # seconds: an upper bound for tests that wait on threads or signals, never an expectation


@pytest.fixture
def io_loop():
    loop = IOLoop(make_current=False)
    yield loop
    loop.close()


@pytest.fixture
def sockpair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def run(loop, func, timeout=SAFETY):
    return loop.run_sync(func, timeout=timeout)


@types.coroutine
def next_pass():
    """Lets the loop run one pass (a bare ``yield`` in ``await``, like ``asyncio.sleep(0)``)."""
    yield


def in_thread(func):
    """Runs ``func`` in a fresh thread (pristine thread-local loop state) and returns its result."""
    box = {}

    def target():
        try:
            box["result"] = func()
        except BaseException as exc:  # pragma: no cover - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(SAFETY)
    assert not thread.is_alive()
    if "error" in box:
        raise box["error"]
    return box["result"]


# -- names ---------------------------------------------------------------------------------------


def test_event_constants() -> None:
    assert IOLoop.NONE == 0
    assert IOLoop.READ == 0x001
    assert IOLoop.WRITE == 0x004
    assert IOLoop.ERROR == 0x018


def test_timeout_error_is_the_builtin_everywhere() -> None:
    assert util.TimeoutError is builtins.TimeoutError
    assert gen.TimeoutError is builtins.TimeoutError
    assert ioloop.TimeoutError is builtins.TimeoutError


def test_package_version() -> None:
    pkg = importlib.import_module(impl)
    assert isinstance(pkg.version, str)
    assert isinstance(pkg.version_info, tuple) and len(pkg.version_info) == 4
    assert all(isinstance(part, int) for part in pkg.version_info)
    numbers = tuple(int(p) for p in pkg.version.split(".")[:3] if p.isdigit())
    assert pkg.version_info[: len(numbers)] == numbers


def test_submodule_reachable_after_bare_package_import() -> None:
    code = (
        f"import json, sys, {impl}\n"
        f"loop = {impl}.ioloop.IOLoop(make_current=False)\n"
        f"print(json.dumps([type(loop).__name__, {impl}.gen.sleep.__name__]))\n"
        "loop.close()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    name, sleep_name = json.loads(proc.stdout)
    assert "IOLoop" in name and sleep_name == "sleep"


def test_loop_is_hashable_and_weak_referenceable() -> None:
    loop = IOLoop(make_current=False)
    other = IOLoop(make_current=False)
    assert {loop: 1, other: 2}[loop] == 1
    assert hash(loop) == hash(loop)
    ref = weakref.ref(loop)
    assert ref() is loop
    assert loop.run_sync(lambda: None) is None
    loop.close()
    other.close()
    del loop
    gc.collect()
    assert ref() is None  # a closed loop holds nothing that keeps it alive


# -- current loop --------------------------------------------------------------------------------


@deprecated_ok
def test_current_in_a_fresh_thread() -> None:
    def check():
        assert IOLoop.current(instance=False) is None
        created = IOLoop.current()
        assert created is not None
        assert IOLoop.current() is created
        assert IOLoop.current(instance=False) is created
        assert IOLoop.instance() is created
        created.close()
        return True

    assert in_thread(check)


@deprecated_ok
def test_make_current_and_clear_current() -> None:
    def check():
        loop = IOLoop(make_current=False)
        assert IOLoop.current(instance=False) is not loop
        loop.make_current()
        assert IOLoop.current() is loop
        IOLoop.clear_current()
        assert IOLoop.current(instance=False) is None
        IOLoop.clear_current()  # no current loop: still fine
        forced = IOLoop(make_current=True)
        assert IOLoop.current() is forced
        forced.close()
        loop.close()
        return True

    assert in_thread(check)


@deprecated_ok
def test_start_makes_current_and_stop_restores() -> None:
    def check():
        loop = IOLoop(make_current=False)
        seen = []
        for _ in range(3):

            def record():
                seen.append(IOLoop.current())
                loop.stop()

            loop.add_callback(record)
            loop.start()
            assert IOLoop.current(instance=False) is None
        loop.close()
        return seen == [loop, loop, loop]

    assert in_thread(check)


def test_loops_in_two_threads_are_independent(io_loop) -> None:
    def other_thread():
        loop = IOLoop(make_current=False)
        seen = []
        try:
            loop.run_sync(lambda: seen.append(IOLoop.current()))
            return seen == [loop]
        finally:
            loop.close()

    async def main():
        assert IOLoop.current() is io_loop
        return await io_loop.run_in_executor(None, other_thread)

    assert run(io_loop, main) is True


# -- start / stop / close ------------------------------------------------------------------------


def test_stop_from_a_callback(io_loop) -> None:
    calls = []
    io_loop.add_callback(calls.append, "ran")
    io_loop.add_callback(io_loop.stop)
    io_loop.start()
    assert calls == ["ran"]


def test_stop_before_start_runs_one_pass(io_loop) -> None:
    calls = []
    io_loop.add_callback(calls.append, "queued before")
    io_loop.stop()
    io_loop.start()  # returns: the stop takes effect after one pass
    assert calls == ["queued before"]
    # The loop is usable again afterwards.
    io_loop.add_callback(io_loop.stop)
    io_loop.start()


def test_start_is_not_reentrant(io_loop) -> None:
    outcome = []

    def nested():
        try:
            io_loop.start()
            outcome.append("returned")
        except RuntimeError:
            outcome.append("refused")
        io_loop.stop()

    io_loop.add_callback(nested)
    io_loop.start()
    assert outcome == ["refused"]


@lite_only  # Tornado's stop() is not thread-safe (it says to use add_callback(loop.stop)); ours also wakes
def test_stop_from_another_thread_wakes_the_loop(io_loop) -> None:
    fired = []
    safety = io_loop.call_later(SAFETY, lambda: (fired.append("safety timer"), io_loop.stop()))
    started = threading.Event()
    io_loop.add_callback(started.set)
    thread = threading.Thread(target=lambda: (started.wait(SAFETY), time.sleep(0.05), io_loop.stop()))
    thread.start()
    io_loop.start()
    thread.join(SAFETY)
    io_loop.remove_timeout(safety)
    assert started.is_set() and fired == []


def test_close_all_fds_closes_objects_and_ints() -> None:
    class Wrapper:
        def __init__(self, sock):
            self.sock = sock
            self.closed = False

        def fileno(self):
            return self.sock.fileno()

        def close(self):
            self.closed = True
            self.sock.close()

    a, b = socket.socketpair()
    wrapper = Wrapper(a)
    read_fd, write_fd = os.pipe()
    loop = IOLoop(make_current=False)
    loop.run_sync(lambda: loop.add_handler(wrapper, lambda fd, events: None, IOLoop.READ))
    loop.add_handler(read_fd, lambda fd, events: None, IOLoop.READ)
    loop.close(all_fds=True)
    assert wrapper.closed
    with pytest.raises(OSError):
        os.fstat(read_fd)
    os.close(write_fd)
    b.close()


def test_close_without_all_fds_leaves_fds_open() -> None:
    read_fd, write_fd = os.pipe()
    loop = IOLoop(make_current=False)
    loop.add_handler(read_fd, lambda fd, events: None, IOLoop.READ)
    loop.close()
    os.fstat(read_fd)  # still open
    os.close(read_fd)
    os.close(write_fd)


def test_add_callback_after_close_is_dropped_silently() -> None:
    loop = IOLoop(make_current=False)
    loop.close()
    for _ in range(100):
        loop.add_callback(lambda: None)


def test_add_callback_racing_close_from_another_thread() -> None:
    closing = threading.Event()
    loop = IOLoop(make_current=False)

    def target():
        loop.add_callback(loop.stop)
        loop.start()
        closing.set()
        loop.close(all_fds=True)

    thread = threading.Thread(target=target)
    thread.start()
    closing.wait(SAFETY)
    for _ in range(1000):
        loop.add_callback(lambda: None)
    thread.join(SAFETY)
    assert not thread.is_alive()


# -- run_sync ------------------------------------------------------------------------------------


def test_run_sync_native_coroutine(io_loop) -> None:
    async def main():
        await gen.sleep(0)
        return IOLoop.current()

    assert run(io_loop, main) is io_loop


def test_run_sync_gen_coroutine(io_loop) -> None:
    @gen.coroutine
    def main():
        yield gen.moment
        raise gen.Return(42)

    assert io_loop.run_sync(main) == 42


def test_run_sync_plain_function(io_loop) -> None:
    seen = []
    assert io_loop.run_sync(lambda: seen.append(IOLoop.current())) is None
    assert seen == [io_loop]
    # A plain function's non-awaitable result is an error, as in Tornado.
    with pytest.raises(gen.BadYieldError):
        io_loop.run_sync(lambda: 42)


def test_run_sync_exceptions(io_loop) -> None:
    with pytest.raises(ZeroDivisionError):
        io_loop.run_sync(lambda: 1 / 0)

    async def fails_later():
        await gen.sleep(0)
        raise KeyError("later")

    with pytest.raises(KeyError):
        io_loop.run_sync(fails_later)


def test_run_sync_timeout_cancels_the_coroutine(io_loop) -> None:
    seen = []

    async def slow():
        try:
            await gen.sleep(3600)
        except CancelledError:
            seen.append("cancelled inside")
            raise

    with pytest.raises(TimeoutError):
        io_loop.run_sync(slow, timeout=0.01)
    assert seen == ["cancelled inside"]
    # The loop is fine afterwards.
    assert io_loop.run_sync(lambda: None) is None


def test_run_sync_timeout_on_a_future(io_loop) -> None:
    with pytest.raises(TimeoutError):
        io_loop.run_sync(lambda: gen.sleep(3600), timeout=0.01)


def test_run_sync_timeout_on_a_running_concurrent_future(io_loop) -> None:
    release = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with pytest.raises(TimeoutError):
            io_loop.run_sync(lambda: pool.submit(release.wait, SAFETY), timeout=0.01)
        release.set()


def test_run_sync_stopped_early_is_a_runtime_error(io_loop) -> None:
    async def main():
        await gen.sleep(0)
        IOLoop.current().stop()
        await gen.sleep(3600)

    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed"):
        io_loop.run_sync(main)


def test_run_sync_reusable(io_loop) -> None:
    @gen.coroutine
    def f():
        yield gen.moment
        return "again"

    assert [io_loop.run_sync(f) for _ in range(3)] == ["again"] * 3


# -- file descriptors ----------------------------------------------------------------------------


def test_handler_with_socket_object_and_int_fd(io_loop, sockpair) -> None:
    a, b = sockpair
    received = []

    async def main():
        got = Future()

        def on_readable(fd, events):
            received.append((fd, events, fd.recv(100)))
            if not got.done():
                got.set_result(None)

        io_loop.add_handler(a, on_readable, IOLoop.READ)
        b.send(b"object")
        await got
        io_loop.remove_handler(a)

        got = Future()

        def on_readable_int(fd, events):
            received.append((fd, events, a.recv(100)))
            if not got.done():
                got.set_result(None)

        io_loop.add_handler(a.fileno(), on_readable_int, IOLoop.READ)
        b.send(b"int")
        await got
        io_loop.remove_handler(a.fileno())

    run(io_loop, main)
    assert received[0][0] is a  # the handler receives the object it registered
    assert received[0][1] & IOLoop.READ and received[0][2] == b"object"
    assert received[1][0] == a.fileno()
    assert received[1][1] & IOLoop.READ and received[1][2] == b"int"


def test_read_interest_gets_no_write_events(io_loop, sockpair) -> None:
    a, b = sockpair
    events_seen = []

    async def main():
        got = Future()

        def handler(fd, events):
            events_seen.append(events)
            a.recv(100)
            got.set_result(None)

        io_loop.add_handler(a, handler, IOLoop.READ)  # a is writable all along
        io_loop.call_later(0.01, b.send, b"x")
        await got
        io_loop.remove_handler(a)

    run(io_loop, main)
    assert events_seen == [IOLoop.READ]


def test_update_handler_switches_interest(io_loop, sockpair) -> None:
    a, b = sockpair
    log = []

    async def main():
        wrote = Future()

        def handler(fd, events):
            log.append(events)
            if events & IOLoop.WRITE:
                fd.send(b"w")
                io_loop.update_handler(fd, IOLoop.NONE)
                if not wrote.done():
                    wrote.set_result(None)

        io_loop.add_handler(a, handler, IOLoop.NONE)
        for _ in range(3):
            await next_pass()
        assert log == []  # no interest: never called, although writable
        io_loop.update_handler(a, IOLoop.WRITE)
        await wrote
        assert b.recv(10) == b"w"
        # NONE again: readable data waits, untouched, until READ is asked for.
        b.send(b"r")
        for _ in range(3):
            await next_pass()
        assert log == [IOLoop.WRITE]
        read = Future()
        io_loop.remove_handler(a)
        io_loop.add_handler(a, lambda fd, events: read.set_result((events, fd.recv(10))), IOLoop.READ)
        events, data = await read
        io_loop.remove_handler(a)
        return events, data

    events, data = run(io_loop, main)
    assert events & IOLoop.READ and data == b"r"


def test_peer_close_reported_to_a_reader(io_loop, sockpair) -> None:
    a, b = sockpair

    async def main():
        got = Future()
        io_loop.add_handler(a, lambda fd, events: got.done() or got.set_result(fd.recv(10)), IOLoop.READ)
        b.close()
        data = await got
        io_loop.remove_handler(a)
        return data

    assert run(io_loop, main) == b""


def test_add_handler_twice_is_an_error(io_loop, sockpair) -> None:
    a, _ = sockpair
    io_loop.add_handler(a, lambda fd, events: None, IOLoop.READ)
    with pytest.raises(ValueError):
        io_loop.add_handler(a.fileno(), lambda fd, events: None, IOLoop.READ)
    with pytest.raises(ValueError):
        io_loop.add_handler(a, lambda fd, events: None, IOLoop.READ)
    io_loop.remove_handler(a.fileno())


def test_remove_handler_without_add_is_fine(io_loop, sockpair) -> None:
    a, _ = sockpair
    io_loop.remove_handler(a)
    io_loop.remove_handler(a.fileno())


def test_remove_other_handler_from_a_handler(io_loop, sockpair) -> None:
    a, b = sockpair
    a.send(b"to b")
    b.send(b"to a")
    chunks = []

    def on_readable(fd, events):
        chunks.append(fd.recv(100))
        io_loop.remove_handler(b if fd is a else a)

    async def main():
        io_loop.add_handler(a, on_readable, IOLoop.READ)
        io_loop.add_handler(b, on_readable, IOLoop.READ)
        for _ in range(5):
            await next_pass()
        await gen.sleep(0.01)

    run(io_loop, main)
    assert len(chunks) == 1 and chunks[0] in (b"to a", b"to b")  # the other was removed cleanly
    io_loop.remove_handler(a)
    io_loop.remove_handler(b)


def test_handler_exception_is_logged_and_loop_goes_on(io_loop, sockpair, caplog) -> None:
    a, b = sockpair

    async def main():
        calls = []

        def bad(fd, events):
            calls.append(fd.recv(10))
            raise RuntimeError("handler failed")

        io_loop.add_handler(a, bad, IOLoop.READ)
        b.send(b"x")
        while not calls:
            await gen.sleep(0.001)
        io_loop.remove_handler(a)
        await gen.sleep(0)
        return calls

    with caplog.at_level(logging.ERROR):
        assert run(io_loop, main) == [b"x"]
    records = [r for r in caplog.records if r.exc_info and "handler failed" in str(r.exc_info[1])]
    assert len(records) == 1
    if impl == "tornado_lite":
        assert records[0].name == "tornado.application"


def test_split_fd_and_close_fd(io_loop) -> None:
    a, b = socket.socketpair()
    assert io_loop.split_fd(a) == (a.fileno(), a)
    assert io_loop.split_fd(a.fileno()) == (a.fileno(), a.fileno())
    io_loop.close_fd(a)
    assert a.fileno() == -1  # closed through its close()
    read_fd, write_fd = os.pipe()
    io_loop.close_fd(read_fd)
    with pytest.raises(OSError):
        os.fstat(read_fd)
    os.close(write_fd)
    b.close()


# -- callbacks -----------------------------------------------------------------------------------


def test_add_callback_args_kwargs_and_order(io_loop) -> None:
    calls = []
    io_loop.add_callback(calls.append, 1)
    io_loop.add_callback(lambda x, y=None: calls.append((x, y)), 2, y=3)
    io_loop.spawn_callback(calls.append, 4)
    io_loop.add_callback(io_loop.stop)
    io_loop.start()
    assert calls == [1, (2, 3), 4]


def test_callback_added_during_a_pass_runs_on_the_next(io_loop, sockpair) -> None:
    # A callback that keeps rescheduling itself must not starve timers or I/O.
    a, b = sockpair
    spins = [0]
    state = {"timer": False, "io": False}

    def spin():
        spins[0] += 1
        if not (state["timer"] and state["io"]):
            io_loop.add_callback(spin)

    async def main():
        io_loop.add_handler(a, lambda fd, events: state.update(io=True), IOLoop.READ)
        io_loop.call_later(0.01, lambda: state.update(timer=True))
        io_loop.add_callback(spin)
        b.send(b"x")
        while not (state["timer"] and state["io"]):
            await gen.sleep(0.005)
        io_loop.remove_handler(a)

    run(io_loop, main)
    assert spins[0] >= 1


def test_callback_exceptions_are_logged_and_the_loop_goes_on(io_loop, caplog) -> None:
    calls = []

    @gen.coroutine
    def gen_fails():
        yield gen.moment
        raise ValueError("gen callback failed")

    async def native_fails():
        raise KeyError("native callback failed")

    io_loop.add_callback(lambda: 1 / 0)
    io_loop.spawn_callback(lambda: [][1])
    io_loop.add_callback(gen_fails)
    io_loop.add_callback(native_fails)
    io_loop.call_later(0, lambda: {}["timer failed"])
    io_loop.add_callback(calls.append, "still running")

    async def wait_a_bit():
        for _ in range(5):
            await next_pass()
        await gen.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        run(io_loop, wait_a_bit)
    assert calls == ["still running"]
    failures = {
        type(r.exc_info[1])
        for r in caplog.records
        if r.name == "tornado.application" and r.exc_info and "Exception in callback" in r.getMessage()
    }
    assert failures == {ZeroDivisionError, IndexError, ValueError, KeyError}


def test_callback_returning_a_coroutine_runs_it(io_loop) -> None:
    done = []

    async def coro_callback(x):
        await gen.sleep(0)
        done.append(x)

    async def main():
        io_loop.add_callback(coro_callback, "native")
        io_loop.add_callback(lambda: {})  # an ignorable return value, no spinning
        io_loop.add_callback(lambda: [])
        while not done:
            await gen.sleep(0.001)

    run(io_loop, main)
    assert done == ["native"]


def test_add_callback_from_eight_threads_runs_each_exactly_once(io_loop) -> None:
    threads_n, per_thread = 8, 2000
    total = threads_n * per_thread
    seen = []

    async def main():
        all_done = Future()
        barrier = threading.Barrier(threads_n)

        def record(item):
            seen.append(item)
            if len(seen) == total:
                all_done.set_result(None)

        def producer(tid):
            barrier.wait(SAFETY)
            for i in range(per_thread):
                io_loop.add_callback(record, (tid, i))

        threads = [threading.Thread(target=producer, args=(t,)) for t in range(threads_n)]
        for t in threads:
            t.start()
        await all_done
        for t in threads:
            t.join(SAFETY)

    run(io_loop, main)
    assert len(seen) == total
    assert sorted(seen) == [(t, i) for t in range(threads_n) for i in range(per_thread)]
    # Each thread's callbacks kept their order.
    for t in range(threads_n):
        assert [i for tid, i in seen if tid == t] == list(range(per_thread))


def test_add_callback_from_a_thread_wakes_a_blocked_loop() -> None:
    loop = IOLoop(make_current=False)
    outcome = []
    running = threading.Event()

    def loop_thread():
        loop.add_callback(running.set)
        loop.call_later(SAFETY, lambda: (outcome.append("safety timer"), loop.stop()))
        loop.start()

    thread = threading.Thread(target=loop_thread)
    thread.start()
    assert running.wait(SAFETY)
    time.sleep(0.05)  # let the loop settle into poll; correctness does not depend on it
    loop.add_callback(lambda: (outcome.append("woken"), loop.stop()))
    thread.join(SAFETY)
    assert not thread.is_alive()
    loop.close()
    assert outcome == ["woken"]


def _signal_test(io_loop):
    outcome = []

    def on_signal(signum, frame):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            io_loop.add_callback_from_signal(lambda: (outcome.append("from signal"), io_loop.stop()))

    return outcome, on_signal


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_add_callback_from_signal_wakes_a_blocked_loop_setitimer(io_loop) -> None:
    outcome, handler = _signal_test(io_loop)
    old = signal.signal(signal.SIGALRM, handler)
    try:
        safety = io_loop.call_later(SAFETY, lambda: (outcome.append("safety timer"), io_loop.stop()))
        # Arm the timer from inside the loop: it fires while the loop sleeps in poll with nothing to do.
        io_loop.add_callback(signal.setitimer, signal.ITIMER_REAL, 0.05)
        io_loop.start()
        io_loop.remove_timeout(safety)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert outcome == ["from signal"]


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
def test_add_callback_from_signal_wakes_a_blocked_loop_sigusr1(io_loop) -> None:
    outcome, handler = _signal_test(io_loop)
    main_ident = threading.get_ident()
    old = signal.signal(signal.SIGUSR1, handler)

    def sender():
        time.sleep(0.05)  # the loop is meanwhile blocked in poll
        signal.pthread_kill(main_ident, signal.SIGUSR1)

    thread = threading.Thread(target=sender)
    try:
        safety = io_loop.call_later(SAFETY, lambda: (outcome.append("safety timer"), io_loop.stop()))
        io_loop.add_callback(thread.start)
        io_loop.start()
        io_loop.remove_timeout(safety)
        thread.join(SAFETY)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert outcome == ["from signal"]


def test_add_callback_from_signal_is_deprecated_but_works(io_loop) -> None:
    with pytest.deprecated_call():
        io_loop.add_callback_from_signal(io_loop.stop)
    io_loop.start()


@deprecated_ok
def test_add_callback_from_signal_to_a_loop_in_another_thread() -> None:
    loop = IOLoop(make_current=False)
    running = threading.Event()
    loop.add_callback(running.set)
    thread = threading.Thread(target=loop.start)
    thread.start()
    assert running.wait(SAFETY)
    loop.add_callback_from_signal(loop.stop)
    thread.join(SAFETY)
    assert not thread.is_alive()
    loop.close()


# -- timers --------------------------------------------------------------------------------------


def test_timer_methods_pass_arguments(io_loop) -> None:
    results = []
    now = io_loop.time()
    handles = [
        io_loop.add_timeout(now, results.append, 1),
        io_loop.add_timeout(datetime.timedelta(seconds=0), results.append, 2),
        io_loop.call_at(now, results.append, 3),
        io_loop.call_later(0, results.append, 4),
        io_loop.call_later(0, lambda a, b=None: results.append((a, b)), 5, b=6),
    ]
    assert all(h is not None for h in handles)
    io_loop.call_later(0.01, io_loop.stop)
    io_loop.start()
    assert sorted(results, key=repr) == sorted([1, 2, 3, 4, (5, 6)], key=repr)


def test_timers_run_in_deadline_order(io_loop) -> None:
    order = []
    now = io_loop.time()
    for delay in (0.03, 0.01, 0.04, 0.02, 0.0):
        io_loop.call_at(now + delay, order.append, delay)
    io_loop.add_timeout(datetime.timedelta(seconds=0.05), io_loop.stop)
    io_loop.start()
    assert order == [0.0, 0.01, 0.02, 0.03, 0.04]


@lite_only
def test_equal_delays_run_in_insertion_order(io_loop) -> None:
    order = []
    for i in range(50):
        io_loop.call_later(0, order.append, i)
    io_loop.call_later(0, io_loop.stop)
    io_loop.start()
    assert order == list(range(50))


def test_timedelta_timeout_and_absolute_deadline(io_loop) -> None:
    fired = []
    io_loop.add_timeout(datetime.timedelta(microseconds=1), fired.append, "delta")
    io_loop.add_timeout(io_loop.time() + 0.001, fired.append, "absolute")
    io_loop.add_timeout(datetime.timedelta(milliseconds=10), io_loop.stop)
    io_loop.start()
    assert sorted(fired) == ["absolute", "delta"]


def test_remove_timeout(io_loop) -> None:
    fired = []
    handle = io_loop.call_later(0, fired.append, "removed")
    io_loop.remove_timeout(handle)
    io_loop.remove_timeout(handle)  # twice is fine
    io_loop.call_later(0.01, io_loop.stop)
    io_loop.start()
    assert fired == []
    # Removing one that already ran is fine too.
    ran = io_loop.call_later(0, fired.append, "ran")
    io_loop.call_later(0.01, io_loop.stop)
    io_loop.start()
    io_loop.remove_timeout(ran)
    assert fired == ["ran"]


def test_remove_timeout_from_an_earlier_timer_due_at_the_same_time(io_loop) -> None:
    calls = []
    now = io_loop.time()

    def first():
        calls.append("first")
        io_loop.remove_timeout(second_handle)

    io_loop.call_at(now - 0.02, first)
    second_handle = io_loop.call_at(now - 0.01, calls.append, "second")
    io_loop.call_at(now, io_loop.stop)
    io_loop.start()
    assert calls == ["first"]


def test_timer_added_by_a_timer_runs_later(io_loop) -> None:
    order = []

    def outer():
        order.append("outer")
        io_loop.call_later(0, order.append, "inner")
        io_loop.call_later(0.01, io_loop.stop)

    io_loop.call_later(0, outer)
    io_loop.start()
    assert order == ["outer", "inner"]


def test_cancelled_timer_releases_what_it_references(io_loop) -> None:
    class Payload:
        def method(self):
            pass

    bound, arg, kwarg = Payload(), Payload(), Payload()
    refs = [weakref.ref(bound), weakref.ref(arg), weakref.ref(kwarg)]
    handles = [
        io_loop.call_later(3600, bound.method),
        io_loop.call_later(3600, lambda x: None, arg),
        io_loop.add_timeout(datetime.timedelta(hours=1), lambda k=None: None, k=kwarg),
    ]
    del bound, arg, kwarg
    for handle in handles:
        io_loop.remove_timeout(handle)
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_fired_timer_releases_what_it_references(io_loop) -> None:
    class Payload:
        pass

    obj = Payload()
    ref = weakref.ref(obj)
    io_loop.call_later(0, lambda o: None, obj)
    del obj
    io_loop.call_later(0.01, io_loop.stop)
    io_loop.start()
    gc.collect()
    assert ref() is None


@lite_only
def test_fired_timer_handle_keeps_nothing_alive(io_loop) -> None:
    class Payload:
        pass

    obj = Payload()
    ref = weakref.ref(obj)
    handle = io_loop.call_later(0, lambda o: None, obj)
    del obj
    io_loop.call_later(0.01, io_loop.stop)
    io_loop.start()
    gc.collect()
    assert ref() is None
    io_loop.remove_timeout(handle)  # still a valid (no-op) argument


@lite_only
def test_many_cancelled_timeouts_do_not_grow_the_heap(io_loop) -> None:
    n = 100_000
    far = io_loop.time() + 3600
    # All added, then all cancelled.
    handles = [io_loop.call_at(far + i, lambda: None) for i in range(n)]
    assert len(io_loop._timeouts) == n
    for handle in handles:
        io_loop.remove_timeout(handle)
    assert len(io_loop._timeouts) <= 1100  # compacted: only a bounded tail of cancelled entries is left
    del handles

    # Add-then-cancel, one at a time (a per-request timeout that is nearly always cancelled), with live
    # timers alongside.
    live = [io_loop.call_at(far, lambda: None) for _ in range(1000)]
    for i in range(n):
        io_loop.remove_timeout(io_loop.call_at(far + i, lambda: None))
    assert len(io_loop._timeouts) <= 2 * len(live) + 1100
    # The live ones still fire.
    fired = []
    for handle in live:
        io_loop.remove_timeout(handle)
    for i in range(10):
        io_loop.call_later(0, fired.append, i)
    io_loop.call_later(0.01, io_loop.stop)
    io_loop.start()
    assert fired == list(range(10))


def test_loop_time_is_the_wall_clock(io_loop) -> None:
    # Tornado's IOLoop.time() is time.time(): code written for it schedules add_timeout(time.time() + n, f).
    before = time.time()
    now = io_loop.time()
    after = time.time()
    assert before <= now <= after


def test_add_timeout_with_a_wall_clock_deadline(io_loop) -> None:
    fired = []
    io_loop.add_timeout(time.time() + 0.01, fired.append, "wall")
    io_loop.call_at(time.time() - 1, fired.append, "past")
    io_loop.add_timeout(time.time() + 0.02, io_loop.stop)
    safety = io_loop.call_later(SAFETY, io_loop.stop)
    io_loop.start()
    io_loop.remove_timeout(safety)
    assert fired == ["past", "wall"]


# -- futures and executors -----------------------------------------------------------------------


def test_add_future_with_our_future(io_loop) -> None:
    async def main():
        fut = Future()
        got = Future()
        io_loop.add_future(fut, got.set_result)
        fut.set_result("value")
        done = await got
        return done is fut and done.result() == "value"

    assert run(io_loop, main) is True


def test_add_future_with_concurrent_future_from_a_thread(io_loop) -> None:
    async def main():
        got = Future()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            cf = pool.submit(lambda: threading.get_ident())
            io_loop.add_future(cf, lambda f: got.set_result((f, threading.get_ident())))
            done, callback_thread = await got
        return done is cf, done.result() != threading.get_ident(), callback_thread == threading.get_ident()

    assert run(io_loop, main) == (True, True, True)


def test_run_in_executor_runs_in_parallel_threads(io_loop) -> None:
    e1, e2 = threading.Event(), threading.Event()

    def sync_func(mine, other):
        mine.set()
        assert other.wait(SAFETY)  # deadlocks unless both run at once
        return mine

    async def native_wrapper(mine, other):
        return await io_loop.run_in_executor(None, sync_func, mine, other)

    async def main():
        return await gen.multi([native_wrapper(e1, e2), io_loop.run_in_executor(None, sync_func, e2, e1)])

    assert run(io_loop, main) == [e1, e2]


def test_run_in_executor_exception_and_gen_coroutine(io_loop) -> None:
    @gen.coroutine
    def main():
        value = yield io_loop.run_in_executor(None, sum, [1, 2, 3])
        try:
            yield io_loop.run_in_executor(None, int, "not a number")
        except ValueError:
            return value

    assert run(io_loop, main) == 6


def test_set_default_executor(io_loop) -> None:
    submitted = []

    class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            submitted.append(fn)
            return super().submit(fn, *args, **kwargs)

    executor = CountingExecutor(1)
    io_loop.set_default_executor(executor)
    try:
        assert run(io_loop, lambda: io_loop.run_in_executor(None, threading.get_ident)) != threading.get_ident()
        explicit = concurrent.futures.ThreadPoolExecutor(1)
        try:
            assert run(io_loop, lambda: io_loop.run_in_executor(explicit, abs, -3)) == 3
        finally:
            explicit.shutdown()
    finally:
        executor.shutdown()
    assert submitted == [threading.get_ident]


# -- configure -----------------------------------------------------------------------------------


def test_configure_a_subclass() -> None:
    base_impl = IOLoop.configured_class()
    saved = IOLoop._save_configuration()

    class Custom(base_impl):
        def initialize(self, marker=None, **kwargs):
            self.marker = marker
            super().initialize(**kwargs)

    try:
        IOLoop.configure(Custom, marker="configured")
        loop = IOLoop(make_current=False)
        try:
            assert isinstance(loop, Custom) and loop.marker == "configured"
            seen = []
            loop.run_sync(lambda: seen.append(IOLoop.current()))
            assert seen == [loop]
        finally:
            loop.close()
        IOLoop.configure(f"{__name__}.ConfiguredByName")
        loop = IOLoop(make_current=False)
        assert type(loop) is ConfiguredByName
        loop.close()
        with pytest.raises(RuntimeError):
            IOLoop.configure(dict)
        IOLoop.configure(None)
        loop = IOLoop(make_current=False)
        assert type(loop) is base_impl
        loop.close()
    finally:
        IOLoop._restore_configuration(saved)


ConfiguredByName = type("ConfiguredByName", (IOLoop.configured_class(),), {})


# -- PeriodicCallback ----------------------------------------------------------------------------


def _simulate_calls(pc, durations, start=1000.0):
    """Feeds _update_next a made-up clock: each call starts at its deadline and lasts ``duration``
    (negative durations model the clock stepping back).  Returns the deadlines chosen."""
    calls = []
    now = start
    pc._next_timeout = start
    for duration in durations:
        pc._update_next(now)
        calls.append(pc._next_timeout)
        now = pc._next_timeout + duration
    return calls


def test_periodic_math_on_schedule() -> None:
    pc = PeriodicCallback(lambda: None, 10_000)
    assert _simulate_calls(pc, [0, 0, 0, 0]) == [1010, 1020, 1030, 1040]


def test_periodic_math_catches_up_after_slow_calls() -> None:
    pc = PeriodicCallback(lambda: None, 10_000)
    # 15s and 27s overruns skip one and two slots; then it is back on the 10s grid.
    durations = [0, 15, 0, 27, 0, 10, 0]
    assert _simulate_calls(pc, durations) == [1010, 1020, 1040, 1050, 1080, 1090, 1110]


def test_periodic_math_clock_going_backwards() -> None:
    pc = PeriodicCallback(lambda: None, 10_000)
    assert _simulate_calls(pc, [-3, -1, -200, 0]) == [1010, 1020, 1030, 1040]


def test_periodic_math_jitter(monkeypatch) -> None:
    import random

    draws = iter([0.0, 1.0, 0.5, 0.25])
    monkeypatch.setattr(random, "random", lambda: next(draws))
    pc = PeriodicCallback(lambda: None, 10_000, jitter=0.4)
    # period * (1 + jitter * (r - 0.5)): 8s, 12s, 10s, 9s
    assert _simulate_calls(pc, [0, 0, 0, 0]) == pytest.approx([1008, 1020, 1030, 1039])


def test_periodic_callback_time_forms() -> None:
    assert PeriodicCallback(lambda: None, datetime.timedelta(minutes=1, seconds=2)).callback_time == 62_000
    assert PeriodicCallback(lambda: None, 250).callback_time == 250
    with pytest.raises(ValueError):
        PeriodicCallback(lambda: None, 0)
    with pytest.raises(ValueError):
        PeriodicCallback(lambda: None, -5)


def test_periodic_runs_and_stops(io_loop) -> None:
    count = [0]

    async def main():
        done = Future()

        def tick():
            count[0] += 1
            if count[0] == 3:
                pc.stop()
                done.set_result(None)

        pc = PeriodicCallback(tick, 5)
        assert not pc.is_running()
        pc.start()
        assert pc.is_running()
        await done
        assert not pc.is_running()
        await gen.sleep(0.03)  # stopped: no more ticks

    run(io_loop, main)
    assert count[0] == 3


def test_periodic_keeps_running_after_an_exception(io_loop, caplog) -> None:
    count = [0]

    async def main():
        done = Future()

        def tick():
            count[0] += 1
            if count[0] == 3:
                pc.stop()
                done.set_result(None)
            raise RuntimeError("tick failed")

        pc = PeriodicCallback(tick, 2)
        pc.start()
        await done

    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        run(io_loop, main)
    assert count[0] == 3
    assert len([r for r in caplog.records if r.name == "tornado.application" and "tick failed" in str(r.exc_info)]) == 3


@pytest.mark.parametrize("style", ["native", "gen"])
def test_periodic_awaits_a_coroutine_before_the_next_call(io_loop, style) -> None:
    counts = {"started": 0, "finished": 0, "overlap": 0}
    active = [0]

    async def body():
        counts["started"] += 1
        active[0] += 1
        if active[0] > 1:
            counts["overlap"] += 1
        await gen.sleep(0.02)  # longer than the period
        active[0] -= 1
        counts["finished"] += 1

    if style == "native":
        callback = body
    else:

        @gen.coroutine
        def callback():
            yield body()

    async def main():
        pc = PeriodicCallback(callback, 5)
        pc.start()
        while counts["finished"] < 3:
            await gen.sleep(0.005)
        pc.stop()

    run(io_loop, main)
    assert counts["overlap"] == 0
    assert counts["started"] - counts["finished"] in (0, 1)


def test_periodic_skips_missed_slots_after_a_slow_call(io_loop) -> None:
    period_ms = 20
    period = period_ms / 1000
    deadlines = []

    async def main():
        done = Future()

        def tick():
            deadlines.append(pc._next_timeout)  # the deadline this call was scheduled for
            if len(deadlines) == 2:
                time.sleep(period * 4.5)  # a slow call: four and a half periods
            if len(deadlines) == 5:
                pc.stop()
                done.set_result(None)

        pc = PeriodicCallback(tick, period_ms)
        pc.start()
        await done

    run(io_loop, main)
    steps = [(d - deadlines[0]) / period for d in deadlines]
    # Every call is on the original grid...
    assert [round(s) for s in steps] == pytest.approx(steps, abs=1e-3)  # wall-clock floats near 1.8e9
    assert steps == sorted(steps) and len(set(round(s) for s in steps)) == 5
    # ...and the slots missed during the slow call were skipped, not run back to back.
    assert round(steps[2] - steps[1]) >= 5


def test_periodic_with_jitter_runs(io_loop) -> None:
    count = [0]

    async def main():
        done = Future()

        def tick():
            count[0] += 1
            if count[0] == 3:
                pc.stop()
                done.set_result(None)

        pc = PeriodicCallback(tick, 5, jitter=0.5)
        assert pc.jitter == 0.5
        pc.start()
        await done

    run(io_loop, main)
    assert count[0] == 3


def test_periodic_started_from_another_thread_via_add_callback(io_loop) -> None:
    ticks = []

    async def main():
        done = Future()

        def tick():
            ticks.append(threading.get_ident())
            if len(ticks) == 2:
                pc.stop()
                done.set_result(None)

        pc = PeriodicCallback(tick, 5)
        thread = threading.Thread(target=lambda: io_loop.add_callback(pc.start))
        thread.start()
        await done
        thread.join(SAFETY)

    run(io_loop, main)
    assert ticks == [threading.get_ident()] * 2


# -- every poller this OS offers, chosen with TORNADO_LITE_POLLER ------------------------------------

_POLLER_NAMES = [
    name
    for name, available in [
        ("epoll", hasattr(__import__("select"), "epoll")),
        ("kqueue", hasattr(__import__("select"), "kqueue")),
        ("poll", hasattr(__import__("select"), "poll")),
        ("select", True),
        ("selectors", True),
    ]
    if available
]


@lite_only
@pytest.mark.parametrize("poller", _POLLER_NAMES)
def test_each_poller_delivers_read_write_and_none(monkeypatch, sockpair, poller):
    monkeypatch.setenv("TORNADO_LITE_POLLER", poller)
    loop = IOLoop(make_current=False)
    try:
        a, b = sockpair
        a.setblocking(False)
        seen = []

        def handler(fd, events):
            seen.append(events)
            if events & IOLoop.READ:
                a.recv(100)
                loop.update_handler(a, IOLoop.WRITE)  # then writable, at once
            elif events & IOLoop.WRITE:
                loop.update_handler(a, IOLoop.NONE)  # silence: nothing more until asked
                loop.call_later(0.05, loop.stop)

        loop.add_handler(a, handler, IOLoop.READ)
        b.send(b"x")
        loop.call_later(SAFETY, loop.stop)
        loop.start()
        assert [bool(e & IOLoop.READ) for e in seen] == [True, False]
        assert seen[1] & IOLoop.WRITE
        # Interest again after NONE, then removal: no events for a removed fd.
        loop.update_handler(a, IOLoop.READ)
        b.send(b"y")
        loop.remove_handler(a)
        loop.call_later(0.05, loop.stop)
        loop.start()
        assert len(seen) == 2
    finally:
        loop.close()


@lite_only
def test_unknown_poller_name_is_refused(monkeypatch):
    monkeypatch.setenv("TORNADO_LITE_POLLER", "carrier-pigeon")
    with pytest.raises(ValueError, match="TORNADO_LITE_POLLER"):
        IOLoop(make_current=False)



def test_bound_method_handler_gets_its_object_and_fileobj(io_loop, sockpair, caplog) -> None:
    # A method of an object (what a stream registers) is called on that object with the fileobj it was
    # registered with; one that raises is logged (naming the method) and the loop goes on.
    a, b = sockpair

    class Reader:
        def __init__(self) -> None:
            self.got = []

        def on_readable(self, fd, events) -> None:
            data = fd.recv(10)
            self.got.append((fd, events, data))
            if data == b"boom":
                raise RuntimeError("method handler failed")

    reader = Reader()

    async def main():
        io_loop.add_handler(a, reader.on_readable, IOLoop.READ)
        for payload in (b"one", b"boom", b"two"):
            b.send(payload)
            count = len(reader.got)
            while len(reader.got) == count:
                await gen.sleep(0.001)
        io_loop.remove_handler(a)

    with caplog.at_level(logging.ERROR):
        run(io_loop, main)
    assert reader.got == [(a, IOLoop.READ, b"one"), (a, IOLoop.READ, b"boom"), (a, IOLoop.READ, b"two")]
    records = [r for r in caplog.records if r.exc_info and "method handler failed" in str(r.exc_info[1])]
    assert len(records) == 1
    if impl == "tornado_lite":
        assert "on_readable" in records[0].getMessage()


@lite_only  # set_blocking_log_threshold is Tornado 4's (Tornado 6 has no such alarm)
def test_bound_method_handler_on_the_timed_path(io_loop, sockpair, caplog) -> None:
    a, b = sockpair

    class Slow:
        def __init__(self) -> None:
            self.got = []

        def on_readable(self, fd, events) -> None:
            self.got.append(fd.recv(10))
            time.sleep(0.05)

    slow = Slow()
    io_loop.set_blocking_log_threshold(0.01)

    async def main():
        io_loop.add_handler(a.fileno(), slow.on_readable, IOLoop.READ)
        io_loop.remove_handler(a.fileno())
        io_loop.add_handler(a, slow.on_readable, IOLoop.READ)
        b.send(b"x")
        while not slow.got:
            await gen.sleep(0.001)
        io_loop.remove_handler(a)

    with caplog.at_level(logging.WARNING):
        run(io_loop, main)
    assert slow.got == [b"x"]
    assert any("Blocked the IOLoop" in r.getMessage() and "on_readable" in r.getMessage() for r in caplog.records)


@lite_only  # the split between the fd table and the dict of far fds is tornado_lite's
def test_handlers_of_low_and_high_fds_alike(monkeypatch) -> None:
    # fds below _FD_TABLE_SIZE are kept in a list indexed by fd, the others in a dict: both kinds are
    # dispatched, counted, removed and closed the same way.
    pairs = [socket.socketpair() for _ in range(4)]
    ends = [a for a, _ in pairs]
    monkeypatch.setattr(ioloop, "_FD_TABLE_SIZE", sorted(s.fileno() for s in ends)[2])
    loop = IOLoop(make_current=False)
    try:
        got = []

        async def main():
            for a in ends:
                loop.add_handler(a, lambda fd, events: got.append(fd.recv(10)), IOLoop.READ)
            assert loop.stats().handlers == 4
            for i, (_, b) in enumerate(pairs):
                b.send(b"%d" % i)
            while len(got) < 4:
                await gen.sleep(0.001)
            loop.remove_handler(ends[0])
            loop.remove_handler(ends[3].fileno())
            loop.remove_handler(ends[3])  # a second removal is a no-op
            assert loop.stats().handlers == 2
            with pytest.raises(ValueError):
                loop.add_handler(ends[1].fileno(), lambda fd, events: None, IOLoop.READ)
            pairs[0][1].send(b"late")
            await gen.sleep(0.01)

        run(loop, main)
        assert sorted(got) == [b"0", b"1", b"2", b"3"]
        assert ends[0].recv(10) == b"late"  # removed: nobody read it
    finally:
        loop.close(all_fds=True)
    assert [a.fileno() for a in ends] == [ends[0].fileno(), -1, -1, ends[3].fileno()]
    for a, b in pairs:
        a.close()
        b.close()


def test_callbacks_and_done_callbacks_keep_their_order_and_arguments(io_loop) -> None:
    # A done-callback is queued with its future among ordinary callbacks (in order); a callback's
    # arguments reach it unchanged, tuples included.
    async def main():
        calls = []
        fut = Future()
        fut.add_done_callback(lambda f: calls.append(("done", f)))
        io_loop.add_callback(calls.append, (1, 2))
        fut.set_result(None)
        io_loop.add_callback(lambda *args: calls.append(args), 3, (4,))
        io_loop.add_callback(calls.append, ())
        while len(calls) < 4:
            await gen.sleep(0.001)
        return calls, fut

    calls, fut = run(io_loop, main)
    assert calls == [(1, 2), ("done", fut), (3, (4,)), ()]


def test_add_and_remove_handler_go_through_a_subclass_split_fd(sockpair) -> None:
    # add_handler/remove_handler work the number out through split_fd: a subclass that overrides it
    # (here for an object that is not a file) is honoured, and the handler gets the object back.
    class Handle:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

    probe = IOLoop(make_current=False)
    base = type(probe)
    probe.close()

    class SplittingLoop(base):  # type: ignore[valid-type,misc]
        def split_fd(self, fd):
            if isinstance(fd, Handle):
                return fd.sock.fileno(), fd
            return super().split_fd(fd)

    loop = SplittingLoop(make_current=False)
    a, b = sockpair
    handle = Handle(a)
    got = []

    def on_ready(fd, events) -> None:
        got.append(fd)
        loop.remove_handler(fd)
        loop.add_callback(loop.stop)

    try:
        loop.add_handler(handle, on_ready, IOLoop.READ)
        b.send(b"x")
        loop.call_later(SAFETY, loop.stop)
        loop.start()
        assert got == [handle]
        # Removed through the subclass's split_fd too: the number can be registered again.
        loop.add_handler(a.fileno(), lambda fd, events: None, IOLoop.READ)
        loop.remove_handler(a.fileno())
    finally:
        loop.close()


@lite_only  # IOLoop.stats() is tornado_lite's
def test_stats_count_one_pass_per_pass(io_loop) -> None:
    # The pass count streams use to take one read turn a pass is the one stats() reports.
    seen = []

    async def main():
        for _ in range(5):
            seen.append(io_loop.stats().passes)
            await next_pass()

    run(io_loop, main)
    assert [b - a for a, b in zip(seen, seen[1:])] == [1, 1, 1, 1]
    assert io_loop.stats(reset_interval=False).passes > seen[-1]
