"""Senders: render a batch for one sink and POST it once, classifying the answer.

A sender makes exactly one HTTP request per ``send`` and never retries, sleeps or logs: the
outbox dispatcher decides what an answer means for the rows (``outbox.Dispatcher``). Answers:

=======================================  ==============  ========================================
answer                                   ``Outcome``     what the dispatcher does
=======================================  ==============  ========================================
Slack 200 (body ``ok``), webhook 2xx     DELIVERED       mark the rows delivered
429 (+ ``Retry-After``)                  RATE_LIMITED    hold the sink until Retry-After elapsed
5xx, 408, timeout, connection error      RETRY           back off; may double-post (see below)
any other status (400, 403, 404, 410..)  PERMANENT       mark failed with Slack's error string
=======================================  ==============  ========================================

Incoming webhooks are not idempotent: after a timeout or a 5xx Slack may have posted the message
already, so a retry can post it twice. ``SendResult.uncertain`` says when that can happen.

The URL is a secret (its path is the Slack credential): it never appears in a ``SendResult``.
For exceptions only the class name is kept, because aiohttp's messages carry host and port;
a response body is cut to a short, sanitised error string with the URL removed.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from fotawatch import __version__
from fotawatch.alerts.payloads import Payload
from fotawatch.alerts.render import render_slack_batch, render_webhook

__all__ = [
    "DEFAULT_TIMEOUT",
    "Outcome",
    "SendResult",
    "Sender",
    "SlackSender",
    "WebhookSender",
    "parse_retry_after",
]

DEFAULT_TIMEOUT = 10.0  # seconds for one whole request: a hanging sink cannot stall its dispatcher
_MAX_BODY = 4096  # bytes of an answer worth reading
_MAX_REASON = 100
_REASON_CHARS = re.compile(r"[^A-Za-z0-9_.:/ -]+")
_USER_AGENT = f"fotawatch/{__version__}"


class Outcome(StrEnum):
    """What one POST achieved."""

    DELIVERED = "delivered"
    RATE_LIMITED = "rate_limited"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """One POST's outcome. ``reason`` is safe to log: an error string, never the URL."""

    outcome: Outcome
    reason: str
    status: int | None = None
    retry_after: float | None = None  # seconds, from a 429's Retry-After header

    @property
    def uncertain(self) -> bool:
        """The sink may have accepted the message although we saw a failure (timeout, 5xx)."""
        if self.outcome is not Outcome.RETRY:
            return False
        return self.status is None or self.status >= 500

    def describe(self) -> str:
        """A short human sentence: "delivered", "HTTP 404 no_service", "timeout"."""
        if self.outcome is Outcome.DELIVERED:
            return "delivered"
        status = f"HTTP {self.status} " if self.status is not None else ""
        wait = f" (retry after {self.retry_after:g}s)" if self.retry_after is not None else ""
        return f"{status}{self.reason}{wait}"


class Sender(Protocol):
    """One alert destination: how a batch of payloads becomes one request, and the request."""

    @property
    def name(self) -> str:
        """The sink's name: ``slack`` or the webhook's configured name (the metrics label)."""
        ...

    def render(self, payloads: Sequence[Payload]) -> tuple[dict[str, Any], int]:
        """The body for the longest prefix of ``payloads`` one message carries in full, and
        that prefix's length (at least 1)."""
        ...

    async def send(self, body: Mapping[str, Any]) -> SendResult:
        """POST ``body`` once; never raises for HTTP or network trouble."""
        ...


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return max(0.0, (when - now).total_seconds())
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _secret_parts(url: str) -> tuple[str, ...]:
    """The URL and its secret-bearing parts (path, query, long path segments), longest first."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if len(s) >= 16]  # Slack's token: 24 chars
    candidates = {url, parts.path, parts.path.lstrip("/"), parts.query, *segments}
    return tuple(sorted((c for c in candidates if len(c) >= 8), key=len, reverse=True))


def _reason(text: str, status: int, secrets: Sequence[str]) -> str:
    """The answer body as a short error string: the URL removed, odd characters dropped."""
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    cleaned = " ".join(_REASON_CHARS.sub(" ", text).split())
    return cleaned[:_MAX_REASON] or f"http_{status}"


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    text: str
    retry_after: str | None


class _Poster:
    """The one HTTP choke point both senders share: timeout, body cap, error translation."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._session = session
        self._url = url
        self._secrets = _secret_parts(url)
        self._headers = {"User-Agent": _USER_AGENT, **(headers or {})}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def post(self, body: Mapping[str, Any]) -> _Answer | SendResult:
        """The answer, or a RETRY result for a timeout or connection error (class name only)."""
        try:
            async with self._session.post(
                self._url,
                json=dict(body),
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                raw = await response.content.read(_MAX_BODY)
                text = raw.decode("utf-8", "replace")
                return _Answer(response.status, text, response.headers.get("Retry-After"))
        except TimeoutError:
            return SendResult(outcome=Outcome.RETRY, reason="timeout")
        except aiohttp.ClientError as err:
            reason = f"connection_error {type(err).__name__}"  # the type: its text names the host
            return SendResult(outcome=Outcome.RETRY, reason=reason)

    def classify(
        self, answer: _Answer, now: dt.datetime, *, delivered: Callable[[int], bool]
    ) -> SendResult:
        status = answer.status
        if delivered(status):
            return SendResult(outcome=Outcome.DELIVERED, reason="ok", status=status)
        reason = _reason(answer.text, status, self._secrets)
        if status == 429:
            wait = parse_retry_after(answer.retry_after, now)
            return SendResult(
                outcome=Outcome.RATE_LIMITED, reason=reason, status=status, retry_after=wait
            )
        if status >= 500 or status == 408:
            return SendResult(outcome=Outcome.RETRY, reason=reason, status=status)
        return SendResult(outcome=Outcome.PERMANENT, reason=reason, status=status)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SlackSender:
    """A Slack incoming webhook: Block Kit messages within Slack's limits; 200 is success."""

    def __init__(  # noqa: PLR0913 - collaborators and two knobs, all by keyword
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        name: str = "slack",
        mention_on_failure: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._name = name
        self._mention = mention_on_failure
        self._poster = _Poster(session, url, timeout=timeout)
        self._clock = clock

    @property
    def name(self) -> str:
        return self._name

    def render(self, payloads: Sequence[Payload]) -> tuple[dict[str, Any], int]:
        return render_slack_batch(payloads, mention_on_failure=self._mention)

    async def send(self, body: Mapping[str, Any]) -> SendResult:
        answer = await self._poster.post(body)
        if isinstance(answer, SendResult):
            return answer
        return self._poster.classify(answer, self._clock(), delivered=lambda s: s == 200)

    def __repr__(self) -> str:  # the URL stays out of reprs, too
        return f"SlackSender(name={self._name!r})"


class WebhookSender:
    """A generic JSON webhook (``render.render_webhook`` format 1); any 2xx is success."""

    def __init__(  # noqa: PLR0913 - collaborators and two knobs, all by keyword
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        name: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._name = name
        self._poster = _Poster(session, url, headers=headers, timeout=timeout)
        self._clock = clock

    @property
    def name(self) -> str:
        return self._name

    def render(self, payloads: Sequence[Payload]) -> tuple[dict[str, Any], int]:
        return render_webhook(payloads), len(payloads)

    async def send(self, body: Mapping[str, Any]) -> SendResult:
        answer = await self._poster.post(body)
        if isinstance(answer, SendResult):
            return answer
        return self._poster.classify(answer, self._clock(), delivered=lambda s: 200 <= s < 300)

    def __repr__(self) -> str:
        return f"WebhookSender(name={self._name!r})"
