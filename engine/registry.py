"""The detector registry: which ``ict_modules`` function runs on which frame with which options, and ``prepare``,
which validates the frames and runs every row once over them (a failing row is logged and skipped)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.config import EngineConfig
from engine.indicators import wilder_atr
from engine.tables import PoolTable, ZoneTable, confirmed_key
from engine.views import ZONE_DETECTORS
from ict_modules import (
    breaker_block_detector,
    displacement_detector,
    entry_models,
    fvg_detector,
    ict_whale_detector,
    ilp_detector,
    liquidity_map,
    market_structure,
    order_block_detector,
    ote_calculator,
    premium_discount,
    session_analyzer,
    sibi_ssib_detector,
    swing_points,
)
from ict_modules.core import CandleArrays, ohlcv_arrays, validate_candles
from market.timeframes import INTERVALS, interval_timedelta, parse_interval

logger = logging.getLogger(__name__)


Options = Callable[[EngineConfig, Mapping[str, Any]], dict[str, Any]]


def _no_options(cfg: EngineConfig, done: Mapping[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """One registry row: ``detect(candles, **options(config, done))`` over a whole frame.

    ``done`` maps the names of the rows already run on the same frame to their results, so a detector can be given
    the objects it would otherwise recompute (structure events, order blocks, candle tables, ...), and
    ``"timeframe"`` to the frame's interval. A failed row is absent from ``done``; detectors then compute what they
    need themselves.
    ``higher``: also run on the higher-timeframe frames (structure and liquidity are read there too): True = all of
    them, an int n = the first (nearest) n.
    """

    name: str
    detect: Callable[..., Any]
    options: Options = _no_options
    higher: bool | int = False

    def run(self, candles: pd.DataFrame, config: EngineConfig, done: Mapping[str, Any] | None = None) -> Any:
        return self.detect(candles, **self.options(config, done or {}))


def _spec(
    name: str,
    detect: Callable[..., Any],
    options: Options | None = None,
    *,
    higher: bool | int = False,
    arrays: bool = True,
) -> DetectorSpec:
    """A registry row; ``arrays``: the detector takes the frame's column arrays (``arrays=``, extracted once)."""
    options = options or _no_options
    if arrays:
        return DetectorSpec(
            name, detect, lambda cfg, done: {**_given(done, arrays="arrays"), **options(cfg, done)}, higher
        )
    return DetectorSpec(name, detect, options, higher)


def _period_pools(timeframe: str) -> dict[str, bool]:
    """Previous day/week pools only below those periods (on daily candles the "previous day high" is just the
    previous candle's high)."""
    rank = INTERVALS.index(timeframe)
    return {"previous_day": rank < INTERVALS.index("1d"), "previous_week": rank < INTERVALS.index("1w")}


def _given(done: Mapping[str, Any], **names: str) -> dict[str, Any]:
    """Keyword arguments ``{kwarg: done[name]}`` for the named earlier results that exist."""
    return {kwarg: done[name] for kwarg, name in names.items() if done.get(name) is not None}


DETECTOR_ATR_LENGTH = 14  # the detectors' default ATR length: the frame's ATR is computed once and handed to them


def _atr(done: Mapping[str, Any]) -> dict[str, Any]:
    """The frame's ATR (computed once by ``prepare``) for a detector whose ``atr_length`` is the default."""
    return _given(done, atr_values="atr")


REGISTRY: tuple[DetectorSpec, ...] = (
    _spec("candle_tables", order_block_detector.candle_tables, higher=True),
    _spec("swing_points", swing_points.detect_swing_points, lambda cfg, done: {"left": 3, "right": 3}),
    _spec(
        "market_structure",
        market_structure.detect_market_structure,
        lambda cfg, done: {**_given(done, tables="candle_tables"), **_atr(done)},
        higher=True,
    ),
    _spec(
        "internal_structure",
        market_structure.detect_market_structure,
        lambda cfg, done: {"level": "internal", **_given(done, tables="candle_tables"), **_atr(done)},
        higher=True,
    ),
    _spec(
        "liquidity_map",
        liquidity_map.detect_liquidity,
        lambda cfg, done: {"swing_length": cfg.swing_length, **_period_pools(done["timeframe"]), **_atr(done)},
        higher=1,  # the nearest higher timeframe's pools are targets too
    ),
    _spec(
        "displacement",
        displacement_detector.detect_displacement,
        lambda cfg, done: {
            "atr_length": cfg.atr_length,
            **(_atr(done) if cfg.atr_length == DETECTOR_ATR_LENGTH else {}),
        },
    ),
    _spec(
        "order_blocks",
        order_block_detector.detect_order_blocks,
        lambda cfg, done: _given(done, events="internal_structure", tables="candle_tables"),
    ),
    _spec(
        "breaker_blocks",
        breaker_block_detector.detect_breaker_blocks,
        lambda cfg, done: _given(done, order_blocks="order_blocks", tables="candle_tables"),
    ),
    _spec("fvg", fvg_detector.detect_fvgs, lambda cfg, done: _atr(done)),
    _spec("sibi_ssib", sibi_ssib_detector.detect_sibi_ssib, lambda cfg, done: _atr(done)),
    _spec("premium_discount", premium_discount.detect_dealing_ranges),
    _spec(
        "ilp",
        ilp_detector.detect_internal_liquidity,
        lambda cfg, done: {**_given(done, ranges="premium_discount"), **_atr(done)},
    ),
    _spec("whale", ict_whale_detector.detect_whale_blocks, lambda cfg, done: _atr(done)),
    _spec("ote", ote_calculator.detect_ote, lambda cfg, done: {"swing_length": cfg.swing_length, **_atr(done)}),
    _spec(
        "entry_models",
        entry_models.detect_entry_models,
        lambda cfg, done: {
            "ote_swing_length": cfg.swing_length,
            **_given(
                done,
                events="internal_structure",
                trend_events="market_structure",
                order_blocks="order_blocks",
                breakers="breaker_blocks",
                fvgs="fvg",
                ote_setups="ote",
            ),
        },
    ),
    _spec("session", session_analyzer.detect_sessions),
)


@dataclass(frozen=True)
class Prepared:
    """Detector output over whole frames; read at a bar with :func:`signal_at`."""

    timeframe: str
    frames: Mapping[str, pd.DataFrame]  # entry timeframe first, then higher timeframes
    raw: Mapping[tuple[str, str], Any]  # (detector, timeframe) -> its full-run result
    unavailable: tuple[str, ...]
    atr: Mapping[str, np.ndarray]
    close_ns: Mapping[str, np.ndarray]  # per timeframe: candle close times (ns since epoch)
    zone_tables: tuple[ZoneTable, ...] = ()  # entry timeframe zones (OB, breaker, FVG, SIBI/SSIB)
    pool_tables: Mapping[tuple[str, str], PoolTable] = field(default_factory=dict)  # liquidity_map / ilp pools

    @property
    def entry(self) -> pd.DataFrame:
        return self.frames[self.timeframe]

    def htf_bar(self, tf: str, bar: int) -> int:
        """Last bar of ``tf`` closed at the close of entry bar ``bar`` (-1: none)."""
        t = self.close_ns[self.timeframe][bar]
        return int(np.searchsorted(self.close_ns[tf], t, side="right")) - 1


def run_registry(
    frames: Mapping[str, pd.DataFrame],
    timeframe: str,
    config: EngineConfig,
    registry: Sequence[DetectorSpec],
    shared: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[tuple[str, str], Any], list[str]]:
    """Run every detector (entry TF; ``higher`` ones on every frame). Failures are logged and listed, never fatal.

    ``shared[tf]`` is added to every row's ``done`` on that frame (what the engine extracts once per frame: "arrays",
    the column arrays, and "atr").
    """
    raw: dict[tuple[str, str], Any] = {}
    unavailable: list[str] = []
    for spec in registry:
        for tf in _frames_for(spec, list(frames)):
            try:
                earlier = {name: value for (name, t), value in raw.items() if t == tf}
                done = {"timeframe": tf, **(shared or {}).get(tf, {}), **earlier}
                raw[(spec.name, tf)] = _in_confirmation_order(spec.run(frames[tf], config, done))
            except Exception:  # a broken detector must not take the engine down
                logger.exception("detector %s failed on %s; skipped", spec.name, tf)
                if spec.name not in unavailable:
                    unavailable.append(spec.name)
    return raw, unavailable


def _frame_atr(arrays: CandleArrays, length: int) -> np.ndarray:
    return wilder_atr(arrays.high, arrays.low, arrays.close, length=length)


def _frames_for(spec: DetectorSpec, timeframes: list[str]) -> list[str]:
    """The timeframes a registry row runs on: the entry one (first), plus all or the nearest n higher ones."""
    if spec.higher is True:
        return timeframes
    return timeframes[: 1 + int(spec.higher)]


def _in_confirmation_order(result: Any) -> Any:
    """Lists of objects sorted (stably) by ``confirmed_at``, so the engine can bisect them by bar."""
    if isinstance(result, list) and result and all(hasattr(o, "confirmed_at") for o in result):
        return sorted(result, key=confirmed_key)
    return result


def close_ns_of(frame: pd.DataFrame, tf: str) -> np.ndarray:
    if len(frame) == 0:
        return np.empty(0, dtype=np.int64)
    return (frame.index + interval_timedelta(tf)).as_unit("ns").asi8


def prepare(
    frames: Mapping[str, pd.DataFrame],
    *,
    timeframe: str,
    config: EngineConfig | None = None,
    registry: Sequence[DetectorSpec] | None = None,
) -> Prepared:
    """Validate the frames, cut higher timeframes to candles closed by the entry frame's last close, run detectors."""
    config = config or EngineConfig()
    timeframe = parse_interval(timeframe)
    if timeframe not in frames:
        raise ValueError(f"frames lack the entry timeframe {timeframe}")
    entry = validate_candles(frames[timeframe])
    if len(entry) == 0:
        raise ValueError(f"no closed {timeframe} candles")
    ordered = {timeframe: entry}
    entry_close = close_ns_of(entry, timeframe)[-1]
    for tf in sorted((parse_interval(t) for t in frames if t != timeframe), key=INTERVALS.index):
        frame = validate_candles(frames[tf])
        closes = close_ns_of(frame, tf)
        ordered[tf] = frame.iloc[: int(np.searchsorted(closes, entry_close, side="right"))]
    arrays = {tf: ohlcv_arrays(frame) for tf, frame in ordered.items()}
    shared = {tf: {"arrays": arrays[tf], "atr": _frame_atr(arrays[tf], DETECTOR_ATR_LENGTH)} for tf in ordered}
    raw, unavailable = run_registry(ordered, timeframe, config, REGISTRY if registry is None else registry, shared)
    atrs = {
        tf: shared[tf]["atr"] if config.atr_length == DETECTOR_ATR_LENGTH else _frame_atr(arrays[tf], config.atr_length)
        for tf in ordered
    }
    closes = {tf: close_ns_of(frame, tf) for tf, frame in ordered.items()}
    tables = tuple(
        ZoneTable.build(raw[(name, timeframe)], kind) for name, kind in ZONE_DETECTORS if (name, timeframe) in raw
    )
    pool_tables = {key: PoolTable.build(value) for key, value in raw.items() if key[0] in ("liquidity_map", "ilp")}
    return Prepared(timeframe, ordered, raw, tuple(unavailable), atrs, closes, tables, pool_tables)
