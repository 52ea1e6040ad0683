"""Backtest statistics and the equity curve: pure functions of R multiples in time order.

Definitions (over closed trades; EXPIRED = the limit entry never filled, counted apart, no R): win = R > 0,
loss = R < 0; win rate = wins / trades; average R = expectancy = mean R per trade (= win rate * average win -
loss rate * average loss); profit factor = sum of winning R / |sum of losing R| (None without losses); max
drawdown = the largest peak-to-trough fall of the cumulative R curve, in R.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

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
# Equity curve
# ---------------------------------------------------------------------------------------------------------------


def render_equity_png(times: Sequence[datetime], r_multiples: Sequence[float], title: str) -> bytes:
    """PNG of the cumulative R curve (and its drawdown) over trade close times."""
    import io

    # a bare Figure renders with Agg on savefig: no pyplot (its import and global figure registry are not needed);
    # imported here, matplotlib costs about a second that the backtest loop does not need
    from matplotlib.figure import Figure

    equity = np.cumsum(np.asarray(list(r_multiples), dtype=float))
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    ax, ax_dd = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
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
