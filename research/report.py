"""Backtest results over several symbols: statistics by group, the JSON and text summaries, the journal file.

Every statistic is over NET R (after the run's fees and slippage, ``tracking.costs``); ``overall_gross`` is the
same trades before costs. ``--json``'s ``trades`` lists every closed or expired trade in close-time order, so the
summary is recomputable from it: ``stats_of`` over the non-null ``r_net`` values in that order (with ``tp1_hit``)
gives ``overall``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from research.simulation import SymbolRun, Trade
from research.stats import Stats, format_stats_line, stats_of
from store import journal
from tracking.costs import DEFAULT_COSTS, DEFAULT_EXIT_PLAN, Costs

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
    costs: Costs = DEFAULT_COSTS
    exit_plan: tuple[float, float, float] = DEFAULT_EXIT_PLAN
    min_confidence: float | None = None  # None: every signal was taken (--all-signals)

    @property
    def trades(self) -> list[Trade]:
        """All trades in signal-time order."""
        return sorted((t for run in self.runs for t in run.trades), key=lambda t: (t.signal.time, t.signal.symbol))

    @property
    def closed_trades(self) -> list[Trade]:
        """Filled and closed trades in close-time order (the equity curve's order)."""
        return sorted((t for t in self.trades if t.traded), key=lambda t: (t.outcome.closed_at, t.signal.symbol))

    @property
    def finished_trades(self) -> list[Trade]:
        """Closed or expired trades in close-time order (the ``--json`` ``trades`` list)."""
        done = (t for t in self.trades if t.closed)
        return sorted(done, key=lambda t: (t.outcome.closed_at, t.signal.symbol, t.signal.time))

    @property
    def candles(self) -> int:
        return sum(run.bars for run in self.runs)

    def stats(self, trades: Sequence[Trade] | None = None, *, gross: bool = False) -> Stats:
        """Net statistics of ``trades`` (default: every closed trade); ``gross``: before costs."""
        chosen = self.closed_trades if trades is None else trades
        r = [t.outcome.r_gross if gross else t.outcome.r_net for t in chosen]
        return stats_of(r, [t.outcome.highest_target >= 1 for t in chosen])

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
            "below_threshold": sum(run.below_threshold for run in self.runs),
            "min_confidence": self.min_confidence,
            "costs": self.costs.to_json(),
            "exit_plan": list(self.exit_plan),
            "overall": asdict(self.stats()),
            "overall_gross": asdict(self.stats(gross=True)),
            "by_direction": {k: asdict(v) for k, v in self.by_direction()},
            "by_session": {k: asdict(v) for k, v in self.by_session()},
            "by_symbol": {k: asdict(v) for k, v in self.by_symbol()},
            "unavailable": {run.symbol: list(run.unavailable) for run in self.runs if run.unavailable},
            "seconds": self.seconds,
            "candles_per_second": round(self.candles / self.seconds, 1) if self.seconds > 0 else None,
            "journal": self.journal_path,
            "equity_png": self.equity_path,
            "errors": [dict(e.to_json(), symbol=run.symbol) for run in self.runs for e in run.errors],
            "trades": [t.to_json() for t in self.finished_trades],
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
        taken = (
            "every signal (--all-signals)"
            if self.min_confidence is None
            else f"signals at or above confidence {self.min_confidence:g} ({data['below_threshold']} below not taken)"
        )
        lines.append(
            f"Taken: {taken}; exit plan {'/'.join(f'{v:g}' for v in self.exit_plan)} % at TP1/TP2/TP3; "
            f"costs: fee {self.costs.fee_pct:g} % per side, slippage {self.costs.slippage_pct:g} %"
        )
        lines.append(format_stats_line("all (net)", self.stats()))
        lines.append(format_stats_line("before costs", self.stats(gross=True)))
        for title, groups in (("direction", self.by_direction()), ("session", self.by_session())):
            lines.append(f"By {title}:")
            lines += [format_stats_line(f"  {name}", s) for name, s in groups]
        if len(self.runs) > 1:
            lines.append("By symbol:")
            lines += [format_stats_line(f"  {name}", s) for name, s in self.by_symbol()]
        for run in self.runs:
            for e in run.errors:
                lines.append(f"Skipped {run.symbol} bar {_iso(e.time)} after an error: {e.reason}")
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
