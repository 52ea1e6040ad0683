"""``python bot.py evaluate SYMBOLS TFS``: walk-forward evidence per setup, net of costs, against a random control.

Pipeline: candidates per symbol × timeframe (``research.candidates``, fanned out by ``research.fanout``), then
rolling windows (``research.walkforward``): choose on each training window, trade the next test window. The
report and ``BOT_DATA_DIR/evidence.json`` (``store.evidence``) hold out-of-sample figures only; every variant's
training-window figures are reported too, losers included, with the number of variants tried.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pandas as pd

import ict_signal_engine as engine
from config import Settings
from market.factory import create_market_data
from market.sample_source import SampleSource
from market.source import MarketDataError, normalize_symbol
from market.timeframes import parse_interval
from research.baseline import BASELINE_SEED, edge, twins
from research.candidates import CandidateTask, run_task
from research.fanout import run_all
from research.replay import CandleArrays
from research.simulation import Progress
from research.walkforward import (
    EXIT_PLANS,
    VARIANTS,
    Candidate,
    OosTrade,
    by_setup,
    calibration,
    choose,
    fixed,
    gate_at_end,
    oos_trades,
    stats_of,
    variant_named,
    windows,
)
from store.evidence import write_evidence
from tracking.costs import Costs
from tracking.setups import setup_of

logger = logging.getLogger(__name__)

# fixed configurations reported out of sample beside the walk-forward choice ("before" the research)
REFERENCES = (
    ("engine_as_is", "all", (0.0, 0.0, 100.0)),  # every signal, whole position to TP3
    ("live_threshold", "confidence60", (0.0, 0.0, 100.0)),  # what the bot sent before evidence existed
)


def history_market(settings: Settings) -> Any:
    """The market the research reads: the sample files with the clock at their end (everything is history), or
    Binance."""
    if settings.market_data == "sample":
        source = SampleSource(settings.sample_data_dir)
        last = max(end for _, end in source.data_spans().values())
        return SampleSource(settings.sample_data_dir, clock=lambda: last)
    return create_market_data(settings)


def _candidates(settings: Settings, task: CandidateTask) -> list[Candidate]:
    """One fan-out task (top level: pickled to process-pool and Dask workers)."""
    return run_task(task, history_market(settings), setup_of, engine.EngineConfig.from_settings(settings))


@dataclass(frozen=True, slots=True)
class Request:
    symbols: tuple[str, ...]
    timeframes: tuple[str, ...]
    start: datetime
    end: datetime
    train_days: int
    test_days: int
    costs: Costs


def evaluate(settings: Settings, request: Request, *, scheduler: str | None = None, seed: int = BASELINE_SEED) -> dict:
    """The walk-forward report as one JSON-ready object (see the module docstring)."""
    started = time.perf_counter()
    tasks = [CandidateTask(s, tf, request.start, request.end) for s in request.symbols for tf in request.timeframes]
    progress = Progress(3, "evaluate", unit="steps (candidates, walk-forward, control)")
    per_task = run_all(partial(_candidates, settings), tasks, scheduler=scheduler)
    candidates = [c for group in per_task for c in group]
    progress.update(1)
    ws = windows(request.start, request.end, request.train_days, request.test_days)
    choices = [choose(candidates, w, request.costs) for w in ws]
    oos = [t for ch in choices for t in oos_trades(candidates, ch, request.costs)]
    progress.update(2)
    market = history_market(settings)
    entries = {
        (t.symbol, t.timeframe): CandleArrays.from_frame(
            market.klines(
                t.symbol, t.timeframe, None, start=pd.Timestamp(request.start), end=pd.Timestamp(request.end)
            ),
            t.timeframe,
        )
        for t in tasks
    }
    control = twins(oos, ws, market, entries, request.costs, end=request.end, seed=seed)
    progress.close()
    gated = [t for t in oos if t.gated]

    def fixed_stream(variant: str, plan) -> list[OosTrade]:
        return [t for w in ws for t in oos_trades(candidates, fixed(w, variant_named(variant), plan), request.costs)]

    setups = [_setup_row(name, trades, control) for name, trades in by_setup(oos).items()]
    return {
        "period": {"start": _iso(request.start), "end": _iso(request.end)},
        "symbols": list(request.symbols),
        "timeframes": list(request.timeframes),
        "train_days": request.train_days,
        "test_days": request.test_days,
        "costs": request.costs.to_json(),
        "windows": len(ws),
        "candidates": len(candidates),
        "setups": setups,
        "all": {"stats": stats_of(oos), **_edge(oos, control)},
        "gated": {"trades": [trade_json(t) for t in gated], "stats": stats_of(gated), **_edge(gated, control)},
        "baseline": {"seed": seed, "stats": stats_of(control)},
        "reference": {name: stats_of(fixed_stream(v, plan)) for name, v, plan in REFERENCES},
        # every variant x plan held fixed over all test windows: descriptive only, never used to choose
        "fixed": [
            {"variant": v.name, "exit_plan": list(plan), **stats_of(fixed_stream(v.name, plan))}
            for v in VARIANTS
            for plan in EXIT_PLANS
        ],
        "calibration": calibration(oos),
        "choices": [_choice_json(ch) for ch in choices],
        "variants_tried": len(VARIANTS) * len(EXIT_PLANS),
        "variants": [
            {"name": v.name, "description": v.description, "plans": [list(p) for p in EXIT_PLANS]} for v in VARIANTS
        ],
        "seconds": round(time.perf_counter() - started, 1),
    }


def _twins_of(trades: Sequence[OosTrade], control: Sequence[OosTrade]) -> list[float]:
    """The control trades paired with ``trades`` (same setup), as net R."""
    setups = {t.candidate.setup for t in trades}
    gated_only = all(t.gated for t in trades) and trades
    return [c.r_net for c in control if c.candidate.setup in setups and (c.gated or not gated_only)]


def _edge(trades: Sequence[OosTrade], control: Sequence[OosTrade]) -> dict:
    real = [t.r_net for t in trades if t.r_net is not None]
    return {"edge": edge(real, _twins_of(trades, control))}


def _setup_row(name: str, trades: Sequence[OosTrade], control: Sequence[OosTrade]) -> dict:
    return {"setup": name, **stats_of(trades), "gated": gate_at_end(trades), **_edge(trades, control)}


def _choice_json(ch) -> dict:
    return {
        "train_start": _iso(ch.window.train_start),
        "test_start": _iso(ch.window.test_start),
        "test_end": _iso(ch.window.test_end),
        "variant": ch.variant.name if ch.variant else None,
        "exit_plan": list(ch.plan),
        "kept": sorted(ch.kept),
        "training": [
            {"variant": s.variant, "exit_plan": list(s.plan), "trades": s.trades, "average_r": s.average_r}
            for s in ch.scores
        ],
    }


def trade_json(t: OosTrade) -> dict:
    """One trade as ``backtest --json`` prints it."""
    c = t.candidate
    exits = c.exits(t.plan) if c.filled else []
    share = sum(x.share for x in exits)
    return {
        "symbol": c.symbol,
        "timeframe": c.timeframe,
        "time": _iso(c.time),
        "direction": "long" if c.sign > 0 else "short",
        "setup": c.setup,
        "entry": c.entry,
        "fill": c.fill,
        "sl": c.sl,
        "exit": sum(x.share * x.price for x in exits) / share if share else None,
        "exit_time": _iso(c.close_time(t.plan)) if c.filled else _iso(c.exit_time),
        "exit_reason": c.exit_reason,
        "targets_hit": len(c.hits),
        "r_gross": None if t.r_gross is None else round(t.r_gross, 4),
        "r_net": None if t.r_net is None else round(t.r_net, 4),
        "confidence": c.confidence,
        "probability": None if t.probability is None else round(t.probability, 4),
        "exit_plan": list(t.plan),
    }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return pd.Timestamp(moment).tz_convert(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------


class BadArguments(ValueError):
    """A one-line reason; exit status 2."""


def _time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = pd.Timestamp(text)
    except ValueError:
        raise BadArguments(f"--{name}: not a date or time: {text!r} (e.g. 2024-01-01)") from None
    return (moment.tz_localize(UTC) if moment.tzinfo is None else moment.tz_convert(UTC)).to_pydatetime()


def parse_request(args: argparse.Namespace, market: Any) -> Request:
    symbols = tuple(normalize_symbol(s) for s in args.symbols.split(",") if s.strip())
    try:
        timeframes = tuple(parse_interval(t) for t in args.timeframes.split(",") if t.strip())
    except ValueError as exc:
        raise BadArguments(str(exc)) from None
    if not symbols or not timeframes:
        raise BadArguments("give SYMBOLS and TFS, e.g. evaluate BTCUSDT,ETHUSDT 1h,4h")
    end = _time(args.end, "end") or market.now().to_pydatetime()
    start = _time(args.start, "start") or (pd.Timestamp(end) - pd.Timedelta(days=730)).to_pydatetime()
    if start >= end:
        raise BadArguments("--start must be before --end")
    if args.train_days < 1 or args.test_days < 1:
        raise BadArguments("--train-days and --test-days must be at least 1")
    if start + pd.Timedelta(days=args.train_days) >= end:
        raise BadArguments("the period is shorter than one training window: widen --start/--end or lower --train-days")
    try:
        costs = Costs(args.fee, args.slippage)
    except ValueError as exc:
        raise BadArguments(str(exc)) from None
    return Request(symbols, timeframes, start, end, args.train_days, args.test_days, costs)


def main(args: argparse.Namespace, settings: Settings) -> int:
    """0 done, 2 bad arguments, 1 market-data failure; one line on stderr for each failure."""
    defaults = Costs.from_settings(settings)
    args.fee = defaults.fee_pct if args.fee is None else args.fee
    args.slippage = defaults.slippage_pct if args.slippage is None else args.slippage
    try:
        market = history_market(settings)
        request = parse_request(args, market)
        for symbol in request.symbols:
            market.validate_symbol(symbol)
    except BadArguments as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    except MarketDataError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2 if "symbol" in str(exc).lower() else 1
    scheduler = args.scheduler or getattr(settings, "dask_scheduler_address", None)
    report = evaluate(settings, request, scheduler=scheduler)
    path = write_evidence(settings.bot_data_dir, report)
    if args.json:
        print(json.dumps(report, allow_nan=False))
    else:
        print(format_report(report))
        print(f"evidence written to {path}")
    return 0


def format_report(report: dict) -> str:
    """A plain-text summary: the gated stream, every setup, the control and the calibration."""

    def line(label: str, s: dict, e: dict | None = None) -> str:
        if not s["trades"]:
            return f"{label:<34} no trades"
        ci = f"({s['ci_low']:+.3f}…{s['ci_high']:+.3f})" if s["ci_low"] is not None else ""
        pf = "—" if s["profit_factor"] is None else f"{s['profit_factor']:.2f}"
        extra = ""
        if e and e.get("edge") is not None:
            extra = f"  edge vs random {e['edge']:+.3f} ({e['ci_low']:+.3f}…{e['ci_high']:+.3f})"
        return (
            f"{label:<34} {s['trades']:>4} trades  win {s['win_rate']:.0%}  TP1 {s['tp1_rate']:.0%}  "
            f"avg {s['average_r']:+.3f} R net {ci}  PF {pf}{extra}"
        )

    period = report["period"]
    rows = [
        f"Walk-forward {period['start'][:10]} → {period['end'][:10]}, {report['windows']} test windows "
        f"({report['train_days']}d train / {report['test_days']}d test), costs: fee {report['costs']['fee_pct']}% "
        f"per side, slippage {report['costs']['slippage_pct']}%; {report['variants_tried']} variants tried",
        "Out-of-sample, net of costs (95% intervals):",
        line("gated stream (what would be sent)", report["gated"]["stats"], report["gated"]["edge"]),
        line("all setups", report["all"]["stats"], report["all"]["edge"]),
        line("random entries, same exits", report["baseline"]["stats"]),
        line("reference: engine as is", report["reference"]["engine_as_is"]),
        line("reference: live threshold (60)", report["reference"]["live_threshold"]),
    ]
    rows += [line(f"  {s['setup']}{' ✓' if s['gated'] else ''}", s, s["edge"]) for s in report["setups"]]
    rows.append(
        "Calibration (predicted TP1 → realised): "
        + ", ".join(f"{c['predicted']:.0%}→{c['realized']:.0%} (n={c['n']})" for c in report["calibration"])
    )
    return "\n".join(rows)
