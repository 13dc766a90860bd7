"""A fake of GitHub's OAuth web flow and the user API: a real HTTP server on 127.0.0.1.

It speaks the wire format the web UI uses: ``/login/oauth/authorize`` (a page with one
link per known user, or an immediate redirect with ``&login=<name>``),
``POST /login/oauth/access_token`` (JSON with ``Accept: application/json``),
``GET /user``, ``GET /user/memberships/orgs/{org}`` and ``GET /orgs/{org}/members/{login}``.
"""

from __future__ import annotations

import html
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlencode

import orjson
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

CLIENT_ID = "web-client-id"
CLIENT_SECRET = "web-client-secret"
ORG = "AOSC-Dev"


@dataclass
class FakeUser:
    login: str
    id: int
    member: bool


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status=status, content_type="application/json")


@dataclass
class FakeGitHubOAuth:
    users: dict[str, FakeUser] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)  # code -> login
    tokens: dict[str, str] = field(default_factory=dict)  # token -> login
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    url: str = ""

    def __post_init__(self) -> None:
        self.app = self._make_app()

    def add_user(self, login: str, *, member: bool) -> FakeUser:
        user = FakeUser(login, 1000 + len(self.users), member)
        self.users[login] = user
        return user

    def membership_checks(self) -> int:
        return sum(1 for _, path in self.calls if "/memberships/" in path)

    def revoke_all(self) -> None:
        self.tokens.clear()

    def _user_of(self) -> FakeUser | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        login = self.tokens.get(token.strip())
        return self.users.get(login) if login else None

    def _make_app(self) -> QuartTrio:
        app = QuartTrio("fake-github-oauth")

        @app.before_request
        async def _record() -> None:
            self.calls.append((request.method, request.path))

        @app.get("/login/oauth/authorize")
        async def authorize() -> Response:
            args = request.args
            if args.get("client_id") != CLIENT_ID:
                return Response("unknown client_id", status=400)
            redirect_uri, state = args.get("redirect_uri", ""), args.get("state", "")
            if not redirect_uri or not state:
                return Response("redirect_uri and state are required", status=400)

            def back_to(login: str) -> str:
                code = secrets.token_hex(10)
                self.codes[code] = login
                return f"{redirect_uri}?{urlencode({'code': code, 'state': state})}"

            chosen = args.get("login")
            if chosen:
                if chosen not in self.users:
                    return Response("no such user", status=404)
                return Response("", status=302, headers={"Location": back_to(chosen)})
            links = "".join(
                f'<li><a href="{html.escape(back_to(u.login))}">Sign in as {html.escape(u.login)}'
                f"</a></li>"
                for u in self.users.values()
            )
            page = (f"<!doctype html><html lang=en><title>Fake GitHub</title>"
                    f"<h1>Authorize BuildIt</h1><ul>{links}</ul></html>")
            return Response(page, content_type="text/html")

        @app.post("/login/oauth/access_token")
        async def access_token() -> Response:
            if "application/json" not in request.headers.get("Accept", ""):
                return Response("error=send_accept_json", status=200,
                                content_type="application/x-www-form-urlencoded")
            form = await request.form
            if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                return _json({"error": "incorrect_client_credentials"})
            login = self.codes.pop(form.get("code", ""), None)
            if login is None:
                return _json({"error": "bad_verification_code",
                              "error_description": "The code passed is incorrect or expired."})
            token = "gho_" + secrets.token_hex(16)
            self.tokens[token] = login
            return _json({"access_token": token, "token_type": "bearer", "scope": "read:org"})

        @app.get("/user")
        async def user() -> Response:
            found = self._user_of()
            if found is None:
                return _json({"message": "Bad credentials"}, 401)
            return _json({"login": found.login, "id": found.id,
                          # not https: the web UI shows no image (nothing to fetch in tests)
                          "avatar_url": f"{self.url}/avatars/{found.id}"})

        @app.get("/user/memberships/orgs/<org>")
        async def membership(org: str) -> Response:
            found = self._user_of()
            if found is None:
                return _json({"message": "Bad credentials"}, 401)
            if org != ORG or not found.member:
                return _json({"message": "Not Found"}, 404)
            return _json({"state": "active", "role": "member", "organization": {"login": ORG}})

        @app.get("/orgs/<org>/members/<login>")
        async def member(org: str, login: str) -> Response:
            user = self.users.get(login)
            if org == ORG and user is not None and user.member:
                return Response("", status=204)
            return Response("", status=404)

        return app


@asynccontextmanager
async def serving(fake: FakeGitHubOAuth) -> AsyncIterator[FakeGitHubOAuth]:
    """Serve the fake on 127.0.0.1 (port 0) for the body."""
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("fake-github-oauth.error")
    config.graceful_timeout = 1.0
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, fake.app, config, shutdown_trigger=stop.wait))
        fake.url = binds[0]
        try:
            yield fake
        finally:
            stop.set()
