"""Which payloads a sink wants. Pure: no I/O, no clock.

A sink's filter is decided once from config; ``wants`` is asked for each payload before it is
queued for that sink. ``None`` means "no restriction" for kinds and statuses.

- transitions: kept when their kind is in ``kinds`` and their new status in ``statuses``;
- conditions: kept when ``conditions`` is true (firing and resolved alike);
- notices (progress milestones, "now watching"): kept when ``notices`` is true;
- test payloads: always kept (``fotawatch test-alert`` must reach every sink);
- anything else: dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from fotawatch.alerts.payloads import Payload, PayloadType
from fotawatch.model import TransitionKind

__all__ = ["SinkFilter", "wants"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkFilter:
    """What one sink is told about. The default passes everything."""

    kinds: frozenset[TransitionKind] | None = None
    statuses: frozenset[str] | None = None
    conditions: bool = True
    notices: bool = True


def _wants_transition(f: SinkFilter, payload: Payload) -> bool:
    kind_ok = f.kinds is None or payload.get("kind") in f.kinds
    status_ok = f.statuses is None or payload.get("to_status") in f.statuses
    return kind_ok and status_ok


def wants(f: SinkFilter, payload: Payload) -> bool:
    """True when the sink with filter ``f`` should receive ``payload``."""
    kind = payload.get("type")
    if kind == PayloadType.TEST:
        return True
    if kind == PayloadType.CONDITION:
        return f.conditions
    if kind == PayloadType.TRANSITION:
        return _wants_transition(f, payload)
    if kind in {PayloadType.MILESTONE, PayloadType.WATCHING}:
        return f.notices
    return False
