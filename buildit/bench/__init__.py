"""``buildit bench``: measure a real server over real HTTP with simulated workers.

    bench process (trio)                      server process (python -m buildit serve)
    ├ load generator: raw HTTP/1.1  ───────►  hypercorn + quart-trio + actors
    │  keep-alive connections                  │
    └ SQL connection (seed, stats) ───────►  PostgreSQL (embedded or BUILDIT_DATABASE_URL)

Every figure is measured beside a ceiling taken in the same run on the same server
(``GET /api/ping``: no database; ``GET /api/health``: one trivial query), so ratios
hold on any machine. See docs/PERFORMANCE.md.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from buildit.bench import report, scenarios
from buildit.bench.scenarios import FULL, QUICK, SIZES, TINY, Size
from buildit.bench.target import BenchError, running_target

__all__ = ["FULL", "QUICK", "SIZES", "TINY", "BenchError", "Size", "run_bench"]
log = logging.getLogger(__name__)


async def run_bench(size: Size, *, wipe: bool = False, keep_dir: bool = False,
                    progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Run every measurement; returns the flat dict of figures (``report.REQUIRED_KEYS``
    and more). Must run inside ``trio_asyncio.open_loop()``."""
    started = time.perf_counter()
    f: dict[str, Any] = {"mode": size.name, "cpus": os.cpu_count()}
    async with running_target(wipe_first=wipe, keep_dir=keep_dir) as target:
        f["server_pid"] = target.pid
        progress(f"server pid {target.pid} (for a profiler), its log {target.log_path}")
        f["database"] = target.database
        f["fresh_rss_mb"] = target.rss_mb()
        progress(f"registering {size.heartbeat_workers} workers")
        await scenarios.register_workers(target, size)
        progress("requests/s of ping, health, heartbeats and idle polls, interleaved")
        measured = await scenarios.rates(target, size)
        f["ping_rps"] = measured["ping"].per_second
        f["health_rps"] = measured["health"].per_second
        f["heartbeat_workers"] = size.heartbeat_workers
        f["heartbeat_rps"] = measured["heartbeat"].per_second
        f["idle_poll_rps"] = measured["idle_poll"].per_second
        # Server CPU per request: steadier than requests/s when the machine is shared.
        for kind, rate in measured.items():
            f[f"{kind}_cpu_us"] = rate.cpu_us_per_request
        progress("database calls per heartbeat and per idle poll")
        requests = scenarios.rate_requests(target, size)
        seconds = max(2.0, size.round_seconds * 2)
        f["heartbeat_db_calls_per_request"] = await scenarios.db_calls_per_request(
            target, requests["heartbeat"], "heartbeat", size, seconds)
        f["idle_poll_db_calls_per_request"] = await scenarios.db_calls_per_request(
            target, requests["idle_poll"], "poll", size, seconds)
        progress(f"assignment latency, {size.assign_workers} workers waiting")
        assign = await scenarios.assignment(target, size)
        latencies = assign.latencies
        f["assign_workers"] = size.assign_workers
        f["assign_samples"] = len(latencies)
        f["assign_p50_ms"] = scenarios.percentile(latencies, 0.50) * 1000
        f["assign_p99_ms"] = scenarios.percentile(latencies, 0.99) * 1000
        f["assign_max_ms"] = max(latencies) * 1000
        # How much of it is the create request itself (auth + insert, before any claim).
        f["assign_create_p50_ms"] = scenarios.percentile(assign.creates, 0.50) * 1000
        progress(f"{size.e2e_jobs} jobs end to end, {size.e2e_workers} workers")
        e2e = await scenarios.end_to_end(target, size)
        f["e2e_workers"] = size.e2e_workers
        f["e2e_jobs"] = e2e.jobs
        f["e2e_jobs_per_s"] = e2e.per_second
        f["e2e_cpu_us_per_job"] = e2e.cpu_seconds / e2e.jobs * 1e6
        f["e2e_db_calls_per_job"] = e2e.db_calls / e2e.jobs
        progress(f"{size.longpoll_workers} long polls held")
        lp = await scenarios.long_polls(target, size)
        f["longpoll_target"] = size.longpoll_workers
        f["longpoll_workers"] = lp.held
        f["longpoll_rss_mb"] = lp.rss_mb
        f["idle_rss_mb"] = lp.idle_rss_mb
        progress(f"history: empty, then {size.history_pipelines * 5:,} jobs seeded")
        hist = await scenarios.history_latency(target, size)
        f["history_jobs"] = hist.jobs
        f["history_pipelines"] = hist.pipelines
        f["history_seed_s"] = hist.seed_seconds
        f["history_empty_claim_ms"] = hist.empty.claim_ms
        f["history_claim_ms"] = hist.full.claim_ms
        f["history_empty_pipeline_list_ms"] = hist.empty.pipeline_list_ms
        f["history_pipeline_list_ms"] = hist.full.pipeline_list_ms
        f["history_empty_job_list_ms"] = hist.empty.job_list_ms
        f["history_job_list_ms"] = hist.full.job_list_ms
        f["history_claim_ratio"] = hist.full.claim_ms / hist.empty.claim_ms
        f["history_pipeline_list_ratio"] = (hist.full.pipeline_list_ms
                                            / hist.empty.pipeline_list_ms)
        f["history_job_list_ratio"] = hist.full.job_list_ms / hist.empty.job_list_ms
        f["history_list_ratio"] = max(f["history_pipeline_list_ratio"],
                                      f["history_job_list_ratio"])
        f["server_rss_end_mb"] = target.rss_mb()
    f["seconds"] = time.perf_counter() - started
    f["targets"] = report.targets(f)
    return f
