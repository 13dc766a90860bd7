"""Following a pipeline live, by polling ``/api/pipeline/info`` at a short interval.

A pipeline has ended when none of its jobs is waiting or running (its status turns
``failed`` at the first failed job, while other archs may still build). Two displays:

- ``TableDisplay`` (a terminal): one table, redrawn in place at every poll;
- ``LineDisplay`` (a pipe, a CI log): one line per change of a job.

The server going away for a while (restart, 503) is waited out: the follower says so
once and keeps trying with backoff; any other API error ends it.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

import trio

from buildit.client import render
from buildit.client.api import ApiError, BuildItApi, ServerUnreachable

MAX_RETRY_DELAY = 30.0


def has_ended(info: Mapping[str, Any]) -> bool:
    """No job of the pipeline waits or runs any more."""
    jobs = info.get("jobs") or ()
    return bool(jobs) and all(j.get("status") in render.FINISHED for j in jobs)


class Display(Protocol):
    def update(self, info: Mapping[str, Any]) -> None: ...
    def trouble(self, message: str) -> None: ...
    def finish(self, info: Mapping[str, Any]) -> None: ...


class _RunningClock:
    """When this client first saw each job's current attempt running."""

    def __init__(self) -> None:
        self._since: dict[int, tuple[int, float]] = {}

    def running_for(self, info: Mapping[str, Any]) -> dict[int, float]:
        now = trio.current_time()
        out: dict[int, float] = {}
        for job in info.get("jobs") or ():
            if job.get("status") != "running":
                self._since.pop(job["job_id"], None)
                continue
            attempt = int(job.get("attempt") or 0)
            seen = self._since.get(job["job_id"])
            if seen is None or seen[0] != attempt:
                seen = (attempt, now)
                self._since[job["job_id"]] = seen
            out[job["job_id"]] = now - seen[1]
        return out


class LineDisplay:
    """One line per change: for logs and scripts."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._keys: dict[int, tuple[Any, ...]] = {}
        self._titled = False
        self._clock = _RunningClock()

    def _print(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def update(self, info: Mapping[str, Any]) -> None:
        if not self._titled:
            self._print(render.pipeline_title(info))
            self._titled = True
        self._clock.running_for(info)
        for job in render.changed_jobs(self._keys, info.get("jobs") or ()):
            self._keys[job["job_id"]] = render.job_key(job)
            self._print(render.job_line(job))

    def trouble(self, message: str) -> None:
        self._print(f"({message}; still trying)")

    def finish(self, info: Mapping[str, Any]) -> None:
        self._print(f"pipeline {info.get('pipeline_id')}: {render.outcome(info)}")


class TableDisplay:
    """A table redrawn in place (ANSI cursor movement): for terminals."""

    def __init__(self, out: TextIO, *, color: bool = True) -> None:
        self._out = out
        self._color = color
        self._drawn = 0
        self._tick = 0
        self._note = ""
        self._clock = _RunningClock()

    def _draw(self, lines: list[str]) -> None:
        text = ""
        if self._drawn:
            text += f"\x1b[{self._drawn}F\x1b[J"  # up to the first line, clear below
        text += "".join(line + "\n" for line in lines)
        self._out.write(text)
        self._out.flush()
        self._drawn = len(lines)

    def update(self, info: Mapping[str, Any]) -> None:
        self._tick += 1
        width = max(40, shutil.get_terminal_size((100, 24)).columns - 1)
        lines = render.table(info, running_for=self._clock.running_for(info),
                             color=self._color, tick=self._tick, width=width)
        if self._note:
            lines.append(self._note[:width])
        self._note = ""
        self._draw(lines)

    def trouble(self, message: str) -> None:
        self._note = f"({message}; still trying)"

    def finish(self, info: Mapping[str, Any]) -> None:
        for job in info.get("jobs") or ():
            if job.get("status") in ("failed", "error") and job.get("log_url"):
                print(f"{job['arch']} log: {job['log_url']}", file=self._out)
        self._out.flush()


async def follow_pipeline(
    api: BuildItApi,
    pipeline_id: int,
    *,
    display: Display,
    interval: float = 1.0,
    fail_fast: bool = False,
) -> dict[str, Any]:
    """Poll until the pipeline has ended (``fail_fast``: or failed); its last info."""
    delay = interval
    while True:
        try:
            info = await api.pipeline_info(pipeline_id)
        except (ServerUnreachable, ApiError) as exc:
            if isinstance(exc, ApiError) and not exc.retryable:
                raise
            display.trouble(str(exc))
            delay = min(MAX_RETRY_DELAY, max(delay * 2, interval))
            await trio.sleep(delay)
            continue
        delay = interval
        display.update(info)
        if has_ended(info) or (fail_fast and render.outcome(info) in ("failed", "error")):
            display.finish(info)
            return info
        await trio.sleep(interval)
