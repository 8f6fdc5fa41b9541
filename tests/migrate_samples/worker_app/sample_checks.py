from tornado.testing import AsyncTestCase, gen_test

from app import run_jobs


class WorkerTest(AsyncTestCase):
    @gen_test
    async def test_all_jobs_done(self):
        result = await run_jobs(range(20), workers=4, maxsize=2)
        self.assertEqual(result, [i * 2 for i in range(20)])
