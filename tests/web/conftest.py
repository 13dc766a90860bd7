"""A BuildIt server with the web UI, logged in through a fake GitHub (real HTTP both)."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import SHA, WORKER_SECRET, ServerHandle, heartbeat_body, worker_body
from tests.web.browser import browser, chromium_session  # noqa: F401  (fixtures)
from tests.web.fake_github import CLIENT_ID, CLIENT_SECRET, ORG, FakeGitHubOAuth, serving

SESSION_SECRET = "test-session-secret-0123456789"
_CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def free_port() -> int:
    """A port free right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def csrf_of(page: str) -> str:
    match = _CSRF_RE.search(page)
    assert match, "the page carries no CSRF token"
    return match.group(1)


@dataclass
class Web:
    server: ServerHandle
    github: FakeGitHubOAuth
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def db(self) -> Any:
        return self.server.db

    def client(self) -> httpx.AsyncClient:
        """A fresh browser-like client: its own cookies, no redirects followed."""
        client = httpx.AsyncClient(base_url=self.url, timeout=30, follow_redirects=False,
                                   headers={"Accept": "text/html"})
        self.clients.append(client)
        return client

    async def login(self, login: str) -> httpx.AsyncClient:
        """A client logged in as ``login`` through the whole OAuth dance."""
        client = self.client()
        r = await client.get("/login", params={"next": "/pipelines"})
        assert r.status_code == 303, r.text
        authorize = r.headers["location"]
        assert authorize.startswith(f"{self.github.url}/login/oauth/authorize?")
        r = await client.get(authorize + f"&login={login}")
        assert r.status_code == 302, r.text
        callback = r.headers["location"]
        assert callback.startswith(f"{self.url}/login/callback?")
        r = await client.get(callback)
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/pipelines"
        return client

    async def csrf(self, client: httpx.AsyncClient, path: str = "/") -> str:
        r = await client.get(path)
        assert r.status_code == 200, r.text
        return csrf_of(r.text)

    async def api_pipeline(self, token: str, **body: Any) -> int:
        payload = {"git_branch": "stable", "git_sha": SHA, "packages": "bash",
                   "archs": "amd64", **body}
        r = await self.server.client.post("/api/pipeline/new", json=payload,
                                          headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return int(r.json()["id"])

    # a simulated worker, over HTTP as a real one

    async def heartbeat(self, host: str = "w1", arch: str = "amd64", **extra: Any) -> None:
        r = await self.server.client.post("/api/worker/heartbeat",
                                          json=heartbeat_body(host, arch, **extra))
        assert r.status_code == 200, r.text

    async def wait_worker(self, host: str) -> int:
        """Heartbeats are written in batches: wait until the worker is in the database."""
        while True:
            r = await self.server.client.get("/api/worker/list")
            found = [w for w in r.json()["items"] if w["hostname"] == host]
            if found:
                worker_id: int = found[0]["id"]
                return worker_id
            await trio.sleep(0.05)

    async def poll(self, host: str = "w1", arch: str = "amd64") -> Any:
        r = await self.server.client.post("/api/worker/poll", json=worker_body(host, arch))
        assert r.status_code == 200, r.text
        return r.json()

    async def upload_log(self, job: Any, offset: int, chunk: bytes,
                         host: str = "w1", arch: str = "amd64") -> int:
        r = await self.server.client.post(
            "/api/worker/log",
            params={"job_id": job["job_id"], "offset": offset,
                    "attempt_token": job["attempt_token"]},
            content=chunk,
            headers={"X-Worker-Secret": WORKER_SECRET, "X-Worker-Hostname": host,
                     "X-Worker-Arch": arch, "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 200, r.text
        size: int = r.json()["size"]
        return size

    async def report(self, job: Any, result: Any, host: str = "w1", arch: str = "amd64"
                     ) -> None:
        r = await self.server.client.post(
            "/api/worker/job_update",
            json={"hostname": host, "arch": arch, "job_id": job["job_id"],
                  "worker_secret": WORKER_SECRET, "attempt_token": job["attempt_token"],
                  "result": result},
        )
        assert r.status_code == 200, r.text


@pytest.fixture
async def fake_github() -> AsyncIterator[FakeGitHubOAuth]:
    fake = FakeGitHubOAuth()
    fake.add_user("alice", member=True)
    fake.add_user("bob", member=False)
    async with serving(fake) as served:
        yield served


def web_extra(fake: FakeGitHubOAuth) -> dict[str, str]:
    return {
        "BUILDIT_GITHUB_CLIENT_ID": CLIENT_ID,
        "BUILDIT_GITHUB_CLIENT_SECRET": CLIENT_SECRET,
        "BUILDIT_GITHUB_WEB_URL": fake.url,
        "BUILDIT_GITHUB_API_URL": fake.url,
        "BUILDIT_GITHUB_ORG": ORG,
        "BUILDIT_SESSION_SECRET": SESSION_SECRET,
    }


@pytest.fixture
async def web(start_server: Any, fake_github: FakeGitHubOAuth) -> AsyncIterator[Web]:
    port = free_port()
    server = await start_server(listen_port=port, public_url=f"http://127.0.0.1:{port}",
                                extra=web_extra(fake_github))
    handle = Web(server=server, github=fake_github)
    try:
        yield handle
    finally:
        for client in handle.clients:
            await client.aclose()
