"""Concurrent klines for a scan: a ``MarketData`` view that fetches the planned candles ahead, a few at a time.

A scan analyses its (symbol, timeframe) pairs one after the other in its own thread (the analysis is CPU work and
stays there); only the waiting for Binance overlaps. The scan hands over a *plan*: for each step (pair), the
``(symbol, interval)`` frames its analysis will ask for, each as "the latest ``limit`` closed candles". The
``limit`` is learned from the first such request (the engine decides how many candles an analysis reads), which
is answered directly. From then on a pool of ``workers`` threads (4-8; the client's connection pool holds 16)
fetches the frames in first-use order, at most ``buffered`` frames ahead of the step being analysed; a frame used
by several steps (a 4h frame is the 1h pair's higher timeframe and the 4h pair's entry) is fetched once and
dropped after its last step.

A planned ``klines`` call is answered from its future: the same frame, or the same exception, as the serial call
would give. Anything outside the plan (another limit, ``start``/``end``, a frame already dropped) goes straight to
the wrapped market, so a wrong plan costs time, never results. Every other attribute is the wrapped market's.

Request weight: every worker goes through the client's ``_get``, which tracks ``X-MBX-USED-WEIGHT-1M`` and keeps
all threads quiet until the next minute at 80% of Binance's 6,000 per minute, so concurrency raises the request
rate only up to that budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

FETCH_WORKERS = 6  # klines requests in flight during a scan
FrameKey = tuple[str, str]  # (symbol, interval): the latest closed candles of that frame


class PrefetchingMarket:
    """The scan's market: planned klines fetched ahead by ``workers`` threads (see the module docstring).

    Use as a context manager; call ``done(step)`` after each step so its frames are freed and fetching moves on.
    """

    def __init__(
        self,
        market: Any,
        plan: Sequence[Sequence[FrameKey]],
        *,
        workers: int = FETCH_WORKERS,
        buffered: int | None = None,
    ) -> None:
        self._market = market
        self._order = list(dict.fromkeys(key for step in plan for key in step))  # first use first
        self._last_step = {key: i for i, step in enumerate(plan) for key in step}
        self._buffered = buffered or 4 * workers
        self._futures: dict[FrameKey, Future[pd.DataFrame]] = {}
        self._limit: int | None = None  # learned from the first planned request
        self._next = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="klines")

    def __enter__(self) -> PrefetchingMarket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel what has not started and wait for the requests in flight."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._market, name)

    def _top_up(self) -> None:
        while self._limit is not None and self._next < len(self._order) and len(self._futures) < self._buffered:
            key = self._order[self._next]
            self._next += 1
            if key not in self._futures:
                self._futures[key] = self._pool.submit(self._market.klines, *key, self._limit)

    def done(self, step: int) -> None:
        """Step ``step`` is analysed: drop the frames no later step uses, fetch further ahead."""
        for key in [k for k in self._futures if self._last_step[k] <= step]:
            del self._futures[key]
        self._top_up()

    def klines(
        self,
        symbol: str,
        interval: str,
        limit: int | None = 500,
        *,
        start: object | None = None,
        end: object | None = None,
    ) -> pd.DataFrame:
        key = (symbol, interval)
        planned = start is None and end is None and key in self._last_step
        if planned and self._limit is None and limit is not None:
            self._limit = limit
            self._futures[key] = _settled(lambda: self._market.klines(symbol, interval, limit))
            self._top_up()
        future = self._futures.get(key) if planned and limit == self._limit else None
        if future is None:
            return self._market.klines(symbol, interval, limit, start=start, end=end)
        return future.result().copy()  # a copy: steps sharing a frame never see each other's changes


def _settled(call: Callable[[], pd.DataFrame]) -> Future[pd.DataFrame]:
    """A finished future holding ``call()``'s frame or exception."""
    future: Future[pd.DataFrame] = Future()
    try:
        future.set_result(call())
    except Exception as exc:  # handed to the step that asks, as the serial call would raise it
        future.set_exception(exc)
    return future
