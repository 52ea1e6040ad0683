"""Fan independent research tasks out: a local process pool by default, a Dask distributed cluster when given.

Tasks are pure functions of picklable arguments (settings, symbol, timeframe, period), so the result does not
depend on where they run: the cluster's workers need the project on their import path and the candle data
(``SAMPLE_DATA_DIR`` or network access to Binance), nothing else. Results come back in task order.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger(__name__)


def local_workers() -> int:
    """Usable cores (at most 8); 1 where ``fork`` is unavailable."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8))


def run_all(
    func: Callable[[T], R], tasks: Sequence[T], *, scheduler: str | None = None, workers: int | None = None
) -> list[R]:
    """``[func(t) for t in tasks]``, on the Dask cluster at ``scheduler`` (``tcp://host:8786``) or a local pool."""
    if scheduler:
        return _on_dask(func, tasks, scheduler)
    workers = min(workers or local_workers(), len(tasks))
    if workers <= 1:
        return [func(t) for t in tasks]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(func, tasks))


def _on_dask(func: Callable[[T], R], tasks: Sequence[T], scheduler: str) -> list[R]:
    # distributed is imported here only: it is heavy (~1 s) and only a scale-out run needs it
    from distributed import Client

    with Client(scheduler, timeout="30s") as client:
        logger.info("running %d tasks on the Dask cluster at %s", len(tasks), scheduler)
        futures: list[Any] = client.map(func, tasks, pure=False)
        return client.gather(futures)
