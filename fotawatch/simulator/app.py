"""``Simulator``: the fake ThingSpace API served on a loopback port, with in-process control.

    async with Simulator(Scenario.demo()) as sim:
        ...  # point a client at sim.url; sim.set_status(...), sim.stats()

The control methods are those of ``SimState`` (also reachable over ``/_sim/``, see ``admin``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from fotawatch.simulator.admin import admin_routes
from fotawatch.simulator.api import ThingSpaceApi
from fotawatch.simulator.campaigns import CampaignSpec
from fotawatch.simulator.scenario import Scenario
from fotawatch.simulator.state import Clock, SimState

__all__ = ["Simulator"]


class Simulator:
    """A running fake ThingSpace; ``port=0`` picks a free port, see ``url``."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self.scenario = scenario
        self._host = host
        self._port = port
        self._started_at = time.monotonic()
        self.state = SimState(
            scenario, clock or self._seconds_since_start, origin=dt.datetime.now(dt.UTC)
        )
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    def _seconds_since_start(self) -> float:
        return time.monotonic() - self._started_at

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234`` (only once started)."""
        if self._url is None:
            raise RuntimeError("the simulator is not running")
        return self._url

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        app = web.Application()
        app.add_routes(admin_routes(self.state))
        app.add_routes(ThingSpaceApi(self.state, self._stopping).routes())
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._stopping.clear()
        self._started_at = time.monotonic()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop serving; delayed (latency, hang) answers are cut short."""
        self._stopping.set()
        runner, self._runner, self._url = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # control (see SimState) ---------------------------------------------------------------

    def now(self) -> float:
        """The sim time (scheduled events due by now are applied)."""
        return self.state.now()

    def set_status(self, account: str, campaign_id: str, status: str) -> None:
        self.state.set_status(account, campaign_id, status)

    def add_campaign(self, data: dict[str, Any]) -> CampaignSpec:
        return self.state.add_campaign(data)

    def remove_campaign(self, account: str, campaign_id: str) -> None:
        self.state.remove_campaign(account, campaign_id)

    def expire_sessions(self) -> None:
        self.state.expire_sessions()

    def revoke_tokens(self) -> None:
        self.state.revoke_tokens()

    def set_faults(self, faults: list[dict[str, Any]]) -> None:
        self.state.set_faults(faults)

    def clear_faults(self) -> None:
        self.state.clear_faults()

    def set_credentials(self, **changes: str) -> None:
        self.state.set_credentials(changes)

    def unlock(self) -> None:
        self.state.unlock()

    def stats(self) -> dict[str, Any]:
        return self.state.stats()
