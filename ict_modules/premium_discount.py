"""Premium and discount: where price sits inside the current dealing range.

Definitions:
    The **dealing range** at bar ``k`` spans the last confirmed swing high and the last confirmed swing low
    (:func:`~ict_modules.swing_points.detect_swing_points`, ``left = right = swing_length``; a pivot is confirmed
    ``swing_length`` bars after it). A new range starts whenever a new swing high or low is confirmed
    (``confirmed_at`` = that confirmation bar; a high and a low confirmed on the same bar make one range). Pairs
    whose last high is not above the last low are no range.

    **Equilibrium** is the 50% level ``(high + low) / 2``. The **position** of a price is its fraction of the
    range, ``(price - low) / (high - low)``: 0 at the range low, 1 at the range high, outside [0, 1] beyond it.
    **Premium** is above equilibrium (position > 0.5 + band: sell in premium), **discount** below it
    (position < 0.5 - band: buy in discount), **equilibrium** within ``band`` of 0.5 (``equilibrium_band`` is a
    fraction of the range, 0 by default).

    ``broken_at`` is the first bar after both anchors that *closes* outside the range (above the high or below
    the low); it can precede ``confirmed_at`` when price already left the range before the newer anchor was
    confirmed (the range is then known as broken from the start).

Everything is a ratio of the range, so it is price-scale invariant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import pandas as pd

from .core import CandleArrays, ohlcv_arrays
from .liquidity_map import LevelSearch, none_if_negative
from .swing_points import pivot_mask

logger = logging.getLogger(__name__)


class PriceZone(StrEnum):
    PREMIUM = "premium"  # above equilibrium: sell side of the range
    EQUILIBRIUM = "equilibrium"
    DISCOUNT = "discount"  # below equilibrium: buy side of the range


@dataclass(frozen=True, slots=True)
class DealingRange:
    high: float
    low: float
    high_index: int  # bar of the swing high
    low_index: int  # bar of the swing low
    confirmed_at: int
    broken_at: int | None = None  # first close outside the range

    @property
    def equilibrium(self) -> float:
        return (self.high + self.low) / 2

    @property
    def size(self) -> float:
        return self.high - self.low

    def position(self, price: float) -> float:
        """Fraction of the range at ``price``: 0 = range low, 0.5 = equilibrium, 1 = range high."""
        return (price - self.low) / (self.high - self.low)

    def classify(self, price: float, *, equilibrium_band: float = 0.0) -> PriceZone:
        return classify_position(self.position(price), equilibrium_band=equilibrium_band)

    def level(self, fraction: float) -> float:
        """Price at ``fraction`` of the range (0.5 = equilibrium)."""
        return self.low + fraction * (self.high - self.low)


def classify_position(position: float, *, equilibrium_band: float = 0.0) -> PriceZone:
    """PREMIUM above ``0.5 + band``, DISCOUNT below ``0.5 - band``, else EQUILIBRIUM."""
    if position > 0.5 + equilibrium_band:
        return PriceZone.PREMIUM
    if position < 0.5 - equilibrium_band:
        return PriceZone.DISCOUNT
    return PriceZone.EQUILIBRIUM


class RangeArrays(NamedTuple):
    """Dealing ranges as parallel arrays (the array stage of :func:`detect_dealing_ranges`)."""

    high: np.ndarray
    low: np.ndarray
    high_index: np.ndarray
    low_index: np.ndarray
    confirmed_at: np.ndarray
    broken_at: np.ndarray  # -1 = not broken


def range_arrays(candles: pd.DataFrame, *, swing_length: int = 10, arrays: CandleArrays | None = None) -> RangeArrays:
    """The array stage of :func:`detect_dealing_ranges` (same arguments, same order)."""
    _, high, low, close, _ = ohlcv_arrays(candles, arrays)
    hb = np.flatnonzero(pivot_mask(high, left=swing_length, right=swing_length, highs=True))
    lb = np.flatnonzero(pivot_mask(low, left=swing_length, right=swing_length, highs=False))
    conf = np.union1d(hb + swing_length, lb + swing_length)  # one range per confirmation bar
    h_pos = np.searchsorted(hb + swing_length, conf, side="right") - 1  # last high confirmed by then
    l_pos = np.searchsorted(lb + swing_length, conf, side="right") - 1
    ok = (h_pos >= 0) & (l_pos >= 0)
    conf, hi_i, lo_i = conf[ok], hb[h_pos[ok]], lb[l_pos[ok]]
    hi, lo = high[hi_i], low[lo_i]
    ok = hi > lo
    conf, hi_i, lo_i, hi, lo = conf[ok], hi_i[ok], lo_i[ok], hi[ok], lo[ok]
    start = np.maximum(hi_i, lo_i) + 1
    above = LevelSearch(close).first_above(start, hi)
    below = LevelSearch(-close).first_above(start, -lo)
    big = np.iinfo(np.int64).max
    broken = np.minimum(np.where(above < 0, big, above), np.where(below < 0, big, below))
    return RangeArrays(hi, lo, hi_i, lo_i, conf, np.where(broken == big, -1, broken))


def detect_dealing_ranges(
    candles: pd.DataFrame, *, swing_length: int = 10, arrays: CandleArrays | None = None
) -> list[DealingRange]:
    """Every dealing range of ``candles`` in confirmation order (see module docstring).

    Args:
        candles: validated candle frame.
        swing_length: pivot ``left = right`` length in bars of the swings that bound the range; also the
            confirmation delay in bars.
    """
    a = range_arrays(candles, swing_length=swing_length, arrays=arrays)
    return list(
        map(
            DealingRange,
            a.high.tolist(),
            a.low.tolist(),
            a.high_index.tolist(),
            a.low_index.tolist(),
            a.confirmed_at.tolist(),
            none_if_negative(a.broken_at),
        )
    )


def dealing_range_at(ranges: list[DealingRange], bar: int) -> DealingRange | None:
    """The current dealing range at the close of ``bar`` (the last one confirmed), or ``None``."""
    current = None
    for r in ranges:
        if r.confirmed_at > bar:
            break
        current = r
    return current


def range_position(candles: pd.DataFrame, ranges: list[DealingRange], *, price: str = "close") -> np.ndarray:
    """Per bar: position of ``price`` (a candle column) in the dealing range current at that bar (NaN before the
    first range). Premium where > 0.5, discount where < 0.5. Causal: bar ``t`` uses ranges known at ``t``."""
    values = candles[price].to_numpy(dtype=np.float64)
    out = np.full(len(values), np.nan)
    if not ranges or len(values) == 0:
        return out
    conf = np.array([r.confirmed_at for r in ranges])
    last = np.searchsorted(conf, np.arange(len(values)), side="right") - 1
    has = last >= 0
    pick = np.where(has, last, 0)
    hi = np.array([r.high for r in ranges])[pick]
    lo = np.array([r.low for r in ranges])[pick]
    out[has] = ((values - lo) / (hi - lo))[has]
    return out
