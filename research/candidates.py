"""Every signal the engine issues over a period, each followed along its full path (the evaluation's input).

One task is one symbol × timeframe × period (``CandidateTask``): it loads the candles, runs the engine at every
bar of the period, and follows each signal through the live position state machine on the finest candles the
source has (as the backtest does), recording when each target was reached and where the rest closed. Tasks
are independent and picklable, so they run on a process pool or a Dask cluster (``research.fanout``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

import ict_signal_engine as engine
from engine.signal_model import Signal
from research.replay import CandleArrays, _finest_chunks, candle_steps, load_frames
from research.simulation import Progress
from research.walkforward import Candidate
from tracking.state import EventKind, Position

FULL_PATH = (0.0, 0.0, 100.0)  # followed to TP3 or the stop: every plan's exits derive from this path

logger = logging.getLogger(__name__)


def follow(position: Position, chunks: Iterable[CandleArrays]) -> tuple[Position, tuple[datetime, ...]]:
    """``position`` through the live state machine until it closes (or the candles end); also the close times of
    the candles where each target was reached."""
    hits: list[datetime] = []
    for now, events, _, closed in candle_steps(position, chunks):
        position = now
        hits += [closed] * sum(e.kind is EventKind.TARGET_HIT for e in events)
    return position, tuple(hits)


def candidate_of(signal: Signal, position: Position, hits: tuple[datetime, ...], setup: str) -> Candidate:
    """The plan-independent record of ``signal``'s trade."""
    outcome = position.outcome
    if outcome is None:
        reason, exit_price, exit_time = "OPEN", None, position.last_checked
    else:
        reason, exit_price, exit_time = outcome.reason.value, outcome.exit_price, outcome.closed_at
    return Candidate(
        symbol=signal.symbol,
        timeframe=signal.timeframe,
        time=signal.time,
        setup=setup,
        sign=signal.direction.sign,
        entry=signal.entry,
        sl=signal.sl,
        targets=(signal.tp1, signal.tp2, signal.tp3),
        fill=position.fill_price,
        market_entry=signal.entry_low == signal.entry_high,
        hits=hits[:3],
        exit_price=exit_price,
        exit_time=exit_time,
        exit_reason=reason,
        confidence=signal.rule_confidence,
        features=dict(signal.features),
        signal=signal,
    )


@dataclass(frozen=True, slots=True)
class CandidateTask:
    """One unit of work: every signal of ``symbol`` on ``timeframe`` whose candle closes in [start, end)."""

    symbol: str
    timeframe: str
    start: datetime
    end: datetime


def run_task(
    task: CandidateTask, market: Any, setup_of: Callable[[Signal], str], config: Any = None
) -> list[Candidate]:
    """Every signal of ``task`` followed to its end (see the module docstring)."""
    config = config or engine.EngineConfig()
    start, end = pd.Timestamp(task.start), pd.Timestamp(task.end)
    lookback = engine.CANDLES_PER_FRAME * 2  # reaches every bar's window start (at most 749 candles back)
    frames, _, missing = load_frames(market, task.symbol, task.timeframe, start=start, end=end, lookback=lookback)
    entry = CandleArrays.from_frame(frames[task.timeframe], task.timeframe)
    first = int(np.searchsorted(entry.close_ns, start.as_unit("ns").value, side="left"))
    out = []
    bars = range(first, len(entry))
    results = engine.analyses_over(
        frames, symbol=task.symbol, timeframe=task.timeframe, bars=bars, absent=missing, config=config
    )
    # plain lines: tasks run in parallel workers that share one stderr
    progress = Progress(len(bars), f"{task.symbol} {task.timeframe} candidates", plain=True)
    for i, result in results:
        progress.update(i - first + 1)
        if result.direction is None or entry.close_ns[i] >= end.as_unit("ns").value:
            continue
        chunks = _finest_chunks(market, task.symbol, task.timeframe, result, entry, end=end)
        position, hits = follow(Position.from_signal(result, exit_plan=FULL_PATH), chunks)
        out.append(candidate_of(result, position, hits, setup_of(result)))
    progress.close()
    return out
