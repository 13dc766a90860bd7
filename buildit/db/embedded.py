"""An embedded PostgreSQL server, for when no ``BUILDIT_DATABASE_URL`` is set.

The server binaries come from the ``pgserver`` package (which ships them), or from
``initdb``/``postgres`` found on ``PATH`` or under ``/usr/lib/postgresql``. The
cluster lives in ``<data dir>/postgres`` and keeps its data between runs; the
server is started as our child and stopped when we exit. When we run as root
(PostgreSQL refuses to), the server runs as an unprivileged system user.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from buildit.errors import EmbeddedDatabaseError

log = logging.getLogger(__name__)
DATABASE_NAME = "buildit"
SYSTEM_USER = "buildit-postgres"


def find_binaries() -> Path:
    """The directory holding ``initdb`` and ``postgres``."""
    candidates: list[Path] = []
    # pgserver ships the binaries in its package folder; find them without importing
    # it (its import has side effects we do not want).
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "pginstall" / "bin")
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise EmbeddedDatabaseError(
        "no PostgreSQL server binaries found: install the 'pgserver' package "
        "(pip install pgserver), put initdb/postgres on PATH, or set BUILDIT_DATABASE_URL"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _system_user() -> str | None:
    """The user the server runs as; None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        try:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 SYSTEM_USER],
                check=True,
                capture_output=True,
            )
        except (OSError, subprocess.CalledProcessError):
            return "nobody"
    return SYSTEM_USER


def _make_reachable(path: Path, user: str) -> None:
    """Let ``user`` own ``path`` and traverse every directory above it."""
    entry = pwd.getpwnam(user)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _read_pidfile(pgdata: Path) -> list[str] | None:
    try:
        return (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that run a child as ``user`` (its own group, no root groups)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


async def _run(cmd: list[str], user: str | None) -> None:
    result = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False,
                                    **as_user(user))
    if result.returncode != 0:
        raise EmbeddedDatabaseError(
            f"{Path(cmd[0]).name} failed ({result.returncode}): "
            + result.stderr.decode(errors="replace").strip()[-2000:]
        )


@asynccontextmanager
async def embedded_postgres(data_dir: Path) -> AsyncIterator[str]:
    """Start (or reuse) the embedded server; yields a DSN of the ``buildit`` database."""
    bindir = find_binaries()
    pgdata = data_dir / "postgres"
    user = _system_user()
    data_dir.mkdir(parents=True, exist_ok=True)
    if not (pgdata / "PG_VERSION").exists():
        log.info("initialising an embedded PostgreSQL cluster in %s", pgdata)
        if pgdata.exists():
            shutil.rmtree(pgdata)
        pgdata.mkdir(mode=0o700)
        if user:
            _make_reachable(pgdata, user)
        await _run(
            [str(bindir / "initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres",
             "--encoding=UTF8", "--no-instructions", "--no-sync"],
            user,
        )
    elif user:
        _make_reachable(pgdata, user)

    existing = _read_pidfile(pgdata)
    if existing and len(existing) >= 4 and existing[0].strip().isdigit() and _alive(
        int(existing[0])
    ):
        # A server left by an earlier run (killed without cleanup): reuse it.
        port = int(existing[3])
        log.info("reusing the embedded PostgreSQL already running on port %d", port)
        dsn = f"postgresql://postgres@127.0.0.1:{port}/"
        await _ensure_database(dsn)
        yield dsn + DATABASE_NAME
        return

    port = _free_port()
    logfile = open(data_dir / "postgres.log", "ab")  # noqa: SIM115 - closed in finally
    process = await trio.lowlevel.open_process(
        [str(bindir / "postgres"), "-D", str(pgdata), "-h", "127.0.0.1", "-p", str(port),
         "-k", str(pgdata), "-c", "max_connections=200", "-c", "fsync=on"],
        stdout=logfile,
        stderr=logfile,
        start_new_session=True,
        **as_user(user),
    )
    try:
        with trio.fail_after(60):
            while True:
                if process.poll() is not None:
                    tail = (data_dir / "postgres.log").read_text(errors="replace")[-2000:]
                    raise EmbeddedDatabaseError(f"the embedded PostgreSQL exited:\n{tail}")
                lines = _read_pidfile(pgdata)
                if lines and len(lines) >= 8 and lines[7].strip() == "ready":
                    break
                await trio.sleep(0.05)
        dsn = f"postgresql://postgres@127.0.0.1:{port}/"
        await _ensure_database(dsn)
        log.info("embedded PostgreSQL ready on 127.0.0.1:%d (data in %s)", port, pgdata)
        yield dsn + DATABASE_NAME
    except trio.TooSlowError:
        raise EmbeddedDatabaseError("the embedded PostgreSQL did not start within 60 s") from None
    finally:
        with trio.move_on_after(30, shield=True):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # fast shutdown
                await process.wait()
        if process.poll() is None:
            process.kill()
        logfile.close()


async def _ensure_database(dsn: str) -> None:
    from buildit.db import dedicated_connection

    async with dedicated_connection(dsn + "postgres") as conn:
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME
        )
        if not exists:
            await conn.fetchval(f'CREATE DATABASE "{DATABASE_NAME}"')
