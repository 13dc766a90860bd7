"""A one_for_one supervisor in the manner of Erlang/OTP.

Each child is a ``ChildSpec`` whose ``start`` is an async callable taking
``task_status`` (so it can be started with ``nursery.start``). When a child fails, it
alone is restarted, according to its restart type:

- ``permanent``: always restarted (also when it returns);
- ``transient``: restarted only when it fails with an exception;
- ``temporary``: never restarted.

More than ``max_restarts`` restarts within ``period`` seconds (measured with
``trio.current_time()``) make the supervisor give up: it cancels its children and
raises ``SupervisorGaveUp`` to its owner.

Shutdown has two phases: ``shutdown(grace)`` sets the ``stopping`` event children
watch (to finish or hand back work), waits up to ``grace`` seconds for them to
return, then cancels the rest.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from buildit.errors import SupervisorGaveUp

log = logging.getLogger(__name__)
Restart = Literal["permanent", "transient", "temporary"]


@dataclass(frozen=True)
class ChildSpec:
    name: str
    start: Callable[..., Awaitable[Any]]  # async def start(*, task_status) -> None
    restart: Restart = "permanent"
    # True: the child watches ``Supervisor.stopping`` and returns by itself (to finish
    # or hand back work). False: it has nothing to finish and is cancelled at once.
    stops_itself: bool = False


@dataclass(frozen=True)
class SupervisorStatistics:
    restarts: dict[str, int]
    running: frozenset[str]


@dataclass
class _ChildState:
    spec: ChildSpec
    restarts: int = 0
    running: bool = False
    done: trio.Event = field(default_factory=trio.Event)


class Supervisor:
    def __init__(
        self,
        children: list[ChildSpec],
        *,
        max_restarts: int = 5,
        period: float = 60.0,
        restart_delay: float = 0.1,
    ) -> None:
        names = [c.name for c in children]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self._children = [_ChildState(c) for c in children]
        self.max_restarts = max_restarts
        self.period = period
        self.restart_delay = restart_delay
        self.stopping = trio.Event()
        self._restart_times: deque[float] = deque()
        self._cancel_scope: trio.CancelScope | None = None
        self._exited = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Start every child in order, then supervise them until shutdown."""
        try:
            with trio.CancelScope() as scope:
                self._cancel_scope = scope
                async with trio.open_nursery() as nursery:
                    for child in self._children:
                        await nursery.start(self._supervise, child)
                    task_status.started(self)
        finally:
            self._exited.set()

    async def _supervise(self, child: _ChildState, *, task_status: trio.TaskStatus[None]) -> None:
        first = True
        spec = child.spec
        while True:
            failed: Exception | None = None
            try:
                async with trio.open_nursery() as nursery:
                    if not spec.stops_itself:
                        nursery.start_soon(self._cancel_when_stopping, nursery.cancel_scope)
                    await nursery.start(spec.start)
                    child.running = True
                    if first:
                        task_status.started()
                        first = False
            except Exception as exc:
                if first:
                    # A child that cannot even start fails the supervisor's start.
                    raise
                failed = exc
            finally:
                child.running = False
            if self.stopping.is_set():
                return
            if failed is None:
                if spec.restart != "permanent":
                    log.info("actor %s finished", spec.name)
                    return
                log.warning("actor %s returned; restarting it", spec.name)
            else:
                log.error("actor %s crashed: %r", spec.name, failed, exc_info=failed)
                if spec.restart == "temporary":
                    return
            self._count_restart(spec.name, failed)
            child.restarts += 1
            await trio.sleep(self.restart_delay)

    async def _cancel_when_stopping(self, scope: trio.CancelScope) -> None:
        await self.stopping.wait()
        scope.cancel()

    def _count_restart(self, name: str, cause: Exception | None) -> None:
        now = trio.current_time()
        self._restart_times.append(now)
        while self._restart_times and self._restart_times[0] <= now - self.period:
            self._restart_times.popleft()
        if len(self._restart_times) > self.max_restarts:
            raise SupervisorGaveUp(
                f"actor {name} made the supervisor exceed {self.max_restarts} restarts "
                f"in {self.period:g} s; giving up"
            ) from cause

    async def shutdown(self, grace: float) -> None:
        """Phase one: tell children to stop; phase two: cancel what is left after ``grace``."""
        self.stopping.set()
        with trio.move_on_after(grace):
            await self._exited.wait()
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()
        await self._exited.wait()

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            restarts={c.spec.name: c.restarts for c in self._children},
            running=frozenset(c.spec.name for c in self._children if c.running),
        )
