"""Device progress in alerts and `fotawatch status`: Simulator -> pollers -> SQLite -> outbox ->
AlertService -> FakeSlack over loopback, and the failure-rate condition's edges."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from support import ACCOUNT, campaign, wait_for, write_config

from fotawatch.alerts.conditions import ConditionRules, ConditionTracker
from fotawatch.alerts.payloads import dedup_key
from fotawatch.alerts.service import AlertService
from fotawatch.app import build_client, targets_of
from fotawatch.config import load_settings
from fotawatch.device_poller import DevicePoller
from fotawatch.devices import DeviceCounts, aggregate
from fotawatch.events import CampaignPolled, DevicesPolled, Event, EventHub
from fotawatch.model import Campaign, CampaignKey
from fotawatch.poller import ApiHealth, CampaignView, Poller, Target
from fotawatch.simulator import ManualClock, Scenario, Simulator
from fotawatch.status import poll_once, render_table
from fotawatch.store.base import DevicePollRecord
from fotawatch.store.sqlite import SqliteStore, open_store
from fotawatch.testing.fake_slack import FakeSlack

CID = "f858b8c4-2153-11ec-8c44-aeb16d1aa652"
KEY = CampaignKey(account=ACCOUNT, campaign_id=CID)
SCHEDULED = "CampaignScheduled"
# 2,689 devices: 1,234 upgraded, 10 + 2 failed, the rest pending.
REPORT = {"count": 2689, "progress": [{"at": 0, "UpgradeSuccess": 1234 / 2689,
                                       "UpgradeFailed": 10 / 2689, "DeviceRejected": 2 / 2689,
                                       "UpgradePending": 1443 / 2689}]}  # fmt: skip
PROGRESS_TEXT = "1,234 / 2,689 upgraded, 12 failed"


@dataclass
class Pipeline:
    sim: Simulator
    clock: ManualClock
    poller: Poller
    devices: DevicePoller
    service: AlertService
    store: SqliteStore
    target: Target

    async def poll(self) -> None:
        await self.poller.poll(self.target)

    async def poll_devices(self, at: float | None = None) -> str:
        if at is not None:
            self.clock.set(at)
        return await self.devices.poll(KEY, campaign_status=SCHEDULED, name="GM01Q rollout")


@contextlib.asynccontextmanager
async def pipeline(
    tmp_path: Path, alerts: dict[str, Any], devices: dict[str, Any]
) -> AsyncIterator[Pipeline]:
    """What the daemon wires for device progress and alerting, wired the same way, by hand."""
    sim_campaign = {"account": ACCOUNT, "id": CID, "name": "GM01Q", "status": SCHEDULED,
                    "devices": devices}  # fmt: skip
    clock = ManualClock()
    scenario = Scenario.from_dict({"campaigns": [sim_campaign]})
    async with Simulator(scenario, clock=clock) as sim, aiohttp.ClientSession() as session:
        config = write_config(tmp_path, sim.url, [campaign(CID, name="GM01Q rollout")],
                              alerts=alerts)  # fmt: skip
        settings = load_settings(config)
        failures: list[Exception] = []
        hub = EventHub(on_error=lambda _s, _e, err: failures.append(err))
        async with open_store(settings.state_path) as store:
            service = AlertService(settings.alerts, store, session)
            hub.subscribe(service.on_event)
            client = build_client(settings, session, hub.emit)
            poller = Poller(client, store, hub.emit, api_health=ApiHealth(600.0, hub.emit),
                            outbox_for=service.outbox_for)  # fmt: skip
            devices = DevicePoller(lambda: client, store, hub.emit,
                                   outbox_for=service.progress_outbox)  # fmt: skip
            await devices.load()
            service.progress_of = devices.counts
            targets = targets_of(settings)
            await poller.load(targets)
            service.prime(poller.views.values(), devices.latest)
            async with service:
                yield Pipeline(sim, clock, poller, devices, service, store, targets[0])
        assert [] == failures  # no subscriber failed


async def delivered_all(store: SqliteStore) -> bool:
    rows = await store.outbox_rows()
    return bool(rows) and all(r["state"] == "delivered" for r in rows)


async def test_transition_alert_shows_device_progress(tmp_path: Path) -> None:
    """The Slack message of a transition carries "1,234 / 2,689 upgraded, 12 failed"."""
    async with FakeSlack() as slack:
        alerts = {"slack": {"webhook_url": slack.url}}
        async with pipeline(tmp_path, alerts, REPORT) as p:
            await p.poll()  # the baseline
            assert "ok" == await p.poll_devices()
            p.sim.set_status(ACCOUNT, CID, "CampaignEnded")
            await p.poll()
            await slack.wait_for_posts(1)
            rows = await p.store.outbox_rows()
    assert {"upgraded": 1234, "total": 2689, "failed": 12} == rows[0]["payload"]["progress"]
    assert PROGRESS_TEXT in json.dumps(slack.posts[0].body["blocks"], ensure_ascii=False)


async def test_milestones_are_sent_once_each(tmp_path: Path) -> None:
    """50 %, 90 % and 100 % are each announced once, by the poll that reached them."""
    devices = {"count": 100, "progress": [{"at": 0, "UpgradePending": 1.0},
                                          {"at": 10, "UpgradeSuccess": 0.6, "UpgradePending": 0.4},
                                          {"at": 20, "UpgradeSuccess": 1.0}]}  # fmt: skip
    async with FakeSlack() as slack:
        alerts = {"slack": {"webhook_url": slack.url}, "milestones": [50, 90, 100],
                  "min_interval_seconds": 0}  # fmt: skip
        async with pipeline(tmp_path, alerts, devices) as p:
            for at in (0, 10, 20, 30):
                await p.poll_devices(at)
            await wait_for(lambda: delivered_all(p.store), what="all delivered")
            keys = [r["dedup_key"] for r in await p.store.outbox_rows()]
    assert [f"milestone:{KEY}:{m}" for m in (50, 90, 100)] == keys
    text = "\n".join(post.body["text"] for post in slack.posts)
    assert "50% upgraded" in text
    assert "100% upgraded" in text
    assert "100 / 100 upgraded, 0 failed" in text


async def test_failure_rate_fires_and_resolves(tmp_path: Path) -> None:
    """Failed devices above the threshold fire the condition once; below it, it resolves."""
    devices = {"count": 100, "progress": [
        {"at": 0, "UpgradePending": 1.0},
        {"at": 10, "UpgradeSuccess": 0.3, "UpgradeFailed": 0.1, "UpgradePending": 0.6},
        {"at": 20, "UpgradeSuccess": 0.3, "UpgradeFailed": 0.1, "UpgradePending": 0.6},
        {"at": 30, "UpgradeSuccess": 0.97, "UpgradeFailed": 0.02, "UpgradePending": 0.01},
    ]}  # fmt: skip
    async with FakeSlack() as slack:
        alerts = {"slack": {"webhook_url": slack.url}, "min_interval_seconds": 0,
                  "failure_rate": {"threshold": 0.05, "min_devices": 20}}  # fmt: skip
        async with pipeline(tmp_path, alerts, devices) as p:
            await p.poll()  # the campaign's status, for the condition
            for at in (0, 10, 20):
                await p.poll_devices(at)
            await slack.wait_for_posts(1)
            await p.poll_devices(30)
            await slack.wait_for_posts(2)
            keys = [r["dedup_key"] for r in await p.store.outbox_rows()]
    assert [f"condition:failure_rate:{KEY}:firing:devices",
            f"condition:failure_rate:{KEY}:resolved:devices"] == keys  # fmt: skip
    firing, resolved = (post.body["text"] for post in slack.posts)
    assert "FIRING Device upgrade failures" in firing
    assert "RESOLVED Device upgrade failures" in resolved
    assert "10 of 40 devices with an outcome failed (25.0%)" in json.dumps(slack.posts[0].body)


async def test_status_shows_device_progress(tmp_path: Path) -> None:
    """`fotawatch status` reads the report once when nothing is stored, else the stored counts."""
    scenario = Scenario.from_dict({"campaigns": [
        {"account": ACCOUNT, "id": CID, "status": SCHEDULED, "devices": REPORT}]})  # fmt: skip
    async with Simulator(scenario) as sim:
        config = write_config(tmp_path, sim.url, [campaign(CID, name="Rollout")])
        settings = load_settings(config)
        live = await poll_once(settings)
        requests = sim.stats()["device_requests"]
        async with open_store(settings.state_path) as store:
            stored = DeviceCounts(key=KEY, polled_at=dt.datetime.now(dt.UTC),
                                  campaign_status=SCHEDULED,
                                  counts=(("UpgradeSuccess", 7),))  # fmt: skip
            await store.record_devices(DevicePollRecord(counts=stored), keep=10)
        again = await poll_once(settings)
    assert (3, requests) == (requests, sim.stats()["device_requests"])  # stored: no report read
    assert PROGRESS_TEXT in render_table(live)
    assert {"upgraded": 7, "total": 7, "failed": 0} == {
        k: again[0]["progress"][k] for k in ("upgraded", "total", "failed")
    }


# --- the condition's edges (pure) ----------------------------------------------------------------

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
RULES = ConditionRules(failure_threshold=0.05, failure_min_devices=20, overdue_after=None,
                       not_scheduled_by_start=False)  # fmt: skip


def devices_polled(success: int, failed: int, minute: float = 0) -> DevicesPolled:
    statuses = ["UpgradeSuccess"] * success + ["UpgradeFailed"] * failed
    counts = DeviceCounts(key=KEY, polled_at=T0 + dt.timedelta(minutes=minute),
                          campaign_status=SCHEDULED, counts=aggregate(statuses))  # fmt: skip
    return DevicesPolled(key=KEY, result="ok", duration=0.1, at=counts.polled_at, counts=counts)


def scheduled_poll() -> CampaignPolled:
    c = Campaign(account=ACCOUNT, campaign_id=CID, status=SCHEDULED, name="GM01Q")
    return CampaignPolled(key=KEY, result="ok", duration=0.1, at=T0, campaign=c, status_since=T0)


def feed(tracker: ConditionTracker, *events: Event) -> list[str]:
    return [f"{p['state']}:{p['condition']}" for e in events for p in tracker.observe(e, T0)]


def test_too_few_devices_with_an_outcome_are_not_judged() -> None:
    """10 failed of 15 decided stays quiet while min_devices is 20."""
    tracker = ConditionTracker(RULES)
    assert [] == feed(tracker, scheduled_poll(), devices_polled(5, 10))


def test_fires_once_and_resolves_once() -> None:
    """Above the threshold: one firing; still above: nothing; at or below: one resolution."""
    tracker = ConditionTracker(RULES)
    assert ["firing:failure_rate"] == feed(tracker, scheduled_poll(), devices_polled(20, 5))
    assert [] == feed(tracker, devices_polled(25, 6, minute=15))
    assert ["resolved:failure_rate"] == feed(tracker, devices_polled(95, 5, minute=30))


def test_campaign_polls_alone_never_resolve_it() -> None:
    """Before or between device polls the condition is left as it is."""
    tracker = ConditionTracker(RULES)
    feed(tracker, scheduled_poll(), devices_polled(20, 5))
    assert [] == feed(tracker, scheduled_poll(), scheduled_poll())


def test_restart_re_arms_from_the_stored_counts() -> None:
    """Primed with the stored counts, the firing has the same key (a no-op in the outbox) and
    the resolution after the restart is sent."""
    before = ConditionTracker(RULES)
    fired = [p for e in (scheduled_poll(), devices_polled(20, 5)) for p in before.observe(e, T0)]
    view = CampaignView(key=KEY, name=None, campaign=scheduled_poll().campaign, status=SCHEDULED,
                        status_since=T0, last_seq=0, last_success_at=T0)  # fmt: skip
    stored = devices_polled(20, 5).counts
    assert stored is not None
    after = ConditionTracker(RULES)
    primed = after.prime([view], T0, {KEY: stored})
    assert [dedup_key(p) for p in fired] == [dedup_key(p) for p in primed]
    assert ["resolved:failure_rate"] == feed(after, devices_polled(95, 5, minute=30))
