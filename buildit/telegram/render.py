"""What the bot says: pure functions producing Telegram HTML (parse_mode "HTML").

Every piece of text that comes from people, workers or the database goes through
``escape`` (``<``, ``>`` and ``&``) or ``attr`` (also quotes, for ``href``). Every
message is cut by ``truncate_html`` to Telegram's limit of 4096 characters without
breaking a tag or an entity; long package lists are shortened before that, with a
link to the job page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from buildit.telegram.commands import USAGE, restart_callback_data

MAX_MESSAGE = 4096
MAX_LISTED = 20  # package names listed before "... and N more"
MAX_LIST_CHARS = 600  # characters of package names listed per line
MAX_WORKERS_LISTED = 40
_TOKEN_RE = re.compile(r"(<[^<>]*>)|(&(?:[A-Za-z]{2,8}|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});)|([^<&]+)"
                       r"|([<&])")
_TAG_NAME_RE = re.compile(r"^</?\s*([A-Za-z][A-Za-z0-9-]*)")


def escape(text: str) -> str:
    """Text for Telegram HTML: ``<``, ``>`` and ``&`` become entities."""
    return html.escape(text, quote=False)


def attr(text: str) -> str:
    """Text for an HTML attribute value (quotes escaped too)."""
    return html.escape(text, quote=True)


def link(url: str, label: str) -> str:
    return f'<a href="{attr(url)}">{escape(label)}</a>'


def code(text: str) -> str:
    return f"<code>{escape(text)}</code>"


def utf16_len(text: str) -> int:
    """Telegram measures text in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, budget: int) -> str:
    """The longest prefix of plain ``text`` within ``budget`` UTF-16 units."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > budget:
            return text[:index]
    return text


def truncate_html(text: str, limit: int = MAX_MESSAGE, marker: str = "…") -> str:
    """``text`` cut to ``limit`` UTF-16 units without breaking tags or entities.

    Tags still open at the cut are closed after ``marker``. The raw HTML is measured,
    which is never shorter than what Telegram counts after parsing it.
    """
    if utf16_len(text) <= limit:
        return text
    budget = limit - utf16_len(marker)
    out: list[str] = []
    open_tags: list[str] = []  # closing tags of the open elements, innermost last
    used = 0
    reserve = 0  # length of the closing tags still owed
    for match in _TOKEN_RE.finditer(text):
        tag, entity, run, stray = match.groups()
        if tag is not None:
            name_match = _TAG_NAME_RE.match(tag)
            name = name_match.group(1).lower() if name_match else ""
            if tag.startswith("</"):
                if open_tags and open_tags[-1] == f"</{name}>":
                    open_tags.pop()
                    reserve -= len(tag)
                    used += len(tag)
                    out.append(tag)
                continue  # a stray closing tag is dropped
            closer = f"</{name}>"
            if used + len(tag) + len(closer) + reserve > budget:
                break
            out.append(tag)
            used += len(tag)
            open_tags.append(closer)
            reserve += len(closer)
        elif entity is not None or stray is not None:
            piece = entity if entity is not None else escape(stray or "")
            if used + len(piece) + reserve > budget:
                break
            out.append(piece)
            used += len(piece)
        else:
            piece = run or ""
            room = budget - used - reserve
            if utf16_len(piece) <= room:
                out.append(piece)
                used += utf16_len(piece)
                continue
            out.append(_fit(piece, room))
            break
    return "".join(out) + marker + "".join(reversed(open_tags))


def shorten(text: str, limit: int) -> str:
    """Plain text cut to ``limit`` characters (escape it afterwards)."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def format_duration(seconds: float) -> str:
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def package_list(label: str, names: Sequence[str], more_url: str) -> str:
    """``Label (n): a, b, c`` shortened to a few names and a link to the full list."""
    shown: list[str] = []
    chars = 0
    for name in names:
        if len(shown) >= MAX_LISTED or chars + len(name) > MAX_LIST_CHARS:
            break
        shown.append(name)
        chars += len(name) + 2
    line = f"{label} ({len(names)}): " + ", ".join(code(n) for n in shown)
    if len(shown) < len(names):
        line += f" … and {len(names) - len(shown)} more ({link(more_url, 'full list')})"
    return line


# ---------------------------------------------------------------- job results


@dataclass(frozen=True)
class JobResult:
    """What the result message of a finished job says (the outbox payload)."""

    chat_id: int
    job_id: int
    pipeline_id: int
    arch: str
    status: str  # success | failed | error
    attempt: int
    git_branch: str
    git_sha: str
    packages: str  # what was asked for
    worker: str | None = None
    elapsed_secs: float | None = None
    build_success: bool | None = None
    pushpkg_success: bool | None = None
    successful_packages: tuple[str, ...] = ()
    failed_package: str | None = None
    skipped_packages: tuple[str, ...] = ()
    error_message: str | None = None
    log_url: str | None = None
    github_pr: int | None = None
    cancelled: bool = False  # ended by a cancel of its pipeline (status error)

    def as_payload(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id, "job_id": self.job_id, "pipeline_id": self.pipeline_id,
            "arch": self.arch, "status": self.status, "attempt": self.attempt,
            "git_branch": self.git_branch, "git_sha": self.git_sha, "packages": self.packages,
            "worker": self.worker, "elapsed_secs": self.elapsed_secs,
            "build_success": self.build_success, "pushpkg_success": self.pushpkg_success,
            "successful_packages": list(self.successful_packages),
            "failed_package": self.failed_package,
            "skipped_packages": list(self.skipped_packages),
            "error_message": self.error_message, "log_url": self.log_url,
            "github_pr": self.github_pr, "cancelled": self.cancelled,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> JobResult:
        return cls(
            chat_id=int(payload["chat_id"]), job_id=int(payload["job_id"]),
            pipeline_id=int(payload["pipeline_id"]), arch=str(payload["arch"]),
            status=str(payload["status"]), attempt=int(payload.get("attempt") or 0),
            git_branch=str(payload["git_branch"]), git_sha=str(payload["git_sha"]),
            packages=str(payload["packages"]), worker=payload.get("worker"),
            elapsed_secs=payload.get("elapsed_secs"),
            build_success=payload.get("build_success"),
            pushpkg_success=payload.get("pushpkg_success"),
            successful_packages=tuple(payload.get("successful_packages") or ()),
            failed_package=payload.get("failed_package"),
            skipped_packages=tuple(payload.get("skipped_packages") or ()),
            error_message=payload.get("error_message"), log_url=payload.get("log_url"),
            github_pr=payload.get("github_pr"), cancelled=bool(payload.get("cancelled")),
        )


_OUTCOME = {
    "success": ("✅", "succeeded"),
    "failed": ("❌", "failed"),
    "error": ("⚠️", "ended in error"),
}


def restart_keyboard(job_id: int) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": "🔁 Restart",
                                  "callback_data": restart_callback_data(job_id)}]]}


def job_result_message(result: JobResult, public_url: str
                       ) -> tuple[str, dict[str, Any] | None]:
    """The text of a finished job's message and its keyboard (Restart when it failed)."""
    job_url = f"{public_url}/jobs/{result.job_id}"
    icon, verb = (("🚫", "was cancelled") if result.cancelled
                  else _OUTCOME.get(result.status, ("•", result.status)))
    where = f" on {escape(result.worker)}" if result.worker else ""
    lines = [f"{icon} <b>{link(job_url, f'Job #{result.job_id}')} {escape(verb)}</b>"
             f"{where} ({escape(result.arch)})"]
    origin = f"{escape(result.git_branch)} ({code(result.git_sha[:8])})"
    if result.github_pr:
        origin += f", PR #{result.github_pr}"
    lines.append(f"Pipeline #{result.pipeline_id}: {escape(shorten(result.packages, 300))} "
                 f"@ {origin}")
    if result.attempt > 1:
        lines.append(f"Attempt {result.attempt}")
    if result.elapsed_secs is not None:
        lines.append(f"Elapsed: {format_duration(result.elapsed_secs)}")
    if result.successful_packages:
        lines.append(package_list("Built", result.successful_packages, job_url))
    if result.failed_package:
        lines.append(f"Failed: {code(result.failed_package)}")
    if result.skipped_packages:
        lines.append(package_list("Skipped", result.skipped_packages, job_url))
    if result.status == "failed" and result.build_success and result.pushpkg_success is False:
        lines.append("The build succeeded but uploading the packages failed.")
    if result.error_message:
        lines.append(f"Error: {code(shorten(result.error_message, 600))}")
    if result.log_url:
        lines.append(f"Log: {link(result.log_url, result.log_url)}")
    keyboard = restart_keyboard(result.job_id) if result.status in ("failed", "error") else None
    return truncate_html("\n".join(lines)), keyboard


# ---------------------------------------------------------------- /status


@dataclass(frozen=True)
class QueueRow:
    arch: str
    pending: int
    running: int
    available: int  # workers online


@dataclass(frozen=True)
class WorkerRow:
    hostname: str
    arch: str
    last_heartbeat: datetime
    running_job_id: int | None = None


def ago(then: datetime, now: datetime) -> str:
    return f"{format_duration((now - then).total_seconds())} ago"


def status_message(queues: Sequence[QueueRow], workers: Sequence[WorkerRow], now: datetime,
                   public_url: str) -> str:
    width = max([len("arch"), *(len(q.arch) for q in queues)])
    table = [f"{'arch':<{width}}  pending  running  workers"]
    table += [f"{q.arch:<{width}}  {q.pending:>7}  {q.running:>7}  {q.available:>7}"
              for q in queues]
    lines = ["<b>Queue</b>", f"<pre>{escape(chr(10).join(table))}</pre>",
             f"<b>Workers online</b> ({len(workers)})"]
    if not workers:
        lines.append("none")
    budget = MAX_MESSAGE - 300 - sum(len(line) + 1 for line in lines)
    listed = 0
    for worker in workers[:MAX_WORKERS_LISTED]:
        job = worker.running_job_id
        doing = f"building {link(f'{public_url}/jobs/{job}', f'#{job}')}" if job else "idle"
        line = (f"• {escape(shorten(worker.hostname, 100))} ({escape(worker.arch)}): {doing}, "
                f"last heartbeat {ago(worker.last_heartbeat, now)}")
        budget -= len(line) + 1
        if budget < 0:
            break
        lines.append(line)
        listed += 1
    if listed < len(workers):
        lines.append(f"… and {len(workers) - listed} more "
                     f"({link(f'{public_url}/workers', 'all workers')})")
    return truncate_html("\n".join(lines))


# ---------------------------------------------------------------- replies


def help_message(bot_name: str | None) -> str:
    def row(name: str, what: str) -> str:
        return f"{escape(USAGE[name])}\n    {escape(what)}"

    lines = [
        "<b>BuildIt!</b> builds AOSC OS packages. Commands:",
        row("build", "build packages from a branch of the packages tree; archs default to "
                     "what the packages support ('mainline' means all)"),
        row("pr", "build pull requests (one pipeline each; packages from the #buildit line)"),
        row("status", "the queue per architecture and the workers online"),
        row("restart", "build a failed job again"),
        row("login", "link your Telegram account to your GitHub account (private chat)"),
        row("token", "a new API token, shown once; 'reset' revokes your old ones "
                     "(private chat)"),
        "/help\n    this message",
        "Building and restarting are for AOSC Developers who linked their account.",
    ]
    if bot_name:
        lines.append(f"In groups, write the commands as /build@{escape(bot_name)}.")
    return "\n".join(lines)


def usage_message(problem: str, usage: str) -> str:
    return (f"{escape(problem)}\nUsage: {code(usage)}" if problem else f"Usage: {code(usage)}")


def not_linked_message(bot_name: str | None, private: bool) -> str:
    where = "here" if private else (
        f"to @{escape(bot_name)} in a private chat" if bot_name else "to me in a private chat")
    return ("Your Telegram account is not linked to a GitHub account yet. "
            f"Send /login {where} to link it; building and restarting are for AOSC "
            "Developers.")


def not_developer_message(login: str) -> str:
    return (f"{escape(login)} is not an AOSC Developer (a member of the AOSC-Dev "
            "organization), so cannot build or restart jobs.")


def login_message(link_url: str, minutes: int) -> str:
    return (f"Open {link(link_url, 'this link')} within {minutes} minutes and sign in with "
            "GitHub to link this Telegram account to your GitHub account. Afterwards, "
            "send /start to check the link.")


def login_elsewhere_message(bot_name: str | None) -> str:
    target = (link(f"https://t.me/{bot_name}?start=login", f"@{bot_name}") if bot_name
              else "me")
    return (f"For your safety, /login works in a private chat only: open {target} "
            "and send /login there.")


def linked_message(login: str, role: str) -> str:
    what = "an AOSC Developer" if role == "developer" else "not an AOSC Developer"
    return (f"This Telegram account is linked to the GitHub account <b>{escape(login)}</b> "
            f"({what}). Send /help to see what I can do.")


def not_linked_after_start_message() -> str:
    return ("This Telegram account is not linked to a GitHub account (yet). "
            "Send /login for a new link; it is valid for 15 minutes.")


def pipeline_created_message(pipeline_id: int, packages: str, branch: str, sha: str,
                             jobs: dict[str, int], public_url: str,
                             warnings: Sequence[str] = (), pr: int | None = None) -> str:
    what = f"PR #{pr}: " if pr else ""
    lines = [
        f"🚀 {what}{link(f'{public_url}/pipelines/{pipeline_id}', f'Pipeline #{pipeline_id}')}"
        f" created: {escape(shorten(packages, 300))} @ {escape(branch)} ({code(sha[:8])})",
        "Jobs: " + ", ".join(
            f"{escape(arch)} {link(f'{public_url}/jobs/{job}', '#' + str(job))}"
            for arch, job in sorted(jobs.items())),
    ]
    lines += [f"⚠ {escape(shorten(w, 300))}" for w in warnings[:5]]
    return truncate_html("\n".join(lines))


def restarted_message(job_id: int, pipeline_id: int, by: str, public_url: str) -> str:
    return (f"🔁 {link(f'{public_url}/jobs/{job_id}', f'Job #{job_id}')} "
            f"(pipeline #{pipeline_id}) restarted by {escape(by)}.")


def error_message(text: str) -> str:
    return f"⚠ {escape(shorten(text, 1500))}"


def token_message(token: str, login: str, revoked: int | None) -> str:
    lines = [f"A new API token for <b>{escape(login)}</b> (shown only this once):",
             code(token),
             "Use it as 'Authorization: Bearer &lt;token&gt;'. Delete this message once "
             "you have stored it."]
    if revoked is not None:
        lines.append(f"{revoked} older token(s) revoked.")
    return "\n".join(lines)


@dataclass(frozen=True)
class OutgoingMessage:
    """A ``sendMessage`` as the outbox stores it."""

    chat_id: int
    text: str
    reply_to: int | None = None
    keyboard: dict[str, Any] | None = None

    def as_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"chat_id": self.chat_id, "text": self.text}
        if self.reply_to is not None:
            payload["reply_to"] = self.reply_to
        if self.keyboard is not None:
            payload["keyboard"] = self.keyboard
        return payload


def send_message_params(chat_id: int, text: str, *, reply_to: int | None = None,
                        keyboard: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``sendMessage`` parameters of every message the bot sends."""
    params: dict[str, Any] = {
        "chat_id": chat_id,
        "text": truncate_html(text),
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": True},
    }
    if reply_to is not None:
        params["reply_parameters"] = {"message_id": reply_to,
                                      "allow_sending_without_reply": True}
    if keyboard is not None:
        params["reply_markup"] = keyboard
    return params


def link_url(public_url: str, token: str) -> str:
    return f"{public_url}/link/telegram?token={quote(token, safe='')}"
