"""One shallow exception tree. Messages are built from ids and codes, never from secrets.

FotawatchError
 +-- ConfigError                 bad config: names the key path; the CLI exits 78
 +-- StoreError                  the state store cannot be read or written
 +-- ApiError                    a ThingSpace call failed; ``result`` is the poll-result label
 |    +-- TransportError         timeout / connection error              (retryable)
 |    +-- RateLimitedError       HTTP 429, carries Retry-After           (retryable)
 |    +-- ServerError            HTTP 5xx                                (retryable)
 |    +-- ClientError            other HTTP 4xx                          (not retried)
 |    |    +-- CampaignMissingError   404 / 400 INVALID_PARAMETER for a campaign
 |    +-- AuthError              token or session rejected        (one refresh, then fail)
 |    |    +-- LoginRejectedError     the credentials themselves were refused
 |    |    +-- LoginCircuitOpenError  logins suspended to protect the account from lock-out
 |    +-- InvalidResponseError   body is not what the API documents
 |         +-- PagingError            a report's paging cursor repeats or does not advance
 +-- DeliveryError               an alert sink could not deliver (issue 4)
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "AuthError",
    "CampaignMissingError",
    "ClientError",
    "ConfigError",
    "DeliveryError",
    "FotawatchError",
    "InvalidResponseError",
    "LoginCircuitOpenError",
    "LoginRejectedError",
    "PagingError",
    "RateLimitedError",
    "ServerError",
    "StoreError",
    "TransportError",
]


class FotawatchError(Exception):
    """Root of every error fotawatch raises on purpose."""


class ConfigError(FotawatchError):
    """The configuration is invalid. ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


class StoreError(FotawatchError):
    """The state store failed; the message names the operation and the file, not the data."""


class ApiError(FotawatchError):
    """A ThingSpace request failed.

    ``result`` is the label under which the failure is counted (``fotawatch_polls_total``):
    timeout, connection_error, http_4xx, http_5xx, rate_limited, auth_error, invalid_response.
    ``status`` is the HTTP status when there was a response; ``code`` the API's error code.
    """

    result: str = "invalid_response"
    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class TransportError(ApiError):
    """No usable response: a timeout or a connection error."""

    retryable = True

    def __init__(self, message: str, *, timeout: bool) -> None:
        self.result = "timeout" if timeout else "connection_error"
        super().__init__(message)


class RateLimitedError(ApiError):
    """HTTP 429 (or the WSO2 throttling fault); ``retry_after`` in seconds when the API said."""

    result = "rate_limited"
    retryable = True

    def __init__(
        self, message: str, *, retry_after: float | None, status: int = 429, code: str | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status, code=code)


class ServerError(ApiError):
    """HTTP 5xx, including HTML error pages from a gateway."""

    result = "http_5xx"
    retryable = True


class ClientError(ApiError):
    """HTTP 4xx that is neither auth nor rate limiting: retrying the same request will not help."""

    result = "http_4xx"


class CampaignMissingError(ClientError):
    """The campaign does not exist or is not visible to this account."""


class AuthError(ApiError):
    """The bearer token or the M2M session was rejected."""

    result = "auth_error"


class LoginRejectedError(AuthError):
    """The OAuth client credentials or the UWS username/password were refused."""


class LoginCircuitOpenError(AuthError):
    """Logins are suspended after repeated failures so that ThingSpace never locks the account."""


class InvalidResponseError(ApiError):
    """The response could not be understood (not JSON, truncated, wrong shape)."""

    result = "invalid_response"


class PagingError(InvalidResponseError):
    """A paged report's cursor repeated, went backwards or never ended: the round is abandoned."""

    result = "bad_cursor"


class DeliveryError(FotawatchError):
    """An alert sink failed to deliver a message."""
