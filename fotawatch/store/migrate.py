"""Copy a SQLite state database into an empty PostgreSQL one (``fotawatch migrate-state``).

Everything is copied: campaigns, the transition history, the outbox with its delivery
bookkeeping (attempts, next attempt, delivered/failed times, reasons) and its ids, the device
tables and the discovered campaigns. The SQLite file is first brought to the current SQLite
schema (``SqliteStore.open``) and then read in one read transaction; the PostgreSQL database is
migrated to the current schema and filled in ONE transaction that locks every table, so an
error (or a fotawatch instance already writing there) leaves it as it was. A target that already
holds any state is refused. Ids are kept; each identity sequence then continues past its
table's largest id.

The values need no conversion: SQLite holds times as ISO 8601 text with offset and JSON as
text, both of which PostgreSQL reads as ``timestamptz`` and ``json``; only 0/1 flags become
booleans. Stop fotawatch before migrating: rows written to the SQLite file meanwhile are not
copied.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection, sql

from fotawatch.errors import StoreError
from fotawatch.store import _pg
from fotawatch.store.pg_schema import TABLES
from fotawatch.store.sqlite import SqliteStore

__all__ = ["migrate_state"]

# Each table's columns, the same in both databases.
_COLUMNS: dict[str, tuple[str, ...]] = {
    "campaigns": ("account", "campaign_id", "snapshot", "status", "status_since", "last_seq",
                  "last_poll_at", "last_poll_result", "last_success_at", "missing"),
    "transitions": ("id", "account", "campaign_id", "seq", "from_status", "to_status", "kind",
                    "observed_at", "snapshot"),
    "outbox": ("id", "sink", "dedup_key", "payload", "created_at", "attempts", "next_attempt_at",
               "delivered_at", "failed_at", "fail_reason"),
    "device_counts": ("id", "account", "campaign_id", "polled_at", "campaign_status",
                      "reported_total", "counts"),
    "device_status": ("account", "campaign_id", "device_id", "status", "changed_at"),
    "discovered": ("account", "campaign_id", "snapshot", "watched", "first_seen", "last_seen"),
}  # fmt: skip
_FLAGS = frozenset({"missing", "watched"})  # SQLite 0/1 -> boolean
_WITH_IDS = ("transitions", "outbox", "device_counts")

Rows = list[tuple[Any, ...]]


async def migrate_state(
    sqlite_path: Path, dsn: str, *, connect_timeout: float = 10
) -> dict[str, int]:
    """Copy the whole SQLite state at ``sqlite_path`` into the empty database at ``dsn``.

    Returns the number of rows copied per table. Raises ``StoreError`` if the file is missing
    or unreadable, the database cannot be reached or migrated, or it already holds state.
    """
    _require_file(sqlite_path)  # SqliteStore.open would create it
    await (await SqliteStore.open(sqlite_path)).close()  # to the current SQLite schema
    state = _read_sqlite(sqlite_path)
    target = _pg.Dsn(dsn)
    conn = await _pg.connect(target, connect_timeout)
    try:
        await _pg.migrate(conn, target)
        with _pg.translated("copy the state", target):
            async with conn.transaction():
                await _lock_empty(conn)
                for table in TABLES:
                    await _copy(conn, table, state[table])
                for table in _WITH_IDS:
                    await _continue_ids(conn, table)
    finally:
        with contextlib.suppress(*_pg.DB_ERRORS):
            await conn.close()
    return {table: len(state[table]) for table in TABLES}


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise StoreError(f"state db {path}: no such file")


def _read_sqlite(path: Path) -> dict[str, Rows]:
    """Every row of every table, in id (or key) order, from one read transaction."""
    uri = path.resolve().as_uri() + "?mode=ro"
    with _sqlite_errors(path), contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        conn.execute("BEGIN")
        state = {table: _select(conn, table) for table in TABLES}
        conn.execute("COMMIT")
    return state


def _select(conn: sqlite3.Connection, table: str) -> Rows:
    columns = _COLUMNS[table]
    query = f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1, 2"  # noqa: S608 - constants
    flags = [i for i, name in enumerate(columns) if name in _FLAGS]
    rows = conn.execute(query).fetchall()
    if not flags:
        return rows
    return [tuple(bool(v) if i in flags else v for i, v in enumerate(row)) for row in rows]


@contextlib.contextmanager
def _sqlite_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as err:
        reason = getattr(err, "sqlite_errorname", None) or type(err).__name__
        raise StoreError(f"state db {path}: cannot read the state: {reason}") from err


async def _lock_empty(conn: AsyncConnection[Any]) -> None:
    """Lock every table for the copy, and refuse a database that already holds state."""
    names = sql.SQL(", ").join(sql.Identifier(t) for t in TABLES)
    await conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(names))
    held = []
    for table in TABLES:
        count = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        row = await (await conn.execute(count)).fetchone()
        if row and row[0]:
            held.append(f"{table}: {row[0]}")
    if held:
        raise StoreError(
            "PostgreSQL store: cannot copy the state: the database already holds fotawatch "
            f"state ({', '.join(held)}); migrate into an empty database"
        )


async def _copy(conn: AsyncConnection[Any], table: str, rows: Rows) -> None:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS[table])
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), columns)
    async with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)


async def _continue_ids(conn: AsyncConnection[Any], table: str) -> None:
    """New rows get ids past the copied ones (nothing to do for an empty table)."""
    query = sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), max(id)) FROM {}").format(
        sql.Literal(table), sql.Identifier(table)
    )
    await conn.execute(query)
