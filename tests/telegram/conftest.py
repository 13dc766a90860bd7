"""A BuildIt server with the Telegram front end, against a fake Bot API (and, for /pr,
a fake GitHub), with a small packages tree so /build can resolve branches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from buildit.db import queries, web_queries
from tests.abbs_tree import commit, init_tree, package, switch
from tests.conftest import ServerHandle
from tests.telegram.fakes import FakeGitHub, FakeTelegram, serving
from tests.telegram.updates import BOT_NAME

BOT_TOKEN = "6123456789:AAHfakeTOKENforTESTS_only-123"
WEBHOOK_SECRET = "hook-secret_0123456789"
SESSION_SECRET = "session-secret-for-tests"
REPO = "AOSC-Dev/aosc-os-abbs"
ARCHS = ("amd64", "arm64", "riscv64")
TREE = {
    **package("core", "bash"),
    **package("core", "zlib"),
    **package("app-misc", "noarm", defines='FAIL_ARCH="arm64"\n'),
}


@dataclass
class Tree:
    path: Path
    stable: str
    feature: str


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    repo = tmp_path / "abbs"
    stable = init_tree(repo, TREE)
    switch(repo, "feature", create_from="stable")
    feature = commit(repo, package("app-utils", "newpkg"), "newpkg: new")
    switch(repo, "stable")
    return Tree(repo, stable, feature)


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram(BOT_TOKEN)
    async with serving(fake.app) as url:
        fake.url = url
        yield fake


@pytest.fixture
async def fake_github() -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(REPO)
    async with serving(fake.app) as url:
        fake.url = url
        yield fake


def telegram_env(api_url: str) -> dict[str, str]:
    return {
        "BUILDIT_TELEGRAM_TOKEN": BOT_TOKEN,
        "BUILDIT_TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "BUILDIT_TELEGRAM_API_URL": api_url,
        "BUILDIT_TELEGRAM_BOT_NAME": BOT_NAME,
        "BUILDIT_SESSION_SECRET": SESSION_SECRET,
    }


def github_env(api_url: str, key_path: Path) -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    return {
        "BUILDIT_GITHUB_WEBHOOK_SECRET": "github-hook-secret",
        "BUILDIT_GITHUB_APP_ID": "12345",
        "BUILDIT_GITHUB_APP_PRIVATE_KEY": str(key_path),
        "BUILDIT_GITHUB_INSTALLATION_ID": "1",
        "BUILDIT_GITHUB_API_URL": api_url,
        "BUILDIT_GITHUB_REPO": REPO,
    }


@dataclass
class Bot:
    """The server, the fake Bot API, and ways to talk to both as Telegram would."""

    server: ServerHandle
    fake: FakeTelegram
    tree: Tree
    github: FakeGitHub | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def client(self) -> httpx.AsyncClient:
        return self.server.client

    async def post(self, update: Any, *, secret: str | None = WEBHOOK_SECRET) -> httpx.Response:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        return await self.client.post("/api/telegram/webhook", json=update, headers=headers)

    async def send(self, update: Any) -> httpx.Response:
        r = await self.post(update)
        assert r.status_code == 200, r.text
        return r

    async def link(self, login: str, telegram_id: int, role: str = "developer"
                   ) -> queries.User:
        """A user whose Telegram account is linked, as the web UI's link page stores it."""
        user: queries.User = await self.server.db.run(queries.upsert_user, login, role)
        await self.server.db.run(web_queries.link_telegram, user.id, telegram_id)
        return user

    async def wait_outbox_settled(self, *, step: float = 0.01) -> None:
        """Until every notification is delivered or failed (polls every ``step``)."""
        while await self.server.db.read(queries.outbox_backlog):
            await trio.sleep(step)


@pytest.fixture
async def make_bot(
    start_server: Any, fake_telegram: FakeTelegram, tree: Tree, tmp_path: Path
) -> Callable[..., Awaitable[Bot]]:
    async def factory(*, github: FakeGitHub | None = None, **overrides: Any) -> Bot:
        extra = telegram_env(fake_telegram.url)
        if github is not None:
            extra |= github_env(github.url, tmp_path / "app.pem")
        extra |= overrides.pop("extra", {})
        server = await start_server(abbs_path=tree.path, archs=ARCHS, extra=extra,
                                    **overrides)
        return Bot(server, fake_telegram, tree, github, extra)

    return factory


@pytest.fixture
async def bot(make_bot: Callable[..., Awaitable[Bot]]) -> Bot:
    return await make_bot()
