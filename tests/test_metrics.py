"""fotawatch.metrics: campaign state at scrape time, event counters, the fast exposition."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import random
import subprocess
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from tools import require_tool

from fotawatch.events import AuthRequest, CampaignPolled, TransitionObserved
from fotawatch.metrics import POLL_RESULTS, STATUS_LABEL_MAX, Metrics, exposition
from fotawatch.model import KNOWN_STATUSES, Campaign, CampaignKey, Transition, TransitionKind
from fotawatch.poller import CampaignView

ACCOUNT = "0642233522-00001"
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
Samples = set[tuple[str, frozenset[tuple[str, str]], float]]


@dataclass
class DaemonFake:
    """A DaemonStatus with settable values."""

    version: str = "9.9.9"
    login_circuit_open: bool = False
    api_up: bool = True
    reload_ok: bool = True
    reload_ok_at: dt.datetime | None = T0
    leader: bool = True
    leader_changes: int = 1


def key(cid: str, account: str = ACCOUNT) -> CampaignKey:
    return CampaignKey(account=account, campaign_id=cid)


def view(cid: str, status: str | None, **fields: object) -> CampaignView:
    """A polled campaign in ``status`` (None: never polled successfully)."""
    k = key(cid)
    campaign = None
    if status is not None:
        campaign = Campaign(
            account=k.account,
            campaign_id=cid,
            status=status,
            name=f"name of {cid}",
            make="ACME",
            model="W9",
            protocol="LWM2M",
            firmware_from="1.0",
            firmware_to=None,
            start_date=dt.date(2026, 3, 1),
            end_date=dt.date(2026, 3, 31),
        )
    base: dict[str, object] = {
        "key": k,
        "name": None,
        "campaign": campaign,
        "status": status,
        "status_since": T0 if status else None,
        "last_seq": 0,
        "last_success_at": T0 if status else None,
    }
    return CampaignView(**{**base, **fields})  # type: ignore[arg-type]


class Fixture:
    """A registry with Metrics over a mutable dict of views and a set of polled keys."""

    def __init__(self, views: Iterable[CampaignView] = ()) -> None:
        self.views = {v.key: v for v in views}
        self.stopped: set[CampaignKey] = set()
        self.status = DaemonFake()
        self.registry = CollectorRegistry()
        self.metrics = Metrics(
            self.registry,
            views=self.views.values,
            polling=lambda k: k not in self.stopped,
            status=self.status,
        )

    def put(self, *views: CampaignView) -> None:
        for v in views:
            self.views[v.key] = v

    def samples(self, *, openmetrics: bool = False) -> Samples:
        """The fast exposition, parsed."""
        return parsed(exposition(self.registry, openmetrics=openmetrics), openmetrics=openmetrics)

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: value for n, labels, value in self.samples() if n == name}

    def transition(self, k: CampaignKey, from_status: str | None, to_status: str) -> None:
        t = Transition(
            key=k,
            seq=1,
            from_status=from_status,
            to_status=to_status,
            kind=TransitionKind.PROGRESSED,
            observed_at=T0,
        )
        self.metrics.on_event(TransitionObserved(transition=t, name=None))


def parsed(body: bytes, *, openmetrics: bool = False) -> Samples:
    parse = parse_openmetrics if openmetrics else parse_text
    return {
        (s.name, frozenset(s.labels.items()), s.value)
        for family in parse(body.decode())
        for s in family.samples
    }


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


def ident(cid: str) -> dict[str, str]:
    return {"account": ACCOUNT, "campaign_id": cid}


def status_series(f: Fixture, cid: str) -> dict[str, float]:
    return {
        dict(ls)["status"]: v
        for ls, v in f.series("fotawatch_campaign_status").items()
        if dict(ls)["campaign_id"] == cid
    }


# ---------------------------------------------------------------- campaign state


def test_every_known_status_is_a_state_set_with_exactly_one_one() -> None:
    """Each campaign exports every known status, 1 for the current one and 0 for the others."""
    f = Fixture(view(f"c{i}", s.value) for i, s in enumerate(KNOWN_STATUSES))
    for i, s in enumerate(KNOWN_STATUSES):
        expected = {other.value: float(other == s) for other in KNOWN_STATUSES}
        assert expected == status_series(f, f"c{i}")


def test_unknown_status_gets_its_own_series_and_known_ones_are_zero() -> None:
    """An unrecognised status is exported raw with value 1; every known status is 0."""
    f = Fixture([view("c1", "CampaignTeleported")])
    expected = {s.value: 0.0 for s in KNOWN_STATUSES} | {"CampaignTeleported": 1.0}
    assert expected == status_series(f, "c1")


def test_unknown_status_label_is_length_capped() -> None:
    """A very long unrecognised status is cut to STATUS_LABEL_MAX characters."""
    f = Fixture([view("c1", "X" * 5000)])
    assert {"X" * STATUS_LABEL_MAX: 1.0} == {
        k: v for k, v in status_series(f, "c1").items() if v == 1.0
    }


def test_never_polled_campaign_exports_no_status_info_or_timestamps() -> None:
    """Before the first successful poll there is no status, info, date or timestamp series."""
    f = Fixture([view("c1", None)])
    names = {name for name, ls, _ in f.samples() if ("campaign_id", "c1") in ls}
    assert {"fotawatch_campaign_missing", "fotawatch_campaign_polling"} == names


def test_info_and_timestamps_of_a_polled_campaign() -> None:
    """Info carries the descriptive labels ("" when not reported); dates are 00:00 UTC."""
    f = Fixture([view("c1", "CampaignScheduled", name="Spring rollout")])
    info = labels(
        **ident("c1"),
        campaign_name="Spring rollout",
        make="ACME",
        model="W9",
        protocol="LWM2M",
        firmware_from="1.0",
        firmware_to="",
    )
    assert {info: 1.0} == f.series("fotawatch_campaign_info")
    c1 = labels(**ident("c1"))
    march_1 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()
    march_31 = dt.datetime(2026, 3, 31, tzinfo=dt.UTC).timestamp()
    assert {c1: march_1} == f.series("fotawatch_campaign_start_date_timestamp_seconds")
    assert {c1: march_31} == f.series("fotawatch_campaign_end_date_timestamp_seconds")
    assert {c1: T0.timestamp()} == f.series("fotawatch_campaign_status_changed_timestamp_seconds")
    assert {c1: T0.timestamp()} == f.series(
        "fotawatch_campaign_last_poll_success_timestamp_seconds"
    )


def test_missing_and_polling_flags() -> None:
    """missing comes from the view, polling from the scheduler's callable."""
    f = Fixture([view("c1", "CampaignEnded"), view("c2", None, missing=True)])
    f.stopped.add(key("c1"))
    c1, c2 = labels(**ident("c1")), labels(**ident("c2"))
    assert {c1: 0.0, c2: 1.0} == f.series("fotawatch_campaign_missing")
    assert {c1: 0.0, c2: 1.0} == f.series("fotawatch_campaign_polling")


def test_removed_view_disappears_from_every_family() -> None:
    """A campaign no longer in the views has no series on the next scrape."""
    f = Fixture([view("c1", "CampaignScheduled"), view("c2", "CampaignScheduled")])
    f.transition(key("c2"), "CampaignRequestQueued", "CampaignScheduled")
    assert any(("campaign_id", "c2") in ls for _, ls, _ in f.samples())
    del f.views[key("c2")]
    assert not any(("campaign_id", "c2") in ls for _, ls, _ in f.samples())
    assert any(("campaign_id", "c1") in ls for _, ls, _ in f.samples())


def test_changes_outside_the_view_invalidate_the_cached_text() -> None:
    """The polling flag and new transitions show although the view object is unchanged."""
    f = Fixture([view("c1", "CampaignScheduled")])
    f.samples()  # fills the cache
    f.stopped.add(key("c1"))
    f.transition(key("c1"), "CampaignRequestQueued", "CampaignScheduled")
    assert {labels(**ident("c1")): 0.0} == f.series("fotawatch_campaign_polling")
    assert 1 == len(f.series("fotawatch_campaign_transitions_total"))


def test_registration_does_not_collect() -> None:
    """Building Metrics (registering the collectors) reads no views."""
    calls: list[int] = []

    def views() -> list[CampaignView]:
        calls.append(1)
        return []

    Metrics(CollectorRegistry(), views=views, polling=lambda _k: True, status=DaemonFake())
    assert [] == calls


# ---------------------------------------------------------------- event metrics


def test_transitions_are_counted_per_from_and_to_status() -> None:
    """TransitionObserved counts; the first sight of a campaign has from_status ""."""
    f = Fixture([view("c1", "CampaignScheduled")])
    f.transition(key("c1"), None, "CampaignRequestFailed")
    f.transition(key("c1"), "CampaignRequestQueued", "CampaignScheduled")
    f.transition(key("c1"), "CampaignRequestQueued", "CampaignScheduled")
    expected = {
        labels(**ident("c1"), from_status="", to_status="CampaignRequestFailed"): 1.0,
        labels(
            **ident("c1"), from_status="CampaignRequestQueued", to_status="CampaignScheduled"
        ): 2.0,
    }
    assert expected == f.series("fotawatch_campaign_transitions_total")


def test_forget_removes_the_transition_series_of_a_campaign() -> None:
    """forget(keys) drops a campaign's transition counters, even while it is still in views."""
    f = Fixture([view("c1", "CampaignScheduled"), view("c2", "CampaignScheduled")])
    f.transition(key("c1"), "CampaignRequestQueued", "CampaignScheduled")
    f.transition(key("c2"), "CampaignRequestQueued", "CampaignScheduled")
    f.metrics.forget([key("c2")])
    series = f.series("fotawatch_campaign_transitions_total")
    assert [ident("c1")["campaign_id"]] == [dict(ls)["campaign_id"] for ls in series]


def test_sync_forgets_unconfigured_campaigns_and_preinitialises_accounts() -> None:
    """sync(keys) keeps only the configured campaigns' counters and pre-initialises polls."""
    f = Fixture([view("c1", "CampaignScheduled")])
    f.transition(key("c1"), "CampaignRequestQueued", "CampaignScheduled")
    f.metrics.sync([key("c2", account="A"), key("c3", account="B")])
    assert {} == f.series("fotawatch_campaign_transitions_total")
    polls = f.series("fotawatch_polls_total")
    expected = {labels(account=a, result=r): 0.0 for a in "AB" for r in POLL_RESULTS}
    assert expected == polls
    f.metrics.sync([key("c2", account="A")])
    assert {"A"} == {dict(ls)["account"] for ls in f.series("fotawatch_polls_total")}


def test_polls_and_durations_are_counted() -> None:
    """CampaignPolled counts the result per account and observes the duration."""
    f = Fixture()
    for result, duration in (("ok", 0.03), ("ok", 0.2), ("timeout", 12.0)):
        f.metrics.on_event(CampaignPolled(key=key("c1"), result=result, duration=duration, at=T0))
    polls = f.series("fotawatch_polls_total")
    assert 2.0 == polls[labels(account=ACCOUNT, result="ok")]
    assert 1.0 == polls[labels(account=ACCOUNT, result="timeout")]
    assert {frozenset(): 3.0} == f.series("fotawatch_poll_duration_seconds_count")
    buckets = f.series("fotawatch_poll_duration_seconds_bucket")
    assert 1.0 == buckets[labels(le="0.05")]
    assert 2.0 == buckets[labels(le="10.0")]
    assert 3.0 == buckets[labels(le="30.0")]


def test_auth_requests_are_preinitialised_and_counted() -> None:
    """Every kind x result starts at 0; AuthRequest events count."""
    f = Fixture()
    f.metrics.on_event(AuthRequest(kind="session", result="rejected"))
    series = f.series("fotawatch_auth_requests_total")
    assert 6 == len(series)
    assert 1.0 == series[labels(kind="session", result="rejected")]
    assert 1.0 == sum(series.values())


def test_notification_metrics() -> None:
    """Sinks are pre-initialised; counts, latencies and queue depths are exported."""
    f = Fixture()
    f.metrics.add_sinks(["slack"])
    f.metrics.notification("slack", "retried", 2)
    f.metrics.notification_latency("slack", 42.0)
    f.metrics.set_queue_depths(lambda: {"slack": 3, "webhook:ops": 0})
    counts = f.series("fotawatch_notifications_total")
    assert {"delivered": 0.0, "retried": 2.0, "failed": 0.0, "dropped": 0.0} == {
        dict(ls)["result"]: v for ls, v in counts.items()
    }
    assert {labels(sink="slack"): 1.0} == f.series("fotawatch_notification_latency_seconds_count")
    depths = f.series("fotawatch_notification_queue_depth")
    assert {labels(sink="slack"): 3.0, labels(sink="webhook:ops"): 0.0} == depths


def test_daemon_gauges_are_read_at_scrape_time() -> None:
    """Circuit, API health, reload state and build info follow the DaemonStatus."""
    f = Fixture()
    f.status.login_circuit_open, f.status.api_up, f.status.reload_ok = True, False, False
    samples = {(n, ls): v for n, ls, v in f.samples()}
    assert 1.0 == samples["fotawatch_login_circuit_open", frozenset()]
    assert 0.0 == samples["fotawatch_api_up", frozenset()]
    assert 0.0 == samples["fotawatch_config_last_reload_successful", frozenset()]
    at = samples["fotawatch_config_last_reload_success_timestamp_seconds", frozenset()]
    assert T0.timestamp() == at
    assert 1.0 == samples["fotawatch_build_info", labels(version="9.9.9")]
    f.status.reload_ok_at = None
    assert {} == f.series("fotawatch_config_last_reload_success_timestamp_seconds")


# ---------------------------------------------------------------- exposition


def busy_fixture() -> Fixture:
    """Campaigns in every state, with awkward label values, and every event metric used."""
    views = [view(f"c{i}", s.value) for i, s in enumerate(KNOWN_STATUSES)]
    views += [
        view("odd", 'Campaign"Odd\\\n', name='quote " back \\ newline \n tab \t é'),
        view("never", None, missing=True),
    ]
    f = Fixture(views)
    f.stopped.add(key("c4"))
    f.transition(key("c1"), None, "CampaignRequestFailed")
    f.transition(key("odd"), 'a"b', "c\\d")
    f.metrics.sync(f.views)
    f.metrics.add_sinks(["slack"])
    f.metrics.on_event(CampaignPolled(key=key("c1"), result="ok", duration=0.4, at=T0))
    return f


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_fast_exposition_equals_prometheus_client_rendering(openmetrics: bool) -> None:
    """The cached text and prometheus_client's rendering of collect() parse to the same samples."""
    f = busy_fixture()
    render = openmetrics_latest if openmetrics else generate_latest
    for _ in range(2):  # the second time from the cache
        reference = parsed(render(f.registry), openmetrics=openmetrics)
        assert reference == f.samples(openmetrics=openmetrics)
    assert len(reference) > 50


def test_fast_exposition_is_byte_identical_for_campaign_families() -> None:
    """Not only the same samples: the campaign lines are formatted exactly as upstream's."""
    f = busy_fixture()
    fast = set(exposition(f.registry).decode().splitlines())
    reference = set(generate_latest(f.registry).decode().splitlines())
    assert {line for line in reference if "fotawatch_campaign_" in line} <= fast


@pytest.mark.external
def test_promtool_accepts_the_exposition() -> None:
    """`promtool check metrics` finds no problem in /metrics."""
    body = exposition(busy_fixture().registry)
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert (0, b"") == (result.returncode, result.stdout + result.stderr)


# ---------------------------------------------------------------- scrape during a poll burst


def generation(cid: str, n: int) -> CampaignView:
    """The n-th poll result of a campaign: its status, status_since and name all derive from n."""
    status = KNOWN_STATUSES[n % len(KNOWN_STATUSES)].value
    return view(
        cid, status, status_since=T0 + dt.timedelta(seconds=n), name=f"{cid} generation {n}"
    )


def check_consistent(samples: Samples, cids: list[str]) -> None:
    """Each campaign: exactly one status at 1, matching its status-changed time and name."""
    by_campaign: dict[str, dict[str, object]] = {cid: {"ones": []} for cid in cids}
    for name, ls, value in samples:
        d = dict(ls)
        entry = by_campaign.get(d.get("campaign_id", ""))
        if entry is None:
            continue
        if name == "fotawatch_campaign_status" and value == 1.0:
            entry["ones"].append(d["status"])  # type: ignore[attr-defined]
        elif name == "fotawatch_campaign_status_changed_timestamp_seconds":
            entry["n"] = round(value - T0.timestamp())
        elif name == "fotawatch_campaign_info":
            entry["name"] = d["campaign_name"]
    for cid, entry in by_campaign.items():
        n = entry["n"]
        assert isinstance(n, int)
        assert [KNOWN_STATUSES[n % len(KNOWN_STATUSES)].value] == entry["ones"], cid
        assert f"{cid} generation {n}" == entry["name"], cid


async def test_scrapes_during_a_poll_burst_see_whole_views() -> None:
    """Scrapes interleaved with a burst of view replacements never see a half-updated campaign."""
    cids = [f"c{i:03d}" for i in range(50)]
    f = Fixture(generation(cid, 0) for cid in cids)
    rng = random.Random(7)
    done = asyncio.Event()
    scrapes: list[Samples] = []

    async def poll_burst(worker: int) -> None:
        for n in range(1, 300):
            cid = rng.choice(cids)
            f.put(generation(cid, n * 10 + worker))
            if n % 20 == 0:
                await asyncio.sleep(0)

    async def scraper() -> None:
        while not done.is_set():
            scrapes.append(f.samples(openmetrics=len(scrapes) % 2 == 1))
            await asyncio.sleep(0)

    scraping = asyncio.create_task(scraper())
    await asyncio.gather(*(poll_burst(w) for w in range(4)))
    done.set()
    await scraping
    assert len(scrapes) >= 5
    for samples in scrapes:
        check_consistent(samples, cids)


def test_replaced_view_is_rendered_again() -> None:
    """A replaced view shows its new values; an unchanged one keeps its cached text."""
    f = Fixture([generation("c1", 1)])
    before = f.samples()
    f.put(replace(generation("c1", 2)))
    after = f.samples()
    assert before != after
    check_consistent(after, ["c1"])


def test_the_text_cache_does_not_keep_replaced_views_alive() -> None:
    """Once a poll replaced a view, the cached text no longer holds the old one (at 10,000
    campaigns that pinned every replaced view until the next scrape); the text stays cached
    while the view is the same."""
    f = Fixture([view("c1", "CampaignScheduled")])
    first = f.views[key("c1")]
    old = weakref.ref(first)
    text = exposition(f.registry)
    assert text == exposition(f.registry)
    f.put(replace(first, last_seq=1))
    del first
    gc.collect()
    assert old() is None
    assert text == exposition(f.registry)  # last_seq is not exported: same text, new view
