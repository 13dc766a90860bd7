"""ASYNCIO-FLAVOURED: every SQL statement of BuildIt, grouped by table.

Each function takes an asyncpg connection first and runs on the asyncio side of the
bridge; trio code calls them through ``Database.run(fn, ...)`` / ``Database.read``,
which wraps them in one transaction. SQL is literal text; nothing is built from
runtime strings. Times are passed in (``now``) so the callers' clock decides them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from buildit import domain
from buildit.db import notifications
from buildit.errors import Conflict, NotFound, Unprocessable

Conn = Any  # asyncpg.Connection; typed loosely so trio modules need not import asyncpg

WAKE_CHANNEL = "buildit_wake"  # payload: the scheduler arch that may have work
EVENT_CHANNEL = "buildit_event"  # payload: JSON {"job": id, "pipeline": id, "status": s}

# ---------------------------------------------------------------- migrations


async def apply_migrations(conn: Conn, migrations: list[tuple[int, str, str]]) -> list[str]:
    await conn.execute("SELECT pg_advisory_xact_lock(7405846001)")
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version    integer PRIMARY KEY,
               name       text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    applied: list[str] = []
    for version, name, sql in migrations:
        if version in done:
            continue
        await conn.execute(sql)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
        )
        applied.append(name)
    return applied


async def ping(conn: Conn) -> int:
    value: int = await conn.fetchval("SELECT 1")
    return value


# ---------------------------------------------------------------- users, api_tokens


@dataclass(frozen=True)
class User:
    id: int
    github_login: str
    role: str
    telegram_chat_id: int | None = None
    github_avatar_url: str | None = None


def _user(row: Any) -> User:
    return User(
        id=row["id"],
        github_login=row["github_login"],
        role=row["role"],
        telegram_chat_id=row["telegram_chat_id"],
        github_avatar_url=row["github_avatar_url"],
    )


async def upsert_user(conn: Conn, github_login: str, role: str) -> User:
    row = await conn.fetchrow(
        """INSERT INTO users (github_login, role) VALUES ($1, $2)
           ON CONFLICT (github_login) DO UPDATE SET role = EXCLUDED.role
           RETURNING *""",
        github_login,
        role,
    )
    return _user(row)


async def user_by_login(conn: Conn, github_login: str) -> User | None:
    row = await conn.fetchrow(
        "SELECT * FROM users WHERE lower(github_login) = lower($1)", github_login
    )
    return _user(row) if row else None


async def insert_token(conn: Conn, user_id: int, token_hash: bytes) -> None:
    await conn.execute(
        "INSERT INTO api_tokens (user_id, token_hash) VALUES ($1, $2)", user_id, token_hash
    )


async def user_by_token_hash(conn: Conn, token_hash: bytes, now: datetime) -> User | None:
    """The token's user; its ``last_used_at`` is moved on at most once a minute (one
    statement: atomic without a transaction, and no write per request)."""
    row = await conn.fetchrow(
        """WITH t AS (SELECT id, user_id FROM api_tokens WHERE token_hash = $1),
                touched AS (
                    -- The age test is on the row updated (re-checked after a wait on
                    -- its lock), so requests racing at the minute's end write it once.
                    UPDATE api_tokens a SET last_used_at = $2 FROM t
                    WHERE a.id = t.id AND (a.last_used_at IS NULL
                          OR a.last_used_at < $2::timestamptz - interval '1 minute'))
           SELECT u.* FROM t JOIN users u ON u.id = t.user_id""",
        token_hash,
        now,
    )
    return _user(row) if row else None


# ---------------------------------------------------------------- workers


@dataclass(frozen=True)
class HeartbeatRow:
    hostname: str
    arch: str
    git_commit: str
    worker_version: str | None
    memory_bytes: int
    logical_cores: int
    disk_free_space_bytes: int
    performance: int | None
    internet_connectivity: bool | None
    seen_at: datetime


async def record_heartbeats(conn: Conn, rows: Sequence[HeartbeatRow]) -> dict[tuple[str, str], int]:
    """Upsert a batch of heartbeats in one statement; returns worker ids."""
    if not rows:
        return {}
    records = await conn.fetch(
        """INSERT INTO workers AS w (hostname, arch, git_commit, worker_version, memory_bytes,
                logical_cores, disk_free_space_bytes, performance, internet_connectivity,
                created_at, last_heartbeat_at)
           SELECT h, a, g, v, m, c, d, p, i, s, s
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int4[],
                       $7::int8[], $8::int8[], $9::bool[], $10::timestamptz[])
                AS t(h, a, g, v, m, c, d, p, i, s)
           ON CONFLICT (hostname, arch) DO UPDATE SET
                git_commit = EXCLUDED.git_commit,
                worker_version = coalesce(EXCLUDED.worker_version, w.worker_version),
                memory_bytes = EXCLUDED.memory_bytes,
                logical_cores = EXCLUDED.logical_cores,
                disk_free_space_bytes = EXCLUDED.disk_free_space_bytes,
                performance = EXCLUDED.performance,
                internet_connectivity = EXCLUDED.internet_connectivity,
                last_heartbeat_at = greatest(w.last_heartbeat_at, EXCLUDED.last_heartbeat_at)
           RETURNING id, hostname, arch""",
        [r.hostname for r in rows],
        [r.arch for r in rows],
        [r.git_commit for r in rows],
        [r.worker_version for r in rows],
        [r.memory_bytes for r in rows],
        [r.logical_cores for r in rows],
        [r.disk_free_space_bytes for r in rows],
        [r.performance for r in rows],
        [r.internet_connectivity for r in rows],
        [r.seen_at for r in rows],
    )
    return {(r["hostname"], r["arch"]): r["id"] for r in records}


async def ensure_worker(
    conn: Conn, hostname: str, arch: str, memory: int, cores: int, disk: int, now: datetime
) -> int:
    worker_id: int = await conn.fetchval(
        """INSERT INTO workers AS w (hostname, arch, memory_bytes, logical_cores,
                disk_free_space_bytes, created_at, last_heartbeat_at)
           VALUES ($1, $2, $3, $4, $5, $6, $6)
           ON CONFLICT (hostname, arch) DO UPDATE SET
                memory_bytes = EXCLUDED.memory_bytes,
                logical_cores = EXCLUDED.logical_cores,
                disk_free_space_bytes = EXCLUDED.disk_free_space_bytes,
                last_heartbeat_at = greatest(w.last_heartbeat_at, EXCLUDED.last_heartbeat_at)
           RETURNING id""",
        hostname,
        arch,
        memory,
        cores,
        disk,
        now,
    )
    return worker_id


async def worker_keys_holding_jobs(conn: Conn) -> set[tuple[str, str]]:
    rows = await conn.fetch(
        """SELECT w.hostname, w.arch FROM jobs j JOIN workers w ON w.id = j.assigned_worker_id
           WHERE j.status = 'running'"""
    )
    return {(r["hostname"], r["arch"]) for r in rows}


# ---------------------------------------------------------------- pipelines


@dataclass(frozen=True)
class NewJob:
    arch: str
    packages: str
    requirements: domain.Requirements = field(default_factory=domain.Requirements)


@dataclass(frozen=True)
class CreatedPipeline:
    id: int
    jobs: dict[str, int]  # arch -> job id


async def create_pipeline(
    conn: Conn,
    *,
    git_branch: str,
    git_sha: str,
    packages: str,
    archs: str,
    options: str | None,
    source: str,
    creator_user_id: int | None,
    github_pr: int | None,
    telegram_chat_id: int | None,
    jobs: Sequence[NewJob],
    warnings: Sequence[str],
    now: datetime,
) -> CreatedPipeline:
    """Insert a pipeline and its jobs, wake the schedulers of other servers and tell
    live followers, in one statement. Run it with ``Database.single`` unless it may queue
    notifications (a pipeline of a front end): then in a transaction (``Database.run``)."""
    if not jobs:
        raise ValueError("a pipeline needs at least one job")
    front_end = github_pr is not None or telegram_chat_id is not None
    if front_end and not conn.is_in_transaction():
        raise RuntimeError("a front end's pipeline must be created in a transaction")
    priority = 1 if git_branch == "stable" else 0
    rows = await conn.fetch(
        """WITH p AS (
               INSERT INTO pipelines (git_branch, git_sha, packages, archs, options, source,
                   creator_user_id, github_pr, telegram_chat_id, warnings, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id),
           j AS (
               INSERT INTO jobs (pipeline_id, arch, packages, priority, require_min_core,
                   require_min_total_mem, require_min_total_mem_per_core, require_min_disk,
                   created_at)
               SELECT p.id, a, pk, $12, c, m, mc, d, $11
               FROM p, unnest($13::text[], $14::text[], $15::int4[], $16::int8[],
                              $17::float8[], $18::int8[])
                       WITH ORDINALITY AS t(a, pk, c, m, mc, d, n)
               ORDER BY n
               RETURNING id, pipeline_id, arch),
           woken AS (SELECT count(pg_notify($19, w)) AS n FROM unnest($20::text[]) AS w)
           SELECT j.id, j.pipeline_id, j.arch,
                  pg_notify($21, '{"job":' || j.id || ',"pipeline":' || j.pipeline_id
                                 || ',"status":"created"}') AS notified,
                  (SELECT n FROM woken) AS woken
           FROM j ORDER BY j.id""",
        git_branch,
        git_sha,
        packages,
        archs,
        options,
        source,
        creator_user_id,
        github_pr,
        telegram_chat_id,
        list(warnings),
        now,
        priority,
        [j.arch for j in jobs],
        [j.packages for j in jobs],
        [j.requirements.min_cores for j in jobs],
        [j.requirements.min_total_mem for j in jobs],
        [j.requirements.min_total_mem_per_core for j in jobs],
        [j.requirements.min_disk for j in jobs],
        WAKE_CHANNEL,
        sorted({domain.scheduler_arch(j.arch) for j in jobs}),
        EVENT_CHANNEL,
    )
    pipeline_id = rows[0]["pipeline_id"]
    await notifications.job_changed(
        conn,
        [notifications.JobChange(r["id"], pipeline_id, "created", "created", front_end)
         for r in rows],
        now,
    )
    return CreatedPipeline(id=pipeline_id, jobs={r["arch"]: r["id"] for r in rows})


async def refresh_pipeline_status(conn: Conn, pipeline_id: int, now: datetime) -> str:
    # Lock the pipeline first: two jobs finishing at once must not both compute the
    # status from a view in which the other is still running.
    await conn.execute("SELECT 1 FROM pipelines WHERE id = $1 FOR NO KEY UPDATE", pipeline_id)
    statuses = [
        r["status"]
        for r in await conn.fetch("SELECT status FROM jobs WHERE pipeline_id = $1", pipeline_id)
    ]
    status = domain.pipeline_status(statuses)
    await conn.execute(
        """UPDATE pipelines SET status = $2,
               finished_at = CASE WHEN $2 = 'running' THEN NULL
                                  ELSE coalesce(finished_at, $3) END
           WHERE id = $1 AND status IS DISTINCT FROM $2""",
        pipeline_id,
        status,
        now,
    )
    return status


async def cancel_pipeline(conn: Conn, pipeline_id: int, by: str, now: datetime) -> list[int]:
    """End every unfinished job of a pipeline as error; returns the job ids ended."""
    # Jobs first, then the pipeline: the order every other path takes (a result locks
    # its job, then the pipeline), so a cancel and a result never wait on each other.
    await conn.execute(
        """SELECT 1 FROM jobs WHERE pipeline_id = $1 AND status IN ('created', 'running')
           ORDER BY id FOR NO KEY UPDATE""",
        pipeline_id,
    )
    exists = await conn.fetchval(
        "SELECT 1 FROM pipelines WHERE id = $1 FOR NO KEY UPDATE", pipeline_id
    )
    if not exists:
        raise NotFound(f"pipeline {pipeline_id} does not exist")
    message = f"cancelled by {by}"
    rows = await conn.fetch(
        """WITH ended AS (
               SELECT id, attempt, status AS old_status FROM jobs
               WHERE pipeline_id = $1 AND status IN ('created', 'running')
               FOR NO KEY UPDATE)
           UPDATE jobs j SET status = 'error', error_message = $2, finished_at = $3,
                  assigned_worker_id = NULL, attempt_token = NULL
           FROM ended WHERE j.id = ended.id
           RETURNING j.id, ended.attempt, ended.old_status""",
        pipeline_id,
        message,
        now,
    )
    for r in rows:
        if r["old_status"] == "running":
            await conn.execute(
                """UPDATE job_attempts SET outcome = 'cancelled', ended_at = $3
                   WHERE job_id = $1 AND attempt = $2 AND ended_at IS NULL""",
                r["id"],
                r["attempt"],
                now,
            )
    await refresh_pipeline_status(conn, pipeline_id, now)
    await _emit_events(conn, [(r["id"], pipeline_id, "error", "cancelled") for r in rows], now)
    return [r["id"] for r in rows]


async def _emit_events(
    conn: Conn, events: Sequence[tuple[int, int, str, str]], now: datetime
) -> None:
    """(job, pipeline, status, event): NOTIFY live followers and queue notifications."""
    for job_id, pipeline_id, status, _event in events:
        await conn.execute(
            "SELECT pg_notify($1, $2)",
            EVENT_CHANNEL,
            f'{{"job":{job_id},"pipeline":{pipeline_id},"status":"{status}"}}',
        )
    await notifications.job_changed(
        conn, [notifications.JobChange(j, p, s, e) for j, p, s, e in events], now
    )


# ---------------------------------------------------------------- jobs


@dataclass(frozen=True)
class ClaimedJob:
    job_id: int
    pipeline_id: int
    arch: str
    packages: str
    git_branch: str
    git_sha: str
    options: str | None
    attempt: int
    attempt_token: str


async def requeue_held_jobs(
    conn: Conn, worker_id: int, max_lost_attempts: int, now: datetime
) -> list[int]:
    """A worker that polls while holding a job has lost it."""
    return await _requeue(
        conn,
        """SELECT id FROM jobs WHERE status = 'running' AND assigned_worker_id = $1
           FOR UPDATE SKIP LOCKED""",
        (worker_id,),
        max_lost_attempts,
        now,
        "its worker polled for a new job while holding it",
    )


async def requeue_silent(
    conn: Conn, cutoff: datetime, max_lost_attempts: int, now: datetime
) -> list[int]:
    """Jobs whose worker sent no heartbeat since ``cutoff`` go back to the queue."""
    return await _requeue(
        conn,
        """SELECT j.id FROM jobs j LEFT JOIN workers w ON w.id = j.assigned_worker_id
           WHERE j.status = 'running'
             AND greatest(coalesce(w.last_heartbeat_at, '-infinity'), j.assigned_at) < $1
           FOR UPDATE OF j SKIP LOCKED""",
        (cutoff,),
        max_lost_attempts,
        now,
        "its worker stopped sending heartbeats",
    )


async def _requeue(
    conn: Conn,
    select_sql: str,
    args: tuple[Any, ...],
    max_lost_attempts: int,
    now: datetime,
    why: str,
) -> list[int]:
    ids = [r["id"] for r in await conn.fetch(select_sql, *args)]
    if not ids:
        return []
    rows = await conn.fetch(
        """UPDATE jobs SET
               lost_attempts = lost_attempts + 1,
               status = CASE WHEN lost_attempts + 1 >= $2 THEN 'error' ELSE 'created' END,
               error_message = CASE WHEN lost_attempts + 1 >= $2
                   THEN 'lost ' || (lost_attempts + 1) || ' times: ' || $3
                   ELSE error_message END,
               finished_at = CASE WHEN lost_attempts + 1 >= $2 THEN $4::timestamptz END,
               assigned_worker_id = NULL, attempt_token = NULL
           WHERE id = ANY($1::int8[])
           RETURNING id, pipeline_id, arch, attempt, status""",
        ids,
        max_lost_attempts,
        why,
        now,
    )
    for r in rows:
        await conn.execute(
            """UPDATE job_attempts SET outcome = 'lost', ended_at = $3
               WHERE job_id = $1 AND attempt = $2 AND ended_at IS NULL""",
            r["id"],
            r["attempt"],
            now,
        )
    requeued = {domain.scheduler_arch(r["arch"]) for r in rows if r["status"] == "created"}
    for sched_arch in sorted(requeued):
        await conn.execute("SELECT pg_notify($1, $2)", WAKE_CHANNEL, sched_arch)
    for pipeline_id in sorted({r["pipeline_id"] for r in rows if r["status"] == "error"}):
        await refresh_pipeline_status(conn, pipeline_id, now)
    await _emit_events(
        conn, [(r["id"], r["pipeline_id"], r["status"], "requeued") for r in rows], now
    )
    return [r["id"] for r in rows]


@dataclass(frozen=True)
class Claim:
    job: ClaimedJob | None
    # Whether other jobs of these archs were runnable when the claim looked (for
    # other workers, or the next claim): when false the queue is empty.
    more_runnable: bool


async def claim_next(
    conn: Conn,
    *,
    worker_id: int,
    archs: Sequence[str],
    cores: int,
    memory: int,
    disk: int,
    now: datetime,
) -> Claim:
    """Atomically hand the first runnable job this worker meets to it, and tell whether
    more are runnable.

    One statement claims the job, starts its attempt, reads its pipeline and NOTIFYs the
    event (a round trip each before); the job-change hook then runs in the same
    transaction. A claim that finds nothing answers whether anything else is runnable
    (for bigger workers), so the scheduler needs no second query.
    """
    token = uuid.uuid4()
    row = await conn.fetchrow(
        """WITH candidate AS (
               SELECT id FROM jobs
               WHERE status = 'created' AND arch = ANY($1::text[])
                 AND (require_min_core IS NULL OR require_min_core <= $2)
                 AND (require_min_total_mem IS NULL OR require_min_total_mem <= $3)
                 AND (require_min_total_mem_per_core IS NULL
                      OR require_min_total_mem_per_core <= $3::float8 / greatest($2, 1))
                 AND (require_min_disk IS NULL OR require_min_disk <= $4)
               ORDER BY priority DESC, id
               LIMIT 1
               FOR UPDATE SKIP LOCKED),
           claimed AS (
               UPDATE jobs j SET status = 'running', attempt = j.attempt + 1,
                      attempt_token = $5, assigned_worker_id = $6, assigned_at = $7
               FROM candidate WHERE j.id = candidate.id
               RETURNING j.id, j.pipeline_id, j.arch, j.packages, j.attempt),
           started AS (
               INSERT INTO job_attempts (job_id, attempt, token, worker_id, started_at)
               SELECT id, attempt, $5, $6, $7 FROM claimed)
           SELECT c.id, c.pipeline_id, c.arch, c.packages, c.attempt,
                  p.git_branch, p.git_sha, p.options,
                  (p.github_pr IS NOT NULL OR p.telegram_chat_id IS NOT NULL) AS front_end,
                  CASE WHEN c.id IS NOT NULL THEN pg_notify($8,
                      '{"job":' || c.id || ',"pipeline":' || c.pipeline_id
                      || ',"status":"running"}') END AS notified,
                  EXISTS (SELECT 1 FROM jobs r
                          WHERE r.status = 'created' AND r.arch = ANY($1::text[])
                            AND r.id NOT IN (SELECT id FROM candidate)) AS more_runnable
           FROM (SELECT 1) AS one
           LEFT JOIN claimed c ON true
           LEFT JOIN pipelines p ON p.id = c.pipeline_id""",
        list(archs),
        cores,
        memory,
        disk,
        token,
        worker_id,
        now,
        EVENT_CHANNEL,
    )
    if row["id"] is None:
        return Claim(None, row["more_runnable"])
    job_id, pipeline_id = row["id"], row["pipeline_id"]
    await notifications.job_changed(
        conn,
        [notifications.JobChange(job_id, pipeline_id, "running", "started", row["front_end"])],
        now,
    )
    job = ClaimedJob(
        job_id=job_id,
        pipeline_id=pipeline_id,
        arch=row["arch"],
        packages=row["packages"],
        git_branch=row["git_branch"],
        git_sha=row["git_sha"],
        options=row["options"],
        attempt=row["attempt"],
        attempt_token=str(token),
    )
    return Claim(job, row["more_runnable"])


async def release_claim(conn: Conn, job_id: int, token: str, now: datetime) -> bool:
    """Give back a claim no worker received (its poll went away); not a lost attempt."""
    row = await conn.fetchrow(
        """UPDATE jobs SET status = 'created', assigned_worker_id = NULL, attempt_token = NULL
           WHERE id = $1 AND attempt_token = $2 AND status = 'running'
           RETURNING arch, attempt, pipeline_id""",
        job_id,
        uuid.UUID(token),
    )
    if row is None:
        return False
    await conn.execute(
        """UPDATE job_attempts SET outcome = 'handed_back', ended_at = $3
           WHERE job_id = $1 AND attempt = $2""",
        job_id,
        row["attempt"],
        now,
    )
    await conn.execute(
        "SELECT pg_notify($1, $2)", WAKE_CHANNEL, domain.scheduler_arch(row["arch"])
    )
    await _emit_events(conn, [(job_id, row["pipeline_id"], "created", "handed_back")], now)
    return True


async def runnable_exists(conn: Conn, archs: Sequence[str]) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'created' AND arch = ANY($1::text[]))",
        list(archs),
    )
    return found


@dataclass(frozen=True)
class JobResult:
    """What a worker reports (``{"Ok": {...}}`` or ``{"Error": "..."}``)."""

    error: str | None = None
    build_success: bool = False
    pushpkg_success: bool = False
    successful_packages: tuple[str, ...] = ()
    failed_package: str | None = None
    skipped_packages: tuple[str, ...] = ()
    log_url: str | None = None
    elapsed_secs: int | None = None
    package_versions: dict[str, str] | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        return domain.job_status_from_result(self.build_success, self.pushpkg_success)

    def as_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"Error": self.error}
        return {
            "Ok": {
                "build_success": self.build_success,
                "pushpkg_success": self.pushpkg_success,
                "successful_packages": list(self.successful_packages),
                "failed_package": self.failed_package,
                "skipped_packages": list(self.skipped_packages),
                "log_url": self.log_url,
                "elapsed_secs": self.elapsed_secs,
                "package_versions": self.package_versions,
            }
        }


@dataclass(frozen=True)
class ResultOutcome:
    job_id: int
    pipeline_id: int
    status: str
    pipeline_status: str
    duplicate: bool


async def report_result(
    conn: Conn,
    *,
    job_id: int,
    hostname: str,
    arch: str,
    token: str | None,
    result: JobResult,
    default_log_url: str | None,
    now: datetime,
) -> ResultOutcome:
    """Record a worker's result, fenced by its attempt; a repeat changes nothing.

    Two statements: lock the job and its pipeline (two jobs of a pipeline finishing at
    once then compute its status one after the other); then record the result, set the
    pipeline's status from its jobs' and tell live followers.
    """
    job = await conn.fetchrow(
        """SELECT j.id, j.pipeline_id, j.status, j.attempt, j.attempt_token, j.arch,
                  j.packages, j.assigned_worker_id, p.git_branch, p.status AS pipeline_status,
                  (p.github_pr IS NOT NULL OR p.telegram_chat_id IS NOT NULL) AS front_end,
                  (SELECT w.id FROM workers w WHERE w.hostname = $2 AND w.arch = $3)
                      AS worker_id
           FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id
           WHERE j.id = $1 FOR NO KEY UPDATE OF j, p""",
        job_id,
        hostname,
        arch,
    )
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    worker_id = job["worker_id"]
    token_uuid = _parse_token(token)
    holds = job["status"] == "running" and (
        job["attempt_token"] == token_uuid
        if token_uuid is not None
        else worker_id is not None and job["assigned_worker_id"] == worker_id
    )
    payload = result.as_json()
    if not holds:
        # The same result delivered again (the first reply was lost): acknowledge it.
        if token_uuid is not None:
            previous = await conn.fetchrow(
                "SELECT result FROM job_attempts WHERE job_id = $1 AND token = $2",
                job_id,
                token_uuid,
            )
        else:
            previous = await conn.fetchrow(
                """SELECT result FROM job_attempts WHERE job_id = $1 AND worker_id = $2
                   ORDER BY attempt DESC LIMIT 1""",
                job_id,
                worker_id,
            )
        if previous is not None and previous["result"] == payload:
            return ResultOutcome(job_id, job["pipeline_id"], job["status"],
                                 job["pipeline_status"], duplicate=True)
        raise Conflict(
            f"job {job_id} is no longer assigned to this worker "
            f"(it is {job['status']}); the result was not recorded"
        )
    status = result.status
    log_url = result.log_url or default_log_url
    pipeline_id = job["pipeline_id"]
    # The pipeline row is locked (above), so the other jobs' statuses read here are
    # the latest: a sibling finishing meanwhile waits for our commit.
    statuses = "(array_agg(status) FILTER (WHERE id <> $1) || $2::text)"
    pipeline_status = await conn.fetchval(
        """WITH finished AS (
               UPDATE jobs SET status = $2, build_success = $3, pushpkg_success = $4,
                   successful_packages = $5, failed_package = $6, skipped_packages = $7,
                   package_versions = $8, log_url = $9, elapsed_secs = $10,
                   error_message = $11, finished_at = $12,
                   built_by_worker_id = assigned_worker_id,
                   assigned_worker_id = NULL, attempt_token = NULL
               WHERE id = $1),
           attempt AS (
               UPDATE job_attempts SET outcome = $2, result = $14, ended_at = $12
               WHERE job_id = $1 AND attempt = $13),
           computed AS (
               SELECT """ + domain.PIPELINE_STATUS_SQL.format(statuses=statuses) + """ AS s
               FROM jobs WHERE pipeline_id = $15),
           refreshed AS (
               UPDATE pipelines p SET status = computed.s,
                   finished_at = CASE WHEN computed.s = 'running' THEN NULL
                                      ELSE coalesce(p.finished_at, $12) END
               FROM computed WHERE p.id = $15 AND p.status IS DISTINCT FROM computed.s)
           SELECT computed.s, pg_notify($16, $17) FROM computed""",
        job_id,
        status,
        None if result.error is not None else result.build_success,
        None if result.error is not None else result.pushpkg_success,
        list(result.successful_packages),
        result.failed_package,
        list(result.skipped_packages),
        result.package_versions,
        log_url,
        result.elapsed_secs,
        result.error,
        now,
        job["attempt"],
        payload,
        pipeline_id,
        EVENT_CHANNEL,
        f'{{"job":{job_id},"pipeline":{pipeline_id},"status":"{status}"}}',
    )
    if job["git_branch"] == "stable":
        await _record_packages(conn, job_id, job["arch"], job["packages"], result, now)
    await notifications.job_changed(
        conn,
        [notifications.JobChange(job_id, pipeline_id, status, "finished", job["front_end"])],
        now,
    )
    return ResultOutcome(job_id, pipeline_id, status, pipeline_status, duplicate=False)


def _parse_token(token: str | None) -> uuid.UUID | None:
    if token is None:
        return None
    try:
        return uuid.UUID(token)
    except ValueError:
        raise Unprocessable("attempt_token is not a valid token") from None


def _lookup_name(package: str) -> str | None:
    name = package.split(":", 1)[0]
    if name.startswith("groups/"):
        return None
    return name.rsplit("/", 1)[-1]


async def _record_packages(
    conn: Conn, job_id: int, arch: str, packages: str, result: JobResult, now: datetime
) -> None:
    entries: dict[str, tuple[str, str | None]] = {}
    if result.error is not None:
        for package in packages.split(","):
            name = _lookup_name(package)
            if name:
                entries[name] = ("error", None)
    else:
        versions = result.package_versions or {}
        for name in result.successful_packages:
            entries[name] = ("success", versions.get(name))
        for name in result.skipped_packages:
            entries[name] = ("skipped", None)
        if result.failed_package:
            entries[result.failed_package] = ("failed", None)
    if not entries:
        return
    names = sorted(entries)  # one order for every writer: no deadlock between two
    await conn.execute(
        """INSERT INTO packages AS p (name, arch, version, last_job_id, last_result, updated_at)
           SELECT n, $2, v, $3, r, $4 FROM unnest($1::text[], $5::text[], $6::text[]) AS t(n, r, v)
           ON CONFLICT (name, arch) DO UPDATE SET
               version = coalesce(EXCLUDED.version, p.version),
               last_job_id = EXCLUDED.last_job_id,
               last_result = EXCLUDED.last_result,
               updated_at = EXCLUDED.updated_at""",
        names,
        arch,
        job_id,
        now,
        [entries[n][0] for n in names],
        [entries[n][1] for n in names],
    )


async def restart_job(conn: Conn, job_id: int, now: datetime) -> tuple[int, str]:
    """A new attempt of a failed or errored job; returns (pipeline id, arch)."""
    row = await conn.fetchrow(
        "SELECT status, pipeline_id, arch FROM jobs WHERE id = $1 FOR UPDATE", job_id
    )
    if row is None:
        raise NotFound(f"job {job_id} does not exist")
    if row["status"] not in ("failed", "error"):
        raise Conflict(f"job {job_id} is {row['status']}; only failed or error jobs restart")
    await conn.execute(
        """UPDATE jobs SET status = 'created', lost_attempts = 0, build_success = NULL,
               pushpkg_success = NULL, successful_packages = NULL, failed_package = NULL,
               skipped_packages = NULL, package_versions = NULL, log_url = NULL,
               elapsed_secs = NULL, error_message = NULL, finished_at = NULL,
               assigned_worker_id = NULL, attempt_token = NULL
           WHERE id = $1""",
        job_id,
    )
    await refresh_pipeline_status(conn, row["pipeline_id"], now)
    await conn.execute(
        "SELECT pg_notify($1, $2)", WAKE_CHANNEL, domain.scheduler_arch(row["arch"])
    )
    await _emit_events(conn, [(job_id, row["pipeline_id"], "created", "restarted")], now)
    return row["pipeline_id"], row["arch"]


@dataclass(frozen=True)
class AttemptState:
    job_id: int
    status: str  # "running" (still this attempt's), "cancelled", "lost"
    log_size: int


async def attempt_state(
    conn: Conn, job_id: int, token: str | None, hostname: str, arch: str
) -> AttemptState:
    """Is this attempt still the job's current one? Used by heartbeats and log uploads."""
    token_uuid = _parse_token(token)
    job = await conn.fetchrow(
        """SELECT j.status, j.attempt, j.attempt_token, j.error_message, w.hostname, w.arch
           FROM jobs j LEFT JOIN workers w ON w.id = j.assigned_worker_id WHERE j.id = $1""",
        job_id,
    )
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    if job["status"] == "running" and (
        job["attempt_token"] == token_uuid
        if token_uuid is not None
        else (job["hostname"], job["arch"]) == (hostname, arch)
    ):
        size = await conn.fetchval(
            "SELECT log_size FROM job_attempts WHERE job_id = $1 AND attempt = $2",
            job_id,
            job["attempt"],
        )
        return AttemptState(job_id, "running", size or 0)
    cancelled = job["status"] == "error" and (job["error_message"] or "").startswith("cancelled")
    return AttemptState(job_id, "cancelled" if cancelled else "lost", 0)


async def log_target(conn: Conn, job_id: int, token: str | None, hostname: str, arch: str
                     ) -> tuple[int, int]:
    """(attempt, stored log size) of the running attempt; Conflict when fenced out."""
    state = await attempt_state(conn, job_id, token, hostname, arch)
    if state.status != "running":
        raise Conflict(f"job {job_id} is no longer assigned to this worker ({state.status})")
    attempt: int = await conn.fetchval("SELECT attempt FROM jobs WHERE id = $1", job_id)
    return attempt, state.log_size


async def set_log_size(conn: Conn, job_id: int, attempt: int, size: int) -> None:
    await conn.execute(
        "UPDATE job_attempts SET log_size = $3 WHERE job_id = $1 AND attempt = $2",
        job_id,
        attempt,
        size,
    )


async def current_token(conn: Conn, job_id: int) -> str | None:
    token = await conn.fetchval("SELECT attempt_token FROM jobs WHERE id = $1", job_id)
    return str(token) if token else None


async def job_brief(conn: Conn, job_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT id, pipeline_id, arch, status, attempt FROM jobs WHERE id = $1", job_id
    )
    return dict(row) if row else None


# ---------------------------------------------------------------- outbox

OUTBOX_CHANNEL = "buildit_outbox"


@dataclass(frozen=True)
class OutboxItem:
    id: int
    channel: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    ordering_key: str | None


async def enqueue(
    conn: Conn,
    *,
    channel: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    dedup_key: str | None = None,
    ordering_key: str | None = None,
) -> int | None:
    """Add a notification in the caller's transaction; None when ``dedup_key`` was seen."""
    outbox_id: int | None = await conn.fetchval(
        """INSERT INTO outbox (channel, kind, payload, dedup_key, ordering_key, created_at,
                next_attempt_at)
           VALUES ($1, $2, $3, $4, $5, $6, $6)
           ON CONFLICT (dedup_key) DO NOTHING RETURNING id""",
        channel,
        kind,
        payload,
        dedup_key,
        ordering_key,
        now,
    )
    if outbox_id is not None:
        await conn.execute("SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, channel)
    return outbox_id


async def lease_outbox(
    conn: Conn, channels: Sequence[str], now: datetime, lease_until: datetime, limit: int
) -> list[OutboxItem]:
    """Take due notifications for delivery; each is leased until ``lease_until``.

    Only the oldest undelivered row of each ordering key is due, so notifications to
    one target arrive in order.
    """
    rows = await conn.fetch(
        """WITH due AS (
               SELECT o.id FROM outbox o
               WHERE o.delivered_at IS NULL AND o.failed_at IS NULL
                 AND o.next_attempt_at <= $2 AND o.channel = ANY($1::text[])
                 AND (o.ordering_key IS NULL OR NOT EXISTS (
                       SELECT 1 FROM outbox p
                       WHERE p.ordering_key = o.ordering_key AND p.id < o.id
                         AND p.delivered_at IS NULL AND p.failed_at IS NULL))
               ORDER BY o.next_attempt_at, o.id
               LIMIT $4
               FOR UPDATE SKIP LOCKED)
           UPDATE outbox o SET next_attempt_at = $3, attempts = o.attempts + 1
           FROM due WHERE o.id = due.id
           RETURNING o.id, o.channel, o.kind, o.payload, o.attempts, o.ordering_key""",
        list(channels),
        now,
        lease_until,
        limit,
    )
    return [
        OutboxItem(r["id"], r["channel"], r["kind"], r["payload"], r["attempts"],
                   r["ordering_key"])
        for r in rows
    ]


async def outbox_delivered(conn: Conn, outbox_id: int, result: Any, now: datetime) -> None:
    await conn.execute(
        "UPDATE outbox SET delivered_at = $2, result = $3, last_error = NULL WHERE id = $1",
        outbox_id,
        now,
        result,
    )


async def outbox_retry(conn: Conn, outbox_id: int, error: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE outbox SET next_attempt_at = $2, last_error = $3 WHERE id = $1",
        outbox_id,
        at,
        error[:2000],
    )


async def outbox_failed(conn: Conn, outbox_id: int, error: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE outbox SET failed_at = $2, last_error = $3 WHERE id = $1",
        outbox_id,
        now,
        error[:2000],
    )


async def outbox_backlog(conn: Conn) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL"
    )
    return count


async def outbox_rows(conn: Conn) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM outbox ORDER BY id")
    return [dict(r) for r in rows]


# ---------------------------------------------------------------- read API


def _page(page: int, items_per_page: int) -> tuple[int, int]:
    return items_per_page, (page - 1) * items_per_page


async def list_pipelines(
    conn: Conn,
    *,
    page: int,
    items_per_page: int,
    stable_only: bool,
    github_pr_only: bool,
    creator: str | None,
    status: str | None,
) -> dict[str, Any]:
    limit, offset = _page(page, items_per_page)
    where = """($1::bool IS FALSE OR p.git_branch = 'stable')
               AND ($2::bool IS FALSE OR p.github_pr IS NOT NULL)
               AND ($3::text IS NULL OR u.github_login = $3)
               AND ($4::text IS NULL OR p.status = $4)"""
    if creator is None:
        # Exact, from the counters the list_counts migration's triggers keep: no count(*) over
        # the whole history for every page.
        total = await conn.fetchval(
            """SELECT coalesce(sum(n), 0)::int8 FROM pipeline_counts
               WHERE ($1::bool IS FALSE OR stable) AND ($2::bool IS FALSE OR pr)
                 AND ($3::text IS NULL OR status = $3)""",
            stable_only,
            github_pr_only,
            status,
        )
    else:
        # One person's pipelines: counted through the pipelines_creator index.
        total = await conn.fetchval(
            "SELECT count(*) FROM pipelines p LEFT JOIN users u ON u.id = p.creator_user_id "
            "WHERE " + where,
            stable_only,
            github_pr_only,
            creator,
            status,
        )
    rows = await conn.fetch(
        """SELECT p.id, p.git_branch, p.git_sha, p.created_at AS creation_time, p.github_pr,
                  p.packages, p.archs, p.status, p.source, p.options,
                  u.github_login AS creator_github_login,
                  u.github_avatar_url AS creator_github_avatar_url,
                  coalesce((SELECT json_agg(json_build_object(
                                'job_id', j.id, 'arch', j.arch, 'status', j.status)
                                ORDER BY j.arch)
                            FROM jobs j WHERE j.pipeline_id = p.id), '[]'::json) AS jobs
           FROM pipelines p LEFT JOIN users u ON u.id = p.creator_user_id
           WHERE """
        + where
        + " ORDER BY p.id DESC LIMIT $5 OFFSET $6",
        stable_only,
        github_pr_only,
        creator,
        status,
        limit,
        offset,
    )
    return {"total_items": total, "items": [dict(r) for r in rows]}


async def pipeline_info(conn: Conn, pipeline_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """SELECT p.id AS pipeline_id, p.packages, p.archs, p.git_branch, p.git_sha,
                  p.created_at AS creation_time, p.finished_at, p.github_pr, p.status,
                  p.source, p.options, p.warnings, p.telegram_chat_id,
                  u.github_login AS creator_github_login
           FROM pipelines p LEFT JOIN users u ON u.id = p.creator_user_id WHERE p.id = $1""",
        pipeline_id,
    )
    if row is None:
        return None
    jobs = await conn.fetch(
        """SELECT j.id AS job_id, j.arch, j.status, j.packages, j.attempt, j.elapsed_secs,
                  j.log_url, j.error_message, j.failed_package, j.finished_at,
                  w.hostname AS assigned_worker_hostname
           FROM jobs j LEFT JOIN workers w ON w.id = j.assigned_worker_id
           WHERE j.pipeline_id = $1 ORDER BY j.arch""",
        pipeline_id,
    )
    out = dict(row)
    out.pop("telegram_chat_id")
    out["jobs"] = [dict(j) for j in jobs]
    return out


async def list_jobs(
    conn: Conn, *, page: int, items_per_page: int, status: str | None, arch: str | None
) -> dict[str, Any]:
    limit, offset = _page(page, items_per_page)
    # Exact, from the counters the list_counts migration's triggers keep (no count(*)).
    total = await conn.fetchval(
        """SELECT coalesce(sum(n), 0)::int8 FROM job_counts
           WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR arch = $2)""",
        status,
        arch,
    )
    rows = await conn.fetch(
        """SELECT j.id, j.pipeline_id, j.packages, j.arch, j.status, j.elapsed_secs,
                  j.created_at AS creation_time, j.log_url, j.build_success,
                  p.git_branch, p.git_sha, p.github_pr
           FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id
           WHERE ($1::text IS NULL OR j.status = $1) AND ($2::text IS NULL OR j.arch = $2)
           ORDER BY j.id DESC LIMIT $3 OFFSET $4""",
        status,
        arch,
        limit,
        offset,
    )
    return {"total_items": total, "items": [dict(r) for r in rows]}


async def job_info(conn: Conn, job_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """SELECT j.id AS job_id, j.pipeline_id, j.packages, j.arch, j.created_at AS creation_time,
                  j.status, j.build_success, j.pushpkg_success,
                  array_to_string(j.successful_packages, ',') AS successful_packages,
                  j.failed_package,
                  array_to_string(j.skipped_packages, ',') AS skipped_packages,
                  j.package_versions, j.log_url, j.finished_at AS finish_time, j.error_message,
                  j.elapsed_secs, j.assigned_worker_id, j.built_by_worker_id, j.attempt,
                  j.lost_attempts, j.require_min_core, j.require_min_total_mem,
                  j.require_min_total_mem_per_core, j.require_min_disk, j.assigned_at,
                  p.git_branch, p.git_sha, p.github_pr
           FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id WHERE j.id = $1""",
        job_id,
    )
    if row is None:
        return None
    out = dict(row)
    attempts = await conn.fetch(
        """SELECT a.attempt, a.started_at, a.ended_at, a.outcome, a.log_size,
                  w.hostname AS worker_hostname
           FROM job_attempts a LEFT JOIN workers w ON w.id = a.worker_id
           WHERE a.job_id = $1 ORDER BY a.attempt""",
        job_id,
    )
    out["attempts"] = [dict(a) for a in attempts]
    return out


async def list_workers(conn: Conn, *, page: int, items_per_page: int, live_after: datetime
                       ) -> dict[str, Any]:
    limit, offset = _page(page, items_per_page)
    total = await conn.fetchval("SELECT count(*) FROM workers")
    rows = await conn.fetch(
        """SELECT w.id, w.hostname, w.arch, w.logical_cores, w.memory_bytes,
                  w.disk_free_space_bytes, w.git_commit, w.worker_version, w.performance,
                  w.internet_connectivity, w.last_heartbeat_at AS last_heartbeat_time,
                  w.last_heartbeat_at > $3 AS is_live,
                  (SELECT j.id FROM jobs j WHERE j.assigned_worker_id = w.id
                     AND j.status = 'running' LIMIT 1) AS running_job_id
           FROM workers w ORDER BY w.arch, w.hostname LIMIT $1 OFFSET $2""",
        limit,
        offset,
        live_after,
    )
    return {"total_items": total, "items": [dict(r) for r in rows]}


async def worker_info(conn: Conn, worker_id: int, live_after: datetime) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """SELECT w.id AS worker_id, w.hostname, w.arch, w.git_commit, w.worker_version,
                  w.memory_bytes, w.logical_cores, w.disk_free_space_bytes, w.performance,
                  w.internet_connectivity, w.created_at,
                  w.last_heartbeat_at AS last_heartbeat_time, w.last_heartbeat_at > $2 AS is_live,
                  (SELECT j.id FROM jobs j WHERE j.assigned_worker_id = w.id
                     AND j.status = 'running' LIMIT 1) AS running_job_id,
                  (SELECT count(*) FROM job_attempts a WHERE a.worker_id = w.id) AS attempts
           FROM workers w WHERE w.id = $1""",
        worker_id,
        live_after,
    )
    return dict(row) if row else None


async def queue_status(conn: Conn, archs: Sequence[str], live_after: datetime
                       ) -> list[dict[str, Any]]:
    """Per arch: pending and running jobs, live workers."""
    rows = await conn.fetch(
        """SELECT a AS arch,
                  (SELECT count(*) FROM jobs WHERE status = 'created' AND arch = a) AS pending,
                  (SELECT count(*) FROM jobs WHERE status = 'running' AND arch = a) AS running,
                  (SELECT count(*) FROM workers
                     WHERE arch = a AND last_heartbeat_at > $2) AS available
           FROM unnest($1::text[]) AS a""",
        list(archs),
        live_after,
    )
    return [dict(r) for r in rows]


async def dashboard(conn: Conn, archs: Sequence[str], live_after: datetime) -> dict[str, Any]:
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM pipelines) AS total_pipelines,
                  (SELECT count(*) FROM jobs) AS total_jobs,
                  (SELECT count(*) FROM jobs WHERE status = 'created') AS pending_jobs,
                  (SELECT count(*) FROM jobs WHERE status = 'running') AS running_jobs,
                  (SELECT count(*) FROM workers) AS total_workers,
                  (SELECT count(*) FROM workers WHERE last_heartbeat_at > $1) AS live_workers,
                  (SELECT coalesce(sum(logical_cores), 0)::bigint FROM workers
                     WHERE last_heartbeat_at > $1) AS total_logical_cores,
                  (SELECT coalesce(sum(memory_bytes), 0)::bigint FROM workers
                     WHERE last_heartbeat_at > $1) AS total_memory_bytes""",
        live_after,
    )
    out = dict(row)
    out["by_arch"] = await queue_status(conn, [*archs, domain.NOARCH], live_after)
    return out


async def table_counts(conn: Conn) -> dict[str, int]:
    """Row counts of the main tables (used by tests to prove nothing changed)."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM pipelines) AS pipelines,
                  (SELECT count(*) FROM jobs) AS jobs,
                  (SELECT count(*) FROM job_attempts) AS job_attempts,
                  (SELECT count(*) FROM workers) AS workers,
                  (SELECT count(*) FROM users) AS users,
                  (SELECT count(*) FROM api_tokens) AS api_tokens,
                  (SELECT count(*) FROM outbox) AS outbox,
                  (SELECT count(*) FROM packages) AS packages,
                  (SELECT count(*) FROM webhook_deliveries) AS webhook_deliveries"""
    )
    return dict(row)
