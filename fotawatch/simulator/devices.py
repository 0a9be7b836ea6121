"""Per-device report pages (``V3CampaignDevice``) from a campaign's device plan.

Device i (0-based, IMEI = first_imei + i) gets its status from the progress step in force: the
shares are laid out in the order written, so with ``{UpgradeSuccess: 0.6, UpgradePending: 0.4}``
and 10 devices, devices 0-5 succeeded and 6-9 are pending. Boundaries are rounded; the last listed
status also takes any remainder when the shares add up to less than 1. Deterministic.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from typing import Any

from fotawatch.simulator.campaigns import DevicePlan, ProgressStep

__all__ = ["device_page", "imei"]

_RFC822 = "%d %b %y %H:%M UTC"


def imei(plan: DevicePlan, index: int) -> str:
    return f"{plan.first_imei + index:015d}"


def device_page(  # noqa: PLR0913 - the page's inputs, all keyword-only
    plan: DevicePlan | None,
    *,
    now: float,
    after: int,
    size: int,
    repeat: bool,
    origin: dt.datetime,
) -> dict[str, Any]:
    """The page of devices with IMEI > ``after`` (0 = from the start), ascending."""
    if plan is None:
        return _body(0, [], has_more=False, last=None, size=size)
    start = 0 if repeat or after == 0 else min(max(after - plan.first_imei + 1, 0), plan.count)
    end = min(start + size, plan.count)
    step = _step_at(plan, now)
    bounds, statuses = _layout(step, plan.count)
    updated = origin + dt.timedelta(seconds=max(step.at, 0.0))
    stamp = updated.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    reasons = _reasons(updated)
    devices = []
    for index in range(start, end):
        status = statuses[bisect_right(bounds, index)]
        devices.append(_device(imei(plan, index), status, reasons.get(status, status), stamp))
    last = devices[-1]["deviceId"] if devices else (str(after) if after else None)
    return _body(plan.count, devices, has_more=repeat or end < plan.count, last=last, size=size)


def _body(
    total: int, devices: list[dict[str, Any]], *, has_more: bool, last: str | None, size: int
) -> dict[str, Any]:
    body: dict[str, Any] = {"totalDevice": total, "hasMoreData": has_more}
    if last is not None:
        body["lastSeenDeviceId"] = last
    body["maxPageSize"] = size
    body["deviceList"] = devices
    return body


def _step_at(plan: DevicePlan, now: float) -> ProgressStep:
    index = bisect_right([step.at for step in plan.progress], now)
    return plan.progress[max(index - 1, 0)]


def _layout(step: ProgressStep, count: int) -> tuple[list[int], list[str]]:
    """Exclusive end index of each status's run of devices, and the statuses in order."""
    bounds: list[int] = []
    cumulative = 0.0
    for _, share in step.shares:
        cumulative += share
        bounds.append(round(cumulative * count))
    bounds[-1] = count
    return bounds, [status for status, _ in step.shares]


def _device(device_id: str, status: str, reason: str, stamp: str) -> dict[str, Any]:
    return {"deviceId": device_id, "status": status, "resultReason": reason, "updatedTime": stamp}


def _reasons(updated: dt.datetime) -> dict[str, str]:
    """``resultReason`` texts in the documented style; other statuses repeat the status."""
    later = (updated + dt.timedelta(hours=4)).strftime(_RFC822)
    return {
        "UpgradePending": "Upgrade pending, the device upgrade is estimated to be scheduled for "
        + updated.strftime(_RFC822),
        "UpgradeScheduled": f"Upgrade scheduled to begin on {updated.strftime(_RFC822)}, "
        f"and the estimated completion is {later}",
        "UpgradeSuccess": "Upgrade completed successfully",
        "UpgradeFailed": "RovaClientDownloadFailed",
        "NoDeviceDataFromNetwork": "The network reports this device is not reachable",
        "ReceivedDeviceDataFromNetwork": "Reachability information received from the network",
        "RequestToFotaServerFailed": f"Request failed, estimated retry time on {later}",
    }
