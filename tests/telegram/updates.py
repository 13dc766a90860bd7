"""Telegram ``Update`` objects in the exact shapes of ../shared/fixtures/telegram."""

from __future__ import annotations

import itertools
from typing import Any

MAINTAINER = 58220193  # the Telegram user id (= private chat id) of the fixtures
GUEST = 77001122
GROUP = -1001234567890
BOT_NAME = "aosc_buildit_bot"

_update_ids = itertools.count(900_000_001)
_message_ids = itertools.count(4412)


def next_update_id() -> int:
    return next(_update_ids)


def _entities(text: str) -> list[dict[str, Any]]:
    if not text.startswith("/"):
        return []
    return [{"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}]


def _message(chat: dict[str, Any], user_id: int, text: str, *, username: str | None,
             first_name: str, update_id: int | None) -> dict[str, Any]:
    sender: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
    if username:
        sender["username"] = username
    message: dict[str, Any] = {
        "message_id": next(_message_ids),
        "from": sender,
        "chat": chat,
        "date": 1764412800,
        "text": text,
    }
    entities = _entities(text)
    if entities:
        message["entities"] = entities
    return {"update_id": update_id if update_id is not None else next_update_id(),
            "message": message}


def private(text: str, user_id: int = MAINTAINER, *, username: str | None = "maintainer_dev",
            first_name: str = "Maintainer", update_id: int | None = None) -> dict[str, Any]:
    chat: dict[str, Any] = {"id": user_id, "first_name": first_name, "type": "private"}
    if username:
        chat["username"] = username
    return _message(chat, user_id, text, username=username, first_name=first_name,
                    update_id=update_id)


def group(text: str, user_id: int = MAINTAINER, *, chat_id: int = GROUP,
          username: str | None = "maintainer_dev", update_id: int | None = None
          ) -> dict[str, Any]:
    chat = {"id": chat_id, "title": "AOSC Maintainers", "type": "supergroup"}
    return _message(chat, user_id, text, username=username, first_name="Maintainer",
                    update_id=update_id)


def callback(data: str, user_id: int = MAINTAINER, *, chat_id: int = MAINTAINER,
             message_id: int = 4420, update_id: int | None = None) -> dict[str, Any]:
    chat: dict[str, Any] = ({"id": chat_id, "first_name": "Maintainer", "type": "private"}
                            if chat_id > 0 else
                            {"id": chat_id, "title": "AOSC Maintainers", "type": "supergroup"})
    return {
        "update_id": update_id if update_id is not None else next_update_id(),
        "callback_query": {
            "id": f"4382bfdwdsb{next(_message_ids)}",
            "from": {"id": user_id, "is_bot": False, "first_name": "Maintainer",
                     "username": "maintainer_dev"},
            "message": {
                "message_id": message_id,
                "from": {"id": 6123456789, "is_bot": True, "first_name": "BuildIt!",
                         "username": BOT_NAME},
                "chat": chat,
                "date": 1764413100,
                "text": "Job failed",
            },
            "chat_instance": "-6623745211029384756",
            "data": data,
        },
    }
