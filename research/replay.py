"""Backtest data: the candles a replay loads, the engine's result at each bar on the live block-aligned windows
(``EngineCursor``), and the outcome of a signal resolved by the live position state machine
(``tracking.state.apply_candle``) over the finest candles the source has.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd

import ict_signal_engine as engine
from engine.windows import WINDOW_BLOCK, FrameIndex, analysis_frames, unavailable_names
from market.timeframes import INTERVAL_MS, interval_timedelta
from tracking.state import apply_candle

logger = logging.getLogger(__name__)

FINEST_CHUNK = 1000  # finest candles fetched per request while resolving a position


# ---------------------------------------------------------------------------------------------------------------
# The engine at each bar: the live block-aligned windows, one detector run per block
# ---------------------------------------------------------------------------------------------------------------


class EngineCursor:
    """The engine's result at entry bars asked in ascending order, each equal to ``analyze`` at the bar's close
    (``python bot.py signal SYMBOL TF --at <close>``).

    The same computation as ``ict_signal_engine.analyses_over`` over every bar (tested equal at every bar): bars
    whose windows (``engine.windows``) start at the same candles form a group of about 250 bars, one ``prepare``
    over the windows of the group's last bar serves them all, and ``signal_at`` reads each bar. The difference:
    the replay asks only for the bars where it is flat, and which ones those are depends on the results, so the
    results are computed on demand (``analyses_over`` needs its bars up front and runs ``signal_at`` on each).
    """

    def __init__(self, frames: dict[str, pd.DataFrame], *, symbol: str, timeframe: str, absent=(), config=None):
        self.frames = frames
        self.symbol = symbol
        self.timeframe = timeframe
        self.absent = tuple(absent)
        self.config = config
        self.higher = engine.higher_timeframes(timeframe)
        self.indexes = {tf: FrameIndex.of(frame, tf) for tf, frame in frames.items()}
        self.closes = frames[timeframe].index + interval_timedelta(timeframe)
        self._group = (0, -1)  # bars [first, last] the prepared state serves
        self._prepared = None
        self._offset = 0  # position of the prepared entry window's first candle in the history
        self._missing: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.closes)

    def close_time(self, bar: int) -> pd.Timestamp:
        return self.closes[bar]

    def result(self, bar: int):
        """The engine's result at the close of entry bar ``bar``."""
        if not self._group[0] <= bar <= self._group[1]:
            self._prepare(bar)
        result, _ = engine.signal_at(self._prepared, bar - self._offset, symbol=self.symbol, config=self.config)
        if self._missing:
            result = replace(result, unavailable=(*result.unavailable, *self._missing))
        return result

    def _key(self, bar: int) -> tuple:
        """What decides the candles bar's analysis reads besides its own close (as ``analyses_over`` groups):
        each window's start, and which higher-timeframe windows are empty."""
        out = []
        for tf, index in self.indexes.items():
            lo, hi = index.bounds(self.closes[bar])
            out.append((lo, tf != self.timeframe and hi == lo))
        return tuple(out)

    def _last_of_group(self, bar: int) -> int:
        """The last bar whose key equals ``bar``'s. The keys with that value form one run of bars: each window
        start never decreases with the bar, and while it stays put the window only grows, so a higher timeframe's
        window is empty only at the run's beginning. So a galloping then binary search finds the run's end with
        ~2 log2(250) keys instead of one per bar (each costs ~50 us)."""
        key, n = self._key(bar), len(self.closes)
        inside, step = bar, 1
        while inside + step < n and self._key(inside + step) == key:
            inside, step = inside + step, step * 2
        outside = min(inside + step, n)  # first bar known to differ (or n)
        while outside - inside > 1:
            mid = (inside + outside) // 2
            inside, outside = (mid, outside) if self._key(mid) == key else (inside, mid)
        return inside

    def _prepare(self, bar: int) -> None:
        last = self._last_of_group(bar)
        windows, empty = analysis_frames(self.frames, self.timeframe, self.closes[last], indexes=self.indexes)
        prepared = engine.prepare(windows, timeframe=self.timeframe, config=self.config)  # may raise: not kept
        self._offset, _ = self.indexes[self.timeframe].bounds(self.closes[last])
        self._prepared, self._group = prepared, (bar, last)
        self._missing = unavailable_names(self.higher, (*self.absent, *empty))


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


def candle_steps(position, chunks: Iterable[CandleArrays]):
    """Feed ``position`` through ``tracking.state.apply_candle`` on the candles opening at or after its
    ``last_checked``, chunk after chunk, until it closes; yield ``(position, events, interval, close_time)`` per
    candle applied.

    ``chunks`` may be lazy and may switch interval (finest first, then the entry timeframe where the finest data
    ends): each chunk continues at the first of its candles opening at or after the position's ``last_checked``.
    """
    for arrays in chunks:
        if not position.is_active:
            return
        i = int(np.searchsorted(arrays.open_ns, _ns(position.last_checked), side="left"))
        open_ns, close_ns = arrays.open_ns, arrays.close_ns
        o, h, low, c = arrays.o, arrays.h, arrays.low, arrays.c
        while i < len(arrays) and position.is_active:
            closed = _dt(close_ns[i])
            position, events = apply_candle(
                position, _dt(open_ns[i]), float(o[i]), float(h[i]), float(low[i]), float(c[i]), close_time=closed
            )
            yield position, events, arrays.interval, closed
            i += 1


def resolve_position(position, chunks: Iterable[CandleArrays]):
    """``position`` through :func:`candle_steps` until it closes. Returns ``(position, intervals_used)``; the
    position is still active when the candles ran out first."""
    used: list[str] = []
    for now, _, interval, _ in candle_steps(position, chunks):
        position = now
        if interval not in used:
            used.append(interval)
    return position, tuple(used)


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
