"""A fake GitHub REST API for a GitHub App: a real HTTP server on 127.0.0.1.

It speaks GitHub's paths and JSON, checks authentication the way GitHub does (a JWT
``Bearer`` signed with the App's key, verified with its public key, on the App's
own endpoints; ``token <installation token>`` it issued on the others), keeps
comments and check runs (refusing what GitHub refuses: a completed run never
changes again, a run never moves back), records every call, and can be told to
answer 502 / 429 / a rate-limited 403 for a while.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jwt
import orjson
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

RUN_ORDER = {"queued": 0, "in_progress": 1, "completed": 2}
CONCLUSIONS = {"success", "failure", "neutral", "cancelled", "skipped", "timed_out",
               "action_required"}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    auth: str  # "jwt", "token", or what was wrong with it
    status: int
    at: float  # trio.current_time()


@dataclass
class Failure:
    status: int
    headers: dict[str, str]
    remaining: int | None  # None: until recover()
    match: Callable[[str, str], bool]


@dataclass
class CheckRun:
    id: int
    name: str
    head_sha: str
    external_id: str
    status: str
    conclusion: str | None
    details_url: str | None
    output: dict[str, Any]
    history: list[tuple[str, str | None, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "head_sha": self.head_sha,
                "external_id": self.external_id, "status": self.status,
                "conclusion": self.conclusion, "details_url": self.details_url,
                "output": self.output}


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(value), status=status, content_type="application/json",
                    headers=headers)


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return _json({"message": message,
                  "documentation_url": "https://docs.github.com/rest"}, status, headers)


def notification_call(method: str, path: str) -> bool:
    """Calls that deliver notifications: posting comments, creating/updating check runs."""
    return method in ("POST", "PATCH") and (
        path.endswith("/comments") or "/check-runs" in path)


class FakeGitHub:
    def __init__(self, *, public_key_pem: bytes, app_id: str, installation_id: int,
                 repo: str, org: str) -> None:
        self.public_key_pem = public_key_pem
        self.app_id = app_id
        self.installation_id = installation_id
        self.repo = repo
        self.org = org
        self.url = ""
        self.members: set[str] = set()
        self.pulls: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.runs: dict[int, CheckRun] = {}
        self.calls: list[Call] = []
        self.tokens: dict[str, float] = {}  # token -> expiry (epoch)
        self.failures: list[Failure] = []
        self._ids = itertools.count(1000)
        self.app = QuartTrio("fake-github")
        self.app.add_url_rule("/<path:path>", "any", self._any,
                              methods=["GET", "POST", "PATCH", "PUT", "DELETE"])

    # ------------------------------------------------------------ test controls

    def fail(self, status: int, *, headers: dict[str, str] | None = None,
             count: int | None = None,
             match: Callable[[str, str], bool] = notification_call) -> None:
        """Answer ``status`` to matching calls, ``count`` times or until ``recover``."""
        self.failures.append(Failure(status, headers or {}, count, match))

    def recover(self) -> None:
        self.failures.clear()

    def posted_comments(self, issue: int) -> list[str]:
        return [c["body"] for c in self.comments.get(issue, [])]

    def runs_on(self, sha: str) -> list[CheckRun]:
        return [r for r in self.runs.values() if r.head_sha == sha]

    def succeeded(self, method: str, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.search(pattern, c.path)
                and c.status < 300]

    def refused(self) -> list[Call]:
        return [c for c in self.calls if c.status >= 400]

    # ------------------------------------------------------------ the API

    def _auth(self, path: str) -> str | None:
        """None when the caller may call ``path``, else what is wrong."""
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if path.startswith("/app/") or path == f"/repos/{self.repo}/installation":
            if scheme != "Bearer" or not credential:
                return "an App JWT (Bearer) is required"
            try:
                claims = jwt.decode(credential, self.public_key_pem, algorithms=["RS256"],
                                    options={"require": ["iat", "exp", "iss"]})
            except jwt.PyJWTError as exc:
                return f"the JWT does not verify: {exc}"
            if str(claims["iss"]) != self.app_id:
                return "the JWT is for another App"
            return None
        if scheme != "token" or credential not in self.tokens:
            return "an installation token is required"
        if self.tokens[credential] < time.time():
            return "the installation token expired"
        return None

    async def _any(self, path: str) -> Response:
        path = "/" + path
        method = request.method
        body = await request.get_data(cache=False)
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = "<not json>"
        response = await self._answer(method, path, data)
        self.calls.append(Call(method, path, dict(request.args), data,
                               self._auth(path) or "ok", response.status_code,
                               trio.current_time()))
        return response

    async def _answer(self, method: str, path: str, data: Any) -> Response:
        for failure in self.failures:
            if failure.match(method, path) and failure.remaining != 0:
                if failure.remaining is not None:
                    failure.remaining -= 1
                if failure.status == 502:
                    return Response(b"<html>502 Bad Gateway</html>", status=502,
                                    content_type="text/html", headers=failure.headers)
                return _error("You have exceeded a rate limit.", failure.status,
                              failure.headers)
        problem = self._auth(path)
        if problem is not None:
            return _error(f"Bad credentials: {problem}", 401)
        repo = re.escape(self.repo)
        if m := re.fullmatch(r"/app/installations/(\d+)/access_tokens", path):
            if method != "POST" or int(m[1]) != self.installation_id:
                return _error("Not Found", 404)
            token = "ghs_" + secrets.token_urlsafe(24)
            self.tokens[token] = time.time() + 3600
            expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
            return _json({"token": token, "expires_at": expires,
                          "permissions": {"checks": "write", "pull_requests": "write"}}, 201)
        if path == f"/repos/{self.repo}/installation" and method == "GET":
            return _json({"id": self.installation_id, "app_id": int(self.app_id)})
        if (m := re.fullmatch(rf"/orgs/{re.escape(self.org)}/members/([A-Za-z0-9-]+)", path)
                ) and method == "GET":
            return Response(b"", status=204 if m[1] in self.members else 404)
        if (m := re.fullmatch(rf"/repos/{repo}/pulls/(\d+)", path)) and method == "GET":
            pull = self.pulls.get(int(m[1]))
            return _json(pull) if pull is not None else _error("Not Found", 404)
        if m := re.fullmatch(rf"/repos/{repo}/issues/(\d+)/comments", path):
            return self._comments(method, int(m[1]), data)
        if path == f"/repos/{self.repo}/check-runs" and method == "POST":
            return self._create_run(data)
        if (m := re.fullmatch(rf"/repos/{repo}/check-runs/(\d+)", path)) and method == "PATCH":
            return self._update_run(int(m[1]), data)
        if (m := re.fullmatch(rf"/repos/{repo}/commits/([0-9a-f]{{40}})/check-runs", path)
                ) and method == "GET":
            name = request.args.get("check_name")
            runs = [r.as_json() for r in self.runs_on(m[1]) if name in (None, r.name)]
            return _json({"total_count": len(runs), "check_runs": runs})
        return _error("Not Found", 404)

    def _comments(self, method: str, issue: int, data: Any) -> Response:
        if issue not in self.pulls:
            return _error("Not Found", 404)
        comments = self.comments.setdefault(issue, [])
        if method == "POST":
            if not isinstance(data, dict) or not isinstance(data.get("body"), str):
                return _error("Invalid request: body is required", 422)
            comment = {"id": next(self._ids), "body": data["body"],
                       "user": {"login": "aosc-buildit-bot[bot]", "type": "Bot"}}
            comments.append(comment)
            return _json(comment, 201)
        if method == "GET":
            per_page = int(request.args.get("per_page", "30"))
            page = int(request.args.get("page", "1"))
            chunk = comments[(page - 1) * per_page: page * per_page]
            headers = {}
            if page * per_page < len(comments):
                headers["Link"] = (f'<{self.url}/repos/{self.repo}/issues/{issue}/comments'
                                   f'?per_page={per_page}&page={page + 1}>; rel="next"')
            return _json(chunk, 200, headers)
        return _error("Not Found", 404)

    def _validate_state(self, data: dict[str, Any]) -> str | None:
        status = data.get("status", "queued")
        if status not in RUN_ORDER:
            return f"status {status!r} is not valid"
        if status == "completed" and data.get("conclusion") not in CONCLUSIONS:
            return "conclusion is required when status is completed"
        if status != "completed" and data.get("conclusion") is not None:
            return "conclusion needs status completed"
        return None

    def _create_run(self, data: Any) -> Response:
        if not isinstance(data, dict) or not data.get("name") or not re.fullmatch(
                r"[0-9a-f]{40}", str(data.get("head_sha"))):
            return _error("Invalid request: name and head_sha are required", 422)
        problem = self._validate_state(data)
        if problem:
            return _error(f"Invalid request: {problem}", 422)
        run = CheckRun(next(self._ids), data["name"], data["head_sha"],
                       data.get("external_id", ""), data.get("status", "queued"),
                       data.get("conclusion"), data.get("details_url"),
                       data.get("output") or {})
        run.history.append((run.status, run.conclusion, run.output.get("title", "")))
        self.runs[run.id] = run
        return _json(run.as_json(), 201)

    def _update_run(self, run_id: int, data: Any) -> Response:
        run = self.runs.get(run_id)
        if run is None:
            return _error("Not Found", 404)
        if not isinstance(data, dict):
            return _error("Invalid request", 422)
        problem = self._validate_state(data)
        status = data.get("status", run.status)
        if run.status == "completed":
            problem = "a completed check run cannot be changed"
        elif RUN_ORDER[status] < RUN_ORDER[run.status]:
            problem = f"a check run cannot go back from {run.status} to {status}"
        if problem:
            return _error(f"Invalid request: {problem}", 422)
        run.status = status
        run.conclusion = data.get("conclusion")
        run.details_url = data.get("details_url", run.details_url)
        run.output = data.get("output") or run.output
        run.history.append((run.status, run.conclusion, run.output.get("title", "")))
        return _json(run.as_json())


@asynccontextmanager
async def serving(fake: FakeGitHub) -> AsyncIterator[FakeGitHub]:
    """Serve the fake on 127.0.0.1 (port 0) for the body."""
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("fake-github.error")
    config.graceful_timeout = 1.0
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, fake.app, config, shutdown_trigger=stop.wait))
        fake.url = binds[0]
        try:
            yield fake
        finally:
            stop.set()
