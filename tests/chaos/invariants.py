"""What must hold after every chaos scenario, checked from the outside (store file, Slack, logs).

- every status change the simulator made is recorded exactly once (seq 1..n, in order) and
  nothing else is recorded;
- every recorded transition is delivered to Slack at least once, exactly once unless the
  scenario injected an accepted-then-unanswered post (``duplicates_allowed``) or a ``kill -9``
  cut it (``cut_moves``: Slack accepted it, the state file had not marked it), first delivered
  in seq order per campaign; no message names a transition that did not happen;
- condition messages are exactly the expected ones; no post arrived before a Retry-After ran out;
- ``/metrics`` agrees with the store (current status series == stored status) and its
  transitions counter == the transitions the last process logged, all of them stored;
- the simulator never saw more than 2 consecutive failed logins (and never locked the user);
- every process exited 0 or was killed on purpose; no crash events, no tracebacks; no
  outbox row is left pending or failed.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.parser import text_string_to_metric_families
from support import ACCOUNT, stored_transitions, wait_for

from fotawatch.testing.fake_slack import Post

if TYPE_CHECKING:
    from harness import Chaos

__all__ = [
    "Expectations",
    "Observation",
    "check",
    "slack_conditions",
    "slack_transitions",
]

Move = tuple[str, str, str]  # (campaign id, from status, to status)
_TRANSITION = re.compile(r"\(`(?P<cid>[^`]+)`\)\n`(?P<frm>[^`]+)` → `(?P<to>[^`]+)`")
_CONDITION = re.compile(r"\*(?P<state>Firing|Resolved): (?P<title>[^*]+?)\*")
_TITLES = {
    "ThingSpace API unreachable": "api_down",
    "ThingSpace login circuit open": "login_circuit_open",
    "Campaign missing": "campaign_missing",
}
# Log events that only a bug produces.
CRASH_EVENTS = frozenset({"poll_crashed", "job_crashed", "alert_dispatcher_error",
                          "subscriber_failed", "http_handler_failed"})  # fmt: skip
MAX_LOGIN_FAILURES_IN_A_ROW = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectations:
    """What a scenario may or must show beyond the invariants."""

    duplicates_allowed: bool = False  # a post was accepted but its answer never arrived
    may_duplicate: frozenset[Move] = frozenset()  # these (only) may arrive twice
    conditions: dict[tuple[str, str], int] = field(default_factory=dict)  # exact counts
    loud: tuple[str, ...] = ()  # log events that must appear (the fault was reported)


def _sections(post: Post) -> list[str]:
    body = post.body if isinstance(post.body, dict) else {}
    return [
        block["text"]["text"]
        for block in body.get("blocks", [])
        if block.get("type") == "section" and isinstance(block.get("text"), dict)
    ]


def slack_transitions(post: Post) -> list[Move]:
    """The transitions a Slack message carries (one section each)."""
    return [
        (m["cid"], m["frm"], m["to"])
        for text in _sections(post)
        for m in _TRANSITION.finditer(text)
    ]


def slack_conditions(post: Post) -> list[tuple[str, str]]:
    """(condition, firing|resolved) of each condition section of a Slack message."""
    return [
        (_TITLES.get(m["title"], m["title"]), m["state"].lower())
        for text in _sections(post)
        for m in _CONDITION.finditer(text)
    ]


def _store_moves(run: Chaos) -> list[tuple[str, int, str, str]]:
    return [(cid, seq, frm or "", to) for cid, seq, frm, to, _ in stored_transitions(run.db)]


def _delivered_moves(run: Chaos) -> Counter[Move]:
    return Counter(m for p in run.slack.posts if p.delivered for m in slack_transitions(p))


def _delivered_conditions(run: Chaos) -> Counter[tuple[str, str]]:
    return Counter(c for p in run.slack.posts if p.delivered for c in slack_conditions(p))


class Observation:
    """Everything the checks read, gathered once the run has settled."""

    def __init__(self, run: Chaos) -> None:
        self.run = run
        self.data: dict[str, Any] = {}

    def settled(self, expect: Expectations) -> bool:
        """Every stored transition delivered, every expected condition message posted."""
        delivered = _delivered_moves(self.run)
        moves = _store_moves(self.run)
        if any(delivered[(cid, frm, to)] == 0 for cid, _, frm, to in moves):
            return False
        conditions = _delivered_conditions(self.run)
        return all(conditions[key] >= n for key, n in expect.conditions.items())

    async def drain(self, timeout: float, expect: Expectations) -> bool:
        try:
            await wait_for(lambda: self.settled(expect), timeout, what="alerts to drain")
        except AssertionError:
            return False
        return True

    def freeze(self, metrics: str, *, exit_code: int, drained: bool) -> dict[str, Any]:
        run = self.run
        stats = run.sim.stats()
        self.data = {
            "stats": stats,
            "store": _store_moves(run),
            "statuses": {cid: run.stored(cid) for cid in run.ids},
            "outbox": _outbox_states(run),
            "metrics": metrics,
            "exit_code": exit_code,
            "drained": drained,
        }
        return self.data


def _outbox(run: Chaos, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one read-only query on the state file's outbox."""
    con = sqlite3.connect(f"file:{run.db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _outbox_states(run: Chaos) -> Counter[str]:
    rows = _outbox(
        run,
        "SELECT CASE WHEN delivered_at IS NOT NULL THEN 'delivered'"
        " WHEN failed_at IS NOT NULL THEN 'failed' ELSE 'pending' END FROM outbox",
    )
    return Counter(state for (state,) in rows)


def cut_moves(run: Chaos) -> set[Move]:
    """Transitions Slack accepted whose outbox rows are still pending: a killed daemon's cut posts.

    Read after the process died and Slack answered it, these are exactly the sends that
    at-least-once delivery repeats; a row already marked delivered must never be posted again.
    """
    pending_sql = "SELECT payload FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL"
    rows = _outbox(run, pending_sql)
    pending = set()
    for (text,) in rows:
        payload = json.loads(text)
        if payload.get("type") == "transition":
            move = (payload["campaign_id"], payload["from_status"] or "", payload["to_status"])
            pending.add(move)
    return pending & set(_delivered_moves(run))


# --- the checks ---------------------------------------------------------------------------


def _sim_moves(run: Chaos, stats: dict[str, Any]) -> list[Move]:
    ids = set(run.ids)
    return [
        (c["campaign_id"], c["from"], c["to"])
        for c in stats["status_changes"]
        if c["account"] == ACCOUNT and c["campaign_id"] in ids
    ]


def _check_store(sim: list[Move], store: list[tuple[str, int, str, str]]) -> list[str]:
    problems = []
    for cid in sorted({m[0] for m in sim} | {s[0] for s in store}):
        want = [(f, t) for c, f, t in sim if c == cid]
        rows = [s for s in store if s[0] == cid]
        got = [(f, t) for _, _, f, t in rows]
        if want != got:
            problems.append(f"{cid}: simulator changed {want}, store recorded {got}")
        if [seq for _, seq, _, _ in rows] != list(range(1, len(rows) + 1)):
            problems.append(f"{cid}: seqs {[seq for _, seq, _, _ in rows]} are not 1..n")
    return problems


def _first_post(run: Chaos) -> dict[Move, int]:
    first: dict[Move, int] = {}
    for index, post in enumerate(run.slack.posts):
        if post.delivered:
            for move in slack_transitions(post):
                first.setdefault(move, index)
    return first


def _check_alerts(
    run: Chaos, sim: list[Move], store: list[tuple[str, int, str, str]], expect: Expectations
) -> tuple[list[str], int, int]:
    delivered = _delivered_moves(run)
    problems = [f"alert for a transition that did not happen: {m}" for m in delivered
                if m not in set(sim)]  # fmt: skip
    lost = [(cid, f, t) for cid, _, f, t in store if delivered[(cid, f, t)] == 0]
    problems += [f"recorded but never delivered: {m}" for m in lost]
    duplicated = sum(n - 1 for n in delivered.values() if n > 1)
    unexpected = {m: n for m, n in delivered.items() if n > 1 and m not in expect.may_duplicate}
    if unexpected and not expect.duplicates_allowed:
        problems.append(f"delivered more than once: {unexpected}")
    first = _first_post(run)
    for cid in {s[0] for s in store}:
        order = [first.get((cid, f, t), -1) for c, _, f, t in store if c == cid]
        if order != sorted(order):
            problems.append(f"{cid}: delivered out of order (first posts {order})")
    return problems, len(lost), duplicated


def _check_conditions(run: Chaos, expect: Expectations) -> list[str]:
    seen = _delivered_conditions(run)
    problems = []
    for key in set(seen) | set(expect.conditions):
        want, got = expect.conditions.get(key, 0), seen[key]
        if got != want and not (expect.duplicates_allowed and want and got > want):
            problems.append(f"condition {key}: {got} messages, expected {want}")
    return problems


def _metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]  # fmt: skip


def _check_metrics(run: Chaos, data: dict[str, Any]) -> list[str]:
    text, problems = data["metrics"], []
    current = {labels["campaign_id"]: labels["status"]
               for labels, value in _metric_samples(text, "fotawatch_campaign_status")
               if value == 1}  # fmt: skip
    problems += [f"/metrics has no status for {cid}" for cid in run.driven if cid not in current]
    for cid, status in current.items():
        if data["statuses"].get(cid) != status:
            problems.append(f"/metrics says {cid} is {status}, store {data['statuses'].get(cid)}")
    samples = _metric_samples(text, "fotawatch_campaign_transitions_total")
    counted = Counter({(labels["campaign_id"], labels["from_status"], labels["to_status"]): int(v)
                       for labels, v in samples if v})  # fmt: skip
    logged = Counter(
        (e["campaign"].split("/", 1)[1], e["from_status"] or "", e["to_status"])
        for e in run.daemon.events("campaign_transition")
    )
    # A reload that drops a campaign drops its counters too (its series vanish): then each
    # count can only be at most what was logged.
    if counted != logged and (not run.dropped or counted - logged):
        problems.append(f"transitions_total {dict(counted)} != logged {dict(logged)}")
    stored = {(cid, f, t) for cid, _, f, t in data["store"]}
    problems += [f"counted but not stored: {m}" for m in counted if m not in stored]
    return problems


def _check_processes(run: Chaos, data: dict[str, Any], expect: Expectations) -> list[str]:
    problems = [] if data["exit_code"] == 0 else [f"last daemon exited {data['exit_code']}"]
    events = [e for proc in run.procs for e in proc.events()]
    crashes = [e["event"] for e in events if e.get("event") in CRASH_EVENTS or "exception" in e]
    problems += [f"crash event logged: {name}" for name in crashes]
    names = {e.get("event") for e in events}
    problems += [f"fault not reported: no {name} in the logs" for name in expect.loud
                 if name not in names]  # fmt: skip
    problems += ["traceback on stderr" for proc in run.procs if b"Traceback" in proc.stderr]
    return problems


def _check_rest(run: Chaos, data: dict[str, Any]) -> list[str]:
    stats, problems = data["stats"], []
    if stats["max_consecutive_login_failures"] > MAX_LOGIN_FAILURES_IN_A_ROW or stats["locked"]:
        problems.append(f"{stats['max_consecutive_login_failures']} failed logins in a row")
    if run.slack.violations:
        problems.append(f"{len(run.slack.violations)} posts before Retry-After elapsed")
    outbox = data["outbox"]
    if outbox["pending"] or outbox["failed"]:
        problems.append(f"outbox not settled: {dict(outbox)}")
    if not data["drained"]:
        problems.append("alerts did not drain before the deadline")
    return problems


def check(run: Chaos, data: dict[str, Any], expect: Expectations) -> dict[str, Any]:
    """Every invariant; the summary row with ``problems`` (empty when all hold)."""
    stats = data["stats"]
    sim = _sim_moves(run, stats)
    problems = _check_store(sim, data["store"])
    alert_problems, lost, duplicated = _check_alerts(run, sim, data["store"], expect)
    problems += alert_problems + _check_conditions(run, expect) + _check_metrics(run, data)
    problems += _check_processes(run, data, expect) + _check_rest(run, data)
    recorded = {(cid, f, t) for cid, _, f, t in data["store"]}
    posts = run.slack.posts
    return {
        "scenario": run.name,
        "faults": run.faults,
        "transitions": len(sim),
        "recorded": len(data["store"]),
        "alerts": sum(1 for m in _delivered_moves(run) if m in recorded),
        "lost": lost + sum(1 for m in sim if m not in recorded),
        "duplicated": duplicated,
        "cut_by_kill": len(run.cut),
        "conditions": {f"{c}:{s}": n for (c, s), n in _delivered_conditions(run).items()},
        "slack_posts": len(posts),
        "slack_refused": sum(1 for p in posts if not p.delivered),
        "api_faults": stats["faults_injected"],
        "oauth_tokens": stats["tokens_issued"],
        "sessions": stats["sessions_issued"],
        "max_failed_logins_in_a_row": stats["max_consecutive_login_failures"],
        **run.counters,
        "result": "pass" if not problems else "FAIL",
        "problems": problems,
    }
