"""SIBI and SSIB (BISI): fair value gaps created inside a displacement leg.

Definitions (ICT):
    SIBI = Sell-side Imbalance, Buy-side Inefficiency: a BEARISH FVG (``low[i-2] > high[i]``) formed inside a
    BEARISH displacement leg. Price moved down so fast that only sellers were delivered; the gap above is a
    premium array price later returns to (resistance) before continuing lower.
    SSIB (also called BISI) = Buy-side Imbalance, Sell-side Inefficiency: a BULLISH FVG (``high[i-2] < low[i]``)
    formed inside a BULLISH displacement leg; a discount array below price (support).

Displacement leg (causal): the maximal run of consecutive candles with the same body colour as the FVG's middle
candle c2 (close < open for bearish, close > open for bullish), cut at c3 = bar i (nothing after the FVG's
confirmation is looked at). The gap qualifies when c2 has the FVG's colour and the leg contains at least one
displacement candle of that direction (:mod:`displacement_detector`: body >= ``min_body_atr`` x ATR of the bars
before it and body >= ``min_body_ratio`` of its range). The FVG itself comes from :mod:`fvg_detector` (sizes in
ATR multiples), and so do its states: ``touched_at``, ``ce_touched_at``, ``filled_at``, ``inverted_at``.
``confirmed_at = index = i`` (the close of c3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from .core import CandleArrays, Direction, atr_or, ohlcv_arrays
from .displacement_detector import displacement_mask
from .fvg_detector import fvg_arrays
from .market_structure import range_extreme, sparse_table

logger = logging.getLogger(__name__)


class ImbalanceKind(StrEnum):
    SIBI = "sibi"  # sell-side imbalance, buy-side inefficiency: bearish
    SSIB = "ssib"  # buy-side imbalance, sell-side inefficiency (BISI): bullish

    @property
    def direction(self) -> Direction:
        return Direction.BEARISH if self is ImbalanceKind.SIBI else Direction.BULLISH

    @classmethod
    def of(cls, direction: Direction) -> ImbalanceKind:
        return cls.SIBI if direction is Direction.BEARISH else cls.SSIB


@dataclass(frozen=True, slots=True)
class Imbalance:
    """A SIBI (bearish) or SSIB (bullish) gap; prices in quote units, bars as frame positions."""

    kind: ImbalanceKind
    direction: Direction  # SIBI -> BEARISH, SSIB -> BULLISH
    top: float
    bottom: float
    index: int  # c3 of the FVG
    middle_index: int  # c2
    leg_start: int  # first candle of the displacement leg
    leg_displacement_atr: float  # largest displacement body in the leg (up to c3), in ATR multiples
    size_atr: float  # gap size in ATR multiples (see fvg_detector)
    confirmed_at: int  # == index
    touched_at: int | None = None
    ce_touched_at: int | None = None
    filled_at: int | None = None
    inverted_at: int | None = None

    @property
    def ce(self) -> float:
        """Consequent encroachment: the 50% level of the gap."""
        return (self.top + self.bottom) / 2.0


def detect_sibi_ssib(
    candles: pd.DataFrame,
    *,
    min_size_atr: float = 0.1,
    min_body_atr: float = 1.2,
    min_body_ratio: float = 0.6,
    atr_length: int = 14,
    atr_values: np.ndarray | None = None,
    arrays: CandleArrays | None = None,
) -> list[Imbalance]:
    """SIBI and SSIB gaps of ``candles`` in bar order (see the module docstring).

    Args:
        min_size_atr: minimum FVG size in ATR multiples (as in :func:`fvg_detector.detect_fvgs`).
        min_body_atr: displacement body threshold in ATR multiples (as in ``displacement_detector``).
        min_body_ratio: displacement body / range threshold.
        atr_length: Wilder ATR length in bars.
        atr_values: precomputed ``atr(high, low, close, length=atr_length)`` of these candles (the engine computes
            it once per frame); computed here when omitted.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.
    """
    arrays = ohlcv_arrays(candles, arrays)
    o, h, low, c, _ = arrays
    atr_values = atr_or(atr_values, h, low, c, length=atr_length)
    gaps = fvg_arrays(candles, min_size_atr=min_size_atr, atr_length=atr_length, atr_values=atr_values, arrays=arrays)
    if not len(gaps):
        return []
    n = len(c)
    colour = np.sign(c - o).astype(np.int8)
    disp = displacement_mask(
        candles,
        min_body_atr=min_body_atr,
        min_body_ratio=min_body_ratio,
        atr_length=atr_length,
        atr_values=atr_values,
        arrays=arrays,
    )
    prev_atr = np.concatenate(([np.nan], atr_values[:-1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        signed_body = np.where(disp != 0, disp * np.abs(c - o) / prev_atr, 0.0)  # +bull / -bear body in ATR
    # first bar of the same-colour run each bar belongs to
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = colour[1:] != colour[:-1]
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(n), 0))

    sign = gaps.sign
    mid = gaps.index - 1
    start = run_start[mid]
    end = np.where(colour[gaps.index] == sign, gaps.index, mid)  # the leg, cut at c3
    # strongest displacement body of the gap's direction inside [start, end]
    strongest = np.where(
        sign > 0,
        range_extreme(sparse_table(np.maximum(signed_body, 0.0), maximum=True), start, end, maximum=True),
        range_extreme(sparse_table(np.maximum(-signed_body, 0.0), maximum=True), start, end, maximum=True),
    )
    keep = (colour[mid] == sign) & (strongest > 0)
    g = gaps.select(keep)

    def bars(values: np.ndarray) -> list[int | None]:
        return [v if v >= 0 else None for v in values.tolist()]

    return [
        Imbalance(
            ImbalanceKind.SSIB if d > 0 else ImbalanceKind.SIBI,
            Direction.BULLISH if d > 0 else Direction.BEARISH,
            t,
            b,
            i,
            i - 1,
            leg,
            strength,
            sz,
            i,
            tc,
            ce,
            f,
            v,
        )
        for d, t, b, i, leg, strength, sz, tc, ce, f, v in zip(
            g.sign.tolist(),
            g.top.tolist(),
            g.bottom.tolist(),
            g.index.tolist(),
            start[keep].tolist(),
            strongest[keep].tolist(),
            g.size_atr.tolist(),
            bars(g.touched_at),
            bars(g.ce_touched_at),
            bars(g.filled_at),
            bars(g.inverted_at),
            strict=True,
        )
    ]
