import dataclasses

import numpy as np
import pandas as pd
import pytest

from ict_modules.breaker_block_detector import detect_breaker_blocks
from ict_modules.core import Direction, atr, known_at
from ict_modules.fvg_detector import FVG, detect_fvgs
from ict_modules.ict_whale_detector import WhaleBlock, WhaleKind, detect_whale_blocks
from ict_modules.market_structure import StructureKind, StructureLevel
from ict_modules.order_block_detector import OrderBlock, detect_order_blocks
from ict_modules.smz_mapper import ZoneSource, detect_smz, rank_zones, strength_of
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

BULL, BEAR = Direction.BULLISH, Direction.BEARISH
OB, FV, WH = ZoneSource.ORDER_BLOCK, ZoneSource.FVG, ZoneSource.WHALE


def flip(top, bottom, mirror):
    return (200 - bottom, 200 - top) if mirror else (top, bottom)


def ob(top, bottom, at, mirror):
    t, b = flip(top, bottom, mirror)
    d = BEAR if mirror else BULL
    return OrderBlock(
        d, at - 2, at - 1, t, b, 1.0, 1.0, StructureLevel.INTERNAL, StructureKind.BOS, 0, at, at, None, None
    )


def fvg(top, bottom, at, mirror, size_atr=1.0):
    t, b = flip(top, bottom, mirror)
    return FVG(BEAR if mirror else BULL, t, b, at, at - 1, size_atr, at)


def whale(top, bottom, at, mirror):
    t, b = flip(top, bottom, mirror)
    return WhaleBlock(WhaleKind.DISPLACEMENT, BEAR if mirror else BULL, at, t, b, 3.0, 1.5, 1.6, at)


ABOVE = (105, 106, 104, 105)  # fully above the demand zones around 100-103 (range 2: ATR 2, merge cap 6)
SPECIAL = {
    12: (105, 105.5, 102.5, 104.5),  # first touch of [100, 103]
    15: (105, 105.5, 101, 104),  # second touch (bars 13-14 were fully above again)
    18: (104, 104.5, 98.5, 99),  # third touch and a close below 100: invalidated
}


def candles(mirror):
    rows = [SPECIAL.get(i, ABOVE if i < 19 else (99, 99.5, 98, 98.5)) for i in range(24)]
    if mirror:
        rows = [(200 - o, 200 - lo, 200 - h, 200 - c) for o, h, lo, c in rows]
    return make_candles(rows)


def sources(mirror):
    return {
        "order_blocks": [ob(102, 100, 5, mirror)],
        "breakers": [],
        "fvgs": [
            fvg(103, 101, 7, mirror),  # overlaps the OB by half of the smaller height: merges into [100, 103]
            fvg(111, 110, 8, mirror),  # far away: its own zone
            fvg(111.2, 111, 8, mirror, size_atr=0.1),  # below min_fvg_atr: ignored
            fvg(106, 102.8, 9, mirror),  # overlaps [100, 103] by 0.2 < 0.5 x 3: its own zone
            fvg(102.5, 100.5, 20, mirror),  # overlaps [100, 103] after it was invalidated: its own zone
        ],
        "whales": [whale(120, 109.5, 10, mirror)],  # overlaps [110, 111], but the union would be 10.5 > 6 tall
    }


@pytest.mark.parametrize("mirror", [False, True])
def test_merging_strength_and_touches(mirror):
    zones = detect_smz(candles(mirror), **sources(mirror))
    d = BEAR if mirror else BULL
    got = [(z.direction, z.sources, z.members, z.confirmed_at) for z in zones]
    assert got == [
        (d, (OB,), 1, 5),
        (d, (OB, FV), 2, 7),
        (d, (FV,), 1, 8),
        (d, (FV,), 1, 9),
        (d, (WH,), 1, 10),
        (d, (FV,), 1, 20),
    ]
    first, merged, far, thin, tall, late = zones
    assert (first.merged_at, first.invalidated_at, first.first_touch_at) == (7, None, None)
    assert (merged.top, merged.bottom) == pytest.approx(flip(103, 100, mirror))
    assert merged.strength == 50.0 and tall.strength == 25.0 and far.strength == 20.0
    assert (merged.first_touch_at, merged.second_touch_at, merged.third_touch_at) == (12, 15, 18)
    assert (merged.invalidated_at, merged.merged_at) == (18, None)
    assert (far.invalidated_at, tall.invalidated_at) == (9, 11)  # zones on the wrong side die at once
    assert thin.first_touch_at is None  # price never left it (fully above) after confirmation
    assert late.merged_at is None and late.confirmed_at == 20
    assert [merged.touches(b) for b in (11, 12, 14, 15, 18)] == [0, 1, 1, 2, 3]


@pytest.mark.parametrize("mirror", [False, True])
def test_rank_zones(mirror):
    zones = detect_smz(candles(mirror), **sources(mirror))
    merged, thin = zones[1], zones[3]
    ranked = rank_zones(zones, 13)
    assert [(r.zone, r.touches, r.fresh, r.age, r.score) for r in ranked] == [
        (merged, 1, False, 6, 37.5),
        (thin, 0, True, 4, 20.0),
    ]
    assert [r.score for r in rank_zones(zones, 16)] == [25.0, 20.0]
    assert [r.zone for r in rank_zones(zones, 6)] == [zones[0]]


def test_strength_formula_and_nothing_to_find():
    assert strength_of((OB,), 1) == 30.0
    assert strength_of((OB, FV, WH, ZoneSource.BREAKER), 4) == 100.0
    assert strength_of((FV,), 3) == 30.0
    assert detect_smz(candles(False), order_blocks=[], breakers=[], fvgs=[], whales=[]) == []
    flat = make_candles([(100, 100.5, 99.5, 100)] * 60)
    assert detect_smz(flat) == []


def test_invariants_on_real_candles():
    frame = sample_candles("BTCUSDT", "4h", tail=4000)
    zones = detect_smz(frame)
    a = atr(*(frame[k].to_numpy() for k in ("high", "low", "close")))
    assert len(zones) > 50 and {z.direction for z in zones} == {BULL, BEAR}
    assert any(z.members > 1 for z in zones) and len({z.sources for z in zones}) > 4
    for z in zones:
        assert z.bottom <= z.top and 0 < z.strength <= 100
        if z.members > 1:
            assert z.top - z.bottom <= 3.0 * a[z.confirmed_at] * (1 + 1e-9)  # merges respect the height cap
        touches = [t for t in (z.first_touch_at, z.second_touch_at, z.third_touch_at) if t is not None]
        assert touches == sorted(set(touches)) and all(t > z.confirmed_at for t in touches)
        end = min(x for x in (z.merged_at, z.invalidated_at, 10**9) if x is not None)
        assert all(t <= end for t in touches)
        assert not (z.merged_at is not None and z.invalidated_at is not None)


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal(symbol, interval):
    frame = sample_candles(symbol, interval, tail=2500)
    full = detect_smz(frame)
    assert len(full) > 20
    for k in cut_points(len(frame), count=8):
        assert detect_smz(frame.iloc[:k]) == known_at(full, k - 1)


def test_scale_invariant():
    frame = sample_candles("SOLUSDT", "1h", tail=3000)
    strip = lambda z: dataclasses.replace(z, top=0.0, bottom=0.0)  # noqa: E731
    a, b = detect_smz(frame), detect_smz(scaled(frame))
    assert [strip(z) for z in a] == [strip(z) for z in b]
    assert np.allclose([z.top for z in a], [z.top * 1e6 for z in b], rtol=1e-9)


@pytest.mark.parametrize(
    ("start", "factor"),
    [("2025-04-03 08:00", 1e-6), ("2025-04-03 08:00", 1e-8), ("2025-09-17 00:00", 1e-8)],
)
def test_scale_invariant_where_overlap_ratios_tie(start, factor):
    """Real SOLUSDT 1h windows (1,000 candles) in which a breaker and a whale block overlap by exactly half a
    height in ticks: merged at every scale (issue 14 item 9)."""
    full = sample_candles("SOLUSDT", "1h")
    frame = full[full.index >= pd.Timestamp(start, tz="UTC")].iloc[:1000]
    strip = lambda z: dataclasses.replace(z, top=0.0, bottom=0.0)  # noqa: E731
    a, b = detect_smz(frame), detect_smz(scaled(frame, factor))
    assert [strip(z) for z in a] == [strip(z) for z in b]


def test_precomputed_sources_give_the_same_zones():
    frame = sample_candles("ETHUSDT", "4h", tail=3000)
    obs = detect_order_blocks(frame)
    given = detect_smz(
        frame,
        order_blocks=obs,
        breakers=detect_breaker_blocks(frame, order_blocks=obs),
        fvgs=detect_fvgs(frame),
        whales=detect_whale_blocks(frame),
    )
    assert given == detect_smz(frame)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 8, 30])
def test_short_frames(k):
    frame = sample_candles("BTCUSDT", "1d", tail=40).iloc[:k]
    found = detect_smz(frame)
    assert isinstance(found, list) and all(x.confirmed_at < k for x in found)
