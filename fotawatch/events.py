"""What the engine tells the rest of fotawatch: events and the hub that fans them out.

The poller, the auth layer and the scheduler emit; logging, metrics and alert conditions
subscribe. Subscribers are plain callables run synchronously on the event loop, so a subscriber
sees events in the order they happened and must not block. A failing subscriber is reported
through ``on_error`` and never breaks the emitter or the other subscribers.

Durable alerting does not hang off this hub: transition alerts are written to the outbox in the
same store transaction as the transition (see ``poller``). The hub is for everything that may be
lost with the process: logs, metrics, in-memory conditions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from fotawatch.devices import DeviceCounts
from fotawatch.model import Campaign, CampaignKey, Transition

__all__ = [
    "ApiHealthChanged",
    "AuthRequest",
    "CampaignHealthChanged",
    "CampaignMissing",
    "CampaignPolled",
    "CampaignsDiscovered",
    "DevicesPolled",
    "Event",
    "EventHub",
    "LoginCircuitChanged",
    "PollSkipped",
    "PollingStopped",
    "TransitionObserved",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignPolled:
    """A poll finished. ``result`` is ``ok`` or an ``ApiError.result`` label."""

    key: CampaignKey
    result: str
    duration: float
    at: dt.datetime
    campaign: Campaign | None = None
    status_since: dt.datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransitionObserved:
    """A status change was recorded (exactly once) in the store."""

    transition: Transition
    name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignMissing:
    """The API started (``missing=True``) or stopped saying the campaign does not exist."""

    key: CampaignKey
    missing: bool
    at: dt.datetime
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignHealthChanged:
    """Polling one campaign started failing or recovered (edge-triggered)."""

    key: CampaignKey
    healthy: bool
    result: str
    at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiHealthChanged:
    """Every poll has been failing for ``api_down_after`` (``up=False``), or one succeeded again."""

    up: bool
    at: dt.datetime
    since: dt.datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthRequest:
    """A token or session request was made. kind: oauth|session; result: ok|rejected|error."""

    kind: str
    result: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginCircuitChanged:
    """Logins were suspended (``open=True``) to protect the account, or allowed again."""

    open: bool
    reason: str
    at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PollingStopped:
    """A campaign's final status was confirmed; it is no longer polled."""

    key: CampaignKey
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PollSkipped:
    """A campaign's poll was due while its previous poll was still running, so it was skipped:
    more work than ``requests_per_second`` and ``max_concurrency`` allow, or a slow API."""

    key: CampaignKey


@dataclass(frozen=True, slots=True, kw_only=True)
class DevicesPolled:
    """A device-report poll finished; ``counts`` is set when it succeeded (then it is durable).

    ``result`` is ``ok``, an ``ApiError.result`` label or ``bad_cursor``; ``notified`` says that
    outbox rows (milestones) were committed with the counts.
    """

    key: CampaignKey
    result: str
    duration: float
    at: dt.datetime
    counts: DeviceCounts | None = None
    changed: int = 0
    notified: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignsDiscovered:
    """Discovery of one account finished and started watching ``added`` (maybe none)."""

    account: str
    added: tuple[CampaignKey, ...]
    at: dt.datetime
    notified: bool = False


Event = (
    CampaignPolled
    | TransitionObserved
    | CampaignMissing
    | CampaignHealthChanged
    | ApiHealthChanged
    | AuthRequest
    | LoginCircuitChanged
    | PollingStopped
    | PollSkipped
    | DevicesPolled
    | CampaignsDiscovered
)
Subscriber = Callable[[Event], None]


class EventHub:
    """Synchronous fan-out of events to subscribers."""

    def __init__(self, on_error: Callable[[Subscriber, Event, Exception], None]) -> None:
        self._subscribers: list[Subscriber] = []
        self._on_error = on_error

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception as err:  # noqa: BLE001 - a broken sink must not break polling
                self._on_error(subscriber, event, err)
