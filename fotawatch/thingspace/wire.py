"""The ThingSpace wire: response bytes in, domain values or typed ``ApiError``s out.

Pure module: no I/O, no clock (``now`` is an argument), no logging. The ``parse_*`` functions
raise ``InvalidResponseError`` and nothing else; ``parse_error`` never raises.

Tolerance rules (reference §4, §5, §7), decided once here:

* Bodies over ``MAX_BODY_BYTES``, non-UTF-8, non-JSON, truncated, too deeply nested or with a
  non-object top level are invalid. NaN/Infinity decode but count as "not a number".
* Campaign ``status`` is required (a non-empty string); it is normalised (``CampaignQueued`` ->
  ``CampaignRequestQueued``) and an unrecognised value is kept. Every other field is optional:
  missing, ``null`` or of the wrong type gives None, unknown fields are ignored.
* The campaign key is always the requested ``(account, campaign_id)``; ``id``/``accountName``
  in the body are not read.
* Text is stripped, truncated (``MAX_TEXT_CHARS``; status ``MAX_STATUS_CHARS``), never rejected;
  an empty string reads as missing; lone surrogates become ``?`` so the text can be encoded.
* Booleans: JSON ``true``/``false`` or the strings ``"true"``/``"false"`` in any case; else None.
* Time windows come from ``campaignTimeWindowList``, else ``timeWindowList`` (the first key that
  holds a list). A malformed entry is dropped, not fatal; valid means ``0 <= startTime < endTime
  <= 24`` (integers, integral floats or digit strings). A wrap-around window (22 -> 2) cannot be
  expressed by ``TimeWindow`` and is dropped. At most ``MAX_TIME_WINDOWS`` are kept.
* Dates: ``YYYY-MM-DD``, or an ISO datetime whose date part is taken as written; else None.
* Error messages hold the HTTP status and the sanitised code only, never the API's message
  text (it can echo device ids) and no header value except a parsed ``Retry-After`` number.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from fotawatch.errors import (
    ApiError,
    AuthError,
    CampaignMissingError,
    ClientError,
    InvalidResponseError,
    LoginCircuitOpenError,
    LoginRejectedError,
    RateLimitedError,
    ServerError,
)
from fotawatch.model import Campaign, TimeWindow, normalise_status

__all__ = [
    "DEFAULT_TOKEN_LIFETIME",
    "MAX_BODY_BYTES",
    "MAX_CODE_CHARS",
    "MAX_STATUS_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_TIME_WINDOWS",
    "MAX_TOKEN_LIFETIME",
    "SESSION_ERROR_SUFFIXES",
    "THROTTLE_FAULT_CODES",
    "TOKEN_FAULT_CODES",
    "CampaignHistoryPage",
    "DevicePage",
    "is_session_error",
    "is_token_error",
    "parse_campaign",
    "parse_campaign_history",
    "parse_device_page",
    "parse_error",
    "parse_retry_after",
    "parse_session",
    "parse_token",
]

MAX_BODY_BYTES: Final = 1 << 20
MAX_TEXT_CHARS: Final = 1000
MAX_STATUS_CHARS: Final = 200
MAX_ID_CHARS: Final = 200
MAX_CODE_CHARS: Final = 100
MAX_TIME_WINDOWS: Final = 24
DEFAULT_TOKEN_LIFETIME: Final = 3600.0  # "valid for one hour from when it was first issued"
MAX_TOKEN_LIFETIME: Final = 3600.0
SESSION_ERROR_SUFFIXES: Final = (
    "SessionToken.Expired",
    "SessionToken.Invalid",
    "SessionToken.Format",
)
# WSO2 API-Manager fault codes: authentication failures (a fresh bearer may help) ...
TOKEN_FAULT_CODES: Final = frozenset({"900900", "900901", "900902", "900903", "900904", "900905"})
# ... and throttling (900805 "message blocked" is an admin block, not a rate limit).
THROTTLE_FAULT_CODES: Final = frozenset(
    {"900800", "900801", "900802", "900803", "900804", "900806", "900807"}
)
_INVALID_PARAMETER: Final = "INVALID_PARAMETER"
_TIME_WINDOW_KEYS: Final = ("campaignTimeWindowList", "timeWindowList")
_BOOL_WORDS: Final = {"true": True, "false": False}
_BIG: Final = 10**12
_DECIMAL = re.compile(r"-?[0-9]{1,12}(?:\.[0-9]{1,9})?")
_DATE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})([T ].{1,40})?")
_CAMPAIGN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CODE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_XML_FAULT_CODE = re.compile(rb"<(?:[A-Za-z0-9]{1,20}:)?code>\s{0,9}([0-9]{6})\s{0,9}</")
_CREDENTIAL = re.compile(r"[\x21-\x7e]{1,4096}")  # visible ASCII: safe in an HTTP header


@dataclass(frozen=True, slots=True, kw_only=True)
class DevicePage:
    """One page of ``GET /reports/{acc}/campaigns/{id}/devices`` (reference §4.2)."""

    total_device: int | None
    has_more: bool
    last_seen_device_id: str | None
    devices: tuple[tuple[str, str], ...]  # (device_id, status); the status set is open


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignHistoryPage:
    """One page of the campaigns-by-status report (reference §4.3)."""

    has_more: bool
    last_seen_campaign_id: str | None
    campaigns: tuple[Campaign, ...]


# --- JSON and scalar readers -------------------------------------------------------------


def _load(body: bytes) -> Any:
    if len(body) > MAX_BODY_BYTES:
        raise InvalidResponseError(f"response body over {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body.decode("utf-8-sig"))
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise InvalidResponseError("response body is not valid JSON") from err


def _load_object(body: bytes, what: str) -> dict[str, Any]:
    data = _load(body)
    if not isinstance(data, dict):
        raise InvalidResponseError(f"{what} response is not a JSON object")
    return data


def _text(value: Any, limit: int = MAX_TEXT_CHARS) -> str | None:
    """A stripped, truncated, encodable string; None for non-strings and empty strings."""
    if not isinstance(value, str):
        return None
    text = value.strip()[:limit]
    return text.encode("utf-8", "replace").decode("utf-8") or None


def _identifier(value: Any) -> str | None:
    """An id as a string: JSON strings, or non-negative integers (IMEIs sent as numbers)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _BIG**2:
        return str(value)
    return _text(value, MAX_ID_CHARS)


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) <= 16:
        return _BOOL_WORDS.get(value.strip().lower())
    return None


def _number(value: Any) -> float | None:
    """A finite number within +-1e12 from a JSON number or a decimal string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if -_BIG <= value <= _BIG else None
    if isinstance(value, float):
        return value if math.isfinite(value) and abs(value) <= _BIG else None
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value)
    return None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = _DATE.fullmatch(value.strip())
    if match is None:
        return None
    try:
        if match[2]:
            dt.datetime.fromisoformat(match[0])  # validate the whole stamp
        return dt.date.fromisoformat(match[1])
    except ValueError:
        return None


def _first_list(data: Mapping[str, Any], keys: Iterable[str]) -> list[Any]:
    return next((v for k in keys if isinstance(v := data.get(k), list)), [])


# --- campaigns ---------------------------------------------------------------------------


def _time_window(entry: Any) -> TimeWindow | None:
    if not isinstance(entry, dict):
        return None
    start, end = _integer(entry.get("startTime")), _integer(entry.get("endTime"))
    if start is None or end is None or not 0 <= start < end <= 24:
        return None
    return TimeWindow(start_hour=start, end_hour=end)


def _time_windows(data: Mapping[str, Any]) -> tuple[TimeWindow, ...]:
    windows = map(_time_window, _first_list(data, _TIME_WINDOW_KEYS))
    return tuple(itertools.islice((w for w in windows if w is not None), MAX_TIME_WINDOWS))


def _status(value: Any) -> str | None:
    text = _text(value, MAX_STATUS_CHARS)
    return normalise_status(text) if text is not None else None


def _campaign(data: Mapping[str, Any], *, account: str, campaign_id: str) -> Campaign | None:
    """The campaign in ``data``, or None when it has no usable status."""
    status = _status(data.get("status"))
    if status is None:
        return None
    return Campaign(
        account=account,
        campaign_id=campaign_id,
        status=status,
        name=_text(data.get("campaignName")),
        firmware_name=_text(data.get("firmwareName")),
        firmware_from=_text(data.get("firmwareFrom")),
        firmware_to=_text(data.get("firmwareTo")),
        protocol=_text(data.get("protocol")),
        make=_text(data.get("make")),
        model=_text(data.get("model")),
        start_date=_date(data.get("startDate")),
        end_date=_date(data.get("endDate")),
        time_windows=_time_windows(data),
        auto_assign_license=_flag(data.get("autoAssignLicenseFlag")),
        auto_add_devices=_flag(data.get("autoAddDevicesFlag")),
    )


def parse_campaign(body: bytes, *, account: str, campaign_id: str) -> Campaign:
    """Parse ``GET /campaigns/{account}/{campaign_id}``; the key is always the requested one."""
    data = _load_object(body, "campaign")
    campaign = _campaign(data, account=account, campaign_id=campaign_id)
    if campaign is None:
        raise InvalidResponseError(f"campaign {account}/{campaign_id}: no status in response")
    return campaign


def _history_entry(entry: Any, account: str) -> Campaign | None:
    if not isinstance(entry, dict):
        return None
    campaign_id = _text(entry.get("id"), MAX_ID_CHARS)
    if campaign_id is None or not _CAMPAIGN_ID.fullmatch(campaign_id):
        return None  # the id goes into URL paths: only UUID-like ids are accepted
    return _campaign(entry, account=account, campaign_id=campaign_id)


def parse_campaign_history(body: bytes, *, account: str) -> CampaignHistoryPage:
    """Parse one campaigns-by-status page; entries without a usable id or status are skipped."""
    data = _load_object(body, "campaign history")
    entries = (_history_entry(e, account) for e in _first_list(data, ("campaignList",)))
    return CampaignHistoryPage(
        has_more=_flag(data.get("hasMoreData")) is True,
        last_seen_campaign_id=_identifier(data.get("lastSeenCampaignId")),
        campaigns=tuple(c for c in entries if c is not None),
    )


# --- device reports ----------------------------------------------------------------------


def _device(entry: Any) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        return None
    device_id = _identifier(entry.get("deviceId"))
    status = _text(entry.get("status"), MAX_STATUS_CHARS)
    return (device_id, status) if device_id is not None and status is not None else None


def parse_device_page(body: bytes) -> DevicePage:
    """Parse one per-device status page; entries without a device id or status are skipped."""
    data = _load_object(body, "device report")
    total = _integer(data.get("totalDevice"))
    devices = (_device(e) for e in _first_list(data, ("deviceList",)))
    return DevicePage(
        total_device=total if total is not None and total >= 0 else None,
        has_more=_flag(data.get("hasMoreData")) is True,
        last_seen_device_id=_identifier(data.get("lastSeenDeviceId")),
        devices=tuple(d for d in devices if d is not None),
    )


# --- auth responses ----------------------------------------------------------------------


def _credential(value: Any, what: str) -> str:
    """A token that is safe to put in a header; the value never appears in the message."""
    if isinstance(value, str) and _CREDENTIAL.fullmatch(value):
        return value
    raise InvalidResponseError(f"{what} missing or malformed")


def parse_token(body: bytes) -> tuple[str, float]:
    """Parse an OAuth token response into ``(access_token, expires_in seconds)``.

    ``expires_in`` absent or null means the documented hour; it is clamped to 0..3600 (Verizon
    issues hour-long tokens); any other non-number makes the response invalid.
    """
    data = _load_object(body, "token")
    token = _credential(data.get("access_token"), "access_token")
    raw = data.get("expires_in")
    if raw is None:
        return token, DEFAULT_TOKEN_LIFETIME
    seconds = _number(raw)
    if seconds is None:
        raise InvalidResponseError("expires_in is not a number")
    return token, min(max(seconds, 0.0), MAX_TOKEN_LIFETIME)


def parse_session(body: bytes) -> str:
    """Parse an M2M session login response ``{"sessionToken": ...}``."""
    return _credential(_load_object(body, "session").get("sessionToken"), "sessionToken")


# --- errors ------------------------------------------------------------------------------


def _code(value: Any) -> str | None:
    """An error code restricted to ``[A-Za-z0-9._-]`` and ``MAX_CODE_CHARS``; ints allowed."""
    number = _integer(value) if not isinstance(value, str) else None
    text = str(number) if number is not None else _text(value, MAX_CODE_CHARS)
    return _CODE_UNSAFE.sub("_", text) if text is not None else None


def _error_code(body: bytes) -> str | None:
    """The code of a fault, errorCode or OAuth error body (in that order), or None."""
    try:
        data = _load(body)
    except InvalidResponseError:
        match = _XML_FAULT_CODE.search(body[:65536])  # WSO2 answers XML by default
        return match[1].decode("ascii") if match else None
    if not isinstance(data, dict):
        return None
    fault = data.get("fault")
    fault_code = fault.get("code") if isinstance(fault, dict) else None
    candidates = (fault_code, data.get("errorCode"), data.get("error"))
    return next((c for c in map(_code, candidates) if c is not None), None)


def _is_session_code(code: str | None) -> bool:
    return code is not None and any(
        code == suffix or code.endswith("." + suffix) for suffix in SESSION_ERROR_SUFFIXES
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)  # case-insensitive for aiohttp's CIMultiDict
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value if isinstance(value, str) else None


def _http_date(text: str) -> dt.datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def parse_retry_after(value: str | None, now: dt.datetime | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date.

    Negative results become 0; absent or unparseable values give None. Without ``now`` (a
    naive ``now`` is taken as UTC) an HTTP-date cannot be converted and gives None.
    """
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip()
    if _DECIMAL.fullmatch(text):
        return max(0.0, float(text))
    when = _http_date(text) if now is not None else None
    if when is None or now is None:
        return None
    now_utc = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now_utc).total_seconds())


def _message(status: int, code: str | None) -> str:
    return f"HTTP {status} {code}" if code else f"HTTP {status}"


def _rate_limited(status: int, code: str | None, retry_after: float | None) -> RateLimitedError:
    message = _message(status, code)
    if retry_after is not None:
        message += f" (retry after {retry_after:g}s)"
    return RateLimitedError(message, retry_after=retry_after, status=status, code=code)


def _error_type(status: int, code: str | None) -> type[ApiError]:
    if status == 401 or code in TOKEN_FAULT_CODES or _is_session_code(code):
        return AuthError
    if status == 404 or (status == 400 and code == _INVALID_PARAMETER):
        return CampaignMissingError
    if 400 <= status < 500:
        return ClientError
    if 500 <= status < 600:
        return ServerError
    return InvalidResponseError  # 1xx-3xx handed over as an error, or a nonsense status


def parse_error(
    status: int, body: bytes, headers: Mapping[str, str], *, now: dt.datetime | None = None
) -> ApiError:
    """Classify a non-2xx response; never raises. Pass ``now`` to honour HTTP-date Retry-After.

    429 or a WSO2 throttling fault -> RateLimitedError; 401, a WSO2 auth fault or a
    ``SessionToken.{Expired,Invalid,Format}`` code -> AuthError; 404 or 400 INVALID_PARAMETER
    -> CampaignMissingError; other 4xx -> ClientError; 5xx -> ServerError.
    """
    code = _error_code(body)
    if status == 429 or code in THROTTLE_FAULT_CODES:
        retry_after = parse_retry_after(_header(headers, "Retry-After"), now)
        return _rate_limited(status, code, retry_after)
    return _error_type(status, code)(_message(status, code), status=status, code=code)


def is_session_error(err: BaseException) -> bool:
    """True when the M2M session was rejected: log in again (once), then retry."""
    return isinstance(err, AuthError) and _is_session_code(err.code)


def is_token_error(err: BaseException) -> bool:
    """True when the bearer was rejected (401 / WSO2 auth fault): refresh it once, then retry.

    Never true for a session error or for a refused or suspended login, so that no caller
    loops on logins (five failures lock the account).
    """
    if not isinstance(err, AuthError) or is_session_error(err):
        return False
    if isinstance(err, LoginRejectedError | LoginCircuitOpenError):
        return False
    return err.status == 401 or err.code in TOKEN_FAULT_CODES
