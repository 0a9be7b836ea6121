"""The floor: the least a poller can do per poll, as a bare aiohttp loop in its own process.

    python -m bench.floor --base-url URL --ids FILE --rate R --concurrency C --seconds S

It authenticates like fotawatch's client (OAuth client credentials, then the M2M session login,
both with raw aiohttp calls), then starts ``GET /api/fota/v3/campaigns/{account}/{id}`` with the
same headers at a fixed rate, round robin over the ids, at most ``--concurrency`` in flight, and
decodes each 200 body with ``json.loads``. After ``--warmup`` seconds it measures for
``--seconds``: CPU (getrusage user+sys) per request that succeeded in that time, and requests/s.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp

from bench.fixtures import ACCOUNT, SIM_CREDENTIALS
from bench.procs import PYTHON, Child

__all__ = ["FloorSpec", "main", "result"]

_JSON = "application/json"


@dataclass(slots=True)
class _Counts:
    ok: int = 0
    failed: int = 0
    measuring: bool = False


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _tokens(session: aiohttp.ClientSession, base: str) -> tuple[str, str]:
    """(bearer, session token), as fotawatch's auth obtains them."""
    c = SIM_CREDENTIALS
    basic = base64.b64encode(f"{c['client_id']}:{c['client_secret']}".encode()).decode()
    async with session.post(
        f"{base}/api/ts/v1/oauth2/token",
        headers={"Authorization": f"Basic {basic}", "Accept": _JSON},
        data={"grant_type": "client_credentials"},
    ) as resp:
        resp.raise_for_status()
        bearer = json.loads(await resp.read())["access_token"]
    async with session.post(
        f"{base}/api/m2m/v1/session/login",
        headers={"Authorization": f"Bearer {bearer}", "Accept": _JSON, "Content-Type": _JSON},
        json={"username": c["username"], "password": c["password"]},
    ) as resp:
        resp.raise_for_status()
        m2m = json.loads(await resp.read())["sessionToken"]
    return bearer, m2m


async def _get(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    slots: asyncio.Semaphore,
    counts: _Counts,
) -> None:
    ok = False
    try:
        async with session.get(url, headers=headers) as resp:
            body = await resp.read()
            if resp.status == 200:
                json.loads(body)
                ok = True
    except (aiohttp.ClientError, TimeoutError, ValueError):
        ok = False
    finally:
        slots.release()
    if counts.measuring:
        counts.ok += ok
        counts.failed += not ok


async def _run(args: argparse.Namespace, ids: list[str]) -> dict[str, float]:
    base = args.base_url.rstrip("/")
    urls = [f"{base}/api/fota/v3/campaigns/{quote(ACCOUNT, safe='')}/{quote(i, safe='')}"
            for i in ids]
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        bearer, m2m = await _tokens(session, base)
        headers = {"Authorization": f"Bearer {bearer}", "VZ-M2M-Token": m2m,
                   "Accept": _JSON, "Content-Type": _JSON}
        return await _paced(session, urls, headers, args)


async def _paced(
    session: aiohttp.ClientSession,
    urls: list[str],
    headers: dict[str, str],
    args: argparse.Namespace,
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(args.concurrency)
    counts = _Counts()
    tasks: set[asyncio.Task[None]] = set()
    period = 1.0 / args.rate
    start = loop.time()
    measure_from, end = start + args.warmup, start + args.warmup + args.seconds
    cpu0 = t0 = 0.0
    due, index = start, 0
    while (now := loop.time()) < end:
        if not counts.measuring and now >= measure_from:
            counts.measuring, cpu0, t0 = True, _cpu(), time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
            continue
        await slots.acquire()
        task = loop.create_task(_get(session, urls[index % len(urls)], headers, slots, counts))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        index, due = index + 1, due + period
    cpu, elapsed = _cpu() - cpu0, time.monotonic() - t0
    counts.measuring = False
    if tasks:
        await asyncio.wait(tasks)
    return {
        "requests_ok": counts.ok,
        "requests_failed": counts.failed,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "cpu_us_per_req": cpu / counts.ok * 1e6 if counts.ok else float("nan"),
        "req_per_s": counts.ok / elapsed if elapsed else 0.0,
        "rate_target": args.rate,
        "concurrency": args.concurrency,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--ids", type=Path, required=True, help="file with one campaign id a line")
    p.add_argument("--rate", type=float, required=True, help="requests started per second")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=20.0, help="measured time")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured time first")
    p.add_argument("--timeout", type=float, default=10.0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    ids = args.ids.read_text().split()
    result = asyncio.run(_run(args, ids))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FloorSpec:
    """What the floor polls and how hard: the daemon's simulator, ids, rate and bound."""

    sim_url: str
    ids_file: Path
    rate: float
    concurrency: int
    log_dir: Path

    def start(self, *, seconds: float, warmup: float = 2.0, name: str = "floor") -> Child:
        """Start the floor process: it measures ``seconds`` after ``warmup`` (plus its setup)."""
        argv = [PYTHON, "-m", "bench.floor", "--base-url", self.sim_url,
                "--ids", str(self.ids_file), "--rate", f"{self.rate:.6f}",
                "--concurrency", str(self.concurrency), "--seconds", str(seconds),
                "--warmup", str(warmup)]  # fmt: skip
        return Child(name, argv, self.log_dir).start()

    def run(self, *, seconds: float) -> dict[str, float]:
        """Run the floor alone and return its figures."""
        return result(self.start(seconds=seconds, name="floor-alone"), seconds + 120)


def result(child: Child, timeout: float) -> dict[str, float]:
    """Wait for a started floor process; its figures."""
    assert child.proc is not None
    code = child.proc.wait(timeout)
    child.stop()
    lines = child.stdout_path.read_text().strip().splitlines()
    if code != 0 or not lines:
        tail = child.stderr_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the floor failed (exit {code}):\n{tail}")
    figures: dict[str, float] = json.loads(lines[-1])
    return figures


if __name__ == "__main__":
    sys.exit(main())
