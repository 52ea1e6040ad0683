"""Backtest: replay history bar by bar through the live engine and the live position state machine.

Definitions (docs/ml-backtest.md has the full story and measured numbers)
-----------------------------------------------------------------------
- **Causality** (``Mode.EXACT``, the default): the signal at entry-timeframe bar ``t`` is
  ``ict_signal_engine.generate_signal`` over exactly the frames ``python bot.py signal SYMBOL TF --at <close of t>``
  fetches: the last ``CANDLES_PER_FRAME`` (500) closed candles of the entry timeframe ending with bar ``t`` and,
  per higher timeframe, the last 500 candles closed by the close of ``t``. Nothing after the close of ``t`` is
  visible. ``Mode.FAST`` runs the detectors once over the loaded history (``prepare``) and reads their state as
  known at ``t`` (``signal_at``): equal to the engine on the whole prefix up to ``t``, not to the 500-candle window.
- **Outcome**: a signal becomes a ``position_manager.Position`` and is fed, candle by candle, to
  ``position_manager.apply_candle`` (the same pure state machine the live monitor uses; stop first when one candle
  touches both) on the candles that open at or after the signal's close: the finest interval the market data has
  at that time (``finest_interval``: 1m on Binance; in the sample data 1m for BTCUSDT mid-2025, 5m for ETHUSDT
  late 2025, 15m in 2026); where that series ends, the next finest the source has; finally the entry timeframe.
- **One position at a time per symbol and timeframe**: while a position is pending or open no new signal is
  taken (the engine is not even run); the next candidate bar is the first whose close is at or after the close of
  the candle that closed the position. A position still open at the end of the data is reported as open and left
  out of the statistics.
- **Statistics** (over closed trades; EXPIRED = the limit entry never filled, counted apart, no R):
  win = R > 0, loss = R < 0; win rate = wins / trades; average R = expectancy = mean R per trade (= win rate *
  average win - loss rate * average loss); profit factor = sum of winning R / |sum of losing R| (None without
  losses); max drawdown = the largest peak-to-trough fall of the cumulative R curve, in R.
- **Workers**: ``workers > 1`` replays segments in forked processes and joins them where the trajectories meet,
  with exactly the sequential result (``_parallel``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

import ict_signal_engine as engine
from market.timeframes import INTERVAL_MS, interval_timedelta
from store import journal
from tracking.state import Position, apply_candle

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stats:
    """Performance of a group of closed trades; R = profit in units of the initial risk |entry - SL|."""

    trades: int
    wins: int
    losses: int
    breakeven: int
    win_rate: float | None  # wins / trades
    average_r: float | None  # mean R per trade (= expectancy)
    average_win_r: float | None
    average_loss_r: float | None
    expectancy_r: float | None  # win_rate * avg win + loss rate * avg loss (avg loss negative)
    total_r: float
    profit_factor: float | None  # None when there is no losing trade
    max_drawdown_r: float
    tp1_rate: float | None  # share of trades that reached TP1 before the stop (the ML label)


def stats_of(r_multiples: Sequence[float], tp1_hits: Sequence[bool] | None = None) -> Stats:
    """Statistics of R multiples in time order (see the module docstring for the definitions)."""
    r = np.asarray(list(r_multiples), dtype=float)
    n = len(r)
    wins, losses = r[r > 0], r[r < 0]
    equity = np.concatenate(([0.0], np.cumsum(r)))
    drawdown = float(np.max(np.maximum.accumulate(equity) - equity)) if n else 0.0
    rnd = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
    expectancy = None
    if n:
        expectancy = len(wins) / n * (wins.mean() if len(wins) else 0.0) + len(losses) / n * (
            losses.mean() if len(losses) else 0.0
        )
    return Stats(
        trades=n,
        wins=len(wins),
        losses=len(losses),
        breakeven=int(n - len(wins) - len(losses)),
        win_rate=rnd(len(wins) / n) if n else None,
        average_r=rnd(r.mean()) if n else None,
        average_win_r=rnd(wins.mean()) if len(wins) else None,
        average_loss_r=rnd(losses.mean()) if len(losses) else None,
        expectancy_r=rnd(expectancy),
        total_r=round(float(r.sum()), 4),
        profit_factor=rnd(wins.sum() / -losses.sum()) if len(losses) else None,
        max_drawdown_r=round(drawdown, 4),
        tp1_rate=rnd(np.mean(tp1_hits)) if tp1_hits is not None and len(tp1_hits) else None,
    )


def format_stats_line(label: str, s: Stats) -> str:
    if not s.trades:
        return f"{label:<14} no trades"
    pf = "inf" if s.profit_factor is None else f"{s.profit_factor:.2f}"
    return (
        f"{label:<14} trades {s.trades:>4}  win {s.win_rate:6.1%}  avg R {s.average_r:+.3f}  "
        f"PF {pf:>5}  expectancy {s.expectancy_r:+.3f} R  total {s.total_r:+.2f} R  maxDD {s.max_drawdown_r:.2f} R"
    )


# ---------------------------------------------------------------------------------------------------------------
# Progress bar (stderr, only on a terminal: --json stdout stays clean, logs stay clean)
# ---------------------------------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on ``stream`` (stderr) when it is a terminal; silent otherwise."""

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None, enabled: bool | None = None):
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = time.perf_counter()
        self._last = -1.0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last < 0.1 and done < self.total:
            return
        self._last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        elapsed = now - self.started
        self.stream.write(f"\r{self.label} [{bar:<30}] {frac:6.1%} {done}/{self.total} bars {elapsed:5.1f} s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(self.total)
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------------------------------------------
# Equity curve
# ---------------------------------------------------------------------------------------------------------------


def render_equity_png(times: Sequence[datetime], r_multiples: Sequence[float], title: str) -> bytes:
    """PNG of the cumulative R curve (and its drawdown) over trade close times."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    equity = np.cumsum(np.asarray(list(r_multiples), dtype=float))
    fig, (ax, ax_dd) = plt.subplots(
        2, 1, figsize=(10, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, constrained_layout=True
    )
    try:
        if len(equity):
            x = list(times)
            ax.step(x, equity, where="post", color="#1f77b4", linewidth=1.4)
            ax.axhline(0, color="#888", linewidth=0.8)
            peak = np.maximum.accumulate(np.concatenate(([0.0], equity)))[1:]
            ax_dd.fill_between(x, equity - peak, 0, step="post", color="#d62728", alpha=0.4)
        else:
            ax.text(0.5, 0.5, "no closed trades", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_ylabel("cumulative R")
        ax_dd.set_ylabel("drawdown R")
        ax.grid(alpha=0.3)
        ax_dd.grid(alpha=0.3)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# Causal frame windows
# ---------------------------------------------------------------------------------------------------------------


class CausalFrames:
    """Preloaded candles of the entry timeframe and its higher timeframes, cut causally at each entry bar.

    ``at(i)`` returns, for entry bar ``i`` (closing at ``close[i]``), the last ``lookback`` entry candles ending
    with ``i`` and, per higher timeframe, the last ``lookback`` candles whose close (open + interval) is at or
    before ``close[i]``. Slices are views: no copy, O(log n) per bar.
    """

    def __init__(self, frames: dict[str, Any], entry_tf: str, *, lookback: int | dict[str, int]) -> None:
        self.frames = frames
        self.entry_tf = entry_tf
        self.lookback = lookback if isinstance(lookback, dict) else dict.fromkeys(frames, lookback)
        self.close_ns: dict[str, np.ndarray] = {}
        for tf, frame in frames.items():
            closes = frame.index + interval_timedelta(tf)
            self.close_ns[tf] = pd.DatetimeIndex(closes).as_unit("ns").asi8
        self.entry = frames[entry_tf]

    def __len__(self) -> int:
        return len(self.entry)

    def close_time(self, i: int):
        return pd.Timestamp(self.close_ns[self.entry_tf][i], tz="UTC")

    def at(self, i: int) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------------------------
# The replay
# ---------------------------------------------------------------------------------------------------------------

FINEST_CHUNK = 1000  # finest candles fetched per request while resolving a position


@dataclass(frozen=True, slots=True)
class Trade:
    """A signal the backtest took and what the position state machine made of it."""

    signal: Any  # signal_model.Signal
    bar: int  # entry-timeframe bar (index in the loaded frame) the signal was computed at
    position: Any  # position_manager.Position: final state (closed, or still active when the data ended)
    resolution: tuple[str, ...]  # intervals whose candles resolved it, finest first

    @property
    def outcome(self):
        return self.position.outcome

    @property
    def closed(self) -> bool:
        return self.position.outcome is not None

    @property
    def expired(self) -> bool:
        return self.closed and self.position.outcome.fill_price is None

    @property
    def traded(self) -> bool:
        """Filled and closed: counts in the statistics."""
        return self.closed and not self.expired


@dataclass(frozen=True, slots=True)
class SymbolRun:
    symbol: str
    timeframe: str
    first_bar_time: datetime | None
    last_bar_time: datetime | None
    bars: int  # entry-timeframe bars in the tested range
    evaluated: int  # bars the engine ran on (flat bars only)
    trades: tuple[Trade, ...]
    unavailable: tuple[str, ...]  # higher timeframes the source could not serve
    seconds: float


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
    entry = market.klines(symbol, timeframe, None, start=start - lookback * step, end=end)
    frames = {timeframe: entry}
    higher = engine.higher_timeframes(timeframe)
    missing = []
    first = entry.index[0] if len(entry) else start
    for tf in higher:
        try:
            frame = market.klines(symbol, tf, None, start=first - (lookback + 1) * interval_timedelta(tf), end=end)
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


class Mode(StrEnum):
    """How the engine is evaluated at each bar; both are strictly causal and use the live engine unchanged.

    - ``EXACT`` (default): ``generate_signal`` on exactly the frames the live analysis (``signal --at``) fetches:
      the last 500 candles per timeframe. Every signal equals ``python bot.py signal SYMBOL TF --at t``. Costs one
      full detector run per evaluated bar.
    - ``FAST``: ``ict_signal_engine.prepare`` runs the detectors once over the whole loaded history and
      ``signal_at`` reads their state as known at each bar (confirmation times). Equals ``generate_signal`` on
      all candles from the replay's first loaded candle up to the bar (tested); differs from the live 500-candle
      window where the detectors' state depends on history older than 500 candles (measured in docs).
    """

    EXACT = "exact"
    FAST = "fast"


@dataclass(frozen=True)
class _Replay:
    """Everything one symbol's replay needs (shared with forked workers, never pickled)."""

    market: Any
    symbol: str
    timeframe: str
    frames: CausalFrames
    entry: CandleArrays
    higher: tuple[str, ...]
    missing: tuple[str, ...]
    config: Any
    end: Any
    prepared: Any = None  # Mode.FAST: the engine's detectors run once over the whole frames

    def evaluate(self, i: int):
        """The engine's result at the close of entry bar ``i`` (see ``Mode``)."""
        if self.prepared is None:
            return _evaluate_window(
                self.frames, i, symbol=self.symbol, higher=self.higher, config=self.config, missing=self.missing
            )
        result, _ = engine.signal_at(self.prepared, i, symbol=self.symbol, config=self.config)
        if self.missing:
            result = replace(result, unavailable=(*result.unavailable, *(f"{tf} candles" for tf in self.missing)))
        return result


@dataclass(frozen=True, slots=True)
class _Segment:
    """A sequential replay from a flat start: its trades, the bars it evaluated (flat bars), where it stopped."""

    trades: tuple[Trade, ...]
    evaluated: tuple[int, ...]
    next_bar: int  # next candidate bar (>= the stop bar, or n)
    open_at_end: bool  # the data ended with a position open
    converged_at: int | None = None  # bar where it joined a given trajectory (see _simulate's ``join``)


def _simulate(replay: _Replay, first: int, stop: int, *, join: frozenset[int] = frozenset(), progress=None):
    """Replay from bar ``first`` (flat) until the next candidate bar is at/after ``stop``.

    ``join``: bars where another replay was flat; reaching one of them while flat, this replay would continue
    exactly as that one did (same state, same deterministic steps), so it stops there (``converged_at``).
    """
    trades: list[Trade] = []
    evaluated: list[int] = []
    n = len(replay.entry)
    i = first
    while i < min(stop, n):
        if i in join:
            return _Segment(tuple(trades), tuple(evaluated), i, False, converged_at=i)
        if progress is not None:
            progress.update(i)
        result = replay.evaluate(i)
        evaluated.append(i)
        if result.direction is None:
            i += 1
            continue
        chunks = _finest_chunks(replay.market, replay.symbol, replay.timeframe, result, replay.entry, end=replay.end)
        position, used = resolve_position(Position.from_signal(result), chunks)
        trades.append(Trade(result, i, position, used))
        if position.is_active:
            return _Segment(tuple(trades), tuple(evaluated), n, True)
        # next candidate: the first bar closing at/after the close of the candle that closed the position
        i = max(i + 1, int(np.searchsorted(replay.entry.close_ns, _ns(position.last_checked), side="left")))
    return _Segment(tuple(trades), tuple(evaluated), max(i, min(stop, n)), False)


_REPLAYS: dict[int, _Replay] = {}  # set before forking workers; a worker reads its replay from here


def _segment_worker(key: int, first: int, stop: int) -> _Segment:
    return _simulate(_REPLAYS[key], first, stop)


def _parallel(replay: _Replay, first: int, workers: int, progress: Progress) -> _Segment:
    """The sequential replay's exact result, computed in ``workers`` forked processes.

    The bars are cut into segments, each replayed from a flat start in a worker. Then, in order, the true
    trajectory (segment 0, exact) is continued: when it reaches a bar where the next segment's replay was also
    flat, both continue identically from there, so that segment's remaining trades are taken as they are;
    before that point the main process replays the few bars itself (``join``).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    n = len(replay.entry)
    count = workers * 4  # more segments than workers: balances uneven work; each join costs ~1 trade
    bounds = [first + (n - first) * k // count for k in range(count)] + [n]
    key = id(replay)
    _REPLAYS[key] = replay
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_segment_worker, key, bounds[k], bounds[k + 1]) for k in range(count)]
            segments = []
            for k, future in enumerate(futures):
                segments.append(future.result())
                progress.update(bounds[k + 1] - first)
    finally:
        _REPLAYS.pop(key, None)
    trades = list(segments[0].trades)
    evaluated = list(segments[0].evaluated)
    current, open_at_end = segments[0].next_bar, segments[0].open_at_end
    for k in range(1, count):
        if open_at_end or current >= bounds[k + 1]:
            continue
        seg = segments[k]
        flat = frozenset(seg.evaluated)
        catch_up = _simulate(replay, current, bounds[k + 1], join=flat)
        trades += catch_up.trades
        evaluated += catch_up.evaluated
        if catch_up.converged_at is None:
            current, open_at_end = catch_up.next_bar, catch_up.open_at_end
            continue
        joined = catch_up.converged_at
        trades += [t for t in seg.trades if t.bar >= joined]
        evaluated += [i for i in seg.evaluated if i >= joined]
        current, open_at_end = seg.next_bar, seg.open_at_end
    return _Segment(tuple(trades), tuple(evaluated), current, open_at_end)


def default_workers() -> int:
    """Worker processes for the CLI: the usable cores (at most 8), 1 where ``fork`` is unavailable."""
    import multiprocessing
    import os

    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8))


def backtest_symbol(
    market,
    symbol: str,
    timeframe: str,
    *,
    start=None,
    end=None,
    config=None,
    lookback: int | None = None,
    show_progress: bool | None = None,
    workers: int = 1,
    mode: Mode = Mode.EXACT,
) -> SymbolRun:
    """Replay one symbol (see the module docstring). ``start``/``end``: UTC timestamps of the first/last bar
    close (default: the last 365 days of the source's data; ``end`` default: the source's clock).

    ``workers`` > 1 replays segments in forked processes with the exact sequential result (``_parallel``).
    """
    started = time.perf_counter()
    lookback = lookback or engine.CANDLES_PER_FRAME
    config = config or engine.EngineConfig()
    end = pd.Timestamp(end) if end is not None else market.now()
    start = pd.Timestamp(start) if start is not None else _default_start(market, symbol, end)
    frames_raw, higher, missing = load_frames(market, symbol, timeframe, start=start, end=end, lookback=lookback)
    entry = CandleArrays.from_frame(frames_raw[timeframe], timeframe)
    replay = _Replay(
        market,
        symbol,
        timeframe,
        CausalFrames(frames_raw, timeframe, lookback=lookback),
        entry,
        tuple(higher),
        tuple(missing),
        config,
        end,
        engine.prepare(frames_raw, timeframe=timeframe, config=config) if Mode(mode) is Mode.FAST else None,
    )
    n = len(entry)
    # first bar: closes at/after start and has a full window of history (as the live analysis has)
    first = max(int(np.searchsorted(entry.close_ns, start.as_unit("ns").value, side="left")), lookback - 1)
    bars = max(n - first, 0)
    progress = Progress(bars, f"{symbol} {timeframe}", enabled=show_progress)
    if workers > 1 and bars >= 200 * workers:
        segment = _parallel(replay, first, workers, progress)
    else:
        segment = _simulate(replay, first, n, progress=_Offset(progress, first))
    progress.close()
    step = interval_timedelta(timeframe)
    return SymbolRun(
        symbol=symbol,
        timeframe=timeframe,
        first_bar_time=(frames_raw[timeframe].index[first] + step).to_pydatetime() if bars else None,
        last_bar_time=(frames_raw[timeframe].index[-1] + step).to_pydatetime() if bars else None,
        bars=bars,
        evaluated=len(segment.evaluated),
        trades=segment.trades,
        unavailable=tuple(f"{tf} candles" for tf in missing),
        seconds=round(time.perf_counter() - started, 3),
    )


@dataclass(frozen=True, slots=True)
class _Offset:
    progress: Progress
    first: int

    def update(self, bar: int) -> None:
        self.progress.update(bar - self.first)


def _default_start(market, symbol: str, end):
    """Sample source: the start of the symbol's data (capped at a year before ``end``); Binance: a year back."""
    year_back = end - pd.Timedelta(days=365)
    spans = getattr(market, "data_spans", None)
    if callable(spans):
        try:
            first = pd.Timestamp(spans()[symbol][0])
        except (KeyError, IndexError, TypeError):
            return year_back
        return max(first, year_back)
    return year_back


# ---------------------------------------------------------------------------------------------------------------
# Results over several symbols
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BacktestResult:
    timeframe: str
    runs: tuple[SymbolRun, ...]
    seconds: float
    journal_path: str | None = None
    equity_path: str | None = None

    @property
    def trades(self) -> list[Trade]:
        """All trades in signal-time order."""
        return sorted((t for run in self.runs for t in run.trades), key=lambda t: (t.signal.time, t.signal.symbol))

    @property
    def closed_trades(self) -> list[Trade]:
        """Filled and closed trades in close-time order (the equity curve's order)."""
        return sorted((t for t in self.trades if t.traded), key=lambda t: (t.outcome.closed_at, t.signal.symbol))

    @property
    def candles(self) -> int:
        return sum(run.bars for run in self.runs)

    def stats(self, trades: Sequence[Trade] | None = None) -> Stats:
        chosen = self.closed_trades if trades is None else trades
        return stats_of([t.outcome.r_multiple for t in chosen], [t.outcome.highest_target >= 1 for t in chosen])

    def grouped(self, key: Callable[[Trade], str]) -> tuple[tuple[str, Stats], ...]:
        groups: dict[str, list[Trade]] = {}
        for trade in self.closed_trades:
            groups.setdefault(key(trade), []).append(trade)
        return tuple((name, self.stats(group)) for name, group in sorted(groups.items()))

    def by_direction(self) -> tuple[tuple[str, Stats], ...]:
        return self.grouped(lambda t: t.signal.direction.value)

    def by_session(self) -> tuple[tuple[str, Stats], ...]:
        return self.grouped(lambda t: t.signal.session or "none")

    def by_symbol(self) -> tuple[tuple[str, Stats], ...]:
        return self.grouped(lambda t: t.signal.symbol)

    def to_json(self) -> dict[str, Any]:
        trades = self.trades
        return {
            "timeframe": self.timeframe,
            "symbols": [run.symbol for run in self.runs],
            "periods": {run.symbol: [_iso(run.first_bar_time), _iso(run.last_bar_time)] for run in self.runs},
            "candles": self.candles,
            "evaluated_bars": sum(run.evaluated for run in self.runs),
            "signals": len(trades),
            "closed": sum(t.traded for t in trades),
            "expired": sum(t.expired for t in trades),
            "open_at_end": sum(not t.closed for t in trades),
            "resolution": _resolution_counts(trades),
            "overall": asdict(self.stats()),
            "by_direction": {k: asdict(v) for k, v in self.by_direction()},
            "by_session": {k: asdict(v) for k, v in self.by_session()},
            "by_symbol": {k: asdict(v) for k, v in self.by_symbol()},
            "unavailable": {run.symbol: list(run.unavailable) for run in self.runs if run.unavailable},
            "seconds": self.seconds,
            "candles_per_second": round(self.candles / self.seconds, 1) if self.seconds > 0 else None,
            "journal": self.journal_path,
            "equity_png": self.equity_path,
        }

    def text(self) -> str:
        data = self.to_json()
        lines = [
            f"Backtest {', '.join(data['symbols'])} {self.timeframe}: {data['candles']} candles "
            f"({data['evaluated_bars']} evaluated while flat) in {self.seconds:.1f} s "
            f"({data['candles_per_second']} candles/s)",
        ]
        for run in self.runs:
            lines.append(
                f"  {run.symbol}: {_iso(run.first_bar_time)} .. {_iso(run.last_bar_time)}"
                + (f" (without {', '.join(run.unavailable)})" if run.unavailable else "")
            )
        lines.append(
            f"Signals taken {data['signals']}: closed {data['closed']}, expired unfilled {data['expired']}, "
            f"open at the end {data['open_at_end']}; resolved on "
            + ", ".join(f"{k}: {v}" for k, v in data["resolution"].items())
        )
        lines.append(format_stats_line("all", self.stats()))
        for title, groups in (("direction", self.by_direction()), ("session", self.by_session())):
            lines.append(f"By {title}:")
            lines += [format_stats_line(f"  {name}", s) for name, s in groups]
        if len(self.runs) > 1:
            lines.append("By symbol:")
            lines += [format_stats_line(f"  {name}", s) for name, s in self.by_symbol()]
        if self.journal_path:
            lines.append(f"Journal: {self.journal_path}")
        if self.equity_path:
            lines.append(f"Equity curve: {self.equity_path}")
        return "\n".join(lines)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _resolution_counts(trades: Sequence[Trade]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in trades:
        key = "+".join(t.resolution) or "none"
        counts[key] = counts.get(key, 0) + 1
    return counts


class BatchJournal(journal.Journal):
    """``journal.Journal`` that writes once per ``batch()`` instead of once per change (same records, same files).

    Relies on ``Journal._save`` being the single write point; if that changes, it is merely slower.
    """

    def __init__(self, path: Path, *, stats_path: Path, fresh: bool = False) -> None:
        if fresh:
            Path(path).unlink(missing_ok=True)
            Path(stats_path).unlink(missing_ok=True)
        self._deferred = False
        super().__init__(path, stats_path=stats_path)

    def _save(self) -> None:
        if not self._deferred:
            super()._save()

    @contextlib.contextmanager
    def batch(self) -> Iterator[BatchJournal]:
        self._deferred = True
        try:
            yield self
        finally:
            self._deferred = False
            self._save()


def write_journal(path: Path, trades: Sequence[Trade]) -> Path:
    """Write ``trades`` as a fresh journal in the live format (``journal.Journal``), replacing ``path``.

    Its statistics go to ``<stem>_stats.json`` next to it (the journal's own convention).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    book = BatchJournal(path, stats_path=path.with_name(f"{path.stem}_stats.json"), fresh=True)
    with book.batch():
        for trade in trades:
            book.record_signal(trade.signal, at=trade.signal.time)
            if trade.closed:
                book.record_outcome(trade.signal.id, trade.outcome)
    return path


def run_backtest(
    market,
    symbols: Sequence[str],
    timeframe: str,
    *,
    start=None,
    end=None,
    config=None,
    journal_path: Path | None = None,
    equity_path: Path | None = None,
    show_progress: bool | None = None,
    lookback: int | None = None,
    workers: int = 1,
    mode: Mode = Mode.EXACT,
) -> BacktestResult:
    """Backtest ``symbols`` on ``timeframe``; write the journal and the equity PNG when paths are given.

    ``workers`` > 1: each symbol's replay runs in that many forked processes (same result; CLI only: do not
    fork from the running bot)."""
    started = time.perf_counter()
    runs = tuple(
        backtest_symbol(
            market,
            symbol,
            timeframe,
            start=start,
            end=end,
            config=config,
            lookback=lookback,
            show_progress=show_progress,
            workers=workers,
            mode=mode,
        )
        for symbol in symbols
    )
    result = BacktestResult(timeframe, runs, round(time.perf_counter() - started, 3))
    if journal_path is not None:
        write_journal(journal_path, result.trades)
    if equity_path is not None:
        closed = result.closed_trades
        png = render_equity_png(
            [t.outcome.closed_at for t in closed],
            [t.outcome.r_multiple for t in closed],
            f"{', '.join(symbols)} {timeframe}: cumulative R of {len(closed)} trades",
        )
        Path(equity_path).parent.mkdir(parents=True, exist_ok=True)
        Path(equity_path).write_bytes(png)
    return BacktestResult(
        timeframe,
        runs,
        result.seconds,
        None if journal_path is None else str(journal_path),
        None if equity_path is None else str(equity_path),
    )


# ---------------------------------------------------------------------------------------------------------------
# CLI: python bot.py backtest SYMBOL[,SYMBOL...] TF [--start] [--end] [--journal] [--equity] [--json]
# ---------------------------------------------------------------------------------------------------------------


class _BadArguments(ValueError):
    """A user error: one line on stderr, exit status 2."""


def _parse_time(text: str | None, name: str):
    if text is None:
        return None
    try:
        moment = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise _BadArguments(f"--{name} {text!r} is not a date; use ISO, e.g. 2025-01-31 or 2025-01-31T12:00") from None
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def parse_request(args: argparse.Namespace, market) -> tuple[list[str], str, Any, Any]:
    """(symbols, timeframe, start, end) from the CLI arguments; raises _BadArguments with a one-line reason."""
    from market.timeframes import parse_interval

    try:
        timeframe = parse_interval(args.timeframe)
    except ValueError as exc:
        raise _BadArguments(str(exc)) from None
    names = [s for s in (part.strip() for part in args.symbol.split(",")) if s]
    if not names:
        raise _BadArguments("give at least one symbol, e.g. BTCUSDT or BTCUSDT,ETHUSDT")
    try:
        symbols = list(dict.fromkeys(market.validate_symbol(s) for s in names))
    except Exception as exc:
        if type(exc).__name__ == "InvalidSymbolError":
            raise _BadArguments(str(exc)) from None
        raise
    start, end = _parse_time(args.start, "start"), _parse_time(args.end, "end")
    if start is not None and end is not None and start >= end:
        raise _BadArguments("--start must be before --end")
    return symbols, timeframe, start, end


def main(args: argparse.Namespace, settings) -> int:
    """``python bot.py backtest``: 0 done, 2 bad arguments (one line on stderr), 1 market-data failure."""
    from market.factory import create_market_data
    from market.source import MarketDataError

    data_dir = Path(settings.bot_data_dir)
    try:
        market = create_market_data(settings)
        symbols, timeframe, start, end = parse_request(args, market)
    except _BadArguments as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    except MarketDataError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 1
    fast = bool(getattr(args, "fast", False))
    journal_path = Path(args.journal) if args.journal else data_dir / "backtest_journal.json"
    equity_path = Path(args.equity) if args.equity else data_dir / "backtest_equity.png"
    try:
        result = run_backtest(
            market,
            symbols,
            timeframe,
            start=start,
            end=end,
            config=engine.EngineConfig.from_settings(settings),
            journal_path=journal_path,
            equity_path=equity_path,
            workers=1 if fast else default_workers(),
            mode=Mode.FAST if fast else Mode.EXACT,
        )
    except MarketDataError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json(), allow_nan=False))
    else:
        print(result.text())
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Cold start: outcomes for the first model (python bot.py train --from-backtest)
# ---------------------------------------------------------------------------------------------------------------

COLD_START_DAYS = 365  # history replayed per series and timeframe


def _sample_market(settings):
    """The bundled sample data with the clock at the end of the data (everything is history)."""
    from market.sample_source import SampleSource

    source = SampleSource(settings.sample_data_dir)
    last = max(end for _, end in source.data_spans().values())
    return SampleSource(settings.sample_data_dir, clock=lambda: last)


def cold_start(
    settings,
    *,
    journal_path: Path,
    timeframes: Sequence[str] | None = None,
    days: int = COLD_START_DAYS,
    workers: int | None = None,
    show_progress: bool | None = None,
    mode: Mode = Mode.EXACT,
    online: Callable[[Any], Any] | None = None,
) -> str:
    """Backtest the bundled sample data (every symbol, the scan's timeframes, the last ``days`` of each series)
    and, with ``MARKET_DATA=binance`` when Binance answers, the watchlist over the last year; write every trade
    to one journal (``journal_path``, live format) for training. Offline-safe. Returns a short summary.

    ``online``: factory of the Binance market data (default ``market_data.create_market_data``; tests inject)."""
    from market.source import MarketDataError

    timeframes = tuple(timeframes or settings.auto_signal_timeframes)
    mode = Mode(mode)
    if workers is None:
        workers = 1 if mode is Mode.FAST else default_workers()
    sources: list[tuple[str, Any, Sequence[str], int]] = [("sample", _sample_market(settings), (), days)]
    notes = []
    if settings.market_data == "binance":
        try:
            from market.factory import create_market_data

            market = (online or create_market_data)(settings)
            market.latency_ms()
            sources.append(("binance", market, settings.watchlist, 365))
        except Exception as exc:  # offline, blocked, rate limited: the sample data alone
            notes.append(f"Binance not used ({str(exc).splitlines()[0][:120]}): sample data only")
    trades: list[Trade] = []
    lines = []
    for name, market, watchlist, span in sources:
        symbols = list(watchlist) or market.symbols()
        for timeframe in timeframes:
            for symbol in symbols:
                try:
                    end = market.now()
                    run = backtest_symbol(
                        market,
                        symbol,
                        timeframe,
                        start=end - pd.Timedelta(days=span),
                        end=end,
                        config=engine.EngineConfig.from_settings(settings),
                        show_progress=show_progress,
                        workers=workers,
                        mode=mode,
                    )
                except (MarketDataError, ValueError) as exc:
                    notes.append(f"{name} {symbol} {timeframe} skipped: {str(exc).splitlines()[0][:120]}")
                    continue
                trades += run.trades
                done = [t for t in run.trades if t.traded]
                s = stats_of([t.outcome.r_multiple for t in done])
                lines.append(
                    f"{name} {symbol} {timeframe}: {run.bars} bars, {len(run.trades)} signals, {len(done)} closed, "
                    f"avg R {s.average_r if s.average_r is not None else 0:+.3f}, {run.seconds:.0f} s"
                )
    write_journal(journal_path, sorted(trades, key=lambda t: (t.signal.time, t.signal.symbol, t.signal.timeframe)))
    return "\n".join(
        [
            f"Cold start backtest ({mode.value} mode):",
            *lines,
            *notes,
            f"{len(trades)} signals written to {journal_path}",
        ]
    )
