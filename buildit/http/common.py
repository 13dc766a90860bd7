"""Helpers every HTTP module uses: JSON responses, errors, the services handle."""

from __future__ import annotations

import re
from typing import Any, cast

import orjson
from quart import Response, current_app, request

from buildit.db import queries
from buildit.errors import BadRequest, Forbidden, Unauthorized
from buildit.services import Services

MAX_PAGE_SIZE = 200
_INT_RE = re.compile(r"-?[0-9]{1,50}")


def services() -> Services:
    return cast(Services, current_app.config["BUILDIT_SERVICES"])


def _default(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    body = orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)
    response = Response(body, status=status, content_type="application/json", headers=headers)
    # The body is bytes already: an after-request hook that reads it (the metrics read
    # every poll answer) need not re-encode it through an async generator first, which
    # costs about a tenth of an idle poll.
    response.implicit_sequence_conversion = False
    return response


def error_response(message: str, status: int, **extra: Any) -> Response:
    headers = {"Retry-After": "5"} if status == 503 else None
    return json_response({"error": message, **extra}, status, headers)


def query_int(name: str, default: int | None = None, *, minimum: int = 1,
              maximum: int = 2**62) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"query parameter {name} is required")
        return default
    if not _INT_RE.fullmatch(raw):
        raise BadRequest(f"query parameter {name} must be a whole number")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise BadRequest(f"query parameter {name} must be between {minimum} and {maximum}")
    return value


def query_bool(name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise BadRequest(f"query parameter {name} must be true or false")


def query_choice(name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.args.get(name) or None
    if raw is not None and raw not in choices:
        raise BadRequest(f"query parameter {name} must be one of {', '.join(choices)}")
    return raw


def paging() -> tuple[int, int]:
    """``page`` (from 1) and ``items_per_page`` (-1, as today's front end sends, means max)."""
    page = query_int("page", 1)
    per_page = query_int("items_per_page", 20, minimum=-1, maximum=MAX_PAGE_SIZE)
    if per_page == 0:
        raise BadRequest("items_per_page must not be 0")
    if per_page == -1:
        per_page = MAX_PAGE_SIZE
    if page > 10**6:
        raise BadRequest("page is too large")
    return page, per_page


async def require_developer() -> queries.User:
    """The Bearer API token of a Developer, or 401/403."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("an API token is required: Authorization: Bearer <token>")
    user = await services().authenticate_token(token.strip())
    if user is None:
        raise Unauthorized("the API token is not valid")
    if user.role != "developer":
        raise Forbidden(
            f"{user.github_login} is not a Developer (a member of the AOSC-Dev organization)"
        )
    return user
