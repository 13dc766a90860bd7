"""Running one external program of a build (git, ciel, pushpkg) into the job's log.

Each step starts in a session (and process group) of its own, so stopping it stops
everything it started: on cancellation (the job was cancelled, lost, or the worker is
shutting down) the group gets SIGTERM, then SIGKILL after ``kill_grace`` seconds.
Output lines of stdout and stderr go to the log as they come (a carriage return
counts as a line end, as progress bars use it); ``on_line`` sees them too.

When the worker itself dies (SIGKILL, a crash), nobody is left to stop the step, so on
Linux the program is started with ``PR_SET_PDEATHSIG`` = SIGKILL: the kernel kills it
when its parent goes. The kernel's "parent" is the *thread* that forked it, so one
thread (``_Child.run``) both starts the program and waits for it to exit: it lives
exactly as long as the program, however long trio keeps its idle threads. Only the
program itself gets the signal; what it started and left running (ciel's container)
is not reached by it.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
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


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` (Linux): SIGKILL this child when its parent thread exits."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def preexec() -> None:
        # In the child, between fork and exec: only system calls here.
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the worker died before the line above
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class _Child:
    """A step's program: started and waited for by one thread of its own (see above)."""

    def __init__(self) -> None:
        self.pid = 0
        self.stdout: trio.lowlevel.FdStream | None = None
        self.stderr: trio.lowlevel.FdStream | None = None
        self.start_error: OSError | subprocess.SubprocessError | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._started = trio.Event()
        self._exited = trio.Event()

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: killed by that signal) once it has exited."""
        if self._popen is None or not self._exited.is_set():
            return None
        return self._popen.returncode

    async def wait_started(self) -> None:
        """Until the program runs, or ``start_error`` says why it could not."""
        await self._started.wait()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._popen is not None and self._popen.returncode is not None
        return self._popen.returncode

    def close_pipes(self) -> None:
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()

    def _report(self, popen: subprocess.Popen[bytes] | None,
                error: OSError | subprocess.SubprocessError | None) -> None:
        self._popen, self.start_error = popen, error
        if popen is not None:
            self.pid = popen.pid
        self._started.set()

    async def run(self, argv: list[str], *, cwd: Path, env: dict[str, str] | None) -> None:
        """Start ``argv`` and wait for it to exit, in one thread. Not cancellable: the
        caller stops the program (``_stop_group``) to end it."""
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        self.stdout = trio.lowlevel.FdStream(out_read)
        self.stderr = trio.lowlevel.FdStream(err_read)

        def start_and_wait() -> None:
            try:
                try:
                    popen = subprocess.Popen(
                        argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
                        stdout=out_write, stderr=err_write, start_new_session=True,
                        preexec_fn=_die_with_parent(),
                    )
                finally:
                    os.close(out_write)
                    os.close(err_write)
            except (OSError, subprocess.SubprocessError) as exc:
                trio.from_thread.run_sync(self._report, None, exc)
                return
            try:
                trio.from_thread.run_sync(self._report, popen, None)
            except BaseException:
                _killpg(popen.pid, signal.SIGKILL)  # nobody would stop it
                raise
            finally:
                popen.wait()

        try:
            # A limiter of its own: a build may hold this thread for hours.
            await trio.to_thread.run_sync(start_and_wait, limiter=trio.CapacityLimiter(1))
        finally:
            if not self._started.is_set():  # cancelled before the thread began
                self.start_error = OSError("the step was stopped before it started")
                self._started.set()
            if self.start_error is not None:
                self.close_pipes()
            self._exited.set()


def _killpg(pgid: int, sig: signal.Signals) -> bool:
    """Signal a process group; False when it no longer exists."""
    if pgid <= 0:  # never our own group (0) or every process (-1)
        return False
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    if pgid <= 0:
        return False
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

    async def run(self, proc: _Child) -> None:
        try:
            async with trio.open_nursery() as nursery:
                if proc.stdout is not None:
                    nursery.start_soon(self._pump, proc.stdout, "stdout")
                if proc.stderr is not None:
                    nursery.start_soon(self._pump, proc.stderr, "stderr")
        finally:
            self.finished.set()


async def _stop_group(proc: _Child, log: JobLog, name: str, *, kill_grace: float) -> None:
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


async def _follow(proc: _Child, argv: Sequence[str], log: JobLog,
                  on_line: LineSink | None) -> None:
    """Pump the program's output into the log until it has exited and its output ended."""
    pump = _OutputPump(log, on_line)
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
    proc = _Child()
    completed = False
    async with trio.open_nursery() as holder:
        holder.start_soon(partial(proc.run, list(argv), cwd=cwd,
                                  env=None if env is None else dict(env)))
        try:
            await proc.wait_started()
            if proc.start_error is None:
                await _follow(proc, argv, log, on_line)
            completed = True
        finally:
            if not completed:
                with trio.CancelScope(shield=True):
                    await proc.wait_started()  # a moment: the thread is starting it
                    if proc.start_error is None:
                        await _stop_group(proc, log, argv[0], kill_grace=kill_grace)
            elif proc.start_error is None and _group_alive(proc.pid):
                # Leftovers that closed their output: a build step leaves nothing behind.
                log.note(f"killing what `{argv[0]}` left running in its process group")
                _killpg(proc.pid, signal.SIGKILL)
            proc.close_pipes()
    if proc.start_error is not None:
        exc = proc.start_error
        reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
        log.note(f"cannot run `{command}`: {reason}")
        raise StepStartError(argv[0], reason) from exc
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
