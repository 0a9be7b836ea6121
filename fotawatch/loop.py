"""The daemon's event loop: asyncio's, with I/O wake-ups batched while answers arrive fast.

On a VM, a poller's CPU per request follows how often the process wakes from idle more than
what it does once awake (docs/performance.md): the bare aiohttp floor measured 363-466 µs per
request at 1.76 wake-ups per request and 227-241 µs at 0.71. Polls that start together (the
scheduler's grid) answer within the API's latency spread, 20-50 ms apart at most, and each
answer would otherwise wake the process on its own.

``BatchingSelector`` is the loop's selector. While I/O arrives faster than two events per
``WINDOW`` it is *busy*: a wait that finds nothing ready first sleeps to the end of the window
since the last wake-up, then collects everything that arrived in one wake-up. It never sleeps
past the loop's next timer (the timeout asyncio passes is that timer), so timers are never
late; an answer may be handled up to ``WINDOW`` later. A window's sleep that collects fewer
than two events did not pay, so the selector waits as usual again until events come fast. An
idle or lightly loaded daemon therefore waits exactly as asyncio's own loop does.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from collections.abc import Callable

__all__ = ["WINDOW", "BatchingSelector", "daemon_loop"]

WINDOW = 0.02  # s: how long a busy loop lets I/O gather before it wakes
_Ready = list[tuple[selectors.SelectorKey, int]]


class BatchingSelector(selectors.EpollSelector):
    """epoll that, while events come fast, wakes at most once per ``window`` for I/O."""

    def __init__(
        self,
        window: float = WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._sleep = sleep
        self._woke = -math.inf  # when the last wait returned
        self.busy = False

    def select(self, timeout: float | None = None) -> _Ready:
        if timeout is not None and timeout <= 0:
            return super().select(0)  # asyncio has callbacks ready: only a look, no wait
        nap = self._woke + self._window - self._clock()
        if not self.busy or nap <= 0:
            return self._wait(timeout)
        if ready := super().select(0):
            return self._returned(ready)  # already there: no sleep, no wait
        if timeout is not None and timeout < nap:
            self._sleep(timeout)  # the next timer comes first: wake for it, on time
            return self._returned(super().select(0))
        self._sleep(nap)
        ready = self._returned(super().select(0))
        self.busy = len(ready) >= 2  # the window gathered enough to be worth its sleep
        return ready or self._wait(None if timeout is None else timeout - nap)

    def _wait(self, timeout: float | None) -> _Ready:
        """A plain wait; two wake-ups less than half a window apart make the loop busy."""
        before = self._woke
        ready = self._returned(super().select(timeout))
        if ready and self._woke - before < self._window / 2:
            self.busy = True
        return ready

    def _returned(self, ready: _Ready) -> _Ready:
        self._woke = self._clock()
        return ready


def daemon_loop() -> asyncio.AbstractEventLoop:
    """The loop ``fotawatch run`` runs on (asyncio's own where there is no epoll)."""
    if not hasattr(selectors, "EpollSelector"):
        return asyncio.new_event_loop()
    return asyncio.SelectorEventLoop(BatchingSelector())
