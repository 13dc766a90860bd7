"""The pipeline API (Developers, by API token) and the read API of the web front end."""

from __future__ import annotations

from typing import Annotated

import trio
from pydantic import BaseModel, Field, StringConstraints
from quart import Blueprint, Response, g, request
from quart_schema import document_headers, document_querystring, document_response, validate_request

from buildit import clock, domain
from buildit.db import queries
from buildit.errors import BadRequest, NotFound
from buildit.http import logs
from buildit.http import openapi as doc
from buildit.http.common import (
    json_response,
    paging,
    query_bool,
    query_choice,
    query_int,
    require_developer,
    services,
)

bp = Blueprint("api", __name__)
ListOrString = (
    Annotated[str, StringConstraints(max_length=100_000)]
    | Annotated[list[Annotated[str, StringConstraints(max_length=200)]], Field(max_length=2000)]
)


class PipelineNewRequest(BaseModel):
    git_branch: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    packages: ListOrString
    archs: ListOrString | None = None
    options: Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")] | None = None
    git_sha: Annotated[str, StringConstraints(max_length=64)] | None = None


DEVELOPER_ONLY = frozenset({"api.pipeline_new", "api.pipeline_cancel", "api.job_restart"})


@bp.before_request
async def _developer_first() -> None:
    """The token is checked before the body is read: 401/403 whatever the body."""
    if request.endpoint in DEVELOPER_ONLY:
        g.buildit_developer = await require_developer()


def _developer() -> queries.User:
    user: queries.User = g.buildit_developer
    return user


class PipelineIdRequest(BaseModel):
    pipeline_id: Annotated[int, Field(ge=1, le=2**62, strict=True)]


class JobIdRequest(BaseModel):
    job_id: Annotated[int, Field(ge=1, le=2**62, strict=True)]


@bp.get("/api/ping")
@doc.documented(doc.PING_DOC)
async def ping() -> Response:
    return Response(b"pong", content_type="text/plain")


@bp.get("/api/health")
@document_response(doc.Health)
async def health() -> Response:
    db = services().db
    await db.read(queries.ping)
    pool = db.statistics()
    return json_response({"status": "ok",
                          "pool": {"size": pool.size, "idle": pool.idle, "max": pool.max_size}})


@bp.post("/api/pipeline/new")
@validate_request(PipelineNewRequest)
@document_response(doc.PipelineCreated)
@doc.documented(doc.DEVELOPER_DOC)
async def pipeline_new(data: PipelineNewRequest) -> Response:
    user = _developer()
    created = await services().create_pipeline(
        git_branch=data.git_branch,
        git_sha=data.git_sha,
        packages=data.packages,
        archs=data.archs,
        options=data.options,
        source="api",
        creator=user,
    )
    return json_response({"id": created.id, "jobs": created.jobs})


@bp.post("/api/pipeline/cancel")
@validate_request(PipelineIdRequest)
@document_response(doc.PipelineCancelled)
@doc.documented(doc.DEVELOPER_DOC)
async def pipeline_cancel(data: PipelineIdRequest) -> Response:
    user = _developer()
    ended = await services().cancel_pipeline(data.pipeline_id, user.github_login)
    return json_response({"cancelled_jobs": ended})


@bp.post("/api/job/restart")
@validate_request(JobIdRequest)
@document_response(doc.JobRestarted)
@doc.documented(doc.DEVELOPER_DOC)
async def job_restart(data: JobIdRequest) -> Response:
    pipeline_id = await services().restart_job(data.job_id)
    return json_response({"job_id": data.job_id, "pipeline_id": pipeline_id})


@bp.get("/api/pipeline/list")
@document_querystring(doc.PipelineListQuery)
@document_response(doc.PipelineList)
async def pipeline_list() -> Response:
    page, per_page = paging()
    result = await services().db.read(
        queries.list_pipelines,
        page=page,
        items_per_page=per_page,
        stable_only=query_bool("stable_only"),
        github_pr_only=query_bool("github_pr_only"),
        creator=request.args.get("creator") or None,
        status=query_choice("status", domain.PIPELINE_STATUSES),
    )
    return json_response(result)


@bp.get("/api/pipeline/info")
@document_querystring(doc.PipelineIdQuery)
@document_response(doc.PipelineInfo)
async def pipeline_info() -> Response:
    pipeline_id = query_int("pipeline_id")
    info = await services().db.read(queries.pipeline_info, pipeline_id)
    if info is None:
        raise NotFound(f"pipeline {pipeline_id} does not exist")
    return json_response(info)


@bp.get("/api/pipeline/status")
@document_response(doc.QueueStatus)
async def pipeline_status() -> Response:
    svc = services()
    live_after = clock.ago(svc.config.heartbeat_timeout)
    rows = await svc.db.read(queries.queue_status, [*svc.config.archs, domain.NOARCH],
                             live_after)
    return json_response(rows)


@bp.get("/api/job/list")
@document_querystring(doc.JobListQuery)
@document_response(doc.JobList)
async def job_list() -> Response:
    page, per_page = paging()
    result = await services().db.read(
        queries.list_jobs,
        page=page,
        items_per_page=per_page,
        status=query_choice("status", domain.JOB_STATUSES),
        arch=request.args.get("arch") or None,
    )
    return json_response(result)


@bp.get("/api/job/info")
@document_querystring(doc.JobIdQuery)
@document_response(doc.JobInfo)
async def job_info() -> Response:
    job_id = query_int("job_id")
    info = await services().db.read(queries.job_info, job_id)
    if info is None:
        raise NotFound(f"job {job_id} does not exist")
    return json_response(info)


@bp.get("/api/job/log")
@document_querystring(doc.JobLogQuery)
@document_headers(doc.LogRangeHeaders)
@doc.documented(doc.JOB_LOG_DOC)
async def job_log() -> Response:
    svc = services()
    job_id = query_int("job_id")
    brief = await svc.db.read(queries.job_brief, job_id)
    if brief is None:
        raise NotFound(f"job {job_id} does not exist")
    attempt = query_int("attempt", brief["attempt"] or 1, maximum=max(brief["attempt"], 1))
    total = logs.size(svc.config.log_dir, job_id, attempt)
    start = 0
    range_header = request.headers.get("Range")
    if range_header:
        unit, _, spec = range_header.partition("=")
        first, _, _last = spec.partition("-")
        if unit.strip() != "bytes" or not first.strip().isdigit():
            raise BadRequest("only 'Range: bytes=N-' is supported")
        start = int(first)
        if start > total:
            return Response(b"", status=416, headers={"Content-Range": f"bytes */{total}"})
    if total == 0:
        if brief["status"] in ("created", "running"):
            return Response(b"", status=200, content_type="text/plain; charset=utf-8")
        raise NotFound(f"job {job_id} has no log stored on this server")
    body = await trio.to_thread.run_sync(logs.read, svc.config.log_dir, job_id, attempt, start,
                                         total - start)
    headers = {"Accept-Ranges": "bytes", "X-Log-Size": str(total)}
    if range_header:
        headers["Content-Range"] = f"bytes {start}-{max(total - 1, start)}/{total}"
        return Response(body, status=206, content_type="text/plain; charset=utf-8",
                        headers=headers)
    return Response(body, status=200, content_type="text/plain; charset=utf-8", headers=headers)


@bp.get("/api/worker/list")
@document_querystring(doc.PagingQuery)
@document_response(doc.WorkerList)
async def worker_list() -> Response:
    svc = services()
    page, per_page = paging()
    result = await svc.db.read(
        queries.list_workers,
        page=page,
        items_per_page=per_page,
        live_after=clock.ago(svc.config.heartbeat_timeout),
    )
    return json_response(result)


@bp.get("/api/worker/info")
@document_querystring(doc.WorkerIdQuery)
@document_response(doc.WorkerInfo)
async def worker_info() -> Response:
    svc = services()
    worker_id = query_int("worker_id")
    info = await svc.db.read(queries.worker_info, worker_id,
                             clock.ago(svc.config.heartbeat_timeout))
    if info is None:
        raise NotFound(f"worker {worker_id} does not exist")
    return json_response(info)


@bp.get("/api/dashboard/status")
@document_response(doc.Dashboard)
async def dashboard_status() -> Response:
    svc = services()
    result = await svc.db.read(queries.dashboard, svc.config.archs,
                               clock.ago(svc.config.heartbeat_timeout))
    result["demo"] = svc.config.extra.get("BUILDIT_DEMO") == "1"  # `buildit demo`: say so
    return json_response(result)
