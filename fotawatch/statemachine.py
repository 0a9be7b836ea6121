"""Classify campaign status changes. Pure: no I/O, never reads the clock (``now`` is an argument).

Invariants:
- A poll that shows the same status as before is not a transition.
- The lifecycle is Pending -> Queued -> PreScheduled -> Scheduled -> final. Polls can miss
  intermediate statuses, so any forward move is ``progressed`` and any move into a final status is
  classified by where it ends (succeeded / failed / cancelled / aborted).
- Moving backwards, or out of a final status, is ``unexpected``.
- Moving to a status the API has not documented is ``unknown``, from anywhere. Leaving an unknown
  status is judged by where it lands (we cannot tell direction from an unknown origin).
- The first sight of a campaign is a baseline, not a transition, unless the campaign is already in
  a failure status: then exactly one ``failed`` transition with ``from_status=None``.

The table below is the single source of these rules; ``tests/test_statemachine.py`` checks every
pair of known statuses against it.
"""

from __future__ import annotations

import datetime as dt

from fotawatch.model import (
    FAILURE_STATUSES,
    Campaign,
    CampaignStatus,
    Transition,
    TransitionKind,
    known_status,
)

__all__ = ["TABLE", "classify", "first_sight", "observe"]

S = CampaignStatus
K = TransitionKind
_P, _U = K.PROGRESSED, K.UNEXPECTED

# TABLE[from][to] -> kind. Rows: every known status; columns: every other known status.
TABLE: dict[CampaignStatus, dict[CampaignStatus, TransitionKind]] = {
    S.REQUEST_PENDING: {
        S.REQUEST_QUEUED: _P, S.PRE_SCHEDULED: _P, S.SCHEDULED: _P,
        S.ENDED: K.SUCCEEDED, S.REQUEST_FAILED: K.FAILED, S.FAILED: K.FAILED,
        S.CANCELLED: K.CANCELLED, S.ABORTED: K.ABORTED,
    },
    S.REQUEST_QUEUED: {
        S.REQUEST_PENDING: _U, S.PRE_SCHEDULED: _P, S.SCHEDULED: _P,
        S.ENDED: K.SUCCEEDED, S.REQUEST_FAILED: K.FAILED, S.FAILED: K.FAILED,
        S.CANCELLED: K.CANCELLED, S.ABORTED: K.ABORTED,
    },
    S.PRE_SCHEDULED: {
        S.REQUEST_PENDING: _U, S.REQUEST_QUEUED: _U, S.SCHEDULED: _P,
        S.ENDED: K.SUCCEEDED, S.REQUEST_FAILED: K.FAILED, S.FAILED: K.FAILED,
        S.CANCELLED: K.CANCELLED, S.ABORTED: K.ABORTED,
    },
    S.SCHEDULED: {
        S.REQUEST_PENDING: _U, S.REQUEST_QUEUED: _U, S.PRE_SCHEDULED: _U,
        S.ENDED: K.SUCCEEDED, S.REQUEST_FAILED: K.FAILED, S.FAILED: K.FAILED,
        S.CANCELLED: K.CANCELLED, S.ABORTED: K.ABORTED,
    },
    # Final statuses: any move out of them is unexpected.
    **{
        final: {to: _U for to in S if to is not final}
        for final in (S.ENDED, S.REQUEST_FAILED, S.FAILED, S.CANCELLED, S.ABORTED)
    },
}  # fmt: skip

# Landing in a known status from an unknown one: judged by the destination alone.
_FROM_UNKNOWN: dict[CampaignStatus, TransitionKind] = {
    S.REQUEST_PENDING: _P, S.REQUEST_QUEUED: _P, S.PRE_SCHEDULED: _P, S.SCHEDULED: _P,
    S.ENDED: K.SUCCEEDED, S.REQUEST_FAILED: K.FAILED, S.FAILED: K.FAILED,
    S.CANCELLED: K.CANCELLED, S.ABORTED: K.ABORTED,
}  # fmt: skip


def classify(prev: str, new: str) -> TransitionKind | None:
    """Kind of the change ``prev -> new`` (normalised status strings); None when unchanged."""
    if prev == new:
        return None
    to = known_status(new)
    if to is None:
        return K.UNKNOWN
    frm = known_status(prev)
    if frm is None:
        return _FROM_UNKNOWN[to]
    return TABLE[frm][to]


def first_sight(status: str) -> TransitionKind | None:
    """A campaign seen for the first time yields a transition only if it has already failed."""
    member = known_status(status)
    return K.FAILED if member is not None and member in FAILURE_STATUSES else None


def observe(
    prev_status: str | None, last_seq: int, campaign: Campaign, now: dt.datetime
) -> Transition | None:
    """The transition (if any) that seeing ``campaign`` implies, given what was seen before.

    ``prev_status`` is None when the campaign has never been seen; ``last_seq`` is the ``seq`` of
    its last recorded transition (0 if none).
    """
    if prev_status is None:
        kind = first_sight(campaign.status)
    else:
        kind = classify(prev_status, campaign.status)
    if kind is None:
        return None
    return Transition(
        key=campaign.key,
        seq=last_seq + 1,
        from_status=prev_status,
        to_status=campaign.status,
        kind=kind,
        observed_at=now,
        campaign=campaign,
    )
