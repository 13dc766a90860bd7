"""Helpers for the fault tests: a `buildit serve` process we can kill, and simulated workers.

The simulated workers speak the real worker protocol over real HTTP and behave like
`buildit worker` where it matters here: they long-poll, and they retry a result with
backoff until the server acknowledges it (2xx) or refuses it (409).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.conftest import WORKER_SECRET, worker_body


async def make_token(db: Any, login: str, role: str = "developer") -> str:
    from buildit.db import queries
    from buildit.services import hash_token, new_token

    user = await db.run(queries.upsert_user, login, role)
    token = new_token()
    await db.run(queries.insert_token, user.id, hash_token(token))
    return token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """`python -m buildit serve` on a fixed port, restartable, killable with SIGKILL."""

    def __init__(self, database_url: str, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / f"serve-{self.port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "BUILDIT_DATABASE_URL": database_url,
            "BUILDIT_WORKER_SECRET": WORKER_SECRET,
            "BUILDIT_DATA_DIR": str(data_dir),
            "BUILDIT_LISTEN": f"127.0.0.1:{self.port}",
            "BUILDIT_ARCHS": "amd64,arm64",
            **env,
        }
        self.proc: trio.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "buildit", "serve"], env=self.env, stdout=log,
                stderr=log)
        self.starts += 1
        with trio.fail_after(60):
            async with httpx.AsyncClient() as client:
                while True:
                    try:
                        if (await client.get(f"{self.url}/api/ping")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
                    await trio.sleep(0.05)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(20):
                await self.proc.wait()
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


@dataclass
class Ledger:
    """What the simulated workers saw and reported."""

    reported: dict[int, dict[str, Any]] = field(default_factory=dict)  # job -> result acked
    acked: list[tuple[int, str]] = field(default_factory=list)  # (job, token) acknowledged
    refused: list[tuple[int, str]] = field(default_factory=list)  # 409s
    claims: list[tuple[int, str, str]] = field(default_factory=list)  # (job, token, worker)


async def simulated_worker(
    urls: list[str], hostname: str, arch: str, ledger: Ledger, done: trio.Event,
    *, build_secs: float = 0.0,
) -> None:
    """Poll, "build", report with retries, until ``done`` is set."""
    async with httpx.AsyncClient(timeout=30) as client:
        turn = 0
        while not done.is_set():
            url = urls[turn % len(urls)]
            turn += 1
            try:
                r = await client.post(f"{url}/api/worker/poll",
                                      json=worker_body(hostname, arch, wait_secs=1))
            except httpx.TransportError:
                await trio.sleep(0.05)
                continue
            if r.status_code != 200 or r.json() is None:
                await trio.sleep(0.01)
                continue
            job = r.json()
            ledger.claims.append((job["job_id"], job["attempt_token"], hostname))
            if build_secs:
                await trio.sleep(build_secs)
            result = {"Ok": {"build_success": True, "pushpkg_success": True,
                             "successful_packages": [f"built-by-{hostname}"],
                             "failed_package": None, "skipped_packages": [],
                             "log_url": None, "elapsed_secs": 1}}
            body = {"hostname": hostname, "arch": arch, "job_id": job["job_id"],
                    "worker_secret": WORKER_SECRET, "attempt_token": job["attempt_token"],
                    "result": result}
            delay = 0.05
            while True:  # never lose a result
                try:
                    r = await client.post(f"{urls[turn % len(urls)]}/api/worker/job_update",
                                          json=body)
                    if r.status_code == 200:
                        ledger.acked.append((job["job_id"], job["attempt_token"]))
                        ledger.reported[job["job_id"]] = result
                        break
                    if r.status_code == 409:
                        ledger.refused.append((job["job_id"], job["attempt_token"]))
                        break
                except httpx.TransportError:
                    pass
                turn += 1
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)
