"""Campaign entries of a scenario: the values and their parsing, including ``generate`` blocks.

A campaign's ``timeline`` is a list of ``{at, status}``: the served status is the last entry whose
``at`` is <= the sim clock, and before the first entry the campaign does not exist yet (404).
``status: X`` is shorthand for ``timeline: [{at: 0, status: X}]``. Statuses are free strings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from fotawatch.simulator._reader import Reader, path_of

__all__ = [
    "BOOL_STYLES",
    "TIME_WINDOW_KEYS",
    "CampaignSpec",
    "DevicePlan",
    "ProgressStep",
    "TimelineStep",
    "generate_campaigns",
    "generated_id",
    "parse_campaign",
]

BOOL_STYLES = ("json", "string", "omit")
TIME_WINDOW_KEYS = ("campaignTimeWindowList", "timeWindowList")
_IMEI_DIGITS = 15
_DEFAULT_FIRST_IMEI = "350000000000000"
_DEFAULT_FIRMWARE = (
    "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
    "SR1.2.0.0-10512",
    "SR1.2.0.0-10657",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineStep:
    """From ``at`` seconds on the sim clock the campaign has ``status``."""

    at: float
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressStep:
    """From ``at`` on, device i gets the status whose cumulative share covers it."""

    at: float
    shares: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DevicePlan:
    """``count`` devices with consecutive IMEIs from ``first_imei``, progressing over time."""

    count: int
    first_imei: int
    progress: tuple[ProgressStep, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignSpec:
    """One campaign as the scenario describes it, with its wire-shape options."""

    account: str
    campaign_id: str
    name: str
    make: str = "SEQUANS"
    model: str = "GM01Q"
    protocol: str = "LWM2M"
    firmware_name: str = _DEFAULT_FIRMWARE[0]
    firmware_from: str = _DEFAULT_FIRMWARE[1]
    firmware_to: str = _DEFAULT_FIRMWARE[2]
    start_date: dt.date
    end_date: dt.date
    time_windows: tuple[tuple[int, int], ...] = ()
    timeline: tuple[TimelineStep, ...]
    devices: DevicePlan | None = None
    time_window_key: str = "campaignTimeWindowList"
    bool_style: str = "json"
    status_alias: bool = False
    repeat_cursor: bool = False
    auto_assign_license: bool = False
    auto_add_devices: bool = False
    extra_fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def generated_id(account: str, index: int) -> str:
    """The deterministic campaign id of the ``index``-th generated campaign of ``account``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fotawatch-simulator/{account}/{index}"))


def parse_campaign(r: Reader, default_account: str | None, today: dt.date) -> CampaignSpec:
    """Validate one ``campaigns[]`` entry."""
    campaign_id = r.text("id")
    spec = CampaignSpec(
        account=r.text("account", default_account),
        campaign_id=campaign_id,
        name=r.text("name", f"Campaign {campaign_id[:8]}"),
        make=r.text("make", "SEQUANS"),
        model=r.text("model", "GM01Q"),
        protocol=r.text("protocol", "LWM2M"),
        firmware_name=r.text("firmware_name", _DEFAULT_FIRMWARE[0]),
        firmware_from=r.text("firmware_from", _DEFAULT_FIRMWARE[1]),
        firmware_to=r.text("firmware_to", _DEFAULT_FIRMWARE[2]),
        start_date=r.date("start_date", today),
        end_date=r.date("end_date", today + dt.timedelta(days=7)),
        time_windows=_time_windows(r),
        timeline=_timeline(r),
        devices=_devices(r.child("devices")),
        time_window_key=r.choice("time_window_key", TIME_WINDOW_KEYS[0], TIME_WINDOW_KEYS),
        bool_style=r.choice("bool_style", "json", BOOL_STYLES),
        status_alias=r.flag("status_alias", default=False),
        repeat_cursor=r.flag("repeat_cursor", default=False),
        auto_assign_license=r.flag("auto_assign_license", default=False),
        auto_add_devices=r.flag("auto_add_devices", default=False),
        extra_fields=_extra_fields(r),
    )
    r.finish()
    return spec


def generate_campaigns(
    scenario: Reader, default_account: str | None, today: dt.date
) -> list[CampaignSpec]:
    """Expand the scenario's ``generate`` block(s): ``{count, start_index?, <campaign keys>}``."""
    raw = scenario.raw("generate")
    if raw is None:
        return []
    blocks = [("generate", raw)] if isinstance(raw, Mapping) else list(scenario.items("generate"))
    specs: list[CampaignSpec] = []
    for path, block in blocks:
        specs += _generate(Reader(block, path), default_account, today)
    return specs


def _generate(r: Reader, default_account: str | None, today: dt.date) -> list[CampaignSpec]:
    if r.has("id"):
        raise r.error("id", "generated campaigns get their ids from generated_id()")
    if not r.has("count"):
        raise r.error("count", "is required")
    count = r.integer("count", 0)
    start = r.integer("start_index", 0)
    template = r.rest()
    template["id"] = "generated"
    template.setdefault("name", "Generated campaign")
    base = parse_campaign(Reader(template, r.path), default_account, today)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    del fields["campaign_id"], fields["name"]
    return [
        CampaignSpec(
            **fields, campaign_id=generated_id(base.account, index), name=f"{base.name} #{index}"
        )
        for index in range(start, start + count)
    ]


def _time_windows(r: Reader) -> tuple[tuple[int, int], ...]:
    windows = []
    for path, element in r.items("time_windows"):
        if (
            not isinstance(element, list | tuple)
            or len(element) != 2
            or not all(isinstance(h, int) and not isinstance(h, bool) for h in element)
            or not 0 <= element[0] < element[1] <= 24
        ):
            raise ValueError(f"{path}: expected [startHour, endHour] with 0 <= start < end <= 24")
        windows.append((element[0], element[1]))
    return tuple(windows)


def _timeline(r: Reader) -> tuple[TimelineStep, ...]:
    if r.has("status") and r.has("timeline"):
        raise r.error("status", "give either status or timeline, not both")
    if not r.has("timeline"):
        return (TimelineStep(at=0.0, status=r.text("status", "CampaignRequestPending")),)
    steps = [_timeline_step(Reader(e, p)) for p, e in r.items("timeline")]
    if not steps:
        raise r.error("timeline", "must not be empty")
    _check_ascending(path_of(r.path, "timeline"), [step.at for step in steps])
    return tuple(steps)


def _timeline_step(r: Reader) -> TimelineStep:
    step = TimelineStep(at=r.required_number("at", minimum=float("-inf")), status=r.text("status"))
    r.finish()
    return step


def _check_ascending(path: str, times: list[float]) -> None:
    for index in range(1, len(times)):
        if times[index] < times[index - 1]:
            raise ValueError(f"{path_of(path, index)}.at: entries must be in time order")


def _devices(r: Reader | None) -> DevicePlan | None:
    if r is None:
        return None
    count = r.integer("count", 0)
    first = r.text("first_imei", _DEFAULT_FIRST_IMEI)
    if not first.isdigit() or len(first) != _IMEI_DIGITS:
        raise r.error("first_imei", "expected a 15-digit IMEI")
    if len(str(int(first) + max(count - 1, 0))) > _IMEI_DIGITS:
        raise r.error("count", "IMEIs would run past 15 digits")
    progress = [_progress_step(Reader(e, p)) for p, e in r.items("progress")]
    _check_ascending(path_of(r.path, "progress"), [step.at for step in progress])
    r.finish()
    default = ProgressStep(at=0.0, shares=(("UpgradePending", 1.0),))
    return DevicePlan(count=count, first_imei=int(first), progress=tuple(progress) or (default,))


def _progress_step(r: Reader) -> ProgressStep:
    at = r.required_number("at", minimum=float("-inf"))
    shares: list[tuple[str, float]] = []
    for status, share in r.rest().items():
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise r.error(status, "expected a share between 0 and 1")
        shares.append((status, float(share)))
    if not shares:
        raise r.error("at", "a progress step needs at least one <status>: <share>")
    if sum(share for _, share in shares) > 1.0 + 1e-9:
        raise r.error(shares[-1][0], "shares add up to more than 1")
    return ProgressStep(at=at, shares=tuple(shares))


def _extra_fields(r: Reader) -> Mapping[str, Any]:
    extra = r.child("extra_fields")
    return MappingProxyType({} if extra is None else extra.rest())
