"""``run_worker``: heartbeats and job polls side by side, one job at a time.

Lifecycle of a job: poll (long poll, ``wait_secs``) -> build (``build.build_job``)
while the log uploads and heartbeats name the job -> result, retried with backoff until
the server acknowledges it (2xx) or says the job is no longer ours (409). When the
server says the job is cancelled or lost (heartbeat ``job_state``, or a 409 on a log
upload) the build's process group is stopped and the worker polls again, reporting
nothing.

Shutdown (``WorkerHandle.request_shutdown``): the worker takes no new job; a running
build may finish within ``shutdown_grace`` seconds and its result is delivered. Past
the grace (or at once with ``immediate=True``) the build is stopped and the job is
handed back with ``POST /api/worker/release`` (a protocol extension; a server without
it requeues the job once it misses this worker's heartbeats). A poll in flight when
shutdown starts is allowed to return, so a job the server hands out in that instant
is handed back instead of silently held.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import trio

from buildit.worker.build import build_job
from buildit.worker.client import WORKER_VERSION, ServerApi, encode_result, make_client
from buildit.worker.config import WorkerConfig
from buildit.worker.errors import (
    ProtocolError,
    ServerRejected,
    ServerUnavailable,
    ServerUnreachable,
    WorkerError,
    WorkerUnauthorized,
    WorkspaceError,
)
from buildit.worker.log import JobLog, LogUploader
from buildit.worker.protocol import Job, JobError, JobResult
from buildit.worker.retry import Backoff
from buildit.worker.system import MachineStats, internet_connectivity, machine_stats

logger = logging.getLogger("buildit.worker")

_MAX_RESULT_REFUSALS = 10
"""A result the server keeps refusing as malformed (4xx) is logged and given up."""


@dataclass(frozen=True)
class WorkerStatistics:
    state: str
    """idle, polling, building, reporting, handing back, stopping, stopped"""
    current_job_id: int | None
    heartbeats_sent: int
    heartbeats_failed: int
    polls: int
    jobs_started: int
    results_delivered: int
    results_dropped: int
    jobs_stopped: int
    jobs_handed_back: int


class WorkerHandle:
    """What ``nursery.start(run_worker, config)`` returns."""

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker

    def request_shutdown(self, *, immediate: bool = False) -> None:
        """Take no new job; let a running build finish within the grace period
        (``immediate``: stop it now) and hand its job back if it does not."""
        self._worker.request_shutdown(immediate=immediate)

    def statistics(self) -> WorkerStatistics:
        return self._worker.statistics()

    async def wait_stopped(self) -> None:
        """Wait until ``run_worker`` has finished."""
        await self._worker.stopped.wait()


def check_workspace(config: WorkerConfig) -> None:
    """Raise ``WorkspaceError`` unless ``ciel_path`` is a ciel workspace."""
    path = config.ciel_path
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        raise WorkspaceError(f"BUILDIT_CIEL_PATH {path} {what}")
    if not (path / ".ciel").is_dir():
        raise WorkspaceError(
            f"BUILDIT_CIEL_PATH {path} is not a ciel workspace: it has no .ciel directory "
            "(create one with `ciel init`)"
        )
    tree = config.tree_path
    if not (tree / ".git").exists():
        raise WorkspaceError(
            f"the ciel workspace {path} has no TREE git checkout: clone the packages tree "
            f"(aosc-os-abbs) into {tree}"
        )


async def run_worker(
    config: WorkerConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    task_status: trio.TaskStatus[WorkerHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the worker until shut down (see ``WorkerHandle``) or a fatal error.

    Before ``task_status.started`` it checks the workspace and sends a first heartbeat,
    so a wrong ciel path (``WorkspaceError``), an unreachable server
    (``ServerUnreachable``), a wrong secret (``WorkerUnauthorized``) or a URL that is not
    a BuildIt server (``ServerRejected``) fail the start. Later, the server going away is
    waited out; a 401 on a poll ends the worker with ``WorkerUnauthorized``.
    ``transport`` replaces the network (tests pass ``httpx.MockTransport``).
    """
    check_workspace(config)
    async with make_client(config, transport=transport) as client:
        api = ServerApi(client, config)
        await _announce(api, config)
        worker: _Worker | None = None
        try:
            async with trio.open_nursery() as nursery:
                worker = _Worker(config, api, nursery)
                nursery.start_soon(worker.heartbeat_loop)
                logger.info(
                    "worker %s (%s) serving %s", config.hostname, config.arch, config.server
                )
                task_status.started(worker.handle)
                await worker.poll_loop()
                nursery.cancel_scope.cancel()
        finally:
            if worker is not None:
                worker.finish()
        assert worker is not None
        if worker.fatal is not None:
            raise worker.fatal


async def _stats(config: WorkerConfig) -> MachineStats:
    # A few reads of /proc, /sys and one statvfs: microseconds, so no thread (which
    # would also make the virtual clock of the tests jump while waiting for it).
    await trio.lowlevel.checkpoint()
    return machine_stats(config.ciel_path)


async def _announce(api: ServerApi, config: WorkerConfig) -> None:
    stats = await _stats(config)
    internet = await internet_connectivity(config.connectivity_check)
    try:
        await api.heartbeat(stats, internet=internet)
    except ServerUnreachable as exc:
        raise ServerUnreachable(
            f"cannot reach the BuildIt server at {config.server} (BUILDIT_SERVER): {exc}"
        ) from exc
    except ServerUnavailable as exc:
        logger.warning("the server is up but not ready (%s); carrying on", exc)
    except ServerRejected as exc:
        raise ServerRejected(
            f"{exc}; is BUILDIT_SERVER ({config.server}) the address of a BuildIt server?",
            status=exc.status,
        ) from exc


async def _wait_any(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as one of ``waits`` returns."""
    async with trio.open_nursery() as nursery:

        async def one(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(one, wait)


class _JobRun:
    """One job held by this worker, from poll to acknowledged result."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.scope = trio.CancelScope()
        self.gone = trio.Event()
        self.gone_state: str | None = None
        self.build_done = False
        self.shutdown_stop = False
        self.finished = False

    def job_gone(self, state: str) -> None:
        """The server says the job is cancelled or lost: stop everything for it."""
        if self.finished or self.gone_state is not None:
            return
        self.gone_state = state
        self.gone.set()
        self.scope.cancel()

    def stop_for_shutdown(self) -> None:
        if self.build_done or self.finished:
            return
        self.shutdown_stop = True
        self.scope.cancel()


class _Worker:
    def __init__(self, config: WorkerConfig, api: ServerApi, nursery: trio.Nursery) -> None:
        self._config = config
        self._api = api
        self._nursery = nursery
        self._stopping = trio.Event()
        self._stop_now = trio.Event()
        self.stopped = trio.Event()
        self._current: _JobRun | None = None
        self._poll_scope: trio.CancelScope | None = None
        self._state = "idle"
        self.fatal: WorkerError | None = None
        self._heartbeats_sent = 0
        self._heartbeats_failed = 0
        self._polls = 0
        self._jobs_started = 0
        self._results_delivered = 0
        self._results_dropped = 0
        self._jobs_stopped = 0
        self._jobs_handed_back = 0
        self.handle = WorkerHandle(self)

    def statistics(self) -> WorkerStatistics:
        run = self._current
        return WorkerStatistics(
            state=self._state,
            current_job_id=run.job.job_id if run is not None else None,
            heartbeats_sent=self._heartbeats_sent,
            heartbeats_failed=self._heartbeats_failed,
            polls=self._polls,
            jobs_started=self._jobs_started,
            results_delivered=self._results_delivered,
            results_dropped=self._results_dropped,
            jobs_stopped=self._jobs_stopped,
            jobs_handed_back=self._jobs_handed_back,
        )

    def _backoff(self) -> Backoff:
        return Backoff(
            initial=self._config.retry_initial_delay, maximum=self._config.retry_max_delay
        )

    def finish(self) -> None:
        self._state = "stopped"
        self.stopped.set()

    # -- shutdown ---------------------------------------------------------------

    def request_shutdown(self, *, immediate: bool) -> None:
        if self.stopped.is_set():
            return
        if not self._stopping.is_set():
            self._stopping.set()
            if not immediate:
                logger.info(
                    "shutting down: no new jobs; a running build may take %gs more",
                    self._config.shutdown_grace,
                )
                self._nursery.start_soon(self._grace_timer)
        if immediate:
            self._hard_stop()

    async def _grace_timer(self) -> None:
        await trio.sleep(self._config.shutdown_grace)
        self._hard_stop()

    def _hard_stop(self) -> None:
        if self._stop_now.is_set():
            return
        logger.info("stopping now")
        self._stop_now.set()
        if self._poll_scope is not None:
            self._poll_scope.cancel()
        if self._current is not None:
            self._current.stop_for_shutdown()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self._stopping.wait()

    # -- heartbeats -------------------------------------------------------------

    async def heartbeat_loop(self) -> None:
        while True:
            await trio.sleep(self._config.heartbeat_interval)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        run = self._current
        if run is not None and (run.finished or run.gone_state is not None):
            run = None
        stats = await _stats(self._config)
        internet = await internet_connectivity(self._config.connectivity_check)
        try:
            state = await self._api.heartbeat(
                stats, internet=internet, job=run.job if run is not None else None
            )
        except WorkerError as exc:
            self._heartbeats_failed += 1
            logger.warning("heartbeat failed: %s", exc)
            return
        self._heartbeats_sent += 1
        if run is not None and state in ("cancelled", "lost") and self._current is run:
            logger.warning(
                "the server says job %d is %s: stopping its build", run.job.job_id, state
            )
            run.job_gone(state)

    # -- jobs -------------------------------------------------------------------

    async def poll_loop(self) -> None:
        backoff = self._backoff()
        while not self._stopping.is_set():
            stats = await _stats(self._config)
            if self._stopping.is_set():
                return
            started = trio.current_time()
            job: Job | None = None
            failure: WorkerError | None = None
            self._state = "polling"
            try:
                with trio.CancelScope() as scope:
                    self._poll_scope = scope
                    self._polls += 1
                    job = await self._api.poll(stats, wait_secs=self._config.poll_wait)
            except WorkerUnauthorized as exc:
                logger.error("%s", exc)
                self.fatal = exc
                return
            except (ServerUnavailable, ServerRejected, ProtocolError) as exc:
                failure = exc
            finally:
                self._poll_scope = None
                self._state = "idle"
            if scope.cancelled_caught:
                return
            if failure is not None:
                retry_after = (
                    failure.retry_after if isinstance(failure, ServerUnavailable) else None
                )
                delay = backoff.next_delay(retry_after)
                logger.warning("poll failed: %s; trying again in %.1fs", failure, delay)
                await self._sleep_unless_stopping(delay)
                continue
            backoff.reset()
            if job is None:
                if trio.current_time() - started < self._config.poll_wait / 2:
                    # The server answered at once (no long poll): do not hammer it.
                    await self._sleep_unless_stopping(self._config.idle_poll_delay)
                continue
            if self._stopping.is_set():
                await self._hand_back(job, "the worker is shutting down")
                return
            await self._run_job(job)

    async def _run_job(self, job: Job) -> None:
        config = self._config
        run = _JobRun(job)
        self._current = run
        self._jobs_started += 1
        logger.info("starting %s", job.describe())
        log = JobLog(max_bytes=config.log_max_bytes)
        log.note(
            f"BuildIt worker {WORKER_VERSION} on {config.hostname} ({config.arch}): "
            f"{job.describe()}, options {job.options!r}"
        )
        uploader = LogUploader(
            self._api, job, log,
            on_job_gone=run.job_gone,
            backoff=self._backoff(),
            flush_interval=config.log_flush_interval,
        )
        result: JobResult | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(uploader.run)
                self._state = "building"
                with run.scope:
                    try:
                        result = await build_job(job, config, log)
                    except Exception as exc:
                        # A defect or an unexpected OS failure: report it, keep serving.
                        logger.exception("job %d: the worker failed", job.job_id)
                        log.note(f"the worker failed: {exc!r}")
                        result = JobError(f"the worker failed: {exc!r}")
                run.build_done = True
                if run.gone_state is not None:
                    log.note(f"the server says this job is {run.gone_state}: build stopped")
                    log.close()
                elif result is None:
                    log.note("the worker is shutting down: build stopped, job handed back")
                    log.close()
                    with trio.move_on_after(min(config.log_flush_limit, 10.0)):
                        await uploader.wait_done()
                else:
                    log.note(f"result: {result.describe()}")
                    log.close()
                    with trio.move_on_after(config.log_flush_limit):
                        await _wait_any(uploader.wait_done, run.gone.wait)
                nursery.cancel_scope.cancel()
            if run.gone_state is not None:
                self._jobs_stopped += 1
                logger.warning(
                    "job %d is %s: build stopped, no result reported",
                    job.job_id, run.gone_state,
                )
                return
            if result is None:
                await self._hand_back(job, "the worker is shutting down")
                return
            stats = uploader.statistics()
            if stats.acknowledged < log.size:
                logger.warning(
                    "job %d: only %d of %d log bytes reached the server (%s)",
                    job.job_id, stats.acknowledged, log.size, stats.stopped or "timed out",
                )
            self._state = "reporting"
            await self._deliver_result(run, result)
        finally:
            run.finished = True
            self._current = None
            self._state = "idle"

    async def _deliver_result(self, run: _JobRun, result: JobResult) -> None:
        """Send the result until the server has it (2xx) or disowns the job (409)."""
        job_id = run.job.job_id
        backoff = self._backoff()
        refusals = 0
        while True:
            try:
                acknowledged = await self._api.job_update(run.job, result)
            except (ServerUnavailable, WorkerUnauthorized) as exc:
                failure: WorkerError = exc
                retry_after = exc.retry_after if isinstance(exc, ServerUnavailable) else None
                delay = backoff.next_delay(retry_after)
            except (ServerRejected, ProtocolError) as exc:
                refusals += 1
                if refusals >= _MAX_RESULT_REFUSALS:
                    self._results_dropped += 1
                    logger.error(
                        "the server refused the result of job %d %d times (%s); giving up. "
                        "The result was: %s",
                        job_id, refusals, exc, encode_result(result),
                    )
                    return
                failure = exc
                delay = backoff.next_delay()
            else:
                if acknowledged:
                    self._results_delivered += 1
                    logger.info("job %d reported: %s", job_id, result.describe())
                else:
                    self._results_dropped += 1
                    logger.warning(
                        "the server says job %d is no longer this worker's (409); "
                        "its result is dropped",
                        job_id,
                    )
                return
            logger.warning(
                "could not report the result of job %d: %s; trying again in %.1fs",
                job_id, failure, delay,
            )
            with trio.move_on_after(delay):
                await _wait_any(run.gone.wait, self._stop_now.wait)
            if run.gone_state is not None:
                self._results_dropped += 1
                logger.warning(
                    "job %d is %s on the server: its result is dropped", job_id, run.gone_state
                )
                return
            if self._stop_now.is_set():
                self._results_dropped += 1
                logger.error(
                    "shutting down with the result of job %d undelivered: %s",
                    job_id, encode_result(result),
                )
                return

    async def _hand_back(self, job: Job, reason: str) -> None:
        self._state = "handing back"
        backoff = self._backoff()
        outcome: str | None = None
        with trio.move_on_after(self._config.hand_back_limit):
            while outcome is None:
                try:
                    outcome = await self._api.release(job, reason)
                except (ServerUnavailable, WorkerUnauthorized) as exc:
                    delay = backoff.next_delay()
                    logger.warning(
                        "could not hand job %d back: %s; trying again in %.1fs",
                        job.job_id, exc, delay,
                    )
                    await trio.sleep(delay)
                except (ServerRejected, ProtocolError) as exc:
                    logger.error("could not hand job %d back: %s", job.job_id, exc)
                    outcome = "failed"
        if outcome == "released":
            self._jobs_handed_back += 1
            logger.info("job %d handed back to the server", job.job_id)
        elif outcome == "gone":
            logger.info("job %d was no longer this worker's", job.job_id)
        else:
            why = (
                "the server has no /api/worker/release"
                if outcome == "unsupported"
                else "it could not be handed back"
            )
            logger.warning(
                "job %d: %s; the server requeues it once it misses this worker's heartbeats",
                job.job_id, why,
            )


