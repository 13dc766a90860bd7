"""ASYNCIO-FLAVOURED: deleting rows nobody needs any more (run by the watchdog).

Like ``buildit.db.queries``: each function takes an asyncpg connection first and is
called from trio through ``Database.run``. SQL is literal text; times are passed in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

Conn = Any  # asyncpg.Connection


async def prune_webhook_deliveries(conn: Conn, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` webhook deliveries (GitHub delivery ids, Telegram update
    ids) received before ``before``; returns how many went."""
    deleted: int = await conn.fetchval(
        """WITH gone AS (
               DELETE FROM webhook_deliveries WHERE (source, delivery_id) IN (
                   SELECT source, delivery_id FROM webhook_deliveries
                   WHERE received_at < $1 LIMIT $2)
               RETURNING 1)
           SELECT count(*) FROM gone""",
        before, limit,
    )
    return deleted
