"""Command line: run | check-config | test-alert | status | history | migrate-state | simulate |
demo.

``status --url http://HOST:PORT`` reads a running daemon's ``/api/v1/campaigns`` instead of
polling ThingSpace (same table, same ``--json`` rows); ``--user`` with the password in
``$FOTAWATCH_PASSWORD`` when the daemon asks for basic auth, ``--cacert`` for its TLS CA.

``migrate-state --from STATE_DB --to postgresql://...`` copies a single instance's SQLite state
into an empty PostgreSQL database (docs/ha.md); the password is best left to libpq
(``PGPASSWORD``, ``~/.pgpass``) so that it is not on the command line.

Exit codes: 0 success, 78 (EX_CONFIG) for a bad config, 1 for anything else. A bad config is
reported as one line on stderr naming the key, never with a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fotawatch import __version__

__all__ = ["EX_CONFIG", "main"]

EX_CONFIG = 78
PASSWORD_ENV = "FOTAWATCH_PASSWORD"  # noqa: S105 - the variable's name, not a password
DEFAULT_CONFIG = Path("/etc/fotawatch/fotawatch.yaml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fotawatch", description="Watch Verizon ThingSpace FOTA v3 campaigns."
    )
    parser.add_argument("--version", action="version", version=f"fotawatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML config file")
        return p

    with_config("run", "run the daemon")
    with_config("check-config", "validate the config file; exit 0 or 78")
    with_config("test-alert", "send a test message to every configured alert sink")
    status = with_config(
        "status", "poll every configured and discovered campaign once; print a table"
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument(
        "--url",
        help="read a running daemon (http[s]://HOST:PORT) instead of polling ThingSpace",
    )
    status.add_argument(
        "--user", help=f"basic-auth user for --url; the password is read from ${PASSWORD_ENV}"
    )
    status.add_argument("--cacert", type=Path, help="CA file to verify an https --url")
    history = with_config("history", "print the recorded transitions of a campaign")
    history.add_argument("campaign_id")
    history.add_argument("--json", action="store_true", help="print JSON instead of a table")
    migrate = sub.add_parser(
        "migrate-state",
        help="copy a SQLite state file into an empty PostgreSQL database",
        description="Copy a SQLite state file (campaigns, transitions, outbox, devices,"
        " discoveries) into an empty PostgreSQL database, in one transaction. Stop fotawatch"
        " first. Give the password through PGPASSWORD or ~/.pgpass, not in the DSN.",
    )
    migrate.add_argument("--from", dest="source", type=Path, required=True, metavar="STATE_DB",
                         help="the SQLite state file (state_path)")  # fmt: skip
    migrate.add_argument("--to", dest="target", required=True, metavar="DSN",
                         help="postgresql://USER@HOST:PORT/DB (state_dsn)")  # fmt: skip
    sim = sub.add_parser("simulate", help="serve a simulated ThingSpace API")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--scenario", type=Path, default=None, help="scenario YAML (default: demo)")
    demo = sub.add_parser("demo", help="show fotawatch at work against the simulator")
    demo.add_argument("--forever", action="store_true", help="keep running until Ctrl-C")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fotawatch`` console script."""
    args = _parser().parse_args(argv)
    from fotawatch.errors import ConfigError  # noqa: PLC0415 - keep --help fast

    try:
        return _dispatch(args)
    except ConfigError as err:
        print(f"fotawatch: config error: {err}", file=sys.stderr)  # noqa: T201
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": lambda a: _run(a.config),
        "check-config": lambda a: _check_config(a.config),
        "test-alert": lambda a: asyncio.run(_test_alert(a.config)),
        "status": lambda a: asyncio.run(_status(a)),
        "history": lambda a: asyncio.run(_history(a.config, a.campaign_id, as_json=a.json)),
        "migrate-state": _migrate,
        "simulate": _simulate,
        "demo": _demo,
    }
    return handlers[args.command](args)


def _simulate(args: argparse.Namespace) -> int:
    from fotawatch.simulator import main as simulate  # noqa: PLC0415

    argv = ["--port", str(args.port), "--host", args.host]
    if args.scenario is not None:
        argv += ["--scenario", str(args.scenario)]
    return simulate(argv)


def _demo(args: argparse.Namespace) -> int:
    from fotawatch.demo import run_demo  # noqa: PLC0415

    return asyncio.run(run_demo(forever=args.forever))


def _load(config: Path) -> Any:
    from fotawatch.config import config_file_warnings, load_settings  # noqa: PLC0415

    settings = load_settings(config)
    for warning in config_file_warnings(config):
        print(f"fotawatch: warning: {warning}", file=sys.stderr)  # noqa: T201
    return settings


def _run(config: Path) -> int:
    from prometheus_client import disable_created_metrics  # noqa: PLC0415

    from fotawatch.app import Daemon  # noqa: PLC0415
    from fotawatch.logs import configure_logging  # noqa: PLC0415
    from fotawatch.loop import daemon_loop  # noqa: PLC0415

    settings = _load(config)
    # _created samples are not part of fotawatch's metric contract (docs/metrics.md).
    disable_created_metrics()  # type: ignore[no-untyped-call]
    redactor = configure_logging(level=settings.logging.level, fmt=settings.logging.format)
    daemon = Daemon(config, redactor=redactor)
    with asyncio.Runner(loop_factory=daemon_loop) as runner:  # I/O wake-ups batched when busy
        return runner.run(daemon.run(settings))


def _check_config(config: Path) -> int:
    from fotawatch.state import describe_state  # noqa: PLC0415

    settings = _load(config)
    print(  # noqa: T201
        f"{config}: OK ({len(settings.campaigns)} campaigns, state at {describe_state(settings)})"
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    source, target = args.source, args.target
    if not target.startswith(("postgresql://", "postgres://")):
        print("fotawatch: --to must be a postgresql:// URI", file=sys.stderr)  # noqa: T201
        return 2
    if not source.is_file():
        print(f"fotawatch: --from {source}: no such file", file=sys.stderr)  # noqa: T201
        return 1
    return asyncio.run(_migrate_state(source, target))


async def _migrate_state(source: Path, target: str) -> int:
    from fotawatch.errors import StoreError  # noqa: PLC0415
    from fotawatch.store.migrate import migrate_state  # noqa: PLC0415

    try:
        counts = await migrate_state(source, target)
    except StoreError as err:
        print(f"fotawatch: migrate-state failed: {err}", file=sys.stderr)  # noqa: T201
        return 1
    moved = ", ".join(f"{count} {table}" for table, count in counts.items())
    print(f"fotawatch: copied {source} to PostgreSQL: {moved}")  # noqa: T201
    return 0


async def _status(args: argparse.Namespace) -> int:
    from fotawatch.status import poll_once, render_table  # noqa: PLC0415

    rows = await (_status_from_daemon(args) if args.url else poll_once(_load(args.config)))
    if rows is None:
        return 1
    print(json.dumps(rows, indent=2) if args.json else render_table(rows))  # noqa: T201
    return 0 if all(r["error"] is None for r in rows) else 1


async def _status_from_daemon(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """The rows of a running daemon; None (after one line on stderr) when it cannot be read."""
    from fotawatch.errors import FotawatchError  # noqa: PLC0415
    from fotawatch.status import read_daemon  # noqa: PLC0415

    password = os.environ.get(PASSWORD_ENV, "")
    try:
        return await read_daemon(args.url, user=args.user, password=password, cafile=args.cacert)
    except FotawatchError as err:
        print(f"fotawatch: {err}", file=sys.stderr)  # noqa: T201
        return None


async def _history(config: Path, campaign_id: str, *, as_json: bool) -> int:
    from fotawatch.status import read_history, render_history  # noqa: PLC0415

    rows = await read_history(_load(config), campaign_id)
    print(json.dumps(rows, indent=2) if as_json else render_history(rows))  # noqa: T201
    return 0 if rows else 1


async def _test_alert(config: Path) -> int:
    import aiohttp  # noqa: PLC0415

    from fotawatch.alerts.service import send_test  # noqa: PLC0415

    settings = _load(config)
    async with aiohttp.ClientSession() as session:
        outcomes = await send_test(settings.alerts, session)
    if not outcomes:
        message = "fotawatch: no alert sinks configured (alerts.slack, alerts.webhooks)"
        print(message, file=sys.stderr)  # noqa: T201
        return 1
    for sink, outcome in outcomes.items():
        print(f"{sink}: {outcome}")  # noqa: T201
    return 0 if all(o == "delivered" for o in outcomes.values()) else 1
