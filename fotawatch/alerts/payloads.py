"""The events stored in the outbox: JSON-serialisable dicts that a sink renders at send time.

Pure module. A payload is written once, when the engine decides something is worth saying, and
rendered only when a sink sends it, so alerts that piled up while Slack was down can be combined
into one message. Every payload has a ``type``:

``transition``
    ``codec.transition_to_dict`` plus ``campaign_name`` (the configured name, else the API's, else
    None) and, optionally, ``progress`` = ``{"upgraded": int, "total": int, "failed": int}``.
``condition``
    ``condition`` (a ``Condition``), ``state`` (``firing``/``resolved``), ``episode`` (numbers the
    firings of one condition, so fire -> resolve -> fire gets fresh keys), ``observed_at``,
    ``account``, ``campaign_id``, ``campaign_name``, ``status``, ``since``, ``detail``.
``milestone``
    ``account``, ``campaign_id``, ``campaign_name``, ``milestone`` (percent of the campaign's
    devices upgraded, 1..100), ``progress`` (as above) and ``observed_at``.
``watching``
    Discovery started watching a campaign: ``account``, ``campaign_id``, ``campaign_name``,
    ``status``, ``campaign`` (codec form) and ``observed_at``.
``test``
    ``observed_at`` only: ``fotawatch test-alert``.

``dedup_key`` gives the outbox its unique key: the same event is queued once per sink, whoever
(a second instance, a restart, a retry) tries to queue it again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypedDict

from fotawatch.codec import campaign_to_dict, format_time, transition_to_dict
from fotawatch.model import Campaign, CampaignKey, Transition

__all__ = [
    "Condition",
    "ConditionState",
    "Payload",
    "PayloadType",
    "Progress",
    "condition_payload",
    "dedup_key",
    "milestone_payload",
    "test_payload",
    "transition_payload",
    "watching_payload",
]

Payload = Mapping[str, Any]


class PayloadType(StrEnum):
    """The ``type`` field of a payload."""

    TRANSITION = "transition"
    CONDITION = "condition"
    TEST = "test"
    MILESTONE = "milestone"
    WATCHING = "watching"


class Condition(StrEnum):
    """Standing problems that fire once and resolve once (edge-triggered)."""

    LOGIN_CIRCUIT_OPEN = "login_circuit_open"
    API_DOWN = "api_down"
    CAMPAIGN_MISSING = "campaign_missing"
    CAMPAIGN_STUCK = "campaign_stuck"
    CAMPAIGN_NOT_SCHEDULED = "campaign_not_scheduled"
    CAMPAIGN_OVERDUE = "campaign_overdue"
    FAILURE_RATE = "failure_rate"


class ConditionState(StrEnum):
    """Whether a condition started or ended."""

    FIRING = "firing"
    RESOLVED = "resolved"


class Progress(TypedDict):
    """Device counts of a campaign at the time of the transition."""

    upgraded: int
    total: int
    failed: int


def transition_payload(
    t: Transition, *, name: str | None, progress: Progress | None = None
) -> dict[str, Any]:
    """The outbox payload of a transition; ``name`` (from config) wins over the API's name."""
    api_name = t.campaign.name if t.campaign is not None else None
    payload: dict[str, Any] = {
        "type": PayloadType.TRANSITION.value,
        **transition_to_dict(t),
        "campaign_name": name or api_name or None,
    }
    if progress is not None:
        payload["progress"] = dict(progress)
    return payload


def condition_payload(  # noqa: PLR0913 - one keyword per documented field
    *,
    condition: Condition | str,
    state: ConditionState | str,
    observed_at: dt.datetime,
    episode: int | str | dt.datetime,
    account: str | None = None,
    campaign_id: str | None = None,
    campaign_name: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    detail: str = "",
) -> dict[str, Any]:
    """The outbox payload of a condition firing or resolving (one per edge, not per poll)."""
    return {
        "type": PayloadType.CONDITION.value,
        "condition": Condition(condition).value,
        "state": ConditionState(state).value,
        "episode": format_time(episode) if isinstance(episode, dt.datetime) else episode,
        "observed_at": format_time(observed_at),
        "account": account,
        "campaign_id": campaign_id,
        "campaign_name": campaign_name,
        "status": status,
        "since": format_time(since),
        "detail": detail,
    }


def milestone_payload(
    key: CampaignKey,
    *,
    name: str | None,
    milestone: int,
    progress: Progress,
    observed_at: dt.datetime,
) -> dict[str, Any]:
    """A campaign reached ``milestone`` percent of its devices upgraded."""
    return {
        "type": PayloadType.MILESTONE.value,
        "account": key.account,
        "campaign_id": key.campaign_id,
        "campaign_name": name,
        "milestone": milestone,
        "progress": dict(progress),
        "observed_at": format_time(observed_at),
    }


def watching_payload(campaign: Campaign, *, observed_at: dt.datetime) -> dict[str, Any]:
    """Discovery started watching ``campaign`` (the "now watching" message)."""
    return {
        "type": PayloadType.WATCHING.value,
        "account": campaign.account,
        "campaign_id": campaign.campaign_id,
        "campaign_name": campaign.name,
        "status": campaign.status,
        "campaign": campaign_to_dict(campaign),
        "observed_at": format_time(observed_at),
    }


def test_payload(observed_at: dt.datetime) -> dict[str, Any]:
    """The payload of ``fotawatch test-alert``."""
    return {"type": PayloadType.TEST.value, "observed_at": format_time(observed_at)}


test_payload.__test__ = False  # type: ignore[attr-defined]  # pytest: not a test when imported


def _part(value: Any) -> str:
    return "-" if value is None else str(value)


def dedup_key(payload: Payload) -> str:
    """A deterministic key: the same event always gets the same key, different events never do.

    ``transition:{account}/{campaign_id}:{seq}``,
    ``condition:{condition}:{account}/{campaign_id}:{state}:{episode}`` (``-`` for a missing
    account or campaign), ``milestone:{account}/{campaign_id}:{milestone}`` (once per campaign),
    ``watching:{account}/{campaign_id}`` (once per campaign), ``test:{observed_at}``.
    """
    kind = payload.get("type")
    account, campaign = _part(payload.get("account")), _part(payload.get("campaign_id"))
    if kind == PayloadType.TRANSITION:
        return f"transition:{account}/{campaign}:{payload['seq']}"
    if kind == PayloadType.CONDITION:
        condition, state, episode = payload["condition"], payload["state"], payload["episode"]
        return f"condition:{condition}:{account}/{campaign}:{state}:{episode}"
    if kind == PayloadType.MILESTONE:
        return f"milestone:{account}/{campaign}:{payload['milestone']}"
    if kind == PayloadType.WATCHING:
        return f"watching:{account}/{campaign}"
    if kind == PayloadType.TEST:
        return f"test:{payload['observed_at']}"
    raise ValueError(f"payload type {kind!r} has no dedup key")

