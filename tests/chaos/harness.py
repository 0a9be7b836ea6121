"""The chaos harness: the real daemon as a subprocess, the simulator and a fake Slack in process.

``Chaos`` owns one scenario run: it starts the simulator (N campaigns, all Pending), a FakeSlack
and the daemon (``python -m fotawatch run``) with 1 s polls; restarts it after ``kill9``; drives
the campaigns through their lifecycles with ``step`` (every campaign moves one status, then the
driver waits until the store holds the new status: one change per observation, so every change
the simulator makes is one the daemon can see, however long the faults keep it blind); and
``finish`` drains the alerts, scrapes ``/metrics``, stops the daemon with SIGTERM and checks the
invariants (``invariants.check``). A JSON summary of each run goes to ``$FOTAWATCH_CHAOS_REPORT``
(a directory) when it is set; ``python tests/chaos/report.py DIR`` turns them into the table of
``docs/reliability.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
from invariants import Expectations, Move, Observation, check, cut_moves
from support import ACCOUNT, DaemonProcess, stored_status, wait_for, write_config

from fotawatch.simulator import Scenario, Simulator
from fotawatch.testing.fake_slack import FakeSlack

__all__ = ["LIFECYCLES", "Chaos", "campaign_ids", "every"]

# One path per campaign (index mod 4): every transition kind a Slack message can carry.
LIFECYCLES = (
    ("CampaignRequestQueued", "CampaignPreScheduled", "CampaignScheduled", "CampaignEnded"),
    ("CampaignRequestQueued", "CampaignPaused", "CampaignScheduled", "CampaignFailed"),
    ("CampaignPreScheduled", "CampaignRequestQueued", "CampaignScheduled", "CampaignAborted"),
    ("CampaignRequestQueued", "CampaignPreScheduled", "CampaignScheduled", "CampaignCancelled"),
)
START = "CampaignRequestPending"
STEP_TIMEOUT = 30.0


def campaign_ids(count: int, tag: int = 0) -> list[str]:
    return [f"{tag:04x}c4a0-{i:04x}-4000-8000-0000000c4a05" for i in range(count)]


@contextlib.asynccontextmanager
async def every(seconds: float, action: Callable[[], object]) -> AsyncIterator[None]:
    """Run ``action`` every ``seconds`` while the block runs (a fault schedule)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(seconds)  # the schedule itself, not a synchronisation
            action()

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Chaos:
    """One scenario: simulator, fake Slack, the daemon process(es), the driver, the checks."""

    def __init__(
        self,
        tmp_path: Path,
        name: str,
        *,
        faults: str,
        campaigns: int = 3,
        extra_campaigns: int = 0,
        watch_extra: bool = False,
        conditions: bool = False,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.tmp_path, self.name, self.faults = tmp_path, name, faults
        self.ids = campaign_ids(campaigns + extra_campaigns)
        self.driven = self.ids[:campaigns]
        self.watched = self.ids if watch_extra else self.driven
        self.position = dict.fromkeys(self.driven, -1)  # index into the lifecycle; -1: START
        self._conditions = conditions
        self._config = config or {}
        self.db = tmp_path / "state.db"
        self.procs: list[DaemonProcess] = []
        self.watching: list[str] = []
        self.dropped = False
        self.counters: dict[str, int] = {"kills": 0, "restarts": 0, "sighups": 0}
        self.cut: set[Move] = set()  # Slack took them, a killed daemon never marked them
        self.sim: Simulator
        self.slack: FakeSlack
        self.config_path: Path
        self._started = time.monotonic()
        self._stack = contextlib.AsyncExitStack()

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        scenario = {
            "campaigns": [
                {"account": ACCOUNT, "id": cid, "name": f"chaos {i}", "status": START}
                for i, cid in enumerate(self.ids)
            ],
        }
        try:
            self.sim = await self._stack.enter_async_context(
                Simulator(Scenario.from_dict(scenario))
            )
            self.slack = await self._stack.enter_async_context(FakeSlack())
            self.write_config(self.watched)
            await self.start()
            await self.wait_stored(dict.fromkeys(self.driven, START), what="the baselines")
        except BaseException as err:
            await self.__aexit__(type(err), err, err.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for proc in self.procs:
            if proc.proc is not None and proc.proc.returncode is None:
                proc.proc.kill()
                await proc.wait()
        await self._stack.aclose()

    def write_config(self, ids: Sequence[str], *, names: str = "chaos") -> Path:
        """(Re)write the daemon's config watching ``ids``; returns its path."""
        alerts = {
            "slack": {"webhook_url": self.slack.url, "conditions": self._conditions},
            "stuck_after": dict.fromkeys(
                ("CampaignRequestPending", "CampaignRequestQueued", "CampaignPreScheduled")
            ),
            "not_scheduled_by_start": False,
            "overdue_after": None,
            **self._config.get("alerts", {}),
        }
        polling = {"devices_interval_seconds": 0, "missing_interval_seconds": 1,
                   **self._config.get("polling", {})}  # fmt: skip
        rest = {k: v for k, v in self._config.items() if k not in {"alerts", "polling"}}
        if self.procs and set(self.watching) - set(ids):
            self.dropped = True  # a reload forgets the metrics of the campaigns it drops
        self.watching = list(ids)
        campaigns = [
            {"account": ACCOUNT, "id": cid, "name": f"{names} {self.ids.index(cid)}"}
            for cid in ids
        ]
        self.config_path = write_config(
            self.tmp_path, self.sim.url, campaigns, alerts=alerts, polling=polling, **rest
        )
        return self.config_path

    @property
    def daemon(self) -> DaemonProcess:
        return self.procs[-1]

    async def start(self) -> DaemonProcess:
        """Start a daemon process and wait until it listens."""
        proc = await DaemonProcess(self.config_path).start()
        self.procs.append(proc)
        if len(self.procs) > 1:
            self.counters["restarts"] += 1
        assert proc.proc is not None
        process = proc.proc
        await wait_for(
            lambda: proc.events("http_listening") or process.returncode is not None,
            20,
            what="the daemon to listen",
        )
        assert proc.events("http_listening"), f"daemon did not start: {proc.lines[-5:]}"
        return proc

    async def kill9(self) -> None:
        """SIGKILL the daemon, then note the posts it cut (they may legitimately repeat).

        A post Slack accepted whose row the daemon had not yet marked delivered when it died is
        sent again after the restart: delivery is at-least-once. Which posts those are is read,
        not guessed: once Slack has answered what the dead process sent, a transition in an
        accepted post whose outbox row is still pending in the state file was cut.
        """
        await self.daemon.kill()
        self.counters["kills"] += 1
        await wait_for(lambda: self.slack.in_flight == 0, 10, what="Slack to answer cut posts")
        self.cut |= cut_moves(self)

    def sighup(self) -> None:
        self.daemon.signal(signal.SIGHUP)
        self.counters["sighups"] += 1

    # --- driving ------------------------------------------------------------------------------

    def advance(self, ids: Sequence[str] | None = None) -> dict[str, str]:
        """Move each campaign (of ``ids``) with statuses left one step; {id: new status}."""
        moved = {}
        for cid in self.driven if ids is None else ids:
            path = LIFECYCLES[self.ids.index(cid) % len(LIFECYCLES)]
            if self.position[cid] + 1 < len(path):
                self.position[cid] += 1
                moved[cid] = path[self.position[cid]]
                self.sim.set_status(ACCOUNT, cid, moved[cid])
        return moved

    def stored(self, cid: str) -> str | None:
        try:
            return stored_status(self.db, cid)
        except sqlite3.Error:
            return None

    async def wait_stored(
        self, expected: dict[str, str], *, timeout: float = STEP_TIMEOUT, what: str = "a step"
    ) -> None:
        await wait_for(
            lambda: all(self.stored(cid) == status for cid, status in expected.items()),
            timeout,
            what=f"{what} to be stored ({expected})",
        )

    async def step(self, *, timeout: float = STEP_TIMEOUT) -> dict[str, str]:
        """Advance every campaign one status and wait until the store holds the new ones."""
        moved = self.advance()
        await self.wait_stored(moved, timeout=timeout)
        return moved

    async def lifecycle(self, between: Callable[[int], Awaitable[None]] | None = None) -> None:
        """Every step of every lifecycle; ``between(i)`` runs after step ``i``."""
        for i in range(max(len(p) for p in LIFECYCLES)):
            await self.step()
            if between is not None:
                await between(i)

    # --- observing ----------------------------------------------------------------------------

    async def drained(self, timeout: float = 30.0) -> None:
        """Wait until every transition in the store has reached Slack."""
        assert await Observation(self).drain(timeout, Expectations()), "alerts did not drain"

    def metrics_url(self) -> str:
        port = self.daemon.events("http_listening")[-1]["port"]
        return f"http://127.0.0.1:{port}/metrics"

    async def scrape(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(self.metrics_url()) as resp:
            assert resp.status == 200
            return await resp.text()

    async def finish(
        self,
        expect: Expectations | None = None,
        *,
        drain_timeout: float = 45.0,
    ) -> dict[str, Any]:
        """Drain, scrape, stop with SIGTERM, check every invariant; the summary (asserted)."""
        expect = expect or Expectations()
        expect = replace(expect, may_duplicate=expect.may_duplicate | self.cut)
        observation = Observation(self)
        drained = await observation.drain(drain_timeout, expect)
        metrics = await self.scrape()
        code = await self.daemon.stop()
        summary = check(self, observation.freeze(metrics, exit_code=code, drained=drained), expect)
        summary["seconds"] = round(time.monotonic() - self._started, 1)
        self._report(summary)
        assert summary["problems"] == [], json.dumps(summary, indent=2, default=str)
        return summary

    def _report(self, summary: dict[str, Any]) -> None:
        where = os.environ.get("FOTAWATCH_CHAOS_REPORT")
        if where:
            Path(where).mkdir(parents=True, exist_ok=True)
            text = json.dumps(summary, indent=2, default=str)
            (Path(where) / f"{self.name}.json").write_text(text)
