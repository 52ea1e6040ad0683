import pytest

from ict_modules.core import atr, known_at
from ict_modules.liquidity_map import (
    LiquiditySide,
    PoolKind,
    detect_liquidity,
    first_break,
    liquidity_targets,
)
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

SWING_ONLY = {"swing_length": 2, "previous_day": False, "previous_week": False}


def bars_from_highs(highs, width=2.0):
    """Bars with the given highs, low = high - width, open = close = high - width / 2."""
    return [(h - width / 2, h, h - width, h - width / 2) for h in highs]


def mirror(rows, axis=30.0):
    """Reflect prices around ``axis``: highs become lows, so BSL fixtures become SSL fixtures."""
    return [(axis - o, axis - lo, axis - h, axis - c) for o, h, lo, c in rows]


# Swing high at bar 3 (15) and bar 9 (13), swing low at bar 6 (8); bar 12 wicks to 16 and closes at 14:
# a sweep of 15 (close back below) and a run of 13 (close above) on the same bar.
BASE = bars_from_highs([10, 11, 12, 15, 12, 11, 10, 11, 12, 13, 12, 11])
TAKE = (12.0, 16.0, 11.0, 14.0)


def test_buy_side_pools_sweep_and_run():
    pools = detect_liquidity(make_candles([*BASE, TAKE]), **SWING_ONLY)
    got = [(p.side, p.kind, p.index, p.price, p.confirmed_at, p.swept_at, p.run_at) for p in pools]
    assert got == [
        (LiquiditySide.BUY_SIDE, PoolKind.SWING_HIGH, 3, 15.0, 5, 12, None),
        (LiquiditySide.SELL_SIDE, PoolKind.SWING_LOW, 6, 8.0, 8, None, None),
        (LiquiditySide.BUY_SIDE, PoolKind.SWING_HIGH, 9, 13.0, 11, None, 12),
    ]
    assert pools[0].taken_at == 12 and pools[0].is_resting(11) and not pools[0].is_resting(12)


def test_sell_side_pools_mirror():
    pools = detect_liquidity(make_candles(mirror([*BASE, TAKE])), **SWING_ONLY)
    got = [(p.side, p.kind, p.index, p.price, p.confirmed_at, p.swept_at, p.run_at) for p in pools]
    assert got == [
        (LiquiditySide.SELL_SIDE, PoolKind.SWING_LOW, 3, 15.0, 5, 12, None),
        (LiquiditySide.BUY_SIDE, PoolKind.SWING_HIGH, 6, 22.0, 8, None, None),
        (LiquiditySide.SELL_SIDE, PoolKind.SWING_LOW, 9, 17.0, 11, None, 12),
    ]


def test_touch_is_not_a_take_and_nothing_to_find():
    touch = (12.0, 15.0, 11.0, 14.0)  # high exactly at the level
    pools = detect_liquidity(make_candles([*BASE, touch]), **SWING_ONLY)
    assert pools[0].kind is PoolKind.SWING_HIGH and pools[0].taken_at is None
    rising = make_candles(bars_from_highs([10 + i for i in range(20)]))
    assert detect_liquidity(rising, swing_length=2) == []  # no pivots, and no completed UTC day
    assert detect_liquidity(make_candles(BASE[:4]), **SWING_ONLY) == []  # pivot not confirmed yet


def equal_frame(second_high, middle=10.0):
    return make_candles(bars_from_highs([10, 11, 12, 15, 12, 11, middle, 11, 12, second_high, 12, 11, 10]))


def tolerance_for(candles, offset):
    """equal_tolerance_atr at which ``offset`` is exactly the tolerance (ATR at bar 11, the confirmation)."""
    a = atr(*(candles[k].to_numpy() for k in ("high", "low", "close")))
    return abs(offset) / a[11]


@pytest.mark.parametrize("offset", [0.3, -0.3])
@pytest.mark.parametrize("mirrored", [False, True])
def test_equal_highs_and_lows_within_and_just_outside_tolerance(offset, mirrored):
    candles = equal_frame(15 + offset)
    if mirrored:
        candles = make_candles(mirror(list(candles[["open", "high", "low", "close"]].itertuples(index=False))))
    tol = tolerance_for(candles, offset)
    kind = PoolKind.EQUAL_LOWS if mirrored else PoolKind.EQUAL_HIGHS
    within = [p for p in detect_liquidity(candles, **SWING_ONLY, equal_tolerance_atr=tol * 1.01) if p.kind is kind]
    outside = detect_liquidity(candles, **SWING_ONLY, equal_tolerance_atr=tol * 0.99)
    assert not [p for p in outside if p.kind in (PoolKind.EQUAL_HIGHS, PoolKind.EQUAL_LOWS)]
    assert len(within) == 1
    pool = within[0]
    level = 15 + max(offset, 0) if not mirrored else 30 - (15 + max(offset, 0))
    assert pool.indices == (3, 9) and pool.confirmed_at == 11 and pool.price == pytest.approx(level)
    assert pool.side is (LiquiditySide.SELL_SIDE if mirrored else LiquiditySide.BUY_SIDE)
    assert pool.index == (9 if offset > 0 else 3)


def test_equal_highs_need_the_first_high_still_resting():
    def run(taker):  # bar 6 = taker, bar 7 = taker + 1 (a pivot far above), equal highs at bars 3 and 12
        highs = [10, 11, 12, 15, 12, 11, taker, taker + 1, 11, 10, 11, 12, 15, 12, 11]
        return detect_liquidity(make_candles(bars_from_highs(highs)), **SWING_ONLY, equal_tolerance_atr=0.1)

    assert [p.indices for p in run(13) if p.kind is PoolKind.EQUAL_HIGHS] == [(3, 12)]
    taken_first = run(16)  # bar 6 trades above the first high before the second forms
    assert not [p for p in taken_first if p.kind is PoolKind.EQUAL_HIGHS]
    assert next(p for p in taken_first if p.index == 3).swept_at == 6


def test_three_equal_highs_make_a_pair_then_a_triple():
    highs = [10, 11, 12, 15, 12, 11, 10, 11, 12, 15, 12, 11, 10, 11, 12, 15, 12, 11]
    pools = detect_liquidity(make_candles(bars_from_highs(highs)), **SWING_ONLY, equal_tolerance_atr=0.05)
    assert [p.indices for p in pools if p.kind is PoolKind.EQUAL_HIGHS] == [(3, 9), (3, 9, 15)]


def test_previous_day_pools_known_at_the_next_day_first_bar():
    day1 = [(100.0, 101.0, 99.0, 100.0)] * 24
    day1[5] = (100.0, 105.0, 99.0, 100.0)  # PDH 105 at bar 5
    day1[17] = (100.0, 101.0, 95.0, 100.0)  # PDL 95 at bar 17
    next_bar = (100.0, 106.0, 99.0, 104.0)  # first bar of day 2 sweeps the PDH
    candles = make_candles([*day1, next_bar, (100.0, 101.0, 94.0, 94.5)])  # then runs the PDL
    pools = detect_liquidity(candles, swing_length=50, previous_week=False)
    got = [(p.kind, p.side, p.index, p.price, p.confirmed_at, p.swept_at, p.run_at) for p in pools]
    assert got == [
        (PoolKind.PREVIOUS_DAY_HIGH, LiquiditySide.BUY_SIDE, 5, 105.0, 24, 24, None),
        (PoolKind.PREVIOUS_DAY_LOW, LiquiditySide.SELL_SIDE, 17, 95.0, 24, None, 25),
    ]
    assert detect_liquidity(candles.iloc[:24], swing_length=50) == []  # the day is not over yet


def test_previous_week_pools_start_on_monday():
    rows = [(100.0, 101.0 + i, 99.0 - i, 100.0) for i in range(7)] + [(100.0, 101.0, 99.0, 100.0)] * 3
    candles = make_candles(rows, start="2024-01-01", freq="1D")  # 2024-01-01 was a Monday
    weekly = [p for p in detect_liquidity(candles, swing_length=50) if p.kind.name.startswith("PREVIOUS_WEEK")]
    assert [(p.kind, p.price, p.index, p.confirmed_at) for p in weekly] == [
        (PoolKind.PREVIOUS_WEEK_HIGH, 107.0, 6, 7),
        (PoolKind.PREVIOUS_WEEK_LOW, 93.0, 6, 7),
    ]


def test_liquidity_targets_nearest_resting_pools():
    rows = [*BASE, TAKE, *bars_from_highs([13, 12, 11])]
    pools = detect_liquidity(make_candles(rows), **SWING_ONLY)
    before = liquidity_targets(pools, 12.0, 11)
    assert [p.price for p in before.above] == [13.0, 15.0]
    assert [(p.price, p.side) for p in before.below] == [(8.0, LiquiditySide.SELL_SIDE)]
    after = liquidity_targets(pools, 12.0, 12)  # both highs taken at bar 12
    assert after.above == ()
    early = liquidity_targets(pools, 12.0, 7)  # the low at bar 6 is confirmed only at bar 8
    assert [p.price for p in early.above] == [15.0] and early.below == ()
    only_ssl = liquidity_targets(pools, 12.0, 11, sides=(LiquiditySide.SELL_SIDE,))
    assert only_ssl.above == () and len(only_ssl.below) == 1


def test_first_break_matches_brute_force():
    import numpy as np

    rng = np.random.default_rng(7)
    values = rng.random(300)
    starts = rng.integers(0, 300, 100)
    levels = rng.random(100)
    for inclusive in (False, True):
        got = first_break(values, starts, levels, inclusive=inclusive)
        for q in range(100):
            hit = values[starts[q] :] >= levels[q] if inclusive else values[starts[q] :] > levels[q]
            expected = starts[q] + int(np.argmax(hit)) if hit.any() else -1
            assert got[q] == expected


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal_on_real_candles(symbol, interval):
    candles = sample_candles(symbol, interval, tail=3000)
    full = detect_liquidity(candles)
    assert {p.kind for p in full} >= {PoolKind.SWING_HIGH, PoolKind.SWING_LOW, PoolKind.PREVIOUS_DAY_HIGH}
    for k in cut_points(len(candles)):
        assert detect_liquidity(candles.iloc[:k]) == known_at(full, k - 1)


def test_scale_invariance():
    candles = sample_candles("SOLUSDT", "1h", tail=3000)

    def shape(pools):
        return [(p.kind, p.indices, p.confirmed_at, p.swept_at, p.run_at) for p in pools]

    assert shape(detect_liquidity(candles)) == shape(detect_liquidity(scaled(candles)))


@pytest.mark.parametrize("n", [1, 31, 32, 33, 64, 1000, 4099])
def test_level_search_edges_match_brute_force(n):
    import numpy as np

    from ict_modules.liquidity_map import LevelSearch

    rng = np.random.default_rng(n)
    values = np.round(rng.random(n) * 20)  # many ties with the levels
    search = LevelSearch(values)
    starts = np.concatenate((rng.integers(-2, n + 3, 300), [0, n - 1, n, n + 5]))
    levels = np.concatenate((np.round(rng.random(300) * 21) - 0.5 * rng.integers(0, 2, 300), [20, 19, -1, 0]))
    for inclusive in (False, True):
        got = search.first_above(starts, levels, inclusive=inclusive)
        for s, lv, g in zip(starts, levels, got, strict=True):
            tail = values[max(s, 0) :]
            hit = tail >= lv if inclusive else tail > lv
            assert g == (max(s, 0) + int(np.argmax(hit)) if hit.any() else -1)


@pytest.mark.parametrize("tolerance", [0.1, 2.0])
def test_equal_clusters_vectorised_equals_the_stack_loop(monkeypatch, tolerance):
    import ict_modules.liquidity_map as lm

    candles = sample_candles("ETHUSDT", "4h", tail=3000)
    fast = detect_liquidity(candles, equal_tolerance_atr=tolerance)
    monkeypatch.setattr(lm, "MAX_PAIRS", -1)  # force the bounded-memory loop
    slow = detect_liquidity(candles, equal_tolerance_atr=tolerance)
    assert fast == slow
    assert len([p for p in fast if p.kind is PoolKind.EQUAL_HIGHS]) > 3
