"""Delivery through the outbox against the fake Bot API: 429 with retry_after is waited
out (on trio's virtual clock), and `buildit telegram set-webhook` registers the hook."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio.testing

from buildit import clock
from buildit.db import queries
from tests.conftest import ticker
from tests.telegram.conftest import BOT_TOKEN, WEBHOOK_SECRET, Bot
from tests.telegram.fakes import FakeTelegram
from tests.telegram.updates import MAINTAINER, private

MakeBot = Callable[..., Awaitable[Bot]]
POLL_INTERVAL = 1.0  # the notifier looks for due retries this often (besides wake-ups)
SLACK = 3.0  # virtual seconds the clock may jump past a deadline under load


async def test_429_retry_after_is_waited_out_and_delivered_once(
    make_bot: MakeBot, virtual_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        with trio.fail_after(300):
            bot = await make_bot(extra={"BUILDIT_NOTIFY_POLL_INTERVAL": str(POLL_INTERVAL)})
            bot.fake.refuse_sends = 2
            bot.fake.retry_after = 7
            await bot.send(private("/help"))
            # virtual time: poll in steps of one (virtual) second
            [sent] = await bot.fake.wait_for(1, chat_id=MAINTAINER, step=1)
            await bot.wait_outbox_settled(step=1)
            await trio.sleep(30)  # nothing more arrives
        nursery.cancel_scope.cancel()
    first, second = bot.fake.refused
    [delivered] = [c for c in bot.fake.calls if c.method == "sendMessage"]
    assert first.params == second.params == delivered.params == sent
    # never before retry_after; soon after it
    assert 7 <= second.at - first.at <= 7 + POLL_INTERVAL + SLACK
    assert 7 <= delivered.at - second.at <= 7 + POLL_INTERVAL + SLACK
    [row] = await bot.server.db.read(queries.outbox_rows)
    assert row["attempts"] == 3 and row["delivered_at"] is not None
    assert row["ordering_key"] == f"chat:{MAINTAINER}"
    assert row["result"] == {"message_id": 4421}


async def test_a_permanent_error_gives_up_with_the_description(bot: Bot) -> None:
    with trio.fail_after(30):
        await bot.link("alice", MAINTAINER)
        # A 4xx other than 429 cannot be fixed by retrying.
        await bot.server.db.run(
            queries.enqueue, channel="telegram", kind="message",
            payload={"chat_id": MAINTAINER, "text": ""}, now=clock.now(),
            ordering_key=f"chat:{MAINTAINER}")
        await bot.wait_outbox_settled()
        [row] = await bot.server.db.read(queries.outbox_rows)
        assert row["failed_at"] is not None and row["attempts"] == 1
        assert row["last_error"] == "Bad Request: message text is empty"


async def _buildit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "buildit", *args], env=env, check=False,
        capture_stdout=True, capture_stderr=True)


async def test_set_webhook_registers_url_and_secret(fake_telegram: FakeTelegram,
                                                    tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BUILDIT_DATA_DIR": str(tmp_path),
        "BUILDIT_PUBLIC_URL": "https://buildit.example.org/",
        "BUILDIT_TELEGRAM_TOKEN": BOT_TOKEN,
        "BUILDIT_TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "BUILDIT_TELEGRAM_API_URL": fake_telegram.url,
    }
    with trio.fail_after(60):
        done = await _buildit("telegram", "set-webhook", env=env)
        assert done.returncode == 0, done.stderr
        assert b"webhook set: https://buildit.example.org/api/telegram/webhook" in done.stdout
        done = await _buildit("telegram", "set-webhook", "--url", "https://other.test/hook",
                              env=env)
        assert done.returncode == 0, done.stderr
        calls = fake_telegram.sent("setWebhook")
        assert calls == [
            {"url": "https://buildit.example.org/api/telegram/webhook",
             "secret_token": WEBHOOK_SECRET,
             "allowed_updates": ["message", "callback_query"]},
            {"url": "https://other.test/hook", "secret_token": WEBHOOK_SECRET,
             "allowed_updates": ["message", "callback_query"]},
        ]
        # A wrong token: Telegram's 401 is reported, the token is not printed.
        wrong = "6123456789:AAHwrongTOKEN_________"
        done = await _buildit("telegram", "set-webhook", env={
            **env, "BUILDIT_TELEGRAM_TOKEN": wrong})
        assert done.returncode == 1
        assert b"Unauthorized" in done.stderr and wrong.encode() not in done.stderr
        # Not configured
        done = await _buildit("telegram", "set-webhook", env={
            **env, "BUILDIT_TELEGRAM_TOKEN": ""})
        assert done.returncode == 1 and b"BUILDIT_TELEGRAM_TOKEN is not set" in done.stderr
        assert len(fake_telegram.sent("setWebhook")) == 2
