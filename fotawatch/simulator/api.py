"""The simulated ThingSpace endpoints (aiohttp handlers) and fault injection into their answers.

Every API request passes one guard: count it, pick faults, add base latency (FOTA requests only),
then either the fault's answer or the endpoint's. FOTA endpoints check the Bearer token (401
gateway fault) and then the VZ-M2M-Token (400 ``errorCode``), in that order. Delays use real time
and end early when the simulator stops; everything else reads the sim clock. No per-request logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web

from fotawatch.simulator.auth import BearerRefusal, LoginRefusal, OAuthRefusal, SessionRefusal
from fotawatch.simulator.book import CampaignRecord
from fotawatch.simulator.devices import device_page
from fotawatch.simulator.faults import FOTA_ENDPOINTS
from fotawatch.simulator.scenario import FaultSpec
from fotawatch.simulator.state import SimState
from fotawatch.simulator.wire import (
    HTML_ERROR_PAGE,
    dumps,
    error_code,
    gateway_fault,
    history_body,
    oauth_error,
)

__all__ = ["FOTA_BASE", "ThingSpaceApi", "json_response"]

FOTA_BASE = "/api/fota/v3"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Endpoint = Callable[[web.Request, float], Awaitable[web.Response]]
_SERVICE = "UnifiedWebService."
_DEFAULT_SCOPE = "discovery:read ts.application.ro"
_OAUTH_MESSAGES = {
    OAuthRefusal.MISSING_GRANT: (400, "Missing grant_type parameter value"),
    OAuthRefusal.BAD_GRANT: (400, "Unsupported grant_type value"),
    OAuthRefusal.BAD_CLIENT: (401, "Client authentication failed"),
}
_BEARER_MESSAGES = {
    BearerRefusal.INVALID: (
        "Invalid Credentials",
        "Invalid Credentials. Make sure you have provided the correct security credentials",
    ),
    BearerRefusal.MISSING: (
        "Missing Credentials",
        (
            "Required OAuth credentials not provided. Make sure your API invocation call has a "
            "header: 'Authorization: Bearer ACCESS_TOKEN'"
        ),
    ),
}
_LOGIN_MESSAGES = {
    LoginRefusal.BAD_BODY: (400, "The login request body is not valid."),
    LoginRefusal.FAILED: (401, "Invalid username or password"),
    LoginRefusal.LOCKED: (401, "The user is locked. Contact Verizon Support to unlock it."),
}
_SESSION_MESSAGES = {
    SessionRefusal.FORMAT: "The VZ-M2M-Token header is missing.",
    SessionRefusal.INVALID: "The session token is not valid.",
    SessionRefusal.EXPIRED: "The Session has expired.",
}


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(body), status=status, content_type="application/json", headers=headers
    )


def _invalid_parameter(message: str) -> web.Response:
    return json_response(error_code("INVALID_PARAMETER", message), 400)


def _no_resource() -> web.Response:
    fault = gateway_fault(
        "900906",
        "No matching resource found",
        "No matching resource found in the API for the given request",
    )
    return json_response(fault, 400)


class ThingSpaceApi:
    """Handlers for the OAuth, session and FOTA v3 endpoints over one ``SimState``."""

    def __init__(self, state: SimState, stopping: asyncio.Event) -> None:
        self._state = state
        self._stopping = stopping

    def routes(self) -> list[web.RouteDef]:
        reports = f"{FOTA_BASE}/reports/{{account}}"
        return [
            web.post("/api/ts/v1/oauth2/token", self._guard("oauth", self._oauth)),
            web.post("/api/m2m/v1/session/login", self._guard("login", self._login)),
            web.get(
                f"{FOTA_BASE}/campaigns/{{account}}/{{campaign_id}}",
                self._guard("campaign", self._campaign),
            ),
            web.get(
                f"{reports}/campaigns/{{campaign_id}}/devices",
                self._guard("devices", self._devices),
            ),
            web.get(
                f"{reports}/campaigns",
                self._guard("history", functools.partial(self._history, "docs")),
            ),
            web.get(
                f"{reports}/firmware/campaigns",
                self._guard("history", functools.partial(self._history, "sdk")),
            ),
            web.route("*", "/api/{tail:.*}", self._unmatched),
        ]

    # the guard ----------------------------------------------------------------------------

    def _guard(self, endpoint: str, handler: Endpoint) -> Handler:
        fota = endpoint in FOTA_ENDPOINTS
        counters = self._state.counters

        async def guarded(request: web.Request) -> web.StreamResponse:
            counters.arrived(endpoint, request.match_info)
            if not fota:
                return await self._answer(endpoint, handler, request, fota=False)
            counters.fota_started()
            try:
                return await self._answer(endpoint, handler, request, fota=True)
            finally:
                counters.in_flight -= 1

        return guarded

    async def _answer(
        self, endpoint: str, handler: Endpoint, request: web.Request, *, fota: bool
    ) -> web.StreamResponse:
        state = self._state
        delay, fault = state.faults.pick(endpoint, state.now())
        if fota:
            delay += state.base_latency()
        if delay > 0:
            await self._pause(delay)
        if fault is None:
            return await handler(request, state.now())
        return await self._inject(fault, handler, request)

    async def _inject(
        self, fault: FaultSpec, handler: Endpoint, request: web.Request
    ) -> web.StreamResponse:
        if fault.kind == "hang":
            await self._pause(fault.seconds)
            return await handler(request, self._state.now())
        if fault.kind == "truncated_json":
            return _truncated(await handler(request, self._state.now()))
        if fault.kind == "reset":
            return _reset(request)
        if fault.kind == "rate_limit":
            fault_body = gateway_fault(
                "900800", "Message throttled out", "You have exceeded your quota"
            )
            return json_response(fault_body, 429, {"Retry-After": str(fault.retry_after)})
        if fault.kind == "html":
            return web.Response(text=HTML_ERROR_PAGE, status=fault.status, content_type="text/html")
        message = HTTPStatus(fault.status).phrase
        return json_response(error_code("INTERNAL_ERROR", message), fault.status)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` of real time, or less if the simulator is stopping."""
        if self._stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    # auth ---------------------------------------------------------------------------------

    async def _oauth(self, request: web.Request, now: float) -> web.Response:
        form = await request.post()
        grant = form.get("grant_type")
        grant_type = grant if isinstance(grant, str) else None
        result = self._state.auth.issue_token(request.headers.get("Authorization"), grant_type, now)
        if isinstance(result, OAuthRefusal):
            status, message = _OAUTH_MESSAGES[result]
            return json_response(oauth_error(result.value, message), status)
        token, expires_in = result
        scope = form.get("scope")
        return json_response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": expires_in,
                "scope": scope if isinstance(scope, str) and scope else _DEFAULT_SCOPE,
            }
        )

    async def _login(self, request: web.Request, now: float) -> web.Response:
        refusal = self._check_bearer(request, now)
        if refusal is not None:
            return refusal
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _login_refusal(LoginRefusal.BAD_BODY)
        result = self._state.auth.login(body.get("username"), body.get("password"), now)
        if isinstance(result, LoginRefusal):
            return _login_refusal(result)
        return json_response({"sessionToken": result})

    def _check_bearer(self, request: web.Request, now: float) -> web.Response | None:
        refusal = self._state.auth.check_bearer(request.headers.get("Authorization"), now)
        if refusal is None:
            return None
        self._state.counters.rejections[refusal.value] += 1
        message, description = _BEARER_MESSAGES[refusal]
        return json_response(gateway_fault(refusal.value, message, description), 401)

    def _authorize(self, request: web.Request, now: float) -> web.Response | None:
        """None when both tokens are good, else the gateway's or the service's refusal."""
        refused = self._check_bearer(request, now)
        if refused is not None:
            return refused
        refusal = self._state.auth.check_session(request.headers.get("VZ-M2M-Token"), now)
        if refusal is None:
            return None
        self._state.counters.rejections[refusal.value] += 1
        return json_response(error_code(_SERVICE + refusal.value, _SESSION_MESSAGES[refusal]), 400)

    # FOTA ---------------------------------------------------------------------------------

    def _fota_preamble(self, request: web.Request, now: float) -> web.Response | None:
        refused = self._authorize(request, now)
        if refused is not None:
            return refused
        if not self._state.account_known(request.match_info["account"]):
            return _invalid_parameter("Invalid account name")
        return None

    def _find(self, request: web.Request, now: float) -> tuple[CampaignRecord, str] | web.Response:
        """Authorise, then find the addressed campaign and its status (or the refusal)."""
        refused = self._fota_preamble(request, now)
        return refused if refused is not None else self._lookup(request, now)

    def _lookup(
        self, request: web.Request, now: float
    ) -> tuple[CampaignRecord, str] | web.Response:
        """(record, scenario status) of the addressed campaign, or the 'not found' answer."""
        info = request.match_info
        record = self._state.book.get(info["account"], info["campaign_id"])
        status = record.status_at(now) if record is not None else None
        if record is None or status is None:
            if self._state.scenario.missing_response == 400:
                return _invalid_parameter("Invalid uuid")
            return json_response(error_code("NOT_FOUND", "Campaign not found"), 404)
        return record, status

    async def _campaign(self, request: web.Request, now: float) -> web.Response:
        found = self._find(request, now)
        if isinstance(found, web.Response):
            return found
        record, status = found
        return json_response(record.body(status))

    async def _devices(self, request: web.Request, now: float) -> web.Response:
        found = self._find(request, now)
        if isinstance(found, web.Response):
            return found
        cursor = request.query.get("lastSeenDeviceId", "0") or "0"
        if not cursor.isdigit():
            return _invalid_parameter("LastSeenDeviceId Not Valid")
        spec = found[0].spec
        page = device_page(
            spec.devices,
            now=now,
            after=int(cursor),
            size=self._state.scenario.page_size,
            repeat=spec.repeat_cursor,
            origin=self._state.origin,
        )
        return json_response(page)

    async def _history(self, variant: str, request: web.Request, now: float) -> web.Response:
        state = self._state
        if state.scenario.history_path not in {variant, "both"}:
            return _no_resource()
        refused = self._fota_preamble(request, now)
        if refused is not None:
            return refused
        status = request.query.get("campaignStatus")
        if not status:
            return _invalid_parameter("campaignStatus is required")
        after = request.query.get("lastSeenCampaignId", "0")
        page, more = state.book.history(
            request.match_info["account"], status, after, state.scenario.history_page_size, now
        )
        return json_response(history_body(page, has_more=more))

    async def _unmatched(self, _request: web.Request) -> web.Response:
        return _no_resource()


def _login_refusal(refusal: LoginRefusal) -> web.Response:
    status, message = _LOGIN_MESSAGES[refusal]
    return json_response(error_code(_SERVICE + refusal.value, message), status)


async def _json_body(request: web.Request) -> object:
    try:
        return await request.json()
    except ValueError:
        return None


def _truncated(response: web.Response) -> web.Response:
    body = response.body if isinstance(response.body, bytes) else b"{}"
    return web.Response(
        body=body[: len(body) // 2], status=response.status, content_type="application/json"
    )


def _reset(request: web.Request) -> web.Response:
    """Drop the connection without an answer (the returned response is never sent)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)
