"""Talk to systemd over ``$NOTIFY_SOCKET``: readiness, reload, stop and watchdog pings.

The sd_notify(3) protocol is one datagram of ``KEY=VALUE`` lines sent to an ``AF_UNIX`` socket
whose path (or ``@abstract`` name) is in ``$NOTIFY_SOCKET``. systemd documents it as stable
(systemd.io/PORTABILITY_AND_STABILITY), so it is written out here, after systemd's own
``man/notify-selfcontained-example.py``, instead of pulling in a native libsystemd binding.

Outside systemd ``$NOTIFY_SOCKET`` is unset and every call is a no-op. A failed send is logged as
``sd_notify_failed`` and reported by the return value; it never raises, because a lost
notification must not take the daemon down (systemd notices a missing READY or WATCHDOG itself).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol, Self

import structlog

__all__ = ["Logger", "Notifier", "run_watchdog", "watchdog_interval"]


class Logger(Protocol):
    """The slice of a structlog logger this module uses."""

    def info(self, event: str, /, **kw: Any) -> Any: ...

    def warning(self, event: str, /, **kw: Any) -> Any: ...


class Notifier:
    """Send sd_notify(3) messages to the service manager; a no-op when there is none."""

    def __init__(self, address: str | None, *, logger: Logger) -> None:
        self._address = address or None
        self._logger = logger
        self._socket: socket.socket | None = None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, *, logger: Logger | None = None
    ) -> Self:
        """A notifier for ``$NOTIFY_SOCKET`` in ``environ`` (disabled when it is unset)."""
        return cls(environ.get("NOTIFY_SOCKET"), logger=logger or structlog.get_logger())

    @property
    def enabled(self) -> bool:
        """True when ``$NOTIFY_SOCKET`` named a socket to send to."""
        return self._address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` as one message; True when it was handed to the manager."""
        if not lines:
            raise ValueError("sd_notify needs at least one KEY=VALUE line")
        if self._address is None:
            return False
        try:
            self._send("\n".join(lines).encode())
        except OSError as err:
            self._logger.warning("sd_notify_failed", error=str(err), socket=self._address)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup or reload finished: ``READY=1`` (with an optional status line)."""
        return self.notify("READY=1", *([] if status is None else [_status_line(status)]))

    def reloading(self) -> bool:
        """A reload began: ``RELOADING=1`` stamped with ``MONOTONIC_USEC`` (systemd >= 253)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Shutdown began: ``STOPPING=1``."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Keep-alive ping: ``WATCHDOG=1``."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """Free-form status shown by ``systemctl status``."""
        return self.notify(_status_line(text))

    def close(self) -> None:
        """Close the socket; a later notify opens a new one."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, payload: bytes) -> None:
        address = _socket_address(self._address or "")
        if self._socket is None:
            # Non-blocking: a manager that stopped reading must not stall the event loop.
            kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            self._socket = socket.socket(socket.AF_UNIX, kind)
        self._socket.sendto(payload, address)


def _socket_address(raw: str) -> str:
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    raise OSError(f"unsupported NOTIFY_SOCKET address {raw!r}: need /path or @abstract")


def _status_line(text: str) -> str:
    return "STATUS=" + " ".join(text.splitlines())  # a newline would start a new KEY=VALUE


def watchdog_interval(
    environ: Mapping[str, str] = os.environ, pid: int | None = None
) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC`` (sd_watchdog_enabled(3)).

    None when the watchdog is off, the value is malformed, or ``$WATCHDOG_PID`` names another
    process (``pid`` defaults to this one).
    """
    usec = _positive_int(environ.get("WATCHDOG_USEC"))
    if usec is None:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner is not None and _positive_int(owner) != (os.getpid() if pid is None else pid):
        return None
    return usec / 2 / 1_000_000


def _positive_int(text: str | None) -> int | None:
    if text is None or not (text.isascii() and text.isdigit()):
        return None
    return int(text) or None


def _always_healthy() -> bool:
    return True


async def run_watchdog(
    notifier: Notifier,
    interval: float,
    *,
    health: Callable[[], bool] = _always_healthy,
    logger: Logger | None = None,
) -> None:
    """Ping ``WATCHDOG=1`` every ``interval`` seconds while ``health()`` holds; cancel to stop.

    The pings come from the event loop itself, so a wedged loop stops them and systemd restarts
    the service after ``WatchdogSec=``. An unhealthy ``health()`` withholds pings (logged once
    on the way down and once on recovery), so a short blip heals but a lasting one restarts.
    """
    if interval <= 0:
        raise ValueError(f"watchdog interval must be positive, got {interval}")
    log = logger or structlog.get_logger()
    was_healthy = True
    while True:
        healthy = health()
        if healthy:
            notifier.watchdog()
        if healthy != was_healthy:
            _log_health_change(log, healthy=healthy)
        was_healthy = healthy
        await asyncio.sleep(interval)


def _log_health_change(log: Logger, *, healthy: bool) -> None:
    if healthy:
        log.info("watchdog_resumed")
    else:
        log.warning("watchdog_withheld", reason="health check failed")
