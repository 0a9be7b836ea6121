"""Which campaigns have their device reports polled, and when.

Rules (issue 8):

- A campaign's devices are polled while its status is ``CampaignScheduled``, every
  ``polling.devices_interval_seconds`` (default 900) or the campaign's own
  ``devices_interval_seconds``; 0 turns it off (globally, or for one campaign).
- Once more after the campaign reaches a final status, unless the newest stored counts were
  already taken in a final status; then never again. That last poll is tried at most
  ``FINAL_ATTEMPTS`` times (ThingSpace may drop the report of an ended campaign).
- Any other status (not yet scheduled, unrecognised): not polled.
- The status comes from the campaign polls (``CampaignPolled`` on the hub), so device polling
  starts within the jitter of the poll that first saw ``CampaignScheduled``.
- After a restart the first device poll of a campaign is due one interval after its stored
  counts, not at once: a restart is not a burst of 10-page reports.

Each polled campaign is one ``every`` job (id ``devices:{account}/{id}``) on the daemon's
``PollScheduler``, so it gets jitter, ``max_instances=1``, coalescing, and a clean shutdown.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog

from fotawatch.config.models import Settings
from fotawatch.device_poller import DevicePoller
from fotawatch.events import CampaignPolled, Event
from fotawatch.model import CampaignKey, CampaignStatus, is_final
from fotawatch.poller import Target

__all__ = ["FINAL_ATTEMPTS", "DeviceWatch", "JobRunner", "device_intervals", "job_id"]

log = structlog.get_logger("fotawatch.devices")
FINAL_ATTEMPTS = 3


class JobRunner(Protocol):
    """Named periodic jobs (``scheduler.PollScheduler`` is one)."""

    def every(
        self,
        job_id: str,
        run: Callable[[], Awaitable[object]],
        interval: float,
        *,
        first_run: dt.datetime | None = None,
    ) -> None: ...

    def cancel(self, job_id: str) -> None: ...


def job_id(key: CampaignKey) -> str:
    return f"devices:{key}"


def device_intervals(settings: Settings) -> dict[CampaignKey, float]:
    """Per-campaign overrides of ``polling.devices_interval_seconds`` from the config."""
    return {
        c.key: c.devices_interval_seconds
        for c in settings.campaigns
        if c.devices_interval_seconds is not None
    }


@dataclass(frozen=True, slots=True)
class _Plan:
    interval: float
    final: bool  # the one poll after a final status


class DeviceWatch:
    """Keeps one device-poll job per campaign that needs one; a hub subscriber."""

    def __init__(  # noqa: PLR0913 - collaborators are injected, not constructed
        self,
        devices: DevicePoller,
        jobs: JobRunner,
        *,
        interval: float,
        intervals: Mapping[CampaignKey, float] | None = None,
        jitter: float = 15.0,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.devices = devices
        self._jobs = jobs
        self._interval = interval
        self._intervals = dict(intervals or {})
        self._jitter = jitter
        self._wall = wall
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._names: dict[CampaignKey, str | None] = {}
        self._status: dict[CampaignKey, str] = {}
        self._plans: dict[CampaignKey, _Plan] = {}
        self._final_attempts: dict[CampaignKey, int] = {}

    def configure(
        self, *, interval: float, intervals: Mapping[CampaignKey, float], jitter: float
    ) -> None:
        """New intervals (config reload): every planned campaign is planned again."""
        self._interval, self._intervals, self._jitter = interval, dict(intervals), jitter
        for key in list(self._plans):
            self._plan(key, replan=True)

    def sync(self, targets: Iterable[Target]) -> None:
        """The watched campaigns (start, reload, discovery); the others' jobs and counts go."""
        self._names = {t.key: t.name for t in targets}
        for key in [k for k in self._plans if k not in self._names]:
            self._drop(key)
        self._status = {k: s for k, s in self._status.items() if k in self._names}
        self._final_attempts = {
            k: n for k, n in self._final_attempts.items() if k in self._names
        }
        self.devices.sync(self._names.keys())

    def planned(self, key: CampaignKey) -> bool:
        """True while the campaign's devices are polled."""
        return key in self._plans

    def on_event(self, event: Event) -> None:
        """Hub subscriber: a campaign poll told its status."""
        if isinstance(event, CampaignPolled) and event.campaign is not None:
            self.observe(event.key, event.campaign.status)

    def observe(self, key: CampaignKey, status: str) -> None:
        """The campaign is in ``status``: start, keep, re-plan or stop its device polling."""
        if key not in self._names or self._status.get(key) == status:
            return  # the plan for this status stands; a final one ends with its device poll
        self._final_attempts.pop(key, None)
        self._status[key] = status
        self._plan(key)

    def _wanted(self, key: CampaignKey) -> _Plan | None:
        interval = self._intervals.get(key, self._interval)
        status = self._status.get(key)
        if interval <= 0 or status is None:
            return None
        if status == CampaignStatus.SCHEDULED:
            return _Plan(interval, final=False)
        last = self.devices.counts(key)
        done = last is not None and last.campaign_status is not None and (
            is_final(last.campaign_status))  # fmt: skip
        tries_left = self._final_attempts.get(key, 0) < FINAL_ATTEMPTS
        if is_final(status) and not done and tries_left:
            return _Plan(interval, final=True)
        return None

    def _plan(self, key: CampaignKey, *, replan: bool = False) -> None:
        wanted = self._wanted(key)
        if wanted is None:
            self._drop(key)
        elif replan or self._plans.get(key) != wanted:
            self._plans[key] = wanted
            run = functools.partial(self._poll, key)
            self._jobs.every(job_id(key), run, wanted.interval, first_run=self._first(key, wanted))

    def _first(self, key: CampaignKey, plan: _Plan) -> dt.datetime:
        now = self._wall()
        soon = now + dt.timedelta(seconds=self._rng.uniform(0, min(self._jitter, plan.interval)))
        last = self.devices.counts(key)
        if plan.final or last is None:
            return soon
        return max(soon, last.polled_at + dt.timedelta(seconds=plan.interval))

    def _drop(self, key: CampaignKey) -> None:
        if self._plans.pop(key, None) is not None:
            self._jobs.cancel(job_id(key))

    async def _poll(self, key: CampaignKey) -> None:
        status = self._status.get(key)
        plan = self._plans.get(key)
        if plan is None:
            return
        result = await self.devices.poll(key, campaign_status=status, name=self._names.get(key))
        if not plan.final or self._plans.get(key) != plan:
            return
        attempts = self._final_attempts.get(key, 0) + 1
        self._final_attempts[key] = attempts
        if result == "ok" or attempts >= FINAL_ATTEMPTS:
            if result != "ok":
                log.warning("device_final_poll_abandoned", campaign=str(key), result=result,
                            attempts=attempts)  # fmt: skip
            self._drop(key)
