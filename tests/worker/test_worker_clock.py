"""Timing of the worker loop on the virtual clock: backoff and heartbeat cadence.

A job with an invalid branch ends in an ``Error`` result without running any program,
so the whole worker runs here without real I/O but the (instant) stats thread.
"""

from __future__ import annotations

import itertools
from functools import partial

import trio

from buildit.worker import WorkerConfig, WorkerHandle, run_worker

from .fakeserver import FakeServer


def _production_timing(config: WorkerConfig) -> WorkerConfig:
    return config.replace(heartbeat_interval=30.0, poll_wait=25.0, retry_initial_delay=1.0,
                          retry_max_delay=60.0, log_flush_interval=1.0, idle_poll_delay=5.0)


async def test_the_result_backs_off_exponentially_until_acknowledged(
    autojump_clock: trio.abc.Clock, worker_config: WorkerConfig
) -> None:
    server = FakeServer()
    server.fail["job_update"] = ["connect", "500", "connect", "503", "connect", "connect",
                                 "connect", "connect"]
    config = _production_timing(worker_config)
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            handle: WorkerHandle = await nursery.start(
                partial(run_worker, config, transport=server.transport())
            )
            job = server.add_job("bash", git_branch="-bad")
            await server.wait_until(lambda: job.job_id in server.results)
            await server.wait_until(lambda: len(server.times["poll"]) == 2)
            handle.request_shutdown(immediate=True)
    assert server.results[job.job_id] == [{"Error": "invalid git branch name '-bad'"}]
    times = server.times["job_update"]
    assert len(times) == 9 and len(server.updates) == 1
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for attempt, gap in enumerate(gaps):
        full = min(60.0, 2.0**attempt)
        assert full / 2 <= gap <= full + 0.01, (attempt, gaps)
    # the worker went back to polling afterwards, at once
    assert times[-1] <= server.times["poll"][-1] < times[-1] + 0.01


async def test_heartbeats_keep_their_interval_and_name_no_job_when_idle(
    autojump_clock: trio.abc.Clock, worker_config: WorkerConfig
) -> None:
    server = FakeServer()
    config = _production_timing(worker_config)
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            handle: WorkerHandle = await nursery.start(
                partial(run_worker, config, transport=server.transport())
            )
            start = trio.current_time()
            await trio.sleep(301)
            handle.request_shutdown(immediate=True)
    times = [t - start for t in server.times["heartbeat"]]
    assert len(times) == 11  # the one at start-up, then one every 30 s
    for n, t in enumerate(times[1:], start=1):
        assert 30 * n <= t < 30 * n + 1
    assert all("job_id" not in h for h in server.heartbeats)
    # long polls: each held 25 s by the server, no busy loop
    assert 11 <= len(server.polls) <= 14


async def test_the_server_down_at_poll_time_is_retried_with_backoff(
    autojump_clock: trio.abc.Clock, worker_config: WorkerConfig
) -> None:
    server = FakeServer()
    server.fail["poll"] = ["connect"] * 8
    config = _production_timing(worker_config)
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            handle: WorkerHandle = await nursery.start(
                partial(run_worker, config, transport=server.transport())
            )
            # ">= 1": after a long poll answered null the worker may poll again before
            # this task looks (trio picks the order of tasks woken together).
            await server.wait_until(lambda: len(server.polls) >= 1)
            handle.request_shutdown(immediate=True)
    times = server.times["poll"][:9]  # eight refused, then the first one answered
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 8
    for attempt, gap in enumerate(gaps):
        full = min(60.0, 2.0**attempt)
        assert full / 2 <= gap <= full + 0.01, (attempt, gaps)
