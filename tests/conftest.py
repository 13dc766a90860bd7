"""Shared fixtures: a real PostgreSQL, a fresh migrated database per test, a real server.

PostgreSQL comes from ``BUILDIT_TEST_DATABASE_URL`` (an admin DSN), else the server on
127.0.0.1:5432 when one answers, else an embedded server started for the session
from the same binaries ``buildit serve`` uses (so the suite also passes where no
PostgreSQL runs).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import trio
import trio.testing
import trio_asyncio

from buildit.config import ServerConfig
from buildit.db import open_database, queries
from buildit.db.migrate import migrate
from buildit.server import RunningServer, run_server
from buildit.services import hash_token, new_token

WORKER_SECRET = "test-worker-secret"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="run the fault and load scenarios at full size")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class LocalPostgres:
    """A PostgreSQL server of the test's own, which it may stop and start again."""

    def __init__(self, tmp: Path) -> None:
        from buildit.db import embedded

        self.bindir = embedded.find_binaries()
        self.user = embedded._system_user()
        self.pgdata = tmp / "pgdata"
        self.port = embedded._free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        tmp.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700)
        if self.user:
            embedded._make_reachable(tmp, self.user)
            embedded._make_reachable(self.pgdata, self.user)
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.pgdata), "--auth=trust", "-U",
             "postgres", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, **embedded.as_user(self.user),
        )

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/"

    def start(self) -> None:
        from buildit.db import embedded

        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.pgdata), "-h", "127.0.0.1",
             "-p", str(self.port), "-k", str(self.pgdata), "-c", "fsync=off",
             "-c", "max_connections=300"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            **embedded.as_user(self.user),
        )
        deadline = time.monotonic() + 60
        while not _port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the test PostgreSQL did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            self.proc.wait(30)
        self.proc = None


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A DSN (ending in '/') of a server where we may create databases."""
    env = os.environ.get("BUILDIT_TEST_DATABASE_URL")
    if env:
        yield env.rstrip("/").rsplit("/", 1)[0] + "/"
        return
    if _port_open("127.0.0.1", 5432):
        yield "postgresql://postgres@127.0.0.1:5432/"
        return
    tmp = Path(tempfile.mkdtemp(prefix="buildit-pg-"))
    local = LocalPostgres(tmp)
    local.start()
    try:
        yield local.dsn
    finally:
        local.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn + "postgres")
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db(pg_admin_dsn: str) -> Iterator[str]:
    """The migrated database the tests use (see ``database_url``)."""
    name = f"buildit_tpl_{os.getpid()}"
    asyncio.run(_admin(pg_admin_dsn, f'DROP DATABASE IF EXISTS "{name}"',
                       f'CREATE DATABASE "{name}"'))

    async def _migrate() -> None:
        async with trio_asyncio.open_loop(), open_database(pg_admin_dsn + name) as db:
            await migrate(db)

    trio.run(_migrate)
    try:
        yield name
    finally:
        asyncio.run(_admin(pg_admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _reset(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'schema_migrations'")]
        await conn.execute(
            "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def database_url(pg_admin_dsn: str, template_db: str) -> Iterator[str]:
    """A migrated, empty database for one test.

    Tests in a process run one after another, so one database serves them all: it is
    emptied (TRUNCATE ... RESTART IDENTITY) before each test, which is much faster than
    creating and dropping a database each time.
    """
    dsn = pg_admin_dsn + template_db
    asyncio.run(_reset(dsn))
    yield dsn


@pytest.fixture
def virtual_clock() -> trio.testing.MockClock:
    """Trio's virtual clock for tests that also do real I/O (PostgreSQL, HTTP).

    The clock jumps only once every task has waited 20 ms of real time, so a database
    round trip is not mistaken for idleness; run ``ticker`` beside the code under test
    to bound any jump to one virtual second.
    """
    return trio.testing.MockClock(autojump_threshold=0.02)


async def ticker() -> None:
    while True:
        await trio.sleep(1)


@pytest.fixture
async def aio_loop() -> AsyncIterator[None]:
    async with trio_asyncio.open_loop():
        yield


@pytest.fixture
async def db(aio_loop: None, database_url: str) -> AsyncIterator[Any]:
    async with open_database(database_url) as database:
        yield database


def make_config(database_url: str, data_dir: Path, **overrides: Any) -> ServerConfig:
    base = ServerConfig(
        database_url=database_url,
        data_dir=data_dir,
        listen_host="127.0.0.1",
        listen_port=0,
        public_url="http://buildit.test",
        worker_secret=WORKER_SECRET,
        archs=("amd64", "arm64", "riscv64"),
        heartbeat_timeout=60.0,
        long_poll_max=25.0,
        max_lost_attempts=3,
    )
    return base.replace(**overrides)


@dataclass
class ServerHandle:
    running: RunningServer
    config: ServerConfig
    client: httpx.AsyncClient

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def db(self) -> Any:
        return self.running.services.db

    async def add_user(self, login: str, role: str = "developer") -> str:
        """Create a user with an API token; returns the token."""
        user = await self.db.run(queries.upsert_user, login, role)
        token = new_token()
        await self.db.run(queries.insert_token, user.id, hash_token(token))
        return token

    async def counts(self) -> dict[str, int]:
        result: dict[str, int] = await self.db.read(queries.table_counts)
        return result


@pytest.fixture
async def start_server(
    aio_loop: None, database_url: str, tmp_path: Path
) -> AsyncIterator[Any]:
    """Factory: ``await start_server(**config_overrides)`` -> ServerHandle (stopped at teardown)."""
    async with trio.open_nursery() as nursery:
        started: list[ServerHandle] = []

        async def factory(**overrides: Any) -> ServerHandle:
            config = make_config(database_url, tmp_path / f"data{len(started)}", **overrides)
            running: RunningServer = await nursery.start(run_server, config)
            client = httpx.AsyncClient(base_url=running.url, timeout=60)
            server = ServerHandle(running=running, config=config, client=client)
            started.append(server)
            return server

        yield factory
        for server in started:
            await server.client.aclose()
            server.running.stop.set()


@pytest.fixture
async def server(start_server: Any) -> ServerHandle:
    """A running server on a fresh database (archs amd64, arm64, riscv64)."""
    result: ServerHandle = await start_server()
    return result


def worker_body(hostname: str = "w1", arch: str = "amd64", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hostname": hostname,
        "arch": arch,
        "worker_secret": WORKER_SECRET,
        "memory_bytes": 32 * 2**30,
        "logical_cores": 16,
        "disk_free_space_bytes": 500 * 10**9,
    }
    body.update(extra)
    return body


def heartbeat_body(hostname: str = "w1", arch: str = "amd64", **extra: Any) -> dict[str, Any]:
    body = worker_body(hostname, arch)
    body.update(git_commit="0123abc", performance=None, internet_connectivity=True)
    body.update(extra)
    return body


def ok_result(*built: str, build_success: bool = True, pushpkg_success: bool = True,
              failed: str | None = None, skipped: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "Ok": {
            "build_success": build_success,
            "successful_packages": list(built),
            "failed_package": failed,
            "skipped_packages": list(skipped),
            "log_url": None,
            "elapsed_secs": 12,
            "pushpkg_success": pushpkg_success,
        }
    }


SHA = "0123456789abcdef0123456789abcdef01234567"
