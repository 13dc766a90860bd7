"""The database, as trio code sees it.

``Database.run(fn, *args)`` runs ``fn(conn, *args)`` (a query function from
``buildit.db.queries``) in one transaction, crossing the trio-asyncio bridge once.
Errors come back as ``buildit.errors`` types; nothing outside ``buildit.db``
touches asyncpg or asyncio.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import trio
import trio_asyncio

from buildit.db import aio
from buildit.errors import DatabaseError, DatabaseUnavailable

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolStatistics:
    size: int
    idle: int
    max_size: int


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, aio.UNAVAILABLE_ERRORS):
        return DatabaseUnavailable(f"the database is unavailable: {exc.__class__.__name__}: {exc}")
    if isinstance(exc, aio.POSTGRES_ERROR):
        return DatabaseError(f"database error: {exc.__class__.__name__}: {exc}")
    return exc


class Database:
    """A pool of connections to PostgreSQL, used from trio."""

    def __init__(self, dsn: str, pool: Any) -> None:
        self.dsn = dsn
        self._pool = pool
        self.calls = 0  # units of work sent to the database (crossings of the bridge)

    async def run(
        self,
        fn: Callable[Concatenate[Any, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in one transaction."""
        return await self._cross(fn, args, kwargs, readonly=False)

    async def read(
        self,
        fn: Callable[Concatenate[Any, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run a read-only ``fn`` without an explicit transaction."""
        return await self._cross(fn, args, kwargs, readonly=True)

    async def single(
        self,
        fn: Callable[Concatenate[Any, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn`` that writes with exactly one statement, atomic on its own: no
        BEGIN and COMMIT round trips around it."""
        return await self._cross(fn, args, kwargs, readonly=True)

    async def _cross(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        readonly: bool,
    ) -> T:
        for attempt in range(3):
            self.calls += 1
            try:
                result: T = await trio_asyncio.aio_as_trio(aio.run_in_transaction)(
                    self._pool, fn, args, kwargs, readonly
                )
                return result
            except aio.SERIALIZATION_ERRORS:
                if attempt == 2:
                    raise DatabaseError("database transaction kept conflicting") from None
                await trio.sleep(0.01 * (attempt + 1))
            except aio.ASYNCIO_CANCELLED as exc:
                # asyncio cancelled us without a trio cancellation (pool closing).
                raise DatabaseUnavailable("the database operation was cancelled") from exc
            except Exception as exc:
                translated = _translate(exc)
                if translated is exc:
                    raise
                raise translated from exc
        raise AssertionError("unreachable")

    def statistics(self) -> PoolStatistics:
        size, idle, max_size = aio.pool_statistics(self._pool)
        return PoolStatistics(size=size, idle=idle, max_size=max_size)


@asynccontextmanager
async def open_database(
    dsn: str, *, min_size: int = 2, max_size: int = 10
) -> AsyncIterator[Database]:
    """Open a pool; must run inside ``trio_asyncio.open_loop()``.

    The pool is closed after the body (whose nurseries must have exited), shielded
    and time-limited, then terminated if it did not close in time.
    """
    try:
        pool = await trio_asyncio.aio_as_trio(aio.create_pool)(
            dsn, min_size=min_size, max_size=max_size
        )
    except Exception as exc:
        translated = _translate(exc)
        if isinstance(translated, DatabaseError):
            raise translated from exc
        raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc
    try:
        yield Database(dsn, pool)
    finally:
        closed = False
        with trio.move_on_after(5, shield=True):
            try:
                await trio_asyncio.aio_as_trio(aio.close_pool)(pool)
                closed = True
            except Exception:
                log.warning("closing the database pool failed", exc_info=True)
        if not closed:
            aio.terminate_pool(pool)


class DedicatedConnection:
    """One connection outside the pool (advisory locks, LISTEN)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetchval(self, sql: str, *args: Any) -> Any:
        try:
            return await trio_asyncio.aio_as_trio(aio.execute)(self._conn, sql, *args)
        except aio.ASYNCIO_CANCELLED as exc:
            raise DatabaseUnavailable("the database operation was cancelled") from exc
        except Exception as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    async def aclose(self) -> None:
        with trio.move_on_after(3, shield=True):
            await trio_asyncio.aio_as_trio(aio.close_connection)(self._conn)


@asynccontextmanager
async def dedicated_connection(
    dsn: str, *, application_name: str = "buildit"
) -> AsyncIterator[DedicatedConnection]:
    try:
        conn = await trio_asyncio.aio_as_trio(aio.connect)(dsn, application_name)
    except Exception as exc:
        raise _translate(exc) from exc
    wrapper = DedicatedConnection(conn)
    try:
        yield wrapper
    finally:
        await wrapper.aclose()


@asynccontextmanager
async def listen(
    dsn: str, channels: tuple[str, ...], on_notify: Callable[[str, str], None]
) -> AsyncIterator[trio.Event]:
    """LISTEN on ``channels``; yields an event set when the connection is lost.

    ``on_notify(channel, payload)`` is called on the trio thread; it must not block.
    """
    lost = trio.Event()
    try:
        conn = await trio_asyncio.aio_as_trio(aio.connect_listener)(
            dsn, channels, on_notify, lost.set
        )
    except Exception as exc:
        raise _translate(exc) from exc
    try:
        yield lost
    finally:
        await DedicatedConnection(conn).aclose()
