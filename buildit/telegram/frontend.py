"""Assembling the Telegram front end for the server (``server.py`` plugs it in)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from quart import Blueprint

from buildit.actors.notifier import Deliverer
from buildit.actors.supervisor import ChildSpec
from buildit.services import Services
from buildit.telegram.api import TelegramApi, make_deliverer
from buildit.telegram.bot import TelegramBot
from buildit.telegram.config import TelegramConfig, telegram_config
from buildit.telegram.pr import find_pr_reader
from buildit.telegram.webhook import make_blueprint


@dataclass(frozen=True)
class TelegramFrontEnd:
    config: TelegramConfig
    bot: TelegramBot
    deliverer: Deliverer
    blueprint: Blueprint
    child: ChildSpec


def telegram_front_end(
    services: Services, *, transport: httpx.AsyncBaseTransport | None = None
) -> TelegramFrontEnd | None:
    """The bot, its deliverer, webhook and actor; None when Telegram is not configured."""
    config = telegram_config(services.config)
    if config is None:
        return None
    api = TelegramApi(config.api_url, config.token, transport=transport)
    bot = TelegramBot(services, config, api, pr_reader=find_pr_reader(services))
    return TelegramFrontEnd(
        config=config,
        bot=bot,
        deliverer=make_deliverer(api, config.public_url),
        blueprint=make_blueprint(bot),
        child=ChildSpec("telegram", bot.run),
    )
