"""Market data: the one small interface every other module uses, its errors and a cache (the factory is
``market.factory``).

Two implementations stand behind ``MarketData``:
- ``market.binance_client.BinanceClient``: Binance spot REST (``MARKET_DATA=binance``, the default);
- ``market.sample_source.SampleSource``: bundled real Binance candles replayed on a clock (``MARKET_DATA=sample``).

Both are synchronous and blocking; code on the asyncio loop calls them through ``asyncio.to_thread``.
Every candle frame they return is the canonical frame of ``ict_modules.core.validate_candles`` (UTC
``DatetimeIndex`` of open times, float64 open/high/low/close/volume) and holds CLOSED candles only: a candle is
returned only when ``open_time + interval <= min(end, now())``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar, runtime_checkable

import pandas as pd

from market.timeframes import parse_interval


class MarketDataError(Exception):
    """Base of every market-data failure; ``str(exc)`` is one line a user can read."""


class InvalidSymbolError(MarketDataError):
    """The symbol does not exist (or is not trading) on the source."""


class InvalidIntervalError(MarketDataError):
    """The interval is not a Binance kline interval."""


class RestrictedLocationError(MarketDataError):
    """Binance refuses this location (HTTP 451)."""


class RateLimitedError(MarketDataError):
    """Binance asked us to wait (HTTP 429/418) longer than we are willing to block."""


class MarketDataUnavailable(MarketDataError):
    """The source did not answer usefully (network errors, timeouts, 5xx, malformed replies) after retries."""


@runtime_checkable
class MarketData(Protocol):
    """What the bot needs from a market: closed candles, a price, the clock, symbols. Sync and blocking."""

    def klines(
        self,
        symbol: str,
        interval: str,
        limit: int | None = 500,
        *,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Closed candles (``open + interval <= min(end, now)``) as a validated frame.

        Without ``start``: the most recent ``limit`` candles. With ``start``: the first ``limit`` candles opening
        at or after ``start`` (``limit=None``: all of them up to the cutoff).
        """
        ...

    def price(self, symbol: str) -> float:
        """The latest traded price (sample: close of the latest closed finest candle)."""
        ...

    def now(self) -> pd.Timestamp:
        """The source's clock, UTC (Binance server time; the sample replay clock)."""
        ...

    def validate_symbol(self, symbol: str) -> str:
        """The normalised symbol (``btc/usdt`` -> ``BTCUSDT``) or InvalidSymbolError."""
        ...

    def symbols(self) -> list[str]:
        """Every symbol the source can serve (Binance: spot symbols that are trading)."""
        ...

    def finest_interval(self, symbol: str, start: pd.Timestamp) -> str:
        """The finest interval with data from ``start`` (Binance: always ``1m``)."""
        ...

    def latency_ms(self) -> float:
        """Round-trip time of a trivial request, milliseconds (sample: 0)."""
        ...


def normalize_symbol(symbol: str) -> str:
    """``" btc/usdt "`` -> ``"BTCUSDT"``: strip, upper-case, drop ``/``, ``-``, ``_`` and spaces."""
    return "".join(ch for ch in str(symbol).upper() if ch not in "/-_ \t")


def checked_interval(interval: str) -> str:
    """The canonical Binance interval or InvalidIntervalError."""
    try:
        return parse_interval(str(interval))
    except ValueError as exc:
        raise InvalidIntervalError(str(exc)) from None


def to_utc(ts: object) -> pd.Timestamp:
    """An aware UTC Timestamp from a Timestamp/datetime/ISO string; naive values are taken as UTC."""
    stamp = pd.Timestamp(ts)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def format_time(ts: pd.Timestamp) -> str:
    """``2026-07-25 17:45 UTC``: how times appear in error messages."""
    return f"{to_utc(ts):%Y-%m-%d %H:%M} UTC"


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """A small thread-safe least-recently-used cache with hit/miss counters."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
