"""The OpenAPI description at /api/openapi.json: valid, complete, true, and fuzzed.

* It is valid OpenAPI 3.1, describes every route of the running app (web UI and
  webhooks included), and every operation documents its errors (``{"error": str}``,
  4XX and 5XX) and its success.
* The answers of every JSON endpoint, for a small world, match the documented schemas.
* schemathesis fuzzes it twice, against a server with every front end on: with a
  Developer's token, the worker secret and a logged-in web session (with its CSRF
  token), and with no credentials. Checks enabled:

  - ``not_a_server_error``: no 5xx, whatever the input;
  - ``status_code_conformance``: only documented statuses;
  - ``content_type_conformance``: the documented media types (JSON errors on the API);
  - ``response_schema_conformance``: the bodies match the documented schemas;
  - ``ignored_auth``: operations that declare a credential refuse requests without it.

  Not enabled: ``negative_data_rejection`` (the query parsing is lenient on purpose and
  today's clients rely on it: an empty ``page=`` is the default, a repeated parameter
  counts once, the web UI's page numbers fall back to 1; tests/test_bad_input.py checks
  the refusals precisely); ``positive_data_acceptance`` (well-formed requests are
  rightly refused: unknown ids 404, a wrong worker secret 401, conflicts 409);
  ``response_headers_conformance`` (no response headers are documented);
  ``unsupported_method`` (tests/test_bad_input.py checks every 405).

  In CI each run is bounded (a fixed seed, 8 examples per operation, well under a
  minute); ``--long`` runs 100 per operation with a random seed
  (``BUILDIT_FUZZ_EXAMPLES=N`` sets another number).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import trio
from openapi_spec_validator import validate as validate_openapi

from tests.conftest import SHA, WORKER_SECRET, heartbeat_body, ok_result, worker_body
from tests.security.fixtures import GITHUB_HOOK_SECRET, TELEGRAM_SECRET, Full, full_server

ROOT = Path(__file__).resolve().parent.parent
# the description, its page, and Quart's own static route (no folder: always 404),
# all three hidden by quart-schema
HIDDEN = {"/api/openapi.json", "/api/docs", "/static/<path:filename>"}
NOT_FUZZED = ["/events"]  # a live stream: it stays open for minutes
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,ignored_auth")
CI_SEED = 20251129


@pytest.fixture
async def full(start_server: Any, tmp_path: Path) -> AsyncIterator[Full]:
    # long polls held briefly: a fuzzed wait_secs=3600 must not outlast a request timeout
    async with full_server(start_server, tmp_path, long_poll_max=2.0) as handle:
        yield handle


async def _spec(full: Full) -> dict[str, Any]:
    r = await full.client.get("/api/openapi.json")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    spec: dict[str, Any] = r.json()
    return spec


def _openapi_path(rule: str) -> str:
    out = rule
    while "<" in out:
        start, end = out.index("<"), out.index(">")
        name = out[start + 1:end].split(":")[-1]
        out = out[:start] + "{" + name + "}" + out[end + 1:]
    return out


async def test_the_description_is_valid_openapi(full: Full) -> None:
    with trio.fail_after(30):
        spec = await _spec(full)
        assert spec["openapi"].startswith("3.1")
        validate_openapi(spec)
        r = await full.client.get("/api/docs")
        assert r.status_code == 200 and "/api/openapi.json" in r.text


async def test_every_route_is_described(full: Full) -> None:
    with trio.fail_after(30):
        spec = await _spec(full)
        app = full.server.running.app
        assert app is not None
        missing = []
        for rule in app.url_map.iter_rules():
            if rule.rule in HIDDEN:
                continue
            path = _openapi_path(rule.rule)
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                if method.lower() not in spec["paths"].get(path, {}):
                    missing.append(f"{method} {rule.rule}")
        assert not missing, f"routes the description leaves out: {missing}"
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                where = f"{method.upper()} {path}"
                responses = operation["responses"]
                for errors in ("4XX", "5XX"):
                    error = responses[errors]["content"]["application/json"]["schema"]
                    assert error == {"$ref": "#/components/schemas/Error"}, where
                assert any(s[0] in "23" for s in responses), f"{where}: no success documented"
                for parameter in operation["parameters"]:
                    assert "schema" in parameter, (where, parameter)
        error = spec["components"]["schemas"]["Error"]
        assert error["required"] == ["error"]


# ------------------------------------------------------------------ answers vs schemas


class Described:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.checked = 0

    def check(self, method: str, path: str, response: httpx.Response) -> None:
        operation = self.spec["paths"][path][method.lower()]
        status = str(response.status_code)
        responses = operation["responses"]
        documented = responses.get(status) or responses.get(f"{status[0]}XX")
        assert documented is not None, (method, path, status, response.text[:300])
        content = documented.get("content")
        if not content:
            return
        media = response.headers.get("content-type", "").split(";")[0].strip()
        assert media in content, (method, path, status, media, list(content))
        schema = content[media].get("schema")
        if media != "application/json" or schema is None:
            return
        root = {**schema, "components": self.spec["components"]}
        validator = jsonschema.Draft202012Validator(
            root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(response.json())]
        assert not errors, (method, path, status, errors[:5], response.text[:500])
        self.checked += 1


async def test_answers_match_the_description(full: Full) -> None:
    with trio.fail_after(60):
        described = Described(await _spec(full))
        check = described.check
        client = full.client
        dev = {"Authorization": f"Bearer {full.dev_token}"}

        async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
            r = await client.request(method, path, **kwargs)
            check(method, path, r)
            return r

        new = {"git_branch": "stable", "git_sha": SHA, "packages": "bash"}
        await call("POST", "/api/pipeline/new", json={**new, "archs": "amd64,arm64"},
                   headers=dev)
        second = (await call("POST", "/api/pipeline/new", json={**new, "archs": "riscv64"},
                             headers=dev)).json()
        await call("POST", "/api/pipeline/new", json=new, headers={})  # 401
        await call("POST", "/api/worker/heartbeat", json=heartbeat_body("w1", "amd64"))
        job = (await call("POST", "/api/worker/poll", json=worker_body("w1", "amd64"))).json()
        assert job is not None
        await call("POST", "/api/worker/poll", json=worker_body("w2", "amd64"))  # null
        r = await call("POST", "/api/worker/heartbeat", json=heartbeat_body(
            "w1", "amd64", job_id=job["job_id"], attempt_token=job["attempt_token"]))
        assert r.json() == {"job_state": "running"}
        log = {"job_id": job["job_id"], "offset": 0, "attempt_token": job["attempt_token"]}
        headers = {"X-Worker-Secret": WORKER_SECRET, "X-Worker-Hostname": "w1",
                   "X-Worker-Arch": "amd64"}
        await call("POST", "/api/worker/log", params=log, content=b"hello\n", headers=headers)
        r = await call("POST", "/api/worker/log", params=log, content=b"again\n",
                       headers=headers)
        assert r.status_code == 409 and r.json()["size"] == 6
        for params in ({"job_id": job["job_id"]}, {"job_id": job["job_id"], "attempt": 1}):
            await call("GET", "/api/job/log", params=params)
        await call("GET", "/api/job/log", params=params, headers={"Range": "bytes=2-"})
        await call("GET", "/api/job/log", params=params, headers={"Range": "bytes=99-"})
        await call("POST", "/api/worker/job_update", json={
            "hostname": "w1", "arch": "amd64", "job_id": job["job_id"],
            "worker_secret": WORKER_SECRET, "attempt_token": job["attempt_token"],
            "result": ok_result(build_success=False, failed="bash")})
        r = await call("POST", "/api/worker/log", params=log, content=b"late\n",
                       headers=headers)
        assert r.status_code == 409 and "job_state" in r.json()
        await call("POST", "/api/job/restart", json={"job_id": job["job_id"]}, headers=dev)
        arm = (await call("POST", "/api/worker/poll", json=worker_body("a1", "arm64"))).json()
        await call("POST", "/api/worker/release", json={
            "hostname": "a1", "arch": "arm64", "job_id": arm["job_id"],
            "worker_secret": WORKER_SECRET, "attempt_token": arm["attempt_token"]})
        await call("POST", "/api/pipeline/cancel", json={"pipeline_id": second["id"]},
                   headers=dev)
        await full.server.running.services.fleet.wait_flushed()
        gets: list[tuple[str, dict[str, Any]]] = [
            ("/api/ping", {}), ("/api/health", {}), ("/api/pipeline/status", {}),
            ("/api/dashboard/status", {}),
            ("/api/pipeline/list", {}), ("/api/pipeline/list", {"items_per_page": -1}),
            ("/api/pipeline/list", {"status": "error", "stable_only": "true"}),
            ("/api/pipeline/info", {"pipeline_id": 1}),
            ("/api/pipeline/info", {"pipeline_id": second["id"]}),
            ("/api/pipeline/info", {"pipeline_id": 999}),
            ("/api/job/list", {}), ("/api/job/list", {"arch": "amd64", "status": "created"}),
            ("/api/job/info", {"job_id": job["job_id"]}),
            ("/api/job/info", {"job_id": arm["job_id"]}),
            ("/api/job/info", {"job_id": 0}),
            ("/api/worker/list", {}),
            ("/api/worker/info", {"worker_id": 1}), ("/api/worker/info", {"worker_id": 999}),
            ("/metrics", {}),
        ]
        for path, params in gets:
            await call("GET", path, params=params)
        assert described.checked >= 25


# ------------------------------------------------------------------ schemathesis


async def _schemathesis(full: Full, tmp_path: Path, name: str, *, headers: dict[str, str],
                        hooks_env: dict[str, str], max_examples: int, seed: int | None,
                        limit: float) -> dict[str, Any]:
    report = tmp_path / f"{name}.json"
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{full.url}/api/openapi.json",
        "--checks", CHECKS,
        "--phases", "coverage,fuzzing",
        "--max-examples", str(max_examples),
        "--workers", "1",
        "--request-timeout", "20",
        "--generation-database", "none",
        "--report", "json", "--report-json-path", str(report),
        "--no-color",
        *(["--seed", str(seed)] if seed is not None else []),
        # with credentials given, use them rather than generated ones (ignored_auth
        # still tries each operation without its credential)
        *(["--generation-with-security-parameters", "false"] if headers else []),
        *(arg for path in NOT_FUZZED for arg in ("--exclude-path", path)),
        *(arg for key, value in headers.items() for arg in ("-H", f"{key}: {value}")),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "SCHEMATHESIS_HOOKS": "tests.security.fuzz_hooks", **hooks_env}
    with trio.fail_after(limit):
        result = await trio.run_process(command, env=env, cwd=str(tmp_path),
                                        capture_stdout=True, capture_stderr=True, check=False)
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    (tmp_path / f"{name}.txt").write_text(output)
    assert report.exists(), output[-5000:]
    data: dict[str, Any] = json.loads(report.read_text())
    cases = data["test_cases"]
    print(f"schemathesis {name}: {cases['generated']} cases, "
          f"{cases['with_failures']} with failures, {len(data['errors'])} errors, "
          f"{data['running_time']:.1f} s, seed {data['seed']}")
    assert data["exit_code"] == 0 and not data["failures"] and not data["errors"], output[-8000:]
    assert data["operations"]["tested"] >= 40, data["operations"]
    return data


@pytest.mark.slow
@pytest.mark.timeout(7200)  # --long with many examples; CI runs take well under a minute
@pytest.mark.parametrize("who", ["credentials", "anonymous"])
async def test_schemathesis_finds_nothing(full: Full, tmp_path: Path, who: str,
                                          request: pytest.FixtureRequest) -> None:
    long = request.config.getoption("--long")
    with trio.fail_after(60):
        # something to find: jobs in every state, a worker, a log
        await full.new_pipeline("amd64")
        await full.poll("w1", "amd64")
        await full.new_pipeline("arm64")
        failed = await full.poll("a1", "arm64")
        await full.report(failed, ok_result(build_success=False, failed="bash"), "a1",
                          "arm64")
        await full.new_pipeline("riscv64")
        headers: dict[str, str] = {}
        hooks_env = {"BUILDIT_FUZZ_ARCHS": ",".join(full.server.config.archs)}
        if who == "credentials":
            # another Developer than the token's: the fuzzed /account/token replaces the
            # tokens of the user logged in
            browser = await full.login("carol")
            csrf = await full.csrf(browser)
            cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar)
            headers = {"Authorization": f"Bearer {full.dev_token}",
                       "X-Worker-Secret": WORKER_SECRET, "X-Worker-Hostname": "w1",
                       "X-Worker-Arch": "amd64", "Cookie": cookie, "X-CSRF-Token": csrf}
            hooks_env |= {"BUILDIT_FUZZ_WORKER_SECRET": WORKER_SECRET,
                          "BUILDIT_FUZZ_GITHUB_SECRET": GITHUB_HOOK_SECRET,
                          "BUILDIT_FUZZ_TELEGRAM_SECRET": TELEGRAM_SECRET}
    data = await _schemathesis(
        full, tmp_path, who, headers=headers, hooks_env=hooks_env,
        max_examples=int(os.environ.get("BUILDIT_FUZZ_EXAMPLES", 100 if long else 8)),
        seed=None if long else CI_SEED,
        limit=7000 if long else 240)
    assert data["test_cases"]["generated"] > 500
    with trio.fail_after(30):  # the server is still healthy
        r = await full.client.get("/api/health")
        assert r.status_code == 200, r.text
