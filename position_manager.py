"""Tracked positions: the SQLite store of ``positions.db`` (the state machine is :mod:`tracking.state`).

Store (:class:`PositionStore`): SQLite ``positions.db`` in WAL mode with an explicit schema migrated by
``PRAGMA user_version``; see ``docs/tracking.md``. The chat-side tables (subscribers, user settings, state,
outbox) are :class:`store.outbox.ChatTables`, mixed in here so that every table shares one connection and
one transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.signal_model import Signal, TradeDirection
from store.outbox import (
    CHAT_OUTBOX_IN_FLIGHT,
    CHAT_SCHEMA_V1,
    ChatTables,
    OutboxKind,
    OutboxMessage,
    UserSettings,
    from_ms,
    to_ms,
)
from tracking.costs import Costs
from tracking.state import ACTIVE_STATES, Outcome, Position, PositionState, close_position

logger = logging.getLogger(__name__)

_POSITIONS_SCHEMA_V1 = """
CREATE TABLE positions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    signal_id     TEXT    NOT NULL UNIQUE,
    symbol        TEXT    NOT NULL,
    timeframe     TEXT    NOT NULL,
    direction     TEXT    NOT NULL CHECK (direction IN ('long', 'short')),
    entry_low     REAL    NOT NULL,
    entry_high    REAL    NOT NULL,
    entry         REAL    NOT NULL,
    sl            REAL    NOT NULL,
    original_sl   REAL    NOT NULL,
    tp1           REAL    NOT NULL,
    tp2           REAL    NOT NULL,
    tp3           REAL    NOT NULL,
    state         TEXT    NOT NULL,
    opened_at     INTEGER NOT NULL,          -- ms since the Unix epoch, UTC (all *_at columns)
    expires_at    INTEGER,
    last_checked  INTEGER NOT NULL,
    filled_at     INTEGER,
    fill_price    REAL,
    closed_at     INTEGER,
    exit_price    REAL,
    targets_hit   INTEGER NOT NULL DEFAULT 0,
    mfe           REAL    NOT NULL DEFAULT 0,
    mae           REAL    NOT NULL DEFAULT 0,
    milestones    TEXT    NOT NULL DEFAULT '[]',  -- JSON list of event keys already emitted
    recipients    TEXT    NOT NULL DEFAULT '[]',  -- JSON list of chat ids
    signal_json   TEXT,                            -- Signal.to_json(), to rebuild the journal
    outcome_json  TEXT,                            -- Outcome.to_json() once closed
    journaled     INTEGER NOT NULL DEFAULT 0       -- 1 once the outcome is in the journal
);
CREATE INDEX positions_state ON positions (state);
CREATE TABLE milestones_sent (
    position_id INTEGER NOT NULL REFERENCES positions (id),
    milestone   TEXT    NOT NULL,
    sent_at     INTEGER NOT NULL,
    PRIMARY KEY (position_id, milestone)
);
"""

# v2: each position keeps the exit plan and the costs its outcome follows (issue 13); rows from v1 get the
# defaults (0,0,100 was the only behaviour then; the default fee and slippage).
_POSITIONS_V2 = """
ALTER TABLE positions ADD COLUMN exit_plan TEXT NOT NULL DEFAULT '[0, 0, 100]';
ALTER TABLE positions ADD COLUMN fee_pct REAL NOT NULL DEFAULT 0.1;
ALTER TABLE positions ADD COLUMN slippage_pct REAL NOT NULL DEFAULT 0.02
"""

# index i migrates user_version i -> i + 1; append only (another table's change is a new entry)
MIGRATIONS: tuple[str, ...] = (_POSITIONS_SCHEMA_V1 + CHAT_SCHEMA_V1, _POSITIONS_V2, CHAT_OUTBOX_IN_FLIGHT)


class PositionStore(ChatTables):
    """The SQLite store of ``positions.db`` (WAL). Thread-safe: one connection behind a re-entrant lock.

    Every method runs in a transaction; :meth:`transaction` groups several calls into one, which is how producers
    enqueue outbox messages atomically with the state change that caused them.
    """

    def __init__(self, path: str | Path, *, clock: Any = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._depth = 0
        self._savepoints = 0
        self.quarantined: Path | None = None
        try:
            self._open()
        except sqlite3.DatabaseError as exc:  # not a database / malformed: keep it aside, start empty
            self._conn.close()
            self.quarantined = self._quarantine(exc)
            self._open()

    def _open(self) -> None:
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        if self._conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("integrity check failed")
        self._migrate()

    def _quarantine(self, exc: Exception) -> Path:
        from store.storage import quarantine

        moved = quarantine(self.path)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.replace(moved.with_name(moved.name + suffix))
        logger.warning("%s is unreadable (%s); kept aside as %s and started empty", self.path, exc, moved.name)
        return moved

    # -- plumbing -------------------------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.transaction():
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise RuntimeError(f"{self.path} has schema version {version}, newer than this code knows")
            for step in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {step + 1}")
                logger.info("%s migrated to schema version %d", self.path, step + 1)

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._conn.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[PositionStore]:
        """One atomic unit (nests: inner calls join the outer transaction)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    @contextmanager
    def savepoint(self) -> Iterator[PositionStore]:
        """A nested unit inside :meth:`transaction`: on error only its own changes are undone."""
        with self.transaction():
            self._savepoints += 1
            name = f"sp{self._savepoints}"
            self._conn.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
                raise
            self._conn.execute(f"RELEASE {name}")

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self.transaction():
            return self._conn.execute(sql, params).fetchall()

    def _x(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self.transaction():
            return self._conn.execute(sql, params)

    def now(self) -> datetime:
        return self._clock()

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:
                logger.exception("closing %s failed", self.path)

    def integrity_ok(self) -> bool:
        return self._q("PRAGMA quick_check")[0][0] == "ok"

    # -- positions ------------------------------------------------------------------------------------------------

    def add(self, position: Position, *, signal: Signal | None = None) -> Position:
        """Store a new position and return it with its id; a signal already tracked returns the stored one."""
        with self.transaction():
            existing = self.get_by_signal(position.signal_id)
            if existing is not None:
                return existing
            cur = self._conn.execute(
                "INSERT INTO positions (signal_id, symbol, timeframe, direction, entry_low, entry_high, entry, sl,"
                " original_sl, tp1, tp2, tp3, state, opened_at, expires_at, last_checked, filled_at, fill_price,"
                " recipients, signal_json, exit_plan, fee_pct, slippage_pct)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    position.signal_id,
                    position.symbol,
                    position.timeframe,
                    position.direction.value,
                    position.entry_low,
                    position.entry_high,
                    position.entry,
                    position.sl,
                    position.original_sl,
                    position.tp1,
                    position.tp2,
                    position.tp3,
                    position.state.value,
                    to_ms(position.opened_at),
                    to_ms(position.expires_at),
                    to_ms(position.last_checked),
                    to_ms(position.filled_at),
                    position.fill_price,
                    json.dumps(list(position.recipients)),
                    json.dumps(signal.to_json()) if signal is not None else None,
                    json.dumps(list(position.exit_plan)),
                    position.costs.fee_pct,
                    position.costs.slippage_pct,
                ),
            )
            stored = replace(position, id=cur.lastrowid)
            if position.state.is_closed or position.milestones or position.targets_hit:
                self.update(stored)
            return stored

    def update(self, position: Position) -> None:
        """Persist every mutable field of ``position`` (by id)."""
        if position.id <= 0:
            raise ValueError("position has no id; add() it first")
        cur = self._x(
            "UPDATE positions SET sl=?, state=?, expires_at=?, last_checked=?, filled_at=?, fill_price=?, closed_at=?,"
            " exit_price=?, targets_hit=?, mfe=?, mae=?, milestones=?, recipients=?, outcome_json=? WHERE id=?",
            (
                position.sl,
                position.state.value,
                to_ms(position.expires_at),
                to_ms(position.last_checked),
                to_ms(position.filled_at),
                position.fill_price,
                to_ms(position.closed_at),
                position.exit_price,
                position.targets_hit,
                position.mfe,
                position.mae,
                json.dumps(sorted(position.milestones)),
                json.dumps(list(position.recipients)),
                json.dumps(position.outcome.to_json()) if position.outcome else None,
                position.id,
            ),
        )
        if cur.rowcount != 1:
            raise KeyError(f"no position with id {position.id}")

    def get(self, position_id: int) -> Position | None:
        rows = self._q("SELECT * FROM positions WHERE id=?", (int(position_id),))
        return _row_position(rows[0]) if rows else None

    def get_by_signal(self, signal_id: str) -> Position | None:
        rows = self._q("SELECT * FROM positions WHERE signal_id=?", (signal_id,))
        return _row_position(rows[0]) if rows else None

    def list_open(self) -> list[Position]:
        """Active positions (PENDING, OPEN, TP1, TP2), oldest first."""
        marks = ",".join("?" for _ in ACTIVE_STATES)
        rows = self._q(
            f"SELECT * FROM positions WHERE state IN ({marks}) ORDER BY id", [s.value for s in sorted(ACTIVE_STATES)]
        )
        return [_row_position(r) for r in rows]

    def list_closed(self, *, since: datetime | None = None) -> list[Position]:
        marks = ",".join("?" for _ in ACTIVE_STATES)
        params: list[Any] = [s.value for s in sorted(ACTIVE_STATES)]
        sql = f"SELECT * FROM positions WHERE state NOT IN ({marks})"
        if since is not None:
            sql += " AND closed_at >= ?"
            params.append(to_ms(since))
        return [_row_position(r) for r in self._q(sql + " ORDER BY closed_at, id", params)]

    def all_positions(self) -> list[Position]:
        return [_row_position(r) for r in self._q("SELECT * FROM positions ORDER BY id")]

    def signal_json(self, position_id: int) -> dict[str, Any] | None:
        rows = self._q("SELECT signal_json FROM positions WHERE id=?", (position_id,))
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    def close_manual(self, position_id: int, price: float, at: datetime) -> tuple[Position, Outcome]:
        """Close an active position by hand (``/close ID``); KeyError if unknown, ValueError if already closed."""
        with self.transaction():
            position = self.get(position_id)
            if position is None:
                raise KeyError(f"no position with id {position_id}")
            closed, outcome = close_position(position, price, at)
            self.update(closed)
            return closed, outcome

    def unjournaled_closed(self) -> list[Position]:
        marks = ",".join("?" for _ in ACTIVE_STATES)
        rows = self._q(
            f"SELECT * FROM positions WHERE journaled=0 AND state NOT IN ({marks}) ORDER BY id",
            [s.value for s in sorted(ACTIVE_STATES)],
        )
        return [_row_position(r) for r in rows]

    def mark_journaled(self, position_id: int) -> None:
        self._x("UPDATE positions SET journaled=1 WHERE id=?", (position_id,))

    # -- milestones -----------------------------------------------------------------------------------------------

    def mark_milestone(self, position_id: int, milestone: str, at: datetime | None = None) -> bool:
        """Record that ``milestone`` of a position was sent; True the first time, False if it already was."""
        cur = self._x(
            "INSERT OR IGNORE INTO milestones_sent (position_id, milestone, sent_at) VALUES (?,?,?)",
            (position_id, milestone, to_ms(at or self.now())),
        )
        return cur.rowcount == 1

    def milestones_sent(self, position_id: int) -> set[str]:
        return {r[0] for r in self._q("SELECT milestone FROM milestones_sent WHERE position_id=?", (position_id,))}


def _row_position(r: sqlite3.Row) -> Position:
    outcome = Outcome.from_json(json.loads(r["outcome_json"])) if r["outcome_json"] else None
    return Position(
        id=r["id"],
        signal_id=r["signal_id"],
        symbol=r["symbol"],
        timeframe=r["timeframe"],
        direction=TradeDirection(r["direction"]),
        entry_low=r["entry_low"],
        entry_high=r["entry_high"],
        entry=r["entry"],
        sl=r["sl"],
        original_sl=r["original_sl"],
        tp1=r["tp1"],
        tp2=r["tp2"],
        tp3=r["tp3"],
        state=PositionState(r["state"]),
        opened_at=from_ms(r["opened_at"]),
        expires_at=from_ms(r["expires_at"]),
        last_checked=from_ms(r["last_checked"]),
        filled_at=from_ms(r["filled_at"]),
        fill_price=r["fill_price"],
        closed_at=from_ms(r["closed_at"]),
        exit_price=r["exit_price"],
        targets_hit=r["targets_hit"],
        mfe=r["mfe"],
        mae=r["mae"],
        milestones=frozenset(json.loads(r["milestones"])),
        recipients=tuple(json.loads(r["recipients"])),
        exit_plan=tuple(float(v) for v in json.loads(r["exit_plan"])),
        costs=Costs(r["fee_pct"], r["slippage_pct"]),
        outcome=outcome,
    )


__all__ = [
    "MIGRATIONS",
    "OutboxKind",
    "OutboxMessage",
    "PositionStore",
    "UserSettings",
]
