"""Standing conditions: each fires ONE message when it starts and ONE when it clears.

Pure: no I/O, no clock (``now`` is an argument). ``ConditionTracker`` keeps what it knows about
each campaign and which conditions are active, and returns condition payloads to queue
(``payloads.condition_payload``); the service writes them with ``Store.enqueue``.

Conditions and the episode each firing is keyed by (``payloads.dedup_key`` includes it):

====================== =========================================== ============================
condition              fires / resolves                            episode
====================== =========================================== ============================
login_circuit_open     LoginCircuitChanged open / closed           last successful poll (any)
api_down               ApiHealthChanged up=False / up=True         last successful poll (any)
campaign_missing       CampaignMissing missing / found             campaign's last success
campaign_stuck         Pending/Queued/PreScheduled longer than     the status's status_since
                       ``stuck_after[status]`` / status changed
campaign_not_scheduled still Pending/Queued/PreScheduled at its    the start date (00:00 UTC)
                       start date 00:00 UTC / Scheduled or final
campaign_overdue       still Scheduled ``overdue_after`` past the  the end date (00:00 UTC)
                       end date (its end: next day 00:00 UTC)
failure_rate           failed / (upgraded + failed) devices above  one per campaign
                       ``failure_threshold`` with at least
                       ``failure_min_devices`` devices decided /
                       back at or below the threshold
====================== =========================================== ============================

The failure rate is judged on ``DevicesPolled`` (and ``prime`` with the stored counts); until a
campaign's device counts are known it is left as it is.

The time-based campaign conditions are evaluated on each ``CampaignPolled`` and by ``check(now)``
(run periodically), so they fire between polls too. While a campaign is missing they are left as
they are (neither fired nor resolved) rather than judged on stale data.

Guarantees:

- Within one process each condition fires once and resolves once per episode; it cannot fire
  again while active. A re-fire after a resolve whose natural episode was already used (a
  campaign that moved back to Pending with the same start date, a login circuit opening again
  with no successful poll in between) takes ``now`` as its episode, so it gets a fresh key.
- Across restarts: every episode above is computed from what the store persists (status,
  ``status_since``, the campaign snapshot's dates, ``last_success_at``), and ``prime`` seeds the
  tracker from the stored campaigns. A condition that had fired before a restart computes the
  same episode after it, so its firing is a no-op (the outbox ignores a known dedup key) and
  its resolution is sent when it clears. A campaign condition that cleared while fotawatch was
  down is resolved on the first poll after the restart (prime made it active).
- Not covered: an api_down / login_circuit_open firing that cleared while fotawatch was down
  gets no resolved message (nothing persisted says it was active); a fallback (``now``)
  episode is not recomputed after a restart, so that firing gets no resolved message either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from fotawatch.alerts.payloads import Condition, ConditionState, condition_payload
from fotawatch.codec import format_time
from fotawatch.devices import DeviceCounts
from fotawatch.events import (
    ApiHealthChanged,
    CampaignMissing,
    CampaignPolled,
    DevicesPolled,
    Event,
    LoginCircuitChanged,
    TransitionObserved,
)
from fotawatch.model import Campaign, CampaignKey, CampaignStatus

__all__ = ["CampaignState", "ConditionRules", "ConditionTracker"]

_NOT_YET_SCHEDULED = frozenset(
    {CampaignStatus.REQUEST_PENDING, CampaignStatus.REQUEST_QUEUED, CampaignStatus.PRE_SCHEDULED}
)
_CAMPAIGN_CONDITIONS = (
    Condition.CAMPAIGN_STUCK,
    Condition.CAMPAIGN_NOT_SCHEDULED,
    Condition.CAMPAIGN_OVERDUE,
    Condition.FAILURE_RATE,
)
_FAILURE_EPISODE = "devices"  # one natural episode per campaign (re-fires get ``now``)
_NEVER = "never"  # the episode when no poll ever succeeded
_Ident = tuple[Condition, str | None, str | None]  # condition, account, campaign_id
Payload = dict[str, Any]


class CampaignState(Protocol):
    """What the tracker reads of a stored campaign (``poller.CampaignView`` fits)."""

    @property
    def key(self) -> CampaignKey: ...
    @property
    def name(self) -> str | None: ...
    @property
    def campaign(self) -> Campaign | None: ...
    @property
    def status(self) -> str | None: ...
    @property
    def status_since(self) -> dt.datetime | None: ...
    @property
    def missing(self) -> bool: ...
    @property
    def last_success_at(self) -> dt.datetime | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionRules:
    """The thresholds (``AlertsSettings``): seconds; None or a missing status disables."""

    stuck_after: Mapping[str, float] = field(default_factory=dict)
    not_scheduled_by_start: bool = True
    overdue_after: float | None = 86400.0
    failure_threshold: float | None = None  # a share (0.05 = 5 %); None disables
    failure_min_devices: int = 20


@dataclass(slots=True, kw_only=True)
class _Campaign:
    key: CampaignKey
    name: str | None = None
    campaign: Campaign | None = None
    status: str | None = None
    status_since: dt.datetime | None = None
    missing: bool = False
    last_success_at: dt.datetime | None = None
    devices: DeviceCounts | None = None
    # Until this instant an evaluation with the same inputs finds nothing new: the time-based
    # conditions were judged and none of their thresholds lies before it. None: judge again.
    quiet_until: dt.datetime | None = None

    @property
    def display_name(self) -> str | None:
        return self.name or (self.campaign.name if self.campaign else None)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Holds:
    """A condition that holds now, with what its messages say."""

    episode: str  # natural episode: computed from persisted facts only
    since: dt.datetime | None
    status: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Active:
    natural: str
    episode: str  # the one used in the dedup key (natural unless already resolved once)
    since: dt.datetime | None
    account: str | None
    campaign_id: str | None
    campaign_name: str | None
    status: str | None


_END_OF_TIME = dt.datetime.max.replace(tzinfo=dt.UTC)


def _episode(value: dt.datetime | None) -> str:
    return _NEVER if value is None else str(format_time(value))


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _human(seconds: float) -> str:
    """``2d 3h``, ``1h 30m``, ``45m``, ``20s``: the two largest units."""
    total = int(seconds)
    parts = [(total // 86400, "d"), (total // 3600 % 24, "h"), (total // 60 % 60, "m")]
    shown = [f"{n}{unit}" for n, unit in parts if n]
    return " ".join(shown[:2]) if shown else f"{total}s"


class ConditionTracker:
    """Edge-triggered conditions; every method returns the payloads to queue (maybe none)."""

    def __init__(self, rules: ConditionRules) -> None:
        self.rules = rules
        self.active: dict[_Ident, _Active] = {}
        self._campaigns: dict[CampaignKey, _Campaign] = {}
        self._resolved: set[tuple[_Ident, str]] = set()
        self._last_success: dt.datetime | None = None

    # --- inputs ---------------------------------------------------------------------------

    def prime(
        self,
        states: Iterable[CampaignState],
        now: dt.datetime,
        devices: Mapping[CampaignKey, DeviceCounts] | None = None,
    ) -> list[Payload]:
        """Seed from the store at start-up; returns the firings that hold (no-ops if queued)."""
        out: list[Payload] = []
        devices = devices or {}
        for s in states:
            c = _Campaign(key=s.key, name=s.name, campaign=s.campaign, status=s.status,
                          status_since=s.status_since, missing=s.missing,
                          last_success_at=s.last_success_at,
                          devices=devices.get(s.key))  # fmt: skip
            self._campaigns[s.key] = c
            self._saw_success(s.last_success_at)
            if c.missing:
                out += self._fire_missing(c, c.last_success_at or now)
            out += self._evaluate(c, now)
        return out

    def observe(self, event: Event, now: dt.datetime) -> list[Payload]:
        """Feed one hub event."""
        if isinstance(event, CampaignPolled):
            return self._polled(event, now)
        if isinstance(event, CampaignMissing):
            return self._missing(event, now)
        if isinstance(event, ApiHealthChanged):
            return self._api(event, now)
        if isinstance(event, LoginCircuitChanged):
            return self._circuit(event, now)
        if isinstance(event, DevicesPolled) and event.counts is not None:
            c = self._campaign(event.key)
            c.devices, c.quiet_until = event.counts, None
            return self._evaluate(c, now)
        if isinstance(event, TransitionObserved) and event.name:
            self._campaign(event.transition.key).name = event.name
        return []

    def check(self, now: dt.datetime) -> list[Payload]:
        """Re-evaluate the time-based conditions of every campaign (run every ~30 s)."""
        out: list[Payload] = []
        for c in self._campaigns.values():
            out += self._evaluate(c, now)
        return out

    def forget(self, key: CampaignKey) -> None:
        """Stop watching a campaign (removed from the config); its conditions end silently."""
        self._campaigns.pop(key, None)
        for ident in [i for i in self.active if i[1:] == (key.account, key.campaign_id)]:
            del self.active[ident]

    # --- events -------------------------------------------------------------------------------

    def _campaign(self, key: CampaignKey) -> _Campaign:
        return self._campaigns.setdefault(key, _Campaign(key=key))

    def _saw_success(self, at: dt.datetime | None) -> None:
        if at is not None and (self._last_success is None or at > self._last_success):
            self._last_success = at

    def _polled(self, event: CampaignPolled, now: dt.datetime) -> list[Payload]:
        c = self._campaign(event.key)
        if event.result == "ok":
            c.last_success_at = event.at
            self._saw_success(event.at)
        if event.campaign is not None:
            if event.campaign is not c.campaign or event.status_since != c.status_since:
                c.quiet_until = None  # the client hands back the same object for the same body
            c.campaign, c.status = event.campaign, event.campaign.status
            c.status_since = event.status_since
        return self._evaluate(c, now)

    def _missing(self, event: CampaignMissing, now: dt.datetime) -> list[Payload]:
        c = self._campaign(event.key)
        c.missing, c.quiet_until = event.missing, None
        c.name = event.name or c.name
        if event.missing:
            return self._fire_missing(c, event.at)
        ident = (Condition.CAMPAIGN_MISSING, c.key.account, c.key.campaign_id)
        return self._resolve(ident, now) + self._evaluate(c, now)

    def _fire_missing(self, c: _Campaign, at: dt.datetime) -> list[Payload]:
        ident = (Condition.CAMPAIGN_MISSING, c.key.account, c.key.campaign_id)
        detail = "The API answers that this campaign does not exist."
        holds = _Holds(episode=_episode(c.last_success_at), since=at, status=c.status,
                       detail=detail)  # fmt: skip
        return self._fire(ident, holds, at, name=c.display_name)

    def _api(self, event: ApiHealthChanged, now: dt.datetime) -> list[Payload]:
        ident: _Ident = (Condition.API_DOWN, None, None)
        if event.up:
            return self._resolve(ident, now)
        since = event.since or event.at
        detail = f"Every ThingSpace request has failed since {format_time(since)}."
        holds = _Holds(episode=_episode(self._last_success), since=since, detail=detail)
        return self._fire(ident, holds, now)

    def _circuit(self, event: LoginCircuitChanged, now: dt.datetime) -> list[Payload]:
        ident: _Ident = (Condition.LOGIN_CIRCUIT_OPEN, None, None)
        if not event.open:
            return self._resolve(ident, now)
        holds = _Holds(episode=_episode(self._last_success), since=event.at, detail=event.reason)
        return self._fire(ident, holds, now)

    # --- the time-based campaign conditions ---------------------------------------------------

    def _evaluate(self, c: _Campaign, now: dt.datetime) -> list[Payload]:
        if c.missing or c.status is None:
            return []
        if c.quiet_until is not None and now < c.quiet_until:
            return []  # judged with these inputs before; no threshold has passed since
        holding = self._holding(c, now)
        out: list[Payload] = []
        for condition in _CAMPAIGN_CONDITIONS:
            if condition == Condition.FAILURE_RATE and c.devices is None:
                continue  # not judged before the device counts are known
            ident = (condition, c.key.account, c.key.campaign_id)
            holds = holding.get(condition)
            active = self.active.get(ident)
            if active is not None and (holds is None or holds.episode != active.natural):
                out += self._resolve(ident, now)
            if holds is not None:
                out += self._fire(ident, holds, now, name=c.display_name)
        c.quiet_until = self._next_threshold(c, now)
        return out

    def _next_threshold(self, c: _Campaign, now: dt.datetime) -> dt.datetime:
        """The first instant after ``now`` from which a time-based condition holds."""
        starts = (self._stuck_from(c), self._not_scheduled_from(c), self._overdue_from(c))
        return min((t for t in starts if t is not None and t > now), default=_END_OF_TIME)

    def _holding(self, c: _Campaign, now: dt.datetime) -> dict[Condition, _Holds]:
        found = {
            Condition.CAMPAIGN_STUCK: self._stuck(c, now),
            Condition.CAMPAIGN_NOT_SCHEDULED: self._not_scheduled(c, now),
            Condition.CAMPAIGN_OVERDUE: self._overdue(c, now),
            Condition.FAILURE_RATE: self._failure_rate(c),
        }
        return {condition: holds for condition, holds in found.items() if holds is not None}

    # Each time-based condition in two parts: from when it holds, given the campaign as it is
    # (None: it cannot), and what it says once it does.

    def _stuck_from(self, c: _Campaign) -> dt.datetime | None:
        limit = self.rules.stuck_after.get(c.status or "")
        if limit is None or c.status_since is None:
            return None
        return c.status_since + dt.timedelta(seconds=limit)

    def _stuck(self, c: _Campaign, now: dt.datetime) -> _Holds | None:
        since = self._stuck_from(c)
        if since is None or c.status_since is None or now < since:
            return None
        limit = (since - c.status_since).total_seconds()
        stuck_for = (now - c.status_since).total_seconds()
        detail = f"In {c.status} for {_human(stuck_for)}; the limit is {_human(limit)}."
        return _Holds(episode=_episode(c.status_since), since=since, status=c.status,
                      detail=detail)  # fmt: skip

    def _not_scheduled_from(self, c: _Campaign) -> dt.datetime | None:
        start = c.campaign.start_date if c.campaign else None
        if not self.rules.not_scheduled_by_start or start is None:
            return None
        return _midnight(start) if c.status in _NOT_YET_SCHEDULED else None

    def _not_scheduled(self, c: _Campaign, now: dt.datetime) -> _Holds | None:
        since = self._not_scheduled_from(c)
        start = c.campaign.start_date if c.campaign else None
        if since is None or start is None or now < since:
            return None
        detail = f"The start date {start.isoformat()} has come; the campaign is in {c.status}."
        return _Holds(episode=_episode(since), since=since, status=c.status,
                      detail=detail)  # fmt: skip

    def _overdue_from(self, c: _Campaign) -> dt.datetime | None:
        end = c.campaign.end_date if c.campaign else None
        if self.rules.overdue_after is None or end is None or c.status != CampaignStatus.SCHEDULED:
            return None
        return _midnight(end) + dt.timedelta(days=1, seconds=self.rules.overdue_after)

    def _overdue(self, c: _Campaign, now: dt.datetime) -> _Holds | None:
        due = self._overdue_from(c)
        end = c.campaign.end_date if c.campaign else None
        if due is None or end is None or now < due:
            return None
        detail = f"The end date {end.isoformat()} has passed; the campaign is still scheduled."
        return _Holds(episode=_episode(_midnight(end)), since=due, status=c.status,
                      detail=detail)  # fmt: skip

    def _failure_rate(self, c: _Campaign) -> _Holds | None:
        d, threshold = c.devices, self.rules.failure_threshold
        if d is None or threshold is None:
            return None
        decided = d.upgraded + d.failed
        share = d.failure_share
        if decided < self.rules.failure_min_devices or share is None or share <= threshold:
            return None
        detail = (f"{d.failed:,} of {decided:,} devices with an outcome failed ({share:.1%});"
                  f" the threshold is {threshold:.1%}. {d.summary()}.")  # fmt: skip
        return _Holds(episode=_FAILURE_EPISODE, since=d.polled_at, status=c.status, detail=detail)

    # --- edges --------------------------------------------------------------------------------

    def _fire(
        self, ident: _Ident, holds: _Holds, now: dt.datetime, *, name: str | None = None
    ) -> list[Payload]:
        if ident in self.active:
            return []
        episode = holds.episode
        if (ident, episode) in self._resolved:  # fired and resolved before: a fresh key
            episode = _episode(now)
        active = _Active(natural=holds.episode, episode=episode, since=holds.since,
                         account=ident[1], campaign_id=ident[2], campaign_name=name,
                         status=holds.status)  # fmt: skip
        self.active[ident] = active
        return [self._payload(ident[0], ConditionState.FIRING, active, now, holds.detail)]

    def _resolve(self, ident: _Ident, now: dt.datetime) -> list[Payload]:
        active = self.active.pop(ident, None)
        if active is None:
            return []
        self._resolved.add((ident, active.natural))
        self._resolved.add((ident, active.episode))
        campaign = self._campaigns.get(_key(ident))
        detail = f"Now {campaign.status}." if campaign and campaign.status else ""
        devices = campaign.devices if campaign is not None else None
        if ident[0] == Condition.FAILURE_RATE and devices is not None:
            detail = f"{devices.failure_share or 0:.1%} failed now: {devices.summary()}."
        if campaign is not None:
            active = replace(active, campaign_name=campaign.display_name or active.campaign_name)
        return [self._payload(ident[0], ConditionState.RESOLVED, active, now, detail)]

    @staticmethod
    def _payload(
        condition: Condition, state: ConditionState, a: _Active, now: dt.datetime, detail: str
    ) -> Payload:
        return condition_payload(
            condition=condition, state=state, observed_at=now, episode=a.episode,
            account=a.account, campaign_id=a.campaign_id, campaign_name=a.campaign_name,
            status=a.status, since=a.since, detail=detail,
        )  # fmt: skip


def _key(ident: _Ident) -> CampaignKey:
    return CampaignKey(account=ident[1] or "", campaign_id=ident[2] or "")
