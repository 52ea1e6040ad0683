"""Block-aligned analysis windows: which closed candles an analysis at a given moment reads (issue 12).

An analysis whose last entry candle closes at ``T`` reads, for every timeframe ``tf`` it uses, the candles closed by
``T`` whose candle number (open time // interval, counted from the Unix epoch) is at least
``market.timeframes.window_start(k)``, where ``k`` is the number of the first ``tf`` candle not closed at ``T``.
So each window holds 500-749 closed candles (when the data reaches back that far) and its start moves once per 250
candles at absolute times: ``analyze`` (live bot, ``signal --at``) and ``ict_signal_engine.analyses_over``
(backtest) read the same candles at the same bar, wherever the loaded data starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.registry import close_ns_of
from market.timeframes import INTERVAL_MS, window_start

WINDOW_LOOKBACK = 500  # closed candles an analysis reads at least
WINDOW_BLOCK = 250  # the window start moves in steps of this many candles
DAY_MS = 86_400_000
WINDOW_FETCH = WINDOW_LOOKBACK + WINDOW_BLOCK  # candles to request so that any window is covered (at most 749)


def candle_numbers(index: pd.DatetimeIndex, tf: str) -> np.ndarray:
    """Candle numbers of the open times ``index``: open time // interval since the epoch (months for ``1M``)."""
    if tf == "1M":
        return np.asarray((index.year - 1970) * 12 + index.month - 1, dtype=np.int64)
    return index.as_unit("ns").asi8 // (INTERVAL_MS[tf] * 1_000_000)


def first_unclosed(close_time: pd.Timestamp, tf: str) -> int:
    """Number of the first ``tf`` candle not yet closed at ``close_time`` (the candle containing that moment, as
    ``market.timeframes.candle_open_time`` aligns it; integer arithmetic, it runs once per bar in a backtest)."""
    ms = pd.Timestamp(close_time).value // 1_000_000
    if tf == "1M":
        moment = pd.Timestamp(close_time)
        return (moment.year - 1970) * 12 + moment.month - 1
    if tf == "1w":
        day = ms // DAY_MS
        monday = day - (day + 3) % 7  # 1970-01-01 was a Thursday
        return monday * DAY_MS // INTERVAL_MS["1w"]
    return ms // INTERVAL_MS[tf]


@dataclass(frozen=True)
class FrameIndex:
    """One frame's candle numbers and close times, to find its window at many moments without recomputing them."""

    tf: str
    numbers: np.ndarray
    close_ns: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, tf: str) -> FrameIndex:
        return cls(tf, candle_numbers(frame.index, tf), close_ns_of(frame, tf))

    def bounds(
        self, close_time: pd.Timestamp, *, lookback: int = WINDOW_LOOKBACK, block: int = WINDOW_BLOCK
    ) -> tuple[int, int]:
        """Positions ``[lo, hi)`` of the window an analysis at ``close_time`` reads."""
        start = window_start(first_unclosed(close_time, self.tf), lookback=lookback, block=block)
        lo = int(np.searchsorted(self.numbers, start, side="left"))
        hi = int(np.searchsorted(self.close_ns, pd.Timestamp(close_time).value, side="right"))
        return lo, max(lo, hi)


def analysis_frames(
    frames: Mapping[str, pd.DataFrame],
    timeframe: str,
    close_time: pd.Timestamp,
    *,
    lookback: int = WINDOW_LOOKBACK,
    block: int = WINDOW_BLOCK,
    indexes: Mapping[str, FrameIndex] | None = None,
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The windows an analysis of ``timeframe`` at ``close_time`` (close of its last entry candle) reads.

    ``frames`` may hold any longer history (entry timeframe and higher ones); ``indexes`` their precomputed
    :class:`FrameIndex` (optional). Returns the windows, entry timeframe first, and the higher timeframes whose
    window is empty (left out, as ``analyze`` leaves them out).
    """
    out: dict[str, pd.DataFrame] = {}
    empty: list[str] = []
    for tf in (timeframe, *(t for t in frames if t != timeframe)):
        index = indexes[tf] if indexes is not None else FrameIndex.of(frames[tf], tf)
        lo, hi = index.bounds(close_time, lookback=lookback, block=block)
        if hi == lo and tf != timeframe:
            empty.append(tf)
            continue
        out[tf] = frames[tf].iloc[lo:hi]
    return out, empty


def unavailable_names(higher: Sequence[str], absent: Sequence[str]) -> tuple[str, ...]:
    """``"<tf> candles"`` for the higher timeframes an analysis ran without, in the order of ``higher``."""
    return tuple(f"{tf} candles" for tf in higher if tf in absent)
