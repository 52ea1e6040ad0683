import math

import numpy as np
import pytest

from ict_modules.core import Direction, known_at
from ict_modules.ict_whale_detector import WhaleKind, detect_whale_blocks, volume_zscore
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

# 60 quiet bars, ATR about 2, volume alternating 90/110 (mean 100, std 10 in log terms about 0.1)
QUIET = [(100.0, 101.0, 99.0, 100.0, 90.0 if k % 2 else 110.0) for k in range(60)]


def mirror(rows):
    """Reflect prices around 100 (p -> 200 - p), volume unchanged: a bullish fixture becomes bearish."""
    return [(200 - o, 200 - lo, 200 - h, 200 - c, v) for o, h, lo, c, v in rows]


BULL_DISPLACEMENT = [
    *QUIET,
    (100.0, 104.2, 99.8, 104.0, 1000.0),  # 60: body 4 = 2 ATR, 10x volume
    (104.6, 106.0, 104.5, 105.5, 100.0),  # 61: entirely above the block's high 104.2: left
    (105.5, 105.8, 104.0, 104.5, 100.0),  # 62: back into the block (104.0 <= 104.2): mitigated
    (104.5, 104.6, 99.0, 99.5, 100.0),  # 63: close 99.5 < block low 99.8: invalidated
]


def test_bullish_displacement_whale_and_states():
    (w,) = detect_whale_blocks(make_candles(BULL_DISPLACEMENT))
    assert (w.kind, w.direction, w.index, w.confirmed_at) == (WhaleKind.DISPLACEMENT, Direction.BULLISH, 60, 60)
    assert (w.bottom, w.top) == (99.8, 104.2)
    assert w.volume_z > 10 and w.body_atr > 1.5
    assert (w.left_at, w.mitigated_at, w.invalidated_at) == (61, 62, 63)


def test_bearish_displacement_whale_is_the_mirror():
    (w,) = detect_whale_blocks(make_candles(mirror(BULL_DISPLACEMENT)))
    assert (w.kind, w.direction, w.index) == (WhaleKind.DISPLACEMENT, Direction.BEARISH, 60)
    assert (w.bottom, w.top) == pytest.approx((95.8, 100.2))
    assert (w.left_at, w.mitigated_at, w.invalidated_at) == (61, 62, 63)


@pytest.mark.parametrize(
    "bar,direction",
    [
        ((100.0, 100.4, 99.0, 100.2, 1000.0), Direction.BULLISH),  # long lower wick: selling absorbed
        ((100.0, 101.0, 99.6, 99.8, 1000.0), Direction.BEARISH),  # long upper wick: buying absorbed
    ],
)
def test_absorption(bar, direction):
    (w,) = detect_whale_blocks(make_candles([*QUIET, bar]))
    assert (w.kind, w.direction, w.index) == (WhaleKind.ABSORPTION, direction, 60)
    assert w.range_atr <= 0.75


def test_nothing_to_find():
    assert detect_whale_blocks(make_candles(QUIET)) == []
    assert detect_whale_blocks(make_candles(QUIET).iloc[:0]) == []
    # a big candle on ordinary volume is no whale
    assert detect_whale_blocks(make_candles([*QUIET, (100.0, 104.2, 99.8, 104.0, 110.0)])) == []
    # huge volume on a medium candle (neither a big body nor a small range) is no whale either
    assert detect_whale_blocks(make_candles([*QUIET, (100.0, 102.5, 99.5, 101.0, 1000.0)])) == []
    # huge volume, small range, equal wicks: no side
    assert detect_whale_blocks(make_candles([*QUIET, (100.0, 100.5, 99.5, 100.0, 1000.0)])) == []
    # not enough history for a volume baseline
    assert detect_whale_blocks(make_candles([*QUIET[:30], (100.0, 104.2, 99.8, 104.0, 1000.0)])) == []


def test_volume_zscore_uses_past_bars_only():
    v = np.array([90.0, 110.0] * 30 + [1000.0, 1000.0])
    z = volume_zscore(v, window=50)
    assert np.isnan(z[:50]).all() and not np.isnan(z[50:]).any()
    base = np.log(v[10:60])
    assert z[60] == pytest.approx((math.log(1000) - base.mean()) / base.std())
    assert z[61] < z[60]  # the first spike is in the second one's baseline
    assert volume_zscore(v * 1e6, window=50)[60:] == pytest.approx(z[60:])
    # a constant baseline: any larger volume is infinitely abnormal, an equal one has no score
    assert volume_zscore(np.array([5.0] * 10 + [6.0]), window=10)[10] == math.inf
    assert np.isnan(volume_zscore(np.array([5.0] * 11), window=10)[10])
    assert np.isnan(volume_zscore(np.array([5.0] * 60 + [0.0]), window=10)[60])  # zero volume: no score


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal_on_real_candles(symbol, interval):
    candles = sample_candles(symbol, interval, tail=3000)
    full = detect_whale_blocks(candles)
    assert {w.direction for w in full} == {Direction.BULLISH, Direction.BEARISH}
    assert all(w.volume_z >= 2.0 for w in full)
    for k in cut_points(len(candles)):
        assert detect_whale_blocks(candles.iloc[:k]) == known_at(full, k - 1)


def test_scale_invariance():
    candles = sample_candles("SOLUSDT", "1h", tail=3000)

    def key(found):
        return [(w.kind, w.direction, w.index, w.left_at, w.mitigated_at, w.invalidated_at) for w in found]

    base = detect_whale_blocks(candles)
    assert {w.kind for w in base} == {WhaleKind.DISPLACEMENT, WhaleKind.ABSORPTION}
    assert key(base) == key(detect_whale_blocks(scaled(candles)))
