"""Benchmark the backtest (whole pipeline: engine windows + position state machine + journal) and ML training.

    python bench/bench_backtest.py [--workers 1,2] [--quick]

1. Backtest throughput, candles per second of the entry timeframe, on the bundled real candles:
   - BTCUSDT 1h, one year (2025-07-25 .. 2026-07-25): 8,760 candles;
   - BTCUSDT 15m, all bundled 15m data (2026-01-06 .. 2026-07-25, ~19,000 candles: the bundle holds ~7 months
     of 15m); the time for a year (35,040 candles) is extrapolated from the measured rate.
   Each run replays exactly what ``python bot.py backtest [--fast]`` does, resolving outcomes on the finest
   candles the data has; exact mode (the live 500-candle windows) with 1 and 2 workers, fast mode with 1.
   Targets (issue 7): a year of 1h < 10 s, of 15m < 60 s on 2 cores.
2. Training time: ``ml_engine.train`` (single + ensemble, validation and refit) on the cold-start journal when
   ``BOT_DATA_DIR`` has one, plus on a synthetic journal of 1,000 and 5,000 outcomes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ml_engine  # noqa: E402
from market.sample_source import SampleSource  # noqa: E402
from research import backtest  # noqa: E402

NOW = pd.Timestamp("2026-07-26", tz="UTC")
RUNS = (
    ("BTCUSDT", "1h", pd.Timestamp("2025-07-25", tz="UTC"), pd.Timestamp("2026-07-25", tz="UTC")),
    ("BTCUSDT", "15m", pd.Timestamp("2026-01-06", tz="UTC"), pd.Timestamp("2026-07-25", tz="UTC")),
)
YEAR = {"1h": 8760, "15m": 35040}


def bench_backtest(modes: list[str], workers: list[int], quick: bool) -> None:
    market = SampleSource(ROOT / "data" / "sample", clock=lambda: NOW)
    print("backtest throughput (candles of the entry timeframe per second, whole pipeline)")
    for symbol, tf, start, end in RUNS:
        if quick:
            start = end - pd.Timedelta(days=30)
        for mode, w in [(m, w) for m in modes for w in (workers if m == "exact" else [1])]:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                result = backtest.run_backtest(
                    market,
                    [symbol],
                    tf,
                    start=start,
                    end=end,
                    journal_path=Path(tmp) / "j.json",
                    equity_path=Path(tmp) / "e.png",
                    show_progress=False,
                    workers=w,
                    mode=backtest.Mode(mode),
                )
                seconds = time.perf_counter() - t0
            run = result.runs[0]
            rate = run.bars / seconds
            s = result.stats()
            print(
                f"  {symbol} {tf} {run.bars} candles, {mode} mode, workers {w}: {seconds:6.1f} s = "
                f"{rate:7.0f} candles/s "
                f"(engine ran on {run.evaluated} flat bars, {len(run.trades)} signals, {s.trades} closed); "
                f"a year of {tf}: {YEAR[tf] / rate:5.1f} s"
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
    parser.add_argument("--modes", default="fast,exact", help="backtest modes to measure (default fast,exact)")
    parser.add_argument("--workers", default="1,2", help="worker counts for exact mode (default 1,2)")
    parser.add_argument("--quick", action="store_true", help="30 days instead of the full periods")
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="BOT_DATA_DIR with a cold-start journal")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    bench_backtest(args.modes.split(","), [int(w) for w in args.workers.split(",")], args.quick)
    bench_training(Path(args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
