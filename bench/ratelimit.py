"""Is the rate limit exact? More work than the limit allows, counted where the requests arrive.

N campaigns at a 1 s interval with ``requests_per_second`` far below N: the simulator stamps
every FOTA request's arrival (``request_times``, monotonic). Over a window after warm-up: the
most requests in any 1-second window (must not exceed the limit) and the achieved rate (should
be at least 95 % of it).
"""

from __future__ import annotations

import bisect
import json
import time
from pathlib import Path
from typing import Any

from bench.daemon import start_daemon
from bench.fixtures import (
    DaemonSettings,
    campaign_ids,
    start_simulator,
    write_config,
    write_scenario,
)
from bench.procs import NotifyListener, free_port, http_json

__all__ = ["check_rate_limit", "max_in_any_window"]


def max_in_any_window(times: list[float], width: float = 1.0) -> int:
    """The most timestamps in any half-open window ``[t, t + width)``."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + width, lo=i) - i)
    return best


def check_rate_limit(
    *,
    work: Path,
    n: int,
    limit: float,
    warmup: float,
    seconds: float,
    latency: tuple[float, float],
) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    scenario = write_scenario(work / "scenario.yaml", n, latency)
    settings = DaemonSettings(interval=1, jitter=1, requests_per_second=limit,
                              max_concurrency=64, metrics_port=free_port(), slack_url=None)
    with start_simulator(scenario, work) as sim:
        assert sim.url is not None
        config = write_config(work / "fotawatch.yaml", sim.url, campaign_ids(n),
                              work / "state.db", settings)
        with NotifyListener(work / "notify.sock") as notify:
            daemon = start_daemon(config, work, notify.path)
            try:
                if notify.wait_for("READY=1", timeout=120) is None:
                    raise RuntimeError(f"daemon never sent READY=1; see {daemon.stderr_path}")
                time.sleep(warmup)
                t0 = time.monotonic()
                time.sleep(seconds)
                t1 = time.monotonic()
                stamps = http_json(f"{sim.url}/_sim/stats")["request_times"]
            finally:
                daemon.stop()
    inside = [t for t in stamps if t0 <= t < t1]
    (work / "request_times.json").write_text(json.dumps({"t0": t0, "t1": t1, "times": inside}))
    busiest = max_in_any_window(inside)
    achieved = len(inside) / (t1 - t0)
    return {
        "campaigns": n,
        "interval_s": 1,
        "limit_per_s": limit,
        "window_s": t1 - t0,
        "requests": len(inside),
        "max_in_any_1s": busiest,
        "achieved_per_s": achieved,
        "achieved_pct": achieved / limit * 100,
        "exact": busiest <= limit,
        "full_rate": achieved >= 0.95 * limit,
    }
