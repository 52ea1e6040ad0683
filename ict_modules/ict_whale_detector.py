"""Whale blocks: candles where abnormal volume meets displacement or absorption.

Definition:
    Volume is abnormal at bar i when the z-score of ``log(volume[i])`` against the ``volume_window`` bars BEFORE i
    (mean and population standard deviation of their log volumes; the bar does not dilute its own yardstick) is at
    least ``min_volume_z``. Log volume makes the score robust to volume's heavy tail and exactly invariant to the
    volume unit. Bars with zero volume have no score. A constant history (std 0) scores +inf for any larger volume.
    With abnormal volume, candle i is a whale block when it is either
    - DISPLACEMENT: body ``|close - open| >= min_body_atr x ATR[i-1]`` and body >= ``min_body_ratio`` of its range;
      direction = the candle's colour (large players pushing price), or
    - ABSORPTION: range ``high - low <= max_range_atr x ATR[i-1]`` (much volume, little movement: resting orders
      absorbed the flow); direction = the side of the longer wick's rejection: a longer LOWER wick (selling
      absorbed by buyers) is bullish, a longer upper wick bearish; equal wicks give no block.
    ATR is Wilder's ATR of the bars before i (``atr_length``). ``confirmed_at = index = i``.

Zone and states: the zone is the candle's range ``[low, high]``. For a bullish block (bearish = mirror):
    ``left_at``        first bar j > i trading entirely above the zone (``low[j] > high[i]``);
    ``mitigated_at``   first bar j > left_at trading back into the zone (``low[j] <= high[i]``);
    ``invalidated_at`` first bar j > i CLOSING below the zone (``close[j] < low[i]``).
All thresholds are relative (z-scores, ATR multiples, ratios): price- and volume-scale invariant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from .core import CandleArrays, Direction, atr_or, ohlcv_arrays
from .market_structure import first_beyond, sparse_table

logger = logging.getLogger(__name__)


class WhaleKind(StrEnum):
    DISPLACEMENT = "displacement"  # abnormal volume with a big body
    ABSORPTION = "absorption"  # abnormal volume with a small range


@dataclass(frozen=True, slots=True)
class WhaleBlock:
    """One whale candle and its zone; prices in quote units, bars as frame positions."""

    kind: WhaleKind
    direction: Direction
    index: int
    top: float  # high of the candle
    bottom: float  # low of the candle
    volume_z: float  # z-score of log volume vs the preceding window
    body_atr: float  # |close - open| / ATR[i-1]
    range_atr: float  # (high - low) / ATR[i-1]
    confirmed_at: int  # == index
    left_at: int | None = None
    mitigated_at: int | None = None
    invalidated_at: int | None = None


def volume_zscore(volume: np.ndarray, *, window: int = 50) -> np.ndarray:
    """Causal z-score of log volume: bar i against bars ``i-window .. i-1`` (NaN until ``window`` bars exist).

    Population std (ddof=0). Zero volume -> NaN. Std 0 -> +inf above the mean, -inf below, NaN equal.
    """
    if window < 2:
        raise ValueError("window must be >= 2")
    with np.errstate(divide="ignore"):
        logv = np.log(np.asarray(volume, dtype=np.float64))
    logv[~np.isfinite(logv)] = np.nan
    past = pd.Series(logv).shift(1).rolling(window, min_periods=window)
    mean = past.mean().to_numpy()
    std = past.std(ddof=0).to_numpy()
    diff = logv - mean
    with np.errstate(invalid="ignore", divide="ignore"):
        # rolling std of a constant window can come out as float noise instead of 0
        flat = std <= 1e-12 * np.maximum(np.abs(mean), 1.0)
        z = np.where(flat, np.sign(diff) * np.inf, diff / std)
    z[flat & (diff == 0)] = np.nan
    return z


def detect_whale_blocks(
    candles: pd.DataFrame,
    *,
    volume_window: int = 50,
    min_volume_z: float = 2.0,
    min_body_atr: float = 1.0,
    min_body_ratio: float = 0.5,
    max_range_atr: float = 0.75,
    atr_length: int = 14,
    atr_values: np.ndarray | None = None,
    arrays: CandleArrays | None = None,
) -> list[WhaleBlock]:
    """Whale blocks of ``candles`` in bar order (see the module docstring).

    Args:
        volume_window: bars before each candle that form its volume baseline.
        min_volume_z: minimum z-score of log volume (standard deviations).
        min_body_atr: displacement body threshold in ATR multiples.
        min_body_ratio: displacement body / range threshold.
        max_range_atr: absorption range ceiling in ATR multiples.
        atr_length: Wilder ATR length in bars.
        atr_values: precomputed ``atr(high, low, close, length=atr_length)`` of these candles (the engine computes
            it once per frame); computed here when omitted.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.
    """
    o, h, low, c, v = ohlcv_arrays(candles, arrays)
    n = len(c)
    if n < 2:
        return []
    z = volume_zscore(v, window=volume_window)
    prev_atr = np.concatenate(([np.nan], atr_or(atr_values, h, low, c, length=atr_length)[:-1]))
    body = np.abs(c - o)
    rng = h - low
    lower_wick = np.minimum(o, c) - low
    upper_wick = h - np.maximum(o, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        loud = z >= min_volume_z
        disp = loud & (body >= min_body_atr * prev_atr) & (body >= min_body_ratio * rng) & (body > 0)
        absorb = loud & ~disp & (rng <= max_range_atr * prev_atr) & (lower_wick != upper_wick)
        body_atr = body / prev_atr
        range_atr = rng / prev_atr
    sign = np.where(disp, np.sign(c - o), np.where(absorb, np.sign(lower_wick - upper_wick), 0)).astype(np.int8)
    idx = np.flatnonzero(sign)
    if not len(idx):
        return []
    s = sign[idx]
    states = [np.full(len(idx), -1, dtype=np.int64) for _ in range(3)]
    for mask, up in ((s > 0, True), (s < 0, False)):
        if not mask.any():
            continue
        i = idx[mask]
        top, bot = h[i], low[i]
        if up:
            left = first_beyond(sparse_table(low, maximum=True), i + 1, top, above=True, strict=True)
            back = first_beyond(sparse_table(low, maximum=False), left + 1, top, above=False, strict=False)
            broken = first_beyond(sparse_table(c, maximum=False), i + 1, bot, above=False, strict=True)
        else:
            left = first_beyond(sparse_table(h, maximum=False), i + 1, bot, above=False, strict=True)
            back = first_beyond(sparse_table(h, maximum=True), left + 1, bot, above=True, strict=False)
            broken = first_beyond(sparse_table(c, maximum=True), i + 1, top, above=True, strict=True)
        back = np.where(left < n, back, n)
        for out, pos in zip(states, (left, back, broken), strict=True):
            out[mask] = np.where(pos < n, pos, -1)

    def bars(values: np.ndarray) -> list[int | None]:
        return [x if x >= 0 else None for x in values.tolist()]

    kinds = np.where(disp[idx], 1, 0).tolist()
    return [
        WhaleBlock(
            WhaleKind.DISPLACEMENT if k else WhaleKind.ABSORPTION,
            Direction.BULLISH if d > 0 else Direction.BEARISH,
            i,
            top,
            bot,
            zz,
            ba,
            ra,
            i,
            lf,
            mt,
            inv,
        )
        for k, d, i, top, bot, zz, ba, ra, lf, mt, inv in zip(
            kinds,
            s.tolist(),
            idx.tolist(),
            h[idx].tolist(),
            low[idx].tolist(),
            z[idx].tolist(),
            body_atr[idx].tolist(),
            range_atr[idx].tolist(),
            bars(states[0]),
            bars(states[1]),
            bars(states[2]),
            strict=True,
        )
    ]
