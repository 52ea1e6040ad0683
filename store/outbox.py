"""Chat-side tables of ``positions.db``: subscribers, per-user settings, key/value state and the outbox.

:class:`ChatTables` is mixed into :class:`position_manager.PositionStore`, which owns the one SQLite connection,
its lock and its transactions (``_q``/``_x`` run one statement inside a transaction). The outbox is how producers
(scanner, monitor, reports) queue messages atomically with the state change that caused them; the sender drains it.

Exactly once across restarts: the drain records a row "in flight" (``sending_at``) before it calls Telegram and
"sent" after the answer. A row still in flight when the process starts was being sent when the previous process
died: maybe delivered, so it is never resent (:meth:`ChatTables.settle_in_flight` marks and returns it for the log).
Tracked positions and the journal do not depend on the outbox, so ``/positions`` always shows the true state.

A chat that blocked the bot (Telegram answered 403) is marked ``blocked`` in ``subscribers``: its queued messages
are dropped, nothing more is queued for it, and it is unmarked when the user writes to the bot again
(:meth:`ChatTables.unblock_chat`) or subscribes again. Broadcasts stay off until ``/subscribe`` or ``/start``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path


class OutboxKind(StrEnum):
    BROADCAST = "broadcast"  # a new signal (text + chart)
    ALERT = "alert"  # milestone / warning / target / stop / expiry
    RECOMMENDATION = "recommendation"  # the 80% handler
    REPORT = "report"
    NOTICE = "notice"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    chat_id: int
    kind: str
    html: str
    photo: bytes | None
    photo_path: str | None
    created_at: datetime
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class UserSettings:
    """Per-user preferences; None = use the bot default."""

    default_timeframe: str | None = None
    broadcasts: bool = True
    min_confidence: float | None = None


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int
    sent: int
    failed: int


MAX_OUTBOX_ATTEMPTS = 10  # temporary failures before a message is given up (marked failed)
BLOCKED = "blocked"  # subscribers.reason of a chat that blocked the bot: nothing is sent to it
DROPPED_BLOCKED = "dropped: the chat blocked the bot"

CHAT_SCHEMA_V1 = """
CREATE TABLE subscribers (
    chat_id       INTEGER PRIMARY KEY,
    active        INTEGER NOT NULL DEFAULT 1,
    subscribed_at INTEGER NOT NULL,
    reason        TEXT
);
CREATE TABLE user_settings (
    chat_id           INTEGER PRIMARY KEY,
    default_timeframe TEXT,
    broadcasts        INTEGER NOT NULL DEFAULT 1,
    min_confidence    REAL
);
CREATE TABLE state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id     INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    html        TEXT    NOT NULL,
    photo       BLOB,
    photo_path  TEXT,
    dedupe_key  TEXT UNIQUE,
    created_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    sent_at     INTEGER,
    failed      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox (sent_at, failed, id);
"""

# outbox rows "in flight": set just before the call to Telegram, so a kill during a send never sends it twice
CHAT_OUTBOX_IN_FLIGHT = """
ALTER TABLE outbox ADD COLUMN sending_at INTEGER
"""
IN_FLIGHT_AT_START = "in flight when the bot stopped: maybe delivered, not resent"


def to_ms(moment: datetime | None) -> int | None:
    """Aware datetime -> ms since the Unix epoch (the store's time columns)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("times must be aware UTC datetimes")
    return int(moment.timestamp() * 1000)


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


class ChatTables:
    """Subscribers, user settings, state and outbox methods; needs the host's ``_conn``, ``_q``, ``_x``,
    ``transaction`` and ``now``."""

    _conn: sqlite3.Connection

    # -- subscribers and user settings ----------------------------------------------------------------------------

    def subscribe(self, chat_id: int) -> bool:
        """Subscribe ``chat_id`` to broadcasts; True if it was not subscribed before."""
        with self.transaction():
            rows = self._conn.execute("SELECT active FROM subscribers WHERE chat_id=?", (int(chat_id),)).fetchall()
            if rows and rows[0][0]:
                return False
            self._conn.execute(
                "INSERT INTO subscribers (chat_id, active, subscribed_at) VALUES (?,1,?) "
                "ON CONFLICT(chat_id) DO UPDATE SET active=1, subscribed_at=excluded.subscribed_at, reason=NULL",
                (int(chat_id), to_ms(self.now())),
            )
            return True

    def unsubscribe(self, chat_id: int, reason: str | None = None) -> bool:
        """Stop broadcasts to ``chat_id`` (also used when Telegram says the user blocked the bot)."""
        cur = self._x("UPDATE subscribers SET active=0, reason=? WHERE chat_id=? AND active=1", (reason, int(chat_id)))
        return cur.rowcount == 1

    def block_chat(self, chat_id: int) -> int:
        """The chat blocked the bot (403): broadcasts off, every queued message to it dropped (marked failed), and
        nothing more queued until :meth:`unblock_chat`; returns how many queued messages were dropped."""
        with self.transaction():
            self._conn.execute(
                "INSERT INTO subscribers (chat_id, active, subscribed_at, reason) VALUES (?,0,?,?) "
                "ON CONFLICT(chat_id) DO UPDATE SET active=0, reason=excluded.reason",
                (int(chat_id), to_ms(self.now()), BLOCKED),
            )
            cur = self._conn.execute(
                "UPDATE outbox SET failed=1, last_error=? WHERE chat_id=? AND sent_at IS NULL AND failed=0",
                (DROPPED_BLOCKED, int(chat_id)),
            )
            return cur.rowcount

    def migrate_chat(self, old: int, new: int) -> None:
        """A group became a supergroup (Telegram gave it the id ``new``): its subscription, settings and unsent
        messages move to ``new``."""
        with self.transaction():
            for table in ("subscribers", "user_settings"):
                self._conn.execute(f"UPDATE OR REPLACE {table} SET chat_id=? WHERE chat_id=?", (int(new), int(old)))
            self._conn.execute("UPDATE outbox SET chat_id=? WHERE chat_id=? AND sent_at IS NULL", (int(new), int(old)))

    def is_blocked(self, chat_id: int) -> bool:
        return bool(self._q("SELECT 1 FROM subscribers WHERE chat_id=? AND reason=?", (int(chat_id), BLOCKED)))

    def unblock_chat(self, chat_id: int) -> bool:
        """The user wrote again: messages to the chat may be queued again (broadcasts stay off until /subscribe);
        True if it was blocked."""
        if not self.is_blocked(chat_id):  # the common case reads only
            return False
        cur = self._x("UPDATE subscribers SET reason=NULL WHERE chat_id=? AND reason=?", (int(chat_id), BLOCKED))
        return cur.rowcount == 1

    def subscribers(self) -> list[int]:
        return [r[0] for r in self._q("SELECT chat_id FROM subscribers WHERE active=1 ORDER BY chat_id")]

    def is_subscribed(self, chat_id: int) -> bool:
        return bool(self._q("SELECT 1 FROM subscribers WHERE chat_id=? AND active=1", (int(chat_id),)))

    def get_user_settings(self, chat_id: int) -> UserSettings:
        rows = self._q(
            "SELECT default_timeframe, broadcasts, min_confidence FROM user_settings WHERE chat_id=?", (int(chat_id),)
        )
        if not rows:
            return UserSettings()
        return UserSettings(rows[0][0], bool(rows[0][1]), rows[0][2])

    def set_user_settings(self, chat_id: int, settings: UserSettings) -> None:
        if settings.min_confidence is not None and not 0 <= settings.min_confidence <= 100:
            raise ValueError("minimum confidence must be within 0..100")
        self._x(
            "INSERT INTO user_settings (chat_id, default_timeframe, broadcasts, min_confidence) VALUES (?,?,?,?) "
            "ON CONFLICT(chat_id) DO UPDATE SET default_timeframe=excluded.default_timeframe,"
            " broadcasts=excluded.broadcasts, min_confidence=excluded.min_confidence",
            (int(chat_id), settings.default_timeframe, int(settings.broadcasts), settings.min_confidence),
        )

    # -- key/value state ------------------------------------------------------------------------------------------

    def get_state(self, key: str, default: str | None = None) -> str | None:
        rows = self._q("SELECT value FROM state WHERE key=?", (key,))
        return rows[0][0] if rows else default

    def set_state(self, key: str, value: str) -> None:
        self._x(
            "INSERT INTO state (key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, str(value)),
        )

    @property
    def paused(self) -> bool:
        return self.get_state("paused", "0") == "1"

    def set_paused(self, paused: bool) -> None:
        self.set_state("paused", "1" if paused else "0")

    # -- outbox ---------------------------------------------------------------------------------------------------

    def enqueue(
        self,
        chat_id: int,
        html: str,
        photo: bytes | str | Path | None = None,
        *,
        kind: str | OutboxKind = OutboxKind.ALERT,
        dedupe_key: str | None = None,
    ) -> int | None:
        """Queue a message; return its id, or None when ``dedupe_key`` was already queued (sent once) or the chat
        blocked the bot."""
        photo_bytes = photo if isinstance(photo, bytes | bytearray) else None
        photo_path = str(photo) if isinstance(photo, str | Path) else None
        cur = self._x(
            "INSERT OR IGNORE INTO outbox (chat_id, kind, html, photo, photo_path, dedupe_key, created_at)"
            " SELECT ?,?,?,?,?,?,? WHERE NOT EXISTS (SELECT 1 FROM subscribers WHERE chat_id=? AND reason=?)",
            (
                int(chat_id),
                str(kind),
                html,
                photo_bytes,
                photo_path,
                dedupe_key,
                to_ms(self.now()),
                int(chat_id),
                BLOCKED,
            ),
        )
        return cur.lastrowid if cur.rowcount == 1 else None

    def pending_outbox(self, limit: int = 50) -> list[OutboxMessage]:
        rows = self._q(
            "SELECT id, chat_id, kind, html, photo, photo_path, created_at, attempts, last_error FROM outbox"
            " WHERE sent_at IS NULL AND failed=0 AND sending_at IS NULL ORDER BY id LIMIT ?",
            (int(limit),),
        )
        return [
            OutboxMessage(
                r[0], r[1], r[2], r[3], bytes(r[4]) if r[4] is not None else None, r[5], from_ms(r[6]), r[7], r[8]
            )
            for r in rows
        ]

    def mark_sending(self, message_id: int) -> bool:
        """Record that the message is being sent (before the call to Telegram); False if it is no longer pending
        (dropped for a blocked chat, or already claimed)."""
        cur = self._x(
            "UPDATE outbox SET sending_at=? WHERE id=? AND sent_at IS NULL AND failed=0 AND sending_at IS NULL",
            (to_ms(self.now()), int(message_id)),
        )
        return cur.rowcount == 1

    def mark_sent(self, message_id: int, note: str | None = None) -> None:
        """Delivered (or maybe delivered, with ``note`` saying so): never sent again."""
        self._x(
            "UPDATE outbox SET sent_at=?, photo=NULL, last_error=COALESCE(?, last_error) WHERE id=?",
            (to_ms(self.now()), note, int(message_id)),
        )

    def settle_in_flight(self) -> list[OutboxMessage]:
        """At start: the rows a killed process left in flight, marked sent (maybe delivered) and returned for the
        log. Call once, before the first drain; in flight during a drain is that drain's business."""
        with self.transaction():
            rows = self._conn.execute(
                "SELECT id, chat_id, kind, html, photo, photo_path, created_at, attempts, last_error FROM outbox"
                " WHERE sending_at IS NOT NULL AND sent_at IS NULL AND failed=0 ORDER BY id"
            ).fetchall()
            for r in rows:
                self.mark_sent(r[0], IN_FLIGHT_AT_START)
        return [
            OutboxMessage(r[0], r[1], r[2], r[3], None, r[5], from_ms(r[6]), r[7], IN_FLIGHT_AT_START) for r in rows
        ]

    def mark_failed(self, message_id: int, reason: str, permanent: bool = False) -> None:
        """Count a failed delivery; permanent (or the MAX_OUTBOX_ATTEMPTS-th) failures are not retried."""
        self._x(
            "UPDATE outbox SET attempts=attempts+1, last_error=?, sending_at=NULL,"
            " failed=CASE WHEN ? OR attempts+1>=? THEN 1 ELSE 0 END WHERE id=?",
            (str(reason)[:500], int(bool(permanent)), MAX_OUTBOX_ATTEMPTS, int(message_id)),
        )

    def outbox_counts(self) -> OutboxCounts:
        r = self._q("SELECT SUM(sent_at IS NULL AND failed=0), SUM(sent_at IS NOT NULL), SUM(failed=1) FROM outbox")[0]
        return OutboxCounts(r[0] or 0, r[1] or 0, r[2] or 0)

    def prune_outbox(self, older_than: datetime) -> int:
        """Delete sent or failed messages created before ``older_than``; returns how many."""
        cur = self._x(
            "DELETE FROM outbox WHERE (sent_at IS NOT NULL OR failed=1) AND created_at < ?", (to_ms(older_than),)
        )
        return cur.rowcount
