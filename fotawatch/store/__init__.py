"""State stores: what was seen, the transition history and the alert outbox."""

from fotawatch.store.base import CampaignRecord, OutboxMessage, OutboxRow, PollRecord, Store
from fotawatch.store.memory import MemoryStore
from fotawatch.store.sqlite import SqliteStore, open_store

__all__ = [
    "CampaignRecord",
    "MemoryStore",
    "OutboxMessage",
    "OutboxRow",
    "PollRecord",
    "SqliteStore",
    "Store",
    "open_store",
]
