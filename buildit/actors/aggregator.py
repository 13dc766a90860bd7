"""The pipeline aggregator: fans job events out to whoever follows them live.

Pipeline status and the ``packages`` table are updated in the same transaction as
the job change that causes them (so no crash can leave them stale); this actor
receives the committed job events (through the listener, from every server
process) and hands them to live subscribers: the web UI's event streams and
command-line clients following a pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobEvent:
    job_id: int
    pipeline_id: int
    status: str


class Aggregator:
    def __init__(self, *, inbox_size: int = 1024, subscriber_buffer: int = 256) -> None:
        self._send, self._recv = trio.open_memory_channel[JobEvent](inbox_size)
        self._subscribers: dict[int, tuple[int | None, trio.MemorySendChannel[JobEvent]]] = {}
        self._next_id = 0
        self.subscriber_buffer = subscriber_buffer
        self.events = 0
        self.dropped = 0

    def publish(self, event: dict[str, object]) -> None:
        """Called by the listener; drops (and counts) events when the inbox is full."""
        try:
            job_event = JobEvent(
                job_id=int(event["job"]),  # type: ignore[call-overload]
                pipeline_id=int(event["pipeline"]),  # type: ignore[call-overload]
                status=str(event["status"]),
            )
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed job event %r", event)
            return
        try:
            self._send.send_nowait(job_event)
        except trio.WouldBlock:
            self.dropped += 1

    @asynccontextmanager
    async def subscribe(self, pipeline_id: int | None = None
                        ) -> AsyncIterator[trio.MemoryReceiveChannel[JobEvent]]:
        """Events of one pipeline (or all). A slow subscriber misses events, never blocks."""
        send, recv = trio.open_memory_channel[JobEvent](self.subscriber_buffer)
        self._next_id += 1
        key = self._next_id
        self._subscribers[key] = (pipeline_id, send)
        try:
            async with recv:
                yield recv
        finally:
            self._subscribers.pop(key, None)
            send.close()

    async def run(self, *, task_status: trio.TaskStatus[Aggregator] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started(self)
        async for event in self._recv:
            self.events += 1
            for pipeline_id, send in list(self._subscribers.values()):
                if pipeline_id is None or pipeline_id == event.pipeline_id:
                    try:
                        send.send_nowait(event)
                    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                        self.dropped += 1
