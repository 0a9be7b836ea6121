"""State stores: what was seen, the transition history and the alert outbox.

``fotawatch.store.postgres.PostgresStore`` is imported from its module when configured, so that
psycopg is loaded only then.
"""

from fotawatch.store.base import (
    CampaignRecord,
    OutboxClaim,
    OutboxMessage,
    OutboxRow,
    PollRecord,
    Store,
)
from fotawatch.store.memory import MemoryStore
from fotawatch.store.sqlite import SqliteStore, open_store

__all__ = [
    "CampaignRecord",
    "MemoryStore",
    "OutboxClaim",
    "OutboxMessage",
    "OutboxRow",
    "PollRecord",
    "SqliteStore",
    "Store",
    "open_store",
]
