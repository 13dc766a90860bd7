"""Running build steps: output into the log, exit statuses, process groups stopped."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import pytest
import trio

from buildit.worker import steps
from buildit.worker.errors import StepStartError
from buildit.worker.log import JobLog
from buildit.worker.steps import run_step

from .helpers import process_gone, wait_for


async def test_output_lines_and_timing_go_to_the_log(tmp_path: Path) -> None:
    log = JobLog(max_bytes=1024 * 1024)
    seen: list[tuple[str, bytes]] = []
    script = (
        "import sys\n"
        "print('first line')\n"
        "sys.stderr.write('an error line\\n'); sys.stderr.flush()\n"
        "sys.stdout.write('progress 10%\\rprogress 100%\\r\\nno newline at the end')\n"
    )
    with trio.fail_after(30):
        result = await run_step(
            [sys.executable, "-c", script], cwd=tmp_path, log=log,
            on_line=lambda stream, line: seen.append((stream, line)),
        )
    assert result.ok and result.returncode == 0
    text = log.getvalue().decode()
    assert f"running `{sys.executable} -c" in text and f"in {tmp_path}" in text
    assert "first line\n" in text and "an error line\n" in text
    assert "progress 10%\nprogress 100%\n" in text
    assert "\nno newline at the end\n" in text
    assert "finished with exit status 0 after" in text
    assert ("stdout", b"first line") in seen
    assert ("stderr", b"an error line") in seen
    assert ("stdout", b"no newline at the end") in seen


async def test_a_failing_program_is_a_result_not_an_error(tmp_path: Path) -> None:
    log = JobLog(max_bytes=1024 * 1024)
    with trio.fail_after(30):
        result = await run_step(["sh", "-c", "echo oops; exit 3"], cwd=tmp_path, log=log)
    assert not result.ok and result.returncode == 3
    assert "finished with exit status 3" in log.getvalue().decode()


async def test_a_missing_program_cannot_be_started(tmp_path: Path) -> None:
    log = JobLog(max_bytes=1024 * 1024)
    with pytest.raises(StepStartError, match="could not start `no-such-ciel`"):
        await run_step(["no-such-ciel", "build"], cwd=tmp_path, log=log)
    assert "cannot run `no-such-ciel build`" in log.getvalue().decode()


async def test_a_missing_directory_cannot_be_started_in(tmp_path: Path) -> None:
    log = JobLog(max_bytes=1024 * 1024)
    with pytest.raises(StepStartError, match="does not exist"):
        await run_step(["true"], cwd=tmp_path / "nope", log=log)


async def _start_family(tmp_path: Path, script: str, *, kill_grace: float) -> tuple[
    list[int], JobLog
]:
    """Run ``script`` (prints its pid, its child's pid, then "ready"); cancel it once ready."""
    log = JobLog(max_bytes=1024 * 1024)
    pids: list[int] = []
    ready = trio.Event()

    def on_line(stream: str, line: bytes) -> None:
        if line == b"ready":
            ready.set()
        elif line.isdigit():
            pids.append(int(line))

    async with trio.open_nursery() as nursery:
        async def step() -> None:
            await run_step(["sh", "-c", script], cwd=tmp_path, log=log, on_line=on_line,
                           kill_grace=kill_grace)
        nursery.start_soon(step)
        await ready.wait()
        nursery.cancel_scope.cancel()
    return pids, log


async def test_cancelling_a_step_kills_its_whole_process_group(tmp_path: Path) -> None:
    with trio.fail_after(30):
        pids, log = await _start_family(
            tmp_path, "sleep 1000 & echo $$; echo $!; echo ready; wait", kill_grace=5
        )
        assert len(pids) == 2
        for pid in pids:
            await wait_for(partial(process_gone, pid))
    assert "SIGTERM" in log.getvalue().decode()


async def test_a_step_ignoring_sigterm_gets_sigkill(tmp_path: Path) -> None:
    script = "trap '' TERM; sleep 1000 & echo $$; echo $!; echo ready; while :; do wait; done"
    with trio.fail_after(30):
        start = trio.current_time()
        pids, log = await _start_family(tmp_path, script, kill_grace=0.3)
        assert trio.current_time() - start >= 0.3
        for pid in pids:
            await wait_for(partial(process_gone, pid))
    assert "SIGKILL" in log.getvalue().decode()


async def test_leftovers_holding_the_output_are_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "_DRAIN_GRACE", 0.2)
    log = JobLog(max_bytes=1024 * 1024)
    pids: list[int] = []

    def on_line(stream: str, line: bytes) -> None:
        if line.isdigit():
            pids.append(int(line))

    with trio.fail_after(30):
        result = await run_step(["sh", "-c", "sleep 1000 & echo $!; exit 0"], cwd=tmp_path,
                                log=log, on_line=on_line)
        assert result.ok
        await wait_for(lambda: process_gone(pids[0]))
    assert "still hold its output" in log.getvalue().decode()


async def test_a_step_cancelled_before_it_starts_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    log = JobLog(max_bytes=1 << 20)
    with trio.fail_after(5):
        with trio.CancelScope() as scope:
            scope.cancel()
            await run_step(["touch", str(marker)], cwd=tmp_path, log=log)
    assert scope.cancelled_caught
    assert not marker.exists()
