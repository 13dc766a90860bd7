"""Load primitives: throughput over many keep-alive connections, simulated workers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from buildit.bench.http import Reply
from buildit.bench.target import BenchError, Target

SHA = "0123456789abcdef0123456789abcdef01234567"


def worker_body(target: Target, hostname: str, arch: str = "amd64", **extra: Any
                ) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hostname": hostname,
        "arch": arch,
        "worker_secret": target.worker_secret,
        "memory_bytes": 32 * 2**30,
        "logical_cores": 16,
        "disk_free_space_bytes": 500 * 10**9,
    }
    body.update(extra)
    return body


def heartbeat_request(target: Target, hostname: str, arch: str = "amd64") -> bytes:
    body = worker_body(target, hostname, arch, git_commit="0123abc", performance=None,
                       internet_connectivity=True)
    return target.request("POST", "/api/worker/heartbeat", json=body)


def poll_request(target: Target, hostname: str, *, wait: float | None = None,
                 arch: str = "amd64") -> bytes:
    extra = {} if wait is None else {"wait_secs": wait}
    return target.request("POST", "/api/worker/poll",
                          json=worker_body(target, hostname, arch, **extra))


def report_request(target: Target, hostname: str, job: dict[str, Any],
                   arch: str = "amd64") -> bytes:
    body = {
        "hostname": hostname,
        "arch": arch,
        "job_id": job["job_id"],
        "worker_secret": target.worker_secret,
        "attempt_token": job["attempt_token"],
        "result": {"Ok": {"build_success": True, "successful_packages": ["bench-pkg"],
                          "failed_package": None, "skipped_packages": [], "log_url": None,
                          "elapsed_secs": 1, "pushpkg_success": True}},
    }
    return target.request("POST", "/api/worker/job_update", json=body)


def create_request(target: Target, branch: str = "bench", archs: str = "amd64") -> bytes:
    return target.request(
        "POST", "/api/pipeline/new",
        json={"git_branch": branch, "git_sha": SHA, "packages": "bench-pkg", "archs": archs},
        headers={"Authorization": f"Bearer {target.token}"},
    )


def expect(reply: Reply, what: str, status: int = 200) -> Reply:
    if reply.status != status:
        raise BenchError(f"{what}: HTTP {reply.status}: {reply.body[:300]!r}")
    return reply


@dataclass
class Rate:
    per_second: float
    requests: int
    seconds: float
    cpu_seconds: float = 0.0  # the server process's CPU time meanwhile

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / max(self.requests, 1) * 1e6


async def measure_rate(target: Target, requests: Sequence[bytes], *, what: str,
                       connections: int, warmup: float, duration: float) -> Rate:
    """Requests/s over ``connections`` keep-alive connections, each cycling through
    its share of ``requests``; counted over ``duration`` after ``warmup``."""
    count = 0

    async def client(index: int, task_status: trio.TaskStatus[None]) -> None:
        nonlocal count
        mine = list(requests[index::connections]) or list(requests)
        conn = await target.connect()
        task_status.started()
        try:
            n = 0
            while True:
                expect(await conn.request(mine[n % len(mine)]), what)
                n += 1
                count += 1
        finally:
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        for i in range(connections):
            await nursery.start(client, i)
        await trio.sleep(warmup)
        c0, t0, u0 = count, time.perf_counter(), target.cpu_seconds()
        await trio.sleep(duration)
        c1, t1, u1 = count, time.perf_counter(), target.cpu_seconds()
        nursery.cancel_scope.cancel()
    return Rate((c1 - c0) / (t1 - t0), c1 - c0, t1 - t0, u1 - u0)


@dataclass
class Workers:
    """Simulated workers: each long-polls on its own connection, reports success at
    once and polls again. ``arrivals`` maps a job id to when its poll reply arrived."""

    target: Target
    prefix: str
    size: int
    wait: float = 60.0
    arrivals: dict[int, float] = field(default_factory=dict)
    events: dict[int, trio.Event] = field(default_factory=dict)
    completed: int = 0
    waiting: int = 0
    all_waiting: trio.Event = field(default_factory=trio.Event)
    progress: trio.Event = field(default_factory=trio.Event)

    def event(self, job_id: int) -> trio.Event:
        if job_id not in self.events:
            self.events[job_id] = trio.Event()
        return self.events[job_id]

    async def wait_all_waiting(self) -> None:
        while self.waiting < self.size:
            self.all_waiting = trio.Event()
            await self.all_waiting.wait()

    async def wait_completed(self) -> None:
        """Wait until one more job has been reported."""
        self.progress = trio.Event()
        await self.progress.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Until cancelled. Started when every worker has sent its first poll."""
        async with trio.open_nursery() as nursery:
            for i in range(self.size):
                await nursery.start(self._worker, f"{self.prefix}{i:05d}")
            task_status.started()

    async def _worker(self, hostname: str, task_status: trio.TaskStatus[None]) -> None:
        conn = await self.target.connect()
        try:
            # Register with a heartbeat first, as a real worker does.
            expect(await conn.request(heartbeat_request(self.target, hostname)), "heartbeat")
            poll = poll_request(self.target, hostname, wait=self.wait)
            started = False
            while True:
                await conn.send(poll)
                self.waiting += 1
                if self.waiting >= self.size:
                    self.all_waiting.set()
                if not started:
                    task_status.started()
                    started = True
                reply = await conn.receive()
                arrived = time.perf_counter()
                self.waiting -= 1
                job = expect(reply, "poll").json()
                if job is None:
                    continue
                self.arrivals[job["job_id"]] = arrived
                self.event(job["job_id"]).set()
                expect(await conn.request(report_request(self.target, hostname, job)),
                       "job_update")
                self.completed += 1
                self.progress.set()
        finally:
            await conn.aclose()
