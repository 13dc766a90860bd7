"""ASYNCIO-FLAVOURED: the asyncpg side of the trio-asyncio bridge.

Everything in this module runs on the asyncio loop that ``trio_asyncio.open_loop()``
provides. Trio code never calls it directly: it goes through ``buildit.db.Database``,
which crosses the bridge once per unit of work (acquire + transaction + queries in
one coroutine here), so a trio cancellation can never leak a pooled connection.

No fire-and-forget asyncio tasks are started here: an unhandled exception in one
would tear down the whole loop.
"""

from __future__ import annotations

import asyncio
from asyncio import selector_events
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import orjson

T = TypeVar("T")
Conn = asyncpg.Connection


# Database reads of at most 32 KiB (asyncio's default is 256 KiB per recv()). ``buildit
# serve`` has glibc allocate blocks of 64 KiB and more with mmap, so that the 64 KiB reads
# hypercorn keeps per connection cannot fragment the heap
# (``buildit.server.limit_heap_fragmentation``); 256 KiB reads would then cost an mmap and
# a munmap per database reply. The few pooled connections bound what 32 KiB reads can
# leave behind on the heap. Only asyncpg's connections use asyncio transports here.
_READ_SIZE = 32 * 1024
_TRANSPORT: Any = getattr(selector_events, "_SelectorSocketTransport", None)
if _TRANSPORT is not None and getattr(_TRANSPORT, "max_size", 0) > _READ_SIZE:
    _TRANSPORT.max_size = _READ_SIZE


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: Conn) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog", format="text"
    )
    await conn.set_type_codec(
        "json", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog", format="text"
    )


async def _reset_connection(conn: Conn) -> None:
    """Nothing to undo when a connection goes back to the pool.

    asyncpg's default reset costs a round trip per use (``RESET ALL``, ``UNLISTEN *``,
    ``CLOSE ALL``, advisory unlock). Pooled connections carry no session state: no
    query function sets a session variable, LISTENs, takes a session advisory lock or
    leaves a cursor open (LISTEN and the watchdog's lock use dedicated connections). An
    open transaction is still rolled back by asyncpg before this runs.
    """


async def create_pool(dsn: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_reset_connection,
        # No command_timeout: asyncio timers run on trio's clock (virtual in tests);
        # callers put deadlines on their work with trio.fail_after instead.
        command_timeout=None,
        timeout=10,
        # No asyncio timers per use: asyncpg re-arms the idle-connection timer with
        # call_later on every release (and one per newly prepared statement), in the
        # caller's context. trio-asyncio keeps each cancelled TimerHandle, and with its
        # context the HTTP request that used the connection, body and all, until it would
        # have fired 300 s later: the server's memory grew with its load. So idle
        # connections stay open (at most max_size) and prepared statements do not expire
        # (the cache is still bounded by its size; the schema only changes at startup).
        max_inactive_connection_lifetime=0,
        max_cached_statement_lifetime=0,
    )


async def run_in_transaction(
    pool: asyncpg.Pool,
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    readonly: bool,
) -> T:
    async with pool.acquire() as conn:
        if readonly:  # or one statement, atomic by itself
            return await fn(conn, *args, **kwargs)
        async with conn.transaction():
            return await fn(conn, *args, **kwargs)


async def close_pool(pool: asyncpg.Pool) -> None:
    await pool.close()


def terminate_pool(pool: asyncpg.Pool) -> None:
    pool.terminate()


def pool_statistics(pool: asyncpg.Pool) -> tuple[int, int, int]:
    """(size, idle, max size)."""
    return pool.get_size(), pool.get_idle_size(), pool.get_max_size()


async def connect(dsn: str, application_name: str = "buildit") -> Conn:
    return await asyncpg.connect(
        dsn, timeout=5, server_settings={"application_name": application_name}
    )


async def connect_listener(
    dsn: str,
    channels: tuple[str, ...],
    on_notify: Callable[[str, str], None],
    on_terminate: Callable[[], None],
) -> Conn:
    """A dedicated connection that LISTENs; callbacks run on the loop's thread."""
    conn = await asyncpg.connect(dsn, timeout=5)

    def _callback(_conn: Any, _pid: int, channel: str, payload: object) -> None:
        on_notify(channel, str(payload))

    def _terminated(_conn: Any) -> None:
        on_terminate()

    conn.add_termination_listener(_terminated)
    for channel in channels:
        await conn.add_listener(channel, _callback)
    return conn


async def execute(conn: Conn, sql: str, *args: Any) -> Any:
    return await conn.fetchval(sql, *args)


async def close_connection(conn: Conn) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        conn.terminate()


UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
)
POSTGRES_ERROR = asyncpg.PostgresError
UNIQUE_VIOLATION = asyncpg.UniqueViolationError
SERIALIZATION_ERRORS = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
ASYNCIO_CANCELLED = asyncio.CancelledError
