"""The persistent default store: one SQLite file in WAL mode, stdlib ``sqlite3``.

The calls are synchronous sqlite3 inside ``async def``. With WAL and a local file a single call
takes well under a millisecond; a burst costs about 20 microseconds per poll (10,000 polls in one
transaction: about 0.2 s, mostly JSON encoding, measured on a dev VM), so the caller should flush
bursts of hundreds rather than tens of thousands. Blocking the loop that briefly is cheaper than a
thread hop per call, and one connection used from one thread never interleaves two transactions.
If a measurement says otherwise, wrapping the synchronous bodies in ``asyncio.to_thread`` (with a
lock) is the change.

Durability: ``synchronous=FULL``, so a commit is on disk before ``record`` returns; nothing the
caller was told is stored can be lost. Privacy: the file is created 0600 before SQLite opens it,
SQLite gives its ``-wal``/``-shm`` files the database file's mode, and any world bits on them are
removed after open anyway. Errors become ``StoreError`` naming the operation, the file and the
SQLite error code; bound values never appear in a message.

A device poll is one transaction however many devices changed (``executemany``): 10,000 devices
the first time, only the changed ones after that.

``outbox_claim`` reserves rows in this process only (``claims.DirectClaims``): one SQLite file
serves one fotawatch. Beyond the ``Store`` protocol: ``outbox_oldest_pending`` (age of the
backlog, for metrics) and ``outbox_rows`` (every outbox row with its state, for tests and
``fotawatch history``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Iterator, Sequence
from itertools import groupby
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from fotawatch.codec import campaign_from_dict
from fotawatch.devices import DeviceCounts
from fotawatch.errors import StoreError
from fotawatch.model import CampaignKey, Transition, TransitionKind
from fotawatch.store import schema as sql
from fotawatch.store._encode import PollRow, RowEncoder, poll_row
from fotawatch.store.base import (
    CampaignRecord,
    DevicePollRecord,
    DiscoveredRecord,
    OutboxClaim,
    OutboxMessage,
    OutboxRow,
    PollRecord,
)
from fotawatch.store.claims import DirectClaims

__all__ = ["SqliteStore", "open_store"]

_POLL_SQL = {
    PollRow.SUCCESS: sql.UPSERT_SUCCESS,
    PollRow.CONFIRMED: sql.UPDATE_CONFIRMED,
    PollRow.FAILURE: sql.UPSERT_FAILURE,
}

_BUSY_TIMEOUT_MS = 5000
_SIDECARS = ("-wal", "-shm", "-journal")
# One encoder for every row: json.dumps with options builds a new one per call.
_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


class SqliteStore:
    """Campaign state, transition history and the alert outbox in one SQLite file."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        """Wrap an open, migrated connection; use ``SqliteStore.open`` to get one."""
        self._conn = conn
        self.path = path
        self._claims = DirectClaims(self)

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Open (creating if needed) and migrate the state db at ``path``."""
        return cls(_connect(path), path)

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
        """Close the connection; closing twice is harmless."""
        self._conn.close()

    async def load(self) -> dict[CampaignKey, CampaignRecord]:
        with _translated("load campaigns", self.path):
            rows = self._conn.execute(sql.SELECT_CAMPAIGNS).fetchall()
        records = (_campaign_record(row) for row in rows)
        return {record.key: record for record in records}

    async def get(self, key: CampaignKey) -> CampaignRecord | None:
        with _translated("read a campaign", self.path):
            row = self._conn.execute(sql.SELECT_CAMPAIGN, (key.account, key.campaign_id)).fetchone()
        return None if row is None else _campaign_record(row)

    async def record(
        self, polls: Sequence[PollRecord], outbox: Sequence[OutboxMessage] = ()
    ) -> list[Transition]:
        op = "record polls"
        with _encoding(op, self.path):  # everything is encoded before the write lock is taken
            runs = [(_POLL_SQL[kind], [_ROWS.poll(p) for p in run])
                    for kind, run in groupby(polls, poll_row)]  # fmt: skip
            transitions = [p.transition for p in polls if p.transition is not None]
            transition_rows = [_ROWS.transition(t) for t in transitions]
            outbox_rows = [_ROWS.outbox(m) for m in outbox]
        with _transaction(self._conn, op, self.path) as conn:
            for statement, params in runs:  # runs keep the burst's order per campaign
                conn.executemany(statement, params)
            recorded = _insert_transitions(conn, transitions, transition_rows)
            conn.executemany(sql.INSERT_OUTBOX, outbox_rows)
        return recorded

    async def transitions(
        self, campaign_id: str, *, account: str | None = None, limit: int | None = None
    ) -> list[Transition]:
        params = (campaign_id, account, account, -1 if limit is None else limit)
        with _translated("read transitions", self.path):
            rows = self._conn.execute(sql.SELECT_TRANSITIONS, params).fetchall()
        return [_transition(row) for row in reversed(rows)]

    async def forget(self, key: CampaignKey) -> None:
        with _transaction(self._conn, "forget a campaign", self.path) as conn:
            conn.execute(sql.DELETE_CAMPAIGN, (key.account, key.campaign_id))

    async def enqueue(self, outbox: Sequence[OutboxMessage]) -> int:
        op = "enqueue alerts"
        with _encoding(op, self.path):
            rows = [_ROWS.outbox(m) for m in outbox]
        with _transaction(self._conn, op, self.path) as conn:
            return conn.executemany(sql.INSERT_OUTBOX, rows).rowcount

    async def outbox_due(self, sink: str, now: dt.datetime, limit: int) -> list[OutboxRow]:
        with _translated("read due alerts", self.path):
            rows = self._conn.execute(sql.OUTBOX_DUE, (sink, _ts(now), limit)).fetchall()
        return [_outbox_row(row) for row in rows]

    def outbox_claim(
        self, sink: str, now: dt.datetime, limit: int
    ) -> contextlib.AbstractAsyncContextManager[OutboxClaim]:
        """Reserve due rows in this process (``claims.DirectClaims``)."""
        return self._claims.claim(sink, now, limit)

    async def outbox_delivered(self, ids: Sequence[int], at: dt.datetime) -> None:
        stamp = _ts(at)
        self._update("mark alerts delivered", sql.OUTBOX_DELIVERED, [(stamp, i) for i in ids])

    async def outbox_retry(self, ids: Sequence[int], next_attempt_at: dt.datetime) -> None:
        stamp = _ts(next_attempt_at)
        self._update("postpone alerts", sql.OUTBOX_RETRY, [(stamp, i) for i in ids])

    async def outbox_failed(self, ids: Sequence[int], reason: str, at: dt.datetime) -> None:
        stamp = _ts(at)
        self._update("mark alerts failed", sql.OUTBOX_FAILED, [(stamp, reason, i) for i in ids])

    async def outbox_depth(self, sink: str) -> int:
        with _translated("count pending alerts", self.path):
            (depth,) = self._conn.execute(sql.OUTBOX_DEPTH, (sink,)).fetchone()
        return int(depth)

    async def outbox_oldest_pending(self, sink: str) -> dt.datetime | None:
        """When the oldest undelivered, unfailed row of ``sink`` was created; None if none."""
        with _translated("read the alert backlog", self.path):
            (oldest,) = self._conn.execute(sql.OUTBOX_OLDEST, (sink,)).fetchone()
        return _time_opt(oldest)

    async def outbox_rows(self, sink: str | None = None) -> list[dict[str, Any]]:
        """Every outbox row (of ``sink`` if given) in id order, with ``state``.

        ``state`` is ``pending``, ``delivered`` or ``failed``; times are aware UTC datetimes.
        """
        with _translated("read the outbox", self.path):
            rows = self._conn.execute(sql.OUTBOX_ROWS, (sink, sink)).fetchall()
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
        with _encoding(op, self.path):
            stamp = _ts(c.polled_at)
            counts_row = _ROWS.device_counts(c)
            cutoff = None if since is None else _ts(since)
            changed = [(c.key.account, c.key.campaign_id, d, st, stamp)
                       for d, st in poll.changed.items()]  # fmt: skip
            outbox_rows = [_ROWS.outbox(m) for m in outbox]
        trim = {"campaign_id": c.key.campaign_id, "account": c.key.account, "keep": keep}
        with _transaction(self._conn, op, self.path) as conn:
            conn.execute(sql.INSERT_DEVICE_COUNTS, counts_row)
            conn.execute(sql.TRIM_DEVICE_COUNTS, trim)
            if cutoff is not None:
                conn.execute(sql.TRIM_DEVICE_COUNTS_BEFORE, (cutoff,))
            if poll.forget_devices:
                conn.execute(sql.DELETE_DEVICES, ident)
            else:
                conn.executemany(sql.UPSERT_DEVICE, changed)
                conn.executemany(sql.DELETE_DEVICE, [(*ident, d) for d in poll.removed])
            conn.executemany(sql.INSERT_OUTBOX, outbox_rows)

    async def device_statuses(self, key: CampaignKey) -> dict[str, str]:
        with _translated("read device statuses", self.path):
            rows = self._conn.execute(
                sql.SELECT_DEVICE_STATUSES, (key.campaign_id, key.account)
            ).fetchall()
        return dict(rows)

    async def device_history(self, key: CampaignKey, *, limit: int = 1000) -> list[DeviceCounts]:
        params = (key.campaign_id, key.account, limit)
        with _translated("read device counts", self.path):
            rows = self._conn.execute(sql.SELECT_DEVICE_COUNTS, params).fetchall()
        return [_device_counts(row) for row in reversed(rows)]

    async def latest_device_counts(self) -> dict[CampaignKey, DeviceCounts]:
        with _translated("read device counts", self.path):
            rows = self._conn.execute(sql.LATEST_DEVICE_COUNTS).fetchall()
        counts = (_device_counts(row) for row in rows)
        return {c.key: c for c in counts}

    async def record_discovered(
        self, records: Sequence[DiscoveredRecord], outbox: Sequence[OutboxMessage] = ()
    ) -> None:
        op = "record discovered campaigns"
        with _encoding(op, self.path):
            rows = [_ROWS.discovered(r) for r in records]
            outbox_rows = [_ROWS.outbox(m) for m in outbox]
        with _transaction(self._conn, op, self.path) as conn:
            conn.executemany(sql.UPSERT_DISCOVERED, rows)
            conn.executemany(sql.INSERT_OUTBOX, outbox_rows)

    async def discovered(self, account: str | None = None) -> list[DiscoveredRecord]:
        with _translated("read discovered campaigns", self.path):
            rows = self._conn.execute(sql.SELECT_DISCOVERED, (account, account)).fetchall()
        return [_discovered(row) for row in rows]

    def _update(self, op: str, sql: str, params: list[tuple[Any, ...]]) -> None:
        with _transaction(self._conn, op, self.path) as conn:
            conn.executemany(sql, params)


@contextlib.asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[SqliteStore]:
    """``async with open_store(path) as store``: open the state db and close it on exit."""
    store = await SqliteStore.open(path)
    try:
        yield store
    finally:
        await store.close()


# --- opening -------------------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    with _translated("open", path):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
    try:
        _configure(conn, path)
        _migrate(conn, path)
        _restrict_sidecars(path)
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    with _translated("configure", path):
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    if mode != "wal":
        raise StoreError(f"state db {path}: cannot enable WAL journal mode (got {mode})")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    with _transaction(conn, "migrate the schema", path):
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > sql.SCHEMA_VERSION:
            raise StoreError(
                f"state db schema version {version} is newer than this fotawatch supports "
                f"({sql.SCHEMA_VERSION}): {path}"
            )
        for step in sql.MIGRATIONS[version:]:
            for statement in step:
                conn.execute(statement)
        if version < sql.SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {sql.SCHEMA_VERSION}")


def _restrict_sidecars(path: Path) -> None:
    """Belt and braces: SQLite already copies the db file's mode onto its WAL files."""
    for suffix in _SIDECARS:
        sidecar = path.with_name(path.name + suffix)
        with _translated("protect the WAL files", path), contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(sidecar.stat().st_mode)
            if mode & 0o007:
                sidecar.chmod(mode & ~0o007)


# --- transactions and errors ----------------------------------------------------------------


@contextlib.contextmanager
def _translated(op: str, path: Path) -> Iterator[None]:
    """SQLite and OS errors become StoreError naming the operation and file, never the data."""
    try:
        yield
    except sqlite3.Error as err:
        reason = getattr(err, "sqlite_errorname", None) or type(err).__name__
        raise StoreError(f"state db {path}: cannot {op}: {reason}") from err
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise StoreError(f"state db {path}: cannot {op}: {reason}") from err


@contextlib.contextmanager
def _encoding(op: str, path: Path) -> Iterator[None]:
    """A value that cannot be stored (not JSON, naive time) fails the call before any write."""
    try:
        yield
    except (TypeError, ValueError) as err:
        msg = f"state db {path}: cannot {op}: a value cannot be stored ({type(err).__name__})"
        raise StoreError(msg) from err


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, op: str, path: Path) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT; any exception rolls the whole transaction back."""
    with _translated(op, path):
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise


def _insert_transitions(
    conn: sqlite3.Connection, transitions: list[Transition], rows: list[tuple[Any, ...]]
) -> list[Transition]:
    """Insert each transition unless already recorded; return those that were new."""
    recorded: list[Transition] = []
    for transition, row in zip(transitions, rows, strict=True):
        if conn.execute(sql.INSERT_TRANSITION, row).rowcount == 1:
            recorded.append(transition)
            key = transition.key
            conn.execute(sql.RAISE_LAST_SEQ, (key.account, key.campaign_id, transition.seq))
    return recorded


# --- encoding -------------------------------------------------------------------------------


def _ts(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    # Always UTC with microseconds: fixed width, so text order is time order.
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _time_opt(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def _dumps(value: Any) -> str:
    return _JSON.encode(value)


_ROWS = RowEncoder(ts=_ts, dumps=_dumps)


# --- decoding -------------------------------------------------------------------------------


def _campaign_record(row: tuple[Any, ...]) -> CampaignRecord:
    account, campaign_id, snapshot, status, since, last_seq, polled, result, success, missing = row
    return CampaignRecord(
        key=CampaignKey(account=account, campaign_id=campaign_id),
        campaign=None if snapshot is None else campaign_from_dict(json.loads(snapshot)),
        status=status,
        status_since=_time_opt(since),
        last_seq=last_seq,
        last_poll_at=_time_opt(polled),
        last_poll_result=result,
        last_success_at=_time_opt(success),
        missing=bool(missing),
    )


def _transition(row: tuple[Any, ...]) -> Transition:
    account, campaign_id, seq, from_status, to_status, kind, observed_at, snapshot = row
    return Transition(
        key=CampaignKey(account=account, campaign_id=campaign_id),
        seq=seq,
        from_status=from_status,
        to_status=to_status,
        kind=TransitionKind(kind),
        observed_at=_time(observed_at),
        campaign=None if snapshot is None else campaign_from_dict(json.loads(snapshot)),
    )


def _device_counts(row: tuple[Any, ...]) -> DeviceCounts:
    account, campaign_id, polled_at, campaign_status, reported_total, counts = row
    return DeviceCounts(
        key=CampaignKey(account=account, campaign_id=campaign_id),
        polled_at=_time(polled_at),
        campaign_status=campaign_status,
        counts=tuple((str(status), int(n)) for status, n in json.loads(counts)),
        reported_total=reported_total,
    )


def _discovered(row: tuple[Any, ...]) -> DiscoveredRecord:
    _account, _campaign_id, snapshot, watched, first_seen, last_seen = row
    return DiscoveredRecord(
        campaign=campaign_from_dict(json.loads(snapshot)),
        watched=bool(watched),
        first_seen=_time(first_seen),
        last_seen=_time(last_seen),
    )


def _outbox_row(row: tuple[Any, ...]) -> OutboxRow:
    row_id, sink, dedup_key, payload, created, attempts, due = row
    return OutboxRow(
        id=row_id,
        sink=sink,
        dedup_key=dedup_key,
        payload=json.loads(payload),
        created_at=_time(created),
        attempts=attempts,
        next_attempt_at=_time(due),
    )


def _outbox_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    row_id, sink, dedup_key, payload, created, attempts, due, delivered, failed, reason = row
    state = "delivered" if delivered else "failed" if failed else "pending"
    return {
        "id": row_id,
        "sink": sink,
        "dedup_key": dedup_key,
        "payload": json.loads(payload),
        "created_at": _time(created),
        "attempts": attempts,
        "next_attempt_at": _time(due),
        "delivered_at": _time_opt(delivered),
        "failed_at": _time_opt(failed),
        "fail_reason": reason,
        "state": state,
    }
