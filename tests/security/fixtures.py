"""A server with every front end on (worker API, Developer API, web UI with GitHub login,
GitHub webhook, Telegram webhook), its secrets, and ways to talk to it.

``full_server`` makes the ``full`` fixture of ``tests/security/conftest.py`` and
``tests/test_openapi.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import SHA, WORKER_SECRET, ServerHandle, ok_result, worker_body
from tests.reliability.harness import free_port
from tests.telegram.fakes import FakeTelegram
from tests.telegram.fakes import serving as serving_app
from tests.web.fake_github import CLIENT_ID, CLIENT_SECRET, ORG, FakeGitHubOAuth
from tests.web.fake_github import serving as serving_oauth

TELEGRAM_TOKEN = "6123456789:AAHsecurityTESTtoken-0123456789abcd"
TELEGRAM_SECRET = "tg-hook-secret_0123456789abcdef"
GITHUB_HOOK_SECRET = "gh-hook-secret-0123456789abcdef"
SESSION_SECRET = "session-secret-0123456789abcdef-security"
REPO = "AOSC-Dev/aosc-os-abbs"
_CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def app_key(path: Path) -> str:
    """Write a fresh GitHub App key to ``path``; returns the PEM text."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.write_bytes(pem)
    return pem.decode()


def full_extra(*, oauth_url: str, telegram_url: str, key_path: Path) -> dict[str, str]:
    return {
        # web UI: GitHub login
        "BUILDIT_GITHUB_CLIENT_ID": CLIENT_ID,
        "BUILDIT_GITHUB_CLIENT_SECRET": CLIENT_SECRET,
        "BUILDIT_GITHUB_WEB_URL": oauth_url,
        "BUILDIT_GITHUB_API_URL": oauth_url,
        "BUILDIT_GITHUB_ORG": ORG,
        "BUILDIT_SESSION_SECRET": SESSION_SECRET,
        # GitHub App: the webhook (its API calls reach the OAuth fake and fail: harmless)
        "BUILDIT_GITHUB_WEBHOOK_SECRET": GITHUB_HOOK_SECRET,
        "BUILDIT_GITHUB_APP_ID": "12345",
        "BUILDIT_GITHUB_APP_PRIVATE_KEY": str(key_path),
        "BUILDIT_GITHUB_INSTALLATION_ID": "1",
        "BUILDIT_GITHUB_REPO": REPO,
        "BUILDIT_NOTIFY_BASE_DELAY": "0.05",
        "BUILDIT_NOTIFY_POLL_INTERVAL": "0.05",
        # Telegram
        "BUILDIT_TELEGRAM_TOKEN": TELEGRAM_TOKEN,
        "BUILDIT_TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
        "BUILDIT_TELEGRAM_API_URL": telegram_url,
        "BUILDIT_TELEGRAM_BOT_NAME": "aosc_buildit_bot",
    }


def github_signature(body: bytes, secret: str = GITHUB_HOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def csrf_of(page: str) -> str:
    match = _CSRF_RE.search(page)
    assert match, "the page carries no CSRF token"
    return match.group(1)


async def _table_names(conn: Any) -> list[str]:
    return [r["tablename"] for r in await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]


async def all_counts(conn: Any) -> dict[str, int]:
    """Row counts of every table of the schema."""
    return {t: await conn.fetchval(f'SELECT count(*) FROM "{t}"') for t in
            await _table_names(conn)}


# Bookkeeping that a refused request may touch: a Guest's valid token is "used" when it
# is refused for not being a Developer's.
IGNORED_COLUMNS = ["last_used_at"]


async def all_rows(conn: Any) -> dict[str, str]:
    """A digest of the content of every table (its rows, sorted; ``IGNORED_COLUMNS`` out)."""
    out = {}
    for table in await _table_names(conn):
        out[table] = await conn.fetchval(
            f"SELECT md5(coalesce(string_agg((to_jsonb(t) - $1::text[])::text, chr(10) "
            f"ORDER BY (to_jsonb(t) - $1::text[])::text), '')) FROM \"{table}\" t",
            IGNORED_COLUMNS)
    return out


@dataclass
class Full:
    """The server with every front end, and the fakes it talks to."""

    server: ServerHandle
    oauth: FakeGitHubOAuth
    telegram: FakeTelegram
    app_key_pem: str
    dev_token: str = ""
    guest_token: str = ""
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def db(self) -> Any:
        return self.server.db

    @property
    def client(self) -> httpx.AsyncClient:
        return self.server.client

    def secrets(self) -> dict[str, str]:
        """Every secret this server knows, by name."""
        return {
            "worker secret": WORKER_SECRET,
            "Developer API token": self.dev_token,
            "Guest API token": self.guest_token,
            "GitHub webhook secret": GITHUB_HOOK_SECRET,
            "Telegram bot token": TELEGRAM_TOKEN,
            "Telegram bot token (secret part)": TELEGRAM_TOKEN.split(":", 1)[1],
            "Telegram webhook secret": TELEGRAM_SECRET,
            "GitHub OAuth client secret": CLIENT_SECRET,
            "session secret": SESSION_SECRET,
            "GitHub App private key": self.app_key_pem.splitlines()[1],
        }

    async def counts(self) -> dict[str, int]:
        result: dict[str, int] = await self.db.read(all_counts)
        return result

    async def rows(self) -> dict[str, str]:
        result: dict[str, str] = await self.db.read(all_rows)
        return result

    def browser(self) -> httpx.AsyncClient:
        """A fresh browser-like client: its own cookies, no redirects followed."""
        client = httpx.AsyncClient(base_url=self.url, timeout=30, follow_redirects=False,
                                   headers={"Accept": "text/html"})
        self.clients.append(client)
        return client

    async def login(self, login: str) -> httpx.AsyncClient:
        """A browser logged in as ``login`` through GitHub's OAuth web flow (the fake)."""
        client = self.browser()
        r = await client.get("/login", params={"next": "/"})
        assert r.status_code == 303, r.text
        r = await client.get(r.headers["location"] + f"&login={login}")
        assert r.status_code == 302, r.text
        r = await client.get(r.headers["location"])
        assert r.status_code == 303, r.text
        return client

    async def csrf(self, client: httpx.AsyncClient) -> str:
        r = await client.get("/")
        assert r.status_code == 200, r.text
        return csrf_of(r.text)

    # the Developer API and a worker, as the real clients would

    async def new_pipeline(self, archs: str = "amd64") -> dict[str, Any]:
        r = await self.client.post(
            "/api/pipeline/new", headers={"Authorization": f"Bearer {self.dev_token}"},
            json={"git_branch": "stable", "git_sha": SHA, "packages": "bash", "archs": archs})
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    async def poll(self, hostname: str = "w1", arch: str = "amd64") -> dict[str, Any]:
        r = await self.client.post("/api/worker/poll", json=worker_body(hostname, arch))
        assert r.status_code == 200 and r.json() is not None, r.text
        result: dict[str, Any] = r.json()
        return result

    async def report(self, job: dict[str, Any], result: dict[str, Any] | None = None,
                     hostname: str = "w1", arch: str = "amd64") -> None:
        r = await self.client.post("/api/worker/job_update", json={
            "hostname": hostname, "arch": arch, "job_id": job["job_id"],
            "worker_secret": WORKER_SECRET, "attempt_token": job["attempt_token"],
            "result": result or ok_result("bash")})
        assert r.status_code == 200, r.text


@asynccontextmanager
async def full_server(start_server: Any, tmp_path: Path, **overrides: Any
                      ) -> AsyncIterator[Full]:
    """For a fixture: the server (``start_server``'s) with every front end, and fakes."""
    oauth = FakeGitHubOAuth()
    oauth.add_user("alice", member=True)
    oauth.add_user("gus", member=False)
    oauth.add_user("carol", member=True)  # a second Developer, for the web UI only
    telegram = FakeTelegram(TELEGRAM_TOKEN)
    async with serving_oauth(oauth), serving_app(telegram.app) as telegram_url:
        telegram.url = telegram_url
        key_path = tmp_path / "github-app.pem"
        pem = app_key(key_path)
        port = free_port()
        server = await start_server(
            listen_port=port, public_url=f"http://127.0.0.1:{port}",
            extra=full_extra(oauth_url=oauth.url, telegram_url=telegram_url,
                             key_path=key_path), **overrides)
        handle = Full(server=server, oauth=oauth, telegram=telegram, app_key_pem=pem)
        handle.dev_token = await server.add_user("alice")
        handle.guest_token = await server.add_user("gus", "guest")
        try:
            yield handle
        finally:
            for client in handle.clients:
                await client.aclose()
