"""The 80% handler: when price has covered 80% of the way to the next target, re-read the market and advise.

The engine is re-run on the current closed candles of the position's timeframe (``ict_signal_engine.analyze`` or,
given frames, ``ict_signal_engine.evaluate``) and its snapshot answers four questions, each a :class:`Check`
(``ok`` True = in favour of holding, False = against, None = unknown):

1. **structure** - is the timeframe's structure still in the trade's direction? Against: the trend read by the
   engine (BOS/CHOCH/MSS) is the opposite, or the most recent structure mark is a break against the trade.
2. **opposing zone** - is there an opposing order block / FVG / breaker / supply-demand zone between the current
   price and the target (a bearish zone overlapping [price, target] for a long)? Against when there is.
3. **liquidity** - was liquidity on the far side just taken (a recent sweep that favours the opposite direction,
   e.g. buy-side liquidity above swept for a long: the classic reversal trigger)? Against when so.
4. **momentum** - is the most recent displacement (energetic candle) in the trade's direction? Against when the
   latest one is the opposite.

Decision (documented rule): a fresh opposite signal from the engine, or structure AND momentum against ->
CLOSE_NOW; two or more checks against -> PARTIAL_CLOSE; one against -> MOVE_SL_BE while the stop is still the
original one (state OPEN), else PARTIAL_CLOSE; none against -> HOLD.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pandas as pd

from engine.prices import format_price
from engine.signal_model import Signal, TradeDirection
from ict_modules.core import Direction
from tracking.state import Position, PositionState

logger = logging.getLogger(__name__)


class Action(StrEnum):
    HOLD = "HOLD"
    PARTIAL_CLOSE = "PARTIAL_CLOSE"
    MOVE_SL_BE = "MOVE_SL_BE"
    CLOSE_NOW = "CLOSE_NOW"

    @property
    def label(self) -> str:
        return {
            Action.HOLD: "HOLD",
            Action.PARTIAL_CLOSE: "PARTIAL CLOSE",
            Action.MOVE_SL_BE: "MOVE SL TO BREAK-EVEN",
            Action.CLOSE_NOW: "CLOSE NOW",
        }[self]


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # "structure", "opposing_zone", "liquidity", "momentum"
    ok: bool | None
    detail: str


@dataclass(frozen=True, slots=True)
class Recommendation:
    action: Action
    reasons: tuple[str, ...]
    checks: tuple[Check, ...] = ()
    price: float | None = None


def _direction(position: Position) -> Direction:
    return Direction.BULLISH if position.direction is TradeDirection.LONG else Direction.BEARISH


def _snapshot_of(position: Position, analysis_or_frames: Any) -> tuple[Any, Any, float | None]:
    """(snapshot, result, last close) from an engine ``Analysis`` or a frames mapping."""
    if isinstance(analysis_or_frames, Mapping):
        import ict_signal_engine

        frames = analysis_or_frames
        result, snap, _ = ict_signal_engine.evaluate(frames, symbol=position.symbol, timeframe=position.timeframe)
        entry = frames.get(position.timeframe)
    else:
        snap, result = analysis_or_frames.snapshot, analysis_or_frames.result
        entry = analysis_or_frames.frames.get(position.timeframe)
    close = float(entry["close"].iloc[-1]) if isinstance(entry, pd.DataFrame) and len(entry) else None
    return snap, result, close


def structure_check(snap: Any, d: Direction) -> Check:
    trend = getattr(snap.structure, "trend", None)
    last = snap.structure.last
    if last is not None and last.direction is not d and last.kind in ("CHOCH", "MSS"):
        return Check("structure", False, f"{last.kind} against the trade at {format_price(last.level)}")
    if trend is None:
        return Check("structure", None, "no clear structure")
    if trend is d:
        return Check("structure", True, f"structure still {d.value}")
    return Check("structure", False, f"structure turned {trend.value}")


def zone_check(snap: Any, d: Direction, price: float, target: float) -> Check:
    low, high = min(price, target), max(price, target)
    opposing = [z for z in snap.zones if z.direction is not d and z.bottom <= high and z.top >= low]
    if not opposing:
        return Check("opposing_zone", True, "no opposing zone before the target")
    nearest = min(opposing, key=lambda z: abs(z.mid - price))
    return Check(
        "opposing_zone",
        False,
        f"{nearest.label} {format_price(nearest.bottom)}-{format_price(nearest.top)} before the target",
    )


def liquidity_check(snap: Any, d: Direction) -> Check:
    if not snap.sweeps:
        return Check("liquidity", None, "no recent liquidity sweep")
    favoured, level, _ = max(snap.sweeps, key=lambda s: s[2])
    if favoured is d:
        return Check("liquidity", True, f"liquidity swept at {format_price(level)} in favour of the trade")
    side = "buy-side liquidity above" if d is Direction.BULLISH else "sell-side liquidity below"
    return Check("liquidity", False, f"{side} taken at {format_price(level)}: reversal risk")


def momentum_check(snap: Any, d: Direction) -> Check:
    if not snap.displacements:
        return Check("momentum", None, "no recent displacement")
    direction, body_atr, _ = max(snap.displacements, key=lambda x: x[2])
    if direction is d:
        return Check("momentum", True, f"latest displacement {direction.value} ({body_atr:.1f} ATR)")
    return Check("momentum", False, f"latest displacement against the trade ({body_atr:.1f} ATR)")


def decide(position: Position, checks: tuple[Check, ...], opposite_signal: bool) -> Action:
    """The decision rule of the module docstring."""
    against = {c.name for c in checks if c.ok is False}
    if opposite_signal or {"structure", "momentum"} <= against:
        return Action.CLOSE_NOW
    if len(against) >= 2:
        return Action.PARTIAL_CLOSE
    if len(against) == 1:
        return Action.MOVE_SL_BE if position.state is PositionState.OPEN else Action.PARTIAL_CLOSE
    return Action.HOLD


def evaluate(position: Position, analysis_or_frames: Any, *, price: float | None = None) -> Recommendation:
    """Recommendation for ``position`` from an engine ``Analysis`` (or ``{timeframe: candles}`` frames)."""
    snap, result, close = _snapshot_of(position, analysis_or_frames)
    price = price if price is not None else close if close is not None else snap.close
    d = _direction(position)
    target = position.target(min(position.targets_hit + 1, 3))
    checks = (
        structure_check(snap, d),
        zone_check(snap, d, price, target),
        liquidity_check(snap, d),
        momentum_check(snap, d),
    )
    opposite = isinstance(result, Signal) and result.direction is not position.direction
    action = decide(position, checks, opposite)
    reasons = [c.detail for c in checks if c.ok is False]
    if opposite:
        reasons.insert(0, f"the engine now signals {result.direction.value.upper()} ({result.confidence:.0f}%)")
    if not reasons:
        reasons = [c.detail for c in checks if c.ok]
    return Recommendation(action, tuple(reasons), checks, price)


def recommend_for(position: Position, market: Any, *, end: Any = None, config: Any = None) -> Recommendation:
    """Fetch the current candles through ``market`` and :func:`evaluate` (sync; run it in a worker thread)."""
    import ict_signal_engine

    analysis = ict_signal_engine.analyze(market, position.symbol, position.timeframe, end=end, config=config)
    return evaluate(position, analysis)


def _price(value: float) -> str:
    return format_price(value)


def format_recommendation_html(
    position: Position, rec: Recommendation, *, percent: int = 80, target: int | None = None
) -> str:
    """The 80% message: progress toward TP``target`` (default: the next one), the action and its reasons."""
    n = target or min(position.targets_hit + 1, 3)
    head = (
        f"🧭 <b>{html.escape(position.symbol)} {html.escape(position.timeframe)} "
        f"{position.direction.value.upper()}</b> #{position.id}: {percent}% of the way to TP{n} "
        f"({_price(position.target(n))})"
    )
    lines = [head, f"Recommendation: <b>{html.escape(rec.action.label)}</b>"]
    marks = {True: "✅", False: "❌", None: "➖"}
    lines += [f"{marks[c.ok]} {html.escape(c.detail)}" for c in rec.checks]
    if rec.reasons and not rec.checks:
        lines += [f"• {html.escape(r)}" for r in rec.reasons]
    return "\n".join(lines)
