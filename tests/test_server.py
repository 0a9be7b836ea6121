"""fotawatch.server over real loopback HTTP: endpoints, negotiation, errors and bounds."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from structlog.testing import capture_logs

from fotawatch.metrics import Metrics, exposition
from fotawatch.model import CampaignKey
from fotawatch.poller import CampaignView
from fotawatch.server import PIECE, accepts_gzip, make_app, start, wants_openmetrics

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


@dataclass
class FakeStatus:
    """A ServerStatus whose answers the test sets; ``broken`` makes every call raise."""

    version: str = "1.2.3<b>"
    health: tuple[bool, str] = (True, "")
    readiness: tuple[bool, str] = (True, "")
    campaigns: int = 3
    broken: bool = False

    def _check(self) -> None:
        if self.broken:
            raise RuntimeError("secret internal detail")

    def healthy(self) -> tuple[bool, str]:
        self._check()
        return self.health

    def ready(self) -> tuple[bool, str]:
        self._check()
        return self.readiness

    def campaign_count(self) -> int:
        self._check()
        return self.campaigns

    def role(self) -> str:
        return ""


@dataclass
class DaemonFake:
    version: str = "1.2.3"
    login_circuit_open: bool = False
    api_up: bool = True
    reload_ok: bool = True
    reload_ok_at: dt.datetime | None = None
    leader: bool = True
    leader_changes: int = 1


def registry_with_campaigns(n: int = 20) -> CollectorRegistry:
    registry = CollectorRegistry()
    views = [
        CampaignView(
            key=CampaignKey(account="acct", campaign_id=f"c{i}"),
            name=None,
            campaign=None,
            status="CampaignScheduled",
            status_since=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            last_seq=1,
        )
        for i in range(n)
    ]
    Metrics(registry, views=lambda: views, polling=lambda _k: True, status=DaemonFake())
    return registry


@contextlib.asynccontextmanager
async def serving(
    status: FakeStatus, campaigns: int = 20, **start_kwargs: float
) -> AsyncIterator[str]:
    registry = registry_with_campaigns(campaigns)
    app = make_app(registry=registry, status=status, web_config=None)
    server = await start(app, "127.0.0.1", 0, **start_kwargs)  # type: ignore[arg-type]
    try:
        assert server.port != 0
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


@pytest.fixture
def status() -> FakeStatus:
    return FakeStatus()


@pytest.fixture
async def base(status: FakeStatus) -> AsyncIterator[str]:
    async with serving(status) as url:
        yield url


async def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(url, headers={"Accept-Encoding": "identity", **headers}) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def raw_request(port: int, data: bytes, deadline: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read the response (until the server closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), deadline)
    finally:
        writer.close()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# ---------------------------------------------------------------- /metrics


async def test_metrics_in_text_format_by_default(base: str) -> None:
    """Without an Accept header /metrics is the text format 0.0.4."""
    code, headers, body = await get(f"{base}/metrics")
    assert 200 == code
    assert "text/plain; version=0.0.4; charset=utf-8" == headers["Content-Type"]
    names = {f.name for f in parse_text(body.decode())}
    assert {"fotawatch_campaign_status", "fotawatch_build_info"} <= names


async def test_metrics_in_openmetrics_when_prometheus_asks(base: str) -> None:
    """Prometheus' default Accept header gets OpenMetrics 1.0, ending in # EOF."""
    code, headers, body = await get(f"{base}/metrics", Accept=PROMETHEUS_ACCEPT)
    assert 200 == code
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    assert any(f.name == "fotawatch_polls" for f in parse_openmetrics(body.decode()))


@pytest.mark.parametrize("campaigns", [20, 500], ids=["one-piece", "several-pieces"])
async def test_metrics_gzip_when_accepted(campaigns: int) -> None:
    """Accept-Encoding: gzip gets a gzip stream of the same exposition (one piece or several);
    the plain body states its length."""
    async with serving(FakeStatus(), campaigns) as base:
        _, plain_headers, plain = await get(f"{base}/metrics")
        code, headers, body = await get(f"{base}/metrics", **{"Accept-Encoding": "gzip"})
    assert (200, "gzip") == (code, headers.get("Content-Encoding"))
    assert plain == gzip.decompress(body)
    assert str(len(plain)) == plain_headers["Content-Length"]
    assert (len(plain) > 2 * PIECE) == (campaigns == 500)


async def test_metrics_streams_the_same_bytes_as_the_joined_exposition() -> None:
    """Streamed in pieces, the body is byte for byte what ``exposition`` renders, both formats."""
    registry = registry_with_campaigns(500)
    app = make_app(registry=registry, status=FakeStatus(), web_config=None)
    server = await start(app, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{server.port}"
        _, _, text = await get(f"{base}/metrics")
        _, _, openmetrics = await get(f"{base}/metrics", Accept=PROMETHEUS_ACCEPT)
    finally:
        await server.close()
    assert text == exposition(registry)
    assert openmetrics == exposition(registry, openmetrics=True)


async def test_metrics_head_has_the_headers_and_no_body(base: str) -> None:
    """HEAD /metrics: the GET's status and headers, no body."""
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.head(f"{base}/metrics", headers={"Accept-Encoding": "identity"}) as response,
    ):
        body = await response.read()
        headers = dict(response.headers)
    _, get_headers, get_body = await get(f"{base}/metrics")
    assert (200, b"") == (response.status, body)
    assert headers["Content-Type"] == get_headers["Content-Type"]
    assert int(headers["Content-Length"]) == len(get_body)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PROMETHEUS_ACCEPT, True),
        ("application/openmetrics-text", True),
        ("text/plain;version=0.0.4", False),
        ("", False),
        ("*/*", False),
        ("application/openmetrics-text;q=0", False),
        ("text/plain;q=0.9,application/openmetrics-text;q=0.5", False),
    ],
)
def test_openmetrics_negotiation(accept: str, expected: bool) -> None:
    """OpenMetrics only when acceptable and preferred at least as much as plain text."""
    assert expected == wants_openmetrics(accept)


def test_gzip_negotiation() -> None:
    """gzip with q=0 is refused; any other mention of gzip is accepted."""
    assert [True, True, False, False] == [
        accepts_gzip(h) for h in ("gzip, deflate", "br;q=1, gzip;q=0.5", "gzip;q=0", "identity")
    ]


# ---------------------------------------------------------------- health, readiness, landing


async def test_healthz_follows_the_status(base: str, status: FakeStatus) -> None:
    """200 ok while healthy; 503 with the reason otherwise."""
    assert (200, b"ok\n") == (await get(f"{base}/healthz"))[::2]
    status.health = (False, "scheduler not running")
    assert (503, b"scheduler not running\n") == (await get(f"{base}/healthz"))[::2]


async def test_readyz_follows_the_status(base: str, status: FakeStatus) -> None:
    """200 ready when ready; 503 with the reason otherwise."""
    assert (200, b"ready\n") == (await get(f"{base}/readyz"))[::2]
    status.readiness = (False, "waiting for first poll of 3 of 10 campaigns")
    code, headers, body = await get(f"{base}/readyz")
    assert (503, b"waiting for first poll of 3 of 10 campaigns\n") == (code, body)
    assert headers["Content-Type"].startswith("text/plain")


async def test_landing_page_links_the_endpoints(base: str) -> None:
    """/ is HTML with the (escaped) version, the campaign count and the three links."""
    code, headers, body = await get(f"{base}/")
    page = body.decode()
    assert (200, "text/html; charset=utf-8") == (code, headers["Content-Type"])
    assert "1.2.3&lt;b&gt;" in page
    assert "3 campaigns" in page
    for path in ("metrics", "healthz", "readyz"):
        assert f'href="{path}"' in page


# ---------------------------------------------------------------- errors


async def test_unknown_path_is_plain_404(base: str) -> None:
    """An unknown path gets a short plain-text 404."""
    code, headers, body = await get(f"{base}/nope")
    assert (404, b"404 Not Found\n") == (code, body)
    assert headers["Content-Type"].startswith("text/plain")


async def test_wrong_method_is_plain_405_with_allow(base: str) -> None:
    """POST to /metrics is 405 with an Allow header."""
    async with aiohttp.ClientSession() as session, session.post(f"{base}/metrics") as response:
        assert (405, b"405 Method Not Allowed\n") == (response.status, await response.read())
        assert "GET" in response.headers["Allow"]


async def test_handler_error_is_a_fixed_500_without_details(base: str, status: FakeStatus) -> None:
    """An exception in a handler gives 500 with a fixed body: no traceback, no message; logged."""
    status.broken = True
    with capture_logs() as logs:
        for accept in ("text/plain", "text/html"):
            code, _, body = await get(f"{base}/healthz", Accept=accept)
            assert (500, b"500 Internal Server Error\n") == (code, body)
    assert ["http_handler_failed"] * 2 == [e["event"] for e in logs]
    status.broken = False
    assert 200 == (await get(f"{base}/healthz"))[0]


async def test_huge_header_is_rejected_and_the_server_keeps_serving(base: str) -> None:
    """A header over the limit is answered 400/431 without a traceback; others still work."""
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    response = await raw_request(port_of(base), request)
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line.split(b" ")[1] in {b"400", b"431"}
    assert b"Traceback" not in response
    assert 200 == (await get(f"{base}/healthz"))[0]


async def test_slow_client_does_not_block_others_and_is_cut_off() -> None:
    """A slowloris connection does not delay other requests and is closed after the timeout."""
    async with serving(FakeStatus(), keepalive_timeout=1.0) as base:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(base))
        started = time.monotonic()
        try:
            for byte in b"GET /metr":
                writer.write(bytes([byte]))
                await writer.drain()
                code, _, _ = await asyncio.wait_for(get(f"{base}/healthz"), 5.0)
                assert 200 == code
            assert b"" == await asyncio.wait_for(reader.read(), 10.0)  # closed by the server
        finally:
            writer.close()
        assert time.monotonic() - started < 10.0


async def test_close_releases_the_port() -> None:
    """After close() the port accepts no more connections."""
    async with serving(FakeStatus()) as base:
        port = port_of(base)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_scraper_leaving_mid_body_is_not_an_error() -> None:
    """A client that closes the connection while a large /metrics streams (a scrape timeout)
    costs no error log and no 500; the next scrape is served whole."""
    registry = registry_with_campaigns(5000)
    app = make_app(registry=registry, status=FakeStatus(), web_config=None)
    server = await start(app, "127.0.0.1", 0)
    try:
        with capture_logs() as logs:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(64 * 1024)  # part of the body, then hang up
            writer.transport.abort()
            _, _, body = await get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        await server.close()
    assert head.startswith(b"HTTP/1.1 200")
    assert body == exposition(registry)
    assert [] == [e for e in logs if e["log_level"] in {"error", "critical"}]
