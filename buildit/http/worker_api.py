"""The worker API, wire-compatible with the fleet in use today (see docs/PROTOCOL.md)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import trio
from pydantic import BaseModel, Field, StringConstraints
from quart import Blueprint, Response, request
from quart_schema import (
    document_headers,
    document_querystring,
    document_response,
    validate_request,
)

from buildit import clock, domain
from buildit.actors.scheduler import PollTicket, WorkerSpec
from buildit.db import queries
from buildit.errors import (
    BadRequest,
    Conflict,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
)
from buildit.http import logs
from buildit.http import openapi as doc
from buildit.http.common import error_response, json_response, query_int, services
from buildit.services import secret_matches

log = logging.getLogger(__name__)
bp = Blueprint("worker", __name__)

NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
Hostname = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=NO_NUL)]
Arch = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]
Secret = Annotated[str, StringConstraints(max_length=1024)]
Count = Annotated[int, Field(ge=0, le=2**62, strict=True)]
Cores = Annotated[int, Field(ge=0, le=2**31 - 1, strict=True)]
JobId = Annotated[int, Field(ge=1, le=2**62, strict=True)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text100 = Annotated[str, StringConstraints(max_length=100, pattern=NO_NUL)]
Text200 = Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)]
Text2000 = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)]
Text10000 = Annotated[str, StringConstraints(max_length=10000, pattern=NO_NUL)]


class HeartbeatRequest(BaseModel):
    hostname: Hostname
    arch: Arch
    git_commit: Text200 = ""
    memory_bytes: Count
    logical_cores: Cores
    disk_free_space_bytes: Count
    worker_secret: Secret | None = None
    performance: Annotated[int, Field(ge=-(2**62), le=2**62, strict=True)] | None = None
    internet_connectivity: bool | None = None
    # extensions
    worker_version: Text100 | None = None
    job_id: JobId | None = None
    attempt_token: Token | None = None


class PollRequest(BaseModel):
    hostname: Hostname
    arch: Arch
    worker_secret: Secret | None = None
    memory_bytes: Count
    logical_cores: Cores
    disk_free_space_bytes: Count
    # extension: hold the poll up to this many seconds
    wait_secs: Annotated[float, Field(ge=0, le=3600)] | None = None


class JobOk(BaseModel):
    build_success: bool
    successful_packages: list[Text200] = Field(
        max_length=5000
    )
    failed_package: Text200 | None = None
    skipped_packages: list[Text200] = Field(
        default_factory=list, max_length=5000
    )
    log_url: Text2000 | None = None
    elapsed_secs: Annotated[int, Field(ge=0, le=2**62, strict=True)] | None = None
    pushpkg_success: bool
    # extension
    package_versions: dict[Text200, Text200] | None = Field(default=None, max_length=5000)


class JobResultBody(BaseModel):
    Ok: JobOk | None = None
    Error: Text10000 | None = None


class JobUpdateRequest(BaseModel):
    hostname: Hostname
    arch: Arch
    job_id: JobId
    worker_secret: Secret | None = None
    result: JobResultBody
    attempt_token: Token | None = None


class ReleaseRequest(BaseModel):
    hostname: Hostname
    arch: Arch
    worker_secret: Secret | None = None
    job_id: JobId
    attempt_token: Token | None = None


def _check_secret(given: str | None) -> None:
    if not secret_matches(given, services().config.worker_secret):
        raise Unauthorized("wrong or missing worker secret")


def _check_arch(arch: str) -> None:
    if arch not in services().config.archs:
        raise Unprocessable(
            f"this server does not build for {arch!r}; it knows "
            + ", ".join(services().config.archs)
        )


@bp.post("/api/worker/heartbeat")
@validate_request(HeartbeatRequest)
@document_response(doc.JobState)
@doc.documented(doc.HEARTBEAT_DOC)
async def heartbeat(data: HeartbeatRequest) -> Response:
    _check_secret(data.worker_secret)
    _check_arch(data.arch)
    svc = services()
    state = None
    if data.job_id is not None:
        state = await svc.db.read(
            queries.attempt_state, data.job_id, data.attempt_token, data.hostname, data.arch
        )
    svc.fleet.record(
        queries.HeartbeatRow(
            hostname=data.hostname,
            arch=data.arch,
            git_commit=data.git_commit,
            worker_version=data.worker_version,
            memory_bytes=data.memory_bytes,
            logical_cores=data.logical_cores,
            disk_free_space_bytes=data.disk_free_space_bytes,
            performance=data.performance,
            internet_connectivity=data.internet_connectivity,
            seen_at=clock.now(),
        )
    )
    if state is None:
        return Response(b"", status=200)
    return json_response({"job_state": state.status})


async def _worker_id(svc: Any, data: PollRequest) -> int:
    key = (data.hostname, data.arch)
    worker_id = svc.fleet.worker_id(key)
    if worker_id is None:
        worker_id = await svc.db.run(
            queries.ensure_worker,
            data.hostname,
            data.arch,
            data.memory_bytes,
            data.logical_cores,
            data.disk_free_space_bytes,
            clock.now(),
        )
        svc.fleet.remember(key, worker_id)
    return int(worker_id)


@bp.post("/api/worker/poll")
@validate_request(PollRequest)
@document_response(doc.PollAnswer)
async def poll(data: PollRequest) -> Response:
    _check_secret(data.worker_secret)
    _check_arch(data.arch)
    svc = services()
    key = (data.hostname, data.arch)
    worker_id = await _worker_id(svc, data)
    if svc.fleet.holds_job(key):
        lost = await svc.db.run(
            queries.requeue_held_jobs, worker_id, svc.config.max_lost_attempts, clock.now()
        )
        for lost_job in lost:
            log.warning("job %d requeued: its worker %s/%s polled while holding it", lost_job,
                        *key)
        svc.fleet.set_holding(key, False)
    wait = min(data.wait_secs or 0.0, svc.config.long_poll_max)
    scheduler = svc.schedulers[domain.scheduler_arch(data.arch)]
    if wait <= 0 and scheduler.answers_idle():
        return json_response(None)  # the queue is known empty: no trip through the actor
    ticket = PollTicket(
        worker=WorkerSpec(
            worker_id=worker_id,
            hostname=data.hostname,
            arch=data.arch,
            cores=data.logical_cores,
            memory=data.memory_bytes,
            disk=data.disk_free_space_bytes,
        ),
        wait=wait,
    )
    try:
        await scheduler.submit(ticket)
        with trio.move_on_after(wait + 5):
            await ticket.ready.wait()
    finally:
        ticket.abandoned = True
    job = ticket.job
    if job is None:
        return json_response(None)
    svc.fleet.set_holding(key, True)
    return json_response(
        {
            "job_id": job.job_id,
            "git_branch": job.git_branch,
            "git_sha": job.git_sha,
            "packages": job.packages,
            "options": job.options,
            # extensions
            "arch": job.arch,
            "attempt": job.attempt,
            "attempt_token": job.attempt_token,
            "log_url": logs.log_url(svc.config.public_url, job.job_id),
        }
    )


@bp.post("/api/worker/job_update")
@validate_request(JobUpdateRequest)
@document_response(doc.Empty)
async def job_update(data: JobUpdateRequest) -> Response:
    _check_secret(data.worker_secret)
    ok, err = data.result.Ok, data.result.Error
    if (ok is None) == (err is None):
        raise BadRequest('result must be either {"Ok": {...}} or {"Error": "message"}')
    if ok is not None:
        result = queries.JobResult(
            build_success=ok.build_success,
            pushpkg_success=ok.pushpkg_success,
            successful_packages=tuple(ok.successful_packages),
            failed_package=ok.failed_package,
            skipped_packages=tuple(ok.skipped_packages),
            log_url=ok.log_url,
            elapsed_secs=ok.elapsed_secs,
            package_versions=ok.package_versions,
        )
    else:
        result = queries.JobResult(error=err)
    svc = services()
    outcome = await svc.db.run(
        queries.report_result,
        job_id=data.job_id,
        hostname=data.hostname,
        arch=data.arch,
        token=data.attempt_token,
        result=result,
        default_log_url=logs.log_url(svc.config.public_url, data.job_id),
        now=clock.now(),
    )
    svc.fleet.set_holding((data.hostname, data.arch), False)
    if not outcome.duplicate:
        log.info("job %d finished as %s (pipeline %d is %s), reported by %s/%s",
                 outcome.job_id, outcome.status, outcome.pipeline_id, outcome.pipeline_status,
                 data.hostname, data.arch)
    return json_response({})


@bp.post("/api/worker/release")
@validate_request(ReleaseRequest)
@document_response(doc.Empty)
async def release(data: ReleaseRequest) -> Response:
    """Extension: a worker shutting down hands its job back for another worker at once."""
    _check_secret(data.worker_secret)
    svc = services()
    state = await svc.db.read(
        queries.attempt_state, data.job_id, data.attempt_token, data.hostname, data.arch
    )
    if state.status != "running":
        raise Conflict(f"job {data.job_id} is no longer assigned to this worker")
    token = data.attempt_token
    if token is None:
        token = await svc.db.read(queries.current_token, data.job_id)
    if token is None:
        raise Conflict(f"job {data.job_id} is no longer assigned to this worker")
    released = await svc.db.run(queries.release_claim, data.job_id, token, clock.now())
    svc.fleet.set_holding((data.hostname, data.arch), False)
    if not released:
        raise Conflict(f"job {data.job_id} is no longer assigned to this worker")
    log.info("job %d handed back by %s/%s", data.job_id, data.hostname, data.arch)
    return json_response({})


@bp.post("/api/worker/log")
@document_querystring(doc.LogUploadQuery)
@document_headers(doc.LogUploadHeaders)
@document_response(doc.LogSize)
@doc.documented(doc.LOG_UPLOAD_DOC)
async def upload_log() -> Response:
    """Extension: append a chunk of a running job's log at a byte offset."""
    svc = services()
    _check_secret(request.headers.get("X-Worker-Secret"))
    job = query_int("job_id")
    offset = query_int("offset", minimum=0)
    token = request.args.get("attempt_token") or None
    hostname = request.headers.get("X-Worker-Hostname", "")
    arch = request.headers.get("X-Worker-Arch", "")
    chunk = await request.get_data(cache=False)
    if not isinstance(chunk, bytes):
        raise BadRequest("the log chunk must be raw bytes")
    if len(chunk) > logs.MAX_CHUNK:
        raise PayloadTooLarge(f"a log chunk may be at most {logs.MAX_CHUNK} bytes")
    try:
        attempt, stored = await svc.db.read(queries.log_target, job, token, hostname, arch)
    except Conflict:
        state = await svc.db.read(queries.attempt_state, job, token, hostname, arch)
        return error_response(
            f"job {job} is no longer assigned to this worker ({state.status})",
            409,
            job_state=state.status,
        )
    size = await logs.append(svc.config.log_dir, job, attempt, offset, chunk,
                             max_bytes=svc.config.log_max_bytes, stored=stored)
    if size is None:
        current = logs.size(svc.config.log_dir, job, attempt)
        return error_response(
            f"offset {offset} does not match the stored log size {current}; resend from there",
            409,
            size=current,
        )
    await svc.db.run(queries.set_log_size, job, attempt, size)
    return json_response({"size": size})
