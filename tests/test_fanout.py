"""Fan-out: a real Dask LocalCluster of worker processes gives exactly the local result."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

from distributed import LocalCluster

from config import Settings
from research.backtest import run_backtest
from research.candidates import CandidateTask
from research.evaluate import _candidates, history_market
from research.fanout import run_all
from tests.helpers import SAMPLE_DIR


def test_dask_cluster_equals_local_pool():
    settings = Settings(market_data="sample", sample_data_dir=SAMPLE_DIR)
    tasks = [
        CandidateTask(symbol, "4h", datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 12, 1, tzinfo=UTC))
        for symbol in ("BTCUSDT", "ETHUSDT")
    ]
    work = partial(_candidates, settings)
    local = run_all(work, tasks, workers=2)
    assert sum(len(group) for group in local) > 10
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = run_all(work, tasks, scheduler=cluster.scheduler_address)
    assert remote == local


def test_a_backtest_of_several_symbols_fans_out_with_the_sequential_result():
    settings = Settings(market_data="sample", sample_data_dir=SAMPLE_DIR, sample_speed=0)
    market = history_market(settings)
    span = dict(start=datetime(2025, 1, 1, tzinfo=UTC), end=datetime(2025, 6, 1, tzinfo=UTC), show_progress=False)
    alone = run_backtest(market, ["BTCUSDT", "ETHUSDT"], "4h", **span)
    spread = run_backtest(market, ["BTCUSDT", "ETHUSDT"], "4h", settings=settings, **span)
    assert [r.symbol for r in spread.runs] == ["BTCUSDT", "ETHUSDT"]
    assert [t.signal for t in spread.trades] == [t.signal for t in alone.trades] and len(alone.trades) > 3
    assert [t.outcome for t in spread.trades] == [t.outcome for t in alone.trades]
