"""The control: random entries with the same exits, so that an edge is measured against luck, not zero.

For every out-of-sample trade, a twin is entered at market at the close of a bar drawn uniformly (seeded) from
the same symbol × timeframe × test window, in the same direction, with the same stop distance in percent of
price and the same target distances in R, traded with the same exit plan and costs, and followed on the same
finest candles as the real trades. A positive average in a trending market is not skill unless it beats these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from engine.signal_model import TradeDirection
from research.candidates import FULL_PATH, follow
from research.replay import CandleArrays, _dt, _finest_chunks, _ns
from research.walkforward import Candidate, OosTrade, Window
from tracking.costs import Costs
from tracking.state import Position, PositionState

BASELINE_SEED = 20240101


@dataclass(frozen=True, slots=True)
class _At:
    """What ``_finest_chunks`` reads of a signal: its time."""

    time: datetime


def _twin_position(t: Candidate, fill: float, at: datetime) -> Position:
    risk = abs(t.entry - t.sl) / t.entry * fill
    r_k = [abs(p - t.entry) / abs(t.entry - t.sl) for p in t.targets]
    direction = TradeDirection.LONG if t.sign > 0 else TradeDirection.SHORT
    return Position(
        id=0,
        signal_id="baseline",
        symbol=t.symbol,
        timeframe=t.timeframe,
        direction=direction,
        entry_low=fill,
        entry_high=fill,
        entry=fill,
        sl=fill - t.sign * risk,
        original_sl=fill - t.sign * risk,
        tp1=fill + t.sign * r_k[0] * risk,
        tp2=fill + t.sign * r_k[1] * risk,
        tp3=fill + t.sign * r_k[2] * risk,
        state=PositionState.OPEN,
        opened_at=at,
        expires_at=None,
        last_checked=at,
        filled_at=at,
        fill_price=fill,
        exit_plan=FULL_PATH,
    )


def twins(
    trades: Sequence[OosTrade],
    windows: Sequence[Window],
    market: Any,
    entries: dict[tuple[str, str], CandleArrays],
    costs: Costs,
    *,
    end: datetime,
    seed: int = BASELINE_SEED,
) -> list[OosTrade]:
    """One random-entry twin per filled trade of ``trades`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    out = []
    for trade in trades:
        c = trade.candidate
        if trade.r_net is None:
            continue
        w = next(w for w in windows if w.test_start <= c.time < w.test_end)
        arrays = entries[(c.symbol, c.timeframe)]
        lo, hi = np.searchsorted(arrays.close_ns, [_ns(w.test_start), _ns(w.test_end)], side="left")
        if hi <= lo:
            continue
        i = int(rng.integers(lo, hi))
        at = _dt(arrays.close_ns[i])
        position = _twin_position(c, float(arrays.c[i]), at)
        chunks = _finest_chunks(market, c.symbol, c.timeframe, _At(at), arrays, end=pd.Timestamp(end))
        position, hits = follow(position, chunks)
        if position.outcome is None:  # the data ended first: no result to compare
            continue
        twin = Candidate(
            symbol=c.symbol,
            timeframe=c.timeframe,
            time=at,
            setup=c.setup,
            sign=c.sign,
            entry=position.entry,
            sl=position.original_sl,
            targets=(position.tp1, position.tp2, position.tp3),
            fill=position.fill_price,
            market_entry=True,
            hits=hits[:3],
            exit_price=position.outcome.exit_price,
            exit_time=position.outcome.closed_at,
            exit_reason=position.outcome.reason.value,
            confidence=0.0,
        )
        gross, net = twin.r(trade.plan, costs)
        out.append(OosTrade(twin, trade.plan, gross, net, trade.gated, None))
    return out


def edge(real: Sequence[float], control: Sequence[float]) -> dict[str, float | None]:
    """Mean net R of ``real`` minus that of ``control``, with a two-sided 95% Welch t-interval."""
    a, b = np.asarray(real, dtype=float), np.asarray(control, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return {"edge": None, "ci_low": None, "ci_high": None}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    dof = (va + vb) ** 2 / ((va**2) / (len(a) - 1) + (vb**2) / (len(b) - 1)) if se > 0 else 1.0
    diff = float(a.mean() - b.mean())
    half = float(st.t.ppf(0.975, dof)) * se
    return {"edge": round(diff, 4), "ci_low": round(diff - half, 4), "ci_high": round(diff + half, 4)}
