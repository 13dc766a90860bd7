"""The supervisor alone, on trio's virtual clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from buildit.actors.supervisor import ChildSpec, Supervisor
from buildit.errors import SupervisorGaveUp


class Crasher:
    """An actor that crashes ``crashes`` times, each ``after`` seconds after starting."""

    def __init__(self, crashes: int, after: float) -> None:
        self.crashes = crashes
        self.after = after
        self.starts: list[float] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.starts.append(trio.current_time())
        task_status.started()
        await trio.sleep(self.after)
        if len(self.starts) <= self.crashes:
            raise RuntimeError(f"crash number {len(self.starts)}")
        await trio.sleep_forever()


class Steady:
    def __init__(self) -> None:
        self.starts = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.starts += 1
        task_status.started()
        await trio.sleep_forever()


async def test_crashing_actor_is_restarted_alone(autojump_clock: trio.abc.Clock) -> None:
    crasher, steady = Crasher(crashes=3, after=10), Steady()
    sup = Supervisor(
        [ChildSpec("crasher", crasher.run), ChildSpec("steady", steady.run)],
        max_restarts=5, period=60, restart_delay=1,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(100)
        assert len(crasher.starts) == 4  # three crashes, three restarts
        assert crasher.starts == [0, 11, 22, 33]  # 10 s to crash + 1 s restart delay
        assert steady.starts == 1  # one_for_one: the sibling was not touched
        assert sup.statistics().restarts == {"crasher": 3, "steady": 0}
        await sup.shutdown(grace=5)
    assert trio.current_time() == 100  # nothing to finish: cancelled at once


async def test_supervisor_gives_up_past_its_intensity(autojump_clock: trio.abc.Clock) -> None:
    crasher, steady = Crasher(crashes=100, after=1), Steady()
    sup = Supervisor(
        [ChildSpec("crasher", crasher.run), ChildSpec("steady", steady.run)],
        max_restarts=3, period=60, restart_delay=0,
    )
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
    assert info.group_contains(SupervisorGaveUp)
    # crashes at t=1,2,3 restart; the fourth crash (t=4) exceeds 3 restarts in 60 s
    assert len(crasher.starts) == 4
    assert trio.current_time() == 4


async def test_restarts_spread_over_time_do_not_exhaust_intensity(
    autojump_clock: trio.abc.Clock,
) -> None:
    crasher = Crasher(crashes=10, after=30)
    sup = Supervisor([ChildSpec("crasher", crasher.run)], max_restarts=2, period=60,
                     restart_delay=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(400)
        assert len(crasher.starts) == 11  # one crash every 30 s never makes 3 in 60 s
        nursery.cancel_scope.cancel()


async def test_transient_and_temporary_children(autojump_clock: trio.abc.Clock) -> None:
    runs = {"transient": 0, "temporary": 0}

    def make(name: str, fail: bool):  # type: ignore[no-untyped-def]
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            runs[name] += 1
            task_status.started()
            await trio.sleep(1)
            if fail and runs[name] < 3:
                raise RuntimeError("boom")

        return run

    sup = Supervisor(
        [ChildSpec("transient", make("transient", True), restart="transient"),
         ChildSpec("temporary", make("temporary", True), restart="temporary")],
        restart_delay=0,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(50)
        nursery.cancel_scope.cancel()
    assert runs == {"transient": 3, "temporary": 1}


async def test_shutdown_waits_for_children_that_stop_themselves(
    autojump_clock: trio.abc.Clock,
) -> None:
    finished: list[float] = []
    sup: Supervisor

    async def graceful(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await sup.stopping.wait()
        await trio.sleep(3)  # hand back work
        finished.append(trio.current_time())

    async def stubborn(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await sup.stopping.wait()
        await trio.sleep(1000)
        finished.append(-1)

    sup = Supervisor([ChildSpec("graceful", graceful, stops_itself=True),
                      ChildSpec("stubborn", stubborn, stops_itself=True)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(10)
        await sup.shutdown(grace=5)
    assert finished == [13]  # graceful finished; stubborn was cancelled after the grace
    assert trio.current_time() == 15


async def test_child_failing_to_start_fails_the_supervisor_start() -> None:
    async def broken(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise ValueError("cannot start")

    sup = Supervisor([ChildSpec("broken", broken)])
    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
    assert info.group_contains(ValueError)
