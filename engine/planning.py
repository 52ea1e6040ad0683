"""Steps 2+7 (direction), 8 (entry plan) and 9 (stop and targets) at one bar, read from a ``Snapshot``.

A step that finds no trade raises ``NoTradeReason``; ``signal_at`` turns it into a ``NoTrade`` with that reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine.config import EngineConfig
from engine.views import Snapshot, Zone, ZoneKind
from ict_modules.core import Direction


class NoTradeReason(Exception):
    def __init__(self, *reasons: str) -> None:
        super().__init__(reasons[0] if reasons else "")
        self.reasons = reasons


ZONE_PRIORITY = {ZoneKind.ORDER_BLOCK: 0, ZoneKind.FVG: 1, ZoneKind.SIBI_SSIB: 2, ZoneKind.BREAKER: 3}


@dataclass(frozen=True, slots=True)
class EntryPlan:
    """Step 8: the chosen entry. ``market`` = enter at the close; else a limit order at the zone's midpoint."""

    entry: float
    low: float
    high: float
    market: bool
    zone: Zone | None  # the zone that carries the entry (None for an OTE-only or entry-model entry)
    source: str  # "order_block", "fvg", "ote", or an entry model kind ("sweep_mss", ...)
    stop: float | None = None  # protecting structure named by the entry model, if the entry came from one


def direction_of(snap: Snapshot, unavailable: Sequence[str]) -> tuple[Direction, int, int]:
    """Steps 2+7: the entry timeframe's trend (direction of its last BOS/CHOCH/MSS), checked against the HTFs.

    No trade when the entry timeframe has no break yet, or when more higher timeframes oppose it than agree.
    """
    d = snap.structure.trend
    if d is None:
        why = "market_structure unavailable" if "market_structure" in unavailable else "no BOS/CHOCH yet"
        raise NoTradeReason(f"no bias on the entry timeframe ({why})")
    agree = sum(1 for _, b in snap.htf_bias if b is d)
    oppose = sum(1 for _, b in snap.htf_bias if b is d.opposite)
    if oppose > agree:
        against = ", ".join(f"{tf} {b.value}" for tf, b in snap.htf_bias if b is d.opposite)
        raise NoTradeReason(f"conflicting timeframes: entry timeframe {d.value}, {against}")
    return d, agree, oppose


def overlaps(top: float, bottom: float, low: float, high: float) -> bool:
    return bottom <= high and top >= low


def entry_plan(snap: Snapshot, d: Direction, config: EngineConfig) -> EntryPlan:
    """Step 8: the nearest active zone of direction ``d`` on the entry side of the close (a recent entry model's
    zone first, then OB, FVG, SIBI/SSIB, breaker, then the OTE band of a leg in ``d``).

    Long: the zone must reach at or below the close and its top lie within ``max_entry_distance_atr`` ATRs below it
    (mirror for shorts). Close inside the zone: market entry at the close; else a limit at the zone midpoint.
    """
    s = d.sign
    close, a = snap.close, snap.atr
    candidates: list[tuple[float, int, Zone | None, float, float, str, float | None]] = []

    def consider(
        top: float, bottom: float, priority: int, zone: Zone | None, source: str, stop: float | None = None
    ) -> None:
        near = top if s > 0 else bottom  # the edge price reaches first on a pullback
        far = bottom if s > 0 else top
        if s * (far - close) >= 0:  # the whole zone is on the wrong side of the close
            return
        distance = max(0.0, s * (close - near))
        if distance > config.max_entry_distance_atr * a:
            return
        if stop is not None and s * (close - stop) <= 0:  # the model's stop is already taken
            return
        candidates.append((distance, priority, zone, top, bottom, source, stop))

    for m in snap.entry_models:
        if m.direction is d and m.top is not None and m.bottom is not None:
            consider(m.top, m.bottom, -1, None, m.name, m.stop)
    for z in snap.zones:
        if z.direction is d:
            consider(z.top, z.bottom, ZONE_PRIORITY.get(z.kind, 5), z, z.kind.value)
    if snap.ote is not None and snap.ote.direction is d:
        consider(snap.ote.top, snap.ote.bottom, 6, None, "ote")
    if not candidates:
        side = "below" if s > 0 else "above"
        raise NoTradeReason(
            f"no entry model: no active {d.value} OB/FVG/SIBI-SSIB/breaker or OTE zone "
            f"{side} the price within {config.max_entry_distance_atr:g} ATR"
        )
    distance, _, zone, top, bottom, source, stop = min(
        candidates, key=lambda c: (c[0], c[1], -c[2].index if c[2] else 0)
    )
    if distance == 0.0:
        return EntryPlan(close, close, close, True, zone, source, stop)
    return EntryPlan((top + bottom) / 2, bottom, top, False, zone, source, stop)


def stop_for(snap: Snapshot, d: Direction, plan: EntryPlan, config: EngineConfig) -> float:
    """Step 9a: beyond the protecting structure plus ``sl_buffer_atr`` ATRs.

    Long: protecting structure = the lower of the entry zone's bottom and, when the entry came from an entry model,
    the model's stop (the swept low of a sweep->MSS, the leg origin of an OTE pullback, ...); otherwise the most
    recent confirmed internal swing low below the zone that lies within ``max_stop_atr`` ATRs of the entry.
    Stop = structure - buffer. The risk is widened to at least ``min_stop_atr`` ATRs; wider than ``max_stop_atr``
    ATRs is no trade. Shorts mirror (swing highs, zone top, + buffer).
    """
    s = d.sign
    a = snap.atr
    pick = min if s > 0 else max
    edge = plan.low if s > 0 else plan.high
    structure = edge
    if plan.zone is not None:
        structure = pick(structure, plan.zone.bottom if s > 0 else plan.zone.top)
    if plan.stop is not None:
        structure = pick(structure, plan.stop)
    else:
        for _, price in reversed(snap.swing_lows if s > 0 else snap.swing_highs):
            if s * (edge - price) > 0 and s * (plan.entry - price) <= config.max_stop_atr * a:
                structure = pick(structure, price)
                break
    sl = structure - s * config.sl_buffer_atr * a
    if s * (plan.entry - sl) < config.min_stop_atr * a:
        sl = plan.entry - s * config.min_stop_atr * a
    risk = s * (plan.entry - sl)
    if risk > config.max_stop_atr * a:
        raise NoTradeReason(f"stop too wide: {risk / a:.1f} ATR > {config.max_stop_atr:g} ATR")
    if not is_price(sl):  # a long after a flash crash: the buffer can reach below zero
        raise NoTradeReason("no valid stop: it would be at or below zero")
    return sl


def targets_for(
    snap: Snapshot, d: Direction, entry: float, sl: float, config: EngineConfig
) -> tuple[tuple[float, str], ...]:
    """Step 9b: TP1 < TP2 < TP3 (mirrored for shorts).

    TP1 = the nearest resting opposite-side liquidity pool (entry TF or first HTF) at least 0.5 ATR beyond the
    entry; without one, the first Fibonacci extension of the last leg in the direction. TP2 and TP3 = the next
    liquidity pools or extensions, each at least ``min_target_gap_r`` R beyond the previous; missing ones are the
    previous target + 1 R. A level at or below zero (an extension of a flash-crash leg, or +1 R below it) is not a
    target; when fewer than three remain, no trade.
    """
    s = d.sign
    risk = abs(entry - sl)
    min_gap = 0.5 * snap.atr
    pools = (snap.pools_above + snap.htf_pools_above) if s > 0 else (snap.pools_below + snap.htf_pools_below)
    liquidity = sorted(
        {(lv.price, lv.label) for lv in pools if s * (lv.price - entry) >= min_gap and is_price(lv.price)},
        key=lambda x: (s * x[0], x[1]),
    )
    extensions = []
    if snap.ote is not None and snap.ote.direction is d:
        span = abs(snap.ote.end - snap.ote.start)
        for level in snap.ote.targets:
            if s * (level - entry) >= min_gap and is_price(level):
                extensions.append((level, f"fib ext -{abs(level - snap.ote.end) / span:.2f}"))
    extensions.sort(key=lambda x: (s * x[0], x[1]))
    if liquidity:
        first = liquidity[0]
    elif extensions:
        first = extensions[0]
    else:
        raise NoTradeReason("no target: no resting liquidity or extension beyond the entry")
    targets = [first]
    rest = sorted(liquidity[1:] + [e for e in extensions if s * (e[0] - first[0]) > 0], key=lambda x: (s * x[0], x[1]))
    for level, label in rest:
        if len(targets) == 3:
            break
        if s * (level - targets[-1][0]) >= config.min_target_gap_r * risk:
            targets.append((level, label))
    while len(targets) < 3:
        level = targets[-1][0] + s * risk
        if not is_price(level):
            raise NoTradeReason(f"no room for TP{len(targets) + 1}: one R beyond TP{len(targets)} is at or below zero")
        targets.append((level, f"{targets[-1][1].split(' +')[0]} +1R"))
    return tuple(targets)


def is_price(level: float) -> bool:
    """A level a Signal can carry: finite and above zero."""
    return math.isfinite(level) and level > 0


def zones_at_entry(snap: Snapshot, d: Direction, plan: EntryPlan) -> list[Zone]:
    pad = 0.25 * snap.atr
    return [z for z in snap.zones if z.direction is d and overlaps(z.top, z.bottom, plan.low - pad, plan.high + pad)]
