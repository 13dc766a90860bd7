"""The OpenAPI description: ``GET /api/openapi.json``, a docs page at ``/api/docs``.

It is complete enough to fuzz (``tests/test_openapi.py`` runs schemathesis against it):

- request bodies come from the ``validate_request`` models of the handlers;
- query strings are documented with the ``*Query`` models here
  (``quart_schema.document_querystring``): the handlers keep parsing them with
  ``http.common`` so that their answers and messages stay exactly as they are;
- success bodies are documented with the response models here
  (``quart_schema.document_response``), or with ``documented(...)`` for bodies that are
  not JSON;
- every error is ``{"error": "message"}`` (a 409 of a log upload adds ``size`` or
  ``job_state``): ``BuildItOpenAPIProvider`` adds ``4XX`` and ``5XX`` responses with
  the ``Error`` schema to every operation;
- routes of modules that do not document themselves (web UI, webhooks, metrics) are
  described by ``ROUTE_DOCS`` below, keyed by endpoint.

The response models forbid unknown fields, so a field added to an answer without
being documented here fails the schema test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel
from quart_schema import OpenAPIProvider
from werkzeug.routing import Rule

from buildit import domain

F = TypeVar("F", bound=Callable[..., Any])
DOC_ATTRIBUTE = "_buildit_openapi_doc"
MAX_ID = 2**62
MAX_PAGE = 10**6
MAX_PAGE_SIZE = 200  # http.common.MAX_PAGE_SIZE

JSON = "application/json"
HTML = "text/html"
TEXT = "text/plain"

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "description": "What went wrong, for a person to read. A 409 of a log upload adds "
                   "`size` (resend from there) or `job_state`.",
    "type": "object",
    "properties": {
        "error": {"type": "string", "minLength": 1},
        "size": {"type": "integer", "minimum": 0},
        "job_state": {"type": "string"},
    },
    "required": ["error"],
    "additionalProperties": False,
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
SECURITY_SCHEMES: dict[str, Any] = {
    "developerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A Developer's API token (`buildit token create`, or the web UI's "
                       "account page).",
    },
    "workerSecret": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Worker-Secret",
        "description": "The worker secret (log uploads; the other worker endpoints carry it "
                       "in the body as `worker_secret`).",
    },
    "githubSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Hub-Signature-256",
        "description": "HMAC-SHA256 of the body with the webhook secret.",
    },
    "telegramSecret": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Telegram-Bot-Api-Secret-Token",
        "description": "The secret token given to Telegram with setWebhook.",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "buildit_auth",
        "description": "The web UI's login (GitHub), plus the session's CSRF token in the "
                       "form field `csrf_token` or the header `X-CSRF-Token`.",
    },
}


# ------------------------------------------------------------------ documentation


@dataclass(frozen=True)
class Body:
    """One documented response: media type -> JSON schema (``None``: any body)."""

    description: str
    content: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Doc:
    """What the decorators of quart-schema cannot say about an operation."""

    summary: str | None = None
    responses: Mapping[str, Body] = field(default_factory=dict)
    security: tuple[str, ...] = ()
    parameters: tuple[dict[str, Any], ...] = ()
    request: Mapping[str, dict[str, Any]] | None = None  # media type -> schema
    html_errors: bool = False  # web UI: errors are HTML pages unless JSON is asked for


def documented(doc: Doc) -> Callable[[F], F]:
    """Attach ``doc`` to a view function (read by ``BuildItOpenAPIProvider``)."""

    def decorator(func: F) -> F:
        setattr(func, DOC_ATTRIBUTE, doc)
        return func

    return decorator


def _html(description: str) -> Body:
    return Body(description, {HTML: {"type": "string"}})


def _redirect(description: str) -> Body:
    return Body(description)


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID}}


_WEBHOOK_BODY = {JSON: {"type": "object"}}
_PAGE = ({"name": "page", "in": "query", "required": False,
          "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},)

# Routes of modules that do not document themselves, by endpoint.
ROUTE_DOCS: dict[str, Doc] = {
    "metrics.metrics": Doc(
        summary="Prometheus metrics (text exposition format).",
        responses={"200": Body("The metrics.", {TEXT: {"type": "string"},
                                                "application/openmetrics-text": {
                                                    "type": "string"}})},
    ),
    "telegram.webhook": Doc(
        summary="Telegram delivers bot updates here.",
        security=("telegramSecret",),
        request=_WEBHOOK_BODY,
        responses={"200": Body("Taken (or a repeat, ignored).", {JSON: {"type": "object"}})},
    ),
    "github.webhook": Doc(
        summary="GitHub delivers webhook events here (comment commands).",
        security=("githubSignature",),
        request=_WEBHOOK_BODY,
        parameters=(
            {"name": "X-GitHub-Event", "in": "header", "required": True,
             "schema": {"type": "string"}},
            {"name": "X-GitHub-Delivery", "in": "header", "required": True,
             "schema": {"type": "string"}},
        ),
        responses={"200": Body("Answered (ping, ignored, repeat).", {JSON: {"type": "object"}}),
                   "202": Body("A command, taken.", {JSON: {"type": "object"}})},
    ),
    "web.dashboard": Doc(summary="The web UI: home page.", html_errors=True,
                         responses={"200": _html("The page.")}),
    "web.pipelines": Doc(
        summary="The web UI: pipelines.", html_errors=True,
        parameters=(*_PAGE, *({"name": name, "in": "query", "required": False,
                               "schema": {"type": "string"}}
                              for name in ("status", "stable", "pr", "mine"))),
        responses={"200": _html("The page.")},
    ),
    "web.pipeline": Doc(summary="The web UI: one pipeline.", html_errors=True,
                        parameters=(_path_id("pipeline_id"),),
                        responses={"200": _html("The page.")}),
    "web.job": Doc(summary="The web UI: one job.", html_errors=True,
                   parameters=(_path_id("job_id"),),
                   responses={"200": _html("The page.")}),
    "web.workers": Doc(summary="The web UI: workers.", html_errors=True,
                       responses={"200": _html("The page.")}),
    "web.worker": Doc(summary="The web UI: one worker.", html_errors=True,
                      parameters=(_path_id("worker_id"), *_PAGE),
                      responses={"200": _html("The page.")}),
    "web.packages": Doc(
        summary="The web UI: packages on stable.", html_errors=True,
        parameters=(*_PAGE, {"name": "q", "in": "query", "required": False,
                             "schema": {"type": "string"}}),
        responses={"200": _html("The page.")},
    ),
    "web.pipeline_fragment": Doc(summary="The web UI: a pipeline's live part.",
                                 html_errors=True, parameters=(_path_id("pipeline_id"),),
                                 responses={"200": _html("The fragment.")}),
    "web.job_fragment": Doc(summary="The web UI: a job's live part.", html_errors=True,
                            parameters=(_path_id("job_id"),),
                            responses={"200": _html("The fragment.")}),
    "web.events": Doc(
        summary="The web UI: committed job events (server-sent events, up to 10 minutes).",
        html_errors=True,
        parameters=({"name": "pipeline", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}},),
        responses={"200": Body("The stream.", {"text/event-stream": {"type": "string"}})},
    ),
    "web.login": Doc(
        summary="The web UI: log in with GitHub.", html_errors=True,
        parameters=({"name": "next", "in": "query", "required": False,
                     "schema": {"type": "string"}},),
        responses={"303": _redirect("To GitHub's authorization page.")},
    ),
    "web.login_callback": Doc(
        summary="The web UI: GitHub sends the browser back here.", html_errors=True,
        parameters=tuple({"name": name, "in": "query", "required": False,
                          "schema": {"type": "string"}}
                         for name in ("code", "state", "error", "error_description")),
        responses={"303": _redirect("Logged in.")},
    ),
    "web.logout": Doc(summary="The web UI: log out.", html_errors=True, security=("session",),
                      responses={"303": _redirect("Logged out.")}),
    "web.new_pipeline_form": Doc(
        summary="The web UI: the form for a new pipeline.", html_errors=True,
        parameters=tuple({"name": name, "in": "query", "required": False,
                          "schema": {"type": "string"}}
                         for name in ("branch", "packages", "archs", "sha")),
        responses={"200": _html("The form.")},
    ),
    "web.new_pipeline": Doc(
        summary="The web UI: create a pipeline (Developers).", html_errors=True,
        security=("session",),
        request={"application/x-www-form-urlencoded": {
            "type": "object",
            "properties": {name: {"type": "string"} for name in (
                "csrf_token", "git_branch", "packages", "archs", "git_sha")},
        }},
        responses={"303": _redirect("Created: to the pipeline's page."),
                   "200": _html("The form again, with what was wrong.")},
    ),
    "web.restart_job": Doc(summary="The web UI: restart a job (Developers).",
                           html_errors=True, security=("session",),
                           parameters=(_path_id("job_id"),),
                           responses={"303": _redirect("To the job's page.")}),
    "web.cancel_pipeline": Doc(summary="The web UI: cancel a pipeline (Developers).",
                               html_errors=True, security=("session",),
                               parameters=(_path_id("pipeline_id"),),
                               responses={"303": _redirect("To the pipeline's page.")}),
    "web.token_page": Doc(summary="The web UI: API token.", html_errors=True,
                          responses={"200": _html("The page.")}),
    "web.create_token": Doc(summary="The web UI: create a new API token (logged in).",
                            html_errors=True, security=("session",),
                            responses={"200": _html("The page, with the new token.")}),
    "web.link_telegram_form": Doc(
        summary="The web UI: link a Telegram account (from the bot's /login).",
        html_errors=True,
        parameters=({"name": "token", "in": "query", "required": False,
                     "schema": {"type": "string"}},),
        responses={"200": _html("The page."), "303": _redirect("Log in first.")},
    ),
    "web.link_telegram": Doc(summary="The web UI: link a Telegram account (logged in).",
                             html_errors=True, security=("session",),
                             responses={"200": _html("Linked.")}),
    "web.static": Doc(
        summary="The web UI's assets.",
        parameters=({"name": "filename", "in": "path", "required": True,
                     "schema": {"type": "string"}},),
        responses={"200": Body("The file.", {"text/css": None, "text/javascript": None,
                                             "image/svg+xml": None, "image/png": None,
                                             "image/x-icon": None,
                                             "application/octet-stream": None})},
    ),
}
ROUTE_DOCS["github.webhook_legacy"] = ROUTE_DOCS["github.webhook"]


def _content(body: Body) -> dict[str, Any]:
    out: dict[str, Any] = {"description": body.description}
    if body.content:
        out["content"] = {media: ({"schema": schema} if schema is not None else {})
                          for media, schema in body.content.items()}
    return out


def _error_response(description: str, html: bool) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": ERROR_REF}}
    if html:
        content[HTML] = {"schema": {"type": "string"}}
    return {"description": description, "content": content}


class BuildItOpenAPIProvider(OpenAPIProvider):
    """quart-schema's provider, plus error responses and ``Doc`` for every operation."""

    def schema(self) -> dict[str, Any]:
        schema = super().schema()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        components["securitySchemes"] = SECURITY_SCHEMES
        return schema

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        doc: Doc | None = getattr(func, DOC_ATTRIBUTE, None) or ROUTE_DOCS.get(rule.endpoint)
        for operations in paths.values():
            for method, operation in list(operations.items()):
                operation = self._complete(dict(operation), doc)
                # unique even where one view serves two rules (the webhook's old path)
                operation["operationId"] = f"{method}_{rule.endpoint.replace('.', '_')}"
                operations[method] = operation
        return paths, components

    def _complete(self, operation: dict[str, Any], doc: Doc | None) -> dict[str, Any]:
        responses = {str(status): response  # quart-schema's are ints: "4XX" would not sort
                     for status, response in (operation.get("responses") or {}).items()}
        parameters = list(operation.get("parameters") or [])
        html = False
        if doc is not None:
            html = doc.html_errors
            if doc.summary and "summary" not in operation:
                operation["summary"] = doc.summary
            for status, body in doc.responses.items():
                if status not in responses:
                    responses[status] = _content(body)
                else:  # documented by quart-schema too (JSON): add the other media types
                    merged = dict(responses[status])
                    merged["content"] = {**_content(body).get("content", {}),
                                         **merged.get("content", {})}
                    responses[status] = merged
            known = {(p["name"], p["in"]) for p in parameters}
            for parameter in doc.parameters:
                if (parameter["name"], parameter["in"]) in known:
                    # quart-schema documents path converters as bare integers: ours say more
                    parameters = [parameter if (p["name"], p["in"]) ==
                                  (parameter["name"], parameter["in"]) else p
                                  for p in parameters]
                else:
                    parameters.append(parameter)
            if doc.request is not None and "requestBody" not in operation:
                operation["requestBody"] = {
                    "required": True,
                    "content": {media: {"schema": schema}
                                for media, schema in doc.request.items()},
                }
            if doc.security:
                operation["security"] = [{name: []} for name in doc.security]
        responses.setdefault("4XX", _error_response(
            "Refused: `{\"error\": message}` (400 malformed, 401/403 credentials, 404, "
            "405, 409 conflict, 413/431 too large, 415 not JSON, 422 not possible).", html))
        responses.setdefault("5XX", _error_response(
            "`{\"error\": message}`; 503 (with Retry-After): the database is away, retry.",
            html))
        operation["responses"] = responses
        operation["parameters"] = parameters
        return operation


# ------------------------------------------------------------------ query strings
# Documentation only: the handlers parse with http.common (query_int, paging, ...).

Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class PipelineIdQuery(BaseModel):
    pipeline_id: Id


class JobIdQuery(BaseModel):
    job_id: Id


class WorkerIdQuery(BaseModel):
    worker_id: Id


class JobLogQuery(BaseModel):
    job_id: Id
    attempt: Annotated[int, Field(ge=1, le=MAX_ID,
                                  description="Default: the job's current attempt")] | None = None


class PagingQuery(BaseModel):
    page: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 1
    items_per_page: (Literal[-1] | Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]) = Field(
        default=20, description=f"-1: the maximum ({MAX_PAGE_SIZE})")


class PipelineListQuery(PagingQuery):
    stable_only: bool = False
    github_pr_only: bool = False
    creator: Annotated[str, Field(description="A GitHub login")] | None = None
    status: Annotated[str, Field(json_schema_extra={"enum": list(domain.PIPELINE_STATUSES)})
                      ] | None = None


class JobListQuery(PagingQuery):
    status: Annotated[str, Field(json_schema_extra={"enum": list(domain.JOB_STATUSES)})
                      ] | None = None
    arch: str | None = None


class LogUploadQuery(BaseModel):
    job_id: Id
    offset: Annotated[int, Field(ge=0, le=MAX_ID, description="The byte offset of the chunk")]
    attempt_token: str | None = None


class LogRangeHeaders(BaseModel):
    range: Annotated[str, Field(pattern=r"^bytes=[0-9]{1,18}-$",
                                description="Only what was appended since byte N")] | None = None


class LogUploadHeaders(BaseModel):
    x_worker_hostname: str
    x_worker_arch: str


# ------------------------------------------------------------------ answers


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pool(_Answer):
    """The database pool of this server process."""

    size: int
    idle: int
    max: int


class Health(_Answer):
    """The server and its database answer."""

    status: Literal["ok"]
    pool: Pool


class PipelineCreated(_Answer):
    id: int
    jobs: dict[str, int] = Field(description="arch -> job id")


class PipelineCancelled(_Answer):
    cancelled_jobs: list[int]


class JobRestarted(_Answer):
    job_id: int
    pipeline_id: int


class JobBrief(_Answer):
    job_id: int
    arch: str
    status: str


class PipelineItem(_Answer):
    id: int
    git_branch: str
    git_sha: str
    creation_time: datetime
    github_pr: int | None
    packages: str
    archs: str
    status: str
    source: str
    options: str | None
    creator_github_login: str | None
    creator_github_avatar_url: str | None
    jobs: list[JobBrief]


class PipelineList(_Answer):
    total_items: int
    items: list[PipelineItem]


class PipelineJob(_Answer):
    job_id: int
    arch: str
    status: str
    packages: str
    attempt: int
    elapsed_secs: int | None
    log_url: str | None
    error_message: str | None
    failed_package: str | None
    finished_at: datetime | None
    assigned_worker_hostname: str | None


class PipelineInfo(_Answer):
    pipeline_id: int
    packages: str
    archs: str
    git_branch: str
    git_sha: str
    creation_time: datetime
    finished_at: datetime | None
    github_pr: int | None
    status: str
    source: str
    options: str | None
    warnings: list[str]
    creator_github_login: str | None
    jobs: list[PipelineJob]


class ArchQueue(_Answer):
    arch: str
    pending: int
    running: int
    available: int


class QueueStatus(RootModel[list[ArchQueue]]):
    """Per arch (and noarch): jobs waiting, jobs running, live workers."""


class JobItem(_Answer):
    id: int
    pipeline_id: int
    packages: str
    arch: str
    status: str
    elapsed_secs: int | None
    creation_time: datetime
    log_url: str | None
    build_success: bool | None
    git_branch: str
    git_sha: str
    github_pr: int | None


class JobList(_Answer):
    total_items: int
    items: list[JobItem]


class Attempt(_Answer):
    attempt: int
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    log_size: int
    worker_hostname: str | None


class JobInfo(_Answer):
    job_id: int
    pipeline_id: int
    packages: str
    arch: str
    creation_time: datetime
    status: str
    build_success: bool | None
    pushpkg_success: bool | None
    successful_packages: str | None
    failed_package: str | None
    skipped_packages: str | None
    package_versions: dict[str, Any] | None
    log_url: str | None
    finish_time: datetime | None
    error_message: str | None
    elapsed_secs: int | None
    assigned_worker_id: int | None
    built_by_worker_id: int | None
    attempt: int
    lost_attempts: int
    require_min_core: int | None
    require_min_total_mem: int | None
    require_min_total_mem_per_core: float | None
    require_min_disk: int | None
    assigned_at: datetime | None
    git_branch: str
    git_sha: str
    github_pr: int | None
    attempts: list[Attempt]


class WorkerItem(_Answer):
    id: int
    hostname: str
    arch: str
    logical_cores: int
    memory_bytes: int
    disk_free_space_bytes: int
    git_commit: str
    worker_version: str | None
    performance: int | None
    internet_connectivity: bool | None
    last_heartbeat_time: datetime
    is_live: bool
    running_job_id: int | None


class WorkerList(_Answer):
    total_items: int
    items: list[WorkerItem]


class WorkerInfo(_Answer):
    worker_id: int
    hostname: str
    arch: str
    git_commit: str
    worker_version: str | None
    memory_bytes: int
    logical_cores: int
    disk_free_space_bytes: int
    performance: int | None
    internet_connectivity: bool | None
    created_at: datetime
    last_heartbeat_time: datetime
    is_live: bool
    running_job_id: int | None
    attempts: int


class Dashboard(_Answer):
    total_pipelines: int
    total_jobs: int
    pending_jobs: int
    running_jobs: int
    total_workers: int
    live_workers: int
    total_logical_cores: int
    total_memory_bytes: int
    by_arch: list[ArchQueue]
    demo: bool


class JobState(_Answer):
    """The state of the job the heartbeat named (only when it named one)."""

    job_state: Literal["running", "cancelled", "lost"]


class PollJob(_Answer):
    job_id: int
    git_branch: str
    git_sha: str
    packages: str
    options: str | None
    arch: str
    attempt: int
    attempt_token: str
    log_url: str


class PollAnswer(RootModel[PollJob | None]):
    """A job for this worker, or null (none now)."""


class Empty(_Answer):
    """Recorded."""


class LogSize(_Answer):
    """The chunk was appended: the stored size."""

    size: int


PING_DOC = Doc(responses={"200": Body("The server answers.", {TEXT: {"const": "pong"}})})
HEARTBEAT_DOC = Doc(responses={"200": Body(
    "Recorded: an empty body, or the state of the job the heartbeat named.",
    {HTML: {"maxLength": 0}})})
JOB_LOG_DOC = Doc(responses={
    "200": Body("The stored log.", {TEXT: {"type": "string"}}),
    "206": Body("What was appended since the byte asked for.", {TEXT: {"type": "string"}}),
    "416": Body("Nothing that far: `Content-Range: bytes */<size>`."),
})
DEVELOPER_DOC = Doc(security=("developerToken",))
LOG_UPLOAD_DOC = Doc(
    security=("workerSecret",),
    request={"application/octet-stream": {"type": "string", "format": "binary",
                                          "maxLength": 1024 * 1024}},
)
