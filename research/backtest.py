"""Backtest: replay history bar by bar through the live engine and the live position state machine.

Definitions (docs/ml-backtest.md has the full story and measured numbers)
-----------------------------------------------------------------------
- **Causality, one mode**: the signal at entry-timeframe bar ``t`` equals
  ``python bot.py signal SYMBOL TF --at <close of t>``: the engine on the same block-aligned windows of closed
  candles (``engine.windows``: per timeframe 500-749 candles, the start anchored to absolute time and moving once
  per 250 candles), entry timeframe ending with bar ``t``, higher timeframes closed by its close. Nothing after the
  close of ``t`` is visible. Bars sharing their windows' starts share one detector run (``prepare``), read at each
  bar (``signal_at``): exact by the detectors' causality and about 250 times fewer detector runs
  (``research.replay.EngineCursor``). ``Mode.FAST`` / ``--fast`` are aliases of this one mode.
- **What is taken** (= what the bot would have sent): by default only signals whose confidence is at or above
  ``MIN_CONFIDENCE`` (the live tracking threshold); a signal below it is not taken and does not block the slot.
  ``--all-signals`` takes every signal. The cold start (training data) takes every signal.
- **Costs and exit plan**: each position follows ``EXIT_PLAN`` and is charged ``FEE_PCT`` / ``SLIPPAGE_PCT``
  (``--fee`` / ``--slippage`` override them; ``--fee 0 --slippage 0`` gives the gross figures); every statistic
  is net (``tracking.costs``).
- **A bar that raises** (the engine or the resolution, e.g. invalid levels on a flash crash) is skipped and
  reported with its time and reason (``errors``); the run goes on. A market-data failure ends the run.
- **Outcome**: a signal becomes a ``tracking.state.Position`` and is fed, candle by candle, to
  ``tracking.state.apply_candle`` (the same pure state machine the live monitor uses; stop first when one candle
  touches both) on the candles that open at or after the signal's close: the finest interval the market data has
  at that time (``finest_interval``: 1m on Binance; in the sample data 1m for BTCUSDT mid-2025, 5m for ETHUSDT
  late 2025, 15m in 2026); where that series ends, the next finest the source has; finally the entry timeframe.
- **One position at a time per symbol and timeframe**: while a position is pending or open no new signal is
  taken (the engine is not even run); the next candidate bar is the first whose close is at or after the close of
  the candle that closed the position. A position still open at the end of the data is reported as open and left
  out of the statistics.
- **Statistics**: ``research.stats`` (definitions there).

Modules: ``research.replay`` (data loading, causal windows, outcome resolution), ``research.simulation`` (the
loop), ``research.stats`` (statistics, equity curve), ``research.report`` (results, summaries, journal), and this
one (orchestration, the CLI, the cold start).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

import ict_signal_engine as engine
from market.factory import create_market_data
from market.source import MarketDataError
from research.fanout import run_all
from research.report import BacktestResult, write_journal
from research.simulation import Mode, Trade, backtest_symbol
from research.stats import render_equity_png, stats_of
from tracking.costs import DEFAULT_COSTS, DEFAULT_EXIT_PLAN, Costs

logger = logging.getLogger(__name__)


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
    mode: Mode = Mode.EXACT,
    min_confidence: float | None = None,
    costs: Costs = DEFAULT_COSTS,
    exit_plan: tuple[float, float, float] = DEFAULT_EXIT_PLAN,
    settings: Any = None,
    scheduler: str | None = None,
) -> BacktestResult:
    """Backtest ``symbols`` on ``timeframe``; write the journal and the equity PNG when paths are given.

    ``mode``: accepted for old callers (one mode). ``min_confidence`` (None: every signal), ``costs``,
    ``exit_plan``: see ``backtest_symbol``. With ``settings`` and several symbols, each symbol is one task on the
    local process pool, or on the Dask cluster at ``scheduler`` (its workers build the market from ``settings``);
    the result is the same as in sequence."""
    started = time.perf_counter()
    options = dict(
        start=start,
        end=end if end is not None else market.now(),  # one clock for every task
        config=config,
        lookback=lookback,
        show_progress=show_progress,
        mode=mode,
        min_confidence=min_confidence,
        costs=costs,
        exit_plan=exit_plan,
    )
    if settings is not None and len(symbols) > 1:
        runs = tuple(run_all(partial(_symbol_task, settings, timeframe, options), list(symbols), scheduler=scheduler))
    else:
        runs = tuple(backtest_symbol(market, symbol, timeframe, **options) for symbol in symbols)
    plan = {"costs": costs, "exit_plan": tuple(exit_plan), "min_confidence": min_confidence}
    result = BacktestResult(timeframe, runs, round(time.perf_counter() - started, 3), **plan)
    if journal_path is not None:
        write_journal(journal_path, result.trades)
    if equity_path is not None:
        closed = result.closed_trades
        png = render_equity_png(
            [t.outcome.closed_at for t in closed],
            [t.outcome.r_net for t in closed],
            f"{', '.join(symbols)} {timeframe}: cumulative net R of {len(closed)} trades",
        )
        Path(equity_path).parent.mkdir(parents=True, exist_ok=True)
        Path(equity_path).write_bytes(png)
    return BacktestResult(
        timeframe,
        runs,
        result.seconds,
        None if journal_path is None else str(journal_path),
        None if equity_path is None else str(equity_path),
        **plan,
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


def _costs_and_threshold(args: argparse.Namespace, settings) -> tuple[Costs, float | None]:
    """``--fee`` / ``--slippage`` over FEE_PCT / SLIPPAGE_PCT; MIN_CONFIDENCE unless ``--all-signals``."""
    base = Costs.from_settings(settings)
    fee, slip = getattr(args, "fee", None), getattr(args, "slippage", None)
    try:
        costs = Costs(base.fee_pct if fee is None else float(fee), base.slippage_pct if slip is None else float(slip))
    except ValueError as exc:
        raise _BadArguments(f"--fee / --slippage: {exc}") from None
    all_signals = bool(getattr(args, "all_signals", False))
    return costs, None if all_signals else float(getattr(settings, "min_confidence", 60.0))


def _symbol_task(settings: Any, timeframe: str, options: dict, symbol: str):
    """One fan-out task (top level: pickled to process-pool and Dask workers)."""
    return backtest_symbol(create_market_data(settings), symbol, timeframe, **options)


def main(args: argparse.Namespace, settings) -> int:
    """``python bot.py backtest``: 0 done, 2 bad arguments (one line on stderr), 1 market-data failure."""

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
    try:
        costs, min_confidence = _costs_and_threshold(args, settings)
    except _BadArguments as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
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
            min_confidence=min_confidence,
            costs=costs,
            exit_plan=tuple(getattr(settings, "exit_plan", DEFAULT_EXIT_PLAN)),
            settings=settings,
            scheduler=getattr(args, "scheduler", None) or getattr(settings, "dask_scheduler_address", None),
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
    show_progress: bool | None = None,
    mode: Mode = Mode.EXACT,
    online: Callable[[Any], Any] | None = None,
) -> str:
    """Backtest the bundled sample data (every symbol, the scan's timeframes, the last ``days`` of each series)
    and, with ``MARKET_DATA=binance`` when Binance answers, the watchlist over the last year; write every trade
    to one journal (``journal_path``, live format) for training. Offline-safe. Returns a short summary.

    ``mode``: accepted for old callers (``--fast``), there is one mode.
    ``online``: factory of the Binance market data (default ``market.factory.create_market_data``; tests inject)."""
    timeframes = tuple(timeframes or settings.auto_signal_timeframes)
    Mode(mode)
    sources: list[tuple[str, Any, Sequence[str], int]] = [("sample", _sample_market(settings), (), days)]
    notes = []
    if settings.market_data == "binance":
        try:
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
                        costs=Costs.from_settings(settings),
                        exit_plan=tuple(getattr(settings, "exit_plan", DEFAULT_EXIT_PLAN)),
                    )  # every signal (no threshold): the model learns from all of them
                except (MarketDataError, ValueError) as exc:
                    notes.append(f"{name} {symbol} {timeframe} skipped: {str(exc).splitlines()[0][:120]}")
                    continue
                trades += run.trades
                done = [t for t in run.trades if t.traded]
                s = stats_of([t.outcome.r_net for t in done])
                lines.append(
                    f"{name} {symbol} {timeframe}: {run.bars} bars, {len(run.trades)} signals, {len(done)} closed, "
                    f"avg net R {s.average_r if s.average_r is not None else 0:+.3f}, {run.seconds:.0f} s"
                )
    write_journal(journal_path, sorted(trades, key=lambda t: (t.signal.time, t.signal.symbol, t.signal.timeframe)))
    return "\n".join(
        [
            "Cold start backtest:",
            *lines,
            *notes,
            f"{len(trades)} signals written to {journal_path}",
        ]
    )
