"""Outbox payloads, sink filters and their renderings (Slack, generic webhook, console)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from fotawatch.alerts.payloads import (
    Condition,
    condition_payload,
    dedup_key,
    test_payload,
    transition_payload,
)
from fotawatch.alerts.policy import SinkFilter, wants
from fotawatch.alerts.render import (
    MAX_BLOCKS,
    MAX_TEXT,
    render_console,
    render_slack,
    render_webhook,
    slack_len,
    validate_slack_message,
)
from fotawatch.model import Campaign, CampaignKey, TimeWindow, Transition, TransitionKind

NOW = dt.datetime(2026, 5, 1, 12, 0, 3, tzinfo=dt.UTC)
ACCOUNT = "0000123456-00001"
CID = "f858b8c4-1234-4aaa-bbbb-1234567890ab"
K = TransitionKind


def transition(
    kind: TransitionKind = K.PROGRESSED,
    from_status: str | None = "CampaignPreScheduled",
    to_status: str = "CampaignScheduled",
    *,
    name: str | None = "GM01Q rollout",
    seq: int = 1,
    campaign_id: str = CID,
    **campaign: Any,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "make": "Telit", "model": "LE910", "firmware_from": "FW-1.0", "firmware_to": "FW-1.1",
        "start_date": dt.date(2026, 5, 1), "end_date": dt.date(2026, 5, 31),
        "time_windows": (TimeWindow(start_hour=2, end_hour=6),),
    } | campaign
    c = Campaign(account=ACCOUNT, campaign_id=campaign_id, status=to_status, name=name, **fields)
    t = Transition(key=CampaignKey(account=ACCOUNT, campaign_id=campaign_id), seq=seq,
                   from_status=from_status, to_status=to_status, kind=kind, observed_at=NOW,
                   campaign=c)
    return transition_payload(t, name=None)


def condition(state: str = "firing", **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"condition": Condition.LOGIN_CIRCUIT_OPEN, "account": ACCOUNT,
                            "episode": 1, "observed_at": NOW} | kwargs
    return condition_payload(state=state, **args)


def all_text(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def section_texts(message: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]


KIND_CASES = [
    (K.PROGRESSED, "CampaignPreScheduled", "CampaignScheduled", "🔵"),
    (K.SUCCEEDED, "CampaignScheduled", "CampaignEnded", "✅"),
    (K.FAILED, "CampaignScheduled", "CampaignFailed", "🔴"),
    (K.CANCELLED, "CampaignRequestQueued", "CampaignCancelled", "⚪"),
    (K.ABORTED, "CampaignScheduled", "CampaignAborted", "🟠"),
    (K.UNEXPECTED, "CampaignEnded", "CampaignScheduled", "⚠️"),
    (K.UNKNOWN, "CampaignScheduled", "CampaignPaused", "❓"),
]


@pytest.mark.parametrize(("kind", "from_status", "to_status", "emoji"), KIND_CASES)
def test_each_kind_names_campaign_and_api_statuses(kind, from_status, to_status, emoji):
    """Every kind has its emoji; text and section name the campaign (name, id) and both statuses."""
    message = render_slack([transition(kind, from_status, to_status)])
    for text in (message["text"], section_texts(message)[0]):
        assert emoji in text
        assert "GM01Q rollout" in text
        assert CID in text
        assert f"`{from_status}` → `{to_status}`" in text
    assert message["blocks"][0]["text"]["text"].startswith(emoji)
    assert validate_slack_message(message) == []


@pytest.mark.parametrize(("kind", "from_status", "to_status", "emoji"), KIND_CASES)
def test_only_failures_carry_the_mention(kind, from_status, to_status, emoji):
    """The mention prefixes text and the first section of a failure, and nothing else."""
    message = render_slack([transition(kind, from_status, to_status)], mention_on_failure="<!here>")
    mentioned = kind == K.FAILED
    assert mentioned == message["text"].startswith("<!here> ")
    assert mentioned == section_texts(message)[0].startswith("<!here> ")


def test_unexpected_and_unknown_explain_themselves():
    """Unexpected and unknown transitions say what they mean."""
    unexpected = all_text(render_slack([transition(K.UNEXPECTED, "CampaignEnded")]))
    unknown = all_text(render_slack([transition(K.UNKNOWN, to_status="CampaignPaused")]))
    assert "unexpected: moved backwards / out of a final status" in unexpected
    assert "unrecognised status — fotawatch does not know it; check the ThingSpace docs" in unknown


def test_transition_details_are_shown():
    """Account, kind, make/model, firmware, dates, windows, progress and observed time appear."""
    payload = transition(K.PROGRESSED) | {"progress": {"upgraded": 1234, "total": 2689,
                                                       "failed": 12}}
    fields = [f["text"] for f in render_slack([payload])["blocks"][1]["fields"]]
    expected = [
        f"*Account*\n{ACCOUNT}", "*Kind*\nprogressed", "*Make / model*\nTelit LE910",
        "*Firmware*\nFW-1.0 → FW-1.1", "*Dates (UTC)*\n2026-05-01 → 2026-05-31",
        "*Time windows (UTC)*\n02:00-06:00", "*Progress*\n1,234 / 2,689 upgraded, 12 failed",
        "*Observed*\n2026-05-01 12:00:03 UTC",
    ]
    assert expected == fields


def test_first_sight_in_failure_has_no_origin():
    """A campaign first seen failed says so instead of showing a from-status."""
    message = render_slack([transition(K.FAILED, None, "CampaignFailed")])
    assert "first seen in `CampaignFailed`" in message["text"]


def test_configured_name_wins_and_id_stands_in_for_a_missing_name():
    """The configured name is preferred; without any name the id names the campaign."""
    t = Transition(key=CampaignKey(account=ACCOUNT, campaign_id=CID), seq=1,
                   from_status="CampaignScheduled", to_status="CampaignEnded",
                   kind=K.SUCCEEDED, observed_at=NOW)
    assert transition_payload(t, name="Fleet A")["campaign_name"] == "Fleet A"
    nameless = transition_payload(t, name=None)
    assert nameless["campaign_name"] is None
    assert f"`{CID}`" in render_slack([nameless])["text"]
    assert validate_slack_message(render_slack([nameless])) == []


@pytest.mark.parametrize("huge", ["x" * 10_000, "<&>" * 3_400, "😀" * 10_000, "a\nb\x1b" * 3_000])
def test_huge_values_still_give_a_valid_message(huge):
    """10,000-character names and firmware strings are cut with "…" and the message stays valid."""
    payload = transition(K.FAILED, "CampaignScheduled", "CampaignFailed", name=huge,
                         firmware_from=huge, firmware_to=huge, make=huge, model=huge)
    message = render_slack([payload], mention_on_failure="<!channel>")
    assert validate_slack_message(message) == []
    assert "…" in message["text"]
    assert CID in message["text"]
    assert "`CampaignScheduled` → `CampaignFailed`" in message["text"]


def test_huge_condition_detail_still_gives_a_valid_message():
    """A 10,000-character condition detail is cut and the message stays valid."""
    message = render_slack([condition(detail="d" * 10_000, campaign_name="n" * 10_000,
                                      campaign_id=CID, status="s" * 10_000)])
    assert validate_slack_message(message) == []


@pytest.mark.parametrize("count", [2, 40, 200])
def test_many_alerts_combine_into_one_valid_message(count):
    """Many payloads make one message within limits; what does not fit is counted as "+N more"."""
    payloads = [transition(K.SUCCEEDED, "CampaignScheduled", "CampaignEnded", seq=i,
                           name=f"campaign {i}", campaign_id=f"id-{i:04d}") for i in range(count)]
    message = render_slack(payloads)
    assert validate_slack_message(message) == []
    assert len(message["blocks"]) <= MAX_BLOCKS
    assert slack_len(message["text"]) <= MAX_TEXT
    lines = message["text"].splitlines()
    assert lines[0] == f"fotawatch: {count} alerts"
    named = [line for line in lines if "` → `CampaignEnded`" in line]
    more = [int(line[1:].split()[0]) for line in lines if line.startswith("+")]
    assert count == len(named) + sum(more)
    shown = sum(1 for b in message["blocks"] if b["type"] == "section")
    if shown < count:
        last = message["blocks"][-1]
        assert last["type"] == "context"
        expected = f"+{count - shown} more alerts (see fotawatch history)"
        assert expected == last["elements"][0]["text"]


def test_combined_message_puts_failures_first_and_mentions_once():
    """A combined message leads with failures and carries the mention once in its blocks."""
    payloads = [transition(K.PROGRESSED, seq=1), transition(K.FAILED, "CampaignScheduled",
                                                             "CampaignFailed", seq=2),
                transition(K.FAILED, "CampaignScheduled", "CampaignRequestFailed", seq=3)]
    message = render_slack(payloads, mention_on_failure="<!subteam^S1>")
    sections = section_texts(message)
    assert message["text"].startswith("<!subteam^S1> fotawatch: 3 alerts")
    assert sections[0].startswith("<!subteam^S1> 🔴")
    assert sum("<!subteam^S1>" in s for s in sections) == 1
    assert sections[-1].startswith("🔵")


def test_user_data_is_escaped_but_the_mention_is_not():
    """&, < and > in campaign names are escaped for mrkdwn; the configured mention is kept."""
    payload = transition(K.FAILED, "CampaignScheduled", "CampaignFailed",
                         name="<!channel> Fleet & <b>")
    message = render_slack([payload], mention_on_failure="<!channel>")
    escaped = "&lt;!channel&gt; Fleet &amp; &lt;b&gt;"
    assert escaped in message["text"]
    assert escaped in section_texts(message)[0]
    assert message["text"].count("<!channel>") == 1
    assert "<b>" not in section_texts(message)[0]


def test_control_characters_do_not_break_lines():
    """Newlines and escape characters in names become spaces."""
    message = render_slack([transition(name="line1\nline2\x1b[31m")])
    assert "line1 line2 [31m" in message["text"]
    assert "\x1b" not in all_text(message)


def test_condition_firing_says_what_to_do():
    """A firing login circuit explains the lock-out protection and the fix."""
    message = render_slack([condition(detail="401 invalid_grant")])
    assert message["text"] == f"🚨 FIRING ThingSpace login circuit open: account {ACCOUNT}"
    section = section_texts(message)[0]
    assert "(ThingSpace locks after 5 failures)" in section
    assert "`systemctl reload fotawatch`" in section
    assert "401 invalid_grant" in section
    assert validate_slack_message(message) == []


def test_condition_resolved_says_how_long_it_lasted():
    """A resolved condition is marked ✅ and tells since when it had been firing."""
    since = NOW - dt.timedelta(hours=2, minutes=5)
    message = render_slack([condition("resolved", since=since)])
    assert message["text"].startswith("✅ RESOLVED ThingSpace login circuit open")
    expected = "Back to normal; it had been firing since 2026-05-01 09:55:03 UTC (2h 5m)."
    assert expected in section_texts(message)[0]


def test_campaign_condition_names_campaign_and_status():
    """A campaign condition names the campaign (name, id) and its status in text and header."""
    payload = condition(condition=Condition.CAMPAIGN_STUCK, campaign_id=CID,
                        campaign_name="GM01Q rollout", status="CampaignPreScheduled")
    message = render_slack([payload])
    expected = f"🚨 FIRING Campaign stuck: *GM01Q rollout* (`{CID}`) in `CampaignPreScheduled`"
    assert expected == message["text"]
    assert message["blocks"][0]["text"]["text"] == "🚨 Firing: Campaign stuck: GM01Q rollout"


def test_every_condition_renders():
    """Each documented condition renders, firing and resolved, within limits."""
    for name in Condition:
        for state in ("firing", "resolved"):
            message = render_slack([condition(state, condition=name, campaign_id=CID)])
            assert validate_slack_message(message) == [], (name, state)


def test_unknown_condition_and_type_still_render():
    """Payloads written by a newer fotawatch render generically instead of failing."""
    newer = condition() | {"condition": "quota_exhausted"}
    message = render_slack([newer, {"type": "annotation", "observed_at": None}])
    assert validate_slack_message(message) == []
    assert "quota_exhausted" in message["text"]
    assert "annotation" in message["text"]


def test_test_payload_renders():
    """The test alert says it is one."""
    message = render_slack([test_payload(NOW)])
    assert message["text"] == "🧪 fotawatch test alert"
    assert validate_slack_message(message) == []


def test_rendering_nothing_is_an_error():
    """An empty batch is a caller bug, not an empty message."""
    with pytest.raises(ValueError, match="at least one"):
        render_slack([])


def test_webhook_format():
    """The generic webhook body is versioned and carries the payloads as stored."""
    payloads = [transition(), condition(), test_payload(NOW)]
    body = render_webhook(payloads)
    assert {"version": 1, "source": "fotawatch", "events": payloads} == body
    assert json.loads(json.dumps(body)) == body


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (transition(),
         ("12:00:03  GM01Q rollout (f858b8c4…)  CampaignPreScheduled -> CampaignScheduled"
          "  [progressed]")),
        (transition(K.FAILED, None, "CampaignFailed") | {"progress": {"upgraded": 1, "total": 2,
                                                                      "failed": 1}},
         ("12:00:03  GM01Q rollout (f858b8c4…)  (first seen) -> CampaignFailed  [failed]"
          "  1 / 2 upgraded, 1 failed")),
        (condition(detail="401"),
         f"12:00:03  FIRING login_circuit_open  account {ACCOUNT}\n          401"),
        (test_payload(NOW), "12:00:03  fotawatch test alert"),
    ],
)
def test_console_line(payload, expected):
    """The console shows one line per event (a second for a condition's detail)."""
    assert expected == render_console(payload)


def test_payloads_are_json():
    """Payloads survive a JSON round trip unchanged."""
    for payload in (transition(), condition(since=NOW), test_payload(NOW)):
        assert json.loads(json.dumps(payload)) == payload


def test_dedup_keys():
    """Keys are deterministic and differ across seqs, states and episodes."""
    assert dedup_key(transition(seq=7)) == f"transition:{ACCOUNT}/{CID}:7"
    assert dedup_key(transition(seq=7)) == dedup_key(transition(seq=7))
    keys = [
        dedup_key(condition("firing", episode=1)),
        dedup_key(condition("resolved", episode=1)),
        dedup_key(condition("firing", episode=2)),
        dedup_key(condition("firing", episode=NOW)),
        dedup_key(condition("firing", episode=1, campaign_id=CID)),
        dedup_key(transition(seq=1)),
        dedup_key(transition(seq=2)),
        dedup_key(test_payload(NOW)),
    ]
    assert len(set(keys)) == len(keys)
    assert keys[0] == f"condition:login_circuit_open:{ACCOUNT}/-:firing:1"


def test_dedup_key_refuses_unknown_types():
    """A payload of unknown type has no key (it could not be queued safely)."""
    with pytest.raises(ValueError, match="no dedup key"):
        dedup_key({"type": "annotation"})


ALL = SinkFilter()
FAILURES = SinkFilter(kinds=frozenset({K.FAILED}), conditions=False)
ENDED = SinkFilter(statuses=frozenset({"CampaignEnded"}))


@pytest.mark.parametrize(
    ("sink", "payload", "expected"),
    [
        (ALL, transition(), True),
        (ALL, condition(), True),
        (ALL, {"type": "annotation"}, False),
        (FAILURES, transition(K.FAILED, "CampaignScheduled", "CampaignFailed"), True),
        (FAILURES, transition(K.PROGRESSED), False),
        (FAILURES, condition(), False),
        (FAILURES, test_payload(NOW), True),
        (ENDED, transition(K.SUCCEEDED, "CampaignScheduled", "CampaignEnded"), True),
        (ENDED, transition(K.UNEXPECTED, "CampaignEnded", "CampaignScheduled"), False),
        (ENDED, condition("resolved"), True),
    ],
)
def test_sink_filter(sink, payload, expected):
    """Filters pick transitions by kind and new status, conditions by a switch, tests always."""
    assert expected == wants(sink, payload)


def _section_block(text: str = "t", **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}} | extra


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "body: not a JSON object"),
        ({}, "body: neither text nor blocks"),
        ({"text": "x" * 3001}, "text: 3001 > 3000 characters"),
        ({"text": "😀" * 1501}, "text: 3002 > 3000 characters"),
        ({"blocks": [{"type": "divider"}] * 51}, "blocks: 51 > 50 blocks"),
        ({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
         "blocks[0].text.text: 151 > 150 characters"),
        ({"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]},
         "blocks[0].text: not a plain_text text object"),
        ({"blocks": [_section_block("s" * 3001)]}, "blocks[0].text.text: 3001 > 3000 characters"),
        ({"blocks": [_section_block(fields=[{"type": "mrkdwn", "text": "f"}] * 11)]},
         "blocks[0].fields: must be a list of 1 to 10 text objects"),
        ({"blocks": [_section_block(fields=[{"type": "mrkdwn", "text": "f" * 2001}])]},
         "blocks[0].fields[0].text: 2001 > 2000 characters"),
        ({"blocks": [{"type": "section"}]}, "blocks[0]: a section needs text or fields"),
        ({"blocks": [_section_block("")]}, "blocks[0].text.text: empty"),
        ({"blocks": [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}]},
         "blocks[0].elements: must be a list of 1 to 10 elements"),
        ({"blocks": [{"type": "video"}]}, "blocks[0]: unsupported block type 'video'"),
        ({"blocks": [_section_block("s" * 2500)] * 5},
         "blocks: 12500 > 10000 characters of text in all"),
    ],
)
def test_validate_slack_message_reports_each_limit(body, problem):
    """Each broken limit is named, with where and by how much."""
    assert problem in validate_slack_message(body)


def test_short_condition_duration_is_plain_text():
    """A condition resolved within a minute says so without mrkdwn control characters."""
    message = render_slack([condition("resolved", since=NOW)])
    assert "(under 1m)." in section_texts(message)[0]
    assert "<" not in section_texts(message)[0]
