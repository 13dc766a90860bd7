"""schemathesis hooks for ``tests/test_openapi.py``.

Loaded with ``SCHEMATHESIS_HOOKS=tests.security.fuzz_hooks``. Generated data rarely gets
past the credentials and the ids, so three requests out of four are helped along (the
fourth is left as generated, so that the refusals are fuzzed too):

* a ``worker_secret`` in the body becomes the real one (``BUILDIT_FUZZ_WORKER_SECRET``),
  half of the worker requests name an arch the server builds for
  (``BUILDIT_FUZZ_ARCHS``), a third of the ids in bodies name rows the test made;
* the GitHub webhook gets an ``issue_comment`` that mentions the bot with generated text
  (or the generated body), signed with ``BUILDIT_FUZZ_GITHUB_SECRET``;
* the Telegram webhook gets a private message with generated text (or the generated
  body), with ``BUILDIT_FUZZ_TELEGRAM_SECRET``.

Without those variables the credentials stay as generated (the anonymous run).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
from typing import Any

import schemathesis

from tests.github.payloads import issue_comment
from tests.telegram.updates import private

_SECRET = os.environ.get("BUILDIT_FUZZ_WORKER_SECRET", "")
_GITHUB = os.environ.get("BUILDIT_FUZZ_GITHUB_SECRET", "")
_TELEGRAM = os.environ.get("BUILDIT_FUZZ_TELEGRAM_SECRET", "")
_REPO = os.environ.get("BUILDIT_FUZZ_REPO", "AOSC-Dev/aosc-os-abbs")
_ARCHS = [a for a in os.environ.get("BUILDIT_FUZZ_ARCHS", "amd64").split(",") if a]
_IDS = int(os.environ.get("BUILDIT_FUZZ_IDS", "4"))
_turn = itertools.count()
_COMMANDS = ("build", "help", "", "build amd64", "build mainline,noarch", "retry")


def _text(body: Any) -> str:
    """Some generated text out of whatever the body is."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        return " ".join(str(v) for v in body.values())[:300]
    return str(body)[:300]


def _github(case: Any, n: int) -> None:
    headers = case.headers if isinstance(case.headers, dict) else {}
    if n % 2 == 0:
        case.body = issue_comment(
            repo=_REPO, pr=1 + n % 50, login="alice",
            body=f"@aosc-buildit-bot {_COMMANDS[n % len(_COMMANDS)]} {_text(case.body)}")
        headers["X-GitHub-Event"] = "issue_comment"
        headers["X-GitHub-Delivery"] = f"fuzz-{n}"
    if _GITHUB:
        try:  # exactly what the requests transport sends for a JSON body
            raw = json.dumps(case.body, allow_nan=False).encode()
        except (TypeError, ValueError):
            return
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(
            _GITHUB.encode(), raw, hashlib.sha256).hexdigest()
    case.headers = headers


def _telegram(case: Any, n: int) -> None:
    headers = case.headers if isinstance(case.headers, dict) else {}
    if n % 2 == 0:
        case.body = private("/" + _text(case.body)[:200] if n % 4 == 0 else _text(case.body),
                            update_id=10_000_000 + n)
    if _TELEGRAM:
        headers["X-Telegram-Bot-Api-Secret-Token"] = _TELEGRAM
    case.headers = headers


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    n = next(_turn)
    if n % 4 == 3:
        return
    path = case.operation.path
    if path in ("/api/github/webhook", "/api/webhook"):
        _github(case, n)
        return
    if path == "/api/telegram/webhook":
        _telegram(case, n)
        return
    body = case.body
    if not isinstance(body, dict):
        return
    if "worker_secret" in body and _SECRET:
        body["worker_secret"] = _SECRET
    if "arch" in body and n % 2 == 0 and _ARCHS:
        body["arch"] = _ARCHS[n % len(_ARCHS)]
    for key in ("job_id", "pipeline_id"):
        if key in body and n % 3 == 0:
            body[key] = 1 + n % _IDS
