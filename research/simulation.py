"""The backtest's simulation loop: one symbol's bars replayed in order, one position at a time, the engine's
result at each flat bar equal to ``signal --at`` (``research.replay.EngineCursor``), each signal resolved by the
live state machine (see ``research.backtest`` for the rules).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TextIO

import numpy as np
import pandas as pd

import ict_signal_engine as engine
from market.source import MarketDataError
from market.timeframes import interval_timedelta
from research.replay import CandleArrays, EngineCursor, _finest_chunks, _ns, load_frames, resolve_position
from tracking.costs import DEFAULT_COSTS, DEFAULT_EXIT_PLAN, Costs
from tracking.setups import setup_of
from tracking.state import Position

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Progress (stderr only: --json stdout stays clean)
# ---------------------------------------------------------------------------------------------------------------

PROGRESS_EVERY_S = 5.0  # a plain progress line this often when stderr is not a terminal (a log, a pipe, CI)


def progress_every() -> float:
    """Seconds between plain progress lines: ``PROGRESS_EVERY_S`` from the environment (0 = every step), else 5."""
    try:
        return max(float(os.environ.get("PROGRESS_EVERY_S", PROGRESS_EVERY_S)), 0.0)
    except ValueError:
        return PROGRESS_EVERY_S


class Progress:
    """Progress of a long job on ``stream`` (stderr): a one-line bar on a terminal, else plain lines: one at the
    first step, one every ``every`` seconds, one at the end. ``enabled=False`` silences it, ``True`` forces the
    bar; ``plain=True`` forces the lines (parallel workers sharing one terminal would overwrite each other's bar)."""

    def __init__(
        self,
        total: int,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        plain: bool | None = None,
        every: float | None = None,
        unit: str = "bars",
    ):
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = True if enabled is None else enabled
        # enabled=True without plain keeps the bar (as before); by default a non-terminal gets the plain lines
        self.plain = (enabled is None and not _isatty(self.stream)) if plain is None else plain
        self.every = progress_every() if every is None else every
        self.unit = unit
        self.started = time.perf_counter()
        self._last = -1.0 if not self.plain else self.started
        self._lines = 0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        first_line = self.plain and not self._lines  # a plain run says at once that it started
        if not first_line and now - self._last < (self.every if self.plain else 0.1) and done < self.total:
            return
        self._last = now
        if self.plain:
            if done < self.total:
                self._line(done, now)
            return
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        elapsed = now - self.started
        self.stream.write(f"\r{self.label} [{bar:<30}] {frac:6.1%} {done}/{self.total} {self.unit} {elapsed:5.1f} s")
        self.stream.flush()

    def _line(self, done: int, now: float) -> None:
        frac = min(done / self.total, 1.0)
        self.stream.write(f"{self.label}: {done}/{self.total} {self.unit} ({frac:.0%}), {now - self.started:.0f} s\n")
        self.stream.flush()
        self._lines += 1

    def close(self) -> None:
        if not self.enabled:
            return
        if self.plain:
            if self._lines:  # a job that said it started also says it finished
                self._line(self.total, time.perf_counter())
            return
        self.update(self.total)
        self.stream.write("\n")
        self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


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
    """The backtest has one mode: the engine on the live block-aligned windows at every evaluated bar, so each
    signal equals ``python bot.py signal SYMBOL TF --at <bar close>``, computed with one detector run per block of
    about 250 bars (``research.replay.EngineCursor``). ``FAST`` (and ``"fast"``, the CLI's ``--fast``) is an alias
    kept for old callers: it is the same mode."""

    EXACT = "exact"
    FAST = "exact"  # alias: the one mode is exact and fast

    @classmethod
    def _missing_(cls, value: object) -> Mode | None:
        return cls.EXACT if value == "fast" else None


@dataclass(frozen=True)
class _Replay:
    """Everything one symbol's replay needs."""

    market: Any
    symbol: str
    timeframe: str
    cursor: EngineCursor
    entry: CandleArrays
    end: Any
    min_confidence: float | None = None  # signals below it are not taken (the live threshold); None: all
    costs: Costs = DEFAULT_COSTS
    exit_plan: tuple[float, float, float] = DEFAULT_EXIT_PLAN

    def evaluate(self, i: int):
        """The engine's result at the close of entry bar ``i``: equal to ``signal --at`` that close."""
        return self.cursor.result(i)


@dataclass(frozen=True, slots=True)
class _Replayed:
    """A replay's trades, how many bars it evaluated (flat bars), and the bars it skipped or failed on."""

    trades: tuple[Trade, ...]
    evaluated: int
    skipped: tuple[int, ...] = ()  # bars whose signal was below the minimum confidence
    errors: tuple[BarError, ...] = ()


def _simulate(replay: _Replay, first: int, *, progress=None) -> _Replayed:
    """Replay from bar ``first`` (flat) to the end of the data, one position at a time."""
    trades: list[Trade] = []
    skipped: list[int] = []
    errors: list[BarError] = []
    evaluated = 0
    n = len(replay.entry)
    i = first
    while i < n:
        if progress is not None:
            progress.update(i)
        evaluated += 1
        try:
            trade = _trade_at(replay, i)
        except MarketDataError:
            raise  # the source failed: the whole run reports it
        except Exception as exc:  # one bar's failure (e.g. invalid levels on a flash crash) never ends the run
            errors.append(BarError(i, replay.cursor.close_time(i).to_pydatetime(), f"{type(exc).__name__}: {exc}"))
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
            break  # still open when the data ended: nothing after it is traded
        # next candidate: the first bar closing at/after the close of the candle that closed the position
        i = max(i + 1, int(np.searchsorted(replay.entry.close_ns, _ns(trade.position.last_checked), side="left")))
    return _Replayed(tuple(trades), evaluated, tuple(skipped), tuple(errors))


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
    mode: Mode = Mode.EXACT,
    min_confidence: float | None = None,
    costs: Costs = DEFAULT_COSTS,
    exit_plan: tuple[float, float, float] = DEFAULT_EXIT_PLAN,
) -> SymbolRun:
    """Replay one symbol (see ``research.backtest``). ``start``/``end``: UTC timestamps of the first/last bar
    close (default: the last 365 days of the source's data; ``end`` default: the source's clock).

    ``lookback``: candles of history before the first bar (default 500; the windows reach up to 249 further,
    loaded too). ``mode``: accepted for old callers, there is one mode (``Mode``).
    ``min_confidence``: take only signals at or above it, as the live bot tracks (None: every signal);
    ``costs`` / ``exit_plan``: what each position's outcome follows (``tracking.costs``).
    """
    Mode(mode)  # "exact", "fast" or a Mode: all the one mode; anything else is an error
    started = time.perf_counter()
    lookback = lookback or engine.CANDLES_PER_FRAME
    config = config or engine.EngineConfig()
    end = pd.Timestamp(end) if end is not None else market.now()
    start = pd.Timestamp(start) if start is not None else _default_start(market, symbol, end)
    frames_raw, _, missing = load_frames(market, symbol, timeframe, start=start, end=end, lookback=lookback)
    entry = CandleArrays.from_frame(frames_raw[timeframe], timeframe)
    cursor = EngineCursor(frames_raw, symbol=symbol, timeframe=timeframe, absent=missing, config=config)
    replay = _Replay(market, symbol, timeframe, cursor, entry, end, min_confidence, costs, tuple(exit_plan))
    n = len(entry)
    # first bar: closes at/after start and has a full window of history (as the live analysis has)
    first = max(int(np.searchsorted(entry.close_ns, start.as_unit("ns").value, side="left")), lookback - 1)
    bars = max(n - first, 0)
    progress = Progress(bars, f"{symbol} {timeframe}", enabled=show_progress)
    replayed = _simulate(replay, first, progress=_Offset(progress, first))
    progress.close()
    step = interval_timedelta(timeframe)
    return SymbolRun(
        symbol=symbol,
        timeframe=timeframe,
        first_bar_time=(frames_raw[timeframe].index[first] + step).to_pydatetime() if bars else None,
        last_bar_time=(frames_raw[timeframe].index[-1] + step).to_pydatetime() if bars else None,
        bars=bars,
        evaluated=replayed.evaluated,
        trades=replayed.trades,
        unavailable=tuple(f"{tf} candles" for tf in missing),
        seconds=round(time.perf_counter() - started, 3),
        errors=replayed.errors,
        below_threshold=len(replayed.skipped),
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
