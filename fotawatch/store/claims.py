"""``outbox_claim`` for the stores of one process (SQLite, memory), built on their outbox calls.

One process holds the store, so a claim is reserved in memory: the claimed ids are left out of
every other claim on the same store until the block ends. Marks are collected and applied, in
the order they were made, through the store's own ``outbox_delivered``/``outbox_retry``/
``outbox_failed`` when the block exits normally; a block that raises applies none of them, as a
rolled-back PostgreSQL transaction would. A failing mark raises ``StoreError`` at the exit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol

from fotawatch.store.base import OutboxRow

__all__ = ["DirectClaim", "DirectClaims"]


class _Outbox(Protocol):
    """The part of a store a direct claim needs."""

    async def outbox_due(self, sink: str, now: dt.datetime, limit: int) -> list[OutboxRow]: ...
    async def outbox_delivered(self, ids: Sequence[int], at: dt.datetime) -> None: ...
    async def outbox_retry(self, ids: Sequence[int], next_attempt_at: dt.datetime) -> None: ...
    async def outbox_failed(self, ids: Sequence[int], reason: str, at: dt.datetime) -> None: ...


class DirectClaim:
    """The rows of one claim and the marks made on them, not yet applied."""

    def __init__(self, store: _Outbox, rows: list[OutboxRow]) -> None:
        self.rows = rows
        self._store = store
        self._ids = frozenset(r.id for r in rows)
        self._marks: list[Callable[[], Awaitable[None]]] = []

    async def delivered(self, ids: Sequence[int], at: dt.datetime) -> None:
        self._marks.append(partial(self._store.outbox_delivered, self._claimed(ids), at))

    async def retry(self, ids: Sequence[int], next_attempt_at: dt.datetime) -> None:
        self._marks.append(partial(self._store.outbox_retry, self._claimed(ids), next_attempt_at))

    async def failed(self, ids: Sequence[int], reason: str, at: dt.datetime) -> None:
        self._marks.append(partial(self._store.outbox_failed, self._claimed(ids), reason, at))

    async def apply(self) -> None:
        """Apply the marks in order (the block ended normally)."""
        for mark in self._marks:
            await mark()

    def _claimed(self, ids: Sequence[int]) -> list[int]:
        return [i for i in ids if i in self._ids]


class DirectClaims:
    """The claims open on one store: ``claim`` is that store's ``outbox_claim``."""

    def __init__(self, store: _Outbox) -> None:
        self._store = store
        self._held: set[int] = set()

    @contextlib.asynccontextmanager
    async def claim(self, sink: str, now: dt.datetime, limit: int) -> AsyncIterator[DirectClaim]:
        """Reserve up to ``limit`` due rows of ``sink`` that no open claim holds."""
        due = await self._store.outbox_due(sink, now, limit + len(self._held))
        rows = [r for r in due if r.id not in self._held][:limit]
        ids = {r.id for r in rows}
        self._held |= ids
        try:
            claim = DirectClaim(self._store, rows)
            yield claim
            await claim.apply()
        finally:
            self._held -= ids
