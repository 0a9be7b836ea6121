"""Slack alerts from the real daemon: one message per transition, nothing lost across kill -9."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from support import ACCOUNT, campaign, daemon_process, stored_status, wait_for, write_config

from fotawatch.simulator import Scenario, Simulator
from fotawatch.testing.fake_slack import FakeSlack, Post, ok, server_error

LIFECYCLE = ["CampaignRequestQueued", "CampaignPreScheduled", "CampaignScheduled", "CampaignEnded"]


def _scenario(*ids: str, status: str = "CampaignRequestPending") -> Scenario:
    return Scenario.from_dict(
        {
            "campaigns": [
                {"account": ACCOUNT, "id": i, "name": f"rollout {i[:4]}", "status": status}
                for i in ids
            ]
        }
    )


def _alerts(slack_url: str, **extra: Any) -> dict[str, Any]:
    # Transition alerts only: the conditions have their own tests.
    return {"slack": {"webhook_url": slack_url, "conditions": False}, **extra}


def _moves(posts: list[Post]) -> list[tuple[str, str]]:
    """(campaign id prefix, to_status) for every transition named in delivered messages."""
    found: list[tuple[str, str]] = []
    for post in posts:
        if post.delivered and isinstance(post.body, dict):
            text = post.body.get("text", "")
            found += re.findall(r"\(`?([0-9a-f]{8})[^)]*\)[^\n]*?→ `?(\w+)`?", text)
    return found


async def test_lifecycle_yields_one_message_per_transition_in_order(tmp_path: Path) -> None:
    """Pending -> ... -> Ended through the daemon: exactly 4 Slack messages, in order."""
    cid = "a1a1a1a1-0000-0000-0000-000000000001"
    db = tmp_path / "state.db"
    async with Simulator(_scenario(cid)) as sim, FakeSlack() as slack:
        config = write_config(tmp_path, sim.url, [campaign(cid)], alerts=_alerts(slack.url))
        async with daemon_process(config) as d:
            await wait_for(lambda: stored_status(db, cid) == "CampaignRequestPending")
            for i, status in enumerate(LIFECYCLE, start=1):
                sim.set_status(ACCOUNT, cid, status)
                await slack.wait_for_posts(i, timeout=15, delivered=True)
            assert await d.stop() == 0
        texts = [p.body["text"] for p in slack.delivered]
    assert len(texts) == 4
    for text, (frm, to) in zip(
        texts, zip(["CampaignRequestPending", *LIFECYCLE], LIFECYCLE, strict=False), strict=True
    ):
        assert "a1a1a1a1" in text
        assert frm in text
        assert to in text


async def test_kill_9_with_undelivered_alerts_then_restart_delivers_each_once(
    tmp_path: Path,
) -> None:
    """Slack down, kill -9 with alerts in the outbox, restart: each delivered exactly once."""
    ids = [f"b2b2b2b{i}-0000-0000-0000-000000000001" for i in range(3)]
    db = tmp_path / "state.db"
    async with Simulator(_scenario(*ids)) as sim, FakeSlack() as slack:
        slack.default = server_error()
        config = write_config(
            tmp_path, sim.url, [campaign(i) for i in ids], alerts=_alerts(slack.url)
        )
        async with daemon_process(config) as d:
            await wait_for(lambda: all(stored_status(db, i) for i in ids), what="baseline")
            for i in ids:
                sim.set_status(ACCOUNT, i, "CampaignScheduled")
            await wait_for(lambda: all(stored_status(db, i) == "CampaignScheduled" for i in ids))
            await slack.wait_for_posts(1, timeout=10)  # tried, refused: still in the outbox
            await d.kill()
        assert slack.delivered == []
        slack.default = ok()
        async with daemon_process(config) as d:
            await wait_for(
                lambda: len(_moves(slack.delivered)) >= 3, timeout=20, what="three alerts delivered"
            )
            seen = len(slack.posts)
            for i in ids:  # more polls: nothing may be sent again
                sim.set_status(ACCOUNT, i, "CampaignScheduled")
            polled = sim.stats()["campaign_requests"]
            await wait_for(lambda: sim.stats()["campaign_requests"] >= polled + 6)
            assert await d.stop() == 0
        assert len(slack.posts) == seen
    assert sorted(_moves(slack.delivered)) == sorted((i[:8], "CampaignScheduled") for i in ids)


async def test_forty_simultaneous_transitions_make_at_most_5_posts_and_no_429(
    tmp_path: Path,
) -> None:
    """40 campaigns end at once: every alert delivered in <= 5 posts, never rate limited."""
    ids = [f"c{i:07d}-0000-0000-0000-000000000001" for i in range(40)]
    db = tmp_path / "state.db"
    async with Simulator(_scenario(*ids, status="CampaignScheduled")) as sim, FakeSlack() as slack:
        slack.enforce_rate(1.0)
        config = write_config(
            tmp_path, sim.url, [campaign(i) for i in ids], alerts=_alerts(slack.url)
        )
        async with daemon_process(config) as d:
            await wait_for(lambda: all(stored_status(db, i) for i in ids), what="baseline")
            for i in ids:
                sim.set_status(ACCOUNT, i, "CampaignEnded")
            await wait_for(
                lambda: len(_moves(slack.delivered)) >= 40, timeout=30, what="40 alerts delivered"
            )
            assert await d.stop() == 0
    assert len(slack.posts) <= 5
    assert all(p.status == 200 for p in slack.posts)
    assert slack.violations == []
    assert sorted(_moves(slack.delivered)) == sorted((i[:8], "CampaignEnded") for i in ids)
