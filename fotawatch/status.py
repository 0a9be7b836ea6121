"""One-shot views for the CLI: ``fotawatch status`` (poll once) and ``fotawatch history``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp

from fotawatch.codec import format_time, transition_to_dict
from fotawatch.config import Settings
from fotawatch.errors import ApiError
from fotawatch.events import Event
from fotawatch.model import Campaign, CampaignKey
from fotawatch.store.base import CampaignRecord
from fotawatch.store.sqlite import SqliteStore

__all__ = ["poll_once", "read_history", "render_history", "render_table"]


def _ignore(_: Event) -> None:
    return None


async def _stored(settings: Settings) -> dict[CampaignKey, CampaignRecord]:
    if not settings.state_path.exists():
        return {}
    store = await SqliteStore.open(settings.state_path)
    try:
        return await store.load()
    finally:
        await store.close()


async def poll_once(settings: Settings) -> list[dict[str, Any]]:
    """Poll every configured campaign once (no state is written) and describe each."""
    from fotawatch.app import build_client, targets_of  # noqa: PLC0415 - app imports us

    stored = await _stored(settings)
    async with aiohttp.ClientSession() as session:
        client = build_client(settings, session, _ignore)

        async def one(key: CampaignKey, name: str | None) -> dict[str, Any]:
            try:
                campaign = await client.get_campaign(key.account, key.campaign_id)
            except ApiError as err:
                return _row(key, name, None, stored.get(key), error=str(err))
            return _row(key, name, campaign, stored.get(key), error=None)

        targets = targets_of(settings)
        return list(await asyncio.gather(*(one(t.key, t.name) for t in targets)))


def _row(
    key: CampaignKey,
    name: str | None,
    campaign: Campaign | None,
    record: CampaignRecord | None,
    *,
    error: str | None,
) -> dict[str, Any]:
    since = None
    if record is not None and campaign is not None and record.status == campaign.status:
        since = format_time(record.status_since)
    c = campaign
    return {
        "account": key.account,
        "campaign_id": key.campaign_id,
        "name": name or (c.name if c else None),
        "status": c.status if c else None,
        "since": since,
        "firmware_from": c.firmware_from if c else None,
        "firmware_to": c.firmware_to if c else None,
        "start_date": c.start_date.isoformat() if c and c.start_date else None,
        "end_date": c.end_date.isoformat() if c and c.end_date else None,
        "error": error,
    }


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """The ``status`` table: campaign, status, since, firmware from -> to, dates."""
    body = [
        [
            f"{r['name'] or '-'} ({r['campaign_id']})",
            r["status"] or f"ERROR {r['error']}",
            r["since"] or "-",
            f"{r['firmware_from'] or '?'} -> {r['firmware_to'] or '?'}",
            f"{r['start_date'] or '?'} .. {r['end_date'] or '?'}",
        ]
        for r in rows
    ]
    return _table(["CAMPAIGN", "STATUS", "SINCE", "FIRMWARE", "DATES"], body)


async def read_history(settings: Settings, campaign_id: str) -> list[dict[str, Any]]:
    """Recorded transitions of ``campaign_id``, oldest first."""
    if not settings.state_path.exists():
        return []
    store = await SqliteStore.open(settings.state_path)
    try:
        return [transition_to_dict(t) for t in await store.transitions(campaign_id)]
    finally:
        await store.close()


def render_history(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "no transitions recorded"
    body = [
        [
            str(r["seq"]),
            r["observed_at"],
            r["from_status"] or "(first seen)",
            r["to_status"],
            r["kind"],
        ]
        for r in rows
    ]
    return _table(["#", "OBSERVED", "FROM", "TO", "KIND"], body)
