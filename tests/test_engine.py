"""The engine on real candles: causality, the prepare/signal_at fast path, determinism, scale, ML enhancement."""

import dataclasses
import math

import pandas as pd
import pytest

import ict_signal_engine as eng
from engine.signal_model import NoTrade, Signal
from engine.windows import WINDOW_FETCH, analysis_frames
from market.timeframes import interval_timedelta
from tests.helpers import sample_candles, scaled

# (symbol, entry timeframe, its higher timeframes available in data/sample)
SERIES = [
    ("BTCUSDT", "1h", ("4h", "1d")),
    ("ETHUSDT", "4h", ("1d",)),
    ("SOLUSDT", "1h", ("4h",)),
]


def real_frames(symbol, tf, htfs, n=700):
    entry = sample_candles(symbol, tf, tail=n)
    frames = {tf: entry}
    for h in htfs:
        frame = sample_candles(symbol, h)
        frames[h] = frame[frame.index <= entry.index[-1]]
    return frames


def cut(frames, tf, k):
    """The frames as they were at the close of entry bar k: entry candles[:k+1]; HTFs cut by the engine itself."""
    return {t: (f.iloc[: k + 1] if t == tf else f) for t, f in frames.items()}


@pytest.mark.parametrize(("symbol", "tf", "htfs"), SERIES)
def test_signal_at_bar_k_never_changes_when_candles_are_appended(symbol, tf, htfs):
    frames = real_frames(symbol, tf, htfs)
    prep = eng.prepare(frames, timeframe=tf)
    n = len(frames[tf])
    seen = {"signal": 0, "no_trade": 0}
    for k in range(n - 1, 350, -23):
        prefix = eng.generate_signal(cut(frames, tf, k), symbol=symbol, timeframe=tf)
        fast, _ = eng.signal_at(prep, k, symbol=symbol)
        assert prefix == fast, f"{symbol} {tf} bar {k}"
        # a longer prefix (later candles appended) gives the same answer at bar k
        longer = eng.prepare(cut(frames, tf, min(n - 1, k + 40)), timeframe=tf)
        assert eng.signal_at(longer, k, symbol=symbol)[0] == prefix
        seen["signal" if isinstance(prefix, Signal) else "no_trade"] += 1
    assert seen["no_trade"] > 0


def test_real_data_produces_valid_long_and_short_signals():
    frames = real_frames("BTCUSDT", "1h", ("4h", "1d"), n=3000)
    prep = eng.prepare(frames, timeframe="1h")
    directions = set()
    for k in range(500, 3000, 7):
        result, _ = eng.signal_at(prep, k, symbol="BTCUSDT")
        if isinstance(result, Signal):
            directions.add(result.direction)
            features = dict(result.features)
            assert tuple(features) == eng.FEATURES
            assert all(math.isfinite(v) for v in features.values())
            assert 0 <= result.rule_confidence <= 100
            assert result.r_multiples[0] >= 1.5
            assert result.time == (frames["1h"].index[k] + pd.Timedelta(hours=1)).to_pydatetime()
        else:
            assert result.reasons
    assert len(directions) == 2


def test_deterministic_and_scale_invariant():
    frames = real_frames("BTCUSDT", "1h", ("4h", "1d"), n=500)
    a = eng.generate_signal(frames, symbol="BTCUSDT", timeframe="1h")
    b = eng.generate_signal(frames, symbol="BTCUSDT", timeframe="1h")
    assert a == b
    tiny = eng.generate_signal({t: scaled(f) for t, f in frames.items()}, symbol="BTCUSDT", timeframe="1h")
    assert type(tiny) is type(a)
    if isinstance(a, Signal):
        assert tiny.entry == pytest.approx(a.entry * 1e-6)
        assert tiny.r_multiples == pytest.approx(a.r_multiples, abs=0.011)
        assert tiny.rule_confidence == pytest.approx(a.rule_confidence)
    else:
        assert tiny.reasons[0].split(":")[0] == a.reasons[0].split(":")[0]


def test_htf_candles_closing_after_the_entry_candle_are_ignored():
    frames = real_frames("BTCUSDT", "1h", ("4h", "1d"), n=500)
    prep = eng.prepare(frames, timeframe="1h")
    last_close = frames["1h"].index[-1] + pd.Timedelta(hours=1)
    assert (prep.frames["4h"].index + pd.Timedelta(hours=4) <= last_close).all()
    assert (prep.frames["1d"].index + pd.Timedelta(days=1) <= last_close).all()


def test_bad_frames_raise_value_error():
    with pytest.raises(ValueError, match="entry timeframe"):
        eng.generate_signal({"4h": sample_candles("BTCUSDT", "4h", tail=50)}, symbol="BTCUSDT", timeframe="1h")


class FakeMarket:
    def __init__(self, frames):
        self.frames = frames
        self.calls = []

    def klines(self, symbol, interval, limit=500, *, start=None, end=None):
        self.calls.append((symbol, interval, limit, end))
        if interval not in self.frames:
            raise ValueError(f"no {interval} data")
        frame = self.frames[interval]
        if end is not None:
            frame = frame[frame.index + interval_timedelta(interval) <= end]
        return frame.iloc[-limit:]


class FakePredictor:
    active = True

    def __init__(self, p):
        self.p = p
        self.seen = None

    def predict(self, features):
        self.seen = features
        return self.p


def test_analyze_fetches_htfs_and_applies_the_predictor():
    frames = real_frames("BTCUSDT", "1h", ("4h", "1d"), n=3000)
    market = FakeMarket(frames)
    predictor = FakePredictor(0.8)
    prep = eng.prepare(frames, timeframe="1h")
    k = next(k for k in range(2999, 2000, -1) if isinstance(eng.signal_at(prep, k, symbol="BTCUSDT")[0], Signal))
    end = frames["1h"].index[k] + pd.Timedelta(hours=1)
    analysis = eng.analyze(market, "BTCUSDT", "1h", end=end, predictor=predictor)
    assert [c[1] for c in market.calls] == ["1h", "4h", "1d"]
    assert all(c[2] == WINDOW_FETCH and c[3] == end for c in market.calls)  # enough for any block-aligned window
    result = analysis.result
    assert isinstance(result, Signal)
    assert result.time == end.to_pydatetime()
    assert result.ml_probability == 0.8 and predictor.seen == dict(result.features)
    assert result.confidence == pytest.approx(round(0.6 * result.rule_confidence + 32.0, 1))
    assert dataclasses.replace(result, ml_probability=None) == eng.generate_signal(
        analysis_frames(frames, "1h", end)[0], symbol="BTCUSDT", timeframe="1h"
    )


def test_analyze_skips_a_higher_timeframe_the_source_lacks():
    frames = real_frames("SOLUSDT", "1h", ("4h",), n=600)
    analysis = eng.analyze(FakeMarket(frames), "SOLUSDT", "1h")
    assert "1d candles" in analysis.result.unavailable
    assert [tf for tf, _ in analysis.result.bias] == ["1h", "4h"]
    assert isinstance(analysis.result, Signal | NoTrade)


@pytest.mark.parametrize(("symbol", "tf", "htfs"), SERIES)
def test_htf_bias_matches_mtf_analyzer(symbol, tf, htfs):
    from ict_modules.mtf_analyzer import analyze_mtf

    frames = real_frames(symbol, tf, htfs, n=500)
    for k in (499, 430, 377):
        prep = eng.prepare(cut(frames, tf, k), timeframe=tf)
        mtf = analyze_mtf(prep.frames, entry_timeframe=tf)
        result, _ = eng.signal_at(prep, -1, symbol=symbol)
        assert dict(result.bias[1:]) == {b.timeframe: b.bias.value for b in mtf.higher}


def test_engine_signals_cannot_be_broken_afterwards():
    frames = real_frames("BTCUSDT", "1h", ("4h", "1d"), n=3000)
    prep = eng.prepare(frames, timeframe="1h")
    signal = next(
        r for k in range(2999, 2000, -1) if isinstance(r := eng.signal_at(prep, k, symbol="BTCUSDT")[0], Signal)
    )
    s = signal.direction.sign
    for broken in (
        {"sl": signal.entry + s * signal.risk},  # stop on the wrong side
        {"tp2": signal.tp1 - s * 1e-6 * signal.entry},  # targets out of order
        {"tp3": math.nan},
        {"rule_confidence": 101.0},
        {"features": (("risk_atr", math.inf),)},
    ):
        with pytest.raises(ValueError):
            dataclasses.replace(signal, **broken)
    assert all(len(repr(v)) < 20 for v in (signal.entry, signal.sl, signal.tp1, signal.tp2, signal.tp3))


def test_a_real_detector_that_raises_is_skipped_and_named(monkeypatch, caplog):
    import engine.registry

    def explode(*args, **kwargs):
        raise ZeroDivisionError("boom")

    registry = tuple(dataclasses.replace(s, detect=explode) if s.name == "fvg" else s for s in eng.REGISTRY)
    monkeypatch.setattr(engine.registry, "REGISTRY", registry)  # the registry holds function references
    frames = real_frames("BTCUSDT", "1h", ("4h", "1d"), n=500)
    result = eng.generate_signal(frames, symbol="BTCUSDT", timeframe="1h")
    assert "fvg" in result.unavailable
    assert "detector fvg failed" in caplog.text and "boom" in caplog.text
    assert result.bias[0][0] == "1h"  # the rest of the pipeline ran
