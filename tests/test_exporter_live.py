"""The real daemon as a scrape target: promtool on its /metrics, a real Prometheus, reloads."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import running_prometheus
from support import ACCOUNT, campaign, daemon_process, stored_status, wait_for, write_config
from tools import require_tool

from fotawatch.app import Daemon
from fotawatch.model import KNOWN_STATUSES
from fotawatch.simulator import Scenario, Simulator

pytestmark = pytest.mark.external

STATUSES = [s.value for s in KNOWN_STATUSES] + ["CampaignPaused"]
IDS = {status: f"{i:08x}-0000-0000-0000-00000000e0e0" for i, status in enumerate(STATUSES)}


def _scenario() -> Scenario:
    return Scenario.from_dict(
        {
            "campaigns": [
                {"account": ACCOUNT, "id": cid, "name": f"campaign in {status}", "status": status}
                for status, cid in IDS.items()
            ]
        }
    )


@contextlib.asynccontextmanager
async def daemon(config: Path) -> AsyncIterator[Daemon]:
    d = Daemon(config)
    task = asyncio.create_task(d.run())
    await wait_for(lambda: d.server is not None or task.done(), what="http server")
    if task.done():
        task.result()
    try:
        yield d
    finally:
        d.stop()
        assert await asyncio.wait_for(task, 15) == 0


async def _get(url: str, **kwargs: object) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as resp:  # type: ignore[arg-type]
        return resp.status, await resp.text()


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    ]


async def test_promtool_accepts_the_real_metrics_with_every_status(tmp_path: Path) -> None:
    """Campaigns in all 9 known statuses and one unknown: promtool check metrics passes."""
    promtool = require_tool("promtool")
    async with Simulator(_scenario()) as sim:
        config = write_config(tmp_path, sim.url, [campaign(c) for c in IDS.values()])
        async with daemon(config) as d:
            assert d.server is not None
            base = f"http://127.0.0.1:{d.server.port}"
            await wait_for(lambda: d.state.ready()[0], what="ready")
            status, text = await _get(f"{base}/metrics")
    assert status == 200
    check = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    current = {
        (labels["campaign_id"], labels["status"])
        for labels, value in _samples(text, "fotawatch_campaign_status")
        if value == 1
    }
    assert {(cid, status) for status, cid in IDS.items()} == current


async def test_readyz_waits_for_the_first_poll_of_every_campaign(tmp_path: Path) -> None:
    """/readyz is 503 until every campaign was polled once, then 200; /healthz is 200."""
    async with Simulator(_scenario()) as sim:
        sim.set_faults([{"kind": "hang", "match": "campaign", "seconds": 30, "count": 1}])
        config = write_config(
            tmp_path,
            sim.url,
            [campaign(c) for c in IDS.values()],
            thingspace={"timeout_seconds": 3, "retry": {"attempts": 1}},
        )
        async with daemon(config) as d:
            assert d.server is not None
            base = f"http://127.0.0.1:{d.server.port}"
            status, body = await _get(f"{base}/readyz")
            assert (503, True) == (status, "waiting for first poll" in body)
            assert (await _get(f"{base}/healthz"))[0] == 200
            await wait_for(lambda: d.state.ready()[0], timeout=15, what="ready")
            assert (await _get(f"{base}/readyz"))[0] == 200
            # The daemon's own port serves the status page and the JSON API too.
            status, body = await _get(f"{base}/api/v1/campaigns")
            assert (200, len(IDS)) == (status, body.count('"account"'))
            status, page = await _get(f"{base}/")
            assert (200, True) == (status, "<table" in page)


async def test_removed_campaign_series_vanish_after_sighup(tmp_path: Path) -> None:
    """A campaign dropped from the config on SIGHUP disappears from /metrics."""
    ids = list(IDS.values())[:3]
    async with Simulator(_scenario()) as sim:
        config = write_config(
            tmp_path, sim.url, [campaign(c) for c in ids], metrics={"listen": "127.0.0.1:0"}
        )
        async with daemon_process(config) as d:
            await d.wait_event("http_listening")
            port = d.events("http_listening")[0]["port"]
            url = f"http://127.0.0.1:{port}/metrics"

            async def series_of(cid: str) -> int:
                return sum(
                    1
                    for labels, _ in _samples((await _get(url))[1], "fotawatch_campaign_status")
                    if labels["campaign_id"] == cid
                )

            await wait_for(lambda: series_of(ids[2]), what="series of the third campaign")
            write_config(tmp_path, sim.url, [campaign(c) for c in ids[:2]])
            d.signal(signal.SIGHUP)
            await d.wait_event("config_reloaded")
            _, text = await _get(url)
            assert ids[2] not in text
            assert await series_of(ids[0]) == len(KNOWN_STATUSES)
            assert await d.stop() == 0


async def test_real_prometheus_scrapes_and_fires_the_shipped_rule(tmp_path: Path) -> None:
    """Prometheus scrapes the daemon: the status is queryable and the failed campaign alerts."""
    async with Simulator(_scenario()) as sim:
        config = write_config(tmp_path, sim.url, [campaign(c) for c in IDS.values()])
        async with daemon(config) as d:
            assert d.server is not None
            target = f"127.0.0.1:{d.server.port}"
            async with running_prometheus(target, tmp_path / "prom") as prom:
                expr = 'fotawatch_campaign_status{status="CampaignScheduled"} == 1'
                rows = await prom.wait_for(lambda: prom.query(expr), what="status queryable")
                assert rows[0]["metric"]["campaign_id"] == IDS["CampaignScheduled"]

                async def failed_alerts() -> list[dict[str, object]]:
                    return [
                        a
                        for a in await prom.alerts()
                        if a["labels"]["alertname"] == "FotawatchCampaignFailed"
                    ]

                alerts = await prom.wait_for(failed_alerts, what="FotawatchCampaignFailed")
    failed = {a["labels"]["campaign_id"] for a in alerts}  # type: ignore[index]
    assert {IDS["CampaignFailed"], IDS["CampaignRequestFailed"]} <= failed


async def test_webhook_url_never_in_metrics_or_logs(tmp_path: Path) -> None:
    """The Slack webhook URL appears neither on /metrics nor in the daemon's output."""
    from fotawatch.testing.fake_slack import FakeSlack  # noqa: PLC0415

    cid = IDS["CampaignScheduled"]
    async with Simulator(_scenario()) as sim, FakeSlack() as slack:
        config = write_config(
            tmp_path, sim.url, [campaign(cid)], alerts={"slack": {"webhook_url": slack.url}}
        )
        secret_path = slack.url.split("/services/", 1)[1]
        async with daemon_process(config) as d:
            await d.wait_event("http_listening")
            port = d.events("http_listening")[0]["port"]
            await wait_for(lambda: stored_status(tmp_path / "state.db", cid), what="baseline")
            sim.set_status(ACCOUNT, cid, "CampaignEnded")
            await slack.wait_for_posts(1, timeout=15, delivered=True)
            _, text = await _get(f"http://127.0.0.1:{port}/metrics")
            assert await d.stop() == 0
    assert 'fotawatch_notifications_total{result="delivered",sink="slack"} 1.0' in text
    output = "\n".join(d.lines) + d.stderr.decode()
    for where in (text, output):
        assert secret_path not in where
