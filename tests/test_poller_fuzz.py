"""Hypothesis-generated API answers, served over loopback, never raise out of the poller."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import (
    campaign_bodies,
    error_bodies,
    headers,
    hostile_bodies,
    near_valid_campaign_bodies,
)

from fotawatch.events import Event
from fotawatch.model import CampaignKey
from fotawatch.poller import ApiHealth, Poller, Target
from fotawatch.store.memory import MemoryStore
from fotawatch.thingspace.auth import Credentials, ThingSpaceAuth
from fotawatch.thingspace.client import RetryPolicy, ThingSpaceClient
from fotawatch.thingspace.limiter import RateLimiter
from fotawatch.thingspace.transport import Transport

RESULTS = {"ok", "timeout", "connection_error", "http_4xx", "http_5xx", "rate_limited",
           "auth_error", "invalid_response", "store_error"}  # fmt: skip
KEY = CampaignKey(account="0642233522-00001", campaign_id="c0ffee00-0000-0000-0000-000000000001")


@dataclass
class Rig:
    """A throw-away API on loopback answering whatever the example says, and a poller on it."""

    runner: asyncio.Runner
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    poller: Poller | None = None
    events: list[Event] = field(default_factory=list)

    async def campaign(self, _: web.Request) -> web.Response:
        return web.Response(status=self.status, body=self.body, headers=self.headers)


async def _token(_: web.Request) -> web.Response:
    return web.json_response({"access_token": "tok-fuzz", "expires_in": 3600})


async def _login(_: web.Request) -> web.Response:
    return web.json_response({"sessionToken": "sess-fuzz"})


async def _start(rig: Rig) -> tuple[web.AppRunner, aiohttp.ClientSession]:
    app = web.Application()
    app.router.add_post("/api/ts/v1/oauth2/token", _token)
    app.router.add_post("/api/m2m/v1/session/login", _login)
    app.router.add_get("/api/fota/v3/campaigns/{acc}/{cid}", rig.campaign)
    server = web.AppRunner(app)
    await server.setup()
    site = web.TCPSite(server, "127.0.0.1", 0)
    await site.start()
    port = server.addresses[0][1]
    session = aiohttp.ClientSession()
    transport = Transport(session, f"http://127.0.0.1:{port}", timeout=2,
                          limiter=RateLimiter(1000), max_concurrency=4)  # fmt: skip
    creds = Credentials(client_id="i", client_secret="s", username="u", password="p")
    auth = ThingSpaceAuth(transport, creds, margin=60, max_login_failures=2,
                          emit=rig.events.append)  # fmt: skip
    client = ThingSpaceClient(transport, auth, RetryPolicy(attempts=1))
    rig.poller = Poller(client, MemoryStore(), rig.events.append,
                        api_health=ApiHealth(600, rig.events.append))  # fmt: skip
    await rig.poller.load([Target(key=KEY)])
    return server, session


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    runner = asyncio.Runner()
    rig = Rig(runner=runner)
    server, session = runner.run(_start(rig))
    yield rig
    runner.run(session.close())
    runner.run(server.cleanup())
    runner.close()


def _poll(rig: Rig, status: int, body: bytes, hdrs: dict[str, str]) -> str:
    rig.status, rig.body, rig.headers = status, body, hdrs
    assert rig.poller is not None
    if rig.poller.client.auth.circuit.open:
        rig.poller.client.auth.reset()
    outcome = rig.runner.run(rig.poller.poll(Target(key=KEY)))
    return outcome.result


FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


@FUZZ
@given(body=st.one_of(campaign_bodies(), near_valid_campaign_bodies(), hostile_bodies()))
def test_any_200_body_is_a_campaign_or_a_counted_invalid_response(rig: Rig, body: bytes) -> None:
    """Valid, near-valid and hostile 200 bodies: the poll ends as `ok` or `invalid_response`."""
    assert _poll(rig, 200, body, {}) in {"ok", "invalid_response"}


@FUZZ
@given(status=st.integers(400, 599), body=error_bodies(), hdrs=headers())
def test_any_error_answer_is_classified(
    rig: Rig, status: int, body: bytes, hdrs: dict[str, str]
) -> None:
    """Any 4xx/5xx with any body and headers ends as one of the poll-result labels."""
    framing = {"content-length", "transfer-encoding"}  # aiohttp sets these itself
    hdrs = {k: v for k, v in hdrs.items() if k.lower() not in framing}
    assert _poll(rig, status, body, hdrs) in RESULTS


def test_views_survive_fuzzing(rig: Rig) -> None:
    """After everything above the poller still has its one campaign and a plausible view."""
    assert rig.poller is not None
    view = rig.poller.views[KEY]
    assert view.last_poll_at is not None
    assert view.last_poll_at <= dt.datetime.now(dt.UTC)
