"""Benchmark the backtest (whole pipeline: engine windows + position state machine + journal) and ML training.

    python bench/bench_backtest.py [--repeat 3] [--quick]

1. A year of BTCUSDT 1h (2025-07-25 .. 2026-07-25, 8,761 candles) against one analysis, side by side, each as the
   user runs it, in its own process (interpreter, imports and data loading included), alternating so both see
   the same load: ``python bot.py backtest BTCUSDT 1h --start .. --end .. --json`` and
   ``python bot.py signal BTCUSDT 1h --at 2026-03-01T00:00:00Z --json`` (``MARKET_DATA=sample``). Prints the
   medians and their ratio (issue 12's goal: the year costs at most 3 single analyses' processes) and the load
   average before and after.
2. In process: the same year through ``backtest_symbol`` (the engine only at flat bars, one detector run per
   block), beside the engine alone at every bar of the year through ``ict_signal_engine.analyses_over``;
   BTCUSDT 15m over all bundled 15m data (2026-01-06 .. 2026-07-25, ~19,000 candles), its rate extrapolated to
   a year (35,040 candles).
3. Training time: ``ml_engine.train`` (single + ensemble, validation and refit) on the cold-start journal when
   ``BOT_DATA_DIR`` has one, plus on a synthetic journal of 1,000 and 5,000 outcomes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ict_signal_engine as engine  # noqa: E402
import ml_engine  # noqa: E402
from market.sample_source import SampleSource  # noqa: E402
from research import replay, simulation  # noqa: E402

NOW = pd.Timestamp("2026-07-26", tz="UTC")
YEAR = ("BTCUSDT", "1h", pd.Timestamp("2025-07-25", tz="UTC"), pd.Timestamp("2026-07-25", tz="UTC"))
RUN_15M = ("BTCUSDT", "15m", pd.Timestamp("2026-01-06", tz="UTC"), pd.Timestamp("2026-07-25", tz="UTC"))
SIGNAL_AT = "2026-03-01T00:00:00Z"
CANDLES_A_YEAR = {"1h": 8760, "15m": 35040}


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "bot.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - t0, out.stdout


def bench_processes(repeat: int, quick: bool) -> None:
    """A year's backtest process against one ``signal --at`` process, alternating."""
    symbol, tf, start, end = YEAR
    if quick:
        start = end - pd.Timedelta(days=30)
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM", "BINANCE", "SAMPLE"))}
        env.update(MARKET_DATA="sample", BOT_DATA_DIR=tmp, SAMPLE_START=NOW.isoformat(), SAMPLE_SPEED="0")
        backtest_argv = ["backtest", symbol, tf, "--start", start.isoformat(), "--end", end.isoformat(), "--json"]
        signal_argv = ["signal", symbol, tf, "--at", SIGNAL_AT, "--json"]
        print(f"processes, alternating, {repeat} each (load average 1/5/15 min before: {_load()})")
        backtests, signals, inner = [], [], []
        for _ in range(repeat):
            seconds, out = _timed(backtest_argv, env)
            backtests.append(seconds)
            inner.append(json.loads(out)["seconds"])
            signals.append(_timed(signal_argv, env)[0])
        summary = json.loads(out)
    bt, sig = statistics.median(backtests), statistics.median(signals)
    print(
        f"  backtest {symbol} {tf} {start:%Y-%m-%d}..{end:%Y-%m-%d} ({summary['candles']} candles, "
        f"{summary['evaluated_bars']} evaluated, {summary['signals']} signals): median {bt:.2f} s "
        f"(runs {', '.join(f'{x:.2f}' for x in backtests)}; inside the process {statistics.median(inner):.2f} s)"
    )
    print(f"  signal --at {SIGNAL_AT}: median {sig:.2f} s (runs {', '.join(f'{x:.2f}' for x in signals)})")
    print(f"  RATIO backtest / signal = {bt / sig:.2f} (goal <= 3); load average after: {_load()}")


def bench_in_process(quick: bool) -> None:
    market = SampleSource(ROOT / "data" / "sample", clock=lambda: NOW)
    print(f"in process (load average before: {_load()})")
    for symbol, tf, start, end in (YEAR, RUN_15M):
        if quick:
            start = end - pd.Timedelta(days=30)
        t0 = time.perf_counter()
        run = simulation.backtest_symbol(market, symbol, tf, start=start, end=end, show_progress=False)
        seconds = time.perf_counter() - t0
        rate = run.bars / seconds
        print(
            f"  backtest_symbol {symbol} {tf} {run.bars} candles: {seconds:6.2f} s = {rate:6.0f} candles/s "
            f"(engine at {run.evaluated} flat bars, {len(run.trades)} signals taken, every signal); "
            f"a year of {tf}: {CANDLES_A_YEAR[tf] / rate:5.1f} s"
        )
    symbol, tf, start, end = YEAR
    if quick:
        start = end - pd.Timedelta(days=30)
    frames, _, missing = replay.load_frames(market, symbol, tf, start=start, end=end, lookback=500)
    first = int(np.searchsorted(frames[tf].index + pd.Timedelta(tf), start, side="left"))
    t0 = time.perf_counter()
    bars = range(first, len(frames[tf]))
    for _ in engine.analyses_over(frames, symbol=symbol, timeframe=tf, bars=bars, absent=missing):
        pass
    print(
        f"  engine alone, analyses_over at every one of {len(bars)} bars: {time.perf_counter() - t0:.2f} s "
        f"(load average after: {_load()})"
    )


def synthetic(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        f = {f"f{k}": float(rng.normal()) for k in range(30)}
        win = bool(rng.random() < 1 / (1 + np.exp(-f["f0"])))
        out.append(
            {
                "id": f"X-{i}",
                "signal": {"id": f"X-{i}", "time": "2025-01-01T00:00:00Z", "features": f},
                "outcome": {"reason": "TP1" if win else "SL", "r_multiple": 1.5 if win else -1.0},
            }
        )
    return out


def bench_training(data_dir: Path) -> None:
    print("training time (single + ensemble: time-ordered validation, then refit on all samples)")
    sets = []
    journal = data_dir / ml_engine.COLD_START_JOURNAL_FILE
    if journal.exists():
        sets.append(("cold-start journal", ml_engine.load_journal_records(journal)))
    sets += [("synthetic 1,000 x 30 features", synthetic(1000)), ("synthetic 5,000 x 30 features", synthetic(5000))]
    for name, records in sets:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            report = ml_engine.train(records, Path(tmp))
            seconds = time.perf_counter() - t0
        print(f"  {name}: {report.samples} labelled samples, {len(report.features)} features: {seconds:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each process (default 3)")
    parser.add_argument("--quick", action="store_true", help="30 days instead of the full periods")
    parser.add_argument("--no-training", action="store_true", help="skip the training benchmark")
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="BOT_DATA_DIR with a cold-start journal")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    bench_processes(args.repeat, args.quick)
    bench_in_process(args.quick)
    if not args.no_training:
        bench_training(Path(args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
