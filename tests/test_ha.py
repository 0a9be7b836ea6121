"""Several instances on one PostgreSQL database: one leader, one Slack message per transition.

Real parts only: daemons as subprocesses (``python -m fotawatch run``), the simulator and a fake
Slack over loopback HTTP, a real PostgreSQL server (``tests/pg_server.py``). Campaigns move one
status per step and the driver waits until the database holds the new status, so every change
is one some leader could see; the checks then compare the simulator's moves, the transitions
table and what Slack received.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Self

import aiohttp
import psycopg
import pytest
from chaos.invariants import slack_transitions
from pg_server import PgServer
from prometheus_client.parser import text_string_to_metric_families
from support import ACCOUNT, DaemonProcess, stored_status, wait_for, write_config

from fotawatch.pg_leader import LOCK_KEY
from fotawatch.simulator import Scenario, Simulator
from fotawatch.testing.fake_slack import FakeSlack

pytestmark = [pytest.mark.slow, pytest.mark.external]

START = "CampaignRequestPending"
PATHS = (
    ("CampaignRequestQueued", "CampaignPreScheduled", "CampaignScheduled", "CampaignEnded"),
    ("CampaignRequestQueued", "CampaignScheduled", "CampaignFailed"),
    ("CampaignPreScheduled", "CampaignScheduled", "CampaignCancelled"),
)
IDS = [f"0000ha00-{i:04x}-4000-8000-00000000ha{i:02x}" for i in range(len(PATHS))]
TAKEOVER = 15.0  # the default ha.takeover_seconds: the promise under test
Move = tuple[str, str, str]


class Cluster:
    """The simulator, a fake Slack, one database and the daemons sharing it."""

    def __init__(self, tmp_path: Path, dsn: str, server: PgServer) -> None:
        self.tmp_path, self.dsn, self.server = tmp_path, dsn, server
        self.position = dict.fromkeys(IDS, -1)
        self.moves: list[Move] = []
        self.daemons: list[DaemonProcess] = []
        self.sqlite: Path | None = None  # the state file while a SQLite instance runs
        self.sim: Simulator
        self.slack: FakeSlack
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        scenario = {"campaigns": [{"account": ACCOUNT, "id": cid, "name": f"ha {i}",
                                   "status": START} for i, cid in enumerate(IDS)]}  # fmt: skip
        self.sim = await self._stack.enter_async_context(Simulator(Scenario.from_dict(scenario)))
        self.slack = await self._stack.enter_async_context(FakeSlack())
        return self

    async def __aexit__(self, *exc: object) -> None:
        for d in self.daemons:
            if d.proc is not None and d.proc.returncode is None:
                d.proc.kill()
                await d.wait()
        await self._stack.aclose()

    def config(self, name: str, *, state: dict[str, Any] | None = None) -> Path:
        directory = self.tmp_path / name
        directory.mkdir(exist_ok=True)
        alerts = {
            "slack": {"webhook_url": self.slack.url, "conditions": False},
            "stuck_after": dict.fromkeys((START, "CampaignRequestQueued", "CampaignPreScheduled")),
            "not_scheduled_by_start": False,
            "overdue_after": None,
        }
        campaigns = [
            {"account": ACCOUNT, "id": cid, "name": f"ha {i}"} for i, cid in enumerate(IDS)
        ]
        state = state or {"state_path": None, "state_dsn": self.dsn}
        return write_config(directory, self.sim.url, campaigns, alerts=alerts,
                            polling={"devices_interval_seconds": 0}, **state)  # fmt: skip

    async def start(self, name: str, *, state: dict[str, Any] | None = None) -> DaemonProcess:
        daemon = await DaemonProcess(self.config(name, state=state)).start()
        self.daemons.append(daemon)
        assert daemon.proc is not None
        proc = daemon.proc
        await wait_for(lambda: daemon.events("http_listening") or proc.returncode is not None,
                       20, what=f"{name} to listen")  # fmt: skip
        assert daemon.events("http_listening"), f"{name} did not start: {daemon.lines[-5:]}"
        return daemon

    # --- driving ------------------------------------------------------------------------------

    def stored(self) -> dict[str, str | None]:
        if self.sqlite is not None:  # a single instance before migrate-state
            return {cid: stored_status(self.sqlite, cid) for cid in IDS}
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute("SELECT campaign_id, status FROM campaigns").fetchall()
        return dict(rows)

    async def step(self, timeout: float = 30.0) -> dict[str, str]:
        """Move every campaign with statuses left one step; wait until the database has them."""
        moved = {}
        for i, cid in enumerate(IDS):
            if self.position[cid] + 1 < len(PATHS[i]):
                before = START if self.position[cid] < 0 else PATHS[i][self.position[cid]]
                self.position[cid] += 1
                moved[cid] = PATHS[i][self.position[cid]]
                self.moves.append((cid, before, moved[cid]))
                self.sim.set_status(ACCOUNT, cid, moved[cid])
        await self.wait_stored(moved, timeout)
        return moved

    async def wait_stored(self, expected: dict[str, str], timeout: float = 30.0) -> None:
        await wait_for(lambda: all(self.stored().get(c) == s for c, s in expected.items()),
                       timeout, what=f"the database to hold {expected}")  # fmt: skip

    async def finish(self) -> Counter[Move]:
        """Every remaining step of every lifecycle; then what Slack received, once it has all."""
        while any(self.position[c] + 1 < len(p) for c, p in zip(IDS, PATHS, strict=True)):
            await self.step()
        return await self.drained()

    # --- observing ----------------------------------------------------------------------------

    def delivered(self) -> Counter[Move]:
        return Counter(m for p in self.slack.posts if p.delivered for m in slack_transitions(p))

    async def drained(self, timeout: float = 30.0) -> Counter[Move]:
        """Every transition in Slack and every outbox row marked: a post Slack accepted but the
        sender had not yet marked is the one duplicate at-least-once allows (docs/ha.md), so
        a test that kills or freezes the leader waits for this first."""
        await wait_for(lambda: set(self.delivered()) >= set(self.moves) and not self.unmarked(),
                       timeout, what="every transition in Slack and marked")  # fmt: skip
        return self.delivered()

    def unmarked(self) -> int:
        """Outbox rows neither delivered nor failed."""
        query = "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL"
        if self.sqlite is not None:  # a single instance before migrate-state
            with contextlib.closing(sqlite3.connect(f"file:{self.sqlite}?mode=ro", uri=True)) as db:
                (count,) = db.execute(query).fetchone()
        else:
            with psycopg.connect(self.dsn) as conn:
                row = conn.execute(query).fetchone()
                count = row[0] if row else 0
        return int(count)

    def recorded(self) -> list[tuple[str, int, str, str]]:
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute(
                "SELECT campaign_id, seq, coalesce(from_status, ''), to_status"
                " FROM transitions ORDER BY campaign_id, seq"
            ).fetchall()
        return [tuple(r) for r in rows]

    def leader_pid(self) -> int | None:
        """The server backend that holds the leader lock, if any."""
        rows = self.server.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND ((classid::bigint << 32) | objid::bigint) = %s",
            (LOCK_KEY,),
        )
        return rows[0][0] if rows else None


async def _get(daemon: DaemonProcess, path: str) -> tuple[int, str, dict[str, str]]:
    port = daemon.events("http_listening")[-1]["port"]
    timeout = aiohttp.ClientTimeout(total=3)  # a stopped process accepts, never answers
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
        f"http://127.0.0.1:{port}{path}"
    ) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def role(daemon: DaemonProcess) -> str:
    try:
        _, _, headers = await _get(daemon, "/readyz")
    except (aiohttp.ClientError, TimeoutError):
        return "down"
    return headers.get("Fotawatch-Role", "")


async def leaders(daemons: Sequence[DaemonProcess]) -> list[DaemonProcess]:
    alive = [d for d in daemons if d.proc is not None and d.proc.returncode is None]
    return [d for d in alive if await role(d) == "leader"]


async def one_leader(daemons: Sequence[DaemonProcess], timeout: float) -> DaemonProcess:
    found = await wait_for(lambda: _single(daemons), timeout, what="exactly one leader")
    assert isinstance(found, DaemonProcess)
    return found


async def _single(daemons: Sequence[DaemonProcess]) -> DaemonProcess | None:
    now = await leaders(daemons)
    return now[0] if len(now) == 1 else None


async def samples(daemon: DaemonProcess, name: str) -> list[tuple[dict[str, str], float]]:
    _, text, _ = await _get(daemon, "/metrics")
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def exactly_once(cluster: Cluster, delivered: Counter[Move]) -> None:
    """Every move the simulator made: recorded once, in order, and in Slack exactly once."""
    expected = {cid: [m for m in cluster.moves if m[0] == cid] for cid in IDS}
    recorded = cluster.recorded()
    for cid, moves in expected.items():
        rows = [r for r in recorded if r[0] == cid]
        assert [(cid, i + 1, frm, to) for i, (_, frm, to) in enumerate(moves)] == rows
    assert Counter(cluster.moves) == delivered


@contextlib.asynccontextmanager
async def cluster_of(
    tmp_path: Path, pg_dsn: str, pg_server: PgServer, count: int
) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path, pg_dsn, pg_server) as cluster:
        for i in range(count):
            await cluster.start(f"n{i}")
        await cluster.wait_stored(dict.fromkeys(IDS, START))
        yield cluster


async def test_three_instances_send_one_message_per_transition(
    tmp_path: Path, pg_dsn: str, pg_server: PgServer
) -> None:
    """One leader among three; the lifecycle reaches Slack once per transition; only the leader
    exports campaign series and /readyz names each role."""
    async with cluster_of(tmp_path, pg_dsn, pg_server, 3) as cluster:
        leader = await one_leader(cluster.daemons, TAKEOVER)
        delivered = await cluster.finish()

        followers = [d for d in cluster.daemons if d is not leader]
        exactly_once(cluster, delivered)
        assert [leader] == await leaders(cluster.daemons)
        assert [1.0, 0.0, 0.0] == [
            (await samples(d, "fotawatch_leader"))[0][1] for d in (leader, *followers)
        ]
        assert len(IDS) == sum(v for _, v in await samples(leader, "fotawatch_campaign_status"
                                                         ) if v == 1)  # fmt: skip
        assert [[], []] == [await samples(d, "fotawatch_campaign_status") for d in followers]
        status, body, _ = await _get(followers[0], "/readyz")
        assert (200, True) == (status, body.startswith("ready: follower"))
        assert [] == [d for d in followers if d.events("alert_delivered")]
        scraped = [(await _get(d, "/metrics"))[1] for d in cluster.daemons]
        for d in cluster.daemons:
            assert 0 == await d.stop()
        said = "\n".join([*scraped, *(line for d in cluster.daemons for line in d.lines),
                          *(d.stderr.decode(errors="replace") for d in cluster.daemons)])
        assert (False, False) == (pg_server.password in said, pg_dsn in said)


async def test_kill_9_of_the_leader_hands_over_within_the_bound(
    tmp_path: Path, pg_dsn: str, pg_server: PgServer
) -> None:
    """The leader dies mid-lifecycle; a follower leads within the takeover bound, sees the
    changes made while nobody led, and every transition reaches Slack exactly once."""
    async with cluster_of(tmp_path, pg_dsn, pg_server, 3) as cluster:
        leader = await one_leader(cluster.daemons, TAKEOVER)
        await cluster.step()
        await cluster.drained()

        await leader.kill()
        killed_at = time.monotonic()
        moved = {cid: PATHS[i][1] for i, cid in enumerate(IDS)}  # changed while nobody leads
        for i, cid in enumerate(IDS):
            cluster.position[cid] += 1
            cluster.moves.append((cid, PATHS[i][0], moved[cid]))
            cluster.sim.set_status(ACCOUNT, cid, moved[cid])
        survivors = [d for d in cluster.daemons if d is not leader]
        new_leader = await one_leader(survivors, TAKEOVER + 5)
        takeover = time.monotonic() - killed_at
        await cluster.wait_stored(moved)
        delivered = await cluster.finish()

        print(f"kill -9: another instance led after {takeover:.1f} s")  # docs/ha.md (pytest -s)
        assert takeover <= TAKEOVER, f"takeover took {takeover:.1f} s"
        assert new_leader.events("leadership_acquired")
        exactly_once(cluster, delivered)


async def test_a_leader_cut_off_from_the_database_stops_and_another_leads(
    tmp_path: Path, pg_dsn: str, pg_server: PgServer
) -> None:
    """pg_terminate_backend on the leader's lock session: it steps down within the bound and
    polls no more; another instance leads; nothing is lost or repeated."""
    async with cluster_of(tmp_path, pg_dsn, pg_server, 3) as cluster:
        leader = await one_leader(cluster.daemons, TAKEOVER)
        await cluster.step()
        await cluster.drained()
        pid = cluster.leader_pid()
        assert pid is not None

        cluster.server.execute("SELECT pg_terminate_backend(%s)", (pid,))
        cut_at = time.monotonic()
        await leader.wait_event("leadership_lost", timeout=TAKEOVER)
        stopped = time.monotonic() - cut_at
        others = [d for d in cluster.daemons if d is not leader]
        new_leader = await one_leader(others, TAKEOVER)
        assert await role(leader) == "follower"
        polls_then = sum(v for _, v in await samples(leader, "fotawatch_polls_total"))
        delivered = await cluster.finish()
        polls_after = sum(v for _, v in await samples(leader, "fotawatch_polls_total"))

        print(f"pg_terminate_backend: the leader stepped down after {stopped:.1f} s")
        assert stopped <= TAKEOVER, f"the old leader stopped after {stopped:.1f} s"
        assert (polls_then, True) == (polls_after, new_leader is not leader)
        exactly_once(cluster, delivered)
        lost = leader.events("leadership_lost")[0]
        assert (True, False) == (
            "closed the connection" in lost["reason"], pg_server.password in str(lost)
        ), lost


async def test_a_frozen_leader_loses_the_lock_and_steps_down_when_it_wakes(
    tmp_path: Path, pg_dsn: str, pg_server: PgServer
) -> None:
    """SIGSTOP: the leader's kernel still answers TCP keepalives, but its silent session is
    dropped (idle_session_timeout) and a follower leads within the bound; on SIGCONT the old
    leader notices at once and follows; nothing is lost or repeated."""
    async with cluster_of(tmp_path, pg_dsn, pg_server, 2) as cluster:
        leader = await one_leader(cluster.daemons, TAKEOVER)
        await cluster.step()
        await cluster.drained()

        leader.signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            (follower,) = [d for d in cluster.daemons if d is not leader]
            await wait_for(lambda: _is_leader(follower), TAKEOVER + 5, what="a new leader")
            takeover = time.monotonic() - frozen_at
            await cluster.step()
        finally:
            leader.signal(signal.SIGCONT)
        await leader.wait_event("leadership_lost", timeout=TAKEOVER)
        assert "follower" == await role(leader)
        delivered = await cluster.finish()

        print(f"SIGSTOP: another instance led after {takeover:.1f} s")
        assert takeover <= TAKEOVER, f"takeover took {takeover:.1f} s"
        exactly_once(cluster, delivered)


async def _is_leader(daemon: DaemonProcess) -> bool:
    return await role(daemon) == "leader"


async def test_migrate_state_carries_a_sqlite_instance_over_without_repeats(
    tmp_path: Path, pg_dsn: str, pg_server: PgServer
) -> None:
    """Half a lifecycle on SQLite, `fotawatch migrate-state`, the rest on PostgreSQL: Slack
    hears each transition once and the sequence numbers carry on."""
    async with Cluster(tmp_path, pg_dsn, pg_server) as cluster:
        db = cluster.sqlite = tmp_path / "single" / "state.db"
        single = await cluster.start("single", state={"state_path": str(db)})
        await cluster.wait_stored(dict.fromkeys(IDS, START))
        await cluster.step()
        await cluster.drained()
        assert 0 == await single.stop()

        migrated = subprocess.run(
            [sys.executable, "-m", "fotawatch", "migrate-state", "--from", str(db), "--to", pg_dsn],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        cluster.sqlite = None
        assert (0, "") == (migrated.returncode, migrated.stderr)
        assert pg_server.password not in migrated.stdout
        await cluster.start("ha")
        delivered = await cluster.finish()

        exactly_once(cluster, delivered)
