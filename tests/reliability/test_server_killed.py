"""Scenario: the server is killed with SIGKILL under load, several times, and restarted."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import SHA
from tests.reliability.harness import Ledger, ServerProcess, make_token, simulated_worker


async def _attempt_rows(conn: Any) -> list[Any]:
    return list(await conn.fetch(
        """SELECT job_id, attempt, token::text AS token, started_at, ended_at, outcome, result
           FROM job_attempts ORDER BY job_id, attempt"""))


async def _jobs(conn: Any) -> list[Any]:
    return list(await conn.fetch(
        "SELECT id, status, successful_packages FROM jobs ORDER BY id"))


@pytest.mark.slow
async def test_kill_9_under_load_loses_nothing(
    db: Any, database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    long = request.config.getoption("--long")
    n_jobs, n_workers, kills = (2000, 50, 5) if long else (300, 20, 3)
    token = await make_token(db, "alice")
    proc = ServerProcess(database_url, tmp_path / "killed", BUILDIT_HEARTBEAT_TIMEOUT="60")
    await proc.start()
    ledger = Ledger()
    done = trio.Event()
    job_ids: list[int] = []
    try:
        with trio.fail_after(600 if long else 240):
            async with httpx.AsyncClient(base_url=proc.url, timeout=30) as client:
                for i in range(n_jobs // 2):
                    while True:
                        try:
                            r = await client.post(
                                "/api/pipeline/new",
                                json={"git_branch": f"t{i}", "git_sha": SHA,
                                      "packages": "bash", "archs": "amd64,arm64"},
                                headers={"Authorization": f"Bearer {token}"})
                            break
                        except httpx.TransportError:
                            await trio.sleep(0.05)
                    assert r.status_code == 200, r.text
                    job_ids.extend(r.json()["jobs"].values())
            async with trio.open_nursery() as nursery:
                for w in range(n_workers):
                    arch = "amd64" if w % 2 else "arm64"
                    nursery.start_soon(simulated_worker, [proc.url], f"w{w}", arch, ledger,
                                       done)
                # Kill the server each time another slice of the work has been acknowledged.
                for k in range(kills):
                    while len(ledger.acked) < (k + 1) * n_jobs // (kills + 1):
                        await trio.sleep(0.02)
                    await proc.kill()
                    await trio.sleep(0.2)  # results pile up at the workers meanwhile
                    await proc.start()
                while len(set(ledger.reported)) < n_jobs:
                    await trio.sleep(0.05)
                done.set()
    finally:
        done.set()
        await proc.stop()

    jobs = await db.read(_jobs)
    attempts = await db.read(_attempt_rows)
    # Every job ended once, as success, with the result its worker reported.
    assert len(jobs) == n_jobs and {j["status"] for j in jobs} == {"success"}
    for job in jobs:
        reported = ledger.reported[job["id"]]["Ok"]["successful_packages"]
        assert job["successful_packages"] == reported
    per_job = Counter(a["job_id"] for a in attempts if a["outcome"] == "success")
    assert set(per_job.values()) == {1}
    # Each acknowledged (job, token) is exactly the success attempt of that job.
    success_tokens = {(a["job_id"], a["token"]) for a in attempts if a["outcome"] == "success"}
    assert set(ledger.acked) == success_tokens and len(ledger.acked) == n_jobs
    # No job was ever being built by two workers at once: attempts never overlap.
    by_job: dict[int, list[Any]] = {}
    for a in attempts:
        by_job.setdefault(a["job_id"], []).append(a)
    for rows in by_job.values():
        for earlier, later in itertools.pairwise(rows):
            assert earlier["ended_at"] is not None
            assert earlier["ended_at"] <= later["started_at"]
    assert proc.starts == kills + 1
