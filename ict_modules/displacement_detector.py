"""Displacement: energetic candles that show institutional order flow.

Definition:
    Candle i is a displacement candle when its body ``|close - open| >= min_body_atr * ATR[i-1]`` and its body
    fills at least ``min_body_ratio`` of its range (small wicks). Direction is the sign of ``close - open``.
    ATR is Wilder's ATR of the bars *before* i (``atr_length`` bars), so the candle does not inflate its own
    yardstick. A displacement is knowable at the close of its candle: ``confirmed_at = index``.

Thresholds are relative (ATR multiples, ratios), so the detector is price-scale invariant. Both comparisons allow
``RATIO_TOLERANCE`` (relative): on tick-quantized prices a body of exactly 0.6 of the range (21 ticks of 35) is an
exact tie that float rounding would otherwise decide differently at different price scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .core import CandleArrays, Direction, atr_or, ohlcv_arrays

RATIO_TOLERANCE = 1e-9  # relative; far above float noise on prices (~1e-15), far below any real difference


@dataclass(frozen=True, slots=True)
class Displacement:
    direction: Direction
    index: int
    body: float  # |close - open| in price units
    body_atr: float  # body in ATR multiples
    confirmed_at: int  # == index


def displacement_mask(
    candles: pd.DataFrame,
    *,
    min_body_atr: float = 1.2,
    min_body_ratio: float = 0.6,
    atr_length: int = 14,
    atr_values: np.ndarray | None = None,
    arrays: CandleArrays | None = None,
) -> np.ndarray:
    """Per-bar int8: +1 bullish displacement, -1 bearish, 0 none (see module docstring; ``atr_values`` and
    ``arrays`` as in :func:`detect_displacement`)."""
    o, h, low, c, _ = ohlcv_arrays(candles, arrays)
    out = np.zeros(len(c), dtype=np.int8)
    if len(c) < 2:
        return out
    prev_atr = np.concatenate(([np.nan], atr_or(atr_values, h, low, c, length=atr_length)[:-1]))
    body = np.abs(c - o)
    rng = h - low
    with np.errstate(invalid="ignore", divide="ignore"):
        slack = 1.0 - RATIO_TOLERANCE  # ties count as reached, whatever the scale (module docstring)
        strong = (body >= min_body_atr * prev_atr * slack) & (body >= min_body_ratio * rng * slack) & (body > 0)
    out[strong] = np.sign(c - o)[strong].astype(np.int8)
    return out


def detect_displacement(
    candles: pd.DataFrame,
    *,
    min_body_atr: float = 1.2,
    min_body_ratio: float = 0.6,
    atr_length: int = 14,
    atr_values: np.ndarray | None = None,
    arrays: CandleArrays | None = None,
) -> list[Displacement]:
    """Displacement candles in bar order.

    Args:
        min_body_atr: minimum body size in ATR multiples of the preceding bars.
        min_body_ratio: minimum body / (high - low), i.e. wicks at most ``1 - min_body_ratio`` of the range.
        atr_length: Wilder ATR length in bars.
        atr_values: precomputed ``atr(high, low, close, length=atr_length)`` of these candles (the engine computes
            it once per frame); computed here when omitted.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.
    """
    arrays = ohlcv_arrays(candles, arrays)
    o, h, low, c, _ = arrays
    atr_values = atr_or(atr_values, h, low, c, length=atr_length)
    mask = displacement_mask(
        candles,
        min_body_atr=min_body_atr,
        min_body_ratio=min_body_ratio,
        atr_length=atr_length,
        atr_values=atr_values,
        arrays=arrays,
    )
    if not mask.any():
        return []
    prev_atr = np.concatenate(([np.nan], atr_values[:-1]))
    return [
        Displacement(
            Direction.BULLISH if mask[i] > 0 else Direction.BEARISH,
            int(i),
            float(abs(c[i] - o[i])),
            float(abs(c[i] - o[i]) / prev_atr[i]),
            int(i),
        )
        for i in np.flatnonzero(mask)
    ]
