"""The store interface: what fotawatch remembers between polls and across restarts.

A store keeps, per campaign, the last snapshot and status with the time it was entered, the last
poll's time and result; an append-only transition history keyed by (account, campaign_id, seq) so a
transition is never recorded twice; and the alert outbox, written in the same transaction as the
transitions that caused it, so a crash between seeing a change and sending it loses nothing.

Device progress (``record_devices``) keeps one counts row per device poll, trimmed to the newest
``keep`` per campaign and to ``since``, and each device's last status while the campaign's
devices are polled, so growth is bounded. Discovery (``record_discovered``) keeps one row per
campaign found.

Delivery (``outbox_claim``) reserves a sink's due rows for one ``async with`` block: marks made
through the claim take effect when the block exits normally; a block that raises (or is
cancelled) undoes them, and every row stays pending. With several fotawatch instances on one
PostgreSQL database, two claims never hold the same row. ``outbox_due`` and the
``outbox_delivered``/``outbox_retry``/``outbox_failed`` marks stay for single-process callers.

Implementations: ``sqlite.SqliteStore`` (the persistent default), ``postgres.PostgresStore`` (one
database shared by several instances) and ``memory.MemoryStore`` (a fake with the same semantics
for tests). All methods are coroutines so that a networked store fits the same interface.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fotawatch.devices import DeviceCounts
from fotawatch.model import Campaign, CampaignKey, Transition

__all__ = [
    "CampaignRecord",
    "DevicePollRecord",
    "DiscoveredRecord",
    "OutboxClaim",
    "OutboxMessage",
    "OutboxRow",
    "PollRecord",
    "Store",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignRecord:
    """What the store knows about one campaign."""

    key: CampaignKey
    campaign: Campaign | None  # the last successfully parsed snapshot
    status: str | None  # normalised status of that snapshot; None if never seen
    status_since: dt.datetime | None  # when the current status was first observed
    last_seq: int  # seq of the last recorded transition, 0 if none
    last_poll_at: dt.datetime | None
    last_poll_result: str | None  # "ok" or an ApiError.result label, or "missing"
    last_success_at: dt.datetime | None
    missing: bool  # the API said the campaign does not exist


@dataclass(frozen=True, slots=True, kw_only=True)
class PollRecord:
    """One poll's outcome to persist. ``campaign`` is set when the poll succeeded.

    ``confirms``: the poll read exactly the campaign the store holds, so only the poll's times
    are written (the snapshot, status and ``status_since`` stay); a campaign the store does not
    hold is then left unwritten.
    """

    key: CampaignKey
    polled_at: dt.datetime
    result: str
    campaign: Campaign | None = None
    transition: Transition | None = None
    missing: bool = False
    confirms: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxMessage:
    """A notification waiting for one sink. ``dedup_key`` is unique per sink.

    ``payload`` is the JSON-serialisable event (not the rendered message): the sink renders at send
    time so that piled-up messages can be combined.
    """

    sink: str
    dedup_key: str
    payload: Mapping[str, Any]
    created_at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRow:
    """An outbox message as stored, with its delivery bookkeeping."""

    id: int
    sink: str
    dedup_key: str
    payload: Mapping[str, Any]
    created_at: dt.datetime
    attempts: int
    next_attempt_at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DevicePollRecord:
    """One successful device poll to persist: the counts and the per-device changes."""

    counts: DeviceCounts
    changed: Mapping[str, str] = field(default_factory=dict)  # device id -> new status
    removed: Sequence[str] = ()  # devices no longer in the report
    forget_devices: bool = False  # drop every per-device row (the campaign's last device poll)


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveredRecord:
    """A campaign found by discovery; ``watched`` while fotawatch polls it."""

    campaign: Campaign  # as the campaign history listed it
    watched: bool
    first_seen: dt.datetime
    last_seen: dt.datetime

    @property
    def key(self) -> CampaignKey:
        return self.campaign.key


class OutboxClaim(Protocol):
    """Due rows of one sink reserved for one ``async with Store.outbox_claim(...)`` block.

    The marks take effect when the block exits normally; ids that are not in ``rows`` are
    ignored. If the block raises, nothing marked through the claim takes effect and every row
    stays pending, due again at its ``next_attempt_at``.
    """

    rows: list[OutboxRow]  # the claimed due rows, oldest first (the selection of outbox_due)

    async def delivered(self, ids: Sequence[int], at: dt.datetime) -> None:
        """Mark claimed rows delivered (``Store.outbox_delivered``)."""
        ...

    async def retry(self, ids: Sequence[int], next_attempt_at: dt.datetime) -> None:
        """Count an attempt of claimed rows and postpone them (``Store.outbox_retry``)."""
        ...

    async def failed(self, ids: Sequence[int], reason: str, at: dt.datetime) -> None:
        """Give up on claimed rows (``Store.outbox_failed``)."""
        ...


class Store(Protocol):
    """Persistence for campaign state, transitions and the alert outbox."""

    async def load(self) -> dict[CampaignKey, CampaignRecord]:
        """Every campaign the store knows, for the baseline at start-up."""
        ...

    async def get(self, key: CampaignKey) -> CampaignRecord | None:
        """One campaign's record, or None if never seen."""
        ...

    async def record(
        self, polls: Sequence[PollRecord], outbox: Sequence[OutboxMessage] = ()
    ) -> list[Transition]:
        """Persist a burst of polls and their outbox rows in ONE transaction.

        Returns the transitions that were newly recorded; a transition whose (account,
        campaign_id, seq) already exists is skipped (and so are outbox rows whose (sink,
        dedup_key) already exist). A successful poll updates the snapshot; ``status_since``
        changes only when the status does. A failed poll updates only last_poll_at/result.
        """
        ...

    async def transitions(
        self, campaign_id: str, *, account: str | None = None, limit: int | None = None
    ) -> list[Transition]:
        """Recorded transitions of a campaign, oldest first (the last ``limit`` if given)."""
        ...

    async def forget(self, key: CampaignKey) -> None:
        """Drop a campaign's current state (not its history); used when it leaves the config."""
        ...

    async def enqueue(self, outbox: Sequence[OutboxMessage]) -> int:
        """Add outbox rows outside a poll (conditions); returns how many were new."""
        ...

    async def outbox_due(self, sink: str, now: dt.datetime, limit: int) -> list[OutboxRow]:
        """Undelivered rows of ``sink`` whose next attempt is due, oldest first."""
        ...

    def outbox_claim(
        self, sink: str, now: dt.datetime, limit: int
    ) -> contextlib.AbstractAsyncContextManager[OutboxClaim]:
        """``async with store.outbox_claim(sink, now, limit) as claim``: reserve the due rows.

        ``claim.rows`` are the rows ``outbox_due`` would return, less those another claim holds.
        """
        ...

    async def outbox_delivered(self, ids: Sequence[int], at: dt.datetime) -> None:
        """Mark rows delivered: they are never returned again."""
        ...

    async def outbox_retry(self, ids: Sequence[int], next_attempt_at: dt.datetime) -> None:
        """Count an attempt and postpone the rows until ``next_attempt_at``."""
        ...

    async def outbox_failed(self, ids: Sequence[int], reason: str, at: dt.datetime) -> None:
        """Give up on rows (permanent failure or too old); kept for inspection, never retried."""
        ...

    async def outbox_depth(self, sink: str) -> int:
        """How many rows of ``sink`` wait for delivery."""
        ...

    async def record_devices(
        self,
        poll: DevicePollRecord,
        outbox: Sequence[OutboxMessage] = (),
        *,
        keep: int,
        since: dt.datetime | None = None,
    ) -> None:
        """Persist one device poll and its outbox rows (milestones) in ONE transaction.

        Adds the counts row, keeps the newest ``keep`` counts rows of the campaign (and drops
        every campaign's rows polled before ``since``), upserts the changed devices and deletes
        the removed ones, or with ``forget_devices`` deletes all the campaign's device rows.
        """
        ...

    async def device_statuses(self, key: CampaignKey) -> dict[str, str]:
        """Each device's last stored status (``device id -> status``) for one campaign."""
        ...

    async def device_history(self, key: CampaignKey, *, limit: int = 1000) -> list[DeviceCounts]:
        """The campaign's stored device counts, oldest first (the newest ``limit``)."""
        ...

    async def latest_device_counts(self) -> dict[CampaignKey, DeviceCounts]:
        """The newest device counts of every campaign that has any."""
        ...

    async def record_discovered(
        self, records: Sequence[DiscoveredRecord], outbox: Sequence[OutboxMessage] = ()
    ) -> None:
        """Upsert discovered campaigns (``first_seen`` kept) and outbox rows in ONE transaction."""
        ...

    async def discovered(self, account: str | None = None) -> list[DiscoveredRecord]:
        """Discovered campaigns (of ``account`` if given), oldest first."""
        ...

    async def close(self) -> None:
        """Release the store's resources."""
        ...
