"""The worker against the real server: real HTTP on 127.0.0.1, real PostgreSQL, fake
ciel/pushpkg on PATH and a real git packages tree. Uses the server fixtures of
tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from buildit.db import queries
from buildit.server import RunningServer, run_server
from buildit.services import hash_token, new_token
from buildit.worker import WorkerConfig, WorkerHandle, run_worker
from tests.conftest import WORKER_SECRET, make_config

from .conftest import Abbs, Fakes, git, spec
from .helpers import process_gone, wait_for

LIMIT = 90


def e2e_config(worker_config: WorkerConfig, url: str, hostname: str = "e2e-1") -> WorkerConfig:
    return worker_config.replace(
        server=url, worker_secret=WORKER_SECRET, hostname=hostname, log_flush_limit=60.0,
        heartbeat_interval=0.2, poll_wait=2.0,
    )


@asynccontextmanager
async def worker(config: WorkerConfig) -> AsyncIterator[WorkerHandle]:
    async with trio.open_nursery() as nursery:
        handle: WorkerHandle = await nursery.start(run_worker, config)
        yield handle
        handle.request_shutdown(immediate=True)
        await handle.wait_stopped()


async def new_pipeline(client: httpx.AsyncClient, token: str, sha: str, packages: str,
                       **extra: Any) -> tuple[int, int]:
    r = await client.post(
        "/api/pipeline/new",
        json={"git_branch": "stable", "git_sha": sha, "packages": packages, "archs": "amd64",
              **extra},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    pipeline_id = int(r.json()["id"])
    r = await client.get("/api/pipeline/info", params={"pipeline_id": pipeline_id})
    (job,) = r.json()["jobs"]
    return pipeline_id, int(job["job_id"])


async def job_info(client: httpx.AsyncClient, job_id: int) -> dict[str, Any]:
    r = await client.get("/api/job/info", params={"job_id": job_id})
    assert r.status_code == 200, r.text
    info: dict[str, Any] = r.json()
    return info


async def wait_job(client: httpx.AsyncClient, job_id: int,
                   done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll the server's job info until ``done`` (callers hold a deadline)."""
    while True:
        try:
            info = await job_info(client, job_id)
        except httpx.TransportError:
            info = None  # the server is restarting; its old connections break
        if info is not None and done(info):
            return info
        await trio.sleep(0.05)


def finished(info: dict[str, Any]) -> bool:
    return info["status"] in ("success", "failed", "error")


async def job_log(client: httpx.AsyncClient, job_id: int) -> str:
    r = await client.get("/api/job/log", params={"job_id": job_id})
    assert r.status_code == 200, r.text
    return r.text


async def test_a_successful_build_end_to_end(
    server: Any, worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    sha = abbs.commit({"app-shells/bash/spec": spec("5.2.37")})
    token = await server.add_user("alice")
    with trio.fail_after(LIMIT):
        async with worker(e2e_config(worker_config, server.url)):
            pipeline_id, job_id = await new_pipeline(server.client, token, sha, "bash,zlib")
            info = await wait_job(server.client, job_id, finished)
            log = await job_log(server.client, job_id)
    assert info["status"] == "success", info
    assert info["build_success"] is True and info["pushpkg_success"] is True
    assert info["successful_packages"] == "bash,zlib"
    assert info["package_versions"] == {"bash": "5.2.37-0", "zlib": "1.3-1"}
    assert info["attempts"][-1]["worker_hostname"] == "e2e-1"
    assert info["log_url"]
    assert "ciel build -i main bash zlib" in log
    assert "ACBS Build Successful" in log
    assert "result: build succeeded" in log
    r = await server.client.get("/api/pipeline/info", params={"pipeline_id": pipeline_id})
    assert r.json()["status"] == "success"


async def test_a_failed_package_end_to_end(
    server: Any, worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    fakes.control(build="fail", fail_package="zlib")
    sha = git(abbs.work, "rev-parse", "HEAD")
    token = await server.add_user("alice")
    with trio.fail_after(LIMIT):
        async with worker(e2e_config(worker_config, server.url)):
            _, job_id = await new_pipeline(server.client, token, sha, "readline,zlib,bash")
            info = await wait_job(server.client, job_id, finished)
    assert info["status"] == "failed"
    assert info["build_success"] is False
    assert info["successful_packages"] == "readline"
    assert info["failed_package"] == "zlib"
    assert info["skipped_packages"] == "bash"


async def test_a_push_failure_end_to_end(
    server: Any, worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    fakes.control(pushpkg_exit=1)
    sha = git(abbs.work, "rev-parse", "HEAD")
    token = await server.add_user("alice")
    with trio.fail_after(LIMIT):
        async with worker(e2e_config(worker_config, server.url)):
            _, job_id = await new_pipeline(server.client, token, sha, "bash")
            info = await wait_job(server.client, job_id, finished)
    assert info["status"] == "failed"
    assert info["build_success"] is True and info["pushpkg_success"] is False


async def test_a_fetch_failure_end_to_end(
    server: Any, worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    token = await server.add_user("alice")
    config = e2e_config(worker_config, server.url).replace(git_remote=str(abbs.remote) + "-gone")
    with trio.fail_after(LIMIT):
        async with worker(config):
            _, job_id = await new_pipeline(server.client, token, "a" * 40, "bash")
            info = await wait_job(server.client, job_id, finished)
            log = await job_log(server.client, job_id)
    assert info["status"] == "error"
    assert info["error_message"].startswith("could not fetch branch stable from ")
    assert log.count("running `git fetch") == 5


async def test_the_server_restarting_mid_build(
    aio_loop: None, database_url: str, tmp_path: Path, worker_config: WorkerConfig,
    fakes: Fakes, abbs: Abbs,
) -> None:
    release = tmp_path / "release-build"
    fakes.control(build="wait", release_file=str(release))
    sha = git(abbs.work, "rev-parse", "HEAD")
    data_dir = tmp_path / "server-data"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as servers:
            first: RunningServer = await servers.start(
                run_server, make_config(database_url, data_dir)
            )
            url = first.url
            port = int(url.rsplit(":", 1)[1])
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                user = await first.services.db.run(queries.upsert_user, "alice", "developer")
                token = new_token()
                await first.services.db.run(queries.insert_token, user.id, hash_token(token))
                async with worker(e2e_config(worker_config, url)) as handle:
                    _, job_id = await new_pipeline(client, token, sha, "bash")
                    await wait_for(lambda: any(r["argv"][0] == "build"
                                               for r in fakes.records("ciel")))
                    first.stop.set()
                    await wait_for(lambda: handle.statistics().heartbeats_failed > 0)
                    release.touch()  # the build ends while the server is away
                    second: RunningServer = await servers.start(
                        run_server, make_config(database_url, data_dir, listen_port=port)
                    )
                    info = await wait_job(client, job_id, finished)
                    await wait_for(lambda: handle.statistics().results_delivered == 1)
                    stats = handle.statistics()
                    log = await job_log(client, job_id)
            second.stop.set()
    assert info["status"] == "success", info
    assert stats.results_delivered == 1 and stats.results_dropped == 0
    assert log.count("running `ciel build") == 1
    assert "result: build succeeded" in log


async def test_a_worker_killed_mid_build_and_another_one_builds_the_job(
    start_server: Any, worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs, tmp_path: Path,
) -> None:
    server = await start_server(heartbeat_timeout=1.5)
    pid_file = tmp_path / "ciel.pids"
    fakes.control(build="hang", pid_file=str(pid_file))
    sha = git(abbs.work, "rev-parse", "HEAD")
    token = await server.add_user("alice")
    with trio.fail_after(LIMIT):
        with trio.CancelScope() as killed:
            async with worker(e2e_config(worker_config, server.url, "doomed")):
                _, job_id = await new_pipeline(server.client, token, sha, "bash")
                await wait_for(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"))
                pids = [int(p) for p in pid_file.read_text().split()]
                killed.cancel()  # the worker vanishes: no result, no release, no heartbeat
        fakes.control()  # the next build succeeds
        info = await wait_job(server.client, job_id, lambda i: i["status"] == "created")
        assert info["lost_attempts"] == 1
        async with worker(e2e_config(worker_config, server.url, "rescuer")):
            info = await wait_job(server.client, job_id, finished)
    assert info["status"] == "success"
    assert [a["worker_hostname"] for a in info["attempts"]] == ["doomed", "rescuer"]
    for pid in pids:
        assert process_gone(pid)


async def test_a_cancelled_pipeline_stops_the_build(
    server: Any, worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs, tmp_path: Path,
) -> None:
    pid_file = tmp_path / "ciel.pids"
    fakes.control(build="hang", pid_file=str(pid_file))
    sha = git(abbs.work, "rev-parse", "HEAD")
    token = await server.add_user("alice")
    with trio.fail_after(LIMIT):
        async with worker(e2e_config(worker_config, server.url)) as handle:
            pipeline_id, job_id = await new_pipeline(server.client, token, sha, "bash")
            await wait_for(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"))
            pids = [int(p) for p in pid_file.read_text().split()]
            r = await server.client.post("/api/pipeline/cancel",
                                         json={"pipeline_id": pipeline_id},
                                         headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            for pid in pids:
                await wait_for(partial(process_gone, pid))
            await wait_for(lambda: handle.statistics().jobs_stopped == 1)
            polls = handle.statistics().polls
            await wait_for(lambda: handle.statistics().polls > polls)  # polling again
            info = await job_info(server.client, job_id)
    assert info["status"] == "error"
    assert handle.statistics().results_delivered == 0


async def test_a_huge_log_end_to_end(
    server: Any, worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs
) -> None:
    fakes.control(build="spam", spam_bytes=5_000_000)
    sha = git(abbs.work, "rev-parse", "HEAD")
    token = await server.add_user("alice")
    config = e2e_config(worker_config, server.url).replace(log_max_bytes=512 * 1024)
    with trio.fail_after(LIMIT):
        async with worker(config):
            _, job_id = await new_pipeline(server.client, token, sha, "bash")
            info = await wait_job(server.client, job_id, finished)
            log = await job_log(server.client, job_id)
    assert info["status"] == "success"
    assert len(log.encode()) <= 512 * 1024
    assert "---- log truncated" in log
    assert "bytes of build output were dropped" in log.splitlines()[-1]


async def test_shutdown_hands_the_job_back_to_another_worker(
    server: Any, worker_config: WorkerConfig, fakes: Fakes, abbs: Abbs, tmp_path: Path,
) -> None:
    pid_file = tmp_path / "ciel.pids"
    fakes.control(build="hang", pid_file=str(pid_file))
    sha = git(abbs.work, "rev-parse", "HEAD")
    token = await server.add_user("alice")
    config = e2e_config(worker_config, server.url, "leaving").replace(shutdown_grace=0.2)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            handle: WorkerHandle = await nursery.start(run_worker, config)
            _, job_id = await new_pipeline(server.client, token, sha, "bash")
            await wait_for(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"))
            handle.request_shutdown()
            await handle.wait_stopped()
        assert handle.statistics().jobs_handed_back == 1
        info = await job_info(server.client, job_id)
        assert info["status"] == "created" and info["lost_attempts"] == 0
        fakes.control()
        async with worker(e2e_config(worker_config, server.url, "staying")):
            info = await wait_job(server.client, job_id, finished)
    assert info["status"] == "success"
    assert [a["worker_hostname"] for a in info["attempts"]] == ["leaving", "staying"]
