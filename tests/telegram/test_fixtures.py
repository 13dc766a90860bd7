"""The real samples in ../shared/fixtures/telegram, where that folder exists (a fresh
clone has none: these tests are skipped there, saying so)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from buildit.actors.notifier import Retry
from buildit.telegram.api import api_error, outcome_for_error
from buildit.telegram.commands import (
    Callback,
    Message,
    parse_callback_data,
    parse_command,
    parse_update,
)
from tests.telegram.conftest import Bot
from tests.telegram.updates import BOT_NAME, GROUP, MAINTAINER

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "telegram"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(),
                                reason=f"no shared Telegram fixtures at {FIXTURES}")


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_sample_updates_parse() -> None:
    build = parse_update(_load("message.build.private.json"))
    assert isinstance(build, Message) and build.private and build.chat_id == MAINTAINER
    command = parse_command(build.text, BOT_NAME)
    assert command is not None and command.name == "build"
    assert command.args == ("stable", "bash,zlib", "amd64,arm64")
    pr = parse_update(_load("message.pr.group.json"))
    assert isinstance(pr, Message) and not pr.private and pr.chat_id == GROUP
    command = parse_command(pr.text, BOT_NAME)
    assert command is not None and command.addressed
    assert (command.name, command.args) == ("pr", ("12345", "mainline"))
    start = parse_update(_load("message.start.json"))
    assert isinstance(start, Message)
    command = parse_command(start.text, BOT_NAME)
    assert command is not None and command.args == ("Zx81kQp0aBcDeFgHiJkL",)
    plain = parse_update(_load("message.plain-text.json"))
    assert isinstance(plain, Message) and parse_command(plain.text, BOT_NAME) is None
    press = parse_update(_load("callback_query.restart.json"))
    assert isinstance(press, Callback)
    assert parse_callback_data(press.data) == ("restart", 812)


def test_sample_responses() -> None:
    error = api_error(429, json.dumps(_load("error.response.json")).encode())
    assert error is not None
    assert outcome_for_error(error) == Retry("Too Many Requests: retry after 7", after=7.0)
    assert api_error(200, json.dumps(_load("sendMessage.response.json")).encode()) is None


async def test_sample_updates_end_to_end(bot: Bot) -> None:
    with trio.fail_after(30):
        await bot.link("maintainer", MAINTAINER)
        for name in ("message.build.private.json", "message.pr.group.json",
                     "message.plain-text.json", "message.start.json"):
            await bot.send(_load(name))
        replies = await bot.fake.wait_for(2, chat_id=MAINTAINER)
        assert "Pipeline #" in replies[0]["text"]
        assert "linked to the GitHub account <b>maintainer</b>" in replies[1]["text"]
        [group_reply] = await bot.fake.wait_for(1, chat_id=GROUP)
        assert "/pr needs the GitHub integration" in group_reply["text"]
        assert group_reply["reply_parameters"]["message_id"] == 9930
        [guest] = await bot.fake.wait_for(1, chat_id=77001122)
        assert "I only understand commands" in guest["text"]
        # the same deliveries again change nothing
        before = await bot.server.counts()
        r = await bot.send(_load("message.build.private.json"))
        assert r.json()["duplicate"] is True
        assert await bot.server.counts() == before
        # the restart button of a job that does not exist
        await bot.send(_load("callback_query.restart.json"))
        [answer] = await bot.fake.wait_for(1, "answerCallbackQuery")
        assert answer["callback_query_id"] == "4382bfdwdsb323b2d9"
        assert answer["show_alert"] is True and "job 812 does not exist" in answer["text"]


