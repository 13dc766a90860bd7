"""Who is asking, and may they: sessions, roles, CSRF.

- The quart-auth cookie carries a random session id; the session lives on the server
  (``web_sessions``, by the SHA-256 of the id) for ``SESSION_DAYS``, and logging out
  deletes it, so a copy of the cookies taken before the logout is worthless after it.
  The Quart session cookie holds the CSRF token, the OAuth ``state`` during a login
  and the user's GitHub token, encrypted (``WebState.seal``). Both are signed with the
  session secret, HttpOnly, SameSite=Lax, and Secure when the public URL is https.
- The role is read from the database on every request. When it was checked against
  GitHub longer ago than ``role_max_age``, membership is asked again with the stored
  token; a revoked token logs the user out; GitHub being unreachable keeps the role
  and retries after a few minutes.
- Every POST of the web UI carries the session's CSRF token (form field
  ``csrf_token`` or header ``X-CSRF-Token``); every action checks the role here, on
  the server.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

import trio
from quart import g, request, session
from quart_auth import AuthUser, current_user, login_user, logout_user

from buildit import clock
from buildit.db import queries, web_queries
from buildit.db.web_queries import WebUser
from buildit.errors import Forbidden
from buildit.web import github
from buildit.web.state import services, web_state

log = logging.getLogger(__name__)
ROLE_RETRY_AFTER = 300.0  # s before a failed role check is tried again
ROLE_CHECK_LIMIT = 10.0  # s a role check may take before the page goes on without it
SESSION_DAYS = 30  # a login lasts this long (the cookies and the server-side session)

ANONYMOUS, GUEST, DEVELOPER = "anonymous", "guest", "developer"


class CsrfError(Forbidden):
    pass


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def check_csrf() -> None:
    expected = session.get("csrf")
    form = await request.form
    given = form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not isinstance(expected, str) or not expected or not given or not hmac.compare_digest(
        given.encode(), expected.encode()
    ):
        raise CsrfError(
            "this form has expired or did not come from this site (CSRF check failed): "
            "reload the page and try again"
        )


def _session_key(session_id: str) -> bytes:
    """What ``web_sessions`` stores of a session id: its SHA-256."""
    return hashlib.sha256(session_id.encode()).digest()


async def start_session(user: WebUser, github_token: str) -> None:
    """After a successful GitHub login: a new session; the browser's previous one ends."""
    previous = current_user.auth_id
    session_id = secrets.token_urlsafe(32)
    now = clock.now()
    await services().db.run(
        web_queries.start_web_session,
        user_id=user.id,
        id_hash=_session_key(session_id),
        replaces=_session_key(previous) if previous else None,
        now=now,
        expires_at=now + timedelta(days=SESSION_DAYS),
    )
    session.clear()
    session.permanent = True
    session["csrf"] = secrets.token_urlsafe(32)
    session["gh"] = web_state().seal(github_token)
    login_user(AuthUser(session_id), remember=True)
    g.web_user = user


def _drop_cookies() -> None:
    session.clear()
    logout_user()
    g.web_user = None


async def end_session() -> None:
    """Log out: the session is deleted on the server first, then the browser is told to
    drop its cookies (which no longer work anywhere)."""
    session_id = current_user.auth_id
    if session_id:
        await services().db.run(web_queries.end_web_session, _session_key(session_id))
    _drop_cookies()


async def _refresh_role(user: WebUser) -> WebUser | None:
    state = web_state()
    failed_at = state.role_check_failed.get(user.id)
    if failed_at is not None and trio.current_time() - failed_at < ROLE_RETRY_AFTER:
        return user
    token = state.unseal(session.get("gh"))
    if token is None:
        log.info("session of %s has no GitHub token to re-check the role: logged out",
                 user.github_login)
        return None
    try:
        with trio.fail_after(ROLE_CHECK_LIMIT):
            member = await github.is_member(state.config, token, user.github_login,
                                            transport=state.github_transport)
    except github.TokenRejected:
        log.info("GitHub no longer accepts the token of %s: logged out", user.github_login)
        return None
    except (github.GitHubError, trio.TooSlowError) as exc:
        log.warning("could not re-check the role of %s (kept %s): %s", user.github_login,
                    user.role, exc)
        state.role_check_failed[user.id] = trio.current_time()
        return user
    state.role_check_failed.pop(user.id, None)
    role = DEVELOPER if member else GUEST
    if role != user.role:
        log.info("role of %s is now %s (GitHub membership of %s)", user.github_login, role,
                 state.config.github_org)
    return await services().db.run(web_queries.set_role, user.id, role, clock.now())


async def load_user() -> WebUser | None:
    """The logged-in user of this request (cached on ``g``), role re-checked when old."""
    if "web_user" in g:
        cached: WebUser | None = g.web_user
        return cached
    user: WebUser | None = None
    session_id = current_user.auth_id
    if session_id:
        user = await services().db.read(web_queries.session_user, _session_key(session_id),
                                        clock.now())
        if user is None:
            _drop_cookies()  # logged out, expired or unknown: nothing to delete
        else:
            max_age = timedelta(seconds=web_state().config.role_max_age)
            if user.role_checked_at is None or clock.now() - user.role_checked_at > max_age:
                user = await _refresh_role(user)
                if user is None:
                    await end_session()
    g.web_user = user
    return user


def role_of(user: WebUser | None) -> str:
    if user is None:
        return ANONYMOUS
    return DEVELOPER if user.role == DEVELOPER else GUEST


async def require_login() -> WebUser:
    user = await load_user()
    if user is None:
        raise Forbidden("log in with GitHub first")
    return user


async def require_developer() -> WebUser:
    user = await load_user()
    if user is None:
        raise Forbidden("only Developers may do this: log in with GitHub first")
    if user.role != DEVELOPER:
        raise Forbidden(
            f"only Developers (members of the {web_state().config.github_org} GitHub "
            f"organization) may do this; {user.github_login} is a Guest"
        )
    return user


def as_api_user(user: WebUser) -> queries.User:
    return queries.User(id=user.id, github_login=user.github_login, role=user.role,
                        telegram_chat_id=user.telegram_chat_id,
                        github_avatar_url=user.github_avatar_url)
