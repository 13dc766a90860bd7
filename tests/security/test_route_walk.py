"""No way in where one does not belong: every route of the running app, walked.

* Every state-changing route (POST/PUT/PATCH/DELETE) is in ``REGISTRY``, which says
  what protects it; a new route that is not fails here until someone decides.
* For each registered route, the request a legitimate caller would send is spoiled in
  its credential only: left out, empty, wrong, malformed (and for Developer actions,
  the credential of someone who is not a Developer). Each is refused with 401/403, and
  the whole database (every table, row by row) is unchanged. Then the unspoiled
  request is accepted and does change it, so "unchanged" means something.
* Every GET route, asked anonymously, changes nothing and never answers 5xx.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import trio

from buildit import clock
from buildit.linking import make_link_token
from tests.conftest import SHA, WORKER_SECRET, heartbeat_body, ok_result, worker_body
from tests.github.payloads import issue_comment
from tests.security.fixtures import (
    GITHUB_HOOK_SECRET,
    REPO,
    SESSION_SECRET,
    TELEGRAM_SECRET,
    Full,
    github_signature,
)

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

DEVELOPER = "Developer API token (Authorization: Bearer)"
WORKER = "worker secret (worker_secret in the JSON body)"
WORKER_HEADER = "worker secret (X-Worker-Secret header)"
GITHUB = "GitHub webhook signature (X-Hub-Signature-256, HMAC of the body)"
TELEGRAM = "Telegram webhook secret token (X-Telegram-Bot-Api-Secret-Token)"
SESSION = "web session (GitHub login) + CSRF token; the role is checked by the action"

# (method, rule) -> what protects it. "Public but harmless" routes would be listed with
# a reason; there are none: even /logout needs the session's CSRF token.
REGISTRY: dict[tuple[str, str], str] = {
    ("POST", "/api/pipeline/new"): DEVELOPER,
    ("POST", "/api/pipeline/cancel"): DEVELOPER,
    ("POST", "/api/job/restart"): DEVELOPER,
    ("POST", "/api/worker/heartbeat"): WORKER,
    ("POST", "/api/worker/poll"): WORKER,
    ("POST", "/api/worker/job_update"): WORKER,
    ("POST", "/api/worker/release"): WORKER,
    ("POST", "/api/worker/log"): WORKER_HEADER,
    ("POST", "/api/github/webhook"): GITHUB,
    ("POST", "/api/webhook"): GITHUB,
    ("POST", "/api/telegram/webhook"): TELEGRAM,
    ("POST", "/pipelines/new"): SESSION,
    ("POST", "/pipelines/<int:pipeline_id>/cancel"): SESSION,
    ("POST", "/jobs/<int:job_id>/restart"): SESSION,
    ("POST", "/account/token"): SESSION,
    ("POST", "/link/telegram"): SESSION,
    ("POST", "/logout"): SESSION,
}
PUBLIC_BUT_HARMLESS: dict[tuple[str, str], str] = {}
# GET routes not walked, and why
NOT_WALKED = {
    "/events": "a live stream: open for minutes (tests/web covers it)",
}

_updates = itertools.count(5_000_001)
_deliveries = itertools.count(1)


def _app_rules(full: Full) -> list[Any]:
    app = full.server.running.app
    assert app is not None, "RunningServer.app is set by run_server"
    return list(app.url_map.iter_rules())


def test_registry_kinds_are_known() -> None:
    assert set(REGISTRY.values()) <= {DEVELOPER, WORKER, WORKER_HEADER, GITHUB, TELEGRAM,
                                      SESSION}
    assert not set(REGISTRY) & set(PUBLIC_BUT_HARMLESS)


async def test_every_state_changing_route_is_registered(full: Full) -> None:
    found = {(method, rule.rule) for rule in _app_rules(full)
             for method in (rule.methods or set()) & STATE_CHANGING}
    assert found, "no state-changing route found: the walk is broken"
    unregistered = found - set(REGISTRY) - set(PUBLIC_BUT_HARMLESS)
    assert not unregistered, (
        f"state-changing routes with no entry saying what protects them: {unregistered}")
    stale = (set(REGISTRY) | set(PUBLIC_BUT_HARMLESS)) - found
    assert not stale, f"registered routes the app does not have (any more): {stale}"


# ------------------------------------------------------------------ the world


@dataclass
class World:
    full: Full
    running: dict[str, Any]  # w1/amd64 builds it
    failed_job: int  # may be restarted
    to_cancel: int  # a running pipeline
    browsers: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    csrf: dict[str, str] = field(default_factory=dict)

    @property
    def client(self) -> httpx.AsyncClient:
        return self.full.client


async def make_world(full: Full) -> World:
    running_pipeline = await full.new_pipeline("amd64")
    running = await full.poll("w1", "amd64")
    assert running["job_id"] == running_pipeline["jobs"]["amd64"]
    await full.new_pipeline("arm64")
    job = await full.poll("a1", "arm64")
    await full.report(job, ok_result(build_success=False, failed="bash"), "a1", "arm64")
    to_cancel = await full.new_pipeline("riscv64")  # waits: a poll of r1/riscv64 claims it
    world = World(full=full, running=running, failed_job=job["job_id"],
                  to_cancel=to_cancel["id"])
    for login in ("alice", "gus"):
        world.browsers[login] = await full.login(login)
        world.csrf[login] = await full.csrf(world.browsers[login])
    world.browsers["anonymous"] = full.browser()
    world.csrf["anonymous"] = await full.csrf(world.browsers["anonymous"])
    await full.server.running.services.fleet.wait_flushed()
    return world


# ------------------------------------------------------------------ the requests


@dataclass(frozen=True)
class Attempt:
    """One request: ``client`` is ``None`` for the plain API client, else a browser."""

    label: str
    method: str
    path: str
    kwargs: dict[str, Any]
    browser: str | None = None
    expect: int | tuple[int, ...] = 401


def _json_post(path: str, body: dict[str, Any], headers: dict[str, str] | None = None
               ) -> dict[str, Any]:
    return {"content": orjson.dumps(body),
            "headers": {"Content-Type": "application/json", **(headers or {})}}


def developer_attempts(world: World, path: str, body: dict[str, Any]
                       ) -> tuple[Attempt, list[Attempt]]:
    dev = world.full.dev_token

    def with_auth(label: str, value: str | None, expect: int = 401) -> Attempt:
        headers = {} if value is None else {"Authorization": value}
        return Attempt(label, "POST", path, _json_post(path, body, headers), expect=expect)

    spoiled = [
        with_auth("no Authorization header", None),
        with_auth("empty Authorization header", ""),
        with_auth("Bearer and no token", "Bearer"),
        with_auth("a wrong token", "Bearer bit_" + "A" * 43),
        with_auth("the token with one character changed",
                  "Bearer " + dev[:-1] + ("A" if dev[-1] != "A" else "B")),
        with_auth("the token cut short", "Bearer " + dev[:-4]),
        with_auth("the token with more after it", "Bearer " + dev + "x"),
        with_auth("the token without its prefix", "Bearer " + dev.removeprefix("bit_")),
        with_auth("another scheme", "Basic " + dev),
        with_auth("the token alone", dev),
        with_auth("a token of 10 kB", "Bearer bit_" + "A" * 10_000),
        with_auth("a Guest's token", f"Bearer {world.full.guest_token}", expect=403),
    ]
    return with_auth("the Developer's token", f"Bearer {dev}", expect=200), spoiled


def worker_attempts(world: World, path: str, body: dict[str, Any]
                    ) -> tuple[Attempt, list[Attempt]]:
    def with_secret(label: str, secret: Any, *, drop: bool = False) -> Attempt:
        spoiled = copy.deepcopy(body)
        if drop:
            spoiled.pop("worker_secret", None)
        else:
            spoiled["worker_secret"] = secret
        return Attempt(label, "POST", path, _json_post(path, spoiled))

    valid = with_secret("the worker secret", WORKER_SECRET)
    valid = Attempt(valid.label, valid.method, valid.path, valid.kwargs, expect=200)
    return valid, [
        with_secret("no worker_secret", None, drop=True),
        with_secret("worker_secret null", None),
        with_secret("an empty worker_secret", ""),
        with_secret("a wrong worker_secret", "not-the-secret"),
        with_secret("the secret in upper case", WORKER_SECRET.upper()),
        with_secret("the secret and a blank", WORKER_SECRET + " "),
        with_secret("the secret cut short", WORKER_SECRET[:-1]),
        with_secret("a prefix of the secret", WORKER_SECRET[:4]),
    ]


def log_attempts(world: World) -> tuple[Attempt, list[Attempt]]:
    job = world.running
    path = "/api/worker/log"

    def with_secret(label: str, secret: str | None, expect: int = 401) -> Attempt:
        headers = {"X-Worker-Hostname": "w1", "X-Worker-Arch": "amd64",
                   "Content-Type": "application/octet-stream"}
        if secret is not None:
            headers["X-Worker-Secret"] = secret
        return Attempt(label, "POST", path, {
            "params": {"job_id": job["job_id"], "offset": 0,
                       "attempt_token": job["attempt_token"]},
            "content": b"building bash\n", "headers": headers}, expect=expect)

    return with_secret("the worker secret", WORKER_SECRET, 200), [
        with_secret("no X-Worker-Secret", None),
        with_secret("an empty X-Worker-Secret", ""),
        with_secret("a wrong X-Worker-Secret", "nope"),
        with_secret("the secret cut short", WORKER_SECRET[:-1]),
    ]


def github_attempts(path: str) -> tuple[Attempt, list[Attempt]]:
    delivery = f"sec-{next(_deliveries)}"
    body = orjson.dumps(issue_comment(repo=REPO, pr=7, login="alice",
                                      body="@aosc-buildit-bot help"))

    def signed(label: str, signature: str | None, content: bytes = body,
               expect: int | tuple[int, ...] = 401) -> Attempt:
        headers = {"Content-Type": "application/json", "X-GitHub-Event": "issue_comment",
                   "X-GitHub-Delivery": delivery}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return Attempt(label, "POST", path, {"content": content, "headers": headers},
                       expect=expect)

    good = github_signature(body)
    return signed("the signature of the body", good, expect=202), [
        signed("no signature", None),
        signed("an empty signature", ""),
        signed("sha256= and nothing", "sha256="),
        signed("a wrong signature", "sha256=" + "0" * 64),
        signed("the signature in another scheme", "sha1=" + good.removeprefix("sha256=")),
        signed("the signature without its scheme", good.removeprefix("sha256=")),
        signed("signed with another secret", github_signature(body, "not-" +
                                                              GITHUB_HOOK_SECRET)),
        signed("the signature of another body", good, content=body + b" "),
        signed("a signature that is not hex", "sha256=" + "zz" * 32),
    ]


def telegram_attempts() -> tuple[Attempt, list[Attempt]]:
    path = "/api/telegram/webhook"
    update = {"update_id": next(_updates)}

    def with_secret(label: str, secret: str | None, expect: int = 401) -> Attempt:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        return Attempt(label, "POST", path, {"content": orjson.dumps(update),
                                             "headers": headers}, expect=expect)

    return with_secret("the secret token", TELEGRAM_SECRET, 200), [
        with_secret("no secret token", None),
        with_secret("an empty secret token", ""),
        with_secret("a wrong secret token", "nope"),
        with_secret("the secret cut short", TELEGRAM_SECRET[:-1]),
        with_secret("the secret and more", TELEGRAM_SECRET + "x"),
    ]


def session_attempts(world: World, path: str, form: dict[str, str], *, role: str,
                     ok: int) -> tuple[Attempt, list[Attempt]]:
    """``role``: who may (``developer`` or ``login``); ``ok``: the status when allowed."""

    def post(label: str, browser: str, csrf: str | None, *, header: bool = False,
             expect: int = 403) -> Attempt:
        data = dict(form)
        headers: dict[str, str] = {}
        if csrf is not None and header:
            headers["X-CSRF-Token"] = csrf
        elif csrf is not None:
            data["csrf_token"] = csrf
        return Attempt(label, "POST", path, {"data": data, "headers": headers},
                       browser=browser, expect=expect)

    alice = world.csrf["alice"]
    spoiled = [
        post("no session, no CSRF token", "anonymous", None),
        post("no session, the CSRF token of another session", "anonymous", alice),
        # logging out a session that is not logged in is allowed, and harmless
        post("no session, its own CSRF token", "anonymous", world.csrf["anonymous"],
             expect=303 if path == "/logout" else 403),
        post("a Developer's session, no CSRF token", "alice", None),
        post("a Developer's session, an empty CSRF token", "alice", ""),
        post("a Developer's session, a wrong CSRF token", "alice", "x" * len(alice)),
        post("a Developer's session, another session's CSRF token", "alice",
             world.csrf["gus"]),
        post("a Developer's session, a wrong X-CSRF-Token", "alice", "nope", header=True),
    ]
    if role == "developer":
        spoiled.append(post("a Guest's session with its CSRF token", "gus", world.csrf["gus"]))
    return post("a Developer's session with its CSRF token", "alice", alice, expect=ok), spoiled


def attempts_for(world: World, route: tuple[str, str]) -> tuple[Attempt, list[Attempt]]:
    _, rule = route
    running = world.running
    if rule == "/api/pipeline/new":
        return developer_attempts(world, rule, {"git_branch": "stable", "git_sha": SHA,
                                                "packages": "bash", "archs": "amd64"})
    if rule == "/api/pipeline/cancel":
        return developer_attempts(world, rule, {"pipeline_id": world.to_cancel})
    if rule == "/api/job/restart":
        return developer_attempts(world, rule, {"job_id": world.failed_job})
    if rule == "/api/worker/heartbeat":
        return worker_attempts(world, rule, heartbeat_body("w1", "amd64", worker_version="9"))
    if rule == "/api/worker/poll":
        return worker_attempts(world, rule, worker_body("r1", "riscv64"))
    if rule in ("/api/worker/job_update", "/api/worker/release"):
        body: dict[str, Any] = {"hostname": "w1", "arch": "amd64", "job_id": running["job_id"],
                                "attempt_token": running["attempt_token"]}
        if rule == "/api/worker/job_update":
            body["result"] = ok_result("bash")
        return worker_attempts(world, rule, body)
    if rule == "/api/worker/log":
        return log_attempts(world)
    if rule in ("/api/github/webhook", "/api/webhook"):
        return github_attempts(rule)
    if rule == "/api/telegram/webhook":
        return telegram_attempts()
    if rule == "/pipelines/new":
        return session_attempts(world, rule, {"git_branch": "stable", "git_sha": SHA,
                                              "packages": "bash", "archs": "amd64"},
                                role="developer", ok=303)
    if rule == "/pipelines/<int:pipeline_id>/cancel":
        return session_attempts(world, f"/pipelines/{world.to_cancel}/cancel", {},
                                role="developer", ok=303)
    if rule == "/jobs/<int:job_id>/restart":
        return session_attempts(world, f"/jobs/{world.failed_job}/restart", {},
                                role="developer", ok=303)
    if rule == "/account/token":
        return session_attempts(world, rule, {}, role="login", ok=200)
    if rule == "/link/telegram":
        token = make_link_token(SESSION_SECRET, 777_000_111, clock.now().timestamp())
        return session_attempts(world, rule, {"token": token}, role="login", ok=200)
    if rule == "/logout":
        return session_attempts(world, rule, {}, role="login", ok=303)
    raise AssertionError(f"no requests written for {route}: add them with its registry entry")


async def send(world: World, attempt: Attempt) -> httpx.Response:
    client = world.client if attempt.browser is None else world.browsers[attempt.browser]
    return await client.request(attempt.method, attempt.path, **attempt.kwargs)


async def settled_rows(full: Full) -> dict[str, str]:
    """The database, once batched heartbeats and queued work have landed."""
    await full.server.running.services.fleet.wait_flushed()
    rows: dict[str, str] = await full.rows()
    return rows


@pytest.mark.parametrize("route", sorted(REGISTRY), ids=lambda r: f"{r[0]} {r[1]}")
async def test_refused_without_the_credential(full: Full, route: tuple[str, str]) -> None:
    with trio.fail_after(120):
        world = await make_world(full)
        valid, spoiled = attempts_for(world, route)
        before_counts = await full.counts()
        before = await settled_rows(full)
        refused: list[str] = []
        for attempt in spoiled:
            r = await send(world, attempt)
            expected = attempt.expect if isinstance(attempt.expect, tuple) else (attempt.expect,)
            if r.status_code not in expected:
                refused.append(f"{attempt.label}: {r.status_code} {r.text[:200]}")
            assert r.status_code < 500, (attempt.label, r.status_code, r.text)
        assert not refused, f"{route} ({REGISTRY[route]}) answered wrongly: {refused}"
        assert await full.counts() == before_counts
        assert await settled_rows(full) == before, (
            f"{route}: a refused request changed the database")
        # the same request with the credential is accepted and changes the state
        r = await send(world, valid)
        assert r.status_code == valid.expect, (valid.label, r.status_code, r.text[:500])
        assert await settled_rows(full) != before, (
            f"{route}: the accepted request changed nothing, so the test proves nothing")
        if route == ("POST", "/logout"):
            # the change is the session's end
            r = await world.browsers["alice"].post(
                "/account/token", data={"csrf_token": world.csrf["alice"]})
            assert r.status_code == 403, r.text[:300]


# ------------------------------------------------------------------ GET routes


def _example_path(rule: Any) -> str:
    path = rule.rule
    for name in rule.arguments:
        path = path.replace(f"<int:{name}>", "1").replace(f"<path:{name}>", "app.js")
        path = path.replace(f"<{name}>", "1")
    return str(path)


async def test_get_routes_change_nothing(full: Full) -> None:
    with trio.fail_after(120):
        world = await make_world(full)
        rules = [r for r in _app_rules(full) if "GET" in (r.methods or set())
                 and r.rule not in NOT_WALKED]
        assert len(rules) > 20
        before = await settled_rows(full)
        anonymous = full.browser()
        for rule in rules:
            path = _example_path(rule)
            for client in (anonymous, world.client):
                r = await client.get(path)
                assert r.status_code < 500, (path, r.status_code, r.text[:300])
        assert await settled_rows(full) == before



@pytest.mark.parametrize("path", ["/api/pipeline/new", "/api/pipeline/cancel",
                                  "/api/job/restart"])
async def test_the_developer_token_is_checked_before_the_body(full: Full, path: str) -> None:
    """A stranger learns nothing from validation messages: 401/403 whatever the body."""
    with trio.fail_after(30):
        before = await full.rows()
        for raw, content_type in ((b"{not json", "application/json"), (b"[]", "application/json"),
                                  (b"{}", "application/json"), (b"x=1", "text/plain"),
                                  (b"", "application/json")):
            for auth, status in ((None, 401), ("Bearer nope", 401),
                                 (f"Bearer {full.guest_token}", 403)):
                headers = {"Content-Type": content_type}
                if auth:
                    headers["Authorization"] = auth
                r = await full.client.post(path, content=raw, headers=headers)
                assert r.status_code == status, (raw, auth, r.status_code, r.text)
        assert await full.rows() == before
