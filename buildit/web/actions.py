"""Forms that change state. The blueprint's hook has checked the CSRF token of every
POST; each handler checks the role itself, on the server."""

from __future__ import annotations

import logging
from typing import Any

from quart import Response, flash, render_template, request, url_for

from buildit import clock, domain
from buildit.abbs import AbbsError
from buildit.db import web_queries
from buildit.errors import RequestError
from buildit.linking import read_link_token
from buildit.services import hash_token, new_token
from buildit.web import auth
from buildit.web.blueprint import bp, see_other
from buildit.web.state import services, web_state

log = logging.getLogger(__name__)


async def _html(template: str, status: int = 200, **context: Any) -> Response:
    body = await render_template(template, **context)
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def _login_redirect() -> Response:
    path = request.full_path if request.query_string else request.path
    return see_other(url_for("web.login", next=path))


# ---------------------------------------------------------------- new pipeline


def _form_archs() -> list[str]:
    return [*services().config.archs, domain.NOARCH]


async def _new_pipeline_page(values: dict[str, Any], error: str | None = None,
                             status: int = 200) -> Response:
    return await _html("web/new_pipeline.html", status=status, nav="new", values=values,
                       error=error, archs=_form_archs(),
                       has_tree=services().tree is not None)


@bp.get("/pipelines/new")
async def new_pipeline_form() -> Response:
    values = {
        "git_branch": request.args.get("branch", "stable")[:200],
        "packages": request.args.get("packages", "")[:10_000],
        "archs": [a for a in request.args.getlist("archs") if a in _form_archs()],
        "git_sha": request.args.get("sha", "")[:64],
    }
    return await _new_pipeline_page(values)


@bp.post("/pipelines/new")
async def new_pipeline() -> Response:
    user = await auth.require_developer()
    form = await request.form
    values = {
        "git_branch": form.get("git_branch", "").strip(),
        "packages": form.get("packages", ""),
        "archs": form.getlist("archs"),
        "git_sha": form.get("git_sha", "").strip(),
    }
    try:
        created = await services().create_pipeline(
            git_branch=values["git_branch"],
            packages=values["packages"],
            archs=values["archs"] or None,
            git_sha=values["git_sha"] or None,
            source="web",
            creator=auth.as_api_user(user),
        )
    except RequestError as exc:
        return await _new_pipeline_page(values, exc.message, status=exc.status)
    except AbbsError as exc:
        log.error("packages tree error: %s", exc)
        return await _new_pipeline_page(values, f"the packages tree could not be read: {exc}",
                                        status=502)
    await flash(f"Pipeline #{created.id} created.")
    return see_other(url_for("web.pipeline", pipeline_id=created.id))


# ---------------------------------------------------------------- restart, cancel


@bp.post("/jobs/<int:job_id>/restart")
async def restart_job(job_id: int) -> Response:
    user = await auth.require_developer()
    await services().restart_job(job_id)
    log.info("job %d restarted by %s from the web UI", job_id, user.github_login)
    await flash(f"Job {job_id} restarted: it waits for a worker again.")
    return see_other(url_for("web.job", job_id=job_id))


@bp.post("/pipelines/<int:pipeline_id>/cancel")
async def cancel_pipeline(pipeline_id: int) -> Response:
    user = await auth.require_developer()
    ended = await services().cancel_pipeline(pipeline_id, user.github_login)
    await flash(f"Pipeline {pipeline_id} cancelled ({len(ended)} unfinished job(s) ended)."
                if ended else f"Pipeline {pipeline_id} had no unfinished jobs.")
    return see_other(url_for("web.pipeline", pipeline_id=pipeline_id))


# ---------------------------------------------------------------- API token


@bp.get("/account/token")
async def token_page() -> Response:
    user = await auth.load_user()
    summary = None
    if user is not None:
        summary = await services().db.read(web_queries.token_summary, user.id)
    return await _html("web/token.html", nav="token", summary=summary, token=None)


@bp.post("/account/token")
async def create_token() -> Response:
    user = await auth.require_login()
    token = new_token()
    await services().db.run(web_queries.replace_tokens, user.id, hash_token(token),
                            clock.now())
    log.info("API token (re)created by %s", user.github_login)
    summary = await services().db.read(web_queries.token_summary, user.id)
    response = await _html("web/token.html", nav="token", summary=summary, token=token)
    response.headers["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------- Telegram link


@bp.get("/link/telegram")
async def link_telegram_form() -> Response:
    token = request.args.get("token", "")
    chat_id = read_link_token(web_state().config.session_secret, token,
                              clock.now().timestamp())
    user = await auth.load_user()
    if user is None:
        return _login_redirect()
    return await _html("web/link_telegram.html", token=token, chat_id=chat_id,
                       already=user.telegram_chat_id == chat_id, done=False)


@bp.post("/link/telegram")
async def link_telegram() -> Response:
    user = await auth.require_login()
    form = await request.form
    token = form.get("token", "")
    chat_id = read_link_token(web_state().config.session_secret, token,
                              clock.now().timestamp())
    await services().db.run(web_queries.link_telegram, user.id, chat_id)
    log.info("Telegram chat %d linked to %s", chat_id, user.github_login)
    return await _html("web/link_telegram.html", token=None, chat_id=chat_id, already=False,
                       done=True)
