import dataclasses

import numpy as np
import pytest

from ict_modules.core import Direction, known_at
from ict_modules.market_structure import StructureKind, StructureLevel, detect_market_structure
from ict_modules.order_block_detector import OrderBlock, ZoneState, active_order_blocks, detect_order_blocks
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

BULL, BEAR = Direction.BULLISH, Direction.BEARISH

# pivot high 103.1 at bar 3; down-close run at 4-5 (lows 101.9, 100.9); bar 6 is a bullish displacement closing
# 104 > 103.1 (BOS); bar 9 wicks back into the zone; bar 10 wicks below its bottom 100.9 but closes above;
# bar 11 closes 100.2 below it. Bar 11 also breaks the pivot low 100.9 at bar 5 after the up-closes at 6-8 and a
# bearish displacement at 10 (an MSS: bar 6 took the high at 3): a bearish OB.
ROWS = [
    (100, 100.1, 99.9, 100),
    (100, 101.1, 99.9, 101),
    (101, 102.1, 100.9, 102),
    (102, 103.1, 101.9, 103),
    (103, 103.1, 101.9, 102),
    (102, 102.1, 100.9, 101),
    (101, 104.1, 100.9, 104),
    (104, 105.1, 103.9, 105),
    (105, 106.1, 104.9, 106),
    (106, 106.1, 102.0, 104.5),
    (104.5, 104.6, 100.5, 101.5),
    (101.5, 101.6, 100.0, 100.2),
]


def candles(rows, mirror):
    if mirror:
        rows = [(200 - o, 200 - lo, 200 - h, 200 - c) for o, h, lo, c in rows]
    return make_candles(rows)


def run(frame, **kw):
    return detect_order_blocks(frame, level="internal", internal_length=2, **kw)


def zone(top, bottom, mirror):
    return (200 - bottom, 200 - top) if mirror else (top, bottom)


def brief(b: OrderBlock):
    return (b.direction, b.start_index, b.index, round(b.top, 6), round(b.bottom, 6), b.confirmed_at)


@pytest.mark.parametrize("mirror", [False, True])
def test_bullish_block_its_states_and_the_bearish_one(mirror):
    up, down = (BEAR, BULL) if mirror else (BULL, BEAR)
    blocks = run(candles(ROWS, mirror))
    assert [brief(b) for b in blocks] == [
        (up, 4, 5, *zone(103.1, 100.9, mirror), 6),
        (down, 6, 8, *zone(106.1, 100.9, mirror), 11),
    ]
    first, second = blocks
    assert (first.mitigated_at, first.invalidated_at, first.state) == (9, 11, ZoneState.INVALIDATED)
    assert (first.break_kind, first.swing_index, first.displacement_index) == (StructureKind.BOS, 3, 6)
    assert (second.break_kind, second.displacement_index, second.state) == (StructureKind.MSS, 10, ZoneState.ACTIVE)
    assert first.mean_threshold == pytest.approx(102.0 if not mirror else 98.0)
    assert first.volume == pytest.approx(200.0) and first.relative_volume == pytest.approx(1.0)
    assert first.level is StructureLevel.INTERNAL


@pytest.mark.parametrize("mirror", [False, True])
def test_a_wick_through_the_far_edge_does_not_invalidate(mirror):
    blocks = run(candles(ROWS[:11], mirror))  # up to bar 10: wick below 100.9, close 101.5
    assert len(blocks) == 1
    assert (blocks[0].mitigated_at, blocks[0].invalidated_at, blocks[0].state) == (9, None, ZoneState.MITIGATED)
    assert active_order_blocks(blocks, 10) == blocks
    assert active_order_blocks(run(candles(ROWS, mirror)), 11)[0].confirmed_at == 11  # only the new bearish one


def test_single_candle_block_and_untouched_zone():
    blocks = run(candles(ROWS[:9], False), max_run=1)
    assert [brief(b) for b in blocks] == [(BULL, 5, 5, 102.1, 100.9, 6)]
    assert blocks[0].state is ZoneState.ACTIVE and blocks[0].mitigated_at is None


def test_displacement_is_required_unless_disabled():
    frame = candles(ROWS, False)
    assert run(frame, min_body_atr=5.0) == []
    loose = run(frame, min_body_atr=5.0, require_displacement=False)
    assert [(b.direction, b.index) for b in loose] == [(BULL, 5), (BEAR, 8)]
    assert all(b.displacement_index is None for b in loose)


def test_nothing_to_find():
    closes = [100, 101, 102, 101] * 10
    rows = []
    prev = closes[0]
    for c in closes:
        rows.append((prev, max(prev, c) + 0.1, min(prev, c) - 0.1, c))
        prev = c
    assert run(make_candles(rows)) == []


def test_invariants_on_real_candles():
    frame = sample_candles("BTCUSDT", "1h", tail=4000)
    o, h, lo, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    blocks = detect_order_blocks(frame)
    assert len(blocks) > 50 and {b.direction for b in blocks} == {BULL, BEAR}
    for b in blocks:
        body = slice(b.start_index, b.index + 1)
        assert b.bottom < b.top and b.start_index <= b.index < b.confirmed_at
        assert b.top == h[body].max() and b.bottom == lo[body].min()
        after = slice(b.confirmed_at + 1, None)
        if b.direction is BULL:
            assert (c[body] < o[body]).all()
            through = np.flatnonzero(c[after] < b.bottom)
            touched = np.flatnonzero(lo[after] <= b.top)
        else:
            assert (c[body] > o[body]).all()
            through = np.flatnonzero(c[after] > b.top)
            touched = np.flatnonzero(h[after] >= b.bottom)
        assert b.invalidated_at == (int(through[0]) + b.confirmed_at + 1 if len(through) else None)
        assert b.mitigated_at == (int(touched[0]) + b.confirmed_at + 1 if len(touched) else None)
        if b.invalidated_at is not None:
            assert b.mitigated_at <= b.invalidated_at


def test_uses_given_structure_events():
    frame = sample_candles("ETHUSDT", "4h", tail=2000)
    events = detect_market_structure(frame, level="swing")
    assert detect_order_blocks(frame, events=events) == detect_order_blocks(frame, level="swing")


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal(symbol, interval):
    frame = sample_candles(symbol, interval, tail=3000)
    for level in StructureLevel:
        full = detect_order_blocks(frame, level=level)
        assert len(full) > 10
        for k in cut_points(len(frame)):
            assert detect_order_blocks(frame.iloc[:k], level=level) == known_at(full, k - 1)


def test_scale_invariant():
    frame = sample_candles("SOLUSDT", "1h", tail=3000)
    strip = lambda b: dataclasses.replace(b, top=0.0, bottom=0.0, volume=0.0, relative_volume=0.0)  # noqa: E731
    a, b = detect_order_blocks(frame), detect_order_blocks(scaled(frame))
    assert [strip(x) for x in a] == [strip(x) for x in b]
    assert [x.relative_volume for x in a] == pytest.approx([x.relative_volume for x in b])


@pytest.mark.parametrize("k", [0, 1, 2, 3, 8, 30])
def test_short_frames(k):
    frame = sample_candles("BTCUSDT", "1d", tail=40).iloc[:k]
    found = detect_order_blocks(frame)
    assert isinstance(found, list) and all(x.confirmed_at < k for x in found)
