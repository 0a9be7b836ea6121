"""Chaos on the Slack side: down, rate limiting, slow, and accepting a post without answering.

The API is healthy here; 3 campaigns make 4 transitions each while Slack misbehaves. Polling must
not wait for Slack, and every transition must reach Slack once it behaves again.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import Chaos
from invariants import Expectations

from fotawatch.testing.fake_slack import accept_then_hang, rate_limited, server_error, slow

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


async def test_slack_down(tmp_path: Path) -> None:
    """Slack answers 500 for 6 s: alerts wait in the outbox, then each arrives exactly once."""
    async with Chaos(tmp_path, "slack-down", faults="Slack 500 for 6 s") as run:
        run.slack.fail_until(time.monotonic() + 6, server_error())
        await run.lifecycle()
        summary = await run.finish()
    assert summary["slack_refused"] > 0


async def test_slack_429_with_retry_after(tmp_path: Path) -> None:
    """Slack answers 429 Retry-After: 2 for 5 s: no post comes early, each alert arrives once."""
    async with Chaos(tmp_path, "slack-429", faults="Slack 429 Retry-After 2 for 5 s") as run:
        run.slack.fail_until(time.monotonic() + 5, rate_limited(2))
        await run.lifecycle()
        summary = await run.finish()
    assert summary["slack_refused"] > 0


async def test_slack_slow(tmp_path: Path) -> None:
    """Every Slack answer takes 2 s: polling goes on at its pace, each alert arrives once."""
    async with Chaos(tmp_path, "slack-slow", faults="every Slack answer 2 s late") as run:
        run.slack.default = slow(2.0)
        await run.lifecycle()
        summary = await run.finish()
    assert summary["slack_refused"] == 0


async def test_slack_accepts_then_times_out(tmp_path: Path) -> None:
    """Slack takes the first post but never answers (timeout 10 s): resent, so at least once."""
    faults = "first post accepted, answer never arrives (10 s timeout)"
    async with Chaos(tmp_path, "slack-accept-timeout", faults=faults) as run:
        run.slack.script([accept_then_hang(15)])
        await run.lifecycle()
        summary = await run.finish(Expectations(duplicates_allowed=True))
    assert summary["duplicated"] >= 1  # the injected one: Slack posted it, fotawatch never knew
