"""Backtest: replay history bar by bar through the live engine and the live position state machine.

Definitions
-----------
- **Causality**: the signal at entry-timeframe bar ``t`` is ``ict_signal_engine.generate_signal`` over exactly the
  frames ``python bot.py signal SYMBOL TF --at <close of t>`` would fetch: the last ``LOOKBACK`` closed candles of
  the entry timeframe ending with bar ``t`` and, for every higher timeframe, the last ``LOOKBACK`` candles that
  had closed by the close of ``t``. Nothing after the close of ``t`` is visible.
- **Outcome**: a signal becomes a ``position_manager.Position`` and is fed, candle by candle, to
  ``position_manager.apply_candle`` (the same pure state machine the live monitor uses; stop first when one candle
  touches both) on the candles that open at or after the signal's close: the finest interval the market data has
  at that time (``finest_interval``: 1m on Binance; in the sample data 1m for BTCUSDT mid-2025, 5m for ETHUSDT
  late 2025), falling back to the entry timeframe where the finest series ends.
- **One position at a time per symbol and timeframe**: while a position is pending or open no new signal is
  taken (the engine is not even run); the next candidate bar is the first whose close is at or after the close of
  the candle that closed the position. Positions still open at the end of the data are reported as open and left
  out of the statistics.
- **Statistics** (over closed trades; EXPIRED = the limit entry never filled, counted apart, no R):
  win = R > 0, loss = R < 0; win rate = wins / trades; average R = expectancy = mean R per trade (= win rate *
  average win - loss rate * average loss); profit factor = sum of winning R / |sum of losing R| (None without
  losses); max drawdown = the largest peak-to-trough fall of the cumulative R curve, in R.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import numpy as np

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
        import pandas as pd

        from timeframes import interval_timedelta

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
        import pandas as pd

        return pd.Timestamp(self.close_ns[self.entry_tf][i], tz="UTC")

    def at(self, i: int) -> dict[str, Any]:
        cut = self.close_ns[self.entry_tf][i]
        out = {}
        for tf, frame in self.frames.items():
            end = i + 1 if tf == self.entry_tf else int(np.searchsorted(self.close_ns[tf], cut, side="right"))
            out[tf] = frame.iloc[max(0, end - self.lookback[tf]) : end]
        return out
