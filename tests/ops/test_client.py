"""`buildit pipeline ...` / `buildit job restart` against a real server, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio

from tests.conftest import SHA, ok_result, worker_body
from tests.ops.helpers import clean_env, run_buildit, start_buildit

LIMIT = 90


async def _poll(server: Any, hostname: str, arch: str, **extra: Any) -> Any:
    r = await server.client.post("/api/worker/poll", json=worker_body(hostname, arch, **extra))
    assert r.status_code == 200, r.text
    return r.json()


async def _report(server: Any, hostname: str, arch: str, job: Any, result: Any) -> None:
    r = await server.client.post(
        "/api/worker/job_update",
        json={"hostname": hostname, "arch": arch, "job_id": job["job_id"],
              "worker_secret": "test-worker-secret", "result": result,
              "attempt_token": job["attempt_token"]},
    )
    assert r.status_code == 200, r.text


def _connection(server: Any, token: str | None) -> list[str]:
    return ["--server", server.url, *(["--token", token] if token else [])]


async def _follow_new(server: Any, token: str, tmp_path: Path, *extra: str,
                      outcome: dict[str, Any]) -> tuple[int, str]:
    """`pipeline new ... --follow` while a simulated worker per arch builds; (status, out)."""
    env = clean_env(tmp_path)
    args = ["pipeline", "new", "stable", "bash,zlib", "amd64,arm64", "--sha", SHA, "--follow",
            "--interval", "0.05", *extra, *_connection(server, token)]
    async with trio.open_nursery() as nursery:
        proc, out = await start_buildit(nursery, args, env)
        # Long polls: answered the moment the client has created the pipeline.
        job_a = await _poll(server, "a1", "amd64", wait_secs=20)
        job_r = await _poll(server, "r1", "arm64", wait_secs=20)
        await out.wait_for(f"amd64 job {job_a['job_id']}: running on a1")
        await out.wait_for(f"arm64 job {job_r['job_id']}: running on r1")
        await _report(server, "a1", "amd64", job_a, outcome["amd64"])
        await out.wait_for(f"amd64 job {job_a['job_id']}: {outcome['amd64_line']}")
        if "arm64" in outcome:
            await _report(server, "r1", "arm64", job_r, outcome["arm64"])
        status = await proc.wait()
        await out.closed.wait()
    return status, out.text


async def test_follow_exits_0_when_the_pipeline_succeeds(server: Any, tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        token = await server.add_user("alice")
        status, text = await _follow_new(
            server, token, tmp_path,
            outcome={"amd64": ok_result("bash", "zlib"), "amd64_line": "success in 12s",
                     "arm64": ok_result("bash", "zlib")})
    assert status == 0, text
    lines = text.splitlines()
    assert lines[0].startswith("pipeline ") and " created: amd64 job " in lines[0]
    assert lines[1].startswith("pipeline ") and "bash,zlib @ stable (0123456789ab)" in lines[1]
    assert any(line.startswith("arm64 job ") and "success in 12s" in line for line in lines)
    assert lines[-1].endswith(": success")


async def test_follow_exits_1_when_a_job_fails(server: Any, tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        token = await server.add_user("alice")
        status, text = await _follow_new(
            server, token, tmp_path,
            outcome={"amd64": ok_result("bash", build_success=False, failed="zlib"),
                     "amd64_line": "failed in 12s: zlib did not build",
                     "arm64": ok_result("bash", "zlib")})
    assert status == 1, text
    assert "log: http://buildit.test/api/job/log?job_id=" in text
    assert text.splitlines()[-1].endswith(": failed")


async def test_fail_fast_stops_at_the_first_failure(server: Any, tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        token = await server.add_user("alice")
        # arm64 never reports: --fail-fast must not wait for it.
        status, text = await _follow_new(
            server, token, tmp_path, "--fail-fast",
            outcome={"amd64": {"Error": "ciel exploded"}, "amd64_line": "error: ciel exploded"})
    assert status == 1, text
    assert text.splitlines()[-1].endswith(": error")


async def test_api_errors_print_the_servers_message_and_exit_2(
    server: Any, tmp_path: Path
) -> None:
    env = clean_env(tmp_path)
    with trio.fail_after(LIMIT):
        token = await server.add_user("alice")
        guest = await server.add_user("bob", "guest")
        # no packages tree on this server: the commit is required
        r = await run_buildit(["pipeline", "new", "stable", "bash", "amd64",
                               *_connection(server, token)], env)
        assert r.returncode == 2
        assert b"git_sha is required" in r.stderr and r.stdout == b""
        r = await run_buildit(["pipeline", "new", "stable", "bash", "amd64", "--sha", SHA,
                               *_connection(server, "bit_not-a-real-token")], env)
        assert r.returncode == 2 and b"the API token is not valid" in r.stderr
        r = await run_buildit(["pipeline", "new", "stable", "bash", "amd64", "--sha", SHA,
                               *_connection(server, guest)], env)
        assert r.returncode == 2 and b"bob is not a Developer" in r.stderr
        r = await run_buildit(["pipeline", "new", "stable", "bash", "amd64", "--sha", SHA,
                               *_connection(server, None)], env)
        assert r.returncode == 2 and b"needs an API token" in r.stderr
        r = await run_buildit(["pipeline", "show", "999", *_connection(server, None)], env)
        assert r.returncode == 2 and b"pipeline 999 does not exist" in r.stderr
        r = await run_buildit(["job", "restart", "999", *_connection(server, token)], env)
        assert r.returncode == 2 and b"job 999 does not exist" in r.stderr
        r = await run_buildit(["pipeline", "list", "--server", "http://127.0.0.1:9"], env)
        assert r.returncode == 2 and b"cannot reach the BuildIt server" in r.stderr
        assert (await server.counts())["pipelines"] == 0


async def test_show_list_cancel_restart(server: Any, tmp_path: Path) -> None:
    """Settings from the environment this time; the token never on the command line."""
    env = clean_env(tmp_path)
    with trio.fail_after(LIMIT):
        token = await server.add_user("alice")
        env.update(BUILDIT_SERVER=server.url, BUILDIT_TOKEN=token)
        r = await run_buildit(["pipeline", "new", "stable", "bash", "amd64,arm64", "--sha", SHA,
                               "--json"], env)
        assert r.returncode == 0, r.stderr
        created = json.loads(r.stdout)
        pid, job_a = created["id"], created["jobs"]["amd64"]

        job = await _poll(server, "a1", "amd64")
        await _report(server, "a1", "amd64", job, ok_result("bash", build_success=False,
                                                            failed="bash"))
        r = await run_buildit(["pipeline", "show", str(pid)], env)
        assert r.returncode == 0, r.stderr
        shown = r.stdout.decode()
        assert f"pipeline {pid}: bash @ stable" in shown and "status:   failed" in shown
        assert f"amd64 job {job_a}: failed in 12s: bash did not build" in shown
        assert f"arm64 job {created['jobs']['arm64']}: waiting for a worker" in shown

        r = await run_buildit(["pipeline", "list"], env)
        assert r.returncode == 0, r.stderr
        assert f"{pid}  failed" in r.stdout.decode()
        assert "amd64:failed arm64:created" in r.stdout.decode()

        r = await run_buildit(["job", "restart", str(job_a)], env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().strip() == f"job {job_a} restarted (pipeline {pid})"
        again = await _poll(server, "a2", "amd64")
        assert again["job_id"] == job_a and again["attempt"] == 2

        r = await run_buildit(["pipeline", "cancel", str(pid)], env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().strip() == (
            f"pipeline {pid} cancelled: job {job_a}, job {created['jobs']['arm64']} ended")
        info = (await server.client.get("/api/pipeline/info",
                                        params={"pipeline_id": pid})).json()
        assert info["status"] == "error"
        # following an ended pipeline returns at once with its outcome
        r = await run_buildit(["pipeline", "show", str(pid), "--follow"], env)
        assert r.returncode == 1
        assert r.stdout.decode().splitlines()[-1] == f"pipeline {pid}: error"


async def test_settings_come_from_the_config_file(server: Any, tmp_path: Path) -> None:
    config = tmp_path / "client.toml"
    with trio.fail_after(LIMIT):
        token = await server.add_user("alice")
        config.write_text(f'server = "{server.url}"\ntoken = "{token}"\n')
        env = clean_env(tmp_path, BUILDIT_CLIENT_CONFIG=str(config))
        r = await run_buildit(["pipeline", "new", "stable", "bash", "riscv64", "--sha", SHA],
                              env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().startswith("pipeline ")
        config.write_text("server = 3\n")
        r = await run_buildit(["pipeline", "list"], env)
        assert r.returncode == 2 and b"server must be a string" in r.stderr
