"""The ThingSpace wire: tolerant parsing, error classification, hostile input."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    FUZZ,
    MESSAGE_MARKER,
    campaign_bodies,
    campaign_objects,
    error_bodies,
    headers,
    hostile_bodies,
    near_valid_campaign_bodies,
    retry_after_values,
)

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
from fotawatch.thingspace import wire
from fotawatch.thingspace.wire import (
    CampaignHistoryPage,
    DevicePage,
    is_session_error,
    is_token_error,
    parse_campaign,
    parse_campaign_history,
    parse_device_page,
    parse_error,
    parse_retry_after,
    parse_session,
    parse_token,
)

ACCOUNT = "0642233522-00001"
CAMPAIGN_ID = "f858b8c4-2153-11ec-8c44-aeb16d1aa652"
NOW = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
SECRET_TEXT = "IMEI 990000862471854 is not in account SECRET-MARKER"
CODE_CHARS = re.compile(r"[A-Za-z0-9._-]*")

DOC_CAMPAIGN: dict[str, Any] = {
    "id": CAMPAIGN_ID,
    "accountName": ACCOUNT,
    "campaignName": "FOTA_Verizon_Upgrade",
    "firmwareName": "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
    "firmwareFrom": "SR1.2.0.0-10512",
    "firmwareTo": "SR1.2.0.0-10657",
    "protocol": "LWM2M",
    "make": "SEQUANS Communications",
    "model": "GM01Q",
    "startDate": "2021-09-29",
    "endDate": "2021-10-01",
    "campaignTimeWindowList": [{"startTime": 20, "endTime": 21}],
    "status": "CampaignRequestPending",
    "autoAssignLicenseFlag": False,
    "autoAddDevicesFlag": True,
}
DOC_RESULT = Campaign(
    account=ACCOUNT,
    campaign_id=CAMPAIGN_ID,
    status="CampaignRequestPending",
    name="FOTA_Verizon_Upgrade",
    firmware_name="SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
    firmware_from="SR1.2.0.0-10512",
    firmware_to="SR1.2.0.0-10657",
    protocol="LWM2M",
    make="SEQUANS Communications",
    model="GM01Q",
    start_date=dt.date(2021, 9, 29),
    end_date=dt.date(2021, 10, 1),
    time_windows=(TimeWindow(start_hour=20, end_hour=21),),
    auto_assign_license=False,
    auto_add_devices=True,
)


def campaign(**fields: Any) -> Campaign:
    return parse_campaign(json.dumps(fields).encode(), account=ACCOUNT, campaign_id=CAMPAIGN_ID)


def doc_campaign(**changes: Any) -> Campaign:
    return campaign(**{**DOC_CAMPAIGN, **changes})


def error(status: int, body: Any = None, hdrs: dict[str, str] | None = None) -> ApiError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_error(status, raw, hdrs or {}, now=NOW)


# --- parse_campaign: the documented shape and the tolerated variants ---------------------


def test_documented_example_parses_to_every_field():
    """The reference's GET example maps onto every Campaign field."""
    assert doc_campaign() == DOC_RESULT


def test_legacy_time_window_key_is_accepted():
    """``timeWindowList`` (older docs) is read like ``campaignTimeWindowList``."""
    legacy = {**DOC_CAMPAIGN}
    legacy["timeWindowList"] = legacy.pop("campaignTimeWindowList")
    assert campaign(**legacy) == DOC_RESULT


@pytest.mark.parametrize(
    ("current", "legacy", "expected"),
    [
        ([{"startTime": 1, "endTime": 2}], [{"startTime": 3, "endTime": 4}], (1, 2)),
        ("not a list", [{"startTime": 3, "endTime": 4}], (3, 4)),
        (None, [{"startTime": 3, "endTime": 4}], (3, 4)),
    ],
)
def test_first_time_window_key_holding_a_list_wins(current, legacy, expected):
    """``campaignTimeWindowList`` wins when it holds a list; otherwise ``timeWindowList``."""
    result = doc_campaign(campaignTimeWindowList=current, timeWindowList=legacy)
    assert (TimeWindow(start_hour=expected[0], end_hour=expected[1]),) == result.time_windows


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"startTime": 0, "endTime": 24}, (0, 24)),
        ({"startTime": 23, "endTime": 24}, (23, 24)),
        ({"startTime": "3", "endTime": "4"}, (3, 4)),
        ({"startTime": 3.0, "endTime": 4.0}, (3, 4)),
        ({"startTime": 3, "endTime": 4, "extra": "x"}, (3, 4)),
        ({"startTime": 3.5, "endTime": 4}, None),
        ({"startTime": -1, "endTime": 4}, None),
        ({"startTime": 3, "endTime": 25}, None),
        ({"startTime": 5, "endTime": 5}, None),
        ({"startTime": 22, "endTime": 2}, None),
        ({"startTime": True, "endTime": 4}, None),
        ({"startTime": None, "endTime": 4}, None),
        ({"startTime": "3am", "endTime": 4}, None),
        ({"endTime": 4}, None),
        ([3, 4], None),
        ("03:00-04:00", None),
        (None, None),
    ],
)
def test_time_window_entries_are_validated_one_by_one(entry, expected):
    """A malformed window entry is dropped; the valid ones beside it are kept."""
    good = {"startTime": 10, "endTime": 11}
    windows = doc_campaign(campaignTimeWindowList=[entry, good]).time_windows
    kept = () if expected is None else (TimeWindow(start_hour=expected[0], end_hour=expected[1]),)
    assert (*kept, TimeWindow(start_hour=10, end_hour=11)) == windows


@pytest.mark.parametrize("value", ["x", 5, {"startTime": 1, "endTime": 2}, True])
def test_time_window_list_of_wrong_type_is_ignored(value):
    """A time-window 'list' that is not a list gives no windows rather than an error."""
    assert doc_campaign(campaignTimeWindowList=value).time_windows == ()


def test_time_windows_are_capped():
    """At most MAX_TIME_WINDOWS windows are kept from a long list."""
    entries = [{"startTime": 1, "endTime": 2}] * 1000
    assert len(doc_campaign(campaignTimeWindowList=entries).time_windows) == wire.MAX_TIME_WINDOWS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("tRuE", True),
        (" true ", True),
        ("false", False),
        ("FALSE", False),
        ("False", False),
        ("fAlSe", False),
        ("yes", None),
        ("1", None),
        ("", None),
        (1, None),
        (0, None),
        (None, None),
        ([], None),
        ({}, None),
    ],
)
def test_flags_accept_json_and_string_booleans(value, expected):
    """Booleans arrive as JSON bools or "true"/"false" in any case; anything else is None."""
    result = doc_campaign(autoAssignLicenseFlag=value, autoAddDevicesFlag=value)
    assert (expected, expected) == (result.auto_assign_license, result.auto_add_devices)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CampaignQueued", "CampaignRequestQueued"),
        ("CampaignRequestQueued", "CampaignRequestQueued"),
        ("CampaignPreScheduled", "CampaignPreScheduled"),
        ("CampaignEnded", "CampaignEnded"),
        ("CampaignSomethingNew", "CampaignSomethingNew"),
        ("  CampaignEnded  ", "CampaignEnded"),
    ],
)
def test_status_is_normalised_and_unknown_kept(raw, expected):
    """The CampaignQueued alias is normalised; an unrecognised status is kept as its string."""
    assert expected == doc_campaign(status=raw).status


@pytest.mark.parametrize("status", [None, "", "   ", 7, True, [], {"name": "CampaignEnded"}])
def test_missing_or_unusable_status_is_invalid(status):
    """``status`` is the one required field: missing, empty or non-string is invalid."""
    body = {**DOC_CAMPAIGN, "status": status}
    with pytest.raises(InvalidResponseError):
        campaign(**body)


def test_absent_status_is_invalid():
    """A body without a ``status`` key is invalid."""
    body = {k: v for k, v in DOC_CAMPAIGN.items() if k != "status"}
    with pytest.raises(InvalidResponseError):
        campaign(**body)


def test_missing_optional_fields_read_as_none():
    """A body with only a status gives None for every optional field and no windows."""
    expected = Campaign(account=ACCOUNT, campaign_id=CAMPAIGN_ID, status="CampaignEnded")
    assert expected == campaign(status="CampaignEnded")


@pytest.mark.parametrize("value", [None, "", 12, 1.5, True, ["x"], {"v": 1}])
def test_wrongly_typed_text_fields_read_as_none(value):
    """A text field that is null, empty or not a string reads as missing."""
    text_fields = ["campaignName", "firmwareName", "firmwareFrom", "firmwareTo", "protocol"]
    result = doc_campaign(**dict.fromkeys([*text_fields, "make", "model"], value))
    values = (result.name, result.firmware_name, result.firmware_from, result.firmware_to)
    assert (
        *values,
        result.protocol,
        result.make,
        result.model,
    ) == (None, None, None, None, None, None, None)


def test_extra_fields_are_ignored():
    """Unknown fields (the schema grows) do not change the result."""
    assert doc_campaign(newField={"nested": [1, 2]}, additional="x", maxPageSize=9) == DOC_RESULT


def test_key_is_always_the_requested_one():
    """``id``/``accountName`` in the body never override the requested key."""
    result = doc_campaign(id="other-id", accountName="9999999999-00009")
    assert (result.account, result.campaign_id) == (ACCOUNT, CAMPAIGN_ID)


def test_long_strings_are_truncated_not_rejected():
    """Names are capped at MAX_TEXT_CHARS and the status at MAX_STATUS_CHARS."""
    result = doc_campaign(campaignName="n" * 5000, status="S" * 5000)
    assert (
        len(result.name or ""),
        len(result.status),
    ) == (wire.MAX_TEXT_CHARS, wire.MAX_STATUS_CHARS)


def test_lone_surrogates_are_replaced():
    """A lone surrogate escape becomes '?' so the text can always be encoded."""
    body = b'{"status": "Campaign\\ud800Ended", "campaignName": "a\\udfffb"}'
    result = parse_campaign(body, account=ACCOUNT, campaign_id=CAMPAIGN_ID)
    assert (result.status, result.name) == ("Campaign?Ended", "a?b")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01", dt.date(2024, 3, 1)),
        (" 2024-03-01 ", dt.date(2024, 3, 1)),
        ("2024-03-01T10:00:00Z", dt.date(2024, 3, 1)),
        ("2024-03-01T23:30:00-05:00", dt.date(2024, 3, 1)),
        ("2024-03-01 10:00:00.129", dt.date(2024, 3, 1)),
        ("2024-02-30", None),
        ("2024-03-01Tgarbage", None),
        ("20240301", None),
        ("2024-W09-5", None),
        ("01/03/2024", None),
        ("", None),
        (20240301, None),
        (None, None),
    ],
)
def test_dates_are_iso_dates_or_none(value, expected):
    """Dates are YYYY-MM-DD (or an ISO datetime's date); anything else is None."""
    result = doc_campaign(startDate=value, endDate=value)
    assert (expected, expected) == (result.start_date, result.end_date)


def test_non_finite_numbers_do_not_crash():
    """NaN and Infinity where integers or flags are expected read as invalid values."""
    body = (
        b'{"status": "CampaignEnded", "autoAddDevicesFlag": NaN, "campaignName": Infinity,'
        b' "campaignTimeWindowList": [{"startTime": NaN, "endTime": Infinity},'
        b' {"startTime": -Infinity, "endTime": 1e400}]}'
    )
    expected = Campaign(account=ACCOUNT, campaign_id=CAMPAIGN_ID, status="CampaignEnded")
    assert expected == parse_campaign(body, account=ACCOUNT, campaign_id=CAMPAIGN_ID)


def test_utf8_bom_is_tolerated():
    """A UTF-8 byte-order mark before the JSON is skipped."""
    body = b"\xef\xbb\xbf" + json.dumps(DOC_CAMPAIGN).encode()
    assert parse_campaign(body, account=ACCOUNT, campaign_id=CAMPAIGN_ID) == DOC_RESULT


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        json.dumps(DOC_CAMPAIGN).encode()[:-20],
        b'{"status": "CampaignEnded"',
        b'{"status": "Campaign\xff\xfeEnded"}',
        "{}".encode("utf-16"),
        b"[]",
        b'"CampaignEnded"',
        b"null",
        b"42",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"status": "CampaignEnded", "x": "' + b"a" * wire.MAX_BODY_BYTES + b'"}',
        b'{"status": "CampaignEnded", "n": ' + b"9" * 5000 + b"}",
    ],
    ids=[
        "empty",
        "html-502",
        "truncated",
        "unterminated",
        "not-utf8",
        "utf16",
        "array",
        "string",
        "null",
        "number",
        "deep-arrays",
        "deep-objects",
        "over-size-cap",
        "huge-integer",
    ],
)
def test_undecodable_bodies_are_invalid_responses(body):
    """Anything that is not a UTF-8 JSON object within the caps is an InvalidResponseError."""
    with pytest.raises(InvalidResponseError):
        parse_campaign(body, account=ACCOUNT, campaign_id=CAMPAIGN_ID)


# --- parse_error: classification, codes, messages ----------------------------------------


def fault(code: Any) -> dict[str, Any]:
    return {"fault": {"code": code, "message": SECRET_TEXT, "description": SECRET_TEXT}}


def uws(code: str) -> dict[str, Any]:
    return {"errorCode": code, "errorMessage": SECRET_TEXT}


def oauth(code: str) -> dict[str, Any]:
    return {"error": code, "error_description": SECRET_TEXT}


EXPIRED = "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired"
HTML_502 = b"<html><body><h1>502 Bad Gateway</h1>SECRET-MARKER</body></html>"
XML_FAULT = (
    b'<ams:fault xmlns:ams="http://wso2.org/apimanager/security"><ams:code>900901</ams:code>'
    b"<ams:message>Invalid Credentials</ams:message></ams:fault>"
)


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (429, None, RateLimitedError, None),
        (429, fault("900800"), RateLimitedError, "900800"),
        (503, fault(900800), RateLimitedError, "900800"),
        (400, fault("900807"), RateLimitedError, "900807"),
        (401, fault(900901), AuthError, "900901"),
        (401, fault("900901"), AuthError, "900901"),
        (401, fault(900902.0), AuthError, "900902"),
        (403, fault("900903"), AuthError, "900903"),
        (401, XML_FAULT, AuthError, "900901"),
        (401, None, AuthError, None),
        (401, oauth("invalid_client"), AuthError, "invalid_client"),
        (400, uws(EXPIRED), AuthError, EXPIRED),
        (401, uws(EXPIRED), AuthError, EXPIRED),
        (
            400,
            uws("UnifiedWebService.INPUT_INVALID.SessionToken.Invalid"),
            AuthError,
            "UnifiedWebService.INPUT_INVALID.SessionToken.Invalid",
        ),
        (
            400,
            uws("REQUEST_FAILED.SessionToken.Format"),
            AuthError,
            "REQUEST_FAILED.SessionToken.Format",
        ),
        (400, uws("SessionToken.Expired"), AuthError, "SessionToken.Expired"),
        (400, uws("XSessionToken.Expired"), ClientError, "XSessionToken.Expired"),
        (404, None, CampaignMissingError, None),
        (404, uws("NOT_FOUND"), CampaignMissingError, "NOT_FOUND"),
        (400, uws("INVALID_PARAMETER"), CampaignMissingError, "INVALID_PARAMETER"),
        (422, uws("INVALID_PARAMETER"), ClientError, "INVALID_PARAMETER"),
        (
            400,
            uws("UnifiedWebService.REQUEST_FAILED.AccountNotFound"),
            ClientError,
            "UnifiedWebService.REQUEST_FAILED.AccountNotFound",
        ),
        (400, fault("900906"), ClientError, "900906"),
        (400, oauth("invalid_request"), ClientError, "invalid_request"),
        (403, fault("900908"), ClientError, "900908"),
        (403, None, ClientError, None),
        (408, b"", ClientError, None),
        (500, None, ServerError, None),
        (500, b"", ServerError, None),
        (502, HTML_502, ServerError, None),
        (503, uws("SERVICE_UNAVAILABLE"), ServerError, "SERVICE_UNAVAILABLE"),
        (599, b"\xff\x00", ServerError, None),
        (302, b"", InvalidResponseError, None),
        (200, b"{}", InvalidResponseError, None),
    ],
)
def test_errors_are_classified(status, body, kind, code):
    """Status, fault code and errorCode decide the error type; the code is kept."""
    err = error(status, body)
    assert (type(err), err.status, err.code) == (kind, status, code)


@pytest.mark.parametrize(
    "body",
    [
        fault("900901"),
        fault(900901),
        uws(EXPIRED),
        uws("INVALID_PARAMETER"),
        oauth("invalid_grant"),
    ],
)
@pytest.mark.parametrize("status", [400, 401, 404, 429, 500])
def test_messages_never_carry_api_text(status, body):
    """The API's message/description text never reaches str(err) or its args."""
    err = error(status, body)
    assert SECRET_TEXT not in str(err)
    assert "SECRET-MARKER" not in repr(err.args)


@pytest.mark.parametrize(
    ("status", "body", "hdrs", "message"),
    [
        (400, uws(EXPIRED), {}, f"HTTP 400 {EXPIRED}"),
        (401, fault(900901), {}, "HTTP 401 900901"),
        (502, HTML_502, {"Server": "nginx SECRET-MARKER"}, "HTTP 502"),
        (429, None, {"Retry-After": "30"}, "HTTP 429 (retry after 30s)"),
        (429, None, {"Retry-After": "soon SECRET-MARKER"}, "HTTP 429"),
        (503, fault("900800"), {"Retry-After": "2.5"}, "HTTP 503 900800 (retry after 2.5s)"),
    ],
)
def test_message_is_status_code_and_retry_after_only(status, body, hdrs, message):
    """A message holds the HTTP status, the code and a parsed Retry-After: nothing else."""
    assert message == str(error(status, body, hdrs))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("A\nB C<script>", "A_B_C_script_"),
        ("x\r\nlevel=critical", "x__level_critical"),
        ("Ünïcode.Code", "_n_code.Code"),
        ("  padded  ", "padded"),
        ("C" * 5000, "C" * wire.MAX_CODE_CHARS),
    ],
)
def test_codes_are_sanitised_and_capped(raw, expected):
    """Codes keep only [A-Za-z0-9._-] (others become '_') and at most MAX_CODE_CHARS."""
    err = error(400, uws(raw))
    assert (expected, f"HTTP 400 {expected}") == (err.code, str(err))


@pytest.mark.parametrize("code", [None, True, [], {"a": 1}, "", "   ", 1.5, float("nan")])
def test_unusable_codes_fall_back_to_the_next_shape(code):
    """A fault code that is not a string or integer is skipped for the errorCode beside it."""
    body = json.dumps({"fault": {"code": code}, "errorCode": "NEXT"}).encode()
    assert parse_error(400, body, {}).code == "NEXT"


@pytest.mark.parametrize(
    ("hdrs", "expected"),
    [
        ({}, None),
        ({"Retry-After": "120"}, 120.0),
        ({"retry-after": "7"}, 7.0),
        ({"RETRY-AFTER": "7"}, 7.0),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "Mon, 01 Jan 2024 00:01:00 GMT"}, 60.0),
        ({"Retry-After": "Sun, 31 Dec 2023 23:00:00 GMT"}, 0.0),
        ({"Retry-After": "garbage"}, None),
    ],
)
def test_rate_limited_carries_retry_after(hdrs, expected):
    """429 takes Retry-After as seconds or an HTTP-date, case-insensitively; garbage is None."""
    err = error(429, None, hdrs)
    assert isinstance(err, RateLimitedError)
    assert expected == err.retry_after


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        (None, NOW, None),
        ("", NOW, None),
        ("0", NOW, 0.0),
        (" 5 ", NOW, 5.0),
        ("1.5", NOW, 1.5),
        ("-3", NOW, 0.0),
        ("1e3", NOW, None),
        ("9" * 100, NOW, None),
        ("Mon, 01 Jan 2024 00:01:00 GMT", NOW, 60.0),
        ("Mon, 01 Jan 2024 00:01:00 GMT", NOW.replace(tzinfo=None), 60.0),
        ("Mon, 01 Jan 2024 00:01:00 +0100", NOW, 0.0),
        ("Mon, 01 Jan 2024 00:01:00 GMT", None, None),
        ("Mon, 45 Foo 2024 99:99:99 GMT", NOW, None),
        ("tomorrow", NOW, None),
    ],
)
def test_parse_retry_after(value, now, expected):
    """Delta-seconds or HTTP-date relative to ``now``; negative -> 0; unparseable -> None."""
    assert expected == parse_retry_after(value, now)


@pytest.mark.parametrize(
    ("err", "session", "token"),
    [
        (AuthError(f"HTTP 400 {EXPIRED}", status=400, code=EXPIRED), True, False),
        (AuthError(f"HTTP 401 {EXPIRED}", status=401, code=EXPIRED), True, False),
        (AuthError("HTTP 401 900901", status=401, code="900901"), False, True),
        (AuthError("HTTP 403 900902", status=403, code="900902"), False, True),
        (AuthError("HTTP 401", status=401), False, True),
        (LoginRejectedError("HTTP 401", status=401), False, False),
        (LoginCircuitOpenError("login suspended"), False, False),
        (
            ClientError(
                "HTTP 400 X.SessionToken.Expired", status=400, code="X.SessionToken.Expired"
            ),
            False,
            False,
        ),
        (ServerError("HTTP 401", status=401), False, False),
        (ValueError("x"), False, False),
    ],
)
def test_session_and_token_errors_are_told_apart(err, session, token):
    """Session errors mean log in again; token errors mean refresh the bearer; never both."""
    assert (session, token) == (is_session_error(err), is_token_error(err))


def test_session_suffixes_are_exported():
    """The three SessionToken suffixes are public for the auth module."""
    assert (wire.SESSION_ERROR_SUFFIXES) == (
        "SessionToken.Expired",
        "SessionToken.Invalid",
        "SessionToken.Format",
    )


# --- auth responses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        (3600, 3600.0),
        (1800, 1800.0),
        ("1800", 1800.0),
        (" 59.5 ", 59.5),
        (None, 3600.0),
        (0, 0.0),
        (-5, 0.0),
        ("-5", 0.0),
        (7200, 3600.0),
    ],
)
def test_token_lifetime(expires_in, expected):
    """expires_in: int or numeric string, clamped to 0..3600; absent/null means one hour."""
    body = json.dumps({"access_token": "tok-123", "token_type": "Bearer", "expires_in": expires_in})
    assert ("tok-123", expected) == parse_token(body.encode())


def test_token_without_expires_in_lasts_an_hour():
    """A token response without expires_in is taken as the documented one-hour lifetime."""
    assert parse_token(b'{"access_token": "tok"}') == ("tok", 3600.0)


@pytest.mark.parametrize(
    "body",
    [
        b'{"access_token": "TOKSECRET", "expires_in": "soon"}',
        b'{"access_token": "TOKSECRET", "expires_in": NaN}',
        b'{"access_token": "TOKSECRET", "expires_in": Infinity}',
        b'{"access_token": "TOKSECRET", "expires_in": true}',
        b'{"access_token": "TOKSECRET", "expires_in": [3600]}',
        b'{"expires_in": 3600}',
        b'{"access_token": "", "expires_in": 3600}',
        b'{"access_token": 12345, "expires_in": 3600}',
        b'{"access_token": "TOK SECRET", "expires_in": 3600}',
        b'{"access_token": "TOKSECRET\\r\\nX-Evil: 1", "expires_in": 3600}',
        b'{"access_token": "T\xc3\xb6KSECRET"}',
        b'{"error": "invalid_client"}',
        b"[]",
        b"<html>",
    ],
)
def test_invalid_token_responses(body):
    """Missing, empty, header-unsafe tokens or non-numeric lifetimes are invalid; no echo."""
    with pytest.raises(InvalidResponseError) as info:
        parse_token(body)
    assert "SECRET" not in str(info.value)


def test_session_token_is_read():
    """The M2M login response yields its sessionToken."""
    body = b'{"sessionToken": "bcce3ea6-fe4f-4952-bacf-eadd80718e83"}'
    assert parse_session(body) == "bcce3ea6-fe4f-4952-bacf-eadd80718e83"


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"sessionToken": null}',
        b'{"sessionToken": ""}',
        b'{"sessionToken": 42}',
        b'{"sessionToken": "a\\nb"}',
        b'{"token": "abc"}',
        b'["abc"]',
        b"",
    ],
)
def test_invalid_session_responses(body):
    """A login response without a header-safe sessionToken is invalid."""
    with pytest.raises(InvalidResponseError):
        parse_session(body)


# --- device pages and campaign history -------------------------------------------------


DOC_DEVICES = {
    "totalDevice": 2689,
    "hasMoreData": True,
    "lastSeenDeviceId": "15-digit IMEI",
    "maxPageSize": 1000,
    "deviceList": [
        {
            "deviceId": "990013907835573",
            "status": "UpgradePending",
            "resultReason": "Upgrade pending, estimated to be scheduled for 06 Oct 22 18:05 UTC",
            "updatedTime": "2022-08-05T21:05:27.129Z",
        },
        {"deviceId": 990013907884259, "status": "UpgradeSuccess"},
        {"deviceId": "990013907884260", "status": "NoDeviceDataFromNetwork"},
    ],
}


def test_device_page_example():
    """The documented device report parses to a page of (device id, status) pairs."""
    expected = DevicePage(
        total_device=2689,
        has_more=True,
        last_seen_device_id="15-digit IMEI",
        devices=(
            ("990013907835573", "UpgradePending"),
            ("990013907884259", "UpgradeSuccess"),
            ("990013907884260", "NoDeviceDataFromNetwork"),
        ),
    )
    assert expected == parse_device_page(json.dumps(DOC_DEVICES).encode())


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"hasMoreData": "TRUE"}, (2689, True, "15-digit IMEI")),
        ({"hasMoreData": "no"}, (2689, False, "15-digit IMEI")),
        ({"hasMoreData": None, "totalDevice": -1}, (None, False, "15-digit IMEI")),
        ({"totalDevice": "12", "lastSeenDeviceId": 990013907884260}, (12, True, "990013907884260")),
        ({"totalDevice": 1.5, "lastSeenDeviceId": ""}, (None, True, None)),
        ({"totalDevice": True, "lastSeenDeviceId": [1]}, (None, True, None)),
    ],
)
def test_device_page_tolerates_variants(changes, expected):
    """String booleans, numeric ids and wrong types degrade to defaults instead of failing."""
    page = parse_device_page(json.dumps({**DOC_DEVICES, **changes}).encode())
    assert expected == (page.total_device, page.has_more, page.last_seen_device_id)


def test_device_page_skips_unusable_entries():
    """Entries without a device id or status are skipped; statuses are capped and kept open."""
    entries = [
        {"status": "UpgradeSuccess"},
        {"deviceId": "1"},
        {"deviceId": "2", "status": ""},
        {"deviceId": None, "status": "X"},
        "990013907884259",
        {"deviceId": "3", "status": "S" * 1000},
        {"deviceId": "4", "status": "BrandNewStatus"},
    ]
    page = parse_device_page(json.dumps({"deviceList": entries}).encode())
    expected = (("3", "S" * wire.MAX_STATUS_CHARS), ("4", "BrandNewStatus"))
    assert (expected, False, None) == (page.devices, page.has_more, page.total_device)


@pytest.mark.parametrize("value", [None, "x", {"deviceId": "1", "status": "X"}])
def test_device_list_of_wrong_type_is_empty(value):
    """A deviceList that is not a list gives an empty page."""
    assert parse_device_page(json.dumps({"deviceList": value}).encode()).devices == ()


def test_campaign_history_page():
    """History entries become Campaigns of the requested account; unusable ones are skipped."""
    entries = [
        {k: v for k, v in DOC_CAMPAIGN.items() if not k.startswith("auto")},
        {
            "id": "9a3e1f2c-0000-11ec-8c44-aeb16d1aa652",
            "status": "CampaignQueued",
            "accountName": "someone-else",
        },
        {"id": "no-status"},
        {"status": "CampaignEnded"},
        {"id": "../../admin", "status": "CampaignEnded"},
        {"id": 12345, "status": "CampaignEnded"},
        ["not", "an", "object"],
    ]
    body = {"hasMoreData": "true", "lastSeenCampaignId": "9a3e", "campaignList": entries}
    page = parse_campaign_history(json.dumps(body).encode(), account=ACCOUNT)
    second = Campaign(
        account=ACCOUNT,
        campaign_id="9a3e1f2c-0000-11ec-8c44-aeb16d1aa652",
        status="CampaignRequestQueued",
    )
    documented = Campaign(
        **{
            **{f: getattr(DOC_RESULT, f) for f in DOC_RESULT.__slots__},
            "auto_assign_license": None,
            "auto_add_devices": None,
        }
    )
    assert (
        CampaignHistoryPage(
            has_more=True, last_seen_campaign_id="9a3e", campaigns=(documented, second)
        )
        == page
    )


def test_empty_campaign_history():
    """An empty object is a last, empty page."""
    expected = CampaignHistoryPage(has_more=False, last_seen_campaign_id=None, campaigns=())
    assert expected == parse_campaign_history(b"{}", account=ACCOUNT)


# --- properties --------------------------------------------------------------------------


def parse_or_reject(body: bytes) -> Campaign | None:
    try:
        return parse_campaign(body, account=ACCOUNT, campaign_id=CAMPAIGN_ID)
    except InvalidResponseError:
        return None


@FUZZ
@given(campaign_objects())
def test_valid_campaigns_always_parse(obj):
    """Every documented-shape campaign parses, under the requested key, status normalised."""
    result = parse_campaign(json.dumps(obj).encode(), account=ACCOUNT, campaign_id=CAMPAIGN_ID)
    expected_status = normalise_status(obj["status"].strip()[: wire.MAX_STATUS_CHARS])
    assert (ACCOUNT, CAMPAIGN_ID, expected_status) == (
        result.account,
        result.campaign_id,
        result.status,
    )


@FUZZ
@given(campaign_bodies())
def test_valid_campaign_time_windows_round_trip(body):
    """Valid time windows survive parsing in order, from whichever key holds them."""
    obj = json.loads(body)
    raw = obj.get("campaignTimeWindowList", obj.get("timeWindowList", []))
    expected = tuple(TimeWindow(start_hour=w["startTime"], end_hour=w["endTime"]) for w in raw)
    assert expected == parse_campaign(body, account=ACCOUNT, campaign_id=CAMPAIGN_ID).time_windows


@FUZZ
@given(near_valid_campaign_bodies() | hostile_bodies())
def test_parse_campaign_returns_campaign_or_invalid_response(body):
    """Near-valid and hostile bodies give a Campaign or InvalidResponseError, nothing else."""
    result = parse_or_reject(body)
    assert result is None or isinstance(result, Campaign)


@FUZZ
@given(near_valid_campaign_bodies() | hostile_bodies())
def test_other_parsers_only_raise_invalid_response(body):
    """The page, token and session parsers reject bad bodies only with InvalidResponseError."""
    for parse in (parse_device_page, parse_token, parse_session):
        with contextlib.suppress(InvalidResponseError):
            parse(body)
    with contextlib.suppress(InvalidResponseError):
        parse_campaign_history(body, account=ACCOUNT)


@FUZZ
@given(st.integers(400, 599), error_bodies(), headers(), st.sampled_from([NOW, None]))
def test_parse_error_always_returns_a_clean_api_error(status, body, hdrs, now):
    """Any 4xx/5xx with any body yields an ApiError whose message is status + clean code."""
    err = parse_error(status, body, hdrs, now=now)
    assert isinstance(err, ApiError)
    assert status == err.status
    assert err.code is None or CODE_CHARS.fullmatch(err.code)
    assert MESSAGE_MARKER not in str(err)
    assert str(err).startswith(f"HTTP {status}")


@FUZZ
@given(retry_after_values(), st.sampled_from([NOW, None]))
def test_retry_after_is_none_or_non_negative(value, now):
    """parse_retry_after never raises and never returns a negative delay."""
    result = parse_retry_after(value, now)
    assert result is None or result >= 0.0
