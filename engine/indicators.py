"""Indicators the engine computes once per frame and hands to every detector (so no detector recomputes them)."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from ict_modules.core import atr, true_range


def wilder_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, *, length: int = 14) -> np.ndarray:
    """``ict_modules.core.atr`` with its Wilder smoothing run as a linear filter (scipy's ``lfilter``, ~4x faster).

    For the detectors' length 14 the values are bit-identical to ``core.atr`` (pandas' ewm computes
    ``keep * y_prev + alpha * x`` there too; tested on every bundled series); for other lengths they may differ in
    the last bit. pandas leaves ``y`` unchanged when ``x == y_prev``; where the filter's value would differ at such
    a tie (flat true ranges), this returns ``core.atr`` itself.
    """
    tr = true_range(high, low, close)
    n = len(tr)
    out = np.empty(n)
    if n == 0:
        return out
    warm = min(length, n)
    out[:warm] = np.cumsum(tr[:warm]) / np.arange(1, warm + 1)
    if n == warm:
        return out
    alpha = 1.0 / length
    keep = 1.0 - alpha
    out[warm:], _ = lfilter([alpha], [1.0, -keep], tr[warm:], zi=[keep * out[warm - 1]])
    x, prev, y = tr[warm:], out[warm - 1 : -1], out[warm:]
    if np.any((x == prev) & (y != x)):
        return atr(high, low, close, length=length)
    return out
