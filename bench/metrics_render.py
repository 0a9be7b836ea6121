"""How long /metrics takes to render for many campaigns: ``python -m bench.metrics_render``.

Synthetic views (every status, a campaign object, two transitions each) on a fresh registry.
Columns, in milliseconds, the best of several runs (as timeit does: the least disturbed by
other processes on a shared machine):
  generate_latest  prometheus_client's text rendering of the whole registry (the slow reference)
  cold             fotawatch's ``exposition`` on its first scrape (every campaign rendered)
  warm             a scrape with no campaign changed since the last one
  5% changed       a scrape after 5% of the views were replaced (a poll burst)
  openmetrics      the 5%-changed scrape in OpenMetrics (what Prometheus asks for by default)
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import replace

from prometheus_client import CollectorRegistry, generate_latest

from fotawatch.events import TransitionObserved
from fotawatch.metrics import Metrics, exposition
from fotawatch.model import (
    KNOWN_STATUSES,
    Campaign,
    CampaignKey,
    Transition,
    TransitionKind,
)
from fotawatch.poller import CampaignView

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
RUNS = 7


class _Status:
    version = "bench"
    login_circuit_open = False
    api_up = True
    reload_ok = True
    reload_ok_at = NOW
    leader = True
    leader_changes = 0


def _view(i: int) -> CampaignView:
    key = CampaignKey(account=f"0642233522-{i % 7:05d}", campaign_id=f"{i:08x}-campaign")
    status = KNOWN_STATUSES[i % len(KNOWN_STATUSES)].value
    campaign = Campaign(
        account=key.account,
        campaign_id=key.campaign_id,
        status=status,
        name=f"Campaign {i}",
        firmware_from="FW-1.0.0",
        firmware_to="FW-1.1.0",
        protocol="LWM2M",
        make="ACME",
        model="Widget-9000",
        start_date=dt.date(2026, 3, 1),
        end_date=dt.date(2026, 3, 31),
    )
    return CampaignView(
        key=key,
        name=None,
        campaign=campaign,
        status=status,
        status_since=NOW,
        last_seq=2,
        last_poll_at=NOW,
        last_result="ok",
        last_success_at=NOW,
    )


def _setup(n: int) -> tuple[CollectorRegistry, dict[CampaignKey, CampaignView]]:
    views = {v.key: v for v in map(_view, range(n))}
    registry = CollectorRegistry()
    metrics = Metrics(registry, views=views.values, polling=lambda _k: True, status=_Status())
    metrics.sync(views)
    for key in views:
        for seq, (a, b) in enumerate((("", "CampaignRequestPending"), ("x", "y")), 1):
            t = Transition(
                key=key, seq=seq, from_status=a, to_status=b,
                kind=TransitionKind.PROGRESSED, observed_at=NOW,
            )  # fmt: skip
            metrics.on_event(TransitionObserved(transition=t, name=None))
    return registry, views


def _ms(fn: Callable[[], object], before: Callable[[], object] = lambda: None) -> float:
    times = []
    for _ in range(RUNS):
        before()
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def _touch(views: dict[CampaignKey, CampaignView], share: float) -> Callable[[], None]:
    keys = list(views)[: int(len(views) * share)]

    def touch() -> None:
        for key in keys:
            views[key] = replace(views[key], last_poll_at=dt.datetime.now(dt.UTC))

    return touch


def row(n: int) -> tuple[int, float, float, float, float, float]:
    registry, views = _setup(n)
    reference = _ms(lambda: generate_latest(registry))
    cold = _ms(lambda: exposition(registry), _touch(views, 1.0))
    warm = _ms(lambda: exposition(registry))
    changed = _ms(lambda: exposition(registry), _touch(views, 0.05))
    om = _ms(lambda: exposition(registry, openmetrics=True), _touch(views, 0.05))
    return n, reference, cold, warm, changed, om


def main() -> None:
    header = ("N", "generate_latest", "cold", "warm", "5% changed", "openmetrics")
    print(" ".join(f"{h:>16}" for h in header))
    for size in (1_000, 10_000):
        n, *values = row(size)
        print(f"{n:>16}", " ".join(f"{v:>13.1f} ms" for v in values))


if __name__ == "__main__":
    main()
