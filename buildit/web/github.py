"""GitHub's OAuth web flow and the two API calls the web UI makes with a user's token.

Base URLs come from ``WebConfig`` (tests point them at a fake server); every client
is built by ``buildit.http_client.make_client``, which takes a transport for tests.
Failures leave as ``GitHubError`` (a ``buildit.errors.RequestError`` with status 502,
or 401 when GitHub refuses the token).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from buildit.errors import RequestError
from buildit.http_client import make_client
from buildit.web.config import WebConfig

log = logging.getLogger(__name__)
SCOPE = "read:org"


class GitHubError(RequestError):
    status = 502


class TokenRejected(GitHubError):
    """GitHub answered 401: the user's token was revoked or expired."""

    status = 401


@dataclass(frozen=True)
class GitHubUser:
    login: str
    id: int
    avatar_url: str | None


def authorize_url(config: WebConfig, state: str) -> str:
    query = urlencode({
        "client_id": config.github_client_id,
        "redirect_uri": config.callback_url,
        "state": state,
        "scope": SCOPE,
        "allow_signup": "false",
    })
    return f"{config.github_web_url}/login/oauth/authorize?{query}"


def _client(config: WebConfig, transport: httpx.AsyncBaseTransport | None,
            token: str | None = None) -> httpx.AsyncClient:
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
        headers["Accept"] = "application/vnd.github+json"
        headers["X-GitHub-Api-Version"] = "2022-11-28"
    return make_client(transport=transport, timeout=15.0, headers=headers)


async def exchange_code(config: WebConfig, code: str, *,
                        transport: httpx.AsyncBaseTransport | None = None) -> str:
    """The user's access token for the ``code`` GitHub sent to the callback."""
    try:
        async with _client(config, transport) as client:
            response = await client.post(
                f"{config.github_web_url}/login/oauth/access_token",
                data={
                    "client_id": config.github_client_id,
                    "client_secret": config.github_client_secret,
                    "code": code,
                    "redirect_uri": config.callback_url,
                },
            )
    except httpx.HTTPError as exc:
        raise GitHubError(f"GitHub could not be reached: {exc.__class__.__name__}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        raise GitHubError(f"GitHub refused the login (HTTP {response.status_code})")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        reason = body.get("error_description") or body.get("error") or "no access token"
        raise GitHubError(f"GitHub refused the login: {reason}")
    return token


async def fetch_user(config: WebConfig, token: str, *,
                     transport: httpx.AsyncBaseTransport | None = None) -> GitHubUser:
    try:
        async with _client(config, transport, token) as client:
            response = await client.get(f"{config.github_api_url}/user")
    except httpx.HTTPError as exc:
        raise GitHubError(f"GitHub could not be reached: {exc.__class__.__name__}") from exc
    if response.status_code == 401:
        raise TokenRejected("GitHub no longer accepts this login; log in again")
    if response.status_code != 200:
        raise GitHubError(f"GitHub answered HTTP {response.status_code} for the user")
    try:
        body = response.json()
        login, user_id = body["login"], body["id"]
    except (ValueError, KeyError, TypeError):
        raise GitHubError("GitHub sent a user without login or id") from None
    if not isinstance(login, str) or not isinstance(user_id, int):
        raise GitHubError("GitHub sent a malformed user")
    avatar = body.get("avatar_url")
    return GitHubUser(login=login, id=user_id,
                      avatar_url=avatar if isinstance(avatar, str) and avatar else None)


async def is_member(config: WebConfig, token: str, login: str, *,
                    transport: httpx.AsyncBaseTransport | None = None) -> bool:
    """Is the token's user an active member of the organization?

    ``GET /user/memberships/orgs/{org}`` (needs the ``read:org`` scope) answers for
    private memberships too; when it is forbidden, ``GET /orgs/{org}/members/{login}``
    (204 for members) decides.
    """
    org = config.github_org
    try:
        async with _client(config, transport, token) as client:
            response = await client.get(f"{config.github_api_url}/user/memberships/orgs/{org}")
            if response.status_code == 200:
                try:
                    state = response.json().get("state")
                except (ValueError, AttributeError):
                    raise GitHubError("GitHub sent a malformed membership") from None
                return bool(state == "active")
            if response.status_code == 401:
                raise TokenRejected("GitHub no longer accepts this login; log in again")
            if response.status_code == 404:
                return False
            if response.status_code == 403:
                fallback = await client.get(f"{config.github_api_url}/orgs/{org}/members/{login}")
                if fallback.status_code == 204:
                    return True
                if fallback.status_code in (302, 404):
                    return False
                response = fallback
    except httpx.HTTPError as exc:
        raise GitHubError(f"GitHub could not be reached: {exc.__class__.__name__}") from exc
    raise GitHubError(f"GitHub answered HTTP {response.status_code} for the membership")
