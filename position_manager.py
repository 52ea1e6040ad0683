# ruff: noqa: E741 - o/h/l/c are the candle names
"""Tracked positions: the pure state machine every signal follows, and the SQLite store that keeps them.

State machine (:func:`apply_candle`, PURE: the live monitor and the backtest both use it)
------------------------------------------------------------------------------------------
::

    PENDING --entry traded--> OPEN --TP1--> TP1 (stop -> entry) --TP2--> TP2 --TP3--> closed TP3
       |                        |             |                           |
       |                        +--stop--> SL +--stop (at entry)--> BE    +--stop (at entry)--> BE
       +--N candles without fill, or TP1 traded before the entry--> EXPIRED
    any open state --close_position(..., MANUAL)--> MANUAL

Definitions (``s`` = +1 long, -1 short; prices in quote currency; "beyond" means in the trade's favour):

- **Entry**: a signal with a zero-width entry zone (``entry_low == entry_high``) is a market entry: the position
  starts OPEN, filled at ``entry`` at the signal time (close of the analysed candle). Otherwise it is a limit order
  resting at the signal's reference ``entry`` and starts PENDING; a candle fills it when it trades at the entry
  (long: ``low <= entry``; short: ``high >= entry``). Fill price: ``entry``, or the candle's open when the candle
  opened already past the entry (a gap fills at the better price).
- **Pending expiry**: a PENDING position expires at ``expires_at`` = signal time + :data:`PENDING_EXPIRY_CANDLES`
  candles of its timeframe (the first candle opening at or after that instant expires it, unprocessed). It also
  expires when a candle trades TP1 without having filled the entry (the move happened without us).
- **Intra-candle order**: within one candle we only know that the open came first and the close last. Hence:
  (1) when a candle touches both the stop and a target, the STOP counts first (conservative);
  (2) a level that becomes active inside a candle (the targets after the fill candle's fill, the break-even stop
  after a TP1 hit) is judged against that candle's CLOSE only, never its extremes. The stop of the fill candle is
  judged on its extreme: price had to cross the entry to reach a stop beyond it, so the fill came first. So a
  candle that fills and touches the stop closes the position at SL.
- **Stop hit**: long ``low <= sl`` (short ``high >= sl``); exit at ``sl``, or at the open when the candle opened
  past it (gap). Reason SL while no target was reached, BE afterwards (TP1 moved the stop to the fill price).
- **Target hit**: long ``high >= tpN`` (short ``low <= tpN``), in order; several in one candle are all counted.
  TP3 closes the position at ``tp3``. After TP2 the stop stays at break-even.
- **Outcome** (:class:`Outcome`): the whole position exits at one price (no partial scale-out):
  ``R = s * (exit - fill) / |entry - original_sl|``; ``P&L % = 100 * s * (exit - fill) / fill``; duration from fill
  to close; MFE/MAE = the largest favourable/adverse excursion from the fill (candle extremes) in R;
  ``highest_target`` = the number of targets reached (0-3). An EXPIRED position has no fill: R = 0.
- **Milestones** (events, each at most once per position, remembered in ``Position.milestones``):
  progress toward the next target is measured from the previous level (fill for TP1, TP1 for TP2, TP2 for TP3)
  with the candle's favourable extreme; crossing 25/50/75/80% emits ``MILESTONE`` (only the highest newly crossed
  one per candle; the lower ones are marked passed). A candle that hits the target or the stop emits no milestone.
  ``STOP_WARNING``: while OPEN (stop not yet at break-even), the adverse extreme covered 50% of the way from the
  fill to the stop.

Store (:class:`PositionStore`): SQLite ``positions.db`` in WAL mode with an explicit schema migrated by
``PRAGMA user_version``; see ``docs/tracking.md``.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.signal_model import Signal, TradeDirection
from market.timeframes import interval_timedelta

logger = logging.getLogger(__name__)

PENDING_EXPIRY_CANDLES = 10  # a limit entry not filled within this many candles of the signal timeframe expires
MILESTONE_PERCENTS = (25, 50, 75, 80)  # progress toward the next target; 80 triggers the ICT 80% handler
STOP_WARNING_PERCENT = 50  # progress from the fill toward the stop that triggers the warning


class PositionState(StrEnum):
    PENDING = "PENDING"
    OPEN = "OPEN"
    TP1 = "TP1"
    TP2 = "TP2"
    TP3 = "TP3"
    SL = "SL"
    BE = "BE"
    MANUAL = "MANUAL"
    EXPIRED = "EXPIRED"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATES

    @property
    def is_closed(self) -> bool:
        return not self.is_active


ACTIVE_STATES = frozenset({PositionState.PENDING, PositionState.OPEN, PositionState.TP1, PositionState.TP2})


class EventKind(StrEnum):
    FILLED = "filled"
    MILESTONE = "milestone"
    STOP_WARNING = "stop_warning"
    TARGET_HIT = "target_hit"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a closed position ended. Prices in quote currency, R in units of the initial risk."""

    reason: PositionState  # TP3, SL, BE, MANUAL or EXPIRED
    exit_price: float | None  # None for EXPIRED (never filled)
    fill_price: float | None
    r_multiple: float
    pnl_pct: float
    opened_at: datetime
    filled_at: datetime | None
    closed_at: datetime
    duration_seconds: float  # fill -> close (signal -> close when never filled)
    mfe_r: float  # max favourable excursion, R (>= 0)
    mae_r: float  # max adverse excursion, R (>= 0)
    highest_target: int  # 0..3

    @property
    def filled(self) -> bool:
        return self.fill_price is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason.value,
            "exit_price": self.exit_price,
            "fill_price": self.fill_price,
            "r_multiple": self.r_multiple,
            "pnl_pct": self.pnl_pct,
            "opened_at": _iso(self.opened_at),
            "filled_at": _iso(self.filled_at),
            "closed_at": _iso(self.closed_at),
            "duration_seconds": self.duration_seconds,
            "mfe_r": self.mfe_r,
            "mae_r": self.mae_r,
            "highest_target": self.highest_target,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(
            reason=PositionState(data["reason"]),
            exit_price=data.get("exit_price"),
            fill_price=data.get("fill_price"),
            r_multiple=float(data["r_multiple"]),
            pnl_pct=float(data["pnl_pct"]),
            opened_at=_parse_iso(data["opened_at"]),
            filled_at=_parse_iso(data.get("filled_at")),
            closed_at=_parse_iso(data["closed_at"]),
            duration_seconds=float(data["duration_seconds"]),
            mfe_r=float(data["mfe_r"]),
            mae_r=float(data["mae_r"]),
            highest_target=int(data["highest_target"]),
        )


@dataclass(frozen=True, slots=True)
class PositionEvent:
    """Something a trader is told about. ``key`` is unique per position: the "sent once" identity."""

    kind: EventKind
    key: str  # "FILLED", "TP1_25", ..., "SL_50", "TP1", "TP2", "CLOSED"
    at: datetime  # open time of the candle that produced it (close time for close-judged events is not known)
    price: float  # the level concerned (fill, target, stop, exit) or the extreme reached for milestones
    target: int | None = None  # 1..3 for milestones and target hits
    percent: int | None = None  # milestone / warning percent
    outcome: Outcome | None = None  # for CLOSED


@dataclass(frozen=True, slots=True)
class Position:
    """One tracked signal. Times are aware UTC; ``sl`` is the current stop, ``original_sl`` the signal's."""

    id: int  # store id (0 until stored)
    signal_id: str
    symbol: str
    timeframe: str
    direction: TradeDirection
    entry_low: float
    entry_high: float
    entry: float
    sl: float
    original_sl: float
    tp1: float
    tp2: float
    tp3: float
    state: PositionState
    opened_at: datetime  # the signal time (close of the analysed candle)
    expires_at: datetime | None  # PENDING expiry instant
    last_checked: datetime  # candles opening before this instant are already applied
    filled_at: datetime | None = None
    fill_price: float | None = None
    closed_at: datetime | None = None
    exit_price: float | None = None
    targets_hit: int = 0
    mfe: float = 0.0  # price distance, >= 0
    mae: float = 0.0  # price distance, >= 0
    milestones: frozenset[str] = frozenset()  # event keys already emitted
    recipients: tuple[int, ...] = ()
    outcome: Outcome | None = None

    @property
    def sign(self) -> int:
        return self.direction.sign

    @property
    def is_active(self) -> bool:
        return self.state.is_active

    @property
    def risk(self) -> float:
        """Initial risk per unit, the signal's: |entry - original stop| (> 0 by the signal's invariants)."""
        return abs(self.entry - self.original_sl)

    def target(self, n: int) -> float:
        return (self.tp1, self.tp2, self.tp3)[n - 1]

    def r_at(self, price: float) -> float:
        """R multiple if the whole position exited at ``price`` now."""
        base = self.fill_price if self.fill_price is not None else self.entry
        return self.sign * (price - base) / self.risk

    def pnl_pct_at(self, price: float) -> float:
        base = self.fill_price if self.fill_price is not None else self.entry
        return 100.0 * self.sign * (price - base) / base

    @classmethod
    def from_signal(
        cls,
        signal: Signal,
        recipients: Sequence[int] = (),
        *,
        expiry_candles: int = PENDING_EXPIRY_CANDLES,
        start: datetime | None = None,
    ) -> Position:
        """A new position for ``signal``: OPEN at ``entry`` for a market entry, else PENDING (limit at ``entry``).

        ``start``: when tracking begins (the live bot: the moment the signal was sent, which can be minutes after
        the analysed candle closed); candles opening before it are not applied. Default: the signal time.
        """
        opened = signal.time.astimezone(UTC)
        first = max(opened, _utc(start)) if start is not None else opened
        market = signal.entry_low == signal.entry_high
        return cls(
            id=0,
            signal_id=signal.id,
            symbol=signal.symbol,
            timeframe=signal.timeframe,
            direction=signal.direction,
            entry_low=signal.entry_low,
            entry_high=signal.entry_high,
            entry=signal.entry,
            sl=signal.sl,
            original_sl=signal.sl,
            tp1=signal.tp1,
            tp2=signal.tp2,
            tp3=signal.tp3,
            state=PositionState.OPEN if market else PositionState.PENDING,
            opened_at=opened,
            expires_at=None if market else opened + expiry_candles * _as_timedelta(signal.timeframe),
            last_checked=first,
            filled_at=opened if market else None,
            fill_price=signal.entry if market else None,
            recipients=tuple(dict.fromkeys(int(c) for c in recipients)),
        )


def _as_timedelta(interval: str) -> timedelta:
    delta = interval_timedelta(interval)
    if isinstance(delta, timedelta):
        return delta
    return timedelta(days=30)  # 1M: nominal month


# ---------------------------------------------------------------------------------------------------------------
# The pure state machine
# ---------------------------------------------------------------------------------------------------------------


def apply_candle(
    position: Position,
    ts: datetime,
    o: float,
    h: float,
    l: float,
    c: float,
    *,
    close_time: datetime | None = None,
) -> tuple[Position, list[PositionEvent]]:
    """Apply one candle (open time ``ts``) to ``position``; return the new position and the events it produced.

    Candles opening before ``position.last_checked`` are ignored (re-reading a candle twice is harmless); a closed
    position does not change. ``close_time`` (default ``ts``) becomes ``last_checked``. See the module docstring
    for every rule.
    """
    ts = _utc(ts)
    if position.state.is_closed or ts < position.last_checked:
        return position, []
    checked = _utc(close_time) if close_time is not None else ts
    p = position
    events: list[PositionEvent] = []
    s = p.sign

    if p.state is PositionState.PENDING:
        if p.expires_at is not None and ts >= p.expires_at:
            return _expire(p, p.expires_at, checked)
        if not _trades_at(s, p.entry, h, l):
            if s * ((h if s > 0 else l) - p.tp1) >= 0:  # target traded without a fill: the move left without us
                return _expire(p, ts, checked)
            return replace(p, last_checked=checked), []
        fill = min(o, p.entry) if s > 0 else max(o, p.entry)
        p = replace(p, state=PositionState.OPEN, filled_at=ts, fill_price=fill)
        events.append(PositionEvent(EventKind.FILLED, "FILLED", ts, fill))
        return _after_fill_candle(p, ts, o, h, l, c, checked, events)

    return _open_candle(p, ts, o, h, l, c, checked, events)


def _trades_at(s: int, level: float, h: float, l: float) -> bool:
    return l <= level if s > 0 else h >= level


def _favourable(s: int, h: float, l: float) -> float:
    return h if s > 0 else l


def _adverse(s: int, h: float, l: float) -> float:
    return l if s > 0 else h


def _excursions(p: Position, fav: float, adv: float) -> tuple[float, float]:
    """(mfe, mae) after a candle whose favourable / adverse extremes are ``fav`` / ``adv``."""
    base = p.fill_price
    s = p.sign
    return max(p.mfe, s * (fav - base), 0.0), max(p.mae, s * (base - adv), 0.0)


def _after_fill_candle(
    p: Position, ts: datetime, o: float, h: float, l: float, c: float, checked: datetime, events: list[PositionEvent]
) -> tuple[Position, list[PositionEvent]]:
    """The fill candle: stop judged on the extreme, targets and milestones on the close only."""
    s = p.sign
    adv = _adverse(s, h, l)
    mfe, mae = _excursions(p, c, adv)
    if s * (adv - p.sl) <= 0:  # reason SL (no target yet); a gap past the stop exits at the open
        p = replace(p, mfe=mfe, mae=mae)
        return _close(p, ts, min(o, p.sl) if s > 0 else max(o, p.sl), checked, events)
    return _targets_and_milestones(p, ts, c, c, checked, events, mfe=mfe, mae=mae)


def _open_candle(
    p: Position, ts: datetime, o: float, h: float, l: float, c: float, checked: datetime, events: list[PositionEvent]
) -> tuple[Position, list[PositionEvent]]:
    s = p.sign
    fav, adv = _favourable(s, h, l), _adverse(s, h, l)
    mfe, mae = _excursions(p, fav, adv)
    if s * (adv - p.sl) <= 0:  # stop first, also when a target was touched in the same candle
        p = replace(p, mfe=mfe, mae=mae)
        exit_price = min(o, p.sl) if s > 0 else max(o, p.sl)
        return _close(p, ts, exit_price, checked, events)
    return _targets_and_milestones(p, ts, fav, c, checked, events, adverse=adv, mfe=mfe, mae=mae)


def _targets_and_milestones(
    p: Position,
    ts: datetime,
    fav: float,
    close: float,
    checked: datetime,
    events: list[PositionEvent],
    *,
    mfe: float,
    mae: float,
    adverse: float | None = None,
) -> tuple[Position, list[PositionEvent]]:
    s = p.sign
    if s * (fav - p.target(p.targets_hit + 1)) >= 0:  # one or more targets hit (rare path)
        p = replace(p, mfe=mfe, mae=mae)
        while p.targets_hit < 3 and s * (fav - p.target(p.targets_hit + 1)) >= 0:
            n = p.targets_hit + 1
            level = p.target(n)
            if n == 3:
                p = replace(p, targets_hit=3)
                events.append(PositionEvent(EventKind.TARGET_HIT, "TP3", ts, level, target=3))
                return _close(p, ts, level, checked, events)
            state = PositionState.TP1 if n == 1 else PositionState.TP2
            sl = p.fill_price if n == 1 else p.sl  # TP1: stop to break-even (the fill price)
            p = replace(p, targets_hit=n, state=state, sl=sl, milestones=p.milestones | {f"TP{n}"})
            events.append(PositionEvent(EventKind.TARGET_HIT, f"TP{n}", ts, level, target=n))
        if s * (close - p.sl) <= 0:  # the new break-even stop is judged on the close only
            return _close(p, ts, p.sl, checked, events)
        return replace(p, last_checked=checked), events

    # milestones toward the next target, measured from the previous level
    milestones = p.milestones
    n = p.targets_hit + 1
    start = p.fill_price if n == 1 else p.target(n - 1)
    span = s * (p.target(n) - start)
    progress = 100.0 * s * (fav - start) / span if span > 0 else 0.0
    if progress >= MILESTONE_PERCENTS[0]:
        crossed = [pct for pct in MILESTONE_PERCENTS if progress >= pct and f"TP{n}_{pct}" not in milestones]
        if crossed:
            top = crossed[-1]
            milestones = milestones | {f"TP{n}_{pct}" for pct in crossed}
            events.append(PositionEvent(EventKind.MILESTONE, f"TP{n}_{top}", ts, fav, target=n, percent=top))

    if adverse is not None and p.state is PositionState.OPEN and "SL_50" not in milestones:
        dist = s * (p.fill_price - p.sl)
        if dist > 0 and 100.0 * s * (p.fill_price - adverse) / dist >= STOP_WARNING_PERCENT:
            milestones = milestones | {"SL_50"}
            events.append(PositionEvent(EventKind.STOP_WARNING, "SL_50", ts, adverse, percent=STOP_WARNING_PERCENT))
    return replace(p, mfe=mfe, mae=mae, milestones=milestones, last_checked=checked), events


def _close(
    p: Position, ts: datetime, exit_price: float, checked: datetime, events: list[PositionEvent]
) -> tuple[Position, list[PositionEvent]]:
    if p.targets_hit == 3:
        reason = PositionState.TP3
    elif p.targets_hit >= 1:
        reason = PositionState.BE
    else:
        reason = PositionState.SL
    closed, outcome = _finish(p, reason, exit_price, ts)
    closed = replace(closed, last_checked=checked)
    events.append(PositionEvent(EventKind.CLOSED, "CLOSED", ts, exit_price, outcome=outcome))
    return closed, events


def _expire(p: Position, at: datetime, checked: datetime) -> tuple[Position, list[PositionEvent]]:
    closed, outcome = _finish(p, PositionState.EXPIRED, None, at)
    event = PositionEvent(EventKind.CLOSED, "CLOSED", at, p.entry, outcome=outcome)
    return replace(closed, last_checked=max(checked, at)), [event]


def _finish(p: Position, reason: PositionState, exit_price: float | None, at: datetime) -> tuple[Position, Outcome]:
    at = _utc(at)
    if p.fill_price is None:
        outcome = Outcome(
            reason=reason,
            exit_price=None,
            fill_price=None,
            r_multiple=0.0,
            pnl_pct=0.0,
            opened_at=p.opened_at,
            filled_at=None,
            closed_at=at,
            duration_seconds=max((at - p.opened_at).total_seconds(), 0.0),
            mfe_r=0.0,
            mae_r=0.0,
            highest_target=0,
        )
    else:
        risk = p.risk
        outcome = Outcome(
            reason=reason,
            exit_price=exit_price,
            fill_price=p.fill_price,
            r_multiple=round(p.r_at(exit_price), 4),
            pnl_pct=round(p.pnl_pct_at(exit_price), 4),
            opened_at=p.opened_at,
            filled_at=p.filled_at,
            closed_at=at,
            duration_seconds=max((at - p.filled_at).total_seconds(), 0.0),
            mfe_r=round(p.mfe / risk, 4),
            mae_r=round(p.mae / risk, 4),
            highest_target=p.targets_hit,
        )
    closed = replace(p, state=reason, closed_at=at, exit_price=exit_price, outcome=outcome)
    return closed, outcome


def close_position(
    position: Position, price: float, at: datetime, *, reason: PositionState = PositionState.MANUAL
) -> tuple[Position, Outcome]:
    """Close an active position at ``price`` (manual close, end of a backtest). A PENDING one closes unfilled.

    Raises ValueError when it is already closed or the price is not a positive finite number.
    """
    if position.state.is_closed:
        raise ValueError(f"position {position.id} is already closed ({position.state})")
    if not isinstance(price, int | float) or not math.isfinite(price) or price <= 0:
        raise ValueError(f"close price must be a positive finite number, got {price!r}")
    if position.fill_price is None:
        return _finish(position, reason, None, at)
    mfe, mae = _excursions(position, price, price)
    return _finish(replace(position, mfe=mfe, mae=mae), reason, float(price), at)


def _utc(moment: datetime) -> datetime:
    if hasattr(moment, "to_pydatetime"):
        moment = moment.to_pydatetime()
    if moment.tzinfo is None:
        raise ValueError("times must be aware UTC datetimes")
    return moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# ---------------------------------------------------------------------------------------------------------------
# The SQLite store
# ---------------------------------------------------------------------------------------------------------------


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

_SCHEMA_V1 = """
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

MIGRATIONS: tuple[str, ...] = (_SCHEMA_V1,)  # index i migrates user_version i -> i + 1


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(_utc(moment).timestamp() * 1000)


def _from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


class PositionStore:
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
                " recipients, signal_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                    _ms(position.opened_at),
                    _ms(position.expires_at),
                    _ms(position.last_checked),
                    _ms(position.filled_at),
                    position.fill_price,
                    json.dumps(list(position.recipients)),
                    json.dumps(signal.to_json()) if signal is not None else None,
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
                _ms(position.expires_at),
                _ms(position.last_checked),
                _ms(position.filled_at),
                position.fill_price,
                _ms(position.closed_at),
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
            params.append(_ms(since))
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
            (position_id, milestone, _ms(at or self.now())),
        )
        return cur.rowcount == 1

    def milestones_sent(self, position_id: int) -> set[str]:
        return {r[0] for r in self._q("SELECT milestone FROM milestones_sent WHERE position_id=?", (position_id,))}

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
                (int(chat_id), _ms(self.now())),
            )
            return True

    def unsubscribe(self, chat_id: int, reason: str | None = None) -> bool:
        """Stop broadcasts to ``chat_id`` (also used when Telegram says the user blocked the bot)."""
        cur = self._x("UPDATE subscribers SET active=0, reason=? WHERE chat_id=? AND active=1", (reason, int(chat_id)))
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
        """Queue a message; return its id, or None when ``dedupe_key`` was already queued (sent once)."""
        photo_bytes = photo if isinstance(photo, bytes | bytearray) else None
        photo_path = str(photo) if isinstance(photo, str | Path) else None
        cur = self._x(
            "INSERT OR IGNORE INTO outbox (chat_id, kind, html, photo, photo_path, dedupe_key, created_at)"
            " VALUES (?,?,?,?,?,?,?)",
            (int(chat_id), str(kind), html, photo_bytes, photo_path, dedupe_key, _ms(self.now())),
        )
        return cur.lastrowid if cur.rowcount == 1 else None

    def pending_outbox(self, limit: int = 50) -> list[OutboxMessage]:
        rows = self._q(
            "SELECT id, chat_id, kind, html, photo, photo_path, created_at, attempts, last_error FROM outbox"
            " WHERE sent_at IS NULL AND failed=0 ORDER BY id LIMIT ?",
            (int(limit),),
        )
        return [
            OutboxMessage(
                r[0], r[1], r[2], r[3], bytes(r[4]) if r[4] is not None else None, r[5], _from_ms(r[6]), r[7], r[8]
            )
            for r in rows
        ]

    def mark_sent(self, message_id: int) -> None:
        self._x("UPDATE outbox SET sent_at=?, photo=NULL WHERE id=?", (_ms(self.now()), int(message_id)))

    def mark_failed(self, message_id: int, reason: str, permanent: bool = False) -> None:
        """Count a failed delivery; permanent (or the MAX_OUTBOX_ATTEMPTS-th) failures are not retried."""
        self._x(
            "UPDATE outbox SET attempts=attempts+1, last_error=?,"
            " failed=CASE WHEN ? OR attempts+1>=? THEN 1 ELSE 0 END WHERE id=?",
            (str(reason)[:500], int(bool(permanent)), MAX_OUTBOX_ATTEMPTS, int(message_id)),
        )

    def outbox_counts(self) -> OutboxCounts:
        r = self._q("SELECT SUM(sent_at IS NULL AND failed=0), SUM(sent_at IS NOT NULL), SUM(failed=1) FROM outbox")[0]
        return OutboxCounts(r[0] or 0, r[1] or 0, r[2] or 0)

    def prune_outbox(self, older_than: datetime) -> int:
        """Delete sent or failed messages created before ``older_than``; returns how many."""
        cur = self._x(
            "DELETE FROM outbox WHERE (sent_at IS NOT NULL OR failed=1) AND created_at < ?", (_ms(older_than),)
        )
        return cur.rowcount


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
        opened_at=_from_ms(r["opened_at"]),
        expires_at=_from_ms(r["expires_at"]),
        last_checked=_from_ms(r["last_checked"]),
        filled_at=_from_ms(r["filled_at"]),
        fill_price=r["fill_price"],
        closed_at=_from_ms(r["closed_at"]),
        exit_price=r["exit_price"],
        targets_hit=r["targets_hit"],
        mfe=r["mfe"],
        mae=r["mae"],
        milestones=frozenset(json.loads(r["milestones"])),
        recipients=tuple(json.loads(r["recipients"])),
        outcome=outcome,
    )


__all__ = [
    "MILESTONE_PERCENTS",
    "PENDING_EXPIRY_CANDLES",
    "EventKind",
    "OutboxKind",
    "OutboxMessage",
    "Outcome",
    "Position",
    "PositionEvent",
    "PositionState",
    "PositionStore",
    "UserSettings",
    "apply_candle",
    "close_position",
]
