"""Fair value gaps (FVG): three-candle price imbalances, their fill and their inversion (IFVG).

Definition (three candles c1 = i-2, c2 = i-1, c3 = i):
    Bullish FVG at i: ``high[i-2] < low[i]``; the gap is ``(bottom, top) = (high[i-2], low[i])``.
    Bearish FVG at i: ``low[i-2] > high[i]``; the gap is ``(bottom, top) = (high[i], low[i-2])``.
    Exactly touching wicks (``high[i-2] == low[i]``) leave no gap. The gap must be at least ``min_size_atr``
    times Wilder's ATR of the bars up to c1 (``ATR[i-2]``: the yardstick before the displacement candle c2, so
    the gap's own candles do not inflate it). An FVG is knowable at the close of c3: ``confirmed_at = index = i``.

Later state changes (first bar ``j > i``, ``None`` until it happens), for a bullish gap (price returns from above;
the bearish gap is the mirror with highs and ``>=``):
    ``touched_at``    ``low[j] <= top``: price re-enters the gap (mitigation starts);
    ``ce_touched_at`` ``low[j] <= ce``: the consequent encroachment, the 50% level ``(top + bottom) / 2``
                      (within ``CE_TOLERANCE`` = 1e-9 of the gap size, a float-rounding allowance);
    ``filled_at``     ``low[j] <= bottom``: price traded through the whole gap (100% filled);
    ``inverted_at``   ``close[j] < bottom``: a candle CLOSES beyond the far side (a wick is not enough): the gap
                      becomes an inverted FVG (IFVG) of the opposite polarity.
The fill percentage in between evolves bar by bar; :func:`fill_fraction` / :func:`fill_fractions` give it at any
bar from the candles up to that bar.

Thresholds are relative (ATR multiples), so the result is price-scale invariant. Cost: the state bars of all gaps
are searched at once by binary lifting over sparse tables (O(n log n)): about 40 ms for the arrays of 100k candles
(:func:`fvg_arrays`), twice that with the objects.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .core import CandleArrays, Direction, atr_or, ohlcv_arrays
from .market_structure import first_beyond, range_extreme, sparse_table

logger = logging.getLogger(__name__)

# The CE is a computed price, not a traded one: a wick counts as reaching it within this fraction of the gap size,
# so that float rounding of ``(top + bottom) / 2`` cannot change the answer when prices are rescaled.
CE_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class FVG:
    """One fair value gap. Prices in quote units; bars are positions in the candle frame."""

    direction: Direction
    top: float
    bottom: float
    index: int  # bar of c3, the candle that completes the gap
    middle_index: int  # bar of c2, the displacement candle (index - 1)
    size_atr: float  # (top - bottom) / ATR[index - 2]
    confirmed_at: int  # == index
    touched_at: int | None = None
    ce_touched_at: int | None = None
    filled_at: int | None = None
    inverted_at: int | None = None

    @property
    def ce(self) -> float:
        """Consequent encroachment: the 50% level of the gap."""
        return (self.top + self.bottom) / 2.0

    @property
    def size(self) -> float:
        return self.top - self.bottom

    def active_at(self, bar: int) -> bool:
        """Known at ``bar`` and neither filled nor inverted by then."""
        return (
            self.confirmed_at <= bar
            and (self.filled_at is None or self.filled_at > bar)
            and (self.inverted_at is None or self.inverted_at > bar)
        )


def _found(pos: np.ndarray) -> list[int | None]:
    """Bars as Python ints, ``None`` where the search found nothing (``-1``)."""
    out = pos.astype(object)
    out[pos < 0] = None
    return out.tolist()


def detect_fvgs(
    candles: pd.DataFrame,
    *,
    min_size_atr: float = 0.1,
    atr_length: int = 14,
    atr_values: np.ndarray | None = None,
    arrays: CandleArrays | None = None,
) -> list[FVG]:
    """Fair value gaps of ``candles`` in bar order (see the module docstring for the definition and states).

    Args:
        candles: validated candle frame (closed candles).
        min_size_atr: minimum gap size ``top - bottom`` in multiples of ``ATR[i-2]``; 0 keeps every gap.
        atr_length: Wilder ATR length in bars.
        atr_values: precomputed ``atr(high, low, close, length=atr_length)`` of these candles (the engine computes
            it once per frame); computed here when omitted.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.

    Returns:
        FVGs ordered by ``index`` (at most one per bar: a bar cannot be both a bullish and a bearish c3).
    """
    return fvg_objects(
        fvg_arrays(candles, min_size_atr=min_size_atr, atr_length=atr_length, atr_values=atr_values, arrays=arrays)
    )


def fvg_objects(a: FVGArrays) -> list[FVG]:
    """The :class:`FVG` objects of :func:`fvg_arrays` output (what :func:`detect_fvgs` returns), for a caller that
    computed the arrays once and also needs the objects."""
    bull_d, bear_d = Direction.BULLISH, Direction.BEARISH
    return [
        FVG(bull_d if d > 0 else bear_d, t, b, i, i - 1, sz, i, tc, c, f, v)
        for d, i, t, b, sz, tc, c, f, v in zip(
            a.sign.tolist(),
            a.index.tolist(),
            a.top.tolist(),
            a.bottom.tolist(),
            a.size_atr.tolist(),
            _found(a.touched_at),
            _found(a.ce_touched_at),
            _found(a.filled_at),
            _found(a.inverted_at),
            strict=True,
        )
    ]


@dataclass(frozen=True, slots=True)
class FVGArrays:
    """The FVGs of :func:`detect_fvgs` as parallel arrays in bar order (state bars ``-1`` = not yet)."""

    sign: np.ndarray  # int8: +1 bullish, -1 bearish
    index: np.ndarray  # int64: c3
    top: np.ndarray
    bottom: np.ndarray
    size_atr: np.ndarray
    touched_at: np.ndarray
    ce_touched_at: np.ndarray
    filled_at: np.ndarray
    inverted_at: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def select(self, mask: np.ndarray) -> FVGArrays:
        return FVGArrays(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def fvg_arrays(
    candles: pd.DataFrame,
    *,
    min_size_atr: float = 0.1,
    atr_length: int = 14,
    atr_values: np.ndarray | None = None,
    arrays: CandleArrays | None = None,
) -> FVGArrays:
    """:func:`detect_fvgs` without building objects (for detectors that filter gaps further)."""
    if min_size_atr < 0:
        raise ValueError("min_size_atr must be >= 0")
    _, high, low, close, _ = ohlcv_arrays(candles, arrays)
    n = len(close)
    empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0)
    if n < 3:
        return FVGArrays(np.empty(0, dtype=np.int8), empty_i, empty_f, empty_f, empty_f, *(empty_i,) * 4)
    yard = atr_or(atr_values, high, low, close, length=atr_length)[:-2]  # ATR[i-2] for i = 2..n-1
    bull_size = low[2:] - high[:-2]
    bear_size = low[:-2] - high[2:]
    with np.errstate(invalid="ignore", divide="ignore"):
        bull = (bull_size > 0) & (bull_size >= min_size_atr * yard)
        bear = (bear_size > 0) & (bear_size >= min_size_atr * yard)
    index = np.flatnonzero(bull | bear) + 2
    sign = np.where(bull[index - 2], 1, -1).astype(np.int8)
    up = sign > 0
    top = np.where(up, low[index], low[index - 2])
    bottom = np.where(up, high[index - 2], high[index])
    size_atr = (top - bottom) / yard[index - 2]
    states = [np.full(len(index), -1, dtype=np.int64) for _ in range(4)]
    for mask, bull_side in ((up, True), (~up, False)):
        if not mask.any():
            continue
        starts, t, b = index[mask] + 1, top[mask], bottom[mask]
        if bull_side:  # price comes back down into the gap
            wicks, closes = sparse_table(low, maximum=False), sparse_table(close, maximum=False)
            near, ce, far = t, (t + b) / 2.0 + CE_TOLERANCE * (t - b), b
        else:  # price comes back up into the gap
            wicks, closes = sparse_table(high, maximum=True), sparse_table(close, maximum=True)
            near, ce, far = b, (t + b) / 2.0 - CE_TOLERANCE * (t - b), t
        above = not bull_side
        found = (
            first_beyond(wicks, starts, near, above=above, strict=False),
            first_beyond(wicks, starts, ce, above=above, strict=False),
            first_beyond(wicks, starts, far, above=above, strict=False),
            first_beyond(closes, starts, far, above=above, strict=True),
        )
        for out, pos in zip(states, found, strict=True):
            out[mask] = np.where(pos < n, pos, -1)
    return FVGArrays(sign, index.astype(np.int64), top, bottom, size_atr, *states)


def fill_fractions(fvgs: Sequence[FVG], candles: pd.DataFrame, bar: int) -> np.ndarray:
    """Fill fraction in [0, 1] of each FVG at the close of ``bar`` (NaN for gaps not yet confirmed at ``bar``).

    Bullish: ``(top - min(low[index+1 : bar+1])) / (top - bottom)``, clipped to [0, 1]; bearish mirror with the
    highest high. 0 = untouched (or touched exactly at the edge), 0.5 = consequent encroachment, 1 = filled.
    Uses only candles up to ``bar``.
    """
    _, high, low, _, _ = ohlcv_arrays(candles)
    out = np.full(len(fvgs), np.nan)
    if not len(fvgs):
        return out
    if not 0 <= bar < len(low):
        raise ValueError(f"bar {bar} outside the candle frame of {len(low)} bars")
    idx = np.array([g.index for g in fvgs], dtype=np.int64)
    top = np.array([g.top for g in fvgs])
    bot = np.array([g.bottom for g in fvgs])
    bull = np.array([g.direction is Direction.BULLISH for g in fvgs])
    started = idx < bar  # at least one candle after c3
    out[idx == bar] = 0.0
    if started.any():
        lo = idx[started] + 1
        first = int(lo.min())  # tables over the needed window only
        lo -= first
        hi = np.full(len(lo), bar - first)
        window = slice(first, bar + 1)
        deepest_low = range_extreme(sparse_table(low[window], maximum=False), lo, hi, maximum=False)
        deepest_high = range_extreme(sparse_table(high[window], maximum=True), lo, hi, maximum=True)
        b = bull[started]
        t, s = top[started], bot[started]
        frac = np.where(b, (t - deepest_low) / (t - s), (deepest_high - s) / (t - s))
        out[started] = np.clip(frac, 0.0, 1.0)
    return out


def fill_fraction(fvg: FVG, candles: pd.DataFrame, bar: int) -> float:
    """Fill fraction of one FVG at the close of ``bar`` (see :func:`fill_fractions`)."""
    return float(fill_fractions([fvg], candles, bar)[0])


def active_fvgs(fvgs: Sequence[FVG], bar: int) -> list[FVG]:
    """FVGs known at ``bar`` and neither filled nor inverted by then."""
    return [g for g in fvgs if g.active_at(bar)]
