"""Scenario: a bad network between workers and server: every result arrives exactly once."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

from tests.conftest import SHA
from tests.reliability.harness import Ledger, simulated_worker
from tests.reliability.proxy import Chaos, ChaosProxy


async def _outcomes(conn: Any) -> list[Any]:
    return list(await conn.fetch(
        "SELECT job_id, token::text AS token, outcome FROM job_attempts"))


async def _jobs(conn: Any) -> list[Any]:
    return list(await conn.fetch("SELECT id, status, successful_packages FROM jobs"))


@pytest.mark.slow
async def test_every_result_arrives_exactly_once(
    start_server: Any, request: pytest.FixtureRequest
) -> None:
    n_jobs = 1000 if request.config.getoption("--long") else 200
    server = await start_server(max_lost_attempts=1000)
    token = await server.add_user("alice")
    for i in range(n_jobs // 2):
        r = await server.client.post(
            "/api/pipeline/new",
            json={"git_branch": f"t{i}", "git_sha": SHA, "packages": "bash",
                  "archs": "amd64,arm64"},
            headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    upstream = urlsplit(server.url)
    chaos = Chaos(drop=0.05, cut=0.15, max_delay=0.01, seed=7)
    ledger = Ledger()
    done = trio.Event()
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(ChaosProxy(upstream.hostname or "", upstream.port or 0,
                                                  chaos).run)
            proxy_url = f"http://127.0.0.1:{port}"
            for w in range(16):
                nursery.start_soon(simulated_worker, [proxy_url], f"w{w}",
                                   "amd64" if w % 2 else "arm64", ledger, done)
            while len(ledger.reported) < n_jobs:
                await trio.sleep(0.05)
            done.set()
            nursery.cancel_scope.cancel()
    assert chaos.cuts > 10 and chaos.dropped > 10  # the network really was bad
    jobs = await server.db.read(_jobs)
    assert {j["status"] for j in jobs} == {"success"} and len(jobs) == n_jobs
    for job in jobs:
        assert job["successful_packages"] == \
            ledger.reported[job["id"]]["Ok"]["successful_packages"]
    outcomes = await server.db.read(_outcomes)
    success = Counter(o["job_id"] for o in outcomes if o["outcome"] == "success")
    assert set(success.values()) == {1} and len(success) == n_jobs
    # Every acknowledgement the workers got is the one recorded success of that job;
    # repeats after a cut answer were acknowledged without a second record.
    assert set(ledger.acked) == {(o["job_id"], o["token"]) for o in outcomes
                                 if o["outcome"] == "success"}
    assert {o["outcome"] for o in outcomes} <= {"success", "lost", "handed_back"}
