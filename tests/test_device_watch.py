"""Which campaigns get their devices polled, and when: the poller, the device watch and the real
scheduler against the simulator, wired as the daemon wires them."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from support import ACCOUNT, wait_for, write_config

from fotawatch.app import build_client
from fotawatch.config import load_settings
from fotawatch.device_poller import DevicePoller
from fotawatch.device_watch import FINAL_ATTEMPTS, DeviceWatch, device_intervals, job_id
from fotawatch.devices import DeviceCounts
from fotawatch.events import EventHub
from fotawatch.model import CampaignKey
from fotawatch.poller import ApiHealth, Poller, Target
from fotawatch.scheduler import PollScheduler, SchedulePolicy
from fotawatch.simulator import Scenario, Simulator
from fotawatch.store.base import DevicePollRecord
from fotawatch.store.sqlite import SqliteStore, open_store


def key(name: str) -> CampaignKey:
    return CampaignKey(account=ACCOUNT, campaign_id=f"0d000000-0000-0000-0000-{name:0>12}")


SCHEDULED, PENDING, ENDED, OFF = key("a1"), key("a2"), key("a3"), key("a4")
STATUSES = {SCHEDULED: "CampaignScheduled", PENDING: "CampaignRequestPending",
            ENDED: "CampaignEnded", OFF: "CampaignScheduled"}  # fmt: skip


@dataclass
class Daemonish:
    sim: Simulator
    store: SqliteStore
    devices: DevicePoller
    watch: DeviceWatch
    scheduler: PollScheduler

    async def polls(self, k: CampaignKey) -> int:
        return len(await self.store.device_history(k))


@contextlib.asynccontextmanager
async def running(tmp_path: Path, *, start: bool = True, **sim: Any) -> AsyncIterator[Daemonish]:
    campaigns = [{"account": ACCOUNT, "id": k.campaign_id, "status": s,
                  "devices": {"count": 5, "progress": [{"at": 0, "UpgradeSuccess": 1.0}]}}
                 for k, s in STATUSES.items()]  # fmt: skip
    scenario = Scenario.from_dict({"campaigns": campaigns, **sim})
    async with Simulator(scenario) as s, aiohttp.ClientSession() as session:
        entries = [{"account": ACCOUNT, "id": k.campaign_id} for k in STATUSES]
        entries[3]["devices_interval_seconds"] = 0
        settings = load_settings(write_config(tmp_path, s.url, entries))
        failures: list[Exception] = []
        hub = EventHub(on_error=lambda _s, _e, err: failures.append(err))
        client = build_client(settings, session, hub.emit)
        async with open_store(settings.state_path) as store:
            poller = Poller(client, store, hub.emit, api_health=ApiHealth(600.0, hub.emit))
            devices = DevicePoller(lambda: client, store, hub.emit)
            await devices.load()
            scheduler = PollScheduler(poller.poll, SchedulePolicy(jitter=0), hub.emit)
            watch = DeviceWatch(devices, scheduler, interval=1.0,
                                intervals=device_intervals(settings), jitter=0)  # fmt: skip
            hub.subscribe(watch.on_event)
            targets = [Target(key=k, interval=1.0) for k in STATUSES]
            await poller.load(targets)
            watch.sync(targets)
            scheduler.sync(targets)
            if start:
                scheduler.start()
            try:
                yield Daemonish(s, store, devices, watch, scheduler)
            finally:
                await scheduler.shutdown(2.0)
        assert [] == failures  # no subscriber failed


async def test_devices_are_polled_while_scheduled_and_once_after_the_end(tmp_path: Path) -> None:
    """Scheduled: every interval; Ended: once; Pending or switched off: never, until Scheduled."""
    async with running(tmp_path) as d:
        await wait_for(lambda: d.polls(SCHEDULED), what="first device poll")
        await wait_for(lambda: d.polls(ENDED), what="the final device poll")
        first = await d.polls(SCHEDULED)
        await wait_for(lambda: _more(d, SCHEDULED, first + 2), what="two more intervals")
        quiet = [await d.polls(k) for k in (ENDED, PENDING, OFF)]
        d.sim.set_status(ACCOUNT, PENDING.campaign_id, "CampaignScheduled")
        await wait_for(lambda: d.polls(PENDING), what="polling after the move to Scheduled")
        last = d.devices.counts(ENDED)
    assert [1, 0, 0] == quiet
    assert last is not None
    assert "CampaignEnded" == last.campaign_status
    assert (True, False, False) == tuple(d.watch.planned(k) for k in (SCHEDULED, ENDED, OFF))


async def _more(d: Daemonish, k: CampaignKey, at_least: int) -> bool:
    return await d.polls(k) >= at_least


async def test_final_poll_is_given_up_after_a_few_failures(tmp_path: Path) -> None:
    """A device report that keeps failing after the end is tried FINAL_ATTEMPTS times, then left."""
    faults = [{"kind": "http_error", "match": "devices", "status": 503}]
    async with running(tmp_path, faults=faults) as d:
        await wait_for(lambda: d.watch.planned(ENDED), what="the final poll planned")
        await wait_for(lambda: not d.watch.planned(ENDED), timeout=20, what="it given up")
        assert d.watch.planned(SCHEDULED)
        requests = d.sim.stats()["device_requests"]
    assert requests >= FINAL_ATTEMPTS * 3  # each poll retried by the client: 3 attempts
    assert d.devices.counts(ENDED) is None


async def test_restart_waits_an_interval_after_the_stored_counts(tmp_path: Path) -> None:
    """With counts stored a minute ago, the first device poll is due an interval after them."""
    async with running(tmp_path, start=False) as d:
        stored_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        counts = DeviceCounts(key=SCHEDULED, polled_at=stored_at,
                              campaign_status="CampaignScheduled",
                              counts=(("UpgradeSuccess", 5),))  # fmt: skip
        await d.store.record_devices(DevicePollRecord(counts=counts), keep=10)
        await d.devices.load()
        d.watch.configure(interval=3600.0, intervals={}, jitter=0)
        d.watch.observe(SCHEDULED, "CampaignScheduled")
        d.watch.observe(PENDING, "CampaignScheduled")
        jobs = d.scheduler._scheduler
        due = {k: jobs.get_job(job_id(k)).next_run_time for k in (SCHEDULED, PENDING)}
    assert abs((due[SCHEDULED] - stored_at).total_seconds() - 3600) < 1
    assert abs((due[PENDING] - dt.datetime.now(dt.UTC)).total_seconds()) < 5


async def test_removed_campaign_loses_its_job_and_counts(tmp_path: Path) -> None:
    """A campaign that leaves the targets is no longer polled and its counts vanish."""
    async with running(tmp_path) as d:
        await wait_for(lambda: d.devices.counts(SCHEDULED), what="first device poll")
        d.watch.sync([Target(key=k) for k in (PENDING, ENDED, OFF)])
        gone = (d.watch.planned(SCHEDULED), d.scheduler.scheduled(job_id(SCHEDULED)))
    assert (False, False) == gone
    assert d.devices.counts(SCHEDULED) is None
