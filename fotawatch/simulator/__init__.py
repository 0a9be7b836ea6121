"""A fake ThingSpace FOTA v3 API, driven by YAML scenarios, with fault injection.

Used by the tests, the benchmark and ``fotawatch demo``. It imports nothing from the rest of
fotawatch: its reading of the wire (``wire.py``) is independent of the client's, so tests that
pass compare two renderings of the reference document.

    scenario.py / campaigns.py   YAML -> frozen values (ValueError names the bad key)
    state.py                     the clock-driven state: auth.py, book.py, faults.py, events
    api.py / admin.py            aiohttp handlers: the ThingSpace endpoints and /_sim/ control
    app.py                       Simulator: AppRunner lifecycle + control methods
    cli.py                       python -m fotawatch.simulator
"""

from fotawatch.simulator.app import Simulator
from fotawatch.simulator.campaigns import CampaignSpec, DevicePlan, TimelineStep, generated_id
from fotawatch.simulator.cli import main, serve
from fotawatch.simulator.clock import ManualClock
from fotawatch.simulator.scenario import Credentials, EventSpec, FaultSpec, Latency, Scenario

__all__ = [
    "CampaignSpec",
    "Credentials",
    "DevicePlan",
    "EventSpec",
    "FaultSpec",
    "Latency",
    "ManualClock",
    "Scenario",
    "Simulator",
    "TimelineStep",
    "generated_id",
    "main",
    "serve",
]
