"""A job's build log: kept in memory up to a cap, uploaded to the server as it grows.

``JobLog`` is written synchronously by the step runner (writing never waits on the
network, so a slow server never stalls ciel's output pipes). ``LogUploader`` sends
what is new to ``POST /api/worker/log`` at the byte offset the server has; on
``409 {"size": n}`` it resends from ``n``, which is why the whole log is kept (at most
``max_bytes``). Output past the cap is dropped and the log says so, with a marker
where the cut is and a last line counting what was dropped; the job goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import trio

from buildit.worker.client import (
    MAX_LOG_CHUNK,
    LogAppended,
    LogJobGone,
    LogOffsetMismatch,
    LogRefused,
    ServerApi,
)
from buildit.worker.errors import ServerUnavailable, WorkerError
from buildit.worker.protocol import Job
from buildit.worker.retry import Backoff

logger = logging.getLogger("buildit.worker.log")

_RESERVE = 8192
"""Room kept past the output cap for the worker's own closing lines."""


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class JobLog:
    """The bytes of one job's log. ``max_bytes`` bounds its total size."""

    def __init__(self, *, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._output_limit = max(0, max_bytes - min(_RESERVE, max_bytes // 4))
        self._data = bytearray()
        self._truncated = False
        self._dropped = 0
        self._closed = False
        self._waiter: trio.Event | None = None

    @property
    def size(self) -> int:
        return len(self._data)

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def truncated(self) -> bool:
        return self._truncated

    @property
    def dropped_bytes(self) -> int:
        return self._dropped

    @property
    def closed(self) -> bool:
        return self._closed

    def getvalue(self) -> bytes:
        return bytes(self._data)

    def read(self, offset: int, limit: int) -> bytes:
        return bytes(self._data[offset : offset + limit])

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def write(self, data: bytes) -> None:
        """Append build output. Past the cap it is counted and dropped."""
        if self._closed or not data:
            return
        if self._truncated:
            self._dropped += len(data)
            return
        room = self._output_limit - len(self._data)
        if len(data) <= room:
            self._data += data
        else:
            self._data += data[:room]
            self._dropped += len(data) - room
            self._truncated = True
            self._data += (
                f"\n[buildit] ---- log truncated: the log reached the worker's limit of "
                f"{self._max_bytes} bytes (BUILDIT_LOG_MAX_BYTES); further build output "
                f"is dropped ----\n"
            ).encode()
        self._wake()

    def note(self, text: str) -> None:
        """A line of the worker's own (commands, timings, outcome).

        After truncation these still go in, in the room kept for them, as long as
        the log stays under ``max_bytes``.
        """
        line = f"[buildit {_stamp()}] {text}\n".encode()
        if self._closed:
            return
        if not self._truncated:
            self.write(line)
        elif len(self._data) + len(line) <= self._max_bytes:
            self._data += line
            self._wake()

    def close(self) -> None:
        """No more writes. A truncated log ends with the count of dropped bytes."""
        if self._closed:
            return
        if self._truncated:
            self.note(
                f"log truncated: {self._dropped} bytes of build output were dropped "
                f"(limit {self._max_bytes} bytes)"
            )
        self._closed = True
        self._wake()

    async def wait_beyond(self, offset: int) -> None:
        """Wait until the log is longer than ``offset`` or closed."""
        while len(self._data) <= offset and not self._closed:
            if self._waiter is None:
                self._waiter = trio.Event()
            await self._waiter.wait()


@dataclass(frozen=True)
class UploaderStatistics:
    acknowledged: int
    requests: int
    resends: int
    failures: int
    stopped: str | None


class LogUploader:
    """Uploads a ``JobLog`` for one job until it is closed and fully acknowledged.

    ``on_job_gone(state)`` is called when the server says the job is no longer this
    attempt's (``409 {"job_state": ...}``). Transient failures are retried with
    backoff; a refusal (413 too large, 404 no log endpoint) stops the upload and the
    build goes on.
    """

    def __init__(
        self,
        api: ServerApi,
        job: Job,
        log: JobLog,
        *,
        on_job_gone: Callable[[str], None],
        backoff: Backoff,
        flush_interval: float,
    ) -> None:
        self._api = api
        self._job = job
        self._log = log
        self._on_job_gone = on_job_gone
        self._backoff = backoff
        self._flush_interval = flush_interval
        self._acked = 0
        self._requests = 0
        self._resends = 0
        self._failures = 0
        self._stopped: str | None = None
        self._done = trio.Event()

    def statistics(self) -> UploaderStatistics:
        return UploaderStatistics(
            acknowledged=self._acked,
            requests=self._requests,
            resends=self._resends,
            failures=self._failures,
            stopped=self._stopped,
        )

    async def wait_done(self) -> None:
        """Wait until the closed log is all on the server, or uploading stopped."""
        await self._done.wait()

    def _stop(self, reason: str) -> None:
        self._stopped = reason
        self._done.set()

    async def run(self) -> None:
        log = self._log
        job_id = self._job.job_id
        while True:
            if self._acked >= log.size:
                if log.closed:
                    self._done.set()
                    return
                await log.wait_beyond(self._acked)
                if not log.closed:
                    # Let output gather a little: one request per flush, not per line.
                    await trio.sleep(self._flush_interval)
                continue
            offset = self._acked
            chunk = log.read(offset, MAX_LOG_CHUNK)
            self._requests += 1
            try:
                outcome = await self._api.append_log(self._job, offset, chunk)
            except WorkerError as exc:
                self._failures += 1
                retry_after = exc.retry_after if isinstance(exc, ServerUnavailable) else None
                delay = self._backoff.next_delay(retry_after)
                logger.warning(
                    "log upload of job %d failed at byte %d: %s; retrying in %.1fs",
                    job_id, offset, exc, delay,
                )
                await trio.sleep(delay)
                continue
            self._backoff.reset()
            if isinstance(outcome, LogAppended):
                if outcome.size != offset + len(chunk):
                    logger.warning(
                        "log of job %d: server reports %d bytes after appending at %d+%d",
                        job_id, outcome.size, offset, len(chunk),
                    )
                self._acked = min(outcome.size, log.size)
            elif isinstance(outcome, LogOffsetMismatch):
                self._resends += 1
                if outcome.size > log.size:
                    logger.error(
                        "log of job %d: the server holds %d bytes, more than the %d written; "
                        "stopping the upload",
                        job_id, outcome.size, log.size,
                    )
                    self._stop(f"server holds {outcome.size} bytes, more than written")
                    return
                logger.info(
                    "log of job %d: the server has %d bytes, not %d; resending from there",
                    job_id, outcome.size, offset,
                )
                self._acked = outcome.size
            elif isinstance(outcome, LogJobGone):
                logger.warning(
                    "log upload of job %d: the server says the job is %s",
                    job_id, outcome.job_state,
                )
                self._stop(f"job {outcome.job_state}")
                self._on_job_gone(outcome.job_state)
                return
            elif isinstance(outcome, LogRefused):
                logger.warning(
                    "log upload of job %d refused (%d: %s); the build goes on without it",
                    job_id, outcome.status, outcome.message,
                )
                self._stop(f"refused with {outcome.status}: {outcome.message}")
                return
