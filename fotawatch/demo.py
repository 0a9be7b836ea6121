"""``fotawatch demo``: the whole daemon against the built-in simulator, no credentials needed.

The simulator plays the built-in scenario (campaigns that succeed, fail, get aborted, report an
unrecognised status; a short API outage; a session expiry). The real daemon polls it every
second with a throw-away state file; each transition is printed as it happens, and a summary
ends the run within 60 s (``--forever`` keeps going until Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import yaml

from fotawatch.alerts.payloads import condition_payload, transition_payload
from fotawatch.alerts.render import render_console
from fotawatch.app import Daemon
from fotawatch.events import (
    ApiHealthChanged,
    AuthRequest,
    CampaignHealthChanged,
    CampaignPolled,
    Event,
    LoginCircuitChanged,
    TransitionObserved,
)
from fotawatch.logs import configure_logging
from fotawatch.simulator import Scenario, Simulator

__all__ = ["run_demo"]

MAX_SECONDS = 55.0


def _config(sim: Simulator, scenario: Scenario, state_dir: Path) -> Path:
    creds = scenario.credentials
    campaigns = [
        {"account": c.account, "id": c.campaign_id, "name": c.name} for c in scenario.campaigns
    ]
    config: dict[str, Any] = {
        "thingspace": {
            "base_url": sim.url,
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "username": creds.username,
            "password": creds.password,
            "timeout_seconds": 2,
            "requests_per_second": 20,
            "retry": {"attempts": 2, "backoff_initial_seconds": 0.2, "backoff_max_seconds": 0.5},
        },
        "polling": {"interval_seconds": 1, "jitter_seconds": 0},
        "state_path": str(state_dir / "state.db"),
        "campaigns": campaigns,
        "metrics": {"listen": "127.0.0.1:0"},
        "alerts": {"api_down_after": "3s"},
    }
    if os.environ.get("SLACK_WEBHOOK_URL"):
        # Real alerts too: the same messages the console shows, through the outbox to Slack.
        config["alerts"]["slack"] = {"webhook_url": "${SLACK_WEBHOOK_URL}"}
    path = state_dir / "fotawatch.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def _scenario_length(scenario: Scenario) -> float:
    times = [step.at for c in scenario.campaigns for step in c.timeline]
    times += [e.at for e in scenario.events]
    return max(times, default=0.0)


class _Printer:
    """Prints what an operator would want to see, and counts for the summary."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.polls: Counter[str] = Counter()
        self.auth: Counter[str] = Counter()
        self.transitions = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, CampaignPolled):
            self.polls[event.result] += 1
        elif isinstance(event, AuthRequest):
            self.auth[f"{event.kind} {event.result}"] += 1
        elif isinstance(event, TransitionObserved):
            self.transitions += 1
            self._print(render_console(transition_payload(event.transition, name=event.name)))
        elif isinstance(event, ApiHealthChanged | LoginCircuitChanged):
            self._print(render_console(_condition(event)))
        elif isinstance(event, CampaignHealthChanged):
            what = "recovered" if event.healthy else f"failing ({event.result})"
            self._print(f"{event.at:%H:%M:%S}  polling {event.key.campaign_id[:8]}… {what}")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def _condition(event: ApiHealthChanged | LoginCircuitChanged) -> dict[str, object]:
    if isinstance(event, ApiHealthChanged):
        return dict(
            condition_payload(
                condition="api_down",
                state="resolved" if event.up else "firing",
                observed_at=event.at,
                episode=event.since or event.at,
                detail="every poll failing" if not event.up else "polls succeed again",
            )
        )
    return dict(
        condition_payload(
            condition="login_circuit_open",
            state="firing" if event.open else "resolved",
            observed_at=event.at,
            episode=event.at,
            detail=event.reason,
        )
    )


async def run_demo(*, forever: bool = False, out: TextIO | None = None) -> int:
    """Run the demo; returns the exit code."""
    out = out or sys.stdout
    printer = _Printer(out)
    scenario = Scenario.demo()
    configure_logging(level="error", fmt="console", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="fotawatch-demo-") as tmp:
        async with Simulator(scenario) as sim:
            config = _config(sim, scenario, Path(tmp))
            slack = (
                " (alerts also sent to SLACK_WEBHOOK_URL)"
                if os.environ.get("SLACK_WEBHOOK_URL")
                else ""
            )
            printer._print(  # noqa: SLF001
                f"fotawatch demo: simulated ThingSpace at {sim.url}, "
                f"{len(scenario.campaigns)} campaigns, polling every second{slack}"
            )
            daemon = Daemon(config, subscribers=[printer])
            task = asyncio.create_task(daemon.run())
            await _wait(task, forever=forever, length=_scenario_length(scenario))
            daemon.stop()
            code = await task
            _summary(printer, daemon)
    return code


async def _wait(task: asyncio.Task[int], *, forever: bool, length: float) -> None:
    started = time.monotonic()
    done = length + 3.0
    while not task.done():
        elapsed = time.monotonic() - started
        if not forever and (elapsed > MAX_SECONDS or elapsed > done):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout=0.2)


def _summary(printer: _Printer, daemon: Daemon) -> None:
    lines = ["", "summary:"]
    if daemon.poller is not None:
        for view in daemon.poller.views.values():
            polling = daemon.scheduler is not None and daemon.scheduler.polling(view.key)
            state = "polling" if polling else "done"
            lines.append(f"  {view.display_name[:24]:<24} {view.status or '-':<24} ({state})")
    polls = ", ".join(f"{n} {r}" for r, n in sorted(printer.polls.items()))
    auth = ", ".join(f"{n} {k}" for k, n in sorted(printer.auth.items()))
    lines += [
        f"  transitions: {printer.transitions}",
        f"  polls: {polls}",
        f"  auth requests: {auth}",
    ]
    printer._print("\n".join(lines))  # noqa: SLF001
