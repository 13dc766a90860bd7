"""Prometheus metrics at ``GET /metrics`` (text exposition format).

Each app has a registry of its own (``Metrics.registry``), never prometheus-client's
global one, so several servers in one process (tests) do not collide.

What is measured, and how:

``buildit_jobs_pending{arch}``, ``buildit_jobs_running{arch}``
    Jobs waiting for a worker / being built, per job arch (``noarch`` included).
``buildit_workers_live{arch}``
    Workers whose last heartbeat is younger than ``BUILDIT_HEARTBEAT_TIMEOUT``.
``buildit_worker_heartbeat_age_seconds{arch}``, ``buildit_worker_heartbeat_age_max_seconds``
    Seconds since the heartbeat of the live worker heard from longest ago, per worker
    arch and overall. It grows towards the timeout before the watchdog requeues a job.
    Heartbeats are written in batches once a second, so it includes up to 1 s of that.
``buildit_notifications_backlog``
    Outbox rows (GitHub, Telegram) neither delivered nor given up.

    These are read at scrape time in one database crossing. They describe the shared
    database, so every server process reports the same values: aggregate them across
    processes with ``max``, not ``sum``. When the database does not answer,
    ``buildit_database_up`` is 0 and they are left out; the rest is still served.

``buildit_job_assignment_latency_seconds{arch}`` (histogram)
    From the moment a job became runnable to the moment it was claimed for a worker:
    ``job_attempts.started_at`` minus ``jobs.created_at`` for a first attempt, minus
    the end of the previous attempt when that attempt was lost or handed back (a
    requeue). Attempts after a manual restart are not observed: the database keeps no
    restart time. Observed by the process that handed the job out (it notes each job a
    poll response carries and looks the times up, all at once, at the next scrape), so
    summing across processes counts every claim once. Both times are written by
    servers' clocks; with several servers their clock skew is in it.
``buildit_job_build_duration_seconds{arch,result}`` (histogram)
    ``elapsed_secs`` the worker reports, observed when this process records the
    job_update (result ``success``, ``failed``; ``{"Error": ...}`` results carry no
    time and are counted in ``buildit_job_results_total{result="error"}``). A repeated
    delivery of the same result to the same process is not counted twice.
``buildit_http_request_duration_seconds{method,route,status}`` (histogram)
    Time to the response headers, labelled by the route rule (``/api/job/info``),
    never the raw path. Worker polls are held up to ``BUILDIT_LONG_POLL_MAX``
    seconds: their latency is mostly that wait.

Plus what the actors report about themselves (``statistics()``): polls held by each
scheduler, claims, heartbeats received, events fanned out and dropped, notifications
delivered/retried/failed, whether this process runs the watchdog, actor restarts,
and the database pool.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import trio
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from quart import Blueprint, Response, g, request

from buildit import __version__, clock, domain
from buildit.db import queries
from buildit.errors import DatabaseError

if TYPE_CHECKING:
    from buildit.actors.supervisor import Supervisor
    from buildit.actors.watchdog import Watchdog
    from buildit.services import Services

log = logging.getLogger(__name__)

HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0)
ASSIGNMENT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0,
                      3600.0, 4 * 3600.0, 12 * 3600.0, 24 * 3600.0)
BUILD_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 2 * 3600.0,
                 4 * 3600.0, 8 * 3600.0, 16 * 3600.0, 24 * 3600.0, 48 * 3600.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
POLL_ROUTE = "/api/worker/poll"
JOB_UPDATE_ROUTE = "/api/worker/job_update"
MAX_PENDING_CLAIMS = 10_000
_RECENT_RESULTS = 4096  # results remembered (as 16-byte digests) to count each once


def result_digest(body: dict[str, Any]) -> bytes:
    """What identifies a delivery of a result, in 16 bytes whatever the result's size: the
    job, the attempt (its token, else the worker) and the result itself."""
    who = body.get("attempt_token") or f"{body.get('hostname')}/{body.get('arch')}"
    digest = hashlib.blake2b(repr((body.get("job_id"), who)).encode(), digest_size=16)
    digest.update(orjson.dumps(body.get("result"), option=orjson.OPT_SORT_KEYS))
    return digest.digest()


# ------------------------------------------------------------------ the database side
# ASYNCIO-FLAVOURED: runs on the asyncio side through ``Database.read`` (one crossing).
# Read-only statistics for this module alone; the tables' other SQL is in db/queries.py.


@dataclass(frozen=True)
class ClaimTiming:
    job_id: int
    attempt: int
    arch: str
    latency: float | None  # None: not known (an attempt after a restart)


@dataclass(frozen=True)
class Snapshot:
    pending: dict[str, int]
    running: dict[str, int]
    live_workers: dict[str, int]
    oldest_heartbeat: dict[str, datetime]
    outbox_backlog: int
    claims: list[ClaimTiming] = field(default_factory=list)


async def read_snapshot(
    conn: Any, live_after: datetime, claims: Sequence[tuple[int, int]]
) -> Snapshot:
    jobs = await conn.fetch(
        """SELECT arch, count(*) FILTER (WHERE status = 'created') AS pending,
                  count(*) FILTER (WHERE status = 'running') AS running
           FROM jobs WHERE status IN ('created', 'running') GROUP BY arch"""
    )
    workers = await conn.fetch(
        """SELECT arch, count(*) AS live, min(last_heartbeat_at) AS oldest
           FROM workers WHERE last_heartbeat_at > $1 GROUP BY arch""",
        live_after,
    )
    backlog = await queries.outbox_backlog(conn)
    timings: list[ClaimTiming] = []
    if claims:
        rows = await conn.fetch(
            """SELECT a.job_id, a.attempt, j.arch,
                      extract(epoch FROM a.started_at - CASE
                          WHEN a.attempt = 1 THEN j.created_at
                          WHEN prev.outcome IN ('lost', 'handed_back') THEN prev.ended_at
                      END)::float8 AS latency
               FROM unnest($1::int8[], $2::int4[]) AS c(job_id, attempt)
               JOIN job_attempts a ON a.job_id = c.job_id AND a.attempt = c.attempt
               JOIN jobs j ON j.id = a.job_id
               LEFT JOIN job_attempts prev
                      ON prev.job_id = a.job_id AND prev.attempt = a.attempt - 1""",
            [c[0] for c in claims],
            [c[1] for c in claims],
        )
        timings = [ClaimTiming(r["job_id"], r["attempt"], r["arch"], r["latency"]) for r in rows]
    return Snapshot(
        pending={r["arch"]: r["pending"] for r in jobs},
        running={r["arch"]: r["running"] for r in jobs},
        live_workers={r["arch"]: r["live"] for r in workers},
        oldest_heartbeat={r["arch"]: r["oldest"] for r in workers},
        outbox_backlog=backlog,
        claims=timings,
    )


# ------------------------------------------------------------------ pure helpers


def result_label(result: Any) -> str | None:
    """``success`` / ``failed`` / ``error`` of a job_update ``result`` (None: malformed)."""
    if not isinstance(result, dict):
        return None
    if result.get("Error") is not None:
        return "error"
    ok = result.get("Ok")
    if not isinstance(ok, dict):
        return None
    return "success" if ok.get("build_success") and ok.get("pushpkg_success") else "failed"


def route_label() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def method_label(method: str) -> str:
    return method if method in _METHODS else "other"


# ------------------------------------------------------------------ the collector


class _StateCollector:
    """Gauges and counters read at scrape time (database snapshot + actor statistics)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self.snapshot: Snapshot | None = None
        self.taken_at: datetime | None = None

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        svc = m.services
        info = GaugeMetricFamily("buildit_info", "BuildIt version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        up = GaugeMetricFamily("buildit_database_up",
                               "1 when the last scrape could read the database")
        up.add_metric([], 1 if self.snapshot is not None else 0)
        yield up
        yield from self._database_metrics()

        waiting = GaugeMetricFamily("buildit_scheduler_waiting_polls",
                                    "Worker polls held by the scheduler (long polls)",
                                    labels=["arch"])
        claims = CounterMetricFamily("buildit_scheduler_claims",
                                     "Jobs claimed for workers by this process",
                                     labels=["arch"])
        idle = CounterMetricFamily("buildit_scheduler_idle_answers",
                                   "Polls answered without the database (queue known empty)",
                                   labels=["arch"])
        for arch, scheduler in sorted(svc.schedulers.items()):
            stats = scheduler.statistics()
            waiting.add_metric([arch], stats.waiting)
            claims.add_metric([arch], stats.claims)
            idle.add_metric([arch], stats.idle_answers)
        yield from (waiting, claims, idle)

        fleet = svc.fleet.statistics()
        yield _counter("buildit_fleet_heartbeats", "Worker heartbeats received", fleet.heartbeats)
        yield _counter("buildit_fleet_flushes", "Batched heartbeat writes", fleet.flushes)
        yield _gauge("buildit_fleet_holders", "Workers this process knows to hold a job",
                     fleet.holders)
        yield _counter("buildit_aggregator_events", "Job events fanned out to followers",
                       svc.aggregator.events)
        yield _counter("buildit_aggregator_dropped",
                       "Job events dropped (full inbox or slow follower)",
                       svc.aggregator.dropped)
        if svc.notifier is not None:
            notifier = svc.notifier.statistics()
            yield _counter("buildit_notifications_delivered", "Notifications delivered",
                           notifier.delivered)
            yield _counter("buildit_notifications_retried", "Notification deliveries retried",
                           notifier.retried)
            yield _counter("buildit_notifications_failed", "Notifications given up",
                           notifier.failed)
        if svc.github is not None:
            gh = svc.github.statistics()
            yield _counter("buildit_github_commands_received",
                           "GitHub webhook commands accepted (comments, re-runs)", gh.received)
            yield _counter("buildit_github_commands_handled", "GitHub commands handled",
                           gh.handled)
            yield _counter("buildit_github_commands_failed",
                           "GitHub commands that failed (answered with an apology)", gh.failed)
        if m.watchdog is not None:
            watchdog = m.watchdog.statistics()
            yield _gauge("buildit_watchdog_leader", "1 when this process runs the watchdog",
                         1 if watchdog.leader else 0)
            yield _counter("buildit_watchdog_requeued",
                           "Jobs requeued by this process's watchdog (silent workers)",
                           watchdog.requeued)
        if m.supervisor is not None:
            sup = m.supervisor.statistics()
            restarts = CounterMetricFamily("buildit_actor_restarts", "Restarts of each actor",
                                           labels=["actor"])
            running = GaugeMetricFamily("buildit_actor_running", "1 when the actor runs",
                                        labels=["actor"])
            for name, count in sorted(sup.restarts.items()):
                restarts.add_metric([name], count)
                running.add_metric([name], 1 if name in sup.running else 0)
            yield from (restarts, running)
        pool = svc.db.statistics()
        yield _gauge("buildit_db_pool_connections", "Connections in the database pool", pool.size)
        yield _gauge("buildit_db_pool_idle", "Idle connections in the database pool", pool.idle)
        yield _gauge("buildit_db_pool_max", "Largest size of the database pool", pool.max_size)
        yield _counter("buildit_db_calls", "Units of work sent to the database (each one "
                       "transaction or one statement)", svc.db.calls)
        yield _counter("buildit_metrics_claims_dropped",
                       "Claims not timed because too many waited for a scrape",
                       m.claims_dropped)

    def _database_metrics(self) -> Iterable[Metric]:
        snap = self.snapshot
        if snap is None or self.taken_at is None:
            return
        archs = list(self._metrics.services.config.archs)
        job_archs = sorted({*archs, domain.NOARCH, *snap.pending, *snap.running})
        pending = GaugeMetricFamily("buildit_jobs_pending", "Jobs waiting for a worker",
                                    labels=["arch"])
        running = GaugeMetricFamily("buildit_jobs_running", "Jobs being built", labels=["arch"])
        for arch in job_archs:
            pending.add_metric([arch], snap.pending.get(arch, 0))
            running.add_metric([arch], snap.running.get(arch, 0))
        yield from (pending, running)
        live = GaugeMetricFamily("buildit_workers_live",
                                 "Workers heard from within the heartbeat timeout",
                                 labels=["arch"])
        for arch in sorted({*archs, *snap.live_workers}):
            live.add_metric([arch], snap.live_workers.get(arch, 0))
        yield live
        age = GaugeMetricFamily("buildit_worker_heartbeat_age_seconds",
                                "Seconds since the heartbeat of the live worker of this arch "
                                "heard from longest ago", labels=["arch"])
        ages = {arch: max(0.0, (self.taken_at - oldest).total_seconds())
                for arch, oldest in snap.oldest_heartbeat.items()}
        for arch, seconds in sorted(ages.items()):
            age.add_metric([arch], seconds)
        yield age
        if ages:
            yield _gauge("buildit_worker_heartbeat_age_max_seconds",
                         "Seconds since the heartbeat of the live worker heard from longest ago",
                         max(ages.values()))
        yield _gauge("buildit_notifications_backlog",
                     "Notifications waiting to be delivered (outbox)", snap.outbox_backlog)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    metric = GaugeMetricFamily(name, doc)
    metric.add_metric([], value)
    return metric


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    metric = CounterMetricFamily(name, doc)
    metric.add_metric([], value)
    return metric


# ------------------------------------------------------------------ per app


class Metrics:
    """The metrics of one app: its registry, its hooks and ``GET /metrics``."""

    def __init__(
        self,
        services: Services,
        *,
        supervisor: Supervisor | None = None,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.services = services
        self.supervisor = supervisor
        self.watchdog = watchdog
        self.registry = CollectorRegistry(auto_describe=False)
        self.http_latency = Histogram(
            "buildit_http_request_duration_seconds",
            "HTTP requests: time to the response headers, by route rule",
            ["method", "route", "status"], buckets=HTTP_BUCKETS, registry=self.registry,
        )
        self.assignment_latency = Histogram(
            "buildit_job_assignment_latency_seconds",
            "From a job becoming runnable (created or requeued) to its claim for a worker",
            ["arch"], buckets=ASSIGNMENT_BUCKETS, registry=self.registry,
        )
        self.build_duration = Histogram(
            "buildit_job_build_duration_seconds",
            "Build time workers report (elapsed_secs) for results recorded by this process",
            ["arch", "result"], buckets=BUILD_BUCKETS, registry=self.registry,
        )
        self.results = Counter(
            "buildit_job_results", "Job results recorded by this process",
            ["arch", "result"], registry=self.registry,
        )
        self._collector = _StateCollector(self)
        self.registry.register(self._collector)  # type: ignore[arg-type]
        self._claims: list[tuple[int, int]] = []
        self.claims_dropped = 0
        # digests of the latest results counted, oldest first (see ``result_digest``)
        self._recent_results: OrderedDict[bytes, None] = OrderedDict()
        self._scrape_lock = trio.Lock()
        self.blueprint = self._make_blueprint()

    # -- observations (called by the request hooks; public for tests)

    def note_claim(self, job_id: int, attempt: int) -> None:
        """A poll response handed out this attempt: time it at the next scrape."""
        if len(self._claims) >= MAX_PENDING_CLAIMS:
            self.claims_dropped += 1  # drop policy: the newest is not timed, and counted
            return
        self._claims.append((job_id, attempt))

    def note_result(self, body: Any) -> None:
        """A job_update this process answered 200: count it (once) and its build time."""
        if not isinstance(body, dict):
            return
        result = body.get("result")
        label = result_label(result)
        if label is None:
            return
        key = result_digest(body)
        if key in self._recent_results:
            return  # the same result delivered again
        self._recent_results[key] = None
        while len(self._recent_results) > _RECENT_RESULTS:
            self._recent_results.popitem(last=False)
        arch = str(body.get("arch") or "unknown")
        self.results.labels(arch, label).inc()
        ok = result.get("Ok") if isinstance(result, dict) else None
        elapsed = ok.get("elapsed_secs") if isinstance(ok, dict) else None
        if isinstance(elapsed, int | float) and not isinstance(elapsed, bool) and elapsed >= 0:
            self.build_duration.labels(arch, label).observe(float(elapsed))

    # -- scraping

    async def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition (text format, or OpenMetrics when ``accept`` asks for it) and its
        content type, after reading the database; one scrape at a time."""
        async with self._scrape_lock:
            svc = self.services
            claims, self._claims = self._claims, []
            try:
                snapshot: Snapshot | None = await svc.db.read(
                    read_snapshot, clock.ago(svc.config.heartbeat_timeout), claims
                )
            except DatabaseError as exc:
                log.warning("metrics: the database did not answer: %s", exc)
                snapshot = None
                room = MAX_PENDING_CLAIMS - len(self._claims)
                self.claims_dropped += max(0, len(claims) - room)
                self._claims = claims[:room] + self._claims
            if snapshot is not None:
                for timing in snapshot.claims:
                    if timing.latency is not None:
                        self.assignment_latency.labels(timing.arch).observe(
                            max(0.0, timing.latency))
            self._collector.snapshot = snapshot
            self._collector.taken_at = clock.now()
            encoder, content_type = choose_encoder(accept or "")
            return encoder(self.registry), content_type

    # -- the blueprint

    def _make_blueprint(self) -> Blueprint:
        bp = Blueprint("metrics", __name__)

        @bp.get("/metrics")
        async def metrics() -> Response:
            body, content_type = await self.render(request.headers.get("Accept"))
            return Response(body, content_type=content_type)

        @bp.before_app_request
        async def start_timer() -> None:
            g.buildit_started = trio.current_time()

        @bp.after_app_request
        async def observe(response: Response) -> Response:
            await self._observe(response)
            return response

        return bp

    async def _observe(self, response: Response) -> None:
        started = g.get("buildit_started")
        route = route_label()
        status = response.status_code
        if started is not None:
            self.http_latency.labels(method_label(request.method), route, str(status)).observe(
                trio.current_time() - started
            )
        if status != 200 or request.method != "POST":
            return
        if route == POLL_ROUTE:
            body = await response.get_data()
            if isinstance(body, bytes) and body.startswith(b"{"):
                job = orjson.loads(body)
                if isinstance(job.get("job_id"), int) and isinstance(job.get("attempt"), int):
                    self.note_claim(job["job_id"], job["attempt"])
        elif route == JOB_UPDATE_ROUTE:
            self.note_result(await request.get_json(silent=True))
