import numpy as np
import pandas as pd
import pytest

from ict_modules.core import atr, known_at, validate_candles
from ict_modules.displacement_detector import Direction, detect_displacement
from ict_modules.swing_points import SwingKind, detect_swing_points, swing_structure
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled


def test_validate_candles_reasons():
    good = make_candles([(10, 11, 9, 10.5)] * 3)
    assert validate_candles(good).dtypes.eq("float64").all()
    naive = good.tz_localize(None)
    with pytest.raises(ValueError, match="UTC"):
        validate_candles(naive)
    bad = good.copy()
    bad.iloc[1, bad.columns.get_loc("high")] = 8
    with pytest.raises(ValueError, match="high below"):
        validate_candles(bad)
    with pytest.raises(ValueError, match="strictly increasing"):
        validate_candles(pd.concat([good, good]))
    nan = good.copy()
    nan.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        validate_candles(nan)
    with pytest.raises(ValueError, match="lack column"):
        validate_candles(good.drop(columns="volume"))


def test_atr_is_causal_and_warm():
    c = sample_candles(tail=500)
    h, low, cl = (c[k].to_numpy() for k in ("high", "low", "close"))
    full = atr(h, low, cl)
    assert not np.isnan(full).any()
    assert np.allclose(atr(h[:200], low[:200], cl[:200]), full[:200])


def test_swing_points_hand_built():
    # highs: 1 2 3 [5] 3 2 1 ; lows mirror
    rows = [(p - 0.5, p, p - 1, p - 0.5) for p in (1, 2, 3, 5, 3, 2, 1)]
    pts = detect_swing_points(
        make_candles([(o + 10, h + 10, lo + 10, c + 10) for o, h, lo, c in rows]), left=2, right=2
    )
    highs = [p for p in pts if p.kind is SwingKind.HIGH]
    assert [(p.index, p.price, p.confirmed_at) for p in highs] == [(3, 15.0, 5)]
    # flat top: two equal highs -> only the first is a pivot (strict left, non-strict right)
    flat = make_candles(
        [(10, 11, 9, 10), (10, 12, 9, 10), (10, 14, 9, 10), (10, 14, 9, 10), (10, 12, 9, 10), (10, 11, 9, 10)]
    )
    assert [p.index for p in detect_swing_points(flat, left=2, right=2) if p.kind is SwingKind.HIGH] == [2]


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_swing_and_displacement_causal(symbol, interval):
    c = sample_candles(symbol, interval, tail=3000)
    full_s = swing_structure(c)
    full_d = detect_displacement(c)
    for k in cut_points(len(c)):
        prefix = c.iloc[:k]
        part = swing_structure(prefix)
        assert part.internal == known_at(full_s.internal, k - 1)
        assert part.swing == known_at(full_s.swing, k - 1)
        assert detect_displacement(prefix) == known_at(full_d, k - 1)


def test_scale_invariance():
    c = sample_candles("SOLUSDT", "1h", tail=2000)
    small = scaled(c)
    assert [(p.kind, p.index) for p in detect_swing_points(c)] == [
        (p.kind, p.index) for p in detect_swing_points(small)
    ]
    assert [(d.direction, d.index) for d in detect_displacement(c)] == [
        (d.direction, d.index) for d in detect_displacement(small)
    ]


def test_displacement_direction():
    quiet = [(100, 101, 99, 100.2)] * 20
    bull = make_candles([*quiet, (100, 106.2, 99.9, 106)])
    bear = make_candles([*quiet, (100, 100.1, 93.8, 94)])
    wicky = make_candles([*quiet, (100, 112, 94, 104)])  # big body but wicks dominate the range
    assert [(d.direction, d.index) for d in detect_displacement(bull)] == [(Direction.BULLISH, 20)]
    assert [(d.direction, d.index) for d in detect_displacement(bear)] == [(Direction.BEARISH, 20)]
    assert detect_displacement(wicky) == []
    assert detect_displacement(make_candles(quiet)) == []
