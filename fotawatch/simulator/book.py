"""The simulator's campaigns at run time: timelines, overrides, history pages, status changes.

``status_changes`` is defined by the timelines, not by who polled: it lists every step at which a
campaign's served status became different from the one before, up to the current sim time, with
the step's own time as ``at``. A timeline step nobody polled is still a change the simulator
made. A campaign's first status is not a change. Overrides (``set_status``, scheduled
``set_status`` events) cut the timeline at their time and append their own step, so recorded
history never changes after the fact and each change appears exactly once. Statuses are recorded
as served on the wire (a ``status_alias`` campaign records ``CampaignQueued``).
"""

from __future__ import annotations

from bisect import bisect_right, insort
from typing import Any

from fotawatch.simulator.campaigns import CampaignSpec
from fotawatch.simulator.wire import campaign_template, served_status

__all__ = ["CampaignBook", "CampaignRecord"]


class CampaignRecord:
    """One live campaign: its spec, its (mutable) timeline and its pre-rendered wire body."""

    __slots__ = ("_history_body", "_poll_body", "spec", "statuses", "times")

    def __init__(self, spec: CampaignSpec) -> None:
        self.spec = spec
        self.times = [step.at for step in spec.timeline]
        self.statuses = [step.status for step in spec.timeline]
        self._poll_body = campaign_template(spec, flags=True)
        self._history_body = campaign_template(spec, flags=False)

    def status_at(self, now: float) -> str | None:
        """The scenario status at ``now``; None before the first step (not created yet)."""
        index = bisect_right(self.times, now)
        return self.statuses[index - 1] if index else None

    def override(self, at: float, status: str) -> None:
        """From ``at`` on the campaign has ``status``; later timeline steps are dropped."""
        keep = bisect_right(self.times, at)
        del self.times[keep:], self.statuses[keep:]
        self.times.append(at)
        self.statuses.append(status)

    def body(self, status: str, *, history: bool = False) -> dict[str, Any]:
        body = dict(self._history_body if history else self._poll_body)
        body["status"] = served_status(self.spec, status)
        return body

    def changes(self, now: float) -> list[dict[str, Any]]:
        """The status changes of this campaign up to ``now`` (see the module docstring)."""
        changes: list[dict[str, Any]] = []
        previous: str | None = None
        for at, status in zip(self.times, self.statuses, strict=True):
            if at > now:
                break
            served = served_status(self.spec, status)
            if previous is not None and served != previous:
                changes.append(self._change(previous, served, at))
            previous = served
        return changes

    def _change(self, old: str, new: str, at: float) -> dict[str, Any]:
        spec = self.spec
        return {
            "account": spec.account,
            "campaign_id": spec.campaign_id,
            "from": old,
            "to": new,
            "at": at,
        }


class CampaignBook:
    """All campaigns by (account, id), plus per-account sorted ids for history paging."""

    __slots__ = ("_archive", "_ids", "_records")

    def __init__(self, specs: tuple[CampaignSpec, ...] = ()) -> None:
        self._records: dict[tuple[str, str], CampaignRecord] = {}
        self._ids: dict[str, list[str]] = {}
        self._archive: list[dict[str, Any]] = []
        for spec in specs:
            self._records[spec.account, spec.campaign_id] = CampaignRecord(spec)
            self._ids.setdefault(spec.account, []).append(spec.campaign_id)
        for ids in self._ids.values():
            ids.sort()

    def __len__(self) -> int:
        return len(self._records)

    def get(self, account: str, campaign_id: str) -> CampaignRecord | None:
        return self._records.get((account, campaign_id))

    def accounts(self) -> set[str]:
        return set(self._ids)

    def add(self, spec: CampaignSpec) -> None:
        key = (spec.account, spec.campaign_id)
        if key in self._records:
            raise ValueError(f"campaign {spec.account}/{spec.campaign_id} already exists")
        self._records[key] = CampaignRecord(spec)
        insort(self._ids.setdefault(spec.account, []), spec.campaign_id)

    def remove(self, account: str, campaign_id: str, now: float) -> None:
        """Forget a campaign; the changes it made so far stay in ``status_changes``."""
        record = self._records.pop((account, campaign_id), None)
        if record is None:
            raise KeyError(f"{account}/{campaign_id}")
        self._archive += record.changes(now)
        self._ids[account].remove(campaign_id)

    def set_status(self, account: str, campaign_id: str, status: str, at: float) -> None:
        record = self._records.get((account, campaign_id))
        if record is None:
            raise KeyError(f"{account}/{campaign_id}")
        record.override(at, status)

    def history(
        self, account: str, status: str, after: str, size: int, now: float
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of campaigns with ``status`` and id > ``after``, and whether more follow."""
        ids = self._ids.get(account, [])
        page: list[dict[str, Any]] = []
        for index in range(bisect_right(ids, after) if after not in {"", "0"} else 0, len(ids)):
            record = self._records[account, ids[index]]
            current = record.status_at(now)
            if current is None or status not in {current, served_status(record.spec, current)}:
                continue
            if len(page) == size:
                return page, True
            page.append(record.body(current, history=True))
        return page, False

    def status_changes(self, now: float) -> list[dict[str, Any]]:
        """Every status change up to ``now``, in time order (stable per campaign)."""
        changes = list(self._archive)
        for record in self._records.values():
            changes += record.changes(now)
        changes.sort(key=lambda change: change["at"])
        return changes
