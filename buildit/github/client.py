"""GitHub's REST API as BuildIt uses it, authenticated as a GitHub App.

A JWT signed with the App's private key (``gidgethub.apps.get_jwt``) is exchanged for
an installation token, cached until five minutes before it expires. The
installation id comes from configuration or, once, from
``GET /repos/{owner}/{repo}/installation``. Calls go through one ``httpx`` client
(built by ``buildit.http_client.make_client``); a failed call raises ``GitHubError``,
which says whether retrying may help and after how long (``Retry-After``, the
rate-limit reset), decided by the pure :func:`retry_decision`.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import trio
from gidgethub.apps import get_jwt

from buildit import clock
from buildit.errors import BuildItError
from buildit.github.config import GitHubConfig

log = logging.getLogger(__name__)
API_VERSION = "2022-11-28"
TOKEN_MARGIN = timedelta(minutes=5)  # renew an installation token this long before it expires
MAX_RETRY_AFTER = 3600.0
MAX_PAGES = 30


class GitHubError(BuildItError):
    """A GitHub API call failed."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait before retrying, from ``Retry-After`` or the rate-limit reset."""
    raw = _header(headers, "retry-after")
    if raw is not None:
        raw = raw.strip()
        if raw.isdigit():
            return min(float(raw), MAX_RETRY_AFTER)
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)
    if _header(headers, "x-ratelimit-remaining") == "0":
        reset = _header(headers, "x-ratelimit-reset")
        if reset is not None and reset.strip().isdigit():
            return min(max(0.0, int(reset) - now) + 1.0, MAX_RETRY_AFTER)
    return None


def retry_decision(status: int, headers: Mapping[str, str], now: float
                   ) -> tuple[bool, float | None]:
    """(may a retry help, after how many seconds) for a failed response."""
    after = retry_after(headers, now)
    if status == 429:
        return True, after
    if status == 403 and (
        _header(headers, "x-ratelimit-remaining") == "0"
        or _header(headers, "retry-after") is not None
    ):
        return True, after  # primary or secondary rate limit
    if status >= 500 or status in (401, 408):
        # 401: the installation token expired or was revoked; a new one is fetched.
        return True, after
    return False, None


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    detail = data.get("message") if isinstance(data, dict) else None
    if not detail:
        detail = response.reason_phrase or response.text[:200]
    return f"GitHub answered {response.status_code} to {response.request.method} " \
           f"{response.request.url.path}: {detail}"


@dataclass
class _Token:
    value: str
    renew_at: datetime


class GitHubAPI:
    """The calls BuildIt makes; ``http`` is owned by the caller."""

    def __init__(self, http: httpx.AsyncClient, config: GitHubConfig) -> None:
        self.http = http
        self.config = config
        self._installation_id = config.installation_id
        self._token: _Token | None = None
        self._token_lock = trio.Lock()
        self.tokens_fetched = 0

    # ------------------------------------------------------------ auth

    def app_jwt(self) -> str:
        return get_jwt(app_id=self.config.app_id, private_key=self.config.private_key)

    async def installation_id(self) -> int:
        if self._installation_id is None:
            response = await self._send("GET", f"/repos/{self.config.repo}/installation",
                                        auth=f"Bearer {self.app_jwt()}")
            self._installation_id = int(response.json()["id"])
            log.info("GitHub App installation for %s: %d", self.config.repo,
                     self._installation_id)
        return self._installation_id

    async def installation_token(self) -> str:
        async with self._token_lock:
            now = clock.now()
            if self._token is not None and now < self._token.renew_at:
                return self._token.value
            installation = await self.installation_id()
            response = await self._send(
                "POST", f"/app/installations/{installation}/access_tokens",
                auth=f"Bearer {self.app_jwt()}", ok=(201, 200),
            )
            data = response.json()
            try:
                expires = datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00"))
                value = str(data["token"])
            except (KeyError, ValueError) as exc:
                raise GitHubError(f"GitHub's installation token answer is malformed: {exc}",
                                  retryable=True) from None
            self._token = _Token(value, expires - TOKEN_MARGIN)
            self.tokens_fetched += 1
            return value

    def forget_token(self) -> None:
        self._token = None

    # ------------------------------------------------------------ transport

    async def _send(
        self,
        method: str,
        path: str,
        *,
        auth: str,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> httpx.Response:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "Authorization": auth,
        }
        try:
            response = await self.http.request(method, path, headers=headers, json=json,
                                               params=params)
        except httpx.HTTPError as exc:
            raise GitHubError(f"GitHub is unreachable ({method} {path}): "
                              f"{exc.__class__.__name__}: {exc}", retryable=True) from exc
        if response.status_code in ok:
            return response
        retryable, after = retry_decision(response.status_code, response.headers,
                                          clock.now().timestamp())
        raise GitHubError(_message(response), status=response.status_code,
                          retryable=retryable, retry_after=after)

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> httpx.Response:
        """A call with the installation token."""
        token = await self.installation_token()
        try:
            return await self._send(method, path, auth=f"token {token}", json=json,
                                    params=params, ok=ok)
        except GitHubError as exc:
            if exc.status == 401:
                self.forget_token()
            raise

    # ------------------------------------------------------------ endpoints

    async def is_member(self, login: str) -> bool:
        response = await self.call("GET", f"/orgs/{self.config.org}/members/{login}",
                                   ok=(204, 404, 302))
        return response.status_code == 204

    async def pull(self, number: int) -> dict[str, Any]:
        response = await self.call("GET", f"/repos/{self.config.repo}/pulls/{number}")
        data: dict[str, Any] = response.json()
        return data

    async def post_comment(self, issue: int, body: str) -> dict[str, Any]:
        response = await self.call("POST", f"/repos/{self.config.repo}/issues/{issue}/comments",
                                   json={"body": body}, ok=(201,))
        data: dict[str, Any] = response.json()
        return data

    async def find_comment(self, issue: int, needle: str) -> dict[str, Any] | None:
        """The first comment on ``issue`` whose body contains ``needle``."""
        path: str | None = f"/repos/{self.config.repo}/issues/{issue}/comments"
        params: dict[str, str | int] | None = {"per_page": 100}
        for _ in range(MAX_PAGES):
            if path is None:
                break
            response = await self.call("GET", path, params=params, ok=(200,))
            for comment in response.json():
                if needle in str(comment.get("body") or ""):
                    found: dict[str, Any] = comment
                    return found
            path = response.links.get("next", {}).get("url")
            if path is not None and not path.startswith(self.config.api_url + "/"):
                log.warning("not following a comments page outside the API: %s", path)
                path = None
            params = None  # the next link carries them
        return None

    async def create_check_run(self, body: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.call("POST", f"/repos/{self.config.repo}/check-runs",
                                   json=dict(body), ok=(201,))
        data: dict[str, Any] = response.json()
        return data

    async def update_check_run(self, check_run_id: int, body: Mapping[str, Any]
                               ) -> dict[str, Any]:
        response = await self.call(
            "PATCH", f"/repos/{self.config.repo}/check-runs/{check_run_id}", json=dict(body),
            ok=(200,),
        )
        data: dict[str, Any] = response.json()
        return data

    async def find_check_run(self, sha: str, name: str, external: str) -> dict[str, Any] | None:
        response = await self.call(
            "GET", f"/repos/{self.config.repo}/commits/{sha}/check-runs",
            params={"check_name": name, "filter": "all", "per_page": 100}, ok=(200,),
        )
        for run in response.json().get("check_runs") or []:
            if run.get("external_id") == external:
                found: dict[str, Any] = run
                return found
        return None
