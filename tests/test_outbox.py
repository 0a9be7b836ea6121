"""Outbox delivery: pacing, combining, retries, permanent failures, expiry, restarts, secrecy.

Real SQLite files and real HTTP over loopback (FakeSlack, or a tiny receiver where a test needs an
answer FakeSlack does not give). Tests that are about time drive ``Dispatcher.step`` with a fake
clock shared with FakeSlack, so minutes of outage run in milliseconds; the others run the
dispatcher's own loop on the real clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from fotawatch.alerts.outbox import DeliveryPolicy, Dispatcher
from fotawatch.alerts.payloads import condition_payload, dedup_key, transition_payload
from fotawatch.alerts.render import render_slack_batch, validate_slack_message
from fotawatch.alerts.senders import (
    Outcome,
    SendResult,
    SlackSender,
    WebhookSender,
    parse_retry_after,
)
from fotawatch.alerts.service import AlertService
from fotawatch.config.models import AlertsSettings
from fotawatch.errors import StoreError
from fotawatch.model import CampaignKey, Transition, TransitionKind
from fotawatch.store.base import OutboxMessage
from fotawatch.store.sqlite import SqliteStore, open_store
from fotawatch.testing.fake_slack import (
    FakeSlack,
    Post,
    accept_then_hang,
    action_prohibited,
    channel_is_archived,
    channel_not_found,
    invalid_payload,
    no_service,
    rate_limited,
    server_error,
    slow,
)

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)  # real-clock tests need fresh rows
ACCOUNT = "0642233522-00001"
SECRET = "XyZsecretWebhookPath0123456789"
# Real-clock tests: quick backoff so a retry comes within a second.
QUICK = DeliveryPolicy(min_interval=1.0, backoff_initial=0.1, backoff_max=0.5, idle_check=0.2)


class FakeClock:
    """Wall time for the dispatcher and monotonic time for FakeSlack, moved by hand."""

    def __init__(self) -> None:
        self.current = T0

    def now(self) -> dt.datetime:
        return self.current

    def monotonic(self) -> float:
        return (self.current - T0).total_seconds()

    def advance(self, seconds: float) -> None:
        self.current += dt.timedelta(seconds=seconds)


class RecordingMetrics:
    """The metrics hook, recording."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.latencies: list[tuple[str, float]] = []

    def notification(self, sink: str, result: str, count: int = 1) -> None:
        self.counts[sink, result] += count

    def notification_latency(self, sink: str, seconds: float) -> None:
        self.latencies.append((sink, seconds))


def message(i: int, *, sink: str = "slack", at: dt.datetime = T0, name: str | None = None):
    """The outbox row of campaign ``c{i}``'s first transition."""
    key = CampaignKey(account=ACCOUNT, campaign_id=f"camp-{i:03d}")
    t = Transition(key=key, seq=1, from_status="CampaignRequestPending",
                   to_status="CampaignRequestQueued", kind=TransitionKind.PROGRESSED,
                   observed_at=at)  # fmt: skip
    payload = transition_payload(t, name=name or f"rollout {i:03d}")
    return OutboxMessage(sink=sink, dedup_key=dedup_key(payload), payload=payload, created_at=at)


def big_condition(i: int, *, at: dt.datetime = T0) -> OutboxMessage:
    """A condition row whose rendering is large (a 1000-character detail)."""
    payload = condition_payload(
        condition="campaign_stuck", state="firing", observed_at=at, episode=at, account=ACCOUNT,
        campaign_id=f"big-{i:03d}", status="CampaignRequestPending",
        detail=f"MARK{i:03d} " + "x" * 1200,
    )  # fmt: skip
    return OutboxMessage(sink="slack", dedup_key=dedup_key(payload), payload=payload, created_at=at)


def sections(post: Post) -> str:
    """The text of a post's section blocks: what the message carries in full."""
    blocks = post.body.get("blocks", []) if isinstance(post.body, dict) else []
    return "\n".join(b["text"]["text"] for b in blocks if b.get("type") == "section")


async def states(store: SqliteStore) -> dict[str, str]:
    return {row["dedup_key"]: row["state"] for row in await store.outbox_rows()}


async def drive(d: Dispatcher, clock: FakeClock, *, max_steps: int = 500) -> None:
    """Run passes on the fake clock until the dispatcher has nothing left to do."""
    for _ in range(max_steps):
        delay = await d.step()
        if delay is None:
            return
        clock.advance(delay)
    raise AssertionError("dispatcher did not settle")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with open_store(tmp_path / "state.db") as s:
        yield s


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Captured log entries, whatever an earlier test configured (a level filter would hide
    warnings from ``capture_logs``, which replaces only the processors)."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        with capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@contextlib.asynccontextmanager
async def dispatching(d: Dispatcher) -> AsyncIterator[Dispatcher]:
    task = asyncio.create_task(d.run())
    try:
        yield d
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def receiver(
    answer: Callable[[bytes, str], tuple[int, str]],
) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback webhook answering ``answer(body, url)``; yields (its secret URL, bodies)."""
    seen: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        seen.append(raw)
        status, text = answer(raw, str(request.url))
        return web.Response(status=status, text=text)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/services/T0/B0/{SECRET}", seen
    finally:
        await runner.cleanup()


def slack_dispatcher(store, session, url, clock=None, *, policy=QUICK, metrics=None, timeout=10.0):
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock.now}
    sender = SlackSender(session, url, timeout=timeout)
    return Dispatcher(sender, store, policy, metrics=metrics, rng=lambda: 0.0, **kwargs)


# --- the basics --------------------------------------------------------------------------------


async def test_one_transition_is_exactly_one_post(store, session):
    """One queued transition becomes one Slack post naming it; the row is then delivered."""
    metrics = RecordingMetrics()
    async with FakeSlack() as slack:
        d = slack_dispatcher(store, session, slack.url, metrics=metrics)
        async with dispatching(d):
            await store.enqueue([message(1)])
            d.wake()
            await slack.wait_for_posts(1)
            await slack.wait_until(lambda: d.depth == 0, what="depth 0")
        assert 1 == len(slack.posts)
        assert "rollout 001" in slack.posts[0].body["text"]
    assert {message(1).dedup_key: "delivered"} == await states(store)
    assert 1 == metrics.counts["slack", "delivered"]
    assert 1 == len(metrics.latencies)


async def test_forty_simultaneous_transitions_take_at_most_five_posts_and_no_429(store, session):
    """40 rows at once: the first goes alone, the rest combined at 1 msg/s; Slack never says 429."""
    async with FakeSlack() as slack:
        slack.enforce_rate(1.0)
        d = slack_dispatcher(store, session, slack.url)
        async with dispatching(d):
            for i in range(40):
                await store.enqueue([message(i)])
                d.wake()
                await asyncio.sleep(0)  # transitions arrive one by one, as polls finish
            await slack.wait_until(lambda: d.depth == 0 and slack.posts, timeout=10, what="all")
    assert len(slack.posts) <= 5
    assert all(p.status == 200 for p in slack.posts)
    assert [] == slack.violations
    assert set((await states(store)).values()) == {"delivered"}
    carried = "\n".join(sections(p) for p in slack.posts)
    assert all(f"camp-{i:03d}" in carried for i in range(40))


async def test_server_error_then_recovery_is_delivered_and_counted_retried(store, session):
    """500 once: the row is retried after a 1 s backoff and delivered; counted retried."""
    clock, metrics = FakeClock(), RecordingMetrics()
    async with FakeSlack(clock=clock.monotonic) as slack:
        slack.script([server_error()])
        d = slack_dispatcher(store, session, slack.url, clock, metrics=metrics,
                             policy=DeliveryPolicy())  # fmt: skip
        await store.enqueue([message(1)])
        await drive(d, clock)
    assert [500, 200] == [p.status for p in slack.posts]
    assert slack.posts[1].received_at - slack.posts[0].received_at >= 1.0
    assert {message(1).dedup_key: "delivered"} == await states(store)
    assert 1 == metrics.counts["slack", "retried"]
    assert 1 == metrics.counts["slack", "delivered"]


async def test_backoff_doubles_from_one_second_and_caps_at_five_minutes():
    """The backoff steps: 1, 2, 4 ... s, never above 5 min, jitter on top below the cap."""
    policy = DeliveryPolicy()
    assert [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300] == [
        policy.backoff(n, 0.0) for n in range(11)
    ]
    assert 1.1 == pytest.approx(policy.backoff(0, 1.0))
    assert 300 == policy.backoff(40, 1.0)


async def test_retry_after_holds_the_whole_sink(store, session):
    """429 Retry-After 2: nothing goes to Slack for 2 s, then the held and the new alert go
    together."""
    async with FakeSlack() as slack:
        slack.script([rate_limited(2)])
        d = slack_dispatcher(store, session, slack.url)
        async with dispatching(d):
            await store.enqueue([message(1)])
            d.wake()
            await slack.wait_for_posts(1)
            await store.enqueue([message(2)])
            d.wake()
            await slack.wait_for_posts(2, timeout=6)
            await slack.wait_until(lambda: d.depth == 0, what="depth 0")
    first, second = slack.posts
    assert (429, 200) == (first.status, second.status)
    assert second.received_at - first.received_at >= 2.0
    assert [] == slack.violations
    assert "camp-001" in sections(second)
    assert "camp-002" in sections(second)


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [
        (invalid_payload, 400),
        (action_prohibited, 403),
        (no_service, 404),
        (channel_not_found, 404),
        (channel_is_archived, 410),
    ],
)
async def test_permanent_errors_fail_the_row_and_are_never_retried(
    store, session, behaviour, status
):
    """400/403/404/410: the row fails with Slack's error string, once; the next row is fine."""
    clock, metrics = FakeClock(), RecordingMetrics()
    async with FakeSlack(clock=clock.monotonic) as slack:
        slack.script([behaviour()])
        d = slack_dispatcher(store, session, slack.url, clock, metrics=metrics)
        await store.enqueue([message(1)])
        await drive(d, clock)
        await store.enqueue([message(2)])
        await drive(d, clock)
    assert [status, 200] == [p.status for p in slack.posts]
    rows = {r["dedup_key"]: r for r in await store.outbox_rows()}
    failed, delivered = rows[message(1).dedup_key], rows[message(2).dedup_key]
    assert ("failed", behaviour().body, 0) == (
        failed["state"], failed["fail_reason"], failed["attempts"],
    )
    assert "delivered" == delivered["state"]
    assert 1 == metrics.counts["slack", "failed"]
    assert 0 == metrics.counts["slack", "retried"]


async def test_rows_older_than_max_age_are_dropped_unsent(store, session):
    """A row older than max_age is marked failed ("expired") and counted dropped, not sent."""
    clock, metrics = FakeClock(), RecordingMetrics()
    async with FakeSlack(clock=clock.monotonic) as slack:
        d = slack_dispatcher(store, session, slack.url, clock, metrics=metrics,
                             policy=DeliveryPolicy(max_age=3600))  # fmt: skip
        old = message(1, at=T0 - dt.timedelta(hours=2))
        await store.enqueue([old, message(2)])
        await drive(d, clock)
    rows = {r["dedup_key"]: r for r in await store.outbox_rows()}
    expired = rows[old.dedup_key]
    assert ("failed", "expired") == (expired["state"], expired["fail_reason"])
    assert "delivered" == rows[message(2).dedup_key]["state"]
    assert 1 == len(slack.posts)
    assert "camp-001" not in slack.posts[0].raw.decode()
    assert 1 == metrics.counts["slack", "dropped"]


async def test_one_refused_payload_does_not_sink_a_combined_message(store, session):
    """A combined message refused with 400 is resent row by row: only the bad row fails."""
    clock, metrics = FakeClock(), RecordingMetrics()

    def answer(raw: bytes, _url: str) -> tuple[int, str]:
        return (400, "invalid_blocks") if b"POISON" in raw else (200, "ok")

    async with receiver(answer) as (url, seen):
        d = slack_dispatcher(store, session, url, clock, metrics=metrics)
        rows = [message(i, name="POISON" if i == 2 else None) for i in range(5)]
        await store.enqueue(rows)
        await drive(d, clock)
    assert 6 == len(seen)  # the combined message, then each row alone
    result = {r["dedup_key"]: (r["state"], r["fail_reason"]) for r in await store.outbox_rows()}
    assert {m.dedup_key: ("delivered", None) for i, m in enumerate(rows) if i != 2} | {
        rows[2].dedup_key: ("failed", "invalid_blocks")
    } == result
    assert (4, 1) == (metrics.counts["slack", "delivered"], metrics.counts["slack", "failed"])


async def test_rows_that_do_not_fit_wait_for_the_next_message(store, session):
    """Big alerts: each message carries only what it shows in full; the rest go next."""
    clock = FakeClock()
    async with FakeSlack(clock=clock.monotonic) as slack:
        d = slack_dispatcher(store, session, slack.url, clock)
        await store.enqueue([big_condition(i) for i in range(20)])
        await drive(d, clock)
    assert len(slack.posts) > 1
    assert all(p.status == 200 and not p.problems for p in slack.posts)
    assert not any("more alerts" in json.dumps(p.body) for p in slack.posts)
    carried = [sections(p).count("MARK") for p in slack.posts]
    assert 20 == sum(carried)
    assert set((await states(store)).values()) == {"delivered"}


async def test_render_slack_batch_counts_only_alerts_shown_in_full():
    """render_slack_batch returns a valid message and how many leading payloads it shows."""
    payloads = [big_condition(i).payload for i in range(30)]
    body, n = render_slack_batch(payloads)
    assert 1 < n < 30
    assert [] == validate_slack_message(body)
    shown = "\n".join(b["text"]["text"] for b in body["blocks"] if b["type"] == "section")
    assert [f"MARK{i:03d}" in shown for i in range(30)] == [i < n for i in range(30)]
    small = [message(i).payload for i in range(20)]
    assert 20 == render_slack_batch(small)[1]


# --- hanging Slack, shutdown and restarts -------------------------------------------------------


async def test_hanging_slack_times_out_is_retried_and_logged_as_possible_duplicate(
    store, session, logs
):
    """Slack accepts and then hangs: the sender times out, the row is retried and delivered."""
    metrics = RecordingMetrics()
    async with FakeSlack() as slack:
        slack.script([accept_then_hang(30)])
        d = slack_dispatcher(store, session, slack.url, metrics=metrics, timeout=0.3)
        async with dispatching(d):
            await store.enqueue([message(1)])
            d.wake()
            await slack.wait_for_posts(2, timeout=5)
            await slack.wait_until(lambda: d.depth == 0, what="depth 0")
    assert {message(1).dedup_key: "delivered"} == await states(store)
    assert (1, 1) == (metrics.counts["slack", "retried"], metrics.counts["slack", "delivered"])
    retries = [e for e in logs if e["event"] == "alert_retry"]
    assert [("timeout", True)] == [(e["reason"], e["possible_duplicate"]) for e in retries]


async def test_shutdown_cancels_a_hanging_send_and_the_row_is_resent_after_restart(tmp_path):
    """Leaving the service is prompt even mid-send; the pending row goes out after a restart."""
    db = tmp_path / "state.db"
    async with FakeSlack() as slack, aiohttp.ClientSession() as session:
        slack.script([accept_then_hang(30)])
        settings = AlertsSettings.model_validate({"slack": {"webhook_url": slack.url}})
        async with open_store(db) as store:
            service = AlertService(settings, store, session, policy=QUICK)
            async with service:
                await store.enqueue([message(1)])
                service.wake()
                await slack.wait_for_posts(1)
                started = time.monotonic()
            assert time.monotonic() - started < 1.0
            assert {message(1).dedup_key: "pending"} == await states(store)
        async with open_store(db) as store:
            service = AlertService(settings, store, session, policy=QUICK)
            async with service:
                await slack.wait_for_posts(2)
                await slack.wait_until(lambda: service.depths() == {"slack": 0}, what="sent")
            assert {message(1).dedup_key: "delivered"} == await states(store)
    assert 2 == len(slack.posts)  # at-least-once: the hung post may have reached the channel


async def test_a_drained_exit_lets_the_send_in_flight_be_answered_and_marked(tmp_path):
    """Leaving with drain_seconds (a lost leadership): no new send, but the one in flight is
    answered and its row marked delivered, so no other instance sends it again."""
    async with FakeSlack() as slack, aiohttp.ClientSession() as session:
        slack.script([slow(0.5)])
        settings = AlertsSettings.model_validate({"slack": {"webhook_url": slack.url}})
        async with open_store(tmp_path / "state.db") as store:
            service = AlertService(settings, store, session, policy=QUICK)
            async with service:
                await store.enqueue([message(1)])
                service.wake()
                await slack.wait_for_posts(1)
                service.drain_seconds = 5.0
                await store.enqueue([message(2)])  # queued after the drain began: not sent
            assert {message(1).dedup_key: "delivered", message(2).dedup_key: "pending"} == (
                await states(store)
            )
    assert 1 == len(slack.posts)


async def test_restart_sends_pending_rows_and_never_resends_delivered_ones(tmp_path, session):
    """Delivered rows stay delivered across a restart; rows queued while down are sent once."""
    db = tmp_path / "state.db"
    async with FakeSlack() as slack:
        async with open_store(db) as store:
            d = slack_dispatcher(store, session, slack.url)
            async with dispatching(d):
                await store.enqueue([message(1)])
                d.wake()
                await slack.wait_until(lambda: d.depth == 0 and slack.posts, what="first")
            await store.enqueue([message(2), message(3)])  # queued while "down"
        async with open_store(db) as store:
            d = slack_dispatcher(store, session, slack.url)
            async with dispatching(d):
                await slack.wait_for_posts(2)
                await slack.wait_until(lambda: d.depth == 0, what="the rest")
            assert set((await states(store)).values()) == {"delivered"}
    assert 2 == len(slack.posts)
    assert "camp-001" in sections(slack.posts[0])
    assert "camp-001" not in json.dumps(slack.posts[1].body)
    assert "camp-002" in sections(slack.posts[1])
    assert "camp-003" in sections(slack.posts[1])


class FailingOnceStore(SqliteStore):
    """A real SQLite store whose first ``outbox_delivered`` fails, as a full disk would."""

    failed = False

    async def outbox_delivered(self, ids: Sequence[int], at: dt.datetime) -> None:
        if not self.failed:
            self.failed = True
            raise StoreError(f"state db {self.path}: cannot mark alerts delivered: SQLITE_FULL")
        await super().outbox_delivered(ids, at)


async def test_a_store_error_while_marking_keeps_the_row_pending_and_it_is_resent(
    tmp_path, session, logs
):
    """Marking fails: logged as an error, the row stays pending and is sent again."""
    clock = FakeClock()
    store = await FailingOnceStore.open(tmp_path / "state.db")
    try:
        async with FakeSlack(clock=clock.monotonic) as slack:
            d = slack_dispatcher(store, session, slack.url, clock)
            await store.enqueue([message(1)])
            await drive(d, clock)
        assert 2 == len(slack.delivered)
        assert {message(1).dedup_key: "delivered"} == await states(store)
        errors = [e for e in logs if e["event"] == "alert_outbox_mark_failed"]
        assert ["error"] == [e["log_level"] for e in errors]
    finally:
        await store.close()


# --- outages -----------------------------------------------------------------------------------


async def test_two_minutes_of_500_and_429_then_recovery_loses_nothing(store, session):
    """Slack fails (500 / 429 Retry-After 5) for 2 minutes while alerts keep coming: all are
    delivered after it recovers, none before a Retry-After elapsed, within one backoff step."""
    clock, metrics = FakeClock(), RecordingMetrics()
    arrivals = {0.0: [0, 1, 2], 10.0: [3, 4], 45.0: [5], 119.0: [6], 130.0: [7]}
    async with FakeSlack(clock=clock.monotonic) as slack:
        slack.fail_until(120.0, [server_error(), rate_limited(5)])
        d = slack_dispatcher(store, session, slack.url, clock, metrics=metrics,
                             policy=DeliveryPolicy())  # fmt: skip
        for _ in range(500):
            for at in [a for a in arrivals if a <= clock.monotonic()]:
                await store.enqueue([message(i, at=clock.now()) for i in arrivals.pop(at)])
                d.wake()
            delay = await d.step()
            if delay is None and not arrivals:
                break
            upcoming = [a - clock.monotonic() for a in arrivals]
            clock.advance(min([x for x in [delay, *upcoming] if x is not None]))
    assert set((await states(store)).values()) == {"delivered"}
    assert [] == slack.violations
    delivered = slack.delivered
    assert all(p.received_at >= 120.0 for p in delivered)
    assert delivered[-1].received_at < 120.0 + 70.0  # within one (64 s) backoff step
    carried = "\n".join(sections(p) for p in delivered)
    assert all(f"camp-{i:03d}" in carried for i in range(8))
    assert metrics.counts["slack", "retried"] > 0
    assert 8 == metrics.counts["slack", "delivered"]


async def test_a_short_real_outage_then_recovery_delivers_everything(store, session):
    """3 s of 500 / 429 on the real clock: every alert arrives afterwards, no early post."""
    async with FakeSlack() as slack:
        recovery = time.monotonic() + 3.0
        slack.fail_until(recovery, [server_error(), rate_limited(1)])
        d = slack_dispatcher(store, session, slack.url)
        async with dispatching(d):
            await store.enqueue([message(i) for i in range(5)])
            d.wake()
            await slack.wait_for_posts(1)
            await store.enqueue([message(i) for i in range(5, 10)])
            d.wake()
            await slack.wait_until(lambda: d.depth == 0 and slack.delivered, timeout=10,
                                   what="recovery")  # fmt: skip
    assert set((await states(store)).values()) == {"delivered"}
    assert [] == slack.violations
    assert all(p.received_at >= recovery for p in slack.delivered)
    carried = "\n".join(sections(p) for p in slack.delivered)
    assert all(f"camp-{i:03d}" in carried for i in range(10))


# --- secrecy and the generic webhook -----------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_webhook_url_is_never_logged_nor_in_errors(store, session, logs):
    """Neither an answer echoing the URL nor a refused connection puts the URL anywhere."""
    clock = FakeClock()

    def echo(_raw: bytes, url: str) -> tuple[int, str]:
        return 400, f"invalid_payload at {url} (path {url.split('/', 3)[3]})"

    dead_url = f"http://127.0.0.1:{closed_port()}/services/T0/B0/{SECRET}"
    async with receiver(echo) as (url, _seen):
        d = slack_dispatcher(store, session, url, clock)
        await store.enqueue([message(1)])
        await drive(d, clock)
    dead = Dispatcher(WebhookSender(session, dead_url, name="pager"), store, QUICK,
                      clock=clock.now)  # fmt: skip
    await store.enqueue([message(2, sink="pager")])
    await dead.step()
    refused = await dead.sender.send({"x": 1})
    rows = await store.outbox_rows()
    assert {"alert_failed", "alert_retry"} <= {e["event"] for e in logs}
    everything = json.dumps([logs, [(r["fail_reason"], r["state"]) for r in rows]], default=str)
    everything += repr(dead.sender) + repr(d.sender) + refused.describe()
    assert SECRET not in everything
    assert "/services/T0/B0" not in everything
    assert "failed" == rows[0]["state"]
    assert rows[0]["fail_reason"].startswith("invalid_payload at ")
    assert (Outcome.RETRY, "connection_error ClientConnectorError") == (
        refused.outcome, refused.reason,
    )


async def test_generic_webhook_receives_the_documented_json(store, session):
    """A webhook sink gets {"version": 1, "source": "fotawatch", "events": [payloads]}."""
    clock = FakeClock()
    async with FakeSlack(webhook=True, clock=clock.monotonic) as hook:
        sender = WebhookSender(session, hook.url, name="ops", headers={"X-Token": "t0k3n"})
        d = Dispatcher(sender, store, QUICK, clock=clock.now)
        rows = [message(1, sink="ops"), message(2, sink="ops")]
        await store.enqueue(rows)
        await drive(d, clock)
    assert 1 == len(hook.posts)
    assert {"version": 1, "source": "fotawatch", "events": [dict(r.payload) for r in rows]} == (
        hook.posts[0].body
    )
    assert set((await states(store)).values()) == {"delivered"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("Mon, 02 Mar 2026 09:00:30 GMT", 30.0),
        ("soon", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value, expected):
    """Retry-After as seconds or an HTTP date; unusable values give None."""
    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    assert expected == parse_retry_after(value, now)


def test_a_missing_retry_after_means_thirty_seconds():
    """A 429 without Retry-After holds the sink for 30 s; huge values are capped at an hour."""
    policy = DeliveryPolicy()
    limited = SendResult(outcome=Outcome.RATE_LIMITED, reason="rate_limited", status=429)
    assert 30.0 == policy.retry_after(limited)
    huge = SendResult(outcome=Outcome.RATE_LIMITED, reason="x", status=429, retry_after=1e9)
    assert 3600.0 == policy.retry_after(huge)
