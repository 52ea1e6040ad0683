import numpy as np
import pytest

from ict_modules.core import Direction, known_at
from ict_modules.fvg_detector import FVG, active_fvgs, detect_fvgs, fill_fraction, fill_fractions
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

QUIET = [(100.0, 101.0, 99.0, 100.0)] * 6  # overlapping bars: no gap among them


def mirror(rows):
    """Reflect prices around 100 (p -> 200 - p): a bullish fixture becomes its bearish twin."""
    return [(200 - o, 200 - lo, 200 - h, 200 - c) for o, h, lo, c in rows]


# bars 6, 7, 8 = c1, c2, c3 of a bullish gap (101, 103); then a touch, the CE, a wick through, a close through
BULL_ROWS = [
    *QUIET,
    (100.0, 101.0, 99.5, 100.8),  # 6: c1, high 101
    (100.8, 106.0, 100.6, 105.8),  # 7: c2 displacement
    (105.8, 107.0, 103.0, 106.5),  # 8: c3, low 103 -> gap (101, 103), CE 102
    (106.5, 107.0, 102.5, 104.0),  # 9: touches (102.5 <= 103), above the CE
    (104.0, 104.5, 101.8, 103.0),  # 10: CE reached (101.8 <= 102)
    (103.0, 103.5, 100.9, 101.5),  # 11: wick through the bottom (filled), close 101.5 inside: not inverted
    (101.5, 102.0, 101.0, 101.0),  # 12: close exactly at the bottom: still not inverted
    (101.0, 101.5, 100.0, 100.5),  # 13: close below the bottom: inverted
]


def test_bullish_fvg_states():
    gaps = detect_fvgs(make_candles(BULL_ROWS))
    assert len(gaps) == 1
    g = gaps[0]
    assert g.direction is Direction.BULLISH
    assert (g.bottom, g.top, g.ce) == (101.0, 103.0, 102.0)
    assert (g.index, g.middle_index, g.confirmed_at) == (8, 7, 8)
    assert (g.touched_at, g.ce_touched_at, g.filled_at, g.inverted_at) == (9, 10, 11, 13)


def test_bearish_fvg_is_the_mirror():
    gaps = detect_fvgs(make_candles(mirror(BULL_ROWS)))
    assert len(gaps) == 1
    g = gaps[0]
    assert g.direction is Direction.BEARISH
    assert (g.bottom, g.top, g.ce) == (97.0, 99.0, 98.0)
    assert (g.index, g.middle_index, g.confirmed_at) == (8, 7, 8)
    assert (g.touched_at, g.ce_touched_at, g.filled_at, g.inverted_at) == (9, 10, 11, 13)


def test_untouched_gap_has_no_states():
    g = detect_fvgs(make_candles(BULL_ROWS[:9] + [(106.5, 108.0, 105.0, 107.5)] * 3))[0]
    assert (g.touched_at, g.ce_touched_at, g.filled_at, g.inverted_at) == (None, None, None, None)
    assert g.active_at(11) and not g.active_at(7)


def test_nothing_to_find():
    assert detect_fvgs(make_candles(QUIET * 5)) == []
    # a strong rally whose wicks overlap bar to bar (every c3 low <= c1 high) has no gap
    rally = [(100 + k, 102.5 + k, 99.5 + k, 102 + k) for k in range(20)]
    assert detect_fvgs(make_candles(rally)) == []
    assert detect_fvgs(make_candles(QUIET[:2])) == []
    assert detect_fvgs(make_candles(QUIET).iloc[:0]) == []


def test_exactly_touching_is_not_a_gap():
    touching = [*QUIET, (100, 101, 99.5, 100.8), (100.8, 106, 100.6, 105.8), (105.8, 107, 101.0, 106.5)]
    assert detect_fvgs(make_candles(touching), min_size_atr=0) == []
    assert detect_fvgs(make_candles(mirror(touching)), min_size_atr=0) == []
    tiny = [*touching[:-1], (105.8, 107, 101.01, 106.5)]
    assert [(g.direction, g.index) for g in detect_fvgs(make_candles(tiny), min_size_atr=0)] == [(Direction.BULLISH, 8)]
    assert [(g.direction, g.index) for g in detect_fvgs(make_candles(mirror(tiny)), min_size_atr=0)] == [
        (Direction.BEARISH, 8)
    ]


def test_min_size_in_atr():
    # gap of 0.1 with ATR about 2: 0.05 ATR
    tiny = [*QUIET, (100, 101, 99.5, 100.8), (100.8, 106, 100.6, 105.8), (105.8, 107, 101.1, 106.5)]
    candles = make_candles(tiny)
    assert detect_fvgs(candles) == []  # default 0.1 ATR
    (g,) = detect_fvgs(candles, min_size_atr=0.01)
    assert 0.04 < g.size_atr < 0.06
    assert detect_fvgs(candles, min_size_atr=0.06) == []
    with pytest.raises(ValueError):
        detect_fvgs(candles, min_size_atr=-1)


@pytest.mark.parametrize("rows", [BULL_ROWS, mirror(BULL_ROWS)], ids=["bullish", "bearish"])
def test_fill_fraction_evolves(rows):
    candles = make_candles(rows)
    (g,) = detect_fvgs(candles)
    fractions = [fill_fraction(g, candles, bar) for bar in range(8, 14)]
    assert fractions == pytest.approx([0.0, 0.25, 0.6, 1.0, 1.0, 1.0])
    assert np.isnan(fill_fraction(g, candles, 7))  # not yet known
    assert fill_fractions([g, g], candles, 10) == pytest.approx([0.6, 0.6])
    assert [x.index for x in active_fvgs([g], 10)] == [8]
    assert active_fvgs([g], 11) == []


def test_two_gaps_in_both_directions_keep_their_polarity():
    up = [(100, 101, 99.5, 100.8), (100.8, 106, 100.6, 105.8), (105.8, 107, 103, 106.5)]
    hold = [(106.5, 107.5, 105.5, 106.0)] * 3
    down = [(106.0, 106.5, 105.0, 105.2), (105.2, 105.3, 99.0, 99.2), (99.2, 102.0, 98.5, 101.5)]
    gaps = detect_fvgs(make_candles([*QUIET, *up, *hold, *down]))
    assert [(g.direction, g.index, g.bottom, g.top) for g in gaps] == [
        (Direction.BULLISH, 8, 101.0, 103.0),
        (Direction.BEARISH, 14, 102.0, 105.0),
    ]


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal_on_real_candles(symbol, interval):
    candles = sample_candles(symbol, interval, tail=3000)
    full = detect_fvgs(candles)
    assert sum(g.direction is Direction.BULLISH for g in full) > 10
    assert sum(g.direction is Direction.BEARISH for g in full) > 10
    assert any(g.inverted_at is not None for g in full)
    for k in cut_points(len(candles)):
        assert detect_fvgs(candles.iloc[:k]) == known_at(full, k - 1)


def test_fill_fraction_matches_states_on_real_candles():
    candles = sample_candles("ETHUSDT", "1h", tail=1500)
    gaps = detect_fvgs(candles)
    bar = 1200
    known = [g for g in gaps if g.confirmed_at < bar]
    frac = fill_fractions(known, candles, bar)
    for g, f in zip(known, frac, strict=True):
        filled = g.filled_at is not None and g.filled_at <= bar
        assert (f == 1.0) == filled
        if g.ce_touched_at is not None and g.ce_touched_at <= bar:
            assert f >= 0.5 - 1e-9
        if g.touched_at is None or g.touched_at > bar:
            assert f == 0.0


def test_scale_invariance():
    candles = sample_candles("SOLUSDT", "1h", tail=3000)

    def key(gaps: list[FVG]):
        return [
            (g.direction, g.index, g.touched_at, g.ce_touched_at, g.filled_at, g.inverted_at, round(g.size_atr, 9))
            for g in gaps
        ]

    assert key(detect_fvgs(candles)) == key(detect_fvgs(scaled(candles)))
