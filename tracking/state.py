# ruff: noqa: E741 - o/h/l/c are the candle names
"""The pure position state machine every tracked signal follows (the live monitor and the backtest both use it).

State machine (:func:`apply_candle`, PURE: the live monitor and the backtest both use it)
------------------------------------------------------------------------------------------
::

    PENDING --entry traded--> OPEN --TP1--> TP1 (stop -> entry) --TP2--> TP2 --TP3--> closed TP3
       |                        |             |                           |
       |                        +--stop--> SL +--stop (at entry)--> BE    +--stop (at entry)--> BE
       +--N candles without fill, or TP1 traded before the entry--> EXPIRED
    any open state --close_position(..., MANUAL)--> MANUAL
    TP1 / TP2 with nothing left open under the exit plan (e.g. 100,0,0 or 50,50,0) --> closed TARGETS

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
- **Exit plan** (``Position.exit_plan``, percent of the position closed at TP1, TP2, TP3; see
  :mod:`tracking.costs`): each target hit closes its share at the target price; the stop (at break-even after
  TP1) or a manual close closes whatever is left. When nothing is left the position closes (TP3, or TARGETS
  before TP3). ``0,0,100`` = the whole position to TP3 or the stop.
- **Outcome** (:class:`Outcome`): ``r_gross`` / ``r_net`` from :func:`tracking.costs.trade_r` over the plan's
  exits, the position's costs (``Position.costs``: fee per side, slippage on a market entry and on stop / manual
  exits) and the planned risk ``|entry - original_sl|``; ``r_multiple`` = ``r_net`` (every figure the bot shows
  is net); ``P&L % = r_net * risk / fill * 100``; ``exit_price`` = the last exit, ``avg_exit_price`` = the
  size-weighted average exit; duration from fill to close; MFE/MAE = the largest favourable/adverse excursion from
  the fill (candle extremes) in R; ``highest_target`` = the number of targets reached (0-3). An EXPIRED position
  has no fill: R = 0, ``r_gross`` / ``r_net`` None.
- **Milestones** (events, each at most once per position, remembered in ``Position.milestones``):
  progress toward the next target is measured from the previous level (fill for TP1, TP1 for TP2, TP2 for TP3)
  with the candle's favourable extreme; crossing 25/50/75/80% emits ``MILESTONE`` (only the highest newly crossed
  one per candle; the lower ones are marked passed). A candle that hits the target or the stop emits no milestone.
  ``STOP_WARNING``: while OPEN (stop not yet at break-even), the adverse extreme covered 50% of the way from the
  fill to the stop.

The SQLite store that keeps positions is :class:`position_manager.PositionStore`; see ``docs/tracking.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from engine.signal_model import Signal, TradeDirection
from market.timeframes import interval_timedelta
from tracking.costs import DEFAULT_COSTS, DEFAULT_EXIT_PLAN, Costs, average_exit, exits_of, trade_r

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
    TARGETS = "TARGETS"  # closed at a target before TP3: the exit plan left nothing open

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

    reason: PositionState  # TP3, TARGETS, SL, BE, MANUAL or EXPIRED
    exit_price: float | None  # the last exit; None for EXPIRED (never filled)
    fill_price: float | None
    r_multiple: float  # = r_net (0 for EXPIRED)
    pnl_pct: float
    opened_at: datetime
    filled_at: datetime | None
    closed_at: datetime
    duration_seconds: float  # fill -> close (signal -> close when never filled)
    mfe_r: float  # max favourable excursion, R (>= 0)
    mae_r: float  # max adverse excursion, R (>= 0)
    highest_target: int  # 0..3
    r_gross: float | None = None  # None for EXPIRED
    r_net: float | None = None
    avg_exit_price: float | None = None  # size-weighted over the exit plan's partial exits

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
            "r_gross": self.r_gross,
            "r_net": self.r_net,
            "avg_exit_price": self.avg_exit_price,
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
            r_gross=_opt_float(data.get("r_gross")),
            r_net=_opt_float(data.get("r_net")),
            avg_exit_price=_opt_float(data.get("avg_exit_price")),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class PositionEvent:
    """Something a trader is told about. ``key`` is unique per position: the "sent once" identity."""

    kind: EventKind
    key: str  # "FILLED", "TP1_25", ..., "SL_50", "TP1", "TP2", "CLOSED"
    at: datetime  # open time of the candle that produced it (close time for close-judged events is not known)
    price: float  # the level concerned (fill, target, stop, exit) or the extreme reached for milestones
    target: int | None = None  # 1..3 for milestones and target hits
    percent: int | None = None  # milestone / warning percent
    share: float | None = None  # TARGET_HIT: percent of the position the exit plan closes at this target
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
    exit_plan: tuple[float, float, float] = DEFAULT_EXIT_PLAN  # percent closed at TP1, TP2, TP3
    costs: Costs = DEFAULT_COSTS  # fee and slippage the outcome is charged (tracking.costs)

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

    @property
    def market_entry(self) -> bool:
        return self.entry_low == self.entry_high

    @property
    def open_share(self) -> float:
        """Percent of the position still open under the exit plan."""
        return max(100.0 - sum(self.exit_plan[: self.targets_hit]), 0.0)

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
        exit_plan: Sequence[float] = DEFAULT_EXIT_PLAN,
        costs: Costs | None = None,
    ) -> Position:
        """A new position for ``signal``: OPEN at ``entry`` for a market entry, else PENDING (limit at ``entry``).

        ``exit_plan`` / ``costs``: the plan and costs its outcome follows (default ``0,0,100`` and the default
        fee and slippage; the live bot and the backtest pass the settings').

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
            exit_plan=tuple(float(v) for v in exit_plan),
            costs=costs if costs is not None else DEFAULT_COSTS,
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
            share = p.exit_plan[n - 1]
            if n == 3 or p.open_share - share <= 1e-9:  # nothing left open: the plan closes the position here
                p = replace(p, targets_hit=n)
                events.append(PositionEvent(EventKind.TARGET_HIT, f"TP{n}", ts, level, target=n, share=share))
                return _close(p, ts, level, checked, events)
            state = PositionState.TP1 if n == 1 else PositionState.TP2
            sl = p.fill_price if n == 1 else p.sl  # TP1: stop to break-even (the fill price)
            p = replace(p, targets_hit=n, state=state, sl=sl, milestones=p.milestones | {f"TP{n}"})
            events.append(PositionEvent(EventKind.TARGET_HIT, f"TP{n}", ts, level, target=n, share=share))
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
    elif p.open_share <= 1e-9:
        reason = PositionState.TARGETS
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
        exits = exits_of(
            p.exit_plan,
            (p.tp1, p.tp2, p.tp3),
            p.targets_hit,
            exit_price,
            final_market=reason not in (PositionState.TP3, PositionState.TARGETS),
        )
        r_gross, r_net = trade_r(
            sign=p.sign,
            entry=p.entry,
            sl=p.original_sl,
            fill=p.fill_price,
            exits=exits,
            costs=p.costs,
            market_entry=p.market_entry,
        )
        outcome = Outcome(
            reason=reason,
            exit_price=exit_price,
            fill_price=p.fill_price,
            r_multiple=round(r_net, 4),
            pnl_pct=round(100.0 * r_net * risk / p.fill_price, 4),
            opened_at=p.opened_at,
            filled_at=p.filled_at,
            closed_at=at,
            duration_seconds=max((at - p.filled_at).total_seconds(), 0.0),
            mfe_r=round(p.mfe / risk, 4),
            mae_r=round(p.mae / risk, 4),
            highest_target=p.targets_hit,
            r_gross=round(r_gross, 4),
            r_net=round(r_net, 4),
            avg_exit_price=average_exit(exits),
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


__all__ = [
    "ACTIVE_STATES",
    "MILESTONE_PERCENTS",
    "PENDING_EXPIRY_CANDLES",
    "STOP_WARNING_PERCENT",
    "EventKind",
    "Outcome",
    "Position",
    "PositionEvent",
    "PositionState",
    "apply_candle",
    "close_position",
]
