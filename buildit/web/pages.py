"""The read-only pages: dashboard, pipelines, jobs, workers, packages.

Everyone (Anonymous included) may read them. Each page is complete without
JavaScript; ``static/app.js`` keeps statuses and logs live (``live.py``).
"""

from __future__ import annotations

import codecs
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import trio
from quart import Response, render_template, request, url_for

from buildit import clock, domain
from buildit.db import queries, web_queries
from buildit.errors import NotFound
from buildit.http import logs
from buildit.web import auth, charts, formatting
from buildit.web.blueprint import bp
from buildit.web.pending import LiveWorker, QueueFacts, pending_reason
from buildit.web.state import services, web_state

PIPELINES_PER_PAGE = 25
WORKER_HISTORY_PER_PAGE = 50
PACKAGES_PER_PAGE = 50
LOG_TAIL_BYTES = 256 * 1024
CHART_DAYS = 14
DURATION_DAYS = 30
CHART_TTL = 60.0


def arg_int(name: str, default: int = 1, *, maximum: int = 10**6) -> int:
    """A lenient page-number style argument: anything odd falls back to the default."""
    raw = request.args.get(name, "")
    try:
        value = int(raw)
    except ValueError:
        return default
    return value if 1 <= value <= maximum else default


def arg_flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "on", "yes")


def page_count(total: int, per_page: int) -> int:
    return max(1, math.ceil(total / per_page))


def live_after() -> datetime:
    return clock.ago(services().config.heartbeat_timeout)


async def _html(template: str, status: int = 200, **context: Any) -> Response:
    body = await render_template(template, **context)
    return Response(body, status=status, content_type="text/html; charset=utf-8")


# ---------------------------------------------------------------- dashboard


async def _cached(key: str, compute: Any) -> Any:
    cache = web_state().chart_cache
    hit = cache.get(key)
    if hit is not None and trio.current_time() - hit[0] < CHART_TTL:
        return hit[1]
    value = await compute()
    cache[key] = (trio.current_time(), value)
    return value


async def _charts() -> tuple[charts.Chart, charts.Chart]:
    svc = services()
    now = clock.now()
    today = now.astimezone(UTC).date()
    days = charts.last_days(today, CHART_DAYS)
    since = datetime.combine(days[0], datetime.min.time(), UTC)
    per_day = await svc.db.read(web_queries.finished_per_day, since)
    durations = await svc.db.read(web_queries.durations_by_arch,
                                  now - timedelta(days=DURATION_DAYS))
    archs = svc.config.archs
    return (
        charts.daily_chart(days, [(d.day, d.arch, d.finished) for d in per_day], archs),
        charts.durations_chart(
            [(d.arch, d.builds, d.median_secs, d.p90_secs) for d in durations], archs),
    )


@bp.get("/")
async def dashboard() -> Response:
    svc = services()
    after = live_after()
    summary = await svc.db.read(queries.dashboard, svc.config.archs, after)
    workers = {w.arch: w for w in await svc.db.read(web_queries.workers_by_arch, after)}
    rows = []
    for q in summary["by_arch"]:
        w = workers.get(q["arch"])
        rows.append({**q, "live": w.live if w else 0, "busy": w.busy if w else 0,
                     "total_workers": w.total if w else 0, "cores": w.cores if w else 0,
                     "memory": w.memory if w else 0})
    daily, durations = await _cached("charts", _charts)
    recent = await svc.db.read(
        queries.list_pipelines, page=1, items_per_page=8, stable_only=False,
        github_pr_only=False, creator=None, status=None,
    )
    return await _html("web/dashboard.html", nav="dashboard", summary=summary, rows=rows,
                       daily=daily, durations=durations, recent=recent["items"],
                       arch_class=lambda a: charts.arch_class(a, svc.config.archs))


# ---------------------------------------------------------------- pipelines


@bp.get("/pipelines")
async def pipelines() -> Response:
    user = await auth.load_user()
    status = request.args.get("status") or None
    if status not in domain.PIPELINE_STATUSES:
        status = None
    stable, pr, mine = arg_flag("stable"), arg_flag("pr"), arg_flag("mine") and user is not None
    filters = {"stable": stable, "pr": pr, "mine": mine, "status": status}
    page = arg_int("page")
    result = await services().db.read(
        queries.list_pipelines,
        page=page,
        items_per_page=PIPELINES_PER_PAGE,
        stable_only=stable,
        github_pr_only=pr,
        creator=user.github_login if mine and user else None,
        status=status,
    )
    query: dict[str, Any] = {k: ("1" if v is True else v) for k, v in filters.items() if v}

    def page_url(number: int) -> str:
        return url_for("web.pipelines", **query, page=number)

    return await _html(
        "web/pipelines.html", nav="pipelines", items=result["items"],
        total=result["total_items"], page=page,
        pages=page_count(result["total_items"], PIPELINES_PER_PAGE), page_url=page_url,
        filters=filters, statuses=domain.PIPELINE_STATUSES,
    )


async def pending_reasons(job_ids: list[int]) -> dict[int, str]:
    if not job_ids:
        return {}
    facts = await services().db.read(web_queries.pending_facts, job_ids, live_after())
    return {
        f.job_id: pending_reason(QueueFacts(
            arch=f.arch, requirements=f.requirements, jobs_ahead=f.jobs_ahead,
            workers=[LiveWorker(c, m, d, b) for c, m, d, b in f.workers],
        ))
        for f in facts
    }


async def pipeline_context(pipeline_id: int) -> dict[str, Any]:
    info = await services().db.read(queries.pipeline_info, pipeline_id)
    if info is None:
        raise NotFound(f"pipeline {pipeline_id} does not exist")
    config = web_state().config
    reasons = await pending_reasons(
        [j["job_id"] for j in info["jobs"] if j["status"] == "created"])
    return {
        "p": info,
        "reasons": reasons,
        "links": formatting.github_links(config.github_web_url, config.abbs_repo,
                                         info["git_branch"], info["git_sha"],
                                         info["github_pr"]),
    }


@bp.get("/pipelines/<int:pipeline_id>")
async def pipeline(pipeline_id: int) -> Response:
    context = await pipeline_context(pipeline_id)
    return await _html("web/pipeline.html", nav="pipelines", **context)


# ---------------------------------------------------------------- jobs


def _read_log_tail(job_id: int, attempt: int) -> tuple[str, int, int, bool]:
    """(text, offset after it, total size, truncated): the tail of a stored log."""
    log_dir = services().config.log_dir
    total = logs.size(log_dir, job_id, attempt)
    if total == 0:
        return "", 0, 0, False
    start = max(0, total - LOG_TAIL_BYTES)
    data = logs.read(log_dir, job_id, attempt, start, total - start)
    truncated = start > 0
    if truncated:
        newline = data.find(b"\n")
        if 0 <= newline < len(data) - 1:
            data = data[newline + 1:]
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = decoder.decode(data, final=False)
    pending = decoder.getstate()[0]
    # an incomplete UTF-8 sequence at the end is read again by the live follower
    return text, start + (total - start) - len(pending), total, truncated


async def job_context(job_id: int) -> dict[str, Any]:
    info = await services().db.read(queries.job_info, job_id)
    if info is None:
        raise NotFound(f"job {job_id} does not exist")
    config = web_state().config
    reasons = await pending_reasons([job_id] if info["status"] == "created" else [])
    return {
        "j": info,
        "reason": reasons.get(job_id),
        "links": formatting.github_links(config.github_web_url, config.abbs_repo,
                                         info["git_branch"], info["git_sha"],
                                         info["github_pr"]),
    }


@bp.get("/jobs/<int:job_id>")
async def job(job_id: int) -> Response:
    context = await job_context(job_id)
    info = context["j"]
    attempt = info["attempt"] or 1
    log_text, log_offset, log_total, truncated = await trio.to_thread.run_sync(
        _read_log_tail, job_id, attempt)
    return await _html(
        "web/job.html", nav="pipelines", **context, log_text=log_text, log_offset=log_offset,
        log_total=log_total, log_truncated=truncated, log_attempt=attempt,
    )


# ---------------------------------------------------------------- workers


@bp.get("/workers")
async def workers() -> Response:
    page = arg_int("page")
    result = await services().db.read(queries.list_workers, page=page, items_per_page=100,
                                      live_after=live_after())
    return await _html(
        "web/workers.html", nav="workers", items=result["items"], page=page,
        pages=page_count(result["total_items"], 100), total=result["total_items"],
        page_url=lambda n: url_for("web.workers", page=n),
    )


@bp.get("/workers/<int:worker_id>")
async def worker(worker_id: int) -> Response:
    svc = services()
    info = await svc.db.read(queries.worker_info, worker_id, live_after())
    if info is None:
        raise NotFound(f"worker {worker_id} does not exist")
    page = arg_int("page")
    history = await svc.db.read(web_queries.worker_history, worker_id,
                                WORKER_HISTORY_PER_PAGE, (page - 1) * WORKER_HISTORY_PER_PAGE)
    return await _html(
        "web/worker.html", nav="workers", w=info, history=history["items"], page=page,
        pages=page_count(history["total_items"], WORKER_HISTORY_PER_PAGE),
        total=history["total_items"],
        page_url=lambda n: url_for("web.worker", worker_id=worker_id, page=n),
    )


# ---------------------------------------------------------------- packages


@bp.get("/packages")
async def packages() -> Response:
    svc = services()
    search = request.args.get("q", "").strip()[:200] or None
    page = arg_int("page")
    result = await svc.db.read(web_queries.list_packages, search, PACKAGES_PER_PAGE,
                               (page - 1) * PACKAGES_PER_PAGE)
    # the configured archs, then any other arch some listed package was built for
    seen = {a for item in result["items"] for a in item["archs"]}
    archs = [*svc.config.archs, *sorted(seen - set(svc.config.archs))]

    def page_url(number: int) -> str:
        query: dict[str, Any] = {"q": search} if search else {}
        return url_for("web.packages", page=number, **query)

    return await _html(
        "web/packages.html", nav="packages", items=result["items"], archs=archs,
        search=search or "", page=page, total=result["total_items"],
        pages=page_count(result["total_items"], PACKAGES_PER_PAGE), page_url=page_url,
    )
