"""A BuildIt server with the GitHub front end, against a fake GitHub on 127.0.0.1."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from buildit.db import queries
from buildit.github.webhook import sign
from tests.conftest import ServerHandle, heartbeat_body, worker_body
from tests.github.fake import FakeGitHub, serving

SECRET = "github-webhook-secret"
APP_ID = "12345"
INSTALLATION_ID = 77
REPO = "AOSC-Dev/aosc-os-abbs"
ORG = "AOSC-Dev"
PR = 4242
HEAD_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
MERGE_SHA = "c4295bd74fb0f4fda03689c3df3f2803b658fd85"
FAST_RETRIES = {
    "BUILDIT_NOTIFY_BASE_DELAY": "0.05",
    "BUILDIT_NOTIFY_POLL_INTERVAL": "0.05",
    "BUILDIT_NOTIFY_LEASE": "3",
}
_deliveries = itertools.count(1)


@dataclass(frozen=True)
class AppKey:
    path: Path
    public_pem: bytes


@pytest.fixture
def app_key(tmp_path: Path) -> AppKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "github-app.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return AppKey(path, public)


@pytest.fixture
async def fake_github(app_key: AppKey) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(public_key_pem=app_key.public_pem, app_id=APP_ID,
                      installation_id=INSTALLATION_ID, repo=REPO, org=ORG)
    fake.members.add("alice")
    async with serving(fake):
        yield fake


def github_env(fake: FakeGitHub, key: AppKey) -> dict[str, str]:
    """The configuration of a server that talks to ``fake`` (installation id found
    through the API)."""
    return {
        "BUILDIT_GITHUB_WEBHOOK_SECRET": SECRET,
        "BUILDIT_GITHUB_APP_ID": APP_ID,
        "BUILDIT_GITHUB_APP_PRIVATE_KEY": str(key.path),
        "BUILDIT_GITHUB_API_URL": fake.url,
        "BUILDIT_GITHUB_REPO": REPO,
        "BUILDIT_GITHUB_ORG": ORG,
        **FAST_RETRIES,
    }


@dataclass
class GitHubServer:
    server: ServerHandle
    fake: FakeGitHub

    @property
    def client(self) -> httpx.AsyncClient:
        return self.server.client

    async def send(self, event: str, payload: Any, *, delivery: str | None = None,
                   secret: str = SECRET, signature: str | None = None,
                   path: str = "/api/github/webhook", body: bytes | None = None,
                   content_type: str = "application/json") -> httpx.Response:
        """POST a webhook delivery as GitHub does (signed unless ``signature`` is given)."""
        raw = body if body is not None else orjson.dumps(payload)
        headers = {
            "Content-Type": content_type,
            "User-Agent": "GitHub-Hookshot/abc1234",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "109948940",
            "X-Hub-Signature-256": signature if signature is not None else sign(secret, raw),
        }
        if signature == "":
            del headers["X-Hub-Signature-256"]
        return await self.client.post(path, content=raw, headers=headers)

    async def pipelines(self) -> list[dict[str, Any]]:
        r = await self.client.get("/api/pipeline/list", params={"items_per_page": 200})
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    async def wait_for(self, predicate: Callable[[], Any], what: str) -> Any:
        """Poll until ``predicate()`` is truthy (the caller holds the time limit)."""
        while True:
            value = predicate()
            if value:
                return value
            await trio.sleep(0.05)

    async def comments(self, count: int, issue: int = PR) -> list[str]:
        """Wait for ``count`` comments on ``issue``; then the comments."""
        await self.wait_for(lambda: len(self.fake.posted_comments(issue)) >= count,
                            f"{count} comments")
        return self.fake.posted_comments(issue)

    async def settled(self) -> None:
        """Wait until the outbox has nothing left to deliver."""
        while await self.server.db.read(queries.outbox_backlog):
            await trio.sleep(0.05)

    async def worker_takes(self, hostname: str, arch: str) -> dict[str, Any]:
        r = await self.client.post("/api/worker/heartbeat", json=heartbeat_body(hostname, arch))
        assert r.status_code == 200, r.text
        r = await self.client.post("/api/worker/poll", json=worker_body(hostname, arch))
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        assert job is not None, f"no job for {arch}"
        return job

    async def worker_reports(self, hostname: str, arch: str, job_id: int, result: Any) -> None:
        r = await self.client.post(
            "/api/worker/job_update",
            json={"hostname": hostname, "arch": arch, "job_id": job_id,
                  "worker_secret": "test-worker-secret", "result": result})
        assert r.status_code == 200, r.text


@pytest.fixture
async def make_github_server(
    fake_github: FakeGitHub, app_key: AppKey,
    start_server: Callable[..., Awaitable[ServerHandle]],
) -> Callable[..., Awaitable[GitHubServer]]:
    """Factory of servers with GitHub on (set up after the fake, so stopped before it)."""
    async def factory(*, extra: dict[str, str] | None = None, **overrides: Any
                      ) -> GitHubServer:
        env = github_env(fake_github, app_key) | (extra or {})
        server = await start_server(extra=env, **overrides)
        return GitHubServer(server, fake_github)

    return factory


@pytest.fixture
async def gh(make_github_server: Callable[..., Awaitable[GitHubServer]]) -> GitHubServer:
    return await make_github_server()
