"""ICT entry models: where to enter, in which direction, and which structure protects the stop.

Definitions (each model instance has an entry zone ``[bottom, top]``, a ``stop`` price = the protecting structure,
and ``confirmed_at`` = the bar at whose close the whole setup is known):

- SWEEP_MSS ("sweep -> MSS with displacement -> FVG/OB entry", the ICT 2022 model): every MSS of the
  ``level`` structure (:mod:`.market_structure`: a CHOCH after an opposite-side liquidity sweep, with
  displacement). Entry zone: the most recent FVG of the same direction inside the MSS leg (its first candle at or
  after the leg extreme), unfilled and not inverted, known by the break bar ``i`` or at most ``fvg_grace`` bars
  later (the displacement candle is often the middle candle of the gap, completed the bar after the break):
  ``confirmed_at`` = the first bar in ``[i, i + fvg_grace]`` at which such an FVG is known. Without one, the order
  block of that break (:mod:`.order_block_detector`) is the entry and ``confirmed_at = i + fvg_grace``. Neither:
  no model. Stop: the leg extreme (the swept low for longs, the swept high for shorts).
- OTE_PULLBACK: an OTE setup (:mod:`.ote_calculator`, the 62%-79% retracement of an impulse leg) whose direction
  equals the ``trend_level`` structure trend at its confirmation. Entry zone: the OTE zone. Stop: the leg's
  origin (its low for longs). Expires when price trades beyond the leg's end before entering the zone.
- BREAKER_RETEST: a BREAKER block (:mod:`.breaker_block_detector`; MITIGATION blocks too with
  ``include_mitigation``). Entry zone: the block. Stop: the extreme of the failed move between the failed order
  block and the failure (for a bearish breaker, the high that took the buy-side liquidity).

States, searched from ``confirmed_at + 1``:
    ``triggered_at``: first bar trading into the entry zone (long: ``low <= top``; short: ``high >= bottom``).
    ``invalidated_at``: first CLOSE beyond the stop (long: ``close < stop``; short: ``close > stop``).
    ``expired_at``: ``confirmed_at + max_age`` (or, for OTE_PULLBACK, the first bar beyond the leg's end if that
    comes first) when the model was neither triggered nor invalidated by then; an expired model has no later
    states.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from .breaker_block_detector import BlockKind, BreakerBlock, detect_breaker_blocks
from .core import Direction
from .fvg_detector import FVG, detect_fvgs
from .market_structure import (
    StructureEvent,
    StructureKind,
    StructureLevel,
    candle_tables,
    detect_market_structure,
    first_beyond,
    level_lengths,
    range_argextreme,
    trend_from_events,
)
from .order_block_detector import OrderBlock, detect_order_blocks
from .ote_calculator import OTESetup, detect_ote
from .swing_points import detect_swing_points

logger = logging.getLogger(__name__)


class EntryModelKind(StrEnum):
    SWEEP_MSS = "sweep_mss"
    OTE_PULLBACK = "ote_pullback"
    BREAKER_RETEST = "breaker_retest"


class EntrySource(StrEnum):
    FVG = "fvg"
    ORDER_BLOCK = "order_block"
    OTE = "ote"
    BREAKER = "breaker"


@dataclass(frozen=True, slots=True)
class EntryModel:
    kind: EntryModelKind
    direction: Direction  # BULLISH = long
    source: EntrySource  # what the entry zone is
    top: float  # entry zone
    bottom: float
    stop: float  # protecting structure: the idea is wrong on a close beyond it
    stop_index: int  # bar of that structure
    origin_index: int  # bar of the event behind the model: MSS break, OTE leg end, breaker failure
    confirmed_at: int
    triggered_at: int | None
    invalidated_at: int | None
    expired_at: int | None


_KIND_ORDER = {EntryModelKind.SWEEP_MSS: 0, EntryModelKind.OTE_PULLBACK: 1, EntryModelKind.BREAKER_RETEST: 2}


def _sweep_mss(
    events: Sequence[StructureEvent],
    fvgs: Sequence[FVG],
    blocks: Sequence[OrderBlock],
    high: np.ndarray,
    low: np.ndarray,
    n: int,
    fvg_grace: int,
) -> list[tuple]:
    """(kind, direction, source, top, bottom, stop, stop_index, origin, confirmed, expire_bar) rows."""
    fvg_conf = [f.confirmed_at for f in fvgs]
    ob_by_break = {(b.confirmed_at, b.direction): b for b in blocks}
    rows = []
    for e in events:
        if e.kind is not StructureKind.MSS:
            continue
        i, d, leg = e.confirmed_at, e.direction, e.leg_index
        stop = float(low[leg] if d is Direction.BULLISH else high[leg])
        # FVGs known by bar i: the latest usable one; else the first usable one completed in (i, i + grace]
        lo = bisect.bisect_left(fvg_conf, leg + 2)
        hi = bisect.bisect_right(fvg_conf, min(i + fvg_grace, n - 1))
        usable = [
            f for f in fvgs[lo:hi] if f.direction is d and f.index - 2 >= leg and _alive(f, max(i, f.confirmed_at))
        ]
        known = [f for f in usable if f.confirmed_at <= i]
        later = [f for f in usable if f.confirmed_at > i]
        chosen = known[-1] if known else (later[0] if later else None)
        if chosen is not None:
            conf = max(i, chosen.confirmed_at)
            rows.append((d, EntrySource.FVG, chosen.top, chosen.bottom, stop, leg, i, conf))
            continue
        block = ob_by_break.get((i, d))
        conf = i + fvg_grace
        if block is not None and conf < n and (block.invalidated_at is None or block.invalidated_at > conf):
            rows.append((d, EntrySource.ORDER_BLOCK, block.top, block.bottom, stop, leg, i, conf))
    return [(EntryModelKind.SWEEP_MSS, *r, n) for r in rows]


def _alive(f: FVG, bar: int) -> bool:
    return (f.filled_at is None or f.filled_at > bar) and (f.inverted_at is None or f.inverted_at > bar)


def _ote_pullbacks(setups: Sequence[OTESetup], trend: np.ndarray, tables: dict, n: int) -> list[tuple]:
    rows = [s for s in setups if trend[s.confirmed_at] == s.direction.sign]
    if not rows:
        return []
    bull = np.array([s.direction is Direction.BULLISH for s in rows])
    conf = np.array([s.confirmed_at for s in rows], dtype=np.int64)
    leg_end = np.array([s.leg_high if s.direction is Direction.BULLISH else s.leg_low for s in rows])
    beyond_end = np.where(
        bull,
        first_beyond(tables["high_max"], conf + 1, leg_end, above=True),
        first_beyond(tables["low_min"], conf + 1, leg_end, above=False),
    )
    out = []
    for s, end in zip(rows, beyond_end.tolist(), strict=True):
        bullish = s.direction is Direction.BULLISH
        stop = s.leg_low if bullish else s.leg_high
        out.append(
            (
                EntryModelKind.OTE_PULLBACK,
                s.direction,
                EntrySource.OTE,
                s.zone_top,
                s.zone_bottom,
                stop,
                s.start_index,
                s.end_index,
                s.confirmed_at,
                end,
            )
        )
    return out


def _breaker_retests(breakers: Sequence[BreakerBlock], tables: dict, n: int, include_mitigation: bool) -> list[tuple]:
    rows = [b for b in breakers if include_mitigation or b.kind is BlockKind.BREAKER]
    if not rows:
        return []
    bullish = np.array([b.direction is Direction.BULLISH for b in rows])
    lo = np.array([b.origin_index + 1 for b in rows], dtype=np.int64)
    hi = np.array([b.confirmed_at for b in rows], dtype=np.int64)
    # a new bullish block comes from a failed bearish OB: its failed move went DOWN, the stop is that move's low
    ext_bar = np.where(
        bullish,
        range_argextreme(tables["low_min"], lo, hi, maximum=False),
        range_argextreme(tables["high_max"], lo, hi, maximum=True),
    )
    lows, highs = tables["low_min"][0], tables["high_max"][0]
    stops = np.where(bullish, lows[ext_bar], highs[ext_bar])
    kind = EntryModelKind.BREAKER_RETEST
    return [
        (kind, b.direction, EntrySource.BREAKER, b.top, b.bottom, s, e, b.confirmed_at, b.confirmed_at, n)
        for b, s, e in zip(rows, stops.tolist(), ext_bar.tolist(), strict=True)
    ]


def detect_entry_models(
    candles: pd.DataFrame,
    *,
    level: StructureLevel | str = StructureLevel.INTERNAL,
    trend_level: StructureLevel | str = StructureLevel.SWING,
    internal_length: int = 3,
    swing_length: int = 10,
    ote_swing_length: int = 5,
    fvg_grace: int = 2,
    max_age: int = 50,
    include_mitigation: bool = False,
    events: Sequence[StructureEvent] | None = None,
    trend_events: Sequence[StructureEvent] | None = None,
    order_blocks: Sequence[OrderBlock] | None = None,
    breakers: Sequence[BreakerBlock] | None = None,
    fvgs: Sequence[FVG] | None = None,
    ote_setups: Sequence[OTESetup] | None = None,
) -> list[EntryModel]:
    """Entry model instances in order of confirmation (see module docstring).

    Args:
        candles: validated candle frame.
        level: structure level of the MSS (and of the order blocks and breakers computed here).
        trend_level: structure level whose trend an OTE pullback must follow.
        internal_length, swing_length: pivot lengths in bars of the two structure levels.
        ote_swing_length: pivot length in bars of the OTE impulse legs.
        fvg_grace: bars after the MSS break within which its FVG may complete.
        max_age: bars after confirmation after which an untriggered model expires.
        include_mitigation: also offer retests of mitigation blocks (BREAKER_RETEST with a mitigation zone).
        events, trend_events, order_blocks, breakers, fvgs, ote_setups: precomputed detector output for these
            candles (each is computed here when omitted, with the defaults above).
    """
    n = len(candles)
    if n == 0:
        return []
    high = candles["high"].to_numpy(dtype=np.float64)
    low = candles["low"].to_numpy(dtype=np.float64)
    tables = candle_tables(candles)
    lengths = {"internal_length": internal_length, "swing_length": swing_length}
    if events is None:
        events = detect_market_structure(candles, level=level, tables=tables, **lengths)
    sweep_swings = None  # swing-level pivots, shared by the trend structure and the breaker sweeps
    if trend_events is None:
        if StructureLevel(trend_level) is StructureLevel(level):
            trend_events = events
        else:
            length = level_lengths(trend_level, internal_length, swing_length)
            trend_swings = detect_swing_points(candles, left=length, right=length)
            trend_events = detect_market_structure(
                candles, level=trend_level, swings=trend_swings, tables=tables, **lengths
            )
            if StructureLevel(trend_level) is StructureLevel.SWING:
                sweep_swings = trend_swings
    if order_blocks is None:
        order_blocks = detect_order_blocks(candles, events=events, tables=tables)
    if breakers is None:
        breakers = detect_breaker_blocks(
            candles, order_blocks=order_blocks, tables=tables, swings=sweep_swings, **lengths
        )
    if fvgs is None:
        fvgs = detect_fvgs(candles)
    if ote_setups is None:
        ote_setups = detect_ote(candles, swing_length=ote_swing_length)

    rows = _sweep_mss(events, fvgs, order_blocks, high, low, n, fvg_grace)
    rows += _ote_pullbacks(ote_setups, trend_from_events(trend_events, n), tables, n)
    rows += _breaker_retests(breakers, tables, n, include_mitigation)
    rows.sort(key=lambda r: (r[8], _KIND_ORDER[r[0]], r[7]))
    if not rows:
        return []

    bull = np.array([r[1] is Direction.BULLISH for r in rows])
    top = np.array([r[3] for r in rows], dtype=np.float64)
    bottom = np.array([r[4] for r in rows], dtype=np.float64)
    stop = np.array([r[5] for r in rows], dtype=np.float64)
    conf = np.array([r[8] for r in rows], dtype=np.int64)
    start = conf + 1
    trig = np.where(
        bull,
        first_beyond(tables["low_min"], start, top, above=False, strict=False),
        first_beyond(tables["high_max"], start, bottom, above=True, strict=False),
    )
    inval = np.where(
        bull,
        first_beyond(tables["close_min"], start, stop, above=False),
        first_beyond(tables["close_max"], start, stop, above=True),
    )
    expire = np.minimum(conf + max_age, np.array([r[9] for r in rows], dtype=np.int64))
    expired = (expire < np.minimum(trig, inval)) & (expire < n)
    trig = np.where(expired, n, trig)  # nothing happens to an expired model
    inval = np.where(expired, n, inval)
    return [
        EntryModel(
            kind=r[0],
            direction=r[1],
            source=r[2],
            top=float(r[3]),
            bottom=float(r[4]),
            stop=float(r[5]),
            stop_index=int(r[6]),
            origin_index=int(r[7]),
            confirmed_at=int(r[8]),
            triggered_at=None if t >= n else t,
            invalidated_at=None if v >= n else v,
            expired_at=x if ex else None,
        )
        for r, t, v, x, ex in zip(rows, trig.tolist(), inval.tolist(), expire.tolist(), expired.tolist(), strict=True)
    ]
