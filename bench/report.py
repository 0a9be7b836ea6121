"""The machine, the code under test, the table, and the JSON file in bench/results/."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["code_state", "machine", "print_report", "write_json"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
COLUMNS = (
    ("N", 7), ("floor µs/req", 13), ("daemon µs/poll", 15), ("ratio", 6), ("polls/s", 14),
    ("CPU %core", 10), ("peak RSS MB", 12), ("/metrics ms", 12), ("alert p50/p99 s", 16),
)


def machine() -> dict[str, Any]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg_at_start": os.getloadavg(),
    }


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return done.stdout.strip()


def code_state() -> dict[str, Any]:
    """git HEAD and whether the package differs from it (read-only git calls)."""
    dirty = _git("status", "--porcelain", "--", "fotawatch")
    changes = [] if dirty == "?" else dirty.splitlines()
    return {"head": _git("rev-parse", "--short", "HEAD"), "fotawatch_dirty": bool(changes),
            "fotawatch_changes": changes}


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _mb(size: float | None) -> float | None:
    return None if size is None else size / 1e6


def _row(point: dict[str, Any]) -> list[str]:
    d, f = point["daemon"], point.get("floor") or {}
    ratio = None
    if d.get("cpu_us_per_poll") and f.get("cpu_us_per_req"):
        ratio = d["cpu_us_per_poll"] / f["cpu_us_per_req"]
    alerts = (f"{_fmt(d.get('alert_p50_s'), '.1f')}/{_fmt(d.get('alert_p99_s'), '.1f')}")
    return [
        f"{point['n']:,}", _fmt(f.get("cpu_us_per_req"), ".0f"),
        _fmt(d.get("cpu_us_per_poll"), ".0f"), _fmt(ratio, ".2f"),
        f"{d['polls_per_s']:.1f} ({point['target_per_s']:.1f})", _fmt(d.get("cpu_pct_core"), ".1f"),
        _fmt(d.get("peak_rss_mb"), ".1f"), _fmt(d.get("metrics_ms"), ".1f"), alerts,
    ]


def print_report(report: dict[str, Any]) -> None:
    m, code = report["machine"], report["code"]
    print()
    print(f"fotawatch bench {report['started']}  HEAD {code['head']}"
          f"{' + uncommitted changes in fotawatch/' if code['fotawatch_dirty'] else ''}")
    print(f"machine: {m['nproc']} CPUs, {m['cpu_model']}, {m['memory_gb']} GB, "
          f"Python {m['python']}, Linux {m['kernel']}; load avg at start/end "
          f"{m['load_avg_at_start'][0]:.2f}/{m.get('load_avg_at_end', [float('nan')])[0]:.2f}")
    print(f"interval {report['interval_s']:g} s, jitter {report['jitter_s']:g} s, "
          f"latency {report['latency_s'][0]*1000:g}-{report['latency_s'][1]*1000:g} ms, "
          f"window {report['window_s']:g} s after {report['warmup_s']:g} s warm-up")
    print()
    print("  ".join(name.rjust(width) for name, width in COLUMNS))
    for point in report["points"]:
        print("  ".join(cell.rjust(width) for cell, (_, width) in zip(_row(point), COLUMNS,
                                                                      strict=True)))
    print("polls/s: achieved (target N/interval). CPU from /proc/<pid>/stat utime+stime. "
          "floor: alongside the daemon, same window. "
          "peak RSS: VmHWM at the end (after the /metrics scrapes).")
    for point in report["points"]:
        d = point["daemon"]
        print(f"  N={point['n']:,}: polls from {d['polls_source']}, schedstat CPU "
              f"{_fmt(d.get('cpu_us_per_poll_schedstat'), '.0f')} µs/poll, "
              f"READY {d['ready_s_empty_store']:.2f} s (empty store), alerts: {d['alerts_note']}")
        print(f"    RSS: peak in window {_fmt(d.get('peak_rss_mb_window'), '.1f')} MB, at end "
              f"{_fmt(d.get('rss_mb'), '.1f')} MB; /metrics body "
              f"{_fmt(_mb(d.get('metrics_bytes')), '.1f')} MB; Prometheus-style scrape "
              f"(OpenMetrics, gzip) {_fmt(d.get('metrics_prometheus_ms'), '.1f')} ms, "
              f"{_fmt(_mb(d.get('metrics_prometheus_bytes')), '.2f')} MB")
        alone = (point.get("floor_alone") or {}).get("cpu_us_per_req")
        print(f"    floor alone after the window: {_fmt(alone, '.0f')} µs/req")
    _print_extra(report)


def _print_extra(report: dict[str, Any]) -> None:
    rl = report.get("rate_limit")
    if rl:
        verdict = "exact" if rl["exact"] else "EXCEEDED"
        print(f"rate limit: {rl['campaigns']:,} campaigns at {rl['interval_s']} s, limit "
              f"{rl['limit_per_s']:g}/s: max {rl['max_in_any_1s']} in any 1 s ({verdict}), "
              f"achieved {rl['achieved_per_s']:.1f}/s = {rl['achieved_pct']:.1f} % "
              f"over {rl['window_s']:.0f} s")
    st = report.get("startup")
    if st:
        print(f"startup: spawn -> READY=1 {_fmt(st['ready_s'], '.2f')} s with "
              f"{st['campaigns_in_store']:,} campaigns in the store; first poll "
              f"{_fmt(st['first_poll_s'], '.2f')} s")
    if report.get("json_path"):
        print(f"written to {report['json_path']}")


def write_json(report: dict[str, Any], directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"bench-{stamp}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path
