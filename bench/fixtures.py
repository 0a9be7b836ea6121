"""What a benchmark run stands on: the simulator scenario, the daemon config, the fakes."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.procs import PYTHON, Child
from fotawatch.simulator.campaigns import generated_id

__all__ = [
    "ACCOUNT",
    "SIM_CREDENTIALS",
    "DaemonSettings",
    "campaign_ids",
    "requests_per_second",
    "start_fake_slack",
    "start_simulator",
    "stored_transitions",
    "write_config",
    "write_scenario",
]

ACCOUNT = "0642233522-00001"
SIM_CREDENTIALS = {  # the simulator's documented defaults
    "client_id": "sim-client-id",
    "client_secret": "sim-client-secret",
    "username": "sim-user",
    "password": "sim-password",
}
START_STATUS = "CampaignScheduled"


def campaign_ids(n: int) -> list[str]:
    """The ids the simulator gives its ``generate``d campaigns, in order."""
    return [generated_id(ACCOUNT, i) for i in range(n)]


def write_scenario(path: Path, n: int, latency: tuple[float, float]) -> Path:
    scenario = {
        "accounts": [ACCOUNT],
        "generate": {"count": n, "account": ACCOUNT, "status": START_STATUS, "name": "Bench"},
        "latency": {"min": latency[0], "max": latency[1]},
    }
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonSettings:
    """The knobs of one daemon run."""

    interval: float
    jitter: float
    requests_per_second: float
    max_concurrency: int
    metrics_port: int
    slack_url: str | None


def requests_per_second(n: int, interval: float) -> float:
    """The daemon's rate limit in a bench: 4 x the polls it needs, within 50-1,000/s."""
    return min(1000.0, max(50.0, 4 * n / interval))


def write_config(
    path: Path, sim_url: str, ids: list[str], state: Path, s: DaemonSettings
) -> Path:
    """A daemon config: campaigns by id, state on disk, metrics and Slack enabled."""
    config: dict[str, Any] = {
        "thingspace": {
            "base_url": sim_url,
            **SIM_CREDENTIALS,
            "timeout_seconds": 10,
            "max_concurrency": s.max_concurrency,
            "requests_per_second": s.requests_per_second,
        },
        "polling": {
            "interval_seconds": s.interval,
            "jitter_seconds": s.jitter,
            "devices_interval_seconds": 0,  # campaign polls only: the floor does the same GETs
        },
        "state_path": str(state),
        "campaigns": [{"account": ACCOUNT, "id": cid} for cid in ids],
        "metrics": {"listen": f"127.0.0.1:{s.metrics_port}"},
        "logging": {"level": "info", "format": "json"},
    }
    if s.slack_url is not None:
        config["alerts"] = {"slack": {"webhook_url": s.slack_url}}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def start_simulator(scenario: Path, log_dir: Path) -> Child:
    argv = [PYTHON, "-m", "fotawatch.simulator", "--port", "0", "--scenario", str(scenario)]
    return Child("simulator", argv, log_dir).start(announce=True, timeout=120)


def start_fake_slack(log_dir: Path) -> Child:
    argv = [PYTHON, "-m", "fotawatch.testing.fake_slack", "--port", "0"]
    return Child("fake-slack", argv, log_dir).start(announce=True)


def stored_transitions(db: Path) -> set[str]:
    """Campaign ids with a transition recorded in the state db (read-only)."""
    if not db.exists():
        return set()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT campaign_id FROM transitions").fetchall()
    except sqlite3.Error:
        return set()
    finally:
        con.close()
    return {row[0] for row in rows}
