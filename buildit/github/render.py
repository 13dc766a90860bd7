"""What BuildIt shows on GitHub, free of I/O: comment bodies and check runs.

The outbox holds facts (what changed, as the database saw it in the transaction of
the change); these functions turn them into the bodies of GitHub API requests at
delivery time, with links to the web UI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from buildit.github.config import GitHubConfig

MARKER_PREFIX = "<!-- buildit:outbox:"
MAX_TEXT = 60_000  # GitHub allows 65535 characters in a comment or check-run summary


def marker(outbox_id: int) -> str:
    """The hidden tag that lets a retried delivery find the comment it already posted."""
    return f"{MARKER_PREFIX}{outbox_id} -->"


def with_marker(text: str, outbox_id: int) -> str:
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "\n\n(truncated)"
    return f"{text}\n\n{marker(outbox_id)}"


def defang(text: str) -> str:
    """User-written text made safe to echo: no @-mentions (a zero-width space follows
    each ``@``)."""
    return text.replace("@", "@\u200b")


def duration(seconds: int | float | None) -> str:
    if seconds is None:
        return "an unknown time"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _code_list(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) if names else "none"


# ---------------------------------------------------------------- comments


def pipeline_created_comment(facts: Mapping[str, Any], config: GitHubConfig) -> str:
    """The reply to a ``build`` command, from the facts the producer stored."""
    pipeline_id = int(facts["pipeline_id"])
    creator = facts.get("creator")
    packages = str(facts["packages"]).split(",")
    jobs: list[tuple[str, int]] = [(str(a), int(j)) for a, j in facts["jobs"]]
    lines = [
        f"Pipeline [#{pipeline_id}]({config.pipeline_url(pipeline_id)}) created"
        + (f" for @{creator}" if creator else "")
        + f": {_code_list(packages)} on `{facts['git_branch']}` at "
        f"`{str(facts['git_sha'])[:12]}`, for {_plural(len(jobs), 'architecture')}.",
        "",
        "| arch | job |",
        "|---|---|",
        *(f"| {arch} | [#{job}]({config.job_url(job)}) |" for arch, job in jobs),
    ]
    warnings = [str(w) for w in facts.get("warnings") or []]
    if warnings:
        lines += ["", "Warnings:", *(f"- {w}" for w in warnings)]
    lines += ["", "Each architecture reports as a check run on the commit."]
    return "\n".join(lines)


def comment_text(payload: Mapping[str, Any], config: GitHubConfig) -> str:
    if "pipeline" in payload:
        return pipeline_created_comment(payload["pipeline"], config)
    return str(payload["text"])


# ---------------------------------------------------------------- check runs


def check_run_name(arch: str) -> str:
    return f"buildit {arch}"


def external_id(job_id: int, outbox_id: int) -> str:
    """Names the run a delivery created, so a retry can find it instead of adding one."""
    return f"buildit-job-{job_id}-outbox-{outbox_id}"


@dataclass(frozen=True)
class CheckRunState:
    status: str  # queued | in_progress | completed
    conclusion: str | None  # success | failure | cancelled when completed
    title: str
    summary: str


def check_run_state(facts: Mapping[str, Any], config: GitHubConfig) -> CheckRunState:
    """The check run a job change shows (facts from ``github_queries.job_changed``)."""
    job_id = int(facts["job_id"])
    pipeline_id = int(facts["pipeline_id"])
    arch = str(facts["arch"])
    status = str(facts["status"])
    event = str(facts["event"])
    links = (f"Job [#{job_id}]({config.job_url(job_id)}) of pipeline "
             f"[#{pipeline_id}]({config.pipeline_url(pipeline_id)})")
    log_url = facts.get("log_url")
    log_link = f" · [build log]({log_url})" if log_url else ""
    packages = [p for p in str(facts.get("packages") or "").split(",") if p]
    if status == "created":
        why = {
            "requeued": "its worker went silent; waiting for another",
            "restarted": "restarted",
            "handed_back": "waiting for a worker",
        }.get(event, "waiting for a worker")
        return CheckRunState(
            "queued", None, "Queued",
            f"{_code_list(packages)} for {arch}: {why}.\n\n{links}.",
        )
    if status == "running":
        host = facts.get("hostname") or "a worker"
        return CheckRunState(
            "in_progress", None, f"Building on {host}",
            f"{_code_list(packages)} for {arch}, on {host}.\n\n{links}.",
        )
    built = [str(p) for p in facts.get("successful_packages") or []]
    skipped = [str(p) for p in facts.get("skipped_packages") or []]
    failed = facts.get("failed_package")
    took = duration(facts.get("elapsed_secs"))
    if status == "success":
        return CheckRunState(
            "completed", "success", f"Built {_plural(len(built), 'package')} in {took}",
            f"Built {_plural(len(built), 'package')} in {took}: {_code_list(built)}.\n\n"
            f"{links}{log_link}.",
        )
    if status == "failed":
        lines = []
        if failed:
            title = f"{failed} failed to build"
            lines.append(f"Failed package: `{failed}`.")
        elif facts.get("build_success") and not facts.get("pushpkg_success"):
            title = "Built, but uploading the packages failed"
            lines.append("The build succeeded but pushpkg failed.")
        else:
            title = "The build failed"
        lines.append(f"Built {_plural(len(built), 'package')} in {took}: {_code_list(built)}.")
        if skipped:
            lines.append(f"Skipped after the failure: {_code_list(skipped)}.")
        lines += ["", f"{links}{log_link}."]
        return CheckRunState("completed", "failure", title, "\n".join(lines))
    message = str(facts.get("error_message") or "unknown error")
    if event == "cancelled":
        return CheckRunState("completed", "cancelled", "Cancelled",
                             f"{message[:1000]}.\n\n{links}{log_link}.")
    return CheckRunState("completed", "failure", "Error",
                         f"The job ended with an error: {message[:4000]}\n\n{links}{log_link}.")


def check_run_update(facts: Mapping[str, Any], config: GitHubConfig) -> dict[str, Any]:
    """The body of ``PATCH /repos/{repo}/check-runs/{id}`` for this state."""
    state = check_run_state(facts, config)
    body: dict[str, Any] = {
        "status": state.status,
        "details_url": config.job_url(int(facts["job_id"])),
        "output": {"title": state.title[:250], "summary": state.summary[:MAX_TEXT]},
    }
    at = facts.get("at")
    if state.status == "in_progress" and at:
        body["started_at"] = at
    if state.status == "completed":
        body["conclusion"] = state.conclusion
        if at:
            body["completed_at"] = at
    return body


def check_run_create(facts: Mapping[str, Any], config: GitHubConfig, outbox_id: int
                     ) -> dict[str, Any]:
    """The body of ``POST /repos/{repo}/check-runs`` for this state."""
    return {
        "name": check_run_name(str(facts["arch"])),
        "head_sha": str(facts["head_sha"]),
        "external_id": external_id(int(facts["job_id"]), outbox_id),
        **check_run_update(facts, config),
    }


def requeued_body(config: GitHubConfig, job_id: int) -> dict[str, Any]:
    """Closes a run that was in progress when its job went back to the queue.

    GitHub never moves a run back from in_progress, so the job gets a new run and the
    old one ends as neutral, pointing at it.
    """
    return {
        "status": "completed",
        "conclusion": "neutral",
        "details_url": config.job_url(job_id),
        "output": {"title": "Requeued",
                   "summary": "This attempt ended; the job went back to the queue and "
                              "reports in a new check run."},
    }
