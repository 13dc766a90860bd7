"""Exponential backoff for everything the worker retries."""

from __future__ import annotations

import random


class Backoff:
    """Delays ``initial, 2*initial, 4*initial, ...`` up to ``maximum``.

    With ``jitter`` each delay is drawn from [delay/2, delay], so a fleet of workers
    that lost the server at the same moment does not come back in lockstep. A server's
    ``Retry-After`` raises the delay (still capped by ``maximum``).
    """

    def __init__(self, *, initial: float, maximum: float, jitter: bool = True) -> None:
        self._initial = max(initial, 0.0)
        self._maximum = max(maximum, self._initial)
        self._jitter = jitter
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures

    def next_delay(self, retry_after: float | None = None) -> float:
        delay = min(self._maximum, self._initial * (2.0 ** min(self._failures, 32)))
        self._failures += 1
        if self._jitter:
            delay = random.uniform(delay / 2, delay)
        if retry_after is not None and retry_after > delay:
            delay = min(retry_after, self._maximum)
        return delay

    def reset(self) -> None:
        self._failures = 0
