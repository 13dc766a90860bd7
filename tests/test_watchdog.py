"""The heartbeat watchdog alone, against a real PostgreSQL, on trio's virtual clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import trio
import trio.testing

from buildit import clock
from buildit.actors.watchdog import Watchdog
from buildit.db import github_queries, queries, telegram_queries
from tests.conftest import SHA, ticker


async def _heartbeat(db: Any, hostname: str) -> None:
    await db.run(queries.record_heartbeats, [queries.HeartbeatRow(
        hostname=hostname, arch="amd64", git_commit="x", worker_version=None,
        memory_bytes=2**34, logical_cores=8, disk_free_space_bytes=10**11, performance=None,
        internet_connectivity=True, seen_at=clock.now())])


async def _claim(db: Any, hostname: str) -> queries.ClaimedJob | None:
    ids = await db.run(queries.record_heartbeats, [queries.HeartbeatRow(
        hostname=hostname, arch="amd64", git_commit="x", worker_version=None,
        memory_bytes=2**34, logical_cores=8, disk_free_space_bytes=10**11, performance=None,
        internet_connectivity=True, seen_at=clock.now())])
    claim: queries.Claim = await db.run(
        queries.claim_next, worker_id=ids[(hostname, "amd64")], archs=["amd64"], cores=8,
        memory=2**34, disk=10**11, now=clock.now())
    return claim.job


async def _job(db: Any, job_id: int) -> dict[str, Any]:
    info: dict[str, Any] = await db.read(queries.job_info, job_id)
    return info


async def _pipeline(db: Any) -> int:
    created = await db.run(
        queries.create_pipeline, git_branch="stable", git_sha=SHA, packages="bash",
        archs="amd64", options=None, source="api", creator_user_id=None, github_pr=None,
        telegram_chat_id=None, jobs=[queries.NewJob("amd64", "bash")], warnings=[],
        now=clock.now())
    return int(created.jobs["amd64"])


async def test_silent_worker_loses_its_job_and_attempts_are_bounded(
    db: Any, virtual_clock: trio.testing.MockClock
) -> None:
    requeued: list[tuple[float, list[int]]] = []
    changed = trio.Event()

    def on_requeue(ids: list[int]) -> None:
        nonlocal changed
        requeued.append((trio.current_time(), ids))
        changed.set()

    with trio.fail_after(10_000):
        job_id = await _pipeline(db)
        assert await _claim(db, "w1") is not None
        watchdog = Watchdog(db, timeout=60, period=10, max_lost_attempts=2,
                            on_requeue=on_requeue)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await nursery.start(watchdog.run)
            await watchdog.wait_leader()

            # A worker that keeps sending heartbeats keeps its job, however long it builds.
            for _ in range(12):
                await _heartbeat(db, "w1")
                await trio.sleep(10)
            assert requeued == []
            assert (await _job(db, job_id))["status"] == "running"

            # Silence: the job goes back to the queue after the timeout (within a period).
            silent_since = trio.current_time()
            await changed.wait()
            changed = trio.Event()
            elapsed = requeued[0][0] - silent_since
            assert 60 - 10 <= elapsed <= 60 + 10 + 2, elapsed
            assert requeued[0][1] == [job_id]
            job = await _job(db, job_id)
            assert job["status"] == "created" and job["lost_attempts"] == 1
            assert [a["outcome"] for a in job["attempts"]] == ["lost"]

            # Another worker takes it and goes silent too: the limit ends it as error.
            claimed = await _claim(db, "w2")
            assert claimed is not None and claimed.attempt == 2
            await changed.wait()
            job = await _job(db, job_id)
            assert job["status"] == "error"
            assert job["error_message"] == "lost 2 times: its worker stopped sending heartbeats"
            assert [a["outcome"] for a in job["attempts"]] == ["lost", "lost"]
            info = await db.read(queries.pipeline_info, job["pipeline_id"])
            assert info["status"] == "error"
            assert len(requeued) == 2 and watchdog.requeued == 2
            nursery.cancel_scope.cancel()


async def test_watchdog_moves_to_the_survivor(
    db: Any, virtual_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(10_000):
        first = Watchdog(db, timeout=60, period=10, max_lost_attempts=3)
        second = Watchdog(db, timeout=60, period=10, max_lost_attempts=3)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            async with trio.open_nursery() as first_nursery:
                await first_nursery.start(first.run)
                await first.wait_leader()
                await nursery.start(second.run)
                await trio.sleep(100)
                assert first.leader and not second.leader  # exactly one runs
                assert second.ticks == 0
                first_nursery.cancel_scope.cancel()  # the first process dies
            died = trio.current_time()
            await second.wait_leader()
            assert trio.current_time() - died <= 10 + 2  # within one period
            nursery.cancel_scope.cancel()


async def _deliveries(conn: Any) -> set[tuple[str, str]]:
    rows = await conn.fetch("SELECT source, delivery_id FROM webhook_deliveries")
    return {(r["source"], r["delivery_id"]) for r in rows}


async def test_old_webhook_deliveries_are_pruned_hourly(
    db: Any, virtual_clock: trio.testing.MockClock
) -> None:
    hour, day = 3600, 24 * 3600

    async def minute_ticker() -> None:  # bounds the clock's jumps to a minute
        while True:
            await trio.sleep(60)

    with trio.fail_after(10 * day):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(minute_ticker)
            start = clock.now()
            ages = {  # seconds before the start
                ("github", "old"): 8 * day,
                ("github", "just-past"): 7 * day + 60,
                ("github", "recent"): hour,
                ("telegram", "1"): 30 * day,
                ("telegram", "2"): 7 * day - 30 * 60,  # a week old half an hour on
                ("telegram", "3"): 0,
            }
            for (source, key), age in ages.items():
                when = start - timedelta(seconds=age)
                if source == "github":
                    assert await db.run(github_queries.record_delivery, key, when)
                else:
                    assert await db.run(telegram_queries.record_update, int(key), when)
            # more than a batch of old ones
            for n in range(25):
                await db.run(github_queries.record_delivery, f"ancient-{n}",
                             start - timedelta(days=60))

            watchdog = Watchdog(db, timeout=60, period=60, max_lost_attempts=3,
                                prune_batch=10)
            started = trio.current_time()
            await nursery.start(watchdog.run)
            await watchdog.wait_leader()
            while watchdog.prunings == 0:
                await trio.sleep(1)
            # at once when it leads: what is older than a week goes, the rest stays
            assert trio.current_time() - started <= 2 * 60
            assert await db.read(_deliveries) == {
                ("github", "recent"), ("telegram", "2"), ("telegram", "3")}
            assert watchdog.deliveries_pruned == 28

            # then once an hour (not every period): two hours on, the Telegram update
            # of almost a week is past the week too
            await trio.sleep(2 * hour)
            assert await db.read(_deliveries) == {("github", "recent"), ("telegram", "3")}
            stats = watchdog.statistics()
            assert stats.deliveries_pruned == 29
            assert stats.prunings in (2, 3) and stats.ticks >= 100
            nursery.cancel_scope.cancel()
