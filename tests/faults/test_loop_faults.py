"""The loop under churn and storms: a million timers added and cancelled, callbacks flooding in from
16 threads and from signal handlers while the loop is busy, a full waker pipe.

Everything runs on a real IOLoop (its poller chosen by TORNADO_LITE_POLLER); only the waker's kind is
forced, by hiding ``os.eventfd`` so that the loop falls back to its non-blocking pipe.
"""

import collections
import datetime
import functools
import os
import signal
import threading
import time
import warnings
import weakref

import pytest

from tornado_lite import gen
from tornado_lite.concurrent import Future
from tornado_lite.ioloop import IOLoop

LIVE_TIMERS = 1000
CHURN = 1_000_000
# Cancelled entries are dropped in bulk once they outnumber the live ones (and are at least this many).
COMPACT_FLOOR = 513


def noop(*args, **kwargs):
    pass


class Payload:
    """Something a timer callback references; the test checks it is freed when the timer is cancelled."""

    def method(self):
        pass


@pytest.fixture
def loop():
    lp = IOLoop(make_current=False)
    try:
        yield lp
    finally:
        lp.close(all_fds=True)


def heap_size(lp: IOLoop) -> int:
    # The timer heap itself: live entries plus cancelled ones not yet dropped.
    return len(lp._timeouts)


def test_million_timers_added_and_cancelled_keep_the_heap_bounded(loop):
    live = [loop.call_later(3600 + i, noop) for i in range(LIVE_TIMERS)]
    bound = max(2 * LIVE_TIMERS + 2, COMPACT_FLOOR + LIVE_TIMERS)
    biggest = 0
    call_later = loop.call_later
    remove = loop.remove_timeout
    for i in range(CHURN):
        # Deadlines both before and after the live timers, so cancelled entries sit everywhere in the heap.
        remove(call_later(i % 7200, noop, i))
        size = len(loop._timeouts)
        if size > biggest:
            biggest = size
    assert biggest <= bound, (biggest, bound)
    assert loop.stats().timers_pending == LIVE_TIMERS
    for timeout in live:
        loop.remove_timeout(timeout)
    assert loop.stats().timers_pending == 0
    assert heap_size(loop) <= COMPACT_FLOOR + LIVE_TIMERS


def test_timer_churn_on_a_running_loop_through_with_timeout_and_sleep(loop):
    """The same churn through the public coroutine API, while timers also fire and the loop polls."""
    churn = 100_000
    biggest = []

    async def main():
        done = Future()
        done.set_result(1)
        size = 0
        for i in range(churn):
            # A with_timeout on a finished future schedules its timer and removes it at once.
            assert await gen.with_timeout(datetime.timedelta(seconds=60), done) == 1
            if i % 1000 == 0:
                await gen.sleep(0)  # a timer that does fire, and a poll
                size = max(size, heap_size(loop))
        biggest.append(max(size, heap_size(loop)))

    loop.run_sync(main, timeout=120)
    assert biggest[0] <= COMPACT_FLOOR + 2, biggest
    assert loop.stats().timers_pending == 0


def test_cancelled_timer_callbacks_and_what_they_reference_are_freed_at_once(loop):
    refs = []
    handles = []
    for make in (
        lambda p: loop.call_later(60, p.method),
        lambda p: loop.call_later(60, noop, p),
        lambda p: loop.call_later(60, noop, payload=p),
        lambda p: loop.add_timeout(datetime.timedelta(seconds=60), functools.partial(noop, p)),
        lambda p: loop.call_at(loop.time() + 60, noop, p),
    ):
        payload = Payload()
        refs.append(weakref.ref(payload))
        handles.append(make(payload))
        del payload
    assert all(ref() is not None for ref in refs)  # the pending timers keep them
    for handle in handles:
        loop.remove_timeout(handle)
    # Freed by reference counting alone: the heap still holds the handles, not their callbacks.
    assert [ref() for ref in refs] == [None] * len(refs)
    # Cancelling twice, or a handle that already ran, is harmless.
    for handle in handles:
        loop.remove_timeout(handle)
    assert loop.stats().timers_pending == 0


def test_timers_that_fired_release_their_callbacks(loop):
    payload = Payload()
    ref = weakref.ref(payload)
    fired = []
    loop.call_later(0, lambda p: fired.append(1), payload)
    del payload
    loop.run_sync(lambda: gen.sleep(0.01), timeout=10)
    assert fired == [1]
    assert ref() is None


# -- callback storms -------------------------------------------------------------------------------

THREADS = 16
PER_THREAD = 20_000  # 320,000 wake-ups: far more than a pipe holds (64 KiB)
SIGNALS = 300


@pytest.fixture(params=["default-waker", "pipe-waker"])
def storm_loop(request, monkeypatch):
    if request.param == "pipe-waker":
        monkeypatch.delattr(os, "eventfd", raising=False)
    lp = IOLoop(make_current=False)
    try:
        if request.param == "pipe-waker":
            assert lp._waker._eventfd is False
        yield lp, request.param
    finally:
        lp.close(all_fds=True)


def test_callback_storm_from_threads_and_signals_while_the_loop_is_blocked(storm_loop):
    """16 threads add callbacks and a signal handler adds more while the loop's thread is stuck in a
    callback: adding never blocks (even with the waker pipe full) and each callback runs exactly once."""
    loop, kind = storm_loop
    ran = collections.Counter()
    handled = [0]
    report = {}

    def record(tag):
        ran[tag] += 1

    def on_signal(signum, frame):
        n = handled[0]
        handled[0] += 1
        # Both ways Tornado code does it: the deprecated dedicated method, and plain add_callback.
        if n % 2:
            loop.add_callback_from_signal(record, ("signal", n))
        else:
            loop.add_callback(record, ("signal", n))

    def adder(t):
        for i in range(PER_THREAD):
            loop.add_callback(record, (t, i))

    main_ident = threading.get_ident()  # the loop's thread, the only one Python runs handlers on
    stop_signalling = threading.Event()
    threads = []

    def signaller():
        # One at a time, each after the previous one's handler ran (two pending signals of the same
        # kind are delivered once).  Aimed at the loop's thread: a process-wide kill() may be taken by
        # another thread.  CPython 3.11 may still leave a handler pending until the main thread next
        # wakes (another thread can clear the eval breaker), so the wait is capped and a late handler
        # simply covers two signals: what is checked is that each handler run adds exactly one callback.
        for _ in range(SIGNALS):
            if stop_signalling.is_set():
                return
            seen = handled[0]
            signal.pthread_kill(main_ident, signal.SIGUSR1)
            deadline = time.monotonic() + 1
            while handled[0] == seen and time.monotonic() < deadline:
                time.sleep(0.0005)

    def block():
        # The loop's own thread is busy here for the whole storm.
        threads.extend(
            threading.Thread(target=adder, args=(t,), name=f"adder-{t}", daemon=True) for t in range(THREADS)
        )
        threads.append(threading.Thread(target=signaller, name="signaller", daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)  # signal handlers run on this (the main) thread while it waits here
        report["stuck_threads"] = [t.name for t in threads if t.is_alive()]
        report["handled_at_join"] = handled[0]
        report["ran_while_blocked"] = sum(ran.values())
        if kind == "pipe-waker":
            # The pipe is full: one more byte would block, yet every add_callback above returned.
            try:
                os.write(loop._waker._write_fd, b"x")
                report["pipe_full"] = False
            except BlockingIOError:
                report["pipe_full"] = True
        loop.add_callback(loop.stop)  # queued after every callback of the storm

    old = signal.signal(signal.SIGUSR1, on_signal)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # add_callback_from_signal, as in Tornado 6.6
            loop.add_callback(block)
            loop.start()
    finally:
        stop_signalling.set()
        for thread in threads:
            thread.join(30)
        # Never let a straggling signal meet the default action (which ends the process).
        signal.signal(signal.SIGUSR1, signal.SIG_IGN if any(t.is_alive() for t in threads) else old)

    assert report["stuck_threads"] == [], report
    assert report["ran_while_blocked"] == 0
    if kind == "pipe-waker":
        assert report["pipe_full"] is True
    assert SIGNALS // 2 <= handled[0] <= SIGNALS, handled[0]
    expected = {(t, i) for t in range(THREADS) for i in range(PER_THREAD)}
    expected |= {("signal", n) for n in range(handled[0])}
    assert set(ran) == expected
    assert set(ran.values()) == {1}

    # The waker is drained: an idle loop makes a handful of passes, not one per queued wake-up byte.
    before = loop.stats().passes
    loop.run_sync(lambda: gen.sleep(0.3), timeout=30)
    assert loop.stats().passes - before < 20


@pytest.mark.parametrize("api", ["add_callback", "add_callback_from_signal"])
def test_a_signal_wakes_a_loop_blocked_in_poll(storm_loop, api):
    """With nothing else to do the loop sleeps in poll; a signal handler's callback still runs soon
    (long before the 30s timer that would otherwise end the poll)."""
    loop, _ = storm_loop
    waiting = {}
    add = getattr(loop, api)

    def on_signal(signum, frame):
        future = waiting.pop("future", None)
        if future is not None:
            add(future.set_result, signum)

    main_ident = threading.get_ident()

    def send_soon():
        # From another thread, so the signal lands while the loop is (most likely) in poll; aimed at
        # the loop's thread, which a process-wide kill() may not interrupt.
        time.sleep(0.05)
        signal.pthread_kill(main_ident, signal.SIGUSR2)

    async def main():
        for _ in range(10):
            future = Future()
            waiting["future"] = future
            sender = threading.Thread(target=send_soon, daemon=True)
            sender.start()
            assert await gen.with_timeout(datetime.timedelta(seconds=30), future) == signal.SIGUSR2
            sender.join(10)

    old = signal.signal(signal.SIGUSR2, on_signal)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loop.run_sync(main, timeout=60)
    finally:
        signal.signal(signal.SIGUSR2, old)
