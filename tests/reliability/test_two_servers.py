"""Scenario: two servers on one database, one killed: the watchdog moves to the survivor
within one period, and no job is ever handed out twice."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from buildit.actors.watchdog import WATCHDOG_LOCK_KEY
from tests.conftest import SHA
from tests.reliability.harness import Ledger, ServerProcess, make_token, simulated_worker


async def _holder(conn: Any) -> str | None:
    """application_name of the connection holding the watchdog's advisory lock."""
    value: str | None = await conn.fetchval(
        """SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
           WHERE l.locktype = 'advisory' AND l.granted
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND (l.classid::bigint << 32 | l.objid::bigint) = $1""",
        WATCHDOG_LOCK_KEY)
    return value


async def _outcomes(conn: Any) -> list[Any]:
    return list(await conn.fetch("SELECT job_id, outcome FROM job_attempts"))


@pytest.mark.slow
async def test_watchdog_moves_and_no_double_assignment(
    db: Any, database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    n_jobs = 10_000 if request.config.getoption("--long") else 1000
    token = await make_token(db, "alice")
    # heartbeat timeout 8 s -> watchdog period 2 s
    a = ServerProcess(database_url, tmp_path / "a", BUILDIT_HEARTBEAT_TIMEOUT="8")
    b = ServerProcess(database_url, tmp_path / "b", BUILDIT_HEARTBEAT_TIMEOUT="8")
    ledger = Ledger()
    done = trio.Event()
    try:
        await a.start()
        with trio.fail_after(30):
            while (await db.read(_holder)) is None:
                await trio.sleep(0.05)
        await b.start()
        first = await db.read(_holder)
        assert a.proc is not None and first == f"buildit-watchdog:{a.proc.pid}"

        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                for w in range(20):
                    arch = "amd64" if w % 2 else "arm64"
                    nursery.start_soon(simulated_worker, [a.url, b.url], f"w{w}", arch,
                                       ledger, done)
                async with httpx.AsyncClient(timeout=30) as client:
                    for i in range(n_jobs // 2):
                        url = b.url if (i % 2 or a.proc.returncode is not None) else a.url
                        r = await client.post(
                            f"{url}/api/pipeline/new",
                            json={"git_branch": f"t{i}", "git_sha": SHA, "packages": "bash",
                                  "archs": "amd64,arm64"},
                            headers={"Authorization": f"Bearer {token}"})
                        assert r.status_code == 200, r.text
                        if i == n_jobs // 4:
                            await a.kill()
                            killed = time.monotonic()
                            with trio.fail_after(10):
                                while True:
                                    holder = await db.read(_holder)
                                    if holder is not None and holder != first:
                                        break
                                    await trio.sleep(0.05)
                            moved_after = time.monotonic() - killed
                            assert b.proc is not None
                            assert holder == f"buildit-watchdog:{b.proc.pid}"
                            assert moved_after <= 2 + 1, moved_after  # one period (+ slack)
                while len(set(ledger.reported)) < n_jobs:
                    await trio.sleep(0.05)
                done.set()
    finally:
        done.set()
        await a.stop()
        await b.stop()
    claims = Counter((job, tok) for job, tok, _ in ledger.claims)
    assert max(claims.values()) == 1
    assert len({job for job, _, _ in ledger.claims}) == n_jobs
    assert len(set(ledger.acked)) == n_jobs == len(ledger.reported)
    # Each job succeeded exactly once; any other attempt was lost (a poll answer cut off by
    # the kill) or handed back, never a second build.
    outcomes = await db.read(_outcomes)
    success = Counter(o["job_id"] for o in outcomes if o["outcome"] == "success")
    assert len(success) == n_jobs and set(success.values()) == {1}
    assert {o["outcome"] for o in outcomes} <= {"success", "lost", "handed_back"}
