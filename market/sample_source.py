"""The sample market: real Binance candles from ``SYMBOL-INTERVAL.csv[.gz]`` files, replayed on a clock.

Files: Binance kline columns, with or without a header row; at least open_time (epoch ms, or µs as in the
newer data.binance.vision archives), open, high, low, close, volume; extra columns are ignored.

Series: the candles of ``(symbol, interval)`` come from the file of that interval where it has data, and from
the finer files elsewhere, resampled exactly as Binance aligns candles (``timeframes.candle_open_time``): open of
the first, max high, min low, close of the last, summed volume. A finer interval builds a coarser one when its
length divides it (for ``1w``/``1M``: divides a day). A resampled candle is kept only when the finer file covers
its whole span; gaps inside a file (exchange halts) are tolerated as Binance does.

Clock: ``now()`` replays time. By default it starts seven days before the end of one symbol's data, the symbol
chosen so that most symbols have data then (``default_start``), and advances in real time times ``speed``. Tests
inject ``clock``. Candles never close after ``now()``; a request whose latest closed candle lies outside the
data raises a MarketDataError naming what the data covers.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ict_modules.core import OHLCV, validate_candles
from market.source import (
    InvalidIntervalError,
    InvalidSymbolError,
    MarketDataError,
    checked_interval,
    format_time,
    normalize_symbol,
    to_utc,
)
from market.timeframes import INTERVAL_MS, candle_open_time, interval_timedelta

logger = logging.getLogger(__name__)

FILE_NAME = re.compile(r"^([A-Z0-9]+)-(\d+[mhdwM])\.csv(\.gz)?$")
BINANCE_COLUMNS = ("open_time", *OHLCV, "close_time", "quote_volume", "trades", "taker_base", "taker_quote", "ignore")
DAY_MS = 86_400_000
DEFAULT_RUNWAY = pd.Timedelta(days=7)
PING_TIMEOUT_SECONDS = 3.0
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"

DEMO_INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d", "1w")

Clock = Callable[[], pd.Timestamp]
Span = tuple[pd.Timestamp, pd.Timestamp]


class NoSampleInterval(InvalidIntervalError):
    """The sample data has no candles of this interval at the clock's time (waiting will not help): the message
    names the intervals it has then. A bad-input error, not a transient market-data failure."""


# ---------------------------------------------------------------- files


def discover_files(data_dir: Path) -> dict[tuple[str, str], Path]:
    """``(symbol, interval) -> path`` for every ``SYMBOL-INTERVAL.csv`` / ``.csv.gz`` in ``data_dir``."""
    found: dict[tuple[str, str], Path] = {}
    for path in sorted(Path(data_dir).glob("*.csv*")):
        match = FILE_NAME.match(path.name)
        if match and match[2] in INTERVAL_MS:
            found.setdefault((match[1], match[2]), path)
    return found


def read_klines_csv(path: Path) -> pd.DataFrame:
    """A validated candle frame from a Binance kline CSV (header optional, ms or µs open times)."""
    first = pd.read_csv(path, header=None, nrows=1, dtype=str).iat[0, 0]
    if str(first).strip().isdigit():
        raw = pd.read_csv(path, header=None)
        raw.columns = list(BINANCE_COLUMNS[: raw.shape[1]])
    else:
        raw = pd.read_csv(path)
    times = raw["open_time"].to_numpy(dtype=np.int64)
    unit = "us" if len(times) and times.max() >= 10**14 else "ms"
    frame = raw.loc[:, list(OHLCV)]
    frame.index = pd.to_datetime(times, unit=unit, utc=True)
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    try:
        return validate_candles(frame)
    except ValueError as exc:
        raise MarketDataError(f"sample file {path.name} is not a valid candle file: {exc}") from None


# ---------------------------------------------------------------- resampling


def can_build(finer: str, coarser: str) -> bool:
    """True when ``finer`` candles tile every ``coarser`` candle exactly (Binance alignment)."""
    if finer in ("1w", "1M") or INTERVAL_MS[finer] >= INTERVAL_MS[coarser]:
        return False
    unit = DAY_MS if coarser in ("1w", "1M") else INTERVAL_MS[coarser]
    return unit % INTERVAL_MS[finer] == 0


def bucket_opens(index: pd.DatetimeIndex, interval: str) -> pd.DatetimeIndex:
    """Vectorised ``candle_open_time``: the open time of the ``interval`` candle containing each timestamp."""
    if interval == "1M":
        day = index.normalize()
        return day - pd.to_timedelta(day.day - 1, unit="D")
    if interval == "1w":
        day = index.normalize()
        return day - pd.to_timedelta(day.day_of_week, unit="D")
    step = INTERVAL_MS[interval]
    ms = index.as_unit("ms").asi8
    return pd.DatetimeIndex(pd.to_datetime((ms // step) * step, unit="ms", utc=True))


def close_times(opens: pd.DatetimeIndex, interval: str) -> pd.DatetimeIndex:
    """Open time plus one candle (a calendar month for ``1M``)."""
    if interval == "1M":
        return pd.DatetimeIndex([ts + pd.DateOffset(months=1) for ts in opens])
    return opens + interval_timedelta(interval)


def resample(candles: pd.DataFrame, source: str, interval: str) -> pd.DataFrame:
    """Aggregate ``source`` candles into ``interval`` candles, keeping those whose span the data covers.

    Open = first open, high = max, low = min, close = last close, volume = sum. A bucket is kept when
    ``first source open <= bucket open`` and ``bucket close <= last source close``.
    """
    if candles.empty:
        return candles
    grouped = candles.groupby(bucket_opens(candles.index, interval))
    out = pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
        }
    )
    covered_until = candles.index[-1] + interval_timedelta(source)
    keep = (out.index >= candles.index[0]) & (close_times(out.index, interval) <= covered_until)
    out = out[keep]
    out.index.name = None
    return validate_candles(out)


def merge_spans(spans: list[Span]) -> tuple[Span, ...]:
    """Union of overlapping or touching ``(start, end)`` spans, sorted."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class Series:
    """All candles of one (symbol, interval) and the spans ``[first open, last close]`` the data covers."""

    candles: pd.DataFrame
    spans: tuple[Span, ...]

    def span_closing(self, boundary: pd.Timestamp) -> Span | None:
        """The span that holds the candle closing at ``boundary`` (``start < boundary <= end``)."""
        return next((s for s in self.spans if s[0] < boundary <= s[1]), None)

    def overlaps(self, start: pd.Timestamp, end: pd.Timestamp) -> bool:
        """True when some span shares time with ``[start, end)``."""
        return any(a < end and b > start for a, b in self.spans)

    def describe(self) -> str:
        return ", ".join(f"{format_time(a)} to {format_time(b)}" for a, b in self.spans) or "nothing"


def build_series(files: dict[str, pd.DataFrame], interval: str) -> Series:
    """The ``interval`` series from a symbol's files (``interval -> candles``): its own file first, then finer ones.

    Where several sources have a candle, the interval's own file wins, then the finest resampled one.
    """
    sources = [interval] if interval in files else []
    sources += sorted((i for i in files if can_build(i, interval)), key=INTERVAL_MS.__getitem__)
    parts, spans = [], []
    for source in sources:
        part = files[source] if source == interval else resample(files[source], source, interval)
        if part.empty:
            continue
        parts.append(part)
        spans.append((part.index[0], close_times(part.index[-1:], interval)[0]))
    if not parts:
        return Series(pd.DataFrame(columns=list(OHLCV), index=pd.DatetimeIndex([], tz="UTC"), dtype="float64"), ())
    candles = pd.concat(parts)
    candles = candles[~candles.index.duplicated(keep="first")].sort_index()
    return Series(candles, merge_spans(spans))


# ---------------------------------------------------------------- clock


def replay_clock(start: pd.Timestamp, speed: float = 1.0, *, monotonic: Callable[[], float] = time.monotonic) -> Clock:
    """A clock that reads ``start`` now and advances ``speed`` replay seconds per real second (0: frozen)."""
    origin, t0 = to_utc(start), monotonic()
    return lambda: origin + pd.Timedelta(seconds=(monotonic() - t0) * speed)


def default_start(spans: dict[str, Span], runway: pd.Timedelta = DEFAULT_RUNWAY) -> pd.Timestamp:
    """Where the replay starts: ``runway`` before the end of one symbol's data, chosen so most symbols have data.

    ``spans``: symbol -> (first open, last close) over all its files. Candidates are each symbol's end minus
    ``runway`` (floored to the hour, not before its first candle); the winner is the candidate inside the most
    symbols' spans, the latest on a tie.
    """
    if not spans:
        raise MarketDataError("no sample data files (SYMBOL-INTERVAL.csv or .csv.gz) were found")
    candidates = [max((end - runway).floor("h"), first.ceil("h")) for first, end in spans.values()]
    covered = lambda t: sum(first <= t < end for first, end in spans.values())  # noqa: E731
    return max(candidates, key=lambda t: (covered(t), t))


# ---------------------------------------------------------------- source


class SampleSource:
    """``MarketData`` over a folder of Binance kline files, replayed on a clock (see the module docstring).

    Args:
        data_dir: the folder of ``SYMBOL-INTERVAL.csv[.gz]`` files.
        clock: returns "now" (UTC); default ``replay_clock(start or default_start(...), speed)``, created on
            first use.
        start, speed: the default clock's start (UTC) and speed (replay seconds per real second).
        frames: ``{(symbol, interval): candles}`` to serve instead of (or on top of) files (tests, fake server).
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        clock: Clock | None = None,
        start: object | None = None,
        speed: float = 1.0,
        frames: dict[tuple[str, str], pd.DataFrame] | None = None,
    ) -> None:
        self._paths = discover_files(Path(data_dir)) if data_dir is not None else {}
        self._frames = {key: validate_candles(frame) for key, frame in (frames or {}).items()}  # + parsed files
        self._keys = frozenset(self._paths) | frozenset(self._frames)  # (symbol, interval) of every source
        self._clock = clock
        self._start = to_utc(start) if start is not None else None
        self._speed = speed
        self._series: dict[tuple[str, str], Series] = {}
        self._lock = threading.RLock()
        if not self._paths and not self._frames:
            raise MarketDataError(f"no sample data files (SYMBOL-INTERVAL.csv or .csv.gz) in {data_dir}")

    # -- data

    def _candles(self, symbol: str, interval: str) -> pd.DataFrame:
        """One file's (or given frame's) candles, parsed once."""
        key = (symbol, interval)
        with self._lock:
            if key not in self._frames:
                self._frames[key] = read_klines_csv(self._paths[key])
                logger.debug("loaded %s (%d candles)", self._paths[key].name, len(self._frames[key]))
            return self._frames[key]

    def _files(self, symbol: str) -> dict[str, pd.DataFrame]:
        return {interval: self._candles(symbol, interval) for sym, interval in sorted(self._keys) if sym == symbol}

    def series(self, symbol: str, interval: str) -> Series:
        """Every candle of ``(symbol, interval)`` in the data, regardless of the clock (built once)."""
        symbol, interval = self.validate_symbol(symbol), checked_interval(interval)
        with self._lock:
            if (symbol, interval) not in self._series:
                self._series[(symbol, interval)] = build_series(self._files(symbol), interval)
            return self._series[(symbol, interval)]

    def file_spans(self, symbol: str) -> dict[str, Span]:
        """``interval -> (first open, last close)`` of each of the symbol's own files."""
        return {
            interval: (candles.index[0], close_times(candles.index[-1:], interval)[0])
            for interval, candles in self._files(self.validate_symbol(symbol)).items()
            if not candles.empty
        }

    # -- MarketData

    def symbols(self) -> list[str]:
        return sorted({symbol for symbol, _ in self._keys})

    def validate_symbol(self, symbol: str) -> str:
        name = normalize_symbol(symbol)
        available = self.symbols()
        if name not in available:
            raise InvalidSymbolError(
                f"Unknown symbol {symbol!r}: the sample data has {', '.join(available)} (MARKET_DATA=sample)"
            )
        return name

    def now(self) -> pd.Timestamp:
        with self._lock:
            if self._clock is None:
                start = self._start or default_start(self.data_spans())
                logger.info("sample replay clock starts at %s (speed %g)", format_time(start), self._speed)
                self._clock = replay_clock(start, self._speed)
        return to_utc(self._clock()).floor("us")  # whole µs: to_pydatetime() would warn about nanoseconds

    def data_spans(self) -> dict[str, Span]:
        """``symbol -> (first open, last close)`` over all the symbol's files."""
        spans = {symbol: self.file_spans(symbol).values() for symbol in self.symbols()}
        return {s: (min(a for a, _ in v), max(b for _, b in v)) for s, v in spans.items() if v}

    def klines(
        self,
        symbol: str,
        interval: str,
        limit: int | None = 500,
        *,
        start: object | None = None,
        end: object | None = None,
    ) -> pd.DataFrame:
        symbol, interval = self.validate_symbol(symbol), checked_interval(interval)
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        if limit is None and start is None:
            raise ValueError("limit=None needs start")
        now = self.now()
        cutoff = now if end is None else min(to_utc(end), now)
        boundary = candle_open_time(cutoff, interval)  # candles opening before it have closed by the cutoff
        series = self.series(symbol, interval)
        index = series.candles.index
        if start is not None:  # what the data has in [start, cutoff]; an error only when it has nothing there
            start = to_utc(start)
            chosen = series.candles[(index >= start) & (index < boundary)]
            if chosen.empty and start < boundary and not series.overlaps(start, boundary):
                raise self._no_data(series, symbol, interval, f"from {format_time(start)} to {format_time(boundary)}")
            return (chosen if limit is None else chosen.iloc[:limit]).copy()
        span = series.span_closing(boundary)  # the latest candle must be in the data: never a stale window
        if span is None:
            if end is None:  # "now" is outside this interval's data: say what the demo has now
                raise self._no_interval(series, symbol, interval, now)
            raise self._no_data(series, symbol, interval, f"closing at {format_time(boundary)}")
        return series.candles[(index >= span[0]) & (index < boundary)].iloc[-limit:].copy()

    @staticmethod
    def _no_data(series: Series, symbol: str, interval: str, when: str) -> MarketDataError:
        return MarketDataError(
            f"No sample data for {symbol} {interval} candles {when}; "
            f"the data covers {series.describe()} (set SAMPLE_START inside it)"
        )

    def intervals_at(self, symbol: str, at: object | None = None) -> list[str]:
        """The :data:`DEMO_INTERVALS` whose latest candle at ``at`` (default now) is in the data."""
        at = self.now() if at is None else to_utc(at)
        return [i for i in DEMO_INTERVALS if self.series(symbol, i).span_closing(candle_open_time(at, i)) is not None]

    def _no_interval(self, series: Series, symbol: str, interval: str, now: pd.Timestamp) -> NoSampleInterval:
        has = self.intervals_at(symbol, now)
        return NoSampleInterval(
            f"No sample data for {symbol} {interval} candles at {format_time(now)}; the data covers "
            f"{series.describe()}; {symbol} has {', '.join(has) or 'no timeframe'} there (MARKET_DATA=sample)"
        )

    def finest_interval(self, symbol: str, start: object) -> str:
        """The finest interval whose file covers ``start`` (first open <= start <= last close)."""
        at = to_utc(start)
        spans = self.file_spans(symbol)
        covering = [i for i, (a, b) in spans.items() if a <= at <= b]
        if not covering:
            described = ", ".join(f"{i}: {format_time(a)} to {format_time(b)}" for i, (a, b) in spans.items())
            raise MarketDataError(f"No sample data for {symbol} at {format_time(at)} ({described})")
        return min(covering, key=INTERVAL_MS.__getitem__)

    def price(self, symbol: str) -> float:
        """Close of the latest finest candle closed at ``now()``."""
        now = self.now()
        candles = self.klines(symbol, self.finest_interval(symbol, now), 1, end=now)
        return float(candles["close"].iloc[-1])

    def forming_candle(self, symbol: str, interval: str, at: object | None = None) -> pd.Series | None:
        """The ``interval`` candle still forming at ``at`` (default now), built from the finest closed candles.

        Returns open/high/low/close/volume named by its open time, or None when no finer candle closed in it yet.
        """
        at = self.now() if at is None else to_utc(at)
        opened = candle_open_time(at, checked_interval(interval))
        finer = [i for i, (a, b) in self.file_spans(symbol).items() if a <= at <= b and can_build(i, interval)]
        if not finer:
            return None
        source = min(finer, key=INTERVAL_MS.__getitem__)
        candles = self.series(symbol, source).candles
        closed = candles[(candles.index >= opened) & (candles.index + interval_timedelta(source) <= at)]
        if closed.empty:
            return None
        values = [closed["open"].iloc[0], closed["high"].max(), closed["low"].min(), closed["close"].iloc[-1]]
        return pd.Series([*values, closed["volume"].sum()], index=list(OHLCV), name=opened, dtype="float64")

    def latency_ms(self) -> float:
        return 0.0


# ---------------------------------------------------------------- offline fallback


def binance_reachable(base_url: str, timeout: float = PING_TIMEOUT_SECONDS) -> tuple[bool, str]:
    """Quick ``/api/v3/ping``: (reachable, reason if not)."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/api/v3/ping", timeout=timeout) as response:
            return response.status == 200, f"HTTP {response.status}"
    except Exception as exc:
        return False, str(getattr(exc, "reason", exc))[:120]


def offline_fallback(settings, notify: Callable[[str], object]):
    """``settings`` with ``market_data="sample"`` when it names Binance and one quick ping fails, else unchanged.

    The one fallback every entry point shares (console, signal, backtest, train): a fresh clone works offline
    instead of failing after the client's retries. ``notify`` gets the one-line notice.
    """
    if getattr(settings, "market_data", None) != "binance":
        return settings
    ok, reason = binance_reachable(settings.binance_api_base_url)
    if ok:
        return settings
    notify(f"Binance is unreachable ({reason}); using the bundled sample data (MARKET_DATA=sample).")
    data_dir = Path(settings.sample_data_dir)
    return replace(settings, market_data="sample", sample_data_dir=data_dir if data_dir.is_dir() else BUNDLED_DIR)
