"""Domain values: campaign statuses, campaigns, transitions and the events the engine emits.

Pure module: no I/O, no clock, no third-party imports. Everything here is a frozen value
object; validation happens once at the boundary (config load, wire parsing) and the types are
trusted inside.

A campaign's ``status`` is kept as the API's string, normalised (``CampaignQueued`` becomes
``CampaignRequestQueued``) but never rejected: ThingSpace documents an open set, so an unrecognised
value is carried as is and classified ``unknown`` by the state machine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "FAILURE_STATUSES",
    "FINAL_STATUSES",
    "KNOWN_STATUSES",
    "LIFECYCLE_ORDER",
    "STATUS_ALIASES",
    "Campaign",
    "CampaignKey",
    "CampaignStatus",
    "Transition",
    "TransitionKind",
    "is_final",
    "known_status",
    "normalise_status",
]


class CampaignStatus(StrEnum):
    """The campaign statuses ThingSpace documents for FOTA v3 (reference §3.1)."""

    REQUEST_PENDING = "CampaignRequestPending"
    REQUEST_QUEUED = "CampaignRequestQueued"
    PRE_SCHEDULED = "CampaignPreScheduled"
    SCHEDULED = "CampaignScheduled"
    ENDED = "CampaignEnded"
    REQUEST_FAILED = "CampaignRequestFailed"
    FAILED = "CampaignFailed"
    CANCELLED = "CampaignCancelled"
    ABORTED = "CampaignAborted"


class TransitionKind(StrEnum):
    """How an observed status change is classified (see ``statemachine``)."""

    PROGRESSED = "progressed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABORTED = "aborted"
    UNEXPECTED = "unexpected"
    UNKNOWN = "unknown"


KNOWN_STATUSES: tuple[CampaignStatus, ...] = tuple(CampaignStatus)
STATUS_ALIASES: dict[str, CampaignStatus] = {"CampaignQueued": CampaignStatus.REQUEST_QUEUED}
LIFECYCLE_ORDER: tuple[CampaignStatus, ...] = (
    CampaignStatus.REQUEST_PENDING,
    CampaignStatus.REQUEST_QUEUED,
    CampaignStatus.PRE_SCHEDULED,
    CampaignStatus.SCHEDULED,
)
FINAL_STATUSES: frozenset[CampaignStatus] = frozenset(
    {
        CampaignStatus.ENDED,
        CampaignStatus.REQUEST_FAILED,
        CampaignStatus.FAILED,
        CampaignStatus.CANCELLED,
        CampaignStatus.ABORTED,
    }
)
FAILURE_STATUSES: frozenset[CampaignStatus] = frozenset(
    {CampaignStatus.REQUEST_FAILED, CampaignStatus.FAILED}
)
_BY_VALUE: dict[str, CampaignStatus] = {s.value: s for s in CampaignStatus}


def normalise_status(raw: str) -> str:
    """Map documented aliases onto the canonical name; keep anything else as it came."""
    alias = STATUS_ALIASES.get(raw)
    return alias.value if alias is not None else raw


def known_status(status: str) -> CampaignStatus | None:
    """The enum member for a (normalised) status string, or None when it is unrecognised."""
    return _BY_VALUE.get(status)


def is_final(status: str) -> bool:
    """True for the five terminal statuses; unknown statuses are not final."""
    member = known_status(status)
    return member is not None and member in FINAL_STATUSES


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class CampaignKey:
    """A campaign is identified by its account and id; the account keeps its leading zeros."""

    account: str
    campaign_id: str

    def __str__(self) -> str:
        return f"{self.account}/{self.campaign_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeWindow:
    """Hours of the day (UTC) in which a campaign may upgrade devices: start <= hour < end."""

    start_hour: int
    end_hour: int

    def __str__(self) -> str:
        return f"{self.start_hour:02d}:00-{self.end_hour:02d}:00"


@dataclass(frozen=True, slots=True, kw_only=True)
class Campaign:
    """One campaign as the FOTA v3 campaign endpoint describes it (reference §4.1)."""

    account: str
    campaign_id: str
    status: str
    name: str | None = None
    firmware_name: str | None = None
    firmware_from: str | None = None
    firmware_to: str | None = None
    protocol: str | None = None
    make: str | None = None
    model: str | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    time_windows: tuple[TimeWindow, ...] = ()
    auto_assign_license: bool | None = None
    auto_add_devices: bool | None = None

    @property
    def key(self) -> CampaignKey:
        return CampaignKey(account=self.account, campaign_id=self.campaign_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """An observed status change of one campaign.

    ``seq`` numbers the transitions of a campaign from 1; with the campaign key it is the unique
    key under which a store records the transition, so the same change is never recorded twice.
    ``from_status`` is None only for the first sight of a campaign in a failure status.
    """

    key: CampaignKey
    seq: int
    from_status: str | None
    to_status: str
    kind: TransitionKind
    observed_at: dt.datetime
    campaign: Campaign | None = field(default=None, compare=False)

    @property
    def account(self) -> str:
        return self.key.account

    @property
    def campaign_id(self) -> str:
        return self.key.campaign_id
