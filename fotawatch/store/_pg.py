"""What every PostgreSQL user in the store package shares: errors, connections, migrations.

Error messages are one line, ``PostgreSQL store: cannot <op>: <reason>``. The reason is the
SQLSTATE and its name for a server error (never the server's text: it can quote bound values),
and for a connection failure libpq's own words with the DSN, URIs, ``password=`` settings and
the DSN's password removed. The DSN itself never appears.

PostgreSQL text cannot hold NUL characters, which SQLite and the memory store keep. A NUL in a
text value (a status or device id as ThingSpace sent it, a sink's error text) is stored as
U+FFFD instead of failing the whole transaction; JSON columns keep ``\\u0000`` exactly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.string import StrDumperUnknown
from psycopg_pool import PoolTimeout

from fotawatch.errors import StoreError
from fotawatch.store import pg_schema as sql

__all__ = [
    "DB_ERRORS",
    "Dsn",
    "configure",
    "connect",
    "connect_kwargs",
    "dumps",
    "encoding",
    "migrate",
    "store_error",
    "translated",
    "ts",
    "utc",
]

_MAX_REASON = 240
# The SQLite store's JSON form, so that both stores hold the same text for the same value.
_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
_URI = re.compile(r"\b[a-z][a-z0-9+.-]*://\S*", re.IGNORECASE)
_PASSWORD_SETTING = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S*)", re.IGNORECASE)


class Dsn:
    """A connection string and what is needed to keep it out of messages."""

    def __init__(self, dsn: str) -> None:
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error:  # its message (and so a chained traceback) quotes the DSN
            raise StoreError("PostgreSQL store: the DSN cannot be parsed") from None
        self.conninfo = dsn
        self.has_timeout = "connect_timeout" in params
        password = str(params.get("password") or "")
        self.secrets = tuple(s for s in (dsn, password, quote(password, safe="")) if s)

    def reason(self, err: BaseException) -> str:
        """A one-line reason for ``err`` that holds no secret of this DSN."""
        return _reason(err, self.secrets)


def _reason(err: BaseException, secrets: tuple[str, ...]) -> str:
    sqlstate = getattr(err, "sqlstate", None)
    if sqlstate:
        return f"{sqlstate} {type(err).__name__}"
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror
    else:
        text = " ".join(str(err).split()) or type(err).__name__
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _PASSWORD_SETTING.sub("password=***", _URI.sub("<dsn>", text))
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


# What a database call can raise; every one of them becomes a StoreError.
DB_ERRORS = (psycopg.Error, PoolTimeout, OSError)


def store_error(op: str, dsn: Dsn, err: BaseException) -> StoreError:
    """The StoreError for ``err`` raised while doing ``op``."""
    return StoreError(f"PostgreSQL store: cannot {op}: {dsn.reason(err)}")


@contextlib.contextmanager
def translated(op: str, dsn: Dsn) -> Iterator[None]:
    """psycopg, pool and OS errors become one-line StoreErrors naming the operation."""
    try:
        yield
    except DB_ERRORS as err:
        raise store_error(op, dsn, err) from err


@contextlib.contextmanager
def encoding(op: str) -> Iterator[None]:
    """A value that cannot be stored (not JSON, naive time) fails the call before any write."""
    try:
        yield
    except (TypeError, ValueError) as err:
        msg = f"PostgreSQL store: cannot {op}: a value cannot be stored ({type(err).__name__})"
        raise StoreError(msg) from err


def dumps(value: Any) -> str:
    """JSON text for a json column (bound as text: ``json`` keeps it exactly as written)."""
    return _JSON.encode(value)


def ts(value: dt.datetime) -> dt.datetime:
    """An aware datetime as it is bound; a naive one is refused, as the SQLite store does."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime")
    return value


def utc(value: dt.datetime) -> dt.datetime:
    """A timestamptz as read (in the session's time zone) as the same instant in UTC."""
    return value.astimezone(dt.UTC)


class _NulSafeStr(StrDumperUnknown):
    """Strings as psycopg binds them by default, with NUL (impossible in text) as U+FFFD."""

    def dump(self, obj: str) -> bytes:
        return obj.replace("\x00", "\ufffd").encode(self._encoding)


async def configure(conn: AsyncConnection[Any]) -> None:
    """Prepare a new connection (the pool's ``configure``)."""
    conn.adapters.register_dumper(str, _NulSafeStr)


def connect_kwargs(dsn: Dsn, connect_timeout: float) -> dict[str, Any]:
    """Autocommit (transactions are explicit), and ``timeout`` unless the DSN sets its own."""
    extra = {} if dsn.has_timeout else {"connect_timeout": max(2, math.ceil(connect_timeout))}
    return {"autocommit": True, **extra}


async def connect(dsn: Dsn, connect_timeout: float) -> AsyncConnection[Any]:
    """One connection outside any pool, configured like the pool's."""
    with translated("connect", dsn):
        conn = await AsyncConnection.connect(dsn.conninfo, **connect_kwargs(dsn, connect_timeout))
    await configure(conn)
    return conn


async def migrate(conn: AsyncConnection[Any], dsn: Dsn) -> int:
    """Bring the schema to ``SCHEMA_VERSION`` under the advisory lock; return the old version."""
    with translated("migrate the schema", dsn):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (sql.MIGRATION_LOCK,))
            await conn.execute(sql.CREATE_VERSION_TABLE)
            cur = await conn.execute(sql.SELECT_VERSION)
            row = await cur.fetchone()
            version = int(row[0]) if row else 0
            if version > sql.SCHEMA_VERSION:
                raise StoreError(
                    f"PostgreSQL store: schema version {version} is newer than this fotawatch "
                    f"supports ({sql.SCHEMA_VERSION}); upgrade fotawatch"
                )
            for number, step in enumerate(sql.MIGRATIONS[version:], start=version + 1):
                for statement in step:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
    return version
