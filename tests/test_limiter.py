"""The rate limiter with a clock passed in: no window ever exceeds the rate, and the rate is met."""

from __future__ import annotations

import asyncio
import bisect
import itertools

import pytest

from fotawatch.thingspace.limiter import GROUP_SECONDS, MARGIN, RateLimiter


class FakeTime:
    """A clock that moves only when the limiter sleeps; what the sleep released runs first, at
    the time it was released (as it would while a real sleep is under way)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)
        self.now += seconds


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most starts in any half-open window [t, t + window)."""
    times = sorted(times)
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))


@pytest.mark.parametrize("rate", [1, 5, 7.5, 50])
async def test_never_exceeds_rate_and_reaches_it_under_load(rate: float) -> None:
    """With more work than allowed: never over `rate` in any 1 s window; >= 95 % of it reached."""
    t = FakeTime()
    limiter = RateLimiter(rate, clock=t.clock, sleep=t.sleep)
    starts: list[float] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            await limiter.acquire()
            starts.append(t.now)

    await asyncio.gather(*(worker(int(rate * 4)) for _ in range(5)))
    assert max_in_any_window(starts) <= int(rate)
    achieved = (len(starts) - 1) / (max(starts) - min(starts))
    assert achieved >= 0.95 * int(rate)


async def test_fractional_rate_spaces_requests() -> None:
    """0.5/s means one request every 2 s (plus the margin)."""
    t = FakeTime()
    limiter = RateLimiter(0.5, clock=t.clock, sleep=t.sleep)
    starts = []
    for _ in range(4):
        await limiter.acquire()
        starts.append(t.now)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(g == pytest.approx(2 / (1 - MARGIN)) for g in gaps)


async def test_hold_pauses_everyone() -> None:
    """After hold(30) (a Retry-After), no request starts for 30 s."""
    t = FakeTime()
    limiter = RateLimiter(100, clock=t.clock, sleep=t.sleep)
    limiter.hold(30)
    start = t.now
    await limiter.acquire()
    assert t.now - start == pytest.approx(30)


def test_rate_must_be_positive() -> None:
    """A zero rate is a programming error."""
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0)


async def test_starts_are_evenly_spaced_not_bursts() -> None:
    """Under load consecutive starts are one spacing apart: no second's quota in one burst."""
    t = FakeTime()
    limiter = RateLimiter(50, clock=t.clock, sleep=t.sleep)
    starts = []
    for _ in range(20):
        await limiter.acquire()
        starts.append(t.now)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) == pytest.approx(1 / (50 * (1 - MARGIN)))


async def test_late_wakeups_do_not_lower_the_rate() -> None:
    """A sleep that overshoots by 5 % of the spacing costs nothing: the schedule stays planned."""
    t = FakeTime()

    async def late_sleep(seconds: float) -> None:
        await asyncio.sleep(0)
        t.now += seconds + 0.001  # every wake-up 1 ms late

    limiter = RateLimiter(50, clock=t.clock, sleep=late_sleep)
    starts = []
    for _ in range(200):
        await limiter.acquire()
        starts.append(t.now)
    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    assert achieved >= 0.95 * 50
    assert max_in_any_window(starts) <= 50


async def test_high_rates_release_queued_starts_in_groups() -> None:
    """At 1,000/s (groups of 10): 2,000 queued starts leave from ~200 wake-ups, not 2,000; the slots
    stay evenly spaced, so no 1 s window exceeds the rate and at most 9 starts run ahead."""
    t = FakeTime()
    sleeps = 0

    async def counted_sleep(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        await t.sleep(seconds)

    limiter = RateLimiter(1000, clock=t.clock, sleep=counted_sleep)
    group = int(1000 * GROUP_SECONDS)
    starts: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        starts.append(t.now)

    await asyncio.gather(*(one() for _ in range(2000)))
    assert (group, True) == (10, sleeps <= 2000 / group + 1)
    assert max_in_any_window(starts) <= 1000
    first = min(starts)
    ahead = [i + 1 - ((s - first) / limiter.spacing + 1) for i, s in enumerate(sorted(starts))]
    assert max(ahead) <= group - 1 + 1e-6  # never more than a group ahead of the even slots
    achieved = (len(starts) - 1) / (max(starts) - first)
    assert achieved >= 0.95 * 1000


async def test_a_cancelled_waiter_gives_its_slot_to_the_next() -> None:
    """A queued acquire that is cancelled takes no slot; the ones behind it still start."""
    t = FakeTime()
    limiter = RateLimiter(2, clock=t.clock, sleep=t.sleep)
    await limiter.acquire()  # the first goes at once; the next ones queue
    second = asyncio.create_task(limiter.acquire())
    third = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    second.cancel()
    await third
    assert (True, t.now - 1000.0) == (second.cancelled(), pytest.approx(limiter.spacing))
