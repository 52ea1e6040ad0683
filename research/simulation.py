"""The backtest's simulation loop: one symbol's bars replayed in order (or in forked segments joined exactly),
one position at a time, each signal resolved by the live state machine (see ``research.backtest`` for the rules).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, TextIO

import numpy as np
import pandas as pd

import ict_signal_engine as engine
from engine.windows import WINDOW_BLOCK
from market.source import MarketDataError
from market.timeframes import interval_timedelta
from research.replay import (
    CandleArrays,
    CausalFrames,
    _evaluate_window,
    _finest_chunks,
    _ns,
    load_frames,
    resolve_position,
)
from tracking.costs import DEFAULT_COSTS, DEFAULT_EXIT_PLAN, Costs
from tracking.setups import setup_of
from tracking.state import Position

logger = logging.getLogger(__name__)


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

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` trade object (issue 13): prices, times (ISO UTC), gross and net R (None when expired)."""
        sig, out = self.signal, self.outcome
        return {
            "symbol": sig.symbol,
            "timeframe": sig.timeframe,
            "time": _iso(sig.time),
            "direction": sig.direction.value,
            "setup": setup_of(sig),
            "entry": sig.entry,
            "fill": out.fill_price,
            "sl": sig.sl,
            "exit": out.avg_exit_price,
            "exit_time": _iso(out.closed_at),
            "exit_reason": out.reason.value,
            "r_gross": out.r_gross,
            "r_net": out.r_net,
            "tp1_hit": out.highest_target >= 1,
            "confidence": sig.confidence,
            "probability": sig.ml_probability,
        }


@dataclass(frozen=True, slots=True)
class BarError:
    """A bar the replay skipped because the engine or the resolution raised on it (reported, the run goes on)."""

    bar: int
    time: datetime
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"bar": self.bar, "time": _iso(self.time), "reason": self.reason}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else pd.Timestamp(moment).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


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
    errors: tuple[BarError, ...] = ()  # bars skipped because something raised on them
    below_threshold: int = 0  # signals below the minimum confidence (not taken, as the live bot)


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
    min_confidence: float | None = None  # signals below it are not taken (the live threshold); None: all
    costs: Costs = DEFAULT_COSTS
    exit_plan: tuple[float, float, float] = DEFAULT_EXIT_PLAN

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
    skipped: tuple[int, ...] = ()  # bars whose signal was below the minimum confidence
    errors: tuple[BarError, ...] = ()


def _simulate(replay: _Replay, first: int, stop: int, *, join: frozenset[int] = frozenset(), progress=None):
    """Replay from bar ``first`` (flat) until the next candidate bar is at/after ``stop``.

    ``join``: bars where another replay was flat; reaching one of them while flat, this replay would continue
    exactly as that one did (same state, same deterministic steps), so it stops there (``converged_at``).
    """
    trades: list[Trade] = []
    evaluated: list[int] = []
    skipped: list[int] = []
    errors: list[BarError] = []

    def segment(next_bar: int, open_at_end: bool, converged_at: int | None = None) -> _Segment:
        return _Segment(
            tuple(trades), tuple(evaluated), next_bar, open_at_end, converged_at, tuple(skipped), tuple(errors)
        )

    n = len(replay.entry)
    i = first
    while i < min(stop, n):
        if i in join:
            return segment(i, False, converged_at=i)
        if progress is not None:
            progress.update(i)
        evaluated.append(i)
        try:
            trade = _trade_at(replay, i)
        except MarketDataError:
            raise  # the source failed: the whole run reports it
        except Exception as exc:  # one bar's failure (e.g. invalid levels on a flash crash) never ends the run
            errors.append(BarError(i, replay.frames.close_time(i).to_pydatetime(), f"{type(exc).__name__}: {exc}"))
            logger.warning("%s %s bar %d skipped: %s", replay.symbol, replay.timeframe, i, exc)
            i += 1
            continue
        if trade is None or trade is _BELOW:
            if trade is _BELOW:
                skipped.append(i)
            i += 1
            continue
        trades.append(trade)
        if trade.position.is_active:
            return segment(n, True)
        # next candidate: the first bar closing at/after the close of the candle that closed the position
        i = max(i + 1, int(np.searchsorted(replay.entry.close_ns, _ns(trade.position.last_checked), side="left")))
    return segment(max(i, min(stop, n)), False)


_BELOW = object()  # _trade_at's answer for a signal under the minimum confidence


def _trade_at(replay: _Replay, i: int) -> Trade | object | None:
    """The trade taken at bar ``i``: None without a signal, ``_BELOW`` under the threshold."""
    result = replay.evaluate(i)
    if result.direction is None:
        return None
    if replay.min_confidence is not None and result.confidence < replay.min_confidence:
        return _BELOW
    chunks = _finest_chunks(replay.market, replay.symbol, replay.timeframe, result, replay.entry, end=replay.end)
    start = Position.from_signal(result, exit_plan=replay.exit_plan, costs=replay.costs)
    position, used = resolve_position(start, chunks)
    return Trade(result, i, position, used)


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
    first_seg = segments[0]
    trades, evaluated = list(first_seg.trades), list(first_seg.evaluated)
    skipped, errors = list(first_seg.skipped), list(first_seg.errors)
    current, open_at_end = first_seg.next_bar, first_seg.open_at_end
    for k in range(1, count):
        if open_at_end or current >= bounds[k + 1]:
            continue
        seg = segments[k]
        flat = frozenset(seg.evaluated)
        catch_up = _simulate(replay, current, bounds[k + 1], join=flat)
        trades += catch_up.trades
        evaluated += catch_up.evaluated
        skipped += catch_up.skipped
        errors += catch_up.errors
        if catch_up.converged_at is None:
            current, open_at_end = catch_up.next_bar, catch_up.open_at_end
            continue
        joined = catch_up.converged_at
        trades += [t for t in seg.trades if t.bar >= joined]
        evaluated += [i for i in seg.evaluated if i >= joined]
        skipped += [i for i in seg.skipped if i >= joined]
        errors += [e for e in seg.errors if e.bar >= joined]
        current, open_at_end = seg.next_bar, seg.open_at_end
    return _Segment(tuple(trades), tuple(evaluated), current, open_at_end, skipped=tuple(skipped), errors=tuple(errors))


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
    min_confidence: float | None = None,
    costs: Costs = DEFAULT_COSTS,
    exit_plan: tuple[float, float, float] = DEFAULT_EXIT_PLAN,
) -> SymbolRun:
    """Replay one symbol (see the module docstring). ``start``/``end``: UTC timestamps of the first/last bar
    close (default: the last 365 days of the source's data; ``end`` default: the source's clock).

    ``workers`` > 1 replays segments in forked processes with the exact sequential result (``_parallel``).
    ``min_confidence``: take only signals at or above it, as the live bot tracks (None: every signal);
    ``costs`` / ``exit_plan``: what each position's outcome follows (``tracking.costs``).
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
        CausalFrames(frames_raw, timeframe, lookback=lookback, block=WINDOW_BLOCK),  # the live windows
        entry,
        tuple(higher),
        tuple(missing),
        config,
        end,
        engine.prepare(frames_raw, timeframe=timeframe, config=config) if Mode(mode) is Mode.FAST else None,
        min_confidence,
        costs,
        tuple(exit_plan),
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
        errors=segment.errors,
        below_threshold=len(segment.skipped),
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
