"""The fleet actor: records worker heartbeats in batches and knows who holds a job.

A heartbeat costs no database write of its own, nor a task switch: the handler
keeps the latest per (hostname, arch) in the pending map (bounded by the number of
workers), and every ``flush_interval`` seconds all of them are written in one
statement. In the same crossing the actor refreshes which workers hold a running
job, so a poll can tell whether its worker still holds one without asking the
database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from buildit.db import Database, queries
from buildit.errors import DatabaseError, DatabaseUnavailable

log = logging.getLogger(__name__)
WorkerKey = tuple[str, str]  # (hostname, arch)


@dataclass(frozen=True)
class FleetStatistics:
    pending: int
    known_workers: int
    holders: int
    flushes: int
    heartbeats: int


class Fleet:
    def __init__(self, db: Database, *, flush_interval: float = 1.0) -> None:
        self.db = db
        self.flush_interval = flush_interval
        self._pending: dict[WorkerKey, queries.HeartbeatRow] = {}
        self._ids: dict[WorkerKey, int] = {}
        self._holders: set[WorkerKey] = set()
        self._flushes = 0
        self._heartbeats = 0
        self._flushed = trio.Event()

    # -- used by handlers

    def record(self, row: queries.HeartbeatRow) -> None:
        """Keep the newest heartbeat of this worker for the next flush."""
        self._heartbeats += 1
        self._pending[(row.hostname, row.arch)] = row

    def worker_id(self, key: WorkerKey) -> int | None:
        return self._ids.get(key)

    def remember(self, key: WorkerKey, worker_id: int) -> None:
        self._ids[key] = worker_id

    def holds_job(self, key: WorkerKey) -> bool:
        return key in self._holders

    def set_holding(self, key: WorkerKey, holding: bool) -> None:
        if holding:
            self._holders.add(key)
        else:
            self._holders.discard(key)

    async def wait_flushed(self) -> None:
        """Wait until the next flush has written what was recorded before."""
        event = self._flushed
        await event.wait()

    def statistics(self) -> FleetStatistics:
        return FleetStatistics(
            pending=len(self._pending),
            known_workers=len(self._ids),
            holders=len(self._holders),
            flushes=self._flushes,
            heartbeats=self._heartbeats,
        )

    # -- the actor

    async def run(self, *, task_status: trio.TaskStatus[Fleet] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        try:
            self._holders = await self.db.read(queries.worker_keys_holding_jobs)
        except DatabaseError:
            log.warning("cannot read which workers hold jobs yet; will retry at the next flush")
        task_status.started(self)
        try:
            while True:
                await trio.sleep(self.flush_interval)
                await self.flush()
        finally:
            with trio.move_on_after(3, shield=True):
                await self.flush()

    async def flush(self) -> None:
        rows = list(self._pending.values())
        self._pending.clear()
        try:
            if rows:
                self._ids.update(await self.db.run(queries.record_heartbeats, rows))
            self._holders = await self.db.read(queries.worker_keys_holding_jobs)
        except DatabaseUnavailable:
            # Keep the newest of what we could not write; it goes with the next flush.
            for row in rows:
                self._pending.setdefault((row.hostname, row.arch), row)
            log.warning("writing %d heartbeats failed; will retry", len(rows), exc_info=True)
            return
        except DatabaseError:
            # The database refused the batch itself: retrying it would block every later
            # heartbeat, so drop it (each worker sends another within its interval).
            log.error("dropping %d heartbeats the database refused", len(rows), exc_info=True)
            return
        self._flushes += 1
        flushed, self._flushed = self._flushed, trio.Event()
        flushed.set()
