"""Conditions fire once and resolve once: table tests of ConditionTracker on a fake clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fotawatch.alerts.conditions import ConditionRules, ConditionTracker
from fotawatch.alerts.payloads import dedup_key
from fotawatch.devices import DeviceCounts
from fotawatch.events import (
    ApiHealthChanged,
    CampaignMissing,
    CampaignPolled,
    DevicesPolled,
    Event,
    LoginCircuitChanged,
    PollingStopped,
    TransitionObserved,
)
from fotawatch.model import Campaign, CampaignKey, Transition, TransitionKind
from fotawatch.poller import CampaignView
from fotawatch.store.base import OutboxMessage
from fotawatch.store.sqlite import open_store

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)  # a Monday, 09:00 UTC
DAY = dt.timedelta(days=1)
ACCOUNT = "0642233522-00001"
KEY = CampaignKey(account=ACCOUNT, campaign_id="c1")
PENDING, QUEUED, PRE = "CampaignRequestPending", "CampaignRequestQueued", "CampaignPreScheduled"
SCHEDULED, ENDED = "CampaignScheduled", "CampaignEnded"
RULES = ConditionRules(
    stuck_after={PENDING: 2 * 3600.0, QUEUED: 24 * 3600.0, PRE: 24 * 3600.0},
    not_scheduled_by_start=True,
    overdue_after=24 * 3600.0,
)
MID = dt.datetime(2026, 3, 3, tzinfo=dt.UTC)  # 00:00 UTC of the start date below


def h(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def campaign(status: str, **dates: dt.date) -> Campaign:
    return Campaign(account=ACCOUNT, campaign_id=KEY.campaign_id, status=status, name="GM01Q",
                    **dates)  # fmt: skip


def polled(status: str, at: dt.datetime, since: dt.datetime, **dates: dt.date) -> CampaignPolled:
    return CampaignPolled(key=KEY, result="ok", duration=0.1, at=at,
                          campaign=campaign(status, **dates), status_since=since)  # fmt: skip


def failed_poll(status: str, at: dt.datetime, since: dt.datetime) -> CampaignPolled:
    return CampaignPolled(key=KEY, result="http_4xx", duration=0.1, at=at,
                          campaign=campaign(status), status_since=since)  # fmt: skip


def run(
    steps: list[tuple[dt.datetime, Event | None]], rules: ConditionRules = RULES
) -> list[dict[str, Any]]:
    """Feed (now, event) steps; ``None`` is a periodic ``check(now)``. All payloads, in order."""
    tracker = ConditionTracker(rules)
    out: list[dict[str, Any]] = []
    for now, event in steps:
        out += tracker.check(now) if event is None else tracker.observe(event, now)
    return out


def edges(payloads: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(p["condition"], p["state"]) for p in payloads]


START = {"start_date": dt.date(2026, 3, 3)}
END = {"end_date": dt.date(2026, 3, 2)}
SCENARIOS: dict[str, tuple[list[tuple[dt.datetime, Event | None]], str]] = {
    "login circuit": ([
        (h(0), LoginCircuitChanged(open=True, reason="login rejected (INVALID)", at=h(0))),
        (h(1), LoginCircuitChanged(open=True, reason="login rejected (INVALID)", at=h(1))),
        (h(2), LoginCircuitChanged(open=False, reason="reset", at=h(2))),
        (h(3), LoginCircuitChanged(open=False, reason="reset", at=h(3))),
    ], "login_circuit_open"),
    "api down": ([
        (h(0), polled(PENDING, h(0), h(0))),
        (h(1), ApiHealthChanged(up=False, at=h(1), since=h(0.5))),
        (h(2), ApiHealthChanged(up=False, at=h(2), since=h(0.5))),
        (h(3), ApiHealthChanged(up=True, at=h(3), since=h(0.5))),
    ], "api_down"),
    "campaign missing": ([
        (h(0), polled(PENDING, h(0), h(0))),
        (h(0.5), failed_poll(PENDING, h(0.5), h(0))),
        (h(0.5), CampaignMissing(key=KEY, missing=True, at=h(0.5))),
        (h(1), CampaignMissing(key=KEY, missing=True, at=h(1))),
        (h(1.5), polled(PENDING, h(1.5), h(0))),
        (h(1.5), CampaignMissing(key=KEY, missing=False, at=h(1.5))),
    ], "campaign_missing"),
    "stuck in pending": ([
        (h(0), polled(PENDING, h(0), h(0))),
        (h(2) - dt.timedelta(seconds=1), None),
        (h(2), None),
        (h(2.5), polled(PENDING, h(2.5), h(0))),
        (h(3), None),
        (h(3.5), polled(QUEUED, h(3.5), h(3.5))),
    ], "campaign_stuck"),
    "not scheduled by its start date": ([
        (h(0), polled(QUEUED, h(0), h(0), **START)),
        (MID - dt.timedelta(seconds=1), None),
        (MID, None),
        (MID + dt.timedelta(minutes=30), polled(PRE, MID, MID, **START)),
        (MID + dt.timedelta(hours=1), polled(SCHEDULED, MID, MID, **START)),
    ], "campaign_not_scheduled"),
    "overdue after the end date": ([
        (h(0), polled(SCHEDULED, h(0), h(0), **END)),
        (T0 + 2 * DAY - dt.timedelta(hours=9, seconds=1), None),  # 2026-03-03 23:59:59
        (T0 + 2 * DAY - dt.timedelta(hours=9), None),  # end date + 1 day + overdue_after
        (T0 + 2 * DAY, polled(SCHEDULED, T0 + 2 * DAY, h(0), **END)),
        (T0 + 3 * DAY, polled(ENDED, T0 + 3 * DAY, T0 + 3 * DAY, **END)),
    ], "campaign_overdue"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_condition_fires_once_and_resolves_once(name):
    """Across a scenario that starts and clears it, a condition gives exactly two messages."""
    steps, condition = SCENARIOS[name]
    payloads = run(steps)
    assert [(condition, "firing"), (condition, "resolved")] == edges(payloads)
    firing, resolved = payloads
    assert firing["episode"] == resolved["episode"]
    assert dedup_key(firing) != dedup_key(resolved)


def test_the_firing_comes_exactly_when_the_condition_starts():
    """Time-based conditions fire at the first check at or after the threshold, not before."""
    steps, _ = SCENARIOS["stuck in pending"]
    assert [] == run(steps[:2])
    assert [("campaign_stuck", "firing")] == edges(run(steps[:3]))


@pytest.mark.parametrize(
    ("status", "hours"), [(PENDING, 2), (QUEUED, 24), (PRE, 24)]
)
def test_stuck_thresholds_per_status(status, hours):
    """Each watched status has its own limit: quiet one second before, firing at it."""
    tracker = ConditionTracker(RULES)
    assert [] == tracker.observe(polled(status, h(0), h(0)), h(0))
    assert [] == tracker.check(h(hours) - dt.timedelta(seconds=1))
    fired = tracker.check(h(hours))
    assert [("campaign_stuck", "firing")] == edges(fired)
    assert (status, h(0).isoformat().replace("+00:00", "Z")) == (
        fired[0]["status"], fired[0]["episode"],
    )


def test_scheduled_and_unwatched_statuses_are_never_stuck():
    """Scheduled has no stuck limit; a status set to null in config is not watched."""
    rules = ConditionRules(stuck_after={QUEUED: 3600.0}, overdue_after=None)
    tracker = ConditionTracker(rules)
    tracker.observe(polled(SCHEDULED, h(0), h(0)), h(0))
    assert [] == tracker.check(h(24 * 30))
    other = ConditionTracker(rules)
    other.observe(polled(PENDING, h(0), h(0)), h(0))
    assert [] == other.check(h(24 * 30))


def test_disabled_rules_fire_nothing():
    """not_scheduled_by_start=False and overdue_after=None switch those conditions off."""
    rules = ConditionRules(stuck_after={}, not_scheduled_by_start=False, overdue_after=None)
    payloads = run([
        (h(0), polled(QUEUED, h(0), h(0), start_date=dt.date(2026, 3, 1))),
        (h(0), polled(SCHEDULED, h(0), h(0), end_date=dt.date(2026, 1, 1))),
        (h(24 * 60), None),
    ], rules)  # fmt: skip
    assert [] == payloads


def test_not_scheduled_continues_through_queued_and_prescheduled():
    """Moving Pending -> Queued after the start date neither resolves nor re-fires it."""
    start = {"start_date": dt.date(2026, 3, 2)}
    payloads = run([
        (h(0), polled(PENDING, h(0), h(0), **start)),
        (h(0.1), polled(QUEUED, h(0.1), h(0.1), **start)),
        (h(0.2), polled(PRE, h(0.2), h(0.2), **start)),
    ], ConditionRules(stuck_after={}))  # fmt: skip
    assert [("campaign_not_scheduled", "firing")] == edges(payloads)
    assert "2026-03-02T00:00:00Z" == payloads[0]["episode"]


def test_a_refire_after_resolve_gets_a_new_dedup_key():
    """Open -> closed -> open: the second firing is a new episode with a new key."""
    payloads = run([
        (h(0), polled(PENDING, h(0), h(0))),
        (h(1), LoginCircuitChanged(open=True, reason="r", at=h(1))),
        (h(2), LoginCircuitChanged(open=False, reason="reset", at=h(2))),
        (h(3), LoginCircuitChanged(open=True, reason="r", at=h(3))),
    ])  # fmt: skip
    first, resolved, again = payloads
    assert ["firing", "resolved", "firing"] == [p["state"] for p in payloads]
    assert first["episode"] == resolved["episode"]
    assert len({dedup_key(p) for p in payloads}) == 3
    assert again["episode"] != first["episode"]


def test_stuck_again_in_a_later_status_is_a_new_episode():
    """Stuck in Pending, then moved on and back: the second stuck firing has its own key."""
    payloads = run([
        (h(0), polled(PENDING, h(0), h(0))),
        (h(3), None),
        (h(4), polled(QUEUED, h(4), h(4))),
        (h(5), polled(PENDING, h(5), h(5))),
        (h(8), None),
    ], ConditionRules(stuck_after={PENDING: 7200.0}))  # fmt: skip
    assert [("campaign_stuck", s) for s in ("firing", "resolved", "firing")] == edges(payloads)
    assert payloads[0]["episode"] != payloads[2]["episode"]


def test_the_same_start_date_again_after_resolving_gets_a_fresh_episode():
    """Scheduled, then (unexpectedly) back to Pending: not_scheduled re-fires with a new key."""
    start = {"start_date": dt.date(2026, 3, 2)}
    payloads = run([
        (h(0), polled(PENDING, h(0), h(0), **start)),
        (h(1), polled(SCHEDULED, h(1), h(1), **start)),
        (h(2), polled(PENDING, h(2), h(2), **start)),
    ], ConditionRules(stuck_after={}))  # fmt: skip
    assert ["firing", "resolved", "firing"] == [p["state"] for p in payloads]
    assert len({dedup_key(p) for p in payloads}) == 3


def test_time_conditions_are_left_alone_while_the_campaign_is_missing():
    """A missing campaign is not judged stuck on stale data, nor resolved: only 'missing'."""
    payloads = run([
        (h(0), polled(PENDING, h(0), h(0))),
        (h(1), failed_poll(PENDING, h(1), h(0))),
        (h(1), CampaignMissing(key=KEY, missing=True, at=h(1))),
        (h(5), None),
    ])  # fmt: skip
    assert [("campaign_missing", "firing")] == edges(payloads)


def test_other_events_say_nothing():
    """Transitions and polling stops feed names, not messages."""
    t = Transition(key=KEY, seq=1, from_status=PENDING, to_status=QUEUED,
                   kind=TransitionKind.PROGRESSED, observed_at=h(0))  # fmt: skip
    assert [] == run([
        (h(0), TransitionObserved(transition=t, name="Configured name")),
        (h(0), PollingStopped(key=KEY, status=ENDED)),
    ])  # fmt: skip


def test_messages_carry_campaign_name_status_since_and_detail():
    """A campaign condition names the campaign (configured name first), status and since."""
    t = Transition(key=KEY, seq=1, from_status=None, to_status=PENDING,
                   kind=TransitionKind.PROGRESSED, observed_at=h(0))  # fmt: skip
    payloads = run([
        (h(0), TransitionObserved(transition=t, name="Configured name")),
        (h(0), polled(PENDING, h(0), h(0))),
        (h(2.5), None),
        (h(3), polled(QUEUED, h(3), h(3))),
    ])  # fmt: skip
    firing, resolved = payloads
    assert ("Configured name", PENDING, ACCOUNT, "c1") == (
        firing["campaign_name"], firing["status"], firing["account"], firing["campaign_id"],
    )
    assert "2026-03-02T11:00:00Z" == firing["since"]  # status_since + the 2 h limit
    assert "limit is 2h" in firing["detail"]
    assert "Now CampaignRequestQueued." == resolved["detail"]


# --- restarts ---------------------------------------------------------------------------------


def view(status: str, since: dt.datetime, **fields: Any) -> CampaignView:
    """The campaign as the store (through the poller) hands it over at start-up."""
    return CampaignView(key=KEY, name="GM01Q rollout", campaign=campaign(status), status=status,
                        status_since=since, last_seq=1, **fields)  # fmt: skip


def test_after_a_restart_an_active_condition_has_the_same_key_and_still_resolves():
    """prime() recomputes the stuck episode from the stored status_since: same dedup key
    (the outbox ignores it), and the resolve on the next poll is sent."""
    before = ConditionTracker(RULES)
    before.observe(polled(PENDING, h(0), h(0)), h(0))
    (fired,) = before.check(h(3))
    after = ConditionTracker(RULES)
    (primed,) = after.prime([view(PENDING, h(0), last_success_at=h(2.9))], h(4))
    assert dedup_key(fired) == dedup_key(primed)
    (resolved,) = after.observe(polled(QUEUED, h(5), h(5)), h(5))
    assert ("resolved", fired["episode"]) == (resolved["state"], resolved["episode"])


def test_api_down_across_a_restart_keeps_its_episode():
    """api_down's episode is the last successful poll, which the store keeps: same key."""
    before = ConditionTracker(RULES)
    before.observe(polled(PENDING, h(0), h(0)), h(0))
    (fired,) = before.observe(ApiHealthChanged(up=False, at=h(0.2), since=h(0.05)), h(0.2))
    after = ConditionTracker(RULES)
    assert [] == after.prime([view(PENDING, h(0), last_success_at=h(0))], h(1))
    (again,) = after.observe(ApiHealthChanged(up=False, at=h(1.2), since=h(1.05)), h(1.2))
    assert dedup_key(fired) == dedup_key(again)
    assert ["resolved"] == [
        p["state"] for p in after.observe(ApiHealthChanged(up=True, at=h(2)), h(2))
    ]


def test_a_missing_campaign_across_a_restart_keeps_its_episode():
    """campaign_missing's episode is the campaign's last success: prime() gives the same key."""
    before = ConditionTracker(RULES)
    before.observe(polled(PENDING, h(0), h(0)), h(0))
    (fired,) = before.observe(CampaignMissing(key=KEY, missing=True, at=h(1)), h(1))
    after = ConditionTracker(RULES)
    (primed,) = after.prime([view(PENDING, h(0), missing=True, last_success_at=h(0))], h(2))
    assert dedup_key(fired) == dedup_key(primed)


async def test_a_refired_condition_is_one_outbox_row(tmp_path: Path):
    """The outbox keeps one row for a firing queued before and after a restart."""
    before, after = ConditionTracker(RULES), ConditionTracker(RULES)
    before.observe(polled(PENDING, h(0), h(0)), h(0))
    (fired,) = before.check(h(3))
    (primed,) = after.prime([view(PENDING, h(0))], h(4))
    async with open_store(tmp_path / "state.db") as store:
        for p, at in ((fired, h(3)), (primed, h(4))):
            await store.enqueue([OutboxMessage(sink="slack", dedup_key=dedup_key(p), payload=p,
                                               created_at=at)])  # fmt: skip
        assert 1 == len(await store.outbox_rows())


class _JudgeEveryTime(ConditionTracker):
    """The tracker without its shortcut: every poll and check judges the conditions again."""

    def _next_threshold(self, c: Any, now: dt.datetime) -> dt.datetime:
        return now  # quiet until now: the next evaluation (now or later) judges again


# Shared objects: the client hands back the same campaign for the same body, and the tracker's
# shortcut keys on that identity, so the steps below reuse these.
_POOL = [
    campaign(PENDING, **START), campaign(QUEUED, **START), campaign(SCHEDULED, **END),
    campaign(SCHEDULED, end_date=dt.date(2026, 3, 5)), campaign(ENDED), campaign(PRE),
]
_STEP = st.tuples(
    st.floats(min_value=0, max_value=30, allow_nan=False),  # hours since the previous step
    st.one_of(
        st.tuples(st.just("poll"), st.integers(0, len(_POOL) - 1), st.integers(0, 3)),
        st.tuples(st.just("failed"), st.just(0), st.just(0)),
        st.tuples(st.just("missing"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("devices"), st.integers(0, 30), st.integers(1, 30)),
        st.tuples(st.just("check"), st.just(0), st.just(0)),
    ),
)
_WITH_FAILURES = dataclasses.replace(RULES, failure_threshold=0.2, failure_min_devices=5)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(_STEP, max_size=40))  # polls, failures, missing flips, device counts, checks
def test_the_quiet_shortcut_changes_no_payload(steps: list[tuple[float, tuple[str, int, int]]]):
    """Skipping the evaluation of a campaign whose inputs are the same and whose next threshold
    is still ahead sends exactly what judging it on every poll and check sends."""
    fast, slow = ConditionTracker(_WITH_FAILURES), _JudgeEveryTime(_WITH_FAILURES)
    now, since = T0, T0
    for hours, (kind, which, since_step) in steps:
        now += dt.timedelta(hours=hours)
        event: Event | None = None
        if kind == "poll":
            since = T0 + since_step * dt.timedelta(hours=7)
            event = CampaignPolled(key=KEY, result="ok", duration=0.1, at=now,
                                   campaign=_POOL[which], status_since=since)  # fmt: skip
        elif kind == "failed":
            event = CampaignPolled(key=KEY, result="timeout", duration=0.1, at=now,
                                   campaign=None, status_since=since)  # fmt: skip
        elif kind == "missing":
            event = CampaignMissing(key=KEY, missing=bool(which), at=now, name=None)
        elif kind == "devices":
            counts = DeviceCounts(key=KEY, polled_at=now, campaign_status=SCHEDULED,
                                  counts=(("UpgradeFailed", which), ("UpgradeSuccess", since_step)))
            event = DevicesPolled(key=KEY, result="ok", duration=0.1, at=now, counts=counts)
        got = [t.check(now) if event is None else t.observe(event, now) for t in (fast, slow)]
        assert got[0] == got[1]
