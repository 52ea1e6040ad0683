"""Shared types of the detectors: the candle frame, directions, ATR, and the causality convention.

Causality convention (every detector follows it):
- Objects refer to candles by integer bar position in the frame they were computed on.
- ``confirmed_at`` is the bar at whose close the object became knowable.
- Later state changes are fields named ``*_at`` (``mitigated_at``, ``filled_at``, ``swept_at``, ...) holding the
  bar of the change or ``None``. Every other field is fixed at ``confirmed_at``.
- Hence the objects of a run on ``candles[:k]`` equal ``known_at(full_run, k - 1)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from enum import StrEnum
from typing import NamedTuple, TypeVar

import numpy as np
import pandas as pd

OHLCV = ("open", "high", "low", "close", "volume")


class Direction(StrEnum):
    BULLISH = "bullish"
    BEARISH = "bearish"

    @property
    def sign(self) -> int:
        return 1 if self is Direction.BULLISH else -1

    @property
    def opposite(self) -> Direction:
        return Direction.BEARISH if self is Direction.BULLISH else Direction.BULLISH


def validate_candles(candles: pd.DataFrame) -> pd.DataFrame:
    """Return ``candles`` as the canonical frame or raise ``ValueError`` naming the problem.

    Canonical: a UTC ``DatetimeIndex`` (candle open times), strictly increasing; float64 columns
    open/high/low/close/volume with no NaN; high >= max(open, close); low <= min(open, close); low > 0;
    volume >= 0. Extra columns are dropped.
    """
    if not isinstance(candles, pd.DataFrame):
        raise ValueError(f"candles must be a pandas DataFrame, got {type(candles).__name__}")
    missing = [c for c in OHLCV if c not in candles.columns]
    if missing:
        raise ValueError(f"candles lack column(s) {', '.join(missing)}")
    index = candles.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError("candles need a DatetimeIndex of candle open times")
    if index.tz is None or str(index.tz) != "UTC":
        raise ValueError(f"candle index must be UTC, got {index.tz}")
    if not index.is_monotonic_increasing or index.has_duplicates:
        raise ValueError("candle times must be strictly increasing without duplicates")
    frame = candles.loc[:, list(OHLCV)]
    try:
        frame = frame.astype("float64")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"candle columns must be numeric: {exc}") from None
    values = frame.to_numpy()
    if np.isnan(values).any() or np.isinf(values).any():
        bad = frame.index[np.isnan(values).any(axis=1) | np.isinf(values).any(axis=1)][0]
        raise ValueError(f"candles contain NaN or infinite values (first at {bad})")
    o, h, low, c, v = values.T
    checks = (
        (h < np.maximum(o, c), "high below open/close"),
        (low > np.minimum(o, c), "low above open/close"),
        (low <= 0, "non-positive low"),
        (v < 0, "negative volume"),
    )
    for bad_rows, reason in checks:
        if bad_rows.any():
            raise ValueError(f"candles have {reason} at {frame.index[np.argmax(bad_rows)]}")
    return frame


class CandleArrays(NamedTuple):
    """A frame's columns as float64 arrays (what :func:`ohlcv_arrays` returns)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def ohlcv_arrays(candles: pd.DataFrame, given: CandleArrays | None = None) -> CandleArrays:
    """open, high, low, close, volume as float64 numpy arrays (no copy when already float64); ``given`` (the arrays
    a caller extracted once for these candles, e.g. the engine for every detector of a frame) is returned as is."""
    if given is not None:
        return given
    return CandleArrays(*(candles[c].to_numpy(dtype=np.float64) for c in OHLCV))


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    prev_close = np.concatenate(([close[0]], close[:-1])) if len(close) else close
    return np.maximum(high, prev_close) - np.minimum(low, prev_close)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, *, length: int = 14) -> np.ndarray:
    """Wilder's average true range, causal: value at bar i uses bars 0..i only.

    The first ``length`` bars use the running mean of the true range (no NaN warm-up), then Wilder smoothing
    ``atr[i] = atr[i-1] + (tr[i] - atr[i-1]) / length``.
    """
    tr = true_range(high, low, close)
    n = len(tr)
    out = np.empty(n)
    if n == 0:
        return out
    warm = min(length, n)
    out[:warm] = np.cumsum(tr[:warm]) / np.arange(1, warm + 1)
    if n > warm:
        # Wilder smoothing is an EMA with alpha = 1/length; pandas runs it in C.
        tail = pd.Series(np.concatenate(([out[warm - 1]], tr[warm:])))
        out[warm:] = tail.ewm(alpha=1.0 / length, adjust=False).mean().to_numpy()[1:]
    return out


def atr_or(
    given: np.ndarray | None, high: np.ndarray, low: np.ndarray, close: np.ndarray, *, length: int = 14
) -> np.ndarray:
    """``given`` (an ATR the caller computed once for these candles) or :func:`atr` of them."""
    return atr(high, low, close, length=length) if given is None else given


T = TypeVar("T")


def known_at(objects: Iterable[T], bar: int) -> list[T]:
    """The objects, and their states, as known at the close of ``bar``: the causality reference."""
    out = []
    for obj in objects:
        if obj.confirmed_at > bar:
            continue
        changes = {
            f.name: None
            for f in dataclasses.fields(obj)
            if f.name.endswith("_at")
            and f.name != "confirmed_at"
            and isinstance(getattr(obj, f.name), int | np.integer)
            and getattr(obj, f.name) > bar
            and f.name not in getattr(obj, "FIXED_AT_FIELDS", ())
        }
        out.append(dataclasses.replace(obj, **changes) if changes else obj)
    return out
