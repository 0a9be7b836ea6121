"""When each campaign is polled: APScheduler 3.x, one interval job per campaign.

Each job: an interval trigger anchored at the job's first run, ``max_instances=1`` (a slow poll
is never overlapped by the next), ``coalesce=True`` (missed runs collapse into one), and an
explicit ``misfire_grace_time`` (APScheduler's default of 1 s would drop runs whenever the loop
is busy). First runs are spread over the jitter so a start with many campaigns is not a
thundering herd; each campaign then keeps that phase, so every gap is exactly one interval.

Phases are rounded up to a grid shared by all jobs, so the campaigns due in the same tick run
from one scheduler wake-up instead of one each. APScheduler's wake-up (find the due jobs,
compute the next wake-up, arm a timer) costs far more than running a job: with 1,667 jobs at
10 s in isolation, 451 µs of CPU per run with random phases against 43 µs on a 0.25 s grid. The
tick (a power of two, 1/128 to 1/4 s, so grid points are exact floats) is chosen at each
``sync`` so that about ``TICK_JOBS`` polls fall due together: enough to share the wake-up, few
enough that processing them never holds the loop for long (250 polls due at once, 1,000
campaigns every second, delayed the rate limiter's wake-ups past its slots and cost 2 % of the
rate).

Lifecycle rules applied after every poll:
- a final status is confirmed by ``final_confirmations`` more polls, then the job is removed
  (the state stays in the store);
- a campaign the API says is missing is polled every ``missing_interval`` until it reappears;
  a reschedule (missing, back, a new interval) puts the next poll one new interval away.

A poll due while the campaign's previous poll still runs is skipped (``max_instances=1``):
counted as ``PollSkipped`` and summarised in one ``polls_skipped`` warning a minute at most,
instead of APScheduler's warning per skipped run.

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
TICK_JOBS = 20  # polls due together per tick, about, when there are that many
SKIPS_LOGGED_EVERY = 60.0  # s: at most one polls_skipped warning per this


def tick_for(polls_per_second: float) -> float:
    """The grid step for this rate of due polls: ~``TICK_JOBS`` per tick, a power of two."""
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
    missing: bool = False  # polled every missing_interval while True
    confirmations_left: int | None = None  # set once a final status is seen


class PollScheduler:
    """Owns the APScheduler instance and the per-campaign jobs."""

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
        self._periodic: dict[str, Callable[[], Awaitable[object]]] = {}
        self._in_flight: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._ids: dict[str, CampaignKey] = {}  # job id -> campaign
        self.tick = TICK_MAX
        self._skips = 0  # since the last polls_skipped warning
        self._skips_logged_at: float | None = None
        log_to = _SchedulerLog(logging.getLogger("apscheduler.scheduler"), {})
        self._scheduler = AsyncIOScheduler(
            timezone=dt.UTC, logger=log_to, executors={"default": _CoroutineExecutor()}
        )
        self._scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def polling(self, key: CampaignKey) -> bool:
        """True while the campaign has a job (False once its final status is confirmed)."""
        return key in self._jobs

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
                self._add(target)
            elif job.target != target:
                old, job.target = job.target, target
                if target.interval != old.interval and not job.missing:
                    self._reschedule(key, target.interval)

    def _add(self, target: Target) -> None:
        self._jobs[target.key] = _Job(target=target)
        self._ids[str(target.key)] = target.key
        first = self._first(target.interval)
        self._scheduler.add_job(
            self._run,
            self._trigger(target.interval, first),
            args=[target.key],
            id=str(target.key),
            name=str(target.key),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=self._grace(target.interval),
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
        first = self._first(interval, delay=interval)
        self._scheduler.reschedule_job(str(key), trigger=self._trigger(interval, first))
        self._scheduler.modify_job(str(key), misfire_grace_time=self._grace(interval))

    def _remove(self, key: CampaignKey) -> None:
        self._jobs.pop(key, None)
        self._ids.pop(str(key), None)
        if self._scheduler.get_job(str(key)) is not None:
            self._scheduler.remove_job(str(key))

    def _skipped(self, event: JobSubmissionEvent) -> None:
        """A run was due while the job's previous run was still going: count it, say so (at
        most every ``SKIPS_LOGGED_EVERY`` s, with how many since the last time)."""
        key = self._ids.get(event.job_id)
        if key is not None:
            self._emit(PollSkipped(key=key))
        self._skips += 1
        now = time.monotonic()
        if self._skips_logged_at is None or now - self._skips_logged_at >= SKIPS_LOGGED_EVERY:
            log.warning(
                "polls_skipped",
                count=self._skips,
                job=event.job_id,
                hint="a poll was due while the previous one was still running: more campaigns"
                " per interval than thingspace.requests_per_second and max_concurrency allow,"
                " or a slow API; see fotawatch_polls_skipped_total",
            )
            self._skips, self._skips_logged_at = 0, now

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
        look like a campaign key (``account/id``): use a prefix such as ``devices:``.
        """
        self._periodic[job_id] = run
        first = first_run or self._first(interval)
        self._scheduler.add_job(
            self._run_periodic,
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

    async def _run(self, key: CampaignKey) -> None:
        job = self._jobs.get(key)
        if job is None:
            return
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            outcome = await self._poll(job.target)
            if key in self._jobs:
                self._after(key, job, outcome)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Shutdown cancelled a poll still waiting for its turn: nothing happened, nothing to
            # report (APScheduler would log each one as a job failure with a traceback).
        except Exception:
            log.exception("poll_crashed", campaign=str(key))  # a bug, not an API problem
        finally:
            self._in_flight.discard(task)

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
        pending = set(self._in_flight)
        if pending:
            log.info("waiting_for_polls", count=len(pending), deadline=deadline)
            _, late = await asyncio.wait(pending, timeout=deadline)
            for task in late:
                task.cancel()
        self._scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # let cancelled tasks unwind before the loop closes
