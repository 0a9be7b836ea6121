"""Device polling at 10,000 devices per campaign: cost of one full report round.

``python -m bench.devices [--campaigns 3] [--devices 10000] [--rounds 3]``. The simulator runs in
its own process with the bench latency; the real client, ``DevicePoller`` and SQLite store run
here, so the figures are fotawatch's own: wall time, CPU time and requests per round (a round is
every page of one campaign's report, aggregated and written in one transaction). Devices move
between statuses from round to round, so each round writes real changes.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.fixtures import ACCOUNT, start_simulator
from fotawatch.device_poller import DevicePoller
from fotawatch.logs import configure_logging
from fotawatch.model import CampaignKey
from fotawatch.store.sqlite import SqliteStore
from fotawatch.thingspace.auth import Credentials, ThingSpaceAuth
from fotawatch.thingspace.client import RetryPolicy, ThingSpaceClient
from fotawatch.thingspace.limiter import RateLimiter
from fotawatch.thingspace.transport import Transport


def _scenario(path: Path, campaigns: int, devices: int) -> Path:
    # Shares shift every 2 s of simulator time so consecutive rounds see changed devices.
    progress = [
        {"at": 2 * i, "UpgradeSuccess": 0.1 * i, "UpgradePending": 0.9 - 0.1 * i,
         "UpgradeFailed": 0.05, "NoDeviceDataFromNetwork": 0.05}
        for i in range(9)
    ]  # fmt: skip
    scenario = {
        "accounts": [ACCOUNT],
        "campaigns": [
            {"account": ACCOUNT, "id": f"de000000-0000-0000-0000-{i:012d}",
             "status": "CampaignScheduled",
             "devices": {"count": devices, "first_imei": f"35{i:02d}00000000000",
                         "progress": progress}}
            for i in range(campaigns)
        ],
        "latency": {"min": 0.02, "max": 0.05},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _rounds(url: str, db: Path, campaigns: int, rounds: int) -> list[dict[str, Any]]:
    keys = [CampaignKey(account=ACCOUNT, campaign_id=f"de000000-0000-0000-0000-{i:012d}")
            for i in range(campaigns)]  # fmt: skip
    store = await SqliteStore.open(db)
    results: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        transport = Transport(session, url, timeout=10, limiter=RateLimiter(100),
                              max_concurrency=8)  # fmt: skip
        creds = Credentials(client_id="sim-client-id", client_secret="sim-client-secret",
                            username="sim-user", password="sim-password")  # fmt: skip
        auth = ThingSpaceAuth(transport, creds, margin=60, max_login_failures=2,
                              emit=lambda _e: None)  # fmt: skip
        client = ThingSpaceClient(transport, auth, RetryPolicy())
        poller = DevicePoller(lambda: client, store, lambda _e: None)
        await poller.load()
        poller.sync(keys)
        for n in range(rounds):
            for key in keys:
                wall, cpu = time.perf_counter(), _cpu()
                result = await poller.poll(key, campaign_status="CampaignScheduled")
                counts = poller.counts(key)
                results.append({
                    "round": n, "campaign": key.campaign_id[-4:], "result": result,
                    "wall_s": time.perf_counter() - wall, "cpu_s": _cpu() - cpu,
                    "devices": counts.total if counts is not None else 0,
                })  # fmt: skip
            await asyncio.sleep(2.1)  # let the simulated devices move before the next round
    await store.close()
    return results


def run(campaigns: int = 3, devices: int = 10_000, rounds: int = 3) -> dict[str, Any]:
    """Run the device benchmark; returns a summary (also printed)."""
    configure_logging(level="warning", fmt="console", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="fwbench-devices-") as tmp:
        work = Path(tmp)
        sim = start_simulator(_scenario(work / "scenario.yaml", campaigns, devices), work)
        try:
            assert sim.url is not None
            rows = asyncio.run(_rounds(sim.url, work / "state.db", campaigns, rounds))
        finally:
            sim.stop()
    ok = [r for r in rows if r["result"] == "ok"]
    cpu = sorted(r["cpu_s"] for r in ok)
    wall = sorted(r["wall_s"] for r in ok)
    summary = {
        "campaigns": campaigns, "devices_per_campaign": devices, "rounds": len(rows),
        "ok": len(ok), "cpu_ms_median": 1000 * cpu[len(cpu) // 2] if cpu else None,
        "wall_ms_median": 1000 * wall[len(wall) // 2] if wall else None,
        "cpu_us_per_device": 1e6 * cpu[len(cpu) // 2] / devices if cpu else None,
    }  # fmt: skip
    print(f"device polling: {campaigns} campaigns x {devices:,} devices "
          f"({-(-devices // 1000)} pages), {len(ok)}/{len(rows)} rounds ok: "
          f"median {summary['wall_ms_median']:.0f} ms wall, {summary['cpu_ms_median']:.0f} ms CPU "
          f"per round ({summary['cpu_us_per_device']:.1f} µs CPU per device)")  # fmt: skip
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.devices", description=__doc__)
    parser.add_argument("--campaigns", type=int, default=3)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    run(args.campaigns, args.devices, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
