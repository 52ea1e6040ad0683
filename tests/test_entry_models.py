import dataclasses

import pytest

from ict_modules.breaker_block_detector import detect_breaker_blocks
from ict_modules.core import Direction, known_at
from ict_modules.entry_models import EntryModelKind, EntrySource, detect_entry_models
from ict_modules.fvg_detector import detect_fvgs
from ict_modules.market_structure import detect_market_structure, structure_arrays
from ict_modules.order_block_detector import detect_order_blocks
from ict_modules.ote_calculator import detect_ote
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

BULL, BEAR = Direction.BULLISH, Direction.BEARISH
SWEEP_MSS, OTE, RETEST = EntryModelKind.SWEEP_MSS, EntryModelKind.OTE_PULLBACK, EntryModelKind.BREAKER_RETEST
LENGTHS = {"internal_length": 2, "swing_length": 2, "ote_swing_length": 2}

# Up-trend with wicks of 0.6 (no accidental gaps): pivot highs 103.6 (3), 105.6 (9), 106.6 (14); pivot lows
# 100.4 (5), 102.4 (11). Bar 14 closes above 105.6 (taking that buy-side liquidity); bar 18 is a bearish
# displacement closing 99.9 below 102.4: a bearish MSS whose leg high (the stop) is 106.6 at bar 14.
TREND = [100, 101, 102, 103, 102, 101, 102, 103, 104, 105, 104, 103, 104, 105, 106, 105, 104, 103]


def rows_of(closes, wick=0.6):
    rows, prev = [], closes[0]
    for c in closes:
        rows.append((prev, max(prev, c) + wick, min(prev, c) - wick, c))
        prev = c
    return rows


def frame(rows, mirror=False):
    if mirror:
        rows = [(200 - o, 200 - lo, 200 - h, 200 - c) for o, h, lo, c in rows]
    return make_candles(rows)


def run(candles, **kw):
    return detect_entry_models(candles, **LENGTHS, **kw)


def px(value, mirror):
    return pytest.approx(200 - value if mirror else value)


def zone_is(m, top, bottom, mirror):
    want = (200 - bottom, 200 - top) if mirror else (top, bottom)
    return (m.top, m.bottom) == pytest.approx(want)


def of_kind(models, kind):
    return [m for m in models if m.kind is kind]


@pytest.mark.parametrize("mirror", [False, True])
def test_sweep_mss_with_the_fvg_of_the_break(mirror):
    # bar 18 completes a bearish FVG low[16] = 103.4 > high[18] = 103.0; bar 19 trades back up into it; bar 20
    # closes above the stop
    rows = [*rows_of(TREND), (103, 103.0, 99.8, 99.9), (99.9, 103.2, 99.8, 101), (101, 107, 100.9, 106.8)]
    models = of_kind(run(frame(rows, mirror)), SWEEP_MSS)
    assert len(models) == 1
    m = models[0]
    assert (m.direction, m.source) == (BULL if mirror else BEAR, EntrySource.FVG)
    assert (m.origin_index, m.confirmed_at, m.stop_index) == (18, 18, 14)
    assert zone_is(m, 103.4, 103.0, mirror)
    assert m.stop == px(106.6, mirror)
    assert (m.triggered_at, m.invalidated_at, m.expired_at) == (19, 20, None)


@pytest.mark.parametrize("mirror", [False, True])
def test_sweep_mss_fvg_completed_after_the_break(mirror):
    # no gap at 18 (low[16] 103.4 > high[18] 103.3 is smaller than 0.1 ATR); bar 19 completes low[17] 102.4 >
    # high[19] 100.2: the model is known at 19, not before
    rows = [*rows_of(TREND), (103, 103.3, 99.8, 99.9), (99.9, 100.2, 98.5, 98.8)]
    candles = frame(rows, mirror)
    m = of_kind(run(candles), SWEEP_MSS)
    assert [(x.direction, x.source, x.origin_index, x.confirmed_at) for x in m] == [
        (BULL if mirror else BEAR, EntrySource.FVG, 18, 19)
    ]
    assert zone_is(m[0], 102.4, 100.2, mirror)
    assert of_kind(run(candles.iloc[:19]), SWEEP_MSS) == []  # at the break bar itself: not decided yet


@pytest.mark.parametrize("mirror", [False, True])
def test_sweep_mss_falls_back_to_the_order_block(mirror):
    rows = [*rows_of(TREND), (103, 103.3, 99.8, 99.9), (99.9, 102.5, 99.5, 100.5), (100.5, 101, 99.6, 100.8)]
    candles = frame(rows, mirror)
    m = of_kind(run(candles), SWEEP_MSS)
    assert [(x.direction, x.source, x.origin_index, x.confirmed_at) for x in m] == [
        (BULL if mirror else BEAR, EntrySource.ORDER_BLOCK, 18, 20)
    ]
    assert zone_is(m[0], 106.6, 102.4, mirror)
    assert m[0].stop == px(106.6, mirror)
    assert of_kind(run(candles.iloc[:20]), SWEEP_MSS) == []  # the grace period is not over at bar 19
    assert [x.confirmed_at for x in of_kind(run(candles.iloc[:19], fvg_grace=0), SWEEP_MSS)] == [18]


@pytest.mark.parametrize("mirror", [False, True])
def test_ote_pullback_only_in_trend(mirror):
    # bearish leg 3 -> 5 (before any break: no trend, no model); bar 8 breaks 103.1 up; bullish leg 5 -> 12
    # (100.9 -> 108.1) confirmed at 14 in the bullish trend; bar 17 dips to 103.4 inside the OTE zone
    closes = [100, 101, 102, 103, 102, 101, 102, 103, 104, 105, 106, 107, 108, 107, 106, 105, 104, 103.5]
    models = of_kind(run(frame(rows_of(closes, wick=0.1), mirror)), OTE)
    assert [(m.direction, m.stop_index, m.origin_index, m.confirmed_at) for m in models] == [
        (BEAR if mirror else BULL, 5, 12, 14)
    ]
    m = models[0]
    span = 108.1 - 100.9
    assert zone_is(m, 108.1 - 0.62 * span, 108.1 - 0.79 * span, mirror)
    assert m.stop == px(100.9, mirror)
    assert (m.triggered_at, m.invalidated_at, m.source) == (17, None, EntrySource.OTE)


@pytest.mark.parametrize("mirror", [False, True])
def test_breaker_retest(mirror):
    # the breaker fixture: a bullish OB (bars 14-16, 101.4..104.6) whose rally took the 110.1 high at bar 19,
    # then failed at 23; bar 24 retests the new bearish breaker; the stop is the 111.1 high of bar 19
    closes = [106, 107, 108, 109, 110, 109, 108, 107, 106, 105, 106, 106.5, 105.5, 104.5, 103.5, 102.5, 101.5, 107]
    closes += [109, 111, 108, 105, 102, 100.5]
    rows = [*rows_of(closes, wick=0.1), (100.5, 102.0, 100.3, 101.8)]
    models = of_kind(
        detect_entry_models(frame(rows, mirror), internal_length=2, swing_length=3, ote_swing_length=2), RETEST
    )
    assert [(m.direction, m.stop_index, m.origin_index, m.confirmed_at) for m in models] == [
        (BULL if mirror else BEAR, 19, 23, 23)
    ]
    m = models[0]
    assert m.stop == px(111.1, mirror) and zone_is(m, 104.6, 101.4, mirror)
    assert (m.triggered_at, m.source) == (24, EntrySource.BREAKER)


def test_expiry_and_nothing_to_find():
    assert run(frame(rows_of([100, 101, 102, 101] * 10))) == []
    rows = [*rows_of(TREND), (103, 103.0, 99.8, 99.9)] + [(99.9, 100.0, 99.0, 99.5)] * 6
    m = of_kind(run(frame(rows), max_age=4), SWEEP_MSS)[0]
    assert (m.confirmed_at, m.triggered_at, m.invalidated_at, m.expired_at) == (18, None, None, 22)


def test_invariants_on_real_candles():
    candles = sample_candles("ETHUSDT", "1h", tail=5000)
    models = detect_entry_models(candles)
    assert {m.kind for m in models} == set(EntryModelKind)
    assert {m.direction for m in models} == {BULL, BEAR}
    for m in models:
        assert m.bottom <= m.top and m.stop_index <= m.confirmed_at
        if m.direction is BULL:
            assert m.stop <= m.bottom
        else:
            assert m.stop >= m.top
        states = [x for x in (m.triggered_at, m.invalidated_at, m.expired_at) if x is not None]
        assert all(x > m.confirmed_at for x in states)
        if m.expired_at is not None:
            assert m.triggered_at is None and m.invalidated_at is None


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal(symbol, interval):
    candles = sample_candles(symbol, interval, tail=2500)
    full = detect_entry_models(candles)
    assert len(full) > 10
    for k in cut_points(len(candles), count=8):
        assert detect_entry_models(candles.iloc[:k]) == known_at(full, k - 1)


def test_scale_invariant():
    candles = sample_candles("SOLUSDT", "1h", tail=3000)
    strip = lambda m: dataclasses.replace(m, top=0.0, bottom=0.0, stop=0.0)  # noqa: E731
    a, b = detect_entry_models(candles), detect_entry_models(scaled(candles))
    assert [strip(m) for m in a] == [strip(m) for m in b]


def test_precomputed_inputs_give_the_same_models():
    candles = sample_candles("BTCUSDT", "4h", tail=3000)
    events = detect_market_structure(candles, level="internal")
    trend = detect_market_structure(candles, level="swing")
    obs = detect_order_blocks(candles, events=events)
    given = detect_entry_models(
        candles,
        events=events,
        trend_events=trend,
        order_blocks=obs,
        breakers=detect_breaker_blocks(candles, order_blocks=obs),
        fvgs=detect_fvgs(candles),
        ote_setups=detect_ote(candles),
    )
    assert given == detect_entry_models(candles)
    assert detect_entry_models(candles, events=structure_arrays(candles, level="internal")) == given


@pytest.mark.parametrize("k", [0, 1, 2, 3, 8, 30])
def test_short_frames(k):
    frame = sample_candles("BTCUSDT", "1d", tail=40).iloc[:k]
    found = detect_entry_models(frame)
    assert isinstance(found, list) and all(x.confirmed_at < k for x in found)
