"""``buildit bench``: its code paths run at a tiny size and report every figure (speeds
are not asserted), and the list totals the history measurement relies on stay exact."""

from __future__ import annotations

import os
import sys
from typing import Any

import orjson
import trio

from buildit.bench import history, report
from buildit.bench.scenarios import percentile
from buildit.db import dedicated_connection
from tests.conftest import SHA, WORKER_SECRET, ok_result, worker_body


async def test_bench_tiny_prints_every_figure_as_json(aio_loop: None, database_url: str) -> None:
    env = {**os.environ, "BUILDIT_DATABASE_URL": database_url}
    with trio.fail_after(280):
        result = await trio.run_process(
            [sys.executable, "-m", "buildit", "bench", "--size", "tiny", "--json"],
            env=env, capture_stdout=True, capture_stderr=True, check=False,
        )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    figures = orjson.loads(result.stdout)
    for key in report.REQUIRED_KEYS:
        assert isinstance(figures[key], int | float), key
        assert figures[key] >= 0, key
    assert figures["mode"] == "tiny"
    assert figures["longpoll_workers"] == figures["longpoll_target"] == 20
    assert set(figures["targets"]) == {"heartbeat", "idle_poll", "assign_p50", "assign_p99",
                                       "e2e", "longpoll", "history_claim", "history_list"}
    # The table went to stderr, one row per figure.
    table = result.stderr.decode()
    for row in ("GET /api/ping", "GET /api/health", "heartbeats, 20 workers", "idle polls",
                "assignment p50", "jobs done end to end", "workers held in long poll",
                "/api/pipeline/list page 1", "/api/job/list page 1"):
        assert row in table, row
    # The bench leaves the database as empty as it found it.
    async with dedicated_connection(database_url) as sql:
        assert await sql.fetchval("SELECT count(*) FROM pipelines") == 0


def test_the_default_size_is_full_and_quick_picks_quick() -> None:
    import argparse

    from buildit.bench import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    assert parser.parse_args(["bench"]).size == "full"
    assert parser.parse_args(["bench", "--quick"]).size == "quick"
    assert parser.parse_args(["bench", "--size", "tiny"]).size == "tiny"


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0


async def _totals(server: Any) -> dict[str, int]:
    """total_items of the list pages under each filter."""
    queries = {
        "pipelines": "/api/pipeline/list",
        "pipelines stable": "/api/pipeline/list?stable_only=true",
        "pipelines pr": "/api/pipeline/list?github_pr_only=true",
        "pipelines success": "/api/pipeline/list?status=success",
        "pipelines running": "/api/pipeline/list?status=running",
        "pipelines error stable": "/api/pipeline/list?status=error&stable_only=true",
        "pipelines by alice": "/api/pipeline/list?creator=alice",
        "jobs": "/api/job/list",
        "jobs created": "/api/job/list?status=created",
        "jobs running": "/api/job/list?status=running",
        "jobs success amd64": "/api/job/list?status=success&arch=amd64",
        "jobs error": "/api/job/list?status=error",
        "jobs arm64": "/api/job/list?arch=arm64",
    }
    out = {}
    for name, path in queries.items():
        r = await server.client.get(path)
        assert r.status_code == 200, r.text
        out[name] = r.json()["total_items"]
    return out


async def _counted(sql: Any) -> dict[str, int]:
    """The same totals by count(*)."""
    statements = {
        "pipelines": "SELECT count(*) FROM pipelines",
        "pipelines stable": "SELECT count(*) FROM pipelines WHERE git_branch = 'stable'",
        "pipelines pr": "SELECT count(*) FROM pipelines WHERE github_pr IS NOT NULL",
        "pipelines success": "SELECT count(*) FROM pipelines WHERE status = 'success'",
        "pipelines running": "SELECT count(*) FROM pipelines WHERE status = 'running'",
        "pipelines error stable":
            "SELECT count(*) FROM pipelines WHERE status = 'error' AND git_branch = 'stable'",
        "pipelines by alice": "SELECT count(*) FROM pipelines p JOIN users u "
                              "ON u.id = p.creator_user_id WHERE u.github_login = 'alice'",
        "jobs": "SELECT count(*) FROM jobs",
        "jobs created": "SELECT count(*) FROM jobs WHERE status = 'created'",
        "jobs running": "SELECT count(*) FROM jobs WHERE status = 'running'",
        "jobs success amd64":
            "SELECT count(*) FROM jobs WHERE status = 'success' AND arch = 'amd64'",
        "jobs error": "SELECT count(*) FROM jobs WHERE status = 'error'",
        "jobs arm64": "SELECT count(*) FROM jobs WHERE arch = 'arm64'",
    }
    return {name: int(await sql.fetchval(q)) for name, q in statements.items()}


async def test_list_totals_stay_exact_through_every_change(server: Any,
                                                           database_url: str) -> None:
    with trio.fail_after(120):
        token = await server.add_user("alice")
        auth = {"Authorization": f"Bearer {token}"}
        pipelines = []
        for branch, archs in (("stable", "amd64,arm64"), ("topic", "amd64"),
                              ("stable", "arm64"), ("topic", "amd64,arm64,riscv64")):
            r = await server.client.post("/api/pipeline/new", headers=auth, json={
                "git_branch": branch, "git_sha": SHA, "packages": "bash", "archs": archs})
            assert r.status_code == 200, r.text
            pipelines.append(r.json()["id"])
        async with dedicated_connection(database_url) as sql:
            assert await _totals(server) == await _counted(sql)
            # Claim and finish two jobs (one succeeds, one fails), hold a third.
            for hostname, result in (("w1", ok_result("bash")),
                                     ("w2", ok_result(build_success=False, failed="bash")),
                                     ("w3", None)):
                r = await server.client.post("/api/worker/poll", json=worker_body(hostname))
                job = r.json()
                assert job is not None
                if result is not None:
                    r = await server.client.post("/api/worker/job_update", json={
                        "hostname": hostname, "arch": "amd64", "job_id": job["job_id"],
                        "worker_secret": WORKER_SECRET,
                        "attempt_token": job["attempt_token"], "result": result})
                    assert r.status_code == 200, r.text
            assert await _totals(server) == await _counted(sql)
            # Cancel a pipeline (created and running jobs end as error).
            r = await server.client.post("/api/pipeline/cancel", headers=auth,
                                         json={"pipeline_id": pipelines[3]})
            assert r.status_code == 200, r.text
            assert await _totals(server) == await _counted(sql)
            # A long history seeded straight in SQL, then an empty one.
            await history.seed(sql, 300)
            totals = await _totals(server)
            assert totals == await _counted(sql)
            assert totals["jobs"] >= 1500
            await history.forget(sql)
            assert await _totals(server) == await _counted(sql)
            assert (await _totals(server))["pipelines"] == 0
