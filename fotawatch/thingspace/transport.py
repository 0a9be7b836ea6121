"""The one place where bytes go to ThingSpace and come back.

Every request (token, login, FOTA) passes through ``Transport.send``: request pacing, the global
concurrency bound, the timeout, a cap on the body size, and the translation of aiohttp's
exceptions and non-2xx answers into the ``ApiError`` tree. Nothing above this layer sees aiohttp
exceptions; nothing here knows about tokens or retries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from fotawatch.errors import InvalidResponseError, TransportError
from fotawatch.thingspace import wire
from fotawatch.thingspace.limiter import RateLimiter

__all__ = ["MAX_BODY_BYTES", "Response", "Transport"]

MAX_BODY_BYTES = 2 * 1024 * 1024  # a campaign is ~1 kB and a 1,000-device page ~200 kB


@dataclass(frozen=True, slots=True)
class Response:
    """A 2xx answer."""

    status: int
    body: bytes


class Transport:
    """Paced, bounded, timed HTTP to one ThingSpace base URL over a shared session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        timeout: float,
        limiter: RateLimiter,
        max_concurrency: int,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.limiter = limiter
        self._slots = asyncio.Semaphore(max_concurrency)

    async def send(  # noqa: PLR0913 - keyword-only request parts
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> Response:
        """Send one request; return the 2xx response or raise an ``ApiError``."""
        async with self._slots:
            await self.limiter.acquire()
            try:
                async with self._session.request(
                    method,
                    self._base_url + path,
                    headers=headers,
                    params=params,
                    data=data,
                    json=json_body,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as resp:
                    body = await _read_capped(resp)
                    status = resp.status
                    # Headers matter only for errors (Retry-After): copy them only then.
                    resp_headers = dict(resp.headers) if status >= 300 else {}
            except TimeoutError as err:
                raise TransportError(f"{method} {_route(path)}: timed out", timeout=True) from err
            except aiohttp.ClientError as err:
                kind = type(err).__name__
                msg = f"{method} {_route(path)}: {kind}"
                raise TransportError(msg, timeout=False) from err
        if 200 <= status < 300:
            return Response(status=status, body=body)
        raise wire.parse_error(status, body, resp_headers, now=dt.datetime.now(dt.UTC))


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    length = resp.content_length
    if length is not None and length <= MAX_BODY_BYTES:
        return await resp.read()  # the common case: one read, no chunk list
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InvalidResponseError(f"HTTP {resp.status}: body larger than {MAX_BODY_BYTES}")
        chunks.append(chunk)
    return b"".join(chunks)


def _route(path: str) -> str:
    """The path without its ids, for messages: /api/fota/v3/campaigns/{account}/{id}."""
    parts = path.split("?", 1)[0].split("/")
    if len(parts) > 4 and parts[1:4] == ["api", "fota", "v3"]:
        return "/".join([*parts[:5], *("…" for _ in parts[5:])])
    return "/".join(parts)
