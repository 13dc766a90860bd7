"""Secrets: stored hashed, compared in constant time, never accepted empty, never logged."""

from __future__ import annotations

import hashlib
import inspect
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

import buildit
from buildit import services as services_module
from buildit.db import queries, web_queries
from buildit.github import webhook as github_webhook
from buildit.http import worker_api
from buildit.services import TOKEN_PREFIX, hash_token, new_token
from buildit.telegram import webhook as telegram_webhook
from buildit.web import auth as web_auth
from buildit.web import login as web_login
from tests.conftest import SHA, WORKER_SECRET, heartbeat_body, ok_result, worker_body
from tests.github.payloads import issue_comment
from tests.security.fixtures import (
    REPO,
    TELEGRAM_SECRET,
    Full,
    github_signature,
)
from tests.telegram.updates import MAINTAINER, private

_TOKEN_RE = re.compile(r"bit_[A-Za-z0-9_-]{20,}")


async def _dump(conn: Any) -> str:
    """Every row of every table, as text."""
    tables = [r["tablename"] for r in await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    parts = []
    for table in tables:
        rows = await conn.fetch(f'SELECT t::text AS row FROM "{table}" t')
        parts.extend(r["row"] for r in rows)
    return "\n".join(parts)


# ------------------------------------------------------------------ API tokens


async def test_api_tokens_are_stored_as_sha256_only(full: Full) -> None:
    with trio.fail_after(60):
        tokens = {"made by the test fixture (as `buildit token create`)": full.dev_token}
        # the web UI's account page
        browser = await full.login("alice")
        r = await browser.post("/account/token", data={"csrf_token": await full.csrf(browser)})
        assert r.status_code == 200, r.text[:300]
        assert r.headers.get("cache-control") == "no-store"
        tokens["made by the web UI"] = _TOKEN_RE.findall(r.text)[0]
        # the Telegram bot's /token
        alice = await full.db.read(queries.user_by_login, "alice")
        await full.db.run(web_queries.link_telegram, alice.id, MAINTAINER)
        r = await full.client.post("/api/telegram/webhook", json=private("/token"),
                                   headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET})
        assert r.status_code == 200, r.text
        [reply] = await full.telegram.wait_for(1, chat_id=MAINTAINER)
        tokens["sent by the Telegram bot"] = _TOKEN_RE.findall(reply["text"])[0]

        stored = {bytes(r["token_hash"]) for r in await full.db.read(
            lambda conn: conn.fetch("SELECT token_hash FROM api_tokens"))}
        dump = await full.db.read(_dump)
        services = full.server.running.services
        for how, token in tokens.items():
            assert token.startswith(TOKEN_PREFIX) and len(token) >= 40, how
            digest = hashlib.sha256(token.encode()).digest()
            assert hash_token(token) == digest
            user = await services.authenticate_token(token)
            if user is not None:
                assert digest in stored, how
            # the token itself is nowhere in the database, whole or in part
            secret_part = token.removeprefix(TOKEN_PREFIX)
            assert secret_part not in dump, f"the token {how} is stored in clear"
            assert secret_part[:16] not in dump, f"a part of the token {how} is stored"
        # the last token made is valid; every stored hash is 32 bytes
        assert await services.authenticate_token(tokens["sent by the Telegram bot"])
        assert all(len(h) == 32 for h in stored)


@pytest.mark.parametrize(
    "token",
    [None, "", " ", "bit_", "Bearer", "null", "undefined", "bit_" + "\x00" * 43,
     "bit_" + "A" * 500, "x" * 47, "bit_é" + "a" * 42],
    ids=repr,
)
async def test_empty_or_malformed_token_never_authenticates(full: Full, token: str | None
                                                            ) -> None:
    with trio.fail_after(30):
        services = full.server.running.services
        assert await services.authenticate_token(token) is None
        # not even when a row with the hash of exactly that text existed
        if token:
            alice = await full.db.read(queries.user_by_login, "alice")
            try:
                await full.db.run(queries.insert_token, alice.id, hash_token(token))
            except Exception:  # the schema refuses it: also fine
                return
            user = await services.authenticate_token(token)
            if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
                assert user is None


async def test_the_token_hash_of_another_token_does_not_authenticate(full: Full) -> None:
    with trio.fail_after(30):
        services = full.server.running.services
        for fake in (hash_token(full.dev_token).hex(), new_token(),
                     full.dev_token.upper(), full.dev_token + "\n"):
            assert await services.authenticate_token(fake) is None


def test_secrets_are_compared_in_constant_time() -> None:
    """Every comparison of a presented secret with the real one goes through
    ``hmac.compare_digest`` (or, for API tokens, a lookup by SHA-256)."""
    assert "hmac.compare_digest" in inspect.getsource(services_module.secret_matches)
    assert "secret_matches(" in inspect.getsource(worker_api._check_secret)
    assert "secret_matches(" in inspect.getsource(telegram_webhook.make_blueprint)
    assert "hmac.compare_digest" in inspect.getsource(github_webhook.signature_valid)
    assert "hmac.compare_digest" in inspect.getsource(web_auth.check_csrf)
    assert "hmac.compare_digest" in inspect.getsource(web_login.login_callback)
    source = inspect.getsource(services_module.Services.authenticate_token)
    assert "hash_token(token)" in source and "user_by_token_hash" in source
    # An empty secret never matches, whatever is configured.
    assert not services_module.secret_matches("", "")
    assert not services_module.secret_matches(None, "x")
    assert not services_module.secret_matches("x", "")
    assert not github_webhook.signature_valid("", b"{}", github_webhook.sign("", b"{}"))


_COMPARISON = re.compile(
    r"(secret|token|signature|csrf)\w*[\]\)\"']*\s*(==|!=)|(==|!=)\s*[\w\.]*(secret|token|signature|csrf)",
    re.IGNORECASE)
# == on names that look secret, and why each is fine
ALLOWED_COMPARISONS = {
    "buildit/db/queries.py": "attempt tokens are fencing ids handed to the worker that "
                             "already proved the worker secret; not credentials",
}


def test_no_secret_is_compared_with_equals() -> None:
    root = Path(inspect.getfile(buildit)).parent
    offenders = []
    for path in root.rglob("*.py"):
        relative = "buildit/" + str(path.relative_to(root))
        if relative in ALLOWED_COMPARISONS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if _COMPARISON.search(code):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, offenders


# ------------------------------------------------------------------ logs


@dataclass
class Logged:
    record: logging.LogRecord
    task: trio.lowlevel.Task | None  # the trio task that emitted it


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.logged: list[Logged] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        except RuntimeError:  # not in trio (a worker thread)
            task = None
        self.logged.append(Logged(record, task))


def _within(task: trio.lowlevel.Task | None, ancestor: trio.lowlevel.Task) -> bool:
    while task is not None:
        if task is ancestor:
            return True
        nursery = task.parent_nursery
        task = nursery.parent_task if nursery is not None else None
    return False


@pytest.fixture
def debug_logs() -> Iterator[list[Logged]]:
    """Every record at DEBUG and above, from before the server starts."""
    root = logging.getLogger()
    keep = _Keep()
    old = root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        yield keep.logged
    finally:
        root.removeHandler(keep)
        root.setLevel(old)


def _texts(record: logging.LogRecord) -> list[str]:
    out = [str(record.msg), repr(record.args), repr(record.__dict__)]
    try:
        out.append(record.getMessage())
    except Exception:  # a broken record still shows msg and args
        pass
    if record.exc_info:
        out.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        out.append(record.exc_text)
    if record.stack_info:
        out.append(record.stack_info)
    return out


async def test_no_secret_reaches_the_logs(debug_logs: list[Logged], full: Full) -> None:
    """Every record the server (and the fakes) emitted, at DEBUG: the test's own HTTP
    clients, which hold the secrets and log their headers at DEBUG, are left out."""
    me = trio.lowlevel.current_task()
    with trio.fail_after(120):
        client = full.client
        services = full.server.running.services
        dev = {"Authorization": f"Bearer {full.dev_token}"}
        # --- the Developer API, right and wrong
        r = await client.post("/api/pipeline/new", headers=dev, json={
            "git_branch": "stable", "git_sha": SHA, "packages": "bash", "archs": "amd64,arm64"})
        assert r.status_code == 200, r.text
        pipeline = r.json()
        r = await client.post("/api/pipeline/new", json={"git_branch": "x", "packages": "y"},
                              headers={"Authorization": f"Bearer {full.dev_token}x"})
        assert r.status_code == 401
        r = await client.post("/api/pipeline/new", json={"git_branch": "x", "packages": "y"},
                              headers={"Authorization": f"Bearer {full.guest_token}"})
        assert r.status_code == 403
        # --- a worker's life: heartbeat, poll, log, heartbeat with the job, result
        r = await client.post("/api/worker/heartbeat", json=heartbeat_body("w1", "amd64"))
        assert r.status_code == 200, r.text
        r = await client.post("/api/worker/poll", json=worker_body("w1", "amd64", wait_secs=1))
        job = r.json()
        assert job is not None
        r = await client.post("/api/worker/log", content=b"building\n", params={
            "job_id": job["job_id"], "offset": 0, "attempt_token": job["attempt_token"]},
            headers={"X-Worker-Secret": WORKER_SECRET, "X-Worker-Hostname": "w1",
                     "X-Worker-Arch": "amd64"})
        assert r.status_code == 200, r.text
        r = await client.post("/api/worker/heartbeat", json=heartbeat_body(
            "w1", "amd64", job_id=job["job_id"], attempt_token=job["attempt_token"]))
        assert r.json() == {"job_state": "running"}
        r = await client.post("/api/worker/job_update", json={
            "hostname": "w1", "arch": "amd64", "job_id": job["job_id"],
            "worker_secret": WORKER_SECRET, "attempt_token": job["attempt_token"],
            "result": ok_result(build_success=False, failed="bash")})
        assert r.status_code == 200, r.text
        r = await client.post("/api/job/restart", headers=dev, json={"job_id": job["job_id"]})
        assert r.status_code == 200, r.text
        r = await client.post("/api/worker/poll", json=worker_body("a1", "arm64"))
        arm = r.json()
        r = await client.post("/api/worker/release", json={
            "hostname": "a1", "arch": "arm64", "job_id": arm["job_id"],
            "worker_secret": WORKER_SECRET, "attempt_token": arm["attempt_token"]})
        assert r.status_code == 200, r.text
        for wrong in ("", "wrong", WORKER_SECRET[:-1]):
            r = await client.post("/api/worker/poll",
                                  json=worker_body("w1", "amd64", worker_secret=wrong))
            assert r.status_code == 401
        r = await client.post("/api/pipeline/cancel", headers=dev,
                              json={"pipeline_id": pipeline["id"]})
        assert r.status_code == 200, r.text
        # --- the web UI: GitHub login (client secret, user token), a new API token, logout
        browser = await full.login("alice")
        csrf = await full.csrf(browser)
        r = await browser.post("/account/token", data={"csrf_token": csrf})
        web_token = _TOKEN_RE.findall(r.text)[0]
        cookies = [c.value for c in browser.cookies.jar]
        r = await browser.post("/logout", data={"csrf_token": csrf})
        assert r.status_code == 303
        # --- Telegram: a linked Developer asks for a token; the Bot API refuses twice first
        alice = await full.db.read(queries.user_by_login, "alice")
        await full.db.run(web_queries.link_telegram, alice.id, MAINTAINER)
        full.telegram.refuse_sends = 2
        full.telegram.retry_after = 0
        for text in ("/help", "/status", "/token"):
            r = await client.post("/api/telegram/webhook", json=private(text),
                                  headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET})
            assert r.status_code == 200, r.text
        r = await client.post("/api/telegram/webhook", json=private("/help"),
                              headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
        assert r.status_code == 401
        replies = await full.telegram.wait_for(3, chat_id=MAINTAINER)
        bot_tokens = [t for reply in replies for t in _TOKEN_RE.findall(reply["text"])]
        assert bot_tokens, "the bot sent no token"
        # --- GitHub: a signed command (the App's API calls then fail against the fake)
        body = issue_comment(repo=REPO, pr=7, login="alice", body="@aosc-buildit-bot help")
        raw = orjson.dumps(body)
        r = await client.post("/api/github/webhook", content=raw, headers={
            "Content-Type": "application/json", "X-GitHub-Event": "issue_comment",
            "X-GitHub-Delivery": "log-test-1", "X-Hub-Signature-256": github_signature(raw)})
        assert r.status_code == 202, r.text
        r = await client.post("/api/github/webhook", content=raw, headers={
            "Content-Type": "application/json", "X-GitHub-Event": "issue_comment",
            "X-GitHub-Delivery": "log-test-2", "X-Hub-Signature-256": "sha256=" + "0" * 64})
        assert r.status_code == 401
        # let the actors do their part: the GitHub reply is tried (and fails: the API
        # is the OAuth fake: 404), the Telegram replies are delivered after the 429s
        while not await full.db.read(lambda conn: conn.fetchval(
                "SELECT count(*) FROM outbox WHERE channel = 'github' AND (failed_at IS NOT NULL"
                " OR last_error IS NOT NULL)")):
            await trio.sleep(0.05)
        await services.fleet.wait_flushed()

    secrets = full.secrets()
    secrets["API token made by the web UI"] = web_token
    for i, token in enumerate(bot_tokens):
        secrets[f"API token sent by the Telegram bot #{i}"] = token
    for i, token in enumerate(full.oauth.tokens):
        secrets[f"GitHub user token #{i}"] = token
    for i, value in enumerate(cookies):
        if len(value) >= 16:
            secrets[f"session cookie #{i}"] = value
    records = [logged.record for logged in debug_logs if not _within(logged.task, me)]
    assert len(records) > 50, "the logs were not captured"
    assert any(r.levelno == logging.DEBUG for r in records)
    assert any(r.name.startswith("httpx") for r in records), "no outbound request logged"
    assert any("/bot<redacted>/sendMessage" in r.getMessage() for r in records)
    assert any(r.name == "buildit.http.access" for r in records)
    leaks = []
    for record in records:
        for text in _texts(record):
            for name, secret in secrets.items():
                if secret and secret in text:
                    leaks.append(f"{name} in {record.name} {record.levelname}: "
                                 f"{record.getMessage()[:300]}")
    assert not leaks, "\n".join(sorted(set(leaks)))
