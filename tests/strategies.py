"""Hypothesis strategies for the ThingSpace wire, shared by every suite that parses or serves it.

Three families: *valid* bodies as the reference documents them (§4), *near-valid* ones (fields
dropped, wrong types, extra fields) and *hostile* ones (deep nesting, huge strings, NaN,
random unicode, random bytes, truncation). ``FUZZ`` is the fixed, reproducible budget.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from fotawatch.model import KNOWN_STATUSES, STATUS_ALIASES

__all__ = [
    "CAMPAIGN_FIELDS",
    "FUZZ",
    "MESSAGE_MARKER",
    "campaign_bodies",
    "campaign_objects",
    "error_bodies",
    "error_objects",
    "headers",
    "hostile_bodies",
    "json_values",
    "near_valid_campaign_bodies",
    "near_valid_campaign_objects",
    "retry_after_values",
    "statuses",
    "to_body",
]

FUZZ = settings(max_examples=200, deadline=None, derandomize=True)

CAMPAIGN_FIELDS = (
    "id",
    "accountName",
    "campaignName",
    "firmwareName",
    "firmwareFrom",
    "firmwareTo",
    "protocol",
    "make",
    "model",
    "startDate",
    "endDate",
    "campaignTimeWindowList",
    "timeWindowList",
    "status",
    "autoAssignLicenseFlag",
    "autoAddDevicesFlag",
)


def to_body(value: Any) -> bytes:
    """JSON as ThingSpace would send it (NaN/Infinity allowed: Python's json emits them)."""
    return json.dumps(value, allow_nan=True).encode()


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
clean_text = st.characters(exclude_categories=("Cs",))  # no lone surrogates in valid bodies
statuses = st.sampled_from([s.value for s in KNOWN_STATUSES] + list(STATUS_ALIASES)) | st.text(
    clean_text, min_size=1, max_size=40
).filter(str.strip)
flags = st.booleans() | st.sampled_from(["true", "false", "TRUE", "False", "tRuE", "fALSE"])
time_windows = st.integers(0, 23).flatmap(
    lambda start: st.integers(start + 1, 24).map(lambda end: {"startTime": start, "endTime": end})
)
dates = st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31)).map(dt.date.isoformat)
names = st.text(clean_text, max_size=60)


def campaign_objects() -> st.SearchStrategy[dict[str, Any]]:
    """A campaign object with the documented fields and types (reference §4.1)."""
    required = {
        "id": st.uuids().map(str),
        "accountName": st.from_regex(r"[0-9]{10}-[0-9]{5}", fullmatch=True),
        "status": statuses,
    }
    optional = {
        "campaignName": names,
        "firmwareName": names,
        "firmwareFrom": names,
        "firmwareTo": names,
        "protocol": st.sampled_from(["LWM2M", "OMD-DM", "HTTP"]),
        "make": names,
        "model": names,
        "startDate": dates,
        "endDate": dates,
        "campaignTimeWindowList": st.lists(time_windows, max_size=4),
        "timeWindowList": st.lists(time_windows, max_size=4),
        "autoAssignLicenseFlag": flags,
        "autoAddDevicesFlag": flags,
    }
    return st.fixed_dictionaries(required, optional=optional)


def campaign_bodies() -> st.SearchStrategy[bytes]:
    """Valid campaign responses."""
    return campaign_objects().map(to_body)


@st.composite
def near_valid_campaign_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A valid campaign with some fields dropped, some retyped and some extra ones added."""
    obj = draw(campaign_objects())
    for key in draw(st.lists(st.sampled_from(sorted(obj)), unique=True, max_size=4)):
        del obj[key]
    for key in draw(st.lists(st.sampled_from(CAMPAIGN_FIELDS), unique=True, max_size=4)):
        obj[key] = draw(json_values)
    obj.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=3)))
    return obj


def near_valid_campaign_bodies() -> st.SearchStrategy[bytes]:
    """Near-valid campaign responses: each parses to a Campaign or is rejected cleanly."""
    return near_valid_campaign_objects().map(to_body)


def _nested(depth: int, shape: int) -> bytes:
    opening, closing = [(b"[", b"]"), (b'{"a":', b"}"), (b'{"status":[', b"]}")][shape]
    return opening * depth + b"1" + closing * depth


def _huge(char: str, length: int, key: str) -> bytes:
    return to_body({"status": "CampaignEnded", key: char * length})


_NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-0", "1" * 5000, "1.5e-400"]


def _non_finite(key: str, token: str) -> bytes:
    inner = f'[{{"startTime":{token},"endTime":{token}}}]' if "List" in key else token
    return f'{{"status":"CampaignEnded","{key}":{inner}}}'.encode()


def _truncated(body: bytes, cut: int) -> bytes:
    return body[: cut % max(len(body), 1)]


def hostile_bodies() -> st.SearchStrategy[bytes]:
    """Bodies built to break a parser: depth, size, non-finite numbers, junk, truncation."""
    return st.one_of(
        st.builds(_nested, st.integers(500, 100_000), st.integers(0, 2)),
        st.builds(
            _huge,
            st.characters(),
            st.integers(1_000, 1_200_000),
            st.sampled_from(CAMPAIGN_FIELDS),
        ),
        st.builds(_non_finite, st.sampled_from(CAMPAIGN_FIELDS), st.sampled_from(_NON_FINITE)),
        st.text().map(lambda text: text.encode("utf-8", "surrogatepass")),
        st.binary(max_size=200),
        st.builds(_truncated, campaign_bodies(), st.integers(0, 10_000)),
        json_values.map(to_body),
    )


codes = st.one_of(
    st.sampled_from(
        [
            "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired",
            "UnifiedWebService.INPUT_INVALID.SessionToken.Invalid",
            "INVALID_PARAMETER",
            "invalid_client",
            "900800",
            "900901",
        ]
    ),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    json_values,
)
MESSAGE_MARKER = "\N{SECTION SIGN}msg\N{SECTION SIGN}"
messages = st.text(max_size=80).map(lambda text: MESSAGE_MARKER + text)


def error_objects() -> st.SearchStrategy[Any]:
    """The three documented error shapes with arbitrary codes, plus any other JSON."""
    fault = st.fixed_dictionaries({"code": codes, "message": messages, "description": messages})
    return st.one_of(
        st.fixed_dictionaries({"errorCode": codes, "errorMessage": messages}),
        st.fixed_dictionaries({"fault": fault}),
        st.fixed_dictionaries({"error": codes, "error_description": messages}),
        json_values,
    )


def error_bodies() -> st.SearchStrategy[bytes]:
    """Any error body: documented shapes, HTML and XML pages, hostile bytes."""
    pages = st.sampled_from(
        [
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            b"<ams:fault><ams:code>900901</ams:code><ams:message>x</ams:message></ams:fault>",
            b"",
        ]
    )
    return st.one_of(error_objects().map(to_body), pages, hostile_bodies())


def _http_date(offset: int) -> str:
    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return email.utils.format_datetime(base + dt.timedelta(seconds=offset), usegmt=True)


def retry_after_values() -> st.SearchStrategy[str]:
    """Retry-After as delta-seconds, as an HTTP-date around 2024-01-01, or garbage."""
    return st.one_of(
        st.integers(-1_000, 10**9).map(str),
        st.integers(-86_400, 86_400).map(_http_date),
        st.text(max_size=80),
    )


def headers() -> st.SearchStrategy[dict[str, str]]:
    """Response headers, Retry-After in either case or absent."""
    name = st.sampled_from(["Retry-After", "retry-after", "Content-Type", "X-Request-Id"])
    return st.dictionaries(name, retry_after_values(), max_size=3)
