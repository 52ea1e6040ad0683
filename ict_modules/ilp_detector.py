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

from .liquidity_map import LiquiditySide, PoolKind, detect_liquidity
from .premium_discount import DealingRange, dealing_range_at, detect_dealing_ranges

logger = logging.getLogger(__name__)


class ILPKind(StrEnum):
    IBSL = "ibsl"  # internal buy-side liquidity: above internal highs
    ISSL = "issl"  # internal sell-side liquidity: below internal lows

    @property
    def side(self) -> LiquiditySide:
        return LiquiditySide.BUY_SIDE if self is ILPKind.IBSL else LiquiditySide.SELL_SIDE


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
) -> list[InternalLiquidityPool]:
    """Internal pools of every dealing range, ordered by ``(confirmed_at, range_id, index)``.

    Args:
        candles: validated candle frame.
        internal_length: pivot length in bars of the internal swings that make the pools.
        swing_length: pivot length in bars of the swings that bound the dealing range.
        equal_tolerance_atr: equal internal highs (lows) are within this many ATRs.
        atr_length: Wilder ATR length in bars.
        ranges: precomputed ``detect_dealing_ranges(candles, swing_length=swing_length)`` (optional).
    """
    n = len(candles)
    if ranges is None:
        ranges = detect_dealing_ranges(candles, swing_length=swing_length)
    pools = detect_liquidity(
        candles,
        swing_length=internal_length,
        equal_tolerance_atr=equal_tolerance_atr,
        atr_length=atr_length,
        previous_day=False,
        previous_week=False,
    )
    if not ranges or not pools:
        return []
    big = np.iinfo(np.int64).max
    p_first = np.array([p.indices[0] for p in pools])
    order = np.argsort(p_first, kind="stable")
    p_first = p_first[order]
    p_conf = np.array([p.confirmed_at for p in pools])[order]
    p_price = np.array([p.price for p in pools])[order]
    p_taken = np.array([big if p.taken_at is None else p.taken_at for p in pools])[order]

    r_conf = np.array([r.confirmed_at for r in ranges])
    r_next = np.append(r_conf[1:], n)  # a pool must be confirmed before the next range replaces this one
    r_start = np.array([min(r.high_index, r.low_index) for r in ranges])
    r_hi = np.array([r.high for r in ranges])
    r_lo = np.array([r.low for r in ranges])
    lo = np.searchsorted(p_first, r_start, side="right")  # all bars after the older anchor
    hi = np.searchsorted(p_first, r_next, side="left")
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    if total == 0:
        return []
    r_of = np.repeat(np.arange(len(ranges)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    q = lo[r_of] + offsets  # pool position (sorted) of each candidate pair
    known = np.maximum(p_conf[q], r_conf[r_of])
    ok = (p_conf[q] < r_next[r_of]) & (p_taken[q] > known)
    ok &= (p_price[q] > r_lo[r_of]) & (p_price[q] < r_hi[r_of])
    r_of, q, known = r_of[ok], q[ok], known[ok]
    out = []
    for r, pos, k in zip(r_of.tolist(), order[q].tolist(), known.tolist(), strict=True):
        p = pools[pos]
        rng = ranges[r]
        out.append(
            InternalLiquidityPool(
                ILPKind.IBSL if p.side is LiquiditySide.BUY_SIDE else ILPKind.ISSL,
                p.kind in (PoolKind.EQUAL_HIGHS, PoolKind.EQUAL_LOWS),
                p.price,
                p.index,
                p.indices,
                rng.high,
                rng.low,
                rng.confirmed_at,
                k,
                p.swept_at,
                p.run_at,
            )
        )
    out.sort(key=lambda x: (x.confirmed_at, x.range_id, x.index, x.kind != ILPKind.IBSL, len(x.indices)))
    return out


def internal_pools_at(
    pools: list[InternalLiquidityPool], ranges: list[DealingRange], bar: int
) -> tuple[InternalLiquidityPool, ...]:
    """Untaken internal pools of the dealing range current at ``bar``, by level (lowest first)."""
    current = dealing_range_at(ranges, bar)
    if current is None:
        return ()
    mine = [p for p in pools if p.range_id == current.confirmed_at and p.is_resting(bar)]
    return tuple(sorted(mine, key=lambda p: p.price))
