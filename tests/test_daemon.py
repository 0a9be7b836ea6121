"""The core daemon against the simulator over loopback: lifecycle, auth, restarts, signals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import (
    ACCOUNT,
    campaign,
    daemon_process,
    stored_columns,
    stored_status,
    stored_transitions,
    wait_for,
    write_config,
)

from fotawatch.app import Daemon, build_client
from fotawatch.config import load_settings
from fotawatch.events import CampaignMissing, CampaignPolled, Event
from fotawatch.model import CampaignKey
from fotawatch.simulator import Scenario, Simulator

LIFECYCLE = [
    "CampaignRequestQueued",
    "CampaignPreScheduled",
    "CampaignScheduled",
    "CampaignEnded",
]


def scenario(*campaigns: dict[str, Any], **extra: Any) -> Scenario:
    return Scenario.from_dict({"campaigns": list(campaigns), **extra})


def sim_campaign(cid: str, status: str = "CampaignRequestPending", **fields: Any) -> dict[str, Any]:
    return {
        "account": ACCOUNT,
        "id": cid,
        "name": f"campaign {cid[:4]}",
        "status": status,
        **fields,
    }


@contextlib.asynccontextmanager
async def running(
    config: Path, *also: Callable[[Event], None]
) -> AsyncIterator[tuple[Daemon, list[Event]]]:
    events: list[Event] = []
    daemon = Daemon(config, subscribers=[events.append, *also])
    task = asyncio.create_task(daemon.run())
    await wait_for(lambda: daemon.started.is_set() or task.done(), what="daemon start")
    if task.done():
        task.result()
    try:
        yield daemon, events
    finally:
        daemon.stop()
        assert await asyncio.wait_for(task, 15) == 0


def polls(events: list[Event], result: str | None = None) -> list[CampaignPolled]:
    return [
        e
        for e in events
        if isinstance(e, CampaignPolled) and (result is None or e.result == result)
    ]


def poll_count(sim: Simulator, cid: str) -> int:
    return int(sim.stats()["campaign_requests_by_campaign"].get(f"{ACCOUNT}/{cid}", 0))


def stored_row(db: Path, campaign_id: str) -> tuple[str, str] | None:
    """(snapshot JSON text, last_poll_at) of a campaign, once it has a snapshot."""
    row = stored_columns(db, campaign_id, "snapshot", "last_poll_at")
    return None if row is None or row[0] is None else (row[0], row[1])


async def test_what_a_poll_read_is_stored_before_it_is_announced(tmp_path: Path) -> None:
    """Any change to a campaign, not only a new status, is durable before its poll is
    announced; a poll that reads the stored campaign writes its times, not the snapshot."""
    cid = "3d7c1f0e-5b1a-4c8e-9a53-0c3f5e2b7a10"
    db = tmp_path / "state.db"
    seen: list[tuple[str | None, str | None]] = []  # (name the poll read, name stored then)

    def read_and_stored(event: Event) -> None:
        if isinstance(event, CampaignPolled) and event.campaign is not None:
            row = stored_row(db, cid)
            seen.append((event.campaign.name, None if row is None else json.loads(row[0])["name"]))

    async with Simulator(scenario(sim_campaign(cid, name="before"))) as sim:
        config = write_config(tmp_path, sim.url, [campaign(cid)])
        async with running(config, read_and_stored):
            await wait_for(lambda: seen and stored_row(db, cid), what="first poll stored")
            # The same campaign, written differently: only a rewrite of the snapshot changes it.
            text, polled_at = stored_row(db, cid) or ("", "")
            respelled = json.dumps(json.loads(text), indent=1)
            with contextlib.closing(sqlite3.connect(db)) as con, con:
                con.execute("UPDATE campaigns SET snapshot = ? WHERE campaign_id = ?",
                            (respelled, cid))  # fmt: skip
            await wait_for(lambda: (stored_row(db, cid) or ("", polled_at))[1] != polled_at,
                           what="a confirmation written")  # fmt: skip
            assert (stored_row(db, cid) or ("",))[0] == respelled
            sim.remove_campaign(ACCOUNT, cid)
            sim.add_campaign(sim_campaign(cid, name="after"))
            await wait_for(lambda: ("after", "after") in seen, what="the renamed campaign polled")
    assert all(read == stored for read, stored in seen), seen


async def test_lifecycle_yields_four_transitions_each_recorded_once(tmp_path: Path) -> None:
    """Pending -> Queued -> PreScheduled -> Scheduled -> Ended: exactly 4 transitions."""
    cid = "f858b8c4-2153-11ec-8c44-aeb16d1aa652"
    async with Simulator(scenario(sim_campaign(cid))) as sim:
        config = write_config(tmp_path, sim.url, [campaign(cid, name="GM01Q rollout")])
        async with running(config) as (daemon, events):
            assert daemon.poller is not None
            assert daemon.scheduler is not None
            await wait_for(lambda: polls(events, "ok"), what="first poll")
            for i, status in enumerate(LIFECYCLE, start=1):
                sim.set_status(ACCOUNT, cid, status)
                await wait_for(
                    lambda i=i: len(stored_transitions(tmp_path / "state.db")) == i,
                    what=f"transition {i}",
                )
            # The confirmation poll of the final status must not record anything again.
            key = next(iter(daemon.poller.views))
            await wait_for(lambda: not daemon.scheduler.polling(key), what="polling stopped")
    rows = stored_transitions(tmp_path / "state.db")
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        (1, "CampaignRequestPending", "CampaignRequestQueued", "progressed"),
        (2, "CampaignRequestQueued", "CampaignPreScheduled", "progressed"),
        (3, "CampaignPreScheduled", "CampaignScheduled", "progressed"),
        (4, "CampaignScheduled", "CampaignEnded", "succeeded"),
    ]


async def test_final_status_is_confirmed_then_polling_stops(tmp_path: Path) -> None:
    """A campaign in a final status is polled once more, then no longer."""
    cid = "aaaaaaaa-0000-0000-0000-000000000001"
    async with Simulator(scenario(sim_campaign(cid, "CampaignEnded"))) as sim:
        config = write_config(tmp_path, sim.url, [campaign(cid)])
        async with running(config) as (daemon, events):
            await wait_for(lambda: len(polls(events)) == 2, what="confirmation poll")
            assert daemon.scheduler is not None
            assert daemon.poller is not None
            key = next(iter(daemon.poller.views))
            await wait_for(lambda: not daemon.scheduler.polling(key), what="polling stopped")
            stopped_at = poll_count(sim, cid)
            seen = len(polls(events))
            # A condition that can only hold if polling continued: give it 3 intervals.
            with pytest.raises(AssertionError):
                await wait_for(lambda: len(polls(events)) > seen, timeout=3)
        assert poll_count(sim, cid) == stopped_at == 2


@pytest.mark.parametrize(
    ("expire", "counter"),
    [("expire_sessions", "login_attempts"), ("revoke_tokens", "oauth_requests")],
    ids=["M2M session expired", "OAuth bearer revoked (900901)"],
)
async def test_token_expiry_is_recovered_with_one_renewal_and_no_failed_poll(
    tmp_path: Path, expire: str, counter: str
) -> None:
    """An expired session or a revoked bearer costs one login/token request, no failed poll."""
    cid = "bbbbbbbb-0000-0000-0000-000000000001"
    async with Simulator(scenario(sim_campaign(cid, "CampaignScheduled"))) as sim:
        config = write_config(tmp_path, sim.url, [campaign(cid)])
        async with running(config) as (_, events):
            await wait_for(lambda: len(polls(events, "ok")) >= 2, what="two polls")
            before = sim.stats()[counter]
            getattr(sim, expire)()
            seen = len(polls(events))
            await wait_for(lambda: len(polls(events)) >= seen + 3, what="three more polls")
        assert sim.stats()[counter] == before + 1
        assert polls(events) == polls(events, "ok")


async def test_fifty_concurrent_polls_with_an_expired_token_make_one_token_request(
    tmp_path: Path,
) -> None:
    """Single flight: 50 polls failing on the same revoked token cause one token request."""
    ids = [f"dddddddd-0000-0000-0000-{i:012d}" for i in range(50)]
    async with Simulator(scenario(*(sim_campaign(c, "CampaignScheduled") for c in ids))) as sim:
        config = write_config(
            tmp_path,
            sim.url,
            [campaign(c) for c in ids],
            thingspace={"max_concurrency": 50, "requests_per_second": 1000},
        )
        settings = load_settings(config)
        async with aiohttp.ClientSession() as session:
            client = build_client(settings, session, lambda _e: None)
            await client.get_campaign(ACCOUNT, ids[0])
            before = sim.stats()
            sim.revoke_tokens()
            results = await asyncio.gather(*(client.get_campaign(ACCOUNT, c) for c in ids))
        after = sim.stats()
    assert [r.campaign_id for r in results] == ids
    assert after["oauth_requests"] - before["oauth_requests"] == 1
    assert after["login_attempts"] == before["login_attempts"]


async def test_wrong_password_never_risks_the_account(tmp_path: Path) -> None:
    """A wrong password: at most 2 login attempts however long it runs; the daemon keeps going."""
    ids = [f"eeeeeeee-0000-0000-0000-{i:012d}" for i in range(3)]
    async with Simulator(scenario(*(sim_campaign(c) for c in ids))) as sim:
        config = write_config(
            tmp_path, sim.url, [campaign(c) for c in ids], thingspace={"password": "wrong-password"}
        )
        async with running(config) as (daemon, events):
            # 3 campaigns at 1 s for 10 s: 30 polls, as many as 5 minutes at a 30 s interval.
            await wait_for(lambda: len(polls(events)) >= 30, timeout=20, what="30 polls")
            assert daemon.poller is not None
            assert daemon.poller.client.auth.circuit.open
            assert sim.stats()["login_attempts"] <= 2
            assert {p.result for p in polls(events)} == {"auth_error"}
            # A reload (the operator fixed nothing) closes the circuit: at most 2 more attempts.
            await daemon.reload()
            seen = len(polls(events))
            await wait_for(lambda: len(polls(events)) >= seen + 6, what="more polls")
        stats = sim.stats()
        assert stats["login_attempts"] <= 4
        assert stats["max_consecutive_login_failures"] <= 4
        assert not stats["locked"]


async def test_missing_campaign_is_reported_once_and_polled_slowly(tmp_path: Path) -> None:
    """An unknown campaign id: one campaign_missing event, then polls every missing_interval."""
    known, unknown = "c1000000-0000-0000-0000-000000000001", "c2000000-0000-0000-0000-0000000000ff"
    async with Simulator(scenario(sim_campaign(known))) as sim:
        config = write_config(tmp_path, sim.url, [campaign(known), campaign(unknown)],
                              polling={"missing_interval_seconds": 3600})
        async with running(config) as (daemon, events):
            await wait_for(lambda: poll_count(sim, unknown) == 1, what="first poll")
            await wait_for(lambda: poll_count(sim, known) >= 4, what="known polled 4 times")
            assert daemon.poller is not None
            assert daemon.poller.views[CampaignKey(account=ACCOUNT, campaign_id=unknown)].missing
        assert poll_count(sim, unknown) == 1
        missing = [e for e in events if isinstance(e, CampaignMissing)]
        assert [(e.key.campaign_id, e.missing) for e in missing] == [(unknown, True)]


async def test_wrong_password_logs_one_error_saying_what_to_do(tmp_path: Path) -> None:
    """When the login circuit opens: exactly one error line, naming the fix."""
    cid = "c3000000-0000-0000-0000-000000000001"
    async with Simulator(scenario(sim_campaign(cid))) as sim:
        config = write_config(tmp_path, sim.url, [campaign(cid)],
                              thingspace={"password": "wrong-password"})
        async with daemon_process(config) as d:
            await wait_for(lambda: poll_count(sim, cid) == 0 and
                           sim.stats()["login_attempts"] >= 2, what="two logins")
            await d.wait_event("login_circuit_open")
            seen = sim.stats()["login_attempts"]
            await wait_for(lambda: len(d.events("campaign_poll_failing")) >= 1, what="failing")
            assert await d.stop() == 0
        assert seen == 2
        errors = [e for e in d.events() if e.get("level") == "error"]
        assert [e["event"] for e in errors] == ["login_circuit_open"]
        assert "systemctl reload fotawatch" in errors[0]["action"]
        assert "wrong-password" not in "\n".join(d.lines)


async def test_kill_9_then_restart_repeats_nothing_and_catches_up(tmp_path: Path) -> None:
    """After kill -9, nothing is repeated; a change made while down yields one transition."""
    cid = "ffffffff-0000-0000-0000-000000000001"
    db = tmp_path / "state.db"
    async with Simulator(scenario(sim_campaign(cid))) as sim:
        config = write_config(tmp_path, sim.url, [campaign(cid)])
        async with daemon_process(config) as d:
            await wait_for(lambda: stored_status(db, cid) == "CampaignRequestPending")
            sim.set_status(ACCOUNT, cid, "CampaignRequestQueued")
            await wait_for(lambda: len(stored_transitions(db)) == 1, what="first transition")
            await d.kill()
        sim.set_status(ACCOUNT, cid, "CampaignScheduled")
        async with daemon_process(config) as d:
            await wait_for(lambda: len(stored_transitions(db)) == 2, what="caught up")
            polled = poll_count(sim, cid)
            await wait_for(lambda: poll_count(sim, cid) >= polled + 2, what="two more polls")
            assert await d.stop() == 0
        assert len(d.events("campaign_transition")) == 1
    assert [(r[2], r[3]) for r in stored_transitions(db)] == [
        ("CampaignRequestPending", "CampaignRequestQueued"),
        ("CampaignRequestQueued", "CampaignScheduled"),
    ]


async def test_sigterm_with_polls_in_flight_exits_0_within_10_s(tmp_path: Path) -> None:
    """SIGTERM while polls hang on the API: exit 0 in under 10 s."""
    ids = [f"12345678-0000-0000-0000-{i:012d}" for i in range(5)]
    faults = [{"kind": "hang", "match": "campaign", "seconds": 60, "start": 0}]
    async with Simulator(scenario(*(sim_campaign(c) for c in ids))) as sim:
        config = write_config(
            tmp_path, sim.url, [campaign(c) for c in ids], thingspace={"timeout_seconds": 5}
        )
        async with daemon_process(config) as d:
            await d.wait_event("fotawatch_started")
            await wait_for(lambda: poll_count(sim, ids[0]) >= 1, what="first poll")
            sim.set_faults(faults)
            await wait_for(
                lambda: sim.stats()["faults_injected"].get("hang", 0) >= 3, what="polls hanging"
            )
            started = time.monotonic()
            d.signal(signal.SIGTERM)
            code = await d.wait(timeout=12)
            elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 10


async def test_sighup_adds_and_removes_campaigns(tmp_path: Path) -> None:
    """SIGHUP: a new campaign is polled and a removed one no longer, without a restart."""
    a, b = "a0000000-0000-0000-0000-000000000001", "b0000000-0000-0000-0000-000000000002"
    async with Simulator(scenario(sim_campaign(a), sim_campaign(b))) as sim:
        config = write_config(tmp_path, sim.url, [campaign(a)])
        async with daemon_process(config) as d:
            await wait_for(lambda: poll_count(sim, a) >= 1, what="a polled")
            assert poll_count(sim, b) == 0
            write_config(tmp_path, sim.url, [campaign(b)])
            d.signal(signal.SIGHUP)
            await d.wait_event("config_reloaded")
            await wait_for(lambda: poll_count(sim, b) >= 2, what="b polled")
            a_count = poll_count(sim, a)
            await wait_for(lambda: poll_count(sim, b) >= 5, what="b polled 3 more times")
            assert poll_count(sim, a) == a_count
            assert await d.stop() == 0


async def test_invalid_config_on_sighup_keeps_the_old_one(tmp_path: Path) -> None:
    """A broken config on reload is logged; polling goes on with the previous one."""
    a = "a1000000-0000-0000-0000-000000000001"
    async with Simulator(scenario(sim_campaign(a))) as sim:
        config = write_config(tmp_path, sim.url, [campaign(a)])
        async with daemon_process(config) as d:
            await wait_for(lambda: poll_count(sim, a) >= 1, what="a polled")
            config.write_text("thingspace: [not, a, mapping\n")
            d.signal(signal.SIGHUP)
            await d.wait_event("config_reload_failed")
            count = poll_count(sim, a)
            await wait_for(lambda: poll_count(sim, a) >= count + 2, what="still polling")
            assert await d.stop() == 0


async def test_more_polls_than_the_limits_allow_are_counted_and_said_once(
    tmp_path: Path,
) -> None:
    """10 campaigns every 1 s through 2 requests/s: the polls due while the previous one still
    waits are counted per account on /metrics and summarised in one warning (at most one a
    minute), not one APScheduler line per skipped run."""
    ids = [f"abababab-0000-0000-0000-{i:012d}" for i in range(10)]
    async with Simulator(scenario(*(sim_campaign(c, "CampaignScheduled") for c in ids))) as sim:
        config = write_config(tmp_path, sim.url, [campaign(c) for c in ids],
                              thingspace={"requests_per_second": 2, "max_concurrency": 2})
        async with daemon_process(config) as d:
            await wait_for(lambda: sim.stats()["campaign_requests"] >= 8, 30, what="8 polls")
            port = d.events("http_listening")[-1]["port"]
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/metrics") as response,
            ):
                text = await response.text()
            assert 0 == await d.stop()
    skipped = [line for line in text.splitlines()
               if line.startswith("fotawatch_polls_skipped_total{")]  # fmt: skip
    assert [f'fotawatch_polls_skipped_total{{account="{ACCOUNT}"}}'] == [
        line.rsplit(" ", 1)[0] for line in skipped
    ]
    assert float(skipped[0].rsplit(" ", 1)[1]) >= 10
    warnings = d.events("polls_skipped")
    assert (1, "warning") == (len(warnings), warnings[0]["level"])
    assert [] == [line for line in d.lines if "maximum number of running instances" in line]
