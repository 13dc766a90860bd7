"""The `buildit` command: embedded database, migrations, users and tokens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import SHA


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "buildit", *args], env=env, text=True,
                          capture_output=True, timeout=120)


def test_user_and_token_commands(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "BUILDIT_DATABASE_URL": database_url,
           "BUILDIT_DATA_DIR": str(tmp_path)}
    r = _run(["migrate"], env)
    assert r.returncode == 0, r.stderr
    r = _run(["token", "create", "--github-login", "nobody"], env)
    assert r.returncode == 1 and "no user 'nobody'" in r.stderr
    r = _run(["user", "add", "--github-login", "bad login!", "--role", "developer"], env)
    assert r.returncode == 2 and "is not a GitHub login" in r.stderr
    r = _run(["user", "add", "--github-login", "alice", "--role", "developer"], env)
    assert r.returncode == 0 and "alice is a developer" in r.stdout
    r = _run(["token", "create", "--github-login", "alice"], env)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("bit_") and len(token) > 40
    assert "shown only once" in r.stderr
    # only the hash is stored
    dump = subprocess.run(["pg_dump", "--data-only", database_url], capture_output=True,
                          text=True, check=False)
    if dump.returncode == 0:
        assert token not in dump.stdout


def test_serve_help_explains_every_setting() -> None:
    r = _run(["serve", "--help"], dict(os.environ))
    assert r.returncode == 0
    for name in ("BUILDIT_DATABASE_URL", "BUILDIT_DATA_DIR", "BUILDIT_LISTEN",
                 "BUILDIT_WORKER_SECRET", "BUILDIT_ARCHS", "BUILDIT_HEARTBEAT_TIMEOUT",
                 "BUILDIT_LONG_POLL_MAX", "BUILDIT_MAX_LOST_ATTEMPTS"):
        assert name in r.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
async def test_serve_starts_an_embedded_database_from_nothing(tmp_path: Path) -> None:
    """No BUILDIT_DATABASE_URL: `buildit serve` runs its own PostgreSQL and keeps the data."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    env.update(BUILDIT_DATA_DIR=str(tmp_path / "data"), BUILDIT_LISTEN=f"127.0.0.1:{port}",
               BUILDIT_WORKER_SECRET="s3cret", BUILDIT_ARCHS="amd64")
    url = f"http://127.0.0.1:{port}"

    async def serve_once(check: str) -> str:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "buildit", "serve"], env=env,
            stdout=open(tmp_path / "serve.log", "ab"), stderr=subprocess.STDOUT)
        try:
            with trio.fail_after(120):
                async with httpx.AsyncClient(base_url=url) as client:
                    while True:
                        try:
                            if (await client.get("/api/health")).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        if proc.poll() is not None:
                            raise AssertionError((tmp_path / "serve.log").read_text())
                        await trio.sleep(0.2)
                    if check == "write":
                        r = await client.post("/api/worker/heartbeat", json={
                            "hostname": "h1", "arch": "amd64", "git_commit": "c",
                            "memory_bytes": 1, "logical_cores": 1,
                            "disk_free_space_bytes": 1, "worker_secret": "s3cret",
                            "performance": None, "internet_connectivity": True})
                        assert r.status_code == 200
                        # the heartbeat is written within a flush interval
                        for _ in range(100):
                            r = await client.get("/api/worker/list")
                            if r.json()["total_items"] == 1:
                                break
                            await trio.sleep(0.1)
                    return str((await client.get("/api/worker/list")).json()["total_items"])
        finally:
            proc.send_signal(2)
            with trio.move_on_after(60):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()

    assert await serve_once("write") == "1"
    assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()
    # the embedded server was stopped on exit, and the data is still there on restart
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()
    assert await serve_once("read") == "1"
    assert SHA  # keep the shared constant imported for symmetry with other tests


def test_serve_limits_heap_fragmentation_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import platform

    from buildit.server import limit_heap_fragmentation

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert limit_heap_fragmentation() is False  # the operator's setting wins
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072")
    assert limit_heap_fragmentation() is False
    monkeypatch.delenv("GLIBC_TUNABLES")
    glibc = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"
    assert limit_heap_fragmentation() is glibc
