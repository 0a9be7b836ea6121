"""A hand-driven clock for tests: pass it as ``Simulator(..., clock=clock)``."""

from __future__ import annotations

__all__ = ["ManualClock"]


class ManualClock:
    """Seconds on the sim clock that move only when told to."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += seconds
        return self._now

    def set(self, now: float) -> None:
        if now < self._now:
            raise ValueError("a clock does not go backwards")
        self._now = now
