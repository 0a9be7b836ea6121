"""The alert service: one sink per configured destination, fed by transitions and conditions.

Wiring (``app.py``): the poller gets ``outbox_for`` so a transition's outbox rows commit in the
same transaction as the transition; the hub gets ``on_event``, which wakes the dispatchers after
a transition was committed and feeds the ``ConditionTracker``; ``prime`` seeds the tracker from
the stored campaigns; ``async with service`` runs one ``Dispatcher`` per sink, the queue that
writes condition messages to the outbox, and the periodic ``check`` of the time-based
conditions. Leaving the block cancels them at once: a send in flight is abandoned and its rows
stay pending, to be sent after the restart (at-least-once).

``on_event`` never blocks: the tracker is pure and fast, and its payloads go through an
in-memory queue that a task writes with ``Store.enqueue`` (retrying while the store fails).

Device progress: ``progress_of`` (set by ``app.py`` to the device poller's ``counts``) puts
"1,234 / 2,689 upgraded, 12 failed" into transition alerts; ``progress_outbox`` (given to the
device poller) turns milestones reached into outbox rows committed with the device counts;
``notice_outbox`` (given to discovery) does the same for "now watching" messages. Both go to the
sinks whose ``notices`` is true, and ``on_event`` wakes the dispatchers once they are committed.

``send_test`` (``fotawatch test-alert``) posts a test message to every sink directly, not
through the outbox, and reports "delivered" or why not per sink.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
import structlog

from fotawatch.alerts.conditions import CampaignState, ConditionRules, ConditionTracker
from fotawatch.alerts.outbox import DeliveryPolicy, Dispatcher, NotificationMetrics
from fotawatch.alerts.payloads import (
    Progress,
    dedup_key,
    milestone_payload,
    test_payload,
    transition_payload,
)
from fotawatch.alerts.senders import DEFAULT_TIMEOUT, Sender, SlackSender, WebhookSender
from fotawatch.config.models import AlertsSettings, TransitionFilter
from fotawatch.devices import DeviceCounts, milestones_reached
from fotawatch.errors import StoreError
from fotawatch.events import CampaignsDiscovered, DevicesPolled, Event, TransitionObserved
from fotawatch.model import CampaignKey, Transition
from fotawatch.store.base import OutboxMessage, Store

__all__ = ["AlertService", "build_senders", "delivery_policy", "progress", "send_test"]

log = structlog.get_logger("fotawatch.alerts")
Clock = Callable[[], dt.datetime]
Sleep = Callable[[float], Awaitable[None]]
CHECK_INTERVAL = 30.0  # seconds between evaluations of the time-based conditions


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_senders(
    settings: AlertsSettings,
    session: aiohttp.ClientSession,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    clock: Clock = _utcnow,
) -> list[tuple[TransitionFilter, Sender]]:
    """One sender per configured sink, with the settings that filter what it receives."""
    sinks: list[tuple[TransitionFilter, Sender]] = []
    if settings.slack is not None:
        slack = settings.slack
        sender = SlackSender(session, slack.webhook_url.get_secret_value(),
                             mention_on_failure=slack.mention_on_failure, timeout=timeout,
                             clock=clock)  # fmt: skip
        sinks.append((slack, sender))
    for hook in settings.webhooks:
        headers = {name: value.get_secret_value() for name, value in hook.headers.items()}
        hook_sender = WebhookSender(session, hook.url.get_secret_value(), name=hook.name,
                                    headers=headers, timeout=timeout, clock=clock)  # fmt: skip
        sinks.append((hook, hook_sender))
    return sinks


def delivery_policy(settings: AlertsSettings) -> DeliveryPolicy:
    """The dispatchers' policy from config (pacing and max age); the rest are defaults."""
    return DeliveryPolicy(min_interval=settings.min_interval_seconds, max_age=settings.max_age)


def _rules(settings: AlertsSettings) -> ConditionRules:
    stuck = {str(status): float(limit) for status, limit in settings.stuck_after.items()
             if limit is not None}  # fmt: skip
    failure = settings.failure_rate
    return ConditionRules(stuck_after=stuck, not_scheduled_by_start=settings.not_scheduled_by_start,
                          overdue_after=settings.overdue_after,
                          failure_threshold=failure.threshold if failure else None,
                          failure_min_devices=failure.min_devices if failure else 1)  # fmt: skip


def progress(counts: DeviceCounts) -> Progress:
    """The ``progress`` of a payload from device counts."""
    return Progress(upgraded=counts.upgraded, total=counts.total, failed=counts.failed)


async def _test_one(sender: Sender, now: dt.datetime) -> str:
    body, _ = sender.render([test_payload(now)])
    return (await sender.send(body)).describe()


async def _send_tests(senders: Sequence[Sender], now: dt.datetime) -> dict[str, str]:
    outcomes = await asyncio.gather(*(_test_one(s, now) for s in senders))
    return {s.name: outcome for s, outcome in zip(senders, outcomes, strict=True)}


async def send_test(
    settings: AlertsSettings,
    session: aiohttp.ClientSession,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a per-request budget, not a wait
    clock: Clock = _utcnow,
) -> dict[str, str]:
    """``fotawatch test-alert``: post a test message to every sink; {sink: outcome}."""
    senders = [s for _, s in build_senders(settings, session, timeout=timeout, clock=clock)]
    return await _send_tests(senders, clock())


@dataclass(frozen=True, slots=True)
class _Sink:
    filter: TransitionFilter
    dispatcher: Dispatcher


class AlertService:
    """Sinks, their dispatchers and the condition tracker; ``async with`` runs them."""

    def __init__(  # noqa: PLR0913 - collaborators are injected, not constructed
        self,
        settings: AlertsSettings,
        store: Store,
        session: aiohttp.ClientSession,
        *,
        metrics: NotificationMetrics | None = None,
        clock: Clock = _utcnow,
        sleep: Sleep = asyncio.sleep,
        policy: DeliveryPolicy | None = None,
        sender_timeout: float = DEFAULT_TIMEOUT,
        check_interval: float = CHECK_INTERVAL,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.tracker = ConditionTracker(_rules(settings))
        self.milestones = settings.milestones
        self.progress_of: Callable[[CampaignKey], DeviceCounts | None] = lambda _key: None
        self._clock, self._sleep, self._check_interval = clock, sleep, check_interval
        policy = policy or delivery_policy(settings)
        self.sinks: dict[str, _Sink] = {}
        for sink_filter, sender in build_senders(settings, session, timeout=sender_timeout,
                                                 clock=clock):  # fmt: skip
            dispatcher = Dispatcher(sender, store, policy, metrics=metrics, clock=clock,
                                    sleep=sleep, rng=rng)  # fmt: skip
            self.sinks[sender.name] = _Sink(sink_filter, dispatcher)
        self._queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        self._storing: list[OutboxMessage] = []
        self._tasks: list[asyncio.Task[None]] = []
        # Seconds the exit waits for sends in flight to be answered and marked, instead of
        # cancelling them: a cancelled send that Slack accepted is sent again later.
        self.drain_seconds = 0.0

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(s.dispatcher.run(), name=f"fotawatch-alerts-{name}")
            for name, s in self.sinks.items()
        ]
        self._tasks.append(loop.create_task(self._store_conditions(), name="fotawatch-conditions"))
        self._tasks.append(loop.create_task(self._check_loop(), name="fotawatch-condition-check"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.drain_seconds > 0:
            for s in self.sinks.values():
                s.dispatcher.finish()
            dispatching = self._tasks[: len(self.sinks)]
            if dispatching:
                await asyncio.wait(dispatching, timeout=self.drain_seconds)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._flush()

    # --- inputs -----------------------------------------------------------------------------

    def outbox_for(self, transition: Transition, name: str | None) -> list[OutboxMessage]:
        """The outbox rows of a transition: one per sink whose filter accepts it."""
        counts = self.progress_of(transition.key)
        payload = transition_payload(
            transition, name=name, progress=progress(counts) if counts is not None else None
        )
        key, now = dedup_key(payload), self._clock()
        return [
            OutboxMessage(sink=sink, dedup_key=key, payload=payload, created_at=now)
            for sink, s in self.sinks.items()
            if s.filter.accepts(transition.kind, transition.to_status)
        ]

    def progress_outbox(
        self, previous: DeviceCounts | None, current: DeviceCounts, name: str | None
    ) -> list[OutboxMessage]:
        """The milestone messages of a device poll (``milestones`` reached since ``previous``)."""
        now, done = current.polled_at, progress(current)
        payloads = [
            milestone_payload(current.key, name=name, milestone=m, progress=done, observed_at=now)
            for m in milestones_reached(previous, current, self.milestones)
        ]
        return [message for p in payloads for message in self.notice_outbox(p)]

    def notice_outbox(self, payload: Mapping[str, Any]) -> list[OutboxMessage]:
        """A milestone or "now watching" payload as outbox rows: one per sink with notices."""
        key, now = dedup_key(payload), self._clock()
        return [
            OutboxMessage(sink=sink, dedup_key=key, payload=payload, created_at=now)
            for sink, s in self.sinks.items()
            if s.filter.notices
        ]

    def on_event(self, event: Event) -> None:
        """Hub subscriber: wake the dispatchers after a transition, track conditions."""
        if isinstance(event, TransitionObserved) or (
            isinstance(event, DevicesPolled | CampaignsDiscovered) and event.notified
        ):
            self.wake()  # its outbox rows were committed with it
        payloads = self.tracker.observe(event, self._clock())
        if payloads:
            self._queue.put_nowait(payloads)

    def prime(
        self,
        states: Iterable[CampaignState],
        devices: Mapping[CampaignKey, DeviceCounts] | None = None,
    ) -> None:
        """Seed the conditions from the stored campaigns (``poller.views.values()``) and their
        stored device counts (``device_poller.latest``)."""
        payloads = self.tracker.prime(states, self._clock(), devices)
        if payloads:
            self._queue.put_nowait(payloads)

    def wake(self) -> None:
        """New outbox rows were committed: every dispatcher looks now."""
        for s in self.sinks.values():
            s.dispatcher.wake()

    def depths(self) -> dict[str, int]:
        """Pending rows per sink as of each dispatcher's last pass (no I/O)."""
        return {name: s.dispatcher.depth for name, s in self.sinks.items()}

    async def send_test(self) -> dict[str, str]:
        """Post a test message to every sink directly (not through the outbox)."""
        senders = [s.dispatcher.sender for s in self.sinks.values()]
        return await _send_tests(senders, self._clock())

    # --- condition messages -----------------------------------------------------------------

    def _messages(self, payloads: Sequence[dict[str, Any]]) -> list[OutboxMessage]:
        now = self._clock()
        return [
            OutboxMessage(sink=sink, dedup_key=dedup_key(p), payload=p, created_at=now)
            for p in payloads
            for sink, s in self.sinks.items()
            if s.filter.conditions
        ]

    async def _store_conditions(self) -> None:
        """Write queued condition messages in order; while the store fails, keep retrying."""
        while True:
            payloads = await self._queue.get()
            self._storing = self._messages(payloads)
            while self._storing:
                try:
                    await self.store.enqueue(self._storing)
                except StoreError as err:
                    log.error("alert_enqueue_failed", error=str(err), retry_in=5.0)  # noqa: TRY400
                    await self._sleep(5.0)
                    continue
                self._wake_for(self._storing)
                self._storing = []

    def _wake_for(self, messages: Sequence[OutboxMessage]) -> None:
        for sink in {m.sink for m in messages}:
            self.sinks[sink].dispatcher.wake()

    async def _flush(self) -> None:
        """At shutdown: store what is still queued, once, without retries."""
        pending = list(self._storing)
        while not self._queue.empty():
            pending += self._messages(self._queue.get_nowait())
        self._storing = []
        if not pending:
            return
        try:
            await self.store.enqueue(pending)
        except StoreError as err:
            log.error("alert_enqueue_failed_at_stop", error=str(err), lost=len(pending))  # noqa: TRY400

    async def _check_loop(self) -> None:
        while True:
            await self._sleep(self._check_interval)
            payloads = self.tracker.check(self._clock())
            if payloads:
                self._queue.put_nowait(payloads)
