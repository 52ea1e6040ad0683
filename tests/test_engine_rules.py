"""Engine rules (steps 2-12) on hand-built setups with a controlled detector registry: exact entry/SL/TP.

The candles are identical bars (open 100, high 101, low 99, close 100), so ATR is exactly 2.0 everywhere; the
detector objects are the real dataclasses, placed by hand. Long and short are exact mirrors around 100.
"""

import pytest

import ict_signal_engine as eng
from engine.signal_model import NoTrade, Signal, TradeDirection
from ict_modules.core import Direction
from ict_modules.liquidity_map import LiquidityPool, LiquiditySide, PoolKind
from ict_modules.market_structure import StructureEvent, StructureKind, StructureLevel
from ict_modules.order_block_detector import OrderBlock
from ict_modules.swing_points import SwingKind, SwingPoint
from tests.helpers import make_candles

BULL, BEAR = Direction.BULLISH, Direction.BEARISH
N = 60


def frames():
    rows = [(100.0, 101.0, 99.0, 100.0)] * N
    return {
        "1h": make_candles(rows, start="2024-01-08 00:00", freq="1h"),
        "4h": make_candles(rows[:20], start="2024-01-04 00:00", freq="4h"),
        "1d": make_candles(rows[:5], start="2024-01-03 00:00", freq="1D"),
    }


def mirror(price, sign):
    return price if sign > 0 else 200.0 - price


def event(direction, kind=StructureKind.CHOCH, at=50, price=100.8):
    return StructureEvent(kind, direction, StructureLevel.INTERNAL, at - 5, price, at, at - 2, None, None)


def setup_objects(sign, *, htf=("with", "with"), tp1=104.0, with_ob=True, with_structure=True):
    """Long (sign=+1) or its mirror: bullish OB 97-99, swing low 96, BSL 104, PDH 106.5 (close 100, ATR 2)."""
    d = BULL if sign > 0 else BEAR
    htf = [d if h == "with" else d.opposite for h in htf]
    m = lambda p: mirror(p, sign)  # noqa: E731
    lo, hi = sorted((m(97.0), m(99.0)))
    ob = OrderBlock(d, 47, 48, hi, lo, 1.0, 1.0, StructureLevel.INTERNAL, StructureKind.CHOCH, 45, 49, 50, None, None)
    kind_low, kind_high = (SwingKind.LOW, SwingKind.HIGH) if sign > 0 else (SwingKind.HIGH, SwingKind.LOW)
    swings = [SwingPoint(kind_high, 30, m(104.0), 33), SwingPoint(kind_low, 40, m(96.0), 43)]
    swings.sort(key=lambda p: p.index)
    above = sign > 0
    side = LiquiditySide.BUY_SIDE if above else LiquiditySide.SELL_SIDE
    pools = [
        LiquidityPool(side, PoolKind.SWING_HIGH if above else PoolKind.SWING_LOW, m(tp1), 30, (30,), 35),
        LiquidityPool(
            side, PoolKind.PREVIOUS_DAY_HIGH if above else PoolKind.PREVIOUS_DAY_LOW, m(106.5), 20, (20,), 24
        ),
    ]
    return {
        ("internal_structure", "1h"): [event(d)] if with_structure else [],
        ("market_structure", "4h"): [event(htf[0], StructureKind.BOS, at=5)] if htf[0] else [],
        ("market_structure", "1d"): [event(htf[1], StructureKind.BOS, at=2)] if htf[1] else [],
        ("order_blocks", "1h"): [ob] if with_ob else [],
        ("swing_points", "1h"): swings,
        ("liquidity_map", "1h"): pools,
    }


def fake_registry(monkeypatch, objects, *, broken=()):
    """A registry whose detectors return ``objects[(name, tf)]``; names in ``broken`` raise."""

    def runner(name):
        def detect(candles, *, tf_of):
            if name in broken:
                raise RuntimeError(f"{name} exploded")
            return objects.get((name, tf_of(candles)), [])

        return detect

    sizes = {len(f): tf for tf, f in frames().items()}
    names = {name for name, _ in objects} | set(broken)
    return [
        eng.DetectorSpec(n, runner(n), lambda cfg, done: {"tf_of": lambda c: sizes[len(c)]}, higher=True)
        for n in sorted(names)
    ]


def run(monkeypatch, objects, **kw):
    registry = fake_registry(monkeypatch, objects, **kw)
    prep = eng.prepare(frames(), timeframe="1h", registry=registry)
    return eng.signal_at(prep, -1, symbol="TESTUSDT")[0]


@pytest.mark.parametrize("sign", [1, -1])
def test_textbook_setup_exact_levels(monkeypatch, sign):
    result = run(monkeypatch, setup_objects(sign))
    assert isinstance(result, Signal), getattr(result, "reasons", None)
    m = lambda p: mirror(p, sign)  # noqa: E731
    assert result.direction is (TradeDirection.LONG if sign > 0 else TradeDirection.SHORT)
    # limit entry at the OB midpoint; stop below the swing low 96 (beyond the OB's 97) by 0.25 ATR = 0.5
    assert result.entry == pytest.approx(m(98.0))
    assert sorted((result.entry_low, result.entry_high)) == pytest.approx(sorted((m(97.0), m(99.0))))
    assert result.sl == pytest.approx(m(95.5))
    # TP1 = nearest liquidity (104), TP2 = PDH 106.5, TP3 = TP2 + 1R (no extension in the direction)
    assert (result.tp1, result.tp2, result.tp3) == pytest.approx((m(104.0), m(106.5), m(109.0)))
    assert result.r_multiples == (2.4, 3.4, 4.4)
    parts = dict(result.confidence_breakdown)
    assert parts["htf_alignment"] == 20.0 and parts["structure"] == 12.0 and parts["zone_confluence"] == 5.0
    assert parts["premium_discount_ote"] == 5.0  # entry 98 below the equilibrium 100 of the 96-104 range
    assert parts["liquidity_sweep"] == 0.0 and parts["displacement"] == 0.0
    assert result.rule_confidence == pytest.approx(sum(parts.values()))
    assert result.bias == (("1h", d := ("bullish" if sign > 0 else "bearish")), ("4h", d), ("1d", d))
    features = dict(result.features)
    assert tuple(features) == eng.FEATURES
    assert features["direction"] == sign and features["risk_atr"] == 1.25 and features["tp1_r"] == 2.4


def test_long_and_short_are_mirrors(monkeypatch):
    long = run(monkeypatch, setup_objects(1))
    short = run(monkeypatch, setup_objects(-1))
    assert long.rule_confidence == short.rule_confidence
    assert long.r_multiples == short.r_multiples


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"with_structure": False}, "no bias"),
        ({"htf": ("against", "against")}, "conflicting timeframes"),
        ({"tp1": 101.0}, "R:R too low"),
        ({"with_ob": False}, "no entry model"),
    ],
)
@pytest.mark.parametrize("sign", [1, -1])
def test_no_trade_reasons(monkeypatch, sign, change, reason):
    result = run(monkeypatch, setup_objects(sign, **change))
    assert isinstance(result, NoTrade)
    assert result.direction is None and reason in result.reasons[0]
    assert result.to_json()["direction"] is None


def test_one_htf_against_one_for_is_allowed_with_less_confidence(monkeypatch):
    result = run(monkeypatch, setup_objects(1, htf=("with", "against")))
    assert isinstance(result, Signal)
    assert dict(result.confidence_breakdown)["htf_alignment"] == 10.0


def test_a_raising_detector_is_skipped_and_named(monkeypatch, caplog):
    objects = setup_objects(1)
    result = run(monkeypatch, objects, broken=("whale",))
    assert isinstance(result, Signal)
    assert "whale" in result.unavailable
    assert "whale exploded" in caplog.text
    # the structure detector failing leaves no bias, and says so
    objects.pop(("internal_structure", "1h"))
    objects.pop(("market_structure", "4h"))
    objects.pop(("market_structure", "1d"))
    result = run(monkeypatch, objects, broken=("internal_structure", "market_structure"))
    assert isinstance(result, NoTrade)
    assert {"internal_structure", "market_structure"} <= set(result.unavailable)


def test_stop_too_wide_is_no_trade(monkeypatch):
    config = eng.EngineConfig(max_stop_atr=1.2)
    registry = fake_registry(monkeypatch, setup_objects(1))
    prep = eng.prepare(frames(), timeframe="1h", registry=registry, config=config)
    result = eng.signal_at(prep, -1, symbol="TESTUSDT", config=config)[0]
    assert isinstance(result, NoTrade) and "stop too wide" in result.reasons[0]


def test_min_risk_reward_comes_from_settings():
    from config import Settings

    assert eng.EngineConfig.from_settings(Settings(min_risk_reward=2.5)).min_risk_reward == 2.5
    assert eng.EngineConfig().min_risk_reward == 1.5


def test_weights_sum_to_100():
    assert sum(eng.WEIGHTS.values()) == pytest.approx(100.0)
