"""The exception tree of BuildIt.

Every error that leaves a module of ours is one of these. HTTP handlers turn a
``BuildItError`` into a JSON body ``{"error": message}`` with ``status``.

    BuildItError
    ├── ConfigError            bad configuration (startup)
    ├── DatabaseError          PostgreSQL failed in a way the caller cannot fix
    │   └── DatabaseUnavailable   PostgreSQL is unreachable right now (503, retry)
    ├── EmbeddedDatabaseError  the embedded PostgreSQL could not be started
    ├── RequestError           the request is wrong; carries an HTTP status
    │   ├── BadRequest         400
    │   ├── Unauthorized       401
    │   ├── Forbidden          403
    │   ├── NotFound           404
    │   ├── Conflict           409
    │   ├── PayloadTooLarge    413
    │   └── Unprocessable      422
    └── SupervisorGaveUp       an actor crashed more often than its restart intensity allows
"""

from __future__ import annotations


class BuildItError(Exception):
    """Base of every BuildIt error."""


class ConfigError(BuildItError):
    pass


class DatabaseError(BuildItError):
    pass


class DatabaseUnavailable(DatabaseError):
    pass


class EmbeddedDatabaseError(BuildItError):
    pass


class SupervisorGaveUp(BuildItError):
    pass


class RequestError(BuildItError):
    status = 400

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class BadRequest(RequestError):
    status = 400


class Unauthorized(RequestError):
    status = 401


class Forbidden(RequestError):
    status = 403


class NotFound(RequestError):
    status = 404


class Conflict(RequestError):
    status = 409


class PayloadTooLarge(RequestError):
    status = 413


class Unprocessable(RequestError):
    status = 422
