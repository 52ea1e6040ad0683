"""The ICT signal engine: the 12-step pipeline of PRODUCT.md section 4, pure over the closed candles it is given.

Pipeline (``generate_signal``): 1 candles (entry timeframe + its higher timeframes, closed candles only; the
higher-timeframe frames are cut to the candles closed by the entry candle's close) · 2 MTF bias · 3 entry models ·
4 liquidity map · 5 ICT components (whale, OB, breaker, FVG, ILP, SIBI/SSIB) · 6 displacement · 7 bias
(BOS/CHOCH/MSS) · 8 entry zone (OTE, premium/discount) · 9 SL/TP · 10 R:R validation · 11 confidence · 12 session.
``analyze`` adds step 1 (fetching through the market-data interface) and the ML enhancement.

The engine orchestrates, it does not detect: every detector runs from the ``REGISTRY`` table; a detector that is
missing or raises is logged and skipped, the step that needed it contributes nothing, and the result names it in
``unavailable``. The rules (direction, entry, SL/TP, confidence weights, features) are documented in
``docs/engine.md`` and in the docstrings below.

Two-stage evaluation, so the backtest can compute the detectors once and read the state at every bar:
``prepare(frames, timeframe=..., config=...)`` runs every detector over the whole frames, and
``signal_at(prepared, bar, symbol=..., config=...)`` reads only what was known at the close of entry bar ``bar``
(objects with ``confirmed_at <= bar``, state changes ``*_at <= bar``, higher-timeframe candles closed by then).
By the detectors' causality convention ``signal_at(prepare(frames), k)`` equals ``generate_signal`` over the
frames cut at bar ``k`` (tested).
"""

from __future__ import annotations

import bisect
import dataclasses
import importlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from engine.signal_model import Component, NoTrade, Signal, SignalResult, TradeDirection
from ict_modules.core import Direction, atr, validate_candles
from market.timeframes import INTERVALS, interval_timedelta, parse_interval

logger = logging.getLogger(__name__)

CANDLES_PER_FRAME = 500

# --------------------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Tunables of the rules; every distance is relative (ATR multiples or R), never a price.

    Attributes:
        min_risk_reward: step 10; the first target must pay at least this many R (``MIN_RISK_REWARD``).
        min_confidence_floor: rule confidence below this is "no trade" (the broadcast filter
            ``MIN_CONFIDENCE`` is the scanner's, not the engine's).
        atr_length: Wilder ATR length in bars.
        sl_buffer_atr: the stop sits this many ATRs beyond the protecting structure.
        min_stop_atr / max_stop_atr: the risk (entry to stop) is widened to at least ``min_stop_atr`` ATRs; a risk
            wider than ``max_stop_atr`` ATRs is "no trade".
        max_entry_distance_atr: a limit entry zone whose near edge is farther than this from the close is ignored.
        recent_bars: window (bars of the entry timeframe) in which a sweep, displacement or entry model counts as
            part of the current setup.
        min_target_gap_r: consecutive targets are at least this many R apart.
        swing_length: pivot length (bars) of the swing points the engine uses for the protecting structure.
        entry_model_max_age: an entry model older than this many bars is ignored (entry_models expires them too).
        zone_range_atr: zones farther than this many ATRs from the close are not read (they can neither carry the
            entry nor be drawn).
    """

    min_risk_reward: float = 1.5
    min_confidence_floor: float = 25.0
    atr_length: int = 14
    sl_buffer_atr: float = 0.25
    min_stop_atr: float = 1.0
    max_stop_atr: float = 5.0
    max_entry_distance_atr: float = 3.0
    recent_bars: int = 20
    min_target_gap_r: float = 0.5
    swing_length: int = 5
    entry_model_max_age: int = 50
    zone_range_atr: float = 12.0

    def __post_init__(self) -> None:
        if not self.min_risk_reward > 0:
            raise ValueError("min_risk_reward must be positive")
        if not 0 < self.min_stop_atr < self.max_stop_atr:
            raise ValueError("need 0 < min_stop_atr < max_stop_atr")

    @classmethod
    def from_settings(cls, settings: Any) -> EngineConfig:
        return cls(min_risk_reward=float(getattr(settings, "min_risk_reward", 1.5)))


# Confidence weights (points, summing to 100). docs/engine.md explains each rule.
WEIGHTS: dict[str, float] = {
    "htf_alignment": 20.0,  # share of higher timeframes whose bias agrees with the direction
    "structure": 15.0,  # entry-TF structure event in the direction: MSS 15, CHOCH 12, BOS 10
    "entry_model": 15.0,  # sweep->MSS->FVG/OB 15, OTE pullback / breaker retest 12, zone retracement 8
    "zone_confluence": 15.0,  # 5 per distinct zone kind (OB, FVG, SIBI/SSIB, breaker) overlapping the entry zone
    "liquidity_sweep": 10.0,  # opposite-side liquidity swept within recent_bars
    "displacement": 8.0,  # displacement candle in the direction within recent_bars
    "premium_discount_ote": 10.0,  # 5 for entry in discount (long) / premium (short), 5 for entry inside the OTE
    "killzone": 4.0,  # signal candle inside an ICT killzone
    "whale": 3.0,  # whale activity in the direction within recent_bars
}
assert abs(sum(WEIGHTS.values()) - 100.0) < 1e-9

SESSIONS = ("asia", "london", "ny_am", "london_close", "ny_pm")

# --------------------------------------------------------------------------------------------------------------
# the engine's neutral view of detector output


class ZoneKind(StrEnum):
    ORDER_BLOCK = "order_block"
    BREAKER = "breaker"
    FVG = "fvg"
    SIBI_SSIB = "sibi_ssib"
    WHALE = "whale"
    SMZ = "smz"


ZONE_DETECTORS = (
    ("order_blocks", ZoneKind.ORDER_BLOCK),
    ("breaker_blocks", ZoneKind.BREAKER),
    ("fvg", ZoneKind.FVG),
    ("sibi_ssib", ZoneKind.SIBI_SSIB),
)
ZONE_LABELS = {
    ZoneKind.ORDER_BLOCK: "OB",
    ZoneKind.BREAKER: "Breaker",
    ZoneKind.FVG: "FVG",
    ZoneKind.SIBI_SSIB: "SIBI/SSIB",
    ZoneKind.WHALE: "Whale",
    ZoneKind.SMZ: "SMZ",
}


@dataclass(frozen=True, slots=True)
class Zone:
    """A price zone as the engine sees it (one per detector object), active at the bar it was read at."""

    kind: ZoneKind
    direction: Direction
    top: float
    bottom: float
    index: int  # bar where the zone formed (for the chart)
    label: str  # short chart label: "OB", "FVG", "Breaker", "SIBI", "SSIB"

    @property
    def mid(self) -> float:
        return (self.top + self.bottom) / 2


@dataclass(frozen=True, slots=True)
class StructureMark:
    """A BOS / CHOCH / MSS as the chart draws it: broken level, the swing bar and the breaking bar."""

    kind: str  # "BOS", "CHOCH", "MSS"
    direction: Direction
    level: float
    swing_index: int
    index: int  # bar that broke the level


@dataclass(frozen=True, slots=True)
class Level:
    """A horizontal level for the chart (liquidity pools)."""

    label: str
    price: float
    index: int


@dataclass(frozen=True, slots=True)
class StructureView:
    trend: Direction | None
    marks: tuple[StructureMark, ...]  # recent marks, oldest first

    @property
    def last(self) -> StructureMark | None:
        return self.marks[-1] if self.marks else None


@dataclass(frozen=True, slots=True)
class EntryModelView:
    name: str  # "sweep_mss", "ote_pullback", "breaker_retest", ...
    direction: Direction
    index: int
    top: float | None = None
    bottom: float | None = None
    stop: float | None = None  # the model's protecting structure


@dataclass(frozen=True, slots=True)
class OTEView:
    """The last impulse leg's OTE band (62%-79% retracement) and its extension targets (nearest first)."""

    direction: Direction
    start: float  # leg origin price (low of a bullish leg)
    end: float  # leg end price (high of a bullish leg)
    top: float
    bottom: float
    targets: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the steps read at one bar; also what the chart draws."""

    bar: int
    close: float
    atr: float
    structure: StructureView
    htf_bias: tuple[tuple[str, Direction | None], ...]
    zones: tuple[Zone, ...]
    pools_above: tuple[Level, ...]  # resting buy-side liquidity above the close, nearest first
    pools_below: tuple[Level, ...]  # resting sell-side liquidity below the close, nearest first
    htf_pools_above: tuple[Level, ...]
    htf_pools_below: tuple[Level, ...]
    sweeps: tuple[tuple[Direction, float, int], ...]  # (side that was swept as trade direction it favours, level, bar)
    displacements: tuple[tuple[Direction, float, int], ...]  # (direction, body in ATR, bar)
    whales: tuple[tuple[Direction, int], ...]
    entry_models: tuple[EntryModelView, ...]
    ote: OTEView | None
    dealing_range: tuple[float, float] | None  # (low, high)
    swing_lows: tuple[tuple[int, float], ...]  # confirmed internal swing lows (bar, price), most recent last
    swing_highs: tuple[tuple[int, float], ...]
    session: str  # one of SESSIONS or ""
    killzone: bool


# --------------------------------------------------------------------------------------------------------------
# registry


Options = Callable[[EngineConfig, Mapping[str, Any]], dict[str, Any]]


def _no_options(cfg: EngineConfig, done: Mapping[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """One registry row: ``module.function(candles, **options(config, done))`` over a whole frame.

    ``done`` maps the names of the rows already run on the same frame to their results, so a detector can be given
    the objects it would otherwise recompute (structure events, order blocks, candle tables, ...), and
    ``"timeframe"`` to the frame's interval. A failed row is absent from ``done``; detectors then compute what they
    need themselves.
    ``higher``: also run on the higher-timeframe frames (structure and liquidity are read there too): True = all of
    them, an int n = the first (nearest) n.
    """

    name: str
    module: str
    function: str
    options: Options = _no_options
    higher: bool | int = False

    def run(
        self, module: Any, candles: pd.DataFrame, config: EngineConfig, done: Mapping[str, Any] | None = None
    ) -> Any:
        return getattr(module, self.function)(candles, **self.options(config, done or {}))


def _spec(
    name: str, module: str, function: str, options: Options | None = None, *, higher: bool | int = False
) -> DetectorSpec:
    return DetectorSpec(name, f"ict_modules.{module}", function, options or _no_options, higher)


def _period_pools(timeframe: str) -> dict[str, bool]:
    """Previous day/week pools only below those periods (on daily candles the "previous day high" is just the
    previous candle's high)."""
    rank = INTERVALS.index(timeframe)
    return {"previous_day": rank < INTERVALS.index("1d"), "previous_week": rank < INTERVALS.index("1w")}


def _given(done: Mapping[str, Any], **names: str) -> dict[str, Any]:
    """Keyword arguments ``{kwarg: done[name]}`` for the named earlier results that exist."""
    return {kwarg: done[name] for kwarg, name in names.items() if done.get(name) is not None}


REGISTRY: tuple[DetectorSpec, ...] = (
    _spec("candle_tables", "order_block_detector", "candle_tables", higher=True),
    _spec("swing_points", "swing_points", "detect_swing_points", lambda cfg, done: {"left": 3, "right": 3}),
    _spec(
        "market_structure",
        "market_structure",
        "detect_market_structure",
        lambda cfg, done: _given(done, tables="candle_tables"),
        higher=True,
    ),
    _spec(
        "internal_structure",
        "market_structure",
        "detect_market_structure",
        lambda cfg, done: {"level": "internal", **_given(done, tables="candle_tables")},
        higher=True,
    ),
    _spec(
        "liquidity_map",
        "liquidity_map",
        "detect_liquidity",
        lambda cfg, done: {"swing_length": cfg.swing_length, **_period_pools(done["timeframe"])},
        higher=1,  # the nearest higher timeframe's pools are targets too
    ),
    _spec(
        "displacement",
        "displacement_detector",
        "detect_displacement",
        lambda cfg, done: {"atr_length": cfg.atr_length},
    ),
    _spec(
        "order_blocks",
        "order_block_detector",
        "detect_order_blocks",
        lambda cfg, done: _given(done, events="internal_structure", tables="candle_tables"),
    ),
    _spec(
        "breaker_blocks",
        "breaker_block_detector",
        "detect_breaker_blocks",
        lambda cfg, done: _given(done, order_blocks="order_blocks", tables="candle_tables"),
    ),
    _spec("fvg", "fvg_detector", "detect_fvgs"),
    _spec("sibi_ssib", "sibi_ssib_detector", "detect_sibi_ssib"),
    _spec("premium_discount", "premium_discount", "detect_dealing_ranges"),
    _spec(
        "ilp", "ilp_detector", "detect_internal_liquidity", lambda cfg, done: _given(done, ranges="premium_discount")
    ),
    _spec("whale", "ict_whale_detector", "detect_whale_blocks"),
    _spec("ote", "ote_calculator", "detect_ote", lambda cfg, done: {"swing_length": cfg.swing_length}),
    _spec(
        "entry_models",
        "entry_models",
        "detect_entry_models",
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
    _spec("session", "session_analyzer", "detect_sessions"),
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


def _module(name: str) -> Any:
    return importlib.import_module(name)


def run_registry(
    frames: Mapping[str, pd.DataFrame], timeframe: str, config: EngineConfig, registry: Sequence[DetectorSpec]
) -> tuple[dict[tuple[str, str], Any], list[str]]:
    """Run every detector (entry TF; ``higher`` ones on every frame). Failures are logged and listed, never fatal."""
    raw: dict[tuple[str, str], Any] = {}
    unavailable: list[str] = []
    for spec in registry:
        try:
            module = _module(spec.module)
        except ImportError as exc:
            logger.debug("detector %s unavailable: %s", spec.name, exc)
            unavailable.append(spec.name)
            continue
        for tf in _frames_for(spec, list(frames)):
            try:
                done = {"timeframe": tf, **{name: value for (name, t), value in raw.items() if t == tf}}
                raw[(spec.name, tf)] = _in_confirmation_order(spec.run(module, frames[tf], config, done))
            except Exception:  # a broken detector must not take the engine down
                logger.exception("detector %s failed on %s; skipped", spec.name, tf)
                if spec.name not in unavailable:
                    unavailable.append(spec.name)
    return raw, unavailable


def _frames_for(spec: DetectorSpec, timeframes: list[str]) -> list[str]:
    """The timeframes a registry row runs on: the entry one (first), plus all or the nearest n higher ones."""
    if spec.higher is True:
        return timeframes
    return timeframes[: 1 + int(spec.higher)]


def _in_confirmation_order(result: Any) -> Any:
    """Lists of objects sorted (stably) by ``confirmed_at``, so the engine can bisect them by bar."""
    if isinstance(result, list) and result and all(hasattr(o, "confirmed_at") for o in result):
        return sorted(result, key=_confirmed)
    return result


def _close_ns(frame: pd.DataFrame, tf: str) -> np.ndarray:
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
    entry_close = _close_ns(entry, timeframe)[-1]
    for tf in sorted((parse_interval(t) for t in frames if t != timeframe), key=INTERVALS.index):
        frame = validate_candles(frames[tf])
        closes = _close_ns(frame, tf)
        ordered[tf] = frame.iloc[: int(np.searchsorted(closes, entry_close, side="right"))]
    raw, unavailable = run_registry(ordered, timeframe, config, REGISTRY if registry is None else registry)
    atrs = {}
    closes = {}
    for tf, frame in ordered.items():
        h, lo, c = (frame[k].to_numpy(dtype=np.float64) for k in ("high", "low", "close"))
        atrs[tf] = atr(h, lo, c, length=config.atr_length)
        closes[tf] = _close_ns(frame, tf)
    tables = tuple(
        ZoneTable.build(raw[(name, timeframe)], kind) for name, kind in ZONE_DETECTORS if (name, timeframe) in raw
    )
    pool_tables = {key: PoolTable.build(value) for key, value in raw.items() if key[0] in ("liquidity_map", "ilp")}
    return Prepared(timeframe, ordered, raw, tuple(unavailable), atrs, closes, tables, pool_tables)


# --------------------------------------------------------------------------------------------------------------
# reading detector output as known at a bar (duck-typed on the causality convention of ict_modules.core)

DEAD_STATES = ("invalidated_at", "filled_at", "inverted_at", "broken_at", "expired_at", "run_at", "swept_at")


def _known(obj: Any, bar: int) -> bool:
    return getattr(obj, "confirmed_at", 0) <= bar


def _state_by(obj: Any, name: str, bar: int) -> bool:
    """True when ``obj``'s state change ``name`` (a ``*_at`` bar) had happened by ``bar``."""
    value = getattr(obj, name, None)
    return value is not None and value <= bar


def _direction(obj: Any) -> Direction | None:
    value = getattr(obj, "direction", None)
    if value is None:
        return None
    try:
        return Direction(str(getattr(value, "value", value)).lower())
    except ValueError:
        return None


def _zone_bounds(obj: Any) -> tuple[float, float] | None:
    top = getattr(obj, "top", None)
    bottom = getattr(obj, "bottom", None)
    if top is None or bottom is None:
        return None
    top, bottom = float(top), float(bottom)
    return (top, bottom) if top >= bottom else (bottom, top)


@dataclass(frozen=True)
class ZoneTable:
    """One zone detector's objects as arrays, so the zones active at any bar are a vectorised mask.

    ``dead`` = the first bar of any dead state (invalidated, filled, inverted, ...), a large number while alive.
    """

    kind: ZoneKind
    objects: tuple[Any, ...]
    confirmed: np.ndarray
    dead: np.ndarray
    top: np.ndarray
    bottom: np.ndarray

    @classmethod
    def build(cls, objects: Any, kind: ZoneKind, dead: Sequence[str] = DEAD_STATES) -> ZoneTable:
        usable = [o for o in objects or () if _zone_bounds(o) is not None and _direction(o) is not None]
        never = np.iinfo(np.int64).max

        def first_dead(o: Any) -> int:
            bars = [getattr(o, name, None) for name in dead]
            return min((b for b in bars if b is not None), default=never)

        bounds = [_zone_bounds(o) for o in usable]
        return cls(
            kind,
            tuple(usable),
            np.array([o.confirmed_at for o in usable], dtype=np.int64),
            np.array([first_dead(o) for o in usable], dtype=np.int64),
            np.array([b[0] for b in bounds], dtype=np.float64),
            np.array([b[1] for b in bounds], dtype=np.float64),
        )

    def active(self, bar: int, low: float = -math.inf, high: float = math.inf) -> list[Zone]:
        """Zones known and alive at ``bar`` that overlap the price band ``[low, high]``."""
        mask = (self.confirmed <= bar) & (self.dead > bar) & (self.bottom <= high) & (self.top >= low)
        out = []
        for i in np.flatnonzero(mask):
            o = self.objects[i]
            direction = _direction(o)
            index = int(getattr(o, "index", o.confirmed_at))
            out.append(Zone(self.kind, direction, float(self.top[i]), float(self.bottom[i]), index,
                            zone_label(self.kind, direction, o)))  # fmt: skip
        return out


def zones_at(objects: Any, bar: int, kind: ZoneKind, *, dead: Sequence[str] = DEAD_STATES) -> list[Zone]:
    """Active zones at ``bar``: known (``confirmed_at <= bar``) and no dead state (invalidated, filled, ...) yet."""
    return ZoneTable.build(objects, kind, dead).active(bar)


def zone_label(kind: ZoneKind, direction: Direction, obj: Any = None) -> str:
    """Short label; the direction is shown by colour (chart) or words (components)."""
    if kind is ZoneKind.SIBI_SSIB:
        return "SSIB" if direction is Direction.BULLISH else "SIBI"
    if kind is ZoneKind.BREAKER and str(getattr(getattr(obj, "kind", None), "value", "")) == "mitigation":
        return "Mitigation"
    return ZONE_LABELS[kind]


def structure_at(events: Sequence[Any] | None, bar: int, *, keep: int = 6) -> StructureView:
    """Trend and the recent BOS/CHOCH/MSS marks known at ``bar`` from ``market_structure`` events (bar order).

    The trend is the direction of the last break known at ``bar`` (neutral before the first one).
    """
    if not events:
        return StructureView(None, ())
    end = bisect.bisect_right(events, bar, key=lambda e: e.confirmed_at)
    marks = tuple(
        StructureMark(
            str(e.kind.value).upper(), e.direction, float(e.swing_price), int(e.swing_index), int(e.confirmed_at)
        )
        for e in events[max(0, end - keep) : end]
    )
    return StructureView(marks[-1].direction if marks else None, marks)


def htf_trend(swing: Sequence[Any] | None, internal: Sequence[Any] | None, bar: int) -> Direction | None:
    """Bias of a higher timeframe at ``bar`` as mtf_analyzer defines it: the swing-level trend, else the
    internal-level trend, else neutral (None)."""
    trend = structure_at(swing, bar, keep=1).trend
    return trend if trend is not None else structure_at(internal, bar, keep=1).trend


NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class PoolTable:
    """Liquidity pools (liquidity_map or ILP objects) as arrays: resting pools and sweeps at any bar, vectorised."""

    objects: tuple[Any, ...]
    confirmed: np.ndarray
    taken: np.ndarray  # first bar swept or run through, NEVER while resting
    swept: np.ndarray  # bar swept (wick through, close back), NEVER if not
    price: np.ndarray
    above: np.ndarray  # buy-side (above highs)

    @classmethod
    def build(cls, pools: Any) -> PoolTable:
        objs = tuple(pools or ())

        def bar(value: int | None) -> int:
            return NEVER if value is None else int(value)

        return cls(
            objs,
            np.array([p.confirmed_at for p in objs], dtype=np.int64),
            np.array([bar(p.taken_at) for p in objs], dtype=np.int64),
            np.array([bar(getattr(p, "swept_at", None)) for p in objs], dtype=np.int64),
            np.array([p.price for p in objs], dtype=np.float64),
            np.array([_side(p).is_above for p in objs], dtype=bool),
        )

    def resting(self, close: float, bar: int, *, limit: int = 6) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """Resting (known, untaken) liquidity at ``bar``: buy-side above ``close`` and sell-side below, nearest
        first, one level per price."""
        live = (self.confirmed <= bar) & (self.taken > bar)
        up = np.flatnonzero(live & self.above & (self.price > close))
        down = np.flatnonzero(live & ~self.above & (self.price < close))
        up = up[np.argsort(self.price[up], kind="stable")]
        down = down[np.argsort(-self.price[down], kind="stable")]
        return self._levels(up, limit), self._levels(down, limit)

    def _levels(self, order: np.ndarray, limit: int) -> tuple[Level, ...]:
        out: list[Level] = []
        for i in order.tolist():
            p = self.objects[i]
            if out and math.isclose(out[-1].price, p.price, rel_tol=1e-9):
                continue
            out.append(
                Level(POOL_LABELS.get(str(getattr(p.kind, "value", p.kind)), "liquidity"), float(p.price), int(p.index))
            )
            if len(out) == limit:
                break
        return tuple(out)

    def sweeps(self, bar: int, recent: int) -> tuple[tuple[Direction, float, int], ...]:
        """Sweeps (wick through, close back) in ``bar - recent + 1 .. bar``: a swept sell-side pool favours longs
        (``BULLISH``), a swept buy-side pool shorts; oldest first."""
        hit = np.flatnonzero((self.swept > bar - recent) & (self.swept <= bar) & (self.confirmed <= self.swept))
        hit = hit[np.argsort(self.swept[hit], kind="stable")]
        return tuple(
            (Direction.BEARISH if self.above[i] else Direction.BULLISH, float(self.price[i]), int(self.swept[i]))
            for i in hit.tolist()
        )


def pools_at(pools: Any, close: float, bar: int, *, limit: int = 6) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
    """Resting liquidity at ``bar``: buy-side above ``close`` and sell-side below, nearest first."""
    return PoolTable.build(pools).resting(close, bar, limit=limit)


def sweeps_at(pools: Any, bar: int, recent: int) -> tuple[tuple[Direction, float, int], ...]:
    """Liquidity sweeps in the last ``recent`` bars up to ``bar`` (see :meth:`PoolTable.sweeps`)."""
    return PoolTable.build(pools).sweeps(bar, recent)


POOL_LABELS = {
    "swing_high": "BSL",
    "swing_low": "SSL",
    "equal_highs": "EQH",
    "equal_lows": "EQL",
    "previous_day_high": "PDH",
    "previous_day_low": "PDL",
    "previous_week_high": "PWH",
    "previous_week_low": "PWL",
}


def _side(pool: Any) -> Any:
    """A pool's LiquiditySide (liquidity_map pools carry ``side``; ILP pools derive it from their kind)."""
    side = getattr(pool, "side", None)
    return side if side is not None else pool.kind.side


def recent_events(objects: Any, bar: int, recent: int) -> list[Any]:
    """Objects confirmed within the last ``recent`` bars up to ``bar`` (``objects`` in ``confirmed_at`` order)."""
    if not objects:
        return []
    lo = bisect.bisect_right(objects, bar - recent, key=_confirmed)
    hi = bisect.bisect_right(objects, bar, key=_confirmed)
    return list(objects[lo:hi])


def _confirmed(obj: Any) -> int:
    return obj.confirmed_at


# --------------------------------------------------------------------------------------------------------------
# step 12 fallback: killzones from candle time (used only when session_analyzer is unavailable)

NEW_YORK = ZoneInfo("America/New_York")


def killzone_of(moment: pd.Timestamp) -> str:
    """ICT killzone of ``moment`` in New York local time (DST-aware), or "" (the session_analyzer table).

    asia 20:00-24:00, london 02:00-05:00, ny_am 07:00-10:00, london_close 10:00-12:00, ny_pm 13:30-16:00.
    """
    local = moment.tz_convert(NEW_YORK)
    minutes = local.hour * 60 + local.minute
    for name, start, end in (
        ("asia", 20 * 60, 24 * 60),
        ("london", 2 * 60, 5 * 60),
        ("ny_am", 7 * 60, 10 * 60),
        ("london_close", 10 * 60, 12 * 60),
        ("ny_pm", 13 * 60 + 30, 16 * 60),
    ):
        if start <= minutes < end:
            return name
    return ""


def _session_at(prep: Prepared, bar: int) -> str:
    """Session name (one of SESSIONS or "") for the entry candle ``bar``, from session_analyzer when present."""
    raw = prep.raw.get(("session", prep.timeframe))
    if raw is not None:
        try:
            return _session_from_detector(raw, bar)
        except Exception:
            logger.exception("session_analyzer output unreadable; using the engine's killzone table")
    return killzone_of(prep.entry.index[bar])  # labelled by the candle's open time, as session_analyzer does


def _session_from_detector(raw: Any, bar: int) -> str:
    value = raw[bar]  # session_analyzer.SessionAnalysis: Session or None per bar
    name = str(getattr(value, "value", value) or "").lower()
    return name if name in SESSIONS else ""


# --------------------------------------------------------------------------------------------------------------
# snapshot: every step's input at one bar


def _swings(
    prep: Prepared, bar: int, keep: int = 8
) -> tuple[tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]:
    """The last ``keep`` confirmed internal swing lows and highs at ``bar`` as (bar, price), oldest first."""
    points = prep.raw.get(("swing_points", prep.timeframe)) or ()
    end = bisect.bisect_right(points, bar, key=_confirmed)
    lows: list[tuple[int, float]] = []
    highs: list[tuple[int, float]] = []
    for p in reversed(points[max(0, end - 6 * keep) : end]):
        target = lows if p.kind.value == "low" else highs
        if len(target) < keep:
            target.append((p.index, p.price))
    return tuple(reversed(lows)), tuple(reversed(highs))


def _ote_and_range(
    prep: Prepared, bar: int, lows: tuple[tuple[int, float], ...], highs: tuple[tuple[int, float], ...]
) -> tuple[OTEView | None, tuple[float, float] | None]:
    """Step 8 inputs: the active OTE leg (ote_calculator) and the dealing range (premium_discount).

    Without those detectors: the leg and the range span the last confirmed internal swing low and high (the leg
    runs from the older to the newer), OTE = its 62%-79% retracement, extensions 0.27/0.62/1.0 of it beyond its end.
    """
    tf = prep.timeframe
    leg = dealing = None
    have_ote = ("ote", tf) in prep.raw
    have_range = ("premium_discount", tf) in prep.raw
    if have_ote:
        setup = _module("ict_modules.ote_calculator").active_ote(prep.raw[("ote", tf)], bar)
        if setup is not None:
            bullish = setup.direction is Direction.BULLISH
            leg = OTEView(
                setup.direction,
                setup.leg_low if bullish else setup.leg_high,
                setup.leg_high if bullish else setup.leg_low,
                float(setup.zone_top),
                float(setup.zone_bottom),
                tuple(float(t) for t in setup.targets),
            )
    if have_range:
        current = _module("ict_modules.premium_discount").dealing_range_at(prep.raw[("premium_discount", tf)], bar)
        if current is not None:
            dealing = (float(current.low), float(current.high))
    if (have_ote and have_range) or not (lows and highs):
        return leg, dealing
    (li, lp), (hi, hp) = lows[-1], highs[-1]
    if hp <= lp:
        return leg, dealing
    if not have_range:
        dealing = (lp, hp)
    if not have_ote:
        span = hp - lp
        if li < hi:  # bullish leg low -> high: OTE below the high
            leg = OTEView(
                Direction.BULLISH,
                lp,
                hp,
                hp - 0.62 * span,
                hp - 0.79 * span,
                tuple(hp + e * span for e in (0.27, 0.62, 1.0)),
            )
        else:  # bearish leg high -> low: OTE above the low
            leg = OTEView(
                Direction.BEARISH,
                hp,
                lp,
                lp + 0.79 * span,
                lp + 0.62 * span,
                tuple(lp - e * span for e in (0.27, 0.62, 1.0)),
            )
    return leg, dealing


def _entry_models_at(raw: Any, bar: int, max_age: int) -> tuple[EntryModelView, ...]:
    """Entry models (entry_models) known at ``bar``, at most ``max_age`` bars old, neither invalidated nor expired."""
    out = []
    for m in recent_events(raw, bar, max_age):
        if any(_state_by(m, n, bar) for n in ("invalidated_at", "expired_at")):
            continue
        bounds = _zone_bounds(m)
        out.append(
            EntryModelView(
                str(m.kind.value),
                m.direction,
                int(m.confirmed_at),
                bounds[0] if bounds else None,
                bounds[1] if bounds else None,
                float(m.stop) if getattr(m, "stop", None) is not None else None,
            )
        )
    return tuple(out)


def _whales_at(raw: Any, bar: int, recent: int) -> tuple[tuple[Direction, int], ...]:
    out = []
    for w in recent_events(raw, bar, recent):
        direction = _direction(w)
        if direction is not None:
            out.append((direction, int(w.confirmed_at)))
    return tuple(out)


def snapshot_at(prep: Prepared, bar: int, config: EngineConfig) -> Snapshot:
    """Read every detector's state as known at the close of entry bar ``bar``."""
    tf = prep.timeframe
    frame = prep.entry
    close = float(frame["close"].iat[bar])
    a = float(prep.atr[tf][bar])
    raw = prep.raw
    # entry timeframe: internal structure (timing); higher timeframes: swing structure (bias)
    structure = structure_at(raw.get(("internal_structure", tf), raw.get(("market_structure", tf))), bar)
    htf_bias = []
    htf_above: tuple[Level, ...] = ()
    htf_below: tuple[Level, ...] = ()
    for htf in list(prep.frames)[1:]:
        hb = prep.htf_bar(htf, bar)
        if hb < 0 or not ({("market_structure", htf), ("internal_structure", htf)} & raw.keys()):
            htf_bias.append((htf, None))
            continue
        htf_bias.append((htf, htf_trend(raw.get(("market_structure", htf)), raw.get(("internal_structure", htf)), hb)))
        if not htf_above and not htf_below and ("liquidity_map", htf) in raw:
            htf_above, htf_below = prep.pool_tables[("liquidity_map", htf)].resting(close, hb, limit=4)
    zones: list[Zone] = []
    band = config.zone_range_atr * a
    for table in prep.zone_tables:
        zones += table.active(bar, close - band, close + band)
    empty = PoolTable.build(())
    pools = prep.pool_tables.get(("liquidity_map", tf), empty)
    above, below = pools.resting(close, bar)
    displacements = tuple(
        (d.direction, float(d.body_atr), int(d.index))
        for d in recent_events(raw.get(("displacement", tf)), bar, config.recent_bars)
    )
    lows, highs = _swings(prep, bar)
    ote, dealing = _ote_and_range(prep, bar, lows, highs)
    session = _session_at(prep, bar)
    return Snapshot(
        bar=bar,
        close=close,
        atr=a,
        structure=structure,
        htf_bias=tuple(htf_bias),
        zones=tuple(zones),
        pools_above=above,
        pools_below=below,
        htf_pools_above=htf_above,
        htf_pools_below=htf_below,
        sweeps=tuple(
            sorted(
                pools.sweeps(bar, config.recent_bars)
                + prep.pool_tables.get(("ilp", tf), empty).sweeps(bar, config.recent_bars),
                key=lambda x: x[2],
            )
        ),
        displacements=displacements,
        whales=_whales_at(raw.get(("whale", tf)), bar, config.recent_bars),
        entry_models=_entry_models_at(raw.get(("entry_models", tf)), bar, config.entry_model_max_age),
        ote=ote,
        dealing_range=dealing,
        swing_lows=lows,
        swing_highs=highs,
        session=session,
        killzone=bool(session),
    )


# --------------------------------------------------------------------------------------------------------------
# steps 2-12 at one bar


class _NoTrade(Exception):
    def __init__(self, *reasons: str) -> None:
        super().__init__(reasons[0] if reasons else "")
        self.reasons = reasons


ENTRY_MODEL_POINTS = {
    "sweep_mss": 15.0,
    "ote_pullback": 12.0,
    "breaker_retest": 12.0,
    "zone_retracement": 8.0,
}
STRUCTURE_POINTS = {"MSS": 15.0, "CHOCH": 12.0, "BOS": 10.0}
ZONE_PRIORITY = {ZoneKind.ORDER_BLOCK: 0, ZoneKind.FVG: 1, ZoneKind.SIBI_SSIB: 2, ZoneKind.BREAKER: 3}


@dataclass(frozen=True, slots=True)
class EntryPlan:
    """Step 8: the chosen entry. ``market`` = enter at the close; else a limit order at the zone's midpoint."""

    entry: float
    low: float
    high: float
    market: bool
    zone: Zone | None  # the zone that carries the entry (None for an OTE-only or entry-model entry)
    source: str  # "order_block", "fvg", "ote", or an entry model kind ("sweep_mss", ...)
    stop: float | None = None  # protecting structure named by the entry model, if the entry came from one


def _direction_of(snap: Snapshot, unavailable: Sequence[str]) -> tuple[Direction, int, int]:
    """Steps 2+7: the entry timeframe's trend (direction of its last BOS/CHOCH/MSS), checked against the HTFs.

    No trade when the entry timeframe has no break yet, or when more higher timeframes oppose it than agree.
    """
    d = snap.structure.trend
    if d is None:
        why = "market_structure unavailable" if "market_structure" in unavailable else "no BOS/CHOCH yet"
        raise _NoTrade(f"no bias on the entry timeframe ({why})")
    agree = sum(1 for _, b in snap.htf_bias if b is d)
    oppose = sum(1 for _, b in snap.htf_bias if b is d.opposite)
    if oppose > agree:
        against = ", ".join(f"{tf} {b.value}" for tf, b in snap.htf_bias if b is d.opposite)
        raise _NoTrade(f"conflicting timeframes: entry timeframe {d.value}, {against}")
    return d, agree, oppose


def _overlaps(top: float, bottom: float, low: float, high: float) -> bool:
    return bottom <= high and top >= low


def _entry_plan(snap: Snapshot, d: Direction, config: EngineConfig) -> EntryPlan:
    """Step 8: the nearest active zone of direction ``d`` on the entry side of the close (a recent entry model's
    zone first, then OB, FVG, SIBI/SSIB, breaker, then the OTE band of a leg in ``d``).

    Long: the zone must reach at or below the close and its top lie within ``max_entry_distance_atr`` ATRs below it
    (mirror for shorts). Close inside the zone: market entry at the close; else a limit at the zone midpoint.
    """
    s = d.sign
    close, a = snap.close, snap.atr
    candidates: list[tuple[float, int, Zone | None, float, float, str, float | None]] = []

    def consider(
        top: float, bottom: float, priority: int, zone: Zone | None, source: str, stop: float | None = None
    ) -> None:
        near = top if s > 0 else bottom  # the edge price reaches first on a pullback
        far = bottom if s > 0 else top
        if s * (far - close) >= 0:  # the whole zone is on the wrong side of the close
            return
        distance = max(0.0, s * (close - near))
        if distance > config.max_entry_distance_atr * a:
            return
        if stop is not None and s * (close - stop) <= 0:  # the model's stop is already taken
            return
        candidates.append((distance, priority, zone, top, bottom, source, stop))

    for m in snap.entry_models:
        if m.direction is d and m.top is not None and m.bottom is not None:
            consider(m.top, m.bottom, -1, None, m.name, m.stop)
    for z in snap.zones:
        if z.direction is d:
            consider(z.top, z.bottom, ZONE_PRIORITY.get(z.kind, 5), z, z.kind.value)
    if snap.ote is not None and snap.ote.direction is d:
        consider(snap.ote.top, snap.ote.bottom, 6, None, "ote")
    if not candidates:
        side = "below" if s > 0 else "above"
        raise _NoTrade(
            f"no entry model: no active {d.value} OB/FVG/SIBI-SSIB/breaker or OTE zone "
            f"{side} the price within {config.max_entry_distance_atr:g} ATR"
        )
    distance, _, zone, top, bottom, source, stop = min(
        candidates, key=lambda c: (c[0], c[1], -c[2].index if c[2] else 0)
    )
    if distance == 0.0:
        return EntryPlan(close, close, close, True, zone, source, stop)
    return EntryPlan((top + bottom) / 2, bottom, top, False, zone, source, stop)


def _stop(snap: Snapshot, d: Direction, plan: EntryPlan, config: EngineConfig) -> float:
    """Step 9a: beyond the protecting structure plus ``sl_buffer_atr`` ATRs.

    Long: protecting structure = the lower of the entry zone's bottom and, when the entry came from an entry model,
    the model's stop (the swept low of a sweep->MSS, the leg origin of an OTE pullback, ...); otherwise the most
    recent confirmed internal swing low below the zone that lies within ``max_stop_atr`` ATRs of the entry.
    Stop = structure - buffer. The risk is widened to at least ``min_stop_atr`` ATRs; wider than ``max_stop_atr``
    ATRs is no trade. Shorts mirror (swing highs, zone top, + buffer).
    """
    s = d.sign
    a = snap.atr
    pick = min if s > 0 else max
    edge = plan.low if s > 0 else plan.high
    structure = edge
    if plan.zone is not None:
        structure = pick(structure, plan.zone.bottom if s > 0 else plan.zone.top)
    if plan.stop is not None:
        structure = pick(structure, plan.stop)
    else:
        for _, price in reversed(snap.swing_lows if s > 0 else snap.swing_highs):
            if s * (edge - price) > 0 and s * (plan.entry - price) <= config.max_stop_atr * a:
                structure = pick(structure, price)
                break
    sl = structure - s * config.sl_buffer_atr * a
    if s * (plan.entry - sl) < config.min_stop_atr * a:
        sl = plan.entry - s * config.min_stop_atr * a
    risk = s * (plan.entry - sl)
    if risk > config.max_stop_atr * a:
        raise _NoTrade(f"stop too wide: {risk / a:.1f} ATR > {config.max_stop_atr:g} ATR")
    return sl


def _targets(
    snap: Snapshot, d: Direction, entry: float, sl: float, config: EngineConfig
) -> tuple[tuple[float, str], ...]:
    """Step 9b: TP1 < TP2 < TP3 (mirrored for shorts).

    TP1 = the nearest resting opposite-side liquidity pool (entry TF or first HTF) at least 0.5 ATR beyond the
    entry; without one, the first Fibonacci extension of the last leg in the direction. TP2 and TP3 = the next
    liquidity pools or extensions, each at least ``min_target_gap_r`` R beyond the previous; missing ones are the
    previous target + 1 R.
    """
    s = d.sign
    risk = abs(entry - sl)
    min_gap = 0.5 * snap.atr
    pools = (snap.pools_above + snap.htf_pools_above) if s > 0 else (snap.pools_below + snap.htf_pools_below)
    liquidity = sorted(
        {(lv.price, lv.label) for lv in pools if s * (lv.price - entry) >= min_gap}, key=lambda x: (s * x[0], x[1])
    )
    extensions = []
    if snap.ote is not None and snap.ote.direction is d:
        span = abs(snap.ote.end - snap.ote.start)
        for level in snap.ote.targets:
            if s * (level - entry) >= min_gap:
                extensions.append((level, f"fib ext -{abs(level - snap.ote.end) / span:.2f}"))
    extensions.sort(key=lambda x: (s * x[0], x[1]))
    if liquidity:
        first = liquidity[0]
    elif extensions:
        first = extensions[0]
    else:
        raise _NoTrade("no target: no resting liquidity or extension beyond the entry")
    targets = [first]
    rest = sorted(liquidity[1:] + [e for e in extensions if s * (e[0] - first[0]) > 0], key=lambda x: (s * x[0], x[1]))
    for level, label in rest:
        if len(targets) == 3:
            break
        if s * (level - targets[-1][0]) >= config.min_target_gap_r * risk:
            targets.append((level, label))
    while len(targets) < 3:
        targets.append((targets[-1][0] + s * risk, f"{targets[-1][1].split(' +')[0]} +1R"))
    return tuple(targets)


def _zone_kinds_at_entry(snap: Snapshot, d: Direction, plan: EntryPlan) -> list[Zone]:
    pad = 0.25 * snap.atr
    return [z for z in snap.zones if z.direction is d and _overlaps(z.top, z.bottom, plan.low - pad, plan.high + pad)]


def _entry_model(snap: Snapshot, d: Direction, plan: EntryPlan, in_ote: bool) -> tuple[str, int | None]:
    """Step 3: the entry model. The entry_models kind when the entry zone came from one of its models (a live model
    of ``d`` confirmed within ``entry_model_max_age`` bars), else classified from the parts: sweep -> MSS/CHOCH ->
    FVG/OB entry = "sweep_mss"; entry in the OTE of a leg in the trend = "ote_pullback"; a breaker =
    "breaker_retest"; any other zone in the trend = "zone_retracement"."""
    if plan.source in ENTRY_MODEL_POINTS:
        return plan.source, None
    last = snap.structure.last
    swept = any(f is d for f, _, _ in snap.sweeps)
    if (
        swept
        and last is not None
        and last.direction is d
        and last.kind in ("MSS", "CHOCH")
        and plan.zone is not None
        and plan.zone.kind in (ZoneKind.FVG, ZoneKind.ORDER_BLOCK, ZoneKind.SIBI_SSIB)
    ):
        return "sweep_mss", None
    if in_ote:
        return "ote_pullback", None
    if plan.zone is not None and plan.zone.kind is ZoneKind.BREAKER:
        return "breaker_retest", None
    return "zone_retracement", None


def _confidence(
    snap: Snapshot, d: Direction, plan: EntryPlan, model: str, agree: int, in_discount: bool, in_ote: bool
) -> tuple[tuple[str, float], ...]:
    """Step 11: points per WEIGHTS row (see docs/engine.md)."""
    n_htf = len(snap.htf_bias)
    neutral = sum(1 for _, b in snap.htf_bias if b is None)
    alignment = (agree + 0.5 * neutral) / n_htf if n_htf else 0.5
    last = snap.structure.last
    structure = STRUCTURE_POINTS.get(last.kind, 10.0) if last is not None and last.direction is d else 0.0
    kinds = {z.kind for z in _zone_kinds_at_entry(snap, d, plan) if z.kind is not ZoneKind.SMZ}
    parts = {
        "htf_alignment": WEIGHTS["htf_alignment"] * alignment,
        "structure": structure,
        "entry_model": ENTRY_MODEL_POINTS.get(model, 10.0),
        "zone_confluence": min(WEIGHTS["zone_confluence"], 5.0 * len(kinds)),
        "liquidity_sweep": WEIGHTS["liquidity_sweep"] if any(f is d for f, _, _ in snap.sweeps) else 0.0,
        "displacement": WEIGHTS["displacement"] if any(x is d for x, _, _ in snap.displacements) else 0.0,
        "premium_discount_ote": 5.0 * in_discount + 5.0 * in_ote,
        "killzone": WEIGHTS["killzone"] if snap.killzone else 0.0,
        "whale": WEIGHTS["whale"] if any(x is d for x, _ in snap.whales) else 0.0,
    }
    return tuple((k, round(min(v, WEIGHTS[k]), 2)) for k, v in parts.items())


FEATURES: tuple[str, ...] = (
    *(f"conf_{k}" for k in WEIGHTS),
    "direction",
    "htf_agree_ratio",
    "htf_oppose_ratio",
    "risk_atr",
    "entry_distance_atr",
    "entry_zone_width_atr",
    "tp1_r",
    "tp2_r",
    "tp3_r",
    "atr_pct",
    "range_position",
    "market_entry",
    "zones_with_direction",
    "zones_against_direction",
    "bars_since_structure",
    "displacement_max_atr",
    *(f"session_{s}" for s in SESSIONS),
)


def _features(
    snap: Snapshot,
    d: Direction,
    plan: EntryPlan,
    sl: float,
    tps: Sequence[float],
    breakdown: Sequence[tuple[str, float]],
    agree: int,
    oppose: int,
) -> tuple[tuple[str, float], ...]:
    """The ML feature vector: ``FEATURES`` in order, finite floats (see docs/engine.md for definitions)."""
    a = snap.atr
    risk = abs(plan.entry - sl)
    n_htf = len(snap.htf_bias) or 1
    if snap.dealing_range is not None:
        lo, hi = snap.dealing_range
        position = min(max((plan.entry - lo) / (hi - lo), -1.0), 2.0)
    else:
        position = 0.5
    last = snap.structure.last
    disp = [b for x, b, _ in snap.displacements if x is d]
    values = {
        **{f"conf_{k}": v for k, v in breakdown},
        "direction": float(d.sign),
        "htf_agree_ratio": agree / n_htf,
        "htf_oppose_ratio": oppose / n_htf,
        "risk_atr": risk / a,
        "entry_distance_atr": abs(snap.close - plan.entry) / a,
        "entry_zone_width_atr": (plan.high - plan.low) / a,
        "tp1_r": abs(tps[0] - plan.entry) / risk,
        "tp2_r": abs(tps[1] - plan.entry) / risk,
        "tp3_r": abs(tps[2] - plan.entry) / risk,
        "atr_pct": 100.0 * a / snap.close,
        "range_position": position,
        "market_entry": float(plan.market),
        "zones_with_direction": float(sum(1 for z in snap.zones if z.direction is d)),
        "zones_against_direction": float(sum(1 for z in snap.zones if z.direction is not d)),
        "bars_since_structure": float(min(snap.bar - last.index, 200)) if last is not None else 200.0,
        "displacement_max_atr": max(disp, default=0.0),
        **{f"session_{s}": float(snap.session == s) for s in SESSIONS},
    }
    return tuple((name, round(float(values[name]), 6)) for name in FEATURES)


def _fmt(price: float) -> str:
    """Compact price for component details (formatting.py renders the user-facing numbers)."""
    if price <= 0 or not math.isfinite(price):
        return str(price)
    digits = max(2, 5 - math.floor(math.log10(price)))
    return f"{price:,.{digits}f}"


def _components(
    snap: Snapshot, d: Direction | None, plan: EntryPlan | None, targets: Sequence[tuple[float, str]]
) -> tuple[Component, ...]:
    out: list[Component] = []
    last = snap.structure.last
    if last is not None:
        out.append(
            Component(
                last.kind.lower(),
                f"{last.direction.value} {last.kind} through {_fmt(last.level)}",
                last.direction.value,
                last.level,
                last.level,
            )
        )
    if plan is not None and d is not None:
        for z in _zone_kinds_at_entry(snap, d, plan):
            out.append(
                Component(
                    z.kind.value,
                    f"{z.direction.value} {z.label} {_fmt(z.bottom)}-{_fmt(z.top)}",
                    z.direction.value,
                    z.top,
                    z.bottom,
                )
            )
    sweeps = [x for x in snap.sweeps if d is None or x[0] is d]
    for favours, level, _ in sweeps[-1:]:
        side = "sell-side" if favours is Direction.BULLISH else "buy-side"
        out.append(
            Component("liquidity_sweep", f"{side} liquidity swept at {_fmt(level)}", favours.value, level, level)
        )
    displacements = [x for x in snap.displacements if d is None or x[0] is d]
    for x, body, _ in displacements[-1:]:
        out.append(Component("displacement", f"{x.value} displacement {body:.1f} ATR", x.value))
    if snap.ote is not None:
        o = snap.ote
        out.append(
            Component(
                "ote",
                f"{o.direction.value} OTE 62-79% {_fmt(o.bottom)}-{_fmt(o.top)}",
                o.direction.value,
                o.top,
                o.bottom,
            )
        )
    if snap.dealing_range is not None:
        lo, hi = snap.dealing_range
        eq = (lo + hi) / 2
        where = "discount" if snap.close < eq else "premium"
        out.append(Component("premium_discount", f"price in {where} (EQ {_fmt(eq)})", None, hi, lo))
    for level, label in targets:
        out.append(Component("target", f"{label} {_fmt(level)}", None, level, level))
    for x, _ in [w for w in snap.whales if d is None or w[0] is d][-1:]:
        out.append(Component("whale", f"{x.value} whale activity", x.value))
    if snap.session:
        out.append(Component("killzone", f"{snap.session} killzone", None))
    return tuple(out)


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
            raise _NoTrade("no volatility: ATR is zero")
        d, agree, oppose = _direction_of(snap, prep.unavailable)
        plan = _entry_plan(snap, d, config)
        sl = _stop(snap, d, plan, config)
        targets = _targets(snap, d, plan.entry, sl, config)
        risk = abs(plan.entry - sl)
        tp1_r = abs(targets[0][0] - plan.entry) / risk
        if tp1_r < config.min_risk_reward:
            raise _NoTrade(f"R:R too low: TP1 ({targets[0][1]}) pays {tp1_r:.2f}R < {config.min_risk_reward:g}R")
        in_ote = (
            snap.ote is not None
            and snap.ote.direction is d
            and _overlaps(snap.ote.top, snap.ote.bottom, plan.low, plan.high)
        )
        if snap.dealing_range is not None:
            eq = sum(snap.dealing_range) / 2
            in_discount = plan.entry < eq if d is Direction.BULLISH else plan.entry > eq
        else:
            in_discount = False
        model, _ = _entry_model(snap, d, plan, in_ote)
        breakdown = _confidence(snap, d, plan, model, agree, in_discount, in_ote)
        confidence = round(sum(v for _, v in breakdown), 2)
        if confidence < config.min_confidence_floor:
            raise _NoTrade(f"confidence {confidence:.0f} below the engine floor {config.min_confidence_floor:g}")
        tps = [t for t, _ in targets]
        signal = Signal(
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
            components=_components(snap, d, plan, targets),
            session=snap.session,
            entry_model=model,
            features=_features(snap, d, plan, sl, tps, breakdown, agree, oppose),
            unavailable=prep.unavailable,
        )
        return signal, snap
    except _NoTrade as exc:
        result = NoTrade(
            symbol=symbol,
            timeframe=prep.timeframe,
            time=time,
            reasons=tuple(exc.reasons),
            bias=bias,
            components=_components(snap, d, plan, ()),
            unavailable=prep.unavailable,
        )
        return result, snap


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

FALLBACK_HIGHER = {"15m": ("1h", "4h"), "1h": ("4h", "1d"), "4h": ("1d", "1w"), "1d": ("1w",)}


def higher_timeframes(tf: str) -> tuple[str, ...]:
    """Higher timeframes of ``tf`` from mtf_analyzer (the contract's table; a local copy if it is unavailable)."""
    try:
        from ict_modules.mtf_analyzer import higher_timeframes as table
    except ImportError:
        if tf in FALLBACK_HIGHER:
            return FALLBACK_HIGHER[tf]
        i = INTERVALS.index(tf)
        return tuple(INTERVALS[i + 1 : i + 3])
    return tuple(table(tf))


class MarketDataLike(Protocol):
    def klines(
        self, symbol: str, interval: str, limit: int | None = 500, *, start: Any = None, end: Any = None
    ) -> pd.DataFrame: ...


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
    limit: int = CANDLES_PER_FRAME,
) -> Analysis:
    """Step 1 (``limit`` closed candles of the entry TF and each HTF, up to ``end``) + generate_signal + ML.

    Market-data errors of the entry timeframe propagate; a higher timeframe the source cannot serve (invalid
    interval, no candles) is skipped and named in ``unavailable``. Sync: call it with ``asyncio.to_thread``.
    """
    config = config or EngineConfig()
    timeframe = parse_interval(timeframe)
    frames = {timeframe: market.klines(symbol, timeframe, limit, end=end)}
    missing = []
    for htf in higher_timeframes(timeframe):
        try:
            frame = market.klines(symbol, htf, limit, end=end)
        except Exception as exc:
            if not _is_missing_interval(exc):
                raise
            logger.warning("%s %s candles unavailable: %s", symbol, htf, exc)
            missing.append(f"{htf} candles")
            continue
        if len(frame):
            frames[htf] = frame
        else:
            missing.append(f"{htf} candles")
    result, snap, prep = evaluate(frames, symbol=symbol, timeframe=timeframe, config=config)
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


def _is_missing_interval(exc: Exception) -> bool:
    """A higher timeframe the source cannot serve (bad interval, no data for it), as opposed to a network, rate
    limit or location failure, which propagates."""
    try:
        from market import source as md
    except ImportError:
        return isinstance(exc, ValueError)
    transient = (md.MarketDataUnavailable, md.RateLimitedError, md.RestrictedLocationError, md.InvalidSymbolError)
    return isinstance(exc, md.MarketDataError | ValueError) and not isinstance(exc, transient)
