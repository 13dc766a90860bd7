"""Fixtures of the worker's tests: fake ciel/pushpkg on PATH, a real packages tree.

- ``fakes``: tests/worker/bin (fake ``ciel`` and ``pushpkg``) first on PATH, with a
  control file to drive them and a record of every run;
- ``abbs``: a bare git repository standing in for aosc-os-abbs on GitHub, plus a
  working clone to commit to;
- ``workspace``: a ciel workspace (``.ciel/`` and ``TREE/`` cloned from ``abbs``);
- ``worker_config``: a ``WorkerConfig`` for that workspace, with short intervals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from buildit.worker.config import WorkerConfig

from .fakeserver import SECRET

BIN = Path(__file__).parent / "bin"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "BuildIt Tests",
    "GIT_AUTHOR_EMAIL": "tests@buildit.invalid",
    "GIT_COMMITTER_NAME": "BuildIt Tests",
    "GIT_COMMITTER_EMAIL": "tests@buildit.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
        env={**os.environ, **GIT_ENV},
    )
    return result.stdout.strip()


def spec(version: str, rel: str = "0") -> str:
    return f'VER={version}\nREL={rel}\n'


@dataclass
class Abbs:
    """The "GitHub" side of the packages tree."""

    remote: Path
    work: Path

    def commit(self, files: Mapping[str, str], *, branch: str = "stable",
               message: str = "update") -> str:
        branches = git(self.work, "branch", "--list", branch)
        if branches:
            git(self.work, "switch", "--quiet", branch)
        else:
            git(self.work, "switch", "--quiet", "-c", branch)
        for name, content in files.items():
            target = self.work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            git(self.work, "add", "--", name)
        git(self.work, "commit", "--quiet", "-m", message)
        git(self.work, "push", "--quiet", "origin", f"{branch}:{branch}")
        return git(self.work, "rev-parse", "HEAD")


@dataclass
class Fakes:
    control_file: Path
    record_file: Path

    def control(self, **settings: Any) -> None:
        """Set how the fake ciel/pushpkg behave from their next run on."""
        self.control_file.write_text(json.dumps(settings))

    def records(self, program: str | None = None) -> list[dict[str, Any]]:
        if not self.record_file.exists():
            return []
        entries = [json.loads(line) for line in self.record_file.read_text().splitlines()]
        return [e for e in entries if program is None or e["program"] == program]


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM"):
        monkeypatch.setenv(key, GIT_ENV[key])


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fakes:
    pybin = tmp_path / "python-bin"
    pybin.mkdir()
    # The fakes' "#!/usr/bin/env python3" finds this interpreter first.
    (pybin / "python3").symlink_to(sys.executable)
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(BIN), str(pybin), os.environ.get("PATH", "")])
    )
    fakes = Fakes(tmp_path / "fake-control.json", tmp_path / "fake-record.jsonl")
    fakes.control()
    monkeypatch.setenv("FAKE_CIEL_CONTROL", str(fakes.control_file))
    monkeypatch.setenv("FAKE_CIEL_RECORD", str(fakes.record_file))
    return fakes


@pytest.fixture
def abbs(tmp_path: Path) -> Abbs:
    remote = tmp_path / "aosc-os-abbs.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch", "stable",
                    str(remote)], check=True, env={**os.environ, **GIT_ENV})
    work = tmp_path / "abbs-work"
    subprocess.run(["git", "clone", "--quiet", str(remote), str(work)], check=True,
                   capture_output=True, env={**os.environ, **GIT_ENV})
    repo = Abbs(remote, work)
    repo.commit({
        "app-shells/bash/spec": spec("5.2.15"),
        "core-libs/zlib/spec": spec("1.3", "1"),
        "core-libs/readline/spec": spec("8.2.13"),
    }, message="initial tree")
    return repo


@pytest.fixture
def workspace(tmp_path: Path, abbs: Abbs) -> Path:
    ws = tmp_path / "ciel"
    (ws / ".ciel").mkdir(parents=True)
    subprocess.run(["git", "clone", "--quiet", str(abbs.remote), str(ws / "TREE")],
                   check=True, capture_output=True, env={**os.environ, **GIT_ENV})
    return ws


@pytest.fixture
def worker_config(workspace: Path, abbs: Abbs) -> WorkerConfig:
    return WorkerConfig(
        server="http://fake.test",
        worker_secret=SECRET,
        arch="amd64",
        ciel_path=workspace,
        ssh_key="/nonexistent/ssh-key",
        hostname="test-worker",
        heartbeat_interval=0.05,
        log_max_bytes=4 * 1024 * 1024,
        shutdown_grace=30.0,
        poll_wait=5.0,
        git_remote=str(abbs.remote),
        connectivity_check="",
        retry_initial_delay=0.01,
        retry_max_delay=0.05,
        kill_grace=2.0,
        log_flush_interval=0.01,
        log_flush_limit=10.0,
        idle_poll_delay=0.05,
        hand_back_limit=5.0,
    )
