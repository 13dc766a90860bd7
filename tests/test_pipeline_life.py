"""The whole life of a pipeline over real HTTP against a real PostgreSQL."""

from __future__ import annotations

from typing import Any

import trio

from tests.conftest import SHA, heartbeat_body, ok_result, worker_body


async def _new_pipeline(server: Any, token: str, **body: Any) -> int:
    payload = {"git_branch": "stable", "git_sha": SHA, "packages": "bash,zlib",
               "archs": "amd64,arm64", **body}
    r = await server.client.post("/api/pipeline/new", json=payload,
                                 headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return int(r.json()["id"])


async def _poll(server: Any, hostname: str, arch: str, **extra: Any) -> Any:
    r = await server.client.post("/api/worker/poll", json=worker_body(hostname, arch, **extra))
    assert r.status_code == 200, r.text
    return r.json()


async def _report(server: Any, hostname: str, arch: str, job_id: int, result: Any) -> Any:
    r = await server.client.post(
        "/api/worker/job_update",
        json={"hostname": hostname, "arch": arch, "job_id": job_id,
              "worker_secret": "test-worker-secret", "result": result},
    )
    return r


async def _pipeline(server: Any, pipeline_id: int) -> Any:
    r = await server.client.get("/api/pipeline/info", params={"pipeline_id": pipeline_id})
    assert r.status_code == 200, r.text
    return r.json()


async def test_pipeline_success_failed_error(server: Any) -> None:
    with trio.fail_after(30):
        token = await server.add_user("alice")
        for host, arch in (("a1", "amd64"), ("r1", "arm64")):
            r = await server.client.post("/api/worker/heartbeat", json=heartbeat_body(host, arch))
            assert r.status_code == 200 and r.content == b""

        # success on both archs -> success
        pid = await _new_pipeline(server, token)
        info = await _pipeline(server, pid)
        assert info["status"] == "running"
        assert [j["arch"] for j in info["jobs"]] == ["amd64", "arm64"]
        assert all(j["status"] == "created" for j in info["jobs"])
        job_a = await _poll(server, "a1", "amd64")
        job_r = await _poll(server, "r1", "arm64")
        assert job_a["git_sha"] == SHA and job_a["git_branch"] == "stable"
        assert job_a["packages"] == "bash,zlib" and job_a["options"] is None
        assert await _poll(server, "a2", "amd64") is None  # nothing left
        r = await _report(server, "a1", "amd64", job_a["job_id"], ok_result("bash", "zlib"))
        assert r.status_code == 200, r.text
        assert (await _pipeline(server, pid))["status"] == "running"
        r = await _report(server, "r1", "arm64", job_r["job_id"], ok_result("bash", "zlib"))
        assert r.status_code == 200
        info = await _pipeline(server, pid)
        assert info["status"] == "success"
        assert {j["status"] for j in info["jobs"]} == {"success"}
        job = (await server.client.get("/api/job/info",
                                       params={"job_id": job_a["job_id"]})).json()
        assert job["successful_packages"] == "bash,zlib"
        assert job["build_success"] is True and job["pushpkg_success"] is True
        assert job["log_url"] == f"http://buildit.test/api/job/log?job_id={job_a['job_id']}"

        # one arch fails the build -> failed
        pid = await _new_pipeline(server, token)
        job_a = await _poll(server, "a1", "amd64")
        job_r = await _poll(server, "r1", "arm64")
        await _report(server, "a1", "amd64", job_a["job_id"], ok_result("bash"))
        r = await _report(server, "r1", "arm64", job_r["job_id"],
                          ok_result("bash", build_success=False, failed="zlib"))
        assert r.status_code == 200
        assert (await _pipeline(server, pid))["status"] == "failed"

        # a push failure is a failed job too
        pid = await _new_pipeline(server, token, archs="amd64")
        job_a = await _poll(server, "a1", "amd64")
        await _report(server, "a1", "amd64", job_a["job_id"],
                      ok_result("bash", "zlib", pushpkg_success=False))
        assert (await _pipeline(server, pid))["status"] == "failed"

        # an error on one arch and failure on the other -> error
        pid = await _new_pipeline(server, token)
        job_a = await _poll(server, "a1", "amd64")
        job_r = await _poll(server, "r1", "arm64")
        await _report(server, "r1", "arm64", job_r["job_id"],
                      ok_result("bash", build_success=False, failed="zlib"))
        r = await _report(server, "a1", "amd64", job_a["job_id"], {"Error": "ciel exploded"})
        assert r.status_code == 200
        info = await _pipeline(server, pid)
        assert info["status"] == "error"
        errored = next(j for j in info["jobs"] if j["arch"] == "amd64")
        assert errored["error_message"] == "ciel exploded"

        # restart the errored job: the pipeline follows (failed while arm64 is failed)
        r = await server.client.post("/api/job/restart", json={"job_id": job_a["job_id"]},
                                     headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert (await _pipeline(server, pid))["status"] == "failed"
        again = await _poll(server, "a2", "amd64")
        assert again["job_id"] == job_a["job_id"] and again["attempt"] == 2
        await _report(server, "a2", "amd64", again["job_id"], ok_result("bash", "zlib"))
        r = await server.client.post("/api/job/restart", json={"job_id": job_r["job_id"]},
                                     headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert (await _pipeline(server, pid))["status"] == "running"
        again = await _poll(server, "r1", "arm64")
        await _report(server, "r1", "arm64", again["job_id"], ok_result("bash", "zlib"))
        assert (await _pipeline(server, pid))["status"] == "success"

        # the packages table follows the stable branch
        pkgs = await server.db.read(_packages)
        assert pkgs[("bash", "amd64")] == "success" and pkgs[("zlib", "arm64")] == "success"


async def _packages(conn: Any) -> dict[tuple[str, str], str]:
    rows = await conn.fetch("SELECT name, arch, last_result FROM packages")
    return {(r["name"], r["arch"]): r["last_result"] for r in rows}


async def test_noarch_goes_to_amd64_and_requirements_are_met(server: Any) -> None:
    with trio.fail_after(30):
        token = await server.add_user("alice")
        await _new_pipeline(server, token, archs="noarch")
        assert await _poll(server, "r1", "arm64") is None
        job = await _poll(server, "a1", "amd64")
        assert job["arch"] == "noarch"


async def test_long_poll_is_answered_when_a_job_appears(server: Any) -> None:
    with trio.fail_after(30):
        token = await server.add_user("alice")
        got: list[Any] = []

        async def waiter() -> None:
            got.append(await _poll(server, "r9", "arm64", wait_secs=20))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            # wait until the poll is held by the scheduler
            scheduler = server.running.services.schedulers["arm64"]
            while scheduler.statistics().waiting == 0:
                await trio.sleep(0.01)
            start = trio.current_time()
            pid = await _new_pipeline(server, token, archs="arm64")
        assert got[0] is not None and got[0]["job_id"] > 0
        assert trio.current_time() - start < 5
        info = await _pipeline(server, pid)
        assert info["jobs"][0]["status"] == "running"


async def test_poll_without_wait_answers_at_once(server: Any) -> None:
    with trio.fail_after(10):
        start = trio.current_time()
        assert await _poll(server, "a1", "amd64") is None
        assert trio.current_time() - start < 2


async def test_cancel_pipeline_tells_the_worker(server: Any) -> None:
    with trio.fail_after(30):
        token = await server.add_user("alice")
        pid = await _new_pipeline(server, token)
        job = await _poll(server, "a1", "amd64")
        r = await server.client.post("/api/pipeline/cancel", json={"pipeline_id": pid},
                                     headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        info = await _pipeline(server, pid)
        assert info["status"] == "error"
        assert {j["error_message"] for j in info["jobs"]} == {"cancelled by alice"}
        r = await server.client.post(
            "/api/worker/heartbeat",
            json=heartbeat_body("a1", "amd64", job_id=job["job_id"],
                                attempt_token=job["attempt_token"]),
        )
        assert r.json() == {"job_state": "cancelled"}
        r = await _report(server, "a1", "amd64", job["job_id"], ok_result("bash"))
        assert r.status_code == 409
        assert "no longer assigned" in r.json()["error"]
