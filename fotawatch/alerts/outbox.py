"""The outbox dispatcher: one per sink, it turns due outbox rows into paced, combined messages.

Each pass claims the sink's due rows (``Store.outbox_claim``: with several instances on
PostgreSQL, ``SELECT ... FOR UPDATE SKIP LOCKED``, so no two instances hold the same row and a
row marked delivered is never claimed again), drops those older than ``max_age``
(``failed(reason="expired")``), renders the oldest rows into ONE message (as many as the
sender carries in full: ``Sender.render``), POSTs it and settles exactly the rows it carried:

- delivered: ``outbox_delivered``; latency (now - created_at) and the ``delivered`` count.
- 429: ``outbox_retry`` at now + Retry-After (30 s when missing) and the whole sink is held until
  then: nothing is posted to it before Slack allows it. Counted ``retried``.
- 5xx / timeout / connection error: ``outbox_retry`` with exponential backoff and jitter (1 s,
  2 s, 4 s ... 5 min, by the sink's consecutive failures; a 429 in between neither counts nor
  resets), the sink held meanwhile. Counted ``retried`` and logged as a possible duplicate:
  Slack may have posted it.
- permanent (400/403/404/410 ...): ``outbox_failed`` with Slack's error string, counted
  ``failed``, never retried. A combined message refused with 400 (``invalid_blocks`` ...) is
  resent one row at a time first, so one bad payload cannot sink the others.

Pacing: at most one message per ``min_interval`` per sink, counted from when the previous send's
answer arrived. Counting from its start would let the next request reach Slack less than
``min_interval`` after the previous one whenever the previous one travelled slower (a new TCP
and TLS connection does), and Slack measures arrivals. The first alert after a quiet spell goes
at once, and alerts that pile up behind the pacing or a hold are combined. ``wake()`` (new rows
committed) ends an idle wait at once; without wakes the dispatcher still looks every
``idle_check`` seconds (rows postponed before a restart, rows queued by another process).
Delivery is at-least-once: a row is marked only after its message was answered, and the marks
commit when the pass ends; a store error while marking, or a pass cancelled mid-send (a stop, a
lost leadership), leaves the rows pending, to be sent again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from fotawatch.alerts.senders import Outcome, Sender, SendResult
from fotawatch.errors import StoreError
from fotawatch.store.base import OutboxClaim, OutboxRow, Store

__all__ = ["DeliveryPolicy", "Dispatcher", "NotificationMetrics"]

log = structlog.get_logger("fotawatch.alerts")


class NotificationMetrics(Protocol):
    """The metrics hook: ``fotawatch.metrics`` implements it; ``None`` means no metrics.

    ``result`` is one of ``delivered``, ``retried``, ``failed``, ``dropped``; ``count`` is in
    notifications (outbox rows), not messages. ``sink`` is ``slack`` or a webhook's name.
    """

    def notification(self, sink: str, result: str, count: int = 1) -> None:
        """Count ``count`` notifications of ``sink`` with ``result``."""
        ...

    def notification_latency(self, sink: str, seconds: float) -> None:
        """Observe the time from queueing to delivery of one notification."""
        ...


class _NoMetrics:
    def notification(self, sink: str, result: str, count: int = 1) -> None:
        pass

    def notification_latency(self, sink: str, seconds: float) -> None:
        pass


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryPolicy:
    """How a dispatcher paces, batches, retries and gives up. Times in seconds."""

    min_interval: float = 1.0
    max_age: float = 86400.0
    max_batch: int = 20  # with render_slack_batch's fit, a combined message stays valid
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    jitter: float = 0.1  # up to 10 % on top of each backoff step
    default_retry_after: float = 30.0
    retry_after_max: float = 3600.0
    idle_check: float = 5.0
    store_retry: float = 5.0

    def backoff(self, failures: int, rng: float) -> float:
        """Delay after ``failures + 1`` failures in a row: initial * 2**failures, capped, plus
        up to ``jitter`` of it (``rng`` in [0, 1))."""
        base = self.backoff_initial * float(2 ** min(failures, 30))
        return min(self.backoff_max, base * (1 + self.jitter * rng))

    def retry_after(self, result: SendResult) -> float:
        wait = self.default_retry_after if result.retry_after is None else result.retry_after
        return min(max(wait, 0.0), self.retry_after_max)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class _Sent:
    """The rows one message carried and the sink's answer."""

    rows: Sequence[OutboxRow]
    result: SendResult


class Dispatcher:
    """Delivers one sink's outbox rows; ``run()`` until cancelled."""

    def __init__(  # noqa: PLR0913 - collaborators are injected, not constructed
        self,
        sender: Sender,
        store: Store,
        policy: DeliveryPolicy,
        *,
        metrics: NotificationMetrics | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.sender = sender
        self.sink = sender.name
        self.store = store
        self.policy = policy
        self.depth = 0  # pending rows, as of the last pass (read by the metrics gauge)
        self._metrics: NotificationMetrics = metrics or _NoMetrics()
        self._clock, self._sleep, self._rng = clock, sleep, rng
        self._woken = asyncio.Event()
        self._last_sent: dt.datetime | None = None  # when the previous send's answer arrived
        self._hold_until: dt.datetime | None = None
        self._isolate: set[int] = set()  # rows of a refused combined message: sent one by one
        self._failures = 0  # consecutive 5xx / timeouts / connection errors: the backoff step
        self._finishing = False

    def finish(self) -> None:
        """Start no new pass; ``run`` returns once the pass in progress (a send awaiting its
        answer, the marks awaiting their commit) is complete."""
        self._finishing = True
        self._woken.set()

    def wake(self) -> None:
        """New rows were committed: look now (pacing and holds still apply)."""
        self._woken.set()

    async def run(self) -> None:
        """Deliver until cancelled or ``finish()``ed; a cancelled send leaves its rows pending
        (at-least-once)."""
        self._finishing = False
        await self._refresh_depth()
        while not self._finishing:
            try:
                delay = await self.step()
            except Exception:
                log.exception("alert_dispatcher_error", sink=self.sink)
                delay = self.policy.store_retry
            if not self._finishing:
                await self._wait(delay)

    async def step(self) -> float | None:
        """One pass. Returns the seconds until another pass is useful; None: idle until woken."""
        self._woken.clear()
        now = self._clock()
        ready_at = self._ready_at()
        if ready_at is not None and now < ready_at:
            return (ready_at - now).total_seconds()
        sent: list[_Sent] = []  # the message answered in this pass, if any
        try:
            async with self.store.outbox_claim(self.sink, now, self.policy.max_batch) as claim:
                rows, dropped = await self._due(claim, now)
                if rows:
                    await self._deliver(claim, rows, sent)
        except StoreError as err:
            if not sent:
                log.error("alert_outbox_read_failed", sink=self.sink, error=str(err))  # noqa: TRY400
                return self.policy.store_retry
            self._mark_failed(sent[0], err)
        await self._refresh_depth()
        return 0.0 if rows or dropped else None

    # --- one pass ---------------------------------------------------------------------------

    def _ready_at(self) -> dt.datetime | None:
        paced = None
        if self._last_sent is not None:
            paced = self._last_sent + dt.timedelta(seconds=self.policy.min_interval)
        times = [t for t in (paced, self._hold_until) if t is not None]
        return max(times) if times else None

    async def _due(self, claim: OutboxClaim, now: dt.datetime) -> tuple[list[OutboxRow], bool]:
        """Claimed rows still young enough to send; expired ones are dropped on the way."""
        rows = claim.rows
        oldest = now - dt.timedelta(seconds=self.policy.max_age)
        expired = [r for r in rows if r.created_at < oldest]
        if expired:
            await self._drop(claim, expired, now)
        return [r for r in rows if r.created_at >= oldest], bool(expired)

    async def _drop(self, claim: OutboxClaim, rows: Sequence[OutboxRow], now: dt.datetime) -> None:
        ids = [r.id for r in rows]
        await claim.failed(ids, "expired", now)
        self._metrics.notification(self.sink, "dropped", len(ids))
        self._isolate.difference_update(ids)
        log.warning(
            "alert_expired",
            sink=self.sink,
            count=len(ids),
            dedup_keys=[r.dedup_key for r in rows],
            max_age=self.policy.max_age,
        )

    def _batch(self, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
        isolated = [r for r in rows if r.id in self._isolate]
        return isolated[:1] if isolated else list(rows)

    async def _deliver(
        self, claim: OutboxClaim, rows: Sequence[OutboxRow], answered: list[_Sent]
    ) -> None:
        batch = self._batch(rows)
        body, carried = self.sender.render([r.payload for r in batch])
        sent = batch[:carried]
        try:
            result = await self.sender.send(body)
        finally:
            self._last_sent = self._clock()
        answered.append(_Sent(rows=sent, result=result))
        await self._settle(claim, sent, result)

    # --- settling the rows of one message ----------------------------------------------------

    async def _settle(
        self, claim: OutboxClaim, rows: Sequence[OutboxRow], result: SendResult
    ) -> None:
        now = self._clock()
        if result.outcome is Outcome.RETRY:
            self._failures += 1
        elif result.outcome is not Outcome.RATE_LIMITED:
            self._failures = 0  # the sink answered sensibly
        if result.outcome is Outcome.DELIVERED:
            await self._delivered(claim, rows, now)
        elif result.outcome is Outcome.PERMANENT:
            await self._refused(claim, rows, result, now)
        else:
            await self._postpone(claim, rows, result, now)

    def _mark_failed(self, sent: _Sent, err: StoreError) -> None:
        """The message was answered but its marks did not commit: the rows stay pending."""
        self._hold(self._clock() + dt.timedelta(seconds=self.policy.store_retry))
        log.error(
            "alert_outbox_mark_failed",
            sink=self.sink,
            outcome=sent.result.outcome.value,
            count=len(sent.rows),
            error=str(err),
            note="rows stay pending and will be sent again (possible duplicate)",
        )

    async def _delivered(
        self, claim: OutboxClaim, rows: Sequence[OutboxRow], now: dt.datetime
    ) -> None:
        ids = [r.id for r in rows]
        await claim.delivered(ids, now)
        self._isolate.difference_update(ids)
        self._metrics.notification(self.sink, "delivered", len(rows))
        for row in rows:
            self._metrics.notification_latency(self.sink, (now - row.created_at).total_seconds())
        log.info(
            "alert_delivered",
            sink=self.sink,
            count=len(rows),
            attempt=max(r.attempts for r in rows) + 1,
        )

    async def _refused(
        self, claim: OutboxClaim, rows: Sequence[OutboxRow], result: SendResult, now: dt.datetime
    ) -> None:
        ids = [r.id for r in rows]
        if len(rows) > 1 and result.status == 400:
            self._isolate.update(ids)
            self._metrics.notification(self.sink, "retried", len(ids))
            log.warning(
                "alert_batch_refused",
                sink=self.sink,
                count=len(ids),
                status=result.status,
                reason=result.reason,
                next="sending the alerts one by one",
            )
            return
        await claim.failed(ids, result.reason, now)
        self._isolate.difference_update(ids)
        self._metrics.notification(self.sink, "failed", len(ids))
        log.error(
            "alert_failed",
            sink=self.sink,
            count=len(ids),
            status=result.status,
            reason=result.reason,
            dedup_keys=[r.dedup_key for r in rows],
        )

    async def _postpone(
        self, claim: OutboxClaim, rows: Sequence[OutboxRow], result: SendResult, now: dt.datetime
    ) -> None:
        if result.outcome is Outcome.RATE_LIMITED:
            wait = self.policy.retry_after(result)
        else:
            wait = self.policy.backoff(self._failures - 1, self._rng())
        until = now + dt.timedelta(seconds=wait)
        self._hold(until)  # before the store call: even if it fails, the sink waits
        await claim.retry([r.id for r in rows], until)
        self._metrics.notification(self.sink, "retried", len(rows))
        log.warning(
            "alert_retry",
            sink=self.sink,
            count=len(rows),
            status=result.status,
            reason=result.reason,
            retry_in=round(wait, 3),
            attempt=max(r.attempts for r in rows) + 1,
            possible_duplicate=result.uncertain,
        )

    def _hold(self, until: dt.datetime) -> None:
        if self._hold_until is None or until > self._hold_until:
            self._hold_until = until

    # --- waiting and bookkeeping --------------------------------------------------------------

    async def _refresh_depth(self) -> None:
        try:
            self.depth = await self.store.outbox_depth(self.sink)
        except StoreError as err:
            log.warning("alert_outbox_depth_failed", sink=self.sink, error=str(err))

    async def _wait(self, delay: float | None) -> None:
        """Sleep ``delay`` (None: ``idle_check``); an idle or paced wait ends early on wake()."""
        timeout = self.policy.idle_check if delay is None else delay
        if timeout <= 0 or self._woken.is_set():
            await asyncio.sleep(0)  # let the loop breathe between back-to-back passes
            return
        waker = asyncio.ensure_future(self._woken.wait())
        sleeper = asyncio.ensure_future(self._sleep(timeout))
        try:
            await asyncio.wait({waker, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            sleeper.cancel()
