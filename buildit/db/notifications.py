"""ASYNCIO-FLAVOURED: which notifications a job change puts in the outbox.

``job_changed`` runs inside the transaction of every job change (created, started,
finished, requeued, cancelled, restarted, handed back) of a pipeline that has a front
end, so a notification is stored exactly when the change commits. Changes the caller
knows concern no front end (``front_end=False``) are dropped at once, so such job
changes may run as single statements outside a transaction. Each front end that
notifies adds its producer below; a producer looks at the pipeline (``github_pr``,
``telegram_chat_id``, ...) and enqueues rows with ``queries.enqueue`` when they
concern it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Conn = Any


@dataclass(frozen=True)
class JobChange:
    job_id: int
    pipeline_id: int
    status: str  # the job's status after the change
    event: str  # created | started | finished | requeued | cancelled | restarted | handed_back
    # False when the caller knows the pipeline concerns no front end (no GitHub PR, no
    # Telegram chat): then no producer needs to look, which saves a query each.
    front_end: bool = True


async def job_changed(conn: Conn, changes: Sequence[JobChange], now: datetime) -> None:
    """Queue the notifications these committed-together job changes cause."""
    changes = [c for c in changes if c.front_end]
    if not changes:
        return
    if not conn.is_in_transaction():
        raise RuntimeError("job notifications must be queued in the job change's transaction")
    # Front ends add their producers here, e.g.
    #   await github_notifications(conn, changes, now)
    from buildit.db import telegram_queries  # here: telegram_queries imports queries

    await telegram_queries.queue_job_results(conn, changes, now)
    from buildit.db import github_queries  # here: github_queries imports queries

    await github_queries.job_changed(conn, changes, now)
