"""Liquidity map: where resting stop orders sit, and when price takes them.

Definitions:
    Buy-side liquidity (BSL) rests *above* highs (buy stops of shorts, breakout buy orders); sell-side liquidity
    (SSL) rests *below* lows. Pools, one object each:

    - ``SWING_HIGH`` (BSL) / ``SWING_LOW`` (SSL): every pivot of :func:`~ict_modules.swing_points.detect_swing_points`
      with ``left = right = swing_length``; level = the pivot's high (low); ``confirmed_at = index + swing_length``.
    - ``EQUAL_HIGHS`` (BSL) / ``EQUAL_LOWS`` (SSL): when a swing high ``j`` is confirmed, every earlier swing high
      ``i`` whose level is still *resting* (no bar in ``i+1 .. j-1`` traded above it) and that lies within
      ``equal_tolerance_atr * ATR[confirmed_at(j)]`` of ``high[j]`` joins ``j`` in a cluster. A cluster of two or
      more swing highs is an equal-highs pool: level = the highest member, ``indices`` = the members' bars,
      ``confirmed_at`` = the confirmation bar of ``j``. A third equal high makes a new, larger pool (the earlier pair
      stays as its own object, since objects never change after ``confirmed_at``). Lows mirror this.
    - ``PREVIOUS_DAY_HIGH/LOW`` and ``PREVIOUS_WEEK_HIGH/LOW``: the high (low) of a UTC calendar day (ISO week,
      Monday 00:00 UTC) with candles; known at the open of the first bar of the next day (week) with candles, so
      ``confirmed_at`` is that bar, and that bar itself may already take the level.

    A pool is *taken* at the first bar ``t`` after its level formed (from ``confirmed_at`` for day/week pools) that
    trades through the level: ``high[t] > level`` for BSL, ``low[t] < level`` for SSL (a touch is not a take).
    If that bar closes back on the original side (``close[t] <= level`` for BSL, ``>=`` for SSL) it is a **sweep**
    (``swept_at = t``, stop hunt / turtle soup); if it closes through, it is a **run** (``run_at = t``). Exactly one
    of the two is set once a pool is taken; a taken pool has no later state.

Thresholds are relative (ATR multiples), so the map is price-scale invariant. ATR is Wilder's ATR
(:func:`~ict_modules.core.atr`, ``atr_length`` bars) at the confirmation bar.

:func:`liquidity_targets` gives the engine the nearest untaken pools above and below a price as known at a bar.
:func:`first_break` is the vectorised "first bar that trades through a level" search the other level-based
detectors reuse.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from .core import atr, ohlcv_arrays
from .swing_points import pivot_mask

logger = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 10**9


class LiquiditySide(StrEnum):
    BUY_SIDE = "buy_side"  # BSL: above highs
    SELL_SIDE = "sell_side"  # SSL: below lows

    @property
    def is_above(self) -> bool:
        return self is LiquiditySide.BUY_SIDE


class PoolKind(StrEnum):
    SWING_HIGH = "swing_high"
    SWING_LOW = "swing_low"
    EQUAL_HIGHS = "equal_highs"
    EQUAL_LOWS = "equal_lows"
    PREVIOUS_DAY_HIGH = "previous_day_high"
    PREVIOUS_DAY_LOW = "previous_day_low"
    PREVIOUS_WEEK_HIGH = "previous_week_high"
    PREVIOUS_WEEK_LOW = "previous_week_low"

    @property
    def side(self) -> LiquiditySide:
        above = self in (
            PoolKind.SWING_HIGH,
            PoolKind.EQUAL_HIGHS,
            PoolKind.PREVIOUS_DAY_HIGH,
            PoolKind.PREVIOUS_WEEK_HIGH,
        )
        return LiquiditySide.BUY_SIDE if above else LiquiditySide.SELL_SIDE


@dataclass(frozen=True, slots=True)
class LiquidityPool:
    side: LiquiditySide
    kind: PoolKind
    price: float  # the level: highest member high (BSL) / lowest member low (SSL)
    index: int  # bar that set the level (the extreme member)
    indices: tuple[int, ...]  # bars forming the pool (pivots of an equal cluster; the one extreme bar otherwise)
    confirmed_at: int
    swept_at: int | None = None  # wick through, close back on the original side
    run_at: int | None = None  # close through the level

    @property
    def taken_at(self) -> int | None:
        return self.swept_at if self.swept_at is not None else self.run_at

    def is_resting(self, bar: int) -> bool:
        """Known and not yet taken at the close of ``bar``."""
        taken = self.taken_at
        return self.confirmed_at <= bar and (taken is None or taken > bar)


@dataclass(frozen=True, slots=True)
class LiquidityTargets:
    """Untaken pools as known at ``bar``: ``above`` nearest first (ascending), ``below`` nearest first (descending)."""

    bar: int
    price: float
    above: tuple[LiquidityPool, ...]
    below: tuple[LiquidityPool, ...]


def first_break(values: np.ndarray, starts: np.ndarray, levels: np.ndarray, *, inclusive: bool = False) -> np.ndarray:
    """For each query ``q``: the first bar ``t >= starts[q]`` with ``values[t] > levels[q]`` (``>=`` when
    ``inclusive``), or ``-1``. Search "below" by negating both ``values`` and ``levels``.

    Binary lifting over a sparse table of range maxima: O(n log n) to build, O(log n) numpy steps per batch.
    """
    values = np.asarray(values, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.int64)
    levels = np.asarray(levels, dtype=np.float64)
    n = len(values)
    out = np.full(len(starts), -1, dtype=np.int64)
    if n == 0 or len(starts) == 0:
        return out
    table = [values]
    step = 1
    while 2 * step <= n:
        prev = table[-1]
        table.append(np.maximum(prev[:-step], prev[step:]))
        step *= 2
    pos = np.clip(starts, 0, n)
    for k in range(len(table) - 1, -1, -1):
        width = 1 << k
        block = table[k]
        ok = pos + width <= n
        idx = np.minimum(pos, len(block) - 1)
        blk = block[idx]
        below = blk < levels if inclusive else blk <= levels
        pos = np.where(ok & below, pos + width, pos)
    found = pos < n
    out[found] = pos[found]
    return out


def _take_status(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, starts: np.ndarray, levels: np.ndarray, above: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(swept_at, run_at) per level, -1 where not taken; see the module docstring."""
    taken = first_break(high, starts, levels) if above else first_break(-low, starts, -levels)
    hit = taken >= 0
    closes = close[np.where(hit, taken, 0)]
    through = (closes > levels) if above else (closes < levels)
    swept = np.where(hit & ~through, taken, -1)
    run = np.where(hit & through, taken, -1)
    return swept, run


def _equal_clusters(idx: np.ndarray, price: np.ndarray, taken: np.ndarray, tol: np.ndarray) -> list[tuple[int, ...]]:
    """Clusters of equal pivots (positions into ``idx``), highs orientation (negate prices for lows).

    Monotone stack of resting pivots: an older resting pivot is never lower than a younger one, and the
    younger one is taken no later, so pivots taken before the current one are popped from the top.
    """
    clusters: list[tuple[int, ...]] = []
    stack: list[int] = []
    idx_l, price_l, taken_l, tol_l = idx.tolist(), price.tolist(), taken.tolist(), tol.tolist()
    for j in range(len(idx_l)):
        bar, p, t = idx_l[j], price_l[j], tol_l[j]
        while stack and 0 <= taken_l[stack[-1]] < bar:
            stack.pop()
        members = []
        for s in reversed(stack):
            ps = price_l[s]
            if ps > p + t:
                break
            if ps >= p - t:
                members.append(s)
        if members:
            clusters.append((*sorted(members), j))
        while stack and price_l[stack[-1]] < p:
            stack.pop()
        stack.append(j)
    return clusters


def _swing_pools(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    atr_values: np.ndarray,
    *,
    length: int,
    tolerance_atr: float,
    above: bool,
    equal: bool = True,
) -> list[LiquidityPool]:
    extreme = high if above else low
    bars = np.flatnonzero(pivot_mask(extreme, left=length, right=length, highs=above))
    if len(bars) == 0:
        return []
    prices = extreme[bars]
    conf = bars + length
    swept, run = _take_status(high, low, close, bars + 1, prices, above)
    side = LiquiditySide.BUY_SIDE if above else LiquiditySide.SELL_SIDE
    kind = PoolKind.SWING_HIGH if above else PoolKind.SWING_LOW
    pools = [
        LiquidityPool(side, kind, p, b, (b,), c, s if s >= 0 else None, r if r >= 0 else None)
        for b, p, c, s, r in zip(
            bars.tolist(), prices.tolist(), conf.tolist(), swept.tolist(), run.tolist(), strict=True
        )
    ]
    if not equal:
        return pools
    taken = np.where(swept >= 0, swept, run)
    oriented = prices if above else -prices
    clusters = _equal_clusters(bars, oriented, taken, tolerance_atr * atr_values[conf])
    if not clusters:
        return pools
    members = [np.asarray(c) for c in clusters]
    ext_pos = np.array([m[np.argmax(oriented[m])] for m in members])
    last = np.array([m[-1] for m in members])
    levels = prices[ext_pos]
    e_swept, e_run = _take_status(high, low, close, bars[last] + 1, levels, above)
    eq_kind = PoolKind.EQUAL_HIGHS if above else PoolKind.EQUAL_LOWS
    pools += [
        LiquidityPool(
            side,
            eq_kind,
            float(levels[q]),
            int(bars[ext_pos[q]]),
            tuple(bars[m].tolist()),
            int(conf[last[q]]),
            int(e_swept[q]) if e_swept[q] >= 0 else None,
            int(e_run[q]) if e_run[q] >= 0 else None,
        )
        for q, m in enumerate(members)
    ]
    return pools


def _period_pools(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, period_id: np.ndarray, *, week: bool
) -> list[LiquidityPool]:
    """Previous-period high/low pools; ``period_id`` is non-decreasing per bar."""
    starts = np.flatnonzero(np.diff(period_id, prepend=period_id[0] - 1))
    if len(starts) < 2:
        return []
    ends = np.append(starts[1:], len(high))
    hi = np.maximum.reduceat(high, starts)
    lo = np.minimum.reduceat(low, starts)
    # Bar of each extreme: the first bar of the period equal to it.
    hi_bar = np.array([s + int(np.argmax(high[s:e])) for s, e in zip(starts, ends, strict=True)])
    lo_bar = np.array([s + int(np.argmin(low[s:e])) for s, e in zip(starts, ends, strict=True)])
    conf = starts[1:]  # first bar of the next period with candles
    out: list[LiquidityPool] = []
    for above in (True, False):
        levels = (hi if above else lo)[:-1]
        bars = (hi_bar if above else lo_bar)[:-1]
        swept, run = _take_status(high, low, close, conf, levels, above)
        if week:
            kind = PoolKind.PREVIOUS_WEEK_HIGH if above else PoolKind.PREVIOUS_WEEK_LOW
        else:
            kind = PoolKind.PREVIOUS_DAY_HIGH if above else PoolKind.PREVIOUS_DAY_LOW
        out += [
            LiquidityPool(kind.side, kind, p, b, (b,), c, s if s >= 0 else None, r if r >= 0 else None)
            for p, b, c, s, r in zip(
                levels.tolist(), bars.tolist(), conf.tolist(), swept.tolist(), run.tolist(), strict=True
            )
        ]
    return out


def detect_liquidity(
    candles: pd.DataFrame,
    *,
    swing_length: int = 5,
    equal_tolerance_atr: float = 0.1,
    atr_length: int = 14,
    previous_day: bool = True,
    previous_week: bool = True,
) -> list[LiquidityPool]:
    """All liquidity pools of ``candles``, ordered by ``(confirmed_at, index, kind)``.

    Args:
        candles: validated candle frame (UTC DatetimeIndex).
        swing_length: pivot ``left = right`` length in bars for swing pools; also their confirmation delay.
        equal_tolerance_atr: two swing highs (lows) are "equal" when within this many ATRs (at the confirmation
            bar of the later one).
        atr_length: Wilder ATR length in bars.
        previous_day: include previous UTC day high/low pools.
        previous_week: include previous ISO week (Monday 00:00 UTC) high/low pools.
    """
    _, high, low, close, _ = ohlcv_arrays(candles)
    n = len(close)
    if n == 0:
        return []
    atr_values = atr(high, low, close, length=atr_length)
    pools: list[LiquidityPool] = []
    for above in (True, False):
        pools += _swing_pools(
            high, low, close, atr_values, length=swing_length, tolerance_atr=equal_tolerance_atr, above=above
        )
    if previous_day or previous_week:
        days = candles.index.as_unit("ns").asi8 // NS_PER_DAY  # UTC day number, whatever the index unit
        if previous_day:
            pools += _period_pools(high, low, close, days, week=False)
        if previous_week:
            pools += _period_pools(high, low, close, (days + 3) // 7, week=True)  # 1970-01-05 was a Monday
    order = list(PoolKind)
    pools.sort(key=lambda p: (p.confirmed_at, p.index, order.index(p.kind), len(p.indices)))
    return pools


def liquidity_targets(
    pools: list[LiquidityPool],
    price: float,
    bar: int,
    *,
    limit: int | None = 3,
    sides: tuple[LiquiditySide, ...] = (LiquiditySide.BUY_SIDE, LiquiditySide.SELL_SIDE),
) -> LiquidityTargets:
    """The nearest pools resting at ``bar`` (known and untaken at its close) above and below ``price``.

    ``above`` holds levels ``> price`` nearest first, ``below`` levels ``< price`` nearest first, each at most
    ``limit`` long (``None`` = all). Pools at the same level (a swing high and the equal-highs cluster it belongs
    to, or a PDH at a swing high) are each listed; ``sides`` restricts to BSL or SSL.
    """
    resting = [p for p in pools if p.side in sides and p.is_resting(bar)]
    above = sorted((p for p in resting if p.price > price), key=lambda p: (p.price, -len(p.indices)))
    below = sorted((p for p in resting if p.price < price), key=lambda p: (-p.price, -len(p.indices)))
    if limit is not None:
        above, below = above[:limit], below[:limit]
    return LiquidityTargets(bar, float(price), tuple(above), tuple(below))
