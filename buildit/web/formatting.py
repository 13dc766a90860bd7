"""Template filters: times, durations, sizes, statuses and safe links (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

DASH = "\u2013"  # shown for a missing value

JOB_STATUS_LABELS = {
    "created": "pending",
    "running": "running",
    "success": "success",
    "failed": "failed",
    "error": "error",
}


def status_label(status: str | None) -> str:
    return JOB_STATUS_LABELS.get(status or "", status or "unknown")


def duration(seconds: float | int | None) -> str:
    if seconds is None:
        return DASH
    total = round(float(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs and minutes < 10 else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def size(value: int | float | None) -> str:
    if value is None:
        return DASH
    number = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(number) < 1024 or unit == "TiB":
            return f"{number:.0f} {unit}" if unit == "B" or number >= 100 else \
                f"{number:.1f} {unit}"
        number /= 1024
    return f"{number:.1f} TiB"  # pragma: no cover


def timestamp(value: datetime | None) -> str:
    if value is None:
        return DASH
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else ""


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    now = now or datetime.now(UTC)
    seconds = (now - value).total_seconds()
    if seconds < 0:
        return "just now" if seconds > -5 else "in " + duration(-seconds)
    if seconds < 5:
        return "just now"
    return duration(seconds) + " ago"


def http_url(value: str | None) -> str | None:
    """The URL when it is http(s) (safe in an ``href``), else None."""
    if not value:
        return None
    try:
        scheme = urlsplit(value).scheme.lower()
    except ValueError:
        return None
    return value if scheme in ("http", "https") else None


def github_links(web_url: str, repo: str, branch: str | None, sha: str | None,
                 pr: int | None) -> dict[str, str]:
    base = f"{web_url}/{repo}"
    out: dict[str, str] = {}
    if branch:
        out["branch"] = f"{base}/tree/{quote(branch, safe='/')}"
    if sha:
        out["commit"] = f"{base}/commit/{quote(sha, safe='')}"
    if pr:
        out["pr"] = f"{base}/pull/{int(pr)}"
    return out


def safe_next(value: str | None) -> str:
    """A local path to return to after login; anything else becomes ``/``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 32 for c in value) or len(value) > 2000:
        return "/"
    return value
