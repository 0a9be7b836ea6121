"""Prometheus metrics: campaign state read at scrape time, engine events counted as they happen.

State (STYLE rule 9) comes from custom collectors that read a snapshot at scrape time and never
do I/O: ``CampaignCollector`` reads the poller's views, ``DaemonCollector`` the daemon's status,
``QueueDepthCollector`` the alert queues. A campaign no longer in the views is simply not there
on the next scrape. True events are counters and histograms, fed by ``Metrics.on_event``.

Consistency: ``collect()`` calls ``views()`` once and reads each view once. A view is immutable
and replaced whole by the poller, so every series of one campaign comes from one view: a scrape
during a poll burst sees each campaign either before or after its poll, never half of each.
(Collection is also synchronous on the event loop, so no poll can interleave with it at all.)

Speed: prometheus_client formats the ~160k samples of 10,000 campaigns in over two seconds
here, so ``exposition()`` (what /metrics serves) does not ask it to. ``campaign_series`` says
what one campaign exports; ``campaign_text`` formats that as exposition lines exactly as
prometheus_client would (the lines are the same in text 0.0.4 and OpenMetrics), cached per
campaign on the identity of its view (held weakly, so a replaced view is freed at once) plus
the two inputs that live outside it (the polling flag, the transition counts): a campaign is
rendered again only after a poll replaced its view. A scrape streams the cached lines and has
prometheus_client format only the small families.
The campaign families stay ordinary collector output for every other reader: their samples
(``campaign_samples``) are built from the same series when first read. Tests check that both
renderings parse to the same samples and that the campaign lines are byte-identical.

Device progress (``fotawatch_campaign_devices``) comes the same way from the device poller's newest
counts (``DeviceCollector``, set with ``Metrics.set_devices``): every known device status with its
count (0 when none), plus any other status ThingSpace reported (label-capped in
``fotawatch.devices``), rendered once per counts object and cached on its identity.

Missing descriptive values are exported as ``""`` on ``fotawatch_campaign_info`` (Prometheus
treats an empty label as an absent one), so the label set is always the same.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as text_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from fotawatch.devices import KNOWN_DEVICE_STATUSES, DeviceCounts
from fotawatch.events import (
    AuthRequest,
    CampaignPolled,
    DevicesPolled,
    Event,
    PollSkipped,
    TransitionObserved,
)
from fotawatch.model import KNOWN_STATUSES, CampaignKey
from fotawatch.poller import CampaignView

__all__ = [
    "AUTH_KINDS",
    "AUTH_RESULTS",
    "DEVICE_POLL_RESULTS",
    "NOTIFICATION_RESULTS",
    "POLL_RESULTS",
    "CampaignCollector",
    "DaemonCollector",
    "DaemonStatus",
    "DeviceCollector",
    "Metrics",
    "QueueDepthCollector",
    "TransitionCounts",
    "campaign_samples",
    "campaign_series",
    "campaign_text",
    "device_series",
    "exposition",
    "exposition_chunks",
]

# fmt: off
POLL_RESULTS = ("ok", "timeout", "connection_error", "http_4xx", "http_5xx", "rate_limited",
                "auth_error", "invalid_response")
DEVICE_POLL_RESULTS = (*POLL_RESULTS, "bad_cursor")
AUTH_KINDS = ("oauth", "session")
AUTH_RESULTS = ("ok", "rejected", "error")
NOTIFICATION_RESULTS = ("delivered", "retried", "failed", "dropped")
POLL_BUCKETS = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
NOTIFICATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)
STATUS_LABEL_MAX = 100  # an unrecognised status is exported raw, but never unboundedly long
_LAST_POLL = " Value from the last poll; fotawatch never calls ThingSpace during a scrape."
_HELP = {
    "fotawatch_campaign_status": "Current status of the campaign: 1 for the current status, 0"
        " for the other known ones; an unrecognised status gets its own series." + _LAST_POLL,
    "fotawatch_campaign_info": "Descriptive properties of the campaign; always 1. An empty"
        " label was not reported by ThingSpace." + _LAST_POLL,
    "fotawatch_campaign_start_date_timestamp_seconds":
        "Start date of the campaign, as 00:00 UTC of that date." + _LAST_POLL,
    "fotawatch_campaign_end_date_timestamp_seconds":
        "End date of the campaign, as 00:00 UTC of that date." + _LAST_POLL,
    "fotawatch_campaign_status_changed_timestamp_seconds":
        "When fotawatch first observed the current status." + _LAST_POLL,
    "fotawatch_campaign_last_poll_success_timestamp_seconds":
        "When the campaign was last polled successfully." + _LAST_POLL,
    "fotawatch_campaign_missing":
        "1 when ThingSpace says the campaign does not exist, else 0." + _LAST_POLL,
    "fotawatch_campaign_polling":
        "1 while the campaign is polled; 0 once its final status is confirmed.",
    "fotawatch_campaign_transitions": "Status transitions observed; from_status is empty for"
        " the first sight of a campaign in a failure status.",
    "fotawatch_campaign_devices": "Devices of the campaign per device status in the ThingSpace"
        " device report; every known status is exported, 0 when no device has it." + _LAST_POLL,
    "fotawatch_device_polls": "Device-report polls (every page of one campaign) by outcome.",
    "fotawatch_polls": "Campaign polls by outcome.",
    "fotawatch_polls_skipped": "Campaign polls not started because the campaign's previous poll"
        " was still running: more work than requests_per_second and max_concurrency allow, or"
        " a slow API.",
    "fotawatch_poll_duration_seconds": "Duration of one campaign poll, retries included.",
    "fotawatch_auth_requests": "ThingSpace token and session requests by outcome.",
    "fotawatch_login_circuit_open":
        "1 while logins are suspended after rejected credentials, else 0.",
    "fotawatch_api_up": "0 while every poll has been failing for api_down_after, else 1.",
    "fotawatch_config_last_reload_successful":
        "1 if the last configuration load or reload succeeded, else 0.",
    "fotawatch_config_last_reload_success_timestamp_seconds":
        "When the configuration was last loaded successfully.",
    "fotawatch_build_info": "The running fotawatch version; always 1.",
    "fotawatch_leader": "1 while this instance leads (polls, sends, exports campaigns), else 0;"
        " always 1 on SQLite.",
    "fotawatch_leader_changes": "Times this instance became leader or stopped being leader.",
    "fotawatch_notifications": "Notification delivery attempts by outcome.",
    "fotawatch_notification_queue_depth": "Notifications waiting for delivery.",
    "fotawatch_notification_latency_seconds":
        "Time from queueing a notification to its delivery, retries included.",
}
# fmt: on
# Two untyped prometheus_client functions, typed here.
_go_float: Callable[[float], str] = floatToGoString
_openmetrics_latest: Callable[[Collector], bytes] = openmetrics_exposition.generate_latest
Counts = tuple[tuple[str, str, int], ...]  # (from_status, to_status, count) of one campaign
Series = tuple[tuple[tuple[str, str], ...], float]  # (labels, value) of one series
_GO_FLOATS = {0.0: "0.0", 1.0: "1.0"}  # the values most samples have, pre-formatted
_KNOWN = tuple(s.value for s in KNOWN_STATUSES)


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    type: str = "gauge"

    @property
    def help(self) -> str:
        return _HELP[self.name]

    @property
    def sample_name(self) -> str:
        return self.name + "_total" if self.type == "counter" else self.name


_CAMPAIGN_FAMILIES = (
    _Family("fotawatch_campaign_status"),
    _Family("fotawatch_campaign_info"),
    _Family("fotawatch_campaign_start_date_timestamp_seconds"),
    _Family("fotawatch_campaign_end_date_timestamp_seconds"),
    _Family("fotawatch_campaign_status_changed_timestamp_seconds"),
    _Family("fotawatch_campaign_last_poll_success_timestamp_seconds"),
    _Family("fotawatch_campaign_missing"),
    _Family("fotawatch_campaign_polling"),
    _Family("fotawatch_campaign_transitions", "counter"),
)


class DaemonStatus(Protocol):
    """What ``DaemonCollector`` reads from the running daemon at scrape time."""

    @property
    def version(self) -> str: ...
    @property
    def login_circuit_open(self) -> bool: ...
    @property
    def api_up(self) -> bool: ...
    @property
    def reload_ok(self) -> bool: ...
    @property
    def reload_ok_at(self) -> dt.datetime | None: ...
    @property
    def leader(self) -> bool: ...
    @property
    def leader_changes(self) -> int: ...


# ---------------------------------------------------------------- campaign state


def _midnight(day: dt.date | None) -> float | None:
    return None if day is None else dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()


def _at(moment: dt.datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _status_series(status: str | None) -> list[Series]:
    if status is None:
        return []
    out: list[Series] = [((("status", s),), float(s == status)) for s in _KNOWN]
    if status not in _KNOWN:
        out.append(((("status", status[:STATUS_LABEL_MAX]),), 1.0))
    return out


def _info_series(view: CampaignView) -> list[Series]:
    c = view.campaign
    if c is None:
        return []
    props = (c.firmware_from, c.firmware_to, c.make, c.model, c.protocol)
    labels = zip(("firmware_from", "firmware_to", "make", "model", "protocol"), props, strict=True)
    return [((("campaign_name", view.display_name), *((k, v or "") for k, v in labels)), 1.0)]


def campaign_series(view: CampaignView, *, polling: bool, counts: Counts) -> list[list[Series]]:
    """What one campaign exports, per campaign family (in order): each series' labels besides
    account and campaign_id (sorted; every one sorts after those two) and its value."""
    return [_status_series(view.status), *_other_series(view, polling=polling, counts=counts)]


def _other_series(view: CampaignView, *, polling: bool, counts: Counts) -> list[list[Series]]:
    c = view.campaign
    values = (
        _midnight(c.start_date if c else None),
        _midnight(c.end_date if c else None),
        _at(view.status_since),
        _at(view.last_success_at),
        float(view.missing),
        float(polling),
    )
    out = [_info_series(view)]
    out += [[] if v is None else [((), v)] for v in values]
    out.append([((("from_status", a), ("to_status", b)), float(n)) for a, b, n in counts])
    return out


def campaign_samples(view: CampaignView, *, polling: bool, counts: Counts) -> list[list[Sample]]:
    """``campaign_series`` as prometheus_client samples."""
    ident = {"account": view.key.account, "campaign_id": view.key.campaign_id}
    families = zip(
        _CAMPAIGN_FAMILIES, campaign_series(view, polling=polling, counts=counts), strict=True
    )
    return [
        [Sample(f.sample_name, {**ident, **dict(labels)}, value) for labels, value in series]
        for f, series in families
    ]


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _value(value: float) -> str:
    return _GO_FLOATS.get(value) or _go_float(value)


def _line(name: str, ident: str, labels: tuple[tuple[str, str], ...], value: float) -> str:
    extra = "".join([f',{k}="{_escape(v)}"' for k, v in labels])
    return f"{name}{{{ident}{extra}}} {_value(value)}\n"


def _chunk(family: _Family, ident: str, series: list[Series]) -> str:
    return "".join([_line(family.sample_name, ident, labels, v) for labels, v in series])


# The status family of a campaign in each known status, its identity labels left as _IDENT:
# 9 of a campaign's ~16 lines become one str.replace.
_IDENT = "\x00"
_STATUS_TEXT = {s: _chunk(_CAMPAIGN_FAMILIES[0], _IDENT, _status_series(s)) for s in _KNOWN}


def campaign_text(view: CampaignView, *, polling: bool, counts: Counts) -> tuple[bytes, ...]:
    """``campaign_series`` as exposition lines, one chunk per family, formatted exactly as
    prometheus_client formats them (the same in text 0.0.4 and OpenMetrics)."""
    key = view.key
    ident = f'account="{_escape(key.account)}",campaign_id="{_escape(key.campaign_id)}"'
    template = _STATUS_TEXT.get(view.status or "")
    if template is None:
        status = _chunk(_CAMPAIGN_FAMILIES[0], ident, _status_series(view.status))
    else:
        status = template.replace(_IDENT, ident)  # replace() never rescans what it inserts
    others = _other_series(view, polling=polling, counts=counts)
    chunks = (_chunk(f, ident, s) for f, s in zip(_CAMPAIGN_FAMILIES[1:], others, strict=True))
    return (status.encode(), *(chunk.encode() for chunk in chunks))


@dataclass(frozen=True, slots=True)
class _Rendered:
    """One campaign's inputs and its text, per family. The view is held weakly and compared by
    identity: holding it kept every view a poll had replaced alive until the next scrape (at
    10,000 campaigns polled once between two scrapes, all of them)."""

    view: weakref.ref[CampaignView]
    polling: bool
    counts: Counts
    text: tuple[bytes, ...]

    @classmethod
    def of(cls, view: CampaignView, polling: bool, counts: Counts) -> _Rendered:  # noqa: FBT001
        text = campaign_text(view, polling=polling, counts=counts)
        return cls(weakref.ref(view), polling, counts, text)


class _Snapshot:
    """The campaigns of one scrape; samples are built once, and only if someone asks."""

    def __init__(self, campaigns: Sequence[tuple[CampaignView, _Rendered]]) -> None:
        self.campaigns = campaigns  # the views themselves: samples may be read after a poll
        self.texts = [rendered.text for _, rendered in campaigns]
        self._samples: list[list[Sample]] | None = None

    def samples(self, index: int) -> list[Sample]:
        if self._samples is None:
            self._samples = [[] for _ in _CAMPAIGN_FAMILIES]
            for view, r in self.campaigns:
                rendered = campaign_samples(view, polling=r.polling, counts=r.counts)
                for family, samples in zip(self._samples, rendered, strict=True):
                    family.extend(samples)
        return self._samples[index]


@dataclass(frozen=True, slots=True)
class _Families:
    """A collector yielding fixed families, to hand some families to prometheus_client."""

    metrics: Sequence[Metric]

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def _headers(family: _Family) -> tuple[bytes, bytes]:
    """The HELP/TYPE lines of a family in text 0.0.4 and OpenMetrics, from prometheus_client."""
    empty = _Families([Metric(family.name, family.help, family.type)])
    return text_latest(empty), _openmetrics_latest(empty).removesuffix(b"# EOF\n")


class _CampaignFamily(Metric):
    """A campaign family of one snapshot: cached text for ``exposition``, lazy samples."""

    def __init__(self, index: int, snapshot: _Snapshot, headers: tuple[bytes, bytes]) -> None:
        family = _CAMPAIGN_FAMILIES[index]
        self._index, self._snapshot, self._headers = index, snapshot, headers
        super().__init__(family.name, family.help, family.type)
        self._explicit: list[Sample] | None = None  # __init__ assigned []; build lazily instead

    @property
    def samples(self) -> list[Sample]:
        if self._explicit is None:
            self._explicit = self._snapshot.samples(self._index)
        return self._explicit

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        self._explicit = value

    def write(self, out: list[bytes], *, openmetrics: bool) -> None:
        """Append this family's exposition (header, then each campaign's cached text)."""
        out.append(self._headers[openmetrics])
        out.extend(map(itemgetter(self._index), self._snapshot.texts))


# ---------------------------------------------------------------- device progress

_DEVICES = _Family("fotawatch_campaign_devices")
_KNOWN_DEVICES = frozenset(KNOWN_DEVICE_STATUSES)


def device_series(counts: DeviceCounts) -> list[Series]:
    """The ``fotawatch_campaign_devices`` series of one campaign (labels besides its identity)."""
    out: list[Series] = [((("device_status", s),), float(counts.count(s)))
                         for s in KNOWN_DEVICE_STATUSES]  # fmt: skip
    out += [((("device_status", s[:STATUS_LABEL_MAX]),), float(n))
            for s, n in counts.counts if s not in _KNOWN_DEVICES]  # fmt: skip
    return out


def _ident_text(key: CampaignKey) -> str:
    return f'account="{_escape(key.account)}",campaign_id="{_escape(key.campaign_id)}"'


@dataclass(frozen=True, slots=True)
class _DeviceText:
    """One campaign's device counts (compared by identity) and their exposition lines."""

    counts: DeviceCounts
    text: bytes

    @classmethod
    def of(cls, counts: DeviceCounts) -> _DeviceText:
        text = _chunk(_DEVICES, _ident_text(counts.key), device_series(counts))
        return cls(counts, text.encode())

    def samples(self) -> list[Sample]:
        ident = {"account": self.counts.key.account, "campaign_id": self.counts.key.campaign_id}
        return [Sample(_DEVICES.name, {**ident, **dict(labels)}, value)
                for labels, value in device_series(self.counts)]  # fmt: skip


class _DevicesFamily(Metric):
    """``fotawatch_campaign_devices`` of one scrape: cached text, samples built if asked."""

    def __init__(self, rendered: Sequence[_DeviceText], headers: tuple[bytes, bytes]) -> None:
        self._rendered, self._headers = rendered, headers
        super().__init__(_DEVICES.name, _DEVICES.help, _DEVICES.type)
        self._explicit: list[Sample] | None = None

    @property
    def samples(self) -> list[Sample]:
        if self._explicit is None:
            self._explicit = [sample for r in self._rendered for sample in r.samples()]
        return self._explicit

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        self._explicit = value

    def write(self, out: list[bytes], *, openmetrics: bool) -> None:
        out.append(self._headers[openmetrics])
        out.extend(r.text for r in self._rendered)


class DeviceCollector:
    """``fotawatch_campaign_devices`` from ``source`` at scrape time (no I/O)."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[DeviceCounts]] = tuple
        self._cache: dict[int, _DeviceText] = {}  # by id(counts); the entry holds the counts
        self._headers = _headers(_DEVICES)

    def describe(self) -> list[Metric]:
        return [Metric(_DEVICES.name, _DEVICES.help, _DEVICES.type)]

    def collect(self) -> list[Metric]:
        old, cache = self._cache, {}
        for counts in self.source():
            cache[id(counts)] = old.get(id(counts)) or _DeviceText.of(counts)
        self._cache = cache
        return [_DevicesFamily(list(cache.values()), self._headers)]


class TransitionCounts:
    """Per-campaign transition counters; each campaign's counts are replaced, never mutated.
    ``version`` changes with every change, so a scrape knows whether to look counts up."""

    def __init__(self) -> None:
        self._counts: dict[CampaignKey, Counts] = {}
        self.version = 0

    def get(self, key: CampaignKey) -> Counts:
        return self._counts.get(key, ())

    def add(self, key: CampaignKey, from_status: str, to_status: str) -> None:
        counts = {(a, b): n for a, b, n in self.get(key)}
        counts[from_status, to_status] = counts.get((from_status, to_status), 0) + 1
        self._counts[key] = tuple((a, b, n) for (a, b), n in counts.items())
        self.version += 1

    def forget(self, keys: Iterable[CampaignKey]) -> None:
        for key in keys:
            self._counts.pop(key, None)
        self.version += 1

    def keys(self) -> set[CampaignKey]:
        return set(self._counts)


class CampaignCollector:
    """The ``fotawatch_campaign_*`` families, from the views at scrape time (no I/O)."""

    def __init__(
        self,
        views: Callable[[], Iterable[CampaignView]],
        polling: Callable[[CampaignKey], bool],
        transitions: TransitionCounts,
    ) -> None:
        self._views = views
        self._polling = polling
        self._transitions = transitions
        self._cache: dict[CampaignKey, _Rendered] = {}
        self._counts_version = -1
        self._headers = [_headers(f) for f in _CAMPAIGN_FAMILIES]

    def describe(self) -> list[Metric]:
        return [Metric(f.name, f.help, f.type) for f in _CAMPAIGN_FAMILIES]

    def collect(self) -> list[Metric]:
        snapshot = _Snapshot(self._snapshot())
        return [_CampaignFamily(i, snapshot, h) for i, h in enumerate(self._headers)]

    def _snapshot(self) -> list[tuple[CampaignView, _Rendered]]:
        """Read each view once; render only the campaigns whose inputs changed."""
        old, cache, out = self._cache, {}, []
        polling_of, counts_of = self._polling, self._transitions.get
        recount = self._transitions.version != self._counts_version
        self._counts_version = self._transitions.version
        for view in self._views():
            key, polling = view.key, polling_of(view.key)
            # pop: a re-rendered campaign's old text is freed before the next is rendered, so a
            # scrape after every campaign was polled never holds two caches (23 MB at 10,000)
            hit = old.pop(key, None)
            if (
                hit is None
                or hit.view() is not view
                or hit.polling != polling
                or (recount and hit.counts is not counts_of(key))
            ):
                hit = _Rendered.of(view, polling, counts_of(key))
            cache[key] = hit
            out.append((view, hit))
        self._cache = cache  # campaigns gone from the views leave the cache too
        return out


def exposition_chunks(registry: Collector, *, openmetrics: bool = False) -> list[bytes]:
    """``registry`` rendered as a list of pieces whose concatenation is the exposition.

    The campaign pieces are the cached texts themselves, not copies, so a server can send them
    as they are (``fotawatch.server`` streams them) without ever holding the joined body: at
    10,000 campaigns that body is ~23 MB, and joining it (plus gzip's copy) was most of a
    scrape's peak memory. The pieces are immutable and read in one synchronous pass, so sending
    them across awaits still serves one consistent snapshot.
    """
    fast: list[bytes] = []
    rest: list[Metric] = []
    for family in registry.collect():
        if isinstance(family, _CampaignFamily | _DevicesFamily):
            family.write(fast, openmetrics=openmetrics)
        else:
            rest.append(family)
    render = _openmetrics_latest if openmetrics else text_latest
    fast.append(render(_Families(rest)))  # last: it ends with OpenMetrics' "# EOF"
    return fast


def exposition(registry: Collector, *, openmetrics: bool = False) -> bytes:
    """Render ``registry``: cached text for campaign families, prometheus_client for the rest."""
    return b"".join(exposition_chunks(registry, openmetrics=openmetrics))


# ---------------------------------------------------------------- daemon state


class DaemonCollector:
    """Login circuit, API health, config reloads and build info, read at scrape time."""

    def __init__(self, status: DaemonStatus) -> None:
        self._status = status

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        s = self._status
        info = GaugeMetricFamily("fotawatch_build_info", _HELP["fotawatch_build_info"],
                                 labels=["version"])  # fmt: skip
        info.add_metric([s.version], 1.0)
        return [
            _gauge("fotawatch_login_circuit_open", float(s.login_circuit_open)),
            _gauge("fotawatch_api_up", float(s.api_up)),
            _gauge("fotawatch_config_last_reload_successful", float(s.reload_ok)),
            _gauge("fotawatch_config_last_reload_success_timestamp_seconds", _at(s.reload_ok_at)),
            _gauge("fotawatch_leader", float(s.leader)),
            CounterMetricFamily(
                "fotawatch_leader_changes", _HELP["fotawatch_leader_changes"], s.leader_changes
            ),
            info,
        ]


def _gauge(name: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, _HELP[name], labels=[])
    if value is not None:
        family.add_metric([], value)
    return family


class QueueDepthCollector:
    """``fotawatch_notification_queue_depth{sink}`` from a callable set by the alerts layer."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, int]] = dict

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        name = "fotawatch_notification_queue_depth"
        family = GaugeMetricFamily(name, _HELP[name], labels=["sink"])
        for sink, depth in sorted(self.source().items()):
            family.add_metric([sink], float(depth))
        return [family]


# ---------------------------------------------------------------- the facade


class Metrics:
    """Every fotawatch metric on one injected registry; ``on_event`` is the hub subscriber."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        views: Callable[[], Iterable[CampaignView]],
        polling: Callable[[CampaignKey], bool],
        status: DaemonStatus,
    ) -> None:
        self.registry = registry
        self.transitions = TransitionCounts()
        self.campaigns = CampaignCollector(views, polling, self.transitions)
        self.queues = QueueDepthCollector()
        self.devices = DeviceCollector()
        for collector in (self.campaigns, DaemonCollector(status), self.queues, self.devices):
            registry.register(collector)
        self._accounts: set[str] = set()
        # fmt: off
        self.polls = Counter("fotawatch_polls", _HELP["fotawatch_polls"], ["account", "result"],
                             registry=registry)
        self.polls_skipped = Counter("fotawatch_polls_skipped", _HELP["fotawatch_polls_skipped"],
                                     ["account"], registry=registry)
        self.device_polls = Counter("fotawatch_device_polls", _HELP["fotawatch_device_polls"],
                                    ["account", "result"], registry=registry)
        self.poll_duration = Histogram("fotawatch_poll_duration_seconds",
                                       _HELP["fotawatch_poll_duration_seconds"],
                                       buckets=POLL_BUCKETS, registry=registry)
        self.auth_requests = Counter("fotawatch_auth_requests", _HELP["fotawatch_auth_requests"],
                                     ["kind", "result"], registry=registry)
        self.notifications = Counter("fotawatch_notifications", _HELP["fotawatch_notifications"],
                                     ["sink", "result"], registry=registry)
        self.notification_latencies = Histogram(
            "fotawatch_notification_latency_seconds",
            _HELP["fotawatch_notification_latency_seconds"], ["sink"],
            buckets=NOTIFICATION_BUCKETS, registry=registry)
        # fmt: on
        for kind in AUTH_KINDS:
            for result in AUTH_RESULTS:
                self.auth_requests.labels(kind, result)

    def on_event(self, event: Event) -> None:
        """Hub subscriber: count polls, transitions and auth requests."""
        if isinstance(event, CampaignPolled):
            self.polls.labels(event.key.account, event.result).inc()
            self.poll_duration.observe(event.duration)
        elif isinstance(event, TransitionObserved):
            t = event.transition
            self.transitions.add(t.key, t.from_status or "", t.to_status)
        elif isinstance(event, AuthRequest):
            self.auth_requests.labels(event.kind, event.result).inc()
        elif isinstance(event, DevicesPolled):
            self.device_polls.labels(event.key.account, event.result).inc()
        elif isinstance(event, PollSkipped):
            self.polls_skipped.labels(event.key.account).inc()

    def sync(self, keys: Iterable[CampaignKey]) -> None:
        """The configured campaigns (start, reload): pre-initialise, forget the removed ones."""
        keys = set(keys)
        self.transitions.forget(self.transitions.keys() - keys)
        accounts = {k.account for k in keys}
        for account in self._accounts - accounts:
            self.polls_skipped.remove(account)
            for result in POLL_RESULTS:
                self.polls.remove(account, result)
            for result in DEVICE_POLL_RESULTS:
                self.device_polls.remove(account, result)
        for account in accounts:
            self.polls_skipped.labels(account)
            for result in POLL_RESULTS:
                self.polls.labels(account, result)
            for result in DEVICE_POLL_RESULTS:
                self.device_polls.labels(account, result)
        self._accounts = accounts

    def forget(self, keys: Iterable[CampaignKey]) -> None:
        """Drop the transition counters of campaigns no longer configured."""
        self.transitions.forget(keys)

    def add_sinks(self, sinks: Iterable[str]) -> None:
        """Pre-initialise the notification series of each sink."""
        for sink in sinks:
            for result in NOTIFICATION_RESULTS:
                self.notifications.labels(sink, result)
            self.notification_latencies.labels(sink)

    def set_queue_depths(self, source: Callable[[], Mapping[str, int]]) -> None:
        self.queues.source = source

    def set_devices(self, source: Callable[[], Iterable[DeviceCounts]]) -> None:
        """Where ``fotawatch_campaign_devices`` reads (``DevicePoller.snapshots``)."""
        self.devices.source = source

    def notification(self, sink: str, result: str, count: int = 1) -> None:
        self.notifications.labels(sink, result).inc(count)

    def notification_latency(self, sink: str, seconds: float) -> None:
        self.notification_latencies.labels(sink).observe(seconds)
