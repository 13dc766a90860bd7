"""Bad input over real HTTP: every endpoint answers with the right 4xx and a JSON
``{"error": "..."}`` a person can read, and the database is left exactly as it was.

Each test runs against a fresh server and database seeded by the ``world`` fixture:

* pipeline A (amd64, arm64): job A1 (amd64) running on worker w1/amd64, job A2 created;
* pipeline B (riscv64): job B1 failed (built by r1/riscv64);
* pipeline C (riscv64): job C1 succeeded (built by r1/riscv64).

A valid request for each state-changing endpoint is spoiled one way at a time; the
whole state (row counts, and the rows of jobs, pipelines, attempts and workers minus
timestamps) is compared before and after. Real bugs are ``xfail(strict=True)`` with
``BUG:`` in the reason.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import SHA, WORKER_SECRET, heartbeat_body, ok_result, worker_body

MAX_BODY = 2 * 1024 * 1024
MAX_CHUNK = 1024 * 1024
MISSING = object()  # an override that deletes the field

HEARTBEAT = "/api/worker/heartbeat"
POLL = "/api/worker/poll"
JOB_UPDATE = "/api/worker/job_update"
RELEASE = "/api/worker/release"
LOG = "/api/worker/log"
PIPELINE_NEW = "/api/pipeline/new"
PIPELINE_CANCEL = "/api/pipeline/cancel"
JOB_RESTART = "/api/job/restart"
JSON_POSTS = [HEARTBEAT, POLL, JOB_UPDATE, RELEASE, PIPELINE_NEW, PIPELINE_CANCEL, JOB_RESTART]
WORKER_POSTS = [HEARTBEAT, POLL, JOB_UPDATE, RELEASE]
DEVELOPER_POSTS = [PIPELINE_NEW, PIPELINE_CANCEL, JOB_RESTART]
ID_GETS = [
    ("/api/pipeline/info", "pipeline_id"),
    ("/api/job/info", "job_id"),
    ("/api/job/log", "job_id"),
    ("/api/worker/info", "worker_id"),
]
LIST_GETS = ["/api/pipeline/list", "/api/job/list", "/api/worker/list"]
ALL_GETS = [*(p for p, _ in ID_GETS), *LIST_GETS, "/api/pipeline/status",
            "/api/dashboard/status"]
NUL = "a\x00b"


def bug(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.regression(reason)


BUG_UTF8 = bug("a body that is not UTF-8 escapes as UnicodeDecodeError -> 500")
BUG_NESTING = bug("JSON nested ~1000 deep raises RecursionError in json.loads -> 500")
BUG_NUL = bug("a NUL character reaches PostgreSQL (text cannot hold it) -> 500 or worse")
BUG_NUL_HEARTBEAT = bug("a heartbeat with a NUL character is accepted (200); its row then "
                        "fails every batched fleet flush")
BUG_SECRET_MISSING = bug("a missing/null worker_secret is a schema error (400), PROTOCOL.md "
                         "says 401")
BUG_BOOL_ID = bug("pydantic lax mode takes JSON true as the id 1")
BUG_HEARTBEAT_ARCH = bug("heartbeat does not check the arch: an unknown arch is 200 and "
                         "creates a worker row (poll answers 422)")
BUG_HEARTBEAT_FIRST = bug("heartbeat writes the heartbeat (fleet.record) before it looks up "
                          "job_id/attempt_token: the 404/422 answer still changes the worker row")
BUG_QUERY_INT = bug("query_int() uses int(): accepts ' 5', '1_000' and non-ASCII digits")


# ------------------------------------------------------------------------ world


@dataclass
class World:
    server: Any
    dev: str
    guest: str
    pipeline_a: int
    running: dict[str, Any]  # w1/amd64's poll answer for job A1
    created_job: int  # A2
    failed_job: int  # B1
    success_job: int  # C1
    worker_id: int  # w1/amd64

    @property
    def client(self) -> httpx.AsyncClient:
        return self.server.client

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.dev}"}

    def valid(self, path: str) -> tuple[dict[str, Any], dict[str, str]]:
        """A request that would change the state if it were accepted."""
        job = self.running
        if path == HEARTBEAT:
            return heartbeat_body("w1", "amd64", worker_version="9.9"), {}
        if path == POLL:
            return worker_body("w9", "arm64"), {}  # would claim A2
        if path == JOB_UPDATE:
            return {"hostname": "w1", "arch": "amd64", "job_id": job["job_id"],
                    "worker_secret": WORKER_SECRET, "attempt_token": job["attempt_token"],
                    "result": ok_result("bash")}, {}
        if path == RELEASE:
            return {"hostname": "w1", "arch": "amd64", "job_id": job["job_id"],
                    "worker_secret": WORKER_SECRET, "attempt_token": job["attempt_token"]}, {}
        if path == PIPELINE_NEW:
            return {"git_branch": "stable", "git_sha": SHA, "packages": "bash",
                    "archs": "amd64"}, self.auth
        if path == PIPELINE_CANCEL:
            return {"pipeline_id": self.pipeline_a}, self.auth
        if path == JOB_RESTART:
            return {"job_id": self.failed_job}, self.auth
        raise AssertionError(path)

    def spoiled(self, path: str, overrides: dict[str, Any]
                ) -> tuple[dict[str, Any], dict[str, str]]:
        body, headers = self.valid(path)
        body = copy.deepcopy(body)
        for key, value in overrides.items():
            if value is MISSING:
                body.pop(key, None)
            else:
                body[key] = value
        return body, headers


async def _state(conn: Any) -> dict[str, Any]:
    async def rows(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await conn.fetch(sql)]

    return {
        "jobs": await rows(
            """SELECT id, pipeline_id, status, attempt, attempt_token, assigned_worker_id,
                      error_message, build_success, lost_attempts FROM jobs ORDER BY id"""),
        "pipelines": await rows("SELECT id, status, packages, archs FROM pipelines ORDER BY id"),
        "attempts": await rows(
            """SELECT job_id, attempt, token, worker_id, outcome, result::text, log_size
               FROM job_attempts ORDER BY job_id, attempt"""),
        "workers": await rows(
            """SELECT id, hostname, arch, git_commit, worker_version, memory_bytes,
                      logical_cores, disk_free_space_bytes FROM workers ORDER BY id"""),
    }


async def snapshot(world: World) -> dict[str, Any]:
    return {"counts": await world.server.counts(), **await world.server.db.read(_state)}


async def assert_unharmed(world: World, before: dict[str, Any], path: str = "") -> None:
    if path == HEARTBEAT:
        # Heartbeats are written in batches: let the next flush happen first.
        with trio.fail_after(5):
            await world.server.running.services.fleet.wait_flushed()
    after = await snapshot(world)
    assert after == before
    r = await world.client.get("/api/health")
    assert r.status_code == 200, r.text


def assert_error(r: httpx.Response, status: int, fragment: str = "",
                 extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``status`` and a JSON body ``{"error": "<readable message>"}``."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict), body
    assert set(body) == {"error"} | extra, body
    message = body["error"]
    assert isinstance(message, str) and len(message.strip()) >= 10, body
    assert "internal" not in message.lower(), body
    assert fragment.lower() in message.lower(), (fragment, message)
    return body


@pytest.fixture
async def world(server: Any) -> World:
    with trio.fail_after(30):
        dev = await server.add_user("alice")
        guest = await server.add_user("gus", "guest")
        auth = {"Authorization": f"Bearer {dev}"}

        async def new(archs: str) -> dict[str, Any]:
            r = await server.client.post(
                PIPELINE_NEW, headers=auth,
                json={"git_branch": "stable", "git_sha": SHA, "packages": "bash",
                      "archs": archs})
            assert r.status_code == 200, r.text
            result: dict[str, Any] = r.json()
            return result

        async def poll(hostname: str, arch: str) -> dict[str, Any]:
            r = await server.client.post(POLL, json=worker_body(hostname, arch))
            assert r.status_code == 200 and r.json() is not None, r.text
            result: dict[str, Any] = r.json()
            return result

        async def report(job: dict[str, Any], result: dict[str, Any]) -> None:
            r = await server.client.post(JOB_UPDATE, json={
                "hostname": "r1", "arch": "riscv64", "job_id": job["job_id"],
                "worker_secret": WORKER_SECRET, "attempt_token": job["attempt_token"],
                "result": result})
            assert r.status_code == 200, r.text

        a = await new("amd64,arm64")
        running = await poll("w1", "amd64")
        assert running["job_id"] == a["jobs"]["amd64"]
        b = await new("riscv64")
        job_b = await poll("r1", "riscv64")
        await report(job_b, ok_result(build_success=False, failed="bash"))
        c = await new("riscv64")
        job_c = await poll("r1", "riscv64")
        await report(job_c, ok_result("bash"))
        worker_id = server.running.services.fleet.worker_id(("w1", "amd64"))
        assert worker_id is not None
        return World(server=server, dev=dev, guest=guest, pipeline_a=a["id"], running=running,
                     created_job=a["jobs"]["arm64"], failed_job=b["jobs"]["riscv64"],
                     success_job=c["jobs"]["riscv64"], worker_id=worker_id)


@pytest.mark.parametrize("path", JSON_POSTS)
async def test_the_unspoiled_requests_change_the_state(world: World, path: str) -> None:
    """The valid requests are accepted and change the state, so the spoiled ones below
    fail for their fault and 'unharmed' means something."""
    with trio.fail_after(30):
        before = await snapshot(world)
        body, headers = world.valid(path)
        r = await world.client.post(path, json=body, headers=headers)
        assert r.status_code == 200, r.text
        if path == HEARTBEAT:
            await world.server.running.services.fleet.wait_flushed()
        assert await snapshot(world) != before


# ------------------------------------------------------- malformed request bodies


@pytest.mark.parametrize("path", JSON_POSTS)
@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        pytest.param(b"{not json", "malformed", id="malformed"),
        pytest.param(b'{"job_id": 1,}', "malformed", id="trailing-comma"),
        pytest.param(b"", "malformed", id="empty"),
        pytest.param(b"[1, 2]", "valid dictionary", id="list"),
        pytest.param(b'"hello"', "valid dictionary", id="string"),
        pytest.param(b"null", "valid dictionary", id="null"),
        pytest.param(b"42", "valid dictionary", id="number"),
        pytest.param(b"{}", "field required", id="empty-object"),
        pytest.param(b"[" * 500 + b"]" * 500, "valid dictionary", id="nested-500"),
    ],
)
async def test_malformed_json_is_400(world: World, path: str, raw: bytes, fragment: str
                                     ) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        _, headers = world.valid(path)
        r = await world.client.post(path, content=raw,
                                    headers={**headers, "Content-Type": "application/json"})
        assert_error(r, 400, fragment)
        await assert_unharmed(world, before, path)


@pytest.mark.parametrize("path", [pytest.param(p, marks=BUG_UTF8) for p in JSON_POSTS])
async def test_invalid_utf8_is_400(world: World, path: str) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        body, headers = world.valid(path)
        raw = json.dumps({**body, "note": "@@"}).encode().replace(b"@@", b"\xff\xfe")
        r = await world.client.post(path, content=raw,
                                    headers={**headers, "Content-Type": "application/json"})
        assert_error(r, 400)
        await assert_unharmed(world, before, path)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[" * 10_000 + b"]" * 10_000, id="arrays"),
        pytest.param(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, id="objects"),
    ],
)
@pytest.mark.parametrize("path", [pytest.param(p, marks=BUG_NESTING) for p in JSON_POSTS])
async def test_deeply_nested_json_is_400(world: World, path: str, raw: bytes) -> None:
    with trio.fail_after(30):
        _, headers = world.valid(path)
        r = await world.client.post(path, content=raw,
                                    headers={**headers, "Content-Type": "application/json"})
        assert_error(r, 400)


async def test_server_stays_healthy_after_deeply_nested_json(world: World) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        for path in JSON_POSTS:
            for raw in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000):
                _, headers = world.valid(path)
                r = await world.client.post(
                    path, content=raw, headers={**headers, "Content-Type": "application/json"})
                assert r.status_code >= 400  # 400 wanted; see the xfail above
                assert set(r.json()) == {"error"}
        await assert_unharmed(world, before)
        r = await world.client.get("/api/pipeline/info", params={"pipeline_id": world.pipeline_a})
        assert r.status_code == 200 and r.json()["status"] == "running"


@pytest.mark.parametrize("path", JSON_POSTS)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", None]
)
async def test_wrong_content_type_is_415(world: World, path: str, content_type: str | None
                                         ) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        body, headers = world.valid(path)
        headers = dict(headers)
        if content_type:
            headers["Content-Type"] = content_type
        raw = httpx.Request("POST", "http://x", json=body).content  # the valid JSON
        r = await world.client.post(path, content=raw, headers=headers)
        assert_error(r, 415, "must be JSON")
        await assert_unharmed(world, before, path)


# ----------------------------------------------------------- oversized bodies


async def _post_fresh(world: World, path: str, **kwargs: Any) -> httpx.Response:
    """On a connection of its own, closed after (see test_keep_alive_after_413)."""
    async with httpx.AsyncClient(base_url=world.server.url, timeout=20,
                                 headers={"Connection": "close"}) as client:
        return await client.post(path, **kwargs)


@pytest.mark.parametrize("path", [*JSON_POSTS, LOG])
async def test_body_over_2mib_is_413(world: World, path: str) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        if path == LOG:
            job = world.running
            r = await _post_fresh(
                world, LOG, content=b"x" * (MAX_BODY + 1),
                params={"job_id": job["job_id"], "offset": 0,
                        "attempt_token": job["attempt_token"]},
                headers={"X-Worker-Secret": WORKER_SECRET, "X-Worker-Hostname": "w1",
                         "X-Worker-Arch": "amd64"})
        else:
            body, headers = world.valid(path)
            body = {**body, "padding": "x" * (MAX_BODY + 1)}
            r = await _post_fresh(world, path, json=body, headers=headers)
        assert_error(r, 413, "larger than")
        await assert_unharmed(world, before, path)


@bug("after a 413 the connection is kept alive without the body being read; the next "
     "request on it hangs (hypercorn closes it but the response lacked 'Connection: close')")
async def test_keep_alive_after_413(world: World) -> None:
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=world.server.url, timeout=20) as client:
            for _ in range(6):
                r = await client.post(JOB_RESTART, content=b'{"a": "' + b"x" * MAX_BODY + b'"}',
                                      headers={"Content-Type": "application/json",
                                               "Authorization": f"Bearer {world.dev}"})
                assert r.status_code == 413
                with trio.move_on_after(3):
                    r = await client.get("/api/health")
                    assert r.status_code == 200
                    continue
                pytest.fail("the request after a 413 on the same connection hung")


# ----------------------------------------------------- bad fields, endpoint by endpoint

OK_RESULT = ok_result("bash")["Ok"]

FIELD_CASES = [
    # -- heartbeat
    (HEARTBEAT, {"hostname": MISSING}, 400, "hostname: field required"),
    (HEARTBEAT, {"memory_bytes": MISSING}, 400, "memory_bytes: field required"),
    (HEARTBEAT, {"memory_bytes": -1}, 400, "greater than or equal to 0"),
    (HEARTBEAT, {"memory_bytes": 2**70}, 400, "less than or equal"),
    (HEARTBEAT, {"memory_bytes": "lots"}, 400, "valid integer"),
    (HEARTBEAT, {"memory_bytes": 1.5}, 400, "valid integer"),
    (HEARTBEAT, {"memory_bytes": None}, 400, "valid integer"),
    (HEARTBEAT, {"logical_cores": -4}, 400, "greater than or equal to 0"),
    (HEARTBEAT, {"logical_cores": 2**40}, 400, "less than or equal"),
    (HEARTBEAT, {"disk_free_space_bytes": -1}, 400, "greater than or equal to 0"),
    (HEARTBEAT, {"performance": 2**70}, 400, "less than or equal"),
    (HEARTBEAT, {"performance": "fast"}, 400, "valid integer"),
    (HEARTBEAT, {"internet_connectivity": "maybe"}, 400, "valid boolean"),
    (HEARTBEAT, {"hostname": ""}, 400, "at least 1 character"),
    (HEARTBEAT, {"hostname": "h" * 254}, 400, "at most 253 characters"),
    (HEARTBEAT, {"hostname": 7}, 400, "valid string"),
    (HEARTBEAT, {"arch": "AMD64"}, 400, "pattern"),
    (HEARTBEAT, {"arch": "../amd64"}, 400, "pattern"),
    (HEARTBEAT, {"arch": "a" * 65}, 400, "at most 64 characters"),
    (HEARTBEAT, {"git_commit": "c" * 201}, 400, "at most 200 characters"),
    (HEARTBEAT, {"worker_version": "v" * 101}, 400, "at most 100 characters"),
    (HEARTBEAT, {"worker_secret": "s" * 1025}, 400, "at most 1024 characters"),
    (HEARTBEAT, {"job_id": 0}, 400, "greater than or equal to 1"),
    (HEARTBEAT, {"job_id": -5}, 400, "greater than or equal to 1"),
    (HEARTBEAT, {"job_id": 2**70}, 400, "less than or equal"),
    (HEARTBEAT, {"attempt_token": ""}, 400, "at least 1 character"),
    (HEARTBEAT, {"attempt_token": "t" * 65}, 400, "at most 64 characters"),
    pytest.param(HEARTBEAT, {"job_id": 1, "attempt_token": "not-a-uuid"}, 422,
                 "not a valid token", marks=BUG_HEARTBEAT_FIRST, id="heartbeat-bad-token"),
    pytest.param(HEARTBEAT, {"arch": "sparc"}, 422, "does not build for",
                 marks=BUG_HEARTBEAT_ARCH, id="heartbeat-unknown-arch"),
    pytest.param(HEARTBEAT, {"hostname": NUL}, 400, "", marks=BUG_NUL_HEARTBEAT,
                 id="heartbeat-nul-hostname"),
    pytest.param(HEARTBEAT, {"git_commit": NUL}, 400, "", marks=BUG_NUL_HEARTBEAT,
                 id="heartbeat-nul-git_commit"),
    pytest.param(HEARTBEAT, {"memory_bytes": True}, 400, "valid integer", marks=BUG_BOOL_ID,
                 id="heartbeat-bool-memory"),
    # -- poll
    (POLL, {"hostname": MISSING}, 400, "hostname: field required"),
    (POLL, {"logical_cores": MISSING}, 400, "logical_cores: field required"),
    (POLL, {"memory_bytes": -1}, 400, "greater than or equal to 0"),
    (POLL, {"memory_bytes": 2**70}, 400, "less than or equal"),
    (POLL, {"logical_cores": "many"}, 400, "valid integer"),
    (POLL, {"disk_free_space_bytes": 2**70}, 400, "less than or equal"),
    (POLL, {"hostname": ""}, 400, "at least 1 character"),
    (POLL, {"hostname": "h" * 254}, 400, "at most 253 characters"),
    (POLL, {"arch": "arm 64"}, 400, "pattern"),
    (POLL, {"arch": ""}, 400, "at least 1 character"),
    (POLL, {"arch": "sparc"}, 422, "does not build for 'sparc'"),
    (POLL, {"arch": "noarch"}, 422, "does not build for 'noarch'"),
    (POLL, {"wait_secs": -1}, 400, "greater than or equal to 0"),
    (POLL, {"wait_secs": 1e308}, 400, "less than or equal to 3600"),
    (POLL, {"wait_secs": "soon"}, 400, "valid number"),
    pytest.param(POLL, {"hostname": NUL}, 400, "", marks=BUG_NUL, id="poll-nul-hostname"),
    # -- job_update
    (JOB_UPDATE, {"result": MISSING}, 400, "result: field required"),
    (JOB_UPDATE, {"job_id": MISSING}, 400, "job_id: field required"),
    (JOB_UPDATE, {"job_id": 0}, 400, "greater than or equal to 1"),
    (JOB_UPDATE, {"job_id": -1}, 400, "greater than or equal to 1"),
    (JOB_UPDATE, {"job_id": 2**70}, 400, "less than or equal"),
    (JOB_UPDATE, {"job_id": "twelve"}, 400, "valid integer"),
    (JOB_UPDATE, {"job_id": 1.5}, 400, "valid integer"),
    (JOB_UPDATE, {"hostname": ""}, 400, "at least 1 character"),
    (JOB_UPDATE, {"arch": "Amd64"}, 400, "pattern"),
    (JOB_UPDATE, {"result": {}}, 400, 'either {"ok"'),
    (JOB_UPDATE, {"result": {"Ok": OK_RESULT, "Error": "both"}}, 400, 'either {"ok"'),
    (JOB_UPDATE, {"result": "Ok"}, 400, "valid dictionary"),
    (JOB_UPDATE, {"result": [OK_RESULT]}, 400, "valid dictionary"),
    (JOB_UPDATE, {"result": {"Error": 5}}, 400, "result.Error: input should be a valid string"),
    (JOB_UPDATE, {"result": {"Error": "e" * 10_001}}, 400, "at most 10000 characters"),
    (JOB_UPDATE, {"result": {"Ok": {}}}, 400, "result.Ok.build_success: field required"),
    (JOB_UPDATE, {"result": {"Ok": {**OK_RESULT, "build_success": "yes please"}}}, 400,
     "valid boolean"),
    (JOB_UPDATE, {"result": {"Ok": {**OK_RESULT, "successful_packages": "bash"}}}, 400,
     "valid list"),
    (JOB_UPDATE, {"result": {"Ok": {**OK_RESULT, "successful_packages": ["p"] * 5001}}}, 400,
     "at most 5000 items"),
    (JOB_UPDATE, {"result": {"Ok": {**OK_RESULT, "elapsed_secs": -1}}}, 400,
     "greater than or equal to 0"),
    (JOB_UPDATE, {"result": {"Ok": {**OK_RESULT, "elapsed_secs": 2**70}}}, 400,
     "less than or equal"),
    (JOB_UPDATE, {"result": {"Ok": {**OK_RESULT, "failed_package": "f" * 201}}}, 400,
     "at most 200 characters"),
    (JOB_UPDATE, {"result": {"Ok": {**OK_RESULT, "log_url": "u" * 2001}}}, 400,
     "at most 2000 characters"),
    (JOB_UPDATE, {"result": {"Ok": {**OK_RESULT, "package_versions": ["1.0"]}}}, 400,
     "valid dictionary"),
    (JOB_UPDATE, {"attempt_token": "not-a-uuid"}, 422, "not a valid token"),
    (JOB_UPDATE, {"attempt_token": ""}, 400, "at least 1 character"),
    pytest.param(JOB_UPDATE, {"result": {"Error": NUL}}, 400, "", marks=BUG_NUL,
                 id="job_update-nul-error"),
    pytest.param(JOB_UPDATE, {"result": {"Ok": {**OK_RESULT, "failed_package": NUL}}}, 400, "",
                 marks=BUG_NUL, id="job_update-nul-failed_package"),
    # -- release
    (RELEASE, {"job_id": MISSING}, 400, "job_id: field required"),
    (RELEASE, {"job_id": 0}, 400, "greater than or equal to 1"),
    (RELEASE, {"job_id": 2**70}, 400, "less than or equal"),
    (RELEASE, {"job_id": [1]}, 400, "valid integer"),
    (RELEASE, {"hostname": ""}, 400, "at least 1 character"),
    (RELEASE, {"hostname": "h" * 254}, 400, "at most 253 characters"),
    (RELEASE, {"arch": "x86-64"}, 400, "pattern"),
    (RELEASE, {"attempt_token": "not-a-uuid"}, 422, "not a valid token"),
    (RELEASE, {"attempt_token": "t" * 65}, 400, "at most 64 characters"),
    # -- pipeline/new
    (PIPELINE_NEW, {"git_branch": MISSING}, 400, "git_branch: field required"),
    (PIPELINE_NEW, {"packages": MISSING}, 400, "packages: field required"),
    (PIPELINE_NEW, {"git_branch": ""}, 400, "at least 1 character"),
    (PIPELINE_NEW, {"git_branch": "b" * 201}, 400, "at most 200 characters"),
    (PIPELINE_NEW, {"git_branch": 5}, 400, "valid string"),
    (PIPELINE_NEW, {"git_branch": ".."}, 422, "not a valid branch name"),
    (PIPELINE_NEW, {"git_branch": "a..b"}, 422, "not a valid branch name"),
    (PIPELINE_NEW, {"git_branch": "-x"}, 422, "not a valid branch name"),
    (PIPELINE_NEW, {"git_branch": "with space"}, 422, "not a valid branch name"),
    (PIPELINE_NEW, {"git_branch": "x.lock"}, 422, "not a valid branch name"),
    (PIPELINE_NEW, {"git_branch": "a@{1}"}, 422, "not a valid branch name"),
    (PIPELINE_NEW, {"git_branch": "   "}, 422, "must not be empty"),
    (PIPELINE_NEW, {"packages": "<script>"}, 422, "invalid package name(s): <script>"),
    (PIPELINE_NEW, {"packages": "../x"}, 422, "invalid package name(s): ../x"),
    (PIPELINE_NEW, {"packages": "bash,Bad!"}, 422, "invalid package name(s): bad!"),
    (PIPELINE_NEW, {"packages": ["bash", "$(reboot)"]}, 422, "invalid package name"),
    (PIPELINE_NEW, {"packages": ""}, 422, "at least one package"),
    (PIPELINE_NEW, {"packages": " , "}, 422, "at least one package"),
    (PIPELINE_NEW, {"packages": []}, 422, "at least one package"),
    (PIPELINE_NEW, {"packages": [""]}, 422, "at least one package"),
    (PIPELINE_NEW, {"packages": [NUL]}, 422, "invalid package name"),
    (PIPELINE_NEW, {"packages": "p" * 201}, 422, "invalid package name"),
    (PIPELINE_NEW, {"packages": 5}, 400, "valid string"),
    (PIPELINE_NEW, {"packages": None}, 400, "valid string"),
    (PIPELINE_NEW, {"packages": [5]}, 400, "valid string"),
    (PIPELINE_NEW, {"packages": {"bash": 1}}, 400, "valid list"),
    (PIPELINE_NEW, {"packages": "x" * 100_001}, 400, "at most 100000 characters"),
    (PIPELINE_NEW, {"packages": ["bash"] * 2001}, 400, "at most 2000 items"),
    (PIPELINE_NEW, {"packages": ["p" * 201]}, 400, "at most 200 characters"),
    (PIPELINE_NEW, {"packages": " ".join(f"p{i}" for i in range(2001))}, 422,
     "at most 2000 packages"),
    (PIPELINE_NEW, {"archs": "sparc"}, 422, "unknown architecture 'sparc'"),
    (PIPELINE_NEW, {"archs": ["amd64", "sparc"]}, 422, "unknown architecture 'sparc'"),
    (PIPELINE_NEW, {"archs": "AMD64"}, 422, "unknown architecture 'AMD64'"),
    (PIPELINE_NEW, {"archs": "noarch,amd64"}, 422, "noarch must stand alone"),
    (PIPELINE_NEW, {"archs": ["arm64", "noarch"]}, 422, "noarch must stand alone"),
    (PIPELINE_NEW, {"archs": "mainline,noarch"}, 422, "noarch must stand alone"),
    (PIPELINE_NEW, {"archs": 64}, 400, "valid string"),
    (PIPELINE_NEW, {"archs": [None]}, 400, "valid string"),
    (PIPELINE_NEW, {"git_sha": "xyz"}, 422, "not a full 40-character commit id"),
    (PIPELINE_NEW, {"git_sha": "g" * 40}, 422, "not a full 40-character commit id"),
    (PIPELINE_NEW, {"git_sha": SHA[:39]}, 422, "not a full 40-character commit id"),
    (PIPELINE_NEW, {"git_sha": "a" * 65}, 400, "at most 64 characters"),
    (PIPELINE_NEW, {"git_sha": 123}, 400, "valid string"),
    (PIPELINE_NEW, {"git_sha": MISSING}, 422, "git_sha is required"),
    (PIPELINE_NEW, {"git_sha": ""}, 422, "git_sha is required"),
    (PIPELINE_NEW, {"options": "o" * 1001}, 400, "at most 1000 characters"),
    (PIPELINE_NEW, {"options": ["-v"]}, 400, "valid string"),
    pytest.param(PIPELINE_NEW, {"options": NUL}, 400, "", marks=BUG_NUL,
                 id="pipeline_new-nul-options"),
    # -- pipeline/cancel, job/restart
    *(
        case
        for path, key in ((PIPELINE_CANCEL, "pipeline_id"), (JOB_RESTART, "job_id"))
        for case in (
            (path, {key: MISSING}, 400, f"{key}: field required"),
            (path, {key: None}, 400, "valid integer"),
            (path, {key: 0}, 400, "greater than or equal to 1"),
            (path, {key: -1}, 400, "greater than or equal to 1"),
            (path, {key: 2**70}, 400, "less than or equal"),
            (path, {key: 2**62 + 1}, 400, "less than or equal"),
            (path, {key: "x"}, 400, "valid integer"),
            (path, {key: 1.5}, 400, "valid integer"),
            (path, {key: [1]}, 400, "valid integer"),
            (path, {key: {"id": 1}}, 400, "valid integer"),
            pytest.param(path, {key: True}, 400, "valid integer", marks=BUG_BOOL_ID,
                         id=f"{path.rsplit('/', 1)[1]}-bool-id"),
        )
    ),
]


def _case_id(case: Any) -> str:
    path, overrides, status, _ = case
    name = path.rsplit("/", 1)[1]
    parts = []
    for key, value in overrides.items():
        shown = "MISSING" if value is MISSING else repr(value)
        parts.append(f"{key}={shown[:24]}")
    return f"{name}-{','.join(parts)}-{status}"


@pytest.mark.parametrize(
    ("path", "overrides", "status", "fragment"),
    [c if hasattr(c, "marks") else pytest.param(*c, id=_case_id(c)) for c in FIELD_CASES],
)
async def test_bad_field(world: World, path: str, overrides: dict[str, Any], status: int,
                         fragment: str) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        body, headers = world.spoiled(path, overrides)
        r = await world.client.post(path, json=body, headers=headers)
        assert_error(r, status, fragment)
        await assert_unharmed(world, before, path)


@BUG_NUL_HEARTBEAT
async def test_nul_heartbeat_does_not_stop_other_heartbeats(world: World) -> None:
    with trio.fail_after(30):
        fleet = world.server.running.services.fleet
        await world.client.post(HEARTBEAT, json=heartbeat_body(NUL, "amd64"))
        r = await world.client.post(HEARTBEAT, json=heartbeat_body("w2", "arm64"))
        assert r.status_code == 200
        with trio.move_on_after(5):
            await fleet.wait_flushed()
        counts = await world.server.counts()
        assert counts["workers"] == 3  # w1, r1 and now w2


# ------------------------------------------------------------------- authentication


@pytest.mark.parametrize("path", WORKER_POSTS)
@pytest.mark.parametrize(
    "secret",
    [
        "wrong",
        "",
        WORKER_SECRET.upper(),
        WORKER_SECRET + " ",
        WORKER_SECRET[:-1],
        NUL,
        pytest.param(None, marks=BUG_SECRET_MISSING, id="null"),
        pytest.param(MISSING, marks=BUG_SECRET_MISSING, id="missing"),
    ],
)
async def test_bad_worker_secret_is_401(world: World, path: str, secret: Any) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        body, _ = world.spoiled(path, {"worker_secret": secret})
        r = await world.client.post(path, json=body)
        assert_error(r, 401, "worker secret")
        await assert_unharmed(world, before, path)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"X-Worker-Secret": ""}, id="empty"),
        pytest.param({"X-Worker-Secret": "wrong"}, id="wrong"),
        pytest.param({"Authorization": f"Bearer {WORKER_SECRET}"}, id="as-bearer"),
    ],
)
async def test_bad_worker_secret_on_log_is_401(world: World, headers: dict[str, str]) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        job = world.running
        r = await world.client.post(
            LOG, content=b"hello\n",
            params={"job_id": job["job_id"], "offset": 0, "attempt_token": job["attempt_token"]},
            headers={"X-Worker-Hostname": "w1", "X-Worker-Arch": "amd64", **headers})
        assert_error(r, 401, "worker secret")
        await assert_unharmed(world, before)


BAD_AUTHORIZATION = [
    pytest.param(None, "api token is required", id="no-header"),
    pytest.param("", "api token is required", id="empty"),
    pytest.param("Bearer", "api token is required", id="bearer-alone"),
    pytest.param("Basic YWxpY2U6cHc=", "api token is required", id="basic"),
    pytest.param("Token {dev}", "api token is required", id="other-scheme"),
    pytest.param("{dev}", "api token is required", id="no-scheme"),
    pytest.param("Bearer nope", "not valid", id="garbage"),
    pytest.param("Bearer bit_nope", "not valid", id="unknown"),
    pytest.param("Bearer {dev}x", "not valid", id="altered"),
    pytest.param("Bearer {dev} {dev}", "not valid", id="two-tokens"),
    pytest.param("Bearer bit_" + "x" * 10_000, "not valid", id="huge"),
    pytest.param("Bearer " + WORKER_SECRET, "not valid", id="worker-secret"),
]


@pytest.mark.parametrize("path", DEVELOPER_POSTS)
@pytest.mark.parametrize(("authorization", "fragment"), BAD_AUTHORIZATION)
async def test_bad_bearer_token_is_401(world: World, path: str, authorization: str | None,
                                       fragment: str) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        body, _ = world.valid(path)
        headers = {} if authorization is None else {
            "Authorization": authorization.format(dev=world.dev)}
        r = await world.client.post(path, json=body, headers=headers)
        assert_error(r, 401, fragment)
        await assert_unharmed(world, before, path)


@pytest.mark.parametrize("path", DEVELOPER_POSTS)
async def test_guest_is_403(world: World, path: str) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        body, _ = world.valid(path)
        r = await world.client.post(path, json=body,
                                    headers={"Authorization": f"Bearer {world.guest}"})
        assert_error(r, 403, "gus is not a Developer")
        await assert_unharmed(world, before, path)


# ------------------------------------------------------------------ unknown ids


@pytest.mark.parametrize(
    "path",
    [pytest.param(HEARTBEAT, marks=BUG_HEARTBEAT_FIRST),
     JOB_UPDATE, RELEASE, PIPELINE_CANCEL, JOB_RESTART],
)
@pytest.mark.parametrize("unknown", [999_999, 2**62])
async def test_unknown_id_in_body_is_404(world: World, path: str, unknown: int) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        key = "pipeline_id" if path == PIPELINE_CANCEL else "job_id"
        body, headers = world.spoiled(path, {key: unknown, "attempt_token": MISSING})
        r = await world.client.post(path, json=body, headers=headers)
        what = "pipeline" if key == "pipeline_id" else "job"
        assert_error(r, 404, f"{what} {unknown} does not exist")
        await assert_unharmed(world, before, path)


@pytest.mark.parametrize(("path", "key"), ID_GETS)
@pytest.mark.parametrize("unknown", [999_999, 2**62])
async def test_unknown_id_in_query_is_404(world: World, path: str, key: str, unknown: int
                                          ) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        r = await world.client.get(path, params={key: unknown})
        assert_error(r, 404, f"{unknown} does not exist")
        await assert_unharmed(world, before)


async def test_unknown_job_on_log_upload_is_404(world: World) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        r = await world.client.post(
            LOG, content=b"hello\n", params={"job_id": 999_999, "offset": 0},
            headers={"X-Worker-Secret": WORKER_SECRET, "X-Worker-Hostname": "w1",
                     "X-Worker-Arch": "amd64"})
        assert_error(r, 404, "job 999999 does not exist")
        await assert_unharmed(world, before)


# ------------------------------------------------------------- bad query strings


@pytest.mark.parametrize(("path", "key"), ID_GETS)
@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "is required"),
        ("", "is required"),
        ("x", "must be a whole number"),
        ("1.5", "must be a whole number"),
        ("1e3", "must be a whole number"),
        ("0x10", "must be a whole number"),
        ("0", "must be between 1 and"),
        ("-1", "must be between 1 and"),
        (str(2**70), "must be between 1 and"),
        ("9" * 5000, "must be a whole number"),
        pytest.param("1_000", "must be a whole number", marks=BUG_QUERY_INT, id="underscore"),
        pytest.param("\uff11", "must be a whole number", marks=BUG_QUERY_INT,
                     id="fullwidth-digit"),
        pytest.param(" 1", "must be a whole number", marks=BUG_QUERY_INT, id="space"),
    ],
)
async def test_bad_id_query_is_400(world: World, path: str, key: str, value: str | None,
                                   fragment: str) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        r = await world.client.get(path, params={} if value is None else {key: value})
        assert_error(r, 400, fragment)
        await assert_unharmed(world, before)


@pytest.mark.parametrize("path", LIST_GETS)
@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"items_per_page": "0"}, "must not be 0"),
        ({"items_per_page": "10000"}, "between -1 and 200"),
        ({"items_per_page": "-2"}, "between -1 and 200"),
        ({"items_per_page": "ten"}, "must be a whole number"),
        ({"items_per_page": str(2**70)}, "between -1 and 200"),
        ({"page": "0"}, "must be between 1 and"),
        ({"page": "-1"}, "must be between 1 and"),
        ({"page": "first"}, "must be a whole number"),
        ({"page": str(2**70)}, "must be between 1 and"),
        ({"page": "1000001"}, "page is too large"),
    ],
)
async def test_bad_paging_is_400(world: World, path: str, params: dict[str, str],
                                 fragment: str) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        r = await world.client.get(path, params=params)
        assert_error(r, 400, fragment)
        await assert_unharmed(world, before)


@pytest.mark.parametrize(
    ("path", "params", "status", "fragment"),
    [
        ("/api/pipeline/list", {"status": "bogus"}, 400, "status must be one of"),
        ("/api/pipeline/list", {"status": "created"}, 400, "status must be one of"),
        ("/api/pipeline/list", {"stable_only": "maybe"}, 400, "must be true or false"),
        ("/api/pipeline/list", {"github_pr_only": "2"}, 400, "must be true or false"),
        ("/api/job/list", {"status": "Running"}, 400, "status must be one of"),
        pytest.param("/api/pipeline/list", {"creator": NUL}, 400, "", marks=BUG_NUL,
                     id="pipeline_list-nul-creator"),
        pytest.param("/api/job/list", {"arch": NUL}, 400, "", marks=BUG_NUL,
                     id="job_list-nul-arch"),
    ],
)
async def test_bad_filter_is_400(world: World, path: str, params: dict[str, str], status: int,
                                 fragment: str) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        r = await world.client.get(path, params=params)
        assert_error(r, status, fragment)
        await assert_unharmed(world, before)


@pytest.mark.parametrize(
    ("attempt", "fragment"),
    [("0", "between 1 and 1"), ("2", "between 1 and 1"), ("x", "whole number")],
)
async def test_bad_log_attempt_is_400(world: World, attempt: str, fragment: str) -> None:
    with trio.fail_after(30):
        r = await world.client.get("/api/job/log",
                                   params={"job_id": world.success_job, "attempt": attempt})
        assert_error(r, 400, fragment)


@pytest.mark.parametrize("range_header", ["lines=0-", "bytes=-5", "bytes=x-", "bytes="])
async def test_bad_range_is_400(world: World, range_header: str) -> None:
    with trio.fail_after(30):
        r = await world.client.get("/api/job/log", params={"job_id": world.running["job_id"]},
                                   headers={"Range": range_header})
        assert_error(r, 400, "only 'Range: bytes=N-' is supported")


# ---------------------------------------------------------------- log uploads


def _log_request(world: World, **params: Any) -> dict[str, Any]:
    job = world.running
    return {
        "params": {"job_id": job["job_id"], "offset": 0, "attempt_token": job["attempt_token"],
                   **params},
        "headers": {"X-Worker-Secret": WORKER_SECRET, "X-Worker-Hostname": "w1",
                    "X-Worker-Arch": "amd64"},
    }


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({"job_id": None}, 400, "job_id is required"),
        ({"job_id": "x"}, 400, "must be a whole number"),
        ({"job_id": "0"}, 400, "must be between 1 and"),
        ({"job_id": str(2**70)}, 400, "must be between 1 and"),
        ({"offset": None}, 400, "offset is required"),
        ({"offset": "-1"}, 400, "must be between 0 and"),
        ({"offset": "x"}, 400, "must be a whole number"),
        ({"offset": str(2**70)}, 400, "must be between 0 and"),
        ({"attempt_token": "not-a-uuid"}, 422, "not a valid token"),
    ],
)
async def test_bad_log_query_is_4xx(world: World, params: dict[str, Any], status: int,
                                    fragment: str) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        request = _log_request(world)
        for key, value in params.items():
            if value is None:
                del request["params"][key]
            else:
                request["params"][key] = value
        r = await world.client.post(LOG, content=b"hello\n", **request)
        assert_error(r, status, fragment)
        await assert_unharmed(world, before)


async def test_log_chunk_over_1mib_is_413(world: World) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        r = await world.client.post(LOG, content=b"x" * (MAX_CHUNK + 1), **_log_request(world))
        assert_error(r, 413, f"at most {MAX_CHUNK} bytes")
        await assert_unharmed(world, before)
        # nothing was stored: the first chunk still goes at offset 0
        r = await world.client.post(LOG, content=b"x" * MAX_CHUNK, **_log_request(world))
        assert r.status_code == 200, r.text
        assert r.json() == {"size": MAX_CHUNK}


async def test_log_offset_mismatch_is_409_with_size(world: World) -> None:
    with trio.fail_after(30):
        r = await world.client.post(LOG, content=b"hello\n", **_log_request(world))
        assert r.json() == {"size": 6}
        before = await snapshot(world)
        for offset in (0, 3, 7, 10**6):
            r = await world.client.post(LOG, content=b"again\n",
                                        **_log_request(world, offset=offset))
            body = assert_error(r, 409, "resend from there", extra=frozenset({"size"}))
            assert body["size"] == 6
        await assert_unharmed(world, before)


async def test_log_over_the_server_limit_is_413(world: World) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        limit = world.server.config.log_max_bytes
        r = await world.client.post(LOG, content=b"x", **_log_request(world, offset=limit))
        assert_error(r, 413, f"limit of {limit} bytes")
        await assert_unharmed(world, before)


async def test_log_upload_by_another_worker_is_409(world: World) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        request = _log_request(world, attempt_token=None)
        del request["params"]["attempt_token"]
        request["headers"]["X-Worker-Hostname"] = "w2"
        r = await world.client.post(LOG, content=b"hello\n", **request)
        body = assert_error(r, 409, "no longer assigned", extra=frozenset({"job_state"}))
        assert body["job_state"] == "lost"
        await assert_unharmed(world, before)


# --------------------------------------------------------------------- conflicts


@pytest.mark.parametrize("which", ["created_job", "running", "success_job"])
async def test_restart_of_a_job_that_did_not_fail_is_409(world: World, which: str) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        job_id = world.running["job_id"] if which == "running" else getattr(world, which)
        r = await world.client.post(JOB_RESTART, json={"job_id": job_id}, headers=world.auth)
        assert_error(r, 409, "only failed or error jobs restart")
        await assert_unharmed(world, before)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"hostname": "w2", "attempt_token": MISSING}, id="other-host"),
        pytest.param({"arch": "arm64", "attempt_token": MISSING}, id="other-arch"),
        pytest.param({"attempt_token": "00000000-0000-0000-0000-000000000000"},
                     id="other-token"),
        pytest.param({"job_id": "created_job"}, id="job-not-running"),
        pytest.param({"job_id": "success_job", "attempt_token": MISSING}, id="job-finished"),
    ],
)
async def test_job_update_for_a_job_not_held_is_409(world: World, overrides: dict[str, Any]
                                                    ) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        if isinstance(overrides.get("job_id"), str):
            overrides = {**overrides, "job_id": getattr(world, overrides["job_id"])}
        body, _ = world.spoiled(JOB_UPDATE, overrides)
        r = await world.client.post(JOB_UPDATE, json=body)
        assert_error(r, 409, "no longer assigned")
        await assert_unharmed(world, before)
        for job_id, status in ((world.running["job_id"], "running"),
                               (world.created_job, "created"), (world.success_job, "success")):
            r = await world.client.get("/api/job/info", params={"job_id": job_id})
            assert r.json()["status"] == status


async def test_job_update_after_cancel_is_409(world: World) -> None:
    with trio.fail_after(30):
        r = await world.client.post(PIPELINE_CANCEL, json={"pipeline_id": world.pipeline_a},
                                    headers=world.auth)
        assert r.status_code == 200
        before = await snapshot(world)
        body, _ = world.valid(JOB_UPDATE)
        r = await world.client.post(JOB_UPDATE, json=body)
        assert_error(r, 409, "no longer assigned")
        await assert_unharmed(world, before)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"hostname": "w2", "attempt_token": MISSING}, id="other-host"),
        pytest.param({"attempt_token": "00000000-0000-0000-0000-000000000000"},
                     id="other-token"),
        pytest.param({"job_id": "created_job", "attempt_token": MISSING}, id="job-not-running"),
    ],
)
async def test_release_of_a_job_not_held_is_409(world: World, overrides: dict[str, Any]
                                                ) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        if isinstance(overrides.get("job_id"), str):
            overrides = {**overrides, "job_id": getattr(world, overrides["job_id"])}
        body, _ = world.spoiled(RELEASE, overrides)
        r = await world.client.post(RELEASE, json=body)
        assert_error(r, 409, "no longer assigned")
        await assert_unharmed(world, before)


# ------------------------------------------------------------- routes and methods


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/nope"), ("POST", "/api/nope"), ("GET", "/nope"),
     ("GET", "/api/pipeline/info/1"), ("POST", "/api/worker/heartbeat/"),
     ("GET", "/api/../etc/passwd")],
)
async def test_unknown_route_is_404_json(world: World, method: str, path: str) -> None:
    with trio.fail_after(30):
        r = await world.client.request(method, path, json={} if method == "POST" else None)
        assert_error(r, 404, "no such endpoint")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", p) for p in [*JSON_POSTS, LOG]]
    + [("POST", p) for p in ALL_GETS]
    + [("PUT", JOB_RESTART), ("DELETE", "/api/pipeline/list"), ("PATCH", PIPELINE_NEW)],
)
async def test_wrong_method_is_405_json(world: World, method: str, path: str) -> None:
    with trio.fail_after(30):
        before = await snapshot(world)
        r = await world.client.request(method, path)
        assert_error(r, 405, f"method {method} is not allowed on {path}")
        await assert_unharmed(world, before)
