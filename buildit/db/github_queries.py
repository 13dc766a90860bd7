"""ASYNCIO-FLAVOURED: the SQL of the GitHub front end, and its outbox producer.

Like ``buildit.db.queries``: each function takes an asyncpg connection first and runs
on the asyncio side of the bridge; trio code calls them through ``Database.run``.
``job_changed`` runs inside the transaction of every job change (called from
``buildit.db.notifications``), so what GitHub is told commits with the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from buildit.db import queries

Conn = Any  # asyncpg.Connection

CHANNEL = "github"
KIND_COMMENT = "github_comment"
KIND_CHECK_RUN = "github_check_run"


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC as GitHub writes it (``2024-05-01T12:00:00Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def comment_ordering_key(issue: int) -> str:
    """Replies on one pull request arrive in the order they were decided."""
    return f"github-issue:{issue}"


def check_run_ordering_key(job_id: int) -> str:
    return f"check-run:{job_id}"


# ---------------------------------------------------------------- webhook_deliveries


async def record_delivery(conn: Conn, delivery_id: str, now: datetime) -> bool:
    """Remember a delivery; False when it was seen before."""
    inserted = await conn.fetchval(
        """INSERT INTO webhook_deliveries (source, delivery_id, received_at)
           VALUES ('github', $1, $2) ON CONFLICT DO NOTHING RETURNING 1""",
        delivery_id,
        now,
    )
    return inserted is not None


async def forget_delivery(conn: Conn, delivery_id: str) -> None:
    """Undo ``record_delivery`` for a delivery that could not be taken on."""
    await conn.execute(
        "DELETE FROM webhook_deliveries WHERE source = 'github' AND delivery_id = $1",
        delivery_id,
    )


# ---------------------------------------------------------------- outbox: comments


async def enqueue_comment(
    conn: Conn, *, issue: int, text: str, dedup_key: str | None, now: datetime
) -> int | None:
    """Queue a comment on a pull request (or issue); None when ``dedup_key`` was seen."""
    return await queries.enqueue(
        conn,
        channel=CHANNEL,
        kind=KIND_COMMENT,
        payload={"issue": issue, "text": text},
        now=now,
        dedup_key=dedup_key,
        ordering_key=comment_ordering_key(issue),
    )


# ---------------------------------------------------------------- github_check_runs


@dataclass(frozen=True)
class CheckRun:
    job_id: int
    check_run_id: int
    head_sha: str
    status: str


async def check_run_of(conn: Conn, job_id: int) -> CheckRun | None:
    row = await conn.fetchrow(
        "SELECT job_id, check_run_id, head_sha, status FROM github_check_runs WHERE job_id = $1",
        job_id,
    )
    if row is None:
        return None
    return CheckRun(row["job_id"], row["check_run_id"], row["head_sha"], row["status"])


@dataclass(frozen=True)
class CheckRunJob:
    job_id: int
    status: str
    github_pr: int | None


async def job_of_check_run(conn: Conn, check_run_id: int) -> CheckRunJob | None:
    """The job whose latest check run is ``check_run_id`` (older runs name no job)."""
    row = await conn.fetchrow(
        """SELECT j.id, j.status, p.github_pr FROM github_check_runs c
           JOIN jobs j ON j.id = c.job_id JOIN pipelines p ON p.id = j.pipeline_id
           WHERE c.check_run_id = $1""",
        check_run_id,
    )
    return CheckRunJob(row["id"], row["status"], row["github_pr"]) if row else None


async def remember_check_run(
    conn: Conn, job_id: int, check_run_id: int, head_sha: str, status: str, now: datetime
) -> None:
    await conn.execute(
        """INSERT INTO github_check_runs (job_id, check_run_id, head_sha, status, updated_at)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (job_id) DO UPDATE SET check_run_id = EXCLUDED.check_run_id,
               head_sha = EXCLUDED.head_sha, status = EXCLUDED.status,
               updated_at = EXCLUDED.updated_at""",
        job_id,
        check_run_id,
        head_sha,
        status,
        now,
    )


# ---------------------------------------------------------------- the producer


async def job_changed(conn: Conn, changes: Sequence[Any], now: datetime) -> None:
    """Queue what GitHub must be told about these job changes (``JobChange`` items).

    Every job of a pipeline with a ``github_pr`` gets its check run moved along; a
    pipeline created from a GitHub comment also gets its reply comment, in the very
    transaction that creates it.
    """
    if not changes:
        return
    rows = await conn.fetch(
        """SELECT j.id AS job_id, j.pipeline_id, j.arch, j.packages, j.successful_packages,
                  j.failed_package, j.skipped_packages, j.elapsed_secs, j.log_url,
                  j.error_message, j.build_success, j.pushpkg_success,
                  p.git_branch, p.git_sha, p.github_pr, p.source, p.packages AS pipeline_packages,
                  p.warnings, w.hostname, u.github_login AS creator
           FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id
           LEFT JOIN workers w ON w.id = j.assigned_worker_id
           LEFT JOIN users u ON u.id = p.creator_user_id
           WHERE j.id = ANY($1::int8[]) AND p.github_pr IS NOT NULL""",
        sorted({c.job_id for c in changes}),
    )
    if not rows:
        return
    by_job = {r["job_id"]: r for r in rows}
    created: dict[int, list[Any]] = {}
    for change in changes:
        row = by_job.get(change.job_id)
        if row is None:
            continue
        facts = {
            "job_id": row["job_id"],
            "pipeline_id": row["pipeline_id"],
            "github_pr": row["github_pr"],
            "arch": row["arch"],
            "head_sha": row["git_sha"],
            "status": change.status,
            "event": change.event,
            "at": iso(now),
            "hostname": row["hostname"] if change.status == "running" else None,
            "packages": row["packages"],
            "successful_packages": list(row["successful_packages"] or []),
            "failed_package": row["failed_package"],
            "skipped_packages": list(row["skipped_packages"] or []),
            "elapsed_secs": row["elapsed_secs"],
            "log_url": row["log_url"],
            "error_message": row["error_message"],
            "build_success": row["build_success"],
            "pushpkg_success": row["pushpkg_success"],
        }
        await queries.enqueue(
            conn,
            channel=CHANNEL,
            kind=KIND_CHECK_RUN,
            payload=facts,
            now=now,
            ordering_key=check_run_ordering_key(row["job_id"]),
        )
        if change.event == "created" and row["source"] == "github":
            created.setdefault(row["pipeline_id"], []).append(row)
    for pipeline_id, job_rows in created.items():
        first = job_rows[0]
        await queries.enqueue(
            conn,
            channel=CHANNEL,
            kind=KIND_COMMENT,
            payload={
                "issue": first["github_pr"],
                "pipeline": {
                    "pipeline_id": pipeline_id,
                    "creator": first["creator"],
                    "packages": first["pipeline_packages"],
                    "git_branch": first["git_branch"],
                    "git_sha": first["git_sha"],
                    "jobs": sorted([r["arch"], r["job_id"]] for r in job_rows),
                    "warnings": list(first["warnings"] or []),
                },
            },
            now=now,
            dedup_key=f"github:pipeline-created:{pipeline_id}",
            ordering_key=comment_ordering_key(first["github_pr"]),
        )
