"""Request pacing: never more than ``rate`` requests in any 1-second window, even at the API.

Starts are spaced evenly, one every ``1 / (rate * (1 - MARGIN))`` seconds, first come first
served. A sliding log that lets a second's quota start as one burst bounds the starts but not
the arrivals: with 20-50 ms of network jitter, two bursts overlap at the server (measured: 55
arrivals in one second at a limit of 50). Even spacing with a 4 % margin keeps every 1 s window
at the API within the limit while still using 96 % of it when there is more work than it allows.
Requests are whole, so 7.5/s allows 7 in any second; below 1/s, 0.5/s means one every 2 s.

Grouped starts: at high rates a start may come up to ``k - 1`` spacings before its slot, with
``k`` = ``rate * GROUP_SECONDS`` (10 ms worth of the rate; 1, so no early start, below 200/s).
Queued starts then leave in groups of up to ``k`` from one wake-up of the pacer, instead of one
sleep and one lock hand-over each. The slots stay evenly spaced, so any window holds at most
``k - 1`` more starts than before: at 667/s (k = 6) the network jitter the 1 s bound tolerates
falls from 40 to 32 ms. It pays: with 10,000 campaigns due on the scheduler's shared grid, one
wake-up per start made ~4.3 event-loop iterations per poll at 667/s; with groups, ~1.5, where
~0.9 is what the polls need without any limiter wait (strace, ``epoll_wait`` per poll).

``hold(seconds)`` pauses everyone, e.g. after a 429 with Retry-After: when the API says slow
down, it says it to the whole client, not to one campaign.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

__all__ = ["GROUP_SECONDS", "MARGIN", "RateLimiter"]

MARGIN = 0.04
GROUP_SECONDS = 0.01  # up to this much of the rate may start together (k = rate * this)


class RateLimiter:
    """Evenly spaced acquisitions, at most ``rate`` in any half-open window of one second."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        whole = math.floor(rate) if rate >= 1 else rate
        self._spacing = 1.0 / (whole * (1 - MARGIN))
        self._early = (max(1, math.floor(whole * GROUP_SECONDS)) - 1) * self._spacing
        self._next_start = 0.0
        self._held_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._pacer: asyncio.Task[None] | None = None

    @property
    def spacing(self) -> float:
        """Seconds between two starts when there is a queue."""
        return self._spacing

    def hold(self, seconds: float) -> None:
        """Start no request for ``seconds`` from now (extends, never shortens, a hold)."""
        self._held_until = max(self._held_until, self._clock() + seconds)

    async def acquire(self) -> None:
        """Wait (first come, first served) until a request may start, and count it."""
        if not self._waiters:
            start_at = max(self._next_start, self._held_until, self._clock())
            if self._may_start(start_at):
                self._take(start_at)
                return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._pacer is None or self._pacer.done():
            self._pacer = asyncio.create_task(self._pace())
        await waiter  # a cancelled waiter is skipped: its slot goes to the next one

    def _may_start(self, start_at: float) -> bool:
        """A start planned for ``start_at`` may go now (it is at most ``k - 1`` slots ahead)."""
        now = self._clock()
        return start_at - self._early <= now and self._held_until <= now

    def _take(self, start_at: float) -> None:
        # Schedule from the planned start, not the (late) wake-up: a sleep that overshoots by
        # 1-2 ms would otherwise lower the rate by as much on every request (measured: 90.7 %
        # of the limit). Lateness beyond half a spacing is not made up, so no burst follows.
        late_floor = self._clock() - self._spacing / 2
        self._next_start = max(start_at, late_floor) + self._spacing

    async def _pace(self) -> None:
        """Release the queued waiters in order. It sleeps until the next slot itself, then
        releases every waiter whose slot is within ``k - 1`` spacings: a group of up to ``k``
        per wake-up, without a loop iteration between its members."""
        try:
            while self._waiters:
                start_at = max(self._next_start, self._held_until, self._clock())
                while not self._may_start(start_at):
                    await self._sleep(max(start_at, self._held_until) - self._clock())
                while self._waiters and self._waiters[0].done():
                    self._waiters.popleft()  # cancelled while it waited
                if self._waiters:
                    self._take(start_at)
                    self._waiters.popleft().set_result(None)
        finally:
            while self._waiters:  # only when the pacer itself was cancelled (loop shutdown)
                self._waiters.popleft().cancel()
