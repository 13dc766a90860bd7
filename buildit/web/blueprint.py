"""The web UI's blueprint: hooks shared by every page (CSRF, errors, headers, context)."""

from __future__ import annotations

import hashlib
import logging
from importlib import resources
from typing import Any

from quart import Blueprint, Response, render_template, request

from buildit import clock
from buildit.abbs import AbbsError
from buildit.errors import BuildItError, DatabaseError, DatabaseUnavailable, RequestError
from buildit.http.common import json_response, services
from buildit.web import auth, formatting
from buildit.web.ansi import ansi_to_html
from buildit.web.state import web_state

log = logging.getLogger(__name__)

bp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)


def _static_version() -> str:
    digest = hashlib.sha256()
    for entry in sorted(resources.files("buildit.web").joinpath("static").iterdir(),
                        key=lambda e: e.name):
        if entry.is_file():
            digest.update(entry.name.encode() + b"\0" + entry.read_bytes())
    return digest.hexdigest()[:12]


STATIC_VERSION = _static_version()

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def see_other(location: str) -> Response:
    """A 303 redirect (after a form, the browser GETs ``location``)."""
    return Response(b"", status=303, headers={"Location": location})


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


async def error_page(message: str, status: int, *, title: str | None = None) -> Response:
    if wants_json():
        return json_response({"error": message}, status)
    titles = {400: "Bad request", 401: "Please log in again", 403: "Not allowed",
              404: "Not found", 409: "Conflict", 422: "Cannot do that", 502: "GitHub trouble",
              503: "Temporarily unavailable"}
    body = await render_template(
        "web/error.html", message=message, status=status,
        title=title or titles.get(status, "Error"),
    )
    return Response(body, status=status, content_type="text/html; charset=utf-8")


@bp.before_request
async def _check_post() -> None:
    if request.method == "POST":
        await auth.check_csrf()


@bp.after_request
async def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.content_type and response.content_type.startswith("text/html"):
        response.headers.setdefault("Cache-Control", "no-cache")
    return response


@bp.errorhandler(RequestError)
async def _request_error(error: RequestError) -> Response:
    return await error_page(error.message, error.status)


@bp.errorhandler(AbbsError)
async def _tree_error(error: AbbsError) -> Response:
    log.error("packages tree error: %s", error)
    return await error_page(f"the packages tree could not be read: {error}", 502)


@bp.errorhandler(DatabaseUnavailable)
async def _unavailable(error: DatabaseUnavailable) -> Response:
    log.warning("answering 503: %s", error)
    response = await error_page("the database is unavailable; retry shortly", 503)
    response.headers["Retry-After"] = "5"
    return response


@bp.errorhandler(BuildItError)
async def _internal(error: BuildItError) -> Response:
    log.error("error on %s %s: %s", request.method, request.path, error)
    return await error_page("internal error; please retry later", 500)


@bp.context_processor
async def _context() -> dict[str, Any]:
    try:
        user = await auth.load_user()
    except DatabaseError:  # the error page of a database outage still renders
        user = None
    state = web_state()
    return {
        "user": user,
        "role": auth.role_of(user),
        "csrf_token": auth.csrf_token,
        "web": state.config,
        "static_version": STATIC_VERSION,
        "demo": services().config.extra.get("BUILDIT_DEMO") == "1",
    }


@bp.app_template_filter("status_label")
def _status_label(value: str | None) -> str:
    return formatting.status_label(value)


@bp.app_template_filter("duration")
def _duration(value: float | int | None) -> str:
    return formatting.duration(value)


@bp.app_template_filter("size")
def _size(value: int | float | None) -> str:
    return formatting.size(value)


@bp.app_template_filter("timestamp")
def _timestamp(value: Any) -> str:
    return formatting.timestamp(value)


@bp.app_template_filter("iso")
def _iso(value: Any) -> str:
    return formatting.iso(value)


@bp.app_template_filter("ago")
def _ago(value: Any) -> str:
    return formatting.ago(value, clock.now())


@bp.app_template_filter("http_url")
def _http_url(value: str | None) -> str | None:
    return formatting.http_url(value)


@bp.app_template_filter("ansi")
def _ansi(value: str) -> Any:
    return ansi_to_html(value)
