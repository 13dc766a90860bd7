"""The heartbeat watchdog: requeues the jobs of workers that went silent.

Exactly one server process runs it at a time: the actor holds a PostgreSQL
session advisory lock on a dedicated connection. When that process dies its
connection closes, the lock is freed, and another process's watchdog, trying
every period, takes over.

Being the one periodic singleton, it also keeps tables from growing forever: once
an hour (and when it becomes the leader) it deletes webhook deliveries older than a
week. They only serve to recognise a GitHub delivery or Telegram update sent again:
Telegram keeps undelivered updates for 24 hours, GitHub offers to redeliver for 3 days.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import trio

from buildit import clock
from buildit.db import Database, dedicated_connection, housekeeping, queries
from buildit.errors import DatabaseError

log = logging.getLogger(__name__)
WATCHDOG_LOCK_KEY = 7405846002
DELIVERY_RETENTION = 7 * 24 * 3600.0  # s a webhook delivery id is kept
PRUNE_INTERVAL = 3600.0  # s between two prunings
PRUNE_BATCH = 10_000  # rows deleted per transaction


@dataclass(frozen=True)
class WatchdogStatistics:
    leader: bool
    ticks: int
    requeued: int
    prunings: int = 0
    deliveries_pruned: int = 0


class Watchdog:
    def __init__(
        self,
        db: Database,
        *,
        timeout: float,
        period: float,
        max_lost_attempts: int,
        on_requeue: Callable[[list[int]], None] | None = None,
        delivery_retention: float = DELIVERY_RETENTION,
        prune_interval: float = PRUNE_INTERVAL,
        prune_batch: int = PRUNE_BATCH,
    ) -> None:
        self.db = db
        self.timeout = timeout
        self.period = period
        self.max_lost_attempts = max_lost_attempts
        self.on_requeue = on_requeue
        self.delivery_retention = delivery_retention
        self.prune_interval = prune_interval
        self.prune_batch = prune_batch
        self.leader = False
        self.ticks = 0
        self.requeued = 0
        self.prunings = 0
        self.deliveries_pruned = 0
        self._became_leader = trio.Event()

    def statistics(self) -> WatchdogStatistics:
        return WatchdogStatistics(leader=self.leader, ticks=self.ticks, requeued=self.requeued,
                                  prunings=self.prunings,
                                  deliveries_pruned=self.deliveries_pruned)

    async def wait_leader(self) -> None:
        await self._became_leader.wait()

    async def run(self, *, task_status: trio.TaskStatus[Watchdog] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started(self)
        while True:
            try:
                async with dedicated_connection(
                    self.db.dsn, application_name=f"buildit-watchdog:{os.getpid()}"
                ) as conn:
                    while not await conn.fetchval(
                        "SELECT pg_try_advisory_lock($1)", WATCHDOG_LOCK_KEY
                    ):
                        await trio.sleep(self.period)
                    self.leader = True
                    self._became_leader.set()
                    log.info("this process now runs the heartbeat watchdog")
                    try:
                        next_prune = trio.current_time()
                        while True:
                            await self.tick()
                            if trio.current_time() >= next_prune:
                                await self.prune()
                                next_prune = trio.current_time() + self.prune_interval
                            await trio.sleep(self.period)
                            # The lock lives as long as this connection: check it is alive.
                            await conn.fetchval("SELECT 1")
                    finally:
                        self.leader = False
                        self._became_leader = trio.Event()
            except DatabaseError:
                log.warning("watchdog lost its database connection; retrying", exc_info=True)
                await trio.sleep(self.period)

    async def tick(self) -> list[int]:
        ids = await self.db.run(
            queries.requeue_silent,
            clock.ago(self.timeout),
            self.max_lost_attempts,
            clock.now(),
        )
        self.ticks += 1
        if ids:
            self.requeued += len(ids)
            for job_id in ids:
                log.warning("job %d requeued: its worker sent no heartbeat for %g s",
                            job_id, self.timeout)
            if self.on_requeue:
                self.on_requeue(ids)
        return ids

    async def prune(self) -> int:
        """Delete webhook deliveries older than the retention, a batch per transaction."""
        before = clock.ago(self.delivery_retention)
        total = 0
        while True:
            deleted = await self.db.run(housekeeping.prune_webhook_deliveries, before,
                                        self.prune_batch)
            total += deleted
            if deleted < self.prune_batch:
                break
        self.prunings += 1
        self.deliveries_pruned += total
        if total:
            log.info("deleted %d webhook deliveries older than %g days", total,
                     self.delivery_retention / 86400)
        return total
