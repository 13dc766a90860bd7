"""Signed, expiring tokens that link a Telegram chat to a GitHub account.

The Telegram bot makes a token with ``make_link_token(secret, chat_id, now)`` (the
secret is the web UI's session secret, see ``buildit.web.config.session_secret``) and
sends the person to ``<public url>/link/telegram?token=...``; after a GitHub login the
web UI reads it back with ``read_link_token`` and stores the chat on the user.

Errors: ``LinkTokenError`` (a ``buildit.errors.BadRequest``, so HTTP front ends answer
400 with its message); ``expired`` tells an old token from a forged or damaged one.
"""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer

from buildit.errors import BadRequest

_SALT = "buildit-telegram-link"
# A token from the future is refused beyond this much clock skew (seconds).
_MAX_SKEW = 60.0


class LinkTokenError(BadRequest):
    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def _serializer(secret: str) -> URLSafeSerializer:
    if not secret:
        raise ValueError("the link secret must not be empty")
    return URLSafeSerializer(secret, salt=_SALT)


def make_link_token(secret: str, chat_id: int, now: float) -> str:
    """A URL-safe token naming ``chat_id``, valid from ``now`` (seconds since the epoch)."""
    return _serializer(secret).dumps({"chat": int(chat_id), "at": int(now)})


def read_link_token(secret: str, token: str, now: float, max_age: float = 900) -> int:
    """The chat id in ``token``; ``LinkTokenError`` when forged, damaged or expired."""
    if not token or len(token) > 500:
        raise LinkTokenError("the link is not valid: ask the bot for a new one")
    try:
        payload = _serializer(secret).loads(token)
    except BadSignature:
        raise LinkTokenError("the link is not valid: ask the bot for a new one") from None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("chat"), int)
        or not isinstance(payload.get("at"), int)
    ):
        raise LinkTokenError("the link is not valid: ask the bot for a new one")
    age = now - payload["at"]
    if age > max_age or age < -_MAX_SKEW:
        raise LinkTokenError("the link has expired: ask the bot for a new one", expired=True)
    chat_id: int = payload["chat"]
    return chat_id
