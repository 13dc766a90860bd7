"""Settings of the Telegram front end, read from ``ServerConfig.extra``.

``BUILDIT_TELEGRAM_TOKEN`` turns the front end on; without it the server has no
webhook route and delivers no Telegram notifications.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from buildit.config import ServerConfig
from buildit.errors import ConfigError

DEFAULT_API_URL = "https://api.telegram.org"
WEBHOOK_PATH = "/api/telegram/webhook"

# What the Bot API accepts: a bot token is "<bot id>:<secret>"; a webhook secret_token
# is 1-256 characters of A-Z, a-z, 0-9, _ and -.
_TOKEN_RE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{10,200}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_BOT_NAME_RE = re.compile(r"^[A-Za-z0-9_]{3,64}$")


@dataclass(frozen=True)
class TelegramConfig:
    token: str
    webhook_secret: str
    public_url: str
    link_secret: str  # the web UI's session secret: signs the /login link tokens
    api_url: str = DEFAULT_API_URL
    bot_name: str | None = None  # without the "@"

    @property
    def webhook_url(self) -> str:
        return f"{self.public_url}{WEBHOOK_PATH}"

    @property
    def bot_link(self) -> str | None:
        return f"https://t.me/{self.bot_name}" if self.bot_name else None

    def __repr__(self) -> str:  # never print the token or the secrets
        return (f"TelegramConfig(api_url={self.api_url!r}, bot_name={self.bot_name!r}, "
                f"public_url={self.public_url!r})")


def telegram_config(config: ServerConfig, *, link_secret: str | None = None
                    ) -> TelegramConfig | None:
    """The Telegram settings, or None when ``BUILDIT_TELEGRAM_TOKEN`` is not set.

    ``link_secret`` defaults to the web UI's session secret (generated once into the
    data directory unless ``BUILDIT_SESSION_SECRET`` is set).
    """
    extra = config.extra

    def get(name: str) -> str:
        return (extra.get(name) or "").strip()

    token = get("BUILDIT_TELEGRAM_TOKEN")
    if not token:
        return None
    if not _TOKEN_RE.match(token):
        raise ConfigError("BUILDIT_TELEGRAM_TOKEN does not look like a bot token "
                          "(<bot id>:<secret>, as @BotFather gives it)")
    secret = get("BUILDIT_TELEGRAM_WEBHOOK_SECRET")
    if not secret:
        raise ConfigError("BUILDIT_TELEGRAM_WEBHOOK_SECRET is required with "
                          "BUILDIT_TELEGRAM_TOKEN: the webhook refuses updates without it")
    if not _SECRET_RE.match(secret):
        raise ConfigError("BUILDIT_TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of "
                          "A-Z, a-z, 0-9, _ and -")
    api_url = (get("BUILDIT_TELEGRAM_API_URL") or DEFAULT_API_URL).rstrip("/")
    if not api_url.startswith(("https://", "http://")):
        raise ConfigError("BUILDIT_TELEGRAM_API_URL must be an http(s) URL")
    bot_name = get("BUILDIT_TELEGRAM_BOT_NAME").lstrip("@") or None
    if bot_name is not None and not _BOT_NAME_RE.match(bot_name):
        raise ConfigError(f"BUILDIT_TELEGRAM_BOT_NAME {bot_name!r} is not a bot username")
    if link_secret is None:
        from buildit.web.config import session_secret

        link_secret = session_secret(config)
    return TelegramConfig(
        token=token,
        webhook_secret=secret,
        public_url=config.public_url.rstrip("/"),
        link_secret=link_secret,
        api_url=api_url,
        bot_name=bot_name,
    )
