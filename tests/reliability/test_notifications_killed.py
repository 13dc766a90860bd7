"""Scenario 1, notifications: pipelines created from Telegram chats, the server killed
with SIGKILL several times while the jobs run; in the end the (fake) Bot API received a
result message for every finished job, and one "created" reply per pipeline.

Delivery is at least once (the outbox), by choice not exactly once: the Bot API has no
idempotency key, so a kill while a message is in flight (the Bot API took it, the outbox
row is not marked delivered yet) sends it again after the restart rather than never.
The first test bounds that (never lost; twice at most, and only as often as kills could
cause); the second kills the server exactly in that window. With 40 jobs and 3 kills the
first run saw 2 results sent twice.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from quart import Response

from buildit.db import queries, web_queries
from tests.abbs_tree import init_tree, package
from tests.reliability.harness import Ledger, ServerProcess, simulated_worker
from tests.telegram.fakes import FakeTelegram, serving
from tests.telegram.updates import next_update_id, private

TOKEN = "6123456789:AAHkilledTESTtoken-0123456789abcdefg"
SECRET = "killed-hook-secret_0123456789"
RESULT_RE = re.compile(r"Job #(\d+)</a> (succeeded|failed)")
CREATED_RE = re.compile(r"Pipeline #(\d+)</a> created")


class SlowTelegram(FakeTelegram):
    """The fake Bot API; ``hold`` set: a sendMessage is recorded, then its answer waits
    until ``release`` is set (the moment to kill the server)."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.hold: trio.Event | None = None
        self.holding = trio.Event()
        self.release = trio.Event()

    async def _method(self, token: str, method: str) -> Response:
        response = await super()._method(token, method)
        if method == "sendMessage" and self.hold is not None and not self.hold.is_set():
            self.hold.set()
            self.holding.set()
            await self.release.wait()
        return response


def _env(telegram_url: str, tree: Path) -> dict[str, str]:
    return {
        "BUILDIT_TELEGRAM_TOKEN": TOKEN,
        "BUILDIT_TELEGRAM_WEBHOOK_SECRET": SECRET,
        "BUILDIT_TELEGRAM_API_URL": telegram_url,
        "BUILDIT_TELEGRAM_BOT_NAME": "aosc_buildit_bot",
        "BUILDIT_SESSION_SECRET": "killed-session-secret-0123456789",
        "BUILDIT_ABBS_PATH": str(tree),
        "BUILDIT_HEARTBEAT_TIMEOUT": "60",
        "BUILDIT_NOTIFY_BASE_DELAY": "0.05",
        "BUILDIT_NOTIFY_POLL_INTERVAL": "0.05",
        "BUILDIT_NOTIFY_LEASE": "3",
    }


async def _link(db: Any, chats: list[int]) -> None:
    for i, chat in enumerate(chats):
        user = await db.run(queries.upsert_user, f"dev{i}", "developer")
        await db.run(web_queries.link_telegram, user.id, chat)


async def _deliver(proc: ServerProcess, update: dict[str, Any]) -> None:
    """As Telegram does: the same update again until the webhook answers 200."""
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            try:
                r = await client.post(f"{proc.url}/api/telegram/webhook", json=update,
                                      headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
                if r.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await trio.sleep(0.05)


async def _settled(db: Any) -> bool:
    backlog: int = await db.read(queries.outbox_backlog)
    return backlog == 0


async def _telegram_jobs(conn: Any) -> list[Any]:
    return list(await conn.fetch(
        """SELECT j.id, j.status, p.id AS pipeline_id, p.telegram_chat_id
           FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id ORDER BY j.id"""))


def _messages(fake: FakeTelegram, pattern: re.Pattern[str]) -> Counter[tuple[int, int]]:
    """(chat, id) of each matching message, counted."""
    found: Counter[tuple[int, int]] = Counter()
    for params in fake.sent():
        for match in pattern.finditer(params.get("text", "")):
            found[(params["chat_id"], int(match.group(1)))] += 1
    return found


@pytest.mark.slow
@pytest.mark.timeout(1200)
async def test_kill_9_loses_no_notification_and_repeats_only_those_in_flight(
    db: Any, database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    long = request.config.getoption("--long")
    n_pipelines, n_workers, kills = (200, 20, 5) if long else (40, 8, 3)
    chats = [58220193 + i for i in range(5)]
    await _link(db, chats)
    tree = tmp_path / "abbs"
    init_tree(tree, package("core", "bash"))
    fake = FakeTelegram(TOKEN)
    ledger = Ledger()
    done = trio.Event()
    async with serving(fake.app) as telegram_url:
        fake.url = telegram_url
        proc = ServerProcess(database_url, tmp_path / "server", **_env(telegram_url, tree))
        await proc.start()
        try:
            with trio.fail_after(900 if long else 300):
                # pipelines from the chats, each answered "created"
                for i in range(n_pipelines):
                    arch = "amd64" if i % 2 else "arm64"
                    await _deliver(proc, private(f"/build stable bash {arch}",
                                                 user_id=chats[i % len(chats)],
                                                 update_id=next_update_id()))
                async with trio.open_nursery() as nursery:
                    for w in range(n_workers):
                        nursery.start_soon(simulated_worker, [proc.url], f"w{w}",
                                           "amd64" if w % 2 else "arm64", ledger, done)
                    for k in range(kills):
                        while len(ledger.acked) < (k + 1) * n_pipelines // (kills + 1):
                            await trio.sleep(0.02)
                        await proc.kill()
                        await trio.sleep(0.2)  # results pile up at the workers meanwhile
                        await proc.start()
                    while len(set(ledger.reported)) < n_pipelines:
                        await trio.sleep(0.05)
                    done.set()
                while not await _settled(db):
                    await trio.sleep(0.05)
        finally:
            done.set()
            await proc.stop()

    jobs = await db.read(_telegram_jobs)
    assert len(jobs) == n_pipelines and {j["status"] for j in jobs} == {"success"}
    results = _messages(fake, RESULT_RE)
    created = _messages(fake, CREATED_RE)
    expected_results = {(j["telegram_chat_id"], j["id"]) for j in jobs}
    expected_created = {(j["telegram_chat_id"], j["pipeline_id"]) for j in jobs}
    missing = expected_results - set(results)
    twice = {key: n for key, n in results.items() if n > 1}
    assert not missing, f"result messages never sent: {sorted(missing)}"
    assert set(results) == expected_results
    # the "created" replies all went out before the first kill: exactly once each
    assert set(created) == expected_created, "a 'created' reply was lost"
    assert max(created.values()) == 1, f"'created' replies sent twice: {created}"
    assert proc.starts == kills + 1
    # Exactly once would be: assert not twice. It is at least once: a kill can catch a
    # message Telegram took but the outbox had not marked delivered (one per chat at a
    # time, ordering key chat:<id>), and it is sent again after the restart, as the test
    # below shows deterministically. Here: no more than that.
    if twice:
        print(f"results sent twice after {kills} kills: {twice}")
    assert all(n == 2 for n in twice.values()), twice
    assert len(twice) <= kills * len(chats), twice


@pytest.mark.slow
async def test_kill_9_while_a_message_is_in_flight_sends_it_again_rather_than_never(
    db: Any, database_url: str, tmp_path: Path
) -> None:
    """Telegram messages are delivered at least once, by choice.

    The Bot API's sendMessage has no idempotency key, so when the server dies after
    Telegram took a message and before the outbox row is marked delivered, nothing can
    tell whether it arrived. The notifier sends it again: the chat may see a result
    twice, but never misses one. (At most once would be the other choice: a crash in
    the same window would then lose the message.) This kills the server exactly there.
    """
    chat = 58220193
    await _link(db, [chat])
    tree = tmp_path / "abbs"
    init_tree(tree, package("core", "bash"))
    fake = SlowTelegram(TOKEN)
    ledger = Ledger()
    done = trio.Event()
    async with serving(fake.app) as telegram_url:
        fake.url = telegram_url
        proc = ServerProcess(database_url, tmp_path / "server", **_env(telegram_url, tree))
        await proc.start()
        try:
            with trio.fail_after(120):
                await _deliver(proc, private("/build stable bash amd64", user_id=chat,
                                             update_id=next_update_id()))
                await fake.wait_for(1, chat_id=chat)  # "created"
                fake.hold = trio.Event()  # the next message: taken, not answered yet
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(simulated_worker, [proc.url], "w1", "amd64", ledger,
                                       done)
                    await fake.holding.wait()
                    await proc.kill()  # Telegram has the result; the outbox does not know
                    fake.release.set()
                    await proc.start()
                    while not await _settled(db):
                        await trio.sleep(0.05)
                    done.set()
        finally:
            done.set()
            await proc.stop()
    results = _messages(fake, RESULT_RE)
    assert len(results) == 1, results
    assert list(results.values()) == [2], f"the result was sent {results} times"
