"""The SQLite state database: its schema as ordered migrations, and every statement run on it.

``MIGRATIONS[n]`` takes a database from ``PRAGMA user_version`` n to n + 1. The store applies the
missing steps at open, in one transaction, and refuses a database whose version is newer than
``SCHEMA_VERSION`` (written by a newer fotawatch). Never edit a released step: append a new one.

Timestamps are UTC text of fixed width (``2024-05-01T12:00:00.000000+00:00``) so that comparing and
ordering them as text is comparing and ordering them as times. JSON columns hold fotawatch's own
codec form (``fotawatch.codec``), not the ThingSpace wire format.

    campaigns    current state per campaign; ``forget`` deletes the row, never the history
    transitions  append-only history, unique per (account, campaign_id, seq)
    outbox       one row per (sink, dedup_key); pending = not delivered and not failed
    device_counts  one row per device poll: devices per status (JSON); trimmed per campaign
    device_status  each device's last status, for diffs; dropped after a campaign's final poll
    discovered   campaigns found by discovery; ``watched`` while they are polled
"""

from __future__ import annotations

__all__ = [
    "DELETE_CAMPAIGN",
    "DELETE_DEVICE",
    "DELETE_DEVICES",
    "INSERT_DEVICE_COUNTS",
    "INSERT_OUTBOX",
    "INSERT_TRANSITION",
    "LATEST_DEVICE_COUNTS",
    "MIGRATIONS",
    "OUTBOX_DELIVERED",
    "OUTBOX_DEPTH",
    "OUTBOX_DUE",
    "OUTBOX_FAILED",
    "OUTBOX_OLDEST",
    "OUTBOX_RETRY",
    "OUTBOX_ROWS",
    "RAISE_LAST_SEQ",
    "SCHEMA_VERSION",
    "SELECT_CAMPAIGN",
    "SELECT_CAMPAIGNS",
    "SELECT_DEVICE_COUNTS",
    "SELECT_DEVICE_STATUSES",
    "SELECT_DISCOVERED",
    "SELECT_TRANSITIONS",
    "TRIM_DEVICE_COUNTS",
    "TRIM_DEVICE_COUNTS_BEFORE",
    "UPDATE_CONFIRMED",
    "UPSERT_DEVICE",
    "UPSERT_DISCOVERED",
    "UPSERT_FAILURE",
    "UPSERT_SUCCESS",
]

_V1: tuple[str, ...] = (
    """
    CREATE TABLE campaigns (
        account          TEXT NOT NULL,
        campaign_id      TEXT NOT NULL,
        snapshot         TEXT,               -- JSON, NULL until the first successful poll
        status           TEXT,
        status_since     TEXT,
        last_seq         INTEGER NOT NULL DEFAULT 0,
        last_poll_at     TEXT,
        last_poll_result TEXT,
        last_success_at  TEXT,
        missing          INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account, campaign_id)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE transitions (
        id          INTEGER PRIMARY KEY,
        account     TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        from_status TEXT,
        to_status   TEXT NOT NULL,
        kind        TEXT NOT NULL,
        observed_at TEXT NOT NULL,
        snapshot    TEXT,                    -- JSON of the campaign as seen, if any
        -- campaign_id first: `fotawatch history <id>` looks a campaign up without its account
        UNIQUE (campaign_id, account, seq)
    )
    """,
    """
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused
        sink            TEXT NOT NULL,
        dedup_key       TEXT NOT NULL,
        payload         TEXT NOT NULL,       -- JSON
        created_at      TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        delivered_at    TEXT,
        failed_at       TEXT,
        fail_reason     TEXT,
        UNIQUE (sink, dedup_key)
    )
    """,
    """
    CREATE INDEX outbox_pending ON outbox (sink, next_attempt_at)
        WHERE delivered_at IS NULL AND failed_at IS NULL
    """,
)

_V2: tuple[str, ...] = (
    """
    CREATE TABLE device_counts (
        id              INTEGER PRIMARY KEY,
        account         TEXT NOT NULL,
        campaign_id     TEXT NOT NULL,
        polled_at       TEXT NOT NULL,
        campaign_status TEXT,
        reported_total  INTEGER,
        counts          TEXT NOT NULL          -- JSON [[device_status, devices], ...]
    )
    """,
    "CREATE INDEX device_counts_campaign ON device_counts (campaign_id, account, id)",
    "CREATE INDEX device_counts_time ON device_counts (polled_at)",
    """
    CREATE TABLE device_status (
        account     TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        device_id   TEXT NOT NULL,
        status      TEXT NOT NULL,
        changed_at  TEXT NOT NULL,
        PRIMARY KEY (campaign_id, account, device_id)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE discovered (
        account     TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        snapshot    TEXT NOT NULL,             -- JSON of the campaign as the history listed it
        watched     INTEGER NOT NULL,
        first_seen  TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        PRIMARY KEY (account, campaign_id)
    ) WITHOUT ROWID
    """,
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)

# --- statements: prepared once per connection by sqlite3's statement cache ---------------

# Both upserts start a new row's last_seq at the campaign's last recorded transition, so that a
# forgotten campaign that returns continues its numbering instead of colliding with its history.
UPSERT_SUCCESS = """
    INSERT INTO campaigns (account, campaign_id, snapshot, status, status_since, last_seq,
                           last_poll_at, last_poll_result, last_success_at, missing)
    VALUES (:account, :campaign_id, :snapshot, :status, :polled_at,
            (SELECT coalesce(max(seq), 0) FROM transitions
             WHERE campaign_id = :campaign_id AND account = :account),
            :polled_at, :result, :polled_at, 0)
    ON CONFLICT (account, campaign_id) DO UPDATE SET
        snapshot = excluded.snapshot,
        status = excluded.status,
        status_since = CASE WHEN status IS excluded.status THEN status_since
                            ELSE excluded.status_since END,
        last_poll_at = excluded.last_poll_at,
        last_poll_result = excluded.last_poll_result,
        last_success_at = excluded.last_success_at,
        missing = 0
"""
# A poll that read the campaign as stored: its times only, so no snapshot is encoded or sent, and
# no row is made for a campaign the store does not hold (forgotten while the poll was buffered).
UPDATE_CONFIRMED = """
    UPDATE campaigns SET last_poll_at = :polled_at, last_poll_result = :result,
                         last_success_at = :polled_at, missing = 0
    WHERE account = :account AND campaign_id = :campaign_id
"""
UPSERT_FAILURE = """
    INSERT INTO campaigns (account, campaign_id, last_seq, last_poll_at, last_poll_result, missing)
    VALUES (:account, :campaign_id,
            (SELECT coalesce(max(seq), 0) FROM transitions
             WHERE campaign_id = :campaign_id AND account = :account),
            :polled_at, :result, :missing)
    ON CONFLICT (account, campaign_id) DO UPDATE SET
        last_poll_at = excluded.last_poll_at,
        last_poll_result = excluded.last_poll_result,
        missing = excluded.missing
"""
RAISE_LAST_SEQ = """
    INSERT INTO campaigns (account, campaign_id, last_seq) VALUES (?, ?, ?)
    ON CONFLICT (account, campaign_id) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)
"""
INSERT_TRANSITION = """
    INSERT OR IGNORE INTO transitions
        (account, campaign_id, seq, from_status, to_status, kind, observed_at, snapshot)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
SELECT_CAMPAIGNS = """
    SELECT account, campaign_id, snapshot, status, status_since, last_seq,
           last_poll_at, last_poll_result, last_success_at, missing
    FROM campaigns
"""
SELECT_CAMPAIGN = SELECT_CAMPAIGNS + " WHERE account = ? AND campaign_id = ?"
SELECT_TRANSITIONS = """
    SELECT account, campaign_id, seq, from_status, to_status, kind, observed_at, snapshot
    FROM transitions WHERE campaign_id = ? AND (? IS NULL OR account = ?)
    ORDER BY observed_at DESC, account DESC, seq DESC LIMIT ?
"""
DELETE_CAMPAIGN = "DELETE FROM campaigns WHERE account = ? AND campaign_id = ?"
# Outbox: a row is pending while delivered_at IS NULL AND failed_at IS NULL (the partial index).
INSERT_OUTBOX = """
    INSERT OR IGNORE INTO outbox (sink, dedup_key, payload, created_at, attempts, next_attempt_at)
    VALUES (?, ?, ?, ?, 0, ?)
"""
OUTBOX_DUE = """
    SELECT id, sink, dedup_key, payload, created_at, attempts, next_attempt_at FROM outbox
    WHERE sink = ? AND delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?
    ORDER BY id LIMIT ?
"""
OUTBOX_DELIVERED = """
    UPDATE outbox SET delivered_at = ?
    WHERE id = ? AND delivered_at IS NULL AND failed_at IS NULL
"""
OUTBOX_RETRY = """
    UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?
    WHERE id = ? AND delivered_at IS NULL AND failed_at IS NULL
"""
OUTBOX_FAILED = """
    UPDATE outbox SET failed_at = ?, fail_reason = ?
    WHERE id = ? AND delivered_at IS NULL AND failed_at IS NULL
"""
OUTBOX_DEPTH = """
    SELECT count(*) FROM outbox WHERE sink = ? AND delivered_at IS NULL AND failed_at IS NULL
"""
OUTBOX_OLDEST = """
    SELECT min(created_at) FROM outbox
    WHERE sink = ? AND delivered_at IS NULL AND failed_at IS NULL
"""
OUTBOX_ROWS = """
    SELECT id, sink, dedup_key, payload, created_at, attempts, next_attempt_at,
           delivered_at, failed_at, fail_reason
    FROM outbox WHERE (? IS NULL OR sink = ?) ORDER BY id
"""

# Device progress: one counts row per poll, the newest ``keep`` per campaign kept (and none older
# than a cut-off); per-device rows only while the campaign's devices are polled.
INSERT_DEVICE_COUNTS = """
    INSERT INTO device_counts
        (account, campaign_id, polled_at, campaign_status, reported_total, counts)
    VALUES (?, ?, ?, ?, ?, ?)
"""
TRIM_DEVICE_COUNTS = """
    DELETE FROM device_counts WHERE campaign_id = :campaign_id AND account = :account AND id <= (
        SELECT id FROM device_counts WHERE campaign_id = :campaign_id AND account = :account
        ORDER BY id DESC LIMIT 1 OFFSET :keep)
"""
TRIM_DEVICE_COUNTS_BEFORE = "DELETE FROM device_counts WHERE polled_at < ?"
SELECT_DEVICE_COUNTS = """
    SELECT account, campaign_id, polled_at, campaign_status, reported_total, counts
    FROM device_counts WHERE campaign_id = ? AND account = ? ORDER BY id DESC LIMIT ?
"""
LATEST_DEVICE_COUNTS = """
    SELECT account, campaign_id, polled_at, campaign_status, reported_total, counts
    FROM device_counts WHERE id IN (SELECT max(id) FROM device_counts
                                    GROUP BY campaign_id, account)
"""
UPSERT_DEVICE = """
    INSERT INTO device_status (account, campaign_id, device_id, status, changed_at)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (campaign_id, account, device_id) DO UPDATE SET
        status = excluded.status, changed_at = excluded.changed_at
"""
DELETE_DEVICE = "DELETE FROM device_status WHERE campaign_id = ? AND account = ? AND device_id = ?"
DELETE_DEVICES = "DELETE FROM device_status WHERE campaign_id = ? AND account = ?"
SELECT_DEVICE_STATUSES = """
    SELECT device_id, status FROM device_status WHERE campaign_id = ? AND account = ?
"""
# Discovery: one row per campaign ever found (filters passed), updated by every discovery run.
UPSERT_DISCOVERED = """
    INSERT INTO discovered (account, campaign_id, snapshot, watched, first_seen, last_seen)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (account, campaign_id) DO UPDATE SET
        snapshot = excluded.snapshot, watched = excluded.watched, last_seen = excluded.last_seen
"""
SELECT_DISCOVERED = """
    SELECT account, campaign_id, snapshot, watched, first_seen, last_seen FROM discovered
    WHERE ? IS NULL OR account = ? ORDER BY account, first_seen, campaign_id
"""
