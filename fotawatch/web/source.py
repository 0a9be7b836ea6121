"""What the status page and the JSON API read from the daemon: ``CampaignSource``.

A bundle of callables, so the pages never reach into the daemon: ``views`` and ``polling`` come
from ``health.DaemonState``, ``history`` from the store (``store_history``), and ``progress``
from the device poller (``DevicePoller.counts``; without it nothing, and no bar is drawn).
``app.py`` builds it; tests build it from a live ``Daemon`` the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from fotawatch.model import CampaignKey, Transition
from fotawatch.poller import CampaignView
from fotawatch.store.base import Store

__all__ = [
    "CampaignSource",
    "DeviceCounts",
    "DeviceProgress",
    "HistorySource",
    "ProgressSource",
    "store_history",
]

HISTORY_LIMIT = 100


class DeviceCounts(Protocol):
    """Device progress of one campaign: what a progress bar and the breakdown need.

    ``fotawatch.devices.DeviceCounts`` fits as it is (``DevicePoller.counts`` is a
    ``ProgressSource``); it also defines what counts as upgraded and as failed.
    """

    @property
    def total(self) -> int: ...
    @property
    def upgraded(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def counts(self) -> Sequence[tuple[str, int]]: ...  # (device status, devices)
    @property
    def polled_at(self) -> dt.datetime | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceProgress:
    """A ``DeviceCounts`` given by its numbers."""

    total: int
    upgraded: int
    failed: int
    counts: tuple[tuple[str, int], ...] = ()
    polled_at: dt.datetime | None = None


HistorySource = Callable[[CampaignKey, int], Awaitable[Sequence[Transition]]]
ProgressSource = Callable[[CampaignKey], DeviceCounts | None]


def _always(_: CampaignKey) -> bool:
    return True


def _unknown(_: CampaignKey) -> DeviceCounts | None:
    return None


def _no_role() -> str:
    return ""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignSource:
    """The daemon as the pages see it. ``history(key, limit)``: the last ``limit``
    transitions, oldest first; ``progress(key)``: device counts, or None when unknown."""

    views: Callable[[], Iterable[CampaignView]]
    history: HistorySource
    polling: Callable[[CampaignKey], bool] = _always
    progress: ProgressSource = _unknown
    refresh_seconds: float = 30.0
    role: Callable[[], str] = _no_role  # "leader"/"follower" with several instances, else ""
    clock: Callable[[], dt.datetime] = _utc_now
    history_limit: int = HISTORY_LIMIT


def store_history(store: Store) -> HistorySource:
    """``history`` read from a store."""

    async def history(key: CampaignKey, limit: int) -> Sequence[Transition]:
        return await store.transitions(key.campaign_id, account=key.account, limit=limit)

    return history
