"""The real daemon under systemd's protocols: notify order, credentials, journald priorities."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import yaml
from notify_socket import NotifyReceiver
from support import ACCOUNT, campaign, daemon_process, wait_for, write_config

from fotawatch.simulator import Scenario, Simulator

CID = "5e000000-0000-0000-0000-000000000001"


def _scenario() -> Scenario:
    return Scenario.from_dict(
        {"campaigns": [{"account": ACCOUNT, "id": CID, "status": "CampaignScheduled"}]}
    )


def _states(rx: NotifyReceiver) -> list[str]:
    """The notify messages as a sequence of states (WATCHDOG runs collapsed into one)."""
    states: list[str] = []
    for message in rx.messages:
        fields = message.fields
        for key in ("READY", "RELOADING", "STOPPING", "WATCHDOG"):
            if fields.get(key) == "1" and (not states or states[-1] != key):
                states.append(key)
    return states


def _lifecycle(rx: NotifyReceiver) -> list[str]:
    return [s for s in _states(rx) if s != "WATCHDOG"]


async def test_notify_ready_watchdog_reload_stop_in_order(tmp_path: Path) -> None:
    """READY=1, periodic WATCHDOG=1, RELOADING=1 + READY=1 on SIGHUP, STOPPING=1 on SIGTERM."""
    async with Simulator(_scenario()) as sim, NotifyReceiver(tmp_path) as rx:
        config = write_config(tmp_path, sim.url, [campaign(CID)])
        env = {**rx.env, "WATCHDOG_USEC": "400000"}  # a ping every 0.2 s
        async with daemon_process(config, env=env) as d:
            await rx.wait_for(lambda _: bool(rx.with_field("READY", "1")), timeout=15)
            await rx.wait_for(lambda _: len(rx.with_field("WATCHDOG", "1")) >= 3, timeout=5)
            d.signal(signal.SIGHUP)
            await rx.wait_for(lambda _: _lifecycle(rx)[-2:] == ["RELOADING", "READY"], timeout=10)
            reloading = rx.with_field("RELOADING", "1")[0]
            assert int(reloading.fields["MONOTONIC_USEC"]) > 0
            assert await d.stop() == 0
    assert ["READY", "RELOADING", "READY", "STOPPING"] == _lifecycle(rx)
    assert "WATCHDOG" in _states(rx)[: _states(rx).index("RELOADING")]


async def test_runs_with_secrets_only_in_the_credentials_directory(tmp_path: Path) -> None:
    """No secret in the YAML: they come from $CREDENTIALS_DIRECTORY, as LoadCredential= gives."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    values = {
        "thingspace-client-id": "sim-client-id",
        "thingspace-client-secret": "sim-client-secret",
        "thingspace-username": "sim-user",
        "thingspace-password": "sim-password",
    }
    for name, value in values.items():
        (creds / name).write_text(value + "\n")
    async with Simulator(_scenario()) as sim:
        config = write_config(tmp_path, sim.url, [campaign(CID)])
        data = yaml.safe_load(config.read_text())
        for key in ("client_id", "client_secret", "username", "password"):
            del data["thingspace"][key]
        config.write_text(yaml.safe_dump(data))
        assert "sim-password" not in config.read_text()
        async with daemon_process(config, env={"CREDENTIALS_DIRECTORY": str(creds)}) as d:
            await wait_for(lambda: sim.stats()["campaign_requests"] >= 2, what="polls")
            assert await d.stop() == 0
        assert sim.stats()["login_failures"] == 0


async def test_journald_priority_prefix_only_under_journal_stream(tmp_path: Path) -> None:
    """`<N>` syslog prefixes appear on stdout lines only when JOURNAL_STREAM is set."""
    async with Simulator(_scenario()) as sim:
        config = write_config(tmp_path, sim.url, [campaign(CID)])
        async with daemon_process(config, env={"JOURNAL_STREAM": "8:12345"}) as d:
            await d.wait_event("fotawatch_started")
            assert await d.stop() == 0
        journald = [line for line in d.lines if line.strip()]
        async with daemon_process(config) as plain:
            await plain.wait_event("fotawatch_started")
            assert await plain.stop() == 0
    assert journald
    assert all(line.startswith(("<6>", "<3>", "<4>")) for line in journald)
    started = next(line for line in journald if "fotawatch_started" in line)
    assert json.loads(started[3:])["event"] == "fotawatch_started"
    assert all(line.startswith("{") for line in plain.lines if line.strip())
