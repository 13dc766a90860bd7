"""Running one external program of a build (git, ciel, pushpkg) into the job's log.

Each step starts in a session (and process group) of its own, so stopping it stops
everything it started: on cancellation (the job was cancelled, lost, or the worker is
shutting down) the group gets SIGTERM, then SIGKILL after ``kill_grace`` seconds.
Output lines of stdout and stderr go to the log as they come (a carriage return
counts as a line end, as progress bars use it); ``on_line`` sees them too.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from buildit.worker.errors import StepStartError
from buildit.worker.log import JobLog

LineSink = Callable[[str, bytes], None]
"""Called with ("stdout" | "stderr", line without its line end)."""

_EOL = re.compile(rb"\r\n|\r|\n")
_MAX_LINE = 64 * 1024
_DRAIN_GRACE = 5.0
"""After the program exits, how long its output pipes may stay open (held by a
leftover child) before the rest of its process group is killed."""


@dataclass(frozen=True)
class StepResult:
    argv: tuple[str, ...]
    returncode: int
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return f"killed by {name}"
        return f"exit status {self.returncode}"


def _killpg(pgid: int, sig: signal.Signals) -> bool:
    """Signal a process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class _OutputPump:
    def __init__(self, log: JobLog, on_line: LineSink | None) -> None:
        self._log = log
        self._on_line = on_line
        self.finished = trio.Event()

    def _emit(self, name: str, line: bytes) -> None:
        self._log.write(line + b"\n")
        if self._on_line is not None:
            self._on_line(name, line)

    async def _pump(self, stream: trio.abc.ReceiveStream, name: str) -> None:
        pending = b""
        async with stream:
            async for chunk in stream:
                data = pending + chunk
                hold = b""
                if data.endswith(b"\r"):
                    # Maybe the first half of "\r\n": decide with the next chunk.
                    data, hold = data[:-1], b"\r"
                lines = _EOL.split(data)
                pending = lines.pop()
                for line in lines:
                    self._emit(name, line)
                while len(pending) > _MAX_LINE:
                    self._emit(name, pending[:_MAX_LINE])
                    pending = pending[_MAX_LINE:]
                pending += hold
        pending = pending.rstrip(b"\r")
        if pending:
            self._emit(name, pending)

    async def run(self, proc: trio.Process) -> None:
        try:
            async with trio.open_nursery() as nursery:
                if proc.stdout is not None:
                    nursery.start_soon(self._pump, proc.stdout, "stdout")
                if proc.stderr is not None:
                    nursery.start_soon(self._pump, proc.stderr, "stderr")
        finally:
            self.finished.set()


async def _stop_group(proc: trio.Process, log: JobLog, name: str, *, kill_grace: float) -> None:
    """SIGTERM to the step's process group, SIGKILL after ``kill_grace``. Shield me."""
    pgid = proc.pid
    if proc.returncode is None:
        log.note(f"stopping `{name}` (process group {pgid}): SIGTERM")
        _killpg(pgid, signal.SIGTERM)
        with trio.move_on_after(kill_grace):
            await proc.wait()
        if proc.returncode is None:
            log.note(f"`{name}` did not stop within {kill_grace:g}s: SIGKILL")
    # Also sweeps what the step started and what ignored SIGTERM.
    _killpg(pgid, signal.SIGKILL)
    await proc.wait()


async def run_step(
    argv: Sequence[str],
    *,
    cwd: Path,
    log: JobLog,
    on_line: LineSink | None = None,
    env: Mapping[str, str] | None = None,
    kill_grace: float = 10.0,
) -> StepResult:
    """Run ``argv`` in ``cwd``, its output into ``log``; return its exit status.

    Raises ``StepStartError`` when the program cannot be started at all. A non-zero
    exit is a result, not an error.
    """
    command = shlex.join(argv)
    log.note(f"running `{command}` in {cwd}")
    begin = trio.current_time()
    if not cwd.is_dir():
        log.note(f"cannot run `{command}`: directory {cwd} does not exist")
        raise StepStartError(argv[0], f"directory {cwd} does not exist")
    try:
        proc = await trio.lowlevel.open_process(
            list(argv),
            cwd=str(cwd),
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        log.note(f"cannot run `{command}`: {reason}")
        raise StepStartError(argv[0], reason) from exc
    pump = _OutputPump(log, on_line)
    completed = False
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump.run, proc)
            await proc.wait()
            with trio.move_on_after(_DRAIN_GRACE):
                await pump.finished.wait()
            if not pump.finished.is_set():
                log.note(
                    f"`{argv[0]}` exited but processes it started still hold its output; "
                    "killing its process group"
                )
                _killpg(proc.pid, signal.SIGKILL)
                with trio.move_on_after(_DRAIN_GRACE):
                    await pump.finished.wait()
                nursery.cancel_scope.cancel()
        completed = True
    finally:
        if not completed:
            with trio.CancelScope(shield=True):
                await _stop_group(proc, log, argv[0], kill_grace=kill_grace)
        elif _group_alive(proc.pid):
            # Leftovers that closed their output: a build step leaves nothing behind.
            log.note(f"killing what `{argv[0]}` left running in its process group")
            _killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode is not None
    result = StepResult(tuple(argv), proc.returncode, trio.current_time() - begin)
    log.note(f"`{command}` finished with {result.describe()} after {_seconds(result.elapsed)}")
    return result


def _seconds(value: float) -> str:
    if not math.isfinite(value):
        return "?"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"
