"""Device progress of a campaign: the per-device report, aggregated by device status. Pure.

No I/O, no clock (``now`` is an argument), no third-party imports. ``device_poller`` fetches the
report and persists what this module computes; metrics, alerts and ``fotawatch status`` read it.

Definitions, decided once here (reference §3.2):

* The device status set is **open**. Every status is kept as ThingSpace sent it, cut to
  ``DEVICE_STATUS_CHARS``. ``KNOWN_DEVICE_STATUSES`` are the documented v3 values plus
  ``DeviceRejected``; they are always exported (0 when no device has them).
* **upgraded** = ``UpgradeSuccess``.
* **failed** = ``UpgradeFailed`` + ``DeviceRejected``: final for that device in this campaign.
  ``RequestToFotaServerFailed`` and ``NoDeviceDataFromNetwork`` are *not* failed: ThingSpace
  retries them (around 04:00 UTC, for up to 3 days), so they count as still pending.
* **total** = the report's ``totalDevice``, or the number of devices listed if that is larger
  or missing.
* **failure share** = failed / (upgraded + failed): the share of devices whose upgrade has an
  outcome. Early in a rollout it says "30 % of the attempts fail" long before 30 % of the whole
  fleet has failed, which is when someone should look.
* **Label cap**: at most ``MAX_UNKNOWN_STATUSES`` statuses outside the known ones are kept per
  campaign (the most frequent, then by name); the rest are summed under ``OTHER_STATUSES``.
* **Milestones** are percentages of *total* upgraded. One is reached by a poll when the
  previous poll was below it and this one is at or above it; the first poll of a campaign is a
  baseline (like the first sight of a status), so a campaign first seen at 95 % says nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from fotawatch.model import CampaignKey

__all__ = [
    "DEVICE_STATUS_CHARS",
    "FAILED_STATUSES",
    "KNOWN_DEVICE_STATUSES",
    "MAX_UNKNOWN_STATUSES",
    "OTHER_STATUSES",
    "UPGRADED_STATUSES",
    "DeviceCounts",
    "DeviceDiff",
    "aggregate",
    "device_status_label",
    "diff",
    "milestones_reached",
]

KNOWN_DEVICE_STATUSES: Final = (
    "UpgradeSuccess",
    "UpgradePending",
    "UpgradeScheduled",
    "UpgradeFailed",
    "NoDeviceDataFromNetwork",
    "ReceivedDeviceDataFromNetwork",
    "RequestToFotaServerFailed",
    "DeviceRejected",
)
UPGRADED_STATUSES: Final = frozenset({"UpgradeSuccess"})
FAILED_STATUSES: Final = frozenset({"UpgradeFailed", "DeviceRejected"})
DEVICE_STATUS_CHARS: Final = 100
MAX_UNKNOWN_STATUSES: Final = 16
OTHER_STATUSES: Final = "_other"
_KNOWN = frozenset(KNOWN_DEVICE_STATUSES)

Counts = tuple[tuple[str, int], ...]


def device_status_label(status: str) -> str:
    """A device status as fotawatch keeps it: stripped and cut to ``DEVICE_STATUS_CHARS``."""
    return status.strip()[:DEVICE_STATUS_CHARS] or "unknown"


def aggregate(statuses: Iterable[str]) -> Counts:
    """Devices per status, sorted by status, unknown statuses capped (see the module doc)."""
    counter = Counter(statuses)
    unknown = sorted((s for s in counter if s not in _KNOWN), key=lambda s: (-counter[s], s))
    kept = {s: n for s, n in counter.items() if s in _KNOWN}
    kept.update((s, counter[s]) for s in unknown[:MAX_UNKNOWN_STATUSES])
    rest = sum(counter[s] for s in unknown[MAX_UNKNOWN_STATUSES:])
    if rest:
        kept[OTHER_STATUSES] = kept.get(OTHER_STATUSES, 0) + rest
    return tuple(sorted(kept.items()))


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceCounts:
    """One complete device report of a campaign, aggregated; replaced whole, never mutated."""

    key: CampaignKey
    polled_at: dt.datetime
    campaign_status: str | None  # the campaign's status when its devices were polled
    counts: Counts  # (device status, devices), sorted by status
    reported_total: int | None = None  # the report's totalDevice
    _by_status: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_status", dict(self.counts))

    def count(self, status: str) -> int:
        return self._by_status.get(status, 0)

    @property
    def listed(self) -> int:
        """Devices the report listed."""
        return sum(n for _, n in self.counts)

    @property
    def total(self) -> int:
        return max(self.reported_total or 0, self.listed)

    @property
    def upgraded(self) -> int:
        return sum(self.count(s) for s in UPGRADED_STATUSES)

    @property
    def failed(self) -> int:
        return sum(self.count(s) for s in FAILED_STATUSES)

    @property
    def percent_upgraded(self) -> float:
        return 100.0 * self.upgraded / self.total if self.total else 0.0

    @property
    def failure_share(self) -> float | None:
        """failed / (upgraded + failed); None before any device has an outcome."""
        decided = self.upgraded + self.failed
        return self.failed / decided if decided else None

    def summary(self) -> str:
        """``1,234 / 2,689 upgraded, 12 failed``."""
        return f"{self.upgraded:,} / {self.total:,} upgraded, {self.failed:,} failed"


def milestones_reached(
    previous: DeviceCounts | None, current: DeviceCounts, milestones: Sequence[int]
) -> list[int]:
    """The milestones (percent upgraded) this poll reached; none on a campaign's first poll."""
    if previous is None or not current.total:
        return []
    before, now = previous.percent_upgraded, current.percent_upgraded
    # 100 * n / n is exactly 100.0 in floating point, and anything less is below it: 100 %
    # means every device, never 2,688 of 2,689 rounded up.
    return sorted(m for m in set(milestones) if before < m <= now)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceDiff:
    """How a report differs from the device statuses stored before it."""

    changed: Mapping[str, str]  # device id -> new status, for new and changed devices
    removed: tuple[str, ...]  # devices no longer in the report
    moves: tuple[tuple[str, str, int], ...]  # (old, new, devices), old "" for new ones; sorted


def diff(previous: Mapping[str, str], current: Mapping[str, str]) -> DeviceDiff:
    """The devices whose status differs between two reports (``device id -> status``)."""
    changed = {d: s for d, s in current.items() if previous.get(d) != s}
    moves = Counter((previous.get(d, ""), s) for d, s in changed.items())
    removed = tuple(sorted(d for d in previous if d not in current))
    return DeviceDiff(changed=changed, removed=removed,
                      moves=tuple(sorted((a, b, n) for (a, b), n in moves.items())))  # fmt: skip
