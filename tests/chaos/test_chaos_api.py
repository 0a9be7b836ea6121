"""Chaos on the ThingSpace side: the API fails in every way the simulator can make it fail.

Each scenario drives 3 campaigns through 4 transitions each under its faults, then checks the
invariants (``invariants.py``): every change recorded once, alerted once, in order, /metrics
agreeing with the store, never more than 2 failed logins in a row.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Chaos, every
from invariants import Expectations

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


Fault = dict[str, object]


def _window(run: Chaos, seconds: float, *faults: Fault, always: tuple[Fault, ...] = ()) -> None:
    """Replace the simulator's faults: ``faults`` for the next ``seconds``, then ``always``."""
    now = run.sim.now()
    run.sim.set_faults([*({**f, "start": now, "end": now + seconds} for f in faults), *always])


async def test_5xx_bursts(tmp_path: Path) -> None:
    """503 on half the requests, with 2 s bursts of 100 % 502/504: nothing lost or doubled."""
    background = {"kind": "http_error", "status": 503, "probability": 0.5}
    async with Chaos(tmp_path, "api-5xx-bursts", faults="503 p=0.5; 2 s bursts of 502/504") as run:
        run.sim.set_faults([background])

        async def burst(i: int) -> None:
            status = 502 if i % 2 else 504
            _window(run, 2, {"kind": "http_error", "status": status}, always=(background,))

        await run.lifecycle(burst)
        summary = await run.finish()
    assert summary["api_faults"]["http_error"] > 0


async def test_hanging_responses_longer_than_the_timeout(tmp_path: Path) -> None:
    """A third of the requests hang 5 s (timeout 2 s): polls time out and retry, nothing lost."""
    async with Chaos(tmp_path, "api-hangs", faults="hang 5 s > 2 s timeout, p=0.3") as run:
        run.sim.set_faults([{"kind": "hang", "match": "campaign", "seconds": 5,
                             "probability": 0.3}])  # fmt: skip
        await run.lifecycle()
        summary = await run.finish()
    assert summary["api_faults"]["hang"] > 0


async def test_429_storm_with_retry_after(tmp_path: Path) -> None:
    """Half the requests answered 429 Retry-After: 1: polls back off and still see everything."""
    async with Chaos(tmp_path, "api-429-storm", faults="429 Retry-After 1, p=0.5") as run:
        run.sim.set_faults([{"kind": "rate_limit", "retry_after": 1, "probability": 0.5}])
        await run.lifecycle()
        summary = await run.finish()
    assert summary["api_faults"]["rate_limit"] > 0


async def test_html_and_truncated_bodies(tmp_path: Path) -> None:
    """HTML error pages and 200s cut in half: counted as failed polls, never as a transition."""
    faults = "HTML 502 p=0.3, truncated 200 JSON p=0.3"
    async with Chaos(tmp_path, "api-html-truncated", faults=faults) as run:
        run.sim.set_faults([
            {"kind": "html", "status": 502, "probability": 0.3},
            {"kind": "truncated_json", "match": "campaign", "probability": 0.45},
        ])
        await run.lifecycle()
        summary = await run.finish()
    assert summary["api_faults"]["html"] > 0
    assert summary["api_faults"]["truncated_json"] > 0


async def test_session_expiry_every_second(tmp_path: Path) -> None:
    """M2M sessions expire every second: the daemon logs in again each time, never fails one."""
    async with Chaos(tmp_path, "session-expiry", faults="all sessions expired every 1 s") as run:
        async with every(1.0, run.sim.expire_sessions):
            await run.lifecycle()
        summary = await run.finish()
    assert summary["sessions"] >= 3
    assert summary["max_failed_logins_in_a_row"] == 0


async def test_oauth_tokens_revoked(tmp_path: Path) -> None:
    """The bearer token is revoked every second: a new one is fetched, no login is rejected."""
    async with Chaos(tmp_path, "oauth-revoked", faults="OAuth token revoked every 1 s") as run:
        async with every(1.0, run.sim.revoke_tokens):
            await run.lifecycle()
        summary = await run.finish()
    assert summary["oauth_tokens"] >= 3
    assert summary["max_failed_logins_in_a_row"] == 0


async def test_api_down_fires_and_resolves_api_down_once(tmp_path: Path) -> None:
    """The API refuses everything for 6 s (api_down_after 2 s): one firing, one resolved."""
    config = {"alerts": {"api_down_after": "2s"}}
    faults = "every request 503 for 6 s, api_down_after 2 s"
    async with Chaos(tmp_path, "api-down", faults=faults, conditions=True, config=config) as run:
        await run.step()
        _window(run, 6, {"kind": "http_error", "status": 503, "match": "any"})
        await run.step()  # the change happens during the outage; it is seen once it ends
        await run.step()
        await run.step()
        summary = await run.finish(Expectations(
            conditions={("api_down", "firing"): 1, ("api_down", "resolved"): 1},
            loud=("thingspace_api_down", "thingspace_api_recovered"),
        ))
    assert summary["api_faults"]["http_error"] > 0
