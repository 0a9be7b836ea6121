"""``make bench``: the daemon side by side with the bare-client floor, in one run.

For each N: a simulator process with N generated campaigns (20-50 ms latency); the daemon
(``python -m fotawatch run``, state on disk, metrics and Slack configured) measured over a window;
with the floor (``bench.floor``: the same GETs at the rate N/interval, same concurrency bound)
running alongside it over the same window, against the same simulator: on a shared VM whose
speed drifts by 20 % from one minute to the next, only a side-by-side measurement gives a
ratio that means something. Then the floor alone, for reference.
Then the rate-limit check and, with the largest N's store, startup to READY. Prints a table and
writes bench/results/bench-<timestamp>.json. ``--quick`` is a one-minute smoke run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import daemon as daemon_bench
from bench import devices as devices_bench
from bench.fixtures import (
    DaemonSettings,
    campaign_ids,
    requests_per_second,
    start_fake_slack,
    start_simulator,
    write_config,
    write_scenario,
)
from bench.floor import FloorSpec
from bench.procs import free_port
from bench.ratelimit import check_rate_limit
from bench.report import RESULTS, code_state, machine, print_report, write_json

__all__ = ["main"]


def _numbers(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part]


def _pair(text: str) -> tuple[float, float]:
    low, high = (float(part) for part in text.split(","))
    return low, high


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=_numbers, default=None,
                   help="campaign counts, comma separated (default 100,1000,10000)")
    p.add_argument("--interval", type=float, default=60.0, help="poll interval, s (default 60)")
    p.add_argument("--jitter", type=float, default=None, help="polling.jitter_seconds "
                   "(default: the interval, which spreads the first polls over one interval)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds after READY before the window (default: interval + 5)")
    p.add_argument("--window", type=float, default=60.0, help="measured seconds (default 60)")
    p.add_argument("--floor-seconds", type=float, default=20.0,
                   help="measured seconds of the floor alone (beside the daemon: --window)")
    p.add_argument("--latency", type=_pair, default=(0.02, 0.05), help="min,max s of the API")
    p.add_argument("--concurrency", type=int, default=32, help="max_concurrency (both sides)")
    p.add_argument("--flips", type=int, default=10, help="status changes per window")
    p.add_argument("--rate-limit-n", type=int, default=1_000)
    p.add_argument("--rate-limit", type=float, default=50.0, help="requests_per_second to check")
    p.add_argument("--rate-limit-seconds", type=float, default=15.0)
    p.add_argument("--skip-rate-limit", action="store_true")
    p.add_argument("--skip-startup", action="store_true")
    p.add_argument("--skip-devices", action="store_true",
                   help="skip device polling (3 campaigns x 10,000 devices)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, state db)")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help="where the JSON goes (default bench/results)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: N=100,1000, interval 10 s, 15 s windows")
    return p


def _apply_quick(args: argparse.Namespace) -> None:
    if args.quick:
        args.n = args.n or [100, 1_000]
        args.interval, args.window, args.floor_seconds = 10.0, 15.0, 5.0
        args.rate_limit_seconds = 5.0
    args.n = args.n or [100, 1_000, 10_000]
    if args.jitter is None:
        args.jitter = args.interval
    if args.warmup is None:
        args.warmup = args.interval + 5


def _settings(args: argparse.Namespace, n: int, slack_url: str | None) -> DaemonSettings:
    return DaemonSettings(
        interval=args.interval,
        jitter=args.jitter,
        requests_per_second=requests_per_second(n, args.interval),
        max_concurrency=args.concurrency,
        metrics_port=free_port(),
        slack_url=slack_url,
    )


def _point(args: argparse.Namespace, n: int, work: Path, *, startup: bool) -> dict[str, Any]:
    """One N: the daemon's window with the floor alongside, the floor alone; maybe the restart."""
    work.mkdir(parents=True)
    ids = campaign_ids(n)
    ids_file = work / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    scenario = write_scenario(work / "scenario.yaml", n, args.latency)
    print(f"N={n:,}: simulator, fake Slack, daemon ...", flush=True)
    with start_simulator(scenario, work) as sim, start_fake_slack(work) as slack:
        assert sim.url is not None
        settings = _settings(args, n, slack.url)
        floor = FloorSpec(sim_url=sim.url, ids_file=ids_file, rate=n / args.interval,
                          concurrency=args.concurrency, log_dir=work)
        state = work / "state.db"
        config = write_config(work / "fotawatch.yaml", sim.url, ids, state, settings)
        run = daemon_bench.Run(
            config=config, state=state, work=work, sim=sim, slack=slack, ids=ids,
            metrics_port=settings.metrics_port, warmup=args.warmup, window=args.window,
            interval=args.interval, jitter=args.jitter, flips=args.flips, floor=floor)
        measured = daemon_bench.measure(run)
        print(f"N={n:,}: daemon {measured['cpu_us_per_poll'] or 0:.0f} µs/poll at "
              f"{measured['polls_per_s']:.1f}/s; the floor alone ...", flush=True)
        point: dict[str, Any] = {"n": n, "target_per_s": n / args.interval,
                                 "settings": dataclasses.asdict(settings),
                                 "daemon": measured, "floor": measured.pop("floor"),
                                 "floor_alone": floor.run(seconds=args.floor_seconds)}
        if startup:
            print(f"N={n:,}: restart with the store populated ...", flush=True)
            point["startup"] = daemon_bench.startup_to_ready(config, work, sim.url, n)
    return point


def _run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    report: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(), "code": code_state(), "interval_s": args.interval,
        "jitter_s": args.jitter, "warmup_s": args.warmup, "window_s": args.window,
        "floor_s": args.floor_seconds, "latency_s": args.latency, "points": [],
    }
    largest = max(args.n)
    for n in args.n:
        point = _point(args, n, work / f"n{n}", startup=n == largest and not args.skip_startup)
        report["startup"] = point.pop("startup", report.get("startup"))
        report["points"].append(point)
    if not args.skip_rate_limit:
        print("rate limit check ...", flush=True)
        report["rate_limit"] = check_rate_limit(
            work=work / "rate-limit", n=args.rate_limit_n, limit=args.rate_limit,
            warmup=5.0, seconds=args.rate_limit_seconds, latency=args.latency)
    if not args.skip_devices:
        print("device polling ...", flush=True)
        report["devices"] = devices_bench.run()
    return report


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _apply_quick(args)
    work = Path(tempfile.mkdtemp(prefix="fwbench-", dir="/tmp"))
    print(f"work dir {work}", flush=True)
    try:
        report = _run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["machine"]["load_avg_at_end"] = os.getloadavg()
    report["json_path"] = str(write_json(report, args.results))
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
