"""Breaker blocks and mitigation blocks: failed order blocks that flip polarity.

Definition (order blocks from :mod:`.order_block_detector`):
    When an order block is invalidated (a close through its far edge at bar ``v``), its zone flips: a failed
    bullish OB becomes a bearish (supply) block, a failed bearish OB a bullish (demand) block, confirmed at ``v``.
    - BREAKER: before failing, the move out of the OB took liquidity: for a failed bullish OB, some bar in
      ``(ob.index, v)`` traded above the *prior swing high* (the latest pivot high of ``sweep_level`` before the
      block's first candle, confirmed by ``v``); bearish mirror (a low below the prior swing low). The classic
      shape: high, low (the OB), higher high (buy-side taken), then a close below the low.
    - MITIGATION block: the same failure without that sweep (a lower high / failure swing), or with no prior swing.
    With the default ``sweep_level="swing"`` the prior swing is a major pivot: a failed OB born from a major break
    always swept it, a failed internal OB whose rally stayed under the major high is a mitigation block.
    States after ``confirmed_at`` (same rules as order blocks, new direction):
    - mitigated (``mitigated_at``): price trades back into the zone (bearish block: ``high >= bottom``; bullish:
      ``low <= top``).
    - invalidated (``invalidated_at``): a close through the far edge (bearish: ``close > top``; bullish:
      ``close < bottom``); a wick does not invalidate.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from .core import CandleArrays, Direction
from .market_structure import Pivots, StructureLevel, candle_tables, first_beyond_sided, level_lengths
from .order_block_detector import OrderBlock, ZoneState, detect_order_blocks, zone_states
from .swing_points import SwingPoint

logger = logging.getLogger(__name__)


class BlockKind(StrEnum):
    BREAKER = "breaker"  # the failed OB's move swept liquidity first
    MITIGATION = "mitigation"  # no sweep before the failure


@dataclass(frozen=True, slots=True)
class BreakerBlock:
    kind: BlockKind
    direction: Direction  # the new direction: opposite of the failed order block
    top: float
    bottom: float
    origin_start_index: int  # the failed order block's candles
    origin_index: int
    origin_confirmation: int  # bar the failed order block was confirmed
    swept_price: float | None  # the prior swing taken before the failure (BREAKER), else None
    sweep_index: int | None  # first bar beyond that swing
    confirmed_at: int  # the bar whose close invalidated the order block
    mitigated_at: int | None
    invalidated_at: int | None

    @property
    def mean_threshold(self) -> float:
        return (self.top + self.bottom) / 2.0

    @property
    def state(self) -> ZoneState:
        if self.invalidated_at is not None:
            return ZoneState.INVALIDATED
        if self.mitigated_at is not None:
            return ZoneState.MITIGATED
        return ZoneState.ACTIVE


def _prior_swing(index: np.ndarray, length: int, before_index: np.ndarray, known_by: np.ndarray) -> np.ndarray:
    """Position in ``index`` (pivot bars, ascending) of the latest pivot with index < before_index and
    confirmed (``index + length``) by ``known_by``, or -1."""
    by_index = np.searchsorted(index, before_index, side="left")
    by_conf = np.searchsorted(index + length, known_by, side="right")
    return np.minimum(by_index, by_conf) - 1


def detect_breaker_blocks(
    candles: pd.DataFrame,
    *,
    order_blocks: Sequence[OrderBlock] | None = None,
    level: StructureLevel | str = StructureLevel.INTERNAL,
    sweep_level: StructureLevel | str = StructureLevel.SWING,
    internal_length: int = 3,
    swing_length: int = 10,
    swings: Sequence[SwingPoint] | Pivots | None = None,
    tables: dict[str, list[np.ndarray]] | None = None,
    arrays: CandleArrays | None = None,
) -> list[BreakerBlock]:
    """Breaker and mitigation blocks in order of confirmation (see module docstring).

    Args:
        candles: validated candle frame.
        order_blocks: precomputed :func:`.order_block_detector.detect_order_blocks` of these candles; otherwise
            computed with ``level`` and the lengths.
        level: structure level of the order blocks (when computed here).
        sweep_level: pivot set whose prior swing must be taken for a BREAKER.
        internal_length, swing_length: pivot lengths in bars.
        swings: precomputed swing points (or :class:`.market_structure.Pivots`) of ``sweep_level``.
        tables: :func:`.market_structure.candle_tables` of these candles, when the caller already has them.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.
    """
    n = len(candles)
    if order_blocks is None:
        tables = tables if tables is not None else candle_tables(candles, arrays=arrays)
        order_blocks = detect_order_blocks(
            candles,
            level=level,
            internal_length=internal_length,
            swing_length=swing_length,
            tables=tables,
            arrays=arrays,
        )
    failed = [b for b in order_blocks if b.invalidated_at is not None]
    if n == 0 or not failed:
        return []
    if swings is None:
        pivots = Pivots.of(candles, level_lengths(sweep_level, internal_length, swing_length), arrays)
    elif isinstance(swings, Pivots):
        pivots = swings
    else:
        pivots = Pivots.from_points(swings)
    if tables is None:
        tables = candle_tables(candles, arrays=arrays)

    failed.sort(key=lambda b: (b.invalidated_at, b.index))
    was_bull = np.array([b.direction is Direction.BULLISH for b in failed])
    start = np.array([b.start_index for b in failed], dtype=np.int64)
    end = np.array([b.index for b in failed], dtype=np.int64)
    fail = np.array([b.invalidated_at for b in failed], dtype=np.int64)
    top = np.array([b.top for b in failed])
    bottom = np.array([b.bottom for b in failed])

    hi_pos = _prior_swing(pivots.high_index, pivots.length, start, fail)
    lo_pos = _prior_swing(pivots.low_index, pivots.length, start, fail)
    high_prices = np.append(pivots.high_price, np.nan)  # position -1 -> NaN
    low_prices = np.append(pivots.low_price, np.nan)
    prior = np.where(was_bull, high_prices[hi_pos], low_prices[lo_pos])
    has_prior = ~np.isnan(prior)
    thr = np.where(has_prior, prior, 0.0)
    first = first_beyond_sided(
        was_bull, end + 1, (tables["high_max"], thr, True, True), (tables["low_min"], thr, False, True)
    )
    swept = has_prior & (first < fail)

    new_sign = np.where(was_bull, -1, 1)
    touch, broken = zone_states(new_sign, top, bottom, fail, tables, n)
    kinds = (BlockKind.MITIGATION, BlockKind.BREAKER)
    return [
        BreakerBlock(
            kind=kinds[sw],
            direction=b.direction.opposite,
            top=b.top,
            bottom=b.bottom,
            origin_start_index=b.start_index,
            origin_index=b.index,
            origin_confirmation=b.confirmed_at,
            swept_price=pr if sw else None,
            sweep_index=fi if sw else None,
            confirmed_at=b.invalidated_at,
            mitigated_at=None if tc >= n else tc,
            invalidated_at=None if bk >= n else bk,
        )
        for b, sw, pr, fi, tc, bk in zip(
            failed, swept.tolist(), prior.tolist(), first.tolist(), touch.tolist(), broken.tolist(), strict=True
        )
    ]
