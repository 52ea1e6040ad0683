"""The signal object and the "no trade" result: immutable, self-validating, JSON-serialisable.

Every layer speaks these types: the engine produces them, the bot formats them, positions track them, the
journal stores them and ML reads their ``features``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class TradeDirection(StrEnum):
    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        return 1 if self is TradeDirection.LONG else -1


@dataclass(frozen=True, slots=True)
class Component:
    """A detector finding that took part in the decision, with the price levels a trader needs to see."""

    name: str  # e.g. "order_block", "fvg", "liquidity_sweep", "bos", "killzone"
    detail: str  # one short human line, e.g. "bullish OB 64,210-64,480 (50%: 64,345)"
    direction: str | None = None  # "bullish" / "bearish" / None
    top: float | None = None
    bottom: float | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    """A trade idea. Invariants are checked at construction; a broken signal cannot exist."""

    symbol: str
    timeframe: str
    direction: TradeDirection
    entry: float  # reference entry price (zone midpoint for a limit zone, close for a market entry)
    entry_low: float  # entry zone bounds; equal to entry for a market entry
    entry_high: float
    sl: float
    tp1: float
    tp2: float
    tp3: float
    time: datetime  # aware UTC close time of the analysed candle (open time + interval)
    rule_confidence: float  # 0..100 from the documented weights
    confidence_breakdown: tuple[tuple[str, float], ...] = ()  # (component, points) summing to rule_confidence
    ml_probability: float | None = None  # 0..1 win probability from the ML model, None without a model
    bias: tuple[tuple[str, str], ...] = ()  # (timeframe, "bullish"/"bearish"/"neutral")
    components: tuple[Component, ...] = ()
    session: str = ""
    entry_model: str = ""
    features: tuple[tuple[str, float], ...] = ()  # the ML feature vector, stable names
    unavailable: tuple[str, ...] = ()  # detectors that failed and were skipped
    id: str = field(default="")

    def __post_init__(self) -> None:
        prices = {
            "entry": self.entry,
            "entry_low": self.entry_low,
            "entry_high": self.entry_high,
            "sl": self.sl,
            "tp1": self.tp1,
            "tp2": self.tp2,
            "tp3": self.tp3,
        }
        for name, value in prices.items():
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"signal {name} must be a positive finite number, got {value!r}")
        if not self.entry_low <= self.entry <= self.entry_high:
            raise ValueError("signal entry must lie inside its entry zone")
        s = self.direction.sign
        if not s * (self.entry - self.sl) > 0 or not s * (self.entry_low if s > 0 else self.entry_high) > s * self.sl:
            raise ValueError(f"{self.direction} stop {self.sl} is on the wrong side of the entry zone")
        if not s * self.entry < s * self.tp1 < s * self.tp2 < s * self.tp3:
            raise ValueError(f"{self.direction} targets must be ordered beyond the entry: entry<TP1<TP2<TP3")
        if not 0 <= self.rule_confidence <= 100 or not math.isfinite(self.rule_confidence):
            raise ValueError("rule confidence must be within 0..100")
        if self.ml_probability is not None and not 0 <= self.ml_probability <= 1:
            raise ValueError("ML probability must be within 0..1")
        if self.time.tzinfo is None or self.time.utcoffset().total_seconds() != 0:
            raise ValueError("signal time must be an aware UTC datetime")
        if any(not math.isfinite(v) for _, v in self.features):
            raise ValueError("signal features must be finite numbers")
        if not self.id:
            object.__setattr__(self, "id", signal_id(self.symbol, self.timeframe, self.direction, self.time))

    @property
    def risk(self) -> float:
        return abs(self.entry - self.sl)

    @property
    def r_multiples(self) -> tuple[float, float, float]:
        return tuple(round(abs(tp - self.entry) / self.risk, 2) for tp in (self.tp1, self.tp2, self.tp3))

    @property
    def confidence(self) -> float:
        """Displayed confidence: the rule confidence, blended with the ML probability when a model is active.

        Blend: ``0.6 * rule + 0.4 * 100 * p`` (documented in the README, one place only).
        """
        if self.ml_probability is None:
            return round(self.rule_confidence, 1)
        return round(0.6 * self.rule_confidence + 40.0 * self.ml_probability, 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "time": iso_utc(self.time),
            "direction": self.direction.value,
            "reasons": [f"{name}: +{points:g}" for name, points in self.confidence_breakdown],
            "id": self.id,
            "entry": self.entry,
            "entry_zone": [self.entry_low, self.entry_high],
            "sl": self.sl,
            "tp1": self.tp1,
            "tp2": self.tp2,
            "tp3": self.tp3,
            "r_multiples": list(self.r_multiples),
            "confidence": self.confidence,
            "rule_confidence": round(self.rule_confidence, 1),
            "confidence_breakdown": dict(self.confidence_breakdown),
            "ml_probability": self.ml_probability,
            "bias": dict(self.bias),
            "session": self.session,
            "entry_model": self.entry_model,
            "components": [component_json(c) for c in self.components],
            "features": dict(self.features),
            "unavailable": list(self.unavailable),
        }


@dataclass(frozen=True, slots=True)
class NoTrade:
    """No setup at this candle, with the reasons; a result, not an error."""

    symbol: str
    timeframe: str
    time: datetime
    reasons: tuple[str, ...]
    bias: tuple[tuple[str, str], ...] = ()
    components: tuple[Component, ...] = ()
    unavailable: tuple[str, ...] = ()
    direction: None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "time": iso_utc(self.time),
            "direction": None,
            "reasons": list(self.reasons),
            "entry": None,
            "sl": None,
            "tp1": None,
            "tp2": None,
            "tp3": None,
            "r_multiples": None,
            "confidence": 0,
            "ml_probability": None,
            "bias": dict(self.bias),
            "components": [component_json(c) for c in self.components],
            "unavailable": list(self.unavailable),
        }


SignalResult = Signal | NoTrade


def iso_utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def signal_id(symbol: str, timeframe: str, direction: TradeDirection, moment: datetime) -> str:
    """Deterministic, readable id: the same setup at the same candle has the same id everywhere."""
    return f"{symbol}-{timeframe}-{moment.strftime('%Y%m%d%H%M')}-{'L' if direction is TradeDirection.LONG else 'S'}"


def component_json(c: Component) -> dict[str, Any]:
    return {"name": c.name, "detail": c.detail, "direction": c.direction, "top": c.top, "bottom": c.bottom}
