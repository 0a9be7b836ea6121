"""Device progress and discovery in the running daemon: Daemon -> simulator over loopback, real
SQLite, /metrics scraped over HTTP and checked by promtool."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from support import ACCOUNT, wait_for, write_config
from tools import require_tool

from fotawatch.app import Daemon
from fotawatch.model import CampaignKey
from fotawatch.simulator import Scenario, Simulator


def cid(short: str) -> str:
    return f"0d000000-0000-0000-0000-{short:0>12}"


def key(short: str) -> CampaignKey:
    return CampaignKey(account=ACCOUNT, campaign_id=cid(short))


def sim_campaign(short: str, status: str, **fields: Any) -> dict[str, Any]:
    devices = {"count": 2500, "progress": [{"at": 0, "UpgradeSuccess": 0.4,
                                            "UpgradePending": 0.6}]}  # fmt: skip
    return {"account": ACCOUNT, "id": cid(short), "name": f"GM01Q {short}", "status": status,
            "devices": devices, **fields}  # fmt: skip


@contextlib.asynccontextmanager
async def running(config: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run())
    await wait_for(lambda: daemon.started.is_set() or task.done(), what="daemon start")
    if task.done():
        task.result()
    try:
        yield daemon
    finally:
        daemon.stop()
        assert await asyncio.wait_for(task, 15) == 0


async def scrape(daemon: Daemon) -> str:
    assert daemon.server is not None
    url = f"http://127.0.0.1:{daemon.server.port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


def discovering(tmp_path: Path, sim: Simulator, **polling: Any) -> Path:
    return write_config(
        tmp_path, sim.url, [],
        accounts=[{"account": ACCOUNT, "discover": True}],
        polling={"interval_seconds": 1, "jitter_seconds": 0, "devices_interval_seconds": 1,
                 "discovery_interval_seconds": 1, **polling},
    )  # fmt: skip


@pytest.mark.external
async def test_discovered_campaigns_export_device_progress(tmp_path: Path) -> None:
    """Discovered Scheduled campaigns are polled with their devices; a campaign added later is
    found by the next discovery run; the device gauge passes promtool."""
    scenario = Scenario.from_dict({
        "campaigns": [sim_campaign("a1", "CampaignScheduled"),
                      sim_campaign("a2", "CampaignScheduled"),
                      sim_campaign("a3", "CampaignEnded")],
        "history_path": "sdk", "history_page_size": 1,
    })  # fmt: skip
    async with Simulator(scenario) as sim, running(discovering(tmp_path, sim)) as daemon:
        assert daemon.devices is not None
        devices = daemon.devices
        await wait_for(lambda: devices.counts(key("a1")) and devices.counts(key("a2")),
                       what="device counts of the discovered campaigns")  # fmt: skip
        sim.add_campaign(sim_campaign("a4", "CampaignScheduled"))
        await wait_for(lambda: devices.counts(key("a4")), what="the campaign added later")
        body = await scrape(daemon)
        watched = set(daemon.poller.views) if daemon.poller else set()
        assert daemon.server is not None
        api = f"http://127.0.0.1:{daemon.server.port}/api/v1/campaigns/{cid('a1')}"
        async with aiohttp.ClientSession() as session, session.get(api) as resp:
            shown = (await resp.json())["devices"]
    assert {key("a1"), key("a2"), key("a4")} == watched
    assert shown is not None  # the status page and API show the device progress too
    assert shown["total"] >= shown["upgraded"] > 0
    line = (f'fotawatch_campaign_devices{{account="{ACCOUNT}",campaign_id="{cid("a1")}",'
            f'device_status="UpgradeSuccess"}} 1000.0')  # fmt: skip
    assert line in body.splitlines()
    result = subprocess.run([require_tool("promtool"), "check", "metrics"], input=body.encode(),
                            capture_output=True, timeout=60, check=False)  # fmt: skip
    assert (0, b"") == (result.returncode, result.stdout + result.stderr)


async def test_reload_turns_device_polling_off(tmp_path: Path) -> None:
    """devices_interval_seconds: 0 on SIGHUP stops every device-poll job."""
    scenario = Scenario.from_dict({"campaigns": [sim_campaign("b1", "CampaignScheduled")]})
    async with Simulator(scenario) as sim:
        config = discovering(tmp_path, sim)
        async with running(config) as daemon:
            watch = daemon.device_watch
            assert watch is not None
            await wait_for(lambda: watch.planned(key("b1")), what="device polling")
            text = yaml.safe_load(config.read_text())
            text["polling"]["devices_interval_seconds"] = 0
            config.write_text(yaml.safe_dump(text))
            assert await daemon.reload()
            planned = watch.planned(key("b1"))
    assert not planned
