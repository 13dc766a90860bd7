"""Wall-clock timestamps that follow trio's clock.

Every timestamp BuildIt writes (heartbeats, claims, results) comes from ``now()``,
which is the wall time at the first call of this ``trio.run`` plus the time trio's
clock has advanced since. In production that is the wall clock; in tests on a
virtual clock (``MockClock``) timestamps jump with it, so heartbeat timeouts can be
tested without waiting.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import trio

_offset: trio.lowlevel.RunVar[float] = trio.lowlevel.RunVar("buildit_clock_offset")


def now() -> datetime:
    try:
        offset = _offset.get()
    except LookupError:
        offset = time.time() - trio.current_time()
        _offset.set(offset)
    return datetime.fromtimestamp(offset + trio.current_time(), UTC)


def ago(seconds: float) -> datetime:
    return now() - timedelta(seconds=seconds)
