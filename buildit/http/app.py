"""The quart-trio application: routes, validation, and errors as JSON."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import trio
from pydantic import ValidationError
from quart import Blueprint, Response, g, request
from quart_schema import QuartSchema, RequestSchemaValidationError
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestHeaderFieldsTooLarge
from werkzeug.routing import IntegerConverter, Map

from buildit import __version__, logs
from buildit.abbs import AbbsError
from buildit.errors import BadRequest, DatabaseError, DatabaseUnavailable, RequestError
from buildit.http import api, worker_api
from buildit.http.common import error_response
from buildit.http.openapi import BuildItOpenAPIProvider
from buildit.services import Services

log = logging.getLogger(__name__)
access_log = logging.getLogger("buildit.http.access")
MAX_BODY = 2 * 1024 * 1024
MAX_HEADERS = 16 * 1024  # as hypercorn's h11_max_incomplete_size, however the bytes arrived
BODY_DRAIN_SECS = 5.0


class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` that fits a PostgreSQL bigint (larger: no such route, 404)."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**62)
        super().__init__(map, *args, **kwargs)


def _describe_validation(error: Exception) -> str:
    cause = getattr(error, "validation_error", None) or error
    if isinstance(cause, ValidationError):
        parts = []
        for item in cause.errors()[:5]:
            where = ".".join(str(p) for p in item.get("loc", ())) or "body"
            parts.append(f"{where}: {item.get('msg', 'invalid')}")
        return "invalid request: " + "; ".join(parts)
    if isinstance(cause, TypeError | ValueError):
        return f"invalid request: {cause}"
    return "invalid request body"


def create_app(services: Services, extra_blueprints: Sequence[Blueprint] = ()) -> QuartTrio:
    app = QuartTrio("buildit")
    app.config["BUILDIT_SERVICES"] = services
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["QUART_SCHEMA_CONVERSION_PREFERENCE"] = "pydantic"
    QuartSchema(
        app,
        info={"title": "BuildIt!", "version": __version__},  # type: ignore[arg-type]
        openapi_path="/api/openapi.json",
        swagger_ui_path="/api/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
        openapi_provider_class=BuildItOpenAPIProvider,
    )
    # <int:...> in URLs: ids beyond PostgreSQL's bigint are 404, not a 500 from the query
    app.url_map.converters["int"] = BoundedIntConverter
    app.register_blueprint(api.bp)
    app.register_blueprint(worker_api.bp)
    for blueprint in extra_blueprints:
        app.register_blueprint(blueprint)

    @app.errorhandler(RequestSchemaValidationError)
    async def _validation(error: RequestSchemaValidationError) -> Response:
        if request.method in ("POST", "PUT") and not request.is_json:
            return error_response("the request body must be JSON (Content-Type: application/json)",
                                  415)
        return error_response(_describe_validation(error), 400)

    @app.errorhandler(RequestError)
    async def _request_error(error: RequestError) -> Response:
        return error_response(error.message, error.status, **error.extra)

    @app.errorhandler(AbbsError)
    async def _tree_error(error: AbbsError) -> Response:
        log.error("packages tree error: %s", error)
        return error_response(f"the packages tree could not be read: {error}", 502)

    @app.errorhandler(DatabaseUnavailable)
    async def _unavailable(error: DatabaseUnavailable) -> Response:
        log.warning("answering 503: %s", error)
        return error_response("the database is unavailable; retry shortly", 503)

    @app.errorhandler(DatabaseError)
    async def _db_error(error: DatabaseError) -> Response:
        log.error("database error: %s", error)
        return error_response("internal database error", 500)

    @app.errorhandler(UnicodeDecodeError)
    async def _not_utf8(error: UnicodeDecodeError) -> Response:
        return error_response("the request body is not valid UTF-8", 400)

    @app.errorhandler(RecursionError)
    async def _too_deep(error: RecursionError) -> Response:
        return error_response("the JSON body is nested too deeply", 400)

    @app.errorhandler(HTTPException)
    async def _http(error: HTTPException) -> Response:
        status = error.code or 500
        messages = {
            400: "malformed request (the body could not be read as JSON?)",
            404: f"no such endpoint: {request.method} {request.path}",
            405: f"method {request.method} is not allowed on {request.path}",
            413: f"the request body is larger than {MAX_BODY} bytes",
            431: "the request headers are too large",
        }
        response = error_response(messages.get(status, error.description or error.name), status)
        if status == 413:
            # The unread rest of the body would otherwise be taken for the next request.
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response("internal server error", 500)

    @app.before_request  # first: even a refused request gets its id
    async def _request_id() -> None:
        # Every log line emitted while handling this request carries its id (buildit.logs).
        rid = logs.accept_request_id(request.headers.get("X-Request-Id"))
        logs.request_id.set(rid)
        g.buildit_request_id = rid
        g.buildit_request_start = trio.current_time()

    @app.before_request
    async def _reject_huge_headers() -> None:
        # hypercorn answers 431 only while the headers are still incomplete: the same
        # headers arriving in one read got through. Same limit, whatever the segmenting.
        size = len(request.full_path) + sum(len(k) + len(v) + 4
                                            for k, v in request.headers.items())
        if size > MAX_HEADERS:
            raise RequestHeaderFieldsTooLarge()

    @app.before_request
    async def _reject_nul() -> None:
        if "\x00" in request.path or any("\x00" in v for v in request.args.values()):
            raise BadRequest("the URL must not contain NUL characters")

    @app.after_request
    async def _finish_body(response: Response) -> Response:
        # Answering before the request body arrived (401, 405, 415, ...) hangs a
        # keep-alive connection under hypercorn + quart-trio: the next request on it is
        # never answered (the close runs in the handler's cancelled nursery). Read the
        # rest first (at most MAX_BODY, briefly); when that fails, close after answering.
        complete = False
        with trio.move_on_after(BODY_DRAIN_SECS):
            try:
                await request.body
                complete = True
            except HTTPException:  # over MAX_CONTENT_LENGTH
                pass
        if not complete:
            response.headers["Connection"] = "close"
        return response

    @app.after_request
    async def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        rid = g.get("buildit_request_id")
        if rid:
            response.headers["X-Request-Id"] = rid
        start = g.get("buildit_request_start")
        if start is not None and access_log.isEnabledFor(logging.DEBUG):
            access_log.debug("%s %s %d %.1f ms", request.method, request.path,
                             response.status_code, (trio.current_time() - start) * 1000)
        return response

    return app
