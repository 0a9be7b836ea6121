"""aiohttp handlers of the status pages and the JSON API (``docs/openapi.yaml``).

- ``GET /``: the status page; ``?status=`` filters (a form GET, so it works without JS).
- ``GET /campaigns/{id}``: one campaign; ``?account=`` picks the account. Campaign ids are
  UUIDs, unique in practice, but fotawatch keys campaigns by (account, id): an id watched in
  several accounts without ``?account=`` gets a page (409) linking each. The page's own links
  always carry the account.
- ``GET /api/v1/campaigns``: ``{"campaigns": [...]}``, newest change first; ``?status=`` and
  ``?account=`` filter.
- ``GET /api/v1/campaigns/{id}``: the campaign with its last ``?limit=`` (1-1000, default 100)
  transitions, oldest first; 404 / 409 / 400 as JSON ``{"error": ...}``.
- ``GET /assets/{name}``: the stylesheet and the script.

Reading is from memory (the views) except the transition history, one store query per
campaign page. The same middlewares as /metrics apply: basic auth, TLS and the configured
headers (which override the defaults set here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from fotawatch.codec import format_time
from fotawatch.web.assets import ASSETS
from fotawatch.web.pages import Page, campaign_page, choice_page, index_page, not_found_page
from fotawatch.web.rows import (
    CampaignRow,
    filter_rows,
    newest_first,
    status_options,
    transition_json,
)
from fotawatch.web.source import CampaignSource

__all__ = ["MAX_LIMIT", "add_routes"]

MAX_LIMIT = 1000
HTML_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
JSON_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=HTML_HEADERS)


def _json(data: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=JSON_HEADERS)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status)


@dataclass(frozen=True, slots=True)
class _Pages:
    source: CampaignSource
    version: str

    def _rows(self) -> list[CampaignRow]:
        s = self.source
        return newest_first(
            CampaignRow.of(v, polling=s.polling(v.key), devices=s.progress(v.key))
            for v in s.views()
        )

    def _page(self) -> Page:
        return Page(
            version=self.version,
            role=self.source.role(),
            now=self.source.clock(),
            refresh_seconds=self.source.refresh_seconds,
        )

    def _matches(self, request: web.Request) -> list[CampaignRow]:
        campaign_id = request.match_info["id"]
        account = request.query.get("account")
        return [
            r
            for r in self._rows()
            if r.key.campaign_id == campaign_id and account in (None, r.key.account)
        ]

    async def index(self, request: web.Request) -> web.Response:
        status = request.query.get("status") or None
        rows = self._rows()
        shown = filter_rows(rows, status=status)
        options = status_options(rows)
        return _html(
            index_page(self._page(), shown, total=len(rows), status=status, options=options)
        )

    async def campaign(self, request: web.Request) -> web.Response:
        matches = self._matches(request)
        if not matches:
            page = not_found_page(
                self._page(), request.match_info["id"], request.query.get("account")
            )
            return _html(page, 404)
        if len(matches) > 1:
            return _html(choice_page(self._page(), matches), 409)
        limit = self.source.history_limit
        transitions = await self.source.history(matches[0].key, limit)
        return _html(campaign_page(self._page(), matches[0], transitions, limit=limit))

    async def api_campaigns(self, request: web.Request) -> web.Response:
        rows = filter_rows(
            self._rows(),
            status=request.query.get("status") or None,
            account=request.query.get("account"),
        )
        return _json(
            {
                "generated_at": format_time(self.source.clock()),
                "campaigns": [r.to_json() for r in rows],
            }
        )

    async def api_campaign(self, request: web.Request) -> web.Response:
        limit = _limit(request.query.get("limit"), self.source.history_limit)
        if limit is None:
            return _error(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
        matches = self._matches(request)
        if not matches:
            return _error(404, "campaign not watched")
        if len(matches) > 1:
            accounts = [r.key.account for r in matches]
            return _error(409, "campaign id in several accounts: add ?account=", accounts=accounts)
        transitions = await self.source.history(matches[0].key, limit)
        return _json(
            {**matches[0].to_json(), "transitions": [transition_json(t) for t in transitions]}
        )

    async def api_unknown(self, _: web.Request) -> web.Response:
        return _error(404, "no such API path")


def _limit(raw: str | None, default: int) -> int | None:
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        return None
    return int(raw)


async def _asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound
    content_type, body = ASSETS[name]
    return web.Response(
        text=body,
        content_type=content_type,
        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )


def add_routes(app: web.Application, source: CampaignSource, *, version: str) -> None:
    """Serve the status pages, the API and the assets on ``app``."""
    pages = _Pages(source, version)
    app.router.add_get("/", pages.index)
    app.router.add_get("/campaigns/{id}", pages.campaign)
    app.router.add_get("/api/v1/campaigns", pages.api_campaigns)
    app.router.add_get("/api/v1/campaigns/{id}", pages.api_campaign)
    app.router.add_get("/api/{tail:.*}", pages.api_unknown)
    app.router.add_get("/assets/{name}", _asset)
