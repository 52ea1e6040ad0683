import dataclasses
import itertools

import numpy as np
import pytest

from ict_modules.core import Direction, known_at
from ict_modules.market_structure import (
    StructureKind,
    StructureLevel,
    current_trend,
    detect_market_structure,
    first_beyond,
    range_argextreme,
    sparse_table,
    trend_array,
    trend_from_events,
)
from ict_modules.swing_points import SwingKind, detect_swing_points
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

BULL, BEAR = Direction.BULLISH, Direction.BEARISH
BOS, CHOCH, MSS = StructureKind.BOS, StructureKind.CHOCH, StructureKind.MSS


def path_rows(closes, *, mirror=False, overrides=None):
    """Candles whose open is the previous close and whose wicks stick out 0.1; ``mirror`` flips prices (200 - p)."""
    rows = []
    prev = closes[0]
    for c in closes:
        o = prev
        rows.append((o, max(o, c) + 0.1, min(o, c) - 0.1, c))
        prev = c
    for i, row in (overrides or {}).items():
        rows[i] = row
    if mirror:
        rows = [(200 - o, 200 - lo, 200 - h, 200 - c) for o, h, lo, c in rows]
    return make_candles(rows)


# Up-trend (two bullish breaks), then a break of the last higher low.
# pivots (length 2): highs at 3 (103.1), 9 (105.1), 14 (106.1); lows at 5 (100.9), 11 (102.9)
TREND_THEN_CHOCH = [100, 101, 102, 103, 102, 101, 102, 103, 104, 105, 104, 103, 104, 105, 106, 105, 104, 103, 102.5]
# Same start, but a lower high at 13 (104.6) and no high taken before the low breaks at 16
LOWER_HIGH_THEN_CHOCH = [100, 101, 102, 103, 102, 101, 102, 103, 104, 105, 104, 103, 104, 104.5, 104, 103, 102.5]


def run(candles, **kw):
    return detect_market_structure(candles, level="internal", internal_length=2, **kw)


def summary(events):
    return [(e.kind, e.direction, e.swing_index, e.confirmed_at) for e in events]


@pytest.mark.parametrize("mirror", [False, True])
def test_bos_then_choch(mirror):
    up, down = (BEAR, BULL) if mirror else (BULL, BEAR)
    events = run(path_rows(TREND_THEN_CHOCH, mirror=mirror))
    # bar 8 closes 104 > 103.1 (first break: BOS); bar 14 closes 106 > 105.1 (BOS); bar 18 closes 102.5 < 102.9
    # against the trend (CHOCH). Closes above 103.1 after bar 8 do not break swing 3 again.
    assert summary(events) == [(BOS, up, 3, 8), (BOS, up, 9, 14), (CHOCH, down, 11, 18)]
    e = events[0]
    assert e.swing_price == pytest.approx(96.9 if mirror else 103.1)
    assert e.level is StructureLevel.INTERNAL
    assert e.leg_index == 5  # lowest low (highest high when mirrored) between the pivot and the break
    assert events[2].leg_index == 14
    assert events[2].sweep_index == 14  # bar 14 took the unbroken high at 9; bar 15 re-tests a broken one
    assert events[2].displacement_index is None
    trend = trend_from_events(events, 19)
    assert trend.tolist() == [0] * 8 + [up.sign] * 10 + [down.sign]
    assert current_trend(events) is down


@pytest.mark.parametrize("mirror", [False, True])
def test_choch_with_sweep_and_displacement_is_mss(mirror):
    down = BULL if mirror else BEAR
    big_drop = {18: (103, 103.1, 99.8, 99.9)}  # body 3.1 >> 1.2 ATR, wicks 0.1
    events = run(path_rows(TREND_THEN_CHOCH, mirror=mirror, overrides=big_drop))
    last = events[-1]
    assert (last.kind, last.direction, last.swing_index, last.confirmed_at) == (MSS, down, 11, 18)
    assert (last.sweep_index, last.displacement_index) == (14, 18)
    assert last.kind.is_reversal and not events[0].kind.is_reversal


@pytest.mark.parametrize("mirror", [False, True])
def test_choch_without_sweep_is_not_mss(mirror):
    up, down = (BEAR, BULL) if mirror else (BULL, BEAR)
    big_drop = {16: (103, 103.1, 99.8, 99.9)}
    events = run(path_rows(LOWER_HIGH_THEN_CHOCH, mirror=mirror, overrides=big_drop))
    assert summary(events) == [(BOS, up, 3, 8), (CHOCH, down, 11, 16)]
    assert events[1].sweep_index is None and events[1].displacement_index == 16


def test_wick_beyond_or_equal_close_is_not_a_break():
    # bar 7 wicks to 104 (above 103.1) but closes 103; bar 8 closes exactly at 103.1: still no break
    rows = {7: (102, 104, 101.9, 103), 8: (103, 103.2, 102.9, 103.1)}
    closes = [*TREND_THEN_CHOCH[:8], 103.1, 103.0, 102.5]
    assert run(path_rows(closes, overrides=rows)) == []
    # a close one tick above on bar 9 breaks it
    closes = [*TREND_THEN_CHOCH[:8], 103.1, 103.2, 102.5]
    assert summary(run(path_rows(closes, overrides=rows))) == [(BOS, BULL, 3, 9)]


def test_nothing_to_find_in_a_range():
    closes = [100, 101, 102, 101] * 10  # equal highs 102.1 and lows 99.9 never closed beyond
    assert run(path_rows(closes)) == []
    assert trend_array(path_rows(closes), level="internal", internal_length=2).tolist() == [0] * 40


def test_levels_use_their_own_pivot_length():
    candles = path_rows(TREND_THEN_CHOCH)
    internal = detect_market_structure(candles, level=StructureLevel.INTERNAL, internal_length=2)
    swing = detect_market_structure(candles, level="swing", swing_length=2)
    assert [dataclasses.replace(e, level=StructureLevel.SWING) for e in internal] == swing
    assert detect_market_structure(candles, level="swing", swing_length=10) == []


def test_range_helpers_match_brute_force():
    rng = np.random.default_rng(3)
    values = rng.normal(size=300).round(1)  # rounding makes ties
    mx, mn = sparse_table(values, maximum=True), sparse_table(values, maximum=False)
    starts = rng.integers(0, 300, 200)
    thr = rng.normal(size=200).round(1)
    for above, table in ((True, mx), (False, mn)):
        for strict in (True, False):
            got = first_beyond(table, starts, thr, above=above, strict=strict)
            for s, t, g in zip(starts, thr, got, strict=True):
                if above:
                    hits = np.flatnonzero((values[s:] > t) if strict else (values[s:] >= t))
                else:
                    hits = np.flatnonzero((values[s:] < t) if strict else (values[s:] <= t))
                assert g == (s + hits[0] if len(hits) else 300)
    lo = rng.integers(0, 250, 100)
    hi = lo + rng.integers(0, 50, 100)
    assert range_argextreme(mn, lo, hi, maximum=False).tolist() == [
        int(a + np.argmin(values[a : b + 1])) for a, b in zip(lo, hi, strict=True)
    ]
    assert range_argextreme(mx, lo, hi, maximum=True).tolist() == [
        int(a + np.argmax(values[a : b + 1])) for a, b in zip(lo, hi, strict=True)
    ]


def test_breaks_match_brute_force_on_real_candles():
    candles = sample_candles("ETHUSDT", "4h", tail=2000)
    close = candles["close"].to_numpy()
    swings = detect_swing_points(candles, left=10, right=10)
    expected = []
    for kind, beyond in ((SwingKind.HIGH, np.greater), (SwingKind.LOW, np.less)):
        pts = [p for p in swings if p.kind is kind]
        for k, p in enumerate(pts):
            end = pts[k + 1].confirmed_at if k + 1 < len(pts) else len(close) - 1
            for j in range(p.confirmed_at + 1, end + 1):
                if beyond(close[j], p.price):
                    expected.append((j, p.index))
                    break
    events = detect_market_structure(candles, level="swing")
    assert sorted(expected) == sorted((e.confirmed_at, e.swing_index) for e in events)
    # kinds follow the direction of the previous break
    for prev, e in itertools.pairwise(events):
        assert e.kind.is_reversal == (prev.direction is not e.direction)
    assert len(events) > 20


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
@pytest.mark.parametrize("level", list(StructureLevel))
def test_causal(symbol, interval, level):
    candles = sample_candles(symbol, interval, tail=3000)
    full = detect_market_structure(candles, level=level)
    full_trend = trend_from_events(full, len(candles))
    assert len(full) > 10
    for k in cut_points(len(candles)):
        part = detect_market_structure(candles.iloc[:k], level=level)
        assert part == known_at(full, k - 1)
        assert np.array_equal(trend_from_events(part, k), full_trend[:k])


def test_scale_invariant():
    candles = sample_candles("SOLUSDT", "1h", tail=3000)
    for level in StructureLevel:
        a = detect_market_structure(candles, level=level)
        b = detect_market_structure(scaled(candles), level=level)
        assert [dataclasses.replace(e, swing_price=0.0) for e in a] == [
            dataclasses.replace(e, swing_price=0.0) for e in b
        ]
        assert any(e.kind is MSS for e in a)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 8, 30])
def test_short_frames(k):
    frame = sample_candles("BTCUSDT", "1d", tail=40).iloc[:k]
    found = detect_market_structure(frame, level="internal")
    assert isinstance(found, list) and all(x.confirmed_at < k for x in found)
    assert len(trend_array(frame, level="internal")) == k


@pytest.mark.parametrize("mirror", [False, True])
def test_only_the_latest_swing_is_the_reference(mirror):
    # pivot highs 105.1 (bar 5) then a lower 104.1 (bar 9, confirmed at 11; it replaces the unbroken 105.1 as the
    # reference); pivot lows 101.9 (7) and 102.4 (11). Bar 13 closes 104.5, breaking the lower high; the close of
    # 106 at bar 15 does not break the replaced 105.1 high.
    closes = [100, 101, 102, 103, 104, 105, 103.5, 102, 103, 104, 103, 102.5, 103.5, 104.5, 105, 106]
    up = BEAR if mirror else BULL
    assert summary(run(path_rows(closes, mirror=mirror))) == [(BOS, up, 9, 13)]
