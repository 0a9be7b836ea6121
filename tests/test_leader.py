"""The election on its own: two ``PgLeader`` against a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from pg_server import PgServer
from support import wait_for

from fotawatch.leader import SoleLeader, Timing
from fotawatch.pg_leader import LOCK_KEY, PgLeader

pytestmark = pytest.mark.external

FAST = Timing(takeover=3.0)  # checks every 0.4 s, 0.6 s timeout, retries every 0.4 s


@contextlib.asynccontextmanager
async def elected(leader: PgLeader) -> AsyncIterator[asyncio.Task[asyncio.Event]]:
    task = asyncio.ensure_future(leader.acquire())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await leader.close()


def holder(server: PgServer) -> list[str]:
    """application_name of the sessions holding the leader lock."""
    rows = server.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE l.locktype = 'advisory' AND l.granted"
        " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
        (LOCK_KEY,),
    )
    return [r[0] for r in rows]


def terminate(server: PgServer, name: str) -> None:
    server.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (f"fotawatch-leader {name}",),
    )


@contextlib.asynccontextmanager
async def a_leads_b_waits(
    dsn: str,
) -> AsyncIterator[tuple[PgLeader, PgLeader, asyncio.Event, asyncio.Task[asyncio.Event]]]:
    """``a`` leads (its term's ``lost`` event), then ``b`` connects and keeps trying (its
    ``acquire`` task)."""
    a, b = PgLeader(dsn, FAST, name="a"), PgLeader(dsn, FAST, name="b")
    async with elected(a) as first:
        lost = await asyncio.wait_for(first, 10)
        async with elected(b) as second:
            await wait_for(lambda: b._conn is not None, 10, what="b connected and tried")
            yield a, b, lost, second


async def test_one_of_two_leads_and_the_other_takes_over_when_its_session_ends(
    pg_dsn: str, pg_server: PgServer
) -> None:
    async with a_leads_b_waits(pg_dsn) as (a, b, lost, second):
        assert (True, False, ["fotawatch-leader a"]) == (a.leader, second.done(), holder(pg_server))

        terminate(pg_server, "a")
        cut = time.monotonic()
        await asyncio.wait_for(lost.wait(), 10)
        stepped_down = time.monotonic() - cut
        await asyncio.wait_for(second, 10)

        assert stepped_down < FAST.check_interval, "a socket close ends the term at once"
        assert (False, True, 2) == (a.leader, b.leader, a.changes)
        assert ["fotawatch-leader b"] == holder(pg_server)


async def test_a_leader_that_stepped_down_lets_a_waiting_follower_win(
    pg_dsn: str, pg_server: PgServer
) -> None:
    """After losing its session, the old leader waits rejoin_delay: the follower leads."""
    async with a_leads_b_waits(pg_dsn) as (a, b, lost, second):
        terminate(pg_server, "a")
        await asyncio.wait_for(lost.wait(), 10)
        again = asyncio.ensure_future(a.acquire())
        try:
            await asyncio.wait_for(second, 10)
            assert (True, False) == (b.leader, again.done())
        finally:
            again.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await again


async def test_an_unreachable_database_is_retried_and_reported_without_the_password(
    pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """No server on the port: the follower keeps trying and says so, never with the password."""
    dsn = f"postgresql://fotawatch:{pg_server.password}@127.0.0.1:1/none"
    leader = PgLeader(dsn, FAST, name="x")
    async with elected(leader) as attempt:
        await wait_for(lambda: leader._unreachable, 10, what="the first failure")
        assert (False, False) == (attempt.done(), leader.leader)
    out = capsys.readouterr().out
    assert ("leader_election_db_unreachable" in out, False) == (True, pg_server.password in out)


async def test_sole_leader_leads_at_once_and_for_ever() -> None:
    sole = SoleLeader()
    lost = await sole.acquire()
    assert (True, False, 1, False) == (sole.leader, lost.is_set(), sole.changes, sole.ha)
