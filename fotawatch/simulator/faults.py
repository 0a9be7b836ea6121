"""Choosing which injected faults hit a request. Pure: the clock value and the RNG are passed in.

Faults are tried in list order. Each matching, active, not-yet-exhausted fault rolls its
``probability`` (with the scenario's seeded RNG, so a run is reproducible for a given request
order). ``latency`` faults add their delay and let the search go on; the first other fault that
fires decides the answer. ``count`` caps how often a fault fires; it counts firings, so a client
that retries a reset connection on its own uses up two.
"""

from __future__ import annotations

import random
from collections import Counter

from fotawatch.simulator.scenario import FaultSpec

__all__ = ["ENDPOINTS", "FOTA_ENDPOINTS", "FaultPlan", "matches"]

FOTA_ENDPOINTS = frozenset({"campaign", "devices", "history"})
ENDPOINTS = frozenset({"oauth", "login"}) | FOTA_ENDPOINTS


def matches(match: str, endpoint: str) -> bool:
    """Whether a fault's ``match`` covers a request to ``endpoint``."""
    if match == "any":
        return True
    if match == "fota":
        return endpoint in FOTA_ENDPOINTS
    return match == endpoint


class FaultPlan:
    """The current fault list with its firing counts."""

    __slots__ = ("_faults", "_fired", "_rng", "injected")

    def __init__(self, faults: tuple[FaultSpec, ...], rng: random.Random) -> None:
        self._rng = rng
        self._faults = faults
        self._fired = [0] * len(faults)
        self.injected: Counter[str] = Counter()

    def replace(self, faults: tuple[FaultSpec, ...]) -> None:
        """A new fault list; firing counts start again (``injected`` totals are kept)."""
        self._faults = faults
        self._fired = [0] * len(faults)

    def pick(self, endpoint: str, now: float) -> tuple[float, FaultSpec | None]:
        """(extra latency in seconds, the fault that answers this request or None)."""
        delay = 0.0
        for index, fault in enumerate(self._faults):
            if not self._fires(index, fault, endpoint, now):
                continue
            self._fired[index] += 1
            self.injected[fault.kind] += 1
            if fault.kind != "latency":
                return delay, fault
            delay += fault.seconds
        return delay, None

    def _fires(self, index: int, fault: FaultSpec, endpoint: str, now: float) -> bool:
        if not matches(fault.match, endpoint) or not fault.active(now):
            return False
        if fault.count is not None and self._fired[index] >= fault.count:
            return False
        return fault.probability >= 1.0 or self._rng.random() < fault.probability
