"""Requests byte for byte as today's worker (Rust, serde_json) sends them."""

from __future__ import annotations

from typing import Any

import trio

from tests.conftest import SHA

SECRET = "test-worker-secret"
HEADERS = {"content-type": "application/json", "accept": "*/*"}

# serde_json::to_vec of common::WorkerHeartbeatRequest (field order of the struct)
HEARTBEAT = (
    b'{"hostname":"buildit-amd64-1","arch":"amd64","git_commit":"3f2a1c9",'
    b'"memory_bytes":68719476736,"logical_cores":32,"disk_free_space_bytes":512000000000,'
    b'"worker_secret":"test-worker-secret","performance":null,"internet_connectivity":true}'
)
POLL = (
    b'{"hostname":"buildit-amd64-1","arch":"amd64","worker_secret":"test-worker-secret",'
    b'"memory_bytes":68719476736,"logical_cores":32,"disk_free_space_bytes":512000000000}'
)


def job_update(job_id: int) -> bytes:
    return (
        b'{"hostname":"buildit-amd64-1","arch":"amd64","job_id":%d,"result":{"Ok":'
        b'{"build_success":true,"successful_packages":["bash","zlib"],"failed_package":null,'
        b'"skipped_packages":[],"log_url":"https://buildit.aosc.io/logs/bash.txt",'
        b'"elapsed_secs":1234,"pushpkg_success":true}},"worker_secret":"test-worker-secret"}'
    ) % job_id


def job_error(job_id: int) -> bytes:
    return (
        b'{"hostname":"buildit-amd64-1","arch":"amd64","job_id":%d,'
        b'"result":{"Error":"Failed to run ciel: No such file or directory (os error 2)"},'
        b'"worker_secret":"test-worker-secret"}'
    ) % job_id


async def test_todays_worker_is_understood_byte_for_byte(server: Any) -> None:
    with trio.fail_after(30):
        c = server.client
        token = await server.add_user("alice")
        # A script creating a pipeline the way today's tools do: comma-separated strings.
        r = await c.post(
            "/api/pipeline/new",
            content=b'{"git_branch":"stable","git_sha":"' + SHA.encode()
            + b'","packages":"bash,zlib","archs":"amd64"}',
            headers={**HEADERS, "authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        pipeline_id = r.json()["id"]

        r = await c.post("/api/worker/heartbeat", content=HEARTBEAT, headers=HEADERS)
        assert (r.status_code, r.content) == (200, b"")

        r = await c.post("/api/worker/poll", content=POLL, headers=HEADERS)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        job = r.json()
        # What today's worker reads (common::WorkerPollResponse) is all there, typed as it
        # expects; the rest are additive extensions it ignores.
        assert isinstance(job["job_id"], int) and 0 < job["job_id"] < 2**31
        assert job["git_branch"] == "stable" and job["git_sha"] == SHA
        assert job["packages"] == "bash,zlib" and job["options"] is None

        r = await c.post("/api/worker/job_update", content=job_update(job["job_id"]),
                         headers=HEADERS)
        assert r.status_code == 200, r.text
        # A lost reply makes today's worker send the same result again: acknowledged.
        r = await c.post("/api/worker/job_update", content=job_update(job["job_id"]),
                         headers=HEADERS)
        assert r.status_code == 200, r.text
        info = (await c.get("/api/job/info", params={"job_id": job["job_id"]})).json()
        assert info["status"] == "success" and info["elapsed_secs"] == 1234
        assert info["log_url"] == "https://buildit.aosc.io/logs/bash.txt"
        assert [a["outcome"] for a in info["attempts"]] == ["success"]
        pipeline = (await c.get("/api/pipeline/info",
                                params={"pipeline_id": pipeline_id})).json()
        assert pipeline["status"] == "success"

        # A poll with nothing to do is JSON null, at once.
        r = await c.post("/api/worker/poll", content=POLL, headers=HEADERS)
        assert r.status_code == 200 and r.content == b"null"


async def test_error_result_and_poll_while_holding(server: Any) -> None:
    with trio.fail_after(30):
        c = server.client
        token = await server.add_user("alice")
        for _ in range(2):
            r = await c.post("/api/pipeline/new", json={
                "git_branch": "stable", "git_sha": SHA, "packages": "bash", "archs": "amd64"},
                headers={"authorization": f"Bearer {token}"})
            assert r.status_code == 200
        await c.post("/api/worker/heartbeat", content=HEARTBEAT, headers=HEADERS)
        first = (await c.post("/api/worker/poll", content=POLL, headers=HEADERS)).json()
        # The worker restarted and polls again while holding the first job: it lost it.
        await server.running.services.fleet.flush()
        second = (await c.post("/api/worker/poll", content=POLL, headers=HEADERS)).json()
        # The lost job went back to the queue first and comes back as a new attempt.
        assert second["job_id"] == first["job_id"] and second["attempt"] == 2
        assert second["attempt_token"] != first["attempt_token"]
        info = (await c.get("/api/job/info", params={"job_id": first["job_id"]})).json()
        assert info["lost_attempts"] == 1
        assert [a["outcome"] for a in info["attempts"]] == ["lost", None]
        # Another worker's result for a job it does not hold is refused, nothing changes.
        other = job_update(first["job_id"]).replace(b"buildit-amd64-1", b"buildit-amd64-2")
        r = await c.post("/api/worker/job_update", content=other, headers=HEADERS)
        assert r.status_code == 409
        assert (await c.get("/api/job/info",
                            params={"job_id": first["job_id"]})).json()["status"] == "running"
        r = await c.post("/api/worker/job_update", content=job_error(second["job_id"]),
                         headers=HEADERS)
        assert r.status_code == 200
        info = (await c.get("/api/job/info", params={"job_id": second["job_id"]})).json()
        assert info["status"] == "error"
        assert info["error_message"] == "Failed to run ciel: No such file or directory (os error 2)"
