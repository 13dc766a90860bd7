"""What heartbeats report about the machine: memory limits, connectivity."""

from __future__ import annotations

from pathlib import Path

import trio

from buildit.worker.system import (
    cgroup_memory_limit,
    internet_connectivity,
    logical_cores,
    machine_stats,
    memory_bytes,
)


def _cgroup(tmp_path: Path, files: dict[str, str], own: str = "0::/\n") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(own)
    return root, proc


def test_cgroup_v2_limit(tmp_path: Path) -> None:
    root, proc = _cgroup(tmp_path, {"memory.max": "8589934592\n"})
    assert cgroup_memory_limit(root, proc) == 8 * 2**30


def test_cgroup_v2_without_limit(tmp_path: Path) -> None:
    root, proc = _cgroup(tmp_path, {"memory.max": "max\n"})
    assert cgroup_memory_limit(root, proc) is None


def test_cgroup_v2_tightest_limit_along_the_own_path(tmp_path: Path) -> None:
    root, proc = _cgroup(
        tmp_path,
        {"system.slice/memory.max": "4294967296\n",
         "system.slice/buildit.service/memory.max": "max\n"},
        own="0::/system.slice/buildit.service\n",
    )
    assert cgroup_memory_limit(root, proc) == 4 * 2**30


def test_cgroup_v1_limit_and_its_no_limit_value(tmp_path: Path) -> None:
    root, proc = _cgroup(tmp_path, {"memory/memory.limit_in_bytes": "2147483648\n"}, own="")
    assert cgroup_memory_limit(root, proc) == 2 * 2**30
    root, proc = _cgroup(tmp_path / "b", {"memory/memory.limit_in_bytes": "9223372036854771712"},
                         own="")
    assert cgroup_memory_limit(root, proc) is None


def test_machine_stats_are_plausible(tmp_path: Path) -> None:
    stats = machine_stats(tmp_path)
    assert stats.logical_cores == logical_cores() >= 1
    assert stats.memory_bytes == memory_bytes() > 0
    assert stats.disk_free_space_bytes > 0


async def test_connectivity_check() -> None:
    with trio.fail_after(30):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        assert await internet_connectivity(f"127.0.0.1:{port}") is True
        await listeners[0].aclose()
        assert await internet_connectivity(f"127.0.0.1:{port}") is False
        assert await internet_connectivity("") is True
