"""A live daemon polling the simulator, with the status pages served from its state and store.

``Daemon.run`` does not pass a ``CampaignSource`` to ``make_app`` yet, so ``live_pages`` serves
the pages on a second loopback server built exactly as the wiring in ``app.py`` will build it:
the daemon's registry, ``DaemonState``, web config and store. Once ``app.py`` wires the pages,
``_page_server`` returns the daemon's own port instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import ACCOUNT, wait_for, write_config

from fotawatch.app import Daemon
from fotawatch.model import CampaignKey
from fotawatch.server import make_app, start
from fotawatch.simulator import Scenario, Simulator
from fotawatch.web import CampaignSource, DeviceCounts, DeviceProgress, store_history
from fotawatch.webconfig import load_web_config, ssl_context

EVIL = '<script>alert("pwned")</script> & "friends"'
IDS = {
    "scheduled": "f858b8c4-2153-11ec-8c44-aeb16d1aa652",
    "queued": "2b6c51a0-2154-11ec-9621-0242ac130002",
    "failed": "3c1d2e3f-2154-11ec-9621-0242ac130003",
    "paused": "4d2e3f40-2154-11ec-9621-0242ac130004",
    "ended": "5e3f4051-2154-11ec-9621-0242ac130005",
}
STATUSES = {
    "scheduled": "CampaignScheduled",
    "queued": "CampaignRequestQueued",
    "failed": "CampaignFailed",
    "paused": "CampaignPaused",
    "ended": "CampaignEnded",
}
NAMES = {
    "scheduled": "GM01Q rollout",
    "queued": EVIL,
    "failed": "HX330 modem fix",
    "paused": "Paused by ops",
    "ended": "Spring refresh",
}
PROGRESS = {
    CampaignKey(account=ACCOUNT, campaign_id=IDS["scheduled"]): DeviceProgress(
        total=100,
        upgraded=92,
        failed=3,
        counts=(("NoDeviceDataFromNetwork", 5), ("UpgradeFailed", 3), ("UpgradeSuccess", 92)),
        polled_at=dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC),
    )
}


def scenario(*, extra: list[dict[str, Any]] | None = None) -> Scenario:
    """Five campaigns of one account: in progress, queued (untrusted name), failed, unknown,
    ended."""
    campaigns = [
        {
            "account": ACCOUNT,
            "id": IDS[k],
            "name": NAMES[k],
            "status": STATUSES[k],
            "firmware_from": f"{k.upper()}-1.0",
            "firmware_to": f"{k.upper()}-2.0",
            "start_date": "2026-03-01",
            "end_date": "2026-03-31",
            "time_windows": [[0, 6], [22, 24]] if k == "scheduled" else [],
        }
        for k in IDS
    ]
    return Scenario.from_dict({"campaigns": campaigns + (extra or [])})


@dataclass
class Live:
    daemon: Daemon
    sim: Simulator
    url: str  # the pages' base URL, no trailing slash

    def set_status(self, name: str, status: str) -> None:
        self.sim.set_status(ACCOUNT, IDS[name], status)

    def status_of(self, name: str) -> str | None:
        view = self.daemon.poller.views.get(  # type: ignore[union-attr]
            CampaignKey(account=ACCOUNT, campaign_id=IDS[name])
        )
        return None if view is None else view.status


@contextlib.asynccontextmanager
async def _page_server(
    d: Daemon, progress: Callable[[CampaignKey], DeviceCounts | None], refresh: float
) -> AsyncIterator[str]:
    assert d.settings is not None
    assert d.poller is not None
    source = CampaignSource(
        views=d.state.views,
        polling=d.state.polling,
        history=store_history(d.poller.store),
        progress=progress,
        refresh_seconds=refresh,
    )
    path = d.settings.metrics.web_config_file
    web_config = load_web_config(path) if path else None
    app = make_app(registry=d.registry, status=d.state, web_config=web_config, campaigns=source)
    tls = ssl_context(web_config) if web_config else None
    server = await start(app, "127.0.0.1", 0, tls)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.port}"
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def live_pages(
    tmp_path: Path,
    *,
    extra: list[dict[str, Any]] | None = None,
    progress: Mapping[CampaignKey, DeviceCounts] | None = None,
    refresh: float = 30.0,
    **config: Any,
) -> AsyncIterator[Live]:
    """The simulator with ``scenario(extra=...)`` and a Daemon watching all of its campaigns
    (1 s polls), ready: every campaign polled once."""
    async with Simulator(scenario(extra=extra)) as sim:
        campaigns = [{"account": ACCOUNT, "id": cid} for cid in IDS.values()]
        campaigns += [{"account": e["account"], "id": e["id"]} for e in extra or []]
        d = Daemon(write_config(tmp_path, sim.url, campaigns, **config))
        task = asyncio.create_task(d.run())
        await wait_for(lambda: d.started.is_set() or task.done(), timeout=15, what="start")
        if task.done():
            task.result()
        counts = dict(progress or {})
        try:
            async with _page_server(d, counts.get, refresh) as url:
                await wait_for(lambda: d.state.ready()[0], timeout=15, what="daemon ready")
                yield Live(daemon=d, sim=sim, url=url)
        finally:
            d.stop()
            assert await asyncio.wait_for(task, 15) == 0
