"""An in-memory store with the SQLite store's semantics: the fake for tests (rule 10).

Nothing survives the process. Outbox payloads are kept as JSON text, so a payload that the SQLite
store would refuse is refused here too (``StoreError``, nothing written), and readers get a fresh
decoded copy just as they would from a database. Like ``SqliteStore`` it also offers
``outbox_oldest_pending`` and ``outbox_rows``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from itertools import islice
from typing import Any

from fotawatch.devices import DeviceCounts
from fotawatch.errors import StoreError
from fotawatch.model import CampaignKey, Transition
from fotawatch.store.base import (
    CampaignRecord,
    DevicePollRecord,
    DiscoveredRecord,
    OutboxClaim,
    OutboxMessage,
    OutboxRow,
    PollRecord,
)
from fotawatch.store.claims import DirectClaims

__all__ = ["MemoryStore"]


@dataclass(slots=True, kw_only=True)
class _Entry:
    """One outbox row with its delivery bookkeeping (mutable, private)."""

    id: int
    message: OutboxMessage
    payload: str  # JSON
    attempts: int = 0
    next_attempt_at: dt.datetime
    delivered_at: dt.datetime | None = None
    failed_at: dt.datetime | None = None
    fail_reason: str | None = None

    @property
    def pending(self) -> bool:
        return self.delivered_at is None and self.failed_at is None

    def row(self) -> OutboxRow:
        m = self.message
        return OutboxRow(
            id=self.id, sink=m.sink, dedup_key=m.dedup_key, payload=json.loads(self.payload),
            created_at=m.created_at, attempts=self.attempts, next_attempt_at=self.next_attempt_at,
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        state = "delivered" if self.delivered_at else "failed" if self.failed_at else "pending"
        return {
            **asdict(self.row()),
            "delivered_at": self.delivered_at,
            "failed_at": self.failed_at,
            "fail_reason": self.fail_reason,
            "state": state,
        }


class MemoryStore:
    """Campaign state, transitions and the outbox in dicts."""

    def __init__(self) -> None:
        self._campaigns: dict[CampaignKey, CampaignRecord] = {}
        self._transitions: dict[tuple[CampaignKey, int], Transition] = {}
        self._history_seq: dict[CampaignKey, int] = {}
        self._outbox: dict[int, _Entry] = {}
        self._dedup: set[tuple[str, str]] = set()
        self._device_counts: dict[CampaignKey, list[DeviceCounts]] = {}
        self._devices: dict[CampaignKey, dict[str, str]] = {}
        self._discovered: dict[CampaignKey, DiscoveredRecord] = {}
        self._claims = DirectClaims(self)

    async def load(self) -> dict[CampaignKey, CampaignRecord]:
        return dict(self._campaigns)

    async def get(self, key: CampaignKey) -> CampaignRecord | None:
        return self._campaigns.get(key)

    async def record(
        self, polls: Sequence[PollRecord], outbox: Sequence[OutboxMessage] = ()
    ) -> list[Transition]:
        payloads = _encode(outbox, "record polls")  # the only step that can fail: first
        for poll in polls:
            self._apply(poll)
        candidates = (p.transition for p in polls if p.transition is not None)
        recorded = [t for t in candidates if self._add_transition(t)]
        self._add_outbox(outbox, payloads)
        return recorded

    async def transitions(
        self, campaign_id: str, *, account: str | None = None, limit: int | None = None
    ) -> list[Transition]:
        found = [
            t
            for t in self._transitions.values()
            if t.campaign_id == campaign_id and account in {None, t.account}
        ]
        found.sort(key=lambda t: (t.observed_at, t.account, t.seq))
        return found if limit is None else found[max(len(found) - limit, 0) :]

    async def forget(self, key: CampaignKey) -> None:
        self._campaigns.pop(key, None)

    async def enqueue(self, outbox: Sequence[OutboxMessage]) -> int:
        return self._add_outbox(outbox, _encode(outbox, "enqueue alerts"))

    async def outbox_due(self, sink: str, now: dt.datetime, limit: int) -> list[OutboxRow]:
        due = (e for e in self._pending(sink) if e.next_attempt_at <= now)
        return [e.row() for e in islice(due, limit)]

    def outbox_claim(
        self, sink: str, now: dt.datetime, limit: int
    ) -> contextlib.AbstractAsyncContextManager[OutboxClaim]:
        return self._claims.claim(sink, now, limit)

    async def outbox_delivered(self, ids: Sequence[int], at: dt.datetime) -> None:
        for entry in self._pending_by_id(ids):
            entry.delivered_at = at

    async def outbox_retry(self, ids: Sequence[int], next_attempt_at: dt.datetime) -> None:
        for entry in self._pending_by_id(ids):
            entry.attempts += 1
            entry.next_attempt_at = next_attempt_at

    async def outbox_failed(self, ids: Sequence[int], reason: str, at: dt.datetime) -> None:
        for entry in self._pending_by_id(ids):
            entry.failed_at = at
            entry.fail_reason = reason

    async def outbox_depth(self, sink: str) -> int:
        return sum(1 for _ in self._pending(sink))

    async def outbox_oldest_pending(self, sink: str) -> dt.datetime | None:
        """When the oldest undelivered, unfailed row of ``sink`` was created; None if none."""
        return min((e.message.created_at for e in self._pending(sink)), default=None)

    async def outbox_rows(self, sink: str | None = None) -> list[dict[str, Any]]:
        """Every outbox row (of ``sink`` if given) in id order, with ``state``."""
        return [e.as_dict() for e in self._outbox.values() if sink in {None, e.message.sink}]

    async def record_devices(
        self,
        poll: DevicePollRecord,
        outbox: Sequence[OutboxMessage] = (),
        *,
        keep: int,
        since: dt.datetime | None = None,
    ) -> None:
        payloads = _encode(outbox, "record device counts")
        counts = poll.counts
        history = [*self._device_counts.get(counts.key, []), counts][-keep:] if keep else []
        self._device_counts[counts.key] = history
        if since is not None:
            for key, rows in list(self._device_counts.items()):
                self._device_counts[key] = [c for c in rows if c.polled_at >= since]
        self._device_counts = {k: rows for k, rows in self._device_counts.items() if rows}
        if poll.forget_devices:
            self._devices.pop(counts.key, None)
        else:
            devices = self._devices.setdefault(counts.key, {})
            devices.update(poll.changed)
            for device in poll.removed:
                devices.pop(device, None)
        self._add_outbox(outbox, payloads)

    async def device_statuses(self, key: CampaignKey) -> dict[str, str]:
        return dict(self._devices.get(key, {}))

    async def device_history(self, key: CampaignKey, *, limit: int = 1000) -> list[DeviceCounts]:
        return self._device_counts.get(key, [])[-limit:] if limit else []

    async def latest_device_counts(self) -> dict[CampaignKey, DeviceCounts]:
        return {key: rows[-1] for key, rows in self._device_counts.items() if rows}

    async def record_discovered(
        self, records: Sequence[DiscoveredRecord], outbox: Sequence[OutboxMessage] = ()
    ) -> None:
        payloads = _encode(outbox, "record discovered campaigns")
        for record in records:
            old = self._discovered.get(record.key)
            first = old.first_seen if old is not None else record.first_seen
            self._discovered[record.key] = replace(record, first_seen=first)
        self._add_outbox(outbox, payloads)

    async def discovered(self, account: str | None = None) -> list[DiscoveredRecord]:
        found = [r for r in self._discovered.values() if account in {None, r.key.account}]
        return sorted(found, key=lambda r: (r.key.account, r.first_seen, r.key.campaign_id))

    async def close(self) -> None:
        """Nothing to release."""

    def _apply(self, poll: PollRecord) -> None:
        prev = self._campaigns.get(poll.key)
        if prev is None and poll.confirms:
            return  # as the SQL stores' UPDATE: a confirmation makes no row
        prev = prev or self._new_record(poll.key)
        rec = replace(prev, last_poll_at=poll.polled_at, last_poll_result=poll.result)
        if poll.confirms:
            rec = replace(rec, last_success_at=poll.polled_at, missing=False)
        elif poll.campaign is None:
            rec = replace(rec, missing=poll.missing)
        else:
            status = poll.campaign.status
            since = prev.status_since if prev.status == status else poll.polled_at
            rec = replace(
                rec, campaign=poll.campaign, status=status, status_since=since,
                last_success_at=poll.polled_at, missing=False,
            )  # fmt: skip
        self._campaigns[poll.key] = rec

    def _new_record(self, key: CampaignKey) -> CampaignRecord:
        """A first-seen campaign continues the numbering of any history it left behind."""
        return CampaignRecord(
            key=key, campaign=None, status=None, status_since=None,
            last_seq=self._history_seq.get(key, 0), last_poll_at=None, last_poll_result=None,
            last_success_at=None, missing=False,
        )  # fmt: skip

    def _add_transition(self, t: Transition) -> bool:
        if (t.key, t.seq) in self._transitions:
            return False
        self._transitions[t.key, t.seq] = t
        self._history_seq[t.key] = max(self._history_seq.get(t.key, 0), t.seq)
        prev = self._campaigns.get(t.key) or self._new_record(t.key)
        self._campaigns[t.key] = replace(prev, last_seq=max(prev.last_seq, t.seq))
        return True

    def _add_outbox(self, outbox: Sequence[OutboxMessage], payloads: list[str]) -> int:
        added = 0
        for message, payload in zip(outbox, payloads, strict=True):
            if (message.sink, message.dedup_key) in self._dedup:
                continue
            self._dedup.add((message.sink, message.dedup_key))
            row_id = len(self._outbox) + 1
            self._outbox[row_id] = _Entry(
                id=row_id, message=message, payload=payload, next_attempt_at=message.created_at
            )
            added += 1
        return added

    def _pending(self, sink: str) -> list[_Entry]:
        return [e for e in self._outbox.values() if e.message.sink == sink and e.pending]

    def _pending_by_id(self, ids: Sequence[int]) -> list[_Entry]:
        entries = (self._outbox.get(i) for i in ids)
        return [e for e in entries if e is not None and e.pending]


def _encode(outbox: Sequence[OutboxMessage], op: str) -> list[str]:
    """Every payload as JSON, or StoreError before anything is written."""
    try:
        return [json.dumps(dict(m.payload), allow_nan=False) for m in outbox]
    except (TypeError, ValueError) as err:
        msg = f"memory store: cannot {op}: a value cannot be stored ({type(err).__name__})"
        raise StoreError(msg) from err
