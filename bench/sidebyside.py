"""Source trees of fotawatch side by side: ``python -m bench.sidebyside TREE TREE [...]``.

A/B for a code change on a machine whose speed drifts (this VM: ±20 % from one minute to the
next). Each tree's daemon (``python -m fotawatch run`` started in that tree, so it imports that
tree's package) polls the same simulator at the same time, with the same config apart from its
port and state file; over ``--rounds`` windows each daemon's CPU per successful poll is read
from ``/proc`` and its own ``/metrics``. Both see the same machine in every window, so the
ratio of their medians means something where two sequential runs would not. A baseline tree:
``git worktree add /tmp/base <commit>``. Running one tree twice shows the method's own spread.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.daemon import polls_ok
from bench.fixtures import (
    DaemonSettings,
    campaign_ids,
    requests_per_second,
    start_fake_slack,
    start_simulator,
    write_config,
    write_scenario,
)
from bench.procs import PYTHON, Child, NotifyListener, cpu_sample, free_port

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.sidebyside",
                                description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("trees", nargs="+", type=Path, help="fotawatch source trees (repo roots)")
    p.add_argument("--n", type=int, default=3_333, help="campaigns (default 3,333)")
    p.add_argument("--interval", type=float, default=20.0, help="poll interval, s (default 20)")
    p.add_argument("--window", type=float, default=40.0, help="seconds per round (default 40)")
    p.add_argument("--rounds", type=int, default=3)
    return p


@dataclass(frozen=True, slots=True)
class _Shared:
    """What every tree's daemon shares: the work dir, the fakes, the settings, the clean-up."""

    work: Path
    sim_url: str
    slack_url: str | None
    args: argparse.Namespace
    stack: ExitStack


def _start(tree: Path, index: int, shared: _Shared) -> tuple[Child, str]:
    args, work, stack = shared.args, shared.work, shared.stack
    ids = campaign_ids(args.n)
    settings = DaemonSettings(
        interval=args.interval, jitter=args.interval,
        requests_per_second=requests_per_second(args.n, args.interval),
        max_concurrency=32, metrics_port=free_port(), slack_url=shared.slack_url)  # fmt: skip
    home = work / f"tree{index}"
    home.mkdir()
    config = write_config(home / "fotawatch.yaml", shared.sim_url, ids, home / "state.db",
                          settings)  # fmt: skip
    notify = stack.enter_context(NotifyListener(home / "notify.sock"))
    argv = [PYTHON, "-m", "fotawatch", "run", "--config", str(config)]
    daemon = Child(f"daemon{index}", argv, home, env={"NOTIFY_SOCKET": str(notify.path)},
                   cwd=tree.resolve()).start()  # fmt: skip
    stack.callback(daemon.stop)
    if notify.wait_for("READY=1", timeout=180) is None:
        raise RuntimeError(f"{tree}: no READY=1; see {daemon.stderr_path}")
    return daemon, f"http://127.0.0.1:{settings.metrics_port}/metrics"


def _run(args: argparse.Namespace, work: Path) -> list[list[float]]:
    scenario = write_scenario(work / "scenario.yaml", args.n, (0.02, 0.05))
    per_tree: list[list[float]] = [[] for _ in args.trees]
    with ExitStack() as stack:
        sim = stack.enter_context(start_simulator(scenario, work))
        slack = stack.enter_context(start_fake_slack(work))
        assert sim.url is not None
        shared = _Shared(work, sim.url, slack.url, args, stack)
        daemons = [_start(tree, i, shared) for i, tree in enumerate(args.trees)]
        time.sleep(args.interval + 5)  # every campaign polled once: the steady state
        for round_ in range(1, args.rounds + 1):
            before = [(cpu_sample(d.pid), polls_ok(url)) for d, url in daemons]
            time.sleep(args.window)
            after = [(cpu_sample(d.pid), polls_ok(url)) for d, url in daemons]
            cells = []
            for i, ((c0, p0), (c1, p1)) in enumerate(zip(before, after, strict=True)):
                polls = (p1 or 0) - (p0 or 0)
                us = c1.seconds_since(c0)[0] / polls * 1e6 if polls else float("nan")
                per_tree[i].append(us)
                cells.append(f"{us:6.0f} µs/poll at {polls / args.window:5.1f}/s")
            print(f"round {round_}: " + " | ".join(cells), flush=True)
    return per_tree


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fwsidebyside-", dir="/tmp"))
    try:
        per_tree = _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    first = statistics.median(per_tree[0])
    for tree, figures in zip(args.trees, per_tree, strict=True):
        median = statistics.median(figures)
        print(f"{tree}: median {median:.0f} µs/poll, {median / first:.3f} of the first tree's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
