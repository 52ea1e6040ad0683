import pytest

from ict_modules.core import Direction, known_at
from ict_modules.fvg_detector import detect_fvgs
from ict_modules.sibi_ssib_detector import ImbalanceKind, detect_sibi_ssib
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

QUIET = [(100.0, 101.0, 99.0, 100.0)] * 16  # ATR about 2


def mirror(rows):
    """Reflect prices around 100 (p -> 200 - p): the bearish fixture becomes its bullish twin."""
    return [(200 - o, 200 - lo, 200 - h, 200 - c) for o, h, lo, c in rows]


# a bearish displacement leg: c1 down, c2 a big down candle, c3 down; gap (96, 99) below c1's low
BEAR_LEG = [
    *QUIET,
    (100.0, 100.5, 99.0, 99.2),  # 16: c1 (bearish)
    (99.2, 99.3, 93.0, 93.2),  # 17: c2, body 6 = 3 ATR: bearish displacement
    (93.2, 96.0, 92.0, 92.5),  # 18: c3, high 96 < 99: bearish FVG (96, 99)
    (92.5, 97.0, 92.0, 96.5),  # 19: retrace into the gap (touch, not the CE 97.5)
]


def test_bearish_fvg_in_bearish_leg_is_sibi():
    (x,) = detect_sibi_ssib(make_candles(BEAR_LEG))
    assert x.kind is ImbalanceKind.SIBI
    assert x.direction is Direction.BEARISH
    assert (x.bottom, x.top, x.ce) == (96.0, 99.0, 97.5)
    assert (x.index, x.middle_index, x.leg_start, x.confirmed_at) == (18, 17, 16, 18)
    assert x.leg_displacement_atr > 1.2
    assert (x.touched_at, x.ce_touched_at, x.filled_at) == (19, None, None)


def test_bullish_fvg_in_bullish_leg_is_ssib():
    (x,) = detect_sibi_ssib(make_candles(mirror(BEAR_LEG)))
    assert x.kind is ImbalanceKind.SSIB
    assert x.direction is Direction.BULLISH
    assert (x.bottom, x.top) == (101.0, 104.0)  # the gap sits BELOW price: a discount array
    assert (x.index, x.leg_start, x.touched_at) == (18, 16, 19)


def test_kinds_are_not_inverted():
    # SIBI = Sell-side Imbalance Buy-side Inefficiency = bearish; SSIB/BISI = bullish
    assert ImbalanceKind.SIBI.direction is Direction.BEARISH
    assert ImbalanceKind.SSIB.direction is Direction.BULLISH
    assert ImbalanceKind.of(Direction.BEARISH) is ImbalanceKind.SIBI
    assert ImbalanceKind.of(Direction.BULLISH) is ImbalanceKind.SSIB


def test_gap_without_displacement_is_neither():
    # wide quiet bars (ATR about 8): a gap of 1 made by small candles is an FVG but no displacement leg
    wide = [(100.0, 104.0, 96.0, 100.0)] * 16
    rows = [*wide, (100.0, 100.5, 99.5, 99.8), (99.8, 99.8, 98.2, 98.3), (98.3, 98.5, 97.9, 98.0)]
    assert [g.direction for g in detect_fvgs(make_candles(rows))] == [Direction.BEARISH]
    assert detect_sibi_ssib(make_candles(rows)) == []
    assert detect_sibi_ssib(make_candles(mirror(rows))) == []
    assert detect_sibi_ssib(make_candles(QUIET * 3)) == []
    assert detect_sibi_ssib(make_candles(QUIET).iloc[:0]) == []


def test_leg_started_by_an_earlier_displacement():
    # displacement at 16, the leg keeps falling; the gap forms at 19 with a small c2, still inside the leg
    rows = [
        *QUIET,
        (100.0, 100.1, 94.0, 94.2),  # 16: bearish displacement
        (94.2, 94.4, 93.0, 93.2),  # 17: c1
        (93.2, 94.1, 91.0, 91.2),  # 18: c2 (body 2: no displacement on its own; overlaps 16, so no gap at 18)
        (91.2, 92.5, 90.5, 90.8),  # 19: c3: gap (92.5, 93.0)
    ]
    found = detect_sibi_ssib(make_candles(rows), min_size_atr=0.05)
    # the displacement candle's own gap (c2 = 16) and the later one (c2 = 18), both in the leg from 16
    assert [(x.kind, x.index, x.leg_start) for x in found] == [
        (ImbalanceKind.SIBI, 17, 16),
        (ImbalanceKind.SIBI, 19, 16),
    ]
    # an up-close candle between the displacement and the second gap ends the leg: that gap is no SIBI
    broken = [*rows[:17], (94.2, 94.6, 93.0, 94.4), (94.4, 94.5, 92.4, 92.5), (92.5, 92.5, 90.5, 90.8)]
    fvgs = detect_fvgs(make_candles(broken), min_size_atr=0.05)
    assert [(g.direction, g.index) for g in fvgs] == [(Direction.BEARISH, 17), (Direction.BEARISH, 19)]
    assert [x.index for x in detect_sibi_ssib(make_candles(broken), min_size_atr=0.05)] == [17]


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal_on_real_candles(symbol, interval):
    candles = sample_candles(symbol, interval, tail=3000)
    full = detect_sibi_ssib(candles)
    assert {x.kind for x in full} == {ImbalanceKind.SIBI, ImbalanceKind.SSIB}
    assert all(x.kind.direction is x.direction for x in full)
    for k in cut_points(len(candles)):
        assert detect_sibi_ssib(candles.iloc[:k]) == known_at(full, k - 1)


def test_subset_of_fvgs_with_the_same_states():
    candles = sample_candles("BTCUSDT", "1h", tail=3000)
    fvgs = {g.index: g for g in detect_fvgs(candles)}
    found = detect_sibi_ssib(candles)
    assert 0 < len(found) < len(fvgs)
    for x in found:
        g = fvgs[x.index]
        assert (g.direction, g.top, g.bottom, g.filled_at, g.inverted_at) == (
            x.direction,
            x.top,
            x.bottom,
            x.filled_at,
            x.inverted_at,
        )


def test_scale_invariance():
    candles = sample_candles("SOLUSDT", "1h", tail=3000)

    def key(found):
        return [(x.kind, x.index, x.leg_start, x.touched_at, x.filled_at, x.inverted_at) for x in found]

    assert key(detect_sibi_ssib(candles)) == key(detect_sibi_ssib(scaled(candles)))
