"""Hostile input at every door: the config file, the wire (through store and renderers), and the
HTTP port of the real daemon. A clear error, bounded time and memory, and nothing served or
logged that a client should not see.

The wire parser itself is fuzzed in ``test_wire.py`` and end to end over loopback in
``test_poller_fuzz.py``; here hostile campaigns are followed further, into SQLite, Slack and the
webhook. The hypothesis profile (``conftest.py``) makes every run replay the same examples.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import campaign_objects, json_values, near_valid_campaign_objects, to_body
from support import ACCOUNT, DaemonProcess, daemon_process, stored_status, wait_for, write_config

from fotawatch import statemachine
from fotawatch.alerts.payloads import transition_payload
from fotawatch.alerts.render import (
    render_console,
    render_slack,
    render_webhook,
    validate_slack_message,
)
from fotawatch.codec import campaign_from_dict, campaign_to_dict
from fotawatch.config import MAX_BYTES, Settings, _yaml, parse_settings
from fotawatch.errors import ConfigError, InvalidResponseError
from fotawatch.model import Campaign
from fotawatch.simulator import Scenario, Simulator
from fotawatch.store.base import OutboxMessage, PollRecord
from fotawatch.store.sqlite import SqliteStore
from fotawatch.thingspace.wire import parse_campaign

CID = "a0a1e000-0000-4000-8000-0000000000a0"
SECRET = "pw-Fz-91-hostile"  # a password the loader must never echo
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MINIMAL: dict[str, Any] = {
    "thingspace": {"client_id": "id", "client_secret": "cs", "username": "u", "password": SECRET},
    "campaigns": [{"account": ACCOUNT, "id": CID}],
}

# --- the config loader: hostile documents, measured in a fresh process -------------------


def _laughs(levels: int = 9, fan: int = 10) -> str:
    lines = ['l0: &l0 "lol"']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


HOSTILE_CONFIGS: dict[str, tuple[str | bytes, float, float]] = {
    # name: (document, max seconds, max MB of peak RSS above a valid config's)
    "billion laughs": (_laughs(), 2.0, 20.0),
    "50 MB file": (b"a: b\n" * 10_000_000, 2.0, 20.0),
    "deep flow nesting": ("a: " + "[" * 400_000 + "]" * 400_000, 5.0, 20.0),
    "deep block nesting": ("".join(" " * i + "k:\n" for i in range(1400)), 2.0, 20.0),
    # a megabyte of tiny nodes: refused once 100,000 are composed (pure-Python PyYAML: seconds)
    "262k list items": ("a:\n" + "- 1\n" * (MAX_BYTES // 4 - 1), 15.0, 100.0),
    "110k keys": ("".join(f"k{i}: 1\n" for i in range(110_000))[:MAX_BYTES], 15.0, 100.0),
    "1 MB scalar": (yaml.safe_dump({**MINIMAL, "junk": "x" * (MAX_BYTES - 200)}), 5.0, 20.0),
    "random bytes": (os.urandom(MAX_BYTES), 2.0, 20.0),
    "1 MB key": (yaml.safe_dump(MINIMAL) + "? " + "k" * (MAX_BYTES - 500) + "\n: 1\n", 5.0, 80.0),
    "NUL characters": (yaml.safe_dump(MINIMAL) + "name: a\x00b\n", 2.0, 20.0),
    "wrong types everywhere": (
        ("thingspace: [1, 2]\npolling: {interval_seconds: fast}\ncampaigns: 'all'\n"
         "state_path: {a: 1}\nmetrics: {listen: 99999}\nalerts: 5\n"), 2.0, 20.0),
}  # fmt: skip


# ``fotawatch check-config`` in a fresh interpreter that reports its peak RSS (VmHWM: per process
# image, unlike ru_maxrss, which on Linux carries the forking parent's peak over into the child).
_CHILD = """
import os, sys
from fotawatch.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM"))
    with open(os.environ["FOTAWATCH_TEST_PEAK_FILE"], "w") as out:
        out.write(peak)
sys.exit(code)
"""


def _check_config(path: Path) -> tuple[int, str, float, float]:
    """``fotawatch check-config``: (exit code, stderr, seconds, peak RSS in MB)."""
    peak = path.with_suffix(".peak")
    env = {**os.environ, "FOTAWATCH_TEST_PEAK_FILE": str(peak)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "check-config", "--config", str(path)],
        capture_output=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    stderr = done.stderr.decode(errors="replace")
    return done.returncode, stderr, seconds, int(peak.read_text()) / 1024


@pytest.fixture(scope="module")
def baseline_rss(tmp_path_factory: pytest.TempPathFactory) -> float:
    path = tmp_path_factory.mktemp("valid") / "fotawatch.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "state_path": str(path.parent / "s.db")}))
    path.chmod(0o600)
    code, err, _, rss = _check_config(path)
    assert 0 == code, err
    return rss


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HOSTILE_CONFIGS))
def test_hostile_config_is_one_clear_error_in_bounded_time_and_memory(
    tmp_path: Path, baseline_rss: float, name: str
) -> None:
    """check-config on a hostile document: exit 78, one line, within its time and memory."""
    document, max_seconds, max_mb = HOSTILE_CONFIGS[name]
    path = tmp_path / "fotawatch.yaml"
    path.write_bytes(document if isinstance(document, bytes) else document.encode())
    path.chmod(0o600)
    code, err, seconds, rss = _check_config(path)
    assert (78, 1) == (code, len(err.strip().splitlines())), err[:500]
    assert err.startswith("fotawatch: config error:")
    assert "Traceback" not in err
    assert SECRET not in err
    assert seconds < max_seconds, f"{name}: {seconds:.1f} s"
    assert rss - baseline_rss < max_mb, f"{name}: peak RSS {rss:.0f} MB vs {baseline_rss:.0f} MB"


# --- the config loader: anything anywhere -------------------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replace(copy[path[0]], path[1:], value)
    return copy


FULL: dict[str, Any] = {
    **MINIMAL,
    "polling": {"interval_seconds": 60, "jitter_seconds": 5},
    "state_path": "state.db",
    "metrics": {"listen": "127.0.0.1:0"},
    "alerts": {"slack": {"webhook_url": "https://hooks.example/T/B/x"}, "api_down_after": "5m",
               "stuck_after": {"CampaignRequestPending": "2h"}},
}  # fmt: skip
MUTABLE = [p for p in _paths(FULL) if p != ("thingspace", "password")]


@given(path=st.sampled_from(MUTABLE), value=json_values | st.text(max_size=200))
def test_any_value_at_any_key_is_settings_or_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, path: tuple[Any, ...], value: Any
) -> None:
    """Whatever sits at whatever key: valid Settings or one ConfigError, never the password."""
    text = yaml.safe_dump(_replace(FULL, path, value), allow_unicode=True)
    base = tmp_path_factory.getbasetemp()
    try:
        result: Settings | ConfigError = parse_settings(text, environ={}, base_dir=base)
    except ConfigError as err:
        result = err
    message = str(result) if isinstance(result, ConfigError) else ""
    assert SECRET not in message
    assert "\n" not in message


@given(st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
def test_any_text_is_settings_or_a_config_error(text: str) -> None:
    """Arbitrary text as a config file: a ConfigError (or, rarely, Settings), nothing else."""
    with contextlib.suppress(ConfigError):
        parse_settings(text, environ={}, base_dir=Path("/nonexistent"))


# --- the config loader: libyaml's fast path reads what the pure-Python loader reads -------

LIBYAML = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")
_CAMPAIGNS = yaml.safe_dump({**MINIMAL, "campaigns": [
    {"account": ACCOUNT, "id": f"a0a1e000-0000-4000-8000-{i:012d}"} for i in range(300)]})
_WIDE_BOMB = "l0: &l0 x\n" + "".join(f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]\n" for i in range(1, 51))
_MERGES = """\
defaults: &d {interval_seconds: 60, jitter_seconds: 5}
polling: {<<: *d, jitter_seconds: 1}
l: &l [a, b]
m: [*l, *l]
"""
_STYLES = """\
a: |
  line
  two
b: >-
  folded
  text
c: 'it''s'
d: "\\u00e9\\n"
e: ~
f: [1, 1.5, true, 2001-12-14, 0x1F, on]
g: <!here> ?x #c
"""
LOADER_DOCUMENTS: dict[str, tuple[str, bool]] = {
    # name: (document, read by the libyaml fast path)
    "300 campaigns": (_CAMPAIGNS, True),
    "anchors and merge keys": (_MERGES, True),
    "scalars of every style": (_STYLES, True),
    "CRLF and Unicode line breaks": ("a: 1\r\nb: [x,\r\n  y]\r\nc: d\u2028e: f\x85", True),
    "billion laughs": (_laughs(), False),
    "2^50 nodes through 100 aliases": (_WIDE_BOMB, False),
    "101 aliases": ("a: &a x\nb: [" + ", ".join(["*a"] * 101) + "]\n", False),
    "100,001 nodes": ("a: [" + "1, " * 100_000 + "]\n", False),
    "65 levels": ("a: " + "[" * 64 + "]" * 64 + "\n", False),
    "65 levels through aliases": ("a: &a " + "[" * 40 + "x" + "]" * 40 + "\nb: " + "[" * 40
                                  + "*a" + "]" * 40 + "\n", False),
    "recursive alias": ("a: &a [*a]\n", False),
    "undefined alias": ("a: *nope\n", False),
    "duplicate anchor": ("a: &x 1\nb: &x 2\n", False),
    "duplicate key": ("a: 1\nb: {c: 1, c: 2}\n", False),
    "non-string key": ("a: {1: x}\n", False),
    "two documents": ("a: 1\n---\nb: 2\n", False),
    "no document": ("# nothing\n", False),
    "syntax error": ("a: [\n", False),
    "date out of range": ("a: 2001-13-01\n", False),  # the pure loader's ConfigError
    # where libyaml 0.2.5 and PyYAML's pure-Python scanner differ, the pure-Python one decides
    "tab between tokens": ("a:\tb\n", False),
    "? in a flow scalar": ("a: {b: c?}\n", False),
    "empty tag before a comma": ("a: [!,x]\n", False),
    "explicit tag": ("a: !!str 1\n", False),
    "comment on a block scalar header": ("a: |#\n  x\n", False),
    "byte-order mark inside": ("a: 1\n\ufeffb: 2\n", False),
    "directive": ("%YAML 1.1\n---\na: 1\n", False),
    "control character": ("a: \x07\n", False),
}  # fmt: skip


def _outcome(text: str) -> str:
    """The data parse_yaml reads, or the exception it raises, as comparable text."""
    try:
        return repr(_yaml.parse_yaml(text, "<config>"))
    except Exception as err:
        return repr((type(err), getattr(err, "key", None), str(err)))


def _pure_outcome(text: str) -> str:
    with pytest.MonkeyPatch.context() as patch:  # as when PyYAML has no libyaml
        patch.setattr(_yaml, "_CLoader", None)
        return _outcome(text)


@LIBYAML
@pytest.mark.parametrize("name", list(LOADER_DOCUMENTS))
def test_libyaml_fast_path_reads_as_the_pure_python_loader(name: str) -> None:
    """The same data or the same error, to the character, through libyaml or pure Python; the
    fast path reads ordinary documents and leaves hostile or ambiguous ones to pure Python."""
    document, fast = LOADER_DOCUMENTS[name]
    assert _pure_outcome(document) == _outcome(document)
    assert fast == (_yaml._fast_load(document) is not _yaml._REFUSED)


@LIBYAML
@given(st.text(st.sampled_from(list(" \n\r:-?[]{},#&*!|>'\"%@`\tab01.é\u2028")), max_size=80)
       | json_values.map(lambda value: yaml.safe_dump(value, default_flow_style=None)))
def test_any_text_reads_the_same_through_libyaml_and_pure_python(text: str) -> None:
    """Arbitrary text: libyaml's fast path and the pure-Python loader agree on data or error."""
    assert _pure_outcome(text) == _outcome(text)


# --- hostile campaigns through the store and the renderers --------------------------------

INJECTIONS = ["<!channel>", "<!here|x>", "<@U123>", "&lt;", "```", "*bold* _it_ ~s~",
              "\u202eRTL", "a\u0000b", "\ufeff", "😀" * 400, "x" * 5000,
              "<https://evil.example|click>"]  # fmt: skip
hostile_text = st.text(max_size=300) | st.sampled_from(INJECTIONS)


@st.composite
def hostile_campaigns(draw: st.DrawFn) -> dict[str, Any]:
    obj = draw(campaign_objects() | near_valid_campaign_objects())
    for key in draw(st.lists(st.sampled_from(["campaignName", "firmwareFrom", "firmwareTo",
                                              "make", "model", "status", "protocol"]),
                             unique=True, max_size=4)):  # fmt: skip
        obj[key] = draw(hostile_text)
    return obj


def _mrkdwn(node: Any) -> Iterator[str]:
    """Every string of a Slack message that Slack parses for mentions and links."""
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            yield from _mrkdwn(value)
    elif isinstance(node, list):
        for value in node:
            yield from _mrkdwn(value)


def _parse(obj: dict[str, Any], campaign_id: str = CID) -> Campaign | None:
    try:
        return parse_campaign(to_body(obj), account=ACCOUNT, campaign_id=campaign_id)
    except InvalidResponseError:
        return None


@given(hostile_campaigns())
def test_hostile_campaign_renders_valid_and_inert_alerts(obj: dict[str, Any]) -> None:
    """A parsed hostile campaign: a valid Slack message that pings nobody, clean JSON."""
    campaign = _parse(obj)
    if campaign is None:
        return
    transition = statemachine.observe("CampaignRequestPending", 0, campaign, NOW)
    if transition is None:
        return
    payload = transition_payload(transition, name=None)
    body = render_slack([payload])
    assert [] == validate_slack_message(body)
    texts = [body["text"], *_mrkdwn(body["blocks"])]
    assert not any("<!" in t or "<@" in t or "<http" in t for t in texts), texts
    json.dumps(render_webhook([payload]), allow_nan=False)
    assert render_console(payload)
    assert campaign == campaign_from_dict(json.loads(json.dumps(campaign_to_dict(campaign))))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[asyncio.Runner, SqliteStore]]:
    with asyncio.Runner() as runner:
        opened = runner.run(SqliteStore.open(tmp_path / "state.db"))
        yield runner, opened
        runner.run(opened.close())


_IDS = itertools.count()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile_campaigns())
def test_hostile_campaign_survives_the_store(
    store: tuple[asyncio.Runner, SqliteStore], obj: dict[str, Any]
) -> None:
    """Recorded and read back from SQLite unchanged: the transition and its outbox payload."""
    runner, db = store
    campaign_id = f"hostile-{next(_IDS)}"  # every example its own campaign, shrinks included
    campaign = _parse(obj, campaign_id)
    if campaign is None:
        return
    transition = statemachine.observe("CampaignRequestPending", 0, campaign, NOW)
    if transition is None:
        return
    payload = transition_payload(transition, name=None)
    key = f"transition:{campaign_id}"
    message = OutboxMessage(sink="slack", dedup_key=key, payload=payload, created_at=NOW)
    poll = PollRecord(key=campaign.key, polled_at=NOW, result="ok", campaign=campaign,
                      transition=transition)  # fmt: skip
    runner.run(db.record([poll], [message]))
    (stored,) = runner.run(db.transitions(campaign_id, account=ACCOUNT))
    assert (transition.to_status, transition.campaign) == (stored.to_status, stored.campaign)
    rows = [r for r in runner.run(db.outbox_rows("slack")) if r["dedup_key"] == key]
    assert [json.loads(json.dumps(payload))] == [r["payload"] for r in rows]


# --- the real daemon's HTTP port ------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line.split()[1] for line in lines if line.startswith("VmRSS"))) / 1024


def _fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


async def _raw(port: int, data: bytes, *, read: bool = True) -> bytes:
    """Send raw bytes, return whatever comes back until the server closes (or 5 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if not read:
            return b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(5):
                return await reader.read(1_000_000)
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


BAD_REQUESTS: dict[str, tuple[bytes, set[int]]] = {
    "huge request line": (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    "huge header": (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n" % (b"b" * 100_000),
                    {400}),
    "300 headers": (b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                    + b"".join(b"X-%d: y\r\n" % i for i in range(300)) + b"\r\n", {400}),
    "garbage bytes": (bytes(range(256)) * 4, {400}),
    "NUL in path": (b"GET /\x00metrics HTTP/1.1\r\nHost: x\r\n\r\n", {400, 404}),
    "path traversal": (b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", {400, 404}),
    "unknown path": (b"GET /admin/secret HTTP/1.1\r\nHost: x\r\n\r\n", {404}),
    "encoded traversal": (b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", {404}),
    "unknown method": (b"BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n", {400, 405}),
    "POST with big body": (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
                           + b"z" * 200_000, {405, 413}),
    "lying chunked body": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\nabc",
        {400, 405, 413}),
    "bad Accept q-values": (
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;q=nan, "
         b"*/*;q=1e999\r\nAccept-Encoding: gzip;q=x\r\n\r\n"), {200}),
    "HTTP/0.9": (b"GET /metrics\r\n\r\n", {200, 400}),
    "bad campaign page": (b"GET /campaigns/%3Cscript%3E%00 HTTP/1.1\r\nHost: x\r\n\r\n",
                          {400, 404}),
    "bad API id": (b"GET /api/v1/campaigns/" + b"%ff" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                   {400, 404}),
}  # fmt: skip


def _status(answer: bytes) -> int:
    head = answer.split(b"\r\n", 1)[0].split()
    return int(head[1]) if len(head) > 1 and head[1].isdigit() else -1


@contextlib.asynccontextmanager
async def _daemon(tmp_path: Path) -> AsyncIterator[tuple[Simulator, DaemonProcess, int]]:
    scenario = {"campaigns": [{"account": ACCOUNT, "id": CID, "status": "CampaignScheduled"}]}
    async with Simulator(Scenario.from_dict(scenario)) as sim:
        config = write_config(tmp_path, sim.url, [{"account": ACCOUNT, "id": CID}],
                              polling={"devices_interval_seconds": 0})  # fmt: skip
        async with daemon_process(config) as d:
            await wait_for(lambda: stored_status(tmp_path / "state.db", CID), 20, what="a poll")
            yield sim, d, d.events("http_listening")[0]["port"]


async def _still_polling(sim: Simulator) -> None:
    seen = sim.stats()["campaign_requests"]
    await wait_for(lambda: sim.stats()["campaign_requests"] >= seen + 2, 10, what="more polls")


async def _get_metrics(port: int) -> float:
    started = time.monotonic()
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        await resp.read()
    return time.monotonic() - started


@pytest.mark.slow
async def test_bad_requests_get_plain_errors_and_the_daemon_keeps_polling(tmp_path: Path) -> None:
    """Huge, malformed and unknown requests: 4xx, never a traceback; polling goes on."""
    async with _daemon(tmp_path) as (sim, d, port):
        assert d.proc is not None
        answers = {name: await _raw(port, data) for name, (data, _) in BAD_REQUESTS.items()}
        await _still_polling(sim)
        assert await d.stop() == 0
    statuses = {name: _status(answer) for name, answer in answers.items()}
    assert {} == {n: s for n, s in statuses.items() if s not in BAD_REQUESTS[n][1]}
    for name, answer in answers.items():
        assert b"Traceback" not in answer, name
        assert b'File "' not in answer, name
    crashes = [e for e in d.events() if e.get("event") == "http_handler_failed" or "exception" in e]
    assert [] == crashes
    assert b"Traceback" not in d.stderr


@pytest.mark.slow
async def test_slowloris_and_a_connection_flood_leave_the_daemon_bounded(tmp_path: Path) -> None:
    """200 slowloris clients, 300 concurrent scrapes: /metrics fast, polling on, fds/RSS bounded."""
    async with _daemon(tmp_path) as (sim, d, port):
        assert d.proc is not None
        pid = d.proc.pid
        rss_before, fds_before = _rss_mb(pid), _fds(pid)
        slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(200)]
        for _, writer in slow:
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        for round_ in range(6):  # a header line every 0.5 s from each, never the blank line
            for _, writer in slow:
                writer.write(b"X-Slow-%d: 1\r\n" % round_)
            await asyncio.sleep(0.5)  # the clients' pace, not a synchronisation
            assert await _get_metrics(port) < 2.0
        peak_fds = _fds(pid)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def scrape() -> int:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    await resp.read()
                    return resp.status

            statuses = await asyncio.gather(*(scrape() for _ in range(300)))
        await _still_polling(sim)
        for _, writer in slow:
            writer.close()
        await wait_for(lambda: _fds(pid) <= fds_before + 5, 10, what="the connections closed")
        rss_after = _rss_mb(pid)
        assert await d.stop() == 0
    assert {200} == set(statuses)
    assert peak_fds >= fds_before + 200  # the slow clients did hold their connections
    assert rss_after - rss_before < 50, f"RSS {rss_before:.0f} -> {rss_after:.0f} MB"
    assert b"Traceback" not in d.stderr
