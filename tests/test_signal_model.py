import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.signal_model import NoTrade, Signal, TradeDirection

T = datetime(2025, 7, 1, 14, tzinfo=UTC)


def make(direction=TradeDirection.LONG, **over):
    base = dict(entry=100.0, entry_low=99.0, entry_high=101.0, sl=95.0, tp1=110.0, tp2=120.0, tp3=130.0)
    if direction is TradeDirection.SHORT:
        base = dict(entry=100.0, entry_low=99.0, entry_high=101.0, sl=105.0, tp1=90.0, tp2=80.0, tp3=70.0)
    base = {"time": T, "rule_confidence": 70, **base, **over}
    return Signal("BTCUSDT", "1h", direction, **base)


def test_long_and_short_r_multiples():
    assert make().r_multiples == (2.0, 4.0, 6.0)
    assert make(TradeDirection.SHORT).r_multiples == (2.0, 4.0, 6.0)
    assert make().id == "BTCUSDT-1h-202507011400-L"


@pytest.mark.parametrize(
    "direction,over,reason",
    [
        (TradeDirection.LONG, {"sl": 105.0}, "wrong side"),
        (TradeDirection.LONG, {"sl": 99.5}, "wrong side"),  # stop inside the entry zone
        (TradeDirection.SHORT, {"sl": 95.0}, "wrong side"),
        (TradeDirection.LONG, {"tp2": 105.0}, "ordered"),
        (TradeDirection.SHORT, {"tp1": 101.0}, "ordered"),
        (TradeDirection.LONG, {"tp3": math.nan}, "finite"),
        (TradeDirection.LONG, {"entry": 102.0}, "zone"),
        (TradeDirection.LONG, {"sl": -1.0}, "positive"),
    ],
)
def test_broken_signals_cannot_exist(direction, over, reason):
    with pytest.raises(ValueError, match=reason):
        make(direction, **over)


def test_time_and_probability_validation():
    with pytest.raises(ValueError, match="UTC"):
        make(time=datetime(2025, 7, 1, 14))
    with pytest.raises(ValueError, match="UTC"):
        make(time=datetime(2025, 7, 1, 14, tzinfo=timezone(timedelta(hours=2))))
    with pytest.raises(ValueError, match="ML probability"):
        make(ml_probability=1.5)
    with pytest.raises(ValueError, match="features"):
        make(features=(("x", math.inf),))


def test_confidence_blend_and_json():
    s = make(ml_probability=0.25)
    assert s.confidence == pytest.approx(0.6 * 70 + 40 * 0.25)
    data = json.loads(json.dumps(s.to_json()))
    assert data["direction"] == "long" and data["time"] == "2025-07-01T14:00:00Z"
    for key in (
        "symbol",
        "timeframe",
        "reasons",
        "entry",
        "sl",
        "tp1",
        "tp2",
        "tp3",
        "r_multiples",
        "confidence",
        "ml_probability",
        "components",
    ):
        assert key in data
    none = NoTrade("BTCUSDT", "1h", T, ("no bias",)).to_json()
    assert none["direction"] is None and none["reasons"] == ["no bias"] and none["tp3"] is None
