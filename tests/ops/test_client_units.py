"""The client's pure parts and its follower, without a server (httpx.MockTransport)."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from buildit.client import render
from buildit.client.api import ApiError, BuildItApi
from buildit.client.config import DEFAULT_SERVER, load_client_settings
from buildit.client.follow import LineDisplay, TableDisplay, follow_pipeline, has_ended
from buildit.errors import ConfigError


def _job(job_id: int, arch: str, status: str, **more: Any) -> dict[str, Any]:
    return {"job_id": job_id, "arch": arch, "status": status, "attempt": 1,
            "assigned_worker_hostname": None, "elapsed_secs": None, "failed_package": None,
            "error_message": None, "log_url": None, **more}


def _info(status: str, *jobs: dict[str, Any]) -> dict[str, Any]:
    return {"pipeline_id": 7, "packages": "bash", "git_branch": "stable",
            "git_sha": "0123456789abcdef" * 2 + "01234567", "status": status, "jobs": list(jobs)}


def test_settings_precedence(tmp_path: Path) -> None:
    config = tmp_path / "client.toml"
    config.write_text('server = "http://file:1/"\ntoken = "bit_file"\n')
    env = {"BUILDIT_CLIENT_CONFIG": str(config)}
    assert load_client_settings(environ=env).server == "http://file:1"
    assert load_client_settings(environ=env).token == "bit_file"
    env.update(BUILDIT_SERVER="https://env.example", BUILDIT_TOKEN="bit_env")
    s = load_client_settings(environ=env)
    assert (s.server, s.token) == ("https://env.example", "bit_env")
    s = load_client_settings(server="http://flag:2", token="bit_flag", environ=env)
    assert (s.server, s.token) == ("http://flag:2", "bit_flag")
    # nothing anywhere: the local default server, no token
    empty = {"XDG_CONFIG_HOME": str(tmp_path / "none")}
    s = load_client_settings(environ=empty)
    assert (s.server, s.token) == (DEFAULT_SERVER, None)
    with pytest.raises(ConfigError, match="http:// or https://"):
        load_client_settings(server="buildit.aosc.io", environ=empty)
    config.write_text("tokn = 'x'\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_client_settings(environ={"BUILDIT_CLIENT_CONFIG": str(config)})
    with pytest.raises(ConfigError, match="does not exist"):
        load_client_settings(environ={"BUILDIT_CLIENT_CONFIG": str(tmp_path / "missing")})


def test_render_jobs_and_exit_codes() -> None:
    assert render.exit_code("success") == 0
    assert [render.exit_code(s) for s in ("failed", "error", "running")] == [1, 1, 1]
    assert render.duration(5) == "5s" and render.duration(65) == "1m 05s"
    assert render.duration(3 * 3600 + 60) == "3h 01m"
    running = _job(1, "amd64", "running", assigned_worker_hostname="b1", attempt=2)
    assert render.job_line(running, running_for=61) == (
        "amd64 job 1: running on b1 (attempt 2) 1m 01s")
    failed = _job(2, "arm64", "failed", elapsed_secs=30, failed_package="zlib",
                  log_url="http://x/log")
    assert render.job_line(failed) == "arm64 job 2: failed in 30s: zlib did not build (log: http://x/log)"
    assert render.job_line(_job(3, "riscv64", "created", attempt=1)) == (
        "riscv64 job 3: waiting for a worker (attempt 2)")
    assert render.job_line(_job(4, "noarch", "error", error_message="lost 3 times")) == (
        "noarch job 4: error: lost 3 times")
    before = {1: render.job_key(running)}
    assert render.changed_jobs(before, [running, failed]) == [failed]
    lines = render.table(_info("running", running, failed), running_for={1: 3.0}, width=60)
    assert lines[0].startswith("pipeline 7: bash @ stable (0123456789ab)")
    assert lines[1].split() == ["ARCH", "JOB", "STATUS", "DETAILS"]
    assert "on b1 (attempt 2) 3s" in lines[2] and "in 30s: zlib did not build" in lines[3]
    assert lines[-1] == "failed: 1 of 2 jobs finished"  # as the server rules: failed > running
    assert all(len(line) <= 60 for line in lines)
    assert render.pipeline_rows([]) == ["no pipelines"]


def test_has_ended_waits_for_every_job() -> None:
    # the pipeline is already "failed" while amd64 still builds
    assert not has_ended(_info("failed", _job(1, "amd64", "running"), _job(2, "arm64", "failed")))
    assert has_ended(_info("failed", _job(1, "amd64", "success"), _job(2, "arm64", "failed")))


async def test_follow_waits_out_a_server_restart(autojump_clock: trio.abc.Clock) -> None:
    answers: list[tuple[int, Any]] = [
        (200, _info("running", _job(1, "amd64", "created", attempt=0))),
        (200, _info("running", _job(1, "amd64", "running", assigned_worker_hostname="b1"))),
        (503, {"error": "the database is unavailable; retry shortly"}),
        (503, {"error": "the database is unavailable; retry shortly"}),
        (200, _info("running", _job(1, "amd64", "running", assigned_worker_hostname="b1"))),
        (200, _info("success", _job(1, "amd64", "success", elapsed_secs=9))),
    ]
    asked: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/pipeline/info"
        assert request.url.params["pipeline_id"] == "7"
        asked.append(trio.current_time())
        status, body = answers.pop(0)
        return httpx.Response(status, json=body)

    out = io.StringIO()
    async with httpx.AsyncClient(base_url="http://buildit.test",
                                 transport=httpx.MockTransport(handler)) as client:
        info = await follow_pipeline(BuildItApi(client, token=None), 7,
                                     display=LineDisplay(out), interval=1.0)
    assert info["status"] == "success" and not answers
    assert out.getvalue().splitlines() == [
        "pipeline 7: bash @ stable (0123456789ab) for amd64",
        "amd64 job 1: waiting for a worker",
        "amd64 job 1: running on b1",
        "(the database is unavailable; retry shortly; still trying)",
        "(the database is unavailable; retry shortly; still trying)",
        "amd64 job 1: success in 9s",
        "pipeline 7: success",
    ]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(asked)]
    assert gaps == [1.0, 1.0, 2.0, 4.0, 1.0]  # backoff while the server is away


async def test_follow_stops_on_a_real_error(autojump_clock: trio.abc.Clock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "pipeline 7 does not exist"})

    async with httpx.AsyncClient(base_url="http://buildit.test",
                                 transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ApiError, match="pipeline 7 does not exist") as caught:
            await follow_pipeline(BuildItApi(client, token=None), 7,
                                  display=LineDisplay(io.StringIO()))
    assert caught.value.status == 404


async def test_table_display_redraws_in_place(autojump_clock: trio.abc.Clock) -> None:
    out = io.StringIO()
    display = TableDisplay(out, color=False)
    display.update(_info("running", _job(1, "amd64", "created", attempt=0)))
    first = out.getvalue()
    assert "\x1b[" not in first and first.count("\n") == 4
    display.update(_info("success", _job(1, "amd64", "success", elapsed_secs=3)))
    second = out.getvalue()[len(first):]
    assert second.startswith("\x1b[4F\x1b[J")  # back to the table's first line, cleared
    assert "success: 1 of 1 jobs finished" in second
