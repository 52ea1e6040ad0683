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

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from .breaker_block_detector import BlockKind, BreakerBlock, detect_breaker_blocks
from .core import CandleArrays, Direction, ohlcv_arrays
from .fvg_detector import FVG, FVGArrays, fvg_arrays
from .market_structure import (
    Pivots,
    StructureArrays,
    StructureEvent,
    StructureLevel,
    candle_tables,
    first_beyond_sided,
    level_lengths,
    range_argextreme,
    structure_arrays,
)
from .order_block_detector import OrderBlock, detect_order_blocks
from .ote_calculator import OTESetup, detect_ote

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


def _as_arrays(events: Sequence[StructureEvent] | StructureArrays, level: StructureLevel | str) -> StructureArrays:
    if isinstance(events, StructureArrays):
        return events
    return StructureArrays.from_events(events, events[0].level if events else level)


def _fvg_arrays_of(fvgs: Sequence[FVG]) -> FVGArrays:
    def bars(name: str) -> np.ndarray:
        return np.array([-1 if getattr(f, name) is None else getattr(f, name) for f in fvgs], dtype=np.int64)

    return FVGArrays(
        np.array([f.direction.sign for f in fvgs], dtype=np.int8),
        np.array([f.index for f in fvgs], dtype=np.int64),
        np.array([f.top for f in fvgs], dtype=np.float64),
        np.array([f.bottom for f in fvgs], dtype=np.float64),
        np.array([f.size_atr for f in fvgs], dtype=np.float64),
        bars("touched_at"),
        bars("ce_touched_at"),
        bars("filled_at"),
        bars("inverted_at"),
    )


def _sweep_mss(
    events: StructureArrays,
    fvgs: FVGArrays,
    blocks: Sequence[OrderBlock],
    high: np.ndarray,
    low: np.ndarray,
    n: int,
    fvg_grace: int,
) -> list[tuple]:
    """(kind, direction, source, top, bottom, stop, stop_index, origin, confirmed, expire_bar) rows."""
    ob_by_break = {(b.confirmed_at, b.direction is Direction.BULLISH): b for b in blocks}
    f_index = fvgs.index
    f_sign, f_top, f_bot = fvgs.sign.tolist(), fvgs.top.tolist(), fvgs.bottom.tolist()
    dead = np.minimum(
        np.where(fvgs.filled_at < 0, n, fvgs.filled_at), np.where(fvgs.inverted_at < 0, n, fvgs.inverted_at)
    ).tolist()
    rows = []
    mss = np.flatnonzero(events.kinds == 2)
    for i, bull, leg in zip(
        events.bars[mss].tolist(), events.bullish[mss].tolist(), events.leg[mss].tolist(), strict=True
    ):
        d, sign = (Direction.BULLISH, 1) if bull else (Direction.BEARISH, -1)
        stop = float(low[leg] if bull else high[leg])
        # FVGs known by bar i: the latest usable one; else the first usable one completed in (i, i + grace]
        lo = int(np.searchsorted(f_index, leg + 2, side="left"))
        hi = int(np.searchsorted(f_index, min(i + fvg_grace, n - 1), side="right"))
        chosen = -1
        for k in range(lo, hi):
            c3 = int(f_index[k])
            if f_sign[k] != sign or dead[k] <= max(i, c3):
                continue
            if c3 <= i:
                chosen = k  # the latest known at the break
            elif chosen < 0:
                chosen = k  # the first completed after it
                break
        if chosen >= 0:
            conf = max(i, int(f_index[chosen]))
            rows.append((d, EntrySource.FVG, f_top[chosen], f_bot[chosen], stop, leg, i, conf))
            continue
        block = ob_by_break.get((i, bull))
        conf = i + fvg_grace
        if block is not None and conf < n and (block.invalidated_at is None or block.invalidated_at > conf):
            rows.append((d, EntrySource.ORDER_BLOCK, block.top, block.bottom, stop, leg, i, conf))
    return [(EntryModelKind.SWEEP_MSS, *r, n) for r in rows]


def _ote_pullbacks(setups: Sequence[OTESetup], trend: np.ndarray, tables: dict, n: int) -> list[tuple]:
    rows = [s for s in setups if trend[s.confirmed_at] == s.direction.sign]
    if not rows:
        return []
    bull = np.array([s.direction is Direction.BULLISH for s in rows])
    conf = np.array([s.confirmed_at for s in rows], dtype=np.int64)
    leg_end = np.array([s.leg_high if s.direction is Direction.BULLISH else s.leg_low for s in rows])
    beyond_end = first_beyond_sided(
        bull, conf + 1, (tables["high_max"], leg_end, True, True), (tables["low_min"], leg_end, False, True)
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
    events: Sequence[StructureEvent] | StructureArrays | None = None,
    trend_events: Sequence[StructureEvent] | StructureArrays | None = None,
    order_blocks: Sequence[OrderBlock] | None = None,
    breakers: Sequence[BreakerBlock] | None = None,
    fvgs: Sequence[FVG] | FVGArrays | None = None,
    ote_setups: Sequence[OTESetup] | None = None,
    tables: dict[str, list[np.ndarray]] | None = None,
    arrays: CandleArrays | None = None,
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
            candles (each is computed here when omitted, with the defaults above); structure as event lists or
            :class:`.market_structure.StructureArrays`, FVGs as objects or :class:`.fvg_detector.FVGArrays`.
        tables: :func:`.market_structure.candle_tables` of these candles, when the caller already has them.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.
    """
    n = len(candles)
    if n == 0:
        return []
    _, high, low, _, _ = ohlcv_arrays(candles, arrays)
    if tables is None:
        tables = candle_tables(candles, arrays=arrays)
    lengths = {"internal_length": internal_length, "swing_length": swing_length}
    structure = (
        structure_arrays(candles, level=level, tables=tables, **lengths)
        if events is None
        else _as_arrays(events, level)
    )
    sweep_pivots = None  # swing-level pivots, shared by the trend structure and the breaker sweeps
    if trend_events is not None:
        trend = _as_arrays(trend_events, trend_level)
    elif StructureLevel(trend_level) is StructureLevel(level):
        trend = structure
    else:
        trend_pivots = Pivots.of(candles, level_lengths(trend_level, internal_length, swing_length), arrays)
        trend = structure_arrays(candles, level=trend_level, pivots=trend_pivots, tables=tables, **lengths)
        if StructureLevel(trend_level) is StructureLevel.SWING:
            sweep_pivots = trend_pivots
    if order_blocks is None:
        order_blocks = detect_order_blocks(candles, events=structure, tables=tables)
    if breakers is None:
        breakers = detect_breaker_blocks(
            candles, order_blocks=order_blocks, tables=tables, swings=sweep_pivots, **lengths
        )
    if fvgs is None:
        fvgs = fvg_arrays(candles)
    elif not isinstance(fvgs, FVGArrays):
        fvgs = _fvg_arrays_of(fvgs)
    if ote_setups is None:
        ote_setups = detect_ote(candles, swing_length=ote_swing_length)

    rows = _sweep_mss(structure, fvgs, order_blocks, high, low, n, fvg_grace)
    rows += _ote_pullbacks(ote_setups, trend.trend(n), tables, n)
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
    trig = first_beyond_sided(
        bull, start, (tables["low_min"], top, False, False), (tables["high_max"], bottom, True, False)
    )
    inval = first_beyond_sided(
        bull, start, (tables["close_min"], stop, False, True), (tables["close_max"], stop, True, True)
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
