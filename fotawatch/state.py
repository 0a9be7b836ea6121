"""The state backend a config chooses: the SQLite file at ``state_path`` (one instance), or the
PostgreSQL database at ``state_dsn`` (several instances, one leader)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import unquote, urlsplit

from fotawatch.config import Settings
from fotawatch.leader import Leadership, SoleLeader, Timing
from fotawatch.store.base import Store

__all__ = ["describe_state", "dsn_secrets", "leadership_for", "open_state"]


def describe_state(settings: Settings) -> str:
    """Where the state lives, for messages: never the DSN's user or password."""
    if settings.state_dsn is None:
        return str(settings.state_path)
    parts = urlsplit(settings.state_dsn.get_secret_value())
    host = parts.hostname or "local socket"
    port = f":{parts.port}" if parts.port else ""
    return f"PostgreSQL {host}{port}{parts.path or '/'}"


def dsn_secrets(settings: Settings) -> list[str]:
    """The DSN and its password, for log redaction."""
    if settings.state_dsn is None:
        return []
    dsn = settings.state_dsn.get_secret_value()
    password = urlsplit(dsn).password
    return [dsn] + ([password, unquote(password)] if password else [])


@contextlib.asynccontextmanager
async def open_state(settings: Settings, *, existing: bool = False) -> AsyncIterator[Store | None]:
    """The configured store, closed on exit. With ``existing`` (read-only commands) a SQLite
    file that does not exist yet gives None instead of being created."""
    store: Store
    if settings.state_dsn is not None:
        from fotawatch.store.postgres import PostgresStore  # noqa: PLC0415 - psycopg on demand

        # An outbox claim holds a connection for the length of a send: one per sink, plus
        # what polling, device polls, discovery and the status page use at once.
        sinks = (settings.alerts.slack is not None) + len(settings.alerts.webhooks)
        store = await PostgresStore.open(settings.state_dsn.get_secret_value(), max_size=4 + sinks)
    elif existing and not settings.state_path.exists():
        yield None
        return
    else:
        from fotawatch.store.sqlite import SqliteStore  # noqa: PLC0415 - symmetric with PG

        store = await SqliteStore.open(settings.state_path)
    try:
        yield store
    finally:
        await store.close()


def leadership_for(settings: Settings) -> Leadership:
    """The election for this state: always leading on SQLite, an advisory lock on PostgreSQL."""
    if settings.state_dsn is None:
        return SoleLeader()
    from fotawatch.pg_leader import PgLeader  # noqa: PLC0415 - psycopg only when configured

    return PgLeader(settings.state_dsn.get_secret_value(), Timing(settings.ha.takeover_seconds))
