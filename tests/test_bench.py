"""``make bench`` still runs: a miniature of it end to end, so the benchmark cannot rot unseen.

The figures are not judged here (timing belongs in the benchmark, not in tests); what is checked
is that every part ran and measured something: the daemon's window with the floor beside it,
the floor alone, the alert flips reaching the fake Slack, /metrics, and the restart to READY.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N, INTERVAL, WINDOW, FLIPS = 30, 2.0, 4.0, 2


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_miniature_bench_measures_every_part(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench", "--n", str(N), "--interval", str(INTERVAL),
            "--warmup", "3", "--window", str(WINDOW), "--floor-seconds", "2",
            "--flips", str(FLIPS), "--skip-rate-limit", "--skip-devices",
            "--results", str(tmp_path)]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=170,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "daemon µs/poll" in done.stdout  # the table was printed
    (written,) = tmp_path.glob("bench-*.json")
    report = json.loads(written.read_text())

    (point,) = report["points"]
    daemon, floor, alone = point["daemon"], point["floor"], point["floor_alone"]
    assert point["n"] == N
    expected_polls = N / INTERVAL * WINDOW
    assert daemon["polls_source"] == "metrics"
    assert 0.8 * expected_polls <= daemon["polls"] <= 1.2 * expected_polls
    assert daemon["cpu_us_per_poll"] > 0
    assert daemon["exit_code"] == 0
    assert daemon["metrics_status"] == daemon["metrics_prometheus_status"] == 200
    assert daemon["alerts_note"] == f"{FLIPS}/{FLIPS} flips posted"
    assert len(daemon["alert_latencies_s"]) == FLIPS
    for side in (floor, alone):
        assert side["requests_ok"] > 0
        assert side["requests_failed"] == 0
        assert side["cpu_us_per_req"] > 0
    assert report["startup"]["campaigns_in_store"] == N
    assert report["startup"]["exit_code"] == 0
