"""The ThingSpace client against the simulator: wire variants, bad bodies, retries, Retry-After."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import ACCOUNT, campaign, write_config

from fotawatch.app import build_client
from fotawatch.config import load_settings
from fotawatch.errors import (
    CampaignMissingError,
    InvalidResponseError,
    LoginRejectedError,
    RateLimitedError,
    ServerError,
)
from fotawatch.events import AuthRequest, Event
from fotawatch.model import TimeWindow
from fotawatch.simulator import Scenario, Simulator
from fotawatch.thingspace.client import ThingSpaceClient

CID = "0d000000-0000-0000-0000-000000000001"


def _sim(**campaign_fields: Any) -> Simulator:
    fields = {"account": ACCOUNT, "id": CID, "status": "CampaignScheduled",
              "time_windows": [[1, 5]], "auto_assign_license": True, **campaign_fields}  # fmt: skip
    return Simulator(Scenario.from_dict({"campaigns": [fields]}))


async def _client(
    tmp_path: Path, sim: Simulator, session: aiohttp.ClientSession, events: list[Event], **ts: Any
) -> ThingSpaceClient:
    config = write_config(tmp_path, sim.url, [campaign(CID)], thingspace=ts)
    return build_client(load_settings(config), session, events.append)


@pytest.mark.parametrize(
    ("options", "status", "flag"),
    [
        ({}, "CampaignScheduled", True),
        ({"status_alias": True, "status": "CampaignRequestQueued"}, "CampaignRequestQueued", True),
        ({"bool_style": "string"}, "CampaignScheduled", True),
        ({"bool_style": "omit"}, "CampaignScheduled", None),
        ({"time_window_key": "timeWindowList"}, "CampaignScheduled", True),
        ({"status": "CampaignPaused"}, "CampaignPaused", True),
    ],
    ids=["plain", "CampaignQueued alias", "string booleans", "flags missing",
         "timeWindowList", "unknown status"],
)
async def test_wire_variants_parse_the_same(
    tmp_path: Path, options: dict[str, Any], status: str, flag: bool | None
) -> None:
    """Each documented variant of the campaign body parses to the same campaign."""
    events: list[Event] = []
    async with _sim(**options) as sim, aiohttp.ClientSession() as session:
        client = await _client(tmp_path, sim, session, events)
        got = await client.get_campaign(ACCOUNT, CID)
    assert (status, flag, (TimeWindow(start_hour=1, end_hour=5),)) == (
        got.status, got.auto_assign_license, got.time_windows,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"kind": "html"}, ServerError),
        ({"kind": "truncated_json"}, InvalidResponseError),
        ({"kind": "http_error", "status": 503}, ServerError),
    ],
    ids=["HTML 502 page", "truncated JSON", "503"],
)
async def test_bad_answers_fail_the_poll_with_a_typed_error(
    tmp_path: Path, fault: dict[str, Any], error: type[Exception]
) -> None:
    """HTML error pages and truncated JSON end as typed errors, after the retry budget."""
    events: list[Event] = []
    async with _sim() as sim, aiohttp.ClientSession() as session:
        client = await _client(tmp_path, sim, session, events)
        sim.set_faults([{**fault, "match": "campaign"}])
        with pytest.raises(error):
            await client.get_campaign(ACCOUNT, CID)
        sim.clear_faults()
        assert (await client.get_campaign(ACCOUNT, CID)).status == "CampaignScheduled"


async def test_an_unchanged_body_is_not_parsed_again(tmp_path: Path) -> None:
    """The same bytes give the same campaign object; new bytes are parsed; a bad body after a
    good one still fails; a campaign no longer watched is forgotten."""
    events: list[Event] = []
    async with _sim() as sim, aiohttp.ClientSession() as session:
        client = await _client(tmp_path, sim, session, events)
        first = await client.get_campaign(ACCOUNT, CID)
        assert first is await client.get_campaign(ACCOUNT, CID)
        sim.set_status(ACCOUNT, CID, "CampaignEnded")
        ended = await client.get_campaign(ACCOUNT, CID)
        assert ("CampaignScheduled", "CampaignEnded") == (first.status, ended.status)
        sim.set_faults([{"kind": "truncated_json", "match": "campaign"}])
        with pytest.raises(InvalidResponseError):
            await client.get_campaign(ACCOUNT, CID)
        sim.clear_faults()
        assert ended is await client.get_campaign(ACCOUNT, CID)
        client.retain([])
        again = await client.get_campaign(ACCOUNT, CID)
    assert again == ended
    assert again is not ended


async def test_a_transient_5xx_is_retried_within_the_poll(tmp_path: Path) -> None:
    """Two 500s then success: one poll, three requests, no error."""
    events: list[Event] = []
    async with _sim() as sim, aiohttp.ClientSession() as session:
        client = await _client(tmp_path, sim, session, events)
        sim.set_faults([{"kind": "http_error", "status": 500, "match": "campaign", "count": 2}])
        got = await client.get_campaign(ACCOUNT, CID)
        assert got.status == "CampaignScheduled"
        assert sim.stats()["campaign_requests"] == 3


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    """A 429 with Retry-After: 1 delays the next try by at least a second."""
    events: list[Event] = []
    async with _sim() as sim, aiohttp.ClientSession() as session:
        client = await _client(tmp_path, sim, session, events)
        await client.get_campaign(ACCOUNT, CID)
        sim.set_faults([{"kind": "rate_limit", "retry_after": 1, "match": "campaign",
                         "count": 1}])  # fmt: skip
        started = time.monotonic()
        assert (await client.get_campaign(ACCOUNT, CID)).status == "CampaignScheduled"
        assert time.monotonic() - started >= 1.0


async def test_a_retry_after_beyond_the_cap_ends_the_poll(tmp_path: Path) -> None:
    """A Retry-After longer than retry_after_max_seconds fails the poll instead of waiting."""
    events: list[Event] = []
    async with _sim() as sim, aiohttp.ClientSession() as session:
        client = await _client(tmp_path, sim, session, events,
                               retry={"attempts": 3, "retry_after_max_seconds": 5})  # fmt: skip
        await client.get_campaign(ACCOUNT, CID)
        sim.set_faults([{"kind": "rate_limit", "retry_after": 3600, "match": "campaign"}])
        started = time.monotonic()
        with pytest.raises(RateLimitedError):
            await client.get_campaign(ACCOUNT, CID)
        assert time.monotonic() - started < 2


@pytest.mark.parametrize("missing_response", [404, 400])
async def test_unknown_campaign_is_missing(tmp_path: Path, missing_response: int) -> None:
    """404, or 400 INVALID_PARAMETER, for an unknown campaign id means missing."""
    events: list[Event] = []
    scenario = Scenario.from_dict({"campaigns": [], "missing_response": missing_response})
    async with Simulator(scenario) as sim, aiohttp.ClientSession() as session:
        client = await _client(tmp_path, sim, session, events)
        with pytest.raises(CampaignMissingError):
            await client.get_campaign(ACCOUNT, CID)


async def test_rejected_oauth_credentials_are_not_retried(tmp_path: Path) -> None:
    """A wrong client secret: one token request per poll, then the circuit stops them."""
    events: list[Event] = []
    async with _sim() as sim, aiohttp.ClientSession() as session:
        client = await _client(tmp_path, sim, session, events, client_secret="wrong-secret")
        for _ in range(5):
            with pytest.raises(LoginRejectedError if _ < 2 else Exception):
                await client.get_campaign(ACCOUNT, CID)
        assert sim.stats()["oauth_requests"] == 2
        assert client.auth.circuit.open
    rejected = [e for e in events if isinstance(e, AuthRequest) and e.result == "rejected"]
    assert len(rejected) == 2
