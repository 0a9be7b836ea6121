"""The PostgreSQL store: one database shared by several fotawatch instances (psycopg 3, asyncio).

Same semantics as ``SqliteStore``, method for method (the shared suite in ``tests/test_store.py``
runs on both), including its extras ``outbox_oldest_pending`` and ``outbox_rows``. Calls take a
connection from a small pool (``AsyncConnectionPool``, checked before use so a connection the
server dropped is replaced); each write is one transaction; bursts go as ``executemany``, which
psycopg pipelines. ``open`` migrates the schema (``pg_schema``) under an advisory lock.

Delivery across instances: ``outbox_claim`` keeps one pool connection and one transaction for
its block. It locks the due rows ``FOR UPDATE SKIP LOCKED`` so that another instance's claim
skips them, makes the marks in that transaction, and commits at the block's end. A block that
raises or is cancelled rolls back; a process that dies mid-send loses its connection and the
server releases its rows at once. A claim is an open transaction for as long as the send
takes, so ``idle_in_transaction_session_timeout`` must be longer than a sink's timeout.

Errors become ``StoreError("PostgreSQL store: cannot <op>: <reason>")``: one line, never the DSN
or its password (``_pg``). Times are bound as ``timestamptz`` and read back as aware UTC.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from itertools import groupby
from types import TracebackType
from typing import Any, Self

from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool

from fotawatch.codec import campaign_from_dict
from fotawatch.devices import DeviceCounts
from fotawatch.model import CampaignKey, Transition, TransitionKind
from fotawatch.store import _pg
from fotawatch.store import pg_schema as sql
from fotawatch.store._encode import PollRow, RowEncoder, poll_row
from fotawatch.store._pg import dumps, encoding, ts
from fotawatch.store.base import (
    CampaignRecord,
    DevicePollRecord,
    DiscoveredRecord,
    OutboxClaim,
    OutboxMessage,
    OutboxRow,
    PollRecord,
)

__all__ = ["PostgresStore", "open_pg_store"]

_POLL_SQL = {
    PollRow.SUCCESS: sql.UPSERT_SUCCESS,
    PollRow.CONFIRMED: sql.UPDATE_CONFIRMED,
    PollRow.FAILURE: sql.UPSERT_FAILURE,
}

Row = tuple[Any, ...]


class PostgresStore:
    """Campaign state, transition history and the alert outbox in a PostgreSQL database."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Row]], dsn: _pg.Dsn) -> None:
        """Wrap an open pool on a migrated database; use ``PostgresStore.open`` to get one."""
        self._pool = pool
        self._dsn = dsn

    @classmethod
    async def open(cls, dsn: str, *, max_size: int = 4, connect_timeout: float = 10) -> Self:
        """Connect, migrate the schema, and open a pool of up to ``max_size`` connections.

        ``connect_timeout`` bounds each connection attempt (unless the DSN sets its own) and how
        long a call waits for a pooled connection.
        """
        target = _pg.Dsn(dsn)
        conn = await _pg.connect(target, connect_timeout)
        try:
            await _pg.migrate(conn, target)
        finally:
            with contextlib.suppress(*_pg.DB_ERRORS):
                await conn.close()
        pool: AsyncConnectionPool[AsyncConnection[Row]] = AsyncConnectionPool(
            target.conninfo, min_size=1, max_size=max_size, open=False,
            kwargs=_pg.connect_kwargs(target, connect_timeout), configure=_pg.configure,
            check=AsyncConnectionPool.check_connection, timeout=connect_timeout,
            name="fotawatch-store",
        )  # fmt: skip
        try:
            with _pg.translated("open the connection pool", target):
                await pool.open(wait=True, timeout=connect_timeout)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, target)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pool and its connections; closing twice is harmless."""
        await self._pool.close()

    async def load(self) -> dict[CampaignKey, CampaignRecord]:
        rows = await self._fetch("load campaigns", sql.SELECT_CAMPAIGNS)
        records = (_campaign_record(row) for row in rows)
        return {record.key: record for record in records}

    async def get(self, key: CampaignKey) -> CampaignRecord | None:
        params = (key.account, key.campaign_id)
        rows = await self._fetch("read a campaign", sql.SELECT_CAMPAIGN, params)
        return _campaign_record(rows[0]) if rows else None

    async def record(
        self, polls: Sequence[PollRecord], outbox: Sequence[OutboxMessage] = ()
    ) -> list[Transition]:
        op = "record polls"
        with encoding(op):  # everything is encoded before a connection is taken
            runs = [(_POLL_SQL[kind], [_ROWS.poll(p) for p in run])
                    for kind, run in groupby(polls, poll_row)]  # fmt: skip
            transitions = [p.transition for p in polls if p.transition is not None]
            transition_rows = [_ROWS.transition(t) for t in transitions]
            outbox_rows = [_ROWS.outbox(m) for m in outbox]
        async with self._transaction(op) as cur:
            for statement, params in runs:  # runs keep the burst's order per campaign
                await cur.executemany(statement, params)
            recorded = await _insert_transitions(cur, transitions, transition_rows)
            await cur.executemany(sql.INSERT_OUTBOX, outbox_rows)
        return recorded

    async def transitions(
        self, campaign_id: str, *, account: str | None = None, limit: int | None = None
    ) -> list[Transition]:
        params = {"campaign_id": campaign_id, "account": account, "limit": limit}
        rows = await self._fetch("read transitions", sql.SELECT_TRANSITIONS, params)
        return [_transition(row) for row in reversed(rows)]

    async def forget(self, key: CampaignKey) -> None:
        async with self._transaction("forget a campaign") as cur:
            await cur.execute(sql.DELETE_CAMPAIGN, (key.account, key.campaign_id))

    async def enqueue(self, outbox: Sequence[OutboxMessage]) -> int:
        op = "enqueue alerts"
        with encoding(op):
            rows = [_ROWS.outbox(m) for m in outbox]
        async with self._transaction(op) as cur:
            await cur.executemany(sql.INSERT_OUTBOX, rows)
            return max(cur.rowcount, 0)

    async def outbox_due(self, sink: str, now: dt.datetime, limit: int) -> list[OutboxRow]:
        op = "read due alerts"
        with encoding(op):
            params = (sink, ts(now), limit)
        return [_outbox_row(row) for row in await self._fetch(op, sql.OUTBOX_DUE, params)]

    def outbox_claim(
        self, sink: str, now: dt.datetime, limit: int
    ) -> contextlib.AbstractAsyncContextManager[OutboxClaim]:
        """Lock the due rows of ``sink`` in a transaction for the block (see the module doc)."""
        return self._claim(sink, now, limit)

    async def outbox_delivered(self, ids: Sequence[int], at: dt.datetime) -> None:
        op = "mark alerts delivered"
        with encoding(op):
            params = (ts(at), list(ids))
        await self._write(op, sql.OUTBOX_DELIVERED, params)

    async def outbox_retry(self, ids: Sequence[int], next_attempt_at: dt.datetime) -> None:
        op = "postpone alerts"
        with encoding(op):
            params = (ts(next_attempt_at), list(ids))
        await self._write(op, sql.OUTBOX_RETRY, params)

    async def outbox_failed(self, ids: Sequence[int], reason: str, at: dt.datetime) -> None:
        op = "mark alerts failed"
        with encoding(op):
            params = (ts(at), reason, list(ids))
        await self._write(op, sql.OUTBOX_FAILED, params)

    async def outbox_depth(self, sink: str) -> int:
        ((depth,),) = await self._fetch("count pending alerts", sql.OUTBOX_DEPTH, (sink,))
        return int(depth)

    async def outbox_oldest_pending(self, sink: str) -> dt.datetime | None:
        """When the oldest undelivered, unfailed row of ``sink`` was created; None if none."""
        ((oldest,),) = await self._fetch("read the alert backlog", sql.OUTBOX_OLDEST, (sink,))
        return _utc_opt(oldest)

    async def outbox_rows(self, sink: str | None = None) -> list[dict[str, Any]]:
        """Every outbox row (of ``sink`` if given) in id order, with ``state``.

        ``state`` is ``pending``, ``delivered`` or ``failed``; times are aware UTC datetimes.
        """
        rows = await self._fetch("read the outbox", sql.OUTBOX_ROWS, {"sink": sink})
        return [_outbox_dict(row) for row in rows]

    async def record_devices(
        self,
        poll: DevicePollRecord,
        outbox: Sequence[OutboxMessage] = (),
        *,
        keep: int,
        since: dt.datetime | None = None,
    ) -> None:
        op = "record device counts"
        c = poll.counts
        ident = (c.key.campaign_id, c.key.account)
        with encoding(op):
            stamp = ts(c.polled_at)
            counts_row = _ROWS.device_counts(c)
            cutoff = None if since is None else ts(since)
            changed = {"account": c.key.account, "campaign_id": c.key.campaign_id,
                       "changed_at": stamp, "devices": list(poll.changed),
                       "statuses": list(poll.changed.values())}  # fmt: skip
            outbox_rows = [_ROWS.outbox(m) for m in outbox]
        trim = {"campaign_id": c.key.campaign_id, "account": c.key.account, "keep": keep}
        async with self._transaction(op) as cur:
            await cur.execute(sql.INSERT_DEVICE_COUNTS, counts_row)
            await cur.execute(sql.TRIM_DEVICE_COUNTS, trim)
            if cutoff is not None:
                await cur.execute(sql.TRIM_DEVICE_COUNTS_BEFORE, (cutoff,))
            if poll.forget_devices:
                await cur.execute(sql.DELETE_DEVICES, ident)
            else:
                if poll.changed:
                    await cur.execute(sql.UPSERT_DEVICES, changed)
                if poll.removed:
                    await cur.execute(sql.DELETE_SOME_DEVICES, (*ident, list(poll.removed)))
            await cur.executemany(sql.INSERT_OUTBOX, outbox_rows)

    async def device_statuses(self, key: CampaignKey) -> dict[str, str]:
        params = (key.campaign_id, key.account)
        rows = await self._fetch("read device statuses", sql.SELECT_DEVICE_STATUSES, params)
        return dict(rows)

    async def device_history(self, key: CampaignKey, *, limit: int = 1000) -> list[DeviceCounts]:
        params = (key.campaign_id, key.account, limit)
        rows = await self._fetch("read device counts", sql.SELECT_DEVICE_COUNTS, params)
        return [_device_counts(row) for row in reversed(rows)]

    async def latest_device_counts(self) -> dict[CampaignKey, DeviceCounts]:
        rows = await self._fetch("read device counts", sql.LATEST_DEVICE_COUNTS)
        counts = (_device_counts(row) for row in rows)
        return {c.key: c for c in counts}

    async def record_discovered(
        self, records: Sequence[DiscoveredRecord], outbox: Sequence[OutboxMessage] = ()
    ) -> None:
        op = "record discovered campaigns"
        with encoding(op):
            rows = [_ROWS.discovered(r) for r in records]
            outbox_rows = [_ROWS.outbox(m) for m in outbox]
        async with self._transaction(op) as cur:
            await cur.executemany(sql.UPSERT_DISCOVERED, rows)
            await cur.executemany(sql.INSERT_OUTBOX, outbox_rows)

    async def discovered(self, account: str | None = None) -> list[DiscoveredRecord]:
        op = "read discovered campaigns"
        rows = await self._fetch(op, sql.SELECT_DISCOVERED, {"account": account})
        return [_discovered(row) for row in rows]

    # --- connections and transactions -------------------------------------------------------

    async def _fetch(self, op: str, query: str, params: Any = None) -> list[Row]:
        """One statement on a pooled connection, outside any transaction; every row."""
        with _pg.translated(op, self._dsn):
            async with self._pool.connection() as conn:
                cur = await conn.execute(query, params)
                return await cur.fetchall()

    async def _write(self, op: str, query: str, params: Any) -> None:
        async with self._transaction(op) as cur:
            await cur.execute(query, params)

    @contextlib.asynccontextmanager
    async def _transaction(self, op: str) -> AsyncIterator[AsyncCursor[Row]]:
        """BEGIN ... COMMIT on a pooled connection; any exception rolls it all back."""
        with _pg.translated(op, self._dsn):
            async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur

    @contextlib.asynccontextmanager
    async def _claim(self, sink: str, now: dt.datetime, limit: int) -> AsyncIterator[_Claim]:
        op = "claim alerts"
        with encoding(op):
            params = (sink, ts(now), limit)
        body_error: BaseException | None = None  # the block's own exception passes untouched
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = await conn.execute(sql.OUTBOX_CLAIM, params)
                claim = _Claim(conn, self._dsn, [_outbox_row(r) for r in await cur.fetchall()])
                try:
                    yield claim
                except BaseException as exc:
                    body_error = exc
                    raise
        except _pg.DB_ERRORS as err:
            if err is body_error:
                raise
            raise _pg.store_error(op, self._dsn, err) from err


class _Claim:
    """Rows locked by one claim's transaction; marks run in that transaction."""

    def __init__(self, conn: AsyncConnection[Row], dsn: _pg.Dsn, rows: list[OutboxRow]) -> None:
        self.rows = rows
        self._conn = conn
        self._dsn = dsn
        self._ids = frozenset(r.id for r in rows)

    async def delivered(self, ids: Sequence[int], at: dt.datetime) -> None:
        op = "mark alerts delivered"
        with encoding(op):
            params = (ts(at), self._claimed(ids))
        await self._update(op, sql.OUTBOX_DELIVERED, params)

    async def retry(self, ids: Sequence[int], next_attempt_at: dt.datetime) -> None:
        op = "postpone alerts"
        with encoding(op):
            params = (ts(next_attempt_at), self._claimed(ids))
        await self._update(op, sql.OUTBOX_RETRY, params)

    async def failed(self, ids: Sequence[int], reason: str, at: dt.datetime) -> None:
        op = "mark alerts failed"
        with encoding(op):
            params = (ts(at), reason, self._claimed(ids))
        await self._update(op, sql.OUTBOX_FAILED, params)

    def _claimed(self, ids: Sequence[int]) -> list[int]:
        """Only rows this claim holds: another row could be locked by another instance."""
        return [i for i in ids if i in self._ids]

    async def _update(self, op: str, query: str, params: tuple[Any, ...]) -> None:
        with _pg.translated(op, self._dsn):
            await self._conn.execute(query, params)


@contextlib.asynccontextmanager
async def open_pg_store(
    dsn: str, *, max_size: int = 4, connect_timeout: float = 10
) -> AsyncIterator[PostgresStore]:
    """``async with open_pg_store(dsn) as store``: open the store and close it on exit."""
    store = await PostgresStore.open(dsn, max_size=max_size, connect_timeout=connect_timeout)
    try:
        yield store
    finally:
        await store.close()


async def _insert_transitions(
    cur: AsyncCursor[Row], transitions: list[Transition], rows: list[Row]
) -> list[Transition]:
    """Insert each transition unless already recorded; return those that were new."""
    if not rows:
        return []
    await cur.executemany(sql.INSERT_TRANSITION, rows, returning=True)
    recorded: list[Transition] = []
    for transition in transitions:  # one result per statement, in order
        if await cur.fetchone() is not None:
            recorded.append(transition)
        cur.nextset()
    return recorded


# --- encoding -------------------------------------------------------------------------------


_ROWS = RowEncoder(ts=ts, dumps=dumps)


# --- decoding: psycopg has already decoded the JSON columns -------------------------------


def _utc_opt(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else _pg.utc(value)


def _campaign_record(row: Row) -> CampaignRecord:
    account, campaign_id, snapshot, status, since, last_seq, polled, result, success, missing = row
    return CampaignRecord(
        key=CampaignKey(account=account, campaign_id=campaign_id),
        campaign=None if snapshot is None else campaign_from_dict(snapshot),
        status=status,
        status_since=_utc_opt(since),
        last_seq=last_seq,
        last_poll_at=_utc_opt(polled),
        last_poll_result=result,
        last_success_at=_utc_opt(success),
        missing=missing,
    )


def _transition(row: Row) -> Transition:
    account, campaign_id, seq, from_status, to_status, kind, observed_at, snapshot = row
    return Transition(
        key=CampaignKey(account=account, campaign_id=campaign_id),
        seq=seq,
        from_status=from_status,
        to_status=to_status,
        kind=TransitionKind(kind),
        observed_at=_pg.utc(observed_at),
        campaign=None if snapshot is None else campaign_from_dict(snapshot),
    )


def _device_counts(row: Row) -> DeviceCounts:
    account, campaign_id, polled_at, campaign_status, reported_total, counts = row
    return DeviceCounts(
        key=CampaignKey(account=account, campaign_id=campaign_id),
        polled_at=_pg.utc(polled_at),
        campaign_status=campaign_status,
        counts=tuple((str(status), int(n)) for status, n in counts),
        reported_total=reported_total,
    )


def _discovered(row: Row) -> DiscoveredRecord:
    _account, _campaign_id, snapshot, watched, first_seen, last_seen = row
    return DiscoveredRecord(
        campaign=campaign_from_dict(snapshot),
        watched=watched,
        first_seen=_pg.utc(first_seen),
        last_seen=_pg.utc(last_seen),
    )


def _outbox_row(row: Row) -> OutboxRow:
    row_id, sink, dedup_key, payload, created, attempts, due = row
    return OutboxRow(
        id=row_id,
        sink=sink,
        dedup_key=dedup_key,
        payload=payload,
        created_at=_pg.utc(created),
        attempts=attempts,
        next_attempt_at=_pg.utc(due),
    )


def _outbox_dict(row: Row) -> dict[str, Any]:
    row_id, sink, dedup_key, payload, created, attempts, due, delivered, failed, reason = row
    state = "delivered" if delivered else "failed" if failed else "pending"
    return {
        "id": row_id,
        "sink": sink,
        "dedup_key": dedup_key,
        "payload": payload,
        "created_at": _pg.utc(created),
        "attempts": attempts,
        "next_attempt_at": _pg.utc(due),
        "delivered_at": _utc_opt(delivered),
        "failed_at": _utc_opt(failed),
        "fail_reason": reason,
        "state": state,
    }
