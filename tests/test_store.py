"""The stores: one suite run against every backend, then what only SQLite or PostgreSQL show.

The PostgreSQL cases need a server (``tests/pg_server.py``): without one they skip locally and
fail under CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sqlite3
import stat
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pg_server import PgServer, free_port
from psycopg.conninfo import conninfo_to_dict

from fotawatch.devices import DeviceCounts
from fotawatch.errors import StoreError
from fotawatch.model import Campaign, CampaignKey, CampaignStatus, Transition, TransitionKind
from fotawatch.store.base import DevicePollRecord, DiscoveredRecord, OutboxMessage, PollRecord
from fotawatch.store.memory import MemoryStore
from fotawatch.store.migrate import migrate_state
from fotawatch.store.pg_schema import SCHEMA_VERSION as PG_SCHEMA_VERSION
from fotawatch.store.postgres import PostgresStore, open_pg_store
from fotawatch.store.schema import MIGRATIONS, SCHEMA_VERSION
from fotawatch.store.sqlite import SqliteStore, open_store

S = CampaignStatus
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
ACCOUNT = "0000123456-00001"
KEY = CampaignKey(account=ACCOUNT, campaign_id="c1")
OTHER = CampaignKey(account="0000999999-00001", campaign_id="c1")

AnyStore = SqliteStore | MemoryStore | PostgresStore


def at(minute: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute)


def campaign(status: str, key: CampaignKey = KEY) -> Campaign:
    return Campaign(
        account=key.account, campaign_id=key.campaign_id, status=status, name="fw 2.1",
        start_date=dt.date(2024, 5, 1),
    )  # fmt: skip


def ok(
    status: str, minute: float, key: CampaignKey = KEY, transition: Transition | None = None
) -> PollRecord:
    return PollRecord(
        key=key, polled_at=at(minute), result="ok", campaign=campaign(status, key),
        transition=transition,
    )  # fmt: skip


def failed(minute: float, result: str = "timeout", *, missing: bool = False) -> PollRecord:
    return PollRecord(key=KEY, polled_at=at(minute), result=result, missing=missing)


def change(seq: int, frm: str | None, to: str, minute: float, key: CampaignKey = KEY) -> Transition:
    return Transition(
        key=key, seq=seq, from_status=frm, to_status=to, kind=TransitionKind.PROGRESSED,
        observed_at=at(minute), campaign=campaign(to, key),
    )  # fmt: skip


def message(
    dedup_key: str, minute: float = 0, sink: str = "slack", payload: dict[str, Any] | None = None
) -> OutboxMessage:
    body = {"event": "transition", "key": dedup_key} if payload is None else payload
    return OutboxMessage(sink=sink, dedup_key=dedup_key, payload=body, created_at=at(minute))


@pytest.fixture(params=["sqlite", "memory", pytest.param("postgres", marks=pytest.mark.external)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AnyStore]:
    backend: AnyStore
    if request.param == "sqlite":
        backend = await SqliteStore.open(tmp_path / "state.db")
    elif request.param == "postgres":  # the server starts only when a postgres test runs
        backend = await PostgresStore.open(request.getfixturevalue("pg_dsn"))
    else:
        backend = MemoryStore()
    yield backend
    await backend.close()


# --- campaign state ---------------------------------------------------------------------------


async def test_first_sight_sets_status_since(store: AnyStore) -> None:
    """The first successful poll stores the snapshot and starts status_since at its time."""
    await store.record([ok(S.REQUEST_PENDING, 0)])
    record = await store.get(KEY)
    assert record is not None
    assert campaign(S.REQUEST_PENDING) == record.campaign
    assert (S.REQUEST_PENDING, at(0), at(0), at(0)) == (
        record.status, record.status_since, record.last_poll_at, record.last_success_at,
    )  # fmt: skip
    assert (record.last_poll_result, record.missing, record.last_seq) == ("ok", False, 0)


async def test_unchanged_status_keeps_status_since(store: AnyStore) -> None:
    """Another poll in the same status moves last_poll_at but not status_since."""
    await store.record([ok(S.REQUEST_PENDING, 0)])
    await store.record([ok(S.REQUEST_PENDING, 5)])
    record = await store.get(KEY)
    assert record is not None
    assert (at(0), at(5)) == (record.status_since, record.last_poll_at)


async def test_changed_status_moves_status_since(store: AnyStore) -> None:
    """A new status restarts status_since at the poll that saw it."""
    await store.record([ok(S.REQUEST_PENDING, 0)])
    await store.record([ok(S.SCHEDULED, 5)])
    record = await store.get(KEY)
    assert record is not None
    assert (S.SCHEDULED, at(5)) == (record.status, record.status_since)


async def test_times_round_trip_exactly_as_utc(store: AnyStore) -> None:
    """A datetime in any zone comes back as the same aware instant, to the microsecond."""
    tokyo = at(0).astimezone(dt.timezone(dt.timedelta(hours=9)))
    await store.record([PollRecord(key=KEY, polled_at=tokyo, result="timeout")])
    record = await store.get(KEY)
    assert record is not None
    assert record.last_poll_at == at(0)
    assert record.last_poll_at.tzinfo is not None


async def test_failed_poll_keeps_snapshot(store: AnyStore) -> None:
    """A failed poll updates only last_poll_at and last_poll_result."""
    await store.record([ok(S.REQUEST_PENDING, 0)])
    await store.record([failed(5, "http_5xx")])
    record = await store.get(KEY)
    assert record is not None
    assert campaign(S.REQUEST_PENDING) == record.campaign
    assert (S.REQUEST_PENDING, at(0), at(0)) == (
        record.status, record.status_since, record.last_success_at,
    )  # fmt: skip
    assert (at(5), "http_5xx") == (record.last_poll_at, record.last_poll_result)


async def test_failed_poll_of_unseen_campaign_has_no_status(store: AnyStore) -> None:
    """A campaign whose first poll failed is known, without snapshot, status or success."""
    await store.record([failed(0)])
    record = await store.get(KEY)
    assert record is not None
    assert (
        record.campaign, record.status, record.status_since, record.last_success_at,
    ) == (None, None, None, None)  # fmt: skip
    assert (at(0), "timeout", 0) == (record.last_poll_at, record.last_poll_result, record.last_seq)


async def test_missing_flag_follows_polls(store: AnyStore) -> None:
    """A failed poll sets missing as told; the next successful poll clears it."""
    await store.record([ok(S.SCHEDULED, 0), failed(5, "missing", missing=True)])
    record = await store.get(KEY)
    assert record is not None
    assert (record.missing, record.status) == (True, S.SCHEDULED)
    await store.record([ok(S.SCHEDULED, 10)])
    record = await store.get(KEY)
    assert record is not None
    assert record.missing is False


async def test_burst_applies_polls_in_order(store: AnyStore) -> None:
    """Within one burst the later poll of a campaign wins, whatever mix of results."""
    await store.record([failed(0), ok(S.REQUEST_PENDING, 5)])
    first = await store.get(KEY)
    await store.record([ok(S.REQUEST_PENDING, 10), failed(15, "timeout")])
    second = await store.get(KEY)
    assert first is not None
    assert second is not None
    assert (at(5), "ok") == (first.last_poll_at, first.last_poll_result)
    assert (at(15), "timeout", at(10)) == (
        second.last_poll_at, second.last_poll_result, second.last_success_at,
    )  # fmt: skip


def confirmed(minute: float, seen: Campaign | None = None) -> PollRecord:
    """A poll that read the stored campaign; ``seen`` is what it carries (never written)."""
    seen = campaign(S.REQUEST_PENDING) if seen is None else seen
    return PollRecord(key=KEY, polled_at=at(minute), result="ok", campaign=seen, confirms=True)


async def test_confirmation_writes_only_the_poll_times(store: AnyStore) -> None:
    """A confirmation moves the poll times and clears missing, in burst order; the snapshot,
    status and status_since stay as stored, whatever campaign the record carries."""
    await store.record([ok(S.REQUEST_PENDING, 0), failed(3, "missing", missing=True)])
    elsewhere = replace(campaign(S.SCHEDULED), name="never written")
    await store.record([confirmed(5, elsewhere), failed(7, "timeout"), confirmed(9)])
    record = await store.get(KEY)
    assert record is not None
    assert campaign(S.REQUEST_PENDING) == record.campaign
    assert (S.REQUEST_PENDING, at(0)) == (record.status, record.status_since)
    assert (at(9), "ok", at(9), False) == (
        record.last_poll_at, record.last_poll_result, record.last_success_at, record.missing,
    )  # fmt: skip
    await store.record([confirmed(11), failed(13, "http_5xx")])
    record = await store.get(KEY)
    assert record is not None
    assert (at(13), "http_5xx", at(11)) == (
        record.last_poll_at, record.last_poll_result, record.last_success_at,
    )  # fmt: skip


async def test_confirmation_of_a_campaign_not_stored_makes_no_row(store: AnyStore) -> None:
    """A confirmation buffered while its campaign was forgotten does not bring it back."""
    await store.record([ok(S.REQUEST_PENDING, 0)])
    await store.forget(KEY)
    await store.record([confirmed(5)])
    assert await store.get(KEY) is None
    assert {} == await store.load()


async def test_load_returns_every_campaign(store: AnyStore) -> None:
    """load() is the baseline at start-up: every campaign by key."""
    await store.record([ok(S.REQUEST_PENDING, 0), ok(S.SCHEDULED, 0, key=OTHER)])
    records = await store.load()
    assert {KEY, OTHER} == set(records)
    assert records[OTHER].status == S.SCHEDULED


async def test_get_unknown_campaign_is_none(store: AnyStore) -> None:
    """A campaign never recorded has no record."""
    assert await store.get(KEY) is None


# --- transitions ----------------------------------------------------------------------------


async def test_transition_recorded_once(store: AnyStore) -> None:
    """Recording the same transition twice stores it once and reports it only the first time."""
    t1 = change(1, S.REQUEST_PENDING, S.SCHEDULED, 5)
    first = await store.record([ok(S.SCHEDULED, 5, transition=t1)])
    second = await store.record([ok(S.SCHEDULED, 5, transition=t1)])
    assert ([t1], []) == (first, second)
    assert [t1] == await store.transitions("c1")


async def test_last_seq_is_highest_recorded_seq(store: AnyStore) -> None:
    """last_seq follows newly recorded transitions and never goes back."""
    t1 = change(1, S.REQUEST_PENDING, S.PRE_SCHEDULED, 5)
    t2 = change(2, S.PRE_SCHEDULED, S.SCHEDULED, 10)
    await store.record([ok(S.PRE_SCHEDULED, 5, transition=t1)])
    await store.record([ok(S.SCHEDULED, 10, transition=t2)])
    await store.record([ok(S.SCHEDULED, 15, transition=t1)])
    record = await store.get(KEY)
    assert record is not None
    assert record.last_seq == 2


async def test_transition_keeps_its_snapshot(store: AnyStore) -> None:
    """A transition comes back with its fields and the campaign as it was seen."""
    t1 = change(1, None, S.FAILED, 0)
    await store.record([ok(S.FAILED, 0, transition=t1)])
    (loaded,) = await store.transitions("c1", account=ACCOUNT)
    assert t1 == loaded
    assert (campaign(S.FAILED), None) == (loaded.campaign, loaded.from_status)


async def test_transitions_oldest_first_and_limit_keeps_the_last(store: AnyStore) -> None:
    """Transitions come oldest first; a limit keeps the most recent ones, still oldest first."""
    t1 = change(1, S.REQUEST_PENDING, S.REQUEST_QUEUED, 1)
    t2 = change(2, S.REQUEST_QUEUED, S.PRE_SCHEDULED, 2)
    t3 = change(3, S.PRE_SCHEDULED, S.SCHEDULED, 3)
    await store.record([ok(S.SCHEDULED, 3, transition=t) for t in (t3, t1, t2)])
    assert [t1, t2, t3] == await store.transitions("c1")
    assert [t2, t3] == await store.transitions("c1", limit=2)
    assert await store.transitions("c1", limit=0) == []


async def test_transitions_filtered_by_account(store: AnyStore) -> None:
    """The same campaign id in two accounts: both without a filter, one with it."""
    mine = change(1, S.REQUEST_PENDING, S.SCHEDULED, 1)
    theirs = change(1, S.REQUEST_PENDING, S.ENDED, 2, key=OTHER)
    await store.record([ok(S.ENDED, 2, OTHER, theirs), ok(S.SCHEDULED, 1, transition=mine)])
    assert [mine, theirs] == await store.transitions("c1")
    assert [theirs] == await store.transitions("c1", account=OTHER.account)
    assert await store.transitions("c2") == []


async def test_forget_drops_state_not_history(store: AnyStore) -> None:
    """forget() removes the campaign's record but keeps its transitions."""
    t1 = change(1, S.REQUEST_PENDING, S.SCHEDULED, 5)
    await store.record([ok(S.SCHEDULED, 5, transition=t1)])
    await store.forget(KEY)
    assert (await store.get(KEY), await store.load()) == (None, {})
    assert [t1] == await store.transitions("c1")


async def test_returning_campaign_continues_its_seq(store: AnyStore) -> None:
    """A forgotten campaign seen again starts from its recorded history's last seq."""
    t1 = change(1, S.REQUEST_PENDING, S.SCHEDULED, 5)
    await store.record([ok(S.SCHEDULED, 5, transition=t1)])
    await store.forget(KEY)
    await store.record([ok(S.SCHEDULED, 60)])
    record = await store.get(KEY)
    assert record is not None
    assert (1, at(60)) == (record.last_seq, record.status_since)


# --- outbox ---------------------------------------------------------------------------------


async def test_record_writes_outbox_rows(store: AnyStore) -> None:
    """Outbox rows of a burst are due at once, with no attempts yet."""
    t1 = change(1, S.REQUEST_PENDING, S.SCHEDULED, 5)
    body = {"event": "transition", "seq": 1, "to": ["a", {"b": None}]}
    await store.record([ok(S.SCHEDULED, 5, transition=t1)], [message("c1#1", 5, payload=body)])
    (row,) = await store.outbox_due("slack", at(5), 10)
    assert ("slack", "c1#1", body) == (row.sink, row.dedup_key, row.payload)
    assert (at(5), at(5), 0) == (row.created_at, row.next_attempt_at, row.attempts)


async def test_outbox_dedup_by_sink_and_key(store: AnyStore) -> None:
    """A (sink, dedup_key) pair is stored once; the same key for another sink is a new row."""
    assert await store.enqueue([message("k1"), message("k1", sink="webhook")]) == 2
    assert await store.enqueue([message("k1", minute=9)]) == 0
    await store.record([ok(S.REQUEST_PENDING, 0)], [message("k1", minute=9)])
    rows = await store.outbox_rows()
    assert [("slack", at(0)), ("webhook", at(0))] == [(r["sink"], r["created_at"]) for r in rows]


async def test_failed_record_writes_nothing(store: AnyStore) -> None:
    """A burst that cannot be stored leaves no campaign, transition or outbox row behind."""
    t1 = change(1, None, S.FAILED, 0)
    bad = message("c1#1", payload={"when": object()})
    with pytest.raises(StoreError, match="record polls"):
        await store.record([ok(S.FAILED, 0, transition=t1)], [message("ok"), bad])
    assert (
        await store.get(KEY), await store.transitions("c1"), await store.outbox_rows(),
    ) == (None, [], [])  # fmt: skip


async def test_outbox_due_by_sink_time_and_limit(store: AnyStore) -> None:
    """Due rows: this sink only, next attempt not in the future, oldest id first, up to limit."""
    await store.enqueue(
        [message("a", 0), message("b", 1), message("c", 9), message("x", 0, "hook")]
    )
    assert [r.dedup_key for r in await store.outbox_due("slack", at(5), 10)] == ["a", "b"]
    assert [r.dedup_key for r in await store.outbox_due("slack", at(5), 1)] == ["a"]


async def test_outbox_retry_postpones_and_counts(store: AnyStore) -> None:
    """A retried row is not due before its new time, then comes back with one more attempt."""
    await store.enqueue([message("a", 0)])
    (row,) = await store.outbox_due("slack", at(0), 10)
    await store.outbox_retry([row.id], at(10))
    assert await store.outbox_due("slack", at(9), 10) == []
    (again,) = await store.outbox_due("slack", at(10), 10)
    assert (row.id, 1, at(10)) == (again.id, again.attempts, again.next_attempt_at)
    assert await store.outbox_depth("slack") == 1


async def test_delivered_rows_never_return(store: AnyStore) -> None:
    """A delivered row is never due again, not even after a stray retry."""
    await store.enqueue([message("a", 0), message("b", 0)])
    first, second = await store.outbox_due("slack", at(0), 10)
    await store.outbox_delivered([first.id], at(1))
    await store.outbox_retry([first.id], at(2))
    assert [second.id] == [r.id for r in await store.outbox_due("slack", at(99), 10)]
    assert await store.outbox_depth("slack") == 1


async def test_failed_rows_kept_but_never_due(store: AnyStore) -> None:
    """A row given up on stays for inspection with its reason and leaves the depth."""
    await store.enqueue([message("a", 0)])
    (row,) = await store.outbox_due("slack", at(0), 10)
    await store.outbox_failed([row.id], "http_4xx", at(3))
    assert await store.outbox_due("slack", at(99), 10) == []
    assert await store.outbox_depth("slack") == 0
    (kept,) = await store.outbox_rows("slack")
    assert ("failed", "http_4xx", at(3)) == (kept["state"], kept["fail_reason"], kept["failed_at"])


async def test_outbox_rows_show_each_state(store: AnyStore) -> None:
    """outbox_rows lists every row of a sink in id order with its state."""
    await store.enqueue([message("a"), message("b"), message("c"), message("d", sink="hook")])
    a, b, _ = await store.outbox_due("slack", at(0), 10)
    await store.outbox_delivered([a.id], at(1))
    await store.outbox_failed([b.id], "too old", at(1))
    rows = await store.outbox_rows("slack")
    assert [(r["dedup_key"], r["state"]) for r in rows] == [
        ("a", "delivered"),
        ("b", "failed"),
        ("c", "pending"),
    ]
    assert (at(1), None) == (rows[0]["delivered_at"], rows[2]["delivered_at"])


async def test_outbox_oldest_pending(store: AnyStore) -> None:
    """The backlog's age is the creation time of the oldest row still pending."""
    assert await store.outbox_oldest_pending("slack") is None
    await store.enqueue([message("a", 1), message("b", 2)])
    (row, _) = await store.outbox_due("slack", at(5), 10)
    await store.outbox_delivered([row.id], at(5))
    assert at(2) == await store.outbox_oldest_pending("slack")


# --- delivery claims (every backend) --------------------------------------------------------


async def states(store: AnyStore) -> dict[str, tuple[str, int]]:
    """Each outbox row's state and attempts by dedup key."""
    return {r["dedup_key"]: (r["state"], r["attempts"]) for r in await store.outbox_rows()}


async def test_claim_marks_take_effect_when_the_block_ends(store: AnyStore) -> None:
    """A claim holds what outbox_due returns; its marks show only after the block."""
    await store.enqueue([message("a", 0), message("b", 1), message("c", 2), message("late", 9),
                         message("x", 0, "hook")])  # fmt: skip
    due = await store.outbox_due("slack", at(5), 10)
    async with store.outbox_claim("slack", at(5), 10) as claim:
        assert due == claim.rows
        a, b, c = (r.id for r in claim.rows)
        await claim.delivered([a], at(6))
        await claim.retry([b], at(20))
        await claim.failed([c], "http_4xx", at(6))
        assert {("pending", 0)} == set((await states(store)).values())
    assert {
        "a": ("delivered", 0), "b": ("pending", 1), "c": ("failed", 0), "late": ("pending", 0),
        "x": ("pending", 0),
    } == await states(store)  # fmt: skip
    (kept,) = await store.outbox_rows("hook")
    assert kept["delivered_at"] is None


async def test_claim_respects_the_limit(store: AnyStore) -> None:
    """A claim takes at most ``limit`` rows, oldest first."""
    await store.enqueue([message("a"), message("b"), message("c")])
    async with store.outbox_claim("slack", at(0), 2) as claim:
        assert ["a", "b"] == [r.dedup_key for r in claim.rows]


async def test_claim_that_raises_leaves_every_row_pending(store: AnyStore) -> None:
    """A block that fails undoes its marks: the rows are claimed again, unchanged."""
    await store.enqueue([message("a"), message("b")])

    async def crash_mid_send() -> None:
        async with store.outbox_claim("slack", at(0), 10) as claim:
            await claim.delivered([claim.rows[0].id], at(1))
            await claim.retry([claim.rows[1].id], at(5))
            raise RuntimeError("send crashed")

    with pytest.raises(RuntimeError, match="send crashed"):
        await crash_mid_send()
    assert {"a": ("pending", 0), "b": ("pending", 0)} == await states(store)
    async with store.outbox_claim("slack", at(0), 10) as again:
        assert ["a", "b"] == [r.dedup_key for r in again.rows]


async def test_open_claims_never_share_a_row(store: AnyStore) -> None:
    """While one claim holds rows another claim skips them; unmarked, they come back after."""
    await store.enqueue([message(k) for k in "abcd"])
    async with (
        store.outbox_claim("slack", at(0), 2) as first,
        store.outbox_claim("slack", at(0), 10) as second,
    ):
        assert (["a", "b"], ["c", "d"]) == (
            [r.dedup_key for r in first.rows], [r.dedup_key for r in second.rows],
        )  # fmt: skip
        await second.delivered([r.id for r in second.rows], at(1))
    async with store.outbox_claim("slack", at(0), 10) as third:
        assert ["a", "b"] == [r.dedup_key for r in third.rows]


async def test_delivered_row_is_never_claimed_again(store: AnyStore) -> None:
    """A row marked delivered through a claim is not in any later claim."""
    await store.enqueue([message("a")])
    async with store.outbox_claim("slack", at(0), 10) as claim:
        await claim.delivered([r.id for r in claim.rows], at(1))
    async with store.outbox_claim("slack", at(99), 10) as later:
        assert later.rows == []
    assert 0 == await store.outbox_depth("slack")


async def test_claim_marks_only_its_own_rows(store: AnyStore) -> None:
    """Ids outside the claim are ignored: another instance may hold them."""
    await store.enqueue([message("a"), message("b")])
    a, b = await store.outbox_due("slack", at(0), 10)
    async with store.outbox_claim("slack", at(0), 1) as claim:
        await claim.delivered([a.id, b.id], at(1))
    assert {"a": ("delivered", 0), "b": ("pending", 0)} == await states(store)


async def test_cancelled_claim_leaves_its_rows_pending(store: AnyStore) -> None:
    """A sender cancelled mid-send (shutdown) leaves its rows for the next claim."""
    await store.enqueue([message("a")])
    sending = asyncio.Event()

    async def send_forever() -> None:
        async with store.outbox_claim("slack", at(0), 10) as claim:
            await claim.delivered([r.id for r in claim.rows], at(1))
            sending.set()
            await asyncio.Event().wait()  # a send that never returns

    task = asyncio.create_task(send_forever())
    await sending.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert {"a": ("pending", 0)} == await states(store)
    async with store.outbox_claim("slack", at(0), 10) as again:
        assert ["a"] == [r.dedup_key for r in again.rows]


async def test_payloads_round_trip_exactly(store: AnyStore) -> None:
    """Any JSON payload comes back equal: NUL, lone surrogates, big ints, floats, unicode."""
    body = {"nul": "a\x00b", "lone": "\ud800", "emoji": "\U0001f680 ü", "big": 2**63 - 1,
            "float": 0.1, "tiny": 5e-324, "nested": [{"z": 1, "a": [None, True]}],
            "": ""}  # fmt: skip
    await store.enqueue([message("a", payload=body)])
    (row,) = await store.outbox_due("slack", at(0), 10)
    assert body == row.payload


# --- SQLite only ----------------------------------------------------------------------------


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the file, closed afterwards."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        yield conn


async def test_state_survives_restart(tmp_path: Path) -> None:
    """Campaigns, history and outbox are there after close and reopen: the restart baseline."""
    path = tmp_path / "state.db"
    t1 = change(1, S.REQUEST_PENDING, S.SCHEDULED, 5)
    async with await SqliteStore.open(path) as store:
        await store.record([ok(S.SCHEDULED, 5, transition=t1)], [message("c1#1", 5)])
        before = (await store.load(), await store.outbox_rows())
    async with open_store(path) as store:
        after = (await store.load(), await store.outbox_rows())
        assert [t1] == await store.transitions("c1")
    assert before == after


async def test_files_are_private(tmp_path: Path) -> None:
    """The db is created 0600 in a new directory and its WAL files are not readable by others."""
    path = tmp_path / "state" / "state.db"
    old = os.umask(0)
    try:
        async with open_store(path) as store:
            await store.record([ok(S.SCHEDULED, 0)])
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.glob("state.db*")}
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert modes.pop("state.db") == 0o600
    assert {"state.db-wal", "state.db-shm"} <= set(modes)
    assert all(mode & 0o007 == 0 for mode in modes.values())


async def test_wal_and_durability_pragmas(tmp_path: Path) -> None:
    """The file is in WAL mode; the store's connection syncs fully and enforces foreign keys."""
    path = tmp_path / "state.db"
    async with open_store(path) as store:
        conn = store._conn
        pragmas = [
            conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("synchronous", "foreign_keys")
        ]
        with raw(path) as other:
            (mode,) = other.execute("PRAGMA journal_mode").fetchone()
            (version,) = other.execute("PRAGMA user_version").fetchone()
    assert (mode, pragmas, version) == ("wal", [2, 1], SCHEMA_VERSION)


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A db written by a newer fotawatch is not opened."""
    path = tmp_path / "state.db"
    await (await SqliteStore.open(path)).close()
    with raw(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    expected = f"schema version 99 is newer than this fotawatch supports \\({SCHEMA_VERSION}\\)"
    with pytest.raises(StoreError, match=expected):
        await SqliteStore.open(path)


async def test_sqlite_error_rolls_back_and_hides_data(tmp_path: Path) -> None:
    """An error inside the transaction undoes the burst; the message names op and file only."""
    path = tmp_path / "state.db"
    async with open_store(path) as store:
        with raw(path) as conn:
            conn.execute(
                "CREATE TRIGGER no_alerts BEFORE INSERT ON outbox"
                " BEGIN SELECT RAISE(ABORT, 'trigger-text'); END"
            )
        t1 = change(1, None, S.FAILED, 0)
        with pytest.raises(StoreError) as caught:
            await store.record([ok(S.FAILED, 0, transition=t1)], [message("secret-key-42")])
        assert (await store.get(KEY), await store.transitions("c1")) == (None, [])
    text = str(caught.value)
    assert str(path) in text
    assert "record polls" in text
    assert not any(word in text for word in ("secret-key-42", "trigger-text", ACCOUNT))


async def test_not_a_database_is_store_error(tmp_path: Path) -> None:
    """A file that is not SQLite fails to open with a StoreError naming it."""
    path = tmp_path / "state.db"
    path.write_bytes(b"not a database " * 512)
    with pytest.raises(StoreError, match=r"state\.db: cannot configure: SQLITE_NOTADB"):
        await SqliteStore.open(path)


async def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    """close() may be called twice; using a closed store is a StoreError."""
    store = await SqliteStore.open(tmp_path / "state.db")
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="cannot load campaigns"):
        await store.load()


# --- device progress and discovery (both backends) -------------------------------------------


def counts(minute: float, *pairs: tuple[str, int], status: str = S.SCHEDULED) -> DeviceCounts:
    total = sum(n for _, n in pairs)
    return DeviceCounts(key=KEY, polled_at=at(minute), campaign_status=status,
                        counts=tuple(sorted(pairs)), reported_total=total)  # fmt: skip


def device_poll(
    minute: float, changed: dict[str, str], removed: tuple[str, ...] = (), *, final: bool = False
) -> DevicePollRecord:
    pairs = tuple(sorted(Counter(changed.values()).items()))
    return DevicePollRecord(counts=counts(minute, *pairs), changed=changed, removed=removed,
                            forget_devices=final)  # fmt: skip


async def test_device_poll_keeps_counts_and_each_devices_last_status(store: AnyStore) -> None:
    """A device poll stores its counts and the changed devices; removed devices go."""
    await store.record_devices(device_poll(0, {"1": "UpgradePending", "2": "UpgradePending"}),
                               keep=10)  # fmt: skip
    await store.record_devices(device_poll(5, {"1": "UpgradeSuccess"}, ("2",)), keep=10)
    assert {"1": "UpgradeSuccess"} == await store.device_statuses(KEY)
    assert {KEY: counts(5, ("UpgradeSuccess", 1))} == await store.latest_device_counts()
    assert [at(0), at(5)] == [c.polled_at for c in await store.device_history(KEY)]


async def test_device_history_is_trimmed_per_campaign_and_by_age(store: AnyStore) -> None:
    """Only the newest ``keep`` counts rows of a campaign stay, and none older than ``since``."""
    for minute in range(6):
        await store.record_devices(device_poll(minute, {"1": "UpgradePending"}), keep=3)
    assert [at(3), at(4), at(5)] == [c.polled_at for c in await store.device_history(KEY)]
    await store.record_devices(device_poll(6, {}), keep=3, since=at(5))
    assert [at(5), at(6)] == [c.polled_at for c in await store.device_history(KEY)]


async def test_final_device_poll_forgets_the_devices(store: AnyStore) -> None:
    """The last device poll of a campaign keeps its counts and drops the per-device rows."""
    await store.record_devices(device_poll(0, {"1": "UpgradePending"}), keep=10)
    await store.record_devices(device_poll(5, {"1": "UpgradeSuccess"}, final=True), keep=10)
    assert {} == await store.device_statuses(KEY)
    assert [("UpgradeSuccess", 1)] == list((await store.latest_device_counts())[KEY].counts)


async def test_device_poll_commits_its_milestone_rows(store: AnyStore) -> None:
    """Outbox rows given with a device poll are stored with it, once per dedup key."""
    for minute in (0, 5):
        await store.record_devices(device_poll(minute, {}), [message("milestone:50")], keep=10)
    assert ["milestone:50"] == [r["dedup_key"] for r in await store.outbox_rows()]


def listed(cid: str, status: str = S.SCHEDULED) -> Campaign:
    return Campaign(account=ACCOUNT, campaign_id=cid, status=status, name=f"n {cid}")


async def test_discovered_campaigns_keep_their_first_sight(store: AnyStore) -> None:
    """Upserting a discovered campaign updates it but keeps first_seen."""
    first = DiscoveredRecord(campaign=listed("d1"), watched=True, first_seen=at(0), last_seen=at(0))
    later = DiscoveredRecord(campaign=listed("d1", S.ENDED), watched=False, first_seen=at(9),
                             last_seen=at(9))  # fmt: skip
    other = DiscoveredRecord(campaign=Campaign(account="x", campaign_id="d2", status=S.ENDED),
                             watched=False, first_seen=at(1), last_seen=at(1))  # fmt: skip
    await store.record_discovered([first, other], [message("watching:d1")])
    await store.record_discovered([later])
    assert [(listed("d1", S.ENDED), False, at(0), at(9))] == [
        (r.campaign, r.watched, r.first_seen, r.last_seen)
        for r in await store.discovered(ACCOUNT)
    ]
    assert 2 == len(await store.discovered())
    assert ["watching:d1"] == [r["dedup_key"] for r in await store.outbox_rows()]


async def test_version_1_database_is_migrated(tmp_path: Path) -> None:
    """A state db of schema 1 opens with its campaigns and gains the device tables."""
    path = tmp_path / "state.db"
    with raw(path) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO campaigns (account, campaign_id, status) VALUES ('a', 'c', 'X')")
    async with open_store(path) as store:
        assert ["X"] == [r.status for r in (await store.load()).values()]
        assert {} == await store.latest_device_counts()


# --- PostgreSQL only: several instances, migrations, errors ---------------------------------

external = pytest.mark.external


def dbname(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])


@pytest.fixture
async def instances(pg_dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database, as two fotawatch instances would have."""
    async with open_pg_store(pg_dsn) as first, open_pg_store(pg_dsn) as second:
        yield first, second


@external
async def test_two_instances_claim_disjoint_rows(
    instances: tuple[PostgresStore, PostgresStore],
) -> None:
    """Two instances claiming one sink at the same time get different rows, all of them."""
    first, second = instances
    await first.enqueue([message(k) for k in "abcdef"])
    both_hold = asyncio.Barrier(2)

    async def deliver(store: PostgresStore) -> list[str]:
        async with store.outbox_claim("slack", at(0), 3) as claim:
            await both_hold.wait()  # neither claim ends before both have their rows
            await claim.delivered([r.id for r in claim.rows], at(1))
            return [r.dedup_key for r in claim.rows]

    mine, theirs = await asyncio.gather(deliver(first), deliver(second))
    assert (3, 3, set("abcdef")) == (len(mine), len(theirs), set(mine) | set(theirs))
    async with second.outbox_claim("slack", at(99), 10) as later:
        assert later.rows == []


@external
async def test_an_instance_that_dies_mid_send_releases_its_rows(
    instances: tuple[PostgresStore, PostgresStore], pg_server: PgServer, pg_dsn: str
) -> None:
    """Its connection gone, the server frees the rows at once; the instance recovers."""
    dead, alive = instances
    await dead.enqueue([message("a")])
    taken: list[str] = []

    async def die_mid_send() -> None:
        async with dead.outbox_claim("slack", at(0), 10) as claim:
            assert 1 == len(claim.rows)
            pg_server.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = %s AND state LIKE 'idle in transaction%%'",
                (dbname(pg_dsn),),
            )
            async with alive.outbox_claim("slack", at(0), 10) as other:
                await other.delivered([r.id for r in other.rows], at(1))
                taken.extend(r.dedup_key for r in other.rows)

    with pytest.raises(StoreError, match="PostgreSQL store: cannot claim alerts"):
        await die_mid_send()
    assert ["a"] == taken
    assert 0 == await dead.outbox_depth("slack")  # a new connection replaced the dead one


@external
async def test_connections_the_server_dropped_are_replaced(
    pg_dsn: str, pg_server: PgServer
) -> None:
    """After a failover or a restart killed every connection, the next call just works."""
    async with open_pg_store(pg_dsn) as store:
        await store.record([ok(S.SCHEDULED, 0)])
        pg_server.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s",
            (dbname(pg_dsn),),
        )
        assert [KEY] == list(await store.load())


@external
async def test_concurrent_opens_migrate_once(pg_dsn: str, pg_server: PgServer) -> None:
    """Instances starting together apply each migration exactly once, without errors."""
    stores = await asyncio.gather(*(PostgresStore.open(pg_dsn) for _ in range(4)))
    for store in stores:
        await store.close()
    versions = pg_server.execute("SELECT version FROM schema_version", dbname=dbname(pg_dsn))
    assert [(PG_SCHEMA_VERSION,)] == versions


@external
async def test_newer_pg_schema_is_refused(pg_dsn: str, pg_server: PgServer) -> None:
    """A database written by a newer fotawatch is not opened."""
    await (await PostgresStore.open(pg_dsn)).close()
    pg_server.execute("INSERT INTO schema_version (version) VALUES (99)", dbname=dbname(pg_dsn))
    expected = f"schema version 99 is newer than this fotawatch supports \\({PG_SCHEMA_VERSION}\\)"
    with pytest.raises(StoreError, match=expected):
        await PostgresStore.open(pg_dsn)


def assert_redacted(err: StoreError, *secrets: str) -> None:
    text = str(err)
    assert text.startswith("PostgreSQL store: cannot ")
    assert "\n" not in text
    assert not [s for s in secrets if s in text]


@external
async def test_connection_errors_never_show_the_dsn(pg_server: PgServer, pg_dsn: str) -> None:
    """A refused password or a closed port: the reason, without the DSN or its password."""
    wrong = pg_server.dsn(dbname(pg_dsn), password="hunter2-wrong")
    with pytest.raises(StoreError, match="password authentication failed") as refused:
        await PostgresStore.open(wrong)
    closed = f"postgresql://fotawatch:hunter2-closed@127.0.0.1:{free_port()}/db"
    with pytest.raises(StoreError, match="cannot connect") as unreachable:
        await PostgresStore.open(closed, connect_timeout=2)
    with pytest.raises(StoreError, match="DSN cannot be parsed") as garbled:
        await PostgresStore.open("host=x password=hunter2-garbled 'unterminated")
    assert_redacted(refused.value, wrong, "hunter2")
    assert_redacted(unreachable.value, closed, "hunter2")
    assert "hunter2" not in str(garbled.value)


@external
async def test_server_error_rolls_back_and_hides_data(pg_dsn: str, pg_server: PgServer) -> None:
    """An error inside the transaction undoes the burst; the message is op and SQLSTATE only."""
    async with open_pg_store(pg_dsn) as store:
        pg_server.execute(
            "CREATE FUNCTION no_alerts() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'trigger-text %', NEW.dedup_key; END $$;"
            " CREATE TRIGGER no_alerts BEFORE INSERT ON outbox"
            " FOR EACH ROW EXECUTE FUNCTION no_alerts()",
            dbname=dbname(pg_dsn),
        )
        t1 = change(1, None, S.FAILED, 0)
        with pytest.raises(StoreError, match="cannot record polls: P0001 RaiseException") as err:
            await store.record([ok(S.FAILED, 0, transition=t1)], [message("secret-key-42")])
        assert (await store.get(KEY), await store.transitions("c1")) == (None, [])
    assert_redacted(err.value, pg_dsn, "secret-key-42", "trigger-text", ACCOUNT)


@external
async def test_closed_pg_store_raises_store_error(pg_dsn: str) -> None:
    """close() may be called twice; using a closed store is a StoreError."""
    store = await PostgresStore.open(pg_dsn)
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="cannot load campaigns") as err:
        await store.load()
    assert_redacted(err.value, pg_dsn)


@external
async def test_times_come_back_in_utc_whatever_the_session_zone(pg_dsn: str) -> None:
    """A session in another time zone (set in the DSN) still reads aware UTC times."""
    async with open_pg_store(pg_dsn + "?options=-c%20TimeZone%3DAsia%2FTokyo") as store:
        await store.record([ok(S.SCHEDULED, 0)])
        record = await store.get(KEY)
    assert record is not None
    assert (at(0), dt.UTC) == (record.last_poll_at, record.last_poll_at.tzinfo)


@external
async def test_text_with_nul_is_stored_not_refused(pg_dsn: str) -> None:
    """PostgreSQL text cannot hold NUL: such a status is stored with U+FFFD, the JSON exactly."""
    odd = "Odd\x00Status"
    async with open_pg_store(pg_dsn) as store:
        t1 = change(1, S.SCHEDULED, odd, 5)
        assert [t1] == await store.record([ok(odd, 5, transition=t1)])
        await store.record_devices(device_poll(5, {"dev\x00": odd}), keep=10)
        record = await store.get(KEY)
        assert {"dev\ufffd": "Odd\ufffdStatus"} == await store.device_statuses(KEY)
        (stored,) = await store.transitions("c1")
    assert record is not None
    assert ("Odd\ufffdStatus", campaign(odd)) == (record.status, record.campaign)
    assert ("Odd\ufffdStatus", campaign(odd)) == (stored.to_status, stored.campaign)


# --- migrating a SQLite state into PostgreSQL ------------------------------------------------


async def populate(store: SqliteStore) -> None:
    """Every table with rows, every outbox state, a forgotten campaign's history."""
    t1 = change(1, S.REQUEST_PENDING, S.SCHEDULED, 5)
    t2 = change(1, None, S.FAILED, 6, key=OTHER)
    alerts = [message("c1#1", 5), message("other#1", 6, payload={"nul": "\x00"})]
    await store.record([ok(S.SCHEDULED, 5, transition=t1), ok(S.FAILED, 6, OTHER, t2)], alerts)
    await store.record([failed(7, "missing", missing=True)])
    await store.enqueue([message("hook#1", 1, "hook"), message("c1#2", 8), message("c1#3", 9)])
    delivered, retried, given_up = await store.outbox_due("slack", at(9), 3)
    await store.outbox_delivered([delivered.id], at(10))
    await store.outbox_retry([retried.id], at(20))
    await store.outbox_failed([given_up.id], "http_4xx", at(10))
    for minute in range(3):
        await store.record_devices(device_poll(minute, {"1": "UpgradePending", "2": "Failed"}),
                                   keep=2)  # fmt: skip
    found = DiscoveredRecord(campaign=listed("d1"), watched=True, first_seen=at(0), last_seen=at(3))
    await store.record_discovered([found])
    await store.forget(OTHER)


async def snapshot(store: SqliteStore | PostgresStore) -> dict[str, Any]:
    """Everything a store can tell about its state."""
    return {
        "load": await store.load(),
        "transitions": await store.transitions("c1"),
        "outbox": await store.outbox_rows(),
        "history": await store.device_history(KEY),
        "devices": await store.device_statuses(KEY),
        "latest": await store.latest_device_counts(),
        "discovered": await store.discovered(),
    }


@external
async def test_migrate_state_copies_every_table(tmp_path: Path, pg_dsn: str) -> None:
    """The PostgreSQL store then tells exactly what the SQLite store told; new ids go on."""
    path = tmp_path / "state.db"
    async with open_store(path) as source:
        await populate(source)
        expected = await snapshot(source)
    counts = await migrate_state(path, pg_dsn)
    assert {"campaigns": 1, "transitions": 2, "outbox": 5, "device_counts": 2,
            "device_status": 2, "discovered": 1} == counts  # fmt: skip
    async with open_pg_store(pg_dsn) as target:
        assert expected == await snapshot(target)
        assert 1 == await target.enqueue([message("after", 10)])
        rows = await target.outbox_rows()
    assert [1, 2, 3, 4, 5, 6] == [r["id"] for r in rows]


@external
async def test_migrate_state_refuses_a_database_with_state(tmp_path: Path, pg_dsn: str) -> None:
    """A second migration into the same database is refused and changes nothing."""
    path = tmp_path / "state.db"
    async with open_store(path) as source:
        await populate(source)
    await migrate_state(path, pg_dsn)
    async with open_pg_store(pg_dsn) as target:
        before = await snapshot(target)
    with pytest.raises(StoreError, match=r"already holds fotawatch state \(campaigns: 1,"):
        await migrate_state(path, pg_dsn)
    async with open_pg_store(pg_dsn) as target:
        assert before == await snapshot(target)


@external
async def test_migrate_state_needs_an_existing_file(tmp_path: Path, pg_dsn: str) -> None:
    """A mistyped path is an error, not a new empty state."""
    with pytest.raises(StoreError, match="no such file"):
        await migrate_state(tmp_path / "nope.db", pg_dsn)
    assert not (tmp_path / "nope.db").exists()
