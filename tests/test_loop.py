"""The daemon's event loop: I/O gathered per window while busy, timers never late, idle as usual.

The selector runs on a clock passed in; "arrivals" are real bytes written to real socket pairs
when that clock passes their time, so epoll sees them exactly as it would see answers.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from fotawatch.loop import WINDOW, BatchingSelector, daemon_loop


class Clock:
    """Monotonic time that moves only when told, delivering the arrivals it passes."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._arrivals: list[tuple[float, socket.socket]] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [s for t, s in self._arrivals if t <= self.now + 1e-12]
        self._arrivals = [(t, s) for t, s in self._arrivals if t > self.now + 1e-12]
        for sender in due:
            sender.send(b"x")

    def arrive(self, after: float, sender: socket.socket) -> None:
        self._arrivals.append((self.now + after, sender))


Rig = tuple[BatchingSelector, Clock, list[socket.socket], list[socket.socket]]


@pytest.fixture
def rig() -> Iterator[Rig]:
    clock = Clock()
    selector = BatchingSelector(WINDOW, clock=clock, sleep=clock.sleep)
    pairs = [socket.socketpair() for _ in range(4)]
    for receiver, _ in pairs:
        receiver.setblocking(False)
        selector.register(receiver, selectors.EVENT_READ)
    yield selector, clock, [r for r, _ in pairs], [s for _, s in pairs]
    selector.close()
    for receiver, sender in pairs:
        receiver.close()
        sender.close()


def drain(ready: list[tuple[selectors.SelectorKey, int]]) -> int:
    """Read what each ready socket got; how many were ready."""
    for key, _ in ready:
        receiver: socket.socket = key.fileobj  # type: ignore[assignment]
        receiver.recv(64)
    return len(ready)


def make_busy(selector: BatchingSelector, clock: Clock, senders: list[socket.socket]) -> None:
    """Two wake-ups 5 ms apart: events come faster than two per window."""
    senders[0].send(b"x")
    assert drain(selector.select(5)) == 1
    clock.advance(0.005)
    senders[1].send(b"x")
    assert drain(selector.select(5)) == 1
    assert selector.busy


def test_an_idle_loop_waits_as_usual(rig: Rig) -> None:
    """Events a second apart: each is handled at once, without any sleep."""
    selector, clock, _, senders = rig
    for sender in senders[:3]:
        sender.send(b"x")
        assert drain(selector.select(5)) == 1
        clock.advance(1.0)
    assert (clock.slept, selector.busy) == ([], False)


def test_a_busy_loop_gathers_a_windows_answers_in_one_wake_up(rig: Rig) -> None:
    """Three answers 3, 8 and 12 ms after a wake-up: one sleep to the window's end, one wake-up
    that returns all three, and the loop stays busy."""
    selector, clock, _, senders = rig
    make_busy(selector, clock, senders)
    for after, sender in zip((0.003, 0.008, 0.012), senders[1:], strict=True):
        clock.arrive(after, sender)
    assert drain(selector.select(5)) == 3
    assert clock.slept == [pytest.approx(WINDOW)]
    assert selector.busy


def test_a_timer_due_before_the_windows_end_is_on_time(rig: Rig) -> None:
    """asyncio's timeout is its next timer: the sleep ends there, not at the window's end."""
    selector, clock, _, senders = rig
    make_busy(selector, clock, senders)
    start = clock.now
    assert selector.select(0.004) == []
    assert (clock.slept, clock.now - start) == ([0.004], pytest.approx(0.004))


def test_a_look_never_sleeps(rig: Rig) -> None:
    """A zero timeout (callbacks ready) is only a look, busy or not."""
    selector, clock, _, senders = rig
    make_busy(selector, clock, senders)
    assert (selector.select(0), clock.slept) == ([], [])


def test_what_is_ready_already_is_returned_without_a_sleep(rig: Rig) -> None:
    selector, clock, _, senders = rig
    make_busy(selector, clock, senders)
    senders[2].send(b"x")
    assert (drain(selector.select(5)), clock.slept) == (1, [])


def test_a_window_that_gathers_less_than_two_ends_the_busy_spell(rig: Rig) -> None:
    """One answer in a window did not pay for its sleep: the next wait is a plain one."""
    selector, clock, _, senders = rig
    make_busy(selector, clock, senders)
    clock.arrive(0.003, senders[2])
    assert drain(selector.select(5)) == 1
    assert (len(clock.slept), selector.busy) == (1, False)
    clock.advance(0.015)
    senders[3].send(b"x")
    assert drain(selector.select(5)) == 1
    assert len(clock.slept) == 1  # no second sleep


def test_a_window_that_gathers_nothing_waits_out_the_timeout_as_usual(rig: Rig) -> None:
    selector, clock, _, senders = rig
    make_busy(selector, clock, senders)
    assert selector.select(WINDOW) == []  # the window's sleep used the whole timeout
    assert (clock.slept, selector.busy) == ([pytest.approx(WINDOW)], False)


def test_the_daemon_loop_serves_and_fetches_over_loopback() -> None:
    """The loop ``fotawatch run`` uses: 50 concurrent HTTP round trips all answered."""

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def main() -> list[str]:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:

                async def get() -> str:
                    async with session.get(f"http://127.0.0.1:{port}/") as resp:
                        return await resp.text()

                return await asyncio.gather(*(get() for _ in range(50)))
        finally:
            await runner.cleanup()

    with asyncio.Runner(loop_factory=daemon_loop) as runner:
        assert isinstance(runner.get_loop(), asyncio.SelectorEventLoop)
        assert runner.run(main()) == ["ok"] * 50
