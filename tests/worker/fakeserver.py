"""A fake BuildIt server for the worker's unit tests, behind ``httpx.MockTransport``.

It speaks the wire protocol of docs/PROTOCOL.md (heartbeat, long poll, job_update, log
append with offsets, release) and records every request, so tests assert on what a
server would have seen. Failures are injected per endpoint: ``fail["job_update"] =
["503", "connect"]`` makes the next two result deliveries fail that way.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

SECRET = "worker-secret"
SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeJob:
    job_id: int
    git_branch: str
    git_sha: str
    packages: str
    options: str | None = None
    attempt: int = 1
    attempt_token: str = ""
    state: str = "created"
    """created, running, done, cancelled, lost"""
    log: bytearray = field(default_factory=bytearray)

    def wire(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "git_branch": self.git_branch,
            "git_sha": self.git_sha,
            "packages": self.packages,
            "options": self.options,
            "attempt": self.attempt,
            "attempt_token": self.attempt_token,
            "arch": "amd64",
            "log_url": f"http://fake.test/api/job/log?job_id={self.job_id}",
        }


class FakeServer:
    def __init__(self, *, secret: str = SECRET) -> None:
        self.secret = secret
        self.jobs: dict[int, FakeJob] = {}
        self.queue: list[int] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.polls: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        """Every job_update request that reached the handler."""
        self.results: dict[int, list[dict[str, Any]]] = {}
        """Results recorded (acknowledged the first time), per job."""
        self.log_requests: list[tuple[int, int, int]] = []
        self.releases: list[dict[str, Any]] = []
        self.fail: dict[str, list[str]] = {}
        self.times: dict[str, list[float]] = {}
        """When each request arrived (trio clock), per endpoint name."""
        self.release_supported = True
        self.log_supported = True
        self.log_max_bytes: int | None = None
        self.forget_log_once_at: int | None = None
        """When a job's stored log first exceeds this size, drop it (a server that lost
        data): the next append gets 409 with size 0."""
        self._ids = itertools.count(1)
        self._changed = trio.Event()
        self._job_added = trio.Event()

    # -- test side --------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def add_job(self, packages: str = "bash", *, git_sha: str = SHA,
                git_branch: str = "stable", options: str | None = None) -> FakeJob:
        job_id = next(self._ids)
        job = FakeJob(job_id, git_branch, git_sha, packages, options,
                      attempt_token=f"token-{job_id}")
        self.jobs[job_id] = job
        self.queue.append(job_id)
        self._job_added.set()
        self._job_added = trio.Event()
        self._notify()
        return job

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait (without polling) until ``predicate`` holds after some request."""
        while not predicate():
            await self._changed.wait()

    def job_heartbeats(self, job_id: int) -> list[dict[str, Any]]:
        return [h for h in self.heartbeats if h.get("job_id") == job_id]

    # -- server side ------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._dispatch(request)
        finally:
            self._notify()

    def _injected(self, endpoint: str, request: httpx.Request) -> httpx.Response | None:
        queue = self.fail.get(endpoint)
        if not queue:
            return None
        failure = queue.pop(0)
        if failure == "connect":
            raise httpx.ConnectError("Connection refused", request=request)
        if failure == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        status = int(failure)
        headers = {"Retry-After": "1"} if status == 503 else {}
        return httpx.Response(status, json={"error": f"injected {status}"}, headers=headers)

    async def _dispatch(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        endpoint = path.rsplit("/", 1)[-1]
        self.times.setdefault(endpoint, []).append(trio.current_time())
        injected = self._injected(endpoint, request)
        if injected is not None:
            return injected
        if path == "/api/worker/log":
            return self._log(request)
        body = json.loads(request.content)
        if body.get("worker_secret") != self.secret:
            return httpx.Response(401, json={"error": "wrong or missing worker secret"})
        if path == "/api/worker/heartbeat":
            return self._heartbeat(body)
        if path == "/api/worker/poll":
            return await self._poll(body)
        if path == "/api/worker/job_update":
            return self._job_update(body)
        if path == "/api/worker/release":
            return self._release(body)
        return httpx.Response(404, json={"error": "no such endpoint"})

    def _heartbeat(self, body: dict[str, Any]) -> httpx.Response:
        self.heartbeats.append(body)
        job_id = body.get("job_id")
        if job_id is None:
            return httpx.Response(200)
        job = self.jobs.get(job_id)
        state = "running" if job is not None and job.state == "running" else "lost"
        if job is not None and job.state == "cancelled":
            state = "cancelled"
        return httpx.Response(200, json={"job_state": state})

    async def _poll(self, body: dict[str, Any]) -> httpx.Response:
        self.polls.append(body)
        if not self.queue:
            with trio.move_on_after(float(body.get("wait_secs") or 0)):
                await self._job_added.wait()
        if not self.queue:
            return httpx.Response(200, content=b"null",
                                  headers={"Content-Type": "application/json"})
        job = self.jobs[self.queue.pop(0)]
        job.state = "running"
        return httpx.Response(200, json=job.wire())

    def _job_update(self, body: dict[str, Any]) -> httpx.Response:
        self.updates.append(body)
        job = self.jobs.get(body["job_id"])
        if job is None:
            return httpx.Response(404, json={"error": "no such job"})
        if job.state == "done" and body["job_id"] in self.results:
            return httpx.Response(200, json={})  # the same result again: acknowledged
        if job.state != "running" or body.get("attempt_token") != job.attempt_token:
            return httpx.Response(409, json={"error": "not your job"})
        job.state = "done"
        self.results.setdefault(job.job_id, []).append(body["result"])
        return httpx.Response(200, json={})

    def _release(self, body: dict[str, Any]) -> httpx.Response:
        if not self.release_supported:
            return httpx.Response(404, json={"error": "no such endpoint"})
        self.releases.append(body)
        job = self.jobs.get(body["job_id"])
        if job is None or job.state != "running":
            return httpx.Response(409, json={"error": "not your job"})
        job.state = "created"
        job.attempt += 1
        return httpx.Response(200, json={})

    def _log(self, request: httpx.Request) -> httpx.Response:
        if not self.log_supported:
            return httpx.Response(404, json={"error": "no such endpoint"})
        if request.headers.get("X-Worker-Secret") != self.secret:
            return httpx.Response(401, json={"error": "wrong or missing worker secret"})
        job_id = int(request.url.params["job_id"])
        offset = int(request.url.params["offset"])
        chunk = request.content
        self.log_requests.append((job_id, offset, len(chunk)))
        job = self.jobs[job_id]
        if job.state != "running" or request.url.params.get("attempt_token") != job.attempt_token:
            state = "cancelled" if job.state == "cancelled" else "lost"
            return httpx.Response(409, json={"error": "not your job", "job_state": state})
        if self.forget_log_once_at is not None and len(job.log) > self.forget_log_once_at:
            self.forget_log_once_at = None
            job.log.clear()
        if offset != len(job.log):
            return httpx.Response(409, json={"error": "offset mismatch", "size": len(job.log)})
        if self.log_max_bytes is not None and offset + len(chunk) > self.log_max_bytes:
            return httpx.Response(413, json={"error": "log too large"})
        job.log += chunk
        return httpx.Response(200, json={"size": len(job.log)})
