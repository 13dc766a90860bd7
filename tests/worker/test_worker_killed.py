"""``buildit worker`` killed with SIGKILL mid-build: its build does not outlive it.

A real worker process against the real server, with the fake ciel on PATH building
forever. Nothing is left to stop the build once the worker is gone; the kernel kills
it (PR_SET_PDEATHSIG, Linux only).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import WORKER_SECRET

from .conftest import Abbs, Fakes, git
from .helpers import process_gone, wait_for
from .test_e2e import new_pipeline

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 60
DEATH_LIMIT = 10  # s the build may take to die once the worker is gone (wall clock)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="PR_SET_PDEATHSIG is Linux only")


def _worker_env(server_url: str, workspace: Path, abbs: Abbs) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    env.update(
        PYTHONPATH=str(ROOT),
        BUILDIT_SERVER=server_url,
        BUILDIT_WORKER_SECRET=WORKER_SECRET,
        BUILDIT_ARCH="amd64",
        BUILDIT_CIEL_PATH=str(workspace),
        BUILDIT_HOSTNAME="doomed",
        BUILDIT_GIT_REMOTE=str(abbs.remote),
        BUILDIT_CONNECTIVITY_CHECK="",
        BUILDIT_HEARTBEAT_INTERVAL="1",
        BUILDIT_POLL_WAIT="1",
    )
    return env


async def test_a_sigkilled_worker_takes_its_build_with_it(
    server: Any, workspace: Path, fakes: Fakes, abbs: Abbs, tmp_path: Path
) -> None:
    pid_file = tmp_path / "ciel.pids"
    fakes.control(build="hang", pid_file=str(pid_file))  # ciel and a child, forever
    token = await server.add_user("alice")
    ciel_pid = 0
    with trio.fail_after(LIMIT):
        worker = await trio.lowlevel.open_process(
            [sys.executable, "-m", "buildit", "worker"],
            env=_worker_env(server.url, workspace, abbs),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            await new_pipeline(server.client, token, git(abbs.work, "rev-parse", "HEAD"),
                               "bash")
            await wait_for(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"))
            ciel_pid = int(pid_file.read_text().split()[0])
            assert not process_gone(ciel_pid)
            worker.send_signal(signal.SIGKILL)
            assert await worker.wait() == -signal.SIGKILL
            # Waiting for another process to die: bounded, on the wall clock.
            with trio.fail_after(DEATH_LIMIT):
                await wait_for(partial(process_gone, ciel_pid))
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
            # What ciel started is not reached by its death signal: clean up after it.
            if ciel_pid:
                try:
                    os.killpg(ciel_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
