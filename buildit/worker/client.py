"""Talking to the BuildIt server: the one place the worker's HTTP client is built.

``make_client`` takes an optional ``httpx`` transport so tests can pass
``httpx.MockTransport``. httpx runs natively on trio. ``ServerApi`` turns each endpoint
of docs/PROTOCOL.md into a method whose answers are values and whose failures are the
errors of ``buildit.worker.errors``: ``ServerUnavailable`` (and ``ServerUnreachable``)
mean "retry later", ``WorkerUnauthorized`` a wrong secret, ``ServerRejected`` any other
refusal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from buildit import __version__
from buildit.worker.config import WorkerConfig
from buildit.worker.errors import (
    ProtocolError,
    ServerRejected,
    ServerUnavailable,
    ServerUnreachable,
    WorkerUnauthorized,
)
from buildit.worker.protocol import Job, JobResult
from buildit.worker.system import MachineStats

WORKER_VERSION = __version__
USER_AGENT = f"buildit-worker/{WORKER_VERSION}"
MAX_LOG_CHUNK = 1024 * 1024
"""The server takes at most 1 MiB per log append."""

_CONNECT_TIMEOUT = 10.0
_REQUEST_TIMEOUT = 30.0

JobState = Literal["running", "cancelled", "lost"]


def make_client(
    config: WorkerConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The worker's HTTP client. Long polls extend the read timeout per request."""
    return httpx.AsyncClient(
        base_url=config.server,
        transport=transport,
        timeout=httpx.Timeout(_REQUEST_TIMEOUT, connect=_CONNECT_TIMEOUT),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


@dataclass(frozen=True)
class LogAppended:
    size: int


@dataclass(frozen=True)
class LogOffsetMismatch:
    size: int


@dataclass(frozen=True)
class LogJobGone:
    job_state: str


@dataclass(frozen=True)
class LogRefused:
    """The server will not take more of this log (413), or has no log endpoint (404)."""

    status: int
    message: str


LogAppendOutcome = LogAppended | LogOffsetMismatch | LogJobGone | LogRefused
ReleaseOutcome = Literal["released", "gone", "unsupported"]


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} with a body that is not JSON"
        ) from None


class ServerApi:
    """The worker endpoints of one server, for one worker identity."""

    def __init__(self, client: httpx.AsyncClient, config: WorkerConfig) -> None:
        self._client = client
        self._config = config

    @property
    def server(self) -> str:
        return self._config.server

    def _identity(self) -> dict[str, Any]:
        return {
            "hostname": self._config.hostname,
            "arch": self._config.arch,
            "worker_secret": self._config.worker_secret,
        }

    async def _post(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.post(path, **kwargs)
        except httpx.TransportError as exc:
            detail = str(exc) or type(exc).__name__
            raise ServerUnreachable(f"cannot reach {self.server}{path}: {detail}") from exc
        if response.status_code == 401:
            raise WorkerUnauthorized(
                f"the server at {self.server} refused this worker's secret (401 on {path}): "
                "check BUILDIT_WORKER_SECRET"
            )
        if response.status_code >= 500:
            raise ServerUnavailable(
                f"{self.server}{path} answered {response.status_code}: "
                f"{_error_message(response)}",
                retry_after=_retry_after(response),
            )
        return response

    def _rejected(self, path: str, response: httpx.Response) -> ServerRejected:
        return ServerRejected(
            f"{self.server}{path} answered {response.status_code}: {_error_message(response)}",
            status=response.status_code,
        )

    async def heartbeat(
        self, stats: MachineStats, *, internet: bool, job: Job | None = None
    ) -> JobState | None:
        """Send a heartbeat; with ``job``, return what the server says of that job."""
        body: dict[str, Any] = {
            **self._identity(),
            "git_commit": f"buildit-{WORKER_VERSION}",
            "memory_bytes": stats.memory_bytes,
            "logical_cores": stats.logical_cores,
            "disk_free_space_bytes": stats.disk_free_space_bytes,
            "performance": None,
            "internet_connectivity": internet,
            "worker_version": WORKER_VERSION,
        }
        if job is not None:
            body["job_id"] = job.job_id
            if job.attempt_token is not None:
                body["attempt_token"] = job.attempt_token
        path = "/api/worker/heartbeat"
        response = await self._post(path, json=body)
        if response.status_code // 100 != 2:
            raise self._rejected(path, response)
        if job is None or not response.content.strip():
            return None
        data = _json(response)
        state = data.get("job_state") if isinstance(data, dict) else None
        if state in ("running", "cancelled", "lost"):
            return state  # type: ignore[no-any-return]
        return None

    async def poll(self, stats: MachineStats, *, wait_secs: float) -> Job | None:
        """Ask for a job, letting the server hold the request up to ``wait_secs``."""
        body: dict[str, Any] = {
            **self._identity(),
            "memory_bytes": stats.memory_bytes,
            "logical_cores": stats.logical_cores,
            "disk_free_space_bytes": stats.disk_free_space_bytes,
        }
        if wait_secs > 0:
            body["wait_secs"] = wait_secs
        timeout = httpx.Timeout(_REQUEST_TIMEOUT + wait_secs, connect=_CONNECT_TIMEOUT)
        path = "/api/worker/poll"
        response = await self._post(path, json=body, timeout=timeout)
        if response.status_code // 100 != 2:
            raise self._rejected(path, response)
        data = _json(response)
        if data is None:
            return None
        return Job.from_json(data)

    async def job_update(self, job: Job, result: JobResult) -> bool:
        """Report a result. True: recorded (or already was); False: 409, not ours."""
        body: dict[str, Any] = {
            **self._identity(),
            "job_id": job.job_id,
            "result": result.to_json(),
        }
        if job.attempt_token is not None:
            body["attempt_token"] = job.attempt_token
        path = "/api/worker/job_update"
        response = await self._post(path, json=body)
        if response.status_code == 409:
            return False
        if response.status_code // 100 != 2:
            raise self._rejected(path, response)
        return True

    async def append_log(self, job: Job, offset: int, chunk: bytes) -> LogAppendOutcome:
        """Append ``chunk`` (at most 1 MiB) to the job's log at byte ``offset``."""
        params: dict[str, str | int] = {"job_id": job.job_id, "offset": offset}
        if job.attempt_token is not None:
            params["attempt_token"] = job.attempt_token
        headers = {
            "X-Worker-Secret": self._config.worker_secret,
            "X-Worker-Hostname": self._config.hostname,
            "X-Worker-Arch": self._config.arch,
            "Content-Type": "application/octet-stream",
        }
        path = "/api/worker/log"
        response = await self._post(path, params=params, headers=headers, content=chunk)
        status = response.status_code
        if status // 100 == 2:
            data = _json(response)
            size = data.get("size") if isinstance(data, dict) else None
            if not isinstance(size, int):
                raise ProtocolError(f"{path} answered {status} without a size")
            return LogAppended(size)
        if status == 409:
            data = _json(response)
            if isinstance(data, dict) and isinstance(data.get("size"), int):
                return LogOffsetMismatch(int(data["size"]))
            state = data.get("job_state") if isinstance(data, dict) else None
            return LogJobGone(str(state or "lost"))
        if status in (404, 405, 413):
            return LogRefused(status, _error_message(response))
        raise self._rejected(path, response)

    async def release(self, job: Job, reason: str) -> ReleaseOutcome:
        """Hand a job back (extension ``/api/worker/release``): it is requeued at once."""
        body: dict[str, Any] = {**self._identity(), "job_id": job.job_id, "reason": reason}
        if job.attempt_token is not None:
            body["attempt_token"] = job.attempt_token
        path = "/api/worker/release"
        response = await self._post(path, json=body)
        if response.status_code // 100 == 2:
            return "released"
        if response.status_code == 409:
            return "gone"
        if response.status_code in (404, 405):
            return "unsupported"
        raise self._rejected(path, response)


def encode_result(result: JobResult) -> str:
    """The result as JSON text, for logging one that could not be delivered."""
    return json.dumps(result.to_json(), sort_keys=True)
