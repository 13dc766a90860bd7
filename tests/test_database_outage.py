"""The database goes away under the server and comes back: 503 meanwhile, nothing lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import SHA, LocalPostgres, heartbeat_body, make_config, ok_result, worker_body


@pytest.fixture
def local_pg(tmp_path: Path) -> Any:
    pg = LocalPostgres(tmp_path / "pg")
    pg.start()
    yield pg
    pg.stop()


async def _wait_status(client: httpx.AsyncClient, path: str, status: int) -> httpx.Response:
    while True:
        with trio.fail_after(5):  # no request hangs
            r = await client.get(path)
        if r.status_code == status:
            return r
        await trio.sleep(0.05)


@pytest.mark.slow
async def test_server_answers_503_while_the_database_is_away_and_recovers(
    aio_loop: None, local_pg: LocalPostgres, tmp_path: Path
) -> None:
    import asyncpg

    from buildit.db import queries
    from buildit.server import run_server
    from buildit.services import hash_token, new_token

    conn = await trio_asyncio_run(asyncpg.connect, local_pg.dsn + "postgres")
    await trio_asyncio_run(conn.execute, "CREATE DATABASE buildit")
    await trio_asyncio_run(conn.close)
    config = make_config(local_pg.dsn + "buildit", tmp_path / "data")
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            running = await nursery.start(run_server, config)
            async with httpx.AsyncClient(base_url=running.url) as c:
                db = running.services.db
                user = await db.run(queries.upsert_user, "alice", "developer")
                token = new_token()
                await db.run(queries.insert_token, user.id, hash_token(token))
                auth = {"Authorization": f"Bearer {token}"}
                r = await c.post("/api/pipeline/new", headers=auth, json={
                    "git_branch": "stable", "git_sha": SHA, "packages": "bash",
                    "archs": "amd64,arm64"})
                assert r.status_code == 200
                pipeline_id = r.json()["id"]
                job = (await c.post("/api/worker/poll", json=worker_body("w1"))).json()
                assert job is not None

                local_pg.stop()
                r = await _wait_status(c, "/api/health", 503)
                assert r.headers["Retry-After"] == "5"
                assert "database is unavailable" in r.json()["error"]
                for _ in range(3):
                    with trio.fail_after(5):
                        r = await c.post("/api/pipeline/new", headers=auth, json={
                            "git_branch": "stable", "git_sha": SHA, "packages": "zlib",
                            "archs": "amd64"})
                    assert r.status_code == 503 and r.headers["Retry-After"]
                    with trio.fail_after(5):
                        r = await c.get("/api/pipeline/list")
                    assert r.status_code == 503
                    with trio.fail_after(5):  # heartbeats are buffered, not refused
                        r = await c.post("/api/worker/heartbeat", json=heartbeat_body("w1"))
                    assert r.status_code == 200
                    with trio.fail_after(5):
                        r = await c.post("/api/worker/job_update", json={
                            "hostname": "w1", "arch": "amd64", "job_id": job["job_id"],
                            "worker_secret": "test-worker-secret",
                            "attempt_token": job["attempt_token"],
                            "result": ok_result("bash")})
                    assert r.status_code == 503  # the worker keeps its result and retries

                local_pg.start()
                await _wait_status(c, "/api/health", 200)
                # the actors survived the outage
                assert not running.supervisor.stopping.is_set()
                r = await c.post("/api/worker/job_update", json={
                    "hostname": "w1", "arch": "amd64", "job_id": job["job_id"],
                    "worker_secret": "test-worker-secret",
                    "attempt_token": job["attempt_token"], "result": ok_result("bash")})
                assert r.status_code == 200, r.text
                info = (await c.get("/api/pipeline/info",
                                    params={"pipeline_id": pipeline_id})).json()
                assert [j["status"] for j in info["jobs"]] == ["success", "created"]
                # the heartbeat buffered during the outage reached the database
                await running.services.fleet.wait_flushed()
                workers = (await c.get("/api/worker/list")).json()
                assert workers["total_items"] == 1
                # new work is handed out again
                job2 = (await c.post("/api/worker/poll", json=worker_body("r1", "arm64"))).json()
                assert job2 is not None and job2["arch"] == "arm64"
            running.stop.set()


async def trio_asyncio_run(fn: Any, *args: Any) -> Any:
    import trio_asyncio

    return await trio_asyncio.aio_as_trio(fn)(*args)

