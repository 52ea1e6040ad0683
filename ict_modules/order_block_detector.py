"""Order blocks: the last opposite-close candle(s) before a displacement leg that breaks structure.

Definition (structure events from :mod:`.market_structure`, one level at a time):
    Bullish OB: for a bullish break (BOS, CHOCH or MSS) of the swing high at bar ``s`` at bar ``i`` whose leg starts
    at its lowest low ``L`` (``s < L <= i``), the OB candle ``b`` is the last down-close candle (``close < open``)
    in ``[s + 1, L]``; with the down-close candles right before it (a consecutive run, at most ``max_run``
    candles, not before ``s + 1``) it forms the block. Bearish OB: the mirror (last up-close candle(s) at or before
    the highest high of the leg of a bearish break).
    - Zone: ``top`` = highest high and ``bottom`` = lowest low of the block's candles (bodies and wicks). The
      *mean threshold* is the 50% level ``(top + bottom) / 2``.
    - Displacement (``require_displacement``): the leg must contain a displacement candle in the break direction
      after the block (see :mod:`.displacement_detector`); otherwise no OB.
    - A block whose far edge was already closed through between the block and the break is dropped.
    - ``confirmed_at`` = the breaking bar ``i``. One OB per candle (the first break that defines it wins).
    States, searched from ``confirmed_at + 1`` on:
    - mitigated (``mitigated_at``): the first bar that trades back into the zone (bullish: ``low <= top``;
      bearish: ``high >= bottom``).
    - invalidated (``invalidated_at``): the first CLOSE through the far edge (bullish: ``close < bottom``;
      bearish: ``close > top``). A wick through does not invalidate. Invalidation implies mitigation.
    - ``relative_volume``: mean volume of the block's candles over the mean volume of the ``volume_lookback`` bars
      before it (1.0 when there are none), a scale-free measure of participation.

Cost: all searches are vectorised sparse-table queries; no per-bar Python loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from .core import CandleArrays, Direction, ohlcv_arrays
from .market_structure import (
    StructureArrays,
    StructureEvent,
    StructureKind,
    StructureLevel,
    candle_tables,
    first_beyond_sided,
    last_true_index,
    range_extreme,
    structure_arrays,
)

logger = logging.getLogger(__name__)


class ZoneState(StrEnum):
    ACTIVE = "active"  # not yet revisited
    MITIGATED = "mitigated"  # price traded back into it, no close through the far edge yet
    INVALIDATED = "invalidated"  # a close through the far edge


@dataclass(frozen=True, slots=True)
class OrderBlock:
    direction: Direction  # BULLISH = demand (bought from), BEARISH = supply
    start_index: int  # first candle of the block
    index: int  # last (defining) candle of the block
    top: float
    bottom: float
    volume: float  # summed volume of the block's candles
    relative_volume: float  # mean block volume / mean volume of the preceding bars
    level: StructureLevel
    break_kind: StructureKind  # the structure break that confirmed it
    swing_index: int  # the pivot that break took out
    displacement_index: int | None  # displacement candle of the leg (None only when not required)
    confirmed_at: int  # the breaking bar
    mitigated_at: int | None
    invalidated_at: int | None

    @property
    def mean_threshold(self) -> float:
        """The 50% level of the zone."""
        return (self.top + self.bottom) / 2.0

    @property
    def state(self) -> ZoneState:
        if self.invalidated_at is not None:
            return ZoneState.INVALIDATED
        if self.mitigated_at is not None:
            return ZoneState.MITIGATED
        return ZoneState.ACTIVE


def zone_states(
    direction_sign: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    after: np.ndarray,
    tables: dict[str, list[np.ndarray]],
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """First touch and first close-through bars (``n`` = never) of zones, searched from ``after + 1``.

    ``direction_sign`` +1 for demand zones (price comes down into them; a close below ``bottom`` invalidates) and
    -1 for supply zones (price comes up; a close above ``top`` invalidates). ``tables`` holds the sparse tables
    ``low_min``, ``high_max``, ``close_min``, ``close_max`` of the candles.
    """
    start = np.asarray(after, dtype=np.int64) + 1
    demand = np.asarray(direction_sign) > 0
    touch = first_beyond_sided(
        demand, start, (tables["low_min"], top, False, False), (tables["high_max"], bottom, True, False)
    )
    broken = first_beyond_sided(
        demand, start, (tables["close_min"], bottom, False, True), (tables["close_max"], top, True, True)
    )
    return touch, broken


def detect_order_blocks(
    candles: pd.DataFrame,
    *,
    level: StructureLevel | str = StructureLevel.INTERNAL,
    internal_length: int = 3,
    swing_length: int = 10,
    events: Sequence[StructureEvent] | StructureArrays | None = None,
    max_run: int = 3,
    require_displacement: bool = True,
    volume_lookback: int = 20,
    min_body_atr: float = 1.2,
    min_body_ratio: float = 0.6,
    atr_length: int = 14,
    tables: dict[str, list[np.ndarray]] | None = None,
    arrays: CandleArrays | None = None,
) -> list[OrderBlock]:
    """Order blocks in order of confirmation (see module docstring).

    Args:
        candles: validated candle frame.
        level, internal_length, swing_length: structure level and pivot lengths (bars) of the breaks.
        events: precomputed :func:`.market_structure.detect_market_structure` events (or
            :func:`.market_structure.structure_arrays`) of these candles (skips recomputing them; ``level`` and the
            lengths are then ignored).
        max_run: most consecutive same-colour candles merged into one block.
        require_displacement: keep only blocks whose leg has a displacement candle after them.
        volume_lookback: bars before the block that ``relative_volume`` compares against.
        min_body_atr, min_body_ratio, atr_length: displacement thresholds (ATR multiples, ratio, bars).
        tables: :func:`.market_structure.candle_tables` of these candles, when the caller already has them.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.
    """
    n = len(candles)
    if tables is None:
        tables = candle_tables(candles, arrays=arrays)
    if events is None:
        breaks = structure_arrays(
            candles,
            level=level,
            internal_length=internal_length,
            swing_length=swing_length,
            min_body_atr=min_body_atr,
            min_body_ratio=min_body_ratio,
            atr_length=atr_length,
            tables=tables,
            arrays=arrays,
        )
    elif isinstance(events, StructureArrays):
        breaks = events
    else:
        breaks = StructureArrays.from_events(events, events[0].level if events else level)
    if n == 0 or len(breaks) == 0:
        return []
    o, _, _, c, vol = ohlcv_arrays(candles, arrays)

    bull = breaks.bullish
    sign = np.where(bull, 1, -1)
    bars, pivots, legs, disp, kinds = breaks.bars, breaks.swing_index, breaks.leg, breaks.displacement, breaks.kinds

    down, up = c < o, c > o
    block_end = np.where(bull, last_true_index(down)[legs], last_true_index(up)[legs])
    run_start = np.where(bull, last_true_index(~down)[block_end] + 1, last_true_index(~up)[block_end] + 1)
    start = np.maximum.reduce([run_start, block_end - max_run + 1, pivots + 1])
    ok = block_end >= pivots + 1
    if require_displacement:
        ok &= disp > block_end
    if not ok.any():
        return []
    sign, bars, pivots, block_end, start, disp, bull, kinds = (
        a[ok] for a in (sign, bars, pivots, block_end, start, disp, bull, kinds)
    )

    top = range_extreme(tables["high_max"], start, block_end, maximum=True)
    bottom = range_extreme(tables["low_min"], start, block_end, maximum=False)
    # drop blocks already closed through between the block and the break
    lo, hi = block_end + 1, bars
    closes_min = range_extreme(tables["close_min"], lo, hi, maximum=False)
    closes_max = range_extreme(tables["close_max"], lo, hi, maximum=True)
    intact = np.where(bull, closes_min >= bottom, closes_max <= top)

    cum = np.concatenate(([0.0], np.cumsum(vol)))
    block_volume = cum[block_end + 1] - cum[start]
    mean_block = block_volume / (block_end - start + 1)
    before_lo = np.maximum(start - volume_lookback, 0)
    before_count = start - before_lo
    before_mean = np.where(before_count > 0, (cum[start] - cum[before_lo]) / np.maximum(before_count, 1), 0.0)
    rel_volume = np.where(before_mean > 0, mean_block / np.where(before_mean > 0, before_mean, 1.0), 1.0)

    touch, broken = zone_states(sign, top, bottom, bars, tables, n)

    # one OB per candle: the first break that defines it wins
    keep = np.flatnonzero(intact)
    _, first = np.unique(np.stack((sign[keep], block_end[keep])), axis=1, return_index=True)
    keep = keep[np.sort(first)]
    level_of = breaks.level
    kind_of = (StructureKind.BOS, StructureKind.CHOCH, StructureKind.MSS)
    direction_of = {1: Direction.BULLISH, -1: Direction.BEARISH}
    return [
        OrderBlock(
            direction_of[sg],
            st,
            be,
            tp,
            bt,
            vl,
            rv,
            level_of,
            kind_of[kd],
            pv,
            None if dp < 0 else dp,
            br,
            None if tc >= n else tc,
            None if bk >= n else bk,
        )
        for sg, st, be, tp, bt, vl, rv, kd, pv, dp, br, tc, bk in zip(
            *(
                a[keep].tolist()
                for a in (sign, start, block_end, top, bottom, block_volume, rel_volume, kinds, pivots, disp, bars)
            ),
            touch[keep].tolist(),
            broken[keep].tolist(),
            strict=True,
        )
    ]


def active_order_blocks(blocks: Sequence[OrderBlock], bar: int) -> list[OrderBlock]:
    """The blocks confirmed by ``bar`` and not invalidated by then (mitigated ones included)."""
    return [b for b in blocks if b.confirmed_at <= bar and (b.invalidated_at is None or b.invalidated_at > bar)]
