"""The errors of ``buildit worker``.

Every error leaving a module of ``buildit.worker`` is one of these::

    BuildItError                       (buildit.errors)
    └── WorkerError                    exit status 1 when it ends the worker
        ├── WorkerConfigError          bad settings (also a buildit ConfigError); exit status 2
        │   └── WorkspaceError         BUILDIT_CIEL_PATH is not a ciel workspace
        ├── ServerUnavailable          transient: 5xx/503 from the server; retry
        │   └── ServerUnreachable      transient: no connection, timeout, broken response
        ├── WorkerUnauthorized         the server refused the worker secret (401)
        ├── ServerRejected             any other 4xx answer; carries ``status``
        ├── ProtocolError              the server answered something we cannot read
        ├── StepStartError             a build step's program could not even be started
        └── PrepareError               the packages tree could not be brought to the job's commit

``StepStartError`` and ``PrepareError`` end a job with an ``{"Error": reason}`` result;
the others are about the server.
"""

from __future__ import annotations

from buildit.errors import BuildItError, ConfigError


class WorkerError(BuildItError):
    """Base of the worker's errors. ``exit_code`` is used when it stops ``buildit worker``."""

    exit_code = 1


class WorkerConfigError(WorkerError, ConfigError):
    exit_code = 2


class WorkspaceError(WorkerConfigError):
    """The ciel workspace is missing or is not one."""


class ServerUnavailable(WorkerError):
    """The server could not take the request right now (5xx, 503): retry later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerUnreachable(ServerUnavailable):
    """No answer at all: connection refused, DNS failure, timeout, broken response."""


class WorkerUnauthorized(WorkerError):
    """The server answered 401: the worker secret is wrong."""


class ServerRejected(WorkerError):
    """The server answered with a 4xx status other than 401 (and 409 where it has a meaning)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ProtocolError(WorkerError):
    """The server's answer is not what the protocol says."""


class StepStartError(WorkerError):
    """A program of a build step could not be started (missing, not executable)."""

    def __init__(self, program: str, reason: str) -> None:
        super().__init__(f"could not start `{program}`: {reason}")
        self.program = program
        self.reason = reason


class PrepareError(WorkerError):
    """The packages tree could not be fetched or checked out at the job's commit."""
