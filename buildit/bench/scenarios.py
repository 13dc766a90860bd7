"""The measurements of ``buildit bench``, each against the running server."""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass

import trio

from buildit.bench import history
from buildit.bench.load import (
    Rate,
    Workers,
    create_request,
    expect,
    heartbeat_request,
    measure_rate,
    poll_request,
    report_request,
)
from buildit.bench.target import LONG_POLL_MAX, BenchError, Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Size:
    name: str
    connections: int  # for the requests/s figures
    rounds: int  # requests/s figures are measured in interleaved rounds
    round_seconds: float
    # Longer than the fleet's flush interval: work a round defers (the batched
    # heartbeat write) is done before the next round starts counting.
    round_warmup: float
    heartbeat_workers: int
    assign_workers: int
    assign_samples: int
    e2e_workers: int
    e2e_jobs: int
    e2e_creators: int
    longpoll_workers: int
    history_pipelines: int  # five jobs each
    history_samples: int


FULL = Size("full", connections=64, rounds=5, round_seconds=2.0, round_warmup=1.2,
            heartbeat_workers=2000, assign_workers=100, assign_samples=500, e2e_workers=200,
            e2e_jobs=5000, e2e_creators=4, longpoll_workers=2000, history_pipelines=200_000,
            history_samples=300)
QUICK = Size("quick", connections=64, rounds=3, round_seconds=1.0, round_warmup=1.2,
             heartbeat_workers=2000, assign_workers=100, assign_samples=100, e2e_workers=200,
             e2e_jobs=400, e2e_creators=4, longpoll_workers=2000, history_pipelines=20_000,
             history_samples=50)
TINY = Size("tiny", connections=4, rounds=1, round_seconds=0.3, round_warmup=0.1,
            heartbeat_workers=20, assign_workers=5, assign_samples=5, e2e_workers=5,
            e2e_jobs=20, e2e_creators=2, longpoll_workers=20, history_pipelines=200,
            history_samples=5)
SIZES = {s.name: s for s in (FULL, QUICK, TINY)}


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered) - 1e-9)))
    return ordered[rank - 1]


def _hostnames(size: Size) -> list[str]:
    return [f"bench-w{i:05d}" for i in range(size.heartbeat_workers)]


def rate_requests(target: Target, size: Size) -> dict[str, list[bytes]]:
    """What each requests/s figure sends: ping and health are the ceilings."""
    return {
        "ping": [target.request("GET", "/api/ping")],
        "health": [target.request("GET", "/api/health")],
        "heartbeat": [heartbeat_request(target, h) for h in _hostnames(size)],
        # Polls answered `null` at once: nothing is runnable for these workers.
        "idle_poll": [poll_request(target, h) for h in _hostnames(size)],
    }


async def register_workers(target: Target, size: Size) -> None:
    """One heartbeat from every simulated worker, then a flush of the fleet: from here
    on the server knows them, as it knows a fleet that has been running a while."""
    requests = rate_requests(target, size)["heartbeat"]
    conns = min(size.connections, len(requests))

    async def send(share: list[bytes]) -> None:
        conn = await target.connect()
        try:
            for raw in share:
                expect(await conn.request(raw), "heartbeat")
        finally:
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        for i in range(conns):
            nursery.start_soon(send, requests[i::conns])
    await trio.sleep(1.5)


async def rates(target: Target, size: Size) -> dict[str, Rate]:
    """Requests/s of each kind, measured in interleaved rounds (the order rotating), so
    a figure and its ceiling see the same background load."""
    requests = rate_requests(target, size)
    kinds = list(requests)
    totals = {k: [0.0, 0.0, 0.0] for k in kinds}  # requests, seconds, server CPU seconds
    for r in range(size.rounds):
        for kind in kinds[r % len(kinds):] + kinds[: r % len(kinds)]:
            rate = await measure_rate(target, requests[kind], what=kind,
                                      connections=size.connections,
                                      warmup=size.round_warmup, duration=size.round_seconds)
            totals[kind][0] += rate.requests
            totals[kind][1] += rate.seconds
            totals[kind][2] += rate.cpu_seconds
    return {k: Rate(n / s, int(n), s, u) for k, (n, s, u) in totals.items()}


async def db_calls_per_request(target: Target, requests: list[bytes], what: str,
                               size: Size, seconds: float) -> float:
    """Database calls (transactions or single statements) per request over a run of
    ``seconds``, as the server counts them: about 0 when it answers from memory, at least
    1 with a query per request. The server's own periodic work (fleet flushes, the
    watchdog) and the /metrics reads around the run are in the count too."""
    before = await target.db_calls()
    rate = await measure_rate(target, requests, what=what, connections=size.connections,
                              warmup=0.0, duration=seconds)
    after = await target.db_calls()
    return max(0, after - before) / max(rate.requests, 1)


@dataclass(frozen=True)
class Assignment:
    latencies: list[float]  # create request sent -> a waiting worker's poll reply, s
    creates: list[float]  # create request sent -> its own reply, s


async def assignment(target: Target, size: Size) -> Assignment:
    """Seconds from just before a create request to a waiting worker's poll reply."""
    workers = Workers(target, "assign-w", size.assign_workers)
    latencies: list[float] = []
    creates: list[float] = []
    warm = max(2, size.assign_samples // 20)
    async with trio.open_nursery() as nursery:
        await nursery.start(workers.run)
        conn = await target.connect()
        create = create_request(target)
        try:
            for i in range(warm + size.assign_samples):
                with trio.fail_after(30):
                    await workers.wait_all_waiting()
                # Let the newest re-poll reach the scheduler: every worker waits there.
                await trio.sleep(0.005)
                start = time.perf_counter()
                job_id = expect(await conn.request(create), "create").json()["jobs"]["amd64"]
                created = time.perf_counter()
                with trio.fail_after(30):
                    await workers.event(job_id).wait()
                if i >= warm:
                    latencies.append(workers.arrivals[job_id] - start)
                    creates.append(created - start)
        finally:
            await conn.aclose()
        nursery.cancel_scope.cancel()
    return Assignment(latencies, creates)


@dataclass(frozen=True)
class EndToEnd:
    jobs: int
    seconds: float
    cpu_seconds: float  # the server process's, meanwhile
    db_calls: int  # the server's database calls, meanwhile

    @property
    def per_second(self) -> float:
        return self.jobs / self.seconds


async def end_to_end(target: Target, size: Size) -> EndToEnd:
    """Create single-job pipelines while `e2e_workers` workers take, build (instantly)
    and report them: jobs whose pipeline is done per second."""
    workers = Workers(target, "e2e-w", size.e2e_workers)
    pipeline_ids: list[int] = []
    per_creator = [size.e2e_jobs // size.e2e_creators] * size.e2e_creators
    per_creator[0] += size.e2e_jobs - sum(per_creator)

    async def creator(count: int) -> None:
        conn = await target.connect()
        try:
            create = create_request(target, branch="bench-e2e")
            for _ in range(count):
                pipeline_ids.append(expect(await conn.request(create), "create").json()["id"])
        finally:
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(workers.run)
        with trio.fail_after(60):
            await workers.wait_all_waiting()
        done_before = workers.completed
        calls_start = await target.db_calls()
        start, cpu_start = time.perf_counter(), target.cpu_seconds()
        with trio.fail_after(max(120, size.e2e_jobs / 5)):
            async with trio.open_nursery() as creators:
                for count in per_creator:
                    creators.start_soon(creator, count)
            while workers.completed - done_before < size.e2e_jobs:
                await workers.wait_completed()
        elapsed, cpu = time.perf_counter() - start, target.cpu_seconds() - cpu_start
        calls = await target.db_calls() - calls_start
        nursery.cancel_scope.cancel()
    done = int(await target.sql.fetchval(
        "SELECT count(*) FROM pipelines WHERE id = ANY($1::int8[]) AND status = 'success'",
        pipeline_ids,
    ))
    if done != size.e2e_jobs:
        raise BenchError(f"end to end: {done} of {size.e2e_jobs} pipelines ended as success")
    return EndToEnd(size.e2e_jobs, elapsed, cpu, calls)


@dataclass(frozen=True)
class LongPolls:
    held: int
    rss_mb: float
    idle_rss_mb: float


async def long_polls(target: Target, size: Size) -> LongPolls:
    """Hold `longpoll_workers` polls at once; the server's resident memory meanwhile."""
    idle_rss = target.rss_mb()
    answered = 0

    async def holder(hostname: str, task_status: trio.TaskStatus[None]) -> None:
        nonlocal answered
        conn = await target.connect()
        try:
            await conn.send(poll_request(target, hostname, wait=LONG_POLL_MAX - 10))
            task_status.started()
            expect(await conn.receive(), "long poll")
            answered += 1
            await trio.sleep_forever()
        finally:
            await conn.aclose()

    rss = 0.0
    async with trio.open_nursery() as nursery:
        for i in range(size.longpoll_workers):
            await nursery.start(holder, f"lp-w{i:05d}")
        with trio.fail_after(60):
            # The server has accepted them all (it holds few descriptors of its own).
            while target.open_fds() < size.longpoll_workers:
                await trio.sleep(0.1)
        # Every poll is read and parked in the scheduler once the server is idle again.
        await trio.sleep(2.0)
        for _ in range(8):
            rss = max(rss, target.rss_mb())
            await trio.sleep(0.25)
        held = size.longpoll_workers - answered
        nursery.cancel_scope.cancel()
    await trio.sleep(1.0)  # the server notices the closed connections
    return LongPolls(held=held, rss_mb=rss, idle_rss_mb=idle_rss)


@dataclass(frozen=True)
class HistorySample:
    claim_ms: float
    pipeline_list_ms: float
    job_list_ms: float


async def _history_sample(target: Target, samples: int) -> HistorySample:
    conn = await target.connect()
    try:
        create = create_request(target, branch="bench-history")
        warm = max(2, samples // 10)
        for _ in range(warm + samples):
            expect(await conn.request(create), "create")
        poll = poll_request(target, "history-w")
        plist = target.request("GET", "/api/pipeline/list?page=1&items_per_page=20")
        jlist = target.request("GET", "/api/job/list?page=1&items_per_page=20")
        claims: list[float] = []
        plists: list[float] = []
        jlists: list[float] = []
        for i in range(warm + samples):
            t0 = time.perf_counter()
            job = expect(await conn.request(poll), "poll").json()
            t1 = time.perf_counter()
            if job is None:
                raise BenchError("history: a poll got no job though jobs were runnable")
            expect(await conn.request(report_request(target, "history-w", job)), "job_update")
            t2 = time.perf_counter()
            expect(await conn.request(plist), "pipeline list")
            t3 = time.perf_counter()
            expect(await conn.request(jlist), "job list")
            t4 = time.perf_counter()
            if i >= warm:
                claims.append(t1 - t0)
                plists.append(t3 - t2)
                jlists.append(t4 - t3)
        return HistorySample(claim_ms=statistics.median(claims) * 1000,
                             pipeline_list_ms=statistics.median(plists) * 1000,
                             job_list_ms=statistics.median(jlists) * 1000)
    finally:
        await conn.aclose()


@dataclass(frozen=True)
class History:
    empty: HistorySample
    full: HistorySample
    jobs: int
    pipelines: int
    seed_seconds: float


async def history_latency(target: Target, size: Size) -> History:
    """Claim and first-page latencies on an empty history, then on a seeded one."""
    await history.forget(target.sql)
    await history.settle(target.sql)
    empty = await _history_sample(target, size.history_samples)
    start = time.perf_counter()
    jobs = await history.seed(target.sql, size.history_pipelines)
    await history.settle(target.sql)
    seed_seconds = time.perf_counter() - start
    full = await _history_sample(target, size.history_samples)
    return History(empty=empty, full=full, jobs=jobs, pipelines=size.history_pipelines,
                   seed_seconds=seed_seconds)
