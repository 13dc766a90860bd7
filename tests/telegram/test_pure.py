"""Decisions without I/O: reading updates and commands, escaping, cutting, rendering,
and what a Bot API error means for delivery. No event loop involved."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from buildit.actors.notifier import GiveUp, Retry
from buildit.config import ServerConfig
from buildit.db.queries import OutboxItem
from buildit.errors import ConfigError
from buildit.telegram import render
from buildit.telegram.api import (
    TelegramUnavailable,
    api_error,
    delivery_for,
    outcome_for_error,
    redact,
)
from buildit.telegram.commands import (
    Callback,
    Command,
    Message,
    UsageError,
    parse_build,
    parse_callback_data,
    parse_command,
    parse_pr,
    parse_restart,
    parse_token,
    parse_update,
)
from buildit.telegram.config import TelegramConfig, telegram_config
from tests.telegram.updates import GROUP, MAINTAINER, callback, group, private

BOT = "aosc_buildit_bot"

# ---------------------------------------------------------------- commands


def test_commands_with_and_without_the_bot_name() -> None:
    assert parse_command("/build stable bash amd64", BOT) == Command(
        "build", ("stable", "bash", "amd64"), addressed=False)
    assert parse_command(f"/PR@{BOT.upper()} 12345 mainline", BOT) == Command(
        "pr", ("12345", "mainline"), addressed=True)
    assert parse_command("/pr@other_bot 12345", BOT) is None  # another bot's
    assert parse_command("/pr@other_bot 12345", None) == Command("pr", ("12345",), True)
    assert parse_command("/help\n", BOT) == Command("help", (), False)
    assert parse_command("/status@aosc_buildit_bot", BOT) == Command("status", (), True)
    assert parse_command("/build\nstable\n bash  amd64", BOT) == Command(
        "build", ("stable", "bash", "amd64"), False)
    for text in ("hello /build", "build stable", "/", "/build-it", "//build", ""):
        assert parse_command(text, BOT) is None, text


def test_command_arguments() -> None:
    args = parse_build(("stable", "bash,zlib", "amd64,arm64"))
    assert (args.branch, args.packages, args.archs) == ("stable", "bash,zlib", "amd64,arm64")
    assert parse_build(("stable", "bash")).archs is None
    pr = parse_pr(("12345,#12346,12345", "mainline"))
    assert pr.numbers == (12345, 12346) and pr.archs == "mainline"
    assert parse_pr(("7",)).archs is None
    assert parse_restart(("#812",)) == 812
    assert parse_token(()) is False and parse_token(("RESET",)) is True
    bad: list[tuple[str, tuple[str, ...], str]] = [
        ("build", ("stable",), "name a branch and the packages"),
        ("build", ("a", "b", "c", "d"), "too many arguments"),
        ("pr", (), "at least one pull request"),
        ("pr", (",",), "at least one pull request"),
        ("pr", ("12a",), "'12a' is not a pull request number"),
        ("pr", ("0",), "'0' is not a pull request number"),
        ("pr", (",".join(str(n) for n in range(1, 12)),), "at most 10"),
        ("restart", (), "name one job"),
        ("restart", ("1", "2"), "name one job"),
        ("restart", ("-3",), "not a job id"),
        ("token", ("now",), "the only option is 'reset'"),
    ]
    parsers = {"build": parse_build, "pr": parse_pr, "restart": parse_restart,
               "token": parse_token}
    for name, given, problem in bad:
        with pytest.raises(UsageError) as info:
            parsers[name](given)
        assert problem in info.value.problem, (name, given)
        assert info.value.usage.startswith(f"/{name}")


def test_updates_in_the_shapes_telegram_sends() -> None:
    msg = parse_update(private("/build stable bash amd64", update_id=5))
    assert isinstance(msg, Message)
    assert (msg.update_id, msg.chat_id, msg.user_id, msg.private) == (5, MAINTAINER,
                                                                     MAINTAINER, True)
    msg = parse_update(group("/pr@aosc_buildit_bot 1"))
    assert isinstance(msg, Message) and msg.chat_id == GROUP and not msg.private
    assert msg.user_id == MAINTAINER
    cb = parse_update(callback("restart:9", message_id=77))
    assert isinstance(cb, Callback)
    assert (cb.data, cb.user_id, cb.chat_id, cb.message_id) == ("restart:9", MAINTAINER,
                                                                MAINTAINER, 77)
    # what the bot does not act on
    photo = private("x")
    del photo["message"]["text"]
    from_bot = private("/help")
    from_bot["message"]["from"]["is_bot"] = True
    update: Any
    for update in ({"update_id": 1, "edited_message": private("/help")["message"]},
                   photo, from_bot, {"update_id": "1", "message": {}}, [], "x",
                   {"update_id": True, "message": private("/help")["message"]},
                   {"update_id": 3, "message": {"chat": "x", "text": "/help"}}):
        assert parse_update(update) is None


def test_callback_data() -> None:
    assert parse_callback_data("restart:812") == ("restart", 812)
    assert parse_callback_data("restart_812") == ("restart", 812)  # the older form
    for data in ("restart:", "restart:0", "restart:x", "cancel:1", "restart:1:2", ""):
        assert parse_callback_data(data) is None


# ---------------------------------------------------------------- escaping and cutting


class _Checker(HTMLParser):
    """Fails on what Telegram's HTML parser would refuse: unbalanced tags, bare < or &."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        assert "<" not in data and ">" not in data, data
        self.text.append(data)


def _well_formed(text: str) -> None:
    assert not re.search(r"&(?!(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);)", text), text
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.stack == [], checker.stack


def test_escape() -> None:
    assert render.escape("a<b>&c \"q\"") == "a&lt;b&gt;&amp;c \"q\""
    assert render.attr('x"y<') == "x&quot;y&lt;"
    assert render.link("https://x.test/?a=1&b=2", "<me>") == \
        '<a href="https://x.test/?a=1&amp;b=2">&lt;me&gt;</a>'


def test_truncate_keeps_tags_and_entities_whole() -> None:
    short = "<b>hi</b> &amp; bye"
    assert render.truncate_html(short) is short
    text = "<b>bold " + "x&amp;y " * 2000 + "</b><pre>" + "z" * 100 + "</pre>"
    cut = render.truncate_html(text)
    assert render.utf16_len(cut) <= 4096
    assert cut.endswith("…</b>")
    _well_formed(cut)
    for limit in range(1, 120):
        cut = render.truncate_html('<a href="u">ab&lt;cd</a><code>' + "é" * 50 + "</code>",
                                   limit=limit)
        assert render.utf16_len(cut) <= max(limit, len("…")), (limit, cut)
        _well_formed(cut)
    # astral characters count twice (UTF-16), and are never split
    emoji = "🚀" * 3000
    cut = render.truncate_html(emoji)
    assert render.utf16_len(cut) <= 4096 and set(cut[:-1]) == {"🚀"}
    # stray < and & in input are escaped, not passed through broken
    _well_formed(render.truncate_html("a < b & c" * 1000, limit=50))


# ---------------------------------------------------------------- messages


def _result(**changes: Any) -> render.JobResult:
    base = render.JobResult(
        chat_id=1, job_id=812, pipeline_id=77, arch="amd64", status="failed", attempt=1,
        git_branch="fix-<bash>", git_sha="0123456789abcdef0123456789abcdef01234567",
        packages="bash,zlib", worker="buildbot-amd64-1", elapsed_secs=3725,
        build_success=False, pushpkg_success=False, successful_packages=("bash",),
        failed_package="zlib", skipped_packages=(), error_message=None,
        log_url="https://buildit.test/api/job/log?job_id=812&x=<1>")
    return dataclasses.replace(base, **changes)


def test_job_result_message() -> None:
    text, keyboard = render.job_result_message(_result(), "https://buildit.test")
    _well_formed(text)
    assert text.startswith('❌ <b><a href="https://buildit.test/jobs/812">Job #812</a> '
                           "failed</b> on buildbot-amd64-1 (amd64)")
    assert "Pipeline #77: bash,zlib @ fix-&lt;bash&gt; (<code>01234567</code>)" in text
    assert "Elapsed: 1 h 2 min" in text
    assert "Built (1): <code>bash</code>" in text and "Failed: <code>zlib</code>" in text
    assert 'href="https://buildit.test/api/job/log?job_id=812&amp;x=&lt;1&gt;"' in text
    assert keyboard == {"inline_keyboard": [[{"text": "🔁 Restart",
                                              "callback_data": "restart:812"}]]}

    text, keyboard = render.job_result_message(
        _result(status="success", failed_package=None, build_success=True,
                pushpkg_success=True, successful_packages=tuple(f"p{i}" for i in range(5000)),
                skipped_packages=("a" * 5000,), elapsed_secs=59, github_pr=4),
        "https://buildit.test")
    _well_formed(text)
    assert keyboard is None
    assert render.utf16_len(text) <= 4096
    assert "✅" in text and "Elapsed: 59 s" in text and ", PR #4" in text
    assert "Built (5000): " in text and "… and 4980 more" in text
    assert "Skipped (1):  … and 1 more" in text  # one name too long to list

    text, keyboard = render.job_result_message(
        _result(status="failed", build_success=True, pushpkg_success=False, failed_package=None,
                worker=None, elapsed_secs=None, error_message="x" * 10_000),
        "https://buildit.test")
    _well_formed(text)
    assert "uploading the packages failed" in text and keyboard is not None
    assert " on " not in text.split("\n")[0] and "Elapsed" not in text
    assert render.utf16_len(text) <= 4096


def test_status_message_escapes_and_shortens() -> None:
    now = datetime(2025, 11, 29, 12, 0, tzinfo=UTC)
    workers = [render.WorkerRow(f"host-<{i}>", "amd64", now - timedelta(seconds=i), i or None)
               for i in range(60)]
    text = render.status_message([render.QueueRow("amd64", 3, 1, 60),
                                  render.QueueRow("loongarch64_nosimd", 0, 0, 0)],
                                 workers, now, "https://b.test")
    _well_formed(text)
    assert "loongarch64_nosimd        0        0        0" in text
    assert "• host-&lt;0&gt; (amd64): idle, last heartbeat 0 s ago" in text
    assert ('host-&lt;5&gt; (amd64): building <a href="https://b.test/jobs/5">#5</a>, '
            "last heartbeat 5 s ago") in text
    listed = text.count("• host-")
    assert 20 <= listed <= 40 and f"… and {60 - listed} more" in text
    assert render.utf16_len(text) <= 4096 and text.endswith("all workers</a>)")
    assert "none" in render.status_message([], [], now, "https://b.test")


def test_replies_are_escaped() -> None:
    evil = "<script>&"
    for text in (
        render.not_developer_message(evil),
        render.linked_message(evil, "guest"),
        render.error_message(evil),
        render.usage_message(evil, "/build <branch>"),
        render.pipeline_created_message(1, evil, evil, "a" * 40, {evil: 3}, "https://b.test",
                                        [evil]),
        render.token_message("bit_abc", evil, 2),
        render.help_message(BOT),
        render.login_message("https://b.test/link/telegram?token=a.b&c", 15),
    ):
        _well_formed(text)
        assert "<script>" not in text
    assert render.link_url("https://b.test", "a.b/c+d") == \
        "https://b.test/link/telegram?token=a.b%2Fc%2Bd"


def test_send_message_params() -> None:
    params = render.send_message_params(5, "x" * 5000, reply_to=9,
                                        keyboard=render.restart_keyboard(3))
    assert params["parse_mode"] == "HTML" and len(params["text"]) == 4096
    assert params["reply_parameters"] == {"message_id": 9, "allow_sending_without_reply": True}
    assert params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "restart:3"
    assert params["link_preview_options"] == {"is_disabled": True}


# ---------------------------------------------------------------- delivery decisions


def test_bot_api_errors_become_outcomes() -> None:
    too_many = api_error(429, b'{"ok": false, "error_code": 429, "description": '
                              b'"Too Many Requests: retry after 7", '
                              b'"parameters": {"retry_after": 7}}')
    assert too_many is not None
    assert outcome_for_error(too_many) == Retry("Too Many Requests: retry after 7", after=7.0)
    blocked = api_error(403, b'{"ok": false, "error_code": 403, '
                             b'"description": "Forbidden: bot was blocked by the user"}')
    assert blocked is not None
    assert outcome_for_error(blocked) == GiveUp("Forbidden: bot was blocked by the user")
    bad = api_error(400, b'{"ok": false, "error_code": 400, '
                         b'"description": "Bad Request: can\'t parse entities"}')
    assert bad is not None and isinstance(outcome_for_error(bad), GiveUp)
    gateway = api_error(502, b"<html>Bad Gateway</html>")
    assert gateway is not None and outcome_for_error(gateway) == Retry(
        "Telegram 502: HTTP 502 without a Bot API answer")
    server = api_error(500, b'{"ok": false, "error_code": 500, "description": "Internal"}')
    assert server is not None and isinstance(outcome_for_error(server), Retry)
    assert api_error(200, b'{"ok": true, "result": true}') is None
    assert isinstance(outcome_for_error(TelegramUnavailable("timeout")), Retry)


def test_the_bot_token_never_shows() -> None:
    line = 'HTTP Request: POST https://api.telegram.org/bot123:AAH-x_y/sendMessage "200"'
    assert redact(line) == ('HTTP Request: POST https://api.telegram.org/bot<redacted>'
                            '/sendMessage "200"')
    config = ServerConfig(database_url=None, data_dir=Path("/nonexistent"), extra={
        "BUILDIT_TELEGRAM_TOKEN": "123:AAHsecretsecret", "BUILDIT_TELEGRAM_WEBHOOK_SECRET": "s"})
    tconfig = telegram_config(config, link_secret="x")
    assert tconfig is not None and "AAHsecret" not in repr(tconfig)


def test_outbox_rows_become_bot_api_calls() -> None:
    def item(kind: str, payload: dict[str, object]) -> OutboxItem:
        return OutboxItem(1, "telegram", kind, payload, 1, None)

    message = delivery_for(item("message", {"chat_id": 5, "text": "hi", "reply_to": 3}),
                           "https://b.test")
    assert message is not None and message.method == "sendMessage"
    assert message.params["reply_parameters"]["message_id"] == 3
    answer = delivery_for(item("callback_answer", {"callback_query_id": "q", "text": "x" * 300,
                                                   "show_alert": True}), "https://b.test")
    assert answer is not None and answer.method == "answerCallbackQuery"
    assert answer.params == {"callback_query_id": "q", "text": "x" * 200, "show_alert": True}
    result = delivery_for(item("job_result", _result().as_payload()), "https://b.test")
    assert result is not None and result.params["chat_id"] == 1
    assert result.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == \
        "restart:812"
    assert delivery_for(item("other", {}), "https://b.test") is None


def test_configuration() -> None:
    def load(**extra: str) -> TelegramConfig | None:
        config = ServerConfig(database_url=None, data_dir=Path("/nonexistent"),
                              public_url="https://b.test/", extra=extra)
        return telegram_config(config, link_secret="x")

    assert load() is None
    good = {"BUILDIT_TELEGRAM_TOKEN": "123:AAHsecretsecret",
            "BUILDIT_TELEGRAM_WEBHOOK_SECRET": "s-1_2"}
    config = load(**good, BUILDIT_TELEGRAM_BOT_NAME="@aosc_buildit_bot",
                  BUILDIT_TELEGRAM_API_URL="http://127.0.0.1:9/")
    assert config is not None
    assert config.bot_name == "aosc_buildit_bot"
    assert config.api_url == "http://127.0.0.1:9"
    assert config.webhook_url == "https://b.test/api/telegram/webhook"
    for bad, message in (
        ({"BUILDIT_TELEGRAM_TOKEN": "nonsense"}, "does not look like a bot token"),
        ({"BUILDIT_TELEGRAM_WEBHOOK_SECRET": ""}, "WEBHOOK_SECRET is required"),
        ({"BUILDIT_TELEGRAM_WEBHOOK_SECRET": "has space"}, "1-256 characters"),
        ({"BUILDIT_TELEGRAM_BOT_NAME": "a b"}, "is not a bot username"),
        ({"BUILDIT_TELEGRAM_API_URL": "ftp://x"}, "http(s) URL"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load(**{**good, **bad})
