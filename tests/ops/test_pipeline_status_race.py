"""Two jobs of one pipeline finishing at the same moment must end the pipeline.

Found by ``buildit demo`` (three workers finishing one pipeline's jobs within
milliseconds): the pipeline stayed ``running`` with all its jobs ``success``.
``queries.report_result`` recomputes the pipeline status from the jobs it can see; under
READ COMMITTED two concurrent transactions each see the other job still running, both
compute ``running``, and nothing corrects it (write skew). ``report_result`` locks the
job and its pipeline in its first statement, so the later transaction waits and, in its
next statement, sees the earlier one's job. This test interleaves the two transactions
deterministically.

A cancel racing a result must not deadlock with it either: both lock the job(s) first,
then the pipeline.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import trio
import trio_asyncio

from buildit import clock
from buildit.db import aio, queries
from buildit.errors import Conflict
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


async def _two_job_pipeline(server: Any) -> int:
    """A pipeline of alice's with jobs on amd64 and arm64; its id."""
    token = await server.add_user("alice")
    r = await server.client.post(
        "/api/pipeline/new", headers={"Authorization": f"Bearer {token}"},
        json={"git_branch": "topic", "git_sha": SHA, "packages": "bash",
              "archs": "amd64,arm64"})
    assert r.status_code == 200, r.text
    pipeline_id: int = r.json()["id"]
    return pipeline_id


async def test_concurrent_results_end_the_pipeline(server: Any) -> None:
    with trio.fail_after(30):
        pipeline_id = await _two_job_pipeline(server)
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


class _PausingConn:
    """A connection that stops after its first statement until ``resume`` is set."""

    def __init__(self, conn: Any, paused: asyncio.Event, resume: asyncio.Event) -> None:
        self._conn, self._paused, self._resume, self._first = conn, paused, resume, True

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._conn, name)
        if name not in ("execute", "fetch", "fetchrow", "fetchval"):
            return method

        async def call(*args: Any) -> Any:
            result = await method(*args)
            if self._first:
                self._first = False
                self._paused.set()
                await self._resume.wait()
            return result

        return call


async def _cancel_while_a_result_arrives(dsn: str, pipeline_id: int, job: dict[str, Any],
                                         now: Any) -> tuple[BaseException | None, list[int]]:
    """ASYNCIO-FLAVOURED: the cancel takes its first lock, the result then starts and
    waits on a lock, the cancel goes on. Returns what the result raised and the jobs the
    cancel ended (a deadlock would make one of them fail with DeadlockDetectedError)."""
    canceller, reporter, observer = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        for conn in (canceller, reporter):
            await aio._init_connection(conn)
        paused, resume = asyncio.Event(), asyncio.Event()

        async def cancel() -> list[int]:
            async with canceller.transaction():
                return await queries.cancel_pipeline(
                    _PausingConn(canceller, paused, resume), pipeline_id, "alice", now)

        async def report() -> None:
            async with reporter.transaction():
                await _report(reporter, job, now)

        cancelling = asyncio.ensure_future(cancel())
        await paused.wait()
        reporting = asyncio.ensure_future(report())
        try:
            while not await observer.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                reporter.get_server_pid(),
            ):
                assert not reporting.done(), reporting
                await asyncio.sleep(0.01)
            resume.set()
            ended = await cancelling
            raised: BaseException | None = None
            try:
                await reporting
            except Exception as exc:
                raised = exc
            return raised, ended
        finally:
            cancelling.cancel()
            reporting.cancel()
    finally:
        for conn in (canceller, reporter, observer):
            await conn.close()


async def test_a_cancel_and_a_result_at_once_do_not_deadlock(server: Any) -> None:
    with trio.fail_after(30):
        pipeline_id = await _two_job_pipeline(server)
        job = (await server.client.post("/api/worker/poll",
                                        json=worker_body("a1", "amd64"))).json()
        job = {**job, "hostname": "a1", "arch": "amd64"}
        raised, ended = await trio_asyncio.aio_as_trio(_cancel_while_a_result_arrives)(
            server.db.dsn, pipeline_id, job, clock.now())
        info = (await server.client.get("/api/pipeline/info",
                                        params={"pipeline_id": pipeline_id})).json()
    # The cancel went first: it ended both jobs, and the late result was refused (409).
    assert type(raised) is Conflict, raised
    assert sorted(ended) == sorted(j["job_id"] for j in info["jobs"])
    assert [j["status"] for j in info["jobs"]] == ["error", "error"]
    assert info["status"] == "error"
