"""Block-aligned analysis windows (issue 12 item 1): the live analysis and the backtest's block API read the same
candles at every bar, wherever the data starts."""

import random

import pandas as pd
import pytest

import ict_signal_engine as eng
from engine.windows import analysis_frames, candle_numbers, first_unclosed
from market.timeframes import INTERVAL_MS, candle_open_time, interval_timedelta, window_start
from tests.helpers import sample_candles


def test_window_start_is_a_block_boundary_500_to_749_candles_back():
    for k in range(-3, 3000, 7):
        start = window_start(k)
        assert start % 250 == 0
        assert 500 <= k - start <= 749
    assert window_start(1000) == 500 and window_start(999) == 250 and window_start(1249) == 500


def test_candle_numbers_count_from_the_epoch():
    index = pd.DatetimeIndex(["1970-01-01 00:00", "1970-01-01 04:00", "2024-01-01 00:00"], tz="UTC")
    assert candle_numbers(index, "4h").tolist() == [0, 1, index[2].value // (INTERVAL_MS["4h"] * 10**6)]
    assert first_unclosed(pd.Timestamp("1970-01-01 05:00", tz="UTC"), "4h") == 1  # the 04:00 candle is open
    assert first_unclosed(pd.Timestamp("1970-01-01 08:00", tz="UTC"), "4h") == 2
    months = pd.DatetimeIndex(["1970-01-01", "1971-03-01"], tz="UTC")
    assert candle_numbers(months, "1M").tolist() == [0, 14]


def test_first_unclosed_agrees_with_the_binance_alignment():
    rng = random.Random(7)
    moments = [pd.Timestamp(rng.randrange(0, 1_800_000_000_000), unit="ms", tz="UTC") for _ in range(400)]
    moments += list(pd.date_range("2024-01-01", periods=40, freq="7D", tz="UTC"))  # aligned on every interval
    for tf in INTERVAL_MS:
        for t in moments:
            assert first_unclosed(t, tf) == candle_numbers(pd.DatetimeIndex([candle_open_time(t, tf)]), tf)[0]


class Market:
    """Serves the frames as a market-data source would: the last ``limit`` candles closed by ``end``."""

    def __init__(self, frames):
        self.frames = frames

    def klines(self, symbol, interval, limit=500, *, start=None, end=None):
        if interval not in self.frames:
            raise ValueError(f"no {interval} data")
        frame = self.frames[interval]
        frame = frame[frame.index + interval_timedelta(interval) <= end]
        return frame.iloc[-limit:] if limit else frame


def history(symbol, tf):
    return {t: sample_candles(symbol, t) for t in (tf, *eng.higher_timeframes(tf)) if t in ("1h", "4h", "1d")}


@pytest.mark.parametrize(("symbol", "tf"), [("BTCUSDT", "1h"), ("ETHUSDT", "1h"), ("BTCUSDT", "4h"), ("ETHUSDT", "4h")])
def test_the_block_api_equals_analyze_at_random_bars(symbol, tf):
    frames = history(symbol, tf)
    absent = [t for t in eng.higher_timeframes(tf) if t not in frames]
    n = len(frames[tf])
    bars = sorted(random.Random(f"{symbol}{tf}").sample(range(100, n), 10))
    bars += [bars[-1] + 1, bars[-1] + 2]  # neighbours share a detector run
    market = Market(frames)
    step = interval_timedelta(tf)
    for bar, result in eng.analyses_over(frames, symbol=symbol, timeframe=tf, bars=bars, absent=absent):
        analysis = eng.analyze(market, symbol, tf, end=frames[tf].index[bar] + step)
        assert result == analysis.result, f"{symbol} {tf} bar {bar}"
        window = analysis.frames[tf]
        if bar >= 749:  # enough history: a full block-aligned window
            assert 500 <= len(window) <= 749
            assert candle_numbers(window.index[:1], tf)[0] % 250 == 0


def test_two_data_starts_give_identical_results():
    full = history("BTCUSDT", "1h")
    later = {  # each timeframe starts later, but before any window of the bars below begins
        "1h": full["1h"][full["1h"].index >= pd.Timestamp("2024-06-01 05:00", tz="UTC")],
        "4h": full["4h"][full["4h"].index >= pd.Timestamp("2023-07-11 20:00", tz="UTC")],
        "1d": full["1d"][full["1d"].index >= pd.Timestamp("2022-05-17", tz="UTC")],
    }
    times = full["1h"].index[-2500::97]
    a = dict(eng.analyses_over(full, symbol="BTCUSDT", timeframe="1h", bars=full["1h"].index.get_indexer(times)))
    b = dict(eng.analyses_over(later, symbol="BTCUSDT", timeframe="1h", bars=later["1h"].index.get_indexer(times)))
    assert list(a.values()) == list(b.values())
    assert sum(r.direction is not None for r in a.values()) > 0  # some signals among them, not only no-trades


def test_one_detector_run_serves_a_block(monkeypatch):
    frames = history("BTCUSDT", "1h")
    calls = []
    real = eng.prepare
    monkeypatch.setattr(eng, "prepare", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    start = int(frames["1h"].index.get_indexer([pd.Timestamp("2025-06-01", tz="UTC")])[0])
    results = list(eng.analyses_over(frames, symbol="BTCUSDT", timeframe="1h", bars=range(start, start + 500)))
    assert len(results) == 500
    assert len(calls) <= 4  # 500 bars span two or three blocks of 250, plus at most one higher-timeframe move


def test_analysis_frames_cut_each_timeframe_at_its_own_boundary():
    frames = history("BTCUSDT", "1h")
    close = pd.Timestamp("2025-06-01 13:00", tz="UTC")
    windows, empty = analysis_frames(frames, "1h", close)
    assert empty == []
    for tf, window in windows.items():
        assert (window.index + interval_timedelta(tf) <= close).all()
        assert candle_numbers(window.index[:1], tf)[0] == window_start(first_unclosed(close, tf))
