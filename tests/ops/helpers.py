"""Running ``buildit`` commands as child processes in tests, and reading what they print."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

BUILDIT = [sys.executable, "-m", "buildit"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without BUILDIT_* settings and with a private config dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDIT_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env.update(extra)
    return env


async def run_buildit(
    args: Sequence[str], env: Mapping[str, str]
) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process([*BUILDIT, *args], env=dict(env), capture_stdout=True,
                                  capture_stderr=True, check=False)


class Output:
    """A child's stdout, read line by line as it comes (``wait_for`` a line to appear)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.closed = trio.Event()

    async def read(self, stream: trio.abc.ReceiveStream) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in complete)
        if buffer:
            self.lines.append(buffer.decode(errors="replace"))
        self.closed.set()

    async def wait_for(self, text: str) -> str:
        """The first line containing ``text`` (callers bound this with ``fail_after``)."""
        while True:
            for line in self.lines:
                if text in line:
                    return line
            if self.closed.is_set():
                raise AssertionError(f"{text!r} never appeared in:\n" + "\n".join(self.lines))
            await trio.sleep(0.02)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


async def start_buildit(
    nursery: trio.Nursery, args: Sequence[str], env: Mapping[str, str], **kwargs: Any
) -> tuple[trio.Process, Output]:
    """Start ``buildit args`` with its stdout read into an ``Output``."""
    proc = await trio.lowlevel.open_process([*BUILDIT, *args], env=dict(env),
                                            stdout=subprocess.PIPE, **kwargs)
    output = Output()
    assert proc.stdout is not None
    nursery.start_soon(output.read, proc.stdout)
    return proc, output
