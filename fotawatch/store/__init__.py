"""State stores: what was seen, the transition history and the alert outbox."""

from fotawatch.store.base import CampaignRecord, OutboxMessage, OutboxRow, PollRecord, Store

__all__ = ["CampaignRecord", "OutboxMessage", "OutboxRow", "PollRecord", "Store"]
