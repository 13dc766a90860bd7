"""The Telegram Bot API client and the outbox deliverer of the ``telegram`` channel.

``TelegramApi.call(method, params)`` posts JSON to ``<api url>/bot<token>/<method>``
and returns the ``result``, or raises ``TelegramApiError`` (what the Bot API said) /
``TelegramUnavailable`` (no answer). The client is built with ``make_client`` and is
open while ``TelegramApi.open()`` is entered (the Telegram actor holds it open).

``outcome_for_error`` decides what a failed delivery becomes, without I/O: a 429 is
retried after ``parameters.retry_after``; other 4xx give up with the description;
5xx and network trouble are retried with the notifier's backoff.

The bot token is part of every request URL, so it is kept out of the log lines httpx
writes (``RedactBotToken``) and out of every error message of ours.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from buildit.actors.notifier import Delivered, Deliverer, GiveUp, Outcome, Retry
from buildit.db import queries
from buildit.errors import BuildItError
from buildit.http_client import make_client
from buildit.telegram.render import JobResult, job_result_message, send_message_params

log = logging.getLogger(__name__)
_BOT_PATH_RE = re.compile(r"/bot[0-9]+:[A-Za-z0-9_-]+")


class TelegramError(BuildItError):
    """Talking to the Bot API failed."""


class TelegramUnavailable(TelegramError):
    """No usable answer: network trouble, a timeout, or the client is not open."""


class TelegramApiError(TelegramError):
    """The Bot API answered ``ok: false``."""

    def __init__(self, status: int, error_code: int, description: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"Telegram {error_code}: {description}")
        self.status = status
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after


def redact(text: str) -> str:
    return _BOT_PATH_RE.sub("/bot<redacted>", text)


class RedactBotToken(logging.Filter):
    """Removes bot tokens from the request lines httpx logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/bot" in message:
            record.msg = redact(message)
            record.args = ()
        return True


_redaction = RedactBotToken()


def api_error(status: int, body: bytes) -> TelegramApiError | None:
    """The error in a Bot API answer, or None when it is ``ok: true``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and data.get("ok") is True and status < 400:
        return None
    if not isinstance(data, dict):
        return TelegramApiError(status, status, f"HTTP {status} without a Bot API answer")
    params = data.get("parameters")
    retry_after = params.get("retry_after") if isinstance(params, dict) else None
    code = data.get("error_code")
    return TelegramApiError(
        status,
        code if isinstance(code, int) else status,
        redact(str(data.get("description") or f"HTTP {status}"))[:1000],
        float(retry_after) if isinstance(retry_after, int | float) and retry_after >= 0
        else None,
    )


def outcome_for_error(error: TelegramError) -> Outcome:
    """What the notifier does with a delivery that failed this way."""
    if isinstance(error, TelegramApiError):
        if error.error_code == 429 or error.status == 429:
            return Retry(error.description, after=error.retry_after)
        if 400 <= error.error_code < 500 and error.status < 500:
            return GiveUp(error.description)
    return Retry(str(error))


class TelegramApi:
    def __init__(self, api_url: str, token: str, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._base = f"{api_url.rstrip('/')}/bot{token}/"
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        logging.getLogger("httpx").addFilter(_redaction)

    @asynccontextmanager
    async def open(self) -> AsyncIterator[TelegramApi]:
        """Keep one HTTP client (and its connections) open for the body."""
        client = make_client(base_url=self._base, transport=self._transport, timeout=30.0)
        async with client:
            self._client = client
            try:
                yield self
            finally:
                self._client = None

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        client = self._client
        if client is None:
            raise TelegramUnavailable("the Telegram client is not running")
        try:
            response = await client.post(method, content=orjson.dumps(params),
                                         headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise TelegramUnavailable(
                redact(f"{method}: {exc.__class__.__name__}: {exc}")) from None
        error = api_error(response.status_code, response.content)
        if error is not None:
            raise error
        return orjson.loads(response.content).get("result")


@dataclass(frozen=True)
class Delivery:
    """A Bot API call made from an outbox row."""

    method: str
    params: dict[str, Any]


def delivery_for(item: queries.OutboxItem, public_url: str) -> Delivery | None:
    """The Bot API call an outbox row of the ``telegram`` channel stands for."""
    payload = item.payload
    if item.kind == "message":
        return Delivery("sendMessage", send_message_params(
            int(payload["chat_id"]), str(payload["text"]),
            reply_to=payload.get("reply_to"), keyboard=payload.get("keyboard")))
    if item.kind == "job_result":
        result = JobResult.from_payload(payload)
        text, keyboard = job_result_message(result, public_url)
        return Delivery("sendMessage", send_message_params(result.chat_id, text,
                                                           keyboard=keyboard))
    if item.kind == "callback_answer":
        params: dict[str, Any] = {"callback_query_id": str(payload["callback_query_id"])}
        if payload.get("text"):
            params["text"] = str(payload["text"])[:200]
            params["show_alert"] = bool(payload.get("show_alert"))
        return Delivery("answerCallbackQuery", params)
    return None


def make_deliverer(api: TelegramApi, public_url: str) -> Deliverer:
    """The deliverer of the ``telegram`` outbox channel."""

    async def deliver(item: queries.OutboxItem) -> Outcome:
        try:
            delivery = delivery_for(item, public_url)
        except (KeyError, TypeError, ValueError) as exc:
            return GiveUp(f"malformed {item.kind} notification: {exc!r}")
        if delivery is None:
            return GiveUp(f"unknown kind of Telegram notification: {item.kind}")
        try:
            result = await api.call(delivery.method, delivery.params)
        except TelegramError as exc:
            outcome = outcome_for_error(exc)
            log.info("Telegram %s for notification %d: %s", delivery.method, item.id, exc)
            return outcome
        if isinstance(result, dict) and "message_id" in result:
            return Delivered({"message_id": result["message_id"]})
        return Delivered(None)

    return deliver
