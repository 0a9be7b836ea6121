"""fotawatch's own JSON form of its values (store rows, outbox payloads, ``status --json``).

Not the ThingSpace wire format: that is parsed in ``thingspace.wire``. Pure module.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fotawatch.model import Campaign, CampaignKey, TimeWindow, Transition, TransitionKind

__all__ = [
    "campaign_from_dict",
    "campaign_to_dict",
    "format_time",
    "parse_time",
    "transition_from_dict",
    "transition_to_dict",
]


def format_time(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``; None stays None."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str | None) -> dt.datetime | None:
    """Inverse of ``format_time``."""
    if value is None:
        return None
    return dt.datetime.fromisoformat(value)


def _date(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if isinstance(value, str) else None


def campaign_to_dict(c: Campaign) -> dict[str, Any]:
    """Every field of a campaign as JSON-serialisable values."""
    return {
        "account": c.account,
        "campaign_id": c.campaign_id,
        "status": c.status,
        "name": c.name,
        "firmware_name": c.firmware_name,
        "firmware_from": c.firmware_from,
        "firmware_to": c.firmware_to,
        "protocol": c.protocol,
        "make": c.make,
        "model": c.model,
        "start_date": c.start_date.isoformat() if c.start_date else None,
        "end_date": c.end_date.isoformat() if c.end_date else None,
        "time_windows": [[w.start_hour, w.end_hour] for w in c.time_windows],
        "auto_assign_license": c.auto_assign_license,
        "auto_add_devices": c.auto_add_devices,
    }


def campaign_from_dict(d: dict[str, Any]) -> Campaign:
    """Inverse of ``campaign_to_dict`` (trusted input: fotawatch wrote it)."""
    return Campaign(
        account=d["account"],
        campaign_id=d["campaign_id"],
        status=d["status"],
        name=d.get("name"),
        firmware_name=d.get("firmware_name"),
        firmware_from=d.get("firmware_from"),
        firmware_to=d.get("firmware_to"),
        protocol=d.get("protocol"),
        make=d.get("make"),
        model=d.get("model"),
        start_date=_date(d.get("start_date")),
        end_date=_date(d.get("end_date")),
        time_windows=tuple(
            TimeWindow(start_hour=s, end_hour=e) for s, e in d.get("time_windows") or ()
        ),
        auto_assign_license=d.get("auto_assign_license"),
        auto_add_devices=d.get("auto_add_devices"),
    )


def transition_to_dict(t: Transition) -> dict[str, Any]:
    """A transition with its campaign snapshot (if any)."""
    return {
        "account": t.account,
        "campaign_id": t.campaign_id,
        "seq": t.seq,
        "from_status": t.from_status,
        "to_status": t.to_status,
        "kind": t.kind.value,
        "observed_at": format_time(t.observed_at),
        "campaign": campaign_to_dict(t.campaign) if t.campaign else None,
    }


def transition_from_dict(d: dict[str, Any]) -> Transition:
    """Inverse of ``transition_to_dict``."""
    observed = parse_time(d["observed_at"])
    assert observed is not None
    return Transition(
        key=CampaignKey(account=d["account"], campaign_id=d["campaign_id"]),
        seq=d["seq"],
        from_status=d["from_status"],
        to_status=d["to_status"],
        kind=TransitionKind(d["kind"]),
        observed_at=observed,
        campaign=campaign_from_dict(d["campaign"]) if d.get("campaign") else None,
    )
