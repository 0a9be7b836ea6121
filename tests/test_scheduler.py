"""Scheduling details that APScheduler 3 gets wrong on its own."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from apscheduler.executors.base import MaxInstancesReachedError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from structlog.testing import capture_logs
from support import wait_for

from fotawatch.events import Event, PollSkipped
from fotawatch.model import CampaignKey
from fotawatch.poller import PollOutcome, Target
from fotawatch.scheduler import (
    TICK_MAX,
    GridIntervalTrigger,
    PollScheduler,
    SchedulePolicy,
    _CoroutineExecutor,
    tick_for,
)

START = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def test_jitter_does_not_accumulate() -> None:
    """1,000 runs at 60 s with 30 s jitter stay on the grid: the mean period is 60 s, not 75."""
    trigger = GridIntervalTrigger(seconds=60, jitter=30, start_date=START, timezone=dt.UTC)
    runs = [START]
    for _ in range(1000):
        runs.append(trigger.get_next_fire_time(runs[-1], runs[-1]))
    for k, run in enumerate(runs[1:], start=1):
        offset = (run - START).total_seconds() - 60 * k
        assert 0 <= offset <= 30, (k, offset)
    mean = (runs[-1] - runs[0]).total_seconds() / 1000
    assert 59.9 < mean < 60.1


def test_first_run_without_previous_is_the_next_grid_point() -> None:
    """Without a previous run the trigger behaves like IntervalTrigger (plus jitter)."""
    trigger = GridIntervalTrigger(seconds=10, jitter=None, start_date=START, timezone=dt.UTC)
    now = START + dt.timedelta(seconds=25)
    assert START + dt.timedelta(seconds=30) == trigger.get_next_fire_time(None, now)


def test_run_before_the_start_date_is_followed_by_the_start_date() -> None:
    """A first run scheduled before the trigger's start (creation + interval) does not skip a
    slot: the next run is the start date, one interval later, not two."""
    trigger = GridIntervalTrigger(seconds=10, jitter=None, start_date=START, timezone=dt.UTC)
    early = START - dt.timedelta(seconds=9.5)
    assert START == trigger.get_next_fire_time(early, early)


def test_each_campaign_keeps_one_phase_so_every_gap_is_one_interval() -> None:
    """The jitter spreads 200 campaigns' first polls over 30 s, on the shared tick grid; after
    that each is polled every 60 s exactly (a per-run jitter made gaps of up to 90 s, and alert
    latency with them)."""
    scheduler = PollScheduler(_never, SchedulePolicy(jitter=30), lambda _: None,
                              rng=random.Random(7))  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    targets = [Target(key=CampaignKey(account="a", campaign_id=f"c{i}"), name=None, interval=60)
               for i in range(200)]  # fmt: skip
    scheduler.sync(targets)
    firsts = [scheduler.next_poll(t.key) for t in targets]
    assert None not in firsts
    slots = scheduler._scheduler.get_jobs()  # one APScheduler job per distinct first poll

    gaps = set()
    for slot in slots:
        runs = [slot.next_run_time]
        for _ in range(50):
            runs.append(slot.trigger.get_next_fire_time(runs[-1], runs[-1]))
        gaps |= {(b - a).total_seconds() for a, b in itertools.pairwise(runs)}
    offsets = sorted((f - now).total_seconds() for f in firsts if f is not None)

    assert {60.0} == gaps
    assert TICK_MAX == scheduler.tick  # 200 polls a minute: the widest grid
    assert (True, True) == (offsets[0] < 3, 27 < offsets[-1] <= 30 + TICK_MAX)
    assert all(f.timestamp() % TICK_MAX == 0 for f in firsts if f is not None)  # on the grid
    assert len(slots) == len(set(firsts)) <= 30 / TICK_MAX + 1  # campaigns share wake-ups


@pytest.mark.parametrize(
    ("polls_per_second", "tick"),
    [(0, 0.25), (3.3, 0.25), (166.7, 1 / 4), (300, 1 / 8), (1000, 1 / 16), (100_000, 1 / 128)],
)
def test_the_grid_holds_32_to_64_due_polls_per_tick(polls_per_second: float, tick: float) -> None:
    """10,000 campaigns a minute: a 1/4 s grid (~42 due together); 300 a second: 1/8 s (~38);
    1,000 a second: 1/16 s (~62); never wider than 1/4 s nor finer than 1/128 s."""
    assert tick == tick_for(polls_per_second)


async def _never(_: Target) -> PollOutcome:
    raise AssertionError("not polled in this test")


async def _executor_with_job(
    func: Callable[[], Awaitable[None]], grace: int
) -> tuple[AsyncIOScheduler, Any, Any]:
    """A started (paused) APScheduler on fotawatch's executor, with one job it will not run."""
    scheduler = AsyncIOScheduler(timezone=dt.UTC, executors={"default": _CoroutineExecutor()})
    scheduler.start(paused=True)
    job = scheduler.add_job(func, "date", run_date=dt.datetime(2099, 1, 1, tzinfo=dt.UTC),
                            misfire_grace_time=grace, max_instances=1)  # fmt: skip
    return scheduler, scheduler._lookup_executor("default"), job


async def _settled(executor: Any) -> None:
    while executor._pending_futures:
        await asyncio.wait(set(executor._pending_futures))


async def test_the_executor_runs_on_time_and_skips_a_run_later_than_its_grace() -> None:
    """A run within ``misfire_grace_time`` is awaited; a later one is skipped with one warning,
    as APScheduler's own executor does; either way the instance is released."""
    runs: list[str] = []

    async def poll() -> None:
        runs.append("ran")

    scheduler, executor, job = await _executor_with_job(poll, grace=5)
    now = dt.datetime.now(dt.UTC)
    with capture_logs() as logs:
        executor.submit_job(job, [now - dt.timedelta(seconds=1)])
        await _settled(executor)
        executor.submit_job(job, [now - dt.timedelta(seconds=60)])
        await _settled(executor)
    scheduler.shutdown(wait=False)
    assert ["ran"] == runs
    missed = [e for e in logs if e["event"] == "poll_run_missed"]
    assert [(job.id, "warning")] == [(e["job"], e["log_level"]) for e in missed]
    assert {} == dict(executor._instances)


async def test_the_executor_keeps_max_instances_and_releases_after_a_crash() -> None:
    """While a run is in progress a second one is refused (the scheduler counts it as a skipped
    poll); a run that raises is logged by APScheduler and frees its instance."""
    gate = asyncio.Event()

    async def poll() -> None:
        await gate.wait()
        raise RuntimeError("a bug")

    scheduler, executor, job = await _executor_with_job(poll, grace=5)
    now = dt.datetime.now(dt.UTC)
    executor.submit_job(job, [now])
    with pytest.raises(MaxInstancesReachedError):
        executor.submit_job(job, [now])
    gate.set()
    await _settled(executor)
    assert {} == dict(executor._instances)
    executor.submit_job(job, [now])  # accepted again
    await _settled(executor)
    scheduler.shutdown(wait=False)


@pytest.mark.parametrize("interval", [0.25, 1, 7.3, 60, 86_400])
def test_the_next_slot_is_the_one_the_base_class_gives_after_snapping(interval: float) -> None:
    """Without jitter the trigger computes the next slot itself (it runs twice per poll); the
    result is the base IntervalTrigger's next run after the previous run snapped to its slot."""
    trigger = GridIntervalTrigger(seconds=interval, start_date=START, timezone=dt.UTC)
    rng = random.Random(7)
    for _ in range(500):
        previous = START + dt.timedelta(seconds=rng.uniform(-interval, 1_000 * interval))
        slot = max(math.floor((previous - START).total_seconds() / interval), -1)
        snapped = START + dt.timedelta(seconds=slot * interval)
        base = super(GridIntervalTrigger, trigger).get_next_fire_time(snapped, previous)
        assert base == trigger.get_next_fire_time(previous, previous), (previous, interval)


# ---------------------------------------------------------------- slots: campaigns per job

SLOW = CampaignKey(account="a", campaign_id="slow")
FAST = CampaignKey(account="a", campaign_id="fast")
OK = PollOutcome(result="ok", status="CampaignScheduled")


def _sharing_a_slot(scheduler: PollScheduler, targets: list[Target]) -> None:
    """Sync ``targets`` (jitter 0) so that they share a slot: again if the clock crossed a tick
    boundary between two of them."""
    for _ in range(5):
        scheduler.sync(targets)
        if len({scheduler._jobs[t.key].slot for t in targets}) == 1:
            return
        scheduler.sync([])
    raise AssertionError("the targets never fell into one slot")


async def test_a_slow_poll_holds_back_no_other_campaign_of_its_slot() -> None:
    """Two campaigns polled from one APScheduler job: while one poll hangs, the other is polled
    on time, and the hanging campaign's due runs are skipped (PollSkipped), not stacked."""
    release = asyncio.Event()
    polls: collections.Counter[CampaignKey] = collections.Counter()
    events: list[Event] = []

    async def poll(target: Target) -> PollOutcome:
        polls[target.key] += 1
        if target.key == SLOW:
            await release.wait()
        return OK

    scheduler = PollScheduler(poll, SchedulePolicy(jitter=0), events.append)
    _sharing_a_slot(scheduler, [Target(key=SLOW, interval=0.5), Target(key=FAST, interval=0.5)])
    assert len(scheduler._scheduler.get_jobs()) == 1
    scheduler.start()
    try:
        await wait_for(lambda: polls[FAST] >= 4, what="four polls of the fast campaign")
        skipped = [e.key for e in events if isinstance(e, PollSkipped)]
        assert polls[SLOW] == 1
        assert skipped.count(SLOW) >= 2
        assert FAST not in skipped
        release.set()
        await wait_for(lambda: polls[SLOW] >= 2, what="the slow campaign polled again")
    finally:
        await scheduler.shutdown(1.0)


async def test_a_reschedule_moves_one_campaign_and_an_empty_slot_goes() -> None:
    """A campaign found missing leaves its slot for one a missing_interval away; its slot mate
    stays; once no campaign is left in a slot, its APScheduler job is removed."""
    missing = PollOutcome(result="not_found", status=None, missing=True)

    async def poll(target: Target) -> PollOutcome:
        return missing if target.key == SLOW else OK

    policy = SchedulePolicy(jitter=0, missing_interval=3600)
    scheduler = PollScheduler(poll, policy, lambda _: None)
    _sharing_a_slot(scheduler, [Target(key=SLOW, interval=0.5), Target(key=FAST, interval=0.5)])
    before = scheduler._jobs[FAST].slot
    scheduler.start()
    try:
        await wait_for(lambda: scheduler._jobs[SLOW].slot != before, what="the reschedule")
        due = scheduler.next_poll(SLOW)
        assert due is not None
        assert 3599 < (due - dt.datetime.now(dt.UTC)).total_seconds() <= 3600 + TICK_MAX
        assert scheduler._jobs[FAST].slot == before
        assert len(scheduler._scheduler.get_jobs()) == 2

        scheduler.sync([Target(key=SLOW, interval=0.5)])
        assert scheduler._scheduler.get_job(before) is None
        assert (scheduler.polling(FAST), scheduler.next_poll(FAST)) == (False, None)
        scheduler.sync([])
        assert scheduler._scheduler.get_jobs() == []
    finally:
        await scheduler.shutdown(1.0)


async def test_a_slot_run_that_starts_after_shutdown_began_starts_no_poll() -> None:
    """Shutdown waits for the polls in flight, then cancels the runs APScheduler submitted but
    had not started. Polls are tasks of a slot's run, not of APScheduler's executor, so a slot
    run that starts while shutdown waits must start none: nobody would wait for them."""
    polled: list[CampaignKey] = []

    async def poll(target: Target) -> PollOutcome:
        polled.append(target.key)
        return OK

    scheduler = PollScheduler(poll, SchedulePolicy(jitter=0), lambda _: None)
    scheduler.sync([Target(key=FAST, interval=60)])
    scheduler.start()
    await wait_for(lambda: polled, what="the first poll")  # its slot is due from now on
    await wait_for(lambda: not scheduler._polls, what="the first poll done")
    await scheduler.shutdown(1.0)
    await scheduler._run_slot(scheduler._jobs[FAST].slot)  # submitted before the pause
    assert (polled, scheduler._polls) == ([FAST], {})


def test_an_interval_given_as_int_or_float_is_one_slot() -> None:
    scheduler = PollScheduler(_never, SchedulePolicy(jitter=0), lambda _: None)
    _sharing_a_slot(scheduler, [Target(key=SLOW, interval=60), Target(key=FAST, interval=60.0)])
    assert len(scheduler._scheduler.get_jobs()) == 1


def test_the_poll_slot_prefix_is_reserved() -> None:
    scheduler = PollScheduler(_never, SchedulePolicy(), lambda _: None)
    with pytest.raises(ValueError, match="poll slots"):
        scheduler.every("poll:1", _noop, 60)


async def _noop() -> None:
    return None
