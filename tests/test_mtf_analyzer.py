import pandas as pd
import pytest

from ict_modules.core import Direction
from ict_modules.market_structure import StructureKind, detect_market_structure, trend_from_events
from ict_modules.mtf_analyzer import (
    HIGHER_TIMEFRAMES,
    INTERVAL_ORDER,
    Bias,
    analyze_mtf,
    higher_timeframes,
    timeframe_bias,
)
from tests.helpers import make_candles, sample_candles, scaled

# pivots of length 2: highs 103.1 (bar 3), 105.1 (bar 9); both broken by closes (bars 8, 14): bullish
UP = [100, 101, 102, 103, 102, 101, 102, 103, 104, 105, 104, 103, 104, 105, 106, 105]
RANGE = [100, 101, 102, 101] * 5


def frame(closes, *, mirror=False, freq="1h"):
    rows = []
    prev = closes[0]
    for c in closes:
        rows.append((prev, max(prev, c) + 0.1, min(prev, c) - 0.1, c))
        prev = c
    if mirror:
        rows = [(200 - o, 200 - lo, 200 - h, 200 - c) for o, h, lo, c in rows]
    return make_candles(rows, freq=freq)


def run(frames, tf="15m"):
    return analyze_mtf(frames, entry_timeframe=tf, internal_length=2, swing_length=2)


def test_contract_table():
    assert higher_timeframes("15m") == ("1h", "4h")
    assert higher_timeframes("1h") == ("4h", "1d")
    assert higher_timeframes("4h") == ("1d", "1w")
    assert higher_timeframes("1d") == ("1w",)
    assert set(HIGHER_TIMEFRAMES) == set(INTERVAL_ORDER)
    for tf, ups in HIGHER_TIMEFRAMES.items():  # always strictly higher, ascending
        ranks = [INTERVAL_ORDER.index(u) for u in ups]
        assert all(r > INTERVAL_ORDER.index(tf) for r in ranks) and ranks == sorted(ranks)
    with pytest.raises(ValueError, match="unknown timeframe"):
        higher_timeframes("7m")


@pytest.mark.parametrize("mirror", [False, True])
def test_all_agree(mirror):
    want = Bias.BEARISH if mirror else Bias.BULLISH
    d = Direction.BEARISH if mirror else Direction.BULLISH
    res = run({tf: frame(UP, mirror=mirror) for tf in ("15m", "1h", "4h")})
    assert res.entry.bias is want and [b.bias for b in res.higher] == [want, want]
    assert [b.timeframe for b in res.higher] == ["1h", "4h"]
    assert res.alignment == (-1.0 if mirror else 1.0)
    assert res.htf_bias is want and res.aligned
    assert res.score_for(d) == 1.0 and res.score_for(d.opposite) == -1.0
    assert res.entry.last_kind is StructureKind.BOS and res.entry.last_break_bar == 14


def test_mixed_neutral_and_ignored_frames():
    res = run({"15m": frame(UP), "1h": frame(UP, mirror=True), "4h": frame(UP), "5m": frame(UP, mirror=True)})
    assert res.alignment == pytest.approx(0.0) and res.htf_bias is Bias.NEUTRAL and not res.aligned
    assert [b.timeframe for b in res.higher] == ["1h", "4h"]  # 5m is lower than the entry: ignored
    res = run({"15m": frame(UP), "1h": frame(RANGE), "4h": frame(UP, mirror=True)})
    assert [b.bias for b in res.higher] == [Bias.NEUTRAL, Bias.BEARISH]
    assert res.alignment == -0.5 and res.score_for(Direction.BEARISH) == 0.5
    nothing = run({"15m": frame(RANGE)})
    assert nothing.entry.bias is Bias.NEUTRAL and nothing.higher == () and nothing.alignment == 0.0
    assert run({"1h": frame(UP)}).entry is None  # no entry frame given
    with pytest.raises(ValueError):
        run({}, tf="2x")


def test_swing_bias_falls_back_to_internal():
    candles = frame(UP)
    b = timeframe_bias(candles, "1h", internal_length=2, swing_length=8)  # no swing pivot of length 8 here
    assert (b.swing_trend, b.internal_trend, b.bias) == (Bias.NEUTRAL, Bias.BULLISH, Bias.BULLISH)


def test_causal_over_real_frames():
    frames = {tf: sample_candles("BTCUSDT", tf) for tf in ("1h", "4h", "1d")}
    length = {"1h": pd.Timedelta(hours=1), "4h": pd.Timedelta(hours=4), "1d": pd.Timedelta(days=1)}
    close_times = {tf: f.index + length[tf] for tf, f in frames.items()}
    trends = {tf: trend_from_events(detect_market_structure(f), len(f)) for tf, f in frames.items()}
    entry_index = frames["1h"].index
    seen = set()
    for k in (3000, 9000, 15000, len(entry_index) - 1):
        moment = entry_index[k] + length["1h"]  # close of entry bar k
        cut = {tf: f[close_times[tf] <= moment] for tf, f in frames.items()}
        res = analyze_mtf(cut, entry_timeframe="1h")
        for b in (res.entry, *res.higher):
            bars = len(cut[b.timeframe])
            assert b.swing_trend.sign == trends[b.timeframe][bars - 1]  # the full run's trend at that bar
        seen.add(res.alignment)
    assert len(seen) > 1


def test_scale_invariant():
    frames = {tf: sample_candles("SOLUSDT", tf, tail=1500) for tf in ("1h", "4h")}
    small = {tf: scaled(f) for tf, f in frames.items()}
    assert analyze_mtf(frames, entry_timeframe="1h") == analyze_mtf(small, entry_timeframe="1h")
