"""Log in with GitHub (OAuth web flow) and out."""

from __future__ import annotations

import hmac
import logging
import secrets

from quart import Response, request, session

from buildit import clock
from buildit.db import web_queries
from buildit.errors import BadRequest
from buildit.web import auth, github
from buildit.web.blueprint import bp, error_page, see_other
from buildit.web.formatting import safe_next
from buildit.web.state import services, web_state

log = logging.getLogger(__name__)


@bp.get("/login")
async def login() -> Response:
    config = web_state().config
    if not config.login_configured:
        return await error_page(
            "GitHub login is not configured on this server (BUILDIT_GITHUB_CLIENT_ID and "
            "BUILDIT_GITHUB_CLIENT_SECRET).", 503, title="Login unavailable")
    state = secrets.token_urlsafe(24)
    session["oauth_state"] = state
    session["login_next"] = safe_next(request.args.get("next"))
    return see_other(github.authorize_url(config, state))


@bp.get("/login/callback")
async def login_callback() -> Response:
    state = web_state()
    config = state.config
    expected = session.pop("oauth_state", None)
    next_url = safe_next(session.pop("login_next", None))
    given = request.args.get("state", "")
    if not isinstance(expected, str) or not given or not hmac.compare_digest(
        given.encode(), expected.encode()
    ):
        raise BadRequest(
            "the login could not be verified (its state does not match this browser's): "
            "start again from “Log in”"
        )
    if request.args.get("error"):
        reason = request.args.get("error_description") or request.args["error"]
        raise BadRequest(f"GitHub login was not completed: {reason[:200]}")
    code = request.args.get("code", "")
    if not code or len(code) > 200:
        raise BadRequest("GitHub sent no login code: start again from “Log in”")
    token = await github.exchange_code(config, code, transport=state.github_transport)
    gh_user = await github.fetch_user(config, token, transport=state.github_transport)
    member = await github.is_member(config, token, gh_user.login,
                                    transport=state.github_transport)
    user = await services().db.run(
        web_queries.upsert_github_user,
        github_login=gh_user.login,
        github_id=gh_user.id,
        avatar_url=gh_user.avatar_url,
        role=auth.DEVELOPER if member else auth.GUEST,
        now=clock.now(),
    )
    await auth.start_session(user, token)
    log.info("%s logged in as %s", user.github_login, user.role)
    return see_other(next_url)


@bp.post("/logout")
async def logout() -> Response:
    await auth.end_session()
    return see_other("/")
