"""The listener actor: turns PostgreSQL NOTIFY into wake-ups and job events.

Every change to a job commits a ``pg_notify``: on ``buildit_wake`` (an arch whose
scheduler may have work) and ``buildit_event`` (a job changed status). This actor
LISTENs on a dedicated connection and forwards them to the schedulers and the
aggregator of this process, so several server processes stay in step. When the
connection is lost every scheduler is woken (a notification may have been missed)
and the actor reconnects with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
import trio

from buildit.db import Database, listen, queries
from buildit.errors import DatabaseError

log = logging.getLogger(__name__)
CHANNELS = (queries.WAKE_CHANNEL, queries.EVENT_CHANNEL, queries.OUTBOX_CHANNEL)


class Listener:
    def __init__(
        self,
        db: Database,
        *,
        on_wake: Callable[[str], None],
        on_wake_all: Callable[[], None],
        on_event: Callable[[dict[str, object]], None],
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.on_wake = on_wake
        self.on_wake_all = on_wake_all
        self.on_event = on_event
        self.on_outbox = on_outbox
        self.connected = False

    def _notify(self, channel: str, payload: str) -> None:
        if channel == queries.WAKE_CHANNEL:
            self.on_wake(payload)
        elif channel == queries.OUTBOX_CHANNEL:
            self.on_outbox()
        elif channel == queries.EVENT_CHANNEL:
            try:
                self.on_event(orjson.loads(payload))
            except orjson.JSONDecodeError:
                log.warning("ignoring a malformed job event: %r", payload)

    async def run(self, *, task_status: trio.TaskStatus[Listener] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        backoff = 0.5
        started = False
        while True:
            try:
                async with listen(self.db.dsn, CHANNELS, self._notify) as lost:
                    self.connected = True
                    backoff = 0.5
                    self.on_wake_all()
                    self.on_outbox()
                    if not started:
                        task_status.started(self)
                        started = True
                    await lost.wait()
                    log.warning("the LISTEN connection was lost; reconnecting")
            except DatabaseError:
                if not started:
                    raise
                log.warning("cannot LISTEN; retrying in %g s", backoff)
            finally:
                self.connected = False
            self.on_wake_all()
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
