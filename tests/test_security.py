"""Secrets stay secret: a full run with distinctive credentials, then every output is searched.

The run: two campaigns change status, the API throws 5xx, HTML and truncated bodies, sessions
expire and the bearer is revoked, the password is changed on the ThingSpace side (logins fail
until the login circuit opens), the config is fixed and reloaded, alerts go to Slack and to a
webhook with a secret header, and ``fotawatch status`` and ``history`` are run. Then stdout,
stderr, the JSON logs, /metrics, every Slack and webhook body, the CLI outputs and the bytes of
the SQLite file and its WAL are searched for every secret, including each OAuth and session
token the simulator issued. Plus: the state db is 0600, a world-readable config with inline
secrets draws a warning, and alert URLs must be https unless on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from support import (
    ACCOUNT,
    DaemonProcess,
    daemon_process,
    stored_status,
    stored_transitions,
    wait_for,
    write_config,
)

from fotawatch.simulator import Scenario, Simulator
from fotawatch.testing.fake_slack import FakeSlack

pytestmark = pytest.mark.slow

CLIENT_ID = "Cl13nt-id-JD4"
CLIENT_SECRET = "S3cr3t-client-ZQ9"
USERNAME = "us3r-name-HB6"
PASSWORD = "P4ss-word-XK7"
NEW_PASSWORD = "N3w-pass-word-YY1"
SLACK_PATH = "/services/T0/B0/W3bh00k-PATH-VV2"
HOOK_PATH = "/hooks/R3ceiver-path-LL3"
HOOK_HEADER = "H3ader-token-MM5"
IDS = ["5ec00001-0000-4000-8000-00000000005e", "5ec00002-0000-4000-8000-00000000005e"]
CONFIG_SECRETS = (CLIENT_ID, CLIENT_SECRET, USERNAME, PASSWORD, NEW_PASSWORD, SLACK_PATH,
                  HOOK_PATH, HOOK_HEADER,
                  base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode())  # fmt: skip


def _config(tmp_path: Path, sim: Simulator, slack: FakeSlack, hook: FakeSlack, pw: str) -> Path:
    alerts = {
        "slack": {"webhook_url": f"{slack.base_url}{SLACK_PATH}"},
        "webhooks": [{"url": f"{hook.base_url}{HOOK_PATH}", "headers": {"X-Token": HOOK_HEADER}}],
        "api_down_after": "2s",
        "not_scheduled_by_start": False,
    }
    creds = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "username": USERNAME,
             "password": pw}  # fmt: skip
    campaigns = [{"account": ACCOUNT, "id": c, "name": f"secure {i}"} for i, c in enumerate(IDS)]
    return write_config(tmp_path, sim.url, campaigns, thingspace=creds, alerts=alerts,
                        polling={"devices_interval_seconds": 0})  # fmt: skip


async def _cli(*args: str) -> tuple[int, str]:
    """``python -m fotawatch ARGS`` without blocking the loop the simulator runs on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fotawatch", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return await resp.text()


def _files(db: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
        if p.exists()
    }


async def _transitions(sim: Simulator, db: Path, cid: str, *statuses: str) -> None:
    for status in statuses:
        sim.set_status(ACCOUNT, cid, status)
        await wait_for(lambda s=status: stored_status(db, cid) == s, 30, what=f"{cid} {status}")


async def _password_changed_then_fixed(
    sim: Simulator, d: DaemonProcess, rewrite: Callable[[str], object]
) -> None:
    """ThingSpace gets a new password: logins fail until the circuit opens; fix and reload."""
    sim.set_credentials(password=NEW_PASSWORD)
    sim.expire_sessions()
    await d.wait_event("login_circuit_open", timeout=30)
    rewrite(NEW_PASSWORD)
    d.signal(signal.SIGHUP)
    await d.wait_event("config_reloaded")
    assert sim.stats()["max_consecutive_login_failures"] <= 2


async def _run_everything(tmp_path: Path, outputs: dict[str, str | bytes]) -> list[str]:
    """The full scenario; fills ``outputs`` with every text fotawatch produced."""
    scenario = {
        "credentials": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                        "username": USERNAME, "password": PASSWORD},
        "campaigns": [{"account": ACCOUNT, "id": cid, "name": f"secure {i}",
                       "status": "CampaignRequestPending"} for i, cid in enumerate(IDS)],
    }  # fmt: skip
    db = tmp_path / "state.db"
    async with (
        Simulator(Scenario.from_dict(scenario)) as sim,
        FakeSlack(path=SLACK_PATH) as slack,
        FakeSlack(webhook=True) as hook,
    ):
        config = _config(tmp_path, sim, slack, hook, PASSWORD)
        async with daemon_process(config) as d:
            await wait_for(lambda: all(stored_status(db, c) for c in IDS), 20, what="baselines")
            await _transitions(sim, db, IDS[0], "CampaignRequestQueued")
            sim.set_faults([{"kind": "http_error", "probability": 0.3},
                            {"kind": "html", "probability": 0.2},
                            {"kind": "truncated_json", "match": "campaign", "probability": 0.2}])
            sim.revoke_tokens()
            await _transitions(sim, db, IDS[1], "CampaignRequestQueued", "CampaignScheduled")
            sim.clear_faults()
            await _password_changed_then_fixed(
                sim, d, lambda pw: _config(tmp_path, sim, slack, hook, pw)
            )
            await _transitions(sim, db, IDS[0], "CampaignFailed")
            await _transitions(sim, db, IDS[1], "CampaignEnded")
            await wait_for(lambda: len(stored_transitions(db)) == 5, what="5 transitions")
            await wait_for(lambda: len(hook.delivered) >= 3, 30, what="webhook posts")
            await wait_for(lambda: "Resolved" in str([p.body for p in slack.delivered]), 30,
                           what="the login circuit's resolved message")
            port = d.events("http_listening")[0]["port"]
            outputs["metrics"] = await _get(f"http://127.0.0.1:{port}/metrics")
            outputs["landing page"] = await _get(f"http://127.0.0.1:{port}/")
            outputs.update({f"running {k}": v for k, v in _files(db).items()})
            sim.set_faults([{"kind": "http_error", "match": "campaign"}])
            for args in (["status", "--json"], ["status"], ["history", IDS[0], "--json"],
                         ["history", IDS[1]], ["check-config"]):
                code, text = await _cli(*args, "--config", str(config))
                outputs[" ".join(args[:2])] = text
                assert code in {0, 1}, text
            assert await d.stop() == 0
        outputs["stdout"] = "\n".join(d.lines)
        outputs["stderr"] = d.stderr
        outputs.update({f"stopped {k}": v for k, v in _files(db).items()})
        for i, post in enumerate([*slack.posts, *hook.posts]):
            outputs[f"alert post {i}"] = post.raw
        tokens = list(sim.state.auth.issued_tokens)
    assert len(tokens) >= 4  # bearers and sessions: the revocation and the new login made more
    return tokens


async def test_no_secret_appears_in_any_output(tmp_path: Path) -> None:
    """Credentials, webhook URLs, header values and every issued token: in no output at all."""
    outputs: dict[str, str | bytes] = {}
    tokens = await _run_everything(tmp_path, outputs)
    leaks = [
        (where, secret)
        for secret in (*CONFIG_SECRETS, *tokens)
        for where, text in outputs.items()
        if (secret.encode() in text if isinstance(text, bytes) else secret in text)
    ]
    assert [] == leaks
    # ...and the outputs are the real thing: the auth failure, the alerts, the CLI answers.
    assert "login_circuit_open" in str(outputs["stdout"])
    assert any("login circuit open" in str(v) for k, v in outputs.items() if "post" in k)
    assert IDS[0] in str(outputs["status --json"])
    assert "CampaignFailed" in str(outputs["history " + IDS[0]])
    assert b"CampaignEnded" in outputs["running state.db-wal"]


async def test_state_db_and_its_wal_are_private(tmp_path: Path) -> None:
    """The state db the daemon creates is 0600, its WAL files carry no group/other bits."""
    scenario = {"campaigns": [{"account": ACCOUNT, "id": IDS[0], "status": "CampaignScheduled"}]}
    async with Simulator(Scenario.from_dict(scenario)) as sim:
        config = write_config(tmp_path, sim.url, [{"account": ACCOUNT, "id": IDS[0]}])
        db = tmp_path / "state.db"
        old = os.umask(0)  # even a permissive umask must not widen it
        try:
            async with daemon_process(config) as d:
                await wait_for(lambda: stored_status(db, IDS[0]), 20, what="first poll")
                modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("state.db*")}
                assert await d.stop() == 0
        finally:
            os.umask(old)
    assert 0o600 == modes["state.db"]
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes


def _plain_config(tmp_path: Path, **alerts: Any) -> Path:
    path = tmp_path / "fotawatch.yaml"
    config = {
        "thingspace": {"client_id": "x-id", "client_secret": CLIENT_SECRET, "username": "u",
                       "password": PASSWORD},
        "campaigns": [{"account": ACCOUNT, "id": IDS[0]}],
        "state_path": str(tmp_path / "state.db"),
        "alerts": alerts,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, False), (0o600, False)])
async def test_world_readable_config_with_inline_secrets_is_warned_about(
    tmp_path: Path, mode: int, warned: bool
) -> None:
    """check-config warns when others can read a config holding secrets inline."""
    path = _plain_config(tmp_path)
    path.chmod(mode)
    code, text = await _cli("check-config", "--config", str(path))
    assert 0 == code, text
    assert warned == ("readable by other users" in text)
    assert CLIENT_SECRET not in text
    assert PASSWORD not in text


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        (f"http://hooks.slack.example{SLACK_PATH}", False),
        (f"http://10.0.0.8{SLACK_PATH}", False),
        (f"https://hooks.slack.example{SLACK_PATH}", True),
        (f"http://127.0.0.1:9{SLACK_PATH}", True),
        (f"http://localhost:9{SLACK_PATH}", True),
        (f"http://[::1]:9{SLACK_PATH}", True),
    ],
)
async def test_alert_urls_must_be_https_unless_loopback(tmp_path: Path, url: str, ok: bool) -> None:
    """Slack and webhook URLs: plain http only to loopback; the refusal never shows the URL."""
    for alerts in ({"slack": {"webhook_url": url}}, {"webhooks": [{"url": url}]}):
        path = _plain_config(tmp_path, **alerts)
        path.chmod(0o600)
        code, text = await _cli("check-config", "--config", str(path))
        assert (0 if ok else 78) == code, text
        assert SLACK_PATH not in text
        if not ok:
            assert "https" in text
