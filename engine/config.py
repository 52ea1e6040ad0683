"""The engine's tunables (``EngineConfig``) and the confidence weights (``WEIGHTS``), shared by every step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CANDLES_PER_FRAME = 500

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
