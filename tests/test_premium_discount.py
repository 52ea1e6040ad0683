import numpy as np
import pytest

from ict_modules.core import known_at
from ict_modules.premium_discount import (
    DealingRange,
    PriceZone,
    classify_position,
    dealing_range_at,
    detect_dealing_ranges,
    range_position,
)
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

# Swing low 8 at bar 3, swing high 20 at bar 9 (confirmed at bar 11 with swing_length=2): range 8..20, EQ 14.
# Bar 12 closes at 17 (premium), bar 13 at 12 (discount), bar 14 at 14 (equilibrium).
ROWS = [
    (13.5, 14, 12, 12.5),
    (12.5, 13, 11, 11.5),
    (11.5, 12, 10, 10.5),
    (10.5, 10.8, 8, 9),
    (9, 11, 8.8, 10.8),
    (10.8, 13, 10.5, 12.8),
    (12.8, 15, 12.5, 14.8),
    (14.8, 17, 14.5, 16.8),
    (16.8, 19, 16.5, 18.8),
    (18.8, 20, 18.5, 19.5),
    (19.5, 19.8, 17, 17.5),
    (17.5, 18, 16, 16.5),
    (16.5, 17.5, 16, 17),
    (17, 17.2, 11.5, 12),
    (12, 14.5, 11.8, 14),
]


def mirror(rows, axis=30.0):
    return [(axis - o, axis - lo, axis - h, axis - c) for o, h, lo, c in rows]


def test_bullish_leg_range_premium_and_discount():
    candles = make_candles(ROWS)
    ranges = detect_dealing_ranges(candles, swing_length=2)
    assert ranges == [DealingRange(20.0, 8.0, 9, 3, 11, None)]
    r = ranges[0]
    assert r.equilibrium == 14 and r.level(0.25) == 11
    pos = range_position(candles, ranges)
    assert np.isnan(pos[:11]).all()
    assert pos[11:] == pytest.approx([(16.5 - 8) / 12, 0.75, 4 / 12, 0.5])
    assert [r.classify(c) for c in (17, 12, 14)] == [PriceZone.PREMIUM, PriceZone.DISCOUNT, PriceZone.EQUILIBRIUM]
    assert r.classify(14.1, equilibrium_band=0.05) is PriceZone.EQUILIBRIUM
    assert r.classify(14.1) is PriceZone.PREMIUM


def test_bearish_leg_mirror_swaps_premium_and_discount():
    candles = make_candles(mirror(ROWS))
    ranges = detect_dealing_ranges(candles, swing_length=2)
    assert ranges == [DealingRange(22.0, 10.0, 3, 9, 11, None)]
    pos = range_position(candles, ranges)
    assert pos[12:] == pytest.approx([0.25, 8 / 12, 0.5])
    zones = [classify_position(p) for p in pos[12:]]
    assert zones == [PriceZone.DISCOUNT, PriceZone.PREMIUM, PriceZone.EQUILIBRIUM]


def test_range_broken_by_a_close_not_a_wick():
    wick = detect_dealing_ranges(make_candles([*ROWS, (14, 20.5, 13.5, 19.5)]), swing_length=2)
    assert wick[0].broken_at is None
    close_above = detect_dealing_ranges(make_candles([*ROWS, (14, 20.5, 13.5, 20.2)]), swing_length=2)
    assert close_above[0].broken_at == 15
    close_below = detect_dealing_ranges(make_candles([*ROWS, (14, 14.5, 7.5, 7.9)]), swing_length=2)
    assert close_below[0].broken_at == 15


def test_new_swing_makes_a_new_range():
    # After the range, a higher low at bar 13 (11.5) is confirmed at bar 15: the range becomes 11.5..20.
    rows = [*ROWS, (14, 15, 13, 14.5), (14.5, 16, 14, 15.5)]
    ranges = detect_dealing_ranges(make_candles(rows), swing_length=2)
    assert [(r.high, r.low, r.confirmed_at) for r in ranges] == [(20, 8, 11), (20, 11.5, 15)]
    assert dealing_range_at(ranges, 10) is None
    assert dealing_range_at(ranges, 14).low == 8 and dealing_range_at(ranges, 15).low == 11.5


def test_nothing_to_find():
    flat = make_candles([(10, 10.5, 9.5, 10)] * 30)
    assert detect_dealing_ranges(flat, swing_length=2) == []
    assert np.isnan(range_position(flat, [])).all()
    only_low = make_candles(ROWS[:9])  # the high at bar 9 does not exist yet
    assert detect_dealing_ranges(only_low, swing_length=2) == []


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal_on_real_candles(symbol, interval):
    candles = sample_candles(symbol, interval, tail=3000)
    full = detect_dealing_ranges(candles)
    assert len(full) > 20
    pos = range_position(candles, full)
    for k in cut_points(len(candles)):
        part = detect_dealing_ranges(candles.iloc[:k])
        assert part == known_at(full, k - 1)
        assert np.array_equal(range_position(candles.iloc[:k], part), pos[:k], equal_nan=True)


def test_scale_invariance():
    candles = sample_candles("SOLUSDT", "1h", tail=3000)
    a, b = detect_dealing_ranges(candles), detect_dealing_ranges(scaled(candles))
    assert [(r.high_index, r.low_index, r.confirmed_at, r.broken_at) for r in a] == [
        (r.high_index, r.low_index, r.confirmed_at, r.broken_at) for r in b
    ]
    assert np.allclose(range_position(candles, a), range_position(scaled(candles), b), equal_nan=True)
