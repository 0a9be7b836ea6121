"""Running the simulator as a process: ``python -m fotawatch.simulator [--scenario FILE]``.

Prints one line ``simulator listening on http://HOST:PORT`` once it accepts connections (so
``--port 0`` callers can read the port), then serves until SIGTERM or SIGINT and exits 0.
Exit 2 for a bad command line or scenario, 1 when the address cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from fotawatch.simulator.app import Simulator
from fotawatch.simulator.scenario import Scenario

__all__ = ["DEFAULT_PORT", "main", "serve"]

DEFAULT_PORT = 8080
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(
    scenario_path: str | Path | Scenario | None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    out: TextIO | None = None,
) -> None:
    """Serve a scenario file (or a parsed one; None: the built-in demo) until SIGTERM/SIGINT."""
    scenario = _load(scenario_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Simulator(scenario, host=host, port=port) as sim:
            stream = sys.stdout if out is None else out
            stream.write(f"simulator listening on {sim.url}\n")
            stream.flush()
            await stop.wait()
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        scenario = _load(args.scenario)
    except (OSError, ValueError) as err:
        sys.stderr.write(f"fotawatch simulator: bad scenario {args.scenario}: {err}\n")
        return 2
    try:
        asyncio.run(serve(scenario, args.host, args.port))
    except OSError as err:
        sys.stderr.write(f"fotawatch simulator: cannot serve on {args.host}:{args.port}: {err}\n")
        return 1
    return 0


def _load(source: str | Path | Scenario | None) -> Scenario:
    if isinstance(source, Scenario):
        return source
    return Scenario.demo() if source is None else Scenario.from_file(source)


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fotawatch.simulator", description="A fake ThingSpace FOTA v3 API."
    )
    parser.add_argument("--scenario", type=Path, help="scenario YAML (default: the built-in demo)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="0 picks a free port")
    return parser
