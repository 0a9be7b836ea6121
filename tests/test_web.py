"""The status page, the campaign page, the JSON API and `status --url`, over real loopback HTTP.

Most tests run a real Daemon polling the simulator (``web_live``); a few render hand-made views
from a static source with a fixed clock, for states a live run cannot hold still.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import yaml
from prometheus_client import CollectorRegistry
from support import ACCOUNT, campaign, wait_for
from web_live import EVIL, IDS, NAMES, PROGRESS, STATUSES, live_pages

from fotawatch.model import Campaign, CampaignKey, Transition, TransitionKind
from fotawatch.poller import CampaignView
from fotawatch.server import make_app, start
from fotawatch.status import row_from_api
from fotawatch.web import CampaignSource, DeviceProgress
from fotawatch.web.assets import KIND_COLOURS, TEXT_COLOURS
from fotawatch.web.rows import CampaignRow, StatusKind, newest_first, status_kind

OTHER_ACCOUNT = "0999999999-00002"
PASSWORD = "correct horse battery staple"
NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


# ---------------------------------------------------------------- helpers


class Markup(HTMLParser):
    """Tags with their attributes, and the text of each campaign row's header cell."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[tuple[str, str]] = []  # (data-status, row header text)
        self._status: str | None = None
        self._in_row_header = False
        self._text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "tr" and "data-status" in attributes:
            self._status = attributes["data-status"] or ""
        if tag == "th" and attributes.get("scope") == "row" and self._status is not None:
            self._in_row_header, self._text = True, []
        if tag == "div" and self._in_row_header:  # the id under the name
            self._finish_row()

    def handle_endtag(self, tag: str) -> None:
        if tag == "th" and self._in_row_header:
            self._finish_row()

    def handle_data(self, data: str) -> None:
        if self._in_row_header:
            self._text.append(data)

    def _finish_row(self) -> None:
        assert self._status is not None
        self.rows.append((self._status, "".join(self._text)))
        self._in_row_header, self._status = False, None

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.tags
            if t == tag
            and all(a.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())
        ]


async def get(url: str, **kwargs: object) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as r:  # type: ignore[arg-type]
        return r.status, dict(r.headers), await r.text()


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``python -m fotawatch ARGS`` as a user runs it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fotawatch",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def all_campaigns() -> list[dict[str, str]]:
    return [campaign(cid) for cid in IDS.values()]


def key(name: str) -> CampaignKey:
    return CampaignKey(account=ACCOUNT, campaign_id=IDS[name])


# ---------------------------------------------------------------- the live daemon


async def test_api_lists_every_campaign_newest_change_first(tmp_path: Path) -> None:
    """/api/v1/campaigns has each campaign's status, kind and since, the latest change first;
    devices only where progress is known; ?status= and ?account= filter."""
    async with live_pages(tmp_path, progress=PROGRESS) as live:
        live.set_status("paused", "CampaignScheduled")
        await wait_for(lambda: live.status_of("paused") == "CampaignScheduled", what="poll")
        api = f"{live.url}/api/v1/campaigns"
        _, headers, text = await get(api)
        _, _, scheduled = await get(api, params={"status": "CampaignScheduled"})
        _, _, other = await get(api, params={"account": OTHER_ACCOUNT})
    assert headers["Content-Type"].startswith("application/json")
    campaigns = json.loads(text)["campaigns"]
    assert IDS["paused"] == campaigns[0]["id"]
    since = [c["since"] for c in campaigns]
    assert sorted(since, reverse=True) == since
    by_id = {c["id"]: c for c in campaigns}
    expected = {
        IDS["scheduled"]: ("CampaignScheduled", "in_progress"),
        IDS["queued"]: ("CampaignRequestQueued", "in_progress"),
        IDS["failed"]: ("CampaignFailed", "failed"),
        IDS["paused"]: ("CampaignScheduled", "in_progress"),
        IDS["ended"]: ("CampaignEnded", "succeeded"),
    }
    assert expected == {cid: (c["status"], c["kind"]) for cid, c in by_id.items()}
    assert EVIL == by_id[IDS["queued"]]["name"]
    assert {"total": 100, "upgraded": 92, "failed": 3} == {
        k: by_id[IDS["scheduled"]]["devices"][k] for k in ("total", "upgraded", "failed")
    }
    assert [None] * 4 == [c["devices"] for c in campaigns if c["id"] != IDS["scheduled"]]
    assert [{"start_hour": 0, "end_hour": 6}, {"start_hour": 22, "end_hour": 24}] == by_id[
        IDS["scheduled"]
    ]["time_windows"]
    assert {IDS["scheduled"], IDS["paused"]} == {
        c["id"] for c in json.loads(scheduled)["campaigns"]
    }
    assert [] == json.loads(other)["campaigns"]


async def test_campaign_api_and_page_show_the_transition_history(tmp_path: Path) -> None:
    """A campaign's transitions come from the store: oldest first in the API, newest first on
    the page; the device breakdown is shown only where progress is known."""
    async with live_pages(tmp_path, progress=PROGRESS) as live:
        for status in ("CampaignPreScheduled", "CampaignScheduled"):
            live.set_status("queued", status)
            await wait_for(lambda s=status: live.status_of("queued") == s, what=status)
        _, _, body = await get(f"{live.url}/api/v1/campaigns/{IDS['queued']}")
        _, _, limited = await get(f"{live.url}/api/v1/campaigns/{IDS['queued']}?limit=1")
        query = {"account": ACCOUNT}
        code, _, page = await get(f"{live.url}/campaigns/{IDS['queued']}", params=query)
        _, _, devices_page = await get(f"{live.url}/campaigns/{IDS['scheduled']}", params=query)
    detail = json.loads(body)
    steps = [(t["seq"], t["from_status"], t["to_status"], t["kind"]) for t in detail["transitions"]]
    assert [
        (1, "CampaignRequestQueued", "CampaignPreScheduled", "progressed"),
        (2, "CampaignPreScheduled", "CampaignScheduled", "progressed"),
    ] == steps
    assert [2] == [t["seq"] for t in json.loads(limited)["transitions"]]
    assert 200 == code
    assert page.index("CampaignPreScheduled</td><td>CampaignScheduled") < page.index(
        "CampaignRequestQueued</td><td>CampaignPreScheduled"
    )
    assert 'id="devices"' not in page
    markup = Markup(devices_page)
    assert markup.find("table", id="transitions")
    assert "Devices by report status" in devices_page
    assert '<th scope="row">UpgradeSuccess</th><td class="num">92</td>' in devices_page
    assert markup.find("svg", aria_label="92 of 100 upgraded, 3 failed")


async def test_untrusted_text_is_escaped_everywhere(tmp_path: Path) -> None:
    """A campaign named with a <script> tag, and markup in a URL, never reach a page as
    markup: the table, the campaign page, its title and the 404 page show them as text."""
    evil_id = "<img src=x onerror=alert(1)>"
    async with live_pages(tmp_path) as live:
        _, _, index = await get(f"{live.url}/")
        _, _, one = await get(f"{live.url}/campaigns/{IDS['queued']}")
        code, _, missing = await get(
            f"{live.url}/campaigns/{evil_id}", params={"account": "<b>x</b>"}
        )
    escaped = "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; &quot;friends&quot;"
    for page in (index, one):
        assert "<script>alert" not in page
        assert escaped in page
        assert 1 == page.count("<script")  # the page's own script tag only
    assert f"<title>fotawatch: {escaped}</title>" in one
    assert EVIL in [text for _, text in Markup(index).rows]
    assert 404 == code
    assert "<img" not in missing
    assert "<b>" not in missing
    assert "&lt;img src=x onerror=alert(1)&gt;" in missing


async def test_filter_works_without_javascript(tmp_path: Path) -> None:
    """?status= (the form's GET) shows only that status, keeps it selected, and the no-JS
    refresh reloads the same URL; an empty result says so."""
    async with live_pages(tmp_path, refresh=7) as live:
        _, _, failed = await get(f"{live.url}/", params={"status": "CampaignFailed"})
        _, _, cancelled = await get(f"{live.url}/", params={"status": "CampaignCancelled"})
        _, _, everything = await get(f"{live.url}/")
    markup = Markup(failed)
    assert [("CampaignFailed", NAMES["failed"])] == markup.rows
    assert "selected" in markup.find("option", value="CampaignFailed")[0]
    form = markup.find("form", id="filter")[0]
    assert ("get", "./") == (form["method"], form["action"])
    assert markup.find("meta", http_equiv="refresh", content="7")  # no URL: this same one
    assert "Showing 1 of 5 campaigns in CampaignFailed." in failed
    assert [] == Markup(cancelled).rows
    assert "No campaigns in CampaignCancelled." in cancelled
    assert sorted(STATUSES.values()) == sorted(s for s, _ in Markup(everything).rows)
    assert Markup(everything).find("option", value="CampaignPaused")  # an undocumented status


async def test_page_markup_is_accessible(tmp_path: Path) -> None:
    """A caption, column and row headers, a label bound to the filter, a language, machine
    readable times, links to the three endpoints, and status as text beside its colour."""
    async with live_pages(tmp_path) as live:
        code, headers, page = await get(f"{live.url}/")
    markup = Markup(page)
    assert (200, "text/html; charset=utf-8") == (code, headers["Content-Type"])
    assert markup.find("html", lang="en")
    assert "<caption>Campaigns, newest status change first</caption>" in page
    assert 9 == len(markup.find("th", scope="col"))
    assert 5 == len(markup.find("th", scope="row"))
    assert markup.find("label", for_="status")
    assert markup.find("select", id="status", name="status")
    assert len(markup.find("time")) >= 10
    assert {"metrics", "healthz", "readyz"} <= {a.get("href") for _, a in markup.tags if _ == "a"}
    assert '<span class="badge k-failed">CampaignFailed</span> <span class="kind">failed' in page
    assert "default-src 'none'" in headers["Content-Security-Policy"]


async def test_same_id_in_two_accounts_asks_which(tmp_path: Path) -> None:
    """An id watched in two accounts: without ?account= the page lists both (409) and the API
    says 409 with the accounts; with it, each account's campaign is served."""
    twin = {
        "account": OTHER_ACCOUNT,
        "id": IDS["failed"],
        "name": "twin",
        "status": "CampaignEnded",
    }
    async with live_pages(tmp_path, extra=[twin]) as live:
        code, _, page = await get(f"{live.url}/campaigns/{IDS['failed']}")
        api_code, _, api = await get(f"{live.url}/api/v1/campaigns/{IDS['failed']}")
        _, _, mine = await get(
            f"{live.url}/api/v1/campaigns/{IDS['failed']}", params={"account": OTHER_ACCOUNT}
        )
    assert 409 == code
    hrefs = {a["href"] for a in Markup(page).find("a") if "account=" in (a["href"] or "")}
    assert {f"../campaigns/{IDS['failed']}?account={a}" for a in (ACCOUNT, OTHER_ACCOUNT)} == hrefs
    assert (409, [ACCOUNT, OTHER_ACCOUNT]) == (api_code, sorted(json.loads(api)["accounts"]))
    assert ("twin", "CampaignEnded") == (json.loads(mine)["name"], json.loads(mine)["status"])


async def test_status_url_prints_the_daemon_table_and_json(tmp_path: Path) -> None:
    """`fotawatch status --url` prints the running daemon's campaigns as a table or JSON, and
    exits 1 (naming the problem) once a campaign is missing."""
    async with live_pages(tmp_path) as live:
        table = await cli("status", "--url", live.url)
        as_json = await cli("status", "--url", live.url + "/", "--json")
        live.sim.remove_campaign(ACCOUNT, IDS["paused"])
        await wait_for(
            lambda: live.daemon.poller.views[key("paused")].missing,  # type: ignore[union-attr]
            what="missing",
        )
        missing = await cli("status", "--url", live.url)
    code, out, _ = table
    assert 0 == code
    assert ["CAMPAIGN", "STATUS", "SINCE", "FIRMWARE", "DATES"] == out.splitlines()[0].split()[:5]
    line = next(line for line in out.splitlines() if line.startswith("GM01Q rollout"))
    assert f"GM01Q rollout ({IDS['scheduled']})" == line.split("  ")[0]
    assert "CampaignScheduled" in line.split()
    assert "SCHEDULED-1.0 -> SCHEDULED-2.0" in out
    rows = json.loads(as_json[1])
    assert (0, set(IDS.values())) == (as_json[0], {r["campaign_id"] for r in rows})
    assert {"account", "campaign_id", "name", "status", "since", "firmware_from", "firmware_to",
            "start_date", "end_date", "error"} <= set(rows[0])  # fmt: skip
    assert 1 == missing[0]
    assert "CampaignPaused [missing: ThingSpace does not know this campaign]" in missing[1]


async def test_status_url_names_an_unreachable_daemon() -> None:
    """Nothing listening: exit 1 and one line on stderr naming the URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = await cli("status", "--url", f"http://127.0.0.1:{port}")
    assert (1, "") == (code, out)
    assert err.startswith(f"fotawatch: http://127.0.0.1:{port}/api/v1/campaigns: ")
    assert 1 == len(err.strip().splitlines())


# ---------------------------------------------------------------- TLS and basic auth


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key_file = directory / "server.crt", directory / "server.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key_file, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-set_serial", str(time.time_ns()),
    )  # fmt: skip
    return cert, key_file


async def test_tls_and_basic_auth_protect_the_pages_and_the_api(tmp_path: Path) -> None:
    """With the web config's TLS and basic auth every page, the API and the assets need the
    credentials; the configured headers win over the pages' own; `status --url` gets through
    with --cacert and --user."""
    cert, key_file = _self_signed(tmp_path)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": str(cert), "key_file": str(key_file)},
                "basic_auth_users": {"ops": hashed},
                "http_server_config": {
                    "headers": {"Content-Security-Policy": "default-src 'self'"}
                },
            }
        )
    )
    metrics = {"listen": "127.0.0.1:0", "web_config_file": str(web)}
    paths = ["/", f"/campaigns/{IDS['scheduled']}", "/api/v1/campaigns",
             f"/api/v1/campaigns/{IDS['scheduled']}", "/assets/status.css"]  # fmt: skip
    tls = ssl.create_default_context(cafile=str(cert))
    async with live_pages(tmp_path, metrics=metrics) as live:
        assert live.url.startswith("https://")
        anonymous = [(await get(live.url + p, ssl=tls))[0] for p in paths]
        auth = basic("ops", PASSWORD)
        signed_in = [await get(live.url + p, ssl=tls, headers=auth) for p in paths]
        wrong = (await get(live.url + "/api/v1/campaigns", ssl=tls, headers=basic("ops", "x")))[0]
        args = ("status", "--url", live.url, "--cacert", str(cert), "--user", "ops")
        ok = await cli(*args, env={"FOTAWATCH_PASSWORD": PASSWORD})
        refused = await cli(*args, env={"FOTAWATCH_PASSWORD": "wrong"})
    assert [401] * len(paths) == anonymous
    assert 401 == wrong
    assert [200] * len(paths) == [code for code, _, _ in signed_in]
    assert "default-src 'self'" == signed_in[0][1]["Content-Security-Policy"]
    assert 0 == ok[0], ok[2]
    assert "GM01Q rollout" in ok[1]
    assert 1 == refused[0]
    assert "401 Unauthorized" in refused[2]


# ---------------------------------------------------------------- hand-made views


def _view(cid: str, **fields: object) -> CampaignView:
    base: dict[str, object] = {
        "key": CampaignKey(account=ACCOUNT, campaign_id=cid),
        "name": None,
        "campaign": None,
        "status": None,
        "status_since": None,
        "last_seq": 0,
    }
    return CampaignView(**{**base, **fields})  # type: ignore[arg-type]


@dataclass
class FixedStatus:
    """A ServerStatus that is always healthy and ready."""

    version: str = "9.9"

    def healthy(self) -> tuple[bool, str]:
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        return True, "ready"

    def campaign_count(self) -> int:
        return 0

    def role(self) -> str:
        return ""


@contextlib.asynccontextmanager
async def static_pages(
    views: Sequence[CampaignView], progress: dict[CampaignKey, DeviceProgress] | None = None
) -> AsyncIterator[str]:
    """The pages over loopback for fixed views, a fixed clock and an empty history."""

    async def no_history(_key: CampaignKey, _limit: int) -> Sequence[Transition]:
        return ()

    source = CampaignSource(
        views=lambda: views,
        history=no_history,
        polling=lambda k: k.campaign_id != "done",
        progress=(progress or {}).get,
        clock=lambda: NOW,
        refresh_seconds=0,
    )
    app = make_app(
        registry=CollectorRegistry(), status=FixedStatus(), web_config=None, campaigns=source
    )
    server = await start(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def test_health_and_progress_render_as_words_and_bars() -> None:
    """Never polled, failing, missing and done campaigns say so; a bar only where devices are
    known (an empty campaign included); without a refresh there is no meta refresh."""
    since = NOW - dt.timedelta(minutes=5)
    c = Campaign(account=ACCOUNT, campaign_id="done", status="CampaignEnded")
    views = [
        _view("new"),
        _view("slow", status="CampaignScheduled", status_since=since, last_poll_at=NOW,
              last_result="timeout", healthy=False),
        _view("gone", status="CampaignScheduled", status_since=since, last_poll_at=NOW,
              missing=True),
        _view("done", campaign=c, status="CampaignEnded", status_since=NOW - dt.timedelta(days=2),
              last_poll_at=NOW, last_result="ok"),
    ]  # fmt: skip
    progress = {
        views[1].key: DeviceProgress(total=2, upgraded=1, failed=1),
        views[2].key: DeviceProgress(total=0, upgraded=0, failed=0),
    }
    async with static_pages(views, progress) as url:
        _, _, page = await get(url + "/")
        _, _, api = await get(url + "/api/v1/campaigns")
    assert ["gone", "slow", "done", "new"] == [text for _, text in Markup(page).rows]
    assert "not polled yet" in page
    assert '<span class="h-failing">failing: timeout</span>' in page
    assert "missing: ThingSpace does not know this campaign" in page
    assert "final, no longer polled" in page
    assert '<span class="age">5 min ago</span>' in page
    assert '<span class="age">2 d ago</span>' in page
    assert Markup(page).find("svg", aria_label="1 of 2 upgraded, 1 failed")
    assert Markup(page).find("svg", aria_label="0 of 0 upgraded, 0 failed")
    assert 2 == page.count("<svg")
    assert 'http-equiv="refresh"' not in page
    health = {c["id"]: (c["health"], c["kind"], c["polling"]) for c in json.loads(api)["campaigns"]}
    assert {
        "new": ("not_polled", "not_seen", True),
        "slow": ("failing", "in_progress", True),
        "gone": ("missing", "in_progress", True),
        "done": ("ok", "succeeded", False),
    } == health


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/campaigns/new?limit=0", 400),
        ("/api/v1/campaigns/new?limit=1001", 400),
        ("/api/v1/campaigns/new?limit=x", 400),
        ("/api/v1/campaigns/new?limit=%D9%A3", 400),  # an Arabic-Indic digit three
        ("/api/v1/campaigns/new?limit=1000", 200),
        ("/api/v1/campaigns/nope", 404),
        ("/api/v2/campaigns", 404),
        ("/api/v1/campaigns/new/extra", 404),
    ],
)
async def test_api_errors_are_json(path: str, status: int) -> None:
    """Bad limits are 400, unknown campaigns and API paths 404, all as JSON."""
    async with static_pages([_view("new")]) as url:
        code, headers, body = await get(url + path)
    assert (status, "application/json") == (code, headers["Content-Type"].split(";")[0])
    assert ("error" in json.loads(body)) == (status != 200)


async def test_assets_are_served_with_their_types() -> None:
    """The stylesheet and the script are files (CSP 'self'); other asset names are 404."""
    async with static_pages([]) as url:
        css = await get(url + "/assets/status.css")
        js = await get(url + "/assets/status.js")
        nope = await get(url + "/assets/other.js")
        empty = await get(url + "/")
    assert (200, "text/css") == (css[0], css[1]["Content-Type"].split(";")[0])
    assert (200, "text/javascript") == (js[0], js[1]["Content-Type"].split(";")[0])
    assert 404 == nope[0]
    assert "No campaigns." in empty[2]


# ---------------------------------------------------------------- pure pieces


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (None, StatusKind.NOT_SEEN),
        ("CampaignRequestPending", StatusKind.IN_PROGRESS),
        ("CampaignRequestQueued", StatusKind.IN_PROGRESS),
        ("CampaignPreScheduled", StatusKind.IN_PROGRESS),
        ("CampaignScheduled", StatusKind.IN_PROGRESS),
        ("CampaignEnded", StatusKind.SUCCEEDED),
        ("CampaignRequestFailed", StatusKind.FAILED),
        ("CampaignFailed", StatusKind.FAILED),
        ("CampaignCancelled", StatusKind.CANCELLED),
        ("CampaignAborted", StatusKind.ABORTED),
        ("CampaignPaused", StatusKind.UNKNOWN),
    ],
)
def test_status_kind(status: str | None, kind: StatusKind) -> None:
    """Every documented status has its kind; anything else is unknown."""
    assert kind == status_kind(status)


def test_newest_change_first_then_never_seen_then_by_name() -> None:
    """Order: since descending, campaigns without a status last, ties by name."""
    t = NOW
    views = [_view("b", status_since=t), _view("z"), _view("a", status_since=t),
             _view("old", status_since=t - dt.timedelta(hours=1)), _view("y"),
             _view("new", status_since=t + dt.timedelta(seconds=1))]  # fmt: skip
    rows = newest_first(CampaignRow.of(v, polling=True, devices=None) for v in views)
    assert ["new", "a", "b", "old", "y", "z"] == [r.key.campaign_id for r in rows]


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize(("role", "pair"), [*KIND_COLOURS.items(), *TEXT_COLOURS.items()])
def test_colours_meet_wcag_aa(role: str, pair: tuple[str, str]) -> None:
    """Every text colour on its background reaches WCAG AA's 4.5:1."""
    assert _contrast(*pair) >= 4.5, role


def test_every_kind_has_a_colour() -> None:
    """Each status kind has a badge colour."""
    assert {k.value for k in StatusKind} == set(KIND_COLOURS)


@pytest.mark.parametrize(
    ("health", "result", "error"),
    [
        ("ok", "ok", None),
        ("failing", "timeout", "last poll failed: timeout"),
        ("missing", "missing", "missing: ThingSpace does not know this campaign"),
        ("not_polled", None, "not polled yet"),
    ],
)
def test_api_campaign_as_status_row(health: str, result: str | None, error: str | None) -> None:
    """`status --url` turns a campaign's health into the row's error (None when ok)."""
    api = {"account": ACCOUNT, "id": "c", "name": "n", "status": "CampaignScheduled",
           "health": health, "last_poll_result": result}  # fmt: skip
    assert error == row_from_api(api)["error"]


def test_transition_kinds_are_documented() -> None:
    """docs/openapi.yaml lists every transition kind and every status kind."""
    spec = yaml.safe_load((Path(__file__).parent.parent / "docs" / "openapi.yaml").read_text())
    schemas = spec["components"]["schemas"]
    assert [k.value for k in TransitionKind] == schemas["Transition"]["properties"]["kind"]["enum"]
    assert [k.value for k in StatusKind] == schemas["StatusKind"]["enum"]
