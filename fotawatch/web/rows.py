"""One campaign as the status page and the JSON API show it: ``CampaignRow``. Pure.

Both renderings come from the same row, so the page and ``/api/v1/campaigns`` never disagree.

- ``kind`` says what a status means, in the words of the transition kinds: ``in_progress``
  (Pending, Queued, PreScheduled, Scheduled), ``succeeded`` (Ended), ``failed`` (RequestFailed,
  Failed), ``cancelled``, ``aborted``, ``unknown`` (a status ThingSpace does not document) or
  ``not_seen`` (never polled successfully).
- ``health`` is the last poll's: ``ok``, ``failing``, ``missing`` (the API says the campaign
  does not exist) or ``not_polled``.
- Order: newest change first (``since`` descending), never-seen campaigns last, then by name.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fotawatch.codec import format_time
from fotawatch.model import (
    FAILURE_STATUSES,
    KNOWN_STATUSES,
    LIFECYCLE_ORDER,
    Campaign,
    CampaignKey,
    CampaignStatus,
    TimeWindow,
    Transition,
    known_status,
)
from fotawatch.poller import CampaignView
from fotawatch.web.source import DeviceCounts

__all__ = [
    "CampaignRow",
    "Health",
    "StatusKind",
    "filter_rows",
    "newest_first",
    "status_kind",
    "status_options",
    "transition_json",
]


class StatusKind(StrEnum):
    """What a campaign's current status means."""

    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABORTED = "aborted"
    UNKNOWN = "unknown"
    NOT_SEEN = "not_seen"


class Health(StrEnum):
    """The last poll of a campaign."""

    OK = "ok"
    FAILING = "failing"
    MISSING = "missing"
    NOT_POLLED = "not_polled"


_FINAL_KINDS = {
    CampaignStatus.ENDED: StatusKind.SUCCEEDED,
    CampaignStatus.CANCELLED: StatusKind.CANCELLED,
    CampaignStatus.ABORTED: StatusKind.ABORTED,
}


def status_kind(status: str | None) -> StatusKind:
    if status is None:
        return StatusKind.NOT_SEEN
    member = known_status(status)
    if member is None:
        return StatusKind.UNKNOWN
    if member in LIFECYCLE_ORDER:
        return StatusKind.IN_PROGRESS
    if member in FAILURE_STATUSES:
        return StatusKind.FAILED
    return _FINAL_KINDS[member]


def _health(view: CampaignView) -> Health:
    if view.last_poll_at is None:
        return Health.NOT_POLLED
    if view.missing:
        return Health.MISSING
    return Health.OK if view.healthy else Health.FAILING


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignRow:
    """A campaign's line on the page and its item in the API."""

    key: CampaignKey
    name: str | None  # the configured name, else ThingSpace's; None when neither is known
    status: str | None
    kind: StatusKind
    since: dt.datetime | None
    campaign: Campaign | None
    last_poll_at: dt.datetime | None
    last_poll_result: str | None
    last_success_at: dt.datetime | None
    health: Health
    polling: bool
    devices: DeviceCounts | None

    @property
    def display_name(self) -> str:
        return self.name or self.key.campaign_id

    @classmethod
    def of(cls, view: CampaignView, *, polling: bool, devices: DeviceCounts | None) -> CampaignRow:
        c = view.campaign
        return cls(
            key=view.key,
            name=view.name or (c.name if c else None),
            status=view.status,
            kind=status_kind(view.status),
            since=view.status_since,
            campaign=c,
            last_poll_at=view.last_poll_at,
            last_poll_result=view.last_result,
            last_success_at=view.last_success_at,
            health=_health(view),
            polling=polling,
            devices=devices,
        )

    def to_json(self) -> dict[str, Any]:
        """The API's campaign object (``docs/openapi.yaml``: Campaign)."""
        c = self.campaign
        return {
            "account": self.key.account,
            "id": self.key.campaign_id,
            "name": self.name,
            "status": self.status,
            "kind": self.kind.value,
            "since": format_time(self.since),
            "firmware_name": c.firmware_name if c else None,
            "firmware_from": c.firmware_from if c else None,
            "firmware_to": c.firmware_to if c else None,
            "protocol": c.protocol if c else None,
            "make": c.make if c else None,
            "model": c.model if c else None,
            "start_date": c.start_date.isoformat() if c and c.start_date else None,
            "end_date": c.end_date.isoformat() if c and c.end_date else None,
            "time_windows": [_window_json(w) for w in c.time_windows] if c else [],
            "last_poll_at": format_time(self.last_poll_at),
            "last_poll_result": self.last_poll_result,
            "last_success_at": format_time(self.last_success_at),
            "health": self.health.value,
            "polling": self.polling,
            "devices": _devices_json(self.devices),
        }


def _window_json(w: TimeWindow) -> dict[str, int]:
    return {"start_hour": w.start_hour, "end_hour": w.end_hour}


def _devices_json(d: DeviceCounts | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {
        "total": d.total,
        "upgraded": d.upgraded,
        "failed": d.failed,
        "by_status": dict(d.counts),
        "polled_at": format_time(d.polled_at),
    }


def transition_json(t: Transition) -> dict[str, Any]:
    """The API's transition object (``docs/openapi.yaml``: Transition)."""
    return {
        "seq": t.seq,
        "from_status": t.from_status,
        "to_status": t.to_status,
        "kind": t.kind.value,
        "observed_at": format_time(t.observed_at),
    }


def _order(row: CampaignRow) -> tuple[bool, float, str, CampaignKey]:
    newest_first = -row.since.timestamp() if row.since else 0.0
    return (row.since is None, newest_first, row.display_name, row.key)


def newest_first(rows: Iterable[CampaignRow]) -> list[CampaignRow]:
    """Newest change first; never-seen campaigns last; ties by name, then key."""
    return sorted(rows, key=_order)


def filter_rows(
    rows: Sequence[CampaignRow], *, status: str | None = None, account: str | None = None
) -> list[CampaignRow]:
    """The rows in ``status`` (``""``/None: any) of ``account`` (None: any)."""
    return [
        r
        for r in rows
        if (not status or r.status == status) and (account is None or r.key.account == account)
    ]


def status_options(rows: Sequence[CampaignRow]) -> list[tuple[str, int]]:
    """(status, count) for the filter: every documented status, then undocumented ones seen."""
    counts = Counter(r.status for r in rows if r.status is not None)
    known = [s.value for s in KNOWN_STATUSES]
    extra = sorted(s for s in counts if s not in known)
    return [(s, counts.get(s, 0)) for s in (*known, *extra)]
