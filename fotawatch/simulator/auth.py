"""The two ThingSpace credentials, simulated: the OAuth bearer token and the M2M session token.

OAuth (reference §2.1): one token per client, valid ``oauth_ttl_seconds`` from issue; a request
within that time returns the same token with the remaining ``expires_in``. ``revoke()`` makes it
invalid at once and the next request issues a new one.

M2M sessions (§2.2): a uuid4 per successful login, expired after ``session_idle_seconds`` without
use (each accepted use restarts the idle time) or by ``expire_sessions()``. Five consecutive failed
logins lock the user; a locked user's logins fail even with the right password until ``unlock()``.
A successful login resets the consecutive count. All times are on the sim clock.

``issued_tokens`` lists every bearer and session token ever handed out, so a leak test can search
the client's outputs for them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import secrets
import uuid
from enum import StrEnum

from fotawatch.simulator.scenario import Credentials

__all__ = [
    "LOCK_AFTER",
    "AuthState",
    "BearerRefusal",
    "LoginRefusal",
    "OAuthRefusal",
    "SessionRefusal",
]

LOCK_AFTER = 5


class OAuthRefusal(StrEnum):
    MISSING_GRANT = "invalid_request"
    BAD_GRANT = "unsupported_grant_type"
    BAD_CLIENT = "invalid_client"


class BearerRefusal(StrEnum):
    INVALID = "900901"
    MISSING = "900902"


class LoginRefusal(StrEnum):
    BAD_BODY = "INPUT_INVALID.Login.Body"
    FAILED = "REQUEST_FAILED.Login.Failed"
    LOCKED = "REQUEST_FAILED.User.Locked"


class SessionRefusal(StrEnum):
    FORMAT = "REQUEST_FAILED.SessionToken.Format"
    INVALID = "INPUT_INVALID.SessionToken.Invalid"
    EXPIRED = "REQUEST_FAILED.SessionToken.Expired"


class AuthState:
    """Tokens, sessions, the login lock-out and their counters."""

    def __init__(self, credentials: Credentials, *, oauth_ttl: float, session_idle: float) -> None:
        self.credentials = credentials
        self._ttl = oauth_ttl
        self._idle = session_idle
        self._token: str | None = None
        self._issued_at = 0.0
        self._sessions: dict[str, float] = {}
        self._expired: set[str] = set()
        self.oauth_failures = 0
        self.tokens_issued = 0
        self.login_failures = 0
        self.consecutive_login_failures = 0
        self.max_consecutive_login_failures = 0
        self.sessions_issued = 0
        self.locked = False
        self.issued_tokens: list[str] = []

    # OAuth --------------------------------------------------------------------------------

    def issue_token(
        self, authorization: str | None, grant_type: str | None, now: float
    ) -> tuple[str, int] | OAuthRefusal:
        """(token, expires_in) for a client-credentials request, or why it was refused."""
        refusal = self._check_client(authorization, grant_type)
        if refusal is not None:
            self.oauth_failures += 1
            return refusal
        if self._token is None or now - self._issued_at > self._ttl - 1:
            self._token = secrets.token_hex(16)
            self._issued_at = now
            self.tokens_issued += 1
            self.issued_tokens.append(self._token)
        return self._token, int(self._issued_at + self._ttl - now)

    def _check_client(
        self, authorization: str | None, grant_type: str | None
    ) -> OAuthRefusal | None:
        if not grant_type:
            return OAuthRefusal.MISSING_GRANT
        if grant_type != "client_credentials":
            return OAuthRefusal.BAD_GRANT
        expected = f"{self.credentials.client_id}:{self.credentials.client_secret}"
        if _basic_credentials(authorization) != expected:
            return OAuthRefusal.BAD_CLIENT
        return None

    def check_bearer(self, authorization: str | None, now: float) -> BearerRefusal | None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return BearerRefusal.MISSING
        valid = token.strip() == self._token and now - self._issued_at < self._ttl
        return None if valid else BearerRefusal.INVALID

    def revoke_tokens(self) -> None:
        self._token = None

    # M2M session --------------------------------------------------------------------------

    def login(self, username: object, password: object, now: float) -> str | LoginRefusal:
        """A new session token, or the refusal; failures count towards the lock-out."""
        if self.locked:
            return self._failed(LoginRefusal.LOCKED)
        creds = self.credentials
        if username != creds.username or password != creds.password:
            return self._failed(LoginRefusal.FAILED)
        self.consecutive_login_failures = 0
        token = str(uuid.uuid4())
        self._sessions[token] = now
        self.sessions_issued += 1
        self.issued_tokens.append(token)
        return token

    def _failed(self, refusal: LoginRefusal) -> LoginRefusal:
        self.login_failures += 1
        self.consecutive_login_failures += 1
        self.max_consecutive_login_failures = max(
            self.max_consecutive_login_failures, self.consecutive_login_failures
        )
        self.locked = self.locked or self.consecutive_login_failures >= LOCK_AFTER
        return refusal

    def check_session(self, token: str | None, now: float) -> SessionRefusal | None:
        """Accept (and refresh) a live session token, or say why not."""
        if not token:
            return SessionRefusal.FORMAT
        last_used = self._sessions.get(token)
        if last_used is not None and now - last_used <= self._idle:
            self._sessions[token] = now
            return None
        if last_used is not None:
            del self._sessions[token]
            self._expired.add(token)
        return SessionRefusal.EXPIRED if token in self._expired else SessionRefusal.INVALID

    def expire_sessions(self) -> None:
        self._expired.update(self._sessions)
        self._sessions.clear()

    # control ------------------------------------------------------------------------------

    def set_credentials(self, **changes: str) -> None:
        """Replace some of the accepted credentials (keys as in ``Credentials``)."""
        self.credentials = dataclasses.replace(self.credentials, **changes)

    def unlock(self) -> None:
        self.locked = False
        self.consecutive_login_failures = 0


def _basic_credentials(authorization: str | None) -> str | None:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
