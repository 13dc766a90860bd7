"""What the web UI keeps on the app: its settings, the stop event, small caches."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import trio
from cryptography.fernet import Fernet, InvalidToken
from quart import current_app

from buildit.services import Services
from buildit.web.config import WebConfig


@dataclass
class WebState:
    config: WebConfig
    # set when the server stops: live event streams end
    stop: trio.Event
    # GitHub clients take this transport (tests may pass httpx.MockTransport)
    github_transport: httpx.AsyncBaseTransport | None = None
    # user id -> trio time of the last failed role check (GitHub unreachable)
    role_check_failed: dict[int, float] = field(default_factory=dict)
    # dashboard charts: (trio time computed, value); recomputed after a minute
    chart_cache: dict[str, tuple[float, Any]] = field(default_factory=dict)
    # event streams open now (each holds an aggregator subscription)
    open_streams: int = 0

    def __post_init__(self) -> None:
        key = hashlib.sha256(b"buildit-web-github-token\0" + self.config.session_secret.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key.digest()))

    def seal(self, token: str) -> str:
        """Encrypt a GitHub token for the session cookie (signed is not secret enough)."""
        return self._fernet.encrypt(token.encode()).decode()

    def unseal(self, sealed: str | None) -> str | None:
        if not sealed:
            return None
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except (InvalidToken, ValueError):
            return None


def web_state() -> WebState:
    return cast(WebState, current_app.config["BUILDIT_WEB"])


def services() -> Services:
    return cast(Services, current_app.config["BUILDIT_SERVICES"])
