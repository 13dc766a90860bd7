"""ASYNCIO-FLAVOURED: the SQL of the web UI beyond ``buildit.db.queries``.

Like ``queries``, each function takes an asyncpg connection first and is called from
trio through ``Database.run`` / ``Database.read`` (one bridge crossing, one
transaction). SQL is literal text; times are passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from buildit import domain

Conn = Any  # asyncpg.Connection


# ---------------------------------------------------------------- users


@dataclass(frozen=True)
class WebUser:
    id: int
    github_login: str
    role: str
    github_avatar_url: str | None
    telegram_chat_id: int | None
    role_checked_at: datetime | None


def _web_user(row: Any) -> WebUser:
    return WebUser(
        id=row["id"],
        github_login=row["github_login"],
        role=row["role"],
        github_avatar_url=row["github_avatar_url"],
        telegram_chat_id=row["telegram_chat_id"],
        role_checked_at=row["role_checked_at"],
    )


async def upsert_github_user(
    conn: Conn, *, github_login: str, github_id: int, avatar_url: str | None, role: str,
    now: datetime,
) -> WebUser:
    """The user with this GitHub id (renamed logins follow), else by login, else new."""
    row = await conn.fetchrow(
        """UPDATE users SET github_login = $1, github_avatar_url = $3, role = $4,
                  role_checked_at = $5
           WHERE github_id = $2 RETURNING *""",
        github_login, github_id, avatar_url, role, now,
    )
    if row is None:
        row = await conn.fetchrow(
            """UPDATE users SET github_login = $1, github_id = $2, github_avatar_url = $3,
                      role = $4, role_checked_at = $5
               WHERE lower(github_login) = lower($1) AND github_id IS NULL RETURNING *""",
            github_login, github_id, avatar_url, role, now,
        )
    if row is None:
        row = await conn.fetchrow(
            """INSERT INTO users (github_login, github_id, github_avatar_url, role,
                      role_checked_at, created_at)
               VALUES ($1, $2, $3, $4, $5, $5) RETURNING *""",
            github_login, github_id, avatar_url, role, now,
        )
    return _web_user(row)


async def set_role(conn: Conn, user_id: int, role: str, now: datetime) -> WebUser | None:
    row = await conn.fetchrow(
        "UPDATE users SET role = $2, role_checked_at = $3 WHERE id = $1 RETURNING *",
        user_id, role, now,
    )
    return _web_user(row) if row else None


@dataclass(frozen=True)
class TokenSummary:
    count: int
    created_at: datetime | None
    last_used_at: datetime | None


async def token_summary(conn: Conn, user_id: int) -> TokenSummary:
    row = await conn.fetchrow(
        """SELECT count(*) AS n, max(created_at) AS created, max(last_used_at) AS used
           FROM api_tokens WHERE user_id = $1""",
        user_id,
    )
    return TokenSummary(row["n"], row["created"], row["used"])


async def replace_tokens(conn: Conn, user_id: int, token_hash: bytes, now: datetime) -> None:
    """Revoke every API token of the user and store the new one's hash."""
    await conn.execute("DELETE FROM api_tokens WHERE user_id = $1", user_id)
    await conn.execute(
        "INSERT INTO api_tokens (user_id, token_hash, created_at) VALUES ($1, $2, $3)",
        user_id, token_hash, now,
    )


async def link_telegram(conn: Conn, user_id: int, chat_id: int) -> None:
    """Associate the chat with this user (taking it from whoever had it)."""
    await conn.execute(
        "UPDATE users SET telegram_chat_id = NULL WHERE telegram_chat_id = $1 AND id <> $2",
        chat_id, user_id,
    )
    await conn.execute("UPDATE users SET telegram_chat_id = $2 WHERE id = $1", user_id, chat_id)


# ---------------------------------------------------------------- web_sessions


async def start_web_session(
    conn: Conn, *, user_id: int, id_hash: bytes, replaces: bytes | None, now: datetime,
    expires_at: datetime,
) -> None:
    """Store a new session (the SHA-256 of its id); the one it replaces and every expired
    session go."""
    await conn.execute("DELETE FROM web_sessions WHERE expires_at <= $1", now)
    if replaces is not None:
        await conn.execute("DELETE FROM web_sessions WHERE id_hash = $1", replaces)
    await conn.execute(
        """INSERT INTO web_sessions (id_hash, user_id, created_at, expires_at)
           VALUES ($1, $2, $3, $4)""",
        id_hash, user_id, now, expires_at,
    )


async def session_user(conn: Conn, id_hash: bytes, now: datetime) -> WebUser | None:
    """The user of a session that exists and has not expired."""
    row = await conn.fetchrow(
        """SELECT u.* FROM web_sessions s JOIN users u ON u.id = s.user_id
           WHERE s.id_hash = $1 AND s.expires_at > $2""",
        id_hash, now,
    )
    return _web_user(row) if row else None


async def end_web_session(conn: Conn, id_hash: bytes) -> None:
    await conn.execute("DELETE FROM web_sessions WHERE id_hash = $1", id_hash)


# ---------------------------------------------------------------- dashboard


@dataclass(frozen=True)
class ArchWorkers:
    arch: str
    live: int
    total: int
    busy: int
    cores: int
    memory: int


async def workers_by_arch(conn: Conn, live_after: datetime) -> list[ArchWorkers]:
    rows = await conn.fetch(
        """SELECT w.arch,
                  count(*) FILTER (WHERE w.last_heartbeat_at > $1) AS live,
                  count(*) AS total,
                  count(*) FILTER (WHERE w.last_heartbeat_at > $1 AND EXISTS (
                      SELECT 1 FROM jobs j
                      WHERE j.assigned_worker_id = w.id AND j.status = 'running')) AS busy,
                  coalesce(sum(w.logical_cores) FILTER (WHERE w.last_heartbeat_at > $1), 0)
                      ::bigint AS cores,
                  coalesce(sum(w.memory_bytes) FILTER (WHERE w.last_heartbeat_at > $1), 0)
                      ::bigint AS memory
           FROM workers w GROUP BY w.arch ORDER BY w.arch""",
        live_after,
    )
    return [ArchWorkers(r["arch"], r["live"], r["total"], r["busy"], r["cores"], r["memory"])
            for r in rows]


@dataclass(frozen=True)
class DayCount:
    day: date
    arch: str
    finished: int
    succeeded: int


async def finished_per_day(conn: Conn, since: datetime) -> list[DayCount]:
    """Jobs finished per UTC day and arch since ``since``."""
    rows = await conn.fetch(
        """SELECT (finished_at AT TIME ZONE 'UTC')::date AS day, arch,
                  count(*) AS finished, count(*) FILTER (WHERE status = 'success') AS succeeded
           FROM jobs WHERE finished_at >= $1
           GROUP BY 1, 2 ORDER BY 1, 2""",
        since,
    )
    return [DayCount(r["day"], r["arch"], r["finished"], r["succeeded"]) for r in rows]


@dataclass(frozen=True)
class ArchDurations:
    arch: str
    builds: int
    median_secs: float
    p90_secs: float


async def durations_by_arch(conn: Conn, since: datetime) -> list[ArchDurations]:
    """Median and 90th percentile of successful build times per arch since ``since``."""
    rows = await conn.fetch(
        """SELECT arch, count(*) AS builds,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY elapsed_secs) AS median,
                  percentile_cont(0.9) WITHIN GROUP (ORDER BY elapsed_secs) AS p90
           FROM jobs
           WHERE status = 'success' AND finished_at >= $1 AND elapsed_secs IS NOT NULL
           GROUP BY arch ORDER BY arch""",
        since,
    )
    return [ArchDurations(r["arch"], r["builds"], float(r["median"]), float(r["p90"]))
            for r in rows]


# ---------------------------------------------------------------- why a job waits


@dataclass(frozen=True)
class PendingFacts:
    job_id: int
    arch: str
    requirements: domain.Requirements
    jobs_ahead: int
    # (cores, memory, disk, busy) of live workers of the scheduler arch
    workers: list[tuple[int, int, int, bool]]


async def pending_facts(conn: Conn, job_ids: Sequence[int], live_after: datetime
                        ) -> list[PendingFacts]:
    """Queue facts of those jobs that are still waiting (status ``created``)."""
    jobs = await conn.fetch(
        """SELECT id, arch, priority, require_min_core, require_min_total_mem,
                  require_min_total_mem_per_core, require_min_disk
           FROM jobs WHERE id = ANY($1::int8[]) AND status = 'created' ORDER BY id""",
        list(job_ids),
    )
    workers_of: dict[str, list[tuple[int, int, int, bool]]] = {}
    out: list[PendingFacts] = []
    for job in jobs:
        sched = domain.scheduler_arch(job["arch"])
        claimable = domain.claimable_archs(sched)
        ahead: int = await conn.fetchval(
            """SELECT count(*) FROM jobs
               WHERE status = 'created' AND arch = ANY($1::text[])
                 AND (priority > $2 OR (priority = $2 AND id < $3))""",
            claimable, job["priority"], job["id"],
        )
        if sched not in workers_of:
            rows = await conn.fetch(
                """SELECT w.logical_cores, w.memory_bytes, w.disk_free_space_bytes,
                          EXISTS (SELECT 1 FROM jobs j WHERE j.assigned_worker_id = w.id
                                    AND j.status = 'running') AS busy
                   FROM workers w WHERE w.arch = $1 AND w.last_heartbeat_at > $2""",
                sched, live_after,
            )
            workers_of[sched] = [
                (r["logical_cores"], r["memory_bytes"], r["disk_free_space_bytes"], r["busy"])
                for r in rows
            ]
        out.append(PendingFacts(
            job_id=job["id"],
            arch=job["arch"],
            requirements=domain.Requirements(
                min_cores=job["require_min_core"],
                min_total_mem=job["require_min_total_mem"],
                min_total_mem_per_core=job["require_min_total_mem_per_core"],
                min_disk=job["require_min_disk"],
            ),
            jobs_ahead=ahead,
            workers=workers_of[sched],
        ))
    return out


# ---------------------------------------------------------------- workers, packages


async def worker_history(conn: Conn, worker_id: int, limit: int, offset: int
                         ) -> dict[str, Any]:
    """The job attempts a worker made, newest first."""
    total = await conn.fetchval(
        "SELECT count(*) FROM job_attempts WHERE worker_id = $1", worker_id
    )
    rows = await conn.fetch(
        """SELECT a.job_id, a.attempt, a.started_at, a.ended_at, a.outcome, a.log_size,
                  j.pipeline_id, j.arch, j.packages, j.status AS job_status, p.git_branch
           FROM job_attempts a JOIN jobs j ON j.id = a.job_id
           JOIN pipelines p ON p.id = j.pipeline_id
           WHERE a.worker_id = $1
           ORDER BY a.started_at DESC, a.job_id DESC LIMIT $2 OFFSET $3""",
        worker_id, limit, offset,
    )
    return {"total_items": total, "items": [dict(r) for r in rows]}


def _like_pattern(search: str) -> str:
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_packages(conn: Conn, search: str | None, limit: int, offset: int
                        ) -> dict[str, Any]:
    """Package names (matching ``search``), each with its per-arch status on stable."""
    pattern = _like_pattern(search) if search else None
    total = await conn.fetchval(
        "SELECT count(DISTINCT name) FROM packages WHERE $1::text IS NULL OR name ILIKE $1",
        pattern,
    )
    rows = await conn.fetch(
        """WITH names AS (
               SELECT DISTINCT name FROM packages WHERE $1::text IS NULL OR name ILIKE $1
               ORDER BY name LIMIT $2 OFFSET $3)
           SELECT p.name, p.arch, p.version, p.last_job_id, p.last_result, p.updated_at,
                  j.pipeline_id
           FROM packages p JOIN names USING (name)
           LEFT JOIN jobs j ON j.id = p.last_job_id
           ORDER BY p.name, p.arch""",
        pattern, limit, offset,
    )
    items: dict[str, dict[str, Any]] = {}
    for r in rows:
        items.setdefault(r["name"], {"name": r["name"], "archs": {}})["archs"][r["arch"]] = {
            k: r[k] for k in ("version", "last_job_id", "last_result", "updated_at",
                              "pipeline_id")
        }
    return {"total_items": total, "items": list(items.values())}
