"""When each campaign is polled: APScheduler 3.x, one interval job per slot of campaigns.

A campaign's polls follow an interval grid anchored at its first poll. First polls are spread
over the jitter so a start with many campaigns is not a thundering herd; each campaign then
keeps that phase, so every gap is exactly one interval.

Phases are rounded up to a tick grid shared by all campaigns, and the campaigns with the same
interval and phase form a slot: one APScheduler job (``poll:<interval>@<phase>``) whose run
starts a poll task for each of them. APScheduler's work per job run (find the due jobs, submit,
compute and store the next run, wake up again) costs more than the poll's own bookkeeping: one
job per campaign took ~25 µs more CPU per poll than one per slot at 10,000 campaigns a minute
with the scheduler alone, ~45 µs in the whole daemon (docs/performance.md). The tick (a power of
two, 1/128 to 1/4 s, so grid points and phases are exact floats) is chosen at each ``sync`` so
that ``TICK_JOBS / 2`` to ``TICK_JOBS`` polls fall due together. Polls that start together
also answer close together, so the process wakes from idle less often per poll, and on a VM
each wake-up from idle costs more CPU than a poll's own work: 32-64 due together at 10,000
campaigns a minute took 18-26 % less CPU per poll than 10-20 (docs/performance.md). Few enough
that starting them never holds the loop for long: 250 polls due at once, 1,000 campaigns every
second, delayed the rate limiter's wake-ups past its slots and cost 2 % of the rate.

Each slot job: ``coalesce=True`` (missed runs collapse into one) and an explicit
``misfire_grace_time`` (APScheduler's default of 1 s would drop runs whenever the loop is busy).
A slot's run does not wait for its polls, so a slow poll holds back no other campaign. A poll
due while the campaign's previous poll still runs is skipped (at most one poll per campaign in
flight): counted as ``PollSkipped`` and summarised in one ``polls_skipped`` warning a minute at
most.

Lifecycle rules applied after every poll:
- a final status is confirmed by ``final_confirmations`` more polls, then the campaign leaves
  its slot (the state stays in the store); an empty slot's job is removed;
- a campaign the API says is missing is polled every ``missing_interval`` until it reappears;
  a reschedule (missing, back, a new interval) moves the campaign to the slot of a phase one
  new interval away, and its next poll is not before then.

Other periodic work (device reports, discovery) runs on the same scheduler through ``every`` and
``cancel``: named interval jobs spread the same way, with ``max_instances=1`` and coalescing,
whose runs are waited for at shutdown like polls.

Shutdown pauses the scheduler, lets in-flight polls finish within a deadline, then cancels
what is left (APScheduler's asyncio executor would cancel them at once).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from fotawatch.events import Event, PollingStopped, PollSkipped
from fotawatch.model import CampaignKey
from fotawatch.poller import PollOutcome, Target

__all__ = ["PollScheduler", "SchedulePolicy", "tick_for"]

log = structlog.get_logger("fotawatch.scheduler")
TICK_MAX = 0.25  # s: first runs, and so all runs, fall on a grid of at most this step ...
TICK_MIN = 1 / 128  # ... and at least this one
TICK_JOBS = 64  # at most this many polls due per tick, and over half as many when there are
SKIPS_LOGGED_EVERY = 60.0  # s: at most one polls_skipped warning per this
SLOT_PREFIX = "poll:"  # the ids of the poll slots' APScheduler jobs


def tick_for(polls_per_second: float) -> float:
    """The grid step for this rate of due polls: a power of two with ``TICK_JOBS / 2`` to
    ``TICK_JOBS`` due per tick (within ``TICK_MIN``-``TICK_MAX``)."""
    if polls_per_second <= 0:
        return TICK_MAX
    step = 2.0 ** math.floor(math.log2(TICK_JOBS / polls_per_second))
    return min(TICK_MAX, max(TICK_MIN, step))


class _SchedulerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """APScheduler's logger without its per-run "skipped: maximum number of running instances"
    warning: with more work than the limits allow that is one line per due poll (~700 a second
    measured), and ``PollScheduler`` counts and summarises those skips itself."""

    def warning(self, msg: object, *args: object, **kwargs: object) -> None:
        if not str(msg).startswith('Execution of job "%s" skipped'):
            super().warning(msg, *args, **kwargs)  # type: ignore[arg-type]


class GridIntervalTrigger(IntervalTrigger):  # type: ignore[misc]  # APScheduler 3 is untyped
    """An IntervalTrigger whose jitter does not accumulate.

    APScheduler 3 computes the next run from the previous *jittered* run, so with jitter J the
    mean period becomes interval + J/2 (at 60 s with 60 s jitter: 75 s, and gaps up to 120 s).
    Here the previous run is first snapped back to its slot on the grid start + k * interval
    (jitter is kept below the interval, so the slot is unambiguous): runs stay on the grid, each
    shifted by a fresh jitter.
    """

    def get_next_fire_time(
        self, previous_fire_time: dt.datetime | None, now: dt.datetime
    ) -> dt.datetime | None:
        if previous_fire_time is None:
            first: dt.datetime | None = super().get_next_fire_time(None, now)
            return first
        start = self.start_date.timestamp()
        slot = math.floor((previous_fire_time.timestamp() - start) / self.interval_length)
        # A first run before the start date (the usual case: start = creation + interval)
        # is slot -1, so the next run is the start date itself, not one interval after it.
        slot = max(slot, -1)
        if self.jitter is None and self.end_date is None:  # fotawatch's jobs: the next slot
            return dt.datetime.fromtimestamp(
                start + (slot + 1) * self.interval_length, tz=self.timezone
            )
        snapped = dt.datetime.fromtimestamp(start + slot * self.interval_length, tz=self.timezone)
        next_fire: dt.datetime | None = super().get_next_fire_time(snapped, now)
        return next_fire


class _CoroutineExecutor(AsyncIOExecutor):  # type: ignore[misc]  # untyped APScheduler base
    """APScheduler's asyncio executor for fotawatch's jobs (coroutine functions that handle
    their own errors): each run is a task awaiting the job, and nothing per run that nobody
    uses. APScheduler's ``run_coroutine_job`` looks up a logger, logs two INFO records (dropped
    by level) and builds a result event with no listener for every run: dropping that took ~7 %
    off the daemon's CPU per poll (docs/performance.md). Kept: ``max_instances`` accounting,
    and the misfire rule (a run later than ``misfire_grace_time`` is skipped with a warning)."""

    def _do_submit_job(self, job: Job, run_times: list[dt.datetime]) -> None:
        task = self._eventloop.create_task(self._run(job, run_times))
        self._pending_futures.add(task)
        task.add_done_callback(functools.partial(self._done, job.id))

    def _done(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._pending_futures.discard(task)
        if task.cancelled() or task.exception() is None:
            self._run_job_success(job_id, ())
        else:
            self._run_job_error(job_id, task.exception())

    async def _run(self, job: Job, run_times: list[dt.datetime]) -> None:
        for run_time in run_times:
            late = dt.datetime.now(dt.UTC) - run_time
            if job.misfire_grace_time is not None and late.total_seconds() > job.misfire_grace_time:
                log.warning("poll_run_missed", job=job.id, late_s=round(late.total_seconds(), 1))
                continue
            await job.func(*job.args, **job.kwargs)


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulePolicy:
    """Timing knobs from ``polling.*``."""

    jitter: float = 15.0
    misfire_grace: float | None = None  # default: the campaign's interval
    final_confirmations: int = 1
    missing_interval: float = 3600.0


@dataclass(slots=True)
class _Job:
    target: Target
    slot: str  # the id of the APScheduler job that polls it
    not_before: float = 0.0  # wall s: runs of its slot before this pass it by (a reschedule)
    missing: bool = False  # polled every missing_interval while True
    confirmations_left: int | None = None  # set once a final status is seen


class PollScheduler:
    """Owns the APScheduler instance: one job per slot of campaigns, and the periodic jobs."""

    def __init__(
        self,
        poll: Callable[[Target], Awaitable[PollOutcome]],
        policy: SchedulePolicy,
        emit: Callable[[Event], None],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._poll = poll
        self.policy = policy
        self._emit = emit
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._jobs: dict[CampaignKey, _Job] = {}
        self._slots: dict[str, dict[CampaignKey, None]] = {}  # slot job id -> its campaigns
        self._polls: dict[CampaignKey, asyncio.Task[None]] = {}  # the poll in flight, by campaign
        self._periodic: dict[str, Callable[[], Awaitable[object]]] = {}
        self._in_flight: set[asyncio.Task[object]] = set()  # periodic runs in progress
        self._stopping = False
        self.tick = TICK_MAX
        self._skips = 0  # since the last polls_skipped warning
        self._skips_logged_at: float | None = None
        log_to = _SchedulerLog(logging.getLogger("apscheduler.scheduler"), {})
        self._scheduler = AsyncIOScheduler(
            timezone=dt.UTC, logger=log_to, executors={"default": _CoroutineExecutor()}
        )
        self._scheduler.add_listener(self._periodic_skipped, EVENT_JOB_MAX_INSTANCES)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def polling(self, key: CampaignKey) -> bool:
        """True while the campaign is scheduled (False once its final status is confirmed)."""
        return key in self._jobs

    def next_poll(self, key: CampaignKey) -> dt.datetime | None:
        """When the campaign's next poll is due (None when it is not scheduled)."""
        job = self._jobs.get(key)
        slot = self._scheduler.get_job(job.slot) if job is not None else None
        if job is None or slot is None:
            return None
        due: dt.datetime = slot.next_run_time
        while due.timestamp() < job.not_before - self.tick / 2:  # passed by until not_before
            due = slot.trigger.get_next_fire_time(due, due)
        return due

    def start(self) -> None:
        self._scheduler.start()

    def sync(self, targets: Sequence[Target]) -> None:
        """Make the jobs match ``targets``: add new ones, drop removed ones, apply intervals."""
        wanted = {t.key: t for t in targets}
        self.tick = tick_for(sum(1 / t.interval for t in targets))
        for key in [k for k in self._jobs if k not in wanted]:
            self._remove(key)
        for key, target in wanted.items():
            job = self._jobs.get(key)
            if job is None:
                slot_id, first = self._place(key, target.interval)
                self._jobs[key] = _Job(target=target, slot=slot_id, not_before=first)
            elif job.target != target:
                old, job.target = job.target, target
                if target.interval != old.interval and not job.missing:
                    self._reschedule(key, target.interval)

    def _place(self, key: CampaignKey, interval: float, delay: float = 0.0) -> tuple[str, float]:
        """Put the campaign in the slot of its first run (``delay`` plus a phase from now):
        (the slot's id, the first run). Campaigns whose runs fall on the same grid points share
        one APScheduler job, so a tick's due polls cost one job run rather than one each."""
        first = self._first(interval, delay)
        at = first.timestamp()
        # Grid points are exact floats (multiples of a power of two), and so is fmod of two.
        slot_id = f"{SLOT_PREFIX}{float(interval)!r}@{math.fmod(at, interval)!r}"  # 60 = 60.0
        members = self._slots.get(slot_id)
        if members is None:
            members = self._slots[slot_id] = {}
            self._add_job(slot_id, self._run_slot, interval, first)
        members[key] = None
        return slot_id, at

    def _add_job(
        self,
        job_id: str,
        run: Callable[[str], Awaitable[None]],
        interval: float,
        first: dt.datetime,
    ) -> None:
        """``run(job_id)`` at ``first`` and every ``interval`` after, one run at a time."""
        self._scheduler.add_job(
            run,
            self._trigger(interval, first),
            args=[job_id],
            id=job_id,
            name=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=self._grace(interval),
            next_run_time=first,
            replace_existing=True,
        )

    def _first(self, interval: float, delay: float = 0.0) -> dt.datetime:
        """``delay`` plus a random phase within the jitter (at most the interval) from now, on
        the tick grid."""
        phase = self._rng.uniform(0, min(self.policy.jitter, interval))
        at = math.ceil((time.time() + delay + phase) / self.tick) * self.tick
        return dt.datetime.fromtimestamp(at, dt.UTC)

    def _trigger(self, interval: float, first: dt.datetime) -> IntervalTrigger:
        """Runs at ``first``, then every ``interval``.

        The jitter spreads the campaigns' phases, once; each campaign then keeps its phase, as
        Prometheus keeps a target's scrape offset. Re-drawing a jitter for every run (APScheduler's
        ``jitter=``) made the gap between two polls anything up to 1.5 intervals, and the alert
        latency with it; a fixed phase keeps every gap one interval.
        """
        return GridIntervalTrigger(seconds=interval, start_date=first, timezone=dt.UTC)

    def _grace(self, interval: float) -> int:
        return max(1, round(self.policy.misfire_grace or interval))

    def _reschedule(self, key: CampaignKey, interval: float) -> None:
        """Poll every ``interval`` from now on: the next poll one interval (plus a phase) away."""
        self._leave_slot(key)
        job = self._jobs[key]
        job.slot, job.not_before = self._place(key, interval, delay=interval)

    def _remove(self, key: CampaignKey) -> None:
        if key in self._jobs:
            self._leave_slot(key)
            del self._jobs[key]

    def _leave_slot(self, key: CampaignKey) -> None:
        slot_id = self._jobs[key].slot
        members = self._slots.get(slot_id)
        if members is None:
            return
        members.pop(key, None)
        if not members:
            del self._slots[slot_id]
            if self._scheduler.get_job(slot_id) is not None:
                self._scheduler.remove_job(slot_id)

    async def _run_slot(self, slot_id: str) -> None:
        """A slot is due: start a poll of each of its campaigns (tasks; not awaited here, so one
        slow poll delays no other). A campaign whose previous poll still runs is skipped."""
        members = self._slots.get(slot_id)
        if not members or self._stopping:  # a run submitted before shutdown paused us
            return
        loop = asyncio.get_running_loop()
        soon = time.time() + self.tick / 2
        for key in tuple(members):
            job = self._jobs[key]
            if job.not_before > soon:
                continue
            if key in self._polls:
                self._skipped(key, str(key))
                continue
            task = loop.create_task(self._run(key, job))
            self._polls[key] = task
            task.add_done_callback(functools.partial(self._poll_done, key))

    def _poll_done(self, key: CampaignKey, task: asyncio.Task[None]) -> None:
        if self._polls.get(key) is task:
            del self._polls[key]

    def _skipped(self, key: CampaignKey | None, job: str) -> None:
        """A run was due while the previous one was still going: count it, say so (at most
        every ``SKIPS_LOGGED_EVERY`` s, with how many since the last time)."""
        if key is not None:
            self._emit(PollSkipped(key=key))
        self._skips += 1
        now = time.monotonic()
        if self._skips_logged_at is None or now - self._skips_logged_at >= SKIPS_LOGGED_EVERY:
            log.warning(
                "polls_skipped",
                count=self._skips,
                job=job,
                hint="a poll was due while the previous one was still running: more campaigns"
                " per interval than thingspace.requests_per_second and max_concurrency allow,"
                " or a slow API; see fotawatch_polls_skipped_total",
            )
            self._skips, self._skips_logged_at = 0, now

    def _periodic_skipped(self, event: JobSubmissionEvent) -> None:
        """APScheduler skipped a run of a job because its previous run was still going."""
        if not event.job_id.startswith(SLOT_PREFIX):  # slots start their polls and return
            self._skipped(None, event.job_id)

    def every(
        self,
        job_id: str,
        run: Callable[[], Awaitable[object]],
        interval: float,
        *,
        first_run: dt.datetime | None = None,
    ) -> None:
        """Run ``run`` every ``interval`` s under the id ``job_id`` (replacing a job of that id).

        The first run is at ``first_run``, else within the jitter from now. ``job_id`` must not
        start with ``poll:``: use a prefix such as ``devices:``.
        """
        if job_id.startswith(SLOT_PREFIX):
            raise ValueError(f"job ids starting with {SLOT_PREFIX!r} are the poll slots'")
        self._periodic[job_id] = run
        self._add_job(job_id, self._run_periodic, interval, first_run or self._first(interval))

    def cancel(self, job_id: str) -> None:
        """Remove a job added with ``every``; a run in progress finishes."""
        if self._periodic.pop(job_id, None) is not None and self._scheduler.get_job(job_id):
            self._scheduler.remove_job(job_id)

    def scheduled(self, job_id: str) -> bool:
        """True while a job added with ``every`` exists."""
        return job_id in self._periodic

    async def _run_periodic(self, job_id: str) -> None:
        run = self._periodic.get(job_id)
        if run is None:
            return
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            await run()
        except Exception:
            log.exception("job_crashed", job=job_id)  # a bug, not an API problem
        finally:
            self._in_flight.discard(task)

    async def _run(self, key: CampaignKey, job: _Job) -> None:
        try:
            outcome = await self._poll(job.target)
            if self._jobs.get(key) is job:  # still scheduled (not removed meanwhile)
                self._after(key, job, outcome)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Shutdown cancelled a poll still waiting for its turn: nothing happened, nothing to
            # report (APScheduler would log each one as a job failure with a traceback).
        except Exception:
            log.exception("poll_crashed", campaign=str(key))  # a bug, not an API problem

    def _after(self, key: CampaignKey, job: _Job, outcome: PollOutcome) -> None:
        if outcome.missing and not job.missing:
            job.missing = True
            self._reschedule(key, self.policy.missing_interval)
        if outcome.result != "ok":
            return
        if job.missing:
            job.missing = False
            self._reschedule(key, job.target.interval)
        if not outcome.final:
            job.confirmations_left = None
            return
        if job.confirmations_left is None:
            job.confirmations_left = self.policy.final_confirmations
        elif job.confirmations_left > 0:
            job.confirmations_left -= 1
        if job.confirmations_left <= 0:
            assert outcome.status is not None
            log.info("campaign_polling_stopped", campaign=str(key), status=outcome.status)
            self._remove(key)
            self._emit(PollingStopped(key=key, status=outcome.status))

    async def shutdown(self, deadline: float) -> None:
        """Stop scheduling; wait up to ``deadline`` s for in-flight polls, then cancel them."""
        if not self._scheduler.running:
            return
        self._scheduler.pause()
        self._stopping = True
        pending: set[asyncio.Task[Any]] = {*self._in_flight, *self._polls.values()}
        if pending:
            log.info("waiting_for_polls", count=len(pending), deadline=deadline)
            _, late = await asyncio.wait(pending, timeout=deadline)
            for task in late:
                task.cancel()
        self._scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # let cancelled tasks unwind before the loop closes
