"""Build logs: files under ``<data dir>/logs/<job id>/<attempt>.log``, not rows."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from buildit.errors import PayloadTooLarge

MAX_CHUNK = 1024 * 1024
_locks: dict[tuple[int, int], trio.Lock] = {}


def log_url(public_url: str, job_id: int) -> str:
    return f"{public_url}/api/job/log?job_id={job_id}"


def log_path(log_dir: Path, job_id: int, attempt: int) -> Path:
    return log_dir / str(job_id) / f"{attempt}.log"


def size(log_dir: Path, job_id: int, attempt: int) -> int:
    try:
        return log_path(log_dir, job_id, attempt).stat().st_size
    except FileNotFoundError:
        return 0


def _append(path: Path, offset: int, chunk: bytes) -> int | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        current = os.fstat(fd).st_size
        if offset != current:
            return None
        os.lseek(fd, current, os.SEEK_SET)
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        return current + len(chunk)
    finally:
        os.close(fd)


async def append(
    log_dir: Path, job_id: int, attempt: int, offset: int, chunk: bytes, *, max_bytes: int,
    stored: int,
) -> int | None:
    """Append ``chunk`` at ``offset``; None when the offset is not the stored size."""
    if offset + len(chunk) > max_bytes:
        raise PayloadTooLarge(
            f"the log of job {job_id} would exceed the server's limit of {max_bytes} bytes"
        )
    key = (job_id, attempt)
    lock = _locks.setdefault(key, trio.Lock())
    try:
        async with lock:
            return await trio.to_thread.run_sync(
                _append, log_path(log_dir, job_id, attempt), offset, chunk
            )
    finally:
        if not lock.locked() and not lock.statistics().tasks_waiting:
            _locks.pop(key, None)


def read(log_dir: Path, job_id: int, attempt: int, start: int, limit: int) -> bytes:
    path = log_path(log_dir, job_id, attempt)
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(limit)
