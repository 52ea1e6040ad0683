"""Tracking benchmarks (not tests): monitor cost per tick with 1,000 open positions, and a 50 x 2 watchlist scan.

    .venv/bin/python bench/bench_tracking.py [--positions 1000] [--symbols 50] [--skip-scan] [--skip-monitor]

1. Monitor: 1,000 positions spread over 10 symbols of real 1m candles (the bundled BTCUSDT 1m series, copied at
   10 price levels), followed by ``real_time_monitor.monitor_tick`` on the sample source (no network).
   Reported: a catch-up tick (60 minutes of candles since the last check) and steady ticks (one new minute
   each), wall time per tick and per position, and the SQLite file size.
2. Scan: ``scanner.run_scan`` against the local Binance-shaped server (``tests/fake_binance.py``) in a CHILD
   process with ``--latency`` (default 100 ms) added to every answer, like the round trip to Binance. 50 symbols x
   (1h, 4h) by default, and with ``--large`` 500 symbols x (15m, 1h, 4h, 1d); each serial (one request at a time)
   and concurrent (``market.prefetch``, 6 in flight), on a fresh client and fresh stores. Symbol i is the bundled
   BTC or ETH candles as of ``i % 80`` days earlier, shifted to now and scaled by its own factor (real shapes,
   varied market states and price levels);
   MIN_CONFIDENCE is 50 so that signals are also tracked, charted and broadcast.
   Reported: wall time, HTTP requests counted by the server, request weight per clock minute (the server restarts
   its counter every minute, as Binance does), signals. Scans are timed WITHOUT tracemalloc (it slows the scan
   about 3x); the peak memory of the 50 x 2 scan comes from a separate, traced run. ``--fetch-only``: the same
   scans make the engine's requests (entry and higher timeframes) and analyse nothing: the network's share.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from config import Settings  # noqa: E402
from engine.signal_model import Signal, TradeDirection  # noqa: E402
from market.sample_source import SampleSource  # noqa: E402
from position_manager import PositionStore  # noqa: E402
from real_time_monitor import monitor_tick  # noqa: E402
from store.journal import Journal  # noqa: E402
from tracking.state import Position  # noqa: E402

MONITOR_AT = pd.Timestamp("2025-07-10 12:00", tz="UTC")  # inside the bundled BTCUSDT 1m data
MONITOR_SYMBOLS = 10  # BTCUSDT and 9 copies of its 1m candles at other price levels
MIN_CONFIDENCE = 50  # below the default 60 so that the scan also tracks, renders charts and enqueues broadcasts
SCAN_AT = "2026-04-10 12:00:30"  # inside the bundled BTC/ETH 15m, 1h and 4h data
FETCH_ONLY_LIMIT = 749  # candles per request of --fetch-only (the engine's largest window; weight 5 like 500)


def bench_monitor(n_positions: int, steady_ticks: int = 10) -> None:
    clock = {"now": MONITOR_AT}
    btc = SampleSource(ROOT / "data" / "sample", clock=lambda: clock["now"])
    one_minute = btc.series("BTCUSDT", "1m").candles
    window = one_minute[
        (one_minute.index >= MONITOR_AT - pd.Timedelta(hours=3))
        & (one_minute.index < MONITOR_AT + pd.Timedelta(hours=1))
    ]
    frames = {}
    for k in range(MONITOR_SYMBOLS):
        f = window.copy()
        f[["open", "high", "low", "close"]] *= 10.0 ** (k % 5 - 2) * (1 + k / 10)
        frames[(f"M{k}USDT", "1m")] = f
    market = SampleSource(frames=frames, clock=lambda: clock["now"])
    start = MONITOR_AT - pd.Timedelta(minutes=60)
    symbols = sorted(s for s, _ in frames)
    prices = {s: float(market.klines(s, "1m", 1, end=start)["close"].iloc[-1]) for s in symbols}
    with tempfile.TemporaryDirectory() as tmp:
        store = PositionStore(Path(tmp) / "positions.db")
        journal = Journal(Path(tmp))
        for i in range(n_positions):
            symbol = symbols[i % len(symbols)]
            p0 = prices[symbol]
            long = i % 4 < 2
            d = TradeDirection.LONG if long else TradeDirection.SHORT
            s = d.sign
            width = 0.002 + 0.02 * (i % 10) / 10  # stops 0.2%..2.2% away: most stay open, some close
            sig = Signal(
                symbol=symbol,
                timeframe="1h",
                direction=d,
                entry=p0,
                entry_low=p0 * (1 - 0.0005 * (i % 3)),
                entry_high=p0 * (1 + 0.0005 * (i % 3)),
                sl=p0 * (1 - s * width),
                tp1=p0 * (1 + s * width),
                tp2=p0 * (1 + 2 * s * width),
                tp3=p0 * (1 + 3 * s * width),
                time=start.to_pydatetime() - timedelta(seconds=i),  # distinct ids
                rule_confidence=70,
                id=f"bench-{i}",
            )
            store.add(Position.from_signal(sig, recipients=(1, 2)), signal=sig)
            journal.record_signal(sig, position_id=i + 1) if i < 50 else None  # the journal is not what is measured
        no_80 = lambda position: None  # noqa: E731 - the 80% handler's engine run is benchmarked elsewhere

        t = time.perf_counter()
        report = monitor_tick(store, market, journal, evaluate_80=no_80)
        catch_up = time.perf_counter() - t
        print(
            f"monitor catch-up tick (60 min of candles): {n_positions} positions, {catch_up * 1000:.0f} ms "
            f"({catch_up / n_positions * 1e6:.0f} us/position), {report.candles} candles read, "
            f"{report.events} events, {report.enqueued} messages, {report.closed} closed"
        )
        times = []
        for _ in range(steady_ticks):
            clock["now"] += pd.Timedelta(minutes=1)
            t = time.perf_counter()
            report = monitor_tick(store, market, journal, evaluate_80=no_80)
            times.append(time.perf_counter() - t)
        times.sort()
        print(
            f"monitor steady tick (1 new minute): {report.positions} open positions, median "
            f"{times[len(times) // 2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms "
            f"({times[len(times) // 2] / max(report.positions, 1) * 1e6:.0f} us/position)"
        )
        print(f"positions.db: {(Path(tmp) / 'positions.db').stat().st_size / 1e6:.1f} MB")
        store.close()


# ------------------------------------------------------------------------------------------------------------------
# scan

SERVER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import pandas as pd
from tests.fake_binance import FakeBinance
from tests.helpers import sample_candles
n, at, latency = int(sys.argv[2]), pd.Timestamp(sys.argv[3], tz="UTC"), float(sys.argv[4])
own = [tf for tf in ("15m", "1h") if tf in sys.argv[5].split(",")] + ["4h"]  # 1d and 1w: resampled from 4h
base = {(src, tf): sample_candles(src, tf) for src in ("BTCUSDT", "ETHUSDT") for tf in own}
frames = {}
for i in range(n):
    factor = 10.0 ** ((i % 7) - 3) * (1 + i / 1000)
    shift = pd.Timedelta(days=i % 80)  # symbol i replays its source as of `shift` earlier: varied market states
    for tf in own:
        f = base[(("BTCUSDT", "ETHUSDT")[i % 2], tf)]
        f = f[f.index <= at - shift + pd.Timedelta(days=1)]
        f = (f if tf == "4h" else f.iloc[-1500:]).copy()
        f.index = f.index + shift
        f[["open", "high", "low", "close"]] *= factor
        frames[(f"S{i:03d}USDT", tf)] = f
with FakeBinance(now=at, data_dir=None, frames=frames, latency=latency, weight_clock=time.time) as fake:
    print(fake.url, flush=True)
    for line in sys.stdin:
        if line.strip() != "count":
            break
        minutes = {str(k): v for k, v in fake.weight_per_minute.items()}
        print(json.dumps({"requests": fake.count(), "klines": fake.count("/api/v3/klines"), "minutes": minutes}))
        sys.stdout.flush()
"""


class ScanServer:
    """The fake Binance in a child process (its CPU apart from the scan's), with ``latency`` added per request."""

    def __init__(self, n_symbols: int, timeframes: tuple[str, ...], at: str, latency: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(ROOT), str(n_symbols), at, str(latency), ",".join(timeframes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.url = self.process.stdout.readline().strip()

    def counts(self) -> dict:
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(60)


def fetch_only(market, symbol: str, timeframe: str, *, predictor=None) -> None:
    """The engine's requests without its analysis: the entry frame and each higher one (749 candles, weight 5)."""
    import ict_signal_engine

    for tf in (timeframe, *ict_signal_engine.higher_timeframes(timeframe)):
        market.klines(symbol, tf, FETCH_ONLY_LIMIT)


def scan_once(
    url: str, symbols: tuple[str, ...], timeframes: tuple[str, ...], concurrency: int, *, memory=False, analyze=None
):
    """One scan on a fresh client and fresh stores: (report, wall seconds, peak traced bytes or None)."""
    from market.binance_client import BinanceClient
    from signal_cache import SignalCache
    from tracking.scanner import run_scan

    settings = Settings(watchlist=symbols, auto_signal_timeframes=timeframes, min_confidence=MIN_CONFIDENCE)
    with tempfile.TemporaryDirectory() as tmp:
        store = PositionStore(Path(tmp) / "positions.db")
        store.subscribe(1)
        store.subscribe(2)
        cache = SignalCache(Path(tmp) / "sent_signals_cache.json")
        journal = Journal(Path(tmp))
        market = BinanceClient(url)
        if memory:
            tracemalloc.start()
        t = time.perf_counter()
        report = run_scan(market, store, cache, journal, settings, concurrency=concurrency, analyze=analyze)
        wall = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1] if memory else None
        if memory:
            tracemalloc.stop()
        market.close()
        store.close()
    return report, wall, peak


def bench_scan(
    n_symbols: int,
    timeframes: tuple[str, ...],
    *,
    latency: float,
    memory: bool,
    at: str = SCAN_AT,
    fetch_only_run: bool = False,
):
    """Serial then concurrent scans (timed without tracemalloc); optionally a third, traced run for memory.

    ``fetch_only_run``: the scans make the engine's klines requests but analyse nothing (the network's share).
    """
    from market.prefetch import FETCH_WORKERS

    server = ScanServer(n_symbols, timeframes, at, latency)
    symbols = tuple(f"S{i:03d}USDT" for i in range(n_symbols))
    shape = f"{n_symbols} x {len(timeframes)} ({','.join(timeframes)}), {latency * 1000:.0f} ms latency"
    shape += ", fetch only" if fetch_only_run else ""
    try:
        for label, workers in (("serial", 1), (f"concurrent ({FETCH_WORKERS} in flight)", FETCH_WORKERS)):
            before = server.counts()
            analyze = fetch_only if fetch_only_run else None
            report, wall, _ = scan_once(server.url, symbols, timeframes, workers, analyze=analyze)
            after = server.counts()
            per_minute = [v - before["minutes"].get(k, 0) for k, v in after["minutes"].items()]
            per_minute = [w for w in per_minute if w > 0]
            print(
                f"scan {shape}, {label}: {wall:.1f} s wall ({wall / len(symbols) / len(timeframes) * 1000:.0f} "
                f"ms/pair); {after['requests'] - before['requests']} requests "
                f"({after['klines'] - before['klines']} klines); weight {sum(per_minute)}, per clock minute "
                f"{per_minute} (max {max(per_minute, default=0)} of 6000); {report.signals} signals, "
                f"{report.tracked} tracked, {report.broadcasts} messages, {len(report.errors)} errors",
                flush=True,
            )
        if memory:
            _, wall, peak = scan_once(server.url, symbols, timeframes, FETCH_WORKERS, memory=True)
            print(f"scan {shape}, concurrent, under tracemalloc: peak {peak / 1e6:.0f} MB ({wall:.1f} s, not a timing)")
    finally:
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to every fake Binance answer")
    parser.add_argument("--large", action="store_true", help="also scan 500 symbols x (15m, 1h, 4h, 1d)")
    parser.add_argument("--fetch-only", action="store_true", help="scans fetch without analysing (network share)")
    parser.add_argument("--skip-scan", action="store_true")
    parser.add_argument("--skip-monitor", action="store_true")
    args = parser.parse_args()
    if not args.skip_monitor:
        bench_monitor(args.positions)
    if not args.skip_scan:
        bench_scan(
            args.symbols, ("1h", "4h"), latency=args.latency, memory=not args.fetch_only, fetch_only_run=args.fetch_only
        )
    if args.large:
        bench_scan(500, ("15m", "1h", "4h", "1d"), latency=args.latency, memory=False, fetch_only_run=args.fetch_only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
