"""Two jobs of one pipeline finishing at the same moment must end the pipeline.

Found by ``buildit demo`` (three workers finishing one pipeline's jobs within
milliseconds): the pipeline stayed ``running`` with all its jobs ``success``.
``queries.report_result`` recomputes the pipeline status from the jobs it can see; under
READ COMMITTED two concurrent transactions each see the other job still running, both
compute ``running``, and nothing corrects it (write skew). Locking the pipeline row at
the start of ``refresh_pipeline_status`` (``SELECT 1 FROM pipelines WHERE id = $1 FOR
UPDATE``) makes the later transaction wait and, in its next statement, see the earlier
one's job. This test interleaves the two transactions deterministically.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import trio
import trio_asyncio

from buildit import clock
from buildit.db import aio, queries
from tests.conftest import SHA, worker_body


async def _report(conn: Any, job: dict[str, Any], now: Any) -> None:
    await queries.report_result(
        conn, job_id=job["job_id"], hostname=job["hostname"], arch=job["arch"],
        token=job["attempt_token"],
        result=queries.JobResult(build_success=True, pushpkg_success=True,
                                 successful_packages=("bash",), elapsed_secs=1),
        default_log_url=None, now=now)


async def _finish_both_at_once(dsn: str, jobs: list[dict[str, Any]], now: Any) -> None:
    """ASYNCIO-FLAVOURED: the second job's transaction runs while the first is uncommitted.

    It either completes (no lock protects the pipeline status) or waits for a lock (one
    does); then the first commits and the second finishes and commits.
    """
    first, second, observer = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        for conn in (first, second):
            await aio._init_connection(conn)
        one, two = first.transaction(), second.transaction()
        await one.start()
        await two.start()
        await _report(first, jobs[0], now)
        task = asyncio.ensure_future(_report(second, jobs[1], now))
        try:
            while not task.done():  # bounded by the caller's trio.fail_after
                if await observer.fetchval(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                    second.get_server_pid(),
                ):
                    break
                await asyncio.sleep(0.01)
            await one.commit()
            await task
        finally:
            task.cancel()
        await two.commit()
    finally:
        for conn in (first, second, observer):
            await conn.close()


async def test_concurrent_results_end_the_pipeline(server: Any) -> None:
    with trio.fail_after(30):
        token = await server.add_user("alice")
        r = await server.client.post(
            "/api/pipeline/new", headers={"Authorization": f"Bearer {token}"},
            json={"git_branch": "topic", "git_sha": SHA, "packages": "bash",
                  "archs": "amd64,arm64"})
        pipeline_id = r.json()["id"]
        jobs = []
        for host, arch in (("a1", "amd64"), ("r1", "arm64")):
            job = (await server.client.post("/api/worker/poll",
                                            json=worker_body(host, arch))).json()
            jobs.append({**job, "hostname": host, "arch": arch})
        await trio_asyncio.aio_as_trio(_finish_both_at_once)(server.db.dsn, jobs, clock.now())
        info = (await server.client.get("/api/pipeline/info",
                                        params={"pipeline_id": pipeline_id})).json()
    assert [j["status"] for j in info["jobs"]] == ["success", "success"]
    assert info["status"] == "success"
