"""Poll one campaign: fetch, classify, persist, emit. The only place where logic meets I/O.

Per poll: the client fetches the campaign; the pure state machine compares it with the baseline
(what the store last recorded); the store records the poll, the transition and its outbox rows in
one transaction; only then is the in-memory view updated and the events emitted. If the store
write fails, the baseline is left as it was, so the next poll observes the same change again and
records it then: a change is never considered seen until it is durable. Likewise a campaign
added while running (config reload, discovery) takes its baseline (status, last ``seq``) from the
store before its first poll: it may have been watched before, and starting from nothing would
take a change made meanwhile for a first sight and reuse ``seq`` numbers the store already holds
(so later transitions would be dropped as already recorded).

Only changes must be durable before they count as seen: a poll that merely confirms the stored
campaign is buffered and written with others in one transaction within ``FLUSH_SECONDS`` (one
commit per burst instead of one per poll; a crash loses at most the "last polled" times of that
second, never a transition or an alert), and it writes only its times, not the snapshot again.

Health is edge-triggered, as in Home Assistant's DataUpdateCoordinator: one log line when a
campaign (or the whole API) starts failing, one when it recovers, nothing in between.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import structlog

from fotawatch import statemachine
from fotawatch.errors import ApiError, CampaignMissingError, StoreError
from fotawatch.events import (
    ApiHealthChanged,
    CampaignHealthChanged,
    CampaignMissing,
    CampaignPolled,
    Event,
    TransitionObserved,
)
from fotawatch.model import Campaign, CampaignKey, Transition, is_final
from fotawatch.store.base import CampaignRecord, OutboxMessage, PollRecord, Store
from fotawatch.thingspace.client import ThingSpaceClient

__all__ = ["ApiHealth", "CampaignView", "PollOutcome", "Poller", "Target"]

log = structlog.get_logger("fotawatch.poller")
OutboxFor = Callable[[Transition, str | None], Sequence[OutboxMessage]]
FLUSH_SECONDS = 1.0  # how long a poll that changed nothing may wait to be written
FLUSH_ROWS = 500  # ... or how many of them make a batch
# Failures that say "the API is not there", as opposed to "this campaign has a problem".
_OUTAGE_RESULTS = frozenset({"timeout", "connection_error", "http_5xx", "rate_limited"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A campaign to poll, as the config (or discovery) names it."""

    key: CampaignKey
    name: str | None = None
    interval: float = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PollOutcome:
    """What the scheduler needs to know after a poll."""

    result: str
    status: str | None
    missing: bool = False

    @property
    def final(self) -> bool:
        return self.status is not None and is_final(self.status)


@dataclass(frozen=True, slots=True, kw_only=True, weakref_slot=True)
class CampaignView:
    """The in-memory state of one campaign: read by /metrics and the status page, never mutated
    in place (replaced whole), so a reader never sees half an update."""

    key: CampaignKey
    name: str | None
    campaign: Campaign | None
    status: str | None
    status_since: dt.datetime | None
    last_seq: int
    last_poll_at: dt.datetime | None = None
    last_result: str | None = None
    last_success_at: dt.datetime | None = None
    missing: bool = False
    healthy: bool = True
    polling: bool = True

    @property
    def display_name(self) -> str:
        return self.name or (self.campaign.name if self.campaign else None) or self.key.campaign_id

    @classmethod
    def from_record(cls, record: CampaignRecord, name: str | None) -> CampaignView:
        return cls(
            key=record.key,
            name=name,
            campaign=record.campaign,
            status=record.status,
            status_since=record.status_since,
            last_seq=record.last_seq,
            last_poll_at=record.last_poll_at,
            last_result=record.last_poll_result,
            last_success_at=record.last_success_at,
            missing=record.missing,
            healthy=record.last_poll_result in (None, "ok"),
        )


class ApiHealth:
    """Edge-triggered view of the whole API: down after every poll failed for ``down_after``."""

    def __init__(self, down_after: float, emit: Callable[[Event], None]) -> None:
        self.down_after = down_after
        self._emit = emit
        self.failing_since: dt.datetime | None = None
        self.up = True

    def observe(self, result: str, at: dt.datetime) -> None:
        if result not in _OUTAGE_RESULTS:
            if self.failing_since is not None:
                log.info("thingspace_api_recovered", failing_since=self.failing_since.isoformat())
            if not self.up:
                self._emit(ApiHealthChanged(up=True, at=at, since=self.failing_since))
            self.failing_since, self.up = None, True
            return
        if self.failing_since is None:
            self.failing_since = at
            log.warning("thingspace_api_failing", result=result)
        down_for = (at - self.failing_since).total_seconds()
        if self.up and down_for >= self.down_after:
            self.up = False
            log.error("thingspace_api_down", seconds=round(down_for), result=result)
            self._emit(ApiHealthChanged(up=False, at=at, since=self.failing_since))


class Poller:
    """Polls campaigns and keeps the views; one instance per daemon."""

    def __init__(  # noqa: PLR0913 - collaborators are injected, not constructed
        self,
        client: ThingSpaceClient,
        store: Store,
        emit: Callable[[Event], None],
        *,
        api_health: ApiHealth,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        outbox_for: OutboxFor = lambda _t, _n: (),
    ) -> None:
        self.client = client
        self.store = store
        self.views: dict[CampaignKey, CampaignView] = {}
        self.api_health = api_health
        self._emit = emit
        self._wall = wall
        self._outbox_for = outbox_for
        self._store_failing = False
        self._pending: list[PollRecord] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._unloaded: set[CampaignKey] = set()  # views still without their stored baseline

    async def load(self, targets: Sequence[Target]) -> None:
        """Take the store's state as the baseline for the configured campaigns."""
        records = await self.store.load()
        self.views = {}
        self.sync(targets, records)

    def sync(
        self, targets: Sequence[Target], records: dict[CampaignKey, CampaignRecord] | None = None
    ) -> None:
        """Keep views for exactly ``targets`` (config reload), creating the new ones.

        Without ``records`` a new view is only a placeholder: ``poll`` reads its baseline from
        the store first.
        """
        views: dict[CampaignKey, CampaignView] = {}
        for t in targets:
            old = self.views.get(t.key)
            if old is not None:
                views[t.key] = replace(old, name=t.name)
            elif records is not None and t.key in records:
                views[t.key] = CampaignView.from_record(records[t.key], t.name)
            else:
                if records is None:
                    self._unloaded.add(t.key)
                views[t.key] = CampaignView(
                    key=t.key,
                    name=t.name,
                    campaign=None,
                    status=None,
                    status_since=None,
                    last_seq=0,
                )
        self.views = views
        self._unloaded &= views.keys()
        self.client.retain(views.keys())

    async def poll(self, target: Target) -> PollOutcome:
        """Poll one campaign once. Never raises for API or store trouble: it is counted."""
        started = time.perf_counter()
        view = self.views.get(target.key)
        if view is None:  # removed by a reload while its job was due
            return PollOutcome(result="removed", status=None)
        if target.key in self._unloaded:
            loaded = await self._load_baseline(view)
            if loaded is None:
                return PollOutcome(result="store_error", status=None)
            view = loaded
        try:
            campaign = await self.client.get_campaign(target.key.account, target.key.campaign_id)
        except CampaignMissingError as err:
            return await self._failed(view, err, started, missing=True)
        except ApiError as err:
            return await self._failed(view, err, started, missing=False)
        return await self._succeeded(view, campaign, started)

    async def _load_baseline(self, view: CampaignView) -> CampaignView | None:
        """The view with the store's record of the campaign, if it has one; None if unreadable."""
        try:
            record = await self.store.get(view.key)
        except StoreError as err:
            log.error("store_read_failed", error=str(err), campaign=str(view.key))  # noqa: TRY400
            return None
        self._unloaded.discard(view.key)
        if record is None or view.key not in self.views:
            return view
        loaded = CampaignView.from_record(record, view.name)
        self.views[view.key] = loaded
        return loaded

    async def _succeeded(
        self, view: CampaignView, campaign: Campaign, started: float
    ) -> PollOutcome:
        now = self._wall()
        transition = statemachine.observe(view.status, view.last_seq, campaign, now)
        outbox = self._outbox_for(transition, view.name) if transition else ()
        # The view holds what the store holds (a write that failed left the view as it was), so
        # a campaign equal to it is a confirmation: only its times are written, in the next
        # batch (at most FLUSH_SECONDS away). Anything else, a new status or any other field,
        # is written at once and must be durable before it counts as seen.
        confirms = campaign == view.campaign and not view.missing
        poll = PollRecord(
            key=view.key, polled_at=now, result="ok", campaign=campaign, transition=transition,
            confirms=confirms,
        )  # fmt: skip
        changed = campaign.status != view.status
        if not await self._write(poll, outbox, urgent=transition is not None or not confirms):
            return PollOutcome(result="store_error", status=view.status)
        new = replace(
            view,
            campaign=campaign,
            status=campaign.status,
            status_since=now if changed else view.status_since,
            last_seq=transition.seq if transition else view.last_seq,
            last_poll_at=now,
            last_result="ok",
            last_success_at=now,
            missing=False,
            healthy=True,
        )
        self._publish(view, new, "ok", started)
        if transition is not None:
            self._log_transition(transition, new)
            self._emit(TransitionObserved(transition=transition, name=view.name))
        return PollOutcome(result="ok", status=campaign.status)

    async def _failed(
        self, view: CampaignView, err: ApiError, started: float, *, missing: bool
    ) -> PollOutcome:
        now = self._wall()
        stored_result = "missing" if missing else err.result
        poll = PollRecord(key=view.key, polled_at=now, result=stored_result, missing=missing)
        await self._write(poll, (), urgent=missing != view.missing)
        new = replace(
            view, last_poll_at=now, last_result=stored_result, missing=missing, healthy=missing
        )
        self._publish(view, new, err.result, started, error=err)
        return PollOutcome(result=err.result, status=view.status, missing=missing)

    async def _write(
        self, poll: PollRecord, outbox: Sequence[OutboxMessage], *, urgent: bool
    ) -> bool:
        """Persist a poll: at once (with everything buffered) if urgent, else in the next batch."""
        if not urgent:
            self._pending.append(poll)
            if len(self._pending) >= FLUSH_ROWS:
                await self.flush()
            elif self._flush_timer is None:
                loop = asyncio.get_running_loop()
                self._flush_timer = loop.call_later(FLUSH_SECONDS, self._flush_soon)
            return True
        batch, self._pending = [*self._pending, poll], []
        return await self._commit(batch, outbox)

    def _flush_soon(self) -> None:
        self._flush_timer = None
        task = asyncio.get_running_loop().create_task(self.flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def flush(self) -> None:
        """Write the buffered polls now (one transaction)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        batch, self._pending = self._pending, []
        if batch:
            await self._commit(batch, ())

    async def close(self) -> None:
        """Flush what is buffered; called once polling has stopped."""
        await self.flush()
        if self._flushes:
            await asyncio.wait(set(self._flushes))

    async def _commit(self, batch: Sequence[PollRecord], outbox: Sequence[OutboxMessage]) -> bool:
        try:
            await self.store.record(batch, outbox)
        except StoreError as err:
            if not self._store_failing:
                log.error("store_write_failed", error=str(err), polls=len(batch))  # noqa: TRY400
            self._store_failing = True
            return False
        if self._store_failing:
            log.info("store_write_recovered")
            self._store_failing = False
        return True

    def _publish(
        self,
        old: CampaignView,
        new: CampaignView,
        result: str,
        started: float,
        error: ApiError | None = None,
    ) -> None:
        """Swap in the new view, then tell the subscribers (edge-triggered health)."""
        current = self.views.get(new.key)
        if current is None:  # removed by a reload during the poll
            return
        if current.name != new.name:  # renamed by a reload during the poll: the reload wins
            new = replace(new, name=current.name)
        self.views[new.key] = new
        at = new.last_poll_at or self._wall()
        self._emit(
            CampaignPolled(
                key=new.key,
                result=result,
                at=at,
                duration=time.perf_counter() - started,
                campaign=new.campaign,
                status_since=new.status_since,
            )
        )
        self.api_health.observe(result, at)
        if new.missing != old.missing:
            log.warning(
                "campaign_missing" if new.missing else "campaign_found",
                campaign=str(new.key),
                name=new.name,
            )
            self._emit(CampaignMissing(key=new.key, missing=new.missing, at=at, name=new.name))
        if new.healthy != old.healthy:
            self._log_health(new, result, error)
            self._emit(
                CampaignHealthChanged(key=new.key, healthy=new.healthy, result=result, at=at)
            )

    @staticmethod
    def _log_health(view: CampaignView, result: str, error: ApiError | None) -> None:
        if view.healthy:
            log.info("campaign_poll_recovered", campaign=str(view.key), name=view.name)
        else:
            log.warning(
                "campaign_poll_failing",
                campaign=str(view.key),
                name=view.name,
                result=result,
                error=str(error) if error else None,
            )

    @staticmethod
    def _log_transition(t: Transition, view: CampaignView) -> None:
        log.info(
            "campaign_transition",
            campaign=str(t.key),
            name=view.display_name,
            from_status=t.from_status,
            to_status=t.to_status,
            kind=t.kind.value,
            seq=t.seq,
        )
