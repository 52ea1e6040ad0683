"""The ICT signal engine: the 12-step pipeline of PRODUCT.md section 4, pure over the closed candles it is given.

Pipeline (``generate_signal``): 1 candles (entry timeframe + its higher timeframes, closed candles only; the
higher-timeframe frames are cut to the candles closed by the entry candle's close) · 2 MTF bias · 3 entry models ·
4 liquidity map · 5 ICT components (whale, OB, breaker, FVG, ILP, SIBI/SSIB) · 6 displacement · 7 bias
(BOS/CHOCH/MSS) · 8 entry zone (OTE, premium/discount) · 9 SL/TP · 10 R:R validation · 11 confidence · 12 session.
``analyze`` adds step 1 (fetching through the market-data interface) and the ML enhancement.

This module composes the steps; the parts live in ``engine/``: ``engine.registry`` (the detector table and
``prepare``), ``engine.snapshot`` (the state at one bar), ``engine.planning`` (direction, entry, stop, targets),
``engine.scoring`` (entry model, confidence, features, components). The engine orchestrates, it does not detect:
every detector runs from the ``REGISTRY`` table; a detector that raises is logged and skipped, the step that needed
it contributes nothing, and the result names it in ``unavailable``. The rules are documented in ``docs/engine.md``.

Two-stage evaluation, so the backtest can compute the detectors once and read the state at every bar:
``prepare(frames, timeframe=..., config=...)`` runs every detector over the whole frames, and
``signal_at(prepared, bar, symbol=..., config=...)`` reads only what was known at the close of entry bar ``bar``
(objects with ``confirmed_at <= bar``, state changes ``*_at <= bar``, higher-timeframe candles closed by then).
By the detectors' causality convention ``signal_at(prepare(frames), k)`` equals ``generate_signal`` over the
frames cut at bar ``k`` (tested). ``analyses_over`` applies this to the block-aligned windows (``engine.windows``):
one ``prepare`` per block of bars, each result equal to ``analyze`` at that bar.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from engine.analysis_cache import AnalysisCache, analysis_key, last_close
from engine.config import CANDLES_PER_FRAME, WEIGHTS, EngineConfig
from engine.planning import NoTradeReason, direction_of, entry_plan, overlaps, stop_for, targets_for
from engine.registry import REGISTRY, DetectorSpec, Prepared, prepare
from engine.scoring import FEATURES, components_of, confidence_of, entry_model_of, features_of
from engine.signal_model import NoTrade, Signal, SignalResult, TradeDirection
from engine.snapshot import snapshot_at
from engine.views import Snapshot, StructureMark
from engine.windows import WINDOW_FETCH, FrameIndex, analysis_frames, unavailable_names
from ict_modules.core import Direction
from ict_modules.mtf_analyzer import higher_timeframes as _mtf_higher
from market import source as md
from market.timeframes import interval_timedelta, parse_interval

__all__ = [  # the engine's public surface (the parts stay importable from engine/)
    "CANDLES_PER_FRAME",
    "FEATURES",
    "REGISTRY",
    "WEIGHTS",
    "Analysis",
    "DetectorSpec",
    "EngineConfig",
    "Prepared",
    "Snapshot",
    "analyses_over",
    "analyze",
    "evaluate",
    "generate_signal",
    "higher_timeframes",
    "prepare",
    "signal_at",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------------
# steps 2-12 at one bar


def _time(prep: Prepared, bar: int) -> pd.Timestamp:
    return pd.Timestamp(int(prep.close_ns[prep.timeframe][bar]), tz="UTC")


def signal_at(
    prep: Prepared, bar: int, *, symbol: str, config: EngineConfig | None = None
) -> tuple[SignalResult, Snapshot]:
    """Steps 2-12 as known at the close of entry bar ``bar`` (negative = from the end)."""
    config = config or EngineConfig()
    n = len(prep.entry)
    bar = bar + n if bar < 0 else bar
    if not 0 <= bar < n:
        raise IndexError(f"bar {bar} outside 0..{n - 1}")
    snap = snapshot_at(prep, bar, config)
    bias = ((prep.timeframe, _bias_name(snap.structure.trend)), *tuple((tf, _bias_name(b)) for tf, b in snap.htf_bias))
    time = _time(prep, bar).to_pydatetime()
    plan = None
    d = None
    try:
        if not snap.atr > 0:
            raise NoTradeReason("no volatility: ATR is zero")
        d, agree, oppose = direction_of(snap, prep.unavailable)
        plan = entry_plan(snap, d, config)
        sl = stop_for(snap, d, plan, config)
        targets = targets_for(snap, d, plan.entry, sl, config)
        risk = abs(plan.entry - sl)
        tp1_r = abs(targets[0][0] - plan.entry) / risk
        if tp1_r < config.min_risk_reward:
            raise NoTradeReason(f"R:R too low: TP1 ({targets[0][1]}) pays {tp1_r:.2f}R < {config.min_risk_reward:g}R")
        in_ote = (
            snap.ote is not None
            and snap.ote.direction is d
            and overlaps(snap.ote.top, snap.ote.bottom, plan.low, plan.high)
        )
        if snap.dealing_range is not None:
            eq = sum(snap.dealing_range) / 2
            in_discount = plan.entry < eq if d is Direction.BULLISH else plan.entry > eq
        else:
            in_discount = False
        model, _ = entry_model_of(snap, d, plan, in_ote)
        breakdown = confidence_of(snap, d, plan, model, agree, in_discount, in_ote)
        confidence = round(sum(v for _, v in breakdown), 2)
        if confidence < config.min_confidence_floor:
            raise NoTradeReason(f"confidence {confidence:.0f} below the engine floor {config.min_confidence_floor:g}")
        tps = [t for t, _ in targets]
        signal = _checked_signal(
            symbol=symbol,
            timeframe=prep.timeframe,
            direction=TradeDirection.LONG if d is Direction.BULLISH else TradeDirection.SHORT,
            entry=_price(plan.entry),
            entry_low=_price(plan.low),
            entry_high=_price(plan.high),
            sl=_price(sl),
            tp1=_price(tps[0]),
            tp2=_price(tps[1]),
            tp3=_price(tps[2]),
            time=time,
            rule_confidence=min(100.0, confidence),
            confidence_breakdown=breakdown,
            bias=bias,
            components=components_of(snap, d, plan, targets),
            session=snap.session,
            entry_model=model,
            features=features_of(snap, d, plan, sl, tps, breakdown, agree, oppose),
            unavailable=prep.unavailable,
        )
        return signal, snap
    except NoTradeReason as exc:
        result = NoTrade(
            symbol=symbol,
            timeframe=prep.timeframe,
            time=time,
            reasons=tuple(exc.reasons),
            bias=bias,
            components=components_of(snap, d, plan, ()),
            unavailable=prep.unavailable,
        )
        return result, snap


def _checked_signal(**fields: Any) -> Signal:
    """The Signal, or no trade when a computed level fails the Signal's validation: the engine never raises on real
    candles (the planning steps already reject levels at or below zero; this is the net under them)."""
    try:
        return Signal(**fields)
    except ValueError as exc:
        logger.warning("%s %s: invalid signal levels, no trade: %s", fields["symbol"], fields["timeframe"], exc)
        raise NoTradeReason(f"invalid levels: {exc}") from None


def _price(value: float) -> float:
    """A computed price rounded to 10 significant digits (monotonic, so the zone order survives; no float noise
    such as 1952.8079000000002 in the JSON)."""
    return float(f"{float(value):.10g}")


def _bias_name(b: Direction | None) -> str:
    return b.value if b is not None else "neutral"


def generate_signal(
    frames: Mapping[str, pd.DataFrame],
    *,
    symbol: str,
    timeframe: str,
    config: EngineConfig | None = None,
) -> SignalResult:
    """Steps 2-12 over the closed candles given (entry timeframe + its higher timeframes), at the last entry bar.

    Pure: the same frames give the same result. Higher-timeframe candles that close after the last entry candle
    closes are ignored.
    """
    return evaluate(frames, symbol=symbol, timeframe=timeframe, config=config)[0]


def evaluate(
    frames: Mapping[str, pd.DataFrame], *, symbol: str, timeframe: str, config: EngineConfig | None = None
) -> tuple[SignalResult, Snapshot, Prepared]:
    """``generate_signal`` plus the snapshot and prepared detector output (what the chart draws)."""
    prep = prepare(frames, timeframe=timeframe, config=config)
    result, snap = signal_at(prep, -1, symbol=symbol, config=config)
    return result, snap, prep


# --------------------------------------------------------------------------------------------------------------
# step 1 and the ML enhancement


def higher_timeframes(tf: str) -> tuple[str, ...]:
    """Higher timeframes of ``tf`` (mtf_analyzer's table, the contract's)."""
    return tuple(_mtf_higher(tf))


class MarketDataLike(Protocol):
    def klines(
        self, symbol: str, interval: str, limit: int | None = 500, *, start: Any = None, end: Any = None
    ) -> pd.DataFrame: ...

    def now(self) -> pd.Timestamp: ...  # read only with a cache (the close of the last closed candle)


class PredictorLike(Protocol):
    @property
    def active(self) -> bool: ...

    def predict(self, features: Mapping[str, float]) -> float | None: ...


@dataclass(frozen=True)
class Analysis:
    """One analysis: the result, the candles it used, and what the chart draws."""

    symbol: str
    timeframe: str
    result: SignalResult
    frames: Mapping[str, pd.DataFrame]
    snapshot: Snapshot
    structure_marks: tuple[StructureMark, ...] = field(default=())


def analyze(
    market: MarketDataLike,
    symbol: str,
    timeframe: str,
    *,
    end: Any = None,
    config: EngineConfig | None = None,
    predictor: PredictorLike | None = None,
    cache: AnalysisCache | None = None,
) -> Analysis:
    """Step 1 (the block-aligned windows of the entry TF and each HTF, closed by ``end``) + generate_signal + ML.

    Each timeframe's window is the one of ``engine.windows`` (500-749 closed candles, its start anchored to absolute
    time), so ``signal --at``, the live bot and ``analyses_over`` read the same candles. Market-data errors of the
    entry timeframe propagate; a higher timeframe the source cannot serve (invalid interval, no candles) is skipped
    and named in ``unavailable``. Sync: call it with ``asyncio.to_thread``.

    ``cache``: answer from it when the same candles were analysed with the same config and model (the same
    ``Analysis`` object; ``engine.analysis_cache``), else analyse and keep the result there.
    """
    config = config or EngineConfig()
    timeframe = parse_interval(timeframe)
    if cache is not None:
        close = last_close(market.now(), timeframe, end)
        key = analysis_key(symbol, timeframe, close, config, predictor)
        compute = functools.partial(analyze, market, symbol, timeframe, end=end, config=config, predictor=predictor)
        return cache.analysis(key, compute, keep=lambda a: _closes_at(a, close))
    frames = {timeframe: market.klines(symbol, timeframe, WINDOW_FETCH, end=end)}
    higher = higher_timeframes(timeframe)
    absent = []
    for htf in higher:
        try:
            frames[htf] = market.klines(symbol, htf, WINDOW_FETCH, end=end)
        except Exception as exc:
            if not _is_missing_interval(exc):
                raise
            logger.warning("%s %s candles unavailable: %s", symbol, htf, exc)
            absent.append(htf)
    entry = frames[timeframe]
    if len(entry):  # (no entry candles: prepare names the problem)
        frames, empty = analysis_frames(frames, timeframe, entry.index[-1] + interval_timedelta(timeframe))
        absent += empty
    result, snap, prep = evaluate(frames, symbol=symbol, timeframe=timeframe, config=config)
    missing = unavailable_names(higher, absent)
    if missing:
        result = dataclasses.replace(result, unavailable=(*result.unavailable, *missing))
    if predictor is not None and isinstance(result, Signal) and getattr(predictor, "active", False):
        try:
            p = predictor.predict(dict(result.features))
        except Exception:
            logger.exception("ML predictor failed; rule confidence only")
            p = None
        if p is not None and math.isfinite(p):
            result = dataclasses.replace(result, ml_probability=min(1.0, max(0.0, float(p))))
    marks = snap.structure.marks
    return Analysis(symbol, timeframe, result, dict(prep.frames), snap, marks)


def _closes_at(analysis: Analysis, close: pd.Timestamp) -> bool:
    """The analysis read the entry candle closing at ``close`` (a source lagging behind its clock is not cached)."""
    entry = analysis.frames.get(analysis.timeframe)
    return entry is not None and len(entry) > 0 and entry.index[-1] + interval_timedelta(analysis.timeframe) == close


def analyses_over(
    frames: Mapping[str, pd.DataFrame],
    *,
    symbol: str,
    timeframe: str,
    bars: Iterable[int] | None = None,
    absent: Sequence[str] = (),
    config: EngineConfig | None = None,
) -> Iterator[tuple[int, SignalResult]]:
    """The backtest's engine: ``(bar, result)`` for each entry bar in ``bars``, each equal to ``analyze`` at that bar.

    Args:
        frames: the loaded history: the entry ``timeframe`` and the higher timeframes the source serves (any
            length; for exact equality with ``analyze`` it must reach back to each bar's window start, i.e. 749
            candles of every timeframe before the first bar, and its last candles need not be closed by any bar).
        bars: positions in ``frames[timeframe]`` (the bar whose close is the analysis moment), ascending; default
            every bar.
        absent: higher timeframes the source cannot serve at all (named in ``unavailable`` as ``analyze`` does).
        config: the rules' tunables.

    Result ``r`` for bar ``i`` == ``analyze(market, symbol, timeframe, end=<close of bar i>, config=config).result``
    (no ML probability) when the market serves the same candles. Cost: one ``prepare`` per block of 250 entry
    bars (split where a higher timeframe's window start moves inside it), then ``signal_at`` per bar (~0.5 ms):
    bars sharing their windows' starts share one detector run, which is exact by the detectors' causality.
    """
    config = config or EngineConfig()
    timeframe = parse_interval(timeframe)
    higher = higher_timeframes(timeframe)
    indexes = {tf: FrameIndex.of(frame, tf) for tf, frame in frames.items()}
    closes = frames[timeframe].index + interval_timedelta(timeframe)
    group: list[int] = []
    key = None
    for bar in range(len(closes)) if bars is None else bars:
        starts = _window_key(indexes, timeframe, closes[bar])
        if group and starts != key:
            yield from _group_results(frames, indexes, group, closes, higher, absent, symbol, timeframe, config)
            group = []
        key = starts
        group.append(bar)
    if group:
        yield from _group_results(frames, indexes, group, closes, higher, absent, symbol, timeframe, config)


def _window_key(indexes: Mapping[str, FrameIndex], timeframe: str, close_time: pd.Timestamp) -> tuple:
    """What decides the candles a bar's analysis reads besides its own close: each window's start, and which
    higher-timeframe windows are empty."""
    out = []
    for tf, index in indexes.items():
        lo, hi = index.bounds(close_time)
        out.append((tf, lo, tf != timeframe and hi == lo))
    return tuple(out)


def _group_results(
    frames: Mapping[str, pd.DataFrame],
    indexes: Mapping[str, FrameIndex],
    group: Sequence[int],
    closes: pd.DatetimeIndex,
    higher: Sequence[str],
    absent: Sequence[str],
    symbol: str,
    timeframe: str,
    config: EngineConfig,
) -> Iterator[tuple[int, SignalResult]]:
    """One ``prepare`` over the windows of the group's last bar, read at every bar of the group."""
    last = closes[max(group)]  # the latest bar: its windows hold every bar of the group
    windows, empty = analysis_frames(frames, timeframe, last, indexes=indexes)
    missing = unavailable_names(higher, (*absent, *empty))
    prep = prepare(windows, timeframe=timeframe, config=config)
    first, _ = indexes[timeframe].bounds(last)  # position of the entry window's first candle in the history
    for bar in group:
        result, _ = signal_at(prep, bar - first, symbol=symbol, config=config)
        if missing:
            result = dataclasses.replace(result, unavailable=(*result.unavailable, *missing))
        yield bar, result


def _is_missing_interval(exc: Exception) -> bool:
    """A higher timeframe the source cannot serve (bad interval, no data for it), as opposed to a network, rate
    limit or location failure, which propagates."""
    transient = (md.MarketDataUnavailable, md.RateLimitedError, md.RestrictedLocationError, md.InvalidSymbolError)
    return isinstance(exc, md.MarketDataError | ValueError) and not isinstance(exc, transient)
