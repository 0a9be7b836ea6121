"""Request pacing: never more than ``rate`` requests in any 1-second window.

A sliding log of the last ``capacity`` start times: a request may start once the oldest of them
is a full window old. Unlike a token bucket with a burst allowance, this bounds every window,
not just the average, and still reaches the full rate when there is more work than the limit
allows. Requests are whole, so 7.5/s allows 7 in any second; below 1/s, 0.5/s means one
request per 2-second window.

``hold(seconds)`` pauses everyone, e.g. after a 429 with Retry-After: when the API says slow
down, it says it to the whole client, not to one campaign.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most ``rate`` acquisitions in any half-open window of one second."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._capacity = max(1, math.floor(rate))
        self._window = 1.0 if rate >= 1 else 1.0 / rate
        self._starts: deque[float] = deque(maxlen=self._capacity)
        self._held_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()

    @property
    def rate(self) -> float:
        return self._capacity / self._window

    def hold(self, seconds: float) -> None:
        """Start no request for ``seconds`` from now (extends, never shortens, a hold)."""
        self._held_until = max(self._held_until, self._clock() + seconds)

    def _wait_needed(self) -> float:
        now = self._clock()
        wait = self._held_until - now
        if len(self._starts) == self._capacity:
            wait = max(wait, self._starts[0] + self._window - now)
        return wait

    async def acquire(self) -> None:
        """Wait (first come, first served) until a request may start, and count it."""
        async with self._lock:
            while (wait := self._wait_needed()) > 0:
                await self._sleep(wait)
            self._starts.append(self._clock())
