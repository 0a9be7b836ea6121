"""The running daemon as /metrics, /healthz and /readyz see it.

``DaemonState`` adapts ``app.Daemon`` to ``metrics.DaemonStatus`` and ``server.ServerStatus``:
it only reads attributes, so a scrape or a probe never does I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

from fotawatch import __version__
from fotawatch.model import CampaignKey
from fotawatch.poller import CampaignView

if TYPE_CHECKING:
    from fotawatch.app import Daemon

__all__ = ["DaemonState"]


class DaemonState:
    """Liveness, readiness and the campaign views of one daemon."""

    version = __version__

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    @property
    def login_circuit_open(self) -> bool:
        poller = self._daemon.poller
        return poller is not None and poller.client.auth.circuit.open

    @property
    def api_up(self) -> bool:
        poller = self._daemon.poller
        return poller is None or poller.api_health.up

    @property
    def reload_ok(self) -> bool:
        return self._daemon.reload_ok

    @property
    def reload_ok_at(self) -> dt.datetime | None:
        return self._daemon.reload_ok_at

    @property
    def leader(self) -> bool:
        leadership = self._daemon.leadership
        return leadership is not None and leadership.leader

    @property
    def leader_changes(self) -> int:
        leadership = self._daemon.leadership
        return 0 if leadership is None else leadership.changes

    def role(self) -> str:
        """``leader``/``follower`` with several instances (PostgreSQL); empty on SQLite."""
        leadership = self._daemon.leadership
        if leadership is None or not leadership.ha:
            return ""
        return "leader" if leadership.leader else "follower"

    def views(self) -> Iterable[CampaignView]:
        poller = self._daemon.poller
        return () if poller is None else poller.views.values()

    def polling(self, key: CampaignKey) -> bool:
        scheduler = self._daemon.scheduler
        return scheduler is not None and scheduler.polling(key)

    def healthy(self) -> tuple[bool, str]:
        if self.role() == "follower":
            return self._daemon.electing, "ok" if self._daemon.electing else "election stopped"
        scheduler = self._daemon.scheduler
        if scheduler is None or not scheduler.running:
            return False, "scheduler not running"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        d = self._daemon
        if self.role() == "follower":
            return True, "ready: follower, standing by (another instance leads)"
        if d.settings is None or d.poller is None or d.scheduler is None:
            return False, "starting: config, store or scheduler not up yet"
        circuit = d.poller.client.auth.circuit
        if circuit.open:
            return False, f"login circuit open: {circuit.reason}"
        waiting = len(d.poller.views.keys() - d.polled_since_start)
        if waiting:
            return False, f"waiting for first poll of {waiting} of {len(d.poller.views)} campaigns"
        return True, "ready: leader" if self.role() else "ready"

    def campaign_count(self) -> int:
        poller = self._daemon.poller
        return 0 if poller is None else len(poller.views)
