"""The transition table: every pair of statuses, first sight, unknown statuses."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from fotawatch.model import Campaign, CampaignStatus, TransitionKind, normalise_status
from fotawatch.statemachine import TABLE, classify, first_sight, observe

S = CampaignStatus
K = TransitionKind
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)

# The expected kind for every ordered pair of distinct known statuses, written out by hand
# (independently of the TABLE literal) from the rules in the module docstring.
RANK = {S.REQUEST_PENDING: 0, S.REQUEST_QUEUED: 1, S.PRE_SCHEDULED: 2, S.SCHEDULED: 3}
FINAL_KIND = {
    S.ENDED: K.SUCCEEDED,
    S.REQUEST_FAILED: K.FAILED,
    S.FAILED: K.FAILED,
    S.CANCELLED: K.CANCELLED,
    S.ABORTED: K.ABORTED,
}


def expected(frm: CampaignStatus, to: CampaignStatus) -> TransitionKind:
    if frm in FINAL_KIND:
        return K.UNEXPECTED
    if to in FINAL_KIND:
        return FINAL_KIND[to]
    return K.PROGRESSED if RANK[to] > RANK[frm] else K.UNEXPECTED


PAIRS = [(a, b) for a, b in itertools.product(S, S) if a is not b]


@pytest.mark.parametrize(("frm", "to"), PAIRS, ids=[f"{a.name}->{b.name}" for a, b in PAIRS])
def test_every_pair_of_known_statuses(frm: CampaignStatus, to: CampaignStatus) -> None:
    """Each of the 72 ordered pairs is classified by the lifecycle rules."""
    assert expected(frm, to) == classify(frm.value, to.value)


def test_table_covers_every_pair_and_nothing_else() -> None:
    """The table has a row per status and a column per other status."""
    assert set(TABLE) == set(S)
    for frm, row in TABLE.items():
        assert set(row) == set(S) - {frm}


@pytest.mark.parametrize("status", list(S))
def test_same_status_is_no_transition(status: CampaignStatus) -> None:
    """An unchanged status is not a transition."""
    assert classify(status.value, status.value) is None


@pytest.mark.parametrize("frm", [*S, "CampaignPaused"])
def test_moving_to_an_unrecognised_status_is_unknown(frm: str) -> None:
    """Any move to an undocumented status is `unknown`, from anywhere."""
    assert classify(str(frm), "CampaignSomethingNew") == K.UNKNOWN


@pytest.mark.parametrize(
    ("to", "kind"),
    [
        (S.REQUEST_PENDING, K.PROGRESSED),
        (S.SCHEDULED, K.PROGRESSED),
        (S.ENDED, K.SUCCEEDED),
        (S.FAILED, K.FAILED),
        (S.REQUEST_FAILED, K.FAILED),
        (S.CANCELLED, K.CANCELLED),
        (S.ABORTED, K.ABORTED),
    ],
)
def test_leaving_an_unrecognised_status_is_judged_by_destination(
    to: CampaignStatus, kind: TransitionKind
) -> None:
    """From an unknown status the direction cannot be told: the destination decides."""
    assert classify("CampaignPaused", to.value) == kind


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (S.REQUEST_PENDING, None),
        (S.SCHEDULED, None),
        (S.ENDED, None),
        (S.CANCELLED, None),
        (S.ABORTED, None),
        (S.FAILED, K.FAILED),
        (S.REQUEST_FAILED, K.FAILED),
        ("CampaignPaused", None),
    ],
)
def test_first_sight_is_a_baseline_unless_failed(status: str, kind: TransitionKind | None) -> None:
    """First sight records the status; only a failure status yields a transition."""
    assert first_sight(str(status)) == kind


def test_alias_is_normalised() -> None:
    """`CampaignQueued` is the documented alias of `CampaignRequestQueued`."""
    assert normalise_status("CampaignQueued") == "CampaignRequestQueued"
    assert normalise_status("CampaignPaused") == "CampaignPaused"


def _campaign(status: str) -> Campaign:
    return Campaign(account="0642233522-00001", campaign_id="c1", status=status)


def test_observe_numbers_transitions_and_carries_the_clock_passed_in() -> None:
    """observe() returns the next seq, both statuses, the kind and the given time."""
    t = observe("CampaignScheduled", 3, _campaign("CampaignEnded"), NOW)
    assert t is not None
    assert (t.seq, t.from_status, t.to_status, t.kind, t.observed_at) == (
        4,
        "CampaignScheduled",
        "CampaignEnded",
        K.SUCCEEDED,
        NOW,
    )


def test_observe_first_sight_failure_has_no_from_status() -> None:
    """A campaign first seen failed yields one `failed` transition from nothing."""
    t = observe(None, 0, _campaign("CampaignRequestFailed"), NOW)
    assert t is not None
    assert (t.seq, t.from_status, t.kind) == (1, None, K.FAILED)


def test_observe_unchanged_is_none() -> None:
    """No change, no transition."""
    assert observe("CampaignScheduled", 2, _campaign("CampaignScheduled"), NOW) is None
    assert observe(None, 0, _campaign("CampaignScheduled"), NOW) is None
