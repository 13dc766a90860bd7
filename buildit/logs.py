"""Logging: one line per event, human-readable or JSON, with the request id.

``setup_logging(verbose=..., fmt=...)`` configures the root logger once for every
``buildit`` command (``buildit --log-format json ...`` or ``BUILDIT_LOG_FORMAT=json``).

Every line carries the id of the HTTP request being handled when it was emitted: the
HTTP app sets ``request_id`` (a context variable) for each request, from a valid
``X-Request-Id`` header or a new one, and ``RequestIdFilter`` copies it onto each
record. trio gives every task a copy of the context of the task that started it, so
lines from a handler carry its request id while lines of the actors do not.

Lines name jobs as ``job <id>`` and workers as ``<hostname>/<arch>``, so the story of
a job or a worker is found with ``grep -w 'job 12'`` or ``grep builder-1/amd64``; in JSON
lines the first ``job <id>`` a message names is also the ``job_id`` field.

Human format::

    2024-05-01 12:00:00,123 INFO buildit.http.worker_api [req 3f9c...] job 12 finished ...

JSON format (one object per line)::

    {"time": "2024-05-01T12:00:00.123+00:00", "level": "INFO", "logger": "...",
     "message": "job 12 finished ...", "request_id": "3f9c...", "job_id": 12}
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from buildit.errors import ConfigError

LOG_FORMATS = ("human", "json")
LOG_FORMAT_ENV = "BUILDIT_LOG_FORMAT"

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "buildit_request_id", default=None
)

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_JOB_RE = re.compile(r"\bjob (\d+)\b")
_HUMAN = "%(asctime)s %(levelname)s %(name)s%(request_tag)s %(message)s"


def new_request_id() -> str:
    return secrets.token_hex(8)


def accept_request_id(header: str | None) -> str:
    """The client's ``X-Request-Id`` when it is a sane token, else a new id."""
    if header and _REQUEST_ID_RE.match(header):
        return header
    return new_request_id()


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` (None outside requests) and ``request_tag`` on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "request_id", None) or request_id.get()
        record.request_id = rid
        record.request_tag = f" [req {rid}]" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            match = _JOB_RE.search(message)
            job_id = int(match.group(1)) if match else None
        if job_id is not None:
            out["job_id"] = job_id
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return orjson.dumps(out, default=str).decode()


def resolve_format(flag: str | None, environ: dict[str, str] | None = None) -> str:
    """The flag wins over ``BUILDIT_LOG_FORMAT``; the default is human."""
    env = os.environ if environ is None else environ
    value = (flag or env.get(LOG_FORMAT_ENV) or "human").strip().lower()
    if value not in LOG_FORMATS:
        raise ConfigError(
            f"{LOG_FORMAT_ENV} must be one of {', '.join(LOG_FORMATS)}, got {value!r}"
        )
    return value


def make_formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(_HUMAN)


def make_handler(fmt: str, stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(RequestIdFilter())
    return handler


def setup_logging(*, verbose: bool = False, fmt: str = "human") -> None:
    """Configure the root logger (replacing its handlers): one line per event."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(fmt))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    # httpx logs every request at INFO: far too chatty for workers and clients.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def log_to_file(path: Path, *, fmt: str = "human", level: int = logging.INFO) -> logging.Handler:
    """Also write every line to ``path`` (appending); returns the handler."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(RequestIdFilter())
    handler.setLevel(level)
    logging.getLogger().addHandler(handler)
    return handler


def set_console_level(level: int) -> None:
    """Raise or lower what the console handlers (not files) show."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(level)
