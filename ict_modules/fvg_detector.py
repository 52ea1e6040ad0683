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
are searched at once by binary lifting over sparse tables (O(n log n)), a few milliseconds for 100k candles.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .core import Direction, atr, ohlcv_arrays
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


def _found(pos: np.ndarray, n: int) -> list[int | None]:
    """Bars as Python ints, ``None`` where the search ran off the end (``n``)."""
    out = pos.astype(object)
    out[pos >= n] = None
    return out.tolist()


def detect_fvgs(candles: pd.DataFrame, *, min_size_atr: float = 0.1, atr_length: int = 14) -> list[FVG]:
    """Fair value gaps of ``candles`` in bar order (see the module docstring for the definition and states).

    Args:
        candles: validated candle frame (closed candles).
        min_size_atr: minimum gap size ``top - bottom`` in multiples of ``ATR[i-2]``; 0 keeps every gap.
        atr_length: Wilder ATR length in bars.

    Returns:
        FVGs ordered by ``index`` (at most one per bar: a bar cannot be both a bullish and a bearish c3).
    """
    if min_size_atr < 0:
        raise ValueError("min_size_atr must be >= 0")
    _, high, low, close, _ = ohlcv_arrays(candles)
    n = len(close)
    if n < 3:
        return []
    yard = atr(high, low, close, length=atr_length)[:-2]  # ATR[i-2] for i = 2..n-1
    c1_high, c1_low = high[:-2], low[:-2]
    c3_high, c3_low = high[2:], low[2:]
    bull_size = c3_low - c1_high
    bear_size = c1_low - c3_high
    with np.errstate(invalid="ignore", divide="ignore"):
        bull = (bull_size > 0) & (bull_size >= min_size_atr * yard)
        bear = (bear_size > 0) & (bear_size >= min_size_atr * yard)
    bull_i = np.flatnonzero(bull) + 2
    bear_i = np.flatnonzero(bear) + 2
    if len(bull_i) + len(bear_i) == 0:
        return []

    # bullish: gap (high[i-2], low[i]); price comes back down into it
    b_top, b_bot = low[bull_i], high[bull_i - 2]
    lows, closes_min = sparse_table(low, maximum=False), sparse_table(close, maximum=False)
    b_touch = first_beyond(lows, bull_i + 1, b_top, above=False, strict=False)
    b_ce = first_beyond(
        lows, bull_i + 1, (b_top + b_bot) / 2.0 + CE_TOLERANCE * (b_top - b_bot), above=False, strict=False
    )
    b_fill = first_beyond(lows, bull_i + 1, b_bot, above=False, strict=False)
    b_inv = first_beyond(closes_min, bull_i + 1, b_bot, above=False, strict=True)
    # bearish: gap (high[i], low[i-2]); price comes back up into it
    s_top, s_bot = low[bear_i - 2], high[bear_i]
    highs, closes_max = sparse_table(high, maximum=True), sparse_table(close, maximum=True)
    s_touch = first_beyond(highs, bear_i + 1, s_bot, above=True, strict=False)
    s_ce = first_beyond(
        highs, bear_i + 1, (s_top + s_bot) / 2.0 - CE_TOLERANCE * (s_top - s_bot), above=True, strict=False
    )
    s_fill = first_beyond(highs, bear_i + 1, s_top, above=True, strict=False)
    s_inv = first_beyond(closes_max, bear_i + 1, s_top, above=True, strict=True)

    bull_n = len(bull_i)
    idx = np.concatenate((bull_i, bear_i))
    order = np.argsort(idx, kind="stable")
    top = np.concatenate((b_top, s_top))[order]
    bot = np.concatenate((b_bot, s_bot))[order]
    columns = (
        np.where(order < bull_n, 1, -1).tolist(),
        idx[order].tolist(),
        top.tolist(),
        bot.tolist(),
        ((top - bot) / yard[idx[order] - 2]).tolist(),
        *(
            _found(np.concatenate(pair)[order], n)
            for pair in ((b_touch, s_touch), (b_ce, s_ce), (b_fill, s_fill), (b_inv, s_inv))
        ),
    )
    bull_d, bear_d = Direction.BULLISH, Direction.BEARISH
    return [
        FVG(bull_d if d > 0 else bear_d, t, b, i, i - 1, sz, i, tc, c, f, v)
        for d, i, t, b, sz, tc, c, f, v in zip(*columns, strict=True)
    ]


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
