"""Setups: the documented classes of signal that evidence is measured for and the gate decides on.

A setup is entry model × direction × timeframe, e.g. ``sweep_mss/long/1h``: four entry models (sweep → MSS →
FVG/OB, OTE pullback, breaker retest, zone retracement), two directions and the signal's timeframe, few enough
classes that each collects trades. Killzone, higher-timeframe alignment and premium/discount are not part of
the class; they are tried as variants by ``evaluate`` (docs/evidence.md).
"""

from __future__ import annotations

from engine.signal_model import Signal

ENTRY_MODEL_NAMES = {
    "sweep_mss": "sweep + MSS",
    "ote_pullback": "OTE pullback",
    "breaker_retest": "breaker retest",
    "zone_retracement": "zone retracement",
}


def setup_of(signal: Signal) -> str:
    """The setup key of ``signal``: ``entry_model/direction/timeframe``."""
    return f"{signal.entry_model or 'zone_retracement'}/{signal.direction.value}/{signal.timeframe}"


def setup_label(setup: str) -> str:
    """``sweep_mss/long/1h`` -> ``sweep + MSS long, 1h`` (how messages name it)."""
    model, direction, timeframe = ([*setup.split("/"), "", "", ""])[:3]
    return f"{ENTRY_MODEL_NAMES.get(model, model)} {direction}, {timeframe}".strip(", ")
