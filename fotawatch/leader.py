"""Who polls and sends: one leader per state database.

With SQLite there is one instance and it always leads (``SoleLeader``). With PostgreSQL several
instances share one database and ``pg_leader.PgLeader`` elects one of them with a session-level
``pg_try_advisory_lock`` held on a dedicated connection. That connection is also the liveness
check, on both sides of the lock:

- the leader waits on its socket between checks, so a terminated backend or a closed
  connection ends the term at once; every ``check_interval`` it asks the server whether it still
  holds the lock and ends the term when the answer does not come within ``check_timeout``;
- the server drops a dead leader's session, and with it the lock, after its TCP keepalives go
  unanswered (``keepalives_idle + keepalives_count * keepalives_interval``, set per session), or
  after ``silence_ms`` without a query from a leader whose kernel still answers for it
  (``idle_session_timeout``: a stopped or wedged process);
- followers try the lock every ``retry`` seconds.

With the default ``takeover=15`` the leader steps down within 5 s of losing the database
(2 s check + 3 s timeout), the server frees the lock at the latest 11 s after the leader
went silent, and a follower holds it within 2 s after that: 13 s. A leader that stepped down
waits ``rejoin_delay`` before it competes again, so a healthy follower wins. The lock alone
does not fence (a paused leader can act after the server let go of it); the store's unique
keys and ``SKIP LOCKED`` outbox claims do (docs/ha.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Leadership", "SoleLeader", "Timing"]



@dataclass(frozen=True, slots=True)
class Timing:
    """The election's clocks, all derived from the promised takeover bound (seconds)."""

    takeover: float = 15.0

    @property
    def check_interval(self) -> float:
        return self.takeover * 2 / 15

    @property
    def check_timeout(self) -> float:
        return self.takeover / 5

    @property
    def retry(self) -> float:
        return self.check_interval

    @property
    def rejoin_delay(self) -> float:
        return 2.5 * self.retry

    @property
    def silence_ms(self) -> int:
        """How long the server waits on a silent election session before it drops it (ms)."""
        return round(self.takeover * 2 / 3 * 1000)

    @property
    def keepalives(self) -> dict[str, int]:
        """Server-side TCP keepalives of the leader's session: idle + 3 probes."""
        idle = max(1, round(self.takeover / 3))
        interval = max(1, round(self.takeover * 2 / 15))
        return {"idle": idle, "interval": interval, "count": 3}


class Leadership(Protocol):
    """The election as the daemon sees it."""

    ha: bool  # several instances may run on this state (PostgreSQL)
    leader: bool  # this instance leads now
    changes: int  # times this instance became leader or stopped being leader

    async def acquire(self) -> asyncio.Event:
        """Wait until this instance leads; the returned event is set when the term ends."""
        ...

    async def close(self) -> None:
        """Give up the lock (if held) and the connection."""
        ...


class SoleLeader:
    """SQLite: one instance on one file, leading from start to stop."""

    ha = False

    def __init__(self) -> None:
        self.leader = False
        self.changes = 0
        self._lost = asyncio.Event()

    async def acquire(self) -> asyncio.Event:
        if not self.leader:
            self.leader = True
            self.changes += 1
        return self._lost

    async def close(self) -> None:
        self.leader = False
