"""Tracking benchmarks (not tests): monitor cost per tick with 1,000 open positions, and a 50 x 2 watchlist scan.

    .venv/bin/python bench/bench_tracking.py [--positions 1000] [--symbols 50] [--skip-scan] [--skip-monitor]

1. Monitor: 1,000 positions spread over 10 symbols of real 1m candles (the bundled BTCUSDT 1m series, copied at
   10 price levels), followed by ``real_time_monitor.monitor_tick`` on the sample source (no network).
   Reported: a catch-up tick (60 minutes of candles since the last check) and steady ticks (one new minute
   each), wall time per tick and per position, and the SQLite file size.
2. Scan: ``scanner.run_scan`` over 50 symbols x (1h, 4h) against the local Binance-shaped server
   (``tests/fake_binance.py``) run in a CHILD process, so the scan's own peak memory (tracemalloc) is measured
   alone; MIN_CONFIDENCE is 50 here so that signals are also tracked, charted and broadcast. The 50 symbols are
   the bundled BTC/ETH/SOL 1h candles, each scaled by a different factor (real shapes, different price levels).
   Reported: wall time, HTTP requests made (counted by the server), peak memory, signals.
"""

from __future__ import annotations

import argparse
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
import sys
sys.path.insert(0, sys.argv[1])
import pandas as pd
from tests.fake_binance import FakeBinance
from tests.helpers import sample_candles
n = int(sys.argv[2])
base = {s: sample_candles(s, "1h") for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")}
frames = {}
for i in range(n):
    src = ("BTCUSDT", "ETHUSDT", "SOLUSDT")[i % 3]
    f = base[src].copy()
    factor = 10.0 ** ((i % 7) - 3) * (1 + i / 100)
    f[["open", "high", "low", "close"]] *= factor
    frames[(f"S{i:02d}USDT", "1h")] = f
with FakeBinance(now=sys.argv[3], data_dir=None, frames=frames) as fake:
    print(fake.url, flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(fake.count(), fake.count("/api/v3/klines"), fake.used_weight, flush=True)
        else:
            break
"""


def bench_scan(n_symbols: int, at: str = "2026-04-10 12:00:30") -> None:
    from market.binance_client import BinanceClient
    from signal_cache import SignalCache
    from tracking.scanner import run_scan

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(ROOT), str(n_symbols), at],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        url = server.stdout.readline().strip()
        symbols = tuple(f"S{i:02d}USDT" for i in range(n_symbols))
        settings = Settings(watchlist=symbols, auto_signal_timeframes=("1h", "4h"), min_confidence=MIN_CONFIDENCE)
        with tempfile.TemporaryDirectory() as tmp:
            store = PositionStore(Path(tmp) / "positions.db")
            store.subscribe(1)
            store.subscribe(2)
            cache = SignalCache(Path(tmp) / "sent_signals_cache.json")
            journal = Journal(Path(tmp))
            market = BinanceClient(url)
            tracemalloc.start()
            t = time.perf_counter()
            report = run_scan(market, store, cache, journal, settings)
            wall = time.perf_counter() - t
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            server.stdin.write("count\n")
            server.stdin.flush()
            total, klines, weight = server.stdout.readline().split()
            print(
                f"scan {n_symbols} symbols x 2 timeframes: {wall:.1f} s wall "
                f"({wall / (2 * n_symbols) * 1000:.0f} ms/pair), "
                f"{total} HTTP requests ({klines} klines, weight {weight}), peak traced memory "
                f"{peak / 1e6:.0f} MB; {report.signals} signals, {report.tracked} tracked, "
                f"{report.broadcasts} messages, {len(report.errors)} errors"
            )
            market.close()
            store.close()
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--skip-scan", action="store_true")
    parser.add_argument("--skip-monitor", action="store_true")
    args = parser.parse_args()
    if not args.skip_monitor:
        bench_monitor(args.positions)
    if not args.skip_scan:
        bench_scan(args.symbols)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
