"""Test helpers: hand-built candle frames and the bundled real candles."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from ict_modules.core import validate_candles

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"


def make_candles(
    rows: list[tuple[float, float, float, float]] | list[tuple[float, float, float, float, float]],
    *,
    start: str = "2024-01-01 00:00",
    freq: str = "1h",
    volume: float = 100.0,
) -> pd.DataFrame:
    """A validated candle frame from (open, high, low, close[, volume]) tuples, one per bar from ``start``."""
    data = [(*r, volume) if len(r) == 4 else tuple(r) for r in rows]
    frame = pd.DataFrame(data, columns=["open", "high", "low", "close", "volume"], dtype="float64")
    frame.index = pd.date_range(start, periods=len(frame), freq=freq, tz="UTC")
    return validate_candles(frame)


@cache
def _read(symbol: str, interval: str) -> pd.DataFrame:
    frame = pd.read_csv(SAMPLE_DIR / f"{symbol}-{interval}.csv.gz")
    frame.index = pd.to_datetime(frame.pop("open_time"), unit="ms", utc=True)
    return validate_candles(frame)


def sample_candles(symbol: str = "BTCUSDT", interval: str = "1h", *, tail: int | None = None) -> pd.DataFrame:
    """Real Binance candles from data/sample (a copy, so tests may mutate it)."""
    frame = _read(symbol, interval)
    return (frame.iloc[-tail:] if tail else frame).copy()


def scaled(candles: pd.DataFrame, factor: float = 1e-6) -> pd.DataFrame:
    """Prices times ``factor`` and volume divided by it: the scale-invariance check."""
    out = candles.copy()
    out[["open", "high", "low", "close"]] *= factor
    out["volume"] /= factor
    return out


# Several symbols and timeframes for causality tests (SOLUSDT is the lowest-priced coin in the bundle).
CAUSALITY_SERIES = [("BTCUSDT", "1h"), ("ETHUSDT", "4h"), ("SOLUSDT", "1h"), ("BTCUSDT", "15m")]


def cut_points(n: int, count: int = 12, *, start: int = 30) -> list[int]:
    """Evenly spread prefix lengths in [start, n], always including n."""
    return sorted({*np.linspace(start, n, count).astype(int).tolist(), n})
