import dataclasses

import pytest

from ict_modules.breaker_block_detector import BlockKind, detect_breaker_blocks
from ict_modules.core import Direction, known_at
from ict_modules.market_structure import Pivots
from ict_modules.order_block_detector import ZoneState, detect_order_blocks
from ict_modules.swing_points import detect_swing_points
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

BULL, BEAR = Direction.BULLISH, Direction.BEARISH

# Major high 110.1 at bar 4 (a pivot of length 3); an internal lower high 106.6 at bar 11 (length 2 only);
# down-closes 12-16 (bullish OB = bars 14-16, zone 101.4..104.6); bar 17 is a bullish displacement closing above
# 106.6; the rally tops at bar 19; bar 23 closes 100.5 below the OB: it fails.
# FAILURE_SWING: the rally tops at 108.1 < 110.1 (no buy-side taken): a bearish MITIGATION block.
# SWEEP: the rally reaches 111.1 at bar 19, above 110.1: a bearish BREAKER.
COMMON = [106, 107, 108, 109, 110, 109, 108, 107, 106, 105, 106, 106.5, 105.5, 104.5, 103.5, 102.5, 101.5, 107]
FAILURE_SWING = [*COMMON, 107.5, 108, 106, 104, 102, 100.5]
SWEEP = [*COMMON, 109, 111, 108, 105, 102, 100.5]
# after the failure: bar 24 trades back up into the block, bar 25 wicks above its top, bar 26 closes above it
RETEST = [(100.5, 102.0, 100.3, 101.8), (101.8, 105.0, 101.5, 103.0), (103.0, 105.5, 102.8, 105.2)]


def frame(closes, *, extra=(), mirror=False):
    rows = []
    prev = closes[0]
    for c in closes:
        rows.append((prev, max(prev, c) + 0.1, min(prev, c) - 0.1, c))
        prev = c
    rows += list(extra)
    if mirror:
        rows = [(200 - o, 200 - lo, 200 - h, 200 - c) for o, h, lo, c in rows]
    return make_candles(rows)


def run(candles):
    return detect_breaker_blocks(candles, level="internal", internal_length=2, swing_length=3)


def zone(top, bottom, mirror):
    return (200 - bottom, 200 - top) if mirror else (top, bottom)


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize(
    "closes,kind,sweep",
    [(FAILURE_SWING, BlockKind.MITIGATION, None), (SWEEP, BlockKind.BREAKER, (19, 110.1))],
)
def test_failed_order_block_flips(closes, kind, sweep, mirror):
    new = BULL if mirror else BEAR
    blocks = run(frame(closes, mirror=mirror))
    assert len(blocks) == 1
    b = blocks[0]
    assert (b.kind, b.direction, b.confirmed_at) == (kind, new, 23)
    assert (b.top, b.bottom) == pytest.approx(zone(104.6, 101.4, mirror))
    assert (b.origin_start_index, b.origin_index, b.origin_confirmation) == (14, 16, 17)
    if sweep is None:
        assert b.sweep_index is None and b.swept_price is None
    else:
        assert b.sweep_index == sweep[0]
        assert b.swept_price == pytest.approx(200 - 110.1 if mirror else 110.1)
    assert b.state is ZoneState.ACTIVE


@pytest.mark.parametrize("mirror", [False, True])
def test_breaker_states_wick_vs_close(mirror):
    wick_only = run(frame(SWEEP, extra=RETEST[:2], mirror=mirror))[0]
    assert (wick_only.mitigated_at, wick_only.invalidated_at, wick_only.state) == (24, None, ZoneState.MITIGATED)
    closed = run(frame(SWEEP, extra=RETEST, mirror=mirror))[0]
    assert (closed.mitigated_at, closed.invalidated_at, closed.state) == (24, 26, ZoneState.INVALIDATED)


def test_no_failed_order_block_no_breaker():
    assert run(frame(SWEEP[:23])) == []  # the OB exists but has not failed yet
    assert len(detect_order_blocks(frame(SWEEP[:23]), level="internal", internal_length=2)) == 1
    assert run(frame([100, 101, 102, 101] * 10)) == []


def test_matches_its_order_blocks_on_real_candles():
    candles = sample_candles("ETHUSDT", "1h", tail=4000)
    high, low = candles["high"].to_numpy(), candles["low"].to_numpy()
    obs = detect_order_blocks(candles)
    blocks = detect_breaker_blocks(candles, order_blocks=obs)
    failed = {(b.index, b.invalidated_at): b for b in obs if b.invalidated_at is not None}
    assert len(blocks) == len(failed) > 20
    assert {b.kind for b in blocks} == set(BlockKind)
    for b in blocks:
        ob = failed[(b.origin_index, b.confirmed_at)]
        assert b.direction is ob.direction.opposite and (b.top, b.bottom) == (ob.top, ob.bottom)
        if b.kind is BlockKind.BREAKER:
            beyond = high if ob.direction is BULL else low
            assert ob.index < b.sweep_index < b.confirmed_at
            assert (beyond[b.sweep_index] > b.swept_price) == (ob.direction is BULL)
    assert detect_breaker_blocks(candles) == blocks


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal(symbol, interval):
    candles = sample_candles(symbol, interval, tail=3000)
    full = detect_breaker_blocks(candles)
    assert len(full) > 10
    for k in cut_points(len(candles)):
        assert detect_breaker_blocks(candles.iloc[:k]) == known_at(full, k - 1)


def test_scale_invariant():
    candles = sample_candles("SOLUSDT", "1h", tail=3000)
    strip = lambda b: dataclasses.replace(b, top=0, bottom=0, swept_price=b.swept_price and 1)  # noqa: E731
    assert [strip(b) for b in detect_breaker_blocks(candles)] == [
        strip(b) for b in detect_breaker_blocks(scaled(candles))
    ]


def test_given_swings_as_objects_or_pivots():
    candles = sample_candles("BTCUSDT", "4h", tail=3000)
    objects = detect_swing_points(candles, left=10, right=10)
    want = detect_breaker_blocks(candles)
    assert detect_breaker_blocks(candles, swings=objects) == want
    assert detect_breaker_blocks(candles, swings=Pivots.of(candles, 10)) == want


@pytest.mark.parametrize("k", [0, 1, 2, 3, 8, 30])
def test_short_frames(k):
    frame = sample_candles("BTCUSDT", "1d", tail=40).iloc[:k]
    found = detect_breaker_blocks(frame)
    assert isinstance(found, list) and all(x.confirmed_at < k for x in found)
