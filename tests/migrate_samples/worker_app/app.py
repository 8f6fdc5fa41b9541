"""A bounded work queue with a pool of workers, written against asyncio's primitives."""
import asyncio

from tornado import gen


async def run_jobs(jobs, workers=3, maxsize=2):
    queue = asyncio.Queue(maxsize=maxsize)
    lock = asyncio.Lock()
    done = []

    async def worker():
        async for job in queue:
            if job is None:
                queue.task_done()
                return
            await asyncio.sleep(0.001)
            async with lock:
                done.append(job * 2)
            queue.task_done()

    tasks = [gen.convert_yielded(worker()) for _ in range(workers)]
    for job in jobs:
        await queue.put(job)
    for _ in range(workers):
        await queue.put(None)
    await queue.join()
    await gen.multi(tasks)
    return sorted(done)


if __name__ == "__main__":
    print(asyncio.run(run_jobs(range(10))))
