"""``python bot.py signal SYMBOL [TF] [--at TIME] [--chart FILE] [--json]``: one analysis from the terminal.

Prints the plain-text signal (or "no trade" and why) with its setup's out-of-sample record and the gate's
decision (``GATE`` with ``BOT_DATA_DIR/evidence.json``); ``--json`` prints exactly one JSON object
(``result.to_json()``, documented in docs/engine.md, plus for a signal the gate's ``Verdict.to_json()``: ``setup``,
``probability``, ``evidence``, ``broadcast``) and nothing else on stdout; ``--chart FILE`` writes the PNG;
``--at TIME`` analyses as of the candle closing at or before TIME (ISO 8601, UTC unless it carries an offset).
Exit status: 0 success, 2 bad symbol/timeframe/time (one line on stderr), 1 market-data failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from config import Settings
from engine.signal_model import Signal
from market.timeframes import parse_interval
from store.evidence import load_evidence
from tracking.gate import Verdict, verdict

logger = logging.getLogger(__name__)


class _BadInput(Exception):
    pass


def parse_time(text: str | None) -> pd.Timestamp | None:
    """ISO time (``2025-07-01``, ``2025-07-01T14:00``, ``...Z`` or with an offset) as aware UTC; naive = UTC."""
    if text is None:
        return None
    try:
        moment = pd.Timestamp(text.strip())
    except (ValueError, TypeError):
        raise _BadInput(f"bad --at time {text!r}; use ISO 8601, e.g. 2025-07-01T14:00Z") from None
    if moment is pd.NaT or pd.isna(moment):
        raise _BadInput(f"bad --at time {text!r}; use ISO 8601, e.g. 2025-07-01T14:00Z")
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def _predictor(settings: Settings):
    """The ML predictor when a usable model exists in BOT_DATA_DIR, else None (never fatal)."""
    try:
        from ml_predictor import MLPredictor

        predictor = MLPredictor(settings.bot_data_dir)
        predictor.load()
        return predictor if predictor.active else None
    except Exception:
        logger.warning("ML predictor unavailable; rule confidence only", exc_info=True)
        return None


def gate_verdict(result: Any, settings: Settings) -> Verdict | None:
    """The gate's verdict for a signal (None for a no-trade), with the evidence in BOT_DATA_DIR."""
    if not isinstance(result, Signal):
        return None
    evidence = load_evidence(settings.bot_data_dir)
    return verdict(result, gate=settings.gate, evidence=evidence, min_confidence=settings.min_confidence)


def main(args: argparse.Namespace, settings: Settings) -> int:
    from chat.formatting import format_signal_text
    from ict_signal_engine import EngineConfig, analyze
    from market import source as md
    from market.factory import create_market_data

    try:
        symbol = md.normalize_symbol(args.symbol)
        timeframe = parse_interval(args.timeframe or "1h")
        at = parse_time(getattr(args, "at", None))
    except (_BadInput, ValueError, md.MarketDataError) as exc:
        print(f"signal: {exc}", file=sys.stderr)
        return 2
    if at is not None and settings.market_data == "sample" and hasattr(settings, "sample_start"):
        # the sample source's "now" is a replay clock: start it at --at, so "the data available then" is exactly
        # the candles closed by TIME (a Binance "now" is the real one, and --at is in the past)
        settings = dataclasses.replace(settings, sample_start=at.to_pydatetime(), sample_speed=0.0)
    try:
        market = create_market_data(settings)
        symbol = market.validate_symbol(symbol)
        analysis = analyze(
            market,
            symbol,
            timeframe,
            end=at,
            config=EngineConfig.from_settings(settings),
            predictor=_predictor(settings),
        )
    except (md.InvalidSymbolError, md.InvalidIntervalError) as exc:
        print(f"signal: {exc}", file=sys.stderr)
        return 2
    except md.MarketDataError as exc:
        if type(exc) is md.MarketDataError and at is not None:  # the source has no candles for that time
            print(f"signal: {exc}", file=sys.stderr)
            return 2
        print(f"signal: market data failed: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # no closed candles at/before --at, or a frame the engine cannot read
        print(f"signal: {exc}", file=sys.stderr)
        return 2 if at is not None else 1
    result = analysis.result
    v = gate_verdict(result, settings)
    if args.json:
        print(json.dumps({**result.to_json(), **(v.to_json() if v else {})}, ensure_ascii=False))
    elif v is not None:
        line = f"Gate ({settings.gate}): {'would broadcast' if v.broadcast else 'not broadcast'}: {v.reason}"
        print(format_signal_text(result, settings.tz, verdict=v, tracking=line))
    else:
        print(format_signal_text(result, settings.tz))
    if args.chart:
        from chat.charts import render_signal_chart

        path = Path(args.chart)
        try:
            path.write_bytes(render_signal_chart(analysis, tz=settings.tz))
        except OSError as exc:
            print(f"signal: cannot write chart {path}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"chart: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0
