"""The HTTP server on the daemon's loop: /metrics, /healthz, /readyz and a landing page.

- ``/metrics``: text format 0.0.4, or OpenMetrics 1.0 when ``Accept`` prefers
  ``application/openmetrics-text`` (Prometheus does by default); gzip (level 1, chunked
  transfer) when ``Accept-Encoding`` allows it. Rendering runs on the loop: it only reads
  memory and is fast (see ``fotawatch.metrics``); the body is streamed in 256 KiB pieces of
  the cached text, never joined whole.
- ``/healthz``: 200 ``ok`` while the loop and the scheduler run, else 503 and the reason.
- ``/readyz``: 200 ``ready`` once every campaign was polled (or failed) since start and logins
  are allowed, else 503 and the reason. Both come from a ``ServerStatus``.
- ``/``: the status page when ``make_app`` is given a ``CampaignSource`` (with
  ``/campaigns/{id}``, ``/api/v1/campaigns[/{id}]`` and ``/assets/``: see ``fotawatch.web``),
  else a small HTML page with the version, the campaign count and links. Either links to
  /metrics, /healthz and /readyz.

Errors: an unknown path is a plain-text 404; an exception in a handler is logged and answered
with a fixed 500 body. No traceback or exception text is ever served.

Bounds: no endpoint takes a body (``client_max_size`` 64 KiB); a request line or header field
over 8190 bytes, or more than 128 headers (aiohttp's defaults), is answered 400 and the
connection closed; at most ``keepalive_timeout`` seconds (default 30) for a connection that is
idle or has not completed its request (slowloris), after which aiohttp closes it. Shutdown
waits at most 2 s for in-flight requests.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ssl import SSLContext
from typing import Protocol

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from isal import isal_zlib
from prometheus_client.registry import Collector

from fotawatch.metrics import exposition_chunks
from fotawatch.web import CampaignSource, add_routes
from fotawatch.webconfig import WebConfig, web_config_hooks

__all__ = ["Server", "ServerStatus", "make_app", "start"]

log = structlog.get_logger("fotawatch.server")
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_FORMAT = "application/openmetrics-text; version=1.0.0; charset=utf-8"
MAX_BODY = 64 * 1024
MAX_LINE = 8190  # request line and each header field, bytes (aiohttp's default)
MAX_HEADERS = 128
KEEPALIVE_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 2.0
# ISA-L's deflate, level 1: 22.8 MB of exposition in ~20 ms, where zlib's level 1 takes ~100 ms
# for a larger result; the output is ordinary gzip (RFC 1952) that any client inflates.
GZIP_LEVEL = 1
GZIP_WBITS = 16 + isal_zlib.MAX_WBITS  # a gzip member (header with mtime 0), not a raw stream
PIECE = 256 * 1024  # bytes of exposition per write of /metrics


class ServerStatus(Protocol):
    """What the endpoints read from the daemon."""

    @property
    def version(self) -> str: ...
    def healthy(self) -> tuple[bool, str]: ...
    def ready(self) -> tuple[bool, str]: ...
    def campaign_count(self) -> int: ...
    def role(self) -> str: ...


def _preferences(header: str) -> dict[str, float]:
    """``{value: q}`` of an Accept or Accept-Encoding header (parameters other than q dropped)."""
    out: dict[str, float] = {}
    for part in header.split(","):
        value, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, number = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(number)
                except ValueError:
                    q = 0.0
        if value:
            out[value.lower()] = max(q, out.get(value.lower(), 0.0))
    return out


def wants_openmetrics(accept: str) -> bool:
    """True when OpenMetrics is acceptable and preferred at least as much as plain text."""
    prefs = _preferences(accept)
    text = max(prefs.get(t, 0.0) for t in ("text/plain", "text/*", "*/*"))
    openmetrics = prefs.get("application/openmetrics-text", 0.0)
    return openmetrics > 0 and openmetrics >= text


def accepts_gzip(accept_encoding: str) -> bool:
    return _preferences(accept_encoding).get("gzip", 0.0) > 0


def _metrics_body(chunks: Iterable[bytes], *, gzipped: bool) -> Iterator[bytes]:
    """The pieces to write: ``chunks`` regrouped into ~``PIECE`` bytes, gzipped if asked.

    At 10,000 campaigns the exposition is ~23 MB in ~160,000 cached chunks; joining it whole,
    then gzipping that copy, more than doubled a scrape's peak memory. Regrouping keeps the
    writes few (each ``write`` waits while aiohttp's buffer is over 64 KiB, so at most about
    one piece is held besides the cache) and compressing piece by piece keeps every slice of
    work on the loop short (well under 1 ms per piece).
    """
    compressor = (
        isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, GZIP_WBITS) if gzipped else None
    )
    batch: list[bytes] = []
    size = 0
    for chunk in chunks:
        batch.append(chunk)
        size += len(chunk)
        if size >= PIECE:
            piece = b"".join(batch)
            batch, size = [], 0
            yield compressor.compress(piece) if compressor else piece
    piece = b"".join(batch)
    if compressor:
        yield compressor.compress(piece) + compressor.flush()
    elif piece:
        yield piece


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors as short plain text; anything else a logged, fixed 500."""
    try:
        return await handler(request)
    except web.HTTPException as err:
        response = _plain(err.status, f"{err.status} {err.reason}")
        if "Allow" in err.headers:
            response.headers["Allow"] = err.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("http_handler_failed", method=request.method, path=request.path)
        return _plain(500, "500 Internal Server Error")


@dataclass(frozen=True, slots=True)
class _Endpoints:
    registry: Collector
    status: ServerStatus

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        """The exposition, streamed: never joined into one body (see ``_metrics_body``)."""
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        chunks = exposition_chunks(self.registry, openmetrics=openmetrics)
        response = web.StreamResponse(
            headers={
                "Content-Type": OPENMETRICS_FORMAT if openmetrics else TEXT_FORMAT,
                "Vary": "Accept, Accept-Encoding",
            }
        )
        gzipped = accepts_gzip(request.headers.get("Accept-Encoding", ""))
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"  # length unknown: chunked
        else:
            response.content_length = sum(map(len, chunks))
        await response.prepare(request)
        try:
            if request.method != "HEAD":
                for piece in _metrics_body(chunks, gzipped=gzipped):
                    await response.write(piece)
            await response.write_eof()
        except ConnectionError:  # the scraper gave up (its timeout): nobody to answer
            log.debug("metrics_client_gone", path=request.path)
        return response

    async def healthz(self, _: web.Request) -> web.Response:
        ok, reason = self.status.healthy()
        return _plain(200, "ok") if ok else _plain(503, reason)

    async def readyz(self, _: web.Request) -> web.Response:
        ok, reason = self.status.ready()
        response = _plain(200, reason or "ready") if ok else _plain(503, reason)
        if self.status.role():
            response.headers["Fotawatch-Role"] = self.status.role()
        return response

    async def index(self, _: web.Request) -> web.Response:
        version = html.escape(self.status.version)
        count = self.status.campaign_count()
        role = html.escape(self.status.role())
        links = "".join(
            f'<li><a href="{path}">{path}</a></li>' for path in ("metrics", "healthz", "readyz")
        )
        page = (
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>fotawatch</title></head>'
            f"<body><h1>fotawatch</h1><p>Version {version}; watching {count} campaign"
            f"{'' if count == 1 else 's'}{f'; {role}' if role else ''}.</p><ul>{links}</ul>"
            "</body></html>\n"
        )
        return web.Response(text=page, content_type="text/html")


def make_app(
    *,
    registry: Collector,
    status: ServerStatus,
    web_config: WebConfig | None,
    campaigns: CampaignSource | None = None,
) -> web.Application:
    """The aiohttp application; ``web_config`` adds basic auth and headers to every path;
    ``campaigns`` adds the status pages and the JSON API."""
    middlewares: list[Middleware] = [_errors]
    prepare = None
    if web_config:
        auth, prepare = web_config_hooks(web_config)
        middlewares.insert(0, auth)
    app = web.Application(client_max_size=MAX_BODY, middlewares=middlewares)
    if prepare is not None:
        app.on_response_prepare.append(prepare)
    endpoints = _Endpoints(registry, status)
    app.router.add_get("/metrics", endpoints.metrics)
    app.router.add_get("/healthz", endpoints.healthz)
    app.router.add_get("/readyz", endpoints.readyz)
    if campaigns is None:
        app.router.add_get("/", endpoints.index)
    else:
        add_routes(app, campaigns, version=status.version)
    return app


@dataclass(frozen=True, slots=True)
class Server:
    """A started server; ``port`` is the bound one (useful when 0 was asked for)."""

    host: str
    port: int
    _runner: web.AppRunner

    async def close(self) -> None:
        await self._runner.cleanup()


async def start(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: SSLContext | None = None,
    *,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
) -> Server:
    """Listen on ``host`` (empty: every interface) and ``port``; close with ``Server.close``."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        keepalive_timeout=keepalive_timeout,
        max_line_size=MAX_LINE,
        max_field_size=MAX_LINE,
        max_headers=MAX_HEADERS,
    )
    await runner.setup()
    site = web.TCPSite(runner, host or None, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return Server(host, site.port, runner)
