"""ThingSpace's two tokens, kept fresh without ever locking the account.

- OAuth2 client credentials -> bearer ``access_token``, cached until ``expires_in`` minus a margin.
- M2M session login (bearer + username/password) -> ``sessionToken``, reused; it expires after 20
  minutes idle and has no refresh call, so a new login is made only when the API says the session
  is gone (or proactively, when it must have idled out).

Single flight: every refresh happens under one lock and only if the token that failed is still
the current one, so 50 polls failing on the same expired token cause one token request.

The login circuit: ThingSpace locks a user after 5 consecutive failed logins and only Verizon
support unlocks it. After ``max_login_failures`` (1-3) consecutive *rejections* of the OAuth client
credentials or of the username/password, fotawatch stops logging in until ``reset()`` (a config
reload or a restart). Outages (5xx, timeouts, 429) are not rejections: they fail the poll, but do
not count towards the circuit, so an API outage never needs a human to recover.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import structlog

from fotawatch.errors import (
    ApiError,
    AuthError,
    ClientError,
    LoginCircuitOpenError,
    LoginRejectedError,
)
from fotawatch.events import AuthRequest, Event, LoginCircuitChanged
from fotawatch.thingspace import wire
from fotawatch.thingspace.transport import Transport

__all__ = ["Credentials", "LoginCircuit", "ThingSpaceAuth"]

TOKEN_PATH = "/api/ts/v1/oauth2/token"  # noqa: S105 - a URL path, not a secret
LOGIN_PATH = "/api/m2m/v1/session/login"
SESSION_IDLE_SECONDS = 20 * 60
log = structlog.get_logger("fotawatch.auth")
_JSON = "application/json"


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """The four secrets. Never printed: every field is excluded from repr."""

    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    username: str = field(repr=False)
    password: str = field(repr=False)

    def basic(self) -> str:
        raw = f"{self.client_id}:{self.client_secret}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def _gateway_fault(err: ApiError) -> bool:
    """On the login call a 401 may reject the password; only a gateway fault blames the bearer."""
    return isinstance(err, AuthError) and err.code in wire.TOKEN_FAULT_CODES


class LoginCircuit:
    """Counts consecutive credential rejections; opens at the threshold."""

    def __init__(self, threshold: int) -> None:
        if not 1 <= threshold <= 3:
            raise ValueError("the login-failure threshold must be 1, 2 or 3")
        self.threshold = threshold
        self.failures = 0
        self.reason = ""

    @property
    def open(self) -> bool:
        return self.failures >= self.threshold

    def rejected(self, reason: str, *, locked: bool = False) -> bool:
        """Count a rejection; True if this one opened the circuit."""
        was_open = self.open
        self.failures = self.threshold if locked else self.failures + 1
        self.reason = reason
        return self.open and not was_open

    def succeeded(self) -> None:
        self.failures = 0
        self.reason = ""


class ThingSpaceAuth:
    """Provides (bearer, session) token pairs and renews them once per failure."""

    def __init__(  # noqa: PLR0913 - each collaborator is injected, none is optional
        self,
        transport: Transport,
        credentials: Credentials,
        *,
        margin: float,
        max_login_failures: int,
        emit: Callable[[Event], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._transport = transport
        self._credentials = credentials
        self._margin = margin
        self._emit = emit
        self._clock = clock
        self._wall = wall
        self._lock = asyncio.Lock()
        self._bearer: str | None = None
        self._bearer_valid_until = 0.0
        self._session: str | None = None
        self._session_used_at = 0.0
        self.circuit = LoginCircuit(max_login_failures)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value currently held, for log redaction."""
        c = self._credentials
        held = (self._bearer, self._session)
        return (c.client_id, c.client_secret, c.username, c.password, *filter(None, held))

    def reset(self, credentials: Credentials | None = None) -> None:
        """Close the circuit (config reload) and, with new credentials, forget the tokens."""
        if credentials is not None and credentials != self._credentials:
            self._credentials = credentials
            self._bearer = self._session = None
        if self.circuit.open:
            log.info("login_circuit_reset", reason="config reload")
            self._emit(LoginCircuitChanged(open=False, reason="reset", at=self._wall()))
        self.circuit.succeeded()

    def _fresh(self) -> tuple[str, str] | None:
        now = self._clock()
        if self._bearer is None or now >= self._bearer_valid_until:
            return None
        if self._session is None or now - self._session_used_at >= SESSION_IDLE_SECONDS - 60:
            return None
        self._session_used_at = now
        return self._bearer, self._session

    async def tokens(self) -> tuple[str, str]:
        """A (bearer, session) pair, obtaining whichever is missing or stale."""
        if (pair := self._fresh()) is not None:
            return pair
        async with self._lock:
            if (pair := self._fresh()) is not None:
                return pair
            return await self._obtain()

    async def renew(self, err: AuthError, used: tuple[str, str]) -> None:
        """After ``err`` on a request made with ``used``: drop the stale token, once for all."""
        if wire.is_token_error(err):
            stale_bearer = True
        elif wire.is_session_error(err):
            stale_bearer = False
        else:
            raise err
        async with self._lock:
            if stale_bearer and self._bearer == used[0]:
                self._bearer = None
            elif not stale_bearer and self._session == used[1]:
                self._session = None

    async def _obtain(self) -> tuple[str, str]:
        if self.circuit.open:
            raise LoginCircuitOpenError(f"logins suspended: {self.circuit.reason}")
        bearer = await self._ensure_bearer()
        if self._session is None or self._clock() - self._session_used_at >= SESSION_IDLE_SECONDS:
            try:
                self._session = await self._login(bearer)
            except AuthError as err:
                if not _gateway_fault(err):
                    raise
                self._bearer = None  # the bearer died between the two calls: once more
                bearer = await self._ensure_bearer()
                self._session = await self._login(bearer)
        self._session_used_at = self._clock()
        return bearer, self._session

    async def _ensure_bearer(self) -> str:
        if self._bearer is not None and self._clock() < self._bearer_valid_until:
            return self._bearer
        headers = {"Authorization": self._credentials.basic(), "Accept": _JSON}
        form = {"grant_type": "client_credentials"}
        try:
            resp = await self._transport.send("POST", TOKEN_PATH, headers=headers, data=form)
            token, expires_in = wire.parse_token(resp.body)
        except ApiError as err:
            self._raise_failure("oauth", err)
        self._emit(AuthRequest(kind="oauth", result="ok"))
        margin = min(self._margin, expires_in / 2)
        self._bearer, self._bearer_valid_until = token, self._clock() + expires_in - margin
        return token

    async def _login(self, bearer: str) -> str:
        c = self._credentials
        headers = {"Authorization": f"Bearer {bearer}", "Accept": _JSON, "Content-Type": _JSON}
        body = {"username": c.username, "password": c.password}
        try:
            resp = await self._transport.send("POST", LOGIN_PATH, headers=headers, json_body=body)
            session = wire.parse_session(resp.body)
        except ApiError as err:
            if _gateway_fault(err):
                self._emit(AuthRequest(kind="session", result="error"))
                raise
            self._raise_failure("session", err)
        self._emit(AuthRequest(kind="session", result="ok"))
        self.circuit.succeeded()
        return session

    def _raise_failure(self, kind: str, err: ApiError) -> NoReturn:
        """Count a failed token/login request and raise; a rejection feeds the circuit."""
        if not isinstance(err, ClientError | AuthError):
            self._emit(AuthRequest(kind=kind, result="error"))
            raise err
        self._emit(AuthRequest(kind=kind, result="rejected"))
        what = "OAuth client credentials" if kind == "oauth" else "username/password"
        code = err.code or f"HTTP {err.status}"
        locked = "locked" in (err.code or "").lower()
        if self.circuit.rejected(f"{what} rejected ({code})", locked=locked):
            log.error(
                "login_circuit_open",
                reason=self.circuit.reason,
                failures=self.circuit.failures,
                action="fotawatch has stopped logging in: ThingSpace locks the user after 5 "
                "consecutive failed logins and only Verizon support can unlock it. Fix the "
                "credentials, then `systemctl reload fotawatch` (SIGHUP) or restart.",
            )
            self._emit(LoginCircuitChanged(open=True, reason=self.circuit.reason, at=self._wall()))
        raise LoginRejectedError(
            f"ThingSpace rejected the {what} ({code})", status=err.status, code=err.code
        ) from err
