"""Smart-money zones (SMZ): order blocks, breakers, FVGs and whale blocks merged into ranked supply/demand zones.

Definition:
    Sources (each with a direction, a price zone and a confirmation bar): order blocks
    (:mod:`.order_block_detector`), breaker and mitigation blocks (:mod:`.breaker_block_detector`), fair value gaps
    of at least ``min_fvg_atr`` ATR (:mod:`.fvg_detector`; default 1.0: significant gaps only) and whale blocks
    (:mod:`.ict_whale_detector`). Bullish sources are demand, bearish ones supply.
    Sources are taken in order of confirmation. A new source that overlaps one or more *live* zones of its
    direction among the ``max_candidates`` most recent ones (sharing at least ``min_overlap`` of the smaller
    zone's height, and with the union no taller than ``max_height_atr`` ATRs) merges with them into a new zone:
    bounds = the union, sources = the union; the merged zones end (``merged_at`` = that bar; a zone confirmed on
    the same bar is absorbed silently). Otherwise it opens a new zone. A zone is live until a CLOSE through its
    far edge
    (demand: ``close < bottom``; supply: ``close > top``; ``invalidated_at``) or its merge.
    - strength (0-100, fixed at confirmation): the sum over the distinct source kinds of ``SOURCE_WEIGHTS``
      (order block 30, breaker 25, whale 25, FVG 20) plus 5 per further member, capped at 100.
    - touches: ``first_touch_at``, ``second_touch_at``, ``third_touch_at`` = bars after the confirmation at which
      price re-enters the zone (demand: ``low <= top``; supply: ``high >= bottom``), each after price has been
      fully outside it (demand: ``low > top``) since confirmation or the previous touch; only touches up to the
      zone's end of life (merge or invalidation) count.
    - freshness at a bar: untouched zones are fresh; :func:`rank_zones` discounts strength by 25% per touch.
The overlap and height ratios are compared with a relative tolerance (``RATIO_TOLERANCE``), so an exact tie on
tick-quantized prices is decided the same way at every price scale.
All states are searched causally from ``confirmed_at + 1``; running on ``candles[:k]`` gives the same zones as
known at ``k - 1``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from .breaker_block_detector import BreakerBlock, detect_breaker_blocks
from .core import Direction, atr
from .fvg_detector import FVG, FVGArrays, fvg_arrays
from .ict_whale_detector import WhaleBlock, detect_whale_blocks
from .market_structure import candle_tables, first_beyond, sparse_table
from .order_block_detector import OrderBlock, detect_order_blocks

logger = logging.getLogger(__name__)


class ZoneSource(StrEnum):
    ORDER_BLOCK = "order_block"
    BREAKER = "breaker"
    FVG = "fvg"
    WHALE = "whale"


SOURCE_WEIGHTS = {ZoneSource.ORDER_BLOCK: 30.0, ZoneSource.BREAKER: 25.0, ZoneSource.WHALE: 25.0, ZoneSource.FVG: 20.0}
EXTRA_MEMBER_POINTS = 5.0
_SOURCES = tuple(ZoneSource)
RATIO_TOLERANCE = 1e-9  # relative: far above float noise on price differences, far below any real difference


@dataclass(frozen=True, slots=True)
class SupplyDemandZone:
    direction: Direction  # BULLISH = demand (below price, buyers), BEARISH = supply
    top: float
    bottom: float
    sources: tuple[ZoneSource, ...]  # distinct source kinds merged in, in ZoneSource order
    members: int  # number of source zones merged in
    strength: float  # 0-100, see module docstring
    confirmed_at: int
    first_touch_at: int | None
    second_touch_at: int | None
    third_touch_at: int | None
    merged_at: int | None  # superseded by a larger zone that absorbed it
    invalidated_at: int | None  # close through the far edge

    @property
    def mean_threshold(self) -> float:
        return (self.top + self.bottom) / 2.0

    def touches(self, bar: int) -> int:
        """Touches known at ``bar`` (0-3)."""
        return sum(t is not None and t <= bar for t in (self.first_touch_at, self.second_touch_at, self.third_touch_at))

    def live(self, bar: int) -> bool:
        """Known at ``bar`` and neither merged nor invalidated by then."""
        return (
            self.confirmed_at <= bar
            and (self.merged_at is None or self.merged_at > bar)
            and (self.invalidated_at is None or self.invalidated_at > bar)
        )


@dataclass(frozen=True, slots=True)
class RankedZone:
    zone: SupplyDemandZone
    touches: int
    fresh: bool  # no touch yet
    age: int  # bars since confirmation
    score: float  # strength x (1 - 0.25 x touches)


def strength_of(sources: Sequence[ZoneSource], members: int) -> float:
    """Strength of a zone from its distinct source kinds and member count (see module docstring)."""
    kinds = set(sources)
    return min(100.0, sum(SOURCE_WEIGHTS[k] for k in kinds) + EXTRA_MEMBER_POINTS * max(0, members - len(kinds)))


def _source_rows(
    order_blocks: Sequence[OrderBlock],
    breakers: Sequence[BreakerBlock],
    fvgs: Sequence[FVG] | FVGArrays,
    whales: Sequence[WhaleBlock],
    min_fvg_atr: float,
) -> list[tuple[int, int, int, float, float]]:
    """(confirmed_at, source position, sign, top, bottom) of every source, in processing order."""
    bull = Direction.BULLISH
    rows = [(b.confirmed_at, 0, 1 if b.direction is bull else -1, b.top, b.bottom) for b in order_blocks]
    rows += [(b.confirmed_at, 1, 1 if b.direction is bull else -1, b.top, b.bottom) for b in breakers]
    if isinstance(fvgs, FVGArrays):
        big = fvgs.size_atr >= min_fvg_atr
        rows += list(
            zip(
                fvgs.index[big].tolist(),
                [2] * int(big.sum()),
                fvgs.sign[big].tolist(),
                fvgs.top[big].tolist(),
                fvgs.bottom[big].tolist(),
                strict=True,
            )
        )
    else:
        rows += [
            (f.confirmed_at, 2, 1 if f.direction is bull else -1, f.top, f.bottom)
            for f in fvgs
            if f.size_atr >= min_fvg_atr
        ]
    rows += [(w.confirmed_at, 3, 1 if w.direction is bull else -1, w.top, w.bottom) for w in whales]
    rows.sort()  # by bar, then source kind, sign and price: a fixed order for same-bar sources
    return rows


def _range_min_max(table: list[np.ndarray], lo: int, hi: int, maximum: bool) -> float:
    k = (hi - lo + 1).bit_length() - 1
    a, b = table[k][lo], table[k][hi - (1 << k) + 1]
    return max(a, b) if maximum else min(a, b)


def detect_smz(
    candles: pd.DataFrame,
    *,
    order_blocks: Sequence[OrderBlock] | None = None,
    breakers: Sequence[BreakerBlock] | None = None,
    fvgs: Sequence[FVG] | FVGArrays | None = None,
    whales: Sequence[WhaleBlock] | None = None,
    min_fvg_atr: float = 1.0,
    min_overlap: float = 0.5,
    max_height_atr: float = 3.0,
    max_candidates: int = 8,
    atr_length: int = 14,
    tables: dict[str, list[np.ndarray]] | None = None,
) -> list[SupplyDemandZone]:
    """Supply and demand zones in order of confirmation (see module docstring).

    Args:
        candles: validated candle frame.
        order_blocks, breakers, fvgs, whales: precomputed detector output for these candles (each is computed with
            its detector's defaults when omitted; ``fvgs`` may be :func:`.fvg_detector.fvg_arrays`).
        min_fvg_atr: smallest FVG (in ATR multiples, ``FVG.size_atr``) that counts as a zone.
        min_overlap: shared price range needed to merge, as a fraction of the smaller zone's height.
        max_height_atr: a merge may not make a zone taller than this many ATRs (ATR at the merge bar).
        max_candidates: how many of the most recent zones per direction a new source may merge with.
        atr_length: Wilder ATR length in bars.
        tables: :func:`.market_structure.candle_tables` of these candles, when the caller already has them.
    """
    n = len(candles)
    if n == 0:
        return []
    if tables is None:
        tables = candle_tables(candles)
    if order_blocks is None:
        order_blocks = detect_order_blocks(candles, tables=tables)
    if breakers is None:
        breakers = detect_breaker_blocks(candles, order_blocks=order_blocks, tables=tables)
    if fvgs is None:
        fvgs = fvg_arrays(candles, min_size_atr=min_fvg_atr)
    if whales is None:
        whales = detect_whale_blocks(candles)
    rows = _source_rows(order_blocks, breakers, fvgs, whales, min_fvg_atr)
    if not rows:
        return []

    close_min, close_max = tables["close_min"], tables["close_max"]
    closes = close_min[0].tolist()
    atr_values = atr(tables["high_max"][0], tables["low_min"][0], tables["close_min"][0], length=atr_length).tolist()
    # zone records: [confirmed_at, sign, top, bottom, kinds bit mask over _SOURCES, members, merged_at or -1, dropped]
    zones: list[list] = []
    # per direction, the most recent zones as (id, top, bottom, confirmed_at), newest first
    recent: dict[int, list[tuple[int, float, float, int]]] = {1: [], -1: []}
    # ratio ties (an overlap of exactly half the height on tick-quantized prices) count as reached at every scale
    slack, give = 1.0 - RATIO_TOLERANCE, 1.0 + RATIO_TOLERANCE
    for conf, src, sign, top, bottom in rows:
        hits = []
        cap = max_height_atr * atr_values[conf]
        height = top - bottom
        for cand in recent[sign]:
            _, zt, zb, c0 = cand
            if zb > top or zt < bottom:  # disjoint (the overlap below would be negative)
                continue
            overlap = (top if top < zt else zt) - (bottom if bottom > zb else zb)
            if overlap < 0 or overlap < min_overlap * (height if height < zt - zb else zt - zb) * slack:
                continue
            if (top if top > zt else zt) - (bottom if bottom < zb else zb) > cap * give:
                continue
            if c0 < conf:  # closed through the far edge in (c0, conf]?
                if conf - c0 <= 64:  # short spans: a list slice beats the sparse-table lookup
                    span = closes[c0 + 1 : conf + 1]
                    if (min(span) < zb) if sign > 0 else (max(span) > zt):
                        continue
                elif sign > 0:
                    if _range_min_max(close_min, c0 + 1, conf, False) < zb:
                        continue
                elif _range_min_max(close_max, c0 + 1, conf, True) > zt:
                    continue
            hits.append(cand)
        kinds, members = 1 << src, 1
        if hits:
            if len(hits) > 1:  # the union of several must respect the cap too: keep the most recent that fit
                kept = []
                lo, hi = bottom, top
                for cand in hits:
                    if max(hi, cand[1]) - min(lo, cand[2]) <= cap * give:
                        kept.append(cand)
                        lo, hi = min(lo, cand[2]), max(hi, cand[1])
                hits = kept
            for zid, zt, zb, c0 in hits:
                top, bottom = max(top, zt), min(bottom, zb)
                record = zones[zid]
                kinds |= record[4]
                members += record[5]
                if c0 == conf:
                    record[7] = True
                else:
                    record[6] = conf
            entry = (len(zones), top, bottom, conf)
            recent[sign] = [entry, *(c for c in recent[sign] if c not in hits)][:max_candidates]
        else:
            entry = (len(zones), top, bottom, conf)
            recent[sign] = [entry, *recent[sign][: max_candidates - 1]]
        zones.append([conf, sign, top, bottom, kinds, members, -1, False])

    columns = list(zip(*zones, strict=True))
    keep = np.flatnonzero(~np.array(columns[7], dtype=bool))
    conf = np.array(columns[0], dtype=np.int64)[keep]
    sign = np.array(columns[1], dtype=np.int64)[keep]
    top = np.array(columns[2], dtype=np.float64)[keep]
    bot = np.array(columns[3], dtype=np.float64)[keep]
    merged = np.array(columns[6], dtype=np.int64)[keep]
    merged = np.where(merged < 0, n, merged)
    demand = sign > 0
    broken = np.full(len(conf), n, dtype=np.int64)
    touches = [np.full(len(conf), n, dtype=np.int64) for _ in range(3)]
    outside = {  # side -> (touch table, "fully outside" table, edge entered first, far edge)
        True: (tables["low_min"], sparse_table(tables["low_min"][0], maximum=True), top, bot, close_min),
        False: (tables["high_max"], sparse_table(tables["high_max"][0], maximum=False), bot, top, close_max),
    }
    for side, (touch_t, out_t, near, far, close_t) in outside.items():
        sel = np.flatnonzero(demand == side)
        if len(sel) == 0:
            continue
        c0, near_s, far_s, end_merge = conf[sel], near[sel], far[sel], merged[sel]
        # demand: touch on low <= top, fully outside on low > top, broken on close < bottom (supply mirrored)
        brk = first_beyond(close_t, c0 + 1, far_s, above=not side)
        end = np.minimum(brk, end_merge)
        broken[sel] = np.where(brk <= end_merge, brk, n)
        pos = np.minimum(first_beyond(out_t, c0, near_s, above=side) + 1, n)
        for t in touches:
            touch = np.minimum(first_beyond(touch_t, pos, near_s, above=not side, strict=False), n)
            t[sel] = np.where(touch <= end, touch, n)
            pos = np.minimum(first_beyond(out_t, np.minimum(touch + 1, n), near_s, above=side) + 1, n)
    kinds = np.array(columns[4], dtype=np.int64)[keep].tolist()
    members = np.array(columns[5], dtype=np.int64)[keep].tolist()
    source_sets = {m: tuple(s for bit, s in enumerate(_SOURCES) if m >> bit & 1) for m in set(kinds)}
    strengths = {(m, c): strength_of(source_sets[m], c) for m, c in set(zip(kinds, members, strict=True))}
    direction_of = (Direction.BEARISH, Direction.BULLISH)
    return [
        SupplyDemandZone(  # positional, in field order (direction, top, bottom, sources, members, strength, ...)
            direction_of[dm],
            tp,
            bt,
            source_sets[kd],
            mb,
            strengths[(kd, mb)],
            cf,
            None if a >= n else a,
            None if b >= n else b,
            None if c >= n else c,
            None if mg >= n else mg,
            None if bk >= n else bk,
        )
        for dm, tp, bt, kd, mb, cf, a, b, c, mg, bk in zip(
            demand.tolist(),
            top.tolist(),
            bot.tolist(),
            kinds,
            members,
            conf.tolist(),
            *(t.tolist() for t in touches),
            merged.tolist(),
            broken.tolist(),
            strict=True,
        )
    ]


def rank_zones(zones: Sequence[SupplyDemandZone], bar: int) -> list[RankedZone]:
    """The zones live at ``bar``, strongest first: score = strength x (1 - 0.25 x touches), ties by recency."""
    ranked = []
    for z in zones:
        if not z.live(bar):
            continue
        t = z.touches(bar)
        ranked.append(RankedZone(z, t, t == 0, bar - z.confirmed_at, z.strength * (1.0 - 0.25 * t)))
    ranked.sort(key=lambda r: (-r.score, r.age))
    return ranked
