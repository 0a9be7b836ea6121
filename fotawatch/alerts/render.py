"""Turn outbox payloads into what a sink sends: Slack messages, generic-webhook JSON, console lines.

Pure module: no I/O, no clock. Sinks render at send time, so one call may combine many payloads.

Slack (``render_slack``): one incoming-webhook body ``{"text": ..., "blocks": [...]}`` for one or
more payloads. Alerts are ordered by severity (failed first), then as queued. The ``text`` (the
notification and fallback) names every campaign it can by name and id with its statuses, one line
per alert, then "+N more". The message never breaks Slack's limits (``validate_slack_message``
checks them; lengths are counted in UTF-16 code units, the stricter reading): long values are cut
with "…", and alerts that do not fit the 50 blocks end in "+N more alerts (see fotawatch history)".
User data (campaign names, firmware, details) has ``&``, ``<``, ``>`` escaped; the configured
mention (``<!channel>``, ``<@U123>``, ``<!subteam^S123>``) is not. Arrows are "→" in Slack
(``>`` is a control character there) and "->" on the console.

Generic webhook (``render_webhook``), format version 1::

    POST <url>
    Content-Type: application/json

    {"version": 1, "source": "fotawatch", "events": [<payload>, ...]}

Each event is a payload exactly as stored in the outbox (``fotawatch.alerts.payloads``): a
``type`` of ``transition`` (account, campaign_id, seq, from_status, to_status, kind, observed_at,
campaign{...} or null, campaign_name, optional progress{upgraded,total,failed}), ``condition``
(condition, state, episode, observed_at, account, campaign_id, campaign_name, status, since,
detail), ``milestone`` (account, campaign_id, campaign_name, milestone, progress, observed_at),
``watching`` (account, campaign_id, campaign_name, status, campaign{...}, observed_at) or
``test`` (observed_at). Times are ISO 8601 UTC with ``Z``. Receivers should ignore
unknown keys; a breaking change bumps ``version``. ``payloads.dedup_key`` of an event is stable,
so a receiver can drop the duplicate a retried delivery may bring.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fotawatch.alerts.payloads import Condition, ConditionState, Payload, PayloadType
from fotawatch.model import TransitionKind

__all__ = [
    "MAX_BLOCKS",
    "MAX_BLOCKS_TEXT",
    "MAX_CONTEXT_ELEMENTS",
    "MAX_FIELDS",
    "MAX_FIELD_TEXT",
    "MAX_HEADER",
    "MAX_SECTION_TEXT",
    "MAX_TEXT",
    "escape_mrkdwn",
    "render_console",
    "render_slack",
    "render_slack_batch",
    "render_webhook",
    "slack_len",
    "validate_slack_message",
]

MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_TEXT = 3000
# Not documented: Slack answers msg_blocks_too_long at about 12,000 characters of text summed over
# all blocks (slackapi/bolt-js #2509; #2867 saw a rejection at 11,341). Kept well below.
MAX_BLOCKS_TEXT = 10_000
# Presentation budgets, well inside the limits so a message stays readable.
_NAME, _VALUE, _DETAIL, _LINE_NAME, _ID = 150, 200, 1000, 80, 64
_MESSAGE_BUDGET = 8_000  # block text of a combined message; more becomes "+N more"
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ARROW = "→"

_KIND_STYLE: dict[str, tuple[int, str, str]] = {  # kind -> (rank, emoji, title)
    TransitionKind.FAILED: (0, "🔴", "Campaign failed"),
    TransitionKind.UNEXPECTED: (2, "⚠️", "Campaign status moved unexpectedly"),
    TransitionKind.UNKNOWN: (3, "❓", "Unrecognised campaign status"),
    TransitionKind.ABORTED: (4, "🟠", "Campaign aborted"),
    TransitionKind.CANCELLED: (5, "⚪", "Campaign cancelled"),
    TransitionKind.SUCCEEDED: (6, "✅", "Campaign ended"),
    TransitionKind.PROGRESSED: (8, "🔵", "Campaign progressed"),
}
_KIND_NOTES: dict[str, str] = {
    TransitionKind.UNEXPECTED: "unexpected: moved backwards / out of a final status",
    TransitionKind.UNKNOWN: (
        "unrecognised status — fotawatch does not know it; check the ThingSpace docs"
    ),
}
_CONDITION_TEXT: dict[str, tuple[str, str]] = {  # condition -> (title, what to do when firing)
    Condition.LOGIN_CIRCUIT_OPEN: ("ThingSpace login circuit open", (
        "ThingSpace rejected the credentials; fotawatch stopped logging in so the account is not"
        " locked (ThingSpace locks after 5 failures). Fix the credentials, then"
        " `systemctl reload fotawatch`."
    )),
    Condition.API_DOWN: ("ThingSpace API unreachable", (
        "fotawatch gets no usable answers from the ThingSpace API. It keeps retrying with backoff"
        " and says so here when the API answers again. Check the network path and ThingSpace's"
        " status page."
    )),
    Condition.CAMPAIGN_MISSING: ("Campaign missing", (
        "ThingSpace no longer knows this campaign. If it was deleted on purpose, remove it from"
        " the fotawatch config and `systemctl reload fotawatch`."
    )),
    Condition.CAMPAIGN_STUCK: ("Campaign stuck", (
        "The campaign has kept its status longer than the configured limit. Check it in the"
        " ThingSpace portal."
    )),
    Condition.CAMPAIGN_NOT_SCHEDULED: ("Campaign not scheduled", (
        "The start date has passed but the campaign has not reached `CampaignScheduled`. Check"
        " its firmware, licences and devices in ThingSpace."
    )),
    Condition.CAMPAIGN_OVERDUE: ("Campaign overdue", (
        "The end date has passed but the campaign has not ended. Check it in ThingSpace."
    )),
    Condition.FAILURE_RATE: ("Device upgrade failures", (
        "More devices failed to upgrade than the configured threshold. Check the device reports"
        " in ThingSpace."
    )),
}


# --- text helpers --------------------------------------------------------------------------


def slack_len(text: str) -> int:
    """Length as Slack may count it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def _clean(raw: Any) -> str:
    """User data on one line: control characters (newlines, ESC, ...) become spaces."""
    text = "" if raw is None else str(raw)
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)


def escape_mrkdwn(raw: str) -> str:
    """Escape Slack's three control characters."""
    return "".join(_ESCAPES.get(c, c) for c in raw)


def _fit(raw: Any, limit: int, *, escape: bool = True) -> str:
    """Clean (and escape) user data, cut to ``limit`` code units with "…" when too long."""
    pieces = [_ESCAPES.get(c, c) if escape else c for c in _clean(raw)]
    whole = "".join(pieces)
    if slack_len(whole) <= limit:
        return whole
    kept: list[str] = []
    used = 0
    for piece in pieces:
        used += slack_len(piece)
        if used > limit - 1:
            break
        kept.append(piece)
    return "".join(kept) + "…"


def _cap(text: str, limit: int, *, markup: bool = True) -> str:
    """Last guard for composed text: cut it without splitting an entity or a ``<...>`` mention."""
    if slack_len(text) <= limit:
        return text
    cut = text[: limit - 1]
    while slack_len(cut) > limit - 1:
        cut = cut[:-1]
    for opener, closer in (("&", ";"), ("<", ">")) if markup else ():
        at = cut.rfind(opener)
        if at != -1 and closer not in cut[at:]:
            cut = cut[:at]
    return cut + "…"


def _when(value: Any, fmt: str = "%Y-%m-%d %H:%M:%S UTC", *, escape: bool = True) -> str:
    """An ISO time from a payload, shown in UTC; unparseable values are shown as they are."""
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return _fit(value, 40, escape=escape)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC)
    return parsed.strftime(fmt)


def _duration(start: Any, end: Any) -> str:
    try:
        elapsed = dt.datetime.fromisoformat(str(end)) - dt.datetime.fromisoformat(str(start))
    except (ValueError, TypeError):
        return ""
    minutes = max(0, int(elapsed.total_seconds()) // 60)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    parts = ((days, "d"), (hours, "h"), (mins, "m"))
    return " ".join(f"{n}{unit}" for n, unit in parts if n) or "under 1m"


# --- one alert, presentation-neutral --------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Alert:
    rank: int  # severity: a combined message shows failures first
    tag: str  # counted in a combined message's tally: "🔴 failed", "🚨 firing", ...
    header: str  # plain text
    summary: str  # mrkdwn: the first lines of the alert's section
    line: str  # mrkdwn: the alert's line in the message text
    fields: tuple[tuple[str, str], ...] = ()  # (label, mrkdwn value)
    is_failure: bool = False


def _campaign_ref(p: Payload, name_limit: int) -> str:
    """``*name* (`id`)`` with escaped user data; either part may be missing."""
    name = p.get("campaign_name")
    ident = f"`{_fit(p.get('campaign_id'), _ID)}`" if p.get("campaign_id") else ""
    if not name:
        return ident or "(no campaign)"
    return f"*{_fit(name, name_limit)}*" + (f" ({ident})" if ident else "")


def _statuses(p: Payload) -> str:
    to_status = f"`{_fit(p.get('to_status'), _ID)}`"
    if p.get("from_status") is None:
        return f"first seen in {to_status}"
    return f"`{_fit(p.get('from_status'), _ID)}` {_ARROW} {to_status}"


def _progress(progress: Any) -> str:
    if not isinstance(progress, Mapping):
        return ""
    upgraded, total, failed = (int(progress.get(k) or 0) for k in ("upgraded", "total", "failed"))
    return f"{upgraded:,} / {total:,} upgraded, {failed:,} failed"


def _fields(*candidates: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((label, value) for label, value in candidates if value)


def _transition_fields(p: Payload) -> tuple[tuple[str, str], ...]:
    c: Mapping[str, Any] = p.get("campaign") or {}
    fw_from, fw_to = (_fit(c.get(k), _VALUE // 2) for k in ("firmware_from", "firmware_to"))
    dates = f"{c.get('start_date')} {_ARROW} {c.get('end_date')}" if c.get("start_date") else ""
    windows = ", ".join(f"{s:02d}:00-{e:02d}:00" for s, e in c.get("time_windows") or ())
    return _fields(
        ("Account", _fit(p.get("account"), _ID)),
        ("Kind", _fit(p.get("kind"), _ID)),
        ("Make / model", _fit(" ".join(filter(None, (c.get("make"), c.get("model")))), _VALUE)),
        ("Firmware", f"{fw_from} {_ARROW} {fw_to}" if fw_from or fw_to else ""),
        ("Dates (UTC)", _fit(dates, _VALUE)),
        ("Time windows (UTC)", _fit(windows, _VALUE)),
        ("Progress", _progress(p.get("progress"))),
        ("Observed", _when(p.get("observed_at"))),
    )


def _transition_alert(p: Payload) -> _Alert:
    kind = _fit(p.get("kind"), _ID)
    rank, emoji, title = _KIND_STYLE.get(kind, (3, "❓", f"Campaign {kind}"))
    note = f"\n_{_KIND_NOTES[kind]}_" if kind in _KIND_NOTES else ""
    plain_name = _fit(p.get("campaign_name") or p.get("campaign_id"), _NAME, escape=False)
    return _Alert(
        rank=rank,
        tag=f"{emoji} {kind}",
        header=f"{emoji} {title}: {plain_name}",
        summary=f"{emoji} *{title}*: {_campaign_ref(p, _NAME)}\n{_statuses(p)}{note}",
        line=f"{emoji} {title}: {_campaign_ref(p, _LINE_NAME)} {_statuses(p)}",
        fields=_transition_fields(p),
        is_failure=kind == TransitionKind.FAILED,
    )


def _condition_advice(p: Payload, advice: str, *, firing: bool) -> str:
    if firing:
        return advice
    since = f" since {_when(p['since'])}" if p.get("since") else ""
    lasted = _duration(p.get("since"), p.get("observed_at")) if since else ""
    return f"Back to normal; it had been firing{since}" + (f" ({lasted})." if lasted else ".")


def _condition_alert(p: Payload) -> _Alert:
    condition, firing = _fit(p.get("condition"), _ID), p.get("state") == ConditionState.FIRING
    title, advice = _CONDITION_TEXT.get(condition, (condition, ""))
    emoji, state = ("🚨", "Firing") if firing else ("✅", "Resolved")
    where = _campaign_ref(p, _NAME) if p.get("campaign_id") or p.get("campaign_name") else ""
    where += f" in `{_fit(p.get('status'), _ID)}`" if p.get("status") else ""
    detail = f"Detail: {_fit(p.get('detail'), _DETAIL)}" if p.get("detail") else ""
    named = _fit(p.get("campaign_name"), _NAME, escape=False)
    account = _fit(p.get("account"), _ID)
    lines = (
        f"{emoji} *{state}: {title}*" + (f" — {where}" if where else ""),
        _condition_advice(p, advice, firing=firing),
        detail,
    )
    return _Alert(
        rank=1 if firing else 7,
        tag=f"{emoji} {state.lower()}",
        header=f"{emoji} {state}: {title}" + (f": {named}" if named else ""),
        summary="\n".join(filter(None, lines)),
        line=f"{emoji} {state.upper()} {title}: {where or _account_or_api(account)}",
        fields=_fields(
            ("Account", account),
            ("Condition", condition),
            ("Since", _when(p["since"]) if p.get("since") else ""),
            ("Observed", _when(p.get("observed_at"))),
        ),
    )


def _milestone_alert(p: Payload) -> _Alert:
    percent = _fit(p.get("milestone"), 8)
    emoji = "🎉" if percent == "100" else "📈"
    progress = _progress(p.get("progress"))
    plain_name = _fit(p.get("campaign_name") or p.get("campaign_id"), _NAME, escape=False)
    return _Alert(
        rank=8,
        tag=f"{emoji} milestone",
        header=f"{emoji} {percent}% of devices upgraded: {plain_name}",
        summary=f"{emoji} *{percent}% of devices upgraded*: {_campaign_ref(p, _NAME)}\n{progress}",
        line=f"{emoji} {percent}% upgraded: {_campaign_ref(p, _LINE_NAME)} ({progress})",
        fields=_fields(
            ("Account", _fit(p.get("account"), _ID)),
            ("Progress", progress),
            ("Observed", _when(p.get("observed_at"))),
        ),
    )


def _watching_alert(p: Payload) -> _Alert:
    status = f"`{_fit(p.get('status'), _ID)}`"
    plain_name = _fit(p.get("campaign_name") or p.get("campaign_id"), _NAME, escape=False)
    return _Alert(
        rank=8,
        tag="👀 watching",
        header=f"👀 Now watching: {plain_name}",
        summary=(
            f"👀 *Now watching*: {_campaign_ref(p, _NAME)} in {status}\nFound by discovery;"
            " fotawatch polls it like a configured campaign."
        ),
        line=f"👀 Now watching: {_campaign_ref(p, _LINE_NAME)} in {status}",
        fields=tuple(f for f in _transition_fields(p) if f[0] != "Kind"),
    )


def _test_alert(p: Payload) -> _Alert:
    sent = _when(p.get("observed_at"))
    return _Alert(
        rank=9,
        tag="🧪 test",
        header="🧪 fotawatch test alert",
        summary=f"🧪 *fotawatch test alert*, sent {sent}. If you can read this, alerts reach here.",
        line="🧪 fotawatch test alert",
    )


def _other_alert(p: Payload) -> _Alert:
    kind = _fit(p.get("type"), _ID)
    text = f"❔ fotawatch event {kind}"
    return _Alert(rank=10, tag="❔ other", header=text, summary=text, line=text)


_BUILDERS: dict[str, Callable[[Payload], _Alert]] = {
    PayloadType.TRANSITION: _transition_alert,
    PayloadType.CONDITION: _condition_alert,
    PayloadType.TEST: _test_alert,
    PayloadType.MILESTONE: _milestone_alert,
    PayloadType.WATCHING: _watching_alert,
}


def _alert(p: Payload) -> _Alert:
    return _BUILDERS.get(str(p.get("type")), _other_alert)(p)


# --- Slack -----------------------------------------------------------------------------------


def _mrkdwn(text: str, limit: int) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _cap(text, limit)}


def _header(text: str) -> dict[str, Any]:
    plain = {"type": "plain_text", "text": _cap(text, MAX_HEADER, markup=False), "emoji": True}
    return {"type": "header", "text": plain}


def _section(text: str, fields: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": _mrkdwn(text, MAX_SECTION_TEXT)}
    if fields:
        block["fields"] = [
            _mrkdwn(f"*{label}*\n{value}", MAX_FIELD_TEXT) for label, value in fields[:MAX_FIELDS]
        ]
    return block


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(text, MAX_SECTION_TEXT)]}


def _summary(a: _Alert, mention: str | None) -> str:
    return f"{mention} {a.summary}" if mention and a.is_failure else a.summary


def _tally(alerts: Sequence[_Alert]) -> str:
    counts: dict[str, int] = {}
    for a in alerts:
        counts[a.tag] = counts.get(a.tag, 0) + 1
    return " · ".join(f"{tag}: {n}" for tag, n in counts.items())


def _single_blocks(a: _Alert, mention: str | None) -> list[dict[str, Any]]:
    return [_header(a.header), _section(_summary(a, mention), a.fields)]


def _combined_blocks(alerts: Sequence[_Alert], mention: str | None) -> list[dict[str, Any]]:
    blocks = [_header(f"fotawatch: {len(alerts)} alerts"), _context(_tally(alerts))]
    used, shown = _blocks_text(blocks) + 100, 0  # 100: room for the "+N more" line
    for a in alerts:
        details = " · ".join(f"*{label}:* {value}" for label, value in a.fields)
        first = _summary(a, mention if shown == 0 else None)  # the mention once, on top
        section = _section(first + (f"\n{details}" if details else ""))
        cost = slack_len(section["text"]["text"])
        reserve = 1 if shown + 1 < len(alerts) else 0
        if len(blocks) + 2 + reserve > MAX_BLOCKS or used + cost > _MESSAGE_BUDGET:
            break
        blocks += [{"type": "divider"}, section]
        used, shown = used + cost, shown + 1
    if shown < len(alerts):
        blocks.append(_context(f"+{len(alerts) - shown} more alerts (see fotawatch history)"))
    return blocks


def _text(alerts: Sequence[_Alert], mention: str | None) -> str:
    prefix = f"{mention} " if mention else ""
    lines = [f"{prefix}fotawatch: {len(alerts)} alerts"] if len(alerts) > 1 else []
    size = slack_len("\n".join(lines))
    for i, a in enumerate(alerts):
        line = a.line if lines else prefix + a.line
        reserve = 16 if i + 1 < len(alerts) else 0
        if i > 0 and size + 1 + slack_len(line) + reserve > MAX_TEXT:
            lines.append(f"+{len(alerts) - i} more")
            break
        lines.append(line)
        size += 1 + slack_len(line)
    return _cap("\n".join(lines), MAX_TEXT)


def render_slack(
    payloads: Sequence[Payload], *, mention_on_failure: str | None = None
) -> dict[str, Any]:
    """One Slack incoming-webhook body for one or more payloads, always within Slack's limits."""
    if not payloads:
        raise ValueError("render_slack needs at least one payload")
    alerts = sorted((_alert(p) for p in payloads), key=lambda a: a.rank)
    mention = mention_on_failure if any(a.is_failure for a in alerts) else None
    if len(alerts) == 1:
        blocks = _single_blocks(alerts[0], mention)
    else:
        blocks = _combined_blocks(alerts, mention)
    return {"text": _text(alerts, mention), "blocks": blocks}


def _shown(body: Mapping[str, Any], count: int) -> int:
    """How many alerts of ``body`` got their own section (a combined message: one per divider)."""
    if count == 1:
        return 1
    return sum(1 for block in body["blocks"] if block.get("type") == "divider")


def render_slack_batch(
    payloads: Sequence[Payload], *, mention_on_failure: str | None = None
) -> tuple[dict[str, Any], int]:
    """The message for the longest prefix of ``payloads`` whose every alert has its own section.

    Returns ``(body, n)``: ``body`` shows ``payloads[:n]`` in full (``n >= 1``), so a sender may
    mark exactly those as delivered and keep the rest for the next message. Alerts that
    ``render_slack`` would only count in "+N more" are never part of the ``n``.
    """
    n = len(payloads)
    while True:
        body = render_slack(payloads[:n], mention_on_failure=mention_on_failure)
        shown = _shown(body, n)
        if shown == n:
            return body, n
        n = max(1, min(n - 1, shown))


# --- Slack limits ----------------------------------------------------------------------------

_Check = Callable[[str, Mapping[str, Any]], list[str]]


def _check_string(where: str, value: Any, limit: int) -> list[str]:
    if not isinstance(value, str):
        return [f"{where}: not a string"]
    if not value:
        return [f"{where}: empty"]
    n = slack_len(value)
    return [f"{where}: {n} > {limit} characters"] if n > limit else []


def _check_text_object(where: str, obj: Any, limit: int, *, plain_only: bool = False) -> list[str]:
    types = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if not isinstance(obj, Mapping) or obj.get("type") not in types:
        return [f"{where}: not a {'/'.join(types)} text object"]
    return _check_string(f"{where}.text", obj.get("text"), limit)


def _check_header(where: str, block: Mapping[str, Any]) -> list[str]:
    return _check_text_object(f"{where}.text", block.get("text"), MAX_HEADER, plain_only=True)


def _check_fields(where: str, fields: Any) -> list[str]:
    if not isinstance(fields, list) or not 0 < len(fields) <= MAX_FIELDS:
        return [f"{where}: must be a list of 1 to {MAX_FIELDS} text objects"]
    problems: list[str] = []
    for i, field in enumerate(fields):
        problems += _check_text_object(f"{where}[{i}]", field, MAX_FIELD_TEXT)
    return problems


def _check_section(where: str, block: Mapping[str, Any]) -> list[str]:
    text, fields = block.get("text"), block.get("fields")
    if text is None and fields is None:
        return [f"{where}: a section needs text or fields"]
    problems: list[str] = []
    if text is not None:
        problems += _check_text_object(f"{where}.text", text, MAX_SECTION_TEXT)
    if fields is not None:
        problems += _check_fields(f"{where}.fields", fields)
    return problems


def _check_context(where: str, block: Mapping[str, Any]) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not 0 < len(elements) <= MAX_CONTEXT_ELEMENTS:
        return [f"{where}.elements: must be a list of 1 to {MAX_CONTEXT_ELEMENTS} elements"]
    problems: list[str] = []
    for i, element in enumerate(elements):
        problems += _check_text_object(f"{where}.elements[{i}]", element, MAX_SECTION_TEXT)
    return problems


_BLOCK_CHECKS: dict[str, _Check] = {
    "header": _check_header,
    "section": _check_section,
    "context": _check_context,
    "divider": lambda _where, _block: [],
}


def _check_block(where: str, block: Any) -> list[str]:
    if not isinstance(block, Mapping):
        return [f"{where}: not an object"]
    check = _BLOCK_CHECKS.get(str(block.get("type")))
    if check is None:
        return [f"{where}: unsupported block type {block.get('type')!r}"]
    return check(where, block)


def _blocks_text(node: Any) -> int:
    """Code units of all ``text`` strings inside ``node`` (blocks, text objects, elements)."""
    if isinstance(node, list):
        return sum(_blocks_text(item) for item in node)
    if not isinstance(node, Mapping):
        return 0
    text = node.get("text")
    own = slack_len(text) if isinstance(text, str) else 0
    return own + sum(_blocks_text(v) for v in node.values() if isinstance(v, list | Mapping))


def _check_blocks(blocks: Any) -> list[str]:
    if not isinstance(blocks, list):
        return ["blocks: not a list"]
    problems = [f"blocks: {len(blocks)} > {MAX_BLOCKS} blocks"] if len(blocks) > MAX_BLOCKS else []
    total = _blocks_text(blocks)
    if total > MAX_BLOCKS_TEXT:
        problems.append(f"blocks: {total} > {MAX_BLOCKS_TEXT} characters of text in all")
    for i, block in enumerate(blocks):
        problems += _check_block(f"blocks[{i}]", block)
    return problems


def validate_slack_message(body: Any) -> list[str]:
    """Every way ``body`` breaks the Slack limits fotawatch keeps to; empty when it is valid.

    Covers the block types fotawatch sends (header, section, context, divider); other block
    types are reported as unsupported.
    """
    if not isinstance(body, Mapping):
        return ["body: not a JSON object"]
    text, blocks = body.get("text"), body.get("blocks")
    if not text and not blocks:
        return ["body: neither text nor blocks"]
    problems = _check_string("text", text, MAX_TEXT) if text is not None else []
    return problems + (_check_blocks(blocks) if blocks is not None else [])


# --- generic webhook and console -------------------------------------------------------------


def render_webhook(payloads: Sequence[Payload]) -> dict[str, Any]:
    """The generic webhook body, format version 1 (see the module docstring)."""
    return {"version": 1, "source": "fotawatch", "events": [dict(p) for p in payloads]}


def _account_or_api(account: str) -> str:
    return f"account {account}" if account else "ThingSpace"


def _console_ref(p: Payload) -> str:
    ident = _fit(p.get("campaign_id"), 9, escape=False)
    name = _fit(p.get("campaign_name"), 60, escape=False)
    return f"{name} ({ident})" if name and ident else name or ident


def _console_transition(p: Payload) -> str:
    origin = _fit(p.get("from_status") or "(first seen)", _ID, escape=False)
    to_status = _fit(p.get("to_status"), _ID, escape=False)
    progress = _progress(p.get("progress"))
    line = f"{_console_ref(p)}  {origin} -> {to_status}  [{_fit(p.get('kind'), _ID, escape=False)}]"
    return line + (f"  {progress}" if progress else "")


def _console_condition(p: Payload) -> str:
    state = _fit(p.get("state"), _ID, escape=False).upper()
    account = _fit(p.get("account"), _ID, escape=False)
    where = _console_ref(p) or (f"account {account}" if account else "ThingSpace API")
    status = f" in {_fit(p.get('status'), _ID, escape=False)}" if p.get("status") else ""
    detail = _fit(p.get("detail"), 200, escape=False)
    line = f"{state} {_fit(p.get('condition'), _ID, escape=False)}  {where}{status}"
    return line + (f"\n          {detail}" if detail else "")


def render_console(payload: Payload) -> str:
    """One readable line (two for a condition with detail) for ``fotawatch demo``."""
    when = _when(payload.get("observed_at"), "%H:%M:%S", escape=False)
    kind = payload.get("type")
    if kind == PayloadType.TRANSITION:
        return f"{when}  {_console_transition(payload)}"
    if kind == PayloadType.CONDITION:
        return f"{when}  {_console_condition(payload)}"
    if kind == PayloadType.MILESTONE:
        percent = _fit(payload.get("milestone"), 8, escape=False)
        return f"{when}  {_console_ref(payload)}  {percent}% upgraded  " + _progress(
            payload.get("progress"))  # fmt: skip
    if kind == PayloadType.WATCHING:
        status = _fit(payload.get("status"), _ID, escape=False)
        return f"{when}  {_console_ref(payload)}  now watching ({status})"
    if kind == PayloadType.TEST:
        return f"{when}  fotawatch test alert"
    return f"{when}  fotawatch event {_fit(kind, _ID, escape=False)}"
