"""Swing points: pivot highs and lows.

Definition:
    Pivot high at bar i: ``high[i] > max(high[i-left : i])`` and ``high[i] >= max(high[i+1 : i+right+1])``.
    Pivot low at bar i: ``low[i] < min(low[i-left : i])`` and ``low[i] <= min(low[i+1 : i+right+1])``.
    Strict on the left and non-strict on the right, so a flat top of equal highs yields its first bar once.
    A pivot is only knowable ``right`` bars later: ``confirmed_at = i + right`` (no lookahead).

Two sets are used across the project: *internal* swings (short lengths, minor structure) and *swing*
swings (long lengths, major structure), see :func:`swing_structure`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from .core import CandleArrays, ohlcv_arrays


class SwingKind(StrEnum):
    HIGH = "high"
    LOW = "low"


@dataclass(frozen=True, slots=True)
class SwingPoint:
    kind: SwingKind
    index: int  # bar of the pivot candle
    price: float  # its high (HIGH) or low (LOW)
    confirmed_at: int  # index + right


@dataclass(frozen=True, slots=True)
class SwingStructure:
    internal: list[SwingPoint]
    swing: list[SwingPoint]


def _window_max(x: np.ndarray, start: int, width: int, m: int) -> np.ndarray:
    """``out[t] = max(x[start + t : start + t + width])`` for ``t < m``, by doubling (log2(width) passes)."""
    cur = x[start : start + m + width - 1]
    span = 1
    while 2 * span <= width:
        cur = np.maximum(cur[:-span], cur[span:])
        span *= 2
    return np.maximum(cur[:m], cur[width - span : width - span + m])


def pivot_mask(values: np.ndarray, *, left: int, right: int, highs: bool) -> np.ndarray:
    """Boolean mask of pivot bars (see module docstring); ``highs=False`` finds lows."""
    n = len(values)
    mask = np.zeros(n, dtype=bool)
    if left < 1 or right < 0:
        raise ValueError("left must be >= 1 and right >= 0")
    if n < left + right + 1:
        return mask
    x = values if highs else -values
    centre = x[left : n - right]
    m = len(centre)
    if left == right:  # one pass of window maxima serves both sides
        window = _window_max(x, 0, left, m + left + 1)
        ok = (centre > window[:m]) & (centre >= window[left + 1 :])
    else:
        ok = centre > _window_max(x, 0, left, m)
        if right:
            ok &= centre >= _window_max(x, left + 1, right, m)
    mask[left : n - right] = ok
    return mask


def detect_swing_points(
    candles: pd.DataFrame, *, left: int = 5, right: int = 5, arrays: CandleArrays | None = None
) -> list[SwingPoint]:
    """Pivot highs and lows of ``candles`` in bar order (by ``index``; a high before a low on the same bar).

    Args:
        candles: validated candle frame.
        left: bars before the pivot that must be strictly lower (higher for lows).
        right: bars after the pivot that must not exceed it; also the confirmation delay in bars.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.
    """
    _, high, low, _, _ = ohlcv_arrays(candles, arrays)
    points = [
        SwingPoint(SwingKind.HIGH, int(i), float(high[i]), int(i) + right)
        for i in np.flatnonzero(pivot_mask(high, left=left, right=right, highs=True))
    ]
    points += [
        SwingPoint(SwingKind.LOW, int(i), float(low[i]), int(i) + right)
        for i in np.flatnonzero(pivot_mask(low, left=left, right=right, highs=False))
    ]
    points.sort(key=lambda p: (p.index, p.kind != SwingKind.HIGH))
    return points


def swing_structure(candles: pd.DataFrame, *, internal_length: int = 3, swing_length: int = 10) -> SwingStructure:
    """Internal (minor) and swing (major) pivots, each with ``left = right = length``."""
    return SwingStructure(
        internal=detect_swing_points(candles, left=internal_length, right=internal_length),
        swing=detect_swing_points(candles, left=swing_length, right=swing_length),
    )
