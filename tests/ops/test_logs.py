"""Log lines: human or JSON, each with the request id of the HTTP request it belongs to."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from buildit import logs
from buildit.errors import ConfigError
from tests.conftest import SHA, ok_result, worker_body
from tests.ops.helpers import clean_env, run_buildit


def _record(message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("buildit.test", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_request_and_job_ids() -> None:
    handler = logs.make_handler("json", io.StringIO())
    record = _record("job %d finished as %s", 12, "success")
    token = logs.request_id.set("req-1")
    try:
        assert handler.filter(record)
    finally:
        logs.request_id.reset(token)
    line = json.loads(handler.format(record))
    assert line["message"] == "job 12 finished as success"
    assert line["request_id"] == "req-1" and line["job_id"] == 12
    assert line["level"] == "INFO" and line["logger"] == "buildit.test"
    assert line["time"].endswith("+00:00")
    # outside a request: no request id; no job named: no job id
    record = _record("scheduler started")
    handler.filter(record)
    line = json.loads(handler.format(record))
    assert "request_id" not in line and "job_id" not in line
    # an exception stays on the same line
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    handler.filter(record)
    text = handler.format(record)
    assert "\n" not in text and "ValueError: boom" in json.loads(text)["exception"]


def test_human_lines_tag_the_request() -> None:
    handler = logs.make_handler("human", io.StringIO())
    record = _record("job 3 handed back")
    token = logs.request_id.set("abc")
    try:
        handler.filter(record)
    finally:
        logs.request_id.reset(token)
    assert handler.format(record).endswith("INFO buildit.test [req abc] job 3 handed back")


def test_format_choice_and_request_id_hygiene() -> None:
    assert logs.resolve_format(None, {}) == "human"
    assert logs.resolve_format(None, {"BUILDIT_LOG_FORMAT": "JSON"}) == "json"
    assert logs.resolve_format("human", {"BUILDIT_LOG_FORMAT": "json"}) == "human"
    with pytest.raises(ConfigError, match="BUILDIT_LOG_FORMAT must be one of human, json"):
        logs.resolve_format(None, {"BUILDIT_LOG_FORMAT": "xml"})
    assert logs.accept_request_id("edge-7f3a:1") == "edge-7f3a:1"
    for bad in ("", "a b", "x" * 200, "evil\nINFO forged line"):
        generated = logs.accept_request_id(bad)
        assert generated != bad and len(generated) == 16


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every log line (INFO and up) as JSON, while the test runs."""
    stream = io.StringIO()
    handler = logs.make_handler("json", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_a_requests_log_lines_carry_its_id(server: Any, json_log: io.StringIO) -> None:
    with trio.fail_after(30):
        token = await server.add_user("alice")
        r = await server.client.post(
            "/api/pipeline/new", headers={"Authorization": f"Bearer {token}",
                                          "X-Request-Id": "from-the-proxy-1"},
            json={"git_branch": "stable", "git_sha": SHA, "packages": "bash", "archs": "amd64"})
        assert r.status_code == 200 and r.headers["X-Request-Id"] == "from-the-proxy-1"
        job_id = r.json()["jobs"]["amd64"]
        job = (await server.client.post("/api/worker/poll", json=worker_body("a1"))).json()
        r = await server.client.post(
            "/api/worker/job_update",
            json={"hostname": "a1", "arch": "amd64", "job_id": job_id, "result": ok_result(),
                  "worker_secret": "test-worker-secret", "attempt_token": job["attempt_token"]})
        assert r.status_code == 200
        generated = r.headers["X-Request-Id"]
        assert len(generated) == 16
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    story = [line for line in lines if line.get("job_id") == job_id]
    created = next(line for line in story if "pipeline" in line["message"]
                   and "created" in line["message"])
    assert created["request_id"] == "from-the-proxy-1"
    assert f"job {job_id} (amd64)" in created["message"]
    assigned = next(line for line in story if "assigned to a1/amd64" in line["message"])
    finished = next(line for line in story if "finished as success" in line["message"])
    assert finished["request_id"] == generated and "reported by a1/amd64" in finished["message"]
    # the scheduler claims in its own task (started before any request): no request id
    assert "request_id" not in assigned


async def test_the_log_format_flag_and_variable(tmp_path: Path) -> None:
    with trio.fail_after(60):
        r = await run_buildit(["--log-format", "xml", "pipeline", "list"], clean_env(tmp_path))
        assert r.returncode == 2 and b"invalid choice: 'xml'" in r.stderr
        r = await run_buildit(["pipeline", "list"],
                              clean_env(tmp_path, BUILDIT_LOG_FORMAT="yaml"))
        assert r.returncode == 2
        assert b"BUILDIT_LOG_FORMAT must be one of human, json" in r.stderr


async def test_refused_and_unknown_requests_get_an_id_too(server: Any) -> None:
    with trio.fail_after(30):
        r = await server.client.get("/api/job/info", params={"job_id": "\x00"})
        assert r.status_code == 400 and len(r.headers["X-Request-Id"]) == 16
        r = await server.client.get("/nowhere", headers={"X-Request-Id": "bad id\twith tab"})
        assert r.status_code == 404 and r.headers["X-Request-Id"] != "bad id\twith tab"
