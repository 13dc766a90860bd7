"""ASYNCIO-FLAVOURED: the SQL of the Telegram front end.

Like ``buildit.db.queries``, each function takes an asyncpg connection first and runs
on the asyncio side of the bridge; trio code calls them through ``Database.run`` /
``Database.read``. ``queue_job_results`` is the Telegram producer that
``notifications.job_changed`` calls inside every job-change transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from buildit.db import queries
from buildit.telegram.render import JobResult, OutgoingMessage, WorkerRow

if TYPE_CHECKING:
    from buildit.db.notifications import JobChange

Conn = Any  # asyncpg.Connection
CHANNEL = "telegram"


def ordering_key(chat_id: int) -> str:
    """Messages to one chat are delivered one after another, oldest first."""
    return f"chat:{chat_id}"


# ---------------------------------------------------------------- webhook_deliveries


async def record_update(conn: Conn, update_id: int, now: datetime) -> bool:
    """Remember an update; False when it was seen before (Telegram delivered it again)."""
    seen = await conn.fetchval(
        """INSERT INTO webhook_deliveries (source, delivery_id, received_at)
           VALUES ('telegram', $1, $2) ON CONFLICT DO NOTHING RETURNING 1""",
        str(update_id),
        now,
    )
    return seen is not None


async def forget_update(conn: Conn, update_id: int) -> None:
    """Undo ``record_update`` for an update we could not take (Telegram sends it again)."""
    await conn.execute(
        "DELETE FROM webhook_deliveries WHERE source = 'telegram' AND delivery_id = $1",
        str(update_id),
    )


# ---------------------------------------------------------------- users, api_tokens


async def user_by_telegram_id(conn: Conn, telegram_id: int) -> queries.User | None:
    """The user who linked this Telegram account (``users.telegram_chat_id``)."""
    row = await conn.fetchrow("SELECT * FROM users WHERE telegram_chat_id = $1", telegram_id)
    return queries._user(row) if row else None


async def revoke_tokens(conn: Conn, user_id: int) -> int:
    """Delete every API token of a user; how many there were."""
    rows = await conn.fetch("DELETE FROM api_tokens WHERE user_id = $1 RETURNING id", user_id)
    return len(rows)


async def delete_token(conn: Conn, token_hash: bytes) -> None:
    await conn.execute("DELETE FROM api_tokens WHERE token_hash = $1", token_hash)


# ---------------------------------------------------------------- /status


async def live_workers(conn: Conn, live_after: datetime) -> list[WorkerRow]:
    rows = await conn.fetch(
        """SELECT w.hostname, w.arch, w.last_heartbeat_at,
                  (SELECT j.id FROM jobs j WHERE j.assigned_worker_id = w.id
                     AND j.status = 'running' ORDER BY j.id LIMIT 1) AS running_job_id
           FROM workers w WHERE w.last_heartbeat_at > $1
           ORDER BY w.arch, w.hostname""",
        live_after,
    )
    return [WorkerRow(r["hostname"], r["arch"], r["last_heartbeat_at"], r["running_job_id"])
            for r in rows]


# ---------------------------------------------------------------- outbox


async def enqueue_message(
    conn: Conn, message: OutgoingMessage, now: datetime, *, dedup_key: str | None
) -> int | None:
    """A ``sendMessage`` to a chat, in the caller's transaction, in the chat's order."""
    return await queries.enqueue(
        conn,
        channel=CHANNEL,
        kind="message",
        payload=message.as_payload(),
        now=now,
        dedup_key=dedup_key,
        ordering_key=ordering_key(message.chat_id),
    )


async def enqueue_callback_answer(
    conn: Conn, callback_id: str, text: str, alert: bool, now: datetime, *, dedup_key: str
) -> int | None:
    """An ``answerCallbackQuery``: not ordered behind the chat's messages (it expires)."""
    return await queries.enqueue(
        conn,
        channel=CHANNEL,
        kind="callback_answer",
        payload={"callback_query_id": callback_id, "text": text, "show_alert": alert},
        now=now,
        dedup_key=dedup_key,
    )


# Job changes after which a job has ended (a lost job may end as 'error').
_ENDING_EVENTS = frozenset({"finished", "requeued", "cancelled"})
_TERMINAL = ("success", "failed", "error")


async def queue_job_results(conn: Conn, changes: Sequence[JobChange], now: datetime) -> None:
    """The producer: a result message for each ended job of a pipeline started in a chat."""
    job_ids = [c.job_id for c in changes
               if c.event in _ENDING_EVENTS and c.status in _TERMINAL]
    if not job_ids:
        return
    cancelled = {c.job_id for c in changes if c.event == "cancelled"}
    rows = await conn.fetch(
        """SELECT j.id, j.pipeline_id, j.arch, j.status, j.attempt, j.elapsed_secs,
                  extract(epoch FROM j.finished_at - j.assigned_at) AS wall_secs,
                  j.build_success, j.pushpkg_success, j.successful_packages,
                  j.failed_package, j.skipped_packages, j.error_message, j.log_url,
                  j.packages, p.telegram_chat_id, p.git_branch, p.git_sha, p.github_pr,
                  coalesce(bw.hostname, (
                      SELECT w.hostname FROM job_attempts a JOIN workers w ON w.id = a.worker_id
                      WHERE a.job_id = j.id ORDER BY a.attempt DESC LIMIT 1)) AS worker
           FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id
                LEFT JOIN workers bw ON bw.id = j.built_by_worker_id
           WHERE j.id = ANY($1::int8[]) AND p.telegram_chat_id IS NOT NULL
             AND j.status = ANY($2::text[])
           ORDER BY j.id""",
        job_ids,
        list(_TERMINAL),
    )
    for r in rows:
        elapsed = r["elapsed_secs"] if r["elapsed_secs"] is not None else r["wall_secs"]
        result = JobResult(
            chat_id=r["telegram_chat_id"],
            job_id=r["id"],
            pipeline_id=r["pipeline_id"],
            arch=r["arch"],
            status=r["status"],
            attempt=r["attempt"],
            git_branch=r["git_branch"],
            git_sha=r["git_sha"],
            packages=r["packages"],
            worker=r["worker"],
            elapsed_secs=float(elapsed) if elapsed is not None else None,
            build_success=r["build_success"],
            pushpkg_success=r["pushpkg_success"],
            successful_packages=tuple(r["successful_packages"] or ()),
            failed_package=r["failed_package"],
            skipped_packages=tuple(r["skipped_packages"] or ()),
            error_message=r["error_message"],
            log_url=r["log_url"],
            github_pr=r["github_pr"],
            cancelled=r["id"] in cancelled,
        )
        await queries.enqueue(
            conn,
            channel=CHANNEL,
            kind="job_result",
            payload=result.as_payload(),
            now=now,
            dedup_key=f"telegram:job:{r['id']}:attempt:{r['attempt']}:{r['status']}",
            ordering_key=ordering_key(r["telegram_chat_id"]),
        )
