"""Everything the simulator knows, driven by its clock; no HTTP here.

``now()`` reads the clock and first applies every scheduled event that has come due, at the
event's own time, so an event is in force for any request that arrives after its ``at`` even if
nothing happened in between. Control methods (the same as the ``/_sim/`` admin endpoints) act at
the current sim time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

from fotawatch.simulator._reader import Reader
from fotawatch.simulator.auth import AuthState
from fotawatch.simulator.book import CampaignBook
from fotawatch.simulator.campaigns import CampaignSpec, parse_campaign
from fotawatch.simulator.faults import FaultPlan
from fotawatch.simulator.scenario import Credentials, EventSpec, Scenario, parse_faults

__all__ = ["REQUEST_TIMES_KEPT", "Clock", "RequestCounters", "SimState"]

Clock = Callable[[], float]
REQUEST_TIMES_KEPT = 100_000
_CREDENTIAL_KEYS = frozenset(field.name for field in dataclasses.fields(Credentials))


class RequestCounters:
    """Requests as they arrive, before faults or auth decide their answer."""

    __slots__ = (
        "campaign_requests",
        "device_requests",
        "history_requests",
        "in_flight",
        "login_attempts",
        "max_in_flight",
        "oauth_requests",
        "per_campaign",
        "rejections",
        "request_times",
    )

    def __init__(self) -> None:
        self.oauth_requests = 0
        self.login_attempts = 0
        self.campaign_requests = 0
        self.device_requests = 0
        self.history_requests = 0
        self.per_campaign: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.request_times: deque[float] = deque(maxlen=REQUEST_TIMES_KEPT)

    def arrived(self, endpoint: str, match_info: Mapping[str, str]) -> None:
        """Count one request to ``endpoint`` (``campaign`` also per ``account/id``)."""
        if endpoint == "campaign":
            self.campaign_requests += 1
            self.per_campaign[f"{match_info['account']}/{match_info['campaign_id']}"] += 1
        elif endpoint == "devices":
            self.device_requests += 1
        elif endpoint == "history":
            self.history_requests += 1
        elif endpoint == "oauth":
            self.oauth_requests += 1
        else:
            self.login_attempts += 1

    def fota_started(self) -> None:
        """Count one FOTA request in flight and stamp its (monotonic) arrival."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.request_times.append(time.monotonic())

    def snapshot(self) -> dict[str, Any]:
        return {
            "oauth_requests": self.oauth_requests,
            "login_attempts": self.login_attempts,
            "campaign_requests": self.campaign_requests,
            "campaign_requests_by_campaign": dict(self.per_campaign),
            "device_requests": self.device_requests,
            "history_requests": self.history_requests,
            "fota_requests": self.campaign_requests + self.device_requests + self.history_requests,
            "rejections": dict(self.rejections),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "request_times": list(self.request_times),
        }


class SimState:
    """Auth, campaigns, faults, scheduled events and counters of one simulator."""

    def __init__(self, scenario: Scenario, clock: Clock, *, origin: dt.datetime) -> None:
        self.scenario = scenario
        self.origin = origin
        self.rng = random.Random(scenario.seed)
        self.auth = AuthState(
            scenario.credentials,
            oauth_ttl=scenario.oauth_ttl_seconds,
            session_idle=scenario.session_idle_seconds,
        )
        self.book = CampaignBook(scenario.campaigns)
        self.faults = FaultPlan(scenario.faults, self.rng)
        self.counters = RequestCounters()
        self._clock = clock
        self._events: tuple[EventSpec, ...] = scenario.events
        self._next_event = 0
        self._known_accounts = set(scenario.accounts)

    def now(self) -> float:
        """The sim time, after applying the scheduled events that have come due."""
        now = self._clock()
        while self._next_event < len(self._events) and self._events[self._next_event].at <= now:
            self._apply(self._events[self._next_event])
            self._next_event += 1
        return now

    def _apply(self, event: EventSpec) -> None:
        if event.action == "expire_sessions":
            self.auth.expire_sessions()
        elif event.action == "revoke_tokens":
            self.auth.revoke_tokens()
        elif event.account and event.campaign_id and event.status:
            self._scheduled_status(event.account, event.campaign_id, event.status, event.at)

    def _scheduled_status(self, account: str, campaign_id: str, status: str, at: float) -> None:
        """A scheduled set_status; a no-op if the campaign was removed meanwhile."""
        if self.book.get(account, campaign_id) is not None:
            self.book.set_status(account, campaign_id, status, at)

    def account_known(self, account: str) -> bool:
        """Any account is known unless the scenario lists ``accounts``."""
        return not self._known_accounts or account in self._known_accounts

    def base_latency(self) -> float:
        latency = self.scenario.latency
        if latency.max <= 0:
            return 0.0
        return self.rng.uniform(latency.min, latency.max)

    # control ------------------------------------------------------------------------------

    def set_status(self, account: str, campaign_id: str, status: str) -> None:
        """From now on the campaign has ``status``; raises KeyError for an unknown campaign."""
        if not isinstance(status, str) or not status:
            raise ValueError("status: expected a non-empty string")
        self.book.set_status(account, campaign_id, status, self.now())

    def add_campaign(self, data: Mapping[str, Any]) -> CampaignSpec:
        """Add a campaign from a scenario-style entry (its times are sim-clock times)."""
        default_account = self.scenario.accounts[0] if self.scenario.accounts else None
        today = dt.datetime.now(dt.UTC).date()
        spec = parse_campaign(Reader(data, "campaign"), default_account, today)
        self.book.add(spec)
        if self._known_accounts:
            self._known_accounts.add(spec.account)
        return spec

    def remove_campaign(self, account: str, campaign_id: str) -> None:
        self.book.remove(account, campaign_id, self.now())

    def expire_sessions(self) -> None:
        self.now()
        self.auth.expire_sessions()

    def revoke_tokens(self) -> None:
        self.now()
        self.auth.revoke_tokens()

    def set_faults(self, faults: object) -> None:
        self.faults.replace(parse_faults(faults))

    def clear_faults(self) -> None:
        self.faults.replace(())

    def set_credentials(self, changes: Mapping[str, Any]) -> None:
        for key, value in changes.items():
            if key not in _CREDENTIAL_KEYS:
                raise ValueError(f"credentials.{key}: unknown key")
            if not isinstance(value, str) or not value:
                raise ValueError(f"credentials.{key}: expected a non-empty string")
        self.auth.set_credentials(**changes)

    def unlock(self) -> None:
        self.auth.unlock()

    def stats(self) -> dict[str, Any]:
        now = self.now()
        auth = self.auth
        return {
            "now": now,
            "campaigns": len(self.book),
            **self.counters.snapshot(),
            "oauth_failures": auth.oauth_failures,
            "tokens_issued": auth.tokens_issued,
            "login_failures": auth.login_failures,
            "consecutive_login_failures": auth.consecutive_login_failures,
            "max_consecutive_login_failures": auth.max_consecutive_login_failures,
            "locked": auth.locked,
            "sessions_issued": auth.sessions_issued,
            "faults_injected": dict(self.faults.injected),
            "status_changes": self.book.status_changes(now),
        }
