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
      ``confirmed_at`` is that bar, and that bar itself may already take the level. The first period of a frame
      may be partial (it starts with the frame).

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
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import as_strided

from .core import CandleArrays, atr_or, ohlcv_arrays
from .swing_points import pivot_mask

logger = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 10**9
MAX_PAIRS = 2_000_000  # candidate pairs of the vectorised equal-level search before it falls back to a loop


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


class LevelSearch:
    """ "First bar at or after ``start`` where ``values`` goes above ``level``" for many queries at once.

    Built once per series and reused by every batch of queries. The series is cut into blocks of ``BLOCK`` bars:
    a query first scans the ``BLOCK`` bars from its start (one vectorised row comparison over a sliding window),
    then finds the first later block whose maximum exceeds the level by binary lifting over a sparse table of block
    maxima, then the bar inside that block (another row comparison). Search "below" on the negated series with
    negated levels.
    """

    BLOCK = 32
    __slots__ = ("_n", "_rows", "_table", "_windows")

    def __init__(self, values: np.ndarray, *, buffer: np.ndarray | None = None) -> None:
        """``buffer``: a :meth:`buffer` of ``len(values)`` whose start holds ``values`` (``values`` is then
        usually a view of it), used as the padded series without a copy."""
        values = np.asarray(values, dtype=np.float64)
        self._n = n = len(values)
        blocks = -(-n // self.BLOCK)
        if buffer is None:
            padded = self.buffer(n)
            padded[:n] = values
        else:
            padded = buffer
        self._rows = padded[: blocks * self.BLOCK].reshape(blocks, self.BLOCK)
        # row t = values[t : t + BLOCK], a read-only view (sliding_window_view without its checks)
        self._windows = as_strided(padded, (n, self.BLOCK), (padded.strides[0],) * 2, writeable=False)
        table = [np.maximum.reduceat(values, np.arange(0, n, self.BLOCK)) if n else np.zeros(0)]
        step = 1
        while 2 * step <= blocks:
            prev = table[-1]
            table.append(np.maximum(prev[:-step], prev[step:]))
            step *= 2
        self._table = table

    @classmethod
    def buffer(cls, n: int) -> np.ndarray:
        """``-inf`` storage for a series of ``n`` values plus the padding (to whole blocks and one spare block)."""
        return np.full((-(-n // cls.BLOCK) + 1) * cls.BLOCK, -np.inf)

    def first_above(self, starts: np.ndarray, levels: np.ndarray, *, inclusive: bool = False) -> np.ndarray:
        """Per query: the first ``t >= starts[q]`` with ``values[t] > levels[q]`` (``>=`` if ``inclusive``), or -1."""
        size = self.BLOCK
        starts = np.maximum(np.asarray(starts, dtype=np.int64), 0)
        levels = np.asarray(levels, dtype=np.float64)
        out = np.full(len(starts), -1, dtype=np.int64)
        live = np.flatnonzero(starts < self._n)
        if len(live) == 0:
            return out
        start, level = starts[live], levels[live]

        def first_hit(rows: np.ndarray, lv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Per row: position of the first value beyond ``lv`` (0 if none) and whether there is one."""
            hit = rows >= lv[:, None] if inclusive else rows > lv[:, None]
            at = hit.argmax(axis=1)
            return at, hit[np.arange(len(at)), at]

        at, found = first_hit(self._windows[start], level)
        out[live[found]] = start[found] + at[found]
        # not in the first BLOCK bars: search from the block after the start's (its bars before start + BLOCK
        # were just scanned and none was beyond)
        rest, level, pos = live[~found], level[~found], start[~found] // size + 1
        blocks = len(self._table[0])
        for k in range(len(self._table) - 1, -1, -1):
            width = 1 << k
            table = self._table[k]
            peak = table[np.minimum(pos, len(table) - 1)]
            move = (peak < level) if inclusive else (peak <= level)
            move &= pos + width <= blocks
            pos += width * move
        ok = pos < blocks
        at, _ = first_hit(self._rows[pos[ok]], level[ok])
        out[rest[ok]] = pos[ok] * size + at
        return out


def first_break(values: np.ndarray, starts: np.ndarray, levels: np.ndarray, *, inclusive: bool = False) -> np.ndarray:
    """For each query ``q``: the first bar ``t >= starts[q]`` with ``values[t] > levels[q]`` (``>=`` when
    ``inclusive``), or ``-1``. Search "below" by negating both ``values`` and ``levels``. One-off form of
    :class:`LevelSearch`."""
    return LevelSearch(values).first_above(starts, levels, inclusive=inclusive)


def none_if_negative(values: np.ndarray) -> list[int | None]:
    """Python ints, ``None`` where negative (the "no such bar" marker of the array stage)."""
    out = np.asarray(values, dtype=np.int64).astype(object)
    out[np.asarray(values) < 0] = None
    return out.tolist()


class _Bars:
    """The arrays a pool search needs, with one level-search table over both sides built once.

    The table covers ``high``, then (from the next block boundary) one block of ``+inf``, then ``-low`` from
    ``offset``: a buy-side query that finds nothing above its level in ``high`` stops at the separator (mapped to
    "not taken"), so the highs and the (negated) lows of a batch are searched in one call.
    """

    __slots__ = ("close", "high", "low", "offset", "search")

    def __init__(self, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> None:
        self.high, self.low, self.close = high, low, close
        n, size = len(high), LevelSearch.BLOCK
        self.offset = -(-n // size) * size + size
        total = self.offset + n
        both = LevelSearch.buffer(total)
        both[:n] = high
        both[self.offset - size : self.offset] = np.inf
        np.negative(low, out=both[self.offset : total])
        self.search = LevelSearch(both[:total], buffer=both)

    def take_status(
        self, starts: np.ndarray, levels: np.ndarray, above: bool | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(swept_at, run_at) per level, -1 where not taken; see the module docstring. ``above``: True for a
        buy-side level, per level or for all."""
        n = len(self.high)
        above = np.broadcast_to(np.asarray(above, dtype=bool), levels.shape)
        starts = np.maximum(np.asarray(starts, dtype=np.int64), 0)
        taken = self.search.first_above(np.where(above, starts, starts + self.offset), np.where(above, levels, -levels))
        taken = np.where(above, np.where(taken < n, taken, -1), np.where(taken >= 0, taken - self.offset, -1))
        taken[starts >= n] = -1
        hit = taken >= 0
        closes = self.close[np.where(hit, taken, 0)]
        through = np.where(above, closes > levels, closes < levels)
        return np.where(hit & ~through, taken, -1), np.where(hit & through, taken, -1)


class _Clusters(NamedTuple):
    """Equal-pivot clusters, flat: ``members[starts[c] : starts[c + 1]]`` are the positions (into the pivot
    arrays) of cluster ``c``, ascending, so its new pivot is last; clusters in order of that new pivot."""

    members: np.ndarray
    starts: np.ndarray  # one offset per cluster, then len(members)

    @classmethod
    def of(cls, clusters: list[tuple[int, ...]]) -> _Clusters:
        sizes = np.fromiter(map(len, clusters), dtype=np.int64, count=len(clusters))
        members = np.fromiter((q for c in clusters for q in c), dtype=np.int64, count=int(sizes.sum()))
        return cls(members, np.concatenate(([0], np.cumsum(sizes))))

    def __len__(self) -> int:
        return len(self.starts) - 1


def _equal_clusters(
    idx: np.ndarray, price: np.ndarray, taken: np.ndarray, tol: np.ndarray, side: np.ndarray | None = None
) -> _Clusters:
    """Clusters of equal pivots (see :class:`_Clusters`), highs orientation (negate prices for lows).

    Pivot ``i`` joins pivot ``j > i`` when it is still resting at ``j`` (``taken[i]`` is -1 or ``>= idx[j]``) and
    ``|price[i] - price[j]| <= tol[j]``. Vectorised: candidate pairs come from a price-sorted window search, so
    the work grows with the number of price-close pairs, not with the square of the pivot count.
    ``side`` (optional, per pivot): only pivots of the same side pair up; the pivots of each side must be
    contiguous and in bar order (e.g. all highs, then all lows).
    """
    m = len(idx)
    if m < 2:
        return _Clusters.of([])
    if side is None:
        side = np.zeros(m, dtype=bool)
    resting_until = np.where(taken < 0, np.iinfo(np.int64).max, taken)
    order = np.argsort(price)  # the order among equal prices does not matter: whole windows are enumerated
    sorted_price = price[order]
    # searched with the keys in price order (nearly sorted, so the binary searches' branches are predictable)
    lo, hi = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.int64)
    sorted_tol = tol[order]
    lo[order] = np.searchsorted(sorted_price, sorted_price - sorted_tol, side="left")
    hi[order] = np.searchsorted(sorted_price, sorted_price + sorted_tol, side="right")
    counts = hi - lo
    total = int(counts.sum())
    if total > MAX_PAIRS:  # a huge tolerance: the loop keeps memory bounded
        clusters = []
        for group in np.split(np.arange(m), np.flatnonzero(side[1:] != side[:-1]) + 1):
            at = int(group[0])
            part = _equal_clusters_stack(idx[group], price[group], taken[group], tol[group])
            clusters += [tuple(q + at for q in c) for c in part]
        return _Clusters.of(clusters)
    j_of = np.repeat(np.arange(m), counts)
    i_of = order[lo[j_of] + np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)]
    ok = (i_of < j_of) & (resting_until[i_of] >= idx[j_of]) & (side[i_of] == side[j_of])
    i_of, j_of = i_of[ok], j_of[ok]
    if len(i_of) == 0:
        return _Clusters.of([])
    js = j_of[np.concatenate(([True], j_of[1:] != j_of[:-1]))]  # j_of is ascending
    key, member = np.concatenate((j_of, js)), np.concatenate((i_of, js))  # each new pivot closes its cluster
    srt = np.lexsort((member, key))
    key = key[srt]
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    return _Clusters(member[srt], np.append(starts, len(key)))


def _equal_clusters_stack(
    idx: np.ndarray, price: np.ndarray, taken: np.ndarray, tol: np.ndarray
) -> list[tuple[int, ...]]:
    """:func:`_equal_clusters` by a loop over a monotone stack of resting pivots (bounded memory).

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


KINDS = tuple(PoolKind)
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}
_KIND_OBJ = np.array(KINDS, dtype=object)
_SIDE_OBJ = np.array([k.side for k in KINDS], dtype=object)


class PoolArrays(NamedTuple):
    """The pools as parallel arrays (the array stage of :func:`detect_liquidity`), in the same order.

    Members are stored flat: pool ``q`` has the ``size[q]`` member bars ``member_bars[member_starts[q] :
    member_starts[q] + size[q]]`` (ascending); :meth:`member_tuples` gives them as tuples.
    """

    kind: np.ndarray  # int codes into KINDS
    price: np.ndarray
    index: np.ndarray
    first: np.ndarray  # first member bar
    confirmed_at: np.ndarray
    swept_at: np.ndarray  # -1 = not swept
    run_at: np.ndarray  # -1 = not run
    size: np.ndarray  # number of members
    member_starts: np.ndarray  # offset of each pool's members in member_bars
    member_bars: np.ndarray  # flat member bars (not one row per pool: take() leaves it as is)

    @property
    def above(self) -> np.ndarray:
        """True for buy-side pools."""
        return np.array([k.side is LiquiditySide.BUY_SIDE for k in KINDS])[self.kind]

    def take(self, rows: np.ndarray) -> PoolArrays:
        """The pools ``rows`` (positions), in that order."""
        return PoolArrays(*(a[rows] for a in self[:-1]), self.member_bars)

    def member_tuples(self, rows: np.ndarray | None = None) -> list[tuple[int, ...]]:
        """The member bars of each pool (of ``rows``, default all) as tuples."""
        if rows is None:
            rows = np.arange(len(self.price))
        rows = np.asarray(rows, dtype=np.int64)
        out = list(zip(self.first[rows].tolist()))
        multi = np.flatnonzero(self.size[rows] > 1)
        if len(multi):
            pools, where = np.unique(rows[multi], return_inverse=True)  # one tuple per pool, shared by its rows
            flat = self.member_bars.tolist()
            starts = self.member_starts[pools]
            ends = starts + self.size[pools]
            tuples = [tuple(flat[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
            for k, u in zip(multi.tolist(), where.tolist(), strict=True):
                out[k] = tuples[u]
        return out

    @property
    def members(self) -> list[tuple[int, ...]]:
        """:meth:`member_tuples` of all pools (built on each access)."""
        return self.member_tuples()


def _part(kind: PoolKind | np.ndarray, price, index, conf, swept, run, first, members=None) -> PoolArrays:
    """One batch of pools; ``kind`` is one kind for all or an array of kind codes. ``members``: ``(bars, starts)``
    flat (see :class:`PoolArrays`) for multi-member pools; None when each pool's only member is ``first``."""
    first = np.asarray(first, dtype=np.int64)
    codes = np.full(len(price), _KIND_CODE[kind], dtype=np.int64) if isinstance(kind, PoolKind) else kind
    if members is None:
        size, starts, bars = np.ones(len(first), dtype=np.int64), np.arange(len(first)), first
    else:
        bars, all_starts = members
        size, starts = np.diff(all_starts), all_starts[:-1]
    return PoolArrays(
        codes,
        np.asarray(price, dtype=np.float64),
        np.asarray(index, dtype=np.int64),
        first,
        np.asarray(conf, dtype=np.int64),
        np.asarray(swept, dtype=np.int64),
        np.asarray(run, dtype=np.int64),
        size,
        starts,
        bars,
    )


def _swing_pools(bars_data: _Bars, atr_values: np.ndarray, *, length: int, tolerance_atr: float) -> list[PoolArrays]:
    """Swing and equal pools of both sides. The highs and the lows are searched together (highs first), so
    every array step runs once for both sides."""
    high, low = bars_data.high, bars_data.low
    hi = np.flatnonzero(pivot_mask(high, left=length, right=length, highs=True))
    lo = np.flatnonzero(pivot_mask(low, left=length, right=length, highs=False))
    bars = np.concatenate((hi, lo))
    if len(bars) == 0:
        return []
    above = np.arange(len(bars)) < len(hi)
    prices = np.concatenate((high[hi], low[lo]))
    conf = bars + length
    # searched from conf + 1: the pivot's own right-hand bars (up to conf) never trade through it
    swept, run = bars_data.take_status(conf + 1, prices, above)
    codes = np.where(above, _KIND_CODE[PoolKind.SWING_HIGH], _KIND_CODE[PoolKind.SWING_LOW])
    parts = [_part(codes, prices, bars, conf, swept, run, bars)]
    taken = np.where(swept >= 0, swept, run)
    oriented = np.where(above, prices, -prices)
    clusters = _equal_clusters(bars, oriented, taken, tolerance_atr * atr_values[conf], side=above)
    if len(clusters):
        pos, starts = clusters
        first, ends = starts[:-1], starts[1:]
        last = pos[ends - 1]
        sizes = np.diff(starts)
        # the extreme member of each cluster, the first one on ties
        values = oriented[pos]
        peak = np.maximum.reduceat(values, first)
        at_peak = values == np.repeat(peak, sizes)
        ext_pos = pos[np.minimum.reduceat(np.where(at_peak, np.arange(len(pos)), len(pos)), first)]
        levels = prices[ext_pos]
        side = above[last]
        # The level is the extreme member's, and that member was still resting at the new pivot j (it traded
        # through nothing before bar j, and bars j .. conf[j] do not exceed j's price, which does not exceed the
        # level): the level is first traded through at that member's own take bar, with the same close. So the
        # cluster's sweep / run is the extreme member's (what a search from conf[j] + 1 would find).
        e_swept, e_run = swept[ext_pos], run[ext_pos]
        member_bars = bars[pos]
        eq_codes = np.where(side, _KIND_CODE[PoolKind.EQUAL_HIGHS], _KIND_CODE[PoolKind.EQUAL_LOWS])
        parts.append(
            _part(
                eq_codes, levels, bars[ext_pos], conf[last], e_swept, e_run, member_bars[first], (member_bars, starts)
            )
        )
    return parts


def _period_pools(bars_data: _Bars, period_id: np.ndarray, *, week: bool) -> list[PoolArrays]:
    """Previous-period high/low pools; ``period_id`` is non-decreasing per bar."""
    high, low = bars_data.high, bars_data.low
    starts = np.flatnonzero(np.diff(period_id, prepend=period_id[0] - 1))
    if len(starts) < 2:
        return []
    conf = starts[1:]  # first bar of the next period with candles
    parts = []
    for above in (True, False):
        extreme = high if above else -low
        per_max = np.maximum.reduceat(extreme, starts)[:-1]
        # Bar of each extreme: the first bar of the period that reaches it.
        seg = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(high))))
        hits = np.flatnonzero(extreme[: conf[-1]] == per_max[seg[: conf[-1]]])
        first_hit = hits[np.unique(seg[hits], return_index=True)[1]]
        levels = per_max if above else -per_max
        swept, run = bars_data.take_status(conf, levels, above)
        if week:
            kind = PoolKind.PREVIOUS_WEEK_HIGH if above else PoolKind.PREVIOUS_WEEK_LOW
        else:
            kind = PoolKind.PREVIOUS_DAY_HIGH if above else PoolKind.PREVIOUS_DAY_LOW
        parts.append(_part(kind, levels, first_hit, conf, swept, run, first_hit))
    return parts


def pool_arrays(
    candles: pd.DataFrame,
    *,
    swing_length: int = 5,
    equal_tolerance_atr: float = 0.1,
    atr_length: int = 14,
    previous_day: bool = True,
    previous_week: bool = True,
    atr_values: np.ndarray | None = None,
    arrays: CandleArrays | None = None,
) -> PoolArrays:
    """The array stage of :func:`detect_liquidity` (same arguments, same order of pools)."""
    _, high, low, close, _ = ohlcv_arrays(candles, arrays)
    parts: list[PoolArrays] = []
    if len(close):
        bars_data = _Bars(high, low, close)
        atr_values = atr_or(atr_values, high, low, close, length=atr_length)
        parts += _swing_pools(bars_data, atr_values, length=swing_length, tolerance_atr=equal_tolerance_atr)
        if previous_day or previous_week:
            days = candles.index.as_unit("ns").asi8 // NS_PER_DAY  # UTC day number, whatever the index unit
            if previous_day:
                parts += _period_pools(bars_data, days, week=False)
            if previous_week:
                parts += _period_pools(bars_data, (days + 3) // 7, week=True)  # 1970-01-05 was a Monday
    if not parts:
        return _part(PoolKind.SWING_HIGH, [], [], [], [], [], [])
    # one flat member array: shift each batch's member offsets past the batches before it
    shift = np.cumsum([0] + [len(p.member_bars) for p in parts[:-1]])
    joined = PoolArrays(
        *(np.concatenate([p[f] for p in parts]) for f in range(len(PoolArrays._fields) - 2)),
        np.concatenate([p.member_starts + at for p, at in zip(parts, shift.tolist(), strict=True)]),
        np.concatenate([p.member_bars for p in parts]),
    )
    order = np.lexsort((joined.size, joined.kind, joined.index, joined.confirmed_at))
    return joined.take(order)


def detect_liquidity(
    candles: pd.DataFrame,
    *,
    swing_length: int = 5,
    equal_tolerance_atr: float = 0.1,
    atr_length: int = 14,
    previous_day: bool = True,
    previous_week: bool = True,
    atr_values: np.ndarray | None = None,
    arrays: CandleArrays | None = None,
) -> list[LiquidityPool]:
    """All liquidity pools of ``candles``, ordered by ``(confirmed_at, index, kind, number of members)``.

    Args:
        candles: validated candle frame (UTC DatetimeIndex).
        swing_length: pivot ``left = right`` length in bars for swing pools; also their confirmation delay.
        equal_tolerance_atr: two swing highs (lows) are "equal" when within this many ATRs (at the confirmation
            bar of the later one).
        atr_length: Wilder ATR length in bars.
        previous_day: include previous UTC day high/low pools.
        previous_week: include previous ISO week (Monday 00:00 UTC) high/low pools.
        atr_values: precomputed ``atr(high, low, close, length=atr_length)`` of these candles (the engine computes
            it once per frame); computed here when omitted.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.
    """
    a = pool_arrays(
        candles,
        swing_length=swing_length,
        equal_tolerance_atr=equal_tolerance_atr,
        atr_length=atr_length,
        previous_day=previous_day,
        previous_week=previous_week,
        atr_values=atr_values,
        arrays=arrays,
    )
    return list(
        map(
            LiquidityPool,
            _SIDE_OBJ[a.kind].tolist(),
            _KIND_OBJ[a.kind].tolist(),
            a.price.tolist(),
            a.index.tolist(),
            a.member_tuples(),
            a.confirmed_at.tolist(),
            none_if_negative(a.swept_at),
            none_if_negative(a.run_at),
        )
    )


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
