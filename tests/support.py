"""Shared test helpers: condition waits with deadlines, configs, the daemon as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import yaml

ACCOUNT = "0642233522-00001"
SIM_CREDENTIALS = {
    "client_id": "sim-client-id",
    "client_secret": "sim-client-secret",
    "username": "sim-user",
    "password": "sim-password",
}


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, *, what: str = "condition"
) -> Any:
    """Wait until ``predicate()`` (sync or async) is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)  # a polling tick of the wait, not synchronisation by sleeping


def campaign(cid: str, **fields: Any) -> dict[str, Any]:
    return {"account": ACCOUNT, "id": cid, **fields}


def write_config(
    tmp_path: Path,
    base_url: str,
    campaigns: list[dict[str, Any]],
    *,
    name: str = "fotawatch.yaml",
    **overrides: Any,
) -> Path:
    """A config pointing at the simulator: 1 s polls, no jitter, state in tmp_path. An override
    of None leaves that key out (``state_path=None`` with ``state_dsn=...``)."""
    thingspace = {
        "base_url": base_url,
        **SIM_CREDENTIALS,
        "timeout_seconds": 2,
        "requests_per_second": 200,
        "max_concurrency": 32,
        "retry": {"attempts": 3, "backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.2},
    }
    thingspace.update(overrides.pop("thingspace", {}))
    polling = {"interval_seconds": 1, "jitter_seconds": 0, **overrides.pop("polling", {})}
    config = {
        "thingspace": thingspace,
        "polling": polling,
        "state_path": str(tmp_path / "state.db"),
        "campaigns": campaigns,
        "metrics": {"listen": "127.0.0.1:0"},
        "logging": {"level": "info", "format": "json"},
        **overrides,
    }
    path = tmp_path / name
    config = {key: value for key, value in config.items() if value is not None}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def stored_transitions(db: Path) -> list[tuple[str, int, str | None, str, str]]:
    """(campaign_id, seq, from, to, kind) rows straight from the SQLite file."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(
            "SELECT campaign_id, seq, from_status, to_status, kind FROM transitions"
            " ORDER BY campaign_id, seq"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def stored_columns(db: Path, campaign_id: str, *columns: str) -> tuple[Any, ...] | None:
    """Columns of a campaign's row straight from the SQLite file (None if there is no row)."""
    if not db.exists():
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row: tuple[Any, ...] | None = con.execute(
            f"SELECT {', '.join(columns)} FROM campaigns WHERE campaign_id = ?", (campaign_id,)
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()
    return row


def stored_status(db: Path, campaign_id: str) -> str | None:
    """The status the store holds for a campaign (None if not yet seen)."""
    row = stored_columns(db, campaign_id, "status")
    return None if row is None else row[0]


class DaemonProcess:
    """``python -m fotawatch run`` as a subprocess, its JSON log lines collected."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = {**os.environ, **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.stderr = b""
        self._reader: asyncio.Task[None] | None = None

    async def start(self, *args: str) -> DaemonProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fotawatch",
            "run",
            "--config",
            str(self.config),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            text = line[line.index("{") :] if "{" in line else line
            try:
                record = json.loads(text)
            except ValueError:
                continue
            if name is None or record.get("event") == name:
                out.append(record)
        return out

    async def wait_event(self, name: str, timeout: float = 15.0, count: int = 1) -> None:
        await wait_for(lambda: len(self.events(name)) >= count, timeout, what=f"log {name}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await self._reader
        assert self.proc.stderr is not None
        self.stderr = await self.proc.stderr.read()
        return code

    async def stop(self) -> int:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        return await self.wait()

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await self.wait()


@contextlib.asynccontextmanager
async def daemon_process(config: Path, **kwargs: Any) -> AsyncIterator[DaemonProcess]:
    d = await DaemonProcess(config, **kwargs).start()
    try:
        yield d
    finally:
        if d.proc is not None and d.proc.returncode is None:
            d.proc.kill()
            await d.wait()
