"""The notifier actor: delivers the durable outbox to GitHub and Telegram.

A notification is written to ``outbox`` in the same transaction as the change that
causes it. This actor leases due rows (so several processes never deliver one row at
the same time), hands each to the deliverer of its channel, and records the outcome:

- ``Delivered(result)``: done; the result (e.g. a created comment's id) is kept;
- ``Retry(error, after)``: tried again after ``after`` seconds (the server's
  ``Retry-After`` / rate-limit reset) or exponential backoff, at most
  ``max_attempts`` times, then marked failed with the reason;
- ``GiveUp(error)``: marked failed at once (a 4xx that no retry can fix).

Delivery is at least once: a crash after the remote accepted a message but before
the outcome was recorded delivers it again, so deliverers make repeats harmless
(e.g. by looking for a marker before posting a comment). Rows sharing an
``ordering_key`` are delivered one after another, oldest first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import trio

from buildit import clock
from buildit.db import Database, queries
from buildit.errors import DatabaseError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    result: Any = None


@dataclass(frozen=True)
class Retry:
    error: str
    after: float | None = None


@dataclass(frozen=True)
class GiveUp:
    error: str


Outcome = Delivered | Retry | GiveUp
Deliverer = Callable[[queries.OutboxItem], Awaitable[Outcome]]


@dataclass(frozen=True)
class NotifierStatistics:
    delivered: int
    retried: int
    failed: int


class Notifier:
    def __init__(
        self,
        db: Database,
        deliverers: Mapping[str, Deliverer],
        *,
        max_attempts: int = 10,
        base_delay: float = 2.0,
        max_delay: float = 900.0,
        lease: float = 120.0,
        poll_interval: float = 5.0,
        batch: int = 20,
        concurrency: int = 8,
    ) -> None:
        self.db = db
        self.deliverers = dict(deliverers)
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lease = lease
        self.poll_interval = poll_interval
        self.batch = batch
        self._limiter = trio.CapacityLimiter(concurrency)
        self._wake_send, self._wake_recv = trio.open_memory_channel[None](1)
        self.delivered = 0
        self.retried = 0
        self.failed = 0

    def wake(self) -> None:
        try:
            self._wake_send.send_nowait(None)
        except trio.WouldBlock:
            pass  # a wake is already pending: it covers this one

    def statistics(self) -> NotifierStatistics:
        return NotifierStatistics(self.delivered, self.retried, self.failed)

    def backoff(self, attempts: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** max(attempts - 1, 0)))

    async def run(self, *, task_status: trio.TaskStatus[Notifier] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started(self)
        if not self.deliverers:
            await trio.sleep_forever()
        while True:
            try:
                handled = await self.deliver_due()
            except DatabaseError:
                log.warning("the notifier cannot reach the database", exc_info=True)
                handled = 0
            if handled < self.batch:
                with trio.move_on_after(self.poll_interval):
                    await self._wake_recv.receive()

    async def deliver_due(self) -> int:
        """Deliver one batch of due notifications; returns how many were taken."""
        now = clock.now()
        items = await self.db.run(
            queries.lease_outbox,
            list(self.deliverers),
            now,
            now + timedelta(seconds=self.lease),
            self.batch,
        )
        async with trio.open_nursery() as nursery:
            for item in items:
                nursery.start_soon(self._deliver, item)
        return len(items)

    async def _deliver(self, item: queries.OutboxItem) -> None:
        async with self._limiter:
            try:
                with trio.fail_after(60):
                    outcome = await self.deliverers[item.channel](item)
            except trio.TooSlowError:
                outcome = Retry("the delivery took longer than 60 s")
            except Exception as exc:
                log.warning("delivering outbox %d (%s) raised", item.id, item.kind,
                            exc_info=True)
                outcome = Retry(f"{exc.__class__.__name__}: {exc}")
        try:
            await self._record(item, outcome)
        except DatabaseError:
            # The lease expires and the row is delivered again (deliveries are idempotent).
            log.warning("could not record the delivery of notification %d", item.id)

    async def _record(self, item: queries.OutboxItem, outcome: Outcome) -> None:
        now = clock.now()
        if isinstance(outcome, Delivered):
            self.delivered += 1
            await self.db.run(queries.outbox_delivered, item.id, outcome.result, now)
            if item.ordering_key is not None:
                self.wake()  # the next row of that key is due now
        elif isinstance(outcome, GiveUp) or item.attempts >= self.max_attempts:
            self.failed += 1
            reason = (outcome.error if isinstance(outcome, GiveUp)
                      else f"gave up after {item.attempts} attempts: {outcome.error}")
            log.error("notification %d (%s) failed: %s", item.id, item.kind, reason)
            await self.db.run(queries.outbox_failed, item.id, reason, now)
        else:
            self.retried += 1
            delay = outcome.after if outcome.after is not None else self.backoff(item.attempts)
            log.info("notification %d (%s) retried in %g s: %s", item.id, item.kind, delay,
                     outcome.error)
            await self.db.run(queries.outbox_retry, item.id, outcome.error,
                              now + timedelta(seconds=delay))
