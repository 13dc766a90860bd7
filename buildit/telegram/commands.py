"""Reading Telegram updates and bot commands: pure functions, no I/O.

An ``Update`` (as the webhook receives it) becomes a ``Message`` or a ``Callback``
(``parse_update``); the text of a message becomes a ``Command`` (``parse_command``),
whose arguments each command reads with its own ``parse_*`` function. A malformed
command raises ``UsageError`` carrying the usage line to answer with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# /name or /name@botname at the start of the text (what Telegram marks as bot_command)
_COMMAND_RE = re.compile(r"^/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?=\s|$)")
_NUMBER_RE = re.compile(r"^#?([0-9]{1,12})$")
MAX_PRS = 10

USAGE: dict[str, str] = {
    "help": "/help",
    "start": "/start",
    "build": "/build <branch> <packages> [archs]  (lists comma-separated, e.g. "
             "/build stable bash,zlib amd64,arm64)",
    "pr": "/pr <numbers> [archs]  (e.g. /pr 1234,1235 amd64,arm64)",
    "status": "/status",
    "restart": "/restart <job id>  (e.g. /restart 812)",
    "login": "/login",
    "token": "/token  or  /token reset",
}


class UsageError(ValueError):
    """A malformed command; ``usage`` is the line to answer with."""

    def __init__(self, command: str, problem: str = "") -> None:
        self.command = command
        self.problem = problem
        self.usage = USAGE.get(command, "/help")
        super().__init__(f"{problem} usage: {self.usage}".strip())


@dataclass(frozen=True)
class Message:
    update_id: int
    message_id: int
    chat_id: int
    chat_type: str  # private | group | supergroup | channel (unknown: treated as a group)
    user_id: int | None  # from.id; None for anonymous group admins and channel posts
    username: str | None
    text: str

    @property
    def private(self) -> bool:
        return self.chat_type == "private"


@dataclass(frozen=True)
class Callback:
    update_id: int
    callback_id: str
    user_id: int
    chat_id: int | None  # the chat of the message carrying the button
    message_id: int | None
    data: str


Incoming = Message | Callback


@dataclass(frozen=True)
class Command:
    name: str  # lower case, without "/" and "@bot"
    args: tuple[str, ...]
    addressed: bool  # written as /name@ourbot


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def update_id(raw: Any) -> int | None:
    """The ``update_id`` of an update, None when it has none (not an update)."""
    value = _int(_dict(raw).get("update_id"))
    return value if value is not None and value >= 0 else None


def parse_update(raw: Any) -> Incoming | None:
    """The part of an update the bot acts on; None for every other kind of update."""
    uid = update_id(raw)
    if uid is None:
        return None
    update = _dict(raw)
    if "message" in update:
        msg = _dict(update["message"])
        chat = _dict(msg.get("chat"))
        sender = _dict(msg.get("from"))
        chat_id, message_id, text = _int(chat.get("id")), _int(msg.get("message_id")), \
            _str(msg.get("text"))
        if chat_id is None or message_id is None or text is None or sender.get("is_bot") is True:
            return None
        return Message(
            update_id=uid,
            message_id=message_id,
            chat_id=chat_id,
            chat_type=_str(chat.get("type")) or "unknown",
            user_id=_int(sender.get("id")),
            username=_str(sender.get("username")),
            text=text,
        )
    if "callback_query" in update:
        query = _dict(update["callback_query"])
        sender = _dict(query.get("from"))
        msg = _dict(query.get("message"))
        callback_id, user_id = _str(query.get("id")), _int(sender.get("id"))
        if callback_id is None or user_id is None:
            return None
        return Callback(
            update_id=uid,
            callback_id=callback_id,
            user_id=user_id,
            chat_id=_int(_dict(msg.get("chat")).get("id")),
            message_id=_int(msg.get("message_id")),
            data=_str(query.get("data")) or "",
        )
    return None


def parse_command(text: str, bot_name: str | None) -> Command | None:
    """``/name@bot args...``; None when the text is no command or one for another bot.

    Without a configured ``bot_name`` every ``@suffix`` is taken as ours.
    """
    match = _COMMAND_RE.match(text)
    if match is None:
        return None
    target = match.group(2)
    if target is not None and bot_name is not None and target.lower() != bot_name.lower():
        return None
    return Command(match.group(1).lower(), tuple(text[match.end():].split()),
                   addressed=target is not None)


@dataclass(frozen=True)
class BuildArgs:
    branch: str
    packages: str
    archs: str | None


def parse_build(args: tuple[str, ...]) -> BuildArgs:
    if len(args) < 2:
        raise UsageError("build", "name a branch and the packages.")
    if len(args) > 3:
        raise UsageError("build", "too many arguments (separate packages and archs with "
                                  "commas, not spaces).")
    return BuildArgs(args[0], args[1], args[2] if len(args) == 3 else None)


@dataclass(frozen=True)
class PrArgs:
    numbers: tuple[int, ...]
    archs: str | None


def _number(text: str) -> int | None:
    match = _NUMBER_RE.match(text)
    if match is None:
        return None
    value = int(match.group(1))
    return value if value > 0 else None


def parse_pr(args: tuple[str, ...]) -> PrArgs:
    if not args:
        raise UsageError("pr", "name at least one pull request.")
    if len(args) > 2:
        raise UsageError("pr", "too many arguments (separate numbers and archs with commas, "
                               "not spaces).")
    numbers: list[int] = []
    for part in args[0].split(","):
        if not part:
            continue
        number = _number(part)
        if number is None:
            raise UsageError("pr", f"{part!r} is not a pull request number.")
        if number not in numbers:
            numbers.append(number)
    if not numbers:
        raise UsageError("pr", "name at least one pull request.")
    if len(numbers) > MAX_PRS:
        raise UsageError("pr", f"at most {MAX_PRS} pull requests at once.")
    return PrArgs(tuple(numbers), args[1] if len(args) == 2 else None)


def parse_restart(args: tuple[str, ...]) -> int:
    if len(args) != 1:
        raise UsageError("restart", "name one job.")
    job_id = _number(args[0])
    if job_id is None:
        raise UsageError("restart", f"{args[0]!r} is not a job id.")
    return job_id


def parse_token(args: tuple[str, ...]) -> bool:
    """True for ``/token reset`` (revoke the old tokens first), False for ``/token``."""
    if not args:
        return False
    if len(args) == 1 and args[0].lower() == "reset":
        return True
    raise UsageError("token", "the only option is 'reset'.")


def parse_no_args(name: str, args: tuple[str, ...]) -> None:
    if args:
        raise UsageError(name, f"/{name} takes no arguments.")


def parse_callback_data(data: str) -> tuple[str, int] | None:
    """``restart:<job id>`` (also the older ``restart_<job id>``) -> ("restart", id)."""
    match = re.fullmatch(r"(restart)[:_]([0-9]{1,12})", data)
    if match is None or int(match.group(2)) <= 0:
        return None
    return match.group(1), int(match.group(2))


def restart_callback_data(job_id: int) -> str:
    return f"restart:{job_id}"
