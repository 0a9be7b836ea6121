"""Rows as both SQL stores bind them: the same columns, each store's own time and JSON forms."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fotawatch.codec import campaign_to_dict
from fotawatch.devices import DeviceCounts
from fotawatch.model import Transition
from fotawatch.store.base import DiscoveredRecord, OutboxMessage, PollRecord

__all__ = ["PollRow", "RowEncoder", "poll_row"]


class PollRow(enum.Enum):
    """Which statement writes a poll: each store maps these to its own SQL."""

    SUCCESS = "success"  # snapshot, status and the poll's times
    CONFIRMED = "confirmed"  # only the poll's times: the stored snapshot is the one read
    FAILURE = "failure"  # the poll's time, result and missing flag


def poll_row(poll: PollRecord) -> PollRow:
    """Which statement writes ``poll``."""
    if poll.campaign is None:
        return PollRow.FAILURE
    return PollRow.CONFIRMED if poll.confirms else PollRow.SUCCESS


@dataclass(frozen=True, slots=True)
class RowEncoder:
    """Parameters of the INSERT/UPSERT statements; ``ts`` and ``dumps`` bind times and JSON."""

    ts: Callable[[dt.datetime], Any]
    dumps: Callable[[Any], str]

    def poll(self, poll: PollRecord) -> dict[str, Any]:
        params: dict[str, Any] = {
            "account": poll.key.account,
            "campaign_id": poll.key.campaign_id,
            "polled_at": self.ts(poll.polled_at),
            "result": poll.result,
            "missing": poll.missing,
        }
        if poll.campaign is not None and not poll.confirms:
            params["snapshot"] = self.dumps(campaign_to_dict(poll.campaign))
            params["status"] = poll.campaign.status
        return params

    def transition(self, t: Transition) -> tuple[Any, ...]:
        snapshot = None if t.campaign is None else self.dumps(campaign_to_dict(t.campaign))
        return (t.account, t.campaign_id, t.seq, t.from_status, t.to_status, t.kind.value,
                self.ts(t.observed_at), snapshot)  # fmt: skip

    def discovered(self, r: DiscoveredRecord) -> tuple[Any, ...]:
        c = r.campaign
        return (c.account, c.campaign_id, self.dumps(campaign_to_dict(c)), r.watched,
                self.ts(r.first_seen), self.ts(r.last_seen))  # fmt: skip

    def device_counts(self, c: DeviceCounts) -> tuple[Any, ...]:
        return (c.key.account, c.key.campaign_id, self.ts(c.polled_at), c.campaign_status,
                c.reported_total, self.dumps(c.counts))  # fmt: skip

    def outbox(self, m: OutboxMessage) -> tuple[Any, ...]:
        created = self.ts(m.created_at)
        return (m.sink, m.dedup_key, self.dumps(dict(m.payload)), created, created)
