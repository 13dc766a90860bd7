"""``buildit soak``, briefly: the machinery runs and samples (no thresholds asserted);
its judgement, on made-up samples."""

from __future__ import annotations

import json

import pytest
import trio

from buildit.soak import (
    Counters,
    Report,
    Sample,
    SoakOptions,
    judge,
    render,
    run_soak,
    slope_per_hour,
)


@pytest.mark.slow
async def test_soak_runs_and_samples(database_url: str) -> None:
    options = SoakOptions(minutes=10 / 60, workers=20, heartbeat=2.0, wait=1.0,
                          jobs_per_minute=240, sample=2.0, warmup=2.0)
    with trio.fail_after(180):
        report = await run_soak(options, extra_env={"BUILDIT_DATABASE_URL": database_url},
                                seed=1)
    assert len(report.samples) >= 4, report.samples
    for sample in report.samples:
        assert sample.rss_mib > 10 and sample.fds > 5
        assert sample.pool_max is not None and sample.pool_size is not None
    assert report.counters.pipelines > 0 and report.counters.claims > 0
    assert report.counters.heartbeats > 0
    assert set(report.trends) == {"rss_mib", "fds", "pool_size"}
    assert "RSS (MiB)" in render(report)
    assert json.loads(json.dumps(report.as_json()))["samples"]


def _samples(rss: list[float], fds: list[int], step: float = 10.0) -> list[Sample]:
    return [Sample(t=i * step, rss_mib=r, fds=f, pool_size=3, pool_idle=2, pool_max=20,
                   jobs_done=i, requests=10 * i, failures=0)
            for i, (r, f) in enumerate(zip(rss, fds, strict=True))]


def test_slope_per_hour() -> None:
    assert slope_per_hour([]) == 0.0
    assert slope_per_hour([(0.0, 5.0)]) == 0.0
    assert slope_per_hour([(0.0, 0.0), (60.0, 1.0), (120.0, 2.0)]) == pytest.approx(60.0)
    assert slope_per_hour([(0.0, 7.0), (3600.0, 7.0)]) == 0.0


def test_judge_ignores_the_warm_up_and_catches_growth() -> None:
    options = SoakOptions(minutes=1, warmup=20.0, max_rss_growth=10.0, max_fd_growth=5)
    # grows during the warm-up only: fine
    flat = _samples([50, 80, 90, 90.5, 91, 90.8, 91], [10, 60, 70, 70, 71, 70, 70])
    trends, failures = judge(flat, Counters(), options)
    assert failures == [], failures
    assert trends["rss_mib"].first == 50 and trends["rss_mib"].max == 91
    assert trends["rss_mib"].growth == pytest.approx(1.0)
    # keeps growing after it: RSS and open files fail
    leaking = _samples([50, 80, 90, 95, 100, 105, 110], [10, 60, 70, 75, 80, 85, 90])
    _, failures = judge(leaking, Counters(), options)
    assert any("RSS grew by 20.0 MiB" in f for f in failures), failures
    assert any("open files grew by 20" in f for f in failures), failures
    # errors fail the soak too
    _, failures = judge(flat, Counters(server_errors=2, last_error="x: 500"), options)
    assert any("2 requests answered 5xx" in f for f in failures)
    _, failures = judge(flat[:1], Counters(), options)
    assert failures == ["fewer than two samples were taken"]
    report = Report(options, leaking, Counters(), *judge(leaking, Counters(), options))
    assert render(report).splitlines()[-1].startswith("FAIL: RSS grew")
