"""Binance spot REST client behind the ``MarketData`` interface (``BINANCE_API_BASE_URL``, public endpoints only).

Transport (one place: ``BinanceClient._get``):
- one pooled ``requests.Session``; every request has a connect and a read timeout;
- timeouts, connection errors, HTTP 5xx and malformed JSON are retried up to ``attempts`` times in all, sleeping
  ``min(max_backoff, backoff * 2**(n-1))`` seconds times a jitter factor in [0.5, 1) before try ``n + 1``; then
  ``MarketDataUnavailable``;
- HTTP 429/418 set a shared "quiet until" time from ``Retry-After`` (or the backoff when it is missing) that
  every thread waits out before its next request; a wait longer than ``max_wait`` raises ``RateLimitedError``;
- ``X-MBX-USED-WEIGHT-1M`` is tracked; at ``weight_margin`` of ``weight_limit`` requests pause until the next
  minute, when Binance resets the counter;
- Binance error codes become typed errors: -1121 ``InvalidSymbolError``; -1120 and -1100 on the interval
  ``InvalidIntervalError``; HTTP 451 ``RestrictedLocationError``;
- all waiting goes through the injected ``sleep`` and ``clock`` (tests do not wait).

Candles: an answer without a single closed candle for the latest ``limit`` candles is a ``MarketDataError``
("Binance has no closed 2h candles for X up to ..."), never an empty frame the engine cannot analyse. ``klines``
asks only for candles that have closed by ``min(end, now)`` (``endTime`` = the boundary
minus 1 ms, where ``now`` is Binance server time from ``/api/v3/time``, re-synchronised every ``resync_after``
seconds), drops any candle that has not closed anyway, pages through 1000-candle requests, and validates the
frame. Pages of closed candles are kept in a small LRU cache keyed by the request, so asking again for the same
closed candles (e.g. every scan within one candle) sends no request.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import requests
from requests.adapters import HTTPAdapter

from ict_modules.core import OHLCV, validate_candles
from market.source import (
    InvalidIntervalError,
    InvalidSymbolError,
    LRUCache,
    MarketDataError,
    MarketDataUnavailable,
    RateLimitedError,
    RestrictedLocationError,
    checked_interval,
    format_time,
    normalize_symbol,
    to_utc,
)
from market.timeframes import candle_open_time

logger = logging.getLogger(__name__)

MAX_LIMIT = 1000  # Binance's largest klines page
MIRROR = "https://data-api.binance.vision"
Row = list[Any]  # one Binance kline array: [open_time_ms, "open", "high", "low", "close", "volume", close_ms, ...]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard the client tries. Times in seconds."""

    attempts: int = 4  # tries per request, in all
    backoff: float = 0.5  # base delay before the second try; doubles per try
    max_backoff: float = 8.0
    max_wait: float = 60.0  # longest Retry-After/ban waited out in-line; longer -> RateLimitedError
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    weight_limit: int = 6000  # Binance REQUEST_WEIGHT per minute
    weight_margin: float = 0.8  # pause until the next minute above this share of the limit


class _Retry(Exception):
    """A transient failure inside ``_get``: retried after a backoff (rate limits: after the quiet period)."""

    def __init__(self, reason: str, *, rate_limited: bool = False) -> None:
        super().__init__(reason)
        self.rate_limited = rate_limited


class BinanceClient:
    """``MarketData`` on Binance spot REST (see the module docstring).

    Args:
        base_url: ``BINANCE_API_BASE_URL`` (e.g. ``https://api.binance.com`` or ``https://data-api.binance.vision``).
        policy: retries, timeouts and rate-limit behaviour.
        sleep, clock, jitter: injectable ``time.sleep``, ``time.time`` (epoch seconds) and ``random.random``.
        cache_size: number of closed-candle pages kept.
        resync_after: seconds between server-time synchronisations.
    """

    def __init__(
        self,
        base_url: str = "https://api.binance.com",
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        cache_size: int = 256,
        resync_after: float = 600.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self._sleep, self._clock, self._jitter = sleep, clock, jitter
        self._session = requests.Session()
        self._session.mount("http://", HTTPAdapter(pool_connections=2, pool_maxsize=16, max_retries=0))
        self._session.mount("https://", HTTPAdapter(pool_connections=2, pool_maxsize=16, max_retries=0))
        self._session.headers["User-Agent"] = "ict-signal-bot/0.1"
        self._lock = threading.Lock()
        self._quiet_until = 0.0  # epoch seconds: no request before this (429/418/weight), shared by threads
        self.used_weight = 0  # last X-MBX-USED-WEIGHT-1M seen
        self.pages: LRUCache[tuple, list[Row]] = LRUCache(cache_size)
        self._statuses: LRUCache[str, str | None] = LRUCache(1024)
        self._offset: float | None = None  # server minus local clock, seconds
        self._synced_at = 0.0
        self._resync_after = resync_after
        self._all_symbols: tuple[float, list[str]] | None = None

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ transport

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path`` and return its JSON, with the retry, rate-limit and error policy of the module docstring."""
        params = params or {}
        failure = _Retry("no attempt")
        for attempt in range(1, self.policy.attempts + 1):
            self._wait_quiet_period()
            try:
                return self._once(path, params)
            except _Retry as exc:
                failure = exc
            if attempt < self.policy.attempts and not failure.rate_limited:  # rate limits wait the quiet period
                delay = self._backoff(attempt)
                logger.warning("Binance %s: %s; retry %d in %.2fs", path, failure, attempt, delay)
                self._sleep(delay)
        error = RateLimitedError if failure.rate_limited else MarketDataUnavailable
        raise error(f"Binance did not answer {path} after {self.policy.attempts} attempts (last: {failure})")

    def _once(self, path: str, params: dict[str, Any]) -> Any:
        """One request: the JSON, or _Retry for a transient failure, or a MarketDataError."""
        timeout = (self.policy.connect_timeout, self.policy.read_timeout)
        try:
            response = self._session.get(self.base_url + path, params=params, timeout=timeout)
        except requests.Timeout:
            raise _Retry("timed out") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retry(f"connection failed ({type(exc).__name__})") from None
        self._track_weight(response)
        status = response.status_code
        if status in (418, 429):
            self._rate_limited(response)
            raise _Retry(f"HTTP {status} rate limited", rate_limited=True)
        if status >= 500:
            raise _Retry(f"HTTP {status}")
        if status == 451:
            raise RestrictedLocationError(
                f"Binance refuses requests from this location (HTTP 451); use the market-data mirror: "
                f"BINANCE_API_BASE_URL={MIRROR}"
            )
        if status >= 400:
            raise api_error(status, _json_or_none(response), params)
        body = _json_or_none(response)
        if body is None:
            raise _Retry("malformed JSON")
        return body

    def _backoff(self, attempt: int) -> float:
        base = min(self.policy.max_backoff, self.policy.backoff * 2 ** (attempt - 1))
        return base * (0.5 + self._jitter() / 2)

    def _wait_quiet_period(self) -> None:
        with self._lock:
            remaining = self._quiet_until - self._clock()
        if remaining <= 0:
            return
        if remaining > self.policy.max_wait:
            raise RateLimitedError(self._rate_message(remaining))
        logger.info("Binance rate limit: waiting %.1fs", remaining)
        self._sleep(remaining)

    def _rate_limited(self, response: requests.Response) -> None:
        """429/418: keep every thread quiet for Retry-After seconds (or a backoff when the header is missing)."""
        try:
            wait = float(response.headers["Retry-After"])
        except (KeyError, ValueError):
            wait = self.policy.max_backoff
        self._quiet_for(wait)
        if wait > self.policy.max_wait:
            raise RateLimitedError(self._rate_message(wait, response.status_code))

    def _quiet_for(self, seconds: float) -> None:
        with self._lock:
            self._quiet_until = max(self._quiet_until, self._clock() + seconds)

    def _rate_message(self, seconds: float, status: int | None = None) -> str:
        until = pd.Timestamp(self._clock() + seconds, unit="s", tz="UTC")
        what = "banned this IP" if status == 418 else "rate-limited this IP"
        return f"Binance has {what}; requests resume after {until:%Y-%m-%d %H:%M:%S} UTC (in {seconds:.0f} s)"

    def _track_weight(self, response: requests.Response) -> None:
        try:
            self.used_weight = int(response.headers["X-MBX-USED-WEIGHT-1M"])
        except (KeyError, ValueError):
            return
        if self.used_weight >= self.policy.weight_margin * self.policy.weight_limit:
            now = self._clock()
            pause = 60 - now % 60  # Binance resets the weight each minute
            limit = self.policy.weight_limit
            logger.warning("Binance request weight %d of %d: pausing %.0fs", self.used_weight, limit, pause)
            self._quiet_for(pause)

    # ------------------------------------------------------------------ clock

    def now(self) -> pd.Timestamp:
        """Binance server time (local clock plus the offset measured at the last synchronisation)."""
        local = self._clock()
        if self._offset is None or local - self._synced_at > self._resync_after:
            self.sync_time()
        return pd.Timestamp(round((self._clock() + (self._offset or 0.0)) * 1000), unit="ms", tz="UTC")

    def sync_time(self) -> None:
        """Measure the server-minus-local clock offset with ``/api/v3/time``."""
        before = self._clock()
        server_ms = self._get("/api/v3/time").get("serverTime")
        after = self._clock()
        if not isinstance(server_ms, int | float):
            raise MarketDataUnavailable("Binance /api/v3/time sent no serverTime")
        self._offset = server_ms / 1000 - (before + after) / 2
        self._synced_at = after

    # ------------------------------------------------------------------ MarketData

    def klines(
        self,
        symbol: str,
        interval: str,
        limit: int | None = 500,
        *,
        start: object | None = None,
        end: object | None = None,
    ) -> pd.DataFrame:
        symbol, interval = normalize_symbol(symbol), checked_interval(interval)
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        if limit is None and start is None:
            raise ValueError("limit=None needs start")
        now = self.now()
        cutoff = now if end is None else min(to_utc(end), now)
        boundary = candle_open_time(cutoff, interval)  # candles opening before it have closed
        newest = _ms(candle_open_time(boundary - pd.Timedelta(milliseconds=1), interval))
        last = _ms(boundary) - 1
        if start is not None:  # nothing closed since ``start`` is a normal answer (e.g. the monitor's catch-up)
            return klines_frame(self._forward(symbol, interval, _ms(to_utc(start)), last, limit, newest), boundary)
        frame = klines_frame(self._latest(symbol, interval, last, limit, newest), boundary)
        if frame.empty:  # a delisted or not yet listed symbol, or a time before its listing
            raise MarketDataError(f"Binance has no closed {interval} candles for {symbol} up to {format_time(cutoff)}")
        return frame

    def _latest(self, symbol: str, interval: str, end_ms: int, limit: int, newest: int) -> list[Row]:
        """The last ``limit`` candles opening at or before ``end_ms``, paging backwards."""
        pages: list[list[Row]] = []
        need = limit
        while need > 0:
            size = min(MAX_LIMIT, need)
            page = self._page(symbol, interval, None, end_ms, size, newest)
            if page:
                pages.insert(0, page)
            need -= len(page)
            if len(page) < size:
                break
            end_ms = int(page[0][0]) - 1
        return [row for page in pages for row in page]

    def _forward(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, limit: int | None, newest: int
    ) -> list[Row]:
        """The first ``limit`` (None: all) candles opening in ``[start_ms, end_ms]``, paging forwards."""
        rows: list[Row] = []
        while start_ms <= end_ms and (limit is None or len(rows) < limit):
            size = MAX_LIMIT if limit is None else min(MAX_LIMIT, limit - len(rows))
            page = self._page(symbol, interval, start_ms, end_ms, size, newest)
            rows += page
            if len(page) < size:
                break
            start_ms = int(page[-1][0]) + 1
        return rows

    def _page(self, symbol: str, interval: str, start_ms: int | None, end_ms: int, size: int, newest: int) -> list[Row]:
        """One ``/api/v3/klines`` request, served from the cache when the same closed candles were fetched.

        A page is cached when it cannot change: it ends before the newest closed candle, or contains it.
        """
        key = (symbol, interval, start_ms, end_ms, size)
        cached = self.pages.get(key)
        if cached is not None:
            return cached
        params: dict[str, Any] = {"symbol": symbol, "interval": interval, "limit": size, "endTime": end_ms}
        if start_ms is not None:
            params["startTime"] = start_ms
        page = self._get("/api/v3/klines", params)
        if not isinstance(page, list) or not all(isinstance(row, list) and len(row) >= 6 for row in page):
            raise MarketDataUnavailable(f"Binance sent klines for {symbol} {interval} in an unexpected shape")
        if end_ms < newest or (page and int(page[-1][0]) >= newest):
            self.pages.put(key, page)
        return page

    def price(self, symbol: str) -> float:
        body = self._get("/api/v3/ticker/price", {"symbol": normalize_symbol(symbol)})
        try:
            return float(body["price"])
        except (KeyError, TypeError, ValueError):
            raise MarketDataUnavailable(f"Binance sent no price for {symbol}") from None

    def validate_symbol(self, symbol: str) -> str:
        """The normalised symbol if Binance lists it as TRADING (``exchangeInfo?symbol=``, cached)."""
        name = normalize_symbol(symbol)
        if not re.fullmatch(r"[A-Z0-9]{2,20}", name):
            raise InvalidSymbolError(f"{symbol!r} is not a Binance symbol (expected something like BTCUSDT)")
        status = self._statuses.get(name)
        if status is None:
            try:
                info = self._get("/api/v3/exchangeInfo", {"symbol": name})
                status = next((s.get("status") for s in info.get("symbols", []) if s.get("symbol") == name), "")
            except InvalidSymbolError:
                status = ""
            self._statuses.put(name, status or "")
        if status != "TRADING":
            raise InvalidSymbolError(
                f"Binance has no symbol {name}" if not status else f"{name} is not trading on Binance ({status})"
            )
        return name

    def symbols(self) -> list[str]:
        """Every spot symbol with status TRADING (full ``exchangeInfo``, cached for an hour)."""
        if self._all_symbols is None or self._clock() - self._all_symbols[0] > 3600:
            info = self._get("/api/v3/exchangeInfo")
            listed = [(s.get("symbol"), s.get("status")) for s in info.get("symbols", []) if isinstance(s, dict)]
            for name, status in listed:
                self._statuses.put(name, status or "")
            self._all_symbols = (self._clock(), sorted(n for n, s in listed if s == "TRADING"))
        return list(self._all_symbols[1])

    def finest_interval(self, symbol: str, start: object) -> str:
        return "1m"

    def latency_ms(self) -> float:
        """Milliseconds for ``/api/v3/ping`` (retries included when it had to retry)."""
        began = time.perf_counter()
        self._get("/api/v3/ping")
        return (time.perf_counter() - began) * 1000


# ---------------------------------------------------------------------- pure helpers


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def api_error(status: int, body: Any, params: dict[str, Any]) -> MarketDataError:
    """The typed error for a Binance 4xx reply (``body``: its JSON, ``{"code": -1121, "msg": ...}``)."""
    code = body.get("code") if isinstance(body, dict) else None
    msg = str(body.get("msg", "")) if isinstance(body, dict) else ""
    symbol, interval = params.get("symbol", "?"), params.get("interval", "?")
    mentions = msg.lower()
    if code == -1121 or (code == -1100 and "symbol" in mentions):
        return InvalidSymbolError(f"Binance has no symbol {symbol}")
    if code == -1120 or (code == -1100 and "interval" in mentions):
        return InvalidIntervalError(f"Binance rejected the interval {interval!r} ({msg or code})")
    return MarketDataError(f"Binance refused the request (HTTP {status}, code {code}): {msg or 'no details'}")


def klines_frame(rows: list[Row], boundary: pd.Timestamp) -> pd.DataFrame:
    """A validated candle frame from Binance kline arrays, keeping only candles opening before ``boundary``."""
    empty = pd.DataFrame(columns=list(OHLCV), index=pd.DatetimeIndex([], tz="UTC"), dtype="float64")
    if not rows:
        return empty
    try:
        opens = np.array([int(row[0]) for row in rows], dtype=np.int64)
        values = np.array([[float(x) for x in row[1:6]] for row in rows], dtype=np.float64)
    except (TypeError, ValueError, IndexError):
        raise MarketDataUnavailable("Binance sent klines that are not numbers") from None
    frame = pd.DataFrame(values, index=pd.to_datetime(opens, unit="ms", utc=True), columns=list(OHLCV))
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    frame = frame[frame.index < boundary]
    try:
        return validate_candles(frame)
    except ValueError as exc:
        raise MarketDataUnavailable(f"Binance sent invalid candles: {exc}") from None
