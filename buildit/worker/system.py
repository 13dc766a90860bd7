"""What a worker tells the server about its machine: cores, memory, disk, network."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import trio

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_CONNECT_LIMIT = 5.0


@dataclass(frozen=True)
class MachineStats:
    memory_bytes: int
    logical_cores: int
    disk_free_space_bytes: int


def logical_cores() -> int:
    """CPUs this process may run on (respects taskset/cpuset), else all of them."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _own_cgroup_v2(proc_self_cgroup: Path) -> str | None:
    try:
        for line in proc_self_cgroup.read_text().splitlines():
            if line.startswith("0::"):
                return line[3:].strip()
    except OSError:
        pass
    return None


def cgroup_memory_limit(
    root: Path = _CGROUP_ROOT, proc_self_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """The tightest memory limit of this process's cgroup and its ancestors, if any.

    cgroup v2: ``memory.max`` (``max`` = no limit) along the process's cgroup path, and
    at the mount root (inside a container that is the container's own cgroup).
    cgroup v1: ``memory/memory.limit_in_bytes`` (a huge number = no limit).
    """
    limits: list[int] = []
    own = _own_cgroup_v2(proc_self_cgroup)
    candidates = [root / "memory.max"]
    if own and own != "/":
        rel = Path(own.lstrip("/"))
        candidates.extend(root / parent / "memory.max" for parent in [rel, *rel.parents])
    for path in candidates:
        limit = _read_limit(path)
        if limit is not None:
            limits.append(limit)
    v1 = _read_limit(root / "memory" / "memory.limit_in_bytes")
    if v1 is not None and v1 < 2**60:
        limits.append(v1)
    return min(limits) if limits else None


def memory_bytes() -> int:
    """Memory a build may use: the cgroup limit where one applies, else total RAM."""
    total = total_memory()
    limit = cgroup_memory_limit()
    if limit is None:
        return total
    return min(limit, total) if total else limit


def disk_free(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def machine_stats(workspace: Path) -> MachineStats:
    return MachineStats(
        memory_bytes=memory_bytes(),
        logical_cores=logical_cores(),
        disk_free_space_bytes=disk_free(workspace),
    )


async def internet_connectivity(target: str) -> bool:
    """Whether a TCP connection to ``host:port`` opens within a few seconds.

    An empty target means the check is switched off; the worker then reports true.
    """
    if not target:
        return True
    host, _, port = target.rpartition(":")
    with trio.move_on_after(_CONNECT_LIMIT):
        try:
            stream = await trio.open_tcp_stream(host, int(port))
        except OSError:
            return False
        await stream.aclose()
        return True
    return False
