"""Chaos on fotawatch's own process: kill -9, SIGHUP storms, a state db that refuses writes."""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Chaos
from invariants import Expectations, slack_transitions
from support import ACCOUNT, wait_for
from tools import in_ci

from fotawatch.testing.fake_slack import ok, slow

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


async def _restart_after_kill(run: Chaos) -> None:
    await run.kill9()
    await run.start()


async def test_kill_9_during_poll_send_reload_and_at_random(tmp_path: Path) -> None:
    """kill -9 mid-poll, -send, -reload, at random: recorded once, alerted (cut post may repeat)."""
    rng = random.Random(6)  # the random kill points, reproducibly
    faults = "kill -9 mid-poll, mid-Slack-send, right after SIGHUP, and at 2 random polls"
    async with Chaos(tmp_path, "kill-9", faults=faults) as run:
        # 1. during a poll: every campaign request takes 1.5 s, kill while one is in flight
        run.sim.set_faults([{"kind": "latency", "match": "campaign", "seconds": 1.5}])
        moved = run.advance()
        await wait_for(lambda: run.sim.state.counters.in_flight > 0, what="a poll in flight")
        await run.kill9()
        run.sim.clear_faults()
        await run.start()
        await run.wait_stored(moved)
        # 2. during a send: Slack takes 3 s to answer, kill while a post is in flight
        run.slack.default = slow(3.0)
        moved = run.advance()
        await run.wait_stored(moved)
        await wait_for(lambda: run.slack.in_flight > 0, 15, what="the slow post in flight")
        await run.kill9()  # waits for Slack to finish the cut post
        cut = set(slack_transitions(run.slack.posts[-1]))  # posted, but never answered
        assert cut, "the slow post carried no transition"
        assert cut <= run.cut, "the cut post was not recognised as cut"
        run.slack.default = ok()
        await run.start()
        # 3. during a reload: SIGHUP with a changed config, SIGKILL at once
        run.write_config(run.driven, names="renamed")
        run.sighup()
        await _restart_after_kill(run)
        # 4. at random polls: let 1-6 more requests reach the simulator, then kill
        for _ in range(2):
            moved = run.advance()
            seen = run.sim.stats()["campaign_requests"]
            extra = rng.randint(1, 6)
            await wait_for(lambda s=seen, e=extra: run.sim.stats()["campaign_requests"] >= s + e)
            await _restart_after_kill(run)
            await run.wait_stored(moved)
        summary = await run.finish()  # only cut posts (run.cut) may repeat
    assert summary["kills"] == 5


async def test_sighup_storm(tmp_path: Path) -> None:
    """20 SIGHUPs, configs alternating: still polling, nothing lost or doubled, last config wins."""
    faults = "20 SIGHUPs in a burst; a changed campaign dropped and re-added"
    async with Chaos(tmp_path, "sighup-storm", faults=faults, extra_campaigns=1) as run:
        await run.step()
        dropped = run.driven[2]
        run.write_config(run.driven[:2], names="v-drop")
        run.sighup()
        await run.daemon.wait_event("config_reloaded")
        moved = run.advance()  # the dropped campaign changes while nobody watches it
        for i in range(20):
            run.write_config(run.ids if i % 2 else run.driven[:2], names=f"v{i}")
            run.sighup()

        async def last_config_applied() -> bool:
            return (await run.scrape()).count('campaign_name="v19 ') == len(run.ids)

        await wait_for(last_config_applied, 15, what="the last config")
        await run.wait_stored(moved)
        await run.step()
        await run.step()
        await run.step()
        text = await run.scrape()
        summary = await run.finish()
    assert "fotawatch_config_last_reload_successful 1.0" in text
    assert dropped in text
    assert summary["sighups"] == 21


@contextlib.contextmanager
def _immutable(*paths: Path) -> Iterator[None]:
    """``chattr +i``: even root cannot write (SQLite gets SQLITE_IOERR_WRITE) until ``-i``."""
    names = [str(p) for p in paths]
    subprocess.run(["chattr", "+i", *names], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *names], check=True)


def _require_chattr(tmp_path: Path) -> None:
    probe = tmp_path / "chattr-probe"
    probe.write_text("x")
    if shutil.which("chattr") is not None:
        try:
            with _immutable(probe):
                pass
        except subprocess.CalledProcessError:
            pass
        else:
            return
    reason = "chattr +i is not available here (needs root and ext4/xfs/btrfs)"
    if in_ci():
        pytest.fail(f"{reason}; CI=true, so this is an error, not a skip", pytrace=False)
    pytest.skip(reason)


async def test_store_unwritable(tmp_path: Path) -> None:
    """Unwritable state db: errors logged, nothing lost; once writable all recorded and alerted."""
    _require_chattr(tmp_path)
    faults = "state db + WAL immutable (chattr +i) while 3 campaigns change and 1 disappears"
    async with Chaos(tmp_path, "store-unwritable", faults=faults, extra_campaigns=1,
                     watch_extra=True, conditions=True) as run:  # fmt: skip
        await run.step()
        await run.drained()
        vanishing = run.ids[3]
        with _immutable(run.db, run.db.with_name(run.db.name + "-wal")):
            moved = run.advance()
            run.sim.remove_campaign(ACCOUNT, vanishing)
            await run.daemon.wait_event("store_write_failed")
            await run.daemon.wait_event("alert_enqueue_failed")  # the campaign_missing message
            polled = run.sim.stats()["campaign_requests"]
            await wait_for(lambda: run.sim.stats()["campaign_requests"] >= polled + 6)
            assert all(run.stored(cid) != status for cid, status in moved.items())
        await run.wait_stored(moved)
        await run.step()
        await run.step()
        await run.step()
        summary = await run.finish(Expectations(
            conditions={("campaign_missing", "firing"): 1},
            loud=("store_write_failed", "store_write_recovered", "alert_enqueue_failed"),
        ))
    assert summary["lost"] == 0
