"""`GET /metrics`: Prometheus text a real scraper parses, following real work."""

from __future__ import annotations

from typing import Any, cast

import trio
from prometheus_client.parser import text_string_to_metric_families

from buildit import clock
from buildit.db import queries
from buildit.metrics import Metrics, result_label
from tests.conftest import SHA, heartbeat_body, ok_result, worker_body

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(server: Any) -> Samples:
    r = await server.client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def queue(samples: Samples) -> tuple[float, float]:
    return total(samples, "buildit_jobs_pending"), total(samples, "buildit_jobs_running")


async def _poll(server: Any, hostname: str, arch: str) -> Any:
    r = await server.client.post("/api/worker/poll", json=worker_body(hostname, arch))
    assert r.status_code == 200, r.text
    return r.json()


async def _report(server: Any, hostname: str, arch: str, job: Any, result: Any) -> None:
    r = await server.client.post(
        "/api/worker/job_update",
        json={"hostname": hostname, "arch": arch, "job_id": job["job_id"],
              "worker_secret": "test-worker-secret", "result": result,
              "attempt_token": job["attempt_token"]})
    assert r.status_code == 200, r.text


async def test_queue_gauges_follow_a_pipeline(server: Any) -> None:
    with trio.fail_after(30):
        token = await server.add_user("alice")
        samples = await scrape(server)
        assert value(samples, "buildit_database_up") == 1
        assert queue(samples) == (0, 0)
        assert value(samples, "buildit_jobs_pending", arch="noarch") == 0
        assert value(samples, "buildit_workers_live", arch="amd64") == 0
        assert value(samples, "buildit_notifications_backlog") == 0

        r = await server.client.post(
            "/api/pipeline/new", headers={"Authorization": f"Bearer {token}"},
            json={"git_branch": "stable", "git_sha": SHA, "packages": "bash",
                  "archs": "amd64,arm64"})
        assert r.status_code == 200, r.text
        samples = await scrape(server)
        assert queue(samples) == (2, 0)
        assert value(samples, "buildit_jobs_pending", arch="amd64") == 1
        assert value(samples, "buildit_jobs_pending", arch="arm64") == 1

        r = await server.client.post("/api/worker/heartbeat", json=heartbeat_body("a1", "amd64"))
        assert r.status_code == 200
        job_a = await _poll(server, "a1", "amd64")
        samples = await scrape(server)
        assert queue(samples) == (1, 1)
        assert value(samples, "buildit_jobs_running", arch="amd64") == 1
        assert value(samples, "buildit_jobs_pending", arch="arm64") == 1
        assert value(samples, "buildit_workers_live", arch="amd64") == 1
        age = value(samples, "buildit_worker_heartbeat_age_seconds", arch="amd64")
        assert age is not None and 0 <= age < 30
        assert value(samples, "buildit_worker_heartbeat_age_max_seconds") == age
        assert value(samples, "buildit_scheduler_claims_total", arch="amd64") == 1
        # the claim was timed from the job's creation
        assert value(samples, "buildit_job_assignment_latency_seconds_count", arch="amd64") == 1
        latency = value(samples, "buildit_job_assignment_latency_seconds_sum", arch="amd64")
        assert latency is not None and 0 <= latency < 30

        job_r = await _poll(server, "r1", "arm64")
        await _report(server, "a1", "amd64", job_a, ok_result("bash"))
        await _report(server, "r1", "arm64", job_r,
                      ok_result("bash", build_success=False, failed="bash"))
        # a repeated delivery is acknowledged but counted once
        await _report(server, "r1", "arm64", job_r,
                      ok_result("bash", build_success=False, failed="bash"))
        samples = await scrape(server)
        assert queue(samples) == (0, 0)
        assert value(samples, "buildit_job_build_duration_seconds_count",
                     arch="amd64", result="success") == 1
        assert value(samples, "buildit_job_build_duration_seconds_sum",
                     arch="arm64", result="failed") == 12
        assert value(samples, "buildit_job_results_total", arch="arm64", result="failed") == 1
        assert total(samples, "buildit_job_assignment_latency_seconds_count") == 2


async def test_http_latency_is_labelled_by_route(server: Any) -> None:
    with trio.fail_after(30):
        for pipeline_id in (1, 2, 3):
            r = await server.client.get("/api/pipeline/info", params={"pipeline_id": pipeline_id})
            assert r.status_code == 404
        r = await server.client.get("/no/such/path/42")
        assert r.status_code == 404
        samples = await scrape(server)
    assert value(samples, "buildit_http_request_duration_seconds_count", method="GET",
                 route="/api/pipeline/info", status="404") == 3
    assert value(samples, "buildit_http_request_duration_seconds_count", method="GET",
                 route="unmatched", status="404") == 1
    routes = {dict(labels).get("route") for name, labels in samples
              if name == "buildit_http_request_duration_seconds_count"}
    assert not any("42" in str(route) or "?" in str(route) for route in routes)


async def test_backlog_actor_statistics_and_one_registry_per_app(start_server: Any) -> None:
    with trio.fail_after(30):
        first = await start_server()
        second = await start_server()  # a second app in this process: no clash of metrics
        await first.db.run(queries.enqueue, channel="github", kind="comment",
                           payload={"pr": 1}, now=clock.now())
        samples = await scrape(first)
        other = await scrape(second)
    assert value(samples, "buildit_notifications_backlog") == 1
    assert value(other, "buildit_notifications_backlog") == 1  # the same database
    assert value(samples, "buildit_actor_running", actor="scheduler-amd64") == 1
    assert value(samples, "buildit_actor_restarts_total", actor="listener") == 0
    assert value(samples, "buildit_info", version="0.1.0") == 1
    assert value(samples, "buildit_db_pool_connections") is not None
    assert total(samples, "buildit_watchdog_leader") + total(other, "buildit_watchdog_leader") <= 1
    # each registry counts its own requests only
    assert total(other, "buildit_http_request_duration_seconds_count") == 0


def test_result_labels() -> None:
    assert result_label(ok_result("bash")) == "success"
    assert result_label(ok_result("bash", pushpkg_success=False)) == "failed"
    assert result_label({"Error": "boom"}) == "error"
    assert result_label({"Ok": None}) is None and result_label("x") is None


def test_results_are_counted_once_in_a_bounded_memory() -> None:
    """Repeated deliveries count once; what is remembered of each result is a 16-byte
    digest, however big the result, and only the latest 4096 are remembered."""
    metrics = Metrics(cast(Any, None))  # no scrape here: services are not needed

    def counted() -> float:
        return metrics.registry.get_sample_value(
            "buildit_job_results_total", {"arch": "amd64", "result": "success"}) or 0.0

    def body(job_id: int, *packages: str, token: str = "tok") -> dict[str, Any]:
        return {"hostname": "w1", "arch": "amd64", "job_id": job_id,
                "attempt_token": token, "result": ok_result(*packages)}

    huge = [f"package-{i}" for i in range(5000)]
    metrics.note_result(body(1, *huge))
    metrics.note_result(body(1, *huge))
    assert counted() == 1
    # another result, attempt or job is another delivery
    metrics.note_result(body(1, *huge[:-1]))
    metrics.note_result(body(1, *huge, token="tok2"))
    metrics.note_result(body(2, *huge))
    assert counted() == 4
    remembered = metrics._recent_results
    assert all(isinstance(key, bytes) and len(key) == 16 for key in remembered)
    for job_id in range(100, 100 + 4096):
        metrics.note_result(body(job_id, "bash"))
    assert counted() == 4 + 4096
    assert len(remembered) == 4096
    metrics.note_result(body(100 + 4095, "bash"))  # still remembered
    assert counted() == 4 + 4096
    metrics.note_result(body(1, *huge))  # forgotten: counted again
    assert counted() == 4 + 4096 + 1
