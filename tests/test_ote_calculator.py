import numpy as np
import pytest

from ict_modules.core import Direction, known_at
from ict_modules.ote_calculator import active_ote, detect_ote, in_ote_zone
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

# Swing low 8 at bar 3, impulse up to the swing high 20 at bar 9 (confirmed at bar 11), then a retracement that
# reaches the OTE zone [10.52, 12.56] at bar 13 (close 12 inside) and bounces to close 13.2 above it at bar 14.
LEG_UP = [
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
    (17.5, 18, 15, 15.5),
    (15.5, 16, 13, 13.5),
    (13.5, 14, 11.5, 12),
    (12, 13.5, 11.8, 13.2),
]
PARAMS = {"swing_length": 2, "min_leg_atr": 1.5}


def mirror(rows, axis=30.0):
    return [(axis - o, axis - lo, axis - h, axis - c) for o, h, lo, c in rows]


def test_bullish_leg_zone_targets_and_entry():
    candles = make_candles(LEG_UP)
    setups = detect_ote(candles, **PARAMS)
    assert len(setups) == 1
    s = setups[0]
    assert (s.direction, s.start_index, s.end_index, s.leg_low, s.leg_high) == (Direction.BULLISH, 3, 9, 8, 20)
    assert (s.zone_bottom, s.zone_top, s.sweet_spot) == pytest.approx((20 - 0.79 * 12, 20 - 0.62 * 12, 20 - 8.46))
    assert s.targets == pytest.approx((20 + 0.27 * 12, 20 + 0.62 * 12, 32))
    assert s.equilibrium == 14
    assert (s.confirmed_at, s.entered_at, s.extended_at, s.invalidated_at) == (11, 13, None, None)
    assert s.retracement(s.sweet_spot) == pytest.approx(0.705)
    assert s.contains(12.0) and not s.contains(13.2) and not s.contains(10.0)
    zone = in_ote_zone(candles, setups)
    assert zone.tolist() == [0] * 13 + [1, 0]
    assert active_ote(setups, 10) is None and active_ote(setups, 11) == s


def test_bearish_leg_is_the_mirror():
    candles = make_candles(mirror(LEG_UP))
    setups = detect_ote(candles, **PARAMS)
    assert len(setups) == 1
    s = setups[0]
    assert (s.direction, s.start_index, s.end_index, s.leg_low, s.leg_high) == (Direction.BEARISH, 3, 9, 10, 22)
    assert (s.zone_bottom, s.zone_top, s.sweet_spot) == pytest.approx((10 + 0.62 * 12, 10 + 0.79 * 12, 18.46))
    assert s.targets == pytest.approx((10 - 0.27 * 12, 10 - 0.62 * 12, -2))
    assert (s.confirmed_at, s.entered_at) == (11, 13)
    assert s.retracement(s.zone_top) == pytest.approx(0.79)
    assert in_ote_zone(candles, setups).tolist() == [0] * 13 + [-1, 0]


def test_extension_and_invalidation_end_the_leg():
    extended = detect_ote(make_candles([*LEG_UP, (13.2, 20.5, 13, 20.2)]), **PARAMS)
    assert [(s.end_index, s.extended_at, s.invalidated_at) for s in extended] == [(9, 15, None)]
    broken_rows = [*LEG_UP, (13.2, 13.5, 7.5, 7.8)]  # closes below the leg's low
    broken = detect_ote(make_candles(broken_rows), **PARAMS)
    assert [(s.end_index, s.entered_at, s.invalidated_at) for s in broken] == [(9, 13, 15)]
    assert not broken[0].is_active(15) and active_ote(broken, 15) is None
    assert in_ote_zone(make_candles(broken_rows), broken)[15] == 0
    wick_only = detect_ote(make_candles([*LEG_UP, (13.2, 13.5, 7.5, 8.2)]), **PARAMS)  # wick below, close above
    assert wick_only[0].invalidated_at is None


def test_leg_invalidated_before_confirmation_is_not_reported():
    rows = [*LEG_UP[:10], (19.5, 19.8, 7.5, 7.6), (7.6, 9, 7.2, 8.5)]
    assert [s for s in detect_ote(make_candles(rows), **PARAMS) if s.end_index == 9] == []


def test_nothing_to_find():
    assert detect_ote(make_candles(LEG_UP), swing_length=2, min_leg_atr=10) == []  # leg too small
    flat = make_candles([(10, 10.5, 9.5, 10)] * 30)
    assert detect_ote(flat, **PARAMS) == []
    assert not in_ote_zone(flat, []).any()


def test_higher_high_supersedes_the_leg():
    # A second, higher high without a swing low between: the leg from the same low to the new high follows.
    rows = [
        *LEG_UP[:10],
        (19.5, 19.8, 18.8, 19.6),
        (19.6, 19.9, 19, 19.8),
        (19.8, 21, 19.5, 20.8),
        (20.8, 22, 20.5, 21.5),
        (21.5, 21.8, 19, 19.5),
        (19.5, 20, 18, 18.5),
    ]
    setups = detect_ote(make_candles(rows), **PARAMS)
    assert [(s.start_index, s.end_index, s.leg_high, s.extended_at) for s in setups] == [
        (3, 9, 20, 12),
        (3, 13, 22, None),
    ]
    assert active_ote(setups, 12) is None  # the first leg was extended at bar 12
    assert active_ote(setups, 15).end_index == 13


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal_on_real_candles(symbol, interval):
    candles = sample_candles(symbol, interval, tail=3000)
    full = detect_ote(candles)
    assert {s.direction for s in full} == {Direction.BULLISH, Direction.BEARISH}
    zone = in_ote_zone(candles, full)
    for k in cut_points(len(candles)):
        prefix = candles.iloc[:k]
        part = detect_ote(prefix)
        assert part == known_at(full, k - 1)
        assert np.array_equal(in_ote_zone(prefix, part), zone[:k])


def test_scale_invariance():
    candles = sample_candles("SOLUSDT", "1h", tail=3000)

    def shape(setups):
        return [(s.direction, s.start_index, s.end_index, s.confirmed_at, s.entered_at, s.extended_at) for s in setups]

    assert shape(detect_ote(candles)) == shape(detect_ote(scaled(candles)))
