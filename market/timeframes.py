"""Binance kline intervals: the one place that knows their names and lengths."""

from __future__ import annotations

import pandas as pd

# Binance spot kline intervals, in order, with their length in milliseconds (1M: calendar month, nominal 30 days).
INTERVAL_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 2_592_000_000,
}
INTERVALS = tuple(INTERVAL_MS)


def parse_interval(text: str) -> str:
    """Return the canonical Binance interval for ``text`` (``1H`` -> ``1h``; ``1M`` stays month) or raise ValueError."""
    candidate = text.strip()
    if candidate in INTERVAL_MS:
        return candidate
    lowered = candidate.lower()
    if lowered in INTERVAL_MS and lowered != "1m":  # "1M" is the month, never a loose spelling of "1m"
        return lowered
    raise ValueError(f"unknown timeframe {text!r}; use one of {', '.join(INTERVALS)}")


def interval_timedelta(interval: str) -> pd.Timedelta | pd.DateOffset:
    """The length of one candle; a calendar month for ``1M``."""
    if interval == "1M":
        return pd.DateOffset(months=1)
    return pd.Timedelta(milliseconds=INTERVAL_MS[interval])


def candle_open_time(ts: pd.Timestamp, interval: str) -> pd.Timestamp:
    """Open time of the ``interval`` candle containing ``ts``, aligned as Binance aligns them.

    Minutes, hours and days align to the Unix epoch; weeks start on Monday 00:00 UTC; months on the 1st.
    """
    ts = pd.Timestamp(ts).tz_convert("UTC") if pd.Timestamp(ts).tzinfo else pd.Timestamp(ts).tz_localize("UTC")
    if interval == "1M":
        return ts.normalize().replace(day=1)
    if interval == "1w":
        day = ts.normalize()
        return day - pd.Timedelta(days=day.weekday())
    step = INTERVAL_MS[interval]
    ms = ts.value // 1_000_000
    return pd.Timestamp((ms // step) * step, unit="ms", tz="UTC")


def window_start(candle: int, *, lookback: int = 500, block: int = 250) -> int:
    """Number of the first candle an analysis reads when candle number ``candle`` is the first not yet closed.

    Candle numbers count candles from the Unix epoch (open time // interval). The window starts at the last block
    boundary (a multiple of ``block``) at or before ``candle - lookback``, so it holds ``lookback`` to
    ``lookback + block - 1`` closed candles and its start moves once per ``block`` candles, anchored to absolute
    time, never to where a file or a request starts: the live bot, ``signal --at`` and the backtest read the same
    candles at the same bar.
    """
    return (candle - lookback) // block * block
