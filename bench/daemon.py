"""The daemon as systemd would run it, measured from outside through /proc and its peers.

``measure`` starts ``python -m fotawatch run`` against a running simulator and fake Slack, waits
for ``READY=1`` and a warm-up, then over a fixed window reads: CPU (``/proc/<pid>/stat``
utime+stime, cross-checked with the threads' schedstat), successful polls (``/metrics``
``fotawatch_polls_total{result="ok"}`` when the server answers, else the simulator's
``campaign_requests``), RSS (``VmHWM``/``VmRSS``). During the window a few campaigns change
status through the simulator's admin endpoint and the fake Slack's receive times give the alert
latency. After the window: ``/metrics`` render time. Whatever the daemon does not offer yet
(no metrics server, no Slack posts) is reported as None, printed "n/a".
"""

from __future__ import annotations

import random
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.fixtures import ACCOUNT, stored_transitions
from bench.floor import FloorSpec
from bench.floor import result as floor_result
from bench.procs import (
    PYTHON,
    Child,
    CpuSample,
    NotifyListener,
    cpu_sample,
    http_get,
    http_json,
    memory_kb,
)

__all__ = ["Run", "Window", "measure", "polls_ok", "start_daemon", "startup_to_ready"]

_POLLS_OK = re.compile(r'^fotawatch_polls_total\{[^}]*result="ok"[^}]*\}\s+(\S+)', re.MULTILINE)
FLIP_TO = "CampaignEnded"
FLOOR_LEAD = 4.0  # s before the window that the floor alongside it is started


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """Where the daemon of one measurement lives and how long to watch it."""

    config: Path
    state: Path
    work: Path
    sim: Child
    slack: Child | None
    ids: list[str]
    metrics_port: int
    warmup: float
    window: float
    interval: float
    jitter: float
    flips: int = 5
    floor: FloorSpec | None = None  # run alongside the window, against the same simulator


@dataclass(slots=True)
class Window:
    """Readings taken at one edge of the measurement window."""

    cpu: CpuSample
    sim_requests: int
    polls_ok: float | None

    @classmethod
    def read(cls, pid: int, sim_url: str, metrics_url: str) -> Window:
        stats = http_json(f"{sim_url}/_sim/stats")
        return cls(cpu_sample(pid), int(stats["campaign_requests"]), polls_ok(metrics_url))


@dataclass(slots=True)
class _Flips:
    at: dict[str, float] = field(default_factory=dict)  # campaign id -> monotonic flip time


def polls_ok(metrics_url: str) -> float | None:
    status, body = http_get(metrics_url, timeout=10)
    if status != 200:
        return None
    values = [float(v) for v in _POLLS_OK.findall(body.decode(errors="replace"))]
    return sum(values) if values else None


def start_daemon(config: Path, work: Path, notify: Path, name: str = "daemon") -> Child:
    argv = [PYTHON, "-m", "fotawatch", "run", "--config", str(config)]
    return Child(name, argv, work, env={"NOTIFY_SOCKET": str(notify)}).start()


def measure(run: Run) -> dict[str, Any]:
    """Start the daemon, measure one window, stop it; the figures as a dict."""
    with NotifyListener(run.work / "notify.sock") as notify:
        daemon = start_daemon(run.config, run.work, notify.path)
        try:
            ready_at = notify.wait_for("READY=1", timeout=180)
            if ready_at is None:
                raise RuntimeError(f"daemon never sent READY=1; see {daemon.stderr_path}")
            result: dict[str, Any] = {"ready_s_empty_store": ready_at - daemon.started_at}
            result |= _window(run, daemon)
            result |= _metrics_render(run.metrics_port)
            result |= _alert_latency(run)
            result["peak_rss_mb"] = memory_kb(daemon.pid)["VmHWM"] / 1024
        finally:
            started = time.monotonic()
            result_code = daemon.stop()
        result["exit_code"] = result_code
        result["stop_s"] = time.monotonic() - started
    return result


def _window(run: Run, daemon: Child) -> dict[str, Any]:
    sim_url = run.sim.url or ""
    metrics_url = f"http://127.0.0.1:{run.metrics_port}/metrics"
    lead = min(FLOOR_LEAD, run.warmup)
    time.sleep(run.warmup - lead)
    # The floor starts before the window (interpreter, imports, login, then its own warm-up)
    # and measures for as long as it: both sides see the same machine at the same time.
    floor = run.floor.start(seconds=run.window, warmup=max(0.0, lead - 1.0)) if run.floor else None
    try:
        time.sleep(lead)
        start = Window.read(daemon.pid, sim_url, metrics_url)
        flips = _flip(run, sim_url)
        rss_max = _watch(daemon, start.cpu.at + run.window)
        end = Window.read(daemon.pid, sim_url, metrics_url)
    except BaseException:
        if floor is not None:
            floor.stop()  # the window failed: do not leave the floor polling
        raise
    floor_figures = floor_result(floor, timeout=120) if floor else None
    seconds = end.cpu.at - start.cpu.at
    cpu_stat, cpu_sched = end.cpu.seconds_since(start.cpu)
    from_metrics = start.polls_ok is not None and end.polls_ok is not None
    if not from_metrics and floor is not None:
        raise RuntimeError("no /metrics to count polls by: the simulator's count has the floor's")
    polls = (end.polls_ok or 0) - (start.polls_ok or 0) if from_metrics else (
        end.sim_requests - start.sim_requests)
    memory = memory_kb(daemon.pid)
    run.work.joinpath("flips.txt").write_text(
        "".join(f"{cid} {at}\n" for cid, at in flips.at.items()))
    return {
        "window_s": seconds,
        "polls": polls,
        "polls_source": "metrics" if from_metrics else "simulator",
        "polls_per_s": polls / seconds,
        "cpu_s": cpu_stat,
        "cpu_s_schedstat": cpu_sched,
        "cpu_us_per_poll": cpu_stat / polls * 1e6 if polls else None,
        "cpu_us_per_poll_schedstat": cpu_sched / polls * 1e6 if polls else None,
        "cpu_pct_core": cpu_stat / seconds * 100,
        "peak_rss_mb_window": memory["VmHWM"] / 1024,
        "rss_mb": memory["VmRSS"] / 1024,
        "rss_max_sampled_mb": rss_max / 1024,
        "flips": flips.at,
        "floor": floor_figures,
    }


def _flip(run: Run, sim_url: str) -> _Flips:
    """Change a few random campaigns' status now; remember when, on the monotonic clock."""
    flips = _Flips()
    for cid in random.Random(len(run.ids)).sample(run.ids, min(run.flips, len(run.ids))):
        http_json(f"{sim_url}/_sim/campaigns/{ACCOUNT}/{cid}/status", {"status": FLIP_TO},
                  method="POST")
        flips.at[cid] = time.monotonic()
    return flips


def _watch(daemon: Child, until: float) -> int:
    """Sleep until ``until``, sampling RSS; fail fast if the daemon dies. Max VmRSS in kB."""
    rss = 0
    while (left := until - time.monotonic()) > 0:
        if not daemon.alive():
            raise RuntimeError(f"the daemon exited during the window; see {daemon.stderr_path}")
        rss = max(rss, memory_kb(daemon.pid)["VmRSS"])
        time.sleep(min(left, 2.0))
    return rss


# What Prometheus 2.x/3.x sends when it scrapes: OpenMetrics preferred, gzip accepted.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,"
              "text/plain;version=0.0.4;q=0.3,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def _timed_scrapes(url: str, scrapes: int, headers: dict[str, str] | None) -> dict[str, Any]:
    times, size = [], 0
    for _ in range(scrapes):
        started = time.perf_counter()
        status, body = http_get(url, timeout=30, headers=headers)
        if status != 200:
            return {"ms": None, "status": status}
        times.append((time.perf_counter() - started) * 1000)
        size = len(body)
    return {"ms": statistics.median(times), "ms_max": max(times), "bytes": size, "status": 200}


def _metrics_render(port: int, scrapes: int = 5) -> dict[str, Any]:
    """Median time of plain GETs of /metrics, then of Prometheus-style (OpenMetrics, gzip) ones."""
    url = f"http://127.0.0.1:{port}/metrics"
    plain = _timed_scrapes(url, scrapes, None)
    result = {f"metrics_{key}": value for key, value in plain.items()}
    if plain["status"] == 200:
        prom = _timed_scrapes(url, scrapes, PROMETHEUS_HEADERS)
        result |= {f"metrics_prometheus_{key}": value for key, value in prom.items()}
    return result


def _alert_latency(run: Run) -> dict[str, Any]:
    """flip -> first fake-Slack post naming the campaign; waits for late polls if posts come."""
    if run.slack is None or run.slack.url is None:
        return {"alert_p50_s": None, "alert_p99_s": None, "alerts_note": "no fake Slack"}
    flips = dict(line.split() for line in run.work.joinpath("flips.txt").read_text().splitlines())
    flip_at = {cid: float(at) for cid, at in flips.items()}
    base = run.slack.url.split("/services/")[0]
    deadline = max(flip_at.values()) + run.interval + run.jitter + 10
    while True:
        received = _received(f"{base}/_fake/posts", flip_at)
        if len(received) == len(flip_at) or time.monotonic() > deadline:
            break
        if not received and stored_transitions(run.state) >= set(flip_at):
            break  # every change is recorded and nothing was posted: alerts are not wired
        time.sleep(1.0)
    latencies = sorted(received[cid] - flip_at[cid] for cid in received)
    note = f"{len(latencies)}/{len(flip_at)} flips posted"
    if not latencies:
        recorded = len(stored_transitions(run.state) & set(flip_at))
        note += f" ({recorded} transitions recorded: Slack alerts not wired?)"
    return {
        "alert_p50_s": _quantile(latencies, 0.5),
        "alert_p99_s": _quantile(latencies, 0.99),
        "alert_latencies_s": latencies,
        "alerts_note": note,
    }


def _received(url: str, flip_at: dict[str, float]) -> dict[str, float]:
    """campaign id -> receive time of the first post naming it after its flip."""
    posts = http_json(url)["posts"]
    first: dict[str, float] = {}
    for post in posts:
        raw = post.get("raw", "")
        for cid, at in flip_at.items():
            named = cid in raw or cid[:8] in raw
            if named and post["received_at"] >= at and cid not in first:
                first[cid] = post["received_at"]
    return first


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    index = q * (len(values) - 1)
    low = int(index)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (index - low)


def startup_to_ready(config: Path, work: Path, sim_url: str, campaigns: int) -> dict[str, Any]:
    """Spawn -> READY=1 with the store already holding ``campaigns``; then the first poll."""
    before = int(http_json(f"{sim_url}/_sim/stats")["campaign_requests"])
    with NotifyListener(work / "notify-restart.sock") as notify:
        daemon = start_daemon(config, work, notify.path, name="daemon-restart")
        try:
            ready_at = notify.wait_for("READY=1", timeout=180)
            first_poll = _first_poll(sim_url, before, daemon.started_at)
            memory = memory_kb(daemon.pid) if daemon.alive() else {}
        finally:
            code = daemon.stop()
    return {
        "campaigns_in_store": campaigns,
        "ready_s": None if ready_at is None else ready_at - daemon.started_at,
        "first_poll_s": first_poll,
        "rss_mb_after_ready": memory.get("VmRSS", 0) / 1024,
        "exit_code": code,
    }


def _first_poll(sim_url: str, before: int, started_at: float, timeout: float = 30) -> float | None:
    while time.monotonic() - started_at < timeout:
        if int(http_json(f"{sim_url}/_sim/stats")["campaign_requests"]) > before:
            return time.monotonic() - started_at
        time.sleep(0.05)
    return None
