"""What the bench measures: a real ``buildit serve`` process on a real database.

The server runs in a process of its own (``python -m buildit serve``), so the load
generator in this process never shares its CPU time or event loop. The database is
``BUILDIT_DATABASE_URL`` when set (it must hold no pipelines unless ``wipe``), or an
embedded PostgreSQL in a temporary directory, removed afterwards.
"""

from __future__ import annotations

import logging
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from buildit.bench.http import Connection, HttpError, encode_request
from buildit.db import DedicatedConnection, dedicated_connection, open_database, queries
from buildit.db.embedded import embedded_postgres
from buildit.db.migrate import migrate
from buildit.errors import BuildItError
from buildit.services import hash_token, new_token

log = logging.getLogger(__name__)
ARCHS = ("amd64", "arm64")
LONG_POLL_MAX = 120


class BenchError(BuildItError):
    """The bench could not run (or the server misbehaved under it)."""


@dataclass
class Target:
    """A running server and a SQL connection to its database."""

    host: str
    port: int
    pid: int
    worker_secret: str
    token: str  # a Developer's API token
    sql: DedicatedConnection
    database: str  # "embedded" or the DSN's database name
    log_path: Path

    def rss_mb(self) -> float:
        """Resident memory of the server process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise BenchError("cannot read the server's memory use")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used, from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    async def connect(self) -> Connection:
        return await Connection.open(self.host, self.port)

    def request(self, method: str, path: str, **kwargs: Any) -> bytes:
        return encode_request(method, path, host=f"{self.host}:{self.port}", **kwargs)

    async def db_calls(self) -> int:
        """Units of work the server has sent to its database so far (``buildit_db_calls``
        on /metrics, counted by the server itself: exact and at once)."""
        conn = await self.connect()
        try:
            reply = await conn.request(self.request("GET", "/metrics"))
        finally:
            await conn.aclose()
        if reply.status != 200:
            raise BenchError(f"GET /metrics: HTTP {reply.status}")
        for line in reply.body.decode().splitlines():
            if line.startswith("buildit_db_calls_total "):
                return int(float(line.split()[1]))
        raise BenchError("GET /metrics has no buildit_db_calls_total")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_fd_limit() -> None:
    """Thousands of connections need thousands of descriptors (both ends)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def _holds_pipelines(sql: DedicatedConnection) -> bool:
    return bool(await sql.fetchval("SELECT EXISTS (SELECT 1 FROM pipelines)"))


async def wipe(sql: DedicatedConnection) -> None:
    """Remove every pipeline, job and worker (the bench's own data)."""
    await sql.fetchval(
        "TRUNCATE pipelines, jobs, job_attempts, packages, workers, outbox CASCADE"
    )


async def _wait_ready(host: str, port: int, process: trio.Process, log_path: Path) -> None:
    ping = encode_request("GET", "/api/ping", host=f"{host}:{port}")
    with trio.move_on_after(90):
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise BenchError(f"the server exited ({process.returncode}):\n{tail}")
            try:
                conn = await Connection.open(host, port)
            except OSError:
                await trio.sleep(0.1)
                continue
            try:
                reply = await conn.request(ping)
            except HttpError:
                await trio.sleep(0.1)
                continue
            finally:
                await conn.aclose()
            if reply.status == 200:
                return
            await trio.sleep(0.1)
    raise BenchError("the server did not answer /api/ping within 90 s")


@asynccontextmanager
async def running_target(*, wipe_first: bool = False, keep_dir: bool = False
                         ) -> AsyncIterator[Target]:
    """Start a database (or use BUILDIT_DATABASE_URL) and a server process on it.

    Must run inside ``trio_asyncio.open_loop()``.
    """
    raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="buildit-bench-"))
    try:
        async with AsyncExitStack() as stack:
            dsn = os.environ.get("BUILDIT_DATABASE_URL") or None
            database = "embedded"
            if dsn is None:
                log.info("starting an embedded PostgreSQL in %s", workdir / "db")
                dsn = await stack.enter_async_context(embedded_postgres(workdir / "db"))
            else:
                database = dsn.rsplit("/", 1)[-1] or dsn
            db = await stack.enter_async_context(open_database(dsn, min_size=1, max_size=2))
            await migrate(db)
            sql = await stack.enter_async_context(dedicated_connection(dsn))
            was_empty = not await _holds_pipelines(sql)
            if not was_empty:
                if not wipe_first:
                    raise BenchError(
                        f"the database {database} holds pipelines; the bench writes and "
                        "deletes data, so point BUILDIT_DATABASE_URL at a database made for "
                        "it, or pass --wipe to empty this one"
                    )
                await wipe(sql)
            user = await db.run(queries.upsert_user, "bench-developer", "developer")
            token = new_token()
            await db.run(queries.insert_token, user.id, hash_token(token))

            host, port = "127.0.0.1", _free_port()
            secret = secrets.token_urlsafe(24)
            env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
            env.update(
                BUILDIT_DATABASE_URL=dsn,
                BUILDIT_DATA_DIR=str(workdir / "server"),
                BUILDIT_LISTEN=f"{host}:{port}",
                BUILDIT_PUBLIC_URL=f"http://{host}:{port}",
                BUILDIT_WORKER_SECRET=secret,
                BUILDIT_ARCHS=",".join(ARCHS),
                BUILDIT_LONG_POLL_MAX=str(LONG_POLL_MAX),
                # No job of the bench should be requeued by the watchdog.
                BUILDIT_HEARTBEAT_TIMEOUT="3600",
            )
            log_path = workdir / "server.log"
            with open(log_path, "wb") as logfile:
                process = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "buildit", "serve"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=logfile,
                    stderr=logfile,
                )
            try:
                await _wait_ready(host, port, process, log_path)
                yield Target(host=host, port=port, pid=process.pid, worker_secret=secret,
                             token=token, sql=sql, database=database, log_path=log_path)
            finally:
                with trio.move_on_after(30, shield=True):
                    if process.poll() is None:
                        process.send_signal(signal.SIGTERM)
                        await process.wait()
                if process.poll() is None:
                    process.kill()
                    with trio.move_on_after(5, shield=True):
                        await process.wait()
                if was_empty or wipe_first:
                    # Leave the database empty: what is in it is the bench's.
                    with trio.move_on_after(120, shield=True):
                        await wipe(sql)
                        await sql.fetchval(
                            "DELETE FROM users WHERE github_login = 'bench-developer'"
                        )
    finally:
        if keep_dir:
            log.info("kept the bench directory %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
