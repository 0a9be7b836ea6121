"""Campaign discovery: find an account's campaigns through the campaigns-by-status report.

For each account with ``discover: true``, every ``polling.discovery_interval_seconds``:

- **Listing**: every status of ``DISCOVERY_STATUSES`` (the 8 documented ``campaignStatus``
  values and ``CampaignPreScheduled``, reference §3.1, §7 item 2), paged with
  ``lastSeenCampaignId`` (``0`` first) while ``hasMoreData``. A cursor that is missing or repeats
  abandons the account's run (``PagingError``, logged once); so do timeouts, 5xx and auth errors.
  An account's run is all or nothing: a failed run changes nothing and keeps its campaigns.
- **Path** (§7 item 4): the docs' ``/reports/{acc}/campaigns`` or the SDK's
  ``/reports/{acc}/firmware/campaigns``. The one that answers is remembered per account; a 404,
  or a 400 with the gateway fault 900906 ("no matching resource"), means the path is wrong and
  the other is tried at once. A status the API refuses with another 4xx (``CampaignPreScheduled``
  is not in the documented enum) is skipped, logged once; if every status is refused the run
  fails.
- **Filters**: ``make`` / ``model`` (case-insensitive equality) and ``name_pattern`` (a regex
  searched in the campaign name; a campaign without a name does not match). Campaigns filtered
  out are not recorded; a watched one that no longer matches (filters changed) is let go.
- **Decisions**, persisted in the store (``discovered``) so restarts keep them:
  a new campaign that is not final is *watched* (polled like a configured one: its first poll
  is a baseline, no alert unless it has failed); a new final campaign is recorded, not polled,
  except a failure status found after the account's first run (its baseline), which is watched
  so that the poller's first sight reports it, and stops once it confirms it. A watched campaign
  stays watched until the poller has held it in a final status for ``final_retention`` (a day,
  so it stays on dashboards) while the listing agrees it is final; then its series go.
- **Cap**: ``max_campaigns`` watched campaigns per account (configured ones not counted); the
  most advanced newcomers (Scheduled first) are taken first, the rest wait, logged once.
  Lowering the cap stops newcomers; it does not let go of campaigns already watched.
- **Announce**: with ``announce: true`` a "now watching" message per newly watched campaign is
  committed with the discovery record.

``run_once`` returns the discovered targets; the daemon merges them with the configured ones
(``merge_targets``: configured entries win for names and intervals).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from fotawatch.alerts.payloads import watching_payload
from fotawatch.config.models import AccountSettings
from fotawatch.errors import ApiError, ClientError, PagingError, StoreError
from fotawatch.events import CampaignsDiscovered, Event
from fotawatch.model import (
    FAILURE_STATUSES,
    Campaign,
    CampaignKey,
    CampaignStatus,
    is_final,
)
from fotawatch.poller import Target
from fotawatch.store.base import CampaignRecord, DiscoveredRecord, OutboxMessage, Store
from fotawatch.thingspace.client import HistoryPath, ThingSpaceClient
from fotawatch.thingspace.wire import CampaignHistoryPage

__all__ = [
    "DISCOVERY_STATUSES",
    "FINAL_RETENTION",
    "MAX_HISTORY_PAGES",
    "Discovery",
    "matches",
    "merge_targets",
    "watched_keys",
]

log = structlog.get_logger("fotawatch.discovery")
S = CampaignStatus
# Lifecycle order, final ones last: a campaign that moves while listed is kept as last listed.
DISCOVERY_STATUSES = (S.SCHEDULED, S.PRE_SCHEDULED, S.REQUEST_QUEUED, S.REQUEST_PENDING,
                      S.ENDED, S.REQUEST_FAILED, S.FAILED, S.CANCELLED, S.ABORTED)  # fmt: skip
_RANK: dict[str, int] = {s.value: rank for rank, s in enumerate(DISCOVERY_STATUSES)}
MAX_HISTORY_PAGES = 200
FINAL_RETENTION = 86400.0
_WRONG_PATH_FAULT = "900906"
_OTHER: dict[HistoryPath, HistoryPath] = {"docs": "sdk", "sdk": "docs"}
NoticeOutbox = Callable[[Mapping[str, Any]], Sequence[OutboxMessage]]


def watched_keys(
    records: Iterable[DiscoveredRecord], discovering: Collection[str]
) -> list[CampaignKey]:
    """The discovered campaigns fotawatch polls: watched, of an account still discovered."""
    return sorted(r.key for r in records if r.watched and r.key.account in discovering)


def merge_targets(configured: Sequence[Target], discovered: Iterable[Target]) -> list[Target]:
    """Configured targets, then the discovered ones that are not configured."""
    keys = {t.key for t in configured}
    return [*configured, *(t for t in discovered if t.key not in keys)]


def matches(rule: AccountSettings, campaign: Campaign) -> bool:
    """Whether ``campaign`` passes the account's make / model / name_pattern filters."""
    def same(wanted: str | None, actual: str | None) -> bool:
        return wanted is None or (actual or "").casefold() == wanted.casefold()

    if not (same(rule.make, campaign.make) and same(rule.model, campaign.model)):
        return False
    pattern = rule.name_pattern
    return pattern is None or (campaign.name is not None and re.search(pattern, campaign.name)
                               is not None)  # fmt: skip


def _wrong_path(err: ApiError) -> bool:
    return err.status == 404 or err.code == _WRONG_PATH_FAULT


@dataclass(frozen=True, slots=True, kw_only=True)
class _Run:
    """One account's listing, decided: what to record and whom to start watching."""

    records: list[DiscoveredRecord]
    added: list[Campaign]
    waiting: int  # newcomers left out by the cap


class Discovery:
    """Finds campaigns of the ``discover: true`` accounts; one per daemon."""

    def __init__(  # noqa: PLR0913 - collaborators are injected, not constructed
        self,
        client: Callable[[], ThingSpaceClient],
        store: Store,
        emit: Callable[[Event], None],
        *,
        accounts: Sequence[AccountSettings],
        interval: float,
        configured: Collection[CampaignKey] = (),
        outbox_for: NoticeOutbox = lambda _p: (),
        final_retention: float = FINAL_RETENTION,
    ) -> None:
        self._client = client
        self.store = store
        self._emit = emit
        self._outbox_for = outbox_for
        self._retention = dt.timedelta(seconds=final_retention)
        self.paths: dict[str, HistoryPath] = {}  # per account: the history path that answered
        self._known: dict[CampaignKey, DiscoveredRecord] = {}
        self._failing: dict[str, str] = {}
        self._refused: set[tuple[str, str]] = set()
        self._capped: set[str] = set()
        self.configure(accounts=accounts, interval=interval, configured=configured)

    def configure(
        self, *, accounts: Sequence[AccountSettings], interval: float,
        configured: Collection[CampaignKey],
    ) -> None:  # fmt: skip
        """The accounts to discover, the poll interval of what they find, the configured keys."""
        self.rules = {a.account: a for a in accounts if a.discover}
        self.interval = interval
        self._configured = frozenset(configured)

    async def load(self) -> list[Target]:
        """The campaigns remembered from earlier runs, to watch from the start."""
        self._known = {r.key: r for r in await self.store.discovered()}
        return self.targets()

    def targets(self) -> list[Target]:
        """The watched campaigns of the accounts that are discovered now."""
        return [
            Target(key=key, name=None, interval=self.interval)
            for key in watched_keys(self._known.values(), self.rules)
        ]

    async def run_once(self, now: dt.datetime | None = None) -> list[Target]:
        """List every discovered account once, record what was found; the targets after it."""
        now = now or dt.datetime.now(dt.UTC)
        if self.rules:
            records = await self.store.load()
            for rule in self.rules.values():
                await self._account(rule, now, records)
        return self.targets()

    # --- one account -----------------------------------------------------------------------

    async def _account(
        self, rule: AccountSettings, now: dt.datetime, records: Mapping[CampaignKey,
                                                                        CampaignRecord],
    ) -> None:  # fmt: skip
        account = rule.account
        try:
            listed = await self._list_account(account)
        except ApiError as err:
            self._fail(account, err)
            return
        found = {c.key: c for c in listed if matches(rule, c)}
        run = self._decide(rule, found, records, now, unmatched={c.key for c in listed} - {*found})
        outbox = [m for c in run.added if rule.announce
                  for m in self._outbox_for(watching_payload(c, observed_at=now))]  # fmt: skip
        try:
            await self.store.record_discovered(run.records, outbox)
        except StoreError as err:
            log.error("discovery_store_write_failed", account=account, error=str(err))  # noqa: TRY400
            return
        self._succeeded(account, rule, run, found)
        self._known.update((r.key, r) for r in run.records)
        added = tuple(c.key for c in run.added)
        self._emit(CampaignsDiscovered(account=account, added=added, at=now, notified=bool(outbox)))

    def _fail(self, account: str, err: ApiError) -> None:
        if self._failing.get(account) != err.result:
            log.warning("discovery_failing", account=account, result=err.result, error=str(err))
            self._failing[account] = err.result

    def _succeeded(
        self, account: str, rule: AccountSettings, run: _Run, found: Mapping[CampaignKey, Campaign]
    ) -> None:
        if self._failing.pop(account, None) is not None:
            log.info("discovery_recovered", account=account)
        if run.waiting and account not in self._capped:
            log.warning("discovery_cap_reached", account=account, max_campaigns=rule.max_campaigns,
                        waiting=run.waiting)  # fmt: skip
            self._capped.add(account)
        elif not run.waiting:
            self._capped.discard(account)
        for c in run.added:
            log.info("campaign_discovered", campaign=str(c.key), name=c.name, status=c.status)
        log.debug("discovery_listed", account=account, found=len(found), added=len(run.added))

    # --- deciding ------------------------------------------------------------------------------

    def _decide(
        self, rule: AccountSettings, found: Mapping[CampaignKey, Campaign],
        records: Mapping[CampaignKey, CampaignRecord], now: dt.datetime,
        unmatched: Collection[CampaignKey],
    ) -> _Run:  # fmt: skip
        account = rule.account
        mine = {k: r for k, r in self._known.items() if k.account == account}
        baseline = not mine
        out: dict[CampaignKey, DiscoveredRecord] = {}
        candidates: list[Campaign] = []
        for key, c in found.items():
            known = mine.get(key)
            if known is not None and known.watched:
                out[key] = self._record(c, known, now, watched=True)
            elif not is_final(c.status) or (
                known is None and not baseline and c.status in FAILURE_STATUSES
            ):
                candidates.append(c)
            else:
                out[key] = self._record(c, known, now, watched=False)
        for key, known in mine.items():
            watched = out.get(key, known).watched
            if watched and (key in unmatched or self._retired(found.get(key), records.get(key),
                                                              now)):  # fmt: skip
                out[key] = DiscoveredRecord(campaign=known.campaign, watched=False,
                                            first_seen=known.first_seen,
                                            last_seen=out.get(key, known).last_seen)  # fmt: skip
        return self._admit(rule, mine, out, candidates, now)

    def _admit(
        self, rule: AccountSettings, mine: Mapping[CampaignKey, DiscoveredRecord],
        out: dict[CampaignKey, DiscoveredRecord], candidates: list[Campaign], now: dt.datetime,
    ) -> _Run:  # fmt: skip
        def counted(key: CampaignKey) -> bool:
            r = out.get(key) or mine.get(key)
            return r is not None and r.watched and key not in self._configured

        watched = sum(1 for key in {*mine, *out} if counted(key))
        added: list[Campaign] = []
        waiting = 0
        for c in sorted(candidates, key=lambda c: _RANK.get(c.status, len(_RANK))):
            if c.key not in self._configured and watched >= rule.max_campaigns:
                waiting += 1
                if c.key in mine:  # recorded before: keep the record as it was
                    out[c.key] = self._record(c, mine[c.key], now, watched=False)
                continue
            watched += c.key not in self._configured
            out[c.key] = self._record(c, mine.get(c.key), now, watched=True)
            added.append(c)
        return _Run(records=list(out.values()), added=added, waiting=waiting)

    @staticmethod
    def _record(
        c: Campaign, known: DiscoveredRecord | None, now: dt.datetime, *, watched: bool
    ) -> DiscoveredRecord:
        first = known.first_seen if known is not None else now
        return DiscoveredRecord(campaign=c, watched=watched, first_seen=first, last_seen=now)

    def _retired(
        self, listed: Campaign | None, record: CampaignRecord | None,
        now: dt.datetime,
    ) -> bool:  # fmt: skip
        """Final for the poller for ``final_retention``, and the listing does not disagree."""
        if record is None or record.status is None or not is_final(record.status):
            return False
        if listed is not None and not is_final(listed.status):
            return False
        since = record.status_since
        return since is not None and now - since >= self._retention

    # --- listing -------------------------------------------------------------------------------

    async def _list_account(self, account: str) -> list[Campaign]:
        listed: list[Campaign] = []
        refused = 0
        for status in DISCOVERY_STATUSES:
            try:
                listed += await self._list_status(account, status)
            except ClientError as err:
                if _wrong_path(err):
                    raise
                refused += 1
                if (account, status) not in self._refused:
                    log.info("discovery_status_refused", account=account, status=status.value,
                             error=str(err))  # fmt: skip
                    self._refused.add((account, status))
        if refused == len(DISCOVERY_STATUSES):
            raise ClientError(f"campaign history of {account}: every status refused")
        return listed

    async def _list_status(self, account: str, status: str) -> list[Campaign]:
        found: list[Campaign] = []
        cursor, seen = "0", {"0"}
        for page_number in range(1, MAX_HISTORY_PAGES + 1):
            page = await self._page(account, status, cursor)
            found += page.campaigns
            if not page.has_more:
                return found
            following = page.last_seen_campaign_id
            if following is None or following in seen:
                how = "missing" if following is None else "repeated"
                msg = f"campaign history of {account} ({status}): cursor {how} after page"
                raise PagingError(f"{msg} {page_number}")
            seen.add(following)
            cursor = following
        msg = f"campaign history of {account} ({status}): over {MAX_HISTORY_PAGES} pages"
        raise PagingError(msg)

    async def _page(self, account: str, status: str, cursor: str) -> CampaignHistoryPage:
        """One page from the remembered path; on a wrong-path answer, from the other one."""
        client = self._client()
        first = self.paths.get(account, "docs")
        try:
            page = await client.get_campaign_history(account, status, cursor, variant=first)
        except ApiError as err:
            if not _wrong_path(err):
                raise
            other = _OTHER[first]
            page = await client.get_campaign_history(account, status, cursor, variant=other)
            first = other
        if self.paths.get(account) != first:
            log.info("discovery_path", account=account, path=first)
            self.paths[account] = first
        return page
