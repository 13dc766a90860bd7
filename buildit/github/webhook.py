"""The GitHub webhook: ``POST /api/github/webhook`` (and ``/api/webhook``, the path
configured today).

The handler only decides: it verifies ``X-Hub-Signature-256`` in constant time
(missing or wrong: 401, nothing stored), answers ``ping``, ignores what carries no
command (200), remembers the ``X-GitHub-Delivery`` id (a repeat: 200, nothing done)
and hands the command to the GitHub actor's bounded inbox (202). The work (API
calls, the pipeline, the reply) happens in that actor, never in the request.

Drop policy: when the inbox is full the delivery is forgotten again and answered
503, so redelivering it from GitHub's settings page works.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from quart import Blueprint, Response, request

from buildit import clock
from buildit.db import Database, github_queries
from buildit.github.commands import CommentEvent, command_event
from buildit.github.config import GitHubConfig
from buildit.http.common import error_response, json_response

log = logging.getLogger(__name__)
MAX_DELIVERY_ID = 100
SIGNATURE_PREFIX = "sha256="


@dataclass(frozen=True)
class WebhookCommand:
    delivery_id: str
    event: CommentEvent


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Is ``header`` (``sha256=<hex>``) the HMAC-SHA256 of ``body``? Constant time."""
    if not secret or not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    given = header[len(SIGNATURE_PREFIX):].strip().lower()
    return hmac.compare_digest(expected.encode(), given.encode("ascii", "replace"))


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` GitHub would send with ``body``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_blueprint(
    *, config: GitHubConfig, db: Database, submit: Callable[[WebhookCommand], bool]
) -> Blueprint:
    bp = Blueprint("github", __name__)

    async def receive() -> Response:
        body = await request.get_data(cache=False, as_text=False)
        if not isinstance(body, bytes):  # as_text=False: always bytes; for the type checker
            raise TypeError("the request body was not read as bytes")
        if not signature_valid(config.webhook_secret, body,
                               request.headers.get("X-Hub-Signature-256")):
            given = "missing" if not request.headers.get("X-Hub-Signature-256") else "wrong"
            log.warning("GitHub webhook with a %s signature from %s refused", given,
                        request.remote_addr)
            return error_response(
                f"the X-Hub-Signature-256 signature is {given}: this webhook needs the "
                "configured secret", 401)
        event = request.headers.get("X-GitHub-Event", "").strip()
        delivery = request.headers.get("X-GitHub-Delivery", "").strip()
        if not event:
            return error_response("the X-GitHub-Event header is missing", 400)
        if not delivery or len(delivery) > MAX_DELIVERY_ID or not delivery.isprintable():
            return error_response("the X-GitHub-Delivery header is missing or malformed", 400)
        if request.mimetype != "application/json":
            return error_response(
                "the webhook body must be JSON: set the webhook's content type to "
                "application/json", 415)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return error_response(f"the webhook body is not valid JSON: {exc}", 400)
        if not isinstance(payload, dict):
            return error_response("the webhook body must be a JSON object", 400)
        if event == "ping":
            return json_response({"pong": True, "zen": payload.get("zen")})
        decision = command_event(event, payload, config.repo)
        if isinstance(decision, str):
            return json_response({"ignored": decision})
        if not await db.run(github_queries.record_delivery, delivery, clock.now()):
            log.info("GitHub delivery %s seen before; ignored", delivery)
            return json_response({"duplicate": delivery})
        if not submit(WebhookCommand(delivery, decision)):
            await db.run(github_queries.forget_delivery, delivery)
            log.warning("GitHub command inbox full; delivery %s refused with 503", delivery)
            return error_response("too many commands are waiting; redeliver later", 503)
        log.info("GitHub delivery %s: %s by %s on #%d", delivery,
                 type(decision.command).__name__.lower(), decision.login, decision.pr)
        return json_response({"accepted": delivery}, 202)

    bp.add_url_rule("/api/github/webhook", "webhook", receive, methods=["POST"])
    bp.add_url_rule("/api/webhook", "webhook_legacy", receive, methods=["POST"])
    return bp
