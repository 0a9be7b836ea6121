"""The simulator's rendering of the ThingSpace wire: response bodies and the three error shapes.

Written from the reference document alone; it shares no code with ``fotawatch.thingspace`` so the
client's parser is tested against an independent reading of the API. Pure module: dicts and bytes.
"""

from __future__ import annotations

import json
from typing import Any

from fotawatch.simulator.campaigns import CampaignSpec

__all__ = [
    "FLAG_KEYS",
    "HTML_ERROR_PAGE",
    "QUEUED",
    "QUEUED_ALIAS",
    "campaign_template",
    "dumps",
    "error_code",
    "gateway_fault",
    "history_body",
    "oauth_error",
    "served_status",
]

QUEUED = "CampaignRequestQueued"
QUEUED_ALIAS = "CampaignQueued"
FLAG_KEYS = ("autoAssignLicenseFlag", "autoAddDevicesFlag")
HTML_ERROR_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def dumps(body: object) -> bytes:
    """Compact JSON, as an API gateway sends it."""
    return json.dumps(body, separators=(",", ":")).encode()


def oauth_error(error: str, description: str) -> dict[str, str]:
    """The OAuth token endpoint's error shape."""
    return {"error": error, "error_description": description}


def gateway_fault(code: str, message: str, description: str) -> dict[str, dict[str, str]]:
    """The API gateway's (WSO2) fault shape, e.g. 900901 Invalid Credentials."""
    return {"fault": {"code": code, "message": message, "description": description}}


def error_code(code: str, message: str) -> dict[str, str]:
    """The ThingSpace service error shape ``{errorCode, errorMessage}``."""
    return {"errorCode": code, "errorMessage": message}


def served_status(spec: CampaignSpec, status: str) -> str:
    """The status as this campaign puts it on the wire (``status_alias`` spells Queued short)."""
    return QUEUED_ALIAS if spec.status_alias and status == QUEUED else status


def campaign_template(spec: CampaignSpec, *, flags: bool) -> dict[str, Any]:
    """The campaign object with a placeholder status; copy it and set ``status`` per request."""
    body: dict[str, Any] = {
        "id": spec.campaign_id,
        "accountName": spec.account,
        "campaignName": spec.name,
        "firmwareName": spec.firmware_name,
        "firmwareFrom": spec.firmware_from,
        "firmwareTo": spec.firmware_to,
        "protocol": spec.protocol,
        "make": spec.make,
        "model": spec.model,
        "startDate": spec.start_date.isoformat(),
        "endDate": spec.end_date.isoformat(),
        spec.time_window_key: [{"startTime": s, "endTime": e} for s, e in spec.time_windows],
        "status": None,
    }
    if flags and spec.bool_style != "omit":
        values = (spec.auto_assign_license, spec.auto_add_devices)
        for key, value in zip(FLAG_KEYS, values, strict=True):
            body[key] = _flag(value, spec.bool_style)
    body.update(spec.extra_fields)
    return body


def _flag(value: bool, style: str) -> bool | str:  # noqa: FBT001 - a plain value mapper
    return ("true" if value else "false") if style == "string" else value


def history_body(page: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    """``V3CampaignHistory``: one page of campaigns of a status."""
    body: dict[str, Any] = {"hasMoreData": has_more, "campaignList": page}
    if page:
        body["lastSeenCampaignId"] = page[-1]["id"]
    return body
