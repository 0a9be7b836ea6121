"""sd_notify over a real datagram socket, the watchdog loop, and the shipped unit file."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
import structlog
from notify_socket import Notification, NotifyReceiver
from structlog.testing import capture_logs
from tools import run_tool

from fotawatch.config import CREDENTIAL_NAMES
from fotawatch.systemd import Notifier, run_watchdog, watchdog_interval

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "systemd" / "fotawatch.service"
INSTALLED_COMMAND = "/opt/fotawatch/venv/bin/fotawatch"


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def texts(messages: Sequence[Notification]) -> list[str]:
    return [m.text for m in messages]


def pings(messages: Sequence[Notification]) -> list[Notification]:
    return [m for m in messages if m.fields.get("WATCHDOG") == "1"]


@pytest.fixture(params=["path", "abstract"])
async def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[NotifyReceiver]:
    async with NotifyReceiver(tmp_path, abstract=request.param == "abstract") as rx:
        yield rx


@pytest.fixture
def notifier(receiver: NotifyReceiver) -> Iterator[Notifier]:
    with Notifier.from_env(receiver.env) as n:
        yield n


# ---- Notifier -----------------------------------------------------------------------------------


async def test_each_state_arrives_as_one_datagram(
    receiver: NotifyReceiver, notifier: Notifier
) -> None:
    """ready/stopping/watchdog/status each send exactly their KEY=VALUE lines."""
    assert all(
        [notifier.ready(), notifier.watchdog(), notifier.status("polling"), notifier.stopping()]
    )
    messages = await receiver.wait_for(lambda ms: len(ms) == 4, timeout=5)
    assert ["READY=1", "WATCHDOG=1", "STATUS=polling", "STOPPING=1"] == texts(messages)


async def test_ready_can_carry_a_status(receiver: NotifyReceiver, notifier: Notifier) -> None:
    """ready(status) sends READY=1 and STATUS= in the same datagram."""
    notifier.ready("3 campaigns")
    messages = await receiver.wait_for(lambda ms: len(ms) == 1, timeout=5)
    assert ["READY=1\nSTATUS=3 campaigns"] == texts(messages)


async def test_reloading_is_stamped_with_the_monotonic_clock(
    receiver: NotifyReceiver, notifier: Notifier
) -> None:
    """reloading() sends RELOADING=1 with MONOTONIC_USEC taken at the call."""
    before = monotonic_usec()
    notifier.reloading()
    after = monotonic_usec()
    (message,) = await receiver.wait_for(lambda ms: len(ms) == 1, timeout=5)
    assert ["RELOADING", "MONOTONIC_USEC"] == list(message.fields)
    assert before <= int(message.fields["MONOTONIC_USEC"]) <= after


async def test_status_text_cannot_add_fields(receiver: NotifyReceiver, notifier: Notifier) -> None:
    """A newline in a status is flattened, so it cannot smuggle in READY=1 or similar."""
    notifier.status("degraded\nREADY=1")
    (message,) = await receiver.wait_for(lambda ms: len(ms) == 1, timeout=5)
    assert {"STATUS": "degraded READY=1"} == message.fields


async def test_close_then_notify_opens_a_new_socket(
    receiver: NotifyReceiver, notifier: Notifier
) -> None:
    """close() is not terminal: the next message goes out on a fresh socket."""
    notifier.watchdog()
    notifier.close()
    notifier.watchdog()
    await receiver.wait_for(lambda ms: len(ms) == 2, timeout=5)


def test_without_notify_socket_everything_is_a_silent_noop() -> None:
    """No NOTIFY_SOCKET: not enabled, nothing sent, nothing logged."""
    notifier = Notifier.from_env({})
    with capture_logs() as logs:
        results = [notifier.ready(), notifier.reloading(), notifier.watchdog(), notifier.stopping()]
    assert (False, [False] * 4, []) == (notifier.enabled, results, logs)


@pytest.mark.parametrize(
    "address",
    [pytest.param("{tmp}/missing.sock", id="missing-path"), pytest.param("vsock:2:9", id="vsock")],
)
def test_an_unreachable_socket_is_logged_not_raised(tmp_path: Path, address: str) -> None:
    """A send that fails returns False and logs sd_notify_failed as a warning."""
    socket_address = address.format(tmp=tmp_path)
    with capture_logs() as logs, Notifier.from_env({"NOTIFY_SOCKET": socket_address}) as notifier:
        sent = notifier.ready()
    assert (False, ["sd_notify_failed"]) == (sent, [e["event"] for e in logs])
    assert ("warning", socket_address) == (logs[0]["log_level"], logs[0]["socket"])
    assert logs[0]["error"]


def test_the_injected_logger_receives_the_failure(tmp_path: Path) -> None:
    """from_env(logger=...) logs through the given logger, not the global one."""
    environ = {"NOTIFY_SOCKET": str(tmp_path / "nope")}
    with capture_logs() as logs:
        logger = structlog.get_logger().bind(component="systemd")
        with Notifier.from_env(environ, logger=logger) as notifier:
            notifier.watchdog()
    assert [("sd_notify_failed", "systemd")] == [(e["event"], e["component"]) for e in logs]


def test_notify_needs_a_line() -> None:
    """notify() without any KEY=VALUE line is a programming error."""
    with pytest.raises(ValueError, match="at least one"):
        Notifier.from_env({"NOTIFY_SOCKET": "/run/systemd/notify"}).notify()


# ---- watchdog_interval --------------------------------------------------------------------------

PID = 4242


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1"}, 0.0000005),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "-30000000"}, None),
        ({"WATCHDOG_USEC": "30s"}, None),
        ({"WATCHDOG_USEC": " 30000000"}, None),
        ({"WATCHDOG_USEC": "³"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(PID)}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(PID + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "self"}, None),
        ({"WATCHDOG_PID": str(PID)}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    """Half of WATCHDOG_USEC in seconds, only when it is valid and meant for this PID."""
    assert expected == watchdog_interval(environ, pid=PID)


def test_watchdog_interval_defaults_to_this_process() -> None:
    """Without pid=, WATCHDOG_PID is compared with os.getpid()."""
    environ = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert 1.0 == watchdog_interval(environ)


# ---- run_watchdog -------------------------------------------------------------------------------


class HealthSwitch:
    """A health() callable the test flips; it counts checks and signals after unhealthy ones."""

    def __init__(self) -> None:
        self.healthy = True
        self.healthy_checks = 0  # each one is followed by exactly one WATCHDOG=1
        self.unhealthy_checks = 0
        self.withheld_thrice = asyncio.Event()

    def __call__(self) -> bool:
        if self.healthy:
            self.healthy_checks += 1
        else:
            self.unhealthy_checks += 1
            if self.unhealthy_checks >= 3:
                self.withheld_thrice.set()
        return self.healthy


@contextlib.asynccontextmanager
async def watchdog_task(
    notifier: Notifier, interval: float, health: HealthSwitch | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    coro = (
        run_watchdog(notifier, interval)
        if health is None
        else run_watchdog(notifier, interval, health=health)
    )
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_run_watchdog_pings_at_the_interval(
    receiver: NotifyReceiver, notifier: Notifier
) -> None:
    """WATCHDOG=1 arrives once per interval, starting at once."""
    interval = 0.05
    started = asyncio.get_running_loop().time()
    async with watchdog_task(notifier, interval):
        messages = await receiver.wait_for(lambda ms: len(pings(ms)) >= 5, timeout=10)
    first, fifth = messages[0].received_at, messages[4].received_at
    assert first - started < 1.0
    assert fifth - first >= 4 * interval * 0.8
    assert {"WATCHDOG=1"} == set(texts(messages))


async def test_run_watchdog_withholds_pings_while_unhealthy(
    receiver: NotifyReceiver, notifier: Notifier
) -> None:
    """No WATCHDOG=1 while health() is false; pings resume after; each edge is logged once."""
    health = HealthSwitch()
    with capture_logs() as logs:
        async with watchdog_task(notifier, 0.02, health):
            await receiver.wait_for(lambda ms: len(pings(ms)) >= 2, timeout=10)
            health.healthy = False
            sent_while_healthy = health.healthy_checks
            await asyncio.wait_for(health.withheld_thrice.wait(), timeout=10)
            notifier.status("marker")  # datagrams keep their order: earlier pings arrive first
            withheld = await receiver.wait_for(lambda ms: ms[-1].text == "STATUS=marker", 10)
            health.healthy = True
            await receiver.wait_for(lambda ms: len(pings(ms)) >= sent_while_healthy + 2, 10)
    assert sent_while_healthy == len(pings(withheld))
    assert ["watchdog_withheld", "watchdog_resumed"] == [e["event"] for e in logs]
    assert ["warning", "info"] == [e["log_level"] for e in logs]


async def test_run_watchdog_rejects_a_non_positive_interval() -> None:
    """An interval of zero would spin the loop: refused."""
    with pytest.raises(ValueError, match="positive"):
        await run_watchdog(Notifier.from_env({}), 0)


BLOCKING_CHILD = """
import asyncio, signal, time
from fotawatch.systemd import Notifier, run_watchdog

async def main():
    loop = asyncio.get_running_loop()
    # SIGUSR1 wedges the event loop for 1.5 s, as a blocking call in a coroutine would.
    loop.add_signal_handler(signal.SIGUSR1, time.sleep, 1.5)
    await run_watchdog(Notifier.from_env(), 0.1)

asyncio.run(main())
"""


@pytest.mark.slow
async def test_a_blocked_event_loop_stops_the_pings(tmp_path: Path) -> None:
    """Pings come from the event loop: a 1.5 s block leaves a >1 s gap, then they resume."""
    async with NotifyReceiver(tmp_path) as rx:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", BLOCKING_CHILD, cwd=ROOT, env={**os.environ, **rx.env}
        )
        try:
            await rx.wait_for(lambda ms: len(pings(ms)) >= 5, timeout=20)
            child.send_signal(signal.SIGUSR1)
            blocked_at = len(rx.messages)
            await rx.wait_for(lambda ms: len(pings(ms)) >= blocked_at + 5, timeout=20)
        finally:
            child.terminate()
            await child.wait()
    times = [m.received_at for m in pings(rx.messages)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    longest = max(gaps)
    assert longest > 1.0, gaps
    assert all(gap < 1.0 for gap in gaps[:4]), gaps  # the normal cadence before the block
    assert gaps.index(longest) < len(gaps) - 3, gaps  # and pings resumed after it


# ---- the unit file ------------------------------------------------------------------------------


def unit_values(key: str) -> list[str]:
    pattern = re.compile(rf"^{re.escape(key)}=(.*)$", re.MULTILINE)
    return pattern.findall(UNIT.read_text())


def test_unit_loads_exactly_the_credentials_the_config_reads() -> None:
    """Every LoadCredential= name is one fotawatch.config looks up, and none is missing; the
    PostgreSQL DSN, which a single instance does not have, is there commented out."""
    names = {value.split(":", 1)[0] for value in unit_values("LoadCredential")}
    optional = {value.split(":", 1)[0] for value in unit_values("#LoadCredential")}
    assert (set(CREDENTIAL_NAMES.values()), {"state-dsn"}) == (names | optional, optional)


def test_unit_does_not_restart_on_a_config_error() -> None:
    """Exit 78 (EX_CONFIG) and 243 (missing credential) are excluded from Restart=on-failure."""
    (prevented,) = unit_values("RestartPreventExitStatus")
    assert (["on-failure"], {"78", "243"}) == (unit_values("Restart"), set(prevented.split()))


def runnable_copy(tmp_path: Path) -> Path:
    """The unit with its installed command pointed at this interpreter, so verify finds it."""
    text = UNIT.read_text().replace(INSTALLED_COMMAND, f"{sys.executable} -m fotawatch")
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


@pytest.mark.external
def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the unit without a single warning about it."""
    unit = runnable_copy(tmp_path)
    result = run_tool("systemd-analyze", "verify", unit)
    output = (result.stdout + result.stderr).splitlines()
    complaints = [line for line in output if unit.name in line]
    assert (0, []) == (result.returncode, complaints), result.stderr


@pytest.mark.external
def test_systemd_analyze_security_scores_at_most_2() -> None:
    """The offline exposure score stays at or below 2.0 (``--threshold`` is on a 0-100 scale)."""
    result = run_tool(
        "systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager", UNIT
    )
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert score is not None, result.stdout + result.stderr
    assert (0, True) == (result.returncode, float(score.group(1)) <= 2.0), score.group(0)
