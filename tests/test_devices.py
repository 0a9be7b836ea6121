"""Device progress: aggregation rules, the device poller against the simulator, the gauge."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs
from support import ACCOUNT, write_config
from tools import require_tool

from fotawatch.app import build_client
from fotawatch.config import load_settings
from fotawatch.device_poller import DevicePoller
from fotawatch.devices import (
    MAX_UNKNOWN_STATUSES,
    OTHER_STATUSES,
    DeviceCounts,
    aggregate,
    diff,
    milestones_reached,
)
from fotawatch.events import DevicesPolled, Event
from fotawatch.metrics import Metrics, exposition
from fotawatch.model import CampaignKey
from fotawatch.simulator import ManualClock, Scenario, Simulator
from fotawatch.store.sqlite import SqliteStore, open_store

CID = "0d000000-0000-0000-0000-0000000000d1"
KEY = CampaignKey(account=ACCOUNT, campaign_id=CID)
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
PROGRESS = [
    {"at": 0, "UpgradePending": 1.0},
    {"at": 100, "UpgradeSuccess": 0.3, "UpgradeFailed": 0.01, "NoDeviceDataFromNetwork": 0.05,
     "UpgradePending": 0.64},
    {"at": 200, "UpgradeSuccess": 0.95, "UpgradeFailed": 0.02, "DeviceRejected": 0.01,
     "RequestToFotaServerFailed": 0.02},
]  # fmt: skip


def counts(*pairs: tuple[str, int], total: int | None = None, at: float = 0) -> DeviceCounts:
    statuses = [s for s, n in pairs for _ in range(n)]
    return DeviceCounts(key=KEY, polled_at=T0 + dt.timedelta(minutes=at),
                        campaign_status="CampaignScheduled", counts=aggregate(statuses),
                        reported_total=total)  # fmt: skip


@dataclass
class DaemonFake:
    """A DaemonStatus with fixed values."""

    version: str = "9.9.9"
    login_circuit_open: bool = False
    api_up: bool = True
    reload_ok: bool = True
    reload_ok_at: dt.datetime | None = T0
    leader: bool = True
    leader_changes: int = 1


def new_metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, views=list, polling=lambda _k: True, status=DaemonFake())


# --- the rules (pure) ---------------------------------------------------------------------------


def test_upgraded_failed_and_total_follow_the_documented_definitions() -> None:
    """Upgraded = UpgradeSuccess; failed = UpgradeFailed + DeviceRejected; retried ones are not."""
    c = counts(("UpgradeSuccess", 1234), ("UpgradeFailed", 10), ("DeviceRejected", 2),
               ("RequestToFotaServerFailed", 7), ("NoDeviceDataFromNetwork", 5),
               total=2689)  # fmt: skip
    assert (1234, 12, 2689, 1258) == (c.upgraded, c.failed, c.total, c.listed)
    assert "1,234 / 2,689 upgraded, 12 failed" == c.summary()
    assert pytest.approx(12 / 1246) == c.failure_share


def test_total_is_never_below_the_devices_listed() -> None:
    """A missing or too small totalDevice gives way to the number of devices listed."""
    assert (3, 3) == (counts(("UpgradePending", 3)).total, counts(("X", 3), total=1).total)


def test_unknown_statuses_are_kept_and_capped() -> None:
    """Undocumented statuses are counted as sent; beyond the cap the rarest are summed."""
    rare = [(f"Weird{i:02d}", 1) for i in range(MAX_UNKNOWN_STATUSES + 3)]
    c = counts(("UpgradeSuccess", 5), ("Brand new", 9), *rare)
    kept = dict(c.counts)
    assert 9 == kept["Brand new"]
    assert 4 == kept[OTHER_STATUSES]
    assert MAX_UNKNOWN_STATUSES + 2 == len(kept)  # UpgradeSuccess, the kept unknown, _other
    assert 5 + 9 + len(rare) == c.listed


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, 60, []),  # the first poll is a baseline
        (10, 49, []),
        (49, 50, [50]),
        (30, 95, [50, 90]),
        (90, 99, []),
        (99, 100, [100]),
        (100, 100, []),
    ],
)
def test_milestones_are_reached_once_when_crossed(
    before: int | None, after: int, expected: list[int]
) -> None:
    """A milestone is reached by the poll that crosses it; 100 % means every device."""
    previous = None if before is None else counts(("UpgradeSuccess", before),
                                                  ("UpgradePending", 100 - before))  # fmt: skip
    current = counts(("UpgradeSuccess", after), ("UpgradePending", 100 - after))
    assert expected == milestones_reached(previous, current, [100, 50, 90])


def test_all_but_one_device_is_not_100_percent() -> None:
    """2,688 of 2,689 upgraded does not round up to the 100 % milestone."""
    previous = counts(("UpgradeSuccess", 2000), ("UpgradePending", 689))
    current = counts(("UpgradeSuccess", 2688), ("UpgradePending", 1))
    assert [] == milestones_reached(previous, current, [100])


def test_diff_lists_new_changed_and_removed_devices() -> None:
    """New and changed devices with their new status, removed ones, and the moves counted."""
    d = diff({"1": "UpgradePending", "2": "UpgradePending", "3": "UpgradeSuccess"},
             {"1": "UpgradeSuccess", "3": "UpgradeSuccess", "4": "UpgradePending"})  # fmt: skip
    assert {"1": "UpgradeSuccess", "4": "UpgradePending"} == d.changed
    assert ("2",) == d.removed
    assert (("", "UpgradePending", 1), ("UpgradePending", "UpgradeSuccess", 1)) == d.moves


# --- the device poller against the simulator ------------------------------------------------------


def device_campaign(count: int, progress: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"account": ACCOUNT, "id": CID, "status": "CampaignScheduled",
            "devices": {"count": count, "progress": progress}, **fields}  # fmt: skip


@dataclass
class Rig:
    sim: Simulator
    store: SqliteStore
    devices: DevicePoller
    events: list[Event] = field(default_factory=list)

    def requests(self) -> int:
        return int(self.sim.stats()["device_requests"])


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path, campaign: dict[str, Any], clock: ManualClock | None = None, **options: Any
) -> AsyncIterator[Rig]:
    scenario = Scenario.from_dict({"campaigns": [campaign]})
    async with (
        Simulator(scenario, clock=clock) as sim,
        aiohttp.ClientSession() as session,
        open_store(tmp_path / "state.db") as store,
    ):
        settings = load_settings(write_config(tmp_path, sim.url, []))
        client = build_client(settings, session, lambda _e: None)
        events: list[Event] = []
        devices = DevicePoller(lambda: client, store, events.append, **options)
        yield Rig(sim, store, devices, events)


async def test_ten_thousand_devices_are_aggregated_over_ten_pages_as_they_progress(
    tmp_path: Path,
) -> None:
    """Each poll reads all 10 pages and counts every device once, in its current status."""
    clock = ManualClock()
    async with rig(tmp_path, device_campaign(10_000, PROGRESS), clock) as r:
        seen = []
        for now in (0, 100, 200):
            clock.set(now)
            assert "ok" == await r.devices.poll(KEY, campaign_status="CampaignScheduled")
            c = r.devices.latest[KEY]
            seen.append((dict(c.counts), c.total, r.requests()))
        statuses = await r.store.device_statuses(KEY)
        history = await r.store.device_history(KEY)
    assert [
        ({"UpgradePending": 10_000}, 10_000, 10),
        ({"UpgradeSuccess": 3000, "UpgradeFailed": 100, "NoDeviceDataFromNetwork": 500,
          "UpgradePending": 6400}, 10_000, 20),
        ({"UpgradeSuccess": 9500, "UpgradeFailed": 200, "DeviceRejected": 100,
          "RequestToFotaServerFailed": 200}, 10_000, 30),
    ] == seen  # fmt: skip
    assert [10_000, 3600, 7000] == [e.changed for e in r.events if isinstance(e, DevicesPolled)]
    assert "9,500 / 10,000 upgraded, 300 failed" == history[-1].summary()
    assert (10_000, "UpgradeSuccess", "RequestToFotaServerFailed") == (
        len(statuses), statuses["350000000000000"], statuses["350000000009999"],
    )  # fmt: skip


async def test_repeating_cursor_is_reported_once_and_never_looped_on(tmp_path: Path) -> None:
    """A cursor that does not advance ends the round after two pages, logged once, counted."""
    campaign = device_campaign(2500, [{"at": 0, "UpgradeSuccess": 1.0}], repeat_cursor=True)
    async with rig(tmp_path, campaign) as r:
        with capture_logs() as logs:
            results = [await r.devices.poll(KEY, campaign_status="CampaignScheduled")
                       for _ in range(2)]  # fmt: skip
        requests = r.requests()
        stored = await r.store.latest_device_counts()
    registry = CollectorRegistry()
    metrics = new_metrics(registry)
    for event in r.events:
        metrics.on_event(event)
    assert ["bad_cursor", "bad_cursor"] == results
    assert 4 == requests  # two per round: the first page and the one that repeats it
    assert ["device_report_bad_cursor"] == [e["event"] for e in logs if e["log_level"] != "debug"]
    assert ({}, {}) == (r.devices.latest, stored)
    assert 2.0 == registry.get_sample_value(
        "fotawatch_device_polls_total", {"account": ACCOUNT, "result": "bad_cursor"}
    )


async def test_failing_report_keeps_the_last_counts_and_logs_edges(tmp_path: Path) -> None:
    """A 5xx round keeps the previous counts; failing and recovery are logged once each."""
    clock = ManualClock()
    progress = [{"at": 0, "UpgradePending": 1.0}, {"at": 10, "UpgradeSuccess": 1.0}]
    async with rig(tmp_path, device_campaign(1500, progress), clock) as r:
        await r.devices.poll(KEY, campaign_status="CampaignScheduled")
        r.sim.set_faults([{"kind": "http_error", "match": "devices", "status": 503}])
        clock.set(10)
        with capture_logs() as logs:
            results = [await r.devices.poll(KEY, campaign_status="CampaignScheduled")
                       for _ in range(2)]  # fmt: skip
            r.sim.clear_faults()
            results.append(await r.devices.poll(KEY, campaign_status="CampaignScheduled"))
    assert ["http_5xx", "http_5xx", "ok"] == results
    assert ["device_poll_failing", "device_poll_recovered"] == [
        e["event"] for e in logs if e["log_level"] != "debug"
    ]
    assert {"UpgradeSuccess": 1500} == dict(r.devices.latest[KEY].counts)


async def test_restart_keeps_the_newest_counts(tmp_path: Path) -> None:
    """A new poller over the same store starts from the stored counts."""
    async with rig(tmp_path, device_campaign(5, [{"at": 0, "UpgradeSuccess": 1.0}])) as r:
        await r.devices.poll(KEY, campaign_status="CampaignScheduled")
        again = DevicePoller(lambda: None, r.store, r.events.append)  # type: ignore[arg-type,return-value]
        await again.load()
    assert r.devices.latest == again.latest


# --- the gauge -----------------------------------------------------------------------------------


def metrics_with(*snapshots: DeviceCounts) -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics = new_metrics(registry)
    metrics.set_devices(lambda: snapshots)
    return registry


def device_samples(body: bytes) -> dict[tuple[str, str], float]:
    return {
        (s.labels["campaign_id"], s.labels["device_status"]): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == "fotawatch_campaign_devices"
    }


ODD = DeviceCounts(key=CampaignKey(account=ACCOUNT, campaign_id='odd"one'), polled_at=T0,
                   campaign_status="CampaignEnded",
                   counts=aggregate(['Quote"d \\ new\nline', "UpgradeSuccess"]))  # fmt: skip


def test_gauge_has_every_known_status_and_the_unknown_ones() -> None:
    """Known device statuses are exported with 0; an unknown one gets its own series."""
    samples = device_samples(exposition(metrics_with(counts(("UpgradeSuccess", 3), ("New", 2)))))
    assert 3.0 == samples[CID, "UpgradeSuccess"]
    assert 0.0 == samples[CID, "DeviceRejected"]
    assert 2.0 == samples[CID, "New"]
    assert 9 == len(samples)


def test_fast_device_lines_equal_prometheus_client_rendering() -> None:
    """The cached device lines are exactly what prometheus_client renders from the samples."""
    registry = metrics_with(counts(("UpgradeSuccess", 3)), ODD)
    fast = exposition(registry)
    for _ in range(2):  # the second time from the cache
        reference = generate_latest(registry)
        assert device_samples(reference) == device_samples(exposition(registry))
    lines = {line for line in reference.decode().splitlines() if "campaign_devices" in line}
    assert lines <= set(fast.decode().splitlines())


@pytest.mark.external
def test_promtool_accepts_the_device_gauge() -> None:
    """`promtool check metrics` finds no problem with fotawatch_campaign_devices."""
    body = exposition(metrics_with(counts(("UpgradeSuccess", 3), ("New", 1)), ODD))
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert (0, b"") == (result.returncode, result.stdout + result.stderr)
    assert b'fotawatch_campaign_devices{account="' in body
