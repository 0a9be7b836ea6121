"""Campaign discovery against the simulator: both history paths, paging, filters, the cap, the
baseline, "now watching" messages, and a new campaign found within one discovery interval."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs
from support import ACCOUNT, wait_for, write_config

from fotawatch.alerts.render import render_slack
from fotawatch.alerts.service import AlertService
from fotawatch.app import build_client
from fotawatch.config import load_settings
from fotawatch.config.models import AccountSettings, AlertsSettings
from fotawatch.discovery import Discovery, merge_targets
from fotawatch.events import CampaignsDiscovered, Event
from fotawatch.model import Campaign, CampaignKey
from fotawatch.poller import PollOutcome, Target
from fotawatch.scheduler import PollScheduler, SchedulePolicy
from fotawatch.simulator import Scenario, Simulator
from fotawatch.store.base import PollRecord
from fotawatch.store.sqlite import SqliteStore, open_store


def cid(name: str) -> str:
    return f"0d000000-0000-0000-0000-{name:0>12}"


def key(name: str) -> CampaignKey:
    return CampaignKey(account=ACCOUNT, campaign_id=cid(name))


def sim_campaign(short: str, status: str, **fields: Any) -> dict[str, Any]:
    return {"account": ACCOUNT, "id": cid(short), "name": f"GM01Q {short}", "status": status,
            **fields}  # fmt: skip


ROLLOUTS = ["b1", "b2", "b3", "b4", "b5"]
CAMPAIGNS = [
    *(sim_campaign(n, "CampaignScheduled") for n in ROLLOUTS),
    sim_campaign("c1", "CampaignScheduled", make="Telit", model="LE910C4-NF"),
    sim_campaign("c2", "CampaignRequestPending", name="Other pending"),
    sim_campaign("c3", "CampaignEnded"),
    sim_campaign("c4", "CampaignFailed"),
]
LIVE = {key(n) for n in [*ROLLOUTS, "c1", "c2"]}


@dataclass
class Rig:
    sim: Simulator
    store: SqliteStore
    discovery: Discovery
    events: list[Event]

    def requests(self) -> int:
        return int(self.sim.stats()["history_requests"])

    async def targets(self) -> set[CampaignKey]:
        return {t.key for t in await self.discovery.run_once()}


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    rule: dict[str, Any] | None = None,
    *,
    campaigns: list[dict[str, Any]] = CAMPAIGNS,
    alerts: AlertService | None = None,
    **scenario: Any,
) -> AsyncIterator[Rig]:
    sim_scenario = Scenario.from_dict({"campaigns": campaigns, "history_page_size": 2,
                                       **scenario})  # fmt: skip
    async with (
        Simulator(sim_scenario) as sim,
        aiohttp.ClientSession() as session,
        open_store(tmp_path / "state.db") as store,
    ):
        settings = load_settings(write_config(tmp_path, sim.url, []))
        client = build_client(settings, session, lambda _e: None)
        account = AccountSettings.model_validate({"account": ACCOUNT, "discover": True,
                                                  **(rule or {})})  # fmt: skip
        events: list[Event] = []
        outbox_for = alerts.notice_outbox if alerts else (lambda _p: ())
        discovery = Discovery(lambda: client, store, events.append, accounts=[account],
                              interval=60.0, outbox_for=outbox_for, final_retention=0)  # fmt: skip
        await discovery.load()
        yield Rig(sim, store, discovery, events)


@pytest.mark.parametrize(("path", "requests"), [("docs", 11), ("sdk", 12)])
async def test_either_history_path_is_found_and_remembered(
    tmp_path: Path, path: str, requests: int
) -> None:
    """Every live campaign is found across pages of 2; the path that answered is remembered."""
    async with rig(tmp_path, history_path=path) as r:
        first = await r.targets()
        after_first = r.requests()
        again = await r.targets()
        recorded = {d.key: d.watched for d in await r.store.discovered()}
    assert (LIVE, LIVE) == (first, again)
    assert path == r.discovery.paths[ACCOUNT]
    # 3 pages of Scheduled, 1 of every other status; the SDK path after one wrong docs probe
    assert (requests, requests + 11) == (after_first, r.requests())
    assert {**dict.fromkeys(LIVE, True), key("c3"): False, key("c4"): False} == recorded


@pytest.mark.parametrize("path", ["docs", "sdk"])
async def test_new_campaign_is_found_within_one_discovery_interval(
    tmp_path: Path, path: str
) -> None:
    """A campaign added to ThingSpace is a target by the next run of the discovery job."""
    found: list[set[CampaignKey]] = []

    async def never(_target: Target) -> PollOutcome:
        raise AssertionError("no campaign is polled here")

    interval = 1.0
    async with rig(tmp_path, history_path=path) as r:
        scheduler = PollScheduler(never, SchedulePolicy(jitter=0), lambda _e: None)

        async def discover() -> None:
            found.append(await r.targets())

        scheduler.every("discovery", discover, interval)
        scheduler.start()
        try:
            await wait_for(lambda: found, what="the first discovery run")
            r.sim.add_campaign(sim_campaign("d1", "CampaignRequestQueued"))
            added = time.monotonic()
            await wait_for(lambda: key("d1") in found[-1], what="the new campaign")
            took = time.monotonic() - added
        finally:
            await scheduler.shutdown(2.0)
    assert took < interval + 1.0  # one interval, and the run itself
    assert LIVE | {key("d1")} == found[-1]


async def test_filters_and_the_cap(tmp_path: Path) -> None:
    """make/model/name filters apply; at most max_campaigns are watched, the rest wait for room."""
    rule = {"make": "sequans", "model": "gm01q", "name_pattern": "^GM01Q ", "max_campaigns": 3}
    async with rig(tmp_path, rule) as r:
        with capture_logs() as logs:
            first = await r.targets()
            assert first == await r.targets()
        ended = min(first)
        r.sim.set_status(ACCOUNT, ended.campaign_id, "CampaignEnded")
        final = Campaign(account=ACCOUNT, campaign_id=ended.campaign_id, status="CampaignEnded")
        await r.store.record([PollRecord(key=ended, polled_at=dt.datetime.now(dt.UTC),
                                         result="ok", campaign=final)])  # fmt: skip
        later = await r.targets()
    rollouts = {key(n) for n in ROLLOUTS}
    assert (3, 3) == (len(first), len(later))
    assert first <= rollouts
    assert later <= rollouts - {ended}
    assert len(first & later) == 2
    capped = [e for e in logs if e["event"] == "discovery_cap_reached"]
    assert [2] == [e["waiting"] for e in capped]  # logged once, not on every run


async def test_campaigns_that_no_longer_match_are_let_go(tmp_path: Path) -> None:
    """After a reload narrows the filters, watched campaigns outside them are no longer targets."""
    async with rig(tmp_path) as r:
        before = await r.targets()
        narrower = AccountSettings.model_validate({"account": ACCOUNT, "discover": True,
                                                   "name_pattern": "b[12]$"})  # fmt: skip
        r.discovery.configure(accounts=[narrower], interval=60.0, configured=())
        after = await r.targets()
    assert (LIVE, {key("b1"), key("b2")}) == (before, after)


async def test_final_campaigns_are_recorded_and_new_failures_watched(tmp_path: Path) -> None:
    """Old final campaigns are only recorded; one that failed after the first run is watched
    (its first poll reports the failure); one that ended after it is only recorded."""
    async with rig(tmp_path) as r:
        await r.targets()
        r.sim.add_campaign(sim_campaign("e1", "CampaignRequestFailed"))
        r.sim.add_campaign(sim_campaign("e2", "CampaignCancelled"))
        targets = await r.targets()
    assert key("e1") in targets
    assert not {key("c3"), key("c4"), key("e2")} & targets


async def test_now_watching_message_once_per_campaign(tmp_path: Path) -> None:
    """With announce, each newly watched campaign gets one "now watching" outbox row."""
    alerts_settings = AlertsSettings.model_validate(
        {"slack": {"webhook_url": "http://127.0.0.1:9/services/T/B/x"}}
    )
    async with aiohttp.ClientSession() as session, open_store(tmp_path / "alerts.db") as other:
        alerts = AlertService(alerts_settings, other, session)
        async with rig(tmp_path, {"announce": True}, alerts=alerts) as r:
            await r.targets()
            await r.targets()
            rows = await r.store.outbox_rows()
    assert {f"watching:{k}" for k in LIVE} == {row["dedup_key"] for row in rows}
    assert len(LIVE) == len(rows)
    one = next(row for row in rows if row["dedup_key"] == f"watching:{key('b1')}")
    assert "Now watching" in render_slack([one["payload"]])["text"]
    notified = [e for e in r.events if isinstance(e, CampaignsDiscovered)]
    assert [True, False] == [e.notified for e in notified]


async def test_refusing_account_fails_the_run_and_changes_nothing(tmp_path: Path) -> None:
    """An account the API refuses for every status: logged once, nothing recorded, no targets."""
    async with rig(tmp_path, accounts=["0000000000-00009"]) as r:
        with capture_logs() as logs:
            results = [await r.targets(), await r.targets()]
        recorded = await r.store.discovered()
    assert ([set(), set()], []) == (results, recorded)
    assert ["discovery_failing"] == [e["event"] for e in logs if e["log_level"] == "warning"]


async def test_restart_watches_what_was_discovered_before(tmp_path: Path) -> None:
    """A new Discovery over the same store returns the watched campaigns without any request."""
    async with rig(tmp_path) as r:
        await r.targets()
        requests = r.requests()
        again = Discovery(lambda: None, r.store, r.events.append,  # type: ignore[arg-type,return-value]
                          accounts=r.discovery.rules.values(), interval=60.0)  # type: ignore[arg-type]  # fmt: skip
        loaded = {t.key for t in await again.load()}
    assert (LIVE, requests) == (loaded, r.requests())


def test_configured_targets_win() -> None:
    """A campaign both configured and discovered keeps its configured name and interval."""
    configured = [Target(key=key("b1"), name="Mine", interval=30.0)]
    discovered = [Target(key=key("b1"), interval=300.0), Target(key=key("b2"), interval=300.0)]
    assert [*configured, discovered[1]] == merge_targets(configured, discovered)
