"""Market structure: break of structure (BOS), change of character (CHOCH) and market structure shift (MSS).

Definition (one swing set at a time, ``level`` = internal or swing, see :mod:`.swing_points`):
    A swing high becomes *eligible* at the bar after it is confirmed (``swing.confirmed_at + 1``) and stays the
    reference high until the bar at which the next swing high is confirmed (inclusive). Swing lows mirror this.
    - A *bullish break* happens at the first bar whose CLOSE is strictly above the reference swing high; a
      *bearish break* at the first close strictly below the reference swing low. A wick beyond is not a break.
      Each swing breaks at most once (a later close beyond the same swing is ignored).
    - The *trend* after a bar is the direction of the latest break so far (neutral before the first one).
    - BOS: a break in the direction of the trend (or the first break of the series, when the trend is neutral).
    - CHOCH: a break against the trend (the first close beyond against it); it flips the trend.
    - MSS (market structure shift, a.k.a. MSB): a CHOCH that (a) came after a liquidity sweep of the opposite
      side inside its leg and (b) shows displacement. For a bullish MSS breaking the swing high at bar ``s`` at bar
      ``i``: some bar ``j`` in ``(s, i]`` traded below the reference swing low of bar ``j`` while that low was
      still unbroken by a close before ``j`` (sell-side liquidity taken; a bar that closes through it counts too),
      and a bullish displacement candle (see :mod:`.displacement_detector`) closed in ``[j, i]`` (``j`` = the last
      such sweep). Bearish mirror. ``kind`` is MSS instead of CHOCH then.
    - The *leg* of a break is ``(s, i]``; its extreme (lowest low for a bullish break, highest high for a bearish
      one; the first such bar on ties) is where the move that broke structure started (``leg_index``).

Every event is knowable at the close of the breaking bar: ``confirmed_at = i``; all its fields are fixed then.

Cost: breaks, legs and sweeps are sparse-table queries (binary lifting over range maxima/minima); nothing loops
over bars in Python. 100k candles take a few tens of milliseconds, most of it building the event objects
(:func:`structure_arrays` returns the same events as arrays).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from .core import CandleArrays, Direction, ohlcv_arrays
from .displacement_detector import displacement_mask
from .swing_points import SwingKind, SwingPoint, pivot_mask

logger = logging.getLogger(__name__)


class StructureLevel(StrEnum):
    INTERNAL = "internal"  # short pivots: minor structure
    SWING = "swing"  # long pivots: major structure


class StructureKind(StrEnum):
    BOS = "bos"
    CHOCH = "choch"
    MSS = "mss"  # a CHOCH after an opposite-side sweep with displacement

    @property
    def is_reversal(self) -> bool:
        """True for CHOCH and MSS (the trend flips), False for BOS."""
        return self is not StructureKind.BOS


@dataclass(frozen=True, slots=True)
class StructureEvent:
    """One break of a swing by a close. All fields are fixed at ``confirmed_at``."""

    kind: StructureKind
    direction: Direction  # BULLISH = close above a swing high, BEARISH = close below a swing low
    level: StructureLevel
    swing_index: int  # bar of the broken pivot
    swing_price: float  # its high (bullish break) or low (bearish break)
    confirmed_at: int  # the breaking bar (its close is beyond swing_price)
    leg_index: int  # bar of the leg extreme in (swing_index, confirmed_at]: where the breaking move started
    sweep_index: int | None  # last bar in the leg that took the opposite-side swing liquidity, if any
    displacement_index: int | None  # last displacement candle in the break direction within the leg, if any


def level_lengths(level: StructureLevel | str, internal_length: int, swing_length: int) -> int:
    """The pivot length (left = right) of a structure level."""
    return internal_length if StructureLevel(level) is StructureLevel.INTERNAL else swing_length


# --- range search helpers (shared by the order-block, breaker and zone modules) ---------------------------------


def sparse_table(values: np.ndarray, *, maximum: bool) -> list[np.ndarray]:
    """Level k holds the max (or min) of ``values[i : i + 2**k]`` for every valid ``i``."""
    table = [np.asarray(values, dtype=np.float64)]
    op = np.maximum if maximum else np.minimum
    width = 1
    while 2 * width <= len(values):
        prev = table[-1]
        table.append(op(prev[:-width], prev[width:]))
        width *= 2
    return table


def candle_tables(candles: pd.DataFrame, *, arrays: CandleArrays | None = None) -> dict[str, list[np.ndarray]]:
    """Sparse tables ``low_min``, ``high_max``, ``close_min``, ``close_max`` of a frame, shared by the structure,
    order-block, breaker and zone detectors (pass them along as ``tables=`` to build them once)."""
    _, high, low, close, _ = ohlcv_arrays(candles, arrays)
    return {
        "low_min": sparse_table(low, maximum=False),
        "high_max": sparse_table(high, maximum=True),
        "close_min": sparse_table(close, maximum=False),
        "close_max": sparse_table(close, maximum=True),
    }


def first_beyond(
    table: list[np.ndarray], starts: np.ndarray, thresholds: np.ndarray, *, above: bool, strict: bool = True
) -> np.ndarray:
    """For each query, the first bar ``j >= start`` whose value is beyond ``threshold``, else ``n``.

    ``above=True`` needs a max table and finds ``value > threshold`` (``>=`` with ``strict=False``);
    ``above=False`` needs a min table and finds ``value < threshold`` (``<=``). Vectorised binary lifting:
    O(log n) numpy passes over the queries.
    """
    n = len(table[0])
    pos = np.array(starts, dtype=np.int64)  # a copy: advanced in place
    thr = np.asarray(thresholds, dtype=np.float64)
    if len(pos) == 0:
        return pos
    # a block of 2**k bars can be skipped when no value in it is beyond the threshold
    quiet_op = {
        (True, True): np.less_equal,
        (True, False): np.less,
        (False, True): np.greater_equal,
        (False, False): np.greater,
    }[(above, strict)]
    for k in range(len(table) - 1, -1, -1):
        level = table[k]
        last = len(level) - 1  # the last start whose whole block lies inside the series
        step = quiet_op(level[np.minimum(pos, last)], thr)
        step &= pos <= last
        np.add(pos, 1 << k, out=pos, where=step)
    return np.minimum(pos, n)


def first_beyond_sided(
    up: np.ndarray,
    starts: np.ndarray,
    when_up: tuple[list[np.ndarray], np.ndarray, bool, bool],
    when_down: tuple[list[np.ndarray], np.ndarray, bool, bool],
) -> np.ndarray:
    """:func:`first_beyond` with per-query sides: queries where ``up`` is True use ``when_up`` =
    ``(table, thresholds, above, strict)``, the others ``when_down`` (thresholds are full-length arrays).
    Each side's search runs only over its own queries."""
    starts = np.asarray(starts, dtype=np.int64)
    out = np.empty(len(starts), dtype=np.int64)
    for mask, (table, thresholds, above, strict) in ((up, when_up), (~up, when_down)):
        sel = np.flatnonzero(mask)
        if len(sel):
            out[sel] = first_beyond(table, starts[sel], np.asarray(thresholds)[sel], above=above, strict=strict)
    return out


def range_extreme(table: list[np.ndarray], lo: np.ndarray, hi: np.ndarray, *, maximum: bool) -> np.ndarray:
    """Max (min) of ``values[lo : hi + 1]`` per query (``lo <= hi``) from a :func:`sparse_table` of ``values``."""
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    if len(lo) == 0:
        return np.empty(0)
    k = np.floor(np.log2(hi - lo + 1)).astype(np.int64)
    out = np.empty(len(lo))
    op = np.maximum if maximum else np.minimum
    for level in np.unique(k).tolist():
        sel = k == level
        out[sel] = op(table[level][lo[sel]], table[level][hi[sel] - (1 << level) + 1])
    return out


def range_argextreme(table: list[np.ndarray], lo: np.ndarray, hi: np.ndarray, *, maximum: bool) -> np.ndarray:
    """First bar of the max (min) of ``values[lo : hi + 1]`` per query, from a :func:`sparse_table`."""
    extreme = range_extreme(table, lo, hi, maximum=maximum)
    return first_beyond(table, lo, extreme, above=maximum, strict=False)


def last_true_index(mask: np.ndarray) -> np.ndarray:
    """Per bar, the last bar <= it where ``mask`` is True, else -1."""
    idx = np.where(mask, np.arange(len(mask)), -1)
    return np.maximum.accumulate(idx) if len(idx) else idx


def _sweep_mask(
    values: np.ndarray, conf: np.ndarray, prices: np.ndarray, broken: np.ndarray, n: int, *, above: bool
) -> np.ndarray:
    """Bars that trade beyond the reference swing of their side (the latest confirmed before the bar) while that
    swing had not been broken by an earlier close (``broken``: its breaking bar, ``n`` if never): liquidity taken
    (the breaking bar itself counts)."""
    if len(conf) == 0 or n == 0:
        return np.zeros(n, dtype=bool)
    bars = np.arange(n)
    ref = np.searchsorted(conf, bars, side="left") - 1
    has = ref >= 0
    ref = np.maximum(ref, 0)
    beyond = values > prices[ref] if above else values < prices[ref]
    return has & beyond & (broken[ref] >= bars)


def _breaks(conf: np.ndarray, prices: np.ndarray, close_table: list[np.ndarray], n: int, *, above: bool) -> np.ndarray:
    """Per swing of one side, the bar whose close first breaks it inside its window, else ``n``."""
    if len(conf) == 0:
        return conf
    window_end = np.append(conf[1:], n - 1)  # inclusive: replaced by the next swing after its confirmation bar
    first = first_beyond(close_table, conf + 1, prices, above=above)
    return np.where(first <= window_end, first, n)


@dataclass(frozen=True, slots=True)
class Pivots:
    """Swing pivots of one length as arrays, each side in bar order (what :func:`structure_arrays` consumes)."""

    high_index: np.ndarray
    high_price: np.ndarray
    low_index: np.ndarray
    low_price: np.ndarray
    length: int  # confirmation delay: confirmed_at = index + length

    @classmethod
    def of(cls, candles: pd.DataFrame, length: int, arrays: CandleArrays | None = None) -> Pivots:
        """Pivots of ``left = right = length`` (:func:`.swing_points.pivot_mask`), without building objects."""
        _, high, low, _, _ = ohlcv_arrays(candles, arrays)
        hi = np.flatnonzero(pivot_mask(high, left=length, right=length, highs=True))
        lo = np.flatnonzero(pivot_mask(low, left=length, right=length, highs=False))
        return cls(hi, high[hi], lo, low[lo], length)

    @classmethod
    def from_points(cls, points: Sequence[SwingPoint]) -> Pivots:
        """From :class:`.swing_points.SwingPoint` objects (all of one length)."""
        highs = [p for p in points if p.kind is SwingKind.HIGH]
        lows = [p for p in points if p.kind is SwingKind.LOW]
        length = points[0].confirmed_at - points[0].index if points else 0
        return cls(
            np.array([p.index for p in highs], dtype=np.int64),
            np.array([p.price for p in highs], dtype=np.float64),
            np.array([p.index for p in lows], dtype=np.int64),
            np.array([p.price for p in lows], dtype=np.float64),
            length,
        )


@dataclass(frozen=True, slots=True, eq=False)
class StructureArrays:
    """The events of :func:`detect_market_structure` as parallel arrays (bar order), for array consumers."""

    level: StructureLevel
    bars: np.ndarray  # breaking bar (confirmed_at)
    bullish: np.ndarray  # bool
    kinds: np.ndarray  # int8: 0 BOS, 1 CHOCH, 2 MSS
    swing_index: np.ndarray
    swing_price: np.ndarray
    leg: np.ndarray
    sweep: np.ndarray  # -1 = none
    displacement: np.ndarray  # -1 = none

    def __len__(self) -> int:
        return len(self.bars)

    def events(self) -> list[StructureEvent]:
        kind_of = (StructureKind.BOS, StructureKind.CHOCH, StructureKind.MSS)
        direction_of = (Direction.BEARISH, Direction.BULLISH)
        lv = self.level
        return [
            StructureEvent(
                kind_of[kd], direction_of[bu], lv, pv, pr, br, lg, sw if sw >= 0 else None, dp if dp >= 0 else None
            )
            for kd, bu, pv, pr, br, lg, sw, dp in zip(
                self.kinds.tolist(),
                self.bullish.tolist(),
                self.swing_index.tolist(),
                self.swing_price.tolist(),
                self.bars.tolist(),
                self.leg.tolist(),
                self.sweep.tolist(),
                self.displacement.tolist(),
                strict=True,
            )
        ]

    @classmethod
    def from_events(
        cls, events: Sequence[StructureEvent], level: StructureLevel | str | None = None
    ) -> StructureArrays:
        code = {StructureKind.BOS: 0, StructureKind.CHOCH: 1, StructureKind.MSS: 2}
        lv = StructureLevel(level) if level is not None else (events[0].level if events else StructureLevel.SWING)
        return cls(
            lv,
            np.array([e.confirmed_at for e in events], dtype=np.int64),
            np.array([e.direction is Direction.BULLISH for e in events], dtype=bool),
            np.array([code[e.kind] for e in events], dtype=np.int8),
            np.array([e.swing_index for e in events], dtype=np.int64),
            np.array([e.swing_price for e in events], dtype=np.float64),
            np.array([e.leg_index for e in events], dtype=np.int64),
            np.array([-1 if e.sweep_index is None else e.sweep_index for e in events], dtype=np.int64),
            np.array([-1 if e.displacement_index is None else e.displacement_index for e in events], dtype=np.int64),
        )

    def trend(self, n: int) -> np.ndarray:
        """Per-bar int8 trend after each bar's close (see :func:`trend_from_events`)."""
        out = np.zeros(n, dtype=np.int8)
        if len(self.bars) == 0 or n == 0:
            return out
        marks = np.full(n, -1, dtype=np.int64)
        marks[self.bars] = np.arange(len(self.bars))  # the last event of a bar wins
        latest = np.maximum.accumulate(marks)
        has = latest >= 0
        out[has] = np.where(self.bullish, 1, -1).astype(np.int8)[latest[has]]
        return out


def _empty_arrays(level: StructureLevel) -> StructureArrays:
    i, f = np.empty(0, dtype=np.int64), np.empty(0)
    return StructureArrays(level, i, np.empty(0, dtype=bool), np.empty(0, dtype=np.int8), i, f, i, i, i)


def structure_arrays(
    candles: pd.DataFrame,
    *,
    level: StructureLevel | str = StructureLevel.SWING,
    internal_length: int = 3,
    swing_length: int = 10,
    pivots: Pivots | None = None,
    min_body_atr: float = 1.2,
    min_body_ratio: float = 0.6,
    atr_length: int = 14,
    tables: dict[str, list[np.ndarray]] | None = None,
    atr_values: np.ndarray | None = None,
    arrays: CandleArrays | None = None,
) -> StructureArrays:
    """:func:`detect_market_structure` as arrays (no objects); ``pivots`` of the level's length may be given."""
    level = StructureLevel(level)
    n = len(candles)
    if pivots is None:
        pivots = Pivots.of(candles, level_lengths(level, internal_length, swing_length), arrays)
    if n == 0 or len(pivots.high_index) + len(pivots.low_index) == 0:
        return _empty_arrays(level)
    arrays = ohlcv_arrays(candles, arrays)
    high, low = arrays.high, arrays.low
    if tables is None:
        tables = candle_tables(candles, arrays=arrays)
    h_conf = pivots.high_index + pivots.length
    l_conf = pivots.low_index + pivots.length
    hi_break = _breaks(h_conf, pivots.high_price, tables["close_max"], n, above=True)
    lo_break = _breaks(l_conf, pivots.low_price, tables["close_min"], n, above=False)
    hit_hi, hit_lo = hi_break < n, lo_break < n
    bars = np.concatenate((hi_break[hit_hi], lo_break[hit_lo]))
    if len(bars) == 0:
        return _empty_arrays(level)
    disp = displacement_mask(
        candles,
        min_body_atr=min_body_atr,
        min_body_ratio=min_body_ratio,
        atr_length=atr_length,
        atr_values=atr_values,
        arrays=arrays,
    )
    # sell-side / buy-side liquidity taken per bar
    ssl = _sweep_mask(low, l_conf, pivots.low_price, lo_break, n, above=False)
    bsl = _sweep_mask(high, h_conf, pivots.high_price, hi_break, n, above=True)

    pivot_bar = np.concatenate((pivots.high_index[hit_hi], pivots.low_index[hit_lo]))
    price = np.concatenate((pivots.high_price[hit_hi], pivots.low_price[hit_lo]))
    bullish = np.concatenate((np.ones(hit_hi.sum(), dtype=bool), np.zeros(hit_lo.sum(), dtype=bool)))
    order = np.lexsort((~bullish, bars))  # bar order, a bullish break first on a shared bar
    bars, pivot_bar, price, bullish = bars[order], pivot_bar[order], price[order], bullish[order]
    leg = np.empty(len(bars), dtype=np.int64)
    sweep = np.empty(len(bars), dtype=np.int64)
    displaced = np.empty(len(bars), dtype=np.int64)
    for side, mask in ((True, bullish), (False, ~bullish)):
        if not mask.any():
            continue
        b, p = bars[mask], pivot_bar[mask]
        if side:
            leg[mask] = range_argextreme(tables["low_min"], p + 1, b, maximum=False)
            sweep[mask] = last_true_index(ssl)[b]
            displaced[mask] = last_true_index(disp > 0)[b]
        else:
            leg[mask] = range_argextreme(tables["high_max"], p + 1, b, maximum=True)
            sweep[mask] = last_true_index(bsl)[b]
            displaced[mask] = last_true_index(disp < 0)[b]
    swept = sweep > pivot_bar
    has_disp = displaced > pivot_bar
    # the trend before a break is the direction of the previous break: a change of direction is a CHOCH
    reversal = np.concatenate(([False], bullish[1:] != bullish[:-1]))
    mss = reversal & swept & has_disp & (displaced >= sweep)
    kinds = np.where(mss, 2, np.where(reversal, 1, 0)).astype(np.int8)
    return StructureArrays(
        level,
        bars,
        bullish,
        kinds,
        pivot_bar,
        price,
        leg,
        np.where(swept, sweep, -1),
        np.where(has_disp, displaced, -1),
    )


def detect_market_structure(
    candles: pd.DataFrame,
    *,
    level: StructureLevel | str = StructureLevel.SWING,
    internal_length: int = 3,
    swing_length: int = 10,
    swings: Sequence[SwingPoint] | None = None,
    min_body_atr: float = 1.2,
    min_body_ratio: float = 0.6,
    atr_length: int = 14,
    tables: dict[str, list[np.ndarray]] | None = None,
    atr_values: np.ndarray | None = None,
    arrays: CandleArrays | None = None,
) -> list[StructureEvent]:
    """BOS / CHOCH / MSS events of one structure level, in bar order (see module docstring).

    Args:
        candles: validated candle frame.
        level: ``"swing"`` (major, pivots of ``swing_length``) or ``"internal"`` (minor, ``internal_length``).
        internal_length, swing_length: pivot lengths in bars (left = right); also the confirmation delay.
        swings: precomputed swing points of that level (from :func:`.swing_points.detect_swing_points` on the same
            candles) to skip recomputing them.
        min_body_atr, min_body_ratio, atr_length: displacement thresholds (ATR multiples, body/range ratio, bars)
            used to qualify MSS.
        tables: :func:`candle_tables` of these candles, when the caller already has them.
        atr_values: precomputed ``atr(high, low, close, length=atr_length)`` of these candles (the engine computes
            it once per frame); computed here when omitted.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.
    """
    level = StructureLevel(level)
    pivots = None
    if swings is not None:
        pivots = Pivots.from_points(swings)
        if not swings:
            return []
    return structure_arrays(
        candles,
        level=level,
        internal_length=internal_length,
        swing_length=swing_length,
        pivots=pivots,
        min_body_atr=min_body_atr,
        min_body_ratio=min_body_ratio,
        atr_length=atr_length,
        tables=tables,
        atr_values=atr_values,
        arrays=arrays,
    ).events()


def trend_from_events(events: Sequence[StructureEvent], n: int) -> np.ndarray:
    """Per-bar int8 trend after each bar's close: +1 bullish, -1 bearish, 0 before the first break."""
    return StructureArrays.from_events(events).trend(n)


def trend_array(candles: pd.DataFrame, **kwargs) -> np.ndarray:
    """Per-bar trend (+1/-1/0) of :func:`structure_arrays` with the same keyword arguments."""
    return structure_arrays(candles, **kwargs).trend(len(candles))


def current_trend(events: Sequence[StructureEvent]) -> Direction | None:
    """The trend after the last event (None before any break)."""
    return events[-1].direction if events else None
