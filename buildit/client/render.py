"""How the client shows pipelines and jobs. Pure: values in, lines out.

``pipeline_info`` JSON (``/api/pipeline/info``) is the input throughout; times a job
has been running come from the caller (``running_for``), which measures them itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from buildit import domain

FINISHED = frozenset({"success", "failed", "error"})
_GREEN, _RED, _YELLOW, _BLUE, _DIM, _RESET = (
    "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[34m", "\x1b[2m", "\x1b[0m")
_COLORS = {"success": _GREEN, "failed": _RED, "error": _RED, "running": _BLUE,
           "created": _DIM}
SPINNER = "|/-\\"


def outcome(info: Mapping[str, Any]) -> str:
    """The pipeline's status as its jobs make it (``domain.pipeline_status``).

    The same rule the server applies; computed here too so that what the client shows
    and its exit status follow the jobs even when the stored status lags behind them.
    """
    jobs = info.get("jobs") or ()
    if not jobs:
        return str(info.get("status"))
    return domain.pipeline_status([str(j.get("status")) for j in jobs])


def exit_code(pipeline_status: str) -> int:
    """0 when the pipeline succeeded, 1 when it failed or errored (or is not finished)."""
    return 0 if pipeline_status == "success" else 1


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    secs = max(0, round(seconds))
    if secs < 60:
        return f"{secs}s"
    minutes, secs = divmod(secs, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def paint(text: str, status: str, color: bool) -> str:
    if not color or status not in _COLORS:
        return text
    return f"{_COLORS[status]}{text}{_RESET}"


def pipeline_title(info: Mapping[str, Any]) -> str:
    pid = info.get("pipeline_id", info.get("id"))
    sha = str(info.get("git_sha") or "")[:12]
    archs = ", ".join(j["arch"] for j in info.get("jobs", ())) or str(info.get("archs", ""))
    return f"pipeline {pid}: {info.get('packages')} @ {info.get('git_branch')} ({sha}) for {archs}"


def job_state(job: Mapping[str, Any], *, running_for: float | None = None) -> str:
    """What a job is doing, in words: ``running on builder-1 (attempt 2) 1m 05s``."""
    status = job.get("status")
    attempt = job.get("attempt") or 0
    if status == "created":
        return "waiting for a worker" + (f" (attempt {attempt + 1})" if attempt else "")
    if status == "running":
        worker = job.get("assigned_worker_hostname") or "a worker"
        more = f" (attempt {attempt})" if attempt > 1 else ""
        took = f" {duration(running_for)}" if running_for is not None else ""
        return f"running on {worker}{more}{took}"
    took = duration(job.get("elapsed_secs"))
    took = f" in {took}" if took else ""
    if status == "success":
        return f"success{took}"
    if status == "failed":
        failed = job.get("failed_package")
        return f"failed{took}" + (f": {failed} did not build" if failed else "")
    message = job.get("error_message") or "no reason given"
    return f"error: {message}"


def job_line(job: Mapping[str, Any], *, running_for: float | None = None) -> str:
    """One line per change (plain output): ``amd64 job 34: running on builder-1``."""
    line = f"{job['arch']} job {job['job_id']}: {job_state(job, running_for=running_for)}"
    if job.get("status") in ("failed", "error") and job.get("log_url"):
        line += f" (log: {job['log_url']})"
    return line


def job_key(job: Mapping[str, Any]) -> tuple[Any, ...]:
    """What, when it changes, is worth a line."""
    return (job.get("status"), job.get("attempt"), job.get("assigned_worker_hostname"))


def changed_jobs(
    before: Mapping[int, tuple[Any, ...]], jobs: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The jobs whose ``job_key`` differs from ``before`` (job id -> key)."""
    return [j for j in jobs if before.get(j["job_id"]) != job_key(j)]


@dataclass(frozen=True)
class Column:
    title: str
    width: int


def table(
    info: Mapping[str, Any],
    *,
    running_for: Mapping[int, float],
    color: bool = False,
    tick: int = 0,
    width: int = 100,
) -> list[str]:
    """The live table of a pipeline's jobs (the TTY display of ``--follow``)."""
    jobs = list(info.get("jobs", ()))
    arch_w = max([4, *(len(j["arch"]) for j in jobs)])
    id_w = max([3, *(len(str(j["job_id"])) for j in jobs)])
    status = outcome(info)
    lines = [pipeline_title(info)[:width],
             f"{'ARCH':<{arch_w}}  {'JOB':>{id_w}}  {'STATUS':<8}  DETAILS"]
    for job in jobs:
        jstatus = str(job.get("status"))
        mark = SPINNER[tick % len(SPINNER)] if jstatus == "running" else " "
        details = _table_details(job, running_for.get(job["job_id"]))
        row = (f"{job['arch']:<{arch_w}}  {job['job_id']:>{id_w}}  "
               f"{jstatus:<8}{mark} {details}")
        row = row[:width]
        lines.append(paint(row, jstatus, color))
    done = sum(1 for j in jobs if j.get("status") in FINISHED)
    lines.append(paint(f"{status}: {done} of {len(jobs)} jobs finished"[:width], status, color))
    return lines


def _table_details(job: Mapping[str, Any], running_for: float | None) -> str:
    status = job.get("status")
    took = duration(job.get("elapsed_secs"))
    if status == "success":
        return f"in {took}" if took else ""
    if status == "failed":
        failed = job.get("failed_package")
        text = (f"in {took}" if took else "") + (f": {failed} did not build" if failed else "")
        return text.lstrip(": ")
    if status == "error":
        return str(job.get("error_message") or "")
    if status == "running":
        return job_state(job, running_for=running_for).removeprefix("running ")
    return job_state(job)


def details(info: Mapping[str, Any]) -> list[str]:
    """``pipeline show``: the pipeline, then one line per job."""
    lines = [pipeline_title(info),
             f"  status:   {info.get('status')}",
             f"  created:  {info.get('creation_time')}"
             + (f" by {info['creator_github_login']}" if info.get("creator_github_login") else "")
             + (f" ({info['source']})" if info.get("source") else "")]
    if info.get("finished_at"):
        lines.append(f"  finished: {info['finished_at']}")
    if info.get("github_pr"):
        lines.append(f"  pull request: #{info['github_pr']}")
    if info.get("options"):
        lines.append(f"  options:  {info['options']}")
    for warning in info.get("warnings") or ():
        lines.append(f"  warning:  {warning}")
    lines.append("  jobs:")
    for job in info.get("jobs", ()):
        lines.append(f"    {job_line(job)}")
    return lines


def pipeline_rows(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """``pipeline list``: one row per pipeline, newest first (as the server sends them)."""
    if not items:
        return ["no pipelines"]
    id_w = max([2, *(len(str(p["id"])) for p in items)])
    branch_w = min(24, max([6, *(len(str(p["git_branch"])) for p in items)]))
    lines = [f"{'ID':>{id_w}}  {'STATUS':<8}  {'BRANCH':<{branch_w}}  {'CREATED':<16}  "
             "PACKAGES / JOBS"]
    for p in items:
        created = str(p.get("creation_time") or "")[:16].replace("T", " ")
        jobs = " ".join(f"{j['arch']}:{j['status']}" for j in p.get("jobs") or ())
        packages = str(p.get("packages"))
        if len(packages) > 40:
            packages = packages[:37] + "..."
        lines.append(f"{p['id']:>{id_w}}  {p['status']:<8}  "
                     f"{str(p['git_branch'])[:branch_w]:<{branch_w}}  {created:<16}  "
                     f"{packages}  [{jobs}]")
    return lines
