"""Fake Telegram Bot API and fake GitHub REST API: real HTTP servers on 127.0.0.1.

They speak the real wire formats (``/bot<token>/<method>`` with JSON answers
``{"ok": ..., "result": ...}``; GitHub's REST paths) and record what they were asked.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio


@asynccontextmanager
async def serving(app: QuartTrio) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (port 0) for the body; yields its base URL."""
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("fake.error")
    config.graceful_timeout = 1.0
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
        try:
            yield binds[0]
        finally:
            stop.set()


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status=status, content_type="application/json")


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    at: float  # trio.current_time() when it arrived


class FakeTelegram:
    """``/bot<token>/<method>``; records sendMessage, answerCallbackQuery, setWebhook."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.url = ""  # set once served
        self.calls: list[Call] = []  # accepted calls
        self.refused: list[Call] = []  # answered 429
        self.refuse_sends = 0  # answer the next N sendMessage calls with 429
        self.retry_after = 7
        self.bad_tokens = 0
        self._ids = itertools.count(4421)
        self.app = QuartTrio("fake-telegram")
        self.app.add_url_rule("/bot<token>/<method>", "method", self._method, methods=["POST"])

    async def _method(self, token: str, method: str) -> Response:
        if token != self.token:
            self.bad_tokens += 1
            return _json({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        body = await request.get_data()
        try:
            params = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            return _json({"ok": False, "error_code": 400,
                          "description": "Bad Request: invalid JSON"}, 400)
        call = Call(method, params, trio.current_time())
        if method == "sendMessage" and self.refuse_sends > 0:
            self.refuse_sends -= 1
            self.refused.append(call)
            return _json({"ok": False, "error_code": 429,
                          "description": f"Too Many Requests: retry after {self.retry_after}",
                          "parameters": {"retry_after": self.retry_after}}, 429)
        if method == "sendMessage":
            if not params.get("text"):
                return _json({"ok": False, "error_code": 400,
                              "description": "Bad Request: message text is empty"}, 400)
            if len(params["text"]) > 4096:
                return _json({"ok": False, "error_code": 400,
                              "description": "Bad Request: message is too long"}, 400)
            self.calls.append(call)
            return _json({"ok": True, "result": {
                "message_id": next(self._ids),
                "from": {"id": 6123456789, "is_bot": True, "first_name": "BuildIt!",
                         "username": "aosc_buildit_bot"},
                "chat": {"id": params["chat_id"], "type": "private"},
                "date": 1764413160,
                "text": params["text"],
            }})
        if method in ("answerCallbackQuery", "setWebhook"):
            self.calls.append(call)
            return _json({"ok": True, "result": True,
                          **({"description": "Webhook was set"} if method == "setWebhook"
                             else {})})
        return _json({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

    def sent(self, method: str = "sendMessage", chat_id: int | None = None
             ) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method
                and (chat_id is None or c.params.get("chat_id") == chat_id)]

    async def wait_for(self, count: int, method: str = "sendMessage",
                       chat_id: int | None = None, *, step: float = 0.01
                       ) -> list[dict[str, Any]]:
        """The first ``count`` such calls, once they have arrived (polls every ``step``)."""
        while len(self.sent(method, chat_id)) < count:
            await trio.sleep(step)
        return self.sent(method, chat_id)[:count]


class FakeGitHub:
    """Enough of GitHub's REST API for an App: installation token, pulls, and a sink
    that answers everything else plausibly (check runs, comments)."""

    def __init__(self, repo: str) -> None:
        self.repo = repo
        self.url = ""  # set once served
        self.pulls: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        self.app = QuartTrio("fake-github")
        self.app.add_url_rule("/<path:path>", "any", self._any,
                              methods=["GET", "POST", "PATCH", "PUT", "DELETE"])

    async def _any(self, path: str) -> Response:
        path = "/" + path
        self.requests.append((request.method, path))
        if path == f"/repos/{self.repo}/installation":
            return _json({"id": 1})
        if path.startswith("/app/installations/") and path.endswith("/access_tokens"):
            if not request.headers.get("Authorization", "").startswith("Bearer "):
                return _json({"message": "A JSON web token could not be decoded"}, 401)
            return _json({"token": "ghs_faketoken", "expires_at": "2099-01-01T00:00:00Z"},
                         201)
        prefix = f"/repos/{self.repo}/pulls/"
        if request.method == "GET" and path.startswith(prefix) and path[len(prefix):].isdigit():
            pull = self.pulls.get(int(path[len(prefix):]))
            if pull is None:
                return _json({"message": "Not Found"}, 404)
            return _json(pull)
        if request.method == "GET":
            if path.endswith("/check-runs"):
                return _json({"total_count": 0, "check_runs": []})
            if "/members/" in path:
                return Response(b"", status=204)
            return _json([])
        number = next(self._ids)
        return _json({"id": number, "html_url": f"https://github.test/{number}"},
                     201 if request.method == "POST" else 200)


def pull_request(number: int, *, repo: str, branch: str, sha: str, body: str,
                 fork: str | None = None, merged_sha: str | None = None) -> dict[str, Any]:
    """A pull request as ``GET /repos/{owner}/{repo}/pulls/{n}`` returns it (the fields
    that matter, in the shape of the shared fixtures)."""
    head_repo = fork or repo
    return {
        "number": number,
        "state": "closed" if merged_sha else "open",
        "title": f"PR {number}",
        "body": body,
        "merged": merged_sha is not None,
        "merged_at": "2025-11-29T10:00:00Z" if merged_sha else None,
        "merge_commit_sha": merged_sha,
        "head": {"label": f"{head_repo.split('/')[0]}:{branch}", "ref": branch, "sha": sha,
                 "repo": {"full_name": head_repo}},
        "base": {"label": "AOSC-Dev:stable", "ref": "stable", "sha": "0" * 40,
                 "repo": {"full_name": repo}},
    }
