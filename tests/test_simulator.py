"""The ThingSpace simulator, driven over real loopback HTTP with raw aiohttp requests."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from fotawatch.simulator import ManualClock, Scenario, Simulator, generated_id

ACC = "0642233522-00001"
CID = "f858b8c4-2153-11ec-8c44-aeb16d1aa652"
OTHER = "2b6c51a0-2154-11ec-9621-0242ac130002"
FOTA = "/api/fota/v3"
CLIENT = ("sim-client-id", "sim-client-secret")
USER = {"username": "sim-user", "password": "sim-password"}


def scenario(**top: Any) -> Scenario:
    """One account with two campaigns (the first with a timeline), plus any top-level keys."""
    campaigns = top.pop("campaigns", None) or [
        {
            "id": CID,
            "name": "GM01Q rollout",
            "time_windows": [[0, 6]],
            "timeline": [
                {"at": 0, "status": "CampaignRequestPending"},
                {"at": 5, "status": "CampaignRequestQueued"},
                {"at": 10, "status": "CampaignScheduled"},
            ],
        },
        {"id": OTHER, "name": "HX330 modem fix", "status": "CampaignScheduled"},
    ]
    return Scenario.from_dict({"accounts": [ACC], "campaigns": campaigns, **top})


class Api:
    """Raw HTTP against one simulator: every call returns (status, body, headers)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, sim: Simulator | None = None) -> None:
        self.http = http
        self.url = url
        self._sim = sim

    @property
    def sim(self) -> Simulator:
        assert self._sim is not None
        return self._sim

    async def call(
        self, method: str, path: str, *, raw: bool = False, **kwargs: Any
    ) -> tuple[int, Any, Any]:
        async with self.http.request(method, self.url + path, **kwargs) as resp:
            text = await resp.text()
            json_body = resp.content_type == "application/json" and not raw
            return resp.status, json.loads(text) if json_body and text else text, resp.headers

    async def oauth(
        self, client: tuple[str, str] = CLIENT, form: dict[str, str] | None = None
    ) -> tuple[int, Any, Any]:
        basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
        data = {"grant_type": "client_credentials"} if form is None else form
        return await self.call(
            "POST",
            "/api/ts/v1/oauth2/token",
            headers={"Authorization": f"Basic {basic}"},
            data=data,
        )

    async def bearer(self) -> str:
        status, body, _ = await self.oauth()
        assert status == 200
        return str(body["access_token"])

    async def login(self, bearer: str, creds: dict[str, str] = USER) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {bearer}"}
        return await self.call("POST", "/api/m2m/v1/session/login", headers=headers, json=creds)

    async def tokens(self) -> tuple[str, str]:
        bearer = await self.bearer()
        status, body, _ = await self.login(bearer)
        assert status == 200
        return bearer, str(body["sessionToken"])

    async def fota(
        self, path: str, tokens: tuple[str | None, str | None], **kwargs: Any
    ) -> tuple[int, Any, Any]:
        headers = {}
        if tokens[0] is not None:
            headers["Authorization"] = f"Bearer {tokens[0]}"
        if tokens[1] is not None:
            headers["VZ-M2M-Token"] = tokens[1]
        return await self.call("GET", FOTA + path, headers=headers, **kwargs)

    async def campaign(
        self, tokens: tuple[str, str], campaign_id: str = CID, **kwargs: Any
    ) -> tuple[int, Any, Any]:
        return await self.fota(f"/campaigns/{ACC}/{campaign_id}", tokens, **kwargs)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    async with Simulator(scenario(), clock=clock) as running:
        yield running


@pytest.fixture
def api(http: aiohttp.ClientSession, sim: Simulator) -> Api:
    return Api(http, sim.url, sim)


async def running(
    scn: Scenario, http: aiohttp.ClientSession, clock: ManualClock | None = None
) -> tuple[Simulator, Api]:
    sim = Simulator(scn, clock=clock)
    await sim.start()
    return sim, Api(http, sim.url, sim)


# OAuth -------------------------------------------------------------------------------------


async def test_oauth_issues_a_bearer_token(api: Api) -> None:
    """Client credentials get a Bearer token valid for the whole hour."""
    status, body, _ = await api.oauth()
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"]
    assert isinstance(body["scope"], str)


async def test_oauth_reissues_the_same_token_within_its_hour(api: Api, clock: ManualClock) -> None:
    """A second request inside the hour returns the same token with less time left."""
    _, first, _ = await api.oauth()
    clock.advance(100)
    _, second, _ = await api.oauth()
    assert first["access_token"] == second["access_token"]
    assert second["expires_in"] == 3500


async def test_oauth_issues_a_new_token_once_the_hour_is_over(api: Api, clock: ManualClock) -> None:
    """After the TTL the old token is refused and a new one is issued."""
    old = await api.bearer()
    clock.advance(3600)
    status, body, _ = await api.login(old)
    assert (status, body["fault"]["code"]) == (401, "900901")
    assert await api.bearer() != old


@pytest.mark.parametrize(
    ("client", "form", "expected"),
    [
        (("sim-client-id", "wrong"), None, (401, "invalid_client", "Client authentication failed")),
        (
            ("nobody", "sim-client-secret"),
            None,
            (401, "invalid_client", "Client authentication failed"),
        ),
        (CLIENT, {}, (400, "invalid_request", "Missing grant_type parameter value")),
    ],
)
async def test_oauth_refuses_bad_requests(
    api: Api, client: tuple[str, str], form: dict[str, str] | None, expected: tuple[int, str, str]
) -> None:
    """Wrong client credentials give 401 invalid_client; no grant_type gives 400 invalid_request."""
    status, body, _ = await api.oauth(client, form)
    assert expected == (status, body["error"], body["error_description"])
    assert api.sim.stats()["oauth_failures"] == 1


# M2M session login -------------------------------------------------------------------------


async def test_login_returns_a_uuid_session_token(api: Api) -> None:
    """The right UWS credentials with a valid Bearer give a GUID session token."""
    status, body, _ = await api.login(await api.bearer())
    assert status == 200
    assert uuid.UUID(body["sessionToken"]).version == 4


async def test_login_needs_a_valid_bearer(api: Api) -> None:
    """Login without a Bearer is 900902, with an unknown one 900901, both HTTP 401."""
    status, body, _ = await api.call("POST", "/api/m2m/v1/session/login", json=USER)
    assert (status, body["fault"]["code"], body["fault"]["message"]) == (
        401,
        "900902",
        "Missing Credentials",
    )
    status, body, _ = await api.login("not-a-token")
    assert (status, body["fault"]["code"], body["fault"]["message"]) == (
        401,
        "900901",
        "Invalid Credentials",
    )


async def test_login_with_a_wrong_password_is_refused(api: Api) -> None:
    """A wrong password gives 401 with a <Service>.<CLASS>.<Specific> errorCode."""
    status, body, _ = await api.login(
        await api.bearer(), {"username": "sim-user", "password": "nope"}
    )
    assert status == 401
    assert body["errorCode"] == "UnifiedWebService.REQUEST_FAILED.Login.Failed"
    assert body["errorMessage"]


async def test_five_failed_logins_lock_the_user(api: Api) -> None:
    """After 5 consecutive failures even the right password is refused as User.Locked."""
    bearer = await api.bearer()
    for _ in range(5):
        status, _, _ = await api.login(bearer, {"username": "sim-user", "password": "nope"})
        assert status == 401
    status, body, _ = await api.login(bearer)
    assert (status, body["errorCode"]) == (401, "UnifiedWebService.REQUEST_FAILED.User.Locked")
    stats = api.sim.stats()
    assert stats["locked"] is True
    assert (stats["login_attempts"], stats["login_failures"]) == (6, 6)
    assert stats["max_consecutive_login_failures"] == 6
    api.sim.unlock()
    assert (await api.login(bearer))[0] == 200


async def test_a_successful_login_resets_the_consecutive_failures(api: Api) -> None:
    """Four failures, one success, four failures: never locked, max consecutive is 4."""
    bearer = await api.bearer()
    for creds in (
        [{"username": "x", "password": "y"}] * 4 + [USER] + [{"username": "x", "password": "y"}] * 4
    ):
        await api.login(bearer, creds)
    stats = api.sim.stats()
    assert (
        stats["locked"],
        stats["consecutive_login_failures"],
        stats["max_consecutive_login_failures"],
    ) == (False, 4, 4)


# FOTA auth ---------------------------------------------------------------------------------


async def test_fota_calls_need_a_valid_bearer(api: Api) -> None:
    """Without a Bearer a FOTA GET is 401 900902; with a bad one 401 900901."""
    _, session = await api.tokens()
    status, body, _ = await api.campaign((None, session))  # type: ignore[arg-type]
    assert (status, body["fault"]["code"]) == (401, "900902")
    status, body, _ = await api.campaign(("bogus", session))
    assert (status, body["fault"]["code"]) == (401, "900901")


@pytest.mark.parametrize(
    ("session", "code"),
    [
        (None, "UnifiedWebService.REQUEST_FAILED.SessionToken.Format"),
        (
            "bcce3ea6-fe4f-4952-bacf-eadd80718e83",
            "UnifiedWebService.INPUT_INVALID.SessionToken.Invalid",
        ),
        ("not-a-guid", "UnifiedWebService.INPUT_INVALID.SessionToken.Invalid"),
    ],
)
async def test_fota_calls_need_a_valid_session_token(
    api: Api, session: str | None, code: str
) -> None:
    """A missing session token is Format, an unknown one Invalid, both HTTP 400."""
    bearer = await api.bearer()
    status, body, _ = await api.campaign((bearer, session))  # type: ignore[arg-type]
    assert (status, body["errorCode"]) == (400, code)
    assert body["errorMessage"]


async def test_a_session_expires_after_twenty_idle_minutes(api: Api, clock: ManualClock) -> None:
    """Each use restarts the 1200 s idle time; 1201 s without use expires the session."""
    tokens = await api.tokens()
    clock.advance(1200)
    assert (await api.campaign(tokens))[0] == 200
    clock.advance(1200)
    assert (await api.campaign(tokens))[0] == 200
    clock.advance(1201)
    status, body, _ = await api.campaign((await api.bearer(), tokens[1]))  # the hour is over
    assert (status, body["errorCode"], body["errorMessage"]) == (
        400,
        "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired",
        "The Session has expired.",
    )
    assert api.sim.stats()["rejections"] == {"REQUEST_FAILED.SessionToken.Expired": 1}


async def test_expire_sessions_expires_every_session(api: Api) -> None:
    """After expire_sessions() existing tokens are Expired and a fresh login works."""
    tokens = await api.tokens()
    api.sim.expire_sessions()
    status, body, _ = await api.campaign(tokens)
    assert (status, body["errorCode"]) == (
        400,
        "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired",
    )
    assert (await api.campaign(await api.tokens()))[0] == 200


async def test_revoke_tokens_makes_the_bearer_invalid(api: Api) -> None:
    """After revoke_tokens() the old Bearer gets 900901 and the next OAuth call a new token."""
    bearer, session = await api.tokens()
    api.sim.revoke_tokens()
    status, body, _ = await api.campaign((bearer, session))
    assert (status, body["fault"]["code"]) == (401, "900901")
    fresh = await api.bearer()
    assert fresh != bearer
    assert (await api.campaign((fresh, session)))[0] == 200


# campaigns and timelines -------------------------------------------------------------------


async def test_campaign_has_the_documented_fields(api: Api) -> None:
    """The campaign GET carries every field of the reference's Campaign model."""
    status, body, _ = await api.campaign(await api.tokens())
    assert status == 200
    assert body["id"] == CID
    assert body["accountName"] == ACC
    assert body["campaignTimeWindowList"] == [{"startTime": 0, "endTime": 6}]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", body["startDate"])
    assert (body["autoAssignLicenseFlag"], body["autoAddDevicesFlag"]) == (False, False)
    expected = {
        "campaignName",
        "firmwareName",
        "firmwareFrom",
        "firmwareTo",
        "protocol",
        "make",
        "model",
        "endDate",
        "status",
    }
    assert expected <= body.keys()


async def test_timeline_moves_with_the_clock_and_records_changes(
    api: Api, clock: ManualClock
) -> None:
    """The status follows the timeline; status_changes lists each step once, polled or not."""
    tokens = await api.tokens()
    seen = []
    for now in (0, 4.9, 5, 12):
        clock.set(now)
        seen.append((await api.campaign(tokens))[1]["status"])
    assert seen == [
        "CampaignRequestPending",
        "CampaignRequestPending",
        "CampaignRequestQueued",
        "CampaignScheduled",
    ]
    changes = api.sim.stats()["status_changes"]
    assert changes == [
        {
            "account": ACC,
            "campaign_id": CID,
            "from": "CampaignRequestPending",
            "to": "CampaignRequestQueued",
            "at": 5.0,
        },
        {
            "account": ACC,
            "campaign_id": CID,
            "from": "CampaignRequestQueued",
            "to": "CampaignScheduled",
            "at": 10.0,
        },
    ]
    assert api.sim.stats()["status_changes"] == changes


async def test_set_status_overrides_the_rest_of_the_timeline(api: Api, clock: ManualClock) -> None:
    """set_status takes effect now and the later timeline steps no longer happen."""
    tokens = await api.tokens()
    clock.set(3)
    api.sim.set_status(ACC, CID, "CampaignCancelled")
    clock.set(20)
    assert (await api.campaign(tokens))[1]["status"] == "CampaignCancelled"
    changes = [(c["from"], c["to"], c["at"]) for c in api.sim.stats()["status_changes"]]
    assert changes == [("CampaignRequestPending", "CampaignCancelled", 3.0)]


async def test_unknown_campaign_is_404_by_default(api: Api) -> None:
    """An unknown campaign id is 404 NOT_FOUND."""
    status, body, _ = await api.campaign(await api.tokens(), campaign_id=str(uuid.uuid4()))
    assert (status, body["errorCode"]) == (404, "NOT_FOUND")


async def test_unlisted_account_and_unknown_path_are_refused(api: Api) -> None:
    """An account outside the scenario's list is INVALID_PARAMETER; an unknown path is 900906."""
    tokens = await api.tokens()
    status, body, _ = await api.fota(f"/campaigns/0000000000-00000/{CID}", tokens)
    assert (status, body["errorCode"]) == (400, "INVALID_PARAMETER")
    status, body, _ = await api.fota(f"/licenses/{ACC}", tokens)
    assert (status, body["fault"]["code"]) == (400, "900906")


async def test_missing_response_400_answers_invalid_uuid(http: aiohttp.ClientSession) -> None:
    """With missing_response: 400 an unknown campaign is 400 INVALID_PARAMETER."""
    sim, api = await running(scenario(missing_response=400), http)
    try:
        status, body, _ = await api.campaign(await api.tokens(), campaign_id="nope")
    finally:
        await sim.stop()
    assert (status, body) == (
        400,
        {"errorCode": "INVALID_PARAMETER", "errorMessage": "Invalid uuid"},
    )


async def test_a_campaign_does_not_exist_before_its_first_step(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """A timeline starting at t=5 makes the campaign appear at t=5."""
    scn = scenario(
        campaigns=[{"id": CID, "timeline": [{"at": 5, "status": "CampaignRequestPending"}]}]
    )
    sim, api = await running(scn, http, clock)
    try:
        tokens = await api.tokens()
        before = (await api.campaign(tokens))[0]
        clock.set(5)
        after = (await api.campaign(tokens))[0]
    finally:
        await sim.stop()
    assert (before, after) == (404, 200)


async def test_wire_variants_for_tolerant_parsing(http: aiohttp.ClientSession) -> None:
    """timeWindowList, string or omitted flags, CampaignQueued and extra fields are served."""
    scn = scenario(
        campaigns=[
            {
                "id": CID,
                "status": "CampaignRequestQueued",
                "time_window_key": "timeWindowList",
                "bool_style": "string",
                "status_alias": True,
                "auto_add_devices": True,
                "time_windows": [[22, 24]],
                "extra_fields": {"campaignType": "FIRMWARE", "priority": 3},
            },
            {"id": OTHER, "bool_style": "omit"},
        ]
    )
    sim, api = await running(scn, http)
    try:
        tokens = await api.tokens()
        _, body, _ = await api.campaign(tokens)
        _, omitted, _ = await api.campaign(tokens, campaign_id=OTHER)
    finally:
        await sim.stop()
    assert body["status"] == "CampaignQueued"
    assert body["timeWindowList"] == [{"startTime": 22, "endTime": 24}]
    assert "campaignTimeWindowList" not in body
    assert (body["autoAssignLicenseFlag"], body["autoAddDevicesFlag"]) == ("false", "true")
    assert (body["campaignType"], body["priority"]) == ("FIRMWARE", 3)
    assert "autoAssignLicenseFlag" not in omitted
    assert omitted["status"] == "CampaignRequestPending"


async def test_scheduled_events_apply_at_their_time(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """Scenario events expire sessions and set statuses once the clock reaches them."""
    scn = scenario(
        events=[
            {"at": 20, "action": "expire_sessions"},
            {
                "at": 25,
                "action": "set_status",
                "account": ACC,
                "campaign_id": OTHER,
                "status": "CampaignAborted",
            },
        ]
    )
    sim, api = await running(scn, http, clock)
    try:
        tokens = await api.tokens()
        clock.set(19)
        ok = (await api.campaign(tokens))[0]
        clock.set(30)
        expired = (await api.campaign(tokens))[1]["errorCode"]
        _, body, _ = await api.campaign(await api.tokens(), campaign_id=OTHER)
        changes = sim.stats()["status_changes"]
    finally:
        await sim.stop()
    assert (ok, expired, body["status"]) == (
        200,
        "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired",
        "CampaignAborted",
    )
    assert {
        "account": ACC,
        "campaign_id": OTHER,
        "from": "CampaignScheduled",
        "to": "CampaignAborted",
        "at": 25.0,
    } in changes


# faults ------------------------------------------------------------------------------------


async def faulted(
    http: aiohttp.ClientSession, faults: list[dict[str, Any]], clock: ManualClock | None = None
) -> tuple[Simulator, Api, tuple[str, str]]:
    sim, api = await running(scenario(), http, clock)
    tokens = await api.tokens()
    sim.set_faults(faults)
    return sim, api, tokens


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        ({"kind": "http_error", "status": 503}, 503, "application/json"),
        ({"kind": "http_error", "status": 500}, 500, "application/json"),
        ({"kind": "html"}, 502, "text/html"),
        ({"kind": "rate_limit", "retry_after": 7}, 429, "application/json"),
    ],
)
async def test_error_faults_answer_as_configured(
    http: aiohttp.ClientSession, fault: dict[str, Any], status: int, content_type: str
) -> None:
    """http_error, html and rate_limit give their status and body type, then calls are normal."""
    sim, api, tokens = await faulted(http, [{**fault, "count": 1}])
    try:
        got, body, headers = await api.campaign(tokens, raw=True)
        normal = (await api.campaign(tokens))[0]
        injected = sim.stats()["faults_injected"]
    finally:
        await sim.stop()
    assert (got, headers["Content-Type"].split(";")[0], normal) == (status, content_type, 200)
    assert injected == {fault["kind"]: 1}
    if fault["kind"] == "rate_limit":
        assert headers["Retry-After"] == "7"
    if content_type == "application/json":
        assert isinstance(json.loads(body), dict)


async def test_truncated_json_cuts_the_body_in_half(http: aiohttp.ClientSession) -> None:
    """A truncated_json fault sends 200 with half of the normal JSON body."""
    sim, api, tokens = await faulted(http, [{"kind": "truncated_json", "count": 1}])
    try:
        status, body, _ = await api.campaign(tokens, raw=True)
        _, full, _ = await api.campaign(tokens, raw=True)
    finally:
        await sim.stop()
    assert status == 200
    assert full.startswith(body)
    assert len(body) == len(full) // 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


async def test_latency_fault_delays_the_normal_answer(http: aiohttp.ClientSession) -> None:
    """A latency fault answers normally after its delay."""
    sim, api, tokens = await faulted(http, [{"kind": "latency", "seconds": 0.2}])
    try:
        started = time.monotonic()
        status = (await api.campaign(tokens))[0]
        elapsed = time.monotonic() - started
    finally:
        await sim.stop()
    assert status == 200
    assert elapsed >= 0.2


async def test_hang_fault_outlasts_the_client_timeout_and_stop_cuts_it_short(
    http: aiohttp.ClientSession,
) -> None:
    """A hang makes the client time out; stopping the simulator does not wait for it."""
    sim, api, tokens = await faulted(http, [{"kind": "hang", "seconds": 60}])
    try:
        with pytest.raises(TimeoutError):
            await api.campaign(tokens, timeout=aiohttp.ClientTimeout(total=0.2))
    finally:
        started = time.monotonic()
        await sim.stop()
    assert time.monotonic() - started < 5


async def test_reset_fault_drops_the_connection(http: aiohttp.ClientSession) -> None:
    """A reset fault closes the connection without any response."""
    sim, api, tokens = await faulted(http, [{"kind": "reset"}])
    try:
        with pytest.raises(aiohttp.ClientConnectionError):
            await api.campaign(tokens)
    finally:
        await sim.stop()


async def test_faults_respect_window_match_count_and_probability(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """A fault fires in its window, on its endpoints, up to count times, never at probability 0."""
    faults = [
        {"kind": "http_error", "probability": 0},
        {"kind": "http_error", "status": 502, "match": "devices"},
        {
            "kind": "http_error",
            "status": 504,
            "match": "campaign",
            "start": 10,
            "end": 20,
            "count": 2,
        },
    ]
    sim, api, tokens = await faulted(http, faults, clock)
    try:
        statuses = [(await api.campaign(tokens))[0]]
        clock.set(10)
        statuses += [(await api.campaign(tokens))[0] for _ in range(3)]
        clock.set(20)
        statuses.append((await api.campaign(tokens))[0])
        devices = (await api.fota(f"/reports/{ACC}/campaigns/{CID}/devices", tokens))[0]
    finally:
        await sim.stop()
    assert statuses == [200, 504, 504, 200, 200]
    assert devices == 502


async def test_probability_uses_the_seeded_rng(http: aiohttp.ClientSession) -> None:
    """With the same seed the same requests get the same faults."""
    outcomes = []
    for _ in range(2):
        sim, api, tokens = await faulted(http, [{"kind": "http_error", "probability": 0.5}])
        try:
            outcomes.append([(await api.campaign(tokens))[0] for _ in range(12)])
        finally:
            await sim.stop()
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {200, 503}


async def test_oauth_faults_do_not_touch_fota_calls(http: aiohttp.ClientSession) -> None:
    """A fault matched to oauth hits the token endpoint only."""
    sim, api, tokens = await faulted(http, [{"kind": "http_error", "match": "oauth"}])
    try:
        oauth = (await api.oauth())[0]
        fota = (await api.campaign(tokens))[0]
    finally:
        await sim.stop()
    assert (oauth, fota) == (503, 200)


async def test_max_in_flight_and_request_times(http: aiohttp.ClientSession) -> None:
    """Concurrent FOTA requests are counted in max_in_flight and stamped in request_times."""
    sim, api, tokens = await faulted(http, [{"kind": "latency", "seconds": 0.3}])
    try:
        await asyncio.gather(*(api.campaign(tokens) for _ in range(5)))
        stats = sim.stats()
    finally:
        await sim.stop()
    assert (stats["max_in_flight"], stats["in_flight"]) == (5, 0)
    assert len(stats["request_times"]) == 5
    assert stats["campaign_requests"] == 5
    assert stats["campaign_requests_by_campaign"] == {f"{ACC}/{CID}": 5}


# device reports ----------------------------------------------------------------------------


async def test_device_pages_cover_every_device_once(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """2,500 devices come in pages of 1000, 1000 and 500, ascending, with the planned shares."""
    devices = {
        "count": 2500,
        "first_imei": "350000000000000",
        "progress": [
            {"at": 0, "UpgradePending": 1.0},
            {"at": 10, "UpgradeSuccess": 0.6, "UpgradePending": 0.3, "UpgradeFailed": 0.1},
        ],
    }
    sim, api = await running(scenario(campaigns=[{"id": CID, "devices": devices}]), http, clock)
    try:
        tokens = await api.tokens()
        clock.set(10)
        pages, cursor = [], "0"
        while True:
            _, page, _ = await api.fota(
                f"/reports/{ACC}/campaigns/{CID}/devices",
                tokens,
                params={"lastSeenDeviceId": cursor},
            )
            pages.append(page)
            if not page["hasMoreData"]:
                break
            cursor = page["lastSeenDeviceId"]
    finally:
        await sim.stop()
    ids = [d["deviceId"] for p in pages for d in p["deviceList"]]
    assert [len(p["deviceList"]) for p in pages] == [1000, 1000, 500]
    assert {p["totalDevice"] for p in pages} == {2500}
    assert pages[0]["maxPageSize"] == 1000
    assert ids == sorted(ids) == [f"{350000000000000 + i:015d}" for i in range(2500)]
    statuses = Counter(d["status"] for p in pages for d in p["deviceList"])
    assert statuses == {"UpgradeSuccess": 1500, "UpgradePending": 750, "UpgradeFailed": 250}
    assert pages[0]["deviceList"][0]["updatedTime"].endswith("Z")


async def test_repeat_cursor_never_advances(http: aiohttp.ClientSession) -> None:
    """With repeat_cursor the device report repeats its cursor forever with hasMoreData true."""
    scn = scenario(campaigns=[{"id": CID, "repeat_cursor": True, "devices": {"count": 1500}}])
    sim, api = await running(scn, http)
    try:
        tokens = await api.tokens()
        path = f"/reports/{ACC}/campaigns/{CID}/devices"
        _, first, _ = await api.fota(path, tokens, params={"lastSeenDeviceId": "0"})
        _, second, _ = await api.fota(
            path, tokens, params={"lastSeenDeviceId": first["lastSeenDeviceId"]}
        )
    finally:
        await sim.stop()
    assert first["hasMoreData"] is second["hasMoreData"] is True
    assert first["lastSeenDeviceId"] == second["lastSeenDeviceId"]


async def test_device_report_of_a_campaign_without_devices_is_empty(api: Api) -> None:
    """A campaign without a device plan reports zero devices; a bad cursor is INVALID_PARAMETER."""
    tokens = await api.tokens()
    _, body, _ = await api.fota(
        f"/reports/{ACC}/campaigns/{CID}/devices", tokens, params={"lastSeenDeviceId": "0"}
    )
    status, bad, _ = await api.fota(
        f"/reports/{ACC}/campaigns/{CID}/devices", tokens, params={"lastSeenDeviceId": "x"}
    )
    assert (body["totalDevice"], body["hasMoreData"], body["deviceList"]) == (0, False, [])
    assert (status, bad["errorCode"]) == (400, "INVALID_PARAMETER")


# campaign history --------------------------------------------------------------------------


async def history(
    api: Api, tokens: tuple[str, str], path: str, status: str
) -> list[dict[str, Any]]:
    pages, cursor = [], "0"
    while True:
        code, page, _ = await api.fota(
            path, tokens, params={"campaignStatus": status, "lastSeenCampaignId": cursor}
        )
        assert code == 200
        pages.append(page)
        if not page["hasMoreData"]:
            return pages
        cursor = page["lastSeenCampaignId"]


@pytest.mark.parametrize(
    "path", [f"/reports/{ACC}/campaigns", f"/reports/{ACC}/firmware/campaigns"]
)
async def test_history_pages_through_campaigns_of_a_status(
    http: aiohttp.ClientSession, path: str
) -> None:
    """Both history paths page by lastSeenCampaignId through one status's campaigns, by id."""
    scn = Scenario.from_dict(
        {
            "accounts": [ACC],
            "history_page_size": 4,
            "generate": [
                {"count": 10, "status": "CampaignScheduled"},
                {"count": 3, "start_index": 10, "status": "CampaignEnded"},
            ],
        }
    )
    sim, api = await running(scn, http)
    try:
        pages = await history(api, await api.tokens(), path, "CampaignScheduled")
    finally:
        await sim.stop()
    ids = [c["id"] for p in pages for c in p["campaignList"]]
    assert [len(p["campaignList"]) for p in pages] == [4, 4, 2]
    assert ids == sorted(generated_id(ACC, i) for i in range(10))
    assert {c["status"] for p in pages for c in p["campaignList"]} == {"CampaignScheduled"}
    assert "autoAssignLicenseFlag" not in pages[0]["campaignList"][0]


@pytest.mark.parametrize(
    ("history_path", "wrong"), [("docs", "/firmware/campaigns"), ("sdk", "/campaigns")]
)
async def test_the_other_history_path_is_no_matching_resource(
    http: aiohttp.ClientSession, history_path: str, wrong: str
) -> None:
    """With history_path docs or sdk the other path answers 400 fault 900906."""
    sim, api = await running(scenario(history_path=history_path), http)
    try:
        tokens = await api.tokens()
        status, body, _ = await api.fota(
            f"/reports/{ACC}{wrong}", tokens, params={"campaignStatus": "CampaignScheduled"}
        )
        right = "/campaigns" if history_path == "docs" else "/firmware/campaigns"
        ok, page, _ = await api.fota(
            f"/reports/{ACC}{right}", tokens, params={"campaignStatus": "CampaignScheduled"}
        )
    finally:
        await sim.stop()
    assert (status, body["fault"]["code"]) == (400, "900906")
    assert (ok, [c["id"] for c in page["campaignList"]]) == (200, [OTHER])


async def test_generated_campaigns_are_served_by_id(http: aiohttp.ClientSession) -> None:
    """generate makes 10,000 campaigns with deterministic ids, each served by a dict lookup."""
    scn = Scenario.from_dict(
        {"generate": {"count": 10_000, "account": ACC, "status": "CampaignScheduled"}}
    )
    sim, api = await running(scn, http)
    try:
        tokens = await api.tokens()
        status, body, _ = await api.campaign(tokens, campaign_id=generated_id(ACC, 9_999))
    finally:
        await sim.stop()
    assert (status, body["status"], body["campaignName"]) == (
        200,
        "CampaignScheduled",
        "Generated campaign #9999",
    )
    assert len(scn.campaigns) == 10_000


# admin endpoints ---------------------------------------------------------------------------


async def test_admin_endpoints_control_the_simulator(api: Api) -> None:
    """/_sim/ endpoints set statuses, add and remove campaigns, manage faults, report stats."""
    tokens = await api.tokens()
    new_id = str(uuid.uuid4())
    assert (
        await api.call(
            "POST", f"/_sim/campaigns/{ACC}/{CID}/status", json={"status": "CampaignEnded"}
        )
    )[0] == 200
    assert (
        await api.call(
            "POST", "/_sim/campaigns", json={"id": new_id, "status": "CampaignScheduled"}
        )
    )[0] == 201
    assert (await api.campaign(tokens))[1]["status"] == "CampaignEnded"
    assert (await api.campaign(tokens, campaign_id=new_id))[1]["status"] == "CampaignScheduled"
    assert (await api.call("DELETE", f"/_sim/campaigns/{ACC}/{new_id}"))[0] == 200
    assert (await api.campaign(tokens, campaign_id=new_id))[0] == 404
    assert (await api.call("PUT", "/_sim/faults", json=[{"kind": "http_error", "status": 502}]))[
        0
    ] == 200
    assert (await api.campaign(tokens))[0] == 502
    assert (await api.call("DELETE", "/_sim/faults"))[0] == 200
    assert (await api.campaign(tokens))[0] == 200
    _, stats, _ = await api.call("GET", "/_sim/stats")
    assert stats["faults_injected"] == {"http_error": 1}
    assert stats["status_changes"][0]["to"] == "CampaignEnded"


async def test_admin_session_and_credential_endpoints(api: Api) -> None:
    """expire-sessions, revoke-tokens, credentials and unlock act as their in-process twins."""
    bearer, session = await api.tokens()
    await api.call("POST", "/_sim/expire-sessions")
    assert (await api.campaign((bearer, session)))[1]["errorCode"].endswith("SessionToken.Expired")
    await api.call("POST", "/_sim/revoke-tokens")
    assert (await api.login(bearer))[1]["fault"]["code"] == "900901"
    await api.call("PUT", "/_sim/credentials", json={"password": "rotated"})
    bearer = await api.bearer()
    assert (await api.login(bearer))[0] == 401
    assert (await api.login(bearer, {"username": "sim-user", "password": "rotated"}))[0] == 200
    await api.call("POST", "/_sim/unlock")
    assert (await api.call("GET", "/_sim/stats"))[1]["consecutive_login_failures"] == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", f"/_sim/campaigns/{ACC}/nope/status", {"status": "X"}, 404),
        ("POST", f"/_sim/campaigns/{ACC}/{CID}/status", {}, 400),
        ("POST", "/_sim/campaigns", {"id": CID}, 400),
        ("POST", "/_sim/campaigns", {"id": "x", "colour": "red"}, 400),
        ("DELETE", f"/_sim/campaigns/{ACC}/nope", None, 404),
        ("PUT", "/_sim/faults", [{"kind": "meteor"}], 400),
        ("PUT", "/_sim/credentials", {"token": "x"}, 400),
    ],
)
async def test_admin_endpoints_refuse_bad_input(
    api: Api, method: str, path: str, body: Any, status: int
) -> None:
    """Unknown campaigns are 404 and invalid bodies 400 with an error message."""
    got, answer, _ = await api.call(method, path, json=body)
    assert (got, isinstance(answer.get("error"), str)) == (status, True)


# scenarios ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"campaigns": [{"id": "x", "account": "a", "timline": []}]}, "campaigns[0].timline"),
        (
            {
                "campaigns": [
                    {"id": "x", "account": "a", "timeline": [{"at": "soon", "status": "X"}]}
                ]
            },
            "campaigns[0].timeline[0].at",
        ),
        (
            {"campaigns": [{"id": "x", "account": "a", "bool_style": "yaml"}]},
            "campaigns[0].bool_style",
        ),
        ({"faults": [{"kind": "meteor"}]}, "faults[0].kind"),
        ({"faults": [{"kind": "http_error", "status": 418}]}, "faults[0].status"),
        ({"events": [{"at": 1, "action": "explode"}]}, "events[0].action"),
        ({"latency": {"min": 0.05, "max": 0.02}}, "latency.max"),
        ({"history_path": "both-ish"}, "history_path"),
        ({"generate": {"account": "a"}}, "generate.count"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_scenarios_name_the_bad_key(data: dict[str, Any], key: str) -> None:
    """A bad scenario raises ValueError whose message starts with the key path."""
    with pytest.raises(ValueError, match=re.escape(key) + ":"):
        Scenario.from_dict(data)


def test_demo_scenario_tells_its_story() -> None:
    """The demo has campaigns A-E, an outage from t=15 to 19 and a session expiry at t=20."""
    demo = Scenario.demo()
    names = [c.name for c in demo.campaigns]
    assert names == [
        "GM01Q rollout",
        "HX330 modem fix",
        "Tracker fleet",
        "Legacy meters",
        "Fleet telematics GM02S",
    ]
    assert {c.account for c in demo.campaigns} == {ACC}
    assert [(f.kind, f.start, f.end) for f in demo.faults] == [
        ("html", 17, 18),
        ("http_error", 15, 19),
    ]
    assert [(e.at, e.action) for e in demo.events] == [(20, "expire_sessions")]
    assert "CampaignPaused" in [s.status for s in demo.campaigns[3].timeline]


async def test_demo_scenario_over_http(http: aiohttp.ClientSession, clock: ManualClock) -> None:
    """Polled through the demo: an outage at 15-19 (HTML at 17), sessions expire at 20, all end."""
    sim, api = await running(Scenario.demo(), http, clock)
    ids = [c.campaign_id for c in sim.scenario.campaigns]
    try:
        tokens = await api.tokens()
        outage = []
        for now in (16, 17.5):
            clock.set(now)
            outage.append((await api.campaign(tokens, campaign_id=ids[0], raw=True))[0])
        clock.set(30)
        expired = (await api.campaign(tokens, campaign_id=ids[0]))[1]["errorCode"]
        tokens = await api.tokens()
        statuses = [(await api.campaign(tokens, campaign_id=i))[1]["status"] for i in ids]
        changes = sim.stats()["status_changes"]
    finally:
        await sim.stop()
    assert outage == [503, 502]
    assert expired.endswith("SessionToken.Expired")
    assert statuses == [
        "CampaignEnded",
        "CampaignFailed",
        "CampaignAborted",
        "CampaignScheduled",
        "CampaignScheduled",
    ]
    assert ("CampaignRequestPending", "CampaignPaused") in [(c["from"], c["to"]) for c in changes]


def test_scenario_from_file_and_yaml_agree(tmp_path: Path) -> None:
    """from_file reads the same scenario from_yaml parses."""
    text = yaml.safe_dump(
        {"accounts": [ACC], "campaigns": [{"id": CID, "status": "CampaignEnded"}]}
    )
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert Scenario.from_file(path).campaigns == Scenario.from_yaml(text).campaigns


# subprocess --------------------------------------------------------------------------------


async def test_runs_as_a_process_and_exits_0_on_sigterm(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """python -m fotawatch.simulator prints its URL, serves the scenario and exits 0 on SIGTERM."""
    path = tmp_path / "scenario.yaml"
    path.write_text(
        yaml.safe_dump({"accounts": [ACC], "campaigns": [{"id": CID, "status": "CampaignEnded"}]})
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fotawatch.simulator",
        "--port",
        "0",
        "--scenario",
        str(path),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.fullmatch(r"simulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match is not None, line
        api = Api(http, match.group(1))
        status, body, _ = await api.campaign(await api.tokens())
        assert (status, body["status"]) == (200, "CampaignEnded")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
