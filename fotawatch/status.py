"""One-shot views for the CLI: ``fotawatch status`` (poll once, or ``--url``: ask a running
daemon's ``/api/v1/campaigns``) and ``fotawatch history``.

Polling once, ``status`` shows each campaign's device progress ("1,234 / 2,689 upgraded, 12
failed"): the newest counts the daemon stored, or, when there are none and the campaign is
Scheduled or final (and device polling is not off for it), one read of its device report, which
is not stored.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from fotawatch.codec import format_time, transition_to_dict
from fotawatch.config import Settings
from fotawatch.device_poller import fetch_devices
from fotawatch.devices import DeviceCounts, aggregate
from fotawatch.discovery import merge_targets, watched_keys
from fotawatch.errors import ApiError, FotawatchError
from fotawatch.events import Event
from fotawatch.model import Campaign, CampaignKey, CampaignStatus, is_final
from fotawatch.poller import Target
from fotawatch.state import open_state
from fotawatch.store.base import CampaignRecord
from fotawatch.thingspace.client import ThingSpaceClient

__all__ = [
    "poll_once",
    "read_daemon",
    "read_history",
    "render_history",
    "render_table",
    "row_from_api",
]

API_PATH = "/api/v1/campaigns"
READ_TIMEOUT = 30.0  # seconds for the whole request to a running daemon
_HEALTH_ERRORS = {
    "missing": "missing: ThingSpace does not know this campaign",
    "not_polled": "not polled yet",
}


def _ignore(_: Event) -> None:
    return None


_Stored = tuple[
    dict[CampaignKey, CampaignRecord], dict[CampaignKey, DeviceCounts], list[CampaignKey]
]


async def _stored(settings: Settings) -> _Stored:
    """The stored records and device counts, and the campaigns discovery watches."""
    async with open_state(settings, existing=True) as store:
        if store is None:
            return {}, {}, []
        discovering = {a.account for a in settings.accounts if a.discover}
        watched = watched_keys(await store.discovered(), discovering)
        return await store.load(), await store.latest_device_counts(), watched


def _devices_on(settings: Settings, key: CampaignKey) -> bool:
    overrides = {c.key: c.devices_interval_seconds for c in settings.campaigns}
    interval = overrides.get(key)
    return (settings.polling.devices_interval_seconds if interval is None else interval) > 0


async def _progress(
    client: ThingSpaceClient, campaign: Campaign, stored: DeviceCounts | None, *, live: bool
) -> DeviceCounts | None:
    """The stored counts, else (``live``, Scheduled or final) one unstored read of the report."""
    status = campaign.status
    if stored is not None or not live:
        return stored
    if status != CampaignStatus.SCHEDULED and not is_final(status):
        return None
    try:
        report = await fetch_devices(client, campaign.key)
    except ApiError:
        return None
    return DeviceCounts(key=campaign.key, polled_at=dt.datetime.now(dt.UTC), campaign_status=status,
                        counts=aggregate(report.statuses.values()),
                        reported_total=report.reported_total)  # fmt: skip


async def poll_once(settings: Settings) -> list[dict[str, Any]]:
    """Poll every configured campaign, and every one discovery watches (as the store says),
    once (no state is written) and describe each."""
    from fotawatch.app import build_client, targets_of  # noqa: PLC0415 - app imports us

    stored, devices, discovered = await _stored(settings)
    async with aiohttp.ClientSession() as session:
        client = build_client(settings, session, _ignore)

        async def one(key: CampaignKey, name: str | None) -> dict[str, Any]:
            try:
                campaign = await client.get_campaign(key.account, key.campaign_id)
            except ApiError as err:
                return _row(key, name, None, stored.get(key), error=str(err))
            live = _devices_on(settings, key)
            counts = await _progress(client, campaign, devices.get(key), live=live)
            return _row(key, name, campaign, stored.get(key), error=None, counts=counts)

        targets = merge_targets(targets_of(settings), (Target(key=k) for k in discovered))
        return list(await asyncio.gather(*(one(t.key, t.name) for t in targets)))


def _row(  # noqa: PLR0913 - the row's parts, the optional ones keyword-only
    key: CampaignKey,
    name: str | None,
    campaign: Campaign | None,
    record: CampaignRecord | None,
    *,
    error: str | None,
    counts: DeviceCounts | None = None,
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
        "progress": None if counts is None else {
            "upgraded": counts.upgraded, "total": counts.total, "failed": counts.failed,
            "devices": dict(counts.counts), "at": format_time(counts.polled_at),
        },
        "error": error,
    }  # fmt: skip


def row_from_api(c: Mapping[str, Any]) -> dict[str, Any]:
    """A campaign of the daemon's API as a ``status`` row; ``error`` unless its last poll was ok."""
    health = c.get("health")
    error = None
    if health != "ok":
        error = _HEALTH_ERRORS.get(str(health), f"last poll failed: {c.get('last_poll_result')}")
    return {
        "account": c["account"],
        "campaign_id": c["id"],
        "name": c.get("name"),
        "status": c.get("status"),
        "since": c.get("since"),
        "firmware_from": c.get("firmware_from"),
        "firmware_to": c.get("firmware_to"),
        "start_date": c.get("start_date"),
        "end_date": c.get("end_date"),
        "progress": _progress_from_api(c.get("devices")),
        "error": error,
    }


def _progress_from_api(devices: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The API's ``devices`` object as a row's ``progress`` (the shape ``poll_once`` gives)."""
    if not devices:
        return None
    return {
        "upgraded": devices["upgraded"],
        "total": devices["total"],
        "failed": devices["failed"],
        "devices": devices.get("by_status", {}),
        "at": devices.get("polled_at"),
    }


async def read_daemon(
    url: str,
    *,
    user: str | None = None,
    password: str = "",
    cafile: Path | None = None,
) -> list[dict[str, Any]]:
    """A running daemon's campaigns (``GET {url}/api/v1/campaigns``) as ``status`` rows."""
    endpoint = url.rstrip("/") + API_PATH
    headers = {"Accept": "application/json"}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=cafile) if cafile else True
    timeout = aiohttp.ClientTimeout(total=READ_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as s,
            s.get(endpoint, ssl=tls, headers=headers) as response,
        ):
            if response.status == 401:
                raise FotawatchError(f"{endpoint}: 401 Unauthorized (use --user)")
            if response.status != 200:
                raise FotawatchError(f"{endpoint}: HTTP {response.status}")
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        raise FotawatchError(f"{endpoint}: {type(err).__name__}: {err}") from err
    campaigns = body.get("campaigns") if isinstance(body, dict) else None
    if not isinstance(campaigns, list):
        raise FotawatchError(f"{endpoint}: not a fotawatch API answer")
    return [row_from_api(c) for c in campaigns]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _status_cell(row: dict[str, Any]) -> str:
    if row["status"] is None:
        return f"ERROR {row['error']}"
    return row["status"] if row["error"] is None else f"{row['status']} [{row['error']}]"


def _progress_text(progress: Mapping[str, Any] | None) -> str:
    if not progress:
        return "-"
    return (f"{progress['upgraded']:,} / {progress['total']:,} upgraded,"
            f" {progress['failed']:,} failed")  # fmt: skip


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """The ``status`` table: campaign, status, since, firmware from -> to, dates, devices."""
    body = [
        [
            f"{r['name'] or '-'} ({r['campaign_id']})",
            _status_cell(r),
            r["since"] or "-",
            f"{r['firmware_from'] or '?'} -> {r['firmware_to'] or '?'}",
            f"{r['start_date'] or '?'} .. {r['end_date'] or '?'}",
            _progress_text(r.get("progress")),
        ]
        for r in rows
    ]
    return _table(["CAMPAIGN", "STATUS", "SINCE", "FIRMWARE", "DATES", "DEVICES"], body)


async def read_history(settings: Settings, campaign_id: str) -> list[dict[str, Any]]:
    """Recorded transitions of ``campaign_id``, oldest first."""
    async with open_state(settings, existing=True) as store:
        if store is None:
            return []
        return [transition_to_dict(t) for t in await store.transitions(campaign_id)]


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
