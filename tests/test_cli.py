"""The command line as a user runs it: exit codes, one-line config errors, status, history, demo."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import ACCOUNT, SIM_CREDENTIALS, campaign, stored_transitions, wait_for, write_config

from fotawatch import __version__
from fotawatch.config import load_settings
from fotawatch.demo import run_demo
from fotawatch.model import Campaign
from fotawatch.simulator import Scenario, Simulator
from fotawatch.state import open_state
from fotawatch.store.base import DiscoveredRecord


def fotawatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fotawatch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


GOOD = {
    "thingspace": {"base_url": "http://127.0.0.1:1", **SIM_CREDENTIALS},
    "state_path": "state.db",
    "campaigns": [{"account": ACCOUNT, "id": "c1"}],
}


def _with(path: str, value: object) -> dict:
    config = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    node = config
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return config


def _without_password(config: dict) -> dict:
    del config["thingspace"]["password"]
    return config


BAD_CONFIGS = [
    ("yaml syntax", "thingspace: [unclosed\n", ""),
    ("unknown top-level key", _with("colour", "blue"), "colour"),
    ("unknown nested key", _with("polling.intervall_seconds", 5), "polling.intervall_seconds"),
    ("wrong type", _with("thingspace.max_concurrency", "many"), "thingspace.max_concurrency"),
    ("rps of 0", _with("thingspace.requests_per_second", 0), "thingspace.requests_per_second"),
    ("login failures above 3", _with("thingspace.max_login_failures", 5),
     "thingspace.max_login_failures"),
    ("interval below 1 s", _with("polling.interval_seconds", 0.5), "polling.interval_seconds"),
    ("account as a number", _with("campaigns", [{"account": 642233522, "id": "c1"}]),
     "campaigns[0].account"),
    ("missing campaign id", _with("campaigns", [{"account": ACCOUNT}]), "campaigns[0].id"),
    ("unset variable", _with("thingspace.password", "${FOTAWATCH_TEST_UNSET_VAR}"),
     "thingspace.password"),
    ("unreadable secret file",
     _without_password(_with("thingspace.password_file", "/nonexistent/pw")),
     "thingspace.password_file"),
    ("bad duration", _with("alerts.api_down_after", "ten minutes"), "alerts.api_down_after"),
    ("plain http webhook", _with("alerts.slack", {"webhook_url": "http://hooks.example/x"}),
     "alerts.slack.webhook_url"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "config", "key"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_bad_config_exits_78_with_one_line_naming_the_key(
    tmp_path: Path, what: str, config: object, key: str, command: str
) -> None:
    """Each kind of bad config: exit 78, one line on stderr that names the key, no traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    path.chmod(0o600)
    result = fotawatch(command, "--config", str(path))
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fotawatch: config error: ")
    assert key in lines[0]
    assert "Traceback" not in result.stderr


def test_check_config_accepts_the_example(tmp_path: Path) -> None:
    """The shipped example validates with its secrets in a systemd credentials directory."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    for name, value in {
        "thingspace-client-id": "id",
        "thingspace-client-secret": "secret",
        "thingspace-username": "user",
        "thingspace-password": "password",
        "slack-webhook-url": "https://hooks.slack.com/services/T/B/X",
    }.items():
        (creds / name).write_text(value)
    env = {"PATH": "/usr/bin:/bin", "CREDENTIALS_DIRECTORY": str(creds)}
    result = fotawatch("check-config", "--config", "config/fotawatch.example.yaml", env=env)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


async def test_status_also_polls_the_campaigns_discovery_watches(tmp_path: Path) -> None:
    """Offline `status` lists the configured campaigns and the discovered ones the store says
    are watched (of accounts still discovered); not the ones discovery left unwatched."""
    configured, found, passed_over = (f"d000000{i}-0000-0000-0000-000000000000" for i in (1, 2, 3))
    scenario = Scenario.from_dict({"campaigns": [
        {"account": ACCOUNT, "id": cid, "name": cid[:8], "status": "CampaignScheduled"}
        for cid in (configured, found, passed_over)]})  # fmt: skip
    async with Simulator(scenario) as sim:
        config = write_config(tmp_path, sim.url, [campaign(configured)],
                              accounts=[{"account": ACCOUNT, "discover": True}])  # fmt: skip
        seen = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
        async with open_state(load_settings(config)) as store:
            assert store is not None
            await store.record_discovered([
                DiscoveredRecord(campaign=Campaign(account=ACCOUNT, campaign_id=cid,
                                                   status="CampaignScheduled"),
                                 watched=watched, first_seen=seen, last_seen=seen)
                for cid, watched in ((found, True), (passed_over, False))])  # fmt: skip
        listed = await status_json(config)
    rows = [(r["campaign_id"], r["name"]) for r in listed]
    assert rows == [(configured, configured[:8]), (found, found[:8])]


async def status_json(config: Path) -> list[dict[str, Any]]:
    """The rows of ``fotawatch status --config CONFIG --json``, which must exit 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fotawatch", "status", "--config", str(config), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def test_version() -> None:
    """--version prints the package version."""
    result = fotawatch("--version")
    assert f"fotawatch {__version__}" == result.stdout.strip()


async def test_status_polls_once_and_history_reads_the_store(tmp_path: Path) -> None:
    """`status` prints each campaign's status; `history` prints what the daemon recorded."""
    cid = "a0000000-0000-0000-0000-00000000000a"
    scenario = Scenario.from_dict(
        {"campaigns": [{"account": ACCOUNT, "id": cid, "name": "Rollout", "status":
                        "CampaignScheduled", "firmware_from": "1.0", "firmware_to": "2.0"}]}
    )  # fmt: skip
    async with Simulator(scenario) as sim:
        config = write_config(tmp_path, sim.url, [campaign(cid)])
        rows = await status_json(config)
        assert [(r["campaign_id"], r["status"], r["firmware_to"]) for r in rows] == [
            (cid, "CampaignScheduled", "2.0")
        ]
        # Record a transition with the daemon, then read it back with `history`.
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fotawatch", "run", "--config", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            db = tmp_path / "state.db"
            await wait_for(lambda: db.exists() and sim.stats()["campaign_requests"] >= 2)
            sim.set_status(ACCOUNT, cid, "CampaignEnded")
            await wait_for(lambda: stored_transitions(db), what="transition recorded")
        finally:
            daemon.terminate()
            assert await daemon.wait() == 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fotawatch", "history", cid, "--config", str(config),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert "CampaignScheduled" in out.decode()
    assert "CampaignEnded" in out.decode()


@pytest.mark.slow
async def test_demo_shows_every_kind_and_ends_with_a_summary() -> None:
    """The demo prints succeeded, failed, aborted and unknown transitions and a summary, exit 0."""
    out = io.StringIO()
    assert await run_demo(out=out) == 0
    text = out.getvalue()
    for marker in ("[succeeded]", "[failed]", "[aborted]", "[unknown]", "FIRING api_down",
                   "RESOLVED api_down", "summary:"):  # fmt: skip
        assert marker in text, text
