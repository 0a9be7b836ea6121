"""A fake Slack incoming webhook: a real HTTP server on 127.0.0.1 that answers like Slack.

Used by fotawatch's tests, chaos tests and benchmark. In process::

    async with FakeSlack() as slack:              # port 0: the OS picks one
        sink_url = slack.url                      # http://127.0.0.1:PORT/services/T000/B000/<secret>
        slack.script([server_error(), rate_limited(2)])   # the next two posts, then slack.default
        slack.fail_until(time.monotonic() + 120, [server_error(), rate_limited(5)])
        slack.enforce_rate(per_second=1.0, burst=1)
        await slack.wait_for_posts(3, timeout=10)
        assert slack.violations == []             # nobody posted before a Retry-After elapsed

Each request is answered by the first that applies: the rate limit (``enforce_rate``), a time
window (``fail_until``, cycling through its behaviours), the script (one behaviour per request),
``default`` (``ok()``). A behaviour that accepts the post still checks it like Slack: not JSON ->
400 ``invalid_payload``; neither text nor blocks -> 400 ``no_text``; beyond the limits of
``render.validate_slack_message`` -> 400 ``invalid_blocks``. Every request is recorded in
``posts`` (``Post``); one that arrives before an earlier 429's Retry-After has elapsed is also
recorded in ``violations``. ``in_flight`` counts requests received but not yet answered (a test
can kill the sender in the middle of a send). ``webhook=True`` makes a generic webhook receiver:
any path, no Slack checks.

As a subprocess (for tests that run the daemon as a process)::

    python -m fotawatch.testing.fake_slack --port 0 [--webhook]
    -> prints "fake slack listening on URL", serves until SIGTERM/SIGINT, exits 0

with admin endpoints: ``GET /_fake/posts`` -> ``{"posts": [...], "violations": [...]}``;
``PUT /_fake/script`` with a list of behaviours; ``PUT /_fake/default`` with one behaviour;
``POST /_fake/fail-until`` with ``{"seconds": 120, "behaviours": [...]}``; ``PUT /_fake/rate``
with ``{"per_second": 1.0, "burst": 1}`` (or null to stop); ``POST /_fake/reset``. A behaviour
in JSON is ``{"name": "rate_limited", "retry_after": 2}`` (parameters by keyword).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import secrets
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from fotawatch.alerts.render import validate_slack_message

__all__ = [
    "Behaviour",
    "FakeSlack",
    "Post",
    "accept_then_hang",
    "action_prohibited",
    "behaviour_from_dict",
    "channel_is_archived",
    "channel_not_found",
    "invalid_payload",
    "main",
    "no_service",
    "ok",
    "rate_limited",
    "server_error",
    "slow",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Behaviour:
    """How the fake answers one request."""

    name: str
    status: int = 200
    body: str = "ok"
    retry_after: int | None = None  # seconds, sent as Retry-After
    delay: float = 0.0  # wait before answering
    hang: float = 0.0  # record the post as delivered, then wait this long before answering
    params: dict[str, Any] = field(default_factory=dict)  # the factory's arguments, for JSON

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


def ok() -> Behaviour:
    return Behaviour(name="ok")


def invalid_payload() -> Behaviour:
    return Behaviour(name="invalid_payload", status=400, body="invalid_payload")


def no_service() -> Behaviour:
    return Behaviour(name="no_service", status=404, body="no_service")


def channel_not_found() -> Behaviour:
    return Behaviour(name="channel_not_found", status=404, body="channel_not_found")


def action_prohibited() -> Behaviour:
    return Behaviour(name="action_prohibited", status=403, body="action_prohibited")


def channel_is_archived() -> Behaviour:
    return Behaviour(name="channel_is_archived", status=410, body="channel_is_archived")


def rate_limited(retry_after: int = 1) -> Behaviour:
    params = {"retry_after": retry_after}
    return Behaviour(name="rate_limited", status=429, body="rate_limited", params=params,
                     retry_after=retry_after)


def server_error() -> Behaviour:
    return Behaviour(name="server_error", status=500, body="rollup_error")


def slow(seconds: float) -> Behaviour:
    return Behaviour(name="slow", delay=seconds, params={"seconds": seconds})


def accept_then_hang(seconds: float) -> Behaviour:
    return Behaviour(name="accept_then_hang", hang=seconds, params={"seconds": seconds})


_FACTORIES: dict[str, Callable[..., Behaviour]] = {
    f.__name__: f
    for f in (ok, invalid_payload, no_service, channel_not_found, action_prohibited,
              channel_is_archived, rate_limited, server_error, slow, accept_then_hang)
}


def behaviour_from_dict(data: Any) -> Behaviour:
    """``{"name": "slow", "seconds": 2}`` (or just ``"ok"``) -> the behaviour."""
    spec = {"name": data} if isinstance(data, str) else dict(data)
    factory = _FACTORIES.get(str(spec.pop("name", "")))
    if factory is None:
        raise ValueError(f"unknown behaviour {data!r}; known: {sorted(_FACTORIES)}")
    return factory(**spec)


@dataclass(frozen=True, slots=True, kw_only=True)
class Post:
    """One request the fake received, and what it answered."""

    received_at: float  # the fake's clock (time.monotonic) when the request arrived
    path: str
    body: Any  # the parsed JSON, or None when the body was not JSON
    raw: bytes
    status: int
    response: str
    behaviour: str
    early: bool = False  # arrived before the Retry-After of an earlier 429 had elapsed
    problems: tuple[str, ...] = ()  # why a post was refused as invalid

    @property
    def delivered(self) -> bool:
        """Slack accepted it (a hanging answer counts: Slack would have posted it)."""
        return self.status == 200

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["raw"] = self.raw.decode("utf-8", "replace")
        data["problems"] = list(self.problems)
        return data


@dataclass(slots=True)
class _Bucket:
    """Token bucket: ``per_second`` tokens a second, at most ``burst`` saved up."""

    per_second: float
    burst: float
    tokens: float
    last: float

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.per_second)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_second


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _slack_check(raw: bytes, body: Any) -> tuple[int, str, tuple[str, ...]]:
    """What Slack answers to a post it would accept, by the content of the post."""
    if not isinstance(body, dict):
        return 400, "invalid_payload", ("body is not a JSON object",) if raw else ("empty body",)
    if not body.get("text") and not body.get("blocks"):
        return 400, "no_text", ("neither text nor blocks",)
    problems = tuple(validate_slack_message(body))
    return (400, "invalid_blocks", problems) if problems else (200, "ok", ())


class FakeSlack:
    """A Slack incoming webhook (or, with ``webhook=True``, any JSON webhook) on 127.0.0.1."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str | None = None,
        webhook: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host, self._port, self._webhook, self._clock = host, port, webhook, clock
        self.path = path or f"/services/T000/B000/{secrets.token_hex(12)}"
        self.default: Behaviour = ok()
        self.posts: list[Post] = []
        self.violations: list[Post] = []
        self.in_flight = 0
        self._script: deque[Behaviour] = deque()
        self._window: tuple[float, Sequence[Behaviour]] | None = None
        self._window_count = 0
        self._bucket: _Bucket | None = None
        self._not_before: float | None = None
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self._port).start()
        self._bound_port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()  # hanging and slow answers end now
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("FakeSlack is not running; use it as `async with FakeSlack()`")
        return self._bound_port

    @property
    def url(self) -> str:
        """The webhook URL; its path is the secret part, as with Slack."""
        return f"http://{self.host}:{self.port}{self.path}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- scripting ---------------------------------------------------------------------------

    def script(self, responses: Iterable[Behaviour]) -> None:
        """Queue behaviours, consumed one per request before ``default`` applies again."""
        self._script.extend(responses)

    def fail_until(self, deadline: float, behaviours: Behaviour | Sequence[Behaviour]) -> None:
        """Until ``deadline`` (the fake's clock), answer with ``behaviours`` in turn."""
        cycle = [behaviours] if isinstance(behaviours, Behaviour) else list(behaviours)
        self._window, self._window_count = (deadline, cycle), 0

    def enforce_rate(self, per_second: float | None = 1.0, burst: int = 1) -> None:
        """Answer 429 + Retry-After to posts beyond ``per_second`` (None: stop enforcing)."""
        if per_second is None:
            self._bucket = None
            return
        self._bucket = _Bucket(per_second, burst, float(burst), self._clock())

    def reset(self) -> None:
        """Forget posts, violations, script, window and rate limit; ``default`` becomes ok."""
        self.posts.clear()
        self.violations.clear()
        self._script.clear()
        self._window, self._bucket, self._not_before, self.default = None, None, None, ok()

    # -- waiting -----------------------------------------------------------------------------

    @property
    def delivered(self) -> list[Post]:
        return [p for p in self.posts if p.delivered]

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - waiting with a deadline is the point
        what: str = "condition",
    ) -> None:
        """Return once ``predicate()`` holds after a post; TimeoutError at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                got = len(self.posts)
                raise TimeoutError(f"fake slack: {what} not met in {timeout}s ({got} posts)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_for_posts(
        self,
        n: int,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - waiting with a deadline is the point
        delivered: bool = False,
    ) -> list[Post]:
        """Wait for ``n`` posts (``delivered=True``: accepted ones); return the posts so far."""
        def count() -> int:
            return len(self.delivered) if delivered else len(self.posts)

        await self.wait_until(lambda: count() >= n, timeout=timeout, what=f"{n} posts")
        return list(self.posts)

    # -- answering ---------------------------------------------------------------------------

    def _choose(self, now: float) -> Behaviour:
        if self._bucket is not None and (wait := self._bucket.take(now)) > 0:
            return rate_limited(max(1, math.ceil(wait)))
        if self._window is not None and now < self._window[0]:
            cycle = self._window[1]
            self._window_count += 1
            return cycle[(self._window_count - 1) % len(cycle)]
        return self._script.popleft() if self._script else self.default

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _record(self, post: Post, retry_after: int | None) -> None:
        self.posts.append(post)
        if post.early:
            self.violations.append(post)
        if retry_after is not None:  # posts before this time are violations
            self._not_before = max(self._not_before or 0.0, self._clock() + retry_after)
        self._changed.set()

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        now, raw = self._clock(), await request.read()
        early = self._not_before is not None and now < self._not_before
        body = _parse(raw)
        if not self._webhook and request.path != self.path:
            behaviour = no_service()
        else:
            behaviour = self._choose(now)
        if behaviour.delay:
            await self._pause(behaviour.delay)
        status, text, problems = behaviour.status, behaviour.body, tuple[str, ...]()
        if status == 200 and not self._webhook:
            status, text, problems = _slack_check(raw, body)
        post = Post(received_at=now, path=request.path, body=body, raw=raw, status=status,
                    response=text, behaviour=behaviour.name, early=early, problems=problems)
        self._record(post, behaviour.retry_after if status == 429 else None)
        if behaviour.hang and status == 200:
            await self._pause(behaviour.hang)
        headers = {"Retry-After": str(behaviour.retry_after)} if status == 429 else {}
        return web.Response(status=status, text=text, headers=headers)

    # -- admin (subprocess mode) -------------------------------------------------------------

    async def _admin_posts(self, _request: web.Request) -> web.Response:
        return web.json_response({
            "posts": [p.to_dict() for p in self.posts],
            "violations": [p.to_dict() for p in self.violations],
        })

    async def _admin_script(self, request: web.Request) -> web.Response:
        self.script(behaviour_from_dict(b) for b in await request.json())
        return web.Response(status=204)

    async def _admin_default(self, request: web.Request) -> web.Response:
        self.default = behaviour_from_dict(await request.json())
        return web.Response(status=204)

    async def _admin_fail_until(self, request: web.Request) -> web.Response:
        spec = await request.json()
        deadline = spec.get("deadline") or self._clock() + float(spec["seconds"])
        self.fail_until(float(deadline), [behaviour_from_dict(b) for b in spec["behaviours"]])
        return web.Response(status=204)

    async def _admin_rate(self, request: web.Request) -> web.Response:
        spec = await request.json()
        if spec is None:
            self.enforce_rate(None)
        else:
            self.enforce_rate(float(spec.get("per_second", 1.0)), int(spec.get("burst", 1)))
        return web.Response(status=204)

    async def _admin_reset(self, _request: web.Request) -> web.Response:
        self.reset()
        return web.Response(status=204)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_fake/posts", self._admin_posts)
        app.router.add_put("/_fake/script", self._admin_script)
        app.router.add_put("/_fake/default", self._admin_default)
        app.router.add_post("/_fake/fail-until", self._admin_fail_until)
        app.router.add_put("/_fake/rate", self._admin_rate)
        app.router.add_post("/_fake/reset", self._admin_reset)
        app.router.add_post("/{tail:.*}", self._handle)
        return app


# -- subprocess mode --------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with FakeSlack(host=args.host, port=args.port, path=args.path,
                         webhook=args.webhook) as slack:
        sys.stdout.write(f"fake slack listening on {slack.url}\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fotawatch.testing.fake_slack``: serve until SIGTERM or SIGINT, then exit 0."""
    parser = argparse.ArgumentParser(prog="python -m fotawatch.testing.fake_slack")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: let the OS pick a free port")
    parser.add_argument("--path", default=None, help="the webhook path (default: random secret)")
    parser.add_argument("--webhook", action="store_true", help="generic webhook receiver mode")
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
