"""Backtest data: the candles a replay loads, cut causally per bar, and the outcome of a signal resolved by the
live position state machine (``tracking.state.apply_candle``) over the finest candles the source has.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

import ict_signal_engine as engine
from engine.windows import WINDOW_BLOCK, FrameIndex, analysis_frames
from market.timeframes import INTERVAL_MS, interval_timedelta
from tracking.state import apply_candle

logger = logging.getLogger(__name__)

FINEST_CHUNK = 1000  # finest candles fetched per request while resolving a position


# ---------------------------------------------------------------------------------------------------------------
# Causal frame windows
# ---------------------------------------------------------------------------------------------------------------


class CausalFrames:
    """Preloaded candles of the entry timeframe and its higher timeframes, cut causally at each entry bar.

    ``at(i)`` returns, for entry bar ``i`` (closing at ``close[i]``), per timeframe the candles closed by
    ``close[i]``: with ``block`` (the replay), exactly the block-aligned window the live analysis reads
    (``engine.windows.analysis_frames``: ``lookback`` to ``lookback + block - 1`` candles, start anchored to
    absolute time); without, the last ``lookback`` of them. Slices are views: no copy, O(log n) per bar.
    """

    def __init__(
        self, frames: dict[str, Any], entry_tf: str, *, lookback: int | dict[str, int], block: int | None = None
    ) -> None:
        self.frames = frames
        self.entry_tf = entry_tf
        self.lookback = lookback if isinstance(lookback, dict) else dict.fromkeys(frames, lookback)
        self.block = block
        self.close_ns: dict[str, np.ndarray] = {}
        for tf, frame in frames.items():
            closes = frame.index + interval_timedelta(tf)
            self.close_ns[tf] = pd.DatetimeIndex(closes).as_unit("ns").asi8
        self.entry = frames[entry_tf]
        self.indexes = {tf: FrameIndex.of(frame, tf) for tf, frame in frames.items()} if block else None

    def __len__(self) -> int:
        return len(self.entry)

    def close_time(self, i: int):
        return pd.Timestamp(self.close_ns[self.entry_tf][i], tz="UTC")

    def at(self, i: int) -> dict[str, Any]:
        if self.block:
            lookback = self.lookback[self.entry_tf]
            windows, _ = analysis_frames(
                self.frames,
                self.entry_tf,
                self.close_time(i),
                lookback=lookback,
                block=self.block,
                indexes=self.indexes,
            )
            return windows
        cut = self.close_ns[self.entry_tf][i]
        out = {}
        for tf, frame in self.frames.items():
            end = i + 1 if tf == self.entry_tf else int(np.searchsorted(self.close_ns[tf], cut, side="right"))
            out[tf] = frame.iloc[max(0, end - self.lookback[tf]) : end]
        return out


# ---------------------------------------------------------------------------------------------------------------
# Outcome resolution: the live position state machine over the finest candles available
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CandleArrays:
    """One interval's candles as numpy arrays (open times and close times in ns since the epoch)."""

    interval: str
    open_ns: np.ndarray
    close_ns: np.ndarray
    o: np.ndarray
    h: np.ndarray
    low: np.ndarray
    c: np.ndarray

    @classmethod
    def from_frame(cls, frame, interval: str) -> CandleArrays:
        index = pd.DatetimeIndex(frame.index).as_unit("ns")
        return cls(
            interval,
            index.asi8,
            (index + interval_timedelta(interval)).as_unit("ns").asi8,
            *(frame[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close")),
        )

    def __len__(self) -> int:
        return len(self.open_ns)


def _dt(ns: int) -> datetime:
    """Aware UTC datetime of an epoch-ns candle time (candle times are whole seconds)."""
    return datetime.fromtimestamp(int(ns) // 1_000_000_000, tz=UTC)


def _ns(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000) * 1000


def resolve_position(position, chunks: Iterable[CandleArrays]):
    """Feed ``position`` through ``position_manager.apply_candle`` on the candles opening at or after its
    ``last_checked``, chunk after chunk, until it closes.

    ``chunks`` may be lazy and may switch interval (finest first, then the entry timeframe where the finest data
    ends): each chunk continues at the first of its candles opening at or after the position's ``last_checked``.
    Returns ``(position, intervals_used)``; the position is still active when the candles ran out first.
    """
    used: list[str] = []
    for arrays in chunks:
        if not position.is_active:
            break
        i = int(np.searchsorted(arrays.open_ns, _ns(position.last_checked), side="left"))
        n = len(arrays)
        if i >= n:
            continue
        if arrays.interval not in used:
            used.append(arrays.interval)
        open_ns, close_ns = arrays.open_ns, arrays.close_ns
        o, h, low, c = arrays.o, arrays.h, arrays.low, arrays.c
        while i < n and position.is_active:
            position, _ = apply_candle(
                position,
                _dt(open_ns[i]),
                float(o[i]),
                float(h[i]),
                float(low[i]),
                float(c[i]),
                close_time=_dt(close_ns[i]),
            )
            i += 1
    return position, tuple(used)


def _evaluate_window(frames: CausalFrames, i: int, *, symbol: str, higher: Sequence[str], config, missing):
    """The engine on exactly the frames ``analyze(market, symbol, tf, end=close of bar i)`` fetches."""
    cut = frames.at(i)
    gone = []
    for tf in higher:
        if tf in missing or tf not in cut or len(cut[tf]) == 0:
            cut.pop(tf, None)
            gone.append(f"{tf} candles")
    result = engine.generate_signal(cut, symbol=symbol, timeframe=frames.entry_tf, config=config)
    if gone:
        result = replace(result, unavailable=(*result.unavailable, *gone))
    return result


def load_frames(market, symbol: str, timeframe: str, *, start, end, lookback: int):
    """Entry and higher-timeframe candles for a replay of [start, end] with ``lookback`` candles of history.

    Returns ``(frames, higher, missing)``: ``missing`` = higher timeframes the source cannot serve at all.
    """
    step = interval_timedelta(timeframe)
    history = lookback + WINDOW_BLOCK  # a block-aligned window reaches back up to lookback + block - 1 candles
    entry = market.klines(symbol, timeframe, None, start=start - history * step, end=end)
    frames = {timeframe: entry}
    higher = engine.higher_timeframes(timeframe)
    missing = []
    first = entry.index[0] if len(entry) else start
    for tf in higher:
        try:
            frame = market.klines(symbol, tf, None, start=first - (history + 1) * interval_timedelta(tf), end=end)
        except Exception as exc:
            if not engine._is_missing_interval(exc):
                raise
            frame = None
        if frame is None or len(frame) == 0:
            logger.warning("%s %s candles unavailable; the engine runs without them", symbol, tf)
            missing.append(tf)
            continue
        frames[tf] = frame
    return frames, tuple(higher), tuple(missing)


def _finest_chunks(market, symbol: str, timeframe: str, signal, entry: CandleArrays, *, end) -> Iterable[CandleArrays]:
    """Lazy candles for resolving ``signal``: the finest interval the source has at the signal time, in chunks;
    where that series ends, the finest interval the source has just after it (e.g. 1m, then 1h); finally the
    entry timeframe. Only intervals finer than the entry timeframe are fetched."""
    cursor = pd.Timestamp(signal.time)
    tried: set[str] = set()
    while True:
        at = cursor if not tried else cursor + pd.Timedelta(seconds=1)  # just past the end of the last series
        try:
            finest = market.finest_interval(symbol, at)
        except Exception as exc:  # no finer data at that time (sample) or a source error: entry timeframe
            logger.debug("finest interval for %s at %s unavailable: %s", symbol, at, exc)
            break
        if finest in tried or INTERVAL_MS.get(finest, 0) >= INTERVAL_MS.get(timeframe, 0):
            break
        tried.add(finest)
        while True:
            try:
                frame = market.klines(symbol, finest, FINEST_CHUNK, start=cursor, end=end)
            except Exception as exc:
                logger.warning(
                    "finest candles %s %s from %s unavailable (%s); coarser candles follow", symbol, finest, cursor, exc
                )
                break
            if len(frame) == 0:
                break
            chunk = CandleArrays.from_frame(frame, finest)
            yield chunk
            cursor = pd.Timestamp(int(chunk.close_ns[-1]), tz="UTC")
            if len(frame) < FINEST_CHUNK:
                break
    yield entry
