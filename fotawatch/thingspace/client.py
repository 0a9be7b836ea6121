"""The FOTA v3 client: authenticated requests with bounded retries.

``_request`` is the choke point every FOTA call goes through:
1. take the current (bearer, session) pair from ``ThingSpaceAuth``;
2. send; on a bearer fault renew the bearer, on a session error log in again, each at most once
   per request (renewals are single-flight across concurrent requests);
3. on a retryable failure (timeout, connection error, 429, 5xx) wait and try again, at most
   ``attempts`` times: exponential backoff with jitter, or the API's ``Retry-After`` (which also
   holds the rate limiter, so every campaign backs off, not only this one). A Retry-After longer
   than ``retry_after_max`` ends the attempt at once: the next scheduled poll tries again.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import quote

from fotawatch.errors import (
    ApiError,
    AuthError,
    LoginCircuitOpenError,
    LoginRejectedError,
    RateLimitedError,
)
from fotawatch.model import Campaign, CampaignKey
from fotawatch.thingspace import wire
from fotawatch.thingspace.auth import ThingSpaceAuth
from fotawatch.thingspace.transport import Transport

__all__ = ["HISTORY_PATHS", "HistoryPath", "RetryPolicy", "ThingSpaceClient"]

_FOTA = "/api/fota/v3"
HistoryPath = Literal["docs", "sdk"]
# The campaigns-by-status report lives at one of two paths (reference §7 item 4).
HISTORY_PATHS: Final[dict[HistoryPath, str]] = {
    "docs": "/reports/{account}/campaigns",
    "sdk": "/reports/{account}/firmware/campaigns",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How hard one call tries before it counts as failed."""

    attempts: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 120.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Equal-jitter exponential backoff before try ``attempt + 1``."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2.0 ** (attempt - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@functools.lru_cache(maxsize=65536)
def _campaign_path(account: str, campaign_id: str) -> str:
    """``/campaigns/{account}/{id}``, quoted once per campaign rather than on every poll."""
    return f"{_FOTA}/campaigns/{quote(account, safe='')}/{quote(campaign_id, safe='')}"


class ThingSpaceClient:
    """FOTA v3 calls over one shared transport and auth."""

    def __init__(
        self,
        transport: Transport,
        auth: ThingSpaceAuth,
        retry: RetryPolicy,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.transport = transport
        self.auth = auth
        self._retry = retry
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        # Per campaign, a digest of the last body read and what it parsed to. A watched
        # campaign's body rarely changes between polls, and hashing it (~1 µs for ~0.5 kB)
        # costs far less than decoding and validating it again (~12 µs). 128-bit BLAKE2b: no
        # two bodies will share a digest by chance; ~0.25 kB per campaign, where keeping the
        # bodies themselves took ~0.7 kB.
        self._last_read: dict[tuple[str, str], tuple[bytes, Campaign]] = {}

    async def get_campaign(self, account: str, campaign_id: str) -> Campaign:
        """``GET /campaigns/{accountName}/{campaignId}``, parsed."""
        body = await self._request("GET", _campaign_path(account, campaign_id))
        digest = hashlib.blake2b(body, digest_size=16).digest()
        last = self._last_read.get((account, campaign_id))
        if last is not None and last[0] == digest:
            return last[1]  # the same bytes as last time: the same (immutable) campaign
        campaign = wire.parse_campaign(body, account=account, campaign_id=campaign_id)
        self._last_read[account, campaign_id] = (digest, campaign)
        return campaign

    def retain(self, keys: Collection[CampaignKey]) -> None:
        """Forget the last reads of campaigns no longer watched (config reload, discovery)."""
        wanted = {(k.account, k.campaign_id) for k in keys}
        self._last_read = {k: v for k, v in self._last_read.items() if k in wanted}

    async def get_device_page(
        self, account: str, campaign_id: str, last_seen_device_id: str = "0"
    ) -> wire.DevicePage:
        """``GET /reports/{acc}/campaigns/{id}/devices?lastSeenDeviceId=``: one page, parsed."""
        path = (
            f"{_FOTA}/reports/{quote(account, safe='')}/campaigns/"
            f"{quote(campaign_id, safe='')}/devices"
        )
        body = await self._request("GET", path, {"lastSeenDeviceId": last_seen_device_id})
        return wire.parse_device_page(body)

    async def get_campaign_history(
        self,
        account: str,
        status: str,
        last_seen_campaign_id: str = "0",
        *,
        variant: HistoryPath = "docs",
    ) -> wire.CampaignHistoryPage:
        """One page of the account's campaigns in ``status``, from the ``variant`` path."""
        path = _FOTA + HISTORY_PATHS[variant].format(account=quote(account, safe=""))
        params = {"campaignStatus": status, "lastSeenCampaignId": last_seen_campaign_id}
        body = await self._request("GET", path, params)
        return wire.parse_campaign_history(body, account=account)

    async def _request(
        self, method: str, path: str, params: Mapping[str, str] | None = None
    ) -> bytes:
        for attempt in range(1, self._retry.attempts + 1):
            try:
                return await self._authenticated(method, path, params)
            except ApiError as err:
                if not err.retryable or attempt == self._retry.attempts:
                    raise
                await self._sleep(self._delay(err, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, err: ApiError, attempt: int) -> float:
        if isinstance(err, RateLimitedError) and err.retry_after is not None:
            self.transport.limiter.hold(err.retry_after)
            if err.retry_after > self._retry.retry_after_max:
                raise err
            return err.retry_after
        return self._retry.backoff(attempt, self._rng)

    async def _authenticated(
        self, method: str, path: str, params: Mapping[str, str] | None
    ) -> bytes:
        renewed: set[bool] = set()  # which kinds were renewed: True = bearer, False = session
        while True:
            pair = await self.auth.tokens()
            headers = {
                "Authorization": f"Bearer {pair[0]}",
                "VZ-M2M-Token": pair[1],
                "Accept": "application/json",
                "Content-Type": "application/json",
            }
            try:
                return (
                    await self.transport.send(method, path, headers=headers, params=params)
                ).body
            except AuthError as err:
                if isinstance(err, LoginRejectedError | LoginCircuitOpenError):
                    raise
                kind = not wire.is_session_error(err)
                if kind in renewed:
                    raise
                renewed.add(kind)
                await self.auth.renew(err, pair)
