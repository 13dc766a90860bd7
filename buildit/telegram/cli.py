"""``buildit telegram set-webhook [--url URL]``: tell Telegram where to send updates."""

from __future__ import annotations

import argparse
import sys

import trio

from buildit.config import SERVER_SETTINGS, load_server_config, settings_help
from buildit.errors import ConfigError
from buildit.telegram.api import TelegramApi, TelegramError
from buildit.telegram.config import telegram_config

ALLOWED_UPDATES = ["message", "callback_query"]


async def set_webhook(api: TelegramApi, url: str, secret: str) -> str:
    """Register ``url`` with its secret; returns what the Bot API said."""
    async with api.open():
        result = await api.call("setWebhook", {
            "url": url,
            "secret_token": secret,
            "allowed_updates": ALLOWED_UPDATES,
        })
    return "webhook set" if result is True else str(result)


def cmd_set_webhook(args: argparse.Namespace) -> int:
    server_config = load_server_config(config_file=args.config, create_secrets=False)
    config = telegram_config(server_config, link_secret="")
    if config is None:
        raise ConfigError("BUILDIT_TELEGRAM_TOKEN is not set")
    url = args.url or config.webhook_url
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"the webhook URL must be an http(s) URL, got {url!r}")
    if not url.startswith("https://"):
        print(f"warning: Telegram delivers webhooks to https URLs only: {url}",
              file=sys.stderr)
    api = TelegramApi(config.api_url, config.token)
    try:
        answer = trio.run(set_webhook, api, url, config.webhook_secret)
    except TelegramError as exc:
        print(f"buildit: Telegram refused the webhook: {exc}", file=sys.stderr)
        return 1
    print(f"{answer}: {url}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``buildit telegram set-webhook`` to the ``buildit`` command line."""
    telegram = subparsers.add_parser("telegram", help="the Telegram bot").add_subparsers(
        dest="telegram_cmd", required=True)
    p = telegram.add_parser(
        "set-webhook",
        help="register this server's webhook (and its secret) with the Bot API",
        description="Calls setWebhook with <BUILDIT_PUBLIC_URL>/api/telegram/webhook (or "
                    "--url) and BUILDIT_TELEGRAM_WEBHOOK_SECRET as secret_token.",
        epilog=settings_help(SERVER_SETTINGS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", help="the full webhook URL to register (default: "
                                 "<BUILDIT_PUBLIC_URL>/api/telegram/webhook)")
    p.add_argument("--config", help="TOML configuration file (same as BUILDIT_CONFIG)")
    p.set_defaults(func=cmd_set_webhook)
