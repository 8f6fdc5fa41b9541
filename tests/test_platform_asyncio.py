"""The asyncio bridge: asyncio code and tornado_lite code on one loop (tornado_lite.platform.asyncio).

Installing the bridge changes process-wide state (asyncio's policy, the class ``IOLoop()`` builds, the
class a cancellation raises), so every test runs its program in a fresh interpreter, as a user would run
it.  The programs are written against ``IMPL`` (tornado_lite, or real Tornado with
``TORNADO_LITE_TEST_IMPL=tornado``): on Tornado they run on asyncio natively, which proves the expected
behaviour; on tornado_lite they run through the bridge.  Checks that only make sense for tornado_lite
(the loop class, NotImplementedError for transports, ``except concurrent.futures.CancelledError``) are
guarded by ``LITE``.  Everything uses real sockets on 127.0.0.1.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

impl = os.environ.get("TORNADO_LITE_TEST_IMPL", "tornado_lite")
ROOT = Path(__file__).resolve().parent.parent

PRELUDE = """\
import asyncio, concurrent.futures, contextvars, importlib, socket, sys, threading, time
IMPL = {impl!r}
LITE = IMPL == "tornado_lite"
if LITE:
    from tornado_lite.platform.asyncio import install
    install()
ioloop, gen, locks, queues, iostream, tcpserver, tcpclient, netutil = (
    importlib.import_module(IMPL + "." + name)
    for name in ("ioloop", "gen", "locks", "queues", "iostream", "tcpserver", "tcpclient", "netutil"))
IOLoop = ioloop.IOLoop


def listen(server):
    [sock] = netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets([sock])
    return sock.getsockname()[1]


class EchoServer(tcpserver.TCPServer):
    async def handle_stream(self, stream, address):
        try:
            while True:
                await stream.write(await stream.read_until(b"\\n"))
        except iostream.StreamClosedError:
            pass
"""


def run_program(body: str, timeout: float = 60) -> str:
    """Runs PRELUDE + body in a fresh interpreter; fails with its output unless it exits 0.  Returns stdout."""
    code = PRELUDE.format(impl=impl) + textwrap.dedent(body)
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, cwd=str(ROOT)
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc.stdout


def test_asyncio_run_serves_a_tcp_server_on_one_loop() -> None:
    out = run_program("""
        async def main():
            loop = asyncio.get_running_loop()
            assert IOLoop.current().asyncio_loop is loop        # one loop, seen both ways
            if LITE:
                from tornado_lite.platform.asyncio import TornadoLiteEventLoop
                assert isinstance(loop, TornadoLiteEventLoop), loop
            port = listen(EchoServer())
            stream = await tcpclient.TCPClient().connect("127.0.0.1", port)
            await stream.write(b"hello\\n")
            line = await stream.read_until(b"\\n")
            stream.close()
            return line

        print(asyncio.run(main()))
        """)
    assert out.strip() == "b'hello\\n'"


needs_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout, TaskGroup, Runner: Python 3.11+")


@needs_311
def test_asyncio_primitives_inside_tornado_coroutines() -> None:
    # The handler coroutine is tornado_lite's own task; everything it awaits is asyncio's.
    out = run_program("""
        results = []

        class Server(tcpserver.TCPServer):
            async def handle_stream(self, stream, address):
                assert asyncio.current_task() is not None
                await asyncio.sleep(0)
                await asyncio.sleep(0.01)
                results.append(await asyncio.gather(asyncio.sleep(0, "a"), asyncio.sleep(0.01, "b")))
                results.append(await asyncio.wait_for(asyncio.sleep(0, "w"), 5))
                try:
                    await asyncio.wait_for(asyncio.sleep(10), 0.01)
                except asyncio.TimeoutError:
                    results.append("wait_for timed out")
                event, lock, queue = asyncio.Event(), asyncio.Lock(), asyncio.Queue()
                asyncio.get_running_loop().call_later(0.01, event.set)
                await event.wait()
                async with lock:
                    results.append(lock.locked())
                queue.put_nowait("q")
                results.append(await queue.get())
                try:
                    async with asyncio.timeout(0.01):
                        await stream.read_until(b"never comes")
                except TimeoutError:
                    results.append("timeout")
                async with asyncio.TaskGroup() as group:
                    first = group.create_task(asyncio.sleep(0.01, 1))
                    second = group.create_task(asyncio.sleep(0, 2))
                results.append(first.result() + second.result())
                results.append(await asyncio.to_thread(threading.current_thread) is not threading.main_thread())
                task = asyncio.create_task(asyncio.sleep(0, "task"))
                results.append(await task)
                await stream.write(b"done\\n")

        async def main():
            port = listen(Server())
            stream = await tcpclient.TCPClient().connect("127.0.0.1", port)
            await stream.write(b"start\\n")
            await stream.read_until(b"\\n")
            stream.close()
            for item in results:
                print(item)

        asyncio.run(main())
        """)
    assert out.split("\n")[:-1] == [
        "['a', 'b']", "w", "wait_for timed out", "True", "q", "timeout", "3", "True", "task",
    ]


@needs_311
def test_tornado_futures_inside_asyncio_tasks() -> None:
    out = run_program("""
        async def reader(port):
            stream = await tcpclient.TCPClient().connect("127.0.0.1", port)
            await stream.write(b"ping\\n")
            line = await stream.read_until(b"\\n")
            try:
                async with asyncio.timeout(0.01):
                    await stream.read_until(b"never comes")
            except TimeoutError:
                line += b" timeout"
            stream.close()
            return line

        async def main():
            port = listen(EchoServer())
            print(await asyncio.create_task(reader(port)))
            await gen.sleep(0.01)
            event, queue = locks.Event(), queues.Queue()
            asyncio.get_running_loop().call_later(0.01, event.set)
            await asyncio.wait_for(event.wait(), 5)
            queue.put_nowait("queued")
            print(await queue.get())
            print(await asyncio.gather(gen.sleep(0.01), gen.multi([gen.sleep(0)]), asyncio.sleep(0, "x")))
            try:
                await asyncio.wait_for(locks.Event().wait(), 0.01)
            except asyncio.TimeoutError:
                print("wait_for timed out")
            print(await asyncio.ensure_future(gen.convert_yielded(asyncio.sleep(0, "converted"))))

        asyncio.run(main())
        """)
    assert out.split("\n")[:-1] == [
        "b'ping\\n timeout'", "queued", "[None, [None], 'x']", "wait_for timed out", "converted",
    ]


def test_cancellation_crosses_both_ways() -> None:
    out = run_program("""
        async def main():
            # Tornado's demo: a cancelled Condition.wait() is caught by except asyncio.CancelledError.
            condition = locks.Condition()
            waiter = condition.wait()
            asyncio.get_running_loop().call_later(0.01, waiter.cancel)
            try:
                await waiter
            except asyncio.CancelledError as exc:
                print("asyncio caught", LITE and isinstance(exc, concurrent.futures.CancelledError) or not LITE)

            # Code written for tornado_lite keeps catching its own class.
            if LITE:
                waiter = locks.Condition().wait()
                waiter.cancel()
                try:
                    await waiter
                except concurrent.futures.CancelledError:
                    print("concurrent caught")
            else:
                print("concurrent caught")

            # An asyncio task cancelled while it awaits a tornado future: the future is cancelled too.
            pending = locks.Event().wait()
            task = asyncio.create_task(asyncio.wait_for(pending, 60))
            await asyncio.sleep(0.01)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            print("asyncio task cancelled", task.cancelled())

            # A tornado coroutine cancelled while it awaits an asyncio future: that future is cancelled.
            sleeper = asyncio.get_running_loop().create_future()
            seen = []

            async def tornado_side():
                try:
                    await sleeper
                except asyncio.CancelledError:
                    seen.append("tornado coroutine saw it")
                    raise

            ours = gen.convert_yielded(tornado_side())
            await gen.sleep(0.01)
            ours.cancel()
            await gen.sleep(0.01)
            print(seen, ours.cancelled(), sleeper.cancelled())

            # An asyncio future cancelled under a tornado coroutine.
            theirs = asyncio.get_running_loop().create_future()

            async def awaits_theirs():
                try:
                    await theirs
                except asyncio.CancelledError:
                    return "caught"

            result = gen.convert_yielded(awaits_theirs())
            await gen.sleep(0.01)
            theirs.cancel()
            print(await result)

        asyncio.run(main())
        """)
    assert out.split("\n")[:-1] == [
        "asyncio caught True",
        "concurrent caught",
        "asyncio task cancelled True",
        "['tornado coroutine saw it'] True True",
        "caught",
    ]


def test_contextvars_flow_between_the_two_kinds_of_task() -> None:
    out = run_program("""
        var = contextvars.ContextVar("var", default="unset")

        async def tornado_child():
            seen = var.get()
            var.set("changed by tornado child")
            return seen

        async def asyncio_child():
            seen = var.get()
            var.set("changed by asyncio child")
            return seen

        async def main():
            var.set("main")
            print(await gen.convert_yielded(tornado_child()), var.get())
            print(await asyncio.create_task(asyncio_child()), var.get())

            async def tornado_parent():
                var.set("tornado parent")
                return await asyncio.create_task(asyncio_child()), var.get()

            print(await gen.convert_yielded(tornado_parent()), var.get())

        asyncio.run(main())
        """)
    assert out.split("\n")[:-1] == [
        "main main",
        "main main",
        "('tornado parent', 'tornado parent') main",
    ]


def test_isolated_asyncio_test_case_runs_on_the_loop() -> None:
    out = run_program("""
        import unittest

        class Case(unittest.IsolatedAsyncioTestCase):
            async def asyncSetUp(self):
                self.port = listen(EchoServer())

            async def test_echo(self):
                self.assertIs(IOLoop.current().asyncio_loop, asyncio.get_running_loop())
                stream = await tcpclient.TCPClient().connect("127.0.0.1", self.port)
                await stream.write(b"x\\n")
                self.assertEqual(await asyncio.wait_for(stream.read_until(b"\\n"), 10), b"x\\n")
                stream.close()

            async def test_sleeps(self):
                await asyncio.sleep(0.01)
                await gen.sleep(0.01)

        result = unittest.main(argv=["x"], exit=False, verbosity=0).result
        print(result.testsRun, len(result.failures), len(result.errors))
        """)
    assert out.strip().splitlines()[-1] == "2 0 0"


@needs_311
def test_asyncio_runner_keeps_one_loop_across_runs() -> None:
    out = run_program("""
        async def which():
            return IOLoop.current(), asyncio.get_running_loop()

        with asyncio.Runner() as runner:
            first, second = runner.run(which()), runner.run(which())
            print(first == second, first[0].asyncio_loop is first[1], runner.get_loop() is first[1])
        print(first[1].is_closed())
        """)
    assert out.split("\n")[:-1] == ["True True True", "True"]


def test_asyncio_main_loop_install_for_older_programs() -> None:
    out = run_program("""
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        platform = importlib.import_module(IMPL + ".platform.asyncio")
        platform.AsyncIOMainLoop().install()
        loop = IOLoop.current()
        assert loop.asyncio_loop is asyncio.get_event_loop()
        got = []

        async def work():
            await asyncio.sleep(0.01)
            got.append(await gen.sleep(0, ) if False else "slept")
            loop.stop()

        loop.add_callback(work)
        loop.start()                                   # the Tornado 4/5 way: the IOLoop's start()
        print(got)

        async def more():
            return await platform.to_asyncio_future(gen.sleep(0.01)), await asyncio.sleep(0, "asyncio")

        print(asyncio.get_event_loop().run_until_complete(more()))
        """)
    assert out.split("\n")[:-1] == ["['slept']", "(None, 'asyncio')"]


def test_ioloop_start_and_run_sync_are_asyncio_running_loops() -> None:
    out = run_program("""
        loop = IOLoop(make_current=False)

        async def main():
            assert asyncio.get_running_loop() is loop.asyncio_loop
            return await asyncio.wait_for(asyncio.sleep(0.01, "run_sync"), 5)

        print(loop.run_sync(main))
        loop.close()
        print(loop.asyncio_loop.is_closed())
        """)
    assert out.split("\n")[:-1] == ["run_sync", "True"]


lite_only = pytest.mark.skipif(impl != "tornado_lite", reason="tornado_lite's loop class and its limits")


@lite_only
def test_the_loop_api_on_real_sockets() -> None:
    out = run_program("""
        import os, signal
        from tornado_lite.platform.asyncio import TornadoLiteEventLoop

        async def main():
            loop = asyncio.get_running_loop()
            order = []
            var = contextvars.ContextVar("v", default="none")
            ctx = contextvars.copy_context()
            ctx.run(var.set, "in ctx")
            loop.call_soon(lambda: order.append(("soon", var.get())), context=ctx)
            loop.call_later(0.02, order.append, "later")
            loop.call_at(loop.time() + 0.01, order.append, "at")
            loop.call_later(0.01, order.append, "cancelled").cancel()
            threading.Thread(target=loop.call_soon_threadsafe, args=(order.append, "thread")).start()
            await asyncio.sleep(0.05)
            print(sorted(map(str, order)))

            # sock_* on a listening socket and a client, both non-blocking.
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.setblocking(False)
            client = socket.socket()
            client.setblocking(False)
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            await loop.sock_connect(client, listener.getsockname())
            conn, _ = await accept
            await loop.sock_sendall(client, b"x" * 300000)
            got = bytearray()
            buf = bytearray(65536)
            while len(got) < 300000:
                n = await loop.sock_recv_into(conn, buf)
                got += buf[:n]
            await loop.sock_sendall(conn, b"back")
            print(len(got), await loop.sock_recv(client, 10))

            # add_reader / add_writer on one fd at once.
            ready = []
            loop.add_reader(client, lambda: ready.append("r") or loop.remove_reader(client))
            loop.add_writer(client, lambda: ready.append("w") or loop.remove_writer(client))
            await loop.sock_sendall(conn, b"more")
            await asyncio.sleep(0.01)
            print(sorted(ready), loop.remove_reader(client))
            for s in (client, conn, listener):
                s.close()

            print(await loop.run_in_executor(None, sum, [1, 2]),
                  (await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM))[0][4])

            caught = loop.create_future()
            loop.add_signal_handler(signal.SIGUSR1, caught.set_result, "signal")
            os.kill(os.getpid(), signal.SIGUSR1)
            print(await asyncio.wait_for(caught, 5), loop.remove_signal_handler(signal.SIGUSR1))

            errors = []
            loop.set_exception_handler(lambda loop, context: errors.append(type(context["exception"]).__name__))
            loop.call_soon(lambda: 1 / 0)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            print(errors)

            for call in (lambda: loop.create_connection(asyncio.Protocol, "127.0.0.1", 1),
                         lambda: asyncio.start_server(lambda r, w: None, "127.0.0.1", 0),
                         lambda: asyncio.create_subprocess_exec("true")):
                try:
                    await call()
                except NotImplementedError as exc:
                    print(str(exc).split("use ")[-1])

        asyncio.run(main())
        loop = asyncio.new_event_loop()
        print(type(loop).__name__, loop.is_running(), loop.is_closed())
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        print(loop.is_closed())
        """)
    assert out.split("\n")[:-1] == [
        "[\"('soon', 'in ctx')\", 'at', 'later', 'thread']",
        "300000 b'back'",
        "['r', 'w'] False",
        "3 ('127.0.0.1', 80)",
        "signal True",
        "['ZeroDivisionError']",
        "tornado_lite.tcpclient.TCPClient().connect()",
        "tornado_lite.tcpserver.TCPServer",
        "tornado_lite.process.Subprocess",
        "TornadoLiteEventLoop False False",
        "True",
    ]


@lite_only
@needs_311
def test_a_tornado_lite_task_is_asyncio_current_task_and_cancels_like_one() -> None:
    out = run_program("""
        async def handler():
            task = asyncio.current_task()
            print(type(task).__name__, task is gen.current_task(), task.get_name().startswith("Task-"))
            try:
                async with asyncio.timeout(0.01):
                    await locks.Event().wait()
            except TimeoutError:
                print("timeout", task.cancelling())
            await asyncio.sleep(60)

        async def main():
            task = gen.convert_yielded(handler())
            await asyncio.sleep(0.05)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError as exc:
                print("cancelled", task.cancelled(), isinstance(exc, concurrent.futures.CancelledError))

        asyncio.run(main())
        """)
    assert out.split("\n")[:-1] == ["_Task True True", "timeout 0", "cancelled True True"]


def _run_example_pair(server_cmd: list, client_cmd: list) -> str:
    env = dict(os.environ)
    server = subprocess.Popen(server_cmd, stdout=subprocess.PIPE, text=True, cwd=str(ROOT), env=env)
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().split()
        assert ready and ready[0] == "ready", ready
        port = ready[1]
        client = subprocess.run(
            client_cmd + ["--port", port, "--clients", "3", "--lines", "4"],
            capture_output=True, text=True, timeout=60, cwd=str(ROOT), env=env,
        )
        assert client.returncode == 0, client.stderr
        return client.stdout
    finally:
        server.kill()
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()


# Runs a program written for Tornado on tornado_lite: tornado.* are tornado_lite's modules, bridge installed.
SWAP_LAUNCHER = """\
import importlib, runpy, sys
from tornado_lite.platform.asyncio import install
install()
import tornado_lite
sys.modules["tornado"] = tornado_lite
for name in ("concurrent", "gen", "ioloop", "iostream", "locks", "log", "netutil", "options", "process",
             "queues", "tcpclient", "tcpserver", "testing", "util"):
    sys.modules["tornado." + name] = importlib.import_module("tornado_lite." + name)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _example_command(name: str, *args: str) -> list:
    path = str(ROOT / "examples" / name)
    if impl == "tornado":
        return [sys.executable, path, *args]
    return [sys.executable, "-c", SWAP_LAUNCHER, path, *args]


def test_documented_asyncio_echo_examples_run_unmodified() -> None:
    out = _run_example_pair(
        _example_command("asyncio_echo_server.py", "--port", "0", "--seconds", "60"),
        _example_command("asyncio_echo_client.py"),
    )
    assert out.strip() == "ok 12"


def _has_tornado_lite_main() -> bool:
    return (ROOT / "tornado_lite" / "__main__.py").exists()


@lite_only
@pytest.mark.skipif(not _has_tornado_lite_main(), reason="needs `python -m tornado_lite` (the install issue)")
def test_documented_asyncio_echo_examples_under_python_m_tornado_lite() -> None:
    out = _run_example_pair(
        [sys.executable, "-m", "tornado_lite", "examples/asyncio_echo_server.py", "--port", "0", "--seconds", "60"],
        [sys.executable, "-m", "tornado_lite", "examples/asyncio_echo_client.py"],
    )
    assert out.strip() == "ok 12"


def test_policy_threads_and_any_thread_policy() -> None:
    out = run_program("""
        import warnings
        platform = importlib.import_module(IMPL + ".platform.asyncio")
        results = {}

        def in_thread(key, policy_first):
            try:
                if policy_first:
                    asyncio.get_event_loop()
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
                io = IOLoop.current()
                results[key] = (io.asyncio_loop is loop, loop.run_until_complete(asyncio.sleep(0, "ran")))
                loop.close()
            except RuntimeError as exc:
                results[key] = "RuntimeError"

        for key, first in (("plain", True), ("explicit", False)):
            thread = threading.Thread(target=in_thread, args=(key, first))
            thread.start()
            thread.join()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(platform.AnyThreadEventLoopPolicy())
        thread = threading.Thread(target=in_thread, args=("any thread", True))
        thread.start()
        thread.join()
        print(results["plain"], results["explicit"], results["any thread"])
        """)
    assert out.strip() == "RuntimeError (True, 'ran') (True, 'ran')"


def test_add_thread_selector_event_loop_wraps_a_loop() -> None:
    # Tornado's name for its Windows helper; tornado_lite's loop has add_reader already, so the wrapper only
    # hands calls on.  Also on Tornado, where it really adds a selector thread.
    out = run_program("""
        platform = importlib.import_module(IMPL + ".platform.asyncio")
        real = asyncio.new_event_loop()
        loop = platform.AddThreadSelectorEventLoop(real)
        assert isinstance(loop, asyncio.AbstractEventLoop)
        a, b = socket.socketpair()
        got = []

        def on_readable():
            got.append(a.recv(10))
            loop.remove_reader(a.fileno())
            loop.stop()

        loop.add_reader(a.fileno(), on_readable)
        b.send(b"ping")
        loop.call_later(10, loop.stop)
        loop.run_forever()
        print(got, loop.run_until_complete(asyncio.sleep(0, "slept")))
        loop.close()
        a.close()
        b.close()
        """)
    assert out.strip() == "[b'ping'] slept"


def test_implicit_current_loop_is_the_ioloop_of_asyncios_loop() -> None:
    # Tornado's IOLoop.current() in a thread with no loop is the IOLoop of asyncio's current loop (an
    # AsyncIOMainLoop), while IOLoop() is an AsyncIOLoop; also when the program configured AsyncIOLoop itself.
    out = run_program("""
        from_asyncio = importlib.import_module(IMPL + ".platform.asyncio")
        implicit = IOLoop.current()
        print(type(implicit).__name__, type(IOLoop(make_current=False)).__name__)
        print(implicit is IOLoop.current(), implicit.asyncio_loop is asyncio.get_event_loop())

        def in_thread():
            # a thread of its own: asyncio has no loop there, and neither has IOLoop.current(instance=False);
            # IOLoop.current() makes one
            print(IOLoop.current(instance=False) is None, type(IOLoop.current()).__name__)
            IOLoop.current().close()

        t = threading.Thread(target=in_thread)
        t.start()
        t.join()
        IOLoop.configure(from_asyncio.AsyncIOLoop)
        IOLoop.clear_current()
        asyncio.set_event_loop(None)
        print(type(IOLoop.current()).__name__)
        """)
    assert out.split("\n")[:4] == [
        "AsyncIOMainLoop AsyncIOLoop", "True True", "True AsyncIOMainLoop", "AsyncIOMainLoop"]
