"""The web UI: server-rendered pages (Jinja2), GitHub login, roles, live updates.

``server.py`` adds ``blueprint`` to the app and calls ``init_app(app, stop=...)``,
which sets the session secret and cookie flags, installs quart-auth and keeps the
web UI's settings (``WebConfig``) and the stop event on the app.

Modules: ``pages`` (read-only pages), ``actions`` (forms: new pipeline, restart,
cancel, API token, Telegram link), ``login`` (GitHub OAuth), ``live`` (event stream
and fragments), ``auth`` (sessions, roles, CSRF), ``github`` (OAuth and API calls),
``pending`` / ``charts`` / ``ansi`` / ``formatting`` (pure functions).
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import trio
from itsdangerous import URLSafeTimedSerializer
from quart import Quart
from quart.sessions import SecureCookieSession, SecureCookieSessionInterface
from quart.wrappers import BaseRequestWebsocket
from quart_auth import QuartAuth

from buildit.services import Services
from buildit.web import actions, live, login, pages  # noqa: F401  (register the routes)
from buildit.web.auth import SESSION_DAYS
from buildit.web.blueprint import bp as blueprint
from buildit.web.config import WebConfig
from buildit.web.state import WebState

__all__ = ["WebConfig", "blueprint", "init_app"]


class _SessionInterface(SecureCookieSessionInterface):
    """Quart's signed-cookie sessions, with the signer built once (not per request) and
    nothing built at all for a request without a session cookie (API calls, workers)."""

    def __init__(self) -> None:
        self._signer: tuple[object, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Quart) -> URLSafeTimedSerializer | None:
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if self._signer is None or self._signer[0] != key:
            self._signer = (key, super().get_signing_serializer(app))
        return self._signer[1]

    async def open_session(self, app: Quart, request: BaseRequestWebsocket
                           ) -> SecureCookieSession | None:
        if app.secret_key and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return await super().open_session(app, request)


def init_app(app: Quart, *, stop: trio.Event,
             github_transport: httpx.AsyncBaseTransport | None = None) -> None:
    """Set up what the pages need on ``app`` (after ``create_app`` registered ``blueprint``)."""
    services: Services = app.config["BUILDIT_SERVICES"]
    config = WebConfig.from_server_config(services.config)
    app.secret_key = config.session_secret
    app.session_interface = _SessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="buildit_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(days=SESSION_DAYS),
    )
    QuartAuth(
        app,
        cookie_name="buildit_auth",
        cookie_samesite="Lax",
        cookie_secure=config.secure_cookies,
        cookie_http_only=True,
        duration=SESSION_DAYS * 24 * 3600,
        salt="buildit-web-auth",
    )
    app.config["BUILDIT_WEB"] = WebState(config=config, stop=stop,
                                         github_transport=github_transport)
