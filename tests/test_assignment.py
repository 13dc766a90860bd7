"""Every job is handed out exactly once: many pollers, and several server processes."""

from __future__ import annotations

import os
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import SHA, WORKER_SECRET, worker_body


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _create(client: httpx.AsyncClient, token: str, n: int, archs: str) -> list[int]:
    ids = []
    for i in range(n):
        r = await client.post(
            "/api/pipeline/new",
            json={"git_branch": f"topic-{i}", "git_sha": SHA, "packages": "bash",
                  "archs": archs},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        ids.extend(r.json()["jobs"].values())
    return ids


async def _drain(urls: list[str], hostname: str, arch: str, got: list[int],
                 expected: int) -> None:
    """A worker: poll (long poll), take a job, report it, until all jobs are out."""
    async with httpx.AsyncClient(timeout=60) as client:
        turn = 0
        while len(got) < expected:
            url = urls[turn % len(urls)]
            turn += 1
            r = await client.post(f"{url}/api/worker/poll",
                                  json=worker_body(hostname, arch, wait_secs=1))
            assert r.status_code == 200, r.text
            job = r.json()
            if job is None:
                continue
            got.append(job["job_id"])
            r = await client.post(
                f"{url}/api/worker/job_update",
                json={"hostname": hostname, "arch": arch, "job_id": job["job_id"],
                      "worker_secret": WORKER_SECRET, "attempt_token": job["attempt_token"],
                      "result": {"Error": "simulated"}},
            )
            assert r.status_code == 200, r.text


async def test_20_pollers_200_jobs_each_handed_out_once(server: Any) -> None:
    with trio.fail_after(120):
        token = await server.add_user("alice")
        job_ids = await _create(server.client, token, 100, "amd64,arm64")
        assert len(job_ids) == 200
        got: list[int] = []
        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(_drain, [server.url], f"a{i}", "amd64", got, 200)
                nursery.start_soon(_drain, [server.url], f"r{i}", "arm64", got, 200)
        counts = Counter(got)
        assert sorted(counts) == sorted(job_ids)
        assert max(counts.values()) == 1
        attempts = await server.db.read(_attempts)
        assert attempts == {job_id: 1 for job_id in job_ids}


async def _attempts(conn: Any) -> dict[int, int]:
    rows = await conn.fetch("SELECT job_id, count(*) AS n FROM job_attempts GROUP BY job_id")
    return {r["job_id"]: r["n"] for r in rows}


@pytest.mark.slow
async def test_two_server_processes_never_hand_a_job_out_twice(
    server: Any, database_url: str, tmp_path: Path
) -> None:
    """Two `buildit serve` processes on one database, 20 workers polling both."""
    token = await server.add_user("alice")
    urls = []
    procs = []
    env_base = {**os.environ, "BUILDIT_DATABASE_URL": database_url,
                "BUILDIT_WORKER_SECRET": WORKER_SECRET, "BUILDIT_ARCHS": "amd64,arm64"}
    try:
        for i in range(2):
            port = _free_port()
            env = {**env_base, "BUILDIT_LISTEN": f"127.0.0.1:{port}",
                   "BUILDIT_DATA_DIR": str(tmp_path / f"p{i}")}
            procs.append(await trio.lowlevel.open_process(
                [sys.executable, "-m", "buildit", "serve"], env=env,
                stdout=open(tmp_path / f"p{i}.log", "wb"), stderr=-2))
            urls.append(f"http://127.0.0.1:{port}")
        with trio.fail_after(60):
            async with httpx.AsyncClient() as client:
                for url in urls:
                    while True:
                        try:
                            if (await client.get(f"{url}/api/ping")).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        await trio.sleep(0.1)
        with trio.fail_after(120):
            got: list[int] = []
            job_ids: list[int] = []
            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(_drain, urls, f"a{i}", "amd64", got, 200)
                    nursery.start_soon(_drain, urls[::-1], f"r{i}", "arm64", got, 200)
                async with httpx.AsyncClient(base_url=urls[0]) as c0, \
                        httpx.AsyncClient(base_url=urls[1]) as c1:
                    # create on both servers while the workers poll
                    for _ in range(10):
                        job_ids += await _create(c0, token, 5, "amd64,arm64")
                        job_ids += await _create(c1, token, 5, "amd64,arm64")
            counts = Counter(got)
            assert sorted(counts) == sorted(job_ids) and len(job_ids) == 200
            assert max(counts.values()) == 1
            assert await server.db.read(_attempts) == {j: 1 for j in job_ids}
    finally:
        for proc in procs:
            proc.terminate()
        with trio.move_on_after(20):
            for proc in procs:
                await proc.wait()
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
