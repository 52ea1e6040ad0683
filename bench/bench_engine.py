"""Benchmark of the signal engine and the chart on the bundled real candles (nothing here asserts a time).

    .venv/bin/python bench/bench_engine.py [--signals 200] [--charts 30]

1. Analysis latency per signal, the way the bot runs it: ``generate_signal`` over the block-aligned windows
   ``analyze`` reads (500-749 closed candles of the entry timeframe and of each higher timeframe, fetched
   beforehand from the sample source, not timed), at many bars spread over the data; p50 / p95 / max in ms.
   Target: p50 < 50 ms.
2. The backtest path: ``analyses_over`` (one ``prepare`` per block of 250 bars, ``signal_at`` per bar) over one
   year of BTCUSDT 1h; ms per bar and the number of detector runs.
3. Chart render time (``render_signal_chart`` to PNG bytes); p50 / p95. Target: < 500 ms.
4. /signal's work (klines through the candle cache + ``analyze`` through the analysis cache + the chart) against
   the local fake Binance (real HTTP): cold (empty caches), the first request after a candle closes (one small
   klines request per frame that has a new candle) and a repeated request within the candle (a cache hit); p50s
   side by side, with the load average.
Ends with machine-readable lines: ``RESULT name=<...> p50_ms=<...> p95_ms=<...>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ict_signal_engine as eng  # noqa: E402
from chat.charts import render_signal_chart  # noqa: E402
from engine.analysis_cache import AnalysisCache  # noqa: E402
from engine.signal_model import Signal  # noqa: E402
from engine.windows import WINDOW_FETCH, analysis_frames  # noqa: E402
from market.binance_client import BinanceClient  # noqa: E402
from market.candle_cache import CandleCache  # noqa: E402
from market.sample_source import SampleSource  # noqa: E402
from market.timeframes import interval_timedelta  # noqa: E402
from tests.fake_binance import FakeBinance  # noqa: E402

SERIES = [("BTCUSDT", "1h"), ("ETHUSDT", "4h"), ("SOLUSDT", "1h"), ("BTCUSDT", "15m")]
CLOCK = pd.Timestamp("2026-04-15 12:00", tz="UTC")  # inside every bundled series


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def ends_for(market: SampleSource, symbol: str, tf: str, count: int) -> list[pd.Timestamp]:
    """``count`` analysis moments spread over the series, each with 500 entry candles and HTF history before it."""
    full = market.klines(symbol, tf, None, start=pd.Timestamp("2000-01-01", tz="UTC"))
    closes = full.index + (full.index[1] - full.index[0])
    picks = np.linspace(600, len(closes) - 1, count).astype(int)
    return [closes[i] for i in picks]


def bench_analysis(market: SampleSource, count: int) -> tuple[list[float], list[eng.Analysis]]:
    times: list[float] = []
    keep: list[eng.Analysis] = []
    per_series = max(1, count // len(SERIES))
    for symbol, tf in SERIES:
        signals = 0
        for end in ends_for(market, symbol, tf, per_series):
            frames = {tf: market.klines(symbol, tf, WINDOW_FETCH, end=end)}
            for htf in eng.higher_timeframes(tf):
                try:
                    frames[htf] = market.klines(symbol, htf, WINDOW_FETCH, end=end)
                except Exception:  # a higher timeframe the sample lacks at that time
                    continue
            frames, _ = analysis_frames(frames, tf, frames[tf].index[-1] + interval_timedelta(tf))
            start = time.perf_counter()
            result, snap, prep = eng.evaluate(frames, symbol=symbol, timeframe=tf)
            times.append((time.perf_counter() - start) * 1000)
            signals += isinstance(result, Signal)
            if len(keep) < 40:
                keep.append(eng.Analysis(symbol, tf, result, dict(prep.frames), snap, snap.structure.marks))
        print(f"  {symbol} {tf}: {per_series} analyses, {signals} signals")
    return times, keep


def bench_backtest_path(symbol: str = "BTCUSDT", tf: str = "1h", bars: int = 8760) -> tuple[float, int, int]:
    """``analyses_over`` the last ``bars`` bars; returns (total seconds, detector runs, signals)."""
    from tests.helpers import sample_candles

    frames = {t: sample_candles(symbol, t) for t in (tf, *eng.higher_timeframes(tf))}
    n = len(frames[tf])
    runs = []
    real = eng.prepare

    def counted(*args, **kwargs):
        runs.append(1)
        return real(*args, **kwargs)

    eng.prepare = counted  # count the detector runs (a bench, not product code)
    try:
        start = time.perf_counter()
        results = list(eng.analyses_over(frames, symbol=symbol, timeframe=tf, bars=range(n - bars, n)))
        seconds = time.perf_counter() - start
    finally:
        eng.prepare = real
    return seconds, len(runs), sum(isinstance(r, Signal) for _, r in results)


def signal_work(market: CandleCache, cache: AnalysisCache, symbol: str) -> float:
    """Milliseconds for what /signal computes: the analysis (and its klines) and the chart, through the caches."""
    start = time.perf_counter()
    analysis = eng.analyze(market, symbol, "1h", cache=cache)
    png = cache.chart(analysis, render_signal_chart, tz="UTC")
    assert png[:4] == b"\x89PNG"
    return (time.perf_counter() - start) * 1000


def bench_signal_cache(trials: int) -> dict[str, list[float]]:
    """Cold, first after a candle close, and repeated within the candle, ``trials`` times each (BTC/ETH/SOL 1h)."""
    times: dict[str, list[float]] = {"cold": [], "after_close": [], "repeated": []}
    with FakeBinance(now=CLOCK) as fake:
        client = BinanceClient(fake.url, clock=lambda: fake.now.timestamp())
        for i in range(trials):
            symbol = ("BTCUSDT", "ETHUSDT", "SOLUSDT")[i % 3]
            fake.now = CLOCK + pd.Timedelta(hours=2 * i, minutes=5)
            market, cache = CandleCache(client), AnalysisCache()
            times["cold"].append(signal_work(market, cache, symbol))
            fake.now += pd.Timedelta(hours=1)
            times["after_close"].append(signal_work(market, cache, symbol))
            fake.now += pd.Timedelta(minutes=5)  # (within the client's 10-minute clock resync)
            times["repeated"].append(signal_work(market, cache, symbol))
        client.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=200)
    parser.add_argument("--charts", type=int, default=30)
    parser.add_argument("--cache-trials", type=int, default=15)
    args = parser.parse_args()
    market = SampleSource(ROOT / "data" / "sample", clock=lambda: CLOCK)

    print(f"1. analysis latency (entry TF + HTFs, 500 candles each), {args.signals} analyses")
    eng.generate_signal(  # warm-up: imports, numpy/pandas first-call costs
        {"1h": market.klines("BTCUSDT", "1h", 500)}, symbol="BTCUSDT", timeframe="1h"
    )
    times, analyses = bench_analysis(market, args.signals)
    print(f"   p50 {pct(times, 50):.1f} ms  p95 {pct(times, 95):.1f} ms  max {max(times):.1f} ms")

    print("2. backtest path: analyses_over one year of BTCUSDT 1h (8760 bars)")
    seconds, runs, signals = bench_backtest_path()
    per_bar_ms = seconds * 1000 / 8760
    print(f"   {seconds:.1f} s, {per_bar_ms:.2f} ms/bar, {runs} detector runs, {signals} signals")

    print(f"3. chart render, {args.charts} charts")
    chart_times = []
    for i in range(args.charts):
        analysis = analyses[i % len(analyses)]
        start = time.perf_counter()
        png = render_signal_chart(analysis)
        chart_times.append((time.perf_counter() - start) * 1000)
        assert png[:4] == b"\x89PNG"
    mean = statistics.mean(chart_times)
    print(f"   p50 {pct(chart_times, 50):.0f} ms  p95 {pct(chart_times, 95):.0f} ms  mean {mean:.0f} ms")

    print(f"4. /signal work (klines + analyze + chart) through the caches, {args.cache_trials} trials each")
    cached = bench_signal_cache(args.cache_trials)
    p50 = {name: pct(values, 50) for name, values in cached.items()}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"   p50 cold {p50['cold']:.1f} ms | first after a close {p50['after_close']:.1f} ms | "
        f"repeated within the candle {p50['repeated']:.3f} ms (load average {load})"
    )

    print(f"RESULT name=analysis p50_ms={pct(times, 50):.1f} p95_ms={pct(times, 95):.1f}")
    print(f"RESULT name=backtest_year_per_bar ms={per_bar_ms:.2f} detector_runs={runs}")
    print(f"RESULT name=chart p50_ms={pct(chart_times, 50):.0f} p95_ms={pct(chart_times, 95):.0f}")
    print(
        f"RESULT name=signal_cached cold_p50_ms={p50['cold']:.1f} after_close_p50_ms={p50['after_close']:.1f} "
        f"repeated_p50_ms={p50['repeated']:.3f}"
    )


if __name__ == "__main__":
    main()
