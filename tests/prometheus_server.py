"""A real Prometheus server for tests: scrapes one target with the shipped config and rules.

    async with running_prometheus("127.0.0.1:10213", tmp_path) as prom:
        await prom.wait_for(lambda: prom.query("up == 1"), what="a successful scrape")
        alerts = await prom.alerts()

The generated prometheus.yml is deploy/prometheus/scrape.yml with the target replaced, a 1 s
scrape and evaluation interval, and deploy/prometheus/fotawatch-rules.yml loaded, so tests
exercise the files users install. Needs the `prometheus` binary (see `tools.require_tool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml
from tools import require_tool

__all__ = [
    "RULES_FILE",
    "SCRAPE_FILE",
    "PrometheusServer",
    "build_config",
    "running_prometheus",
]

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
SCRAPE_FILE = DEPLOY / "scrape.yml"
RULES_FILE = DEPLOY / "fotawatch-rules.yml"
JOB = "fotawatch"

T = TypeVar("T")


def build_config(
    *,
    target: str | None = None,
    scrape_interval: str | None = None,
    evaluation_interval: str = "1m",
    rule_files: Sequence[Path] = (RULES_FILE,),
    scrape_file: Path = SCRAPE_FILE,
) -> dict[str, Any]:
    """A prometheus.yml (as a dict) holding the shipped `fotawatch` job and the rule files.

    `target` replaces the job's static target; `scrape_interval` also sets `scrape_timeout`
    (which must not exceed it). Left as None, the shipped values are kept.
    """
    snippet = yaml.safe_load(scrape_file.read_text(encoding="utf-8"))
    (job,) = (c for c in snippet["scrape_configs"] if c["job_name"] == JOB)
    if target is not None:
        job["static_configs"] = [{"targets": [target]}]
    if scrape_interval is not None:
        job["scrape_interval"] = scrape_interval
        job["scrape_timeout"] = scrape_interval
    return {
        "global": {"evaluation_interval": evaluation_interval},
        "rule_files": [str(Path(f).resolve()) for f in rule_files],
        "scrape_configs": [job],
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusServer:
    """A running Prometheus: its base URL and helpers over its HTTP API."""

    url: str
    session: aiohttp.ClientSession
    log_file: Path

    async def _api(self, path: str, **params: str) -> Any:
        async with self.session.get(f"{self.url}/api/v1/{path}", params=params) as resp:
            body = await resp.json()
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus API {path} {params}: {body}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate instant query `expr` now; the result list (`metric`, `value`) of a vector."""
        data = await self._api("query", query=expr)
        return data["result"]

    async def alerts(self) -> list[dict[str, Any]]:
        """Active (pending and firing) alerts: `labels`, `annotations`, `state`, `value`."""
        data = await self._api("alerts")
        return data["alerts"]

    async def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule, flattened, with its `health` and `lastError`."""
        data = await self._api("rules")
        return [rule for group in data["groups"] for rule in group["rules"]]

    async def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets: `labels`, `health`, `lastError`."""
        data = await self._api("targets")
        return data["activeTargets"]

    async def wait_for(
        self,
        probe: Callable[[], Awaitable[T]],
        *,
        what: str,
        timeout: float = 20,
    ) -> T:
        """Call `probe` until it returns something truthy, and return that; fail after `timeout`."""
        return await _poll_until(probe, what=what, timeout=timeout, log_file=self.log_file)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log, for failure messages."""
        return _tail(self.log_file, lines)


@contextlib.asynccontextmanager
async def running_prometheus(
    target: str,
    workdir: Path,
    *,
    rule_files: Sequence[Path] = (RULES_FILE,),
    interval: str = "1s",
    ready_timeout: float = 20,
) -> AsyncIterator[PrometheusServer]:
    """Run `prometheus` on a free 127.0.0.1 port, scraping `target` as job `fotawatch`.

    Storage, config and log live under `workdir`. Yields once /-/ready answers 200; stops the
    server (SIGTERM, then SIGKILL after 10 s) on exit.
    """
    binary = require_tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config = build_config(
        target=target,
        scrape_interval=interval,
        evaluation_interval=interval,
        rule_files=rule_files,
    )
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    log_file = workdir / "prometheus.log"
    port = _free_port()
    with log_file.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            server = PrometheusServer(
                url=f"http://127.0.0.1:{port}", session=session, log_file=log_file
            )
            await _wait_ready(server, proc, ready_timeout)
            yield server
    finally:
        await _stop(proc)


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_ready(
    server: PrometheusServer, proc: asyncio.subprocess.Process, timeout: float
) -> None:
    async def ready() -> bool:
        if proc.returncode is not None:
            raise AssertionError(
                f"prometheus exited with {proc.returncode} before it was ready:\n"
                f"{server.log_tail()}"
            )
        try:
            async with server.session.get(f"{server.url}/-/ready") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await server.wait_for(ready, what="prometheus /-/ready", timeout=timeout)


async def _poll_until(
    probe: Callable[[], Awaitable[T]], *, what: str, timeout: float, log_file: Path
) -> T:
    deadline = time.monotonic() + timeout
    last: T = await probe()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; last result: {last!r}\n"
                f"prometheus log:\n{_tail(log_file)}"
            )
        await asyncio.sleep(0.1)  # poll interval of a condition with a deadline
        last = await probe()
    return last


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it may exit between check and signal
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
