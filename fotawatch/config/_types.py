"""Annotated field types shared by the settings models: durations, accounts, URLs, listen addresses.

Validators raise ``ValueError`` with a short sentence; for secret fields the sentence never
contains the value. Durations are stored as float seconds.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, WithJsonSchema

from fotawatch.model import CampaignStatus, normalise_status

__all__ = [
    "DURATION_PATTERN",
    "Account",
    "BaseUrl",
    "Duration",
    "HeaderName",
    "HeaderValue",
    "ListenAddress",
    "LogFormat",
    "LogLevel",
    "PostgresDsn",
    "Regex",
    "Secret",
    "SinkName",
    "SinkUrl",
    "Status",
    "StuckStatus",
    "is_loopback",
    "parse_duration",
    "parse_listen",
]

_NUMBER = r"\d+(?:\.\d+)?"
_UNIT = r"(?:ms|s|m|h|d|w)"
DURATION_PATTERN = rf"^(?:{_NUMBER}|(?:{_NUMBER}{_UNIT})+)$"
_DURATION = re.compile(DURATION_PATTERN)
_DURATION_PART = re.compile(rf"({_NUMBER})({_UNIT})")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_HELP = "must be a duration: seconds, or a string like 90s, 10m, 2h, 1d or 1h30m"
_LOOPBACK_HELP = "the host is loopback (127.0.0.0/8, ::1, localhost)"
_LISTEN = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d{1,5})$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_SINK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``90s``, ``10m``, ``1h30m``, ``1d``, ``500ms``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(_DURATION_HELP)  # noqa: TRY004 - pydantic reports only ValueError
    if not isinstance(value, str):
        return float(value)
    text = value.strip()
    if not _DURATION.fullmatch(text):
        raise ValueError(f"{_DURATION_HELP}, got {value[:60]!r}")
    parts = _DURATION_PART.findall(text)
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in parts) if parts else float(text)


def _account_text(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(  # noqa: TRY004 - pydantic reports only ValueError
            f"must be a quoted string: YAML read {value!r} as a number, which loses leading "
            'zeros; write it in quotes, e.g. "0642233522-00001"'
        )
    return value


def _url_problem(url: str) -> str | None:
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in {"http", "https"}:
        return "must be an http:// or https:// URL"
    return None if parts.hostname else "must name a host"


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_sink_url(secret: SecretStr) -> SecretStr:
    url = secret.get_secret_value()
    problem = _url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise ValueError(f"must be an https:// URL unless {_LOOPBACK_HELP}")
    return secret


def _check_postgres_dsn(secret: SecretStr) -> SecretStr:
    """A libpq URI (``postgresql://`` or ``postgres://``); the rest is libpq's to judge at start.

    The value is never echoed: it may hold a password.
    """
    dsn = secret.get_secret_value().strip()
    if urlsplit(dsn).scheme not in {"postgresql", "postgres"}:
        raise ValueError("must be a postgresql:// URI (libpq connection URI)")
    if any(ch.isspace() or not ch.isprintable() for ch in dsn):
        raise ValueError("must not contain spaces or control characters")
    return SecretStr(dsn)


def _check_base_url(url: str) -> str:
    problem = _url_problem(url) or _base_url_extras(urlsplit(url))
    if problem is not None:
        raise ValueError(f"{problem}, got {url[:60]!r}")
    return url.rstrip("/")


def _base_url_extras(parts: SplitResult) -> str | None:
    if parts.username is not None or parts.password is not None:
        return "must not contain a user name or password"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    return None


def parse_listen(value: str) -> tuple[str, int]:
    """``(host, port)`` from ``host:port`` or ``[v6]:port``; an empty host means every interface."""
    match = _LISTEN.fullmatch(value)
    if match is None:
        raise ValueError("must be host:port, with an IPv6 host in brackets as in [::1]:10213")
    port = int(match["port"])
    if port > 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    return _listen_host(match["v6"], match["host"]), port


def _listen_host(v6: str | None, host: str | None) -> str:
    if v6 is not None:
        try:
            return str(ipaddress.IPv6Address(v6))
        except ValueError:
            raise ValueError(f"{v6[:60]!r} is not an IPv6 address") from None
    if host and not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{host[:60]!r} is not a host name or IPv4 address")
    return host or ""


def _check_listen(value: str) -> str:
    parse_listen(value)
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError(f"is not a valid regular expression: {err.msg} at position {err.pos}"
                         ) from None
    return value


def _check_header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError(f"{value[:60]!r} is not a valid HTTP header name")
    return value


def _check_header_value(secret: SecretStr) -> SecretStr:
    if any(c in "\r\n\0" for c in secret.get_secret_value()):
        raise ValueError("must not contain line breaks")
    return secret


def _check_sink_name(value: str) -> str:
    if not _SINK_NAME.fullmatch(value):
        raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                         f"or digit, got {value[:60]!r}")
    return value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _status(value: object) -> object:
    return normalise_status(value) if isinstance(value, str) else value


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    Field(gt=0),
    WithJsonSchema({"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                              {"type": "string", "pattern": DURATION_PATTERN}]}),
]
Account = Annotated[str, BeforeValidator(_account_text), Field(min_length=1)]
Secret = Annotated[SecretStr, Field(min_length=1)]
PostgresDsn = Annotated[SecretStr, AfterValidator(_check_postgres_dsn)]
SinkUrl = Annotated[SecretStr, AfterValidator(_check_sink_url)]
BaseUrl = Annotated[str, AfterValidator(_check_base_url)]
ListenAddress = Annotated[str, AfterValidator(_check_listen)]
Regex = Annotated[str, AfterValidator(_check_regex), Field(json_schema_extra={"format": "regex"})]
HeaderName = Annotated[str, AfterValidator(_check_header_name)]
HeaderValue = Annotated[SecretStr, AfterValidator(_check_header_value)]
SinkName = Annotated[str, AfterValidator(_check_sink_name)]
LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)]
LogFormat = Annotated[Literal["auto", "json", "console"], BeforeValidator(_lower)]
Status = Annotated[CampaignStatus, BeforeValidator(_status)]
StuckStatus = Literal["CampaignRequestPending", "CampaignRequestQueued", "CampaignPreScheduled"]
