import pytest

from ict_modules.core import atr, known_at
from ict_modules.ilp_detector import ILPKind, detect_internal_liquidity, internal_pools_at
from ict_modules.liquidity_map import LiquiditySide
from ict_modules.premium_discount import detect_dealing_ranges
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

PARAMS = {"internal_length": 1, "swing_length": 3}
HIGHS = [14, 13, 12, 10, 12, 13, 15, 14, 13, 16, 18, 17, 19, 22, 20, 19, 18, 17, 16.5, 17.5, 16]
# Bars: low = high - 2, open = close = high - 1. Dealing range (swing_length 3): low 8 at bar 3, high 22 at bar 13,
# confirmed at bar 16. Internal (length 1) highs at 6 (15) and 10 (18) are swept at bars 9 and 12, before the range
# is known: not internal pools. Internal lows: 8 (11, resting), 11 (15, swept at bar 18 by a wick to 14.5 that
# closes at 15.5), 18 (14.5, swept at bar 20). Internal high 19 (17.5) confirmed at bar 20. Bar 21 closes through
# the low at 11 (a run).
ROWS = [(h - 1, h, h - 2, h - 1) for h in HIGHS] + [(15, 15.2, 10.5, 10.8)]


def mirror(rows, axis=30.0):
    return [(axis - o, axis - lo, axis - h, axis - c) for o, h, lo, c in rows]


def shape(pools):
    return [(p.kind, p.equal, p.price, p.index, p.confirmed_at, p.swept_at, p.run_at) for p in pools]


def test_internal_sell_side_and_buy_side_pools():
    candles = make_candles(ROWS)
    ranges = detect_dealing_ranges(candles, swing_length=3)
    assert [(r.low, r.low_index, r.high, r.high_index, r.confirmed_at) for r in ranges] == [(8, 3, 22, 13, 16)]
    pools = detect_internal_liquidity(candles, **PARAMS)
    assert shape(pools) == [
        (ILPKind.ISSL, False, 11.0, 8, 16, None, 21),
        (ILPKind.ISSL, False, 15.0, 11, 16, 18, None),
        (ILPKind.ISSL, False, 14.5, 18, 19, 20, None),
        (ILPKind.IBSL, False, 17.5, 19, 20, None, None),
    ]
    assert all(p.range_id == 16 and (p.range_low, p.range_high) == (8, 22) for p in pools)
    assert pools[0].position == pytest.approx(3 / 14)
    assert pools[0].kind.side is LiquiditySide.SELL_SIDE
    assert internal_pools_at(pools, ranges, 15) == ()  # no range known yet
    assert [p.price for p in internal_pools_at(pools, ranges, 19)] == [11.0, 14.5]
    assert [p.price for p in internal_pools_at(pools, ranges, 21)] == [17.5]


def test_mirror_swaps_ibsl_and_issl():
    pools = detect_internal_liquidity(make_candles(mirror(ROWS)), **PARAMS)
    assert shape(pools) == [
        (ILPKind.IBSL, False, 19.0, 8, 16, None, 21),
        (ILPKind.IBSL, False, 15.0, 11, 16, 18, None),
        (ILPKind.IBSL, False, 15.5, 18, 19, 20, None),
        (ILPKind.ISSL, False, 12.5, 19, 20, None, None),
    ]


def test_equal_internal_lows_within_tolerance():
    # Internal low at bar 18 moved to 14.9, 0.1 under the internal low 15 at bar 11: an equal-lows pool (ISSL).
    rows = list(ROWS[:21])
    rows[18] = (16, 16.5, 14.9, 16)
    candles = make_candles(rows)
    tol = 0.1 * atr(*(candles[k].to_numpy() for k in ("high", "low", "close")))[19]
    assert 0.1 < tol < 1.0  # 14.9 is within the default tolerance of 15, 14.0 is not
    pools = detect_internal_liquidity(candles, **PARAMS)
    equal = [p for p in pools if p.equal]
    assert [(p.kind, p.indices, p.price, p.confirmed_at, p.swept_at) for p in equal] == [
        (ILPKind.ISSL, (11, 18), 14.9, 19, 20)
    ]
    rows[18] = (16, 16.5, 14.0, 16)
    assert not [p for p in detect_internal_liquidity(make_candles(rows), **PARAMS) if p.equal]


def test_nothing_to_find():
    rising = make_candles([(h - 1, h, h - 2, h - 1) for h in range(10, 40)])
    assert detect_internal_liquidity(rising, **PARAMS) == []
    assert detect_internal_liquidity(make_candles(ROWS[:16]), **PARAMS) == []  # range not confirmed yet


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal_on_real_candles(symbol, interval):
    candles = sample_candles(symbol, interval, tail=3000)
    full = detect_internal_liquidity(candles)
    assert {p.kind for p in full} == {ILPKind.IBSL, ILPKind.ISSL}
    assert all(p.range_low < p.price < p.range_high for p in full)
    assert detect_internal_liquidity(candles, ranges=detect_dealing_ranges(candles)) == full
    for k in cut_points(len(candles)):
        assert detect_internal_liquidity(candles.iloc[:k]) == known_at(full, k - 1)


def test_scale_invariance():
    candles = sample_candles("SOLUSDT", "1h", tail=3000)

    def key(pools):
        return [(p.kind, p.indices, p.range_id, p.confirmed_at, p.swept_at, p.run_at) for p in pools]

    assert key(detect_internal_liquidity(candles)) == key(detect_internal_liquidity(scaled(candles)))
