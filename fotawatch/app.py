"""The composition root: the only module that constructs and wires fotawatch's parts.

``Daemon.run`` owns every lifecycle through one ``AsyncExitStack``: the aiohttp session, the
store, the HTTP server, the election. What polls and sends (baseline, scheduler, alert
dispatchers, device polling, discovery) lives in a *term*, its own ``AsyncExitStack`` entered
each time this instance becomes leader: always at once on SQLite; on PostgreSQL when it wins the
advisory lock (``fotawatch.leader``). A term ends at a stop, or at once when leadership is lost:
polls are cancelled, dispatchers start no new send (one in flight is answered and marked, its
rows locked to this instance meanwhile), and campaign series leave /metrics. Signals: SIGHUP
reloads the config (an invalid one is logged and the old one kept), SIGTERM/SIGINT stop:
scheduling stops, in-flight polls get until the request timeout (capped so the process exits
within 10 s), everything is closed, and ``run`` returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from prometheus_client import CollectorRegistry

from fotawatch import __version__
from fotawatch.alerts.senders import DEFAULT_TIMEOUT
from fotawatch.alerts.service import AlertService
from fotawatch.config import Settings, load_settings
from fotawatch.device_poller import DevicePoller
from fotawatch.device_watch import DeviceWatch, device_intervals
from fotawatch.devices import DeviceCounts
from fotawatch.discovery import Discovery, merge_targets
from fotawatch.errors import ConfigError
from fotawatch.events import CampaignPolled, Event, EventHub, Subscriber
from fotawatch.health import DaemonState
from fotawatch.leader import Leadership
from fotawatch.logs import Redactor
from fotawatch.metrics import Metrics
from fotawatch.model import CampaignKey
from fotawatch.poller import ApiHealth, Poller, PollOutcome, Target
from fotawatch.scheduler import PollScheduler, SchedulePolicy
from fotawatch.server import Server, make_app, start
from fotawatch.state import describe_state, dsn_secrets, leadership_for, open_state
from fotawatch.store.base import Store
from fotawatch.systemd import Notifier, run_watchdog, watchdog_interval
from fotawatch.thingspace.auth import Credentials, ThingSpaceAuth
from fotawatch.thingspace.client import RetryPolicy, ThingSpaceClient
from fotawatch.thingspace.limiter import RateLimiter
from fotawatch.thingspace.transport import Transport
from fotawatch.web import CampaignSource, store_history
from fotawatch.webconfig import load_web_config, ssl_context

__all__ = ["Daemon", "build_client", "settings_secrets", "targets_of"]

log = structlog.get_logger("fotawatch.app")
SHUTDOWN_DEADLINE = 8.0  # seconds for in-flight polls; the whole stop stays under 10 s
DRAIN_ON_LOSS = DEFAULT_TIMEOUT + 1  # a send in flight when leadership is lost: its answer


def targets_of(settings: Settings) -> list[Target]:
    """The campaigns to poll, with their effective intervals."""
    default = settings.polling.interval_seconds
    return [
        Target(
            key=CampaignKey(account=c.account, campaign_id=c.campaign_id),
            name=c.name,
            interval=c.interval_seconds or default,
        )
        for c in settings.campaigns
    ]


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value in the settings, for log redaction."""
    ts = settings.thingspace
    values = [
        s.get_secret_value() for s in (ts.client_id, ts.client_secret, ts.username, ts.password)
    ]
    values += dsn_secrets(settings)
    slack = settings.alerts.slack
    if slack is not None:
        values.append(slack.webhook_url.get_secret_value())
    for hook in settings.alerts.webhooks:
        values.append(hook.url.get_secret_value())
        values.extend(v.get_secret_value() for v in hook.headers.values())
    return values


def build_client(
    settings: Settings, session: aiohttp.ClientSession, emit: Callable[[Event], None]
) -> ThingSpaceClient:
    """The ThingSpace client for ``settings.thingspace``."""
    ts = settings.thingspace
    transport = Transport(
        session,
        ts.base_url,
        timeout=ts.timeout_seconds,
        limiter=RateLimiter(ts.requests_per_second),
        max_concurrency=ts.max_concurrency,
    )
    credentials = Credentials(
        client_id=ts.client_id.get_secret_value(),
        client_secret=ts.client_secret.get_secret_value(),
        username=ts.username.get_secret_value(),
        password=ts.password.get_secret_value(),
    )
    auth = ThingSpaceAuth(
        transport,
        credentials,
        margin=ts.token_refresh_margin_seconds,
        max_login_failures=ts.max_login_failures,
        emit=emit,
    )
    retry = RetryPolicy(
        attempts=ts.retry.attempts,
        backoff_initial=ts.retry.backoff_initial_seconds,
        backoff_max=ts.retry.backoff_max_seconds,
        retry_after_max=ts.retry.retry_after_max_seconds,
    )
    return ThingSpaceClient(transport, auth, retry)


def _policy(settings: Settings) -> SchedulePolicy:
    p = settings.polling
    return SchedulePolicy(
        jitter=p.jitter_seconds,
        misfire_grace=p.misfire_grace_seconds,
        final_confirmations=p.final_confirmations,
        missing_interval=p.missing_interval_seconds,
    )


def _api_down_after(settings: Settings) -> float:
    down_after = settings.alerts.api_down_after
    return math.inf if down_after is None else down_after


class Daemon:
    """One running fotawatch: built from a config file, stopped by a signal or ``stop()``."""

    def __init__(
        self,
        config_path: Path,
        *,
        environ: Mapping[str, str] | None = None,
        subscribers: Sequence[Subscriber] = (),
        redactor: Redactor | None = None,
    ) -> None:
        self.config_path = config_path
        self._environ = os.environ if environ is None else environ
        self._extra_subscribers = subscribers
        self.redactor = Redactor() if redactor is None else redactor
        self._secrets_seen: tuple[str, ...] = ()  # what _poll last gave the redactor
        self.settings: Settings | None = None
        self.hub = EventHub(on_error=self._subscriber_failed)
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._reload_pending = False
        self._tasks: set[asyncio.Task[bool]] = set()
        self.poller: Poller | None = None
        self.alerts: AlertService | None = None
        self.devices: DevicePoller | None = None
        self.device_watch: DeviceWatch | None = None
        self.discovery: Discovery | None = None
        self.state = DaemonState(self)
        self.registry = CollectorRegistry()
        self.metrics = Metrics(
            self.registry, views=self.state.views, polling=self.state.polling, status=self.state
        )
        self.server: Server | None = None
        self.scheduler: PollScheduler | None = None
        self.polled_since_start: set[CampaignKey] = set()
        self.reload_ok = True
        self.reload_ok_at: dt.datetime | None = None
        self.started = asyncio.Event()
        self.notifier = Notifier.from_env(self._environ)
        self.leadership: Leadership | None = None
        self.electing = False  # the election loop runs (a follower is healthy while it does)

    def load(self) -> Settings:
        """Read and validate the config file (raises ConfigError)."""
        return load_settings(self.config_path, environ=self._environ)

    def stop(self) -> None:
        self._stop.set()

    async def run(self, settings: Settings | None = None) -> int:
        """Run until stopped; returns the exit code (0 on a clean stop)."""
        self.settings = settings or self.load()
        self.redactor.add(*settings_secrets(self.settings))
        self.reload_ok_at = dt.datetime.now(dt.UTC)
        metrics_settings = self.settings.metrics
        web_config = (
            load_web_config(metrics_settings.web_config_file)
            if metrics_settings.web_config_file
            else None
        )
        for sub in (self._track_polled, self.metrics.on_event, *self._extra_subscribers):
            self.hub.subscribe(sub)
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(aiohttp.ClientSession())
            store = await stack.enter_async_context(open_state(self.settings))
            assert store is not None
            self._store = store
            client = build_client(self.settings, session, self.hub.emit)
            self.redactor.add(*client.auth.secrets)
            self.alerts = AlertService(self.settings.alerts, store, session, metrics=self.metrics)
            self.hub.subscribe(self.alerts.on_event)
            self.hub.subscribe(self._device_event)
            self.poller = Poller(
                client,
                store,
                self.hub.emit,
                api_health=ApiHealth(_api_down_after(self.settings), self.hub.emit),
                outbox_for=self.alerts.outbox_for,
            )
            self.metrics.add_sinks(self.alerts.sinks)
            campaigns = CampaignSource(
                views=self.state.views,
                polling=self.state.polling,
                history=store_history(store),
                progress=self._progress,
                role=self.state.role,
            )
            app = make_app(
                registry=self.registry,
                status=self.state,
                web_config=web_config,
                campaigns=campaigns,
            )
            tls = ssl_context(web_config) if web_config else None
            self.server = await start(app, metrics_settings.host, metrics_settings.port, tls)
            stack.push_async_callback(self.server.close)
            log.info(
                "http_listening", host=self.server.host, port=self.server.port, tls=tls is not None
            )
            self._session = session
            self._install_signals()
            stack.callback(self._remove_signals)
            self.leadership = leadership_for(self.settings)
            stack.push_async_callback(self.leadership.close)  # after the last term ended
            # READY as systemd means it: config loaded, store open, HTTP bound. Leading (the
            # baseline, thousands of jobs) follows; /readyz says when polling is up.
            self.notifier.ready(status="starting")
            self._start_watchdog(stack)
            log.info(
                "fotawatch_started",
                version=__version__,
                campaigns=len(self.settings.campaigns),
                state=describe_state(self.settings),
            )
            self.started.set()
            if self._reload_pending:  # a SIGHUP that arrived while starting
                self._reload_pending = False
                self.request_reload()
            self.electing = True
            try:
                await self._elect(self.leadership)
            finally:
                self.electing = False
        for task in list(self._tasks):
            task.cancel()
        log.info("fotawatch_stopped")
        return 0

    # --- leading ---------------------------------------------------------------------------

    async def _elect(self, leadership: Leadership) -> None:
        """Lead whenever elected, until stopped: one term per leadership."""
        stopping: asyncio.Task[Any] = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                acquiring = asyncio.ensure_future(leadership.acquire())
                await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not acquiring.done():
                    acquiring.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await acquiring
                    break
                lost = acquiring.result()
                await self._term(lost, stopping)
        finally:
            stopping.cancel()
        self.notifier.stopping()
        log.info("fotawatch_stopping")

    async def _term(self, lost: asyncio.Event, stopping: asyncio.Task[Any]) -> None:
        """Poll and send until stopped (a graceful end) or ``lost`` (an immediate one)."""
        assert self.settings is not None
        if self.state.role():
            self.notifier.status("leader: starting")
        losing: asyncio.Task[Any] = asyncio.ensure_future(lost.wait())
        try:
            async with contextlib.AsyncExitStack() as term:
                term.callback(self._end_term)
                await self._begin_term(term, lambda: 0.0 if lost.is_set() else SHUTDOWN_DEADLINE)
                await asyncio.wait({losing, stopping}, return_when=asyncio.FIRST_COMPLETED)
                assert self.alerts is not None
                # Lost: no new poll or send, but a send in flight is answered and marked (its
                # rows are locked to us meanwhile), else the next leader would repeat it.
                self.alerts.drain_seconds = DRAIN_ON_LOSS if lost.is_set() else 0.0
                if lost.is_set():
                    self.notifier.status("follower: leadership lost, standing by")
        finally:
            losing.cancel()
        if self.state.role() == "follower":
            self.notifier.status("follower: standing by")

    async def _begin_term(
        self, term: contextlib.AsyncExitStack, deadline: Callable[[], float]
    ) -> None:
        """Baseline from the store (another leader may have moved it on), then poll and send.

        Unwound in reverse: the scheduler stops first (``deadline()`` s for in-flight polls: 0
        when leadership was lost), then the dispatchers, then the buffered writes.
        """
        assert self.settings is not None
        assert self.poller is not None
        assert self.alerts is not None
        targets, devices = await self._start_progress(self._store)
        self.metrics.sync(t.key for t in targets)
        await self.poller.load(targets)
        term.push_async_callback(self.poller.close)  # runs after the scheduler stopped
        # re-arm conditions (the failure rate too) from the store
        self.alerts.prime(self.poller.views.values(), devices.latest)
        # Entered before the scheduler, so unwound after it: alerts of the last polls go out.
        await term.enter_async_context(self.alerts)
        self.metrics.set_queue_depths(self.alerts.depths)
        self.scheduler = PollScheduler(self._poll, _policy(self.settings), self.hub.emit)
        self._schedule(targets)
        self.scheduler.start()
        scheduler = self.scheduler

        async def stop_polling() -> None:
            await scheduler.shutdown(deadline())

        term.push_async_callback(stop_polling)
        self.notifier.status(f"watching {len(targets)} campaigns")
        log.info("polling_started", campaigns=len(targets), role=self.state.role() or "single")

    def _end_term(self) -> None:
        """A follower exports no campaign series and keeps no views: the leader owns them."""
        if self.poller is not None:
            self.poller.sync([])
        self.metrics.sync([])
        self.metrics.set_devices(tuple)
        self.metrics.set_queue_depths(dict)  # a follower's dispatchers are idle: no depth
        self.scheduler = None
        self.device_watch = None
        self.polled_since_start.clear()

    def _device_event(self, event: Event) -> None:
        """The hub's one subscription for device polling, whichever term's watch is current."""
        if self.device_watch is not None:
            self.device_watch.on_event(event)

    def _start_watchdog(self, stack: contextlib.AsyncExitStack) -> None:
        """Ping systemd's watchdog from the event loop while the daemon is healthy."""
        interval = watchdog_interval(self._environ)
        if interval is None:
            return
        task = asyncio.get_running_loop().create_task(
            run_watchdog(self.notifier, interval, health=lambda: self._watchdog_healthy)
        )
        stack.callback(task.cancel)

    @property
    def _watchdog_healthy(self) -> bool:
        """A leader's scheduler runs; a follower's election runs; starting counts as healthy."""
        if self.scheduler is None:
            return not self.started.is_set() or self.electing
        return self.scheduler.running

    async def _start_progress(self, store: Store) -> tuple[list[Target], DevicePoller]:
        """Device progress and discovery (issue 8): the configured + discovered targets."""
        assert self.settings is not None
        assert self.alerts is not None
        self.devices = DevicePoller(self._client, store, self.hub.emit,
                                    outbox_for=self.alerts.progress_outbox)  # fmt: skip
        await self.devices.load()
        self.alerts.progress_of = self.devices.counts
        self.metrics.set_devices(self.devices.snapshots)
        self.discovery = Discovery(
            self._client, store, self.hub.emit, accounts=self.settings.accounts,
            interval=self.settings.polling.interval_seconds,
            configured=self.settings.campaign_keys(), outbox_for=self.alerts.notice_outbox,
        )  # fmt: skip
        targets = merge_targets(targets_of(self.settings), await self.discovery.load())
        self.devices.sync([t.key for t in targets])  # stored counts of other campaigns: not shown
        return targets, self.devices

    def _schedule(self, targets: list[Target]) -> None:
        """Poll jobs for ``targets``; device-poll jobs follow the campaigns' statuses (hub
        events); discovery runs on its interval."""
        assert self.settings is not None
        assert self.devices is not None
        assert self.scheduler is not None
        polling = self.settings.polling
        self.device_watch = DeviceWatch(
            self.devices, self.scheduler, interval=polling.devices_interval_seconds,
            intervals=device_intervals(self.settings), jitter=polling.jitter_seconds,
        )  # fmt: skip
        self.device_watch.sync(targets)
        self.scheduler.sync(targets)
        self._schedule_discovery()

    def _progress(self, key: CampaignKey) -> DeviceCounts | None:
        """Device counts for the status page (None before device polling is up, or unknown)."""
        return None if self.devices is None else self.devices.counts(key)

    def _client(self) -> ThingSpaceClient:
        """The current client (a reload may replace it): for device polls and discovery."""
        assert self.poller is not None
        return self.poller.client

    def _schedule_discovery(self) -> None:
        assert self.settings is not None
        assert self.scheduler is not None
        assert self.discovery is not None
        if self.discovery.rules:
            interval = self.settings.polling.discovery_interval_seconds
            self.scheduler.every("discovery", self._discover, interval)
        else:
            self.scheduler.cancel("discovery")

    async def _discover(self) -> None:
        """The discovery job: list the accounts, then watch exactly configured + discovered."""
        assert self.discovery is not None
        discovered = await self.discovery.run_once()
        assert self.settings is not None
        self._apply_targets(merge_targets(targets_of(self.settings), discovered))

    def _apply_targets(self, targets: list[Target]) -> None:
        assert self.poller is not None
        assert self.scheduler is not None
        assert self.device_watch is not None
        keys = {t.key for t in targets}
        self.metrics.sync(keys)
        if self.alerts is not None:
            for gone in set(self.poller.views) - keys:
                self.alerts.tracker.forget(gone)
        self.poller.sync(targets)
        self.scheduler.sync(targets)
        self.device_watch.sync(targets)

    async def _poll(self, target: Target) -> PollOutcome:
        assert self.poller is not None
        outcome = await self.poller.poll(target)
        secrets = self.poller.client.auth.secrets
        if secrets != self._secrets_seen:  # a new token: redact it from now on
            self.redactor.rotate(*secrets)
            self._secrets_seen = secrets
        return outcome

    def _track_polled(self, event: Event) -> None:
        if isinstance(event, CampaignPolled):
            self.polled_since_start.add(event.key)

    def _subscriber_failed(self, subscriber: Subscriber, event: Event, err: Exception) -> None:
        log.error(
            "subscriber_failed",
            subscriber=getattr(subscriber, "__qualname__", "?"),
            event=type(event).__name__,
            error=repr(err),
        )

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    def request_reload(self) -> None:
        """SIGHUP: reload soon; reloads requested during a reload collapse into one more."""
        if self._reload_lock.locked() or not self.started.is_set():
            self._reload_pending = True
            return
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> bool:
        """Re-read the config and apply it; keep the old one if the new one is invalid."""
        async with self._reload_lock:
            self.notifier.reloading()
            ok = self._reload_once()
            while self._reload_pending:
                self._reload_pending = False
                ok = self._reload_once()
            self.notifier.ready(status="config reloaded" if ok else "config reload failed")
            return ok

    def _reload_once(self) -> bool:
        assert self.settings is not None
        assert self.poller is not None
        try:
            new = self.load()
        except ConfigError as err:
            self.reload_ok = False
            # One line with the reason is the message; a traceback would only add noise.
            log.error("config_reload_failed", error=str(err), kept="previous config")  # noqa: TRY400
            return False
        old, self.settings = self.settings, new
        self.redactor.add(*settings_secrets(new))
        old_auth = self.poller.client.auth
        if new.thingspace != old.thingspace:
            self.poller.client = build_client(new, self._session, self.hub.emit)
        # Closing the old circuit says so (log, metric, the condition's "resolved" message)
        # when the fix was new credentials, which come with a new client.
        old_auth.reset()
        for key in ("state_path", "state_dsn", "ha", "metrics", "alerts"):
            if getattr(new, key) != getattr(old, key):
                log.warning("config_change_needs_restart", key=key)
        self.reload_ok, self.reload_ok_at = True, dt.datetime.now(dt.UTC)
        if self.scheduler is None:  # a follower: the next term starts from the new settings
            log.info("config_reloaded", campaigns=len(new.campaigns), role="follower")
            return True
        assert self.discovery is not None
        assert self.device_watch is not None
        self.discovery.configure(accounts=new.accounts, interval=new.polling.interval_seconds,
                                 configured=new.campaign_keys())  # fmt: skip
        self.device_watch.configure(interval=new.polling.devices_interval_seconds,
                                    intervals=device_intervals(new),
                                    jitter=new.polling.jitter_seconds)  # fmt: skip
        targets = merge_targets(targets_of(new), self.discovery.targets())
        self.scheduler.policy = _policy(new)
        self._apply_targets(targets)
        self._schedule_discovery()
        log.info("config_reloaded", campaigns=len(targets))
        return True
