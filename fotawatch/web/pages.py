"""The status page (``/``) and a campaign's page (``/campaigns/{id}``) as HTML. Pure.

Every value that reaches the page goes through ``_e`` (``html.escape`` with quotes): campaign
names, statuses and firmware come from the ThingSpace API and are not trusted. Links are
relative (``assets/…``, ``campaigns/…``, ``../``), so the pages work behind a reverse proxy that
serves fotawatch under a path prefix.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from fotawatch.model import Transition
from fotawatch.web.rows import CampaignRow, Health
from fotawatch.web.source import DeviceCounts

__all__ = ["Page", "campaign_page", "choice_page", "index_page", "not_found_page"]

ENDPOINTS = ("metrics", "healthz", "readyz")
_COLUMNS = (
    "Campaign", "Account", "Status", "Since", "Devices", "Firmware", "Dates",
    "Window (UTC)", "Last poll",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """What every page shows around its content."""

    version: str
    now: dt.datetime
    refresh_seconds: float
    role: str = ""  # "leader"/"follower" with several instances on PostgreSQL


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _time(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    utc = value.astimezone(dt.UTC)
    stamp = utc.isoformat().replace("+00:00", "Z")
    return f'<time datetime="{_e(stamp)}">{utc:%Y-%m-%d %H:%M:%S} UTC</time>'


def _age(value: dt.datetime | None, now: dt.datetime) -> str:
    if value is None:
        return ""
    seconds = max(int((now - value).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f'<span class="age">{seconds // size} {unit} ago</span>'
    return f'<span class="age">{seconds} s ago</span>'


def _when(value: dt.datetime | None, now: dt.datetime) -> str:
    if value is None:
        return ""
    return f"{_time(value)}<br>{_age(value, now)}"


def _layout(page: Page, *, title: str, base: str, body: str) -> str:
    refresh = round(page.refresh_seconds)
    links = "".join(f'<a href="{base}{p}">/{p}</a>' for p in ENDPOINTS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        f'<link rel="stylesheet" href="{base}assets/status.css">'
        f'<script src="{base}assets/status.js" defer></script>'
        + (
            f'<noscript><meta http-equiv="refresh" content="{refresh}"></noscript>'
            if refresh > 0
            else ""
        )
        + f'</head><body data-refresh="{refresh}">'
        f'<header><h1><a href="{base or "./"}">fotawatch</a></h1>'
        f"<p>version {_e(page.version)}"
        + (f' · <span class="role">{_e(page.role)}</span>' if page.role else "")
        + "</p>"
        f'<nav aria-label="Endpoints">{links}</nav></header>'
        '<p id="stale" class="stale" role="alert" hidden></p>'
        '<div id="announce" class="vh" aria-live="polite"></div>'
        f"<main>{body}</main></body></html>\n"
    )


def _badge(row: CampaignRow) -> str:
    status = row.status or "not seen yet"
    kind = row.kind.value.replace("_", " ")
    return (
        f'<span class="badge k-{row.kind.value}">{_e(status)}</span> '
        f'<span class="kind">{_e(kind)}</span>'
    )


def _bar(devices: DeviceCounts | None) -> str:
    """A stacked bar (upgraded, failed, rest) with its numbers; nothing when unknown."""
    if devices is None:
        return ""
    total = max(devices.total, 0)
    up = min(devices.upgraded, total) * 100 / total if total else 0.0
    fail = min(devices.failed, total) * 100 / total if total else 0.0
    words = f"{devices.upgraded:,} of {total:,} upgraded, {devices.failed:,} failed"
    return (
        f'<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
        f'aria-label="{_e(words)}"><rect class="up" width="{up:.2f}" height="10"/>'
        f'<rect class="fail" x="{up:.2f}" width="{fail:.2f}" height="10"/></svg>'
        f'<span class="note" aria-hidden="true">{devices.upgraded:,}/{total:,} upgraded'
        f"{f', {devices.failed:,} failed' if devices.failed else ''}</span>"
    )


def _firmware(row: CampaignRow) -> str:
    c = row.campaign
    if c is None or (c.firmware_from is None and c.firmware_to is None):
        return ""
    return (
        f'{_e(c.firmware_from or "?")} <span aria-hidden="true">→</span>'
        f'<span class="vh"> to </span> {_e(c.firmware_to or "?")}'
    )


def _dates(row: CampaignRow) -> str:
    c = row.campaign
    if c is None or (c.start_date is None and c.end_date is None):
        return ""
    start = c.start_date.isoformat() if c.start_date else "?"
    end = c.end_date.isoformat() if c.end_date else "?"
    return (
        f'<span class="nowrap">{start}</span> <span aria-hidden="true">&ndash;</span>'
        f'<span class="vh"> to </span> <span class="nowrap">{end}</span>'
    )


def _windows(row: CampaignRow) -> str:
    c = row.campaign
    return ", ".join(_e(w) for w in c.time_windows) if c else ""


_HEALTH_WORDS = {
    Health.OK: "ok",
    Health.FAILING: "failing",
    Health.MISSING: "missing: ThingSpace does not know this campaign",
    Health.NOT_POLLED: "not polled yet",
}


def _health(row: CampaignRow, now: dt.datetime) -> str:
    words = _HEALTH_WORDS[row.health]
    if row.health is Health.FAILING and row.last_poll_result:
        words = f"failing: {row.last_poll_result}"
    done = "" if row.polling else '<br><span class="note">final, no longer polled</span>'
    when = f"{_when(row.last_poll_at, now)}<br>" if row.last_poll_at else ""
    return f'{when}<span class="h-{row.health.value}">{_e(words)}</span>{done}'


def _link(row: CampaignRow, base: str) -> str:
    query = urlencode({"account": row.key.account})
    return f"{base}campaigns/{quote(row.key.campaign_id, safe='')}?{query}"


def _row(row: CampaignRow, now: dt.datetime) -> str:
    cells = (
        f'<span class="nowrap">{_e(row.key.account)}</span>',
        _badge(row),
        _when(row.since, now),
        _bar(row.devices),
        _firmware(row),
        _dates(row),
        _windows(row),
        _health(row, now),
    )
    return (
        f'<tr data-status="{_e(row.status or "")}" data-kind="{row.kind.value}">'
        f'<th scope="row"><a href="{_e(_link(row, ""))}">{_e(row.display_name)}</a>'
        f'<div class="id">{_e(row.key.campaign_id)}</div></th>'
        + "".join(f"<td>{cell}</td>" for cell in cells)
        + "</tr>"
    )


def _filter(options: Sequence[tuple[str, int]], selected: str | None, total: int) -> str:
    items = [f'<option value="">All statuses ({total})</option>']
    items += [
        f'<option value="{_e(s)}"{" selected" if s == selected else ""}>{_e(s)} ({n})</option>'
        for s, n in options
    ]
    if selected and selected not in {s for s, _ in options}:
        items.append(f'<option value="{_e(selected)}" selected>{_e(selected)} (0)</option>')
    return (
        '<form id="filter" class="filter" method="get" action="./">'
        '<label for="status">Status</label>'
        f'<select id="status" name="status">{"".join(items)}</select>'
        '<button type="submit">Filter</button></form>'
    )


def _summary(shown: int, total: int, status: str | None, page: Page) -> str:
    scope = f" in {_e(status)}" if status else ""
    refresh = round(page.refresh_seconds)
    again = f"; refreshes every {refresh} s" if refresh > 0 else ""
    return (
        f'<p id="summary">Showing {shown} of {total} campaign{"" if total == 1 else "s"}'
        f"{scope}. Updated {_time(page.now)}{again}.</p>"
    )


def index_page(
    page: Page,
    rows: Sequence[CampaignRow],
    *,
    total: int,
    status: str | None,
    options: Sequence[tuple[str, int]],
) -> str:
    """The table of campaigns (already filtered and ordered)."""
    head = "".join(f'<th scope="col">{c}</th>' for c in _COLUMNS)
    body = "".join(_row(r, page.now) for r in rows) or (
        f'<tr><td colspan="{len(_COLUMNS)}">No campaigns'
        f"{f' in {_e(status)}' if status else ''}.</td></tr>"
    )
    content = (
        _filter(options, status, total) + '<div id="live">'
        f"{_summary(len(rows), total, status, page)}"
        '<div class="scroll"><table id="campaigns">'
        "<caption>Campaigns, newest status change first</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></div>"
    )
    title = f"fotawatch: {len(rows)} campaign{'' if len(rows) == 1 else 's'}"
    return _layout(page, title=title + (f" in {status}" if status else ""), base="", body=content)


def _facts(row: CampaignRow, now: dt.datetime) -> str:
    c = row.campaign
    model = " ".join(filter(None, (c.make, c.model))) if c else ""
    firmware = _e(c.firmware_name) + "<br>" if c and c.firmware_name else ""
    facts = (
        ("Account", _e(row.key.account)),
        ("Campaign id", f'<span class="id">{_e(row.key.campaign_id)}</span>'),
        ("Status", _badge(row)),
        ("Since", _when(row.since, now)),
        ("Firmware", firmware + _firmware(row)),
        ("Protocol", _e(c.protocol or "") if c else ""),
        ("Make and model", _e(model)),
        ("Dates", _dates(row)),
        ("Time windows (UTC)", _windows(row)),
        ("Last poll", _health(row, now)),
        ("Last successful poll", _when(row.last_success_at, now)),
    )
    items = "".join(f"<dt>{k}</dt><dd>{v or '—'}</dd>" for k, v in facts)
    return f'<dl class="facts">{items}</dl>'


def _breakdown(devices: DeviceCounts | None) -> str:
    if devices is None:
        return ""
    total = devices.total
    rows = "".join(
        f'<tr><th scope="row">{_e(s)}</th><td class="num">{n:,}</td>'
        f'<td class="num">{n * 100 / total if total else 0:.1f} %</td></tr>'
        for s, n in sorted(devices.counts, key=lambda item: (-item[1], item[0]))
    )
    when = f" as of {_time(devices.polled_at)}" if devices.polled_at else ""
    return (
        '<section aria-labelledby="devices"><h3 id="devices">Devices</h3>'
        f"<p>{_bar(devices)}{when}</p>"
        '<table class="narrow"><caption>Devices by report status</caption><thead><tr>'
        '<th scope="col">Status</th><th scope="col" class="num">Devices</th>'
        '<th scope="col" class="num">Share</th></tr></thead>'
        f'<tbody>{rows}</tbody><tfoot><tr><th scope="row">Total</th>'
        f'<td class="num">{total:,}</td><td></td></tr></tfoot></table></section>'
    )


def _history(transitions: Sequence[Transition], limit: int, now: dt.datetime) -> str:
    rows = (
        "".join(
            f'<tr><td class="num">{t.seq}</td><td>{_when(t.observed_at, now)}</td>'
            f"<td>{_e(t.from_status or '(first seen)')}</td><td>{_e(t.to_status)}</td>"
            f"<td>{_e(t.kind.value)}</td></tr>"
            for t in reversed(transitions)
        )
        or '<tr><td colspan="5">No status change recorded yet.</td></tr>'
    )
    return (
        '<section aria-labelledby="history"><h3 id="history">Transitions</h3>'
        '<table class="narrow" id="transitions">'
        f"<caption>Status changes, newest first (at most {limit})</caption><thead><tr>"
        '<th scope="col" class="num">#</th><th scope="col">Observed</th>'
        '<th scope="col">From</th><th scope="col">To</th><th scope="col">Kind</th>'
        f"</tr></thead><tbody>{rows}</tbody></table></section>"
    )


def campaign_page(
    page: Page, row: CampaignRow, transitions: Sequence[Transition], *, limit: int
) -> str:
    """One campaign: its facts, device breakdown (when known) and transition history."""
    content = (
        '<p><a href="../">← All campaigns</a></p><div id="live">'
        f"<h2>{_e(row.display_name)}</h2>{_facts(row, page.now)}"
        f"{_breakdown(row.devices)}{_history(transitions, limit, page.now)}"
        f'<p id="summary" class="note">Updated {_time(page.now)}.</p></div>'
    )
    return _layout(page, title=f"fotawatch: {row.display_name}", base="../", body=content)


def not_found_page(page: Page, campaign_id: str, account: str | None) -> str:
    where = f" in account {_e(account)}" if account else ""
    content = (
        f"<h2>Campaign not found</h2><p>fotawatch does not watch campaign "
        f'<span class="id">{_e(campaign_id)}</span>{where}.</p>'
        '<p><a href="../">← All campaigns</a></p>'
    )
    return _layout(page, title="fotawatch: campaign not found", base="../", body=content)


def choice_page(page: Page, rows: Sequence[CampaignRow]) -> str:
    """The same campaign id in several accounts: let the reader pick one."""
    items = "".join(
        f'<li><a href="{_e(_link(r, "../"))}">{_e(r.display_name)}</a> in account '
        f"{_e(r.key.account)}</li>"
        for r in rows
    )
    content = (
        "<h2>Several campaigns have this id</h2>"
        f"<p>Pick the account:</p><ul>{items}</ul>"
        '<p><a href="../">← All campaigns</a></p>'
    )
    return _layout(page, title="fotawatch: pick an account", base="../", body=content)
