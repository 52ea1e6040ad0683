"""Statistics of out-of-sample net R that the evidence, the gate and the reports share.

R is profit in units of the planned risk |entry - sl|, net of fees and slippage. Intervals are Student-t
intervals of the mean net R per trade: trades of one setup are treated as independent draws, which is the
usual assumption of a per-trade expectancy (serial correlation between consecutive trades would widen them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from store.evidence import GATE_CONFIDENCE, GATE_MIN_TRADES

REPORT_CONFIDENCE = 0.95  # two-sided interval shown beside every average


def mean_interval(values: Sequence[float], confidence: float = REPORT_CONFIDENCE) -> tuple[float, float] | None:
    """Two-sided Student-t interval of the mean; None with fewer than 2 values."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return None
    half = st.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def lower_bound(values: Sequence[float], confidence: float = GATE_CONFIDENCE) -> float | None:
    """One-sided Student-t lower confidence bound of the mean; None with fewer than 2 values."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return None
    return float(x.mean() - st.t.ppf(confidence, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def gate_passes(values: Sequence[float]) -> bool:
    """The evidence gate: at least ``GATE_MIN_TRADES`` net R values and a one-sided 80% lower bound above 0."""
    bound = lower_bound(values)
    return len(values) >= GATE_MIN_TRADES and bound is not None and bound > 0


@dataclass(frozen=True, slots=True)
class SetupStats:
    """The figures of one group of filled trades (net R), as the evidence and `evaluate --json` report them."""

    trades: int
    win_rate: float | None  # share with r_net > 0
    tp1_rate: float | None  # share that reached TP1 before the stop
    average_r: float | None  # mean net R per trade (the expectancy)
    ci_low: float | None  # two-sided 95% t-interval of the mean net R
    ci_high: float | None
    profit_factor: float | None  # gross net-R wins / gross net-R losses; None without a losing trade

    def as_dict(self) -> dict[str, float | int | None]:
        return {name: getattr(self, name) for name in self.__slots__}


def setup_stats(r_net: Sequence[float], tp1_hit: Sequence[bool]) -> SetupStats:
    """Figures of filled trades given their net R and whether each reached TP1."""
    r = np.asarray(r_net, dtype=float)
    n = len(r)
    interval = mean_interval(r)
    losses = -r[r < 0].sum()
    rnd = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
    return SetupStats(
        trades=n,
        win_rate=rnd((r > 0).mean()) if n else None,
        tp1_rate=rnd(np.mean(tp1_hit)) if n else None,
        average_r=rnd(r.mean()) if n else None,
        ci_low=rnd(interval[0]) if interval else None,
        ci_high=rnd(interval[1]) if interval else None,
        profit_factor=rnd(r[r > 0].sum() / losses) if losses > 0 else None,
    )
