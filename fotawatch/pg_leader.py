"""The PostgreSQL election (see ``fotawatch.leader`` for the protocol and its clocks)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import psycopg
import structlog

from fotawatch.leader import Timing
from fotawatch.store._pg import Dsn

__all__ = ["LOCK_KEY", "PgLeader"]

log = structlog.get_logger("fotawatch.leader")

LOCK_KEY = 0x666F_7461_6C65_6164  # "fotalead": one leader per database (not the migration lock)
_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    " AND granted AND ((classid::bigint << 32) | objid::bigint) = %s"
)


class PgLeader:
    """A session-level advisory lock on a dedicated PostgreSQL connection."""

    ha = True

    def __init__(self, dsn: str, timing: Timing | None = None, *, name: str | None = None) -> None:
        self._dsn = dsn
        self._target = Dsn(dsn)  # what keeps the DSN out of messages
        self.timing = timing or Timing()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.leader = False
        self.changes = 0
        self._conn: psycopg.AsyncConnection[tuple[int]] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._stepped_down = False
        self._unreachable = False

    async def acquire(self) -> asyncio.Event:
        if self._stepped_down:
            self._stepped_down = False
            await asyncio.sleep(self.timing.rejoin_delay)  # let a healthy follower win
        while not await self._try_lock():  # noqa: ASYNC110 - polling the server is the point
            await asyncio.sleep(self.timing.retry)
        self.leader = True
        self.changes += 1
        self._lost = asyncio.Event()
        self._watch = asyncio.get_running_loop().create_task(
            self._watch_term(), name="fotawatch-leader-watch"
        )
        log.warning("leadership_acquired", instance=self.name)
        return self._lost

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        was_leader, self.leader = self.leader, False
        await self._disconnect()  # closing the session releases the lock
        if was_leader:
            log.info("leadership_released", instance=self.name)

    # --- following ---------------------------------------------------------------------------

    async def _try_lock(self) -> bool:
        """One attempt; False while another instance leads or the database is unreachable."""
        try:
            conn = self._conn or await self._connect()
            got = await self._query(conn, "SELECT pg_try_advisory_lock(%s)", LOCK_KEY)
        except (psycopg.Error, OSError, TimeoutError) as err:
            await self._disconnect()
            if not self._unreachable:
                self._unreachable = True
                log.error("leader_election_db_unreachable", error=self._reason(err),  # noqa: TRY400
                          retry_in=self.timing.retry)  # fmt: skip
            return False
        if self._unreachable:
            self._unreachable = False
            log.info("leader_election_db_reachable")
        return bool(got)

    async def _connect(self) -> psycopg.AsyncConnection[tuple[int]]:
        keepalives = self.timing.keepalives
        options = (
            f"-c tcp_keepalives_idle={keepalives['idle']}"
            f" -c tcp_keepalives_interval={keepalives['interval']}"
            f" -c tcp_keepalives_count={keepalives['count']}"
            f" -c tcp_user_timeout={self.timing.silence_ms}"
            # a leader process that stops talking (SIGSTOP, a wedged loop) while its kernel
            # still answers keepalives loses its session, and the lock, all the same
            f" -c idle_session_timeout={self.timing.silence_ms}"
        )
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                self._dsn,
                autocommit=True,
                application_name=f"fotawatch-leader {self.name}"[:63],
                connect_timeout=max(2, round(self.timing.check_timeout)),
                options=options,
                # our side of the same socket: notice a dead server as quickly
                keepalives=1,
                keepalives_idle=keepalives["idle"],
                keepalives_interval=keepalives["interval"],
                keepalives_count=keepalives["count"],
            ),
            timeout=self.timing.check_timeout + 2,
        )
        self._conn = conn
        return conn

    async def _query(self, conn: psycopg.AsyncConnection[tuple[int]], sql: str, key: int) -> int:
        async def run() -> int:
            cur = await conn.execute(sql, (key,))
            row = await cur.fetchone()
            return 0 if row is None else int(row[0])

        task = asyncio.get_running_loop().create_task(run())
        done, _ = await asyncio.wait({task}, timeout=self.timing.check_timeout)
        if not done:
            task.cancel()  # the connection is abandoned below, whatever the task does next
            raise TimeoutError(f"no answer within {self.timing.check_timeout:g} s")
        return task.result()

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        # close() of a connection to an unreachable server must not hold the loop up
        closing = asyncio.get_running_loop().create_task(conn.close())
        await asyncio.wait({closing}, timeout=1.0)

    # --- leading -----------------------------------------------------------------------------

    async def _watch_term(self) -> None:
        """Until the lock or the connection is lost; then end the term at once."""
        reason = "unknown"
        try:
            while True:
                conn = self._conn
                if conn is None:
                    reason = "connection closed"
                    break
                await self._wait_on_socket(conn)
                if not await self._query(conn, _HELD, LOCK_KEY):
                    reason = "advisory lock no longer held"
                    break
        except (psycopg.Error, OSError, TimeoutError) as err:
            reason = self._reason(err)
        self.leader = False
        self.changes += 1
        self._stepped_down = True
        log.error("leadership_lost", instance=self.name, reason=reason,
                  note="stopped polling and sending; another instance takes over")  # fmt: skip
        self._lost.set()
        await self._disconnect()

    def _reason(self, err: BaseException) -> str:
        """One line, without the DSN or its password (the store's own sanitising)."""
        if isinstance(err, TimeoutError):
            return f"timeout: {err}" if str(err) else "timeout"
        return f"{type(err).__name__}: {self._target.reason(err)}"

    async def _wait_on_socket(self, conn: psycopg.AsyncConnection[tuple[int]]) -> None:
        """Sleep ``check_interval``, but wake (with an error) the moment the server hangs up."""
        async for _ in conn.notifies(timeout=self.timing.check_interval):
            pass  # nobody LISTENs on this connection; a notification would only end the wait
