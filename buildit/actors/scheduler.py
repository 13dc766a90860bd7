"""The scheduler actor: one per worker architecture, hands jobs to polling workers.

Assignment is push-fast, pull-safe. A worker's poll arrives as a ``PollTicket``;
when no job is runnable the ticket waits (long poll) and the moment a job becomes
runnable (a wake: new pipeline, restart, requeue; from this process or, through
LISTEN/NOTIFY, another one) the scheduler claims one for the oldest waiting worker
that meets its requirements. The claim itself is one atomic SQL statement
(``FOR UPDATE SKIP LOCKED``), so several processes never hand one job out twice.

The scheduler remembers whether its queue may hold runnable jobs; while it knows
the queue is empty, polls are answered without asking the database.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from buildit import clock, domain
from buildit.db import Database, queries
from buildit.errors import DatabaseError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    worker_id: int
    hostname: str
    arch: str
    cores: int
    memory: int
    disk: int


@dataclass(eq=False)
class PollTicket:
    """One waiting poll. The handler waits on ``ready``; the scheduler fills ``job``."""

    worker: WorkerSpec
    wait: float
    ready: trio.Event = field(default_factory=trio.Event)
    job: queries.ClaimedJob | None = None
    abandoned: bool = False

    def deliver(self, job: queries.ClaimedJob | None) -> None:
        self.job = job
        self.ready.set()


@dataclass(frozen=True)
class SchedulerStatistics:
    arch: str
    waiting: int
    maybe_runnable: bool
    claims: int
    idle_answers: int


class Scheduler:
    def __init__(
        self, db: Database, arch: str, *, resync_interval: float = 2.0, inbox_size: int = 64
    ) -> None:
        self.db = db
        self.arch = arch
        self.archs: Sequence[str] = domain.claimable_archs(arch)
        self.resync_interval = resync_interval
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[PollTicket | None](
            inbox_size
        )
        # Wakes are idempotent: when one is already pending, another adds nothing, so a
        # full wake channel drops the new one (the pending wake is processed later).
        self._wake_send, self._wake_recv = trio.open_memory_channel[None](1)
        self._waiters: deque[PollTicket] = deque()
        self._maybe_runnable = True  # until the database says otherwise
        self._wakes = 0  # counts wakes, so an answer older than a wake cannot undo it
        self._claims = 0
        self._idle_answers = 0

    # -- used by other actors and handlers

    async def submit(self, ticket: PollTicket) -> None:
        await self._inbox_send.send(ticket)

    def wake(self) -> None:
        self._wakes += 1
        self._maybe_runnable = True
        try:
            self._wake_send.send_nowait(None)
        except trio.WouldBlock:
            pass  # a wake is already pending

    def answers_idle(self) -> bool:
        """Whether the queue is known empty, so a poll that will not wait gets ``null``
        at once, without a trip through the actor (counted as an idle answer)."""
        if self._maybe_runnable:
            return False
        self._idle_answers += 1
        return True

    def statistics(self) -> SchedulerStatistics:
        return SchedulerStatistics(
            arch=self.arch,
            waiting=sum(1 for t in self._waiters if not t.abandoned),
            maybe_runnable=self._maybe_runnable,
            claims=self._claims,
            idle_answers=self._idle_answers,
        )

    # -- the actor

    async def run(self, *, task_status: trio.TaskStatus[Scheduler] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        self._maybe_runnable = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._forward_wakes)
            task_status.started(self)
            try:
                resync_at = trio.current_time() + self.resync_interval
                while True:
                    # Only the wait is bounded: serving must never be cancelled half-way
                    # (a claim committed but neither delivered nor handed back is lost).
                    received, ticket = False, None
                    with trio.move_on_at(resync_at):
                        ticket = await self._inbox_recv.receive()
                        received = True
                    if received:
                        if ticket is None:
                            await self._serve_waiters()
                        else:
                            await self._serve_new(ticket)
                    if trio.current_time() >= resync_at:
                        # Every interval, busy or not: a NOTIFY may have been missed.
                        if not self._maybe_runnable:
                            await self._learn_runnable()
                            if self._maybe_runnable:
                                await self._serve_waiters()
                        self._purge()
                        resync_at = trio.current_time() + self.resync_interval
            finally:
                # Hand every waiting poll back empty: the worker will poll again.
                for waiting in self._waiters:
                    if not waiting.abandoned:
                        waiting.deliver(None)
                self._waiters.clear()
                nursery.cancel_scope.cancel()

    async def _forward_wakes(self) -> None:
        async for _ in self._wake_recv:
            self._maybe_runnable = True
            await self._inbox_send.send(None)

    def _purge(self) -> None:
        while self._waiters and self._waiters[0].abandoned:
            self._waiters.popleft()
        if len(self._waiters) > 64 and any(t.abandoned for t in self._waiters):
            self._waiters = deque(t for t in self._waiters if not t.abandoned)

    async def _serve_new(self, ticket: PollTicket) -> None:
        if ticket.abandoned:
            return
        if self._maybe_runnable:
            job = await self._claim_for(ticket)
            if job is not None or ticket.abandoned:
                return
        else:
            self._idle_answers += 1
        if ticket.wait > 0:
            self._waiters.append(ticket)
        else:
            ticket.deliver(None)

    async def _serve_waiters(self) -> None:
        self._purge()
        for ticket in list(self._waiters):
            if not self._maybe_runnable:
                break
            if ticket.abandoned:
                continue
            job = await self._claim_for(ticket)
            if job is not None:
                self._waiters.remove(ticket)
        self._purge()

    async def _learn_runnable(self) -> None:
        """Ask the database whether anything is runnable; a wake meanwhile is newer news."""
        wakes = self._wakes
        runnable = await self._runnable_exists()
        if self._wakes == wakes:
            self._maybe_runnable = runnable

    async def _runnable_exists(self) -> bool:
        try:
            return await self.db.read(queries.runnable_exists, self.archs)
        except DatabaseError:
            log.warning("cannot ask the database for runnable %s jobs", self.arch)
            return True  # unknown: keep trying

    async def _claim_for(self, ticket: PollTicket) -> queries.ClaimedJob | None:
        """Claim a job for ``ticket``; deliver it, or learn that the queue is empty."""
        w = ticket.worker
        wakes = self._wakes
        try:
            claim = await self.db.run(
                queries.claim_next,
                worker_id=w.worker_id,
                archs=self.archs,
                cores=w.cores,
                memory=w.memory,
                disk=w.disk,
                now=clock.now(),
            )
        except DatabaseError:
            log.warning("claiming a %s job failed; the poll gets no job", self.arch, exc_info=True)
            return None
        if self._wakes == wakes:
            # The claim also saw whether anything else is runnable (for this worker's
            # successor, or bigger workers): when not, the queue is known empty.
            self._maybe_runnable = claim.more_runnable
        job = claim.job
        if job is None:
            return None
        if ticket.abandoned:
            # The poll went away while we claimed: give the job back, not a lost attempt.
            try:
                await self.db.run(queries.release_claim, job.job_id, job.attempt_token,
                                  clock.now())
            except DatabaseError:
                log.warning("could not hand back job %d; the watchdog will requeue it",
                            job.job_id)
            return None
        self._claims += 1
        log.info("job %d (%s) assigned to %s/%s, attempt %d",
                 job.job_id, job.arch, w.hostname, w.arch, job.attempt)
        ticket.deliver(job)
        return job
