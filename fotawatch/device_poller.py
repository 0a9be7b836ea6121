"""Poll a campaign's device report: page through it, aggregate, persist, emit.

One device poll reads every page of ``GET /reports/{acc}/campaigns/{id}/devices`` (at most 1,000
devices a page, ``lastSeenDeviceId=0`` first, then the returned cursor while ``hasMoreData``).
The cursor must move strictly forward ("only devices with IMEIs larger than this value"): one that
repeats, goes backwards or is missing while more data is promised, or a report longer than
``max_pages``, abandons the round with ``PagingError`` (result ``bad_cursor``). The round is never
looped on: it is logged once (edge-triggered per campaign), counted through ``DevicesPolled``,
and the previous counts stay in force. Partial counts are never published.

A complete round is aggregated (``fotawatch.devices``), diffed against the stored device statuses
and written in ONE store transaction: the counts row, the changed device rows and any milestone
messages. Only then are ``latest`` (read by /metrics, alerts and status) and the event updated:
counts are never shown before they are durable.

``DeviceWatch`` (``device_watch.py``) decides which campaigns are polled, and when.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

import structlog

from fotawatch.devices import DeviceCounts, aggregate, device_status_label, diff
from fotawatch.errors import ApiError, PagingError, StoreError
from fotawatch.events import DevicesPolled, Event
from fotawatch.model import CampaignKey, is_final
from fotawatch.store.base import DevicePollRecord, OutboxMessage, Store
from fotawatch.thingspace.client import ThingSpaceClient

__all__ = [
    "KEEP_DAYS",
    "KEEP_POLLS",
    "MAX_DEVICE_PAGES",
    "DevicePoller",
    "DeviceReport",
    "fetch_devices",
]

log = structlog.get_logger("fotawatch.devices")
MAX_DEVICE_PAGES = 500  # 500,000 devices: far beyond any campaign, well short of a runaway loop
KEEP_POLLS = 2000  # counts rows kept per campaign: about three weeks at the default 15 minutes
KEEP_DAYS = 90  # and none older than this, whatever the campaign
# (previous counts or None, new counts, campaign name) -> outbox rows to commit with the counts
ProgressOutbox = Callable[[DeviceCounts | None, DeviceCounts, str | None], Sequence[OutboxMessage]]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceReport:
    """Every page of one campaign's device report, read to the end."""

    statuses: dict[str, str]  # device id -> status (a device listed twice: its last status)
    reported_total: int | None
    pages: int


def _advances(cursor: str, previous: str) -> bool:
    """IMEIs compare as numbers; anything else as text."""
    if cursor.isdigit() and previous.isdigit():
        return int(cursor) > int(previous)
    return cursor > previous


async def fetch_devices(
    client: ThingSpaceClient, key: CampaignKey, *, max_pages: int = MAX_DEVICE_PAGES
) -> DeviceReport:
    """Read the whole device report; ``PagingError`` when the cursor does not advance."""
    statuses: dict[str, str] = {}
    total: int | None = None
    cursor = "0"
    for page_number in range(1, max_pages + 1):
        page = await client.get_device_page(key.account, key.campaign_id, cursor)
        total = page.total_device if page.total_device is not None else total
        statuses.update((d, device_status_label(s)) for d, s in page.devices)
        if not page.has_more:
            return DeviceReport(statuses=statuses, reported_total=total, pages=page_number)
        following = page.last_seen_device_id
        if following is None or not _advances(following, cursor):
            how = "missing" if following is None else "not advancing"
            raise PagingError(f"device report {key}: cursor {how} after page {page_number}")
        cursor = following
    raise PagingError(f"device report {key}: more than {max_pages} pages")


class DevicePoller:
    """Polls device reports and keeps the newest counts per campaign; one per daemon."""

    def __init__(  # noqa: PLR0913 - collaborators are injected, not constructed
        self,
        client: Callable[[], ThingSpaceClient],
        store: Store,
        emit: Callable[[Event], None],
        *,
        outbox_for: ProgressOutbox = lambda _p, _c, _n: (),
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        keep: int = KEEP_POLLS,
        keep_days: float = KEEP_DAYS,
        max_pages: int = MAX_DEVICE_PAGES,
    ) -> None:
        self._client = client
        self.store = store
        self._emit = emit
        self._outbox_for = outbox_for
        self._wall = wall
        self._keep, self._keep_for = max(1, keep), dt.timedelta(days=keep_days)
        self._max_pages = max_pages
        self.latest: dict[CampaignKey, DeviceCounts] = {}
        self._keys: set[CampaignKey] | None = None  # None: every campaign is welcome
        self._failing: dict[CampaignKey, str] = {}
        self._store_failing = False

    async def load(self) -> None:
        """Take the store's newest counts (restarts keep progress and milestone baselines)."""
        latest = await self.store.latest_device_counts()
        self.latest = {k: c for k, c in latest.items() if self._keys is None or k in self._keys}

    def sync(self, keys: Collection[CampaignKey]) -> None:
        """The watched campaigns (start, reload, discovery): counts of the others vanish."""
        self._keys = set(keys)
        self.latest = {k: c for k, c in self.latest.items() if k in self._keys}
        for gone in set(self._failing) - self._keys:
            del self._failing[gone]

    def counts(self, key: CampaignKey) -> DeviceCounts | None:
        """The newest durable counts of a campaign, if any."""
        return self.latest.get(key)

    def snapshots(self) -> Iterable[DeviceCounts]:
        """Every campaign's newest counts, for /metrics (no I/O)."""
        return self.latest.values()

    async def poll(
        self, key: CampaignKey, *, campaign_status: str | None, name: str | None = None
    ) -> str:
        """Poll one campaign's devices once; returns the result. Never raises for API or
        store trouble: it is logged (edge-triggered) and counted."""
        started = time.perf_counter()
        try:
            report = await fetch_devices(self._client(), key, max_pages=self._max_pages)
        except ApiError as err:
            return self._failed(key, err, started)
        try:
            counts, changed, notified = await self._record(key, report, campaign_status, name)
        except StoreError as err:
            if not self._store_failing:
                log.error("device_store_write_failed", error=str(err), campaign=str(key))  # noqa: TRY400
            self._store_failing = True
            return "store_error"
        if self._store_failing:
            log.info("device_store_write_recovered")
            self._store_failing = False
        self._recovered(key)
        if self._keys is not None and key not in self._keys:
            return "removed"  # while it was polled: its counts are stored, not published
        self.latest[key] = counts
        self._emit(DevicesPolled(key=key, result="ok", duration=time.perf_counter() - started,
                                 at=counts.polled_at, counts=counts, changed=changed,
                                 notified=notified))  # fmt: skip
        return "ok"

    async def _record(
        self, key: CampaignKey, report: DeviceReport, campaign_status: str | None,
        name: str | None,
    ) -> tuple[DeviceCounts, int, bool]:  # fmt: skip
        now = self._wall()
        counts = DeviceCounts(key=key, polled_at=now, campaign_status=campaign_status,
                              counts=aggregate(report.statuses.values()),
                              reported_total=report.reported_total)  # fmt: skip
        changes = diff(await self.store.device_statuses(key), report.statuses)
        outbox = self._outbox_for(self.latest.get(key), counts, name)
        final = campaign_status is not None and is_final(campaign_status)
        record = DevicePollRecord(counts=counts, changed=changes.changed, removed=changes.removed,
                                  forget_devices=final)  # fmt: skip
        await self.store.record_devices(record, outbox, keep=self._keep, since=now - self._keep_for)
        log.debug("campaign_devices_polled", campaign=str(key), progress=counts.summary(),
                  changed=len(changes.changed), removed=len(changes.removed),
                  pages=report.pages)  # fmt: skip
        return counts, len(changes.changed) + len(changes.removed), bool(outbox)

    def _failed(self, key: CampaignKey, err: ApiError, started: float) -> str:
        if self._failing.get(key) != err.result:
            event = "device_report_bad_cursor" if isinstance(err, PagingError) else (
                "device_poll_failing")  # fmt: skip
            log.warning(event, campaign=str(key), result=err.result, error=str(err))
            self._failing[key] = err.result
        self._emit(DevicesPolled(key=key, result=err.result, at=self._wall(),
                                 duration=time.perf_counter() - started))  # fmt: skip
        return err.result

    def _recovered(self, key: CampaignKey) -> None:
        if self._failing.pop(key, None) is not None:
            log.info("device_poll_recovered", campaign=str(key))
