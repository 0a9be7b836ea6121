"""``make soak``: fotawatch for a long time, many campaigns, faults all along. Not in CI.

Defaults follow issue 6: 30 minutes, 1,000 campaigns polled every second. Knobs (environment):
``FOTAWATCH_SOAK_SECONDS`` (1800), ``FOTAWATCH_SOAK_CAMPAIGNS`` (1000),
``FOTAWATCH_SOAK_INTERVAL`` (1), ``FOTAWATCH_SOAK_CHANGES`` (status changes per second, 2),
``FOTAWATCH_SOAK_REPORT`` (write the JSON report there; it is always printed).

Every part is its own process: the simulator, the fake Slack and the daemon; this test only
drives them over their admin endpoints and reads ``/proc``. Each 60 s cycle injects: 503s
(p=0.3, 5 s), 429 storms (p=0.3, 3 s), hangs longer than the timeout (p=0.02, 2 s), HTML and
truncated bodies (p=0.1, 3 s each), a session expiry, a token revocation, Slack answering 429
(3 s) and 500 (5 s). Status changes go round Pending -> Queued -> PreScheduled -> Scheduled ->
Pending, never final, so every campaign is polled to the end; a campaign changes at most every
15 s, so each change is one the daemon can see.

Reported (and asserted where a bound makes sense): RSS and open-fd growth after warm-up, poll
success rate and rate achieved, status changes missed, alerts lost and duplicated, alert latency
percentiles (status change at the simulator -> first Slack post naming it), failed logins in a
row, the daemon's exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sqlite3
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

import aiohttp
import pytest
import yaml
from chaos.invariants import slack_transitions
from prometheus_client.parser import text_string_to_metric_families
from support import ACCOUNT, DaemonProcess, daemon_process, stored_transitions, wait_for
from support import write_config as base_config

from fotawatch.simulator.campaigns import generated_id
from fotawatch.testing.fake_slack import Post

SECONDS = float(os.environ.get("FOTAWATCH_SOAK_SECONDS", "1800"))
CAMPAIGNS = int(os.environ.get("FOTAWATCH_SOAK_CAMPAIGNS", "1000"))
INTERVAL = float(os.environ.get("FOTAWATCH_SOAK_INTERVAL", "1"))
CHANGES = float(os.environ.get("FOTAWATCH_SOAK_CHANGES", "2"))
REPORT = os.environ.get("FOTAWATCH_SOAK_REPORT")
CYCLE = ("CampaignRequestQueued", "CampaignPreScheduled", "CampaignScheduled",
         "CampaignRequestPending")  # fmt: skip
MIN_GAP = 15.0  # seconds between two changes of one campaign
WARM_UP = min(120.0, SECONDS / 4)
SAMPLE_EVERY = 10.0

pytestmark = [pytest.mark.soak, pytest.mark.timeout(SECONDS + 900)]


class Child:
    """A helper process that prints ``... listening on URL`` and serves until SIGTERM."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.url = ""
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *self.args, stdout=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        self.url = line.decode().rsplit(" ", 1)[-1].strip()
        self._drain = asyncio.create_task(self.proc.stdout.read())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 30)
        if self._drain is not None:
            await self._drain


class Driver:
    """Changes statuses and injects the fault cycle; remembers when each change was made."""

    def __init__(self, http: aiohttp.ClientSession, sim: str, slack: str, ids: list[str]) -> None:
        self.http, self.sim, self.slack, self.ids = http, sim, slack, ids
        self.rng = random.Random(6)
        self.position = dict.fromkeys(ids, -1)
        self.last = dict.fromkeys(ids, float("-inf"))
        self.changes: list[tuple[str, str, str, float]] = []  # (id, from, to, monotonic)
        self.offset = 0.0  # monotonic - sim clock

    async def call(self, method: str, url: str, body: Any = None) -> Any:
        async with self.http.request(method, url, json=body) as resp:
            assert resp.status < 300, f"{method} {url}: {resp.status} {await resp.text()}"
            return await resp.json() if resp.content_type == "application/json" else None

    async def sync_clock(self) -> None:
        stats = await self.call("GET", f"{self.sim}/_sim/stats")
        self.offset = time.monotonic() - stats["now"]

    async def change(self, now: float) -> None:
        eligible = [c for c in self.ids if now - self.last[c] >= MIN_GAP]
        count = int(CHANGES) + (self.rng.random() < CHANGES % 1)
        for cid in self.rng.sample(eligible, min(count, len(eligible))):
            frm = CYCLE[self.position[cid]] if self.position[cid] >= 0 else CYCLE[-1]
            self.position[cid] = (self.position[cid] + 1) % len(CYCLE)
            to = CYCLE[self.position[cid]]
            await self.call("POST", f"{self.sim}/_sim/campaigns/{ACCOUNT}/{cid}/status",
                            {"status": to})  # fmt: skip
            self.last[cid] = time.monotonic()
            self.changes.append((cid, frm, to, self.last[cid]))

    async def fault_cycle(self, second: int) -> None:
        """Second ``second`` of the 60 s fault cycle."""
        if second == 0:
            at = time.monotonic() - self.offset
            windows = [({"kind": "http_error", "status": 503, "probability": 0.3}, 5, 10),
                       ({"kind": "rate_limit", "retry_after": 1, "probability": 0.3}, 20, 23),
                       ({"kind": "hang", "seconds": 3, "probability": 0.02}, 35, 37),
                       ({"kind": "html", "probability": 0.1}, 45, 48),
                       ({"kind": "truncated_json", "probability": 0.1}, 50, 53)]  # fmt: skip
            faults = [{**f, "start": at + a, "end": at + b} for f, a, b in windows]
            await self.call("PUT", f"{self.sim}/_sim/faults", faults)
        elif second == 30:
            await self.call("POST", f"{self.sim}/_sim/expire-sessions")
        elif second == 55:
            await self.call("POST", f"{self.sim}/_sim/revoke-tokens")
        elif second in {15, 40}:
            behaviour = {"name": "rate_limited", "retry_after": 2} if second == 15 else {
                "name": "server_error"}  # fmt: skip
            await self.call("POST", f"{self.slack}/_fake/fail-until",
                            {"seconds": 3 if second == 15 else 5, "behaviours": [behaviour]})


def _proc(pid: int) -> tuple[float, int]:
    """(RSS in MB, open fds) of ``pid``."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss = int(next(line.split()[1] for line in lines if line.startswith("VmRSS"))) / 1024
    return rss, sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def _polls(metrics: str) -> Counter[str]:
    return Counter({s.labels["result"]: int(s.value)
                    for f in text_string_to_metric_families(metrics) for s in f.samples
                    if s.name == "fotawatch_polls_total"})  # fmt: skip


def _baselines(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM campaigns WHERE status IS NOT NULL")
                   .fetchone()[0])  # fmt: skip
    except sqlite3.Error:
        return 0
    finally:
        con.close()


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return dict.fromkeys(("p50", "p90", "p99", "max"))
    if len(values) == 1:
        values = values * 2
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p90": round(cuts[89], 2), "p99": round(cuts[98], 2),
            "max": round(max(values), 2)}  # fmt: skip


def _latencies(changes: list[tuple[str, str, str, float]], posts: list[Post]) -> list[float]:
    """Change -> the first accepted post after it naming the same move."""
    delivered = [(p.received_at, set(slack_transitions(p))) for p in posts if p.delivered]
    out = []
    for cid, frm, to, at in changes:
        first = next((t for t, moves in delivered if t >= at and (cid, frm, to) in moves), None)
        if first is not None:
            out.append(first - at)
    return out


def _config(tmp_path: Path, sim: str, slack: str, ids: list[str]) -> Path:
    thingspace = {"timeout_seconds": 2, "requests_per_second": min(1000, 2 * CAMPAIGNS / INTERVAL),
                  "max_concurrency": 64, "retry": {"attempts": 2, "backoff_initial_seconds": 0.2,
                                                   "backoff_max_seconds": 1}}  # fmt: skip
    return base_config(
        tmp_path, sim, [{"account": ACCOUNT, "id": cid} for cid in ids],
        thingspace=thingspace,
        polling={"interval_seconds": INTERVAL, "jitter_seconds": INTERVAL,
                 "devices_interval_seconds": 0},
        alerts={"slack": {"webhook_url": slack, "conditions": False}},
        logging={"level": "info", "format": "json"},
    )  # fmt: skip


@contextlib.asynccontextmanager
async def _world(tmp_path: Path) -> AsyncIterator[tuple[Child, Child, list[str]]]:
    ids = [generated_id(ACCOUNT, i) for i in range(CAMPAIGNS)]
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({
        "accounts": [ACCOUNT],
        "generate": {"count": CAMPAIGNS, "status": "CampaignRequestPending"},
    }))  # fmt: skip
    sim_args = ("fotawatch.simulator", "--port", "0", "--scenario", str(scenario))
    async with Child(*sim_args) as sim, Child("fotawatch.testing.fake_slack", "--port", "0") as s:
        yield sim, s, ids


async def _run(d: DaemonProcess, driver: Driver, samples: list[tuple[float, float, int]]) -> None:
    assert d.proc is not None
    started = time.monotonic()
    next_sample = started + WARM_UP
    for tick in range(int(SECONDS)):
        await driver.fault_cycle(tick % 60)
        await driver.change(time.monotonic())
        now = time.monotonic()
        if now >= next_sample:
            samples.append((round(now - started), *_proc(d.proc.pid)))
            next_sample += SAMPLE_EVERY
        await asyncio.sleep(max(0.0, started + tick + 1 - time.monotonic()))  # the 1 s tick


async def test_soak(tmp_path: Path) -> None:
    """Long run under faults: bounded memory and fds, no alert lost or doubled; the figures."""
    db = tmp_path / "state.db"
    samples: list[tuple[float, float, int]] = []
    async with _world(tmp_path) as (sim, slack, ids), aiohttp.ClientSession() as http:
        driver = Driver(http, sim.url, slack.url.split("/services/")[0], ids)
        await driver.sync_clock()
        async with daemon_process(_config(tmp_path, sim.url, slack.url, ids)) as d:
            await wait_for(lambda: _baselines(db) == CAMPAIGNS, 300, what="every baseline")
            polls_before = _polls(await (await http.get(_metrics_url(d))).text())
            began = time.monotonic()
            await _run(d, driver, samples)
            ran = time.monotonic() - began
            await driver.call("DELETE", f"{sim.url}/_sim/faults")
            posts = await _drain(driver, db)
            metrics = await (await http.get(_metrics_url(d))).text()
            code = await d.stop()
        stats = await driver.call("GET", f"{sim.url}/_sim/stats")
    report = _report(driver=driver, db=db, posts=posts, stats=stats, samples=samples,
                     metrics=metrics, polls_before=polls_before, ran=ran, code=code)
    text = json.dumps(report, indent=2)
    print(text)  # the figures for docs/reliability.md
    if REPORT:
        Path(REPORT).write_text(text + "\n")
    assert report["problems"] == [], text


def _metrics_url(d: DaemonProcess) -> str:
    return f"http://127.0.0.1:{d.events('http_listening')[0]['port']}/metrics"


def _posts(data: dict[str, Any]) -> list[Post]:
    return [Post(**{**p, "raw": p["raw"].encode(), "problems": tuple(p["problems"])})
            for p in data["posts"]]  # fmt: skip


def _moves(rows: list[tuple[Any, ...]]) -> Counter[tuple[str, str, str]]:
    return Counter((cid, frm or "", to) for cid, _, frm, to, _ in rows)


def _delivered(posts: list[Post]) -> Counter[tuple[str, str, str]]:
    return Counter(m for p in posts if p.delivered for m in slack_transitions(p))


async def _drain(driver: Driver, db: Path, timeout: float = 180.0) -> list[Post]:
    """Wait until every change the simulator made, and every recorded transition, reached Slack
    (or the deadline); all posts. Recorded ones alone are not enough: a change the daemon had
    not yet polled when the faults ended would be recorded and sent after this returned."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await driver.call("GET", f"{driver.sim}/_sim/stats")
        made = Counter((c["campaign_id"], c["from"], c["to"]) for c in stats["status_changes"])
        posts = _posts(await driver.call("GET", f"{driver.slack}/_fake/posts"))
        waiting = (made | _moves(stored_transitions(db))) - _delivered(posts)
        if not waiting or time.monotonic() > deadline:
            return posts
        await asyncio.sleep(5)  # the fake's post list is big: look every 5 s, not 20 ms


def _report(
    *,
    driver: Driver,
    db: Path,
    posts: list[Post],
    stats: dict[str, Any],
    samples: list[tuple[float, float, int]],
    metrics: str,
    polls_before: Counter[str],
    ran: float,
    code: int,
) -> dict[str, Any]:
    stored = _moves(stored_transitions(db))
    made = Counter((c["campaign_id"], c["from"], c["to"]) for c in stats["status_changes"])
    delivered = _delivered(posts)
    polls = _polls(metrics) - polls_before
    total = sum(polls.values())
    rate = total / ran if ran else 0.0
    first, last = samples[0] if samples else (0, 0.0, 0), samples[-1] if samples else (0, 0.0, 0)
    report: dict[str, Any] = {
        "command": f"FOTAWATCH_SOAK_SECONDS={SECONDS:g} FOTAWATCH_SOAK_CAMPAIGNS={CAMPAIGNS} "
                   f"FOTAWATCH_SOAK_INTERVAL={INTERVAL:g} FOTAWATCH_SOAK_CHANGES={CHANGES:g} "
                   "make soak",
        "seconds": round(ran), "campaigns": CAMPAIGNS, "interval": INTERVAL,
        "polls": total, "poll_success_rate": round(polls["ok"] / total, 4) if total else None,
        "poll_results": dict(polls), "polls_per_second": round(rate, 1),
        "target_polls_per_second": CAMPAIGNS / INTERVAL,
        "changes": sum(made.values()), "recorded": sum(stored.values()),
        "missed": sum((made - stored).values()), "phantom": sum((stored - made).values()),
        "delivered": sum((delivered & stored).values()),
        "lost": sum((stored - delivered).values()),
        "duplicated": sum((delivered - stored).values()),
        "alert_latency_s": _percentiles(_latencies(driver.changes, posts)),
        "rss_mb": {"after_warm_up": round(first[1], 1), "end": round(last[1], 1),
                   "max": round(max((s[1] for s in samples), default=0.0), 1)},
        "open_fds": {"after_warm_up": first[2], "end": last[2],
                     "max": max((s[2] for s in samples), default=0)},
        "api_faults": stats["faults_injected"], "slack_posts": len(posts),
        "slack_refused": sum(1 for p in posts if not p.delivered),
        "max_failed_logins_in_a_row": stats["max_consecutive_login_failures"],
        "exit_code": code,
    }  # fmt: skip
    report["problems"] = _problems(report, rate)
    return report


def _problems(r: dict[str, Any], rate: float) -> list[str]:
    problems = [f"{r[k]} {k}" for k in ("lost", "duplicated", "phantom") if r[k]]
    if r["missed"] and rate and CAMPAIGNS / rate < MIN_GAP / 2:
        problems.append(f"{r['missed']} changes missed although each campaign was polled "
                        f"every {CAMPAIGNS / rate:.1f} s")  # fmt: skip
    if r["max_failed_logins_in_a_row"] > 2:
        problems.append(f"{r['max_failed_logins_in_a_row']} failed logins in a row")
    if r["exit_code"] != 0:
        problems.append(f"daemon exited {r['exit_code']}")
    if r["open_fds"]["end"] - r["open_fds"]["after_warm_up"] > 50:
        problems.append(f"open fds grew {r['open_fds']}")
    if r["rss_mb"]["end"] - r["rss_mb"]["after_warm_up"] > 100:
        problems.append(f"RSS grew {r['rss_mb']}")
    return problems
