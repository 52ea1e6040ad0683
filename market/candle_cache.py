"""Recent closed candles kept in memory, so klines are fetched only when a new candle can have closed (issue 12).

``CandleCache`` wraps any ``MarketData`` (the factory uses it for Binance) and answers "the latest ``limit`` closed
candles" of a (symbol, interval) series from memory. Closed candles never change, so the cached copy of a series
is valid up to its *boundary* (the open time of the first candle not closed when it was fetched). A request
whose boundary (by the wrapped market's clock ``now()``, or ``end``) is the cached one sends nothing; once a new
candle has closed, one request asks for the candles opening at or after the cached boundary only
(``start=boundary``, ``limit`` = the number of candles that can have closed since) and appends them.

Bounds: at most ``max_series`` series (least recently used evicted) of at most ``max_candles`` candles each
(``engine.windows.WINDOW_FETCH``, what one analysis reads, by default). Requests the cache cannot answer exactly
(``start`` given, ``limit`` above the cap or None, ``end`` before the cached series) go to the wrapped market
unchanged, so the answer always equals the uncached one for the same request and clock.

Threads: a scan fetches ahead from several threads; each series has its own lock, so different series are
fetched concurrently and one series is fetched once.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pandas as pd

from market.source import checked_interval, normalize_symbol, to_utc
from market.timeframes import INTERVAL_MS, candle_open_time

logger = logging.getLogger(__name__)

MAX_SERIES = 1024  # a scan of 100 symbols x 4 timeframes and their higher timeframes fits
MAX_CANDLES = 750  # engine.windows.WINDOW_FETCH (market/ does not import the engine)
SeriesKey = tuple[str, str]  # (symbol, interval)


@dataclass(slots=True)
class Series:
    """The closed candles of one series known at ``boundary``: every candle opening before it has closed.

    ``complete``: the source has no candles before ``frame``'s first (it returned fewer than were asked for)."""

    frame: pd.DataFrame
    boundary: pd.Timestamp
    complete: bool


class CandleCache:
    """``MarketData`` over ``market`` with the closed candles of recent series kept (see the module docstring)."""

    def __init__(self, market: Any, *, max_series: int = MAX_SERIES, max_candles: int = MAX_CANDLES) -> None:
        self.market = market
        self.max_series = max_series
        self.max_candles = max_candles
        self.hits = 0  # requests answered without a request to the market
        self.fetches = 0  # requests to the market (full or incremental)
        self._series: OrderedDict[SeriesKey, Series] = OrderedDict()
        self._locks: dict[SeriesKey, threading.Lock] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # price, now, symbols, close, the client's counters...
        return getattr(self.market, name)

    def klines(
        self,
        symbol: str,
        interval: str,
        limit: int | None = 500,
        *,
        start: object | None = None,
        end: object | None = None,
    ) -> pd.DataFrame:
        if start is not None or limit is None or not 0 < limit <= self.max_candles:
            return self.market.klines(symbol, interval, limit, start=start, end=end)
        key = (normalize_symbol(symbol), checked_interval(interval))
        now = to_utc(self.market.now())
        cutoff = now if end is None else min(to_utc(end), now)
        boundary = candle_open_time(cutoff, key[1])
        with self._series_lock(key):
            series = self._get(key)
            if series is not None and boundary < series.boundary:  # a past moment: answer if the cache holds it
                answer = _latest(series.frame, boundary, limit)
                if len(answer) == limit or series.complete:
                    return self._hit(answer)
                return self.market.klines(symbol, interval, limit, start=start, end=end)
            if series is None or (len(series.frame) < limit and not series.complete):
                series = self._full(key, limit, end)
            elif boundary > series.boundary:
                series = self._extend(key, series, boundary, end)
            else:
                self.hits += 1
            return _latest(series.frame, boundary, limit).copy()

    def _hit(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.hits += 1
        return frame.copy()

    def _full(self, key: SeriesKey, limit: int, end: object | None) -> Series:
        """Fetch the latest ``limit`` candles (or more, to keep what is cached) and cache them."""
        self.fetches += 1
        cached = self._get(key)
        size = max(limit, len(cached.frame) if cached is not None else 0)
        frame = self.market.klines(*key, size, end=end)  # errors (no candles, network) propagate, nothing cached
        return self._put(key, Series(frame, _boundary_of(frame, key[1]), len(frame) < size))

    def _extend(self, key: SeriesKey, series: Series, boundary: pd.Timestamp, end: object | None) -> Series:
        """Append the candles closed since the cached boundary (one request), or refetch when too many closed."""
        count = _candles_between(series.boundary, boundary, key[1])
        if count > self.max_candles:
            return self._full(key, len(series.frame), end)
        self.fetches += 1
        new = self.market.klines(*key, count, start=series.boundary, end=end)
        new = new[new.index < boundary]  # a candle closing between our clock reading and the request waits
        frame = pd.concat([series.frame, new]) if len(new) else series.frame
        frame = frame[~frame.index.duplicated(keep="last")].iloc[-self.max_candles :]
        complete = series.complete and len(frame) == len(series.frame) + len(new)
        return self._put(key, Series(frame, boundary, complete))

    def _get(self, key: SeriesKey) -> Series | None:
        with self._lock:
            series = self._series.get(key)
            if series is not None:
                self._series.move_to_end(key)
            return series

    def _put(self, key: SeriesKey, series: Series) -> Series:
        with self._lock:
            self._series[key] = series
            self._series.move_to_end(key)
            while len(self._series) > self.max_series:
                old, _ = self._series.popitem(last=False)
                self._locks.pop(old, None)
        return series

    def _series_lock(self, key: SeriesKey) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def __len__(self) -> int:
        return len(self._series)


def _latest(frame: pd.DataFrame, boundary: pd.Timestamp, limit: int) -> pd.DataFrame:
    """The last ``limit`` candles of ``frame`` opening before ``boundary``."""
    stop = int(frame.index.searchsorted(boundary, side="left"))
    return frame.iloc[max(0, stop - limit) : stop]


def _boundary_of(frame: pd.DataFrame, interval: str) -> pd.Timestamp:
    """The boundary a freshly fetched frame is known up to: the open of the candle after its last one.

    Candles between its last and the clock's boundary (a pause in trading) are fetched once more next time: the
    request is small and the answer stays exact."""
    last = frame.index[-1]
    return last + (pd.DateOffset(months=1) if interval == "1M" else pd.Timedelta(milliseconds=INTERVAL_MS[interval]))


def _candles_between(first: pd.Timestamp, boundary: pd.Timestamp, interval: str) -> int:
    """How many ``interval`` candles open in ``[first, boundary)`` (both candle open times)."""
    if interval == "1M":
        return (boundary.year - first.year) * 12 + boundary.month - first.month
    return int((boundary - first) // pd.Timedelta(milliseconds=INTERVAL_MS[interval]))
