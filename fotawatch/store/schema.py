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
"""

from __future__ import annotations

__all__ = [
    "DELETE_CAMPAIGN",
    "INSERT_OUTBOX",
    "INSERT_TRANSITION",
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
    "SELECT_TRANSITIONS",
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

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1,)
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
