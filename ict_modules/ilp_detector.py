"""Internal liquidity pools (ILP): the liquidity resting *inside* the current dealing range.

Definitions:
    The dealing range is the one of :mod:`~ict_modules.premium_discount` (last confirmed *swing* high and low,
    ``swing_length`` pivots). Internal pools are the liquidity pools of :mod:`~ict_modules.liquidity_map` built on
    the short *internal* pivots (``internal_length``): internal swing highs and equal internal highs carry
    **IBSL** (internal buy-side liquidity, resting above them), internal swing lows and equal lows carry **ISSL**
    (internal sell-side liquidity, resting below them).

    A pool is internal to a range ``R`` when its level lies strictly between ``R.low`` and ``R.high``, all its
    bars come after the older anchor of ``R`` (it formed inside the range's leg), it is confirmed before the next
    range replaces ``R``, and it is still resting (untaken) when both the pool and ``R`` are known. One object per
    (range, pool) pair: ``confirmed_at = max(pool confirmation, range confirmation)``; ``range_id`` is the
    range's ``confirmed_at``, so a pool that stays inside successive ranges appears once per range.

    Sweep status is the pool's (see :mod:`~ict_modules.liquidity_map`): ``swept_at`` = first bar whose wick
    trades through the level and closes back; ``run_at`` = first bar that closes through it.

:func:`internal_pools_at` returns the untaken internal pools of the range current at a bar.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from .core import CandleArrays
from .liquidity_map import KINDS, LiquiditySide, PoolKind, none_if_negative, pool_arrays
from .premium_discount import DealingRange, dealing_range_at, range_arrays

logger = logging.getLogger(__name__)


class ILPKind(StrEnum):
    IBSL = "ibsl"  # internal buy-side liquidity: above internal highs
    ISSL = "issl"  # internal sell-side liquidity: below internal lows

    @property
    def side(self) -> LiquiditySide:
        return LiquiditySide.BUY_SIDE if self is ILPKind.IBSL else LiquiditySide.SELL_SIDE


_KIND_OBJ = np.array([ILPKind.ISSL, ILPKind.IBSL], dtype=object)


@dataclass(frozen=True, slots=True)
class InternalLiquidityPool:
    kind: ILPKind
    equal: bool  # a cluster of equal internal highs (lows), else a single internal swing
    price: float
    index: int  # bar that set the level
    indices: tuple[int, ...]  # bars forming the pool
    range_high: float
    range_low: float
    range_id: int  # confirmed_at of the dealing range the pool is internal to
    confirmed_at: int
    swept_at: int | None = None
    run_at: int | None = None

    @property
    def taken_at(self) -> int | None:
        return self.swept_at if self.swept_at is not None else self.run_at

    @property
    def position(self) -> float:
        """Fraction of the dealing range at the pool's level (0 = range low, 1 = range high)."""
        return (self.price - self.range_low) / (self.range_high - self.range_low)

    def is_resting(self, bar: int) -> bool:
        taken = self.taken_at
        return self.confirmed_at <= bar and (taken is None or taken > bar)


def detect_internal_liquidity(
    candles: pd.DataFrame,
    *,
    internal_length: int = 3,
    swing_length: int = 10,
    equal_tolerance_atr: float = 0.1,
    atr_length: int = 14,
    ranges: list[DealingRange] | None = None,
    atr_values: np.ndarray | None = None,
    arrays: CandleArrays | None = None,
) -> list[InternalLiquidityPool]:
    """Internal pools of every dealing range, ordered by ``(confirmed_at, range_id, index)``.

    Args:
        candles: validated candle frame.
        internal_length: pivot length in bars of the internal swings that make the pools.
        swing_length: pivot length in bars of the swings that bound the dealing range.
        equal_tolerance_atr: equal internal highs (lows) are within this many ATRs.
        atr_length: Wilder ATR length in bars.
        ranges: precomputed ``detect_dealing_ranges(candles, swing_length=swing_length)`` (optional).
        atr_values: precomputed ``atr(high, low, close, length=atr_length)`` of these candles (the engine computes
            it once per frame); computed here when omitted.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.
    """
    n = len(candles)
    if ranges is None:
        r = range_arrays(candles, swing_length=swing_length, arrays=arrays)
        r_conf, r_hi, r_lo = r.confirmed_at, r.high, r.low
        r_start = np.minimum(r.high_index, r.low_index)
    else:
        r_conf = np.array([x.confirmed_at for x in ranges], dtype=np.int64)
        r_hi = np.array([x.high for x in ranges], dtype=np.float64)
        r_lo = np.array([x.low for x in ranges], dtype=np.float64)
        r_start = np.array([min(x.high_index, x.low_index) for x in ranges], dtype=np.int64)
    pools = pool_arrays(
        candles,
        swing_length=internal_length,
        equal_tolerance_atr=equal_tolerance_atr,
        atr_length=atr_length,
        previous_day=False,
        previous_week=False,
        atr_values=atr_values,
        arrays=arrays,
    )
    if len(r_conf) == 0 or len(pools.price) == 0:
        return []
    big = np.iinfo(np.int64).max
    order = np.argsort(pools.first, kind="stable")
    p_first = pools.first[order]
    p_conf = pools.confirmed_at[order]
    p_price = pools.price[order]
    taken = np.where(pools.swept_at >= 0, pools.swept_at, pools.run_at)
    p_taken = np.where(taken >= 0, taken, big)[order]

    r_next = np.append(r_conf[1:], n)  # a pool must be confirmed before the next range replaces this one
    lo = np.searchsorted(p_first, r_start, side="right")  # all bars after the older anchor
    hi = np.searchsorted(p_first, r_next, side="left")
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    if total == 0:
        return []
    r_of = np.repeat(np.arange(len(r_conf)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    q = lo[r_of] + offsets  # pool position (sorted) of each candidate pair
    known = np.maximum(p_conf[q], r_conf[r_of])
    ok = (p_conf[q] < r_next[r_of]) & (p_taken[q] > known)
    ok &= (p_price[q] > r_lo[r_of]) & (p_price[q] < r_hi[r_of])
    r_of, rows, known = r_of[ok], order[q[ok]], known[ok]
    kind = pools.kind[rows]
    is_high = np.isin(kind, [KINDS.index(PoolKind.SWING_HIGH), KINDS.index(PoolKind.EQUAL_HIGHS)])
    is_equal = np.isin(kind, [KINDS.index(PoolKind.EQUAL_HIGHS), KINDS.index(PoolKind.EQUAL_LOWS)])
    sizes = pools.size[rows]
    final = np.lexsort((sizes, ~is_high, pools.index[rows], r_conf[r_of], known))
    r_of, rows, known, is_high, is_equal = r_of[final], rows[final], known[final], is_high[final], is_equal[final]
    return list(
        map(
            InternalLiquidityPool,
            _KIND_OBJ[is_high.astype(np.int64)].tolist(),
            is_equal.tolist(),
            pools.price[rows].tolist(),
            pools.index[rows].tolist(),
            pools.member_tuples(rows),
            r_hi[r_of].tolist(),
            r_lo[r_of].tolist(),
            r_conf[r_of].tolist(),
            known.tolist(),
            none_if_negative(pools.swept_at[rows]),
            none_if_negative(pools.run_at[rows]),
        )
    )


def internal_pools_at(
    pools: list[InternalLiquidityPool], ranges: list[DealingRange], bar: int
) -> tuple[InternalLiquidityPool, ...]:
    """Untaken internal pools of the dealing range current at ``bar``, by level (lowest first)."""
    current = dealing_range_at(ranges, bar)
    if current is None:
        return ()
    mine = [p for p in pools if p.range_id == current.confirmed_at and p.is_resting(bar)]
    return tuple(sorted(mine, key=lambda p: p.price))
