"""The notifier alone: durable outbox delivery with backoff, on trio's virtual clock."""

from __future__ import annotations

import itertools
from typing import Any

import trio
import trio.testing

from buildit import clock
from buildit.actors.notifier import Delivered, GiveUp, Notifier, Outcome, Retry
from buildit.db import queries
from tests.conftest import ticker


class FakeTarget:
    """Answers with the scripted outcomes in order, then Delivered."""

    def __init__(self, script: list[Outcome], only: str | None = None) -> None:
        self.script = list(script)
        self.only = only  # the scripted outcomes apply to this text only
        self.calls: list[tuple[float, str, int]] = []
        self.done = trio.Event()
        self.expected = 0

    async def deliver(self, item: queries.OutboxItem) -> Outcome:
        self.calls.append((trio.current_time(), item.payload["text"], item.attempts))
        scripted = self.script and self.only in (None, item.payload["text"])
        outcome = self.script.pop(0) if scripted else Delivered({"ok": item.payload["text"]})
        if isinstance(outcome, Delivered | GiveUp):
            self.expected -= 1
            if self.expected == 0:
                self.done.set()
        return outcome


async def _settled(db: Any) -> None:
    """Wait until no notification is pending any more."""
    while await db.read(queries.outbox_backlog):
        await trio.sleep(1)


async def _enqueue(db: Any, text: str, key: str | None = None) -> None:
    await db.run(queries.enqueue, channel="telegram", kind="message", payload={"text": text},
                 now=clock.now(), ordering_key=key, dedup_key=f"msg-{text}")


async def test_retries_honour_retry_after_then_backoff(
    db: Any, virtual_clock: trio.testing.MockClock
) -> None:
    target = FakeTarget([Retry("429", after=30), Retry("502"), Retry("502")])
    target.expected = 1
    notifier = Notifier(db, {"telegram": target.deliver}, base_delay=2, poll_interval=1)
    with trio.fail_after(10_000):
        start = trio.current_time()
        await _enqueue(db, "hello")
        await _enqueue(db, "hello")  # same dedup key: not queued twice
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await nursery.start(notifier.run)
            await target.done.wait()
            await _settled(db)
            nursery.cancel_scope.cancel()
    times = [t - start for t, _, _ in target.calls]
    assert [a for _, _, a in target.calls] == [1, 2, 3, 4]
    # 30 s from Retry-After, then backoff 2 * 2**(n-1): 4 s, 8 s (poll/ticker slack <= 2 s)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 30 <= gaps[0] <= 32 and 4 <= gaps[1] <= 6 and 8 <= gaps[2] <= 10, gaps
    rows = await db.read(queries.outbox_rows)
    assert len(rows) == 1 and rows[0]["delivered_at"] is not None
    assert rows[0]["result"] == {"ok": "hello"} and rows[0]["attempts"] == 4


async def test_gives_up_after_the_bound_and_records_why(
    db: Any, virtual_clock: trio.testing.MockClock
) -> None:
    target = FakeTarget([Retry("502 Bad Gateway")] * 100)
    notifier = Notifier(db, {"telegram": target.deliver}, base_delay=1, max_attempts=4,
                        poll_interval=1)
    with trio.fail_after(10_000):
        await _enqueue(db, "doomed")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await nursery.start(notifier.run)
            await _settled(db)
            await trio.sleep(100)
            nursery.cancel_scope.cancel()
    assert len(target.calls) == 4
    row = (await db.read(queries.outbox_rows))[0]
    assert row["failed_at"] is not None and row["delivered_at"] is None
    assert row["last_error"] == "gave up after 4 attempts: 502 Bad Gateway"


async def test_ordering_key_delivers_in_order_and_survives_a_restart(
    db: Any, virtual_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(10_000):
        for text in ("one", "two", "three"):
            await _enqueue(db, text, key="check-run-1")
        await _enqueue(db, "other", key="check-run-2")
        # The first notifier delivers "other", fails "one" twice, then dies.
        first = FakeTarget([Retry("503"), Retry("503")], only="one")
        notifier = Notifier(db, {"telegram": first.deliver}, base_delay=5, poll_interval=1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await nursery.start(notifier.run)
            while len(first.calls) < 3:
                await trio.sleep(1)
            nursery.cancel_scope.cancel()
        assert sorted(text for _, text, _ in first.calls) == ["one", "one", "other"]
        # A new process picks up what is left, in order.
        second = FakeTarget([])
        second.expected = 3
        notifier = Notifier(db, {"telegram": second.deliver}, base_delay=5, poll_interval=1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await nursery.start(notifier.run)
            await second.done.wait()
            await _settled(db)
            nursery.cancel_scope.cancel()
        assert [text for _, text, _ in second.calls] == ["one", "two", "three"]
        rows = await db.read(queries.outbox_rows)
        assert all(r["delivered_at"] is not None for r in rows)
