"""Scenarios: what the simulated ThingSpace account holds and how it behaves over sim time.

A scenario is YAML (or the equivalent dict) parsed once into frozen values; any bad key raises a
``ValueError`` naming its path, e.g. ``campaigns[1].timeline[0].at: expected a number``.
Every ``at``/``start``/``end`` is in seconds on the simulator's clock (0 = when it started).
Campaign entries are parsed in ``campaigns.py`` next to the campaign values; faults and events here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fotawatch.simulator._reader import Reader
from fotawatch.simulator.campaigns import CampaignSpec, generate_campaigns, parse_campaign

__all__ = [
    "EVENT_ACTIONS",
    "FAULT_KINDS",
    "FAULT_MATCHES",
    "HISTORY_PATHS",
    "Credentials",
    "EventSpec",
    "FaultSpec",
    "Latency",
    "Scenario",
    "parse_faults",
]

FAULT_KINDS = ("latency", "http_error", "html", "truncated_json", "rate_limit", "hang", "reset")
FAULT_MATCHES = ("oauth", "login", "campaign", "devices", "history", "fota", "any")
EVENT_ACTIONS = ("expire_sessions", "revoke_tokens", "set_status")
HISTORY_PATHS = ("docs", "sdk", "both")
_HTTP_ERROR_STATUSES = (500, 502, 503, 504)
_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "latency": ("seconds",),
    "http_error": ("status",),
    "html": ("status",),
    "truncated_json": (),
    "rate_limit": ("retry_after",),
    "hang": ("seconds",),
    "reset": (),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """The one API client and UWS user the simulated account accepts."""

    client_id: str = "sim-client-id"
    client_secret: str = "sim-client-secret"  # noqa: S105 - a fake account's documented default
    username: str = "sim-user"
    password: str = "sim-password"  # noqa: S105 - a fake account's documented default


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultSpec:
    """One injected failure: which requests, when, how often and what happens to them."""

    kind: str
    match: str = "fota"
    start: float | None = None
    end: float | None = None
    probability: float = 1.0
    count: int | None = None
    status: int = 503
    seconds: float = 1.0
    retry_after: int = 1

    def active(self, now: float) -> bool:
        """True inside the fault's [start, end) window on the sim clock."""
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventSpec:
    """A control action the simulator applies by itself once its clock reaches ``at``."""

    at: float
    action: str
    account: str | None = None
    campaign_id: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    """Base latency added to every FOTA request, uniform in [min, max] seconds."""

    min: float = 0.0
    max: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A whole simulated ThingSpace: credentials, token lifetimes, campaigns, faults, events."""

    credentials: Credentials = Credentials()
    accounts: tuple[str, ...] = ()
    oauth_ttl_seconds: float = 3600.0
    session_idle_seconds: float = 1200.0
    seed: int = 0
    campaigns: tuple[CampaignSpec, ...] = ()
    faults: tuple[FaultSpec, ...] = ()
    events: tuple[EventSpec, ...] = ()
    history_path: str = "both"
    page_size: int = 1000
    history_page_size: int = 50
    latency: Latency = Latency()
    missing_response: int = 404

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Scenario:
        """Validate a scenario mapping; a ValueError names the first bad key."""
        return _parse_scenario(Reader({} if data is None else data, ""))

    @classmethod
    def from_yaml(cls, text: str) -> Scenario:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"scenario: not valid YAML: {err}") from err
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Scenario:
        return cls.from_yaml(Path(path).read_text(encoding="utf-8"))

    @classmethod
    def demo(cls) -> Scenario:
        """The built-in demo scenario (``scenarios/demo.yaml``)."""
        demo = resources.files("fotawatch.simulator").joinpath("scenarios", "demo.yaml")
        return cls.from_yaml(demo.read_text(encoding="utf-8"))


def parse_faults(data: object, path: str = "faults") -> tuple[FaultSpec, ...]:
    """Validate a list of fault mappings (scenario ``faults`` or the admin endpoint's body)."""
    elements = Reader({path: data}, "").items(path)
    return tuple(_parse_fault(Reader(element, where)) for where, element in elements)


def _parse_scenario(r: Reader) -> Scenario:
    accounts = tuple(_texts(r, "accounts"))
    today = dt.datetime.now(dt.UTC).date()
    default_account = accounts[0] if accounts else None
    campaigns = [
        parse_campaign(Reader(entry, where), default_account, today)
        for where, entry in r.items("campaigns")
    ]
    campaigns += generate_campaigns(r, default_account, today)
    scenario = Scenario(
        credentials=_parse_credentials(r.child("credentials")),
        accounts=accounts,
        oauth_ttl_seconds=r.number("oauth_ttl_seconds", 3600.0, minimum=1.0),
        session_idle_seconds=r.number("session_idle_seconds", 1200.0, minimum=0.001),
        seed=r.integer("seed", 0, minimum=-(2**63)),
        campaigns=_unique(campaigns),
        faults=parse_faults(r.raw("faults")),
        events=_parse_events(r, {(c.account, c.campaign_id) for c in campaigns}),
        history_path=r.choice("history_path", "both", HISTORY_PATHS),
        page_size=r.integer("page_size", 1000, minimum=1),
        history_page_size=r.integer("history_page_size", 50, minimum=1),
        latency=_parse_latency(r.child("latency")),
        missing_response=_missing_response(r),
    )
    r.finish()
    return scenario


def _texts(r: Reader, key: str) -> list[str]:
    values = []
    for path, element in r.items(key):
        if isinstance(element, bool) or not isinstance(element, str | int) or element == "":
            raise ValueError(f"{path}: expected a non-empty string")
        values.append(str(element))
    return values


def _unique(campaigns: list[CampaignSpec]) -> tuple[CampaignSpec, ...]:
    seen: set[tuple[str, str]] = set()
    for index, spec in enumerate(campaigns):
        key = (spec.account, spec.campaign_id)
        if key in seen:
            raise ValueError(f"campaigns[{index}].id: duplicate campaign {key[0]}/{key[1]}")
        seen.add(key)
    return tuple(campaigns)


def _parse_credentials(r: Reader | None) -> Credentials:
    if r is None:
        return Credentials()
    default = Credentials()
    credentials = Credentials(
        client_id=r.text("client_id", default.client_id),
        client_secret=r.text("client_secret", default.client_secret),
        username=r.text("username", default.username),
        password=r.text("password", default.password),
    )
    r.finish()
    return credentials


def _parse_latency(r: Reader | None) -> Latency:
    if r is None:
        return Latency()
    low = r.number("min", 0.0)
    high = r.number("max", low)
    r.finish()
    if high < low:
        raise r.error("max", "must be >= min")
    return Latency(min=low, max=high)


def _missing_response(r: Reader) -> int:
    status = r.integer("missing_response", 404)
    if status not in {400, 404}:
        raise r.error("missing_response", "expected 400 or 404")
    return status


def _parse_fault(r: Reader) -> FaultSpec:
    kind = r.choice("kind", None, FAULT_KINDS)
    allowed = _KIND_KEYS[kind]
    for key in ("status", "seconds", "retry_after"):
        if r.has(key) and key not in allowed:
            raise r.error(key, f"not an option of a {kind} fault")
    fault = FaultSpec(
        kind=kind,
        match=r.choice("match", "fota", FAULT_MATCHES),
        start=r.optional_number("start", minimum=float("-inf")),
        end=r.optional_number("end", minimum=float("-inf")),
        probability=_probability(r),
        count=r.optional_integer("count"),
        status=_fault_status(r, kind),
        seconds=r.number("seconds", 60.0 if kind == "hang" else 1.0),
        retry_after=r.integer("retry_after", 1),
    )
    r.finish()
    return fault


def _probability(r: Reader) -> float:
    probability = r.number("probability", 1.0)
    if probability > 1.0:
        raise r.error("probability", "must be <= 1")
    return probability


def _fault_status(r: Reader, kind: str) -> int:
    status = r.integer("status", 502 if kind == "html" else 503)
    if kind == "http_error" and status not in _HTTP_ERROR_STATUSES:
        raise r.error("status", f"expected one of {', '.join(map(str, _HTTP_ERROR_STATUSES))}")
    return status


def _parse_events(r: Reader, known: set[tuple[str, str]]) -> tuple[EventSpec, ...]:
    events = [_parse_event(Reader(element, path), known) for path, element in r.items("events")]
    return tuple(sorted(events, key=lambda event: event.at))


def _parse_event(r: Reader, known: set[tuple[str, str]]) -> EventSpec:
    at = r.required_number("at", minimum=float("-inf"))
    action = r.choice("action", None, EVENT_ACTIONS)
    event = EventSpec(at=at, action=action)
    if action == "set_status":
        event = EventSpec(
            at=at,
            action=action,
            account=r.text("account"),
            campaign_id=r.text("campaign_id"),
            status=r.text("status"),
        )
        if (event.account, event.campaign_id) not in known:
            raise r.error("campaign_id", f"no campaign {event.account}/{event.campaign_id}")
    r.finish()
    return event
