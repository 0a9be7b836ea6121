"""The fake Slack answers like Slack's incoming webhooks, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
import time
from typing import Any

import aiohttp
import pytest

from fotawatch.alerts.payloads import test_payload as make_test_payload
from fotawatch.alerts.render import render_slack
from fotawatch.testing.fake_slack import (
    Behaviour,
    FakeSlack,
    accept_then_hang,
    action_prohibited,
    behaviour_from_dict,
    channel_is_archived,
    channel_not_found,
    invalid_payload,
    no_service,
    ok,
    rate_limited,
    server_error,
    slow,
)

MESSAGE = {"text": "hello"}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def post(session: aiohttp.ClientSession, url: str, body: Any = MESSAGE, **kw: Any):
    """POST ``body`` (JSON, or bytes as they are); return (status, text, headers)."""
    data = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with session.post(url, **data, **kw) as response:
        return response.status, await response.text(), response.headers


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


async def test_ok_records_the_post(session):
    """A valid message gets 200 ``ok`` and is recorded with its JSON body."""
    async with FakeSlack() as slack:
        assert slack.url.startswith("http://127.0.0.1:")
        assert slack.url.endswith(slack.path)
        status, text, _ = await post(session, slack.url)
        assert (200, "ok") == (status, text)
        [record] = slack.posts
        assert record.body == MESSAGE
        assert record.delivered
        assert record.received_at <= time.monotonic()


@pytest.mark.parametrize(
    ("behaviour", "status", "text"),
    [
        (ok(), 200, "ok"),
        (invalid_payload(), 400, "invalid_payload"),
        (no_service(), 404, "no_service"),
        (channel_not_found(), 404, "channel_not_found"),
        (action_prohibited(), 403, "action_prohibited"),
        (channel_is_archived(), 410, "channel_is_archived"),
        (server_error(), 500, "rollup_error"),
        (rate_limited(7), 429, "rate_limited"),
    ],
)
async def test_each_behaviour(session, behaviour, status, text):
    """Each scripted behaviour answers with Slack's status and error text."""
    async with FakeSlack() as slack:
        slack.script([behaviour])
        assert (status, text) == (await post(session, slack.url))[:2]
        assert status == slack.posts[0].status


async def test_rate_limited_sends_retry_after(session):
    """A 429 carries Retry-After in seconds."""
    async with FakeSlack() as slack:
        slack.script([rate_limited(7)])
        _, _, headers = await post(session, slack.url)
        assert headers["Retry-After"] == "7"


async def test_script_is_consumed_then_default_applies(session):
    """Scripted behaviours answer one request each; then ``default`` answers."""
    async with FakeSlack() as slack:
        slack.script([server_error(), rate_limited(1)])
        slack.default = channel_is_archived()
        statuses = [(await post(session, slack.url))[0] for _ in range(4)]
        assert [500, 429, 410, 410] == statuses


async def test_slow_answers_after_the_delay(session):
    """``slow`` delays its answer, then accepts."""
    async with FakeSlack() as slack:
        slack.script([slow(0.3)])
        started = time.monotonic()
        status, _, _ = await post(session, slack.url)
        assert status == 200
        assert time.monotonic() - started >= 0.3


async def test_accept_then_hang_records_delivery_and_times_the_client_out(session):
    """The post counts as delivered though the client times out; closing ends the hang."""
    slack = FakeSlack()
    async with slack:
        slack.script([accept_then_hang(60)])
        with pytest.raises(TimeoutError):
            await post(session, slack.url, timeout=aiohttp.ClientTimeout(total=0.3))
        await slack.wait_for_posts(1, delivered=True, timeout=5)
        closing = time.monotonic()
    assert time.monotonic() - closing < 5
    assert slack.posts[0].behaviour == "accept_then_hang"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"not json", "invalid_payload"),
        (b"", "invalid_payload"),
        (["a", "list"], "invalid_payload"),
        ({}, "no_text"),
        ({"text": ""}, "no_text"),
        ({"blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        ({"text": "x" * 3001}, "invalid_blocks"),
    ],
)
async def test_invalid_messages_are_refused_like_slack(session, body, text):
    """Messages Slack would refuse get 400 with Slack's error text and the reasons recorded."""
    async with FakeSlack() as slack:
        assert (400, text) == (await post(session, slack.url, body))[:2]
        assert not slack.posts[0].delivered
        assert slack.posts[0].problems


async def test_a_rendered_fotawatch_message_is_accepted(session):
    """What render_slack produces passes the fake's checks."""
    async with FakeSlack() as slack:
        message = render_slack([make_test_payload(dt.datetime.now(dt.UTC))])
        assert (await post(session, slack.url, message))[0] == 200


async def test_wrong_path_is_no_service(session):
    """Only the webhook's secret path is served."""
    async with FakeSlack() as slack:
        assert (404, "no_service") == (await post(session, f"{slack.base_url}/services/x"))[:2]


async def test_fail_until_then_recover(session):
    """``fail_until`` answers with its behaviours in turn until the deadline, then recovers."""
    clock = FakeClock()
    async with FakeSlack(clock=clock) as slack:
        slack.fail_until(clock.now + 120, [server_error(), rate_limited(2)])
        statuses = []
        for _ in range(3):
            statuses.append((await post(session, slack.url))[0])
            clock.now += 3
        clock.now += 120
        statuses.append((await post(session, slack.url))[0])
        assert [500, 429, 500, 200] == statuses
        assert [] == slack.violations


async def test_enforce_rate_limits_and_records_violations(session):
    """Posts beyond the rate get 429; a post before Retry-After elapsed is a violation."""
    clock = FakeClock()
    async with FakeSlack(clock=clock) as slack:
        slack.enforce_rate(per_second=1.0, burst=2)
        statuses = [(await post(session, slack.url))[0] for _ in range(3)]
        assert [200, 200, 429] == statuses
        assert slack.posts[-1].status == 429
        assert [] == slack.violations
        clock.now += 0.5
        assert (await post(session, slack.url))[0] == 429
        assert [slack.posts[-1]] == slack.violations
        clock.now += 1.5
        assert (await post(session, slack.url))[0] == 200
        assert len(slack.violations) == 1


async def test_enforce_rate_retry_after_covers_the_wait(session):
    """Retry-After is a whole number of seconds, at least the time until the next token."""
    clock = FakeClock()
    async with FakeSlack(clock=clock) as slack:
        slack.enforce_rate(per_second=0.25, burst=1)
        await post(session, slack.url)
        _, _, headers = await post(session, slack.url)
        assert headers["Retry-After"] == "4"
        slack.enforce_rate(None)
        clock.now += 4
        assert (await post(session, slack.url))[0] == 200


async def test_wait_for_posts_returns_when_enough_arrived(session):
    """``wait_for_posts`` returns as soon as n posts arrived and times out otherwise."""
    async with FakeSlack() as slack:
        async def send_three() -> None:
            for _ in range(3):
                await post(session, slack.url)

        sender = asyncio.create_task(send_three())
        posts = await slack.wait_for_posts(3, timeout=5)
        await sender
        assert len(posts) == 3
        with pytest.raises(TimeoutError, match="4 posts"):
            await slack.wait_for_posts(4, timeout=0.1)


async def test_webhook_mode_accepts_any_path_and_json(session):
    """The generic webhook receiver takes any path and any JSON, and answers 200."""
    async with FakeSlack(webhook=True) as hook:
        body = {"version": 1, "source": "fotawatch", "events": []}
        assert (await post(session, f"{hook.base_url}/any/path", body))[0] == 200
        assert hook.posts[0].body == body
        assert hook.posts[0].path == "/any/path"
        hook.script([server_error()])
        assert (await post(session, f"{hook.base_url}/x", body))[0] == 500


def test_behaviours_round_trip_through_json():
    """Every behaviour survives to_dict / behaviour_from_dict; unknown names are refused."""
    behaviours: list[Behaviour] = [
        ok(), invalid_payload(), no_service(), channel_not_found(), action_prohibited(),
        channel_is_archived(), rate_limited(3), server_error(), slow(0.5), accept_then_hang(9),
    ]
    assert behaviours == [behaviour_from_dict(b.to_dict()) for b in behaviours]
    assert behaviour_from_dict("ok") == ok()
    with pytest.raises(ValueError, match="unknown behaviour"):
        behaviour_from_dict({"name": "teapot"})


async def _read_url(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()
    prefix = "fake slack listening on "
    assert line.startswith(prefix), line
    return line.removeprefix(prefix).strip()


async def test_subprocess_mode(session):
    """``python -m fotawatch.testing.fake_slack`` prints its URL, obeys admin calls, exits 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fotawatch.testing.fake_slack", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    try:
        url = await _read_url(proc)
        base = url.split("/services/")[0]
        assert (await post(session, url))[0] == 200
        async with session.put(f"{base}/_fake/script", json=[{"name": "server_error"}]) as r:
            assert r.status == 204
        assert (await post(session, url))[0] == 500
        fail = {"seconds": 60, "behaviours": [{"name": "rate_limited", "retry_after": 1}]}
        async with session.post(f"{base}/_fake/fail-until", json=fail) as r:
            assert r.status == 204
        assert (await post(session, url))[0] == 429
        async with session.get(f"{base}/_fake/posts") as r:
            recorded = await r.json()
        assert [200, 500, 429] == [p["status"] for p in recorded["posts"]]
        assert recorded["posts"][0]["body"] == MESSAGE
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, stderr.decode()
    assert stderr == b""
