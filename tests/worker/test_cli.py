"""``buildit worker`` as an operator runs it: a subprocess, real sockets, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import trio

from .fakeserver import SECRET
from .helpers import serve_http

LIMIT = 60
ROOT = Path(__file__).resolve().parents[2]


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(settings)
    return env


async def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(LIMIT):
        return await trio.run_process(
            [sys.executable, "-m", "buildit.worker.cli", *args], env=env, check=False,
            capture_stdout=True, capture_stderr=True,
        )


def _settings(workspace: Path, server: str) -> dict[str, str]:
    return {
        "BUILDIT_SERVER": server,
        "BUILDIT_WORKER_SECRET": SECRET,
        "BUILDIT_ARCH": "amd64",
        "BUILDIT_CIEL_PATH": str(workspace),
        "BUILDIT_CONNECTIVITY_CHECK": "",
        "BUILDIT_HOSTNAME": "cli-worker",
    }


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_missing_settings() -> None:
    done = await _run(env=_env(BUILDIT_ARCH="amd64"))
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "buildit worker: error: missing required setting(s): BUILDIT_SERVER" in err
    assert "BUILDIT_WORKER_SECRET" in err and "BUILDIT_CIEL_PATH" in err


async def test_not_a_ciel_workspace(tmp_path: Path) -> None:
    done = await _run(env=_env(**_settings(tmp_path, "http://127.0.0.1:9")))
    assert done.returncode == 2
    assert "is not a ciel workspace: it has no .ciel directory" in done.stderr.decode()


async def test_unreachable_server(workspace: Path) -> None:
    server = f"http://127.0.0.1:{_closed_port()}"
    done = await _run(env=_env(**_settings(workspace, server)))
    assert done.returncode == 1
    assert f"cannot reach the BuildIt server at {server}" in done.stderr.decode()


async def test_flags_override_the_environment(workspace: Path) -> None:
    server = f"http://127.0.0.1:{_closed_port()}"
    env = _env(**_settings(workspace, "http://wrong.invalid"))
    done = await _run("--server", server, env=env)
    assert f"cannot reach the BuildIt server at {server}" in done.stderr.decode()


async def test_wrong_secret(workspace: Path) -> None:
    async def handler(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        return 401, b'{"error": "wrong or missing worker secret"}'

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_http, handler)
        done = await _run(env=_env(**_settings(workspace, f"http://127.0.0.1:{port}")))
        nursery.cancel_scope.cancel()
    assert done.returncode == 1
    assert "refused this worker's secret (401" in done.stderr.decode()


async def test_sigterm_stops_an_idle_worker_cleanly(workspace: Path) -> None:
    seen: list[tuple[str, dict[str, object]]] = []
    polled = trio.Event()

    async def handler(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        seen.append((path, json.loads(body)))
        if path == "/api/worker/poll":
            polled.set()
            await trio.sleep(0.2)
            return 200, b"null"
        return 200, b""

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_http, handler)
            env = _env(**_settings(workspace, f"http://127.0.0.1:{port}"),
                       BUILDIT_POLL_WAIT="0.2")
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "buildit.worker.cli"], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            await polled.wait()
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
            assert proc.stderr is not None
            err = (await proc.stderr.receive_some(1 << 20)).decode()
            nursery.cancel_scope.cancel()
    assert "SIGTERM received: finishing the current build, taking no new job" in err
    heartbeat = seen[0][1]
    assert seen[0][0] == "/api/worker/heartbeat"
    assert heartbeat["hostname"] == "cli-worker" and heartbeat["arch"] == "amd64"
    assert heartbeat["worker_secret"] == SECRET
    assert isinstance(heartbeat["memory_bytes"], int) and heartbeat["memory_bytes"] > 0
    assert isinstance(heartbeat["logical_cores"], int) and heartbeat["logical_cores"] > 0
    assert isinstance(heartbeat["disk_free_space_bytes"], int)
    assert heartbeat["internet_connectivity"] is True
    assert heartbeat["worker_version"]
    poll = next(body for path, body in seen if path == "/api/worker/poll")
    assert poll["wait_secs"] == 0.2


async def test_buildit_worker_help_through_the_main_command() -> None:
    with trio.fail_after(LIMIT):
        done = await trio.run_process(
            [sys.executable, "-m", "buildit", "worker", "--help"], env=_env(),
            capture_stdout=True, capture_stderr=True, check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    for name in ("BUILDIT_SERVER", "BUILDIT_WORKER_SECRET", "BUILDIT_CIEL_INSTANCE",
                 "BUILDIT_PUSHPKG_OPTIONS", "BUILDIT_SSH_KEY", "BUILDIT_RSYNC_HOST",
                 "BUILDIT_SHUTDOWN_GRACE"):
        assert name in out


def test_main_in_process_returns_the_exit_status(tmp_path: Path) -> None:
    from buildit.worker.cli import main

    assert main(["--server", "not a url", "--worker-secret", "x", "--arch", "amd64",
                 "--ciel-path", str(tmp_path)]) == 2


