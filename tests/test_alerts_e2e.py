"""The alert pipeline without the daemon: Simulator -> client -> Poller -> SQLite -> outbox ->
AlertService -> FakeSlack, all over loopback HTTP."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from support import ACCOUNT, campaign, wait_for, write_config

from fotawatch.alerts.render import validate_slack_message
from fotawatch.alerts.service import AlertService, send_test
from fotawatch.app import build_client, targets_of
from fotawatch.config import load_settings
from fotawatch.events import Event, EventHub
from fotawatch.poller import ApiHealth, Poller, Target
from fotawatch.simulator import Scenario, Simulator
from fotawatch.store.sqlite import SqliteStore, open_store
from fotawatch.testing.fake_slack import FakeSlack, no_service

CID = "f858b8c4-2153-11ec-8c44-aeb16d1aa652"
LIFECYCLE = [
    "CampaignRequestPending",
    "CampaignRequestQueued",
    "CampaignPreScheduled",
    "CampaignScheduled",
    "CampaignEnded",
]


@dataclass
class Pipeline:
    sim: Simulator
    poller: Poller
    service: AlertService
    store: SqliteStore
    target: Target

    async def poll(self) -> None:
        await self.poller.poll(self.target)

    async def move(self, status: str) -> None:
        self.sim.set_status(ACCOUNT, CID, status)
        await self.poll()


def sim_campaign(name: str = "GM01Q firmware 2.1", **fields: Any) -> dict[str, Any]:
    """Starting tomorrow (unless told otherwise), so no condition fires on its own."""
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    return {"account": ACCOUNT, "id": CID, "name": name, "status": LIFECYCLE[0],
            "start_date": tomorrow.isoformat(), **fields}  # fmt: skip


@contextlib.asynccontextmanager
async def pipeline(
    tmp_path: Path, alerts: dict[str, Any], *, sim_fields: dict[str, Any] | None = None,
    configured_name: str | None = "GM01Q rollout",
) -> AsyncIterator[Pipeline]:
    """Everything the daemon wires for alerting, wired the same way, polled by hand."""
    scenario = Scenario.from_dict({"campaigns": [sim_campaign(**(sim_fields or {}))]})
    async with Simulator(scenario) as sim, aiohttp.ClientSession() as session:
        named = campaign(CID, name=configured_name) if configured_name else campaign(CID)
        config = write_config(tmp_path, sim.url, [named], alerts=alerts)
        settings = load_settings(config)
        events: list[Event] = []
        hub = EventHub(on_error=lambda _s, _e, err: events.append(err))  # type: ignore[arg-type]
        async with open_store(settings.state_path) as store:
            service = AlertService(settings.alerts, store, session)
            hub.subscribe(service.on_event)
            poller = Poller(build_client(settings, session, hub.emit), store, hub.emit,
                            api_health=ApiHealth(600.0, hub.emit),
                            outbox_for=service.outbox_for)  # fmt: skip
            targets = targets_of(settings)
            await poller.load(targets)
            service.prime(poller.views.values())
            async with service:
                yield Pipeline(sim, poller, service, store, targets[0])
        assert [] == events  # no subscriber failed


async def delivered_all(store: SqliteStore) -> bool:
    rows = await store.outbox_rows()
    return bool(rows) and all(r["state"] == "delivered" for r in rows)


async def test_lifecycle_gives_one_slack_message_per_transition_in_order(tmp_path):
    """Pending -> Queued -> PreScheduled -> Scheduled -> Ended: four messages, in order, each
    naming the campaign and both API statuses; the confirmation poll adds none."""
    async with FakeSlack() as slack:
        alerts = {"slack": {"webhook_url": slack.url}, "min_interval_seconds": 0.2}
        async with pipeline(tmp_path, alerts) as p:
            await p.poll()  # the baseline: no message
            for i, status in enumerate(LIFECYCLE[1:], start=1):
                await p.move(status)
                await slack.wait_for_posts(i)
            await p.poll()  # the final status confirmed: no new transition
            await wait_for(lambda: delivered_all(p.store), what="all delivered")
            assert {"slack": 0} == p.service.depths()
    assert 4 == len(slack.posts)
    for post, (before, after) in zip(slack.posts, itertools.pairwise(LIFECYCLE), strict=True):
        assert 200 == post.status
        text = post.body["text"]
        assert "GM01Q rollout" in text
        assert f"`{before}` → `{after}`" in text


async def test_a_ten_thousand_character_name_still_fits_slack(tmp_path):
    """A 10,000-character campaign name (the API's, none configured) gives a valid message."""
    huge = "GM01Q " + "ü" * 9994
    async with FakeSlack() as slack:
        alerts = {"slack": {"webhook_url": slack.url}}
        async with pipeline(tmp_path, alerts, sim_fields={"name": huge},
                            configured_name=None) as p:  # fmt: skip
            await p.poll()
            await p.move("CampaignRequestQueued")
            (post,) = await slack.wait_for_posts(1)
    assert 200 == post.status
    assert [] == validate_slack_message(post.body)
    assert "GM01Q üü" in post.body["text"]


async def test_sinks_get_only_what_their_filters_accept(tmp_path):
    """A webhook filtered to CampaignEnded without conditions gets only that transition."""
    async with FakeSlack() as slack, FakeSlack(webhook=True) as hook:
        alerts = {
            "slack": {"webhook_url": slack.url},
            "webhooks": [{"name": "ops", "url": hook.url, "statuses": ["CampaignEnded"],
                          "conditions": False}],
            "min_interval_seconds": 0.2,
        }  # fmt: skip
        async with pipeline(tmp_path, alerts) as p:
            await p.poll()
            for status in LIFECYCLE[1:]:
                await p.move(status)
            await wait_for(lambda: delivered_all(p.store), what="all delivered")
    assert 1 == len(hook.posts)
    (event,) = hook.posts[0].body["events"]
    assert ("transition", "CampaignScheduled", "CampaignEnded", "succeeded") == (
        event["type"], event["from_status"], event["to_status"], event["kind"],
    )
    carried = " ".join(str(p.body) for p in slack.posts)
    assert all(status in carried for status in LIFECYCLE)


async def test_a_missing_campaign_fires_and_resolves_through_the_hub(tmp_path):
    """Removed from ThingSpace: one 'Campaign missing' firing; back again: one resolved."""
    async with FakeSlack() as slack:
        alerts = {"slack": {"webhook_url": slack.url}, "min_interval_seconds": 0.2}
        async with pipeline(tmp_path, alerts) as p:
            await p.poll()
            p.sim.remove_campaign(ACCOUNT, CID)
            await p.poll()
            await p.poll()  # still missing: nothing new
            await slack.wait_for_posts(1)
            p.sim.add_campaign(sim_campaign())
            await p.poll()
            await slack.wait_for_posts(2)
            await wait_for(lambda: delivered_all(p.store), what="all delivered")
    texts = [post.body["text"] for post in slack.posts]
    assert 2 == len(texts)
    assert "FIRING Campaign missing" in texts[0]
    assert "RESOLVED Campaign missing" in texts[1]


async def test_a_campaign_not_scheduled_by_its_start_date_fires_then_resolves(tmp_path):
    """Started today but still Pending: 'not scheduled' fires on the first poll and resolves,
    with the transition, when the campaign reaches Scheduled."""
    today = dt.datetime.now(dt.UTC).date().isoformat()
    async with FakeSlack() as slack:
        alerts = {"slack": {"webhook_url": slack.url}, "min_interval_seconds": 0.2}
        async with pipeline(tmp_path, alerts, sim_fields={"start_date": today}) as p:
            await p.poll()
            await slack.wait_for_posts(1)
            await p.move("CampaignScheduled")
            await wait_for(lambda: delivered_all(p.store), what="all delivered")
    first, *rest = [post.body["text"] for post in slack.posts]
    assert "FIRING Campaign not scheduled" in first
    later = "\n".join(rest)
    assert "RESOLVED Campaign not scheduled" in later
    assert "`CampaignRequestPending` → `CampaignScheduled`" in later
    conditions = [p for p in outbox_payloads(tmp_path) if p["type"] == "condition"]
    assert ["firing", "resolved"] == [c["state"] for c in conditions]


def outbox_payloads(tmp_path: Path) -> list[dict[str, Any]]:
    """The outbox payloads straight from the SQLite file, after the pipeline closed it."""
    con = sqlite3.connect(tmp_path / "state.db")
    try:
        rows = con.execute("SELECT payload FROM outbox ORDER BY id").fetchall()
    finally:
        con.close()
    return [json.loads(payload) for (payload,) in rows]


async def test_test_alert_reports_each_sink(tmp_path):
    """send_test posts to every sink directly and reports delivered or Slack's error."""
    async with FakeSlack() as slack, FakeSlack(webhook=True) as hook:
        hook.script([no_service()])
        config = write_config(tmp_path, "http://127.0.0.1:9", [], alerts={
            "slack": {"webhook_url": slack.url},
            "webhooks": [{"name": "ops", "url": hook.url}],
        })  # fmt: skip
        settings = load_settings(config)
        async with aiohttp.ClientSession() as session:
            outcomes = await send_test(settings.alerts, session)
    assert {"slack": "delivered", "ops": "HTTP 404 no_service"} == outcomes
    assert "fotawatch test alert" in slack.posts[0].body["text"]
