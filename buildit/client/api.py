"""The BuildIt HTTP API as the command-line client (and the demo) uses it.

Every method returns the decoded JSON of a 2xx answer. A 4xx/5xx answer is an
``ApiError`` carrying the server's ``error`` message and the status; a server that
cannot be reached is ``ServerUnreachable``. The ``httpx`` client comes from
``buildit.http_client.make_client``, so tests may pass a transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from buildit.errors import BuildItError
from buildit.http_client import make_client


class ClientError(BuildItError):
    """The client could not do what was asked (before or without the server's answer)."""


class ServerUnreachable(ClientError):
    pass


class ApiError(ClientError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status in (502, 503, 504)


def error_message(response: httpx.Response) -> str:
    """The server's ``{"error": ...}``, or what can be said about a foreign answer."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


def _list(value: str | Sequence[str] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return ",".join(value)


class BuildItApi:
    def __init__(self, client: httpx.AsyncClient, *, token: str | None) -> None:
        self._client = client
        self._token = token

    @property
    def server(self) -> str:
        return str(self._client.base_url).rstrip("/")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        auth: bool = False,
    ) -> Any:
        headers = {}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        elif auth:
            raise ClientError(
                "this needs an API token: pass --token, set BUILDIT_TOKEN or put "
                "token = \"...\" in ~/.config/buildit/client.toml (an admin creates one "
                "with `buildit token create --github-login <you>`)"
            )
        try:
            response = await self._client.request(method, path, json=json, params=params,
                                                  headers=headers)
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the BuildIt server at {self.server}: "
                f"{exc.__class__.__name__}: {exc or 'no answer'}"
            ) from exc
        if response.status_code >= 400:
            raise ApiError(error_message(response), response.status_code)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(f"the server at {self.server} answered {path} with something "
                           "that is not JSON: is it a BuildIt server?",
                           response.status_code) from exc

    async def new_pipeline(
        self,
        *,
        git_branch: str,
        packages: str | Sequence[str],
        archs: str | Sequence[str] | None = None,
        git_sha: str | None = None,
        options: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"git_branch": git_branch, "packages": _list(packages)}
        if archs:
            body["archs"] = _list(archs)
        if git_sha:
            body["git_sha"] = git_sha
        if options:
            body["options"] = options
        result: dict[str, Any] = await self._call("POST", "/api/pipeline/new", json=body,
                                                  auth=True)
        return result

    async def pipeline_info(self, pipeline_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/api/pipeline/info",
                                                  params={"pipeline_id": pipeline_id})
        return result

    async def list_pipelines(
        self,
        *,
        page: int = 1,
        items_per_page: int = 20,
        status: str | None = None,
        creator: str | None = None,
        stable_only: bool = False,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"page": page, "items_per_page": items_per_page}
        if status:
            params["status"] = status
        if creator:
            params["creator"] = creator
        if stable_only:
            params["stable_only"] = "true"
        result: dict[str, Any] = await self._call("GET", "/api/pipeline/list", params=params)
        return result

    async def cancel_pipeline(self, pipeline_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", "/api/pipeline/cancel", json={"pipeline_id": pipeline_id}, auth=True)
        return result

    async def restart_job(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", "/api/job/restart", json={"job_id": job_id}, auth=True)
        return result

    async def job_info(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/api/job/info",
                                                  params={"job_id": job_id})
        return result


@asynccontextmanager
async def open_api(
    server: str, *, token: str | None, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[BuildItApi]:
    async with make_client(base_url=server, transport=transport, timeout=30.0) as client:
        yield BuildItApi(client, token=token)
