"""``POST /api/telegram/webhook``: where Telegram delivers updates.

1. The ``X-Telegram-Bot-Api-Secret-Token`` header must equal the configured secret
   (constant-time compare), else 401 and nothing is read or stored.
2. The update is recorded in ``webhook_deliveries`` (source ``telegram``, id the
   ``update_id``); one seen before is answered 200 and otherwise ignored.
3. It is handed to the Telegram actor and answered 200 at once. When the actor's
   inbox stays full, the record is undone and the answer is 503, so Telegram
   delivers the update again later.
"""

from __future__ import annotations

import logging

import orjson
from quart import Blueprint, Response, request

from buildit import clock
from buildit.db import telegram_queries
from buildit.http.common import error_response, json_response, services
from buildit.services import secret_matches
from buildit.telegram.bot import TelegramBot
from buildit.telegram.commands import parse_update, update_id
from buildit.telegram.config import WEBHOOK_PATH

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def make_blueprint(bot: TelegramBot) -> Blueprint:
    bp = Blueprint("telegram", __name__)

    @bp.post(WEBHOOK_PATH)
    async def webhook() -> Response:
        if not secret_matches(request.headers.get(SECRET_HEADER), bot.config.webhook_secret):
            return error_response(f"the {SECRET_HEADER} header is missing or wrong", 401)
        try:
            update = orjson.loads(await request.get_data())
        except orjson.JSONDecodeError:
            return error_response("the body is not a JSON Telegram update", 400)
        uid = update_id(update)
        if uid is None:
            return error_response("the body is not a Telegram update (no update_id)", 400)
        db = services().db
        if not await db.run(telegram_queries.record_update, uid, clock.now()):
            log.info("Telegram update %d delivered again; ignored", uid)
            return json_response({"ok": True, "duplicate": True})
        incoming = parse_update(update)
        if incoming is not None and not await bot.submit(incoming):
            await db.run(telegram_queries.forget_update, uid)
            log.warning("Telegram update %d refused: the bot is busy", uid)
            return error_response("busy; deliver the update again later", 503)
        return json_response({"ok": True})

    return bp
