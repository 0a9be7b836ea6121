"""Where the daemon's CPU goes: ``python -m bench.profile --n 1000 --seconds 30``.

Starts the simulator, the fake Slack and the daemon as in ``make bench`` (default interval 10 s,
so N=1,000 is ~80 polls/s and the profile has enough samples), waits for the warm-up, then
samples the daemon with py-spy (``py-spy record --format raw``; only threads on the CPU are
sampled) and prints the functions with the most samples where they are the innermost Python
frame ("own") and anywhere on the stack ("total"). If py-spy cannot attach, the daemon is run
again under ``python -m cProfile`` instead. The raw profile stays in bench/results/.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.daemon import start_daemon
from bench.fixtures import (
    DaemonSettings,
    campaign_ids,
    requests_per_second,
    start_fake_slack,
    start_simulator,
    write_config,
    write_scenario,
)
from bench.procs import PYTHON, Child, NotifyListener, cpu_sample, free_port, http_json
from bench.report import RESULTS

__all__ = ["by_package", "main", "top_frames"]

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::\d+)?\)$")
_SITE = re.compile(r".*/(?:site-packages|lib/python3\.\d+)/")


def _short(frame: str) -> str:
    """``func (path:line)`` -> ``func (package/module.py)``: the line and the prefix dropped."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = _SITE.sub("", match["file"])
    path = path.split("/work/main/", 1)[-1]
    return f"{match['func']} ({path})"


def top_frames(raw: str) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """(own, total, samples) from py-spy's raw (collapsed stack) output."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")
                  if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return own, total, samples


def by_package(own: collections.Counter[str]) -> collections.Counter[str]:
    """Own samples summed per package (``fotawatch.store``, ``aiohttp``, ``asyncio``, ...)."""
    packages: collections.Counter[str] = collections.Counter()
    for frame, count in own.items():
        match = _FRAME.match(frame)
        path = match["file"] if match else frame
        parts = path.removesuffix(".py").split("/")
        depth = 2 if parts[0] == "fotawatch" else 1
        packages[".".join(parts[:depth])] += count
    return packages


def _print_top(title: str, counter: collections.Counter[str], samples: int, top: int) -> None:
    print(f"\n{title} ({samples} samples)")
    for rank, (frame, count) in enumerate(counter.most_common(top), start=1):
        print(f"{rank:3}. {count / samples * 100:5.1f} %  {frame}")


def _settings(args: argparse.Namespace, slack_url: str | None) -> DaemonSettings:
    return DaemonSettings(interval=args.interval, jitter=args.interval,
                          requests_per_second=requests_per_second(args.n, args.interval),
                          max_concurrency=32, metrics_port=free_port(), slack_url=slack_url)


def _pyspy(pid: int, seconds: float, rate: int, out: Path) -> bool:
    pyspy = Path(PYTHON).with_name("py-spy")
    if not pyspy.exists():
        return False
    argv = [str(pyspy), "record", "--pid", str(pid), "--duration", str(int(seconds)),
            "--rate", str(rate), "--format", "raw", "--output", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False,
                          timeout=seconds + 60)
    if done.returncode != 0 or not out.exists():
        print(f"py-spy could not sample the daemon: {done.stderr.strip()[-500:]}")
        return False
    return True


def _polls(sim_url: str) -> int:
    return int(http_json(f"{sim_url}/_sim/stats")["campaign_requests"])


def _sample(args: argparse.Namespace, daemon: Child, sim_url: str, out: Path) -> bool:
    before, cpu0 = _polls(sim_url), cpu_sample(daemon.pid)
    ok = _pyspy(daemon.pid, args.seconds, args.rate, out)
    polls, (cpu, _) = _polls(sim_url) - before, cpu_sample(daemon.pid).seconds_since(cpu0)
    print(f"{polls} polls in {args.seconds:g} s; daemon CPU {cpu:.2f} s "
          f"({cpu / max(polls, 1) * 1e6:.0f} µs/poll, py-spy attached so slightly inflated)")
    return ok


def _cprofile(args: argparse.Namespace, config: Path, work: Path, out: Path) -> None:
    argv = [PYTHON, "-m", "cProfile", "-o", str(out), "-m", "fotawatch", "run",
            "--config", str(config)]
    daemon = Child("daemon-cprofile", argv, work).start()
    time.sleep(args.warmup + args.seconds)
    daemon.stop()
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(args.top)


def _profile(args: argparse.Namespace, work: Path) -> None:
    scenario = write_scenario(work / "scenario.yaml", args.n, (0.02, 0.05))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / f"profile-n{args.n}-{stamp}.txt"
    with start_simulator(scenario, work) as sim, start_fake_slack(work) as slack:
        assert sim.url is not None
        settings = _settings(args, slack.url)
        config = write_config(work / "fotawatch.yaml", sim.url, campaign_ids(args.n),
                              work / "state.db", settings)
        with NotifyListener(work / "notify.sock") as notify:
            daemon = start_daemon(config, work, notify.path)
            try:
                if notify.wait_for("READY=1", timeout=120) is None:
                    raise RuntimeError(f"daemon never sent READY=1; see {daemon.stderr_path}")
                time.sleep(args.warmup)
                sampled = _sample(args, daemon, sim.url, raw)
            finally:
                daemon.stop()
        if not sampled:
            _cprofile(args, config, work, raw.with_suffix(".prof"))
            return
    own, total, samples = top_frames(raw.read_text())
    _print_top("top by own time (innermost Python frame)", own, samples, args.top)
    _print_top("top by total time (anywhere on the stack)", total, samples, args.top)
    _print_top("own time by package", by_package(own), samples, args.top)
    print(f"\nraw py-spy profile: {raw}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000, help="campaigns (default 1000)")
    p.add_argument("--seconds", type=float, default=30.0, help="sampled seconds (default 30)")
    p.add_argument("--interval", type=float, default=10.0, help="poll interval (default 10 s)")
    p.add_argument("--warmup", type=float, default=None, help="default: interval + 5 s")
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = args.interval + 5
    work = Path(tempfile.mkdtemp(prefix="fwprof-", dir="/tmp"))
    try:
        _profile(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
