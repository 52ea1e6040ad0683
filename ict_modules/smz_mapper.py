"""Smart-money zones (SMZ): order blocks, breakers, FVGs and whale blocks merged into ranked supply/demand zones.

Definition:
    Sources (each with a direction, a price zone and a confirmation bar): order blocks
    (:mod:`.order_block_detector`), breaker and mitigation blocks (:mod:`.breaker_block_detector`), fair value gaps
    of at least ``min_fvg_atr`` ATR (:mod:`.fvg_detector`) and whale blocks (:mod:`.ict_whale_detector`). Bullish
    sources are demand, bearish ones supply.
    Sources are taken in order of confirmation. A new source that overlaps one or more *live* zones of its
    direction among the ``max_candidates`` most recent ones (sharing at least ``min_overlap`` of the smaller
    zone's height, and with the union no taller than ``max_height_atr`` ATRs) merges with them into a new zone:
    bounds = the union, sources = the union; the merged zones end (``merged_at`` = that bar; a zone confirmed on
    the same bar is absorbed silently). Otherwise it opens a new zone. A zone is live until a CLOSE through its far edge
    (demand: ``close < bottom``; supply: ``close > top``; ``invalidated_at``) or its merge.
    - strength (0-100, fixed at confirmation): the sum over the distinct source kinds of ``SOURCE_WEIGHTS``
      (order block 30, breaker 25, whale 25, FVG 20) plus 5 per further member, capped at 100.
    - touches: ``first_touch_at``, ``second_touch_at``, ``third_touch_at`` = bars after the confirmation at which
      price re-enters the zone (demand: ``low <= top``; supply: ``high >= bottom``), each after price has been
      fully outside it (demand: ``low > top``) since confirmation or the previous touch; only touches up to the
      zone's end of life (merge or invalidation) count.
    - freshness at a bar: untouched zones are fresh; :func:`rank_zones` discounts strength by 25% per touch.
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
from .fvg_detector import FVG, detect_fvgs
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
    fvgs: Sequence[FVG],
    whales: Sequence[WhaleBlock],
    min_fvg_atr: float,
) -> list[tuple[int, int, int, float, float]]:
    """(confirmed_at, source position, sign, top, bottom) of every source, in processing order."""
    rows = [(b.confirmed_at, 0, b.direction.sign, b.top, b.bottom) for b in order_blocks]
    rows += [(b.confirmed_at, 1, b.direction.sign, b.top, b.bottom) for b in breakers]
    rows += [(f.confirmed_at, 2, f.direction.sign, f.top, f.bottom) for f in fvgs if f.size_atr >= min_fvg_atr]
    rows += [(w.confirmed_at, 3, w.direction.sign, w.top, w.bottom) for w in whales]
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
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
    fvgs: Sequence[FVG] | None = None,
    whales: Sequence[WhaleBlock] | None = None,
    min_fvg_atr: float = 0.5,
    min_overlap: float = 0.5,
    max_height_atr: float = 3.0,
    max_candidates: int = 8,
    atr_length: int = 14,
) -> list[SupplyDemandZone]:
    """Supply and demand zones in order of confirmation (see module docstring).

    Args:
        candles: validated candle frame.
        order_blocks, breakers, fvgs, whales: precomputed detector output for these candles (each is computed with
            its detector's defaults when omitted).
        min_fvg_atr: smallest FVG (in ATR multiples, ``FVG.size_atr``) that counts as a zone.
        min_overlap: shared price range needed to merge, as a fraction of the smaller zone's height.
        max_height_atr: a merge may not make a zone taller than this many ATRs (ATR at the merge bar).
        max_candidates: how many of the most recent zones per direction a new source may merge with.
        atr_length: Wilder ATR length in bars.
    """
    n = len(candles)
    if n == 0:
        return []
    tables = candle_tables(candles)
    if order_blocks is None:
        order_blocks = detect_order_blocks(candles, tables=tables)
    if breakers is None:
        breakers = detect_breaker_blocks(candles, order_blocks=order_blocks, tables=tables)
    if fvgs is None:
        fvgs = detect_fvgs(candles)
    if whales is None:
        whales = detect_whale_blocks(candles)
    rows = _source_rows(order_blocks, breakers, fvgs, whales, min_fvg_atr)
    if not rows:
        return []

    close_min, close_max = tables["close_min"], tables["close_max"]
    atr_values = atr(tables["high_max"][0], tables["low_min"][0], tables["close_min"][0], length=atr_length).tolist()
    z_conf: list[int] = []
    z_sign: list[int] = []
    z_top: list[float] = []
    z_bot: list[float] = []
    z_kinds: list[int] = []  # bit mask over _SOURCES
    z_members: list[int] = []
    z_merged: list[int] = []  # bar, or -1
    z_dropped: list[bool] = []
    recent: dict[int, list[int]] = {1: [], -1: []}
    for conf, src, sign, top, bottom in rows:
        hits = []
        cap = max_height_atr * atr_values[conf]
        for zid in recent[sign]:
            overlap = min(top, z_top[zid]) - max(bottom, z_bot[zid])
            if overlap < 0 or overlap < min_overlap * min(top - bottom, z_top[zid] - z_bot[zid]):
                continue
            if max(top, z_top[zid]) - min(bottom, z_bot[zid]) > cap:
                continue
            c0 = z_conf[zid]
            if c0 < conf:  # closed through the far edge in (c0, conf]?
                if sign > 0 and _range_min_max(close_min, c0 + 1, conf, False) < z_bot[zid]:
                    continue
                if sign < 0 and _range_min_max(close_max, c0 + 1, conf, True) > z_top[zid]:
                    continue
            hits.append(zid)
        kinds, members = 1 << src, 1
        if len(hits) > 1:  # the union of several must respect the cap too: keep the most recent that fit
            kept = []
            lo, hi = bottom, top
            for zid in hits:
                if max(hi, z_top[zid]) - min(lo, z_bot[zid]) <= cap:
                    kept.append(zid)
                    lo, hi = min(lo, z_bot[zid]), max(hi, z_top[zid])
            hits = kept
        for zid in hits:
            top, bottom = max(top, z_top[zid]), min(bottom, z_bot[zid])
            kinds |= z_kinds[zid]
            members += z_members[zid]
            if z_conf[zid] == conf:
                z_dropped[zid] = True
            else:
                z_merged[zid] = conf
        live = [z for z in recent[sign] if z not in hits]
        new = len(z_conf)
        z_conf.append(conf)
        z_sign.append(sign)
        z_top.append(top)
        z_bot.append(bottom)
        z_kinds.append(kinds)
        z_members.append(members)
        z_merged.append(-1)
        z_dropped.append(False)
        recent[sign] = [new, *live][:max_candidates]

    keep = np.flatnonzero(~np.array(z_dropped))
    conf = np.array(z_conf, dtype=np.int64)[keep]
    sign = np.array(z_sign, dtype=np.int64)[keep]
    top = np.array(z_top)[keep]
    bot = np.array(z_bot)[keep]
    merged = np.array(z_merged, dtype=np.int64)[keep]
    merged = np.where(merged < 0, n, merged)
    demand = sign > 0
    start = conf + 1
    broken = np.where(
        demand,
        first_beyond(close_min, start, bot, above=False),
        first_beyond(close_max, start, top, above=True),
    )
    end = np.minimum(broken, merged)
    low_max = sparse_table(tables["low_min"][0], maximum=True)
    high_min = sparse_table(tables["high_max"][0], maximum=False)
    touches = []
    # price must be fully outside the zone (demand: low > top) before a touch counts, from the confirmation bar on
    first_out = np.where(
        demand,
        first_beyond(low_max, conf, top, above=True),
        first_beyond(high_min, conf, bot, above=False),
    )
    pos = np.minimum(first_out + 1, n)
    for _ in range(3):
        touch = np.where(
            demand,
            first_beyond(tables["low_min"], pos, top, above=False, strict=False),
            first_beyond(tables["high_max"], pos, bot, above=True, strict=False),
        )
        touch = np.minimum(touch, n)
        touches.append(np.where(touch <= end, touch, n))
        out = np.where(
            demand,
            first_beyond(low_max, np.minimum(touch + 1, n), top, above=True),
            first_beyond(high_min, np.minimum(touch + 1, n), bot, above=False),
        )
        pos = np.minimum(out + 1, n)
    broken = np.where(broken <= merged, broken, n)
    kinds = np.array(z_kinds)[keep].tolist()
    members = np.array(z_members)[keep].tolist()
    t1, t2, t3 = (t.tolist() for t in touches)
    out_zones = []
    for k in range(len(keep)):
        sources = tuple(s for bit, s in enumerate(_SOURCES) if kinds[k] >> bit & 1)
        out_zones.append(
            SupplyDemandZone(
                direction=Direction.BULLISH if demand[k] else Direction.BEARISH,
                top=float(top[k]),
                bottom=float(bot[k]),
                sources=sources,
                members=members[k],
                strength=strength_of(sources, members[k]),
                confirmed_at=int(conf[k]),
                first_touch_at=None if t1[k] >= n else t1[k],
                second_touch_at=None if t2[k] >= n else t2[k],
                third_touch_at=None if t3[k] >= n else t3[k],
                merged_at=None if merged[k] >= n else int(merged[k]),
                invalidated_at=None if broken[k] >= n else int(broken[k]),
            )
        )
    return out_zones


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
