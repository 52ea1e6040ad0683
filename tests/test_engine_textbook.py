"""The whole engine with the real detectors on a hand-built textbook ICT setup (long, and its exact mirror short).

Setup (15m candles): a downtrend of lower highs (buy-side liquidity resting above each wave top), a small range,
a sweep of the range low that closes back inside, a displacement candle through the range high (MSS), leaving a
bullish FVG (an SSIB: the gap sits in the displacement leg), then a shallow pullback that stays above the gap.

Expected by the rules (docs/engine.md), from the candles themselves:
    entry zone = the FVG (high of the sweep candle .. low of the candle after the displacement), limit at its middle;
    SL = the sweep low (the entry model's protecting structure) - 0.25 ATR;
    TP1..TP3 = the three nearest wave tops above (resting BSL).
"""

import pytest

import ict_signal_engine as eng
from engine.signal_model import Signal, TradeDirection
from ict_modules.core import atr
from tests.helpers import make_candles

MIRROR = 240.0


def textbook_long_rows():
    rows = []
    prev = 120.0

    def bar(close, up=0.2, down=0.2):
        nonlocal prev
        rows.append((prev, max(prev, close) + up, min(prev, close) - down, close))
        prev = close

    for _ in range(4):  # waves: 6 bars down 1.5, 5 bars up 1.2 -> tops 3.0 lower each time
        for _ in range(6):
            bar(prev - 1.5)
        for _ in range(5):
            bar(prev + 1.2)
    for _ in range(6):
        bar(prev - 1.5)
    for step in (0.6, 0.6, 0.4, -0.4, -0.5, -0.4):  # the small range: internal high, then back down
        bar(prev + step)
    range_low = min(r[2] for r in rows[-12:])
    bar(prev - 0.4, down=prev - 0.4 - (range_low - 0.3))  # sweep: 0.3 under the range low, closes back up
    bar(prev + 3.2, up=0.1, down=0.05)  # displacement through the range high
    bar(prev + 0.5, down=0.1)
    bar(prev - 0.3)
    bar(prev - 0.2)
    return rows


def frame(sign):
    rows = textbook_long_rows()
    if sign < 0:
        rows = [(MIRROR - o, MIRROR - low, MIRROR - high, MIRROR - c) for o, high, low, c in rows]
    return rows, make_candles(rows, start="2024-01-08 00:00", freq="15min")


@pytest.mark.parametrize("sign", [1, -1])
def test_textbook_sweep_mss_fvg_setup(sign):
    rows, candles = frame(sign)
    result = eng.generate_signal({"15m": candles}, symbol="TESTUSDT", timeframe="15m")
    assert isinstance(result, Signal), result
    assert result.direction is (TradeDirection.LONG if sign > 0 else TradeDirection.SHORT)
    assert result.entry_model == "sweep_mss"
    n = len(rows)
    sweep = n - 5
    _, h, lo, _ = zip(*rows, strict=True)
    a = atr(*(candles[k].to_numpy() for k in ("high", "low", "close")))[-1]
    if sign > 0:
        gap = (h[sweep], lo[sweep + 2])
        stop = lo[sweep] - 0.25 * a
        tops = sorted({max(h[i - 5 : i + 6]) for i in (10, 21, 32, 43)})
    else:
        gap = (h[sweep + 2], lo[sweep])
        stop = h[sweep] + 0.25 * a
        tops = sorted({min(lo[i - 5 : i + 6]) for i in (10, 21, 32, 43)}, reverse=True)
    assert (result.entry_low, result.entry_high) == pytest.approx(gap)
    assert result.entry == pytest.approx(sum(gap) / 2)
    assert result.sl == pytest.approx(stop)
    assert (result.tp1, result.tp2, result.tp3) == pytest.approx(tuple(tops[:3]))
    names = {comp.name for comp in result.components}
    assert {"mss", "fvg", "sibi_ssib", "liquidity_sweep", "displacement"} <= names
    parts = dict(result.confidence_breakdown)
    assert parts["structure"] == 15.0 and parts["entry_model"] == 15.0 and parts["liquidity_sweep"] == 10.0
    assert parts["displacement"] == 8.0 and parts["zone_confluence"] == 15.0  # OB + FVG + SSIB at the entry
    assert result.r_multiples[0] >= 1.5


def test_long_and_short_textbook_are_exact_mirrors():
    long = eng.generate_signal({"15m": frame(1)[1]}, symbol="TESTUSDT", timeframe="15m")
    short = eng.generate_signal({"15m": frame(-1)[1]}, symbol="TESTUSDT", timeframe="15m")
    assert short.entry == pytest.approx(MIRROR - long.entry)
    assert short.sl == pytest.approx(MIRROR - long.sl)
    assert short.tp3 == pytest.approx(MIRROR - long.tp3)
    assert short.r_multiples == long.r_multiples
    assert short.rule_confidence == long.rule_confidence


def test_before_the_displacement_there_is_no_long():
    _, candles = frame(1)
    result = eng.generate_signal({"15m": candles.iloc[:-4]}, symbol="TESTUSDT", timeframe="15m")
    assert result.direction is not TradeDirection.LONG
