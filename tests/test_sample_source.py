"""The sample market: real bundled candles, replay clock, resampling as Binance aligns candles."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from market.sample_source import (
    SampleSource,
    bucket_opens,
    can_build,
    default_start,
    read_klines_csv,
    replay_clock,
    resample,
)
from market.source import InvalidIntervalError, InvalidSymbolError, MarketData, MarketDataError
from market.timeframes import INTERVALS, candle_open_time, interval_timedelta
from tests.helpers import SAMPLE_DIR, make_candles, sample_candles

T = pd.Timestamp


class ManualClock:
    """A settable replay clock for tests."""

    def __init__(self, now: str) -> None:
        self.value = T(now, tz="UTC")

    def __call__(self) -> pd.Timestamp:
        return self.value


@pytest.fixture(scope="module")
def shared() -> SampleSource:
    """One source over the bundled files (parsed once for the module); tests set its clock."""
    return SampleSource(SAMPLE_DIR, clock=ManualClock("2026-04-01 12:00"))


def at(source: SampleSource, now: str) -> SampleSource:
    source._clock = ManualClock(now)
    return source


def test_is_a_market_data(shared):
    assert isinstance(shared, MarketData)
    assert shared.symbols() == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert shared.validate_symbol(" btc/usdt ") == "BTCUSDT"
    assert shared.latency_ms() == 0.0


# ------------------------------------------------------------ resampling against the bundled Binance files

PAIRS = [
    ("BTCUSDT", "1m", "1h"),
    ("BTCUSDT", "1m", "4h"),
    ("BTCUSDT", "1m", "1d"),
    ("BTCUSDT", "15m", "1h"),
    ("ETHUSDT", "5m", "1h"),
    ("ETHUSDT", "5m", "1d"),
    ("ETHUSDT", "15m", "4h"),
    ("SOLUSDT", "1h", "4h"),
    ("BTCUSDT", "4h", "1d"),
]


@pytest.mark.parametrize(("symbol", "finer", "coarser"), PAIRS)
def test_resampling_equals_binance_candles(symbol, finer, coarser):
    fine, coarse = sample_candles(symbol, finer), sample_candles(symbol, coarser)
    built = resample(fine, finer, coarser)
    common = built.index.intersection(coarse.index)
    assert len(common) >= 50
    assert len(common) == len(built)  # every resampled candle has its Binance counterpart
    ours, theirs = built.loc[common], coarse.loc[common]
    assert (
        ours[["open", "high", "low", "close"]].to_numpy() == theirs[["open", "high", "low", "close"]].to_numpy()
    ).all()
    np.testing.assert_allclose(ours["volume"], theirs["volume"], rtol=1e-9)


def test_minutes_to_quarters_compose_to_binance_hours():
    # The bundled 1m and 15m files do not overlap; 1m -> 15m -> 1h must still equal Binance's 1h candles.
    quarters = resample(sample_candles("BTCUSDT", "1m"), "1m", "15m")
    assert len(quarters) == 5184 and (quarters.index.minute % 15 == 0).all()
    hours = resample(quarters, "15m", "1h")
    pd.testing.assert_frame_equal(
        hours, sample_candles("BTCUSDT", "1h").loc[hours.index], check_freq=False, check_names=False, rtol=1e-12
    )


def test_source_serves_resampled_interval_where_no_file_covers(shared):
    # BTCUSDT has no 15m file in mid-2025: the source builds 15m from the 1m file.
    got = at(shared, "2025-07-01 10:07").klines("BTCUSDT", "15m", 8)
    minutes = sample_candles("BTCUSDT", "1m")
    expected = resample(minutes[minutes.index < T("2025-07-01 10:00", tz="UTC")], "1m", "15m").iloc[-8:]
    pd.testing.assert_frame_equal(got, expected)
    assert got.index[-1] == T("2025-07-01 09:45", tz="UTC")


def test_partial_buckets_at_file_edges_are_dropped():
    eth = sample_candles("ETHUSDT", "5m")  # starts 04:35 and ends 04:25 (+5m): both edge hours are partial
    hours = resample(eth, "5m", "1h")
    assert hours.index[0] == T("2025-09-22 05:00", tz="UTC")
    assert hours.index[-1] + pd.Timedelta(hours=1) <= eth.index[-1] + pd.Timedelta(minutes=5)


@pytest.mark.parametrize("interval", ["1w", "1M", "3d", "12h", "2h", "30m"])
def test_alignment_matches_binance_rules(shared, interval):
    candles = at(shared, "2026-04-09").klines("BTCUSDT", interval, 40)
    assert len(candles) >= 10
    for ts in candles.index:
        assert candle_open_time(ts, interval) == ts
    if interval == "1w":
        assert set(candles.index.day_of_week) == {0}
    if interval == "1M":
        assert set(candles.index.day) == {1}


def test_weekly_candle_is_the_aggregate_of_its_days(shared):
    weeks = at(shared, "2026-04-09").klines("BTCUSDT", "1w", 4)
    days = sample_candles("BTCUSDT", "1d")
    week = weeks.index[-1]
    seven = days[(days.index >= week) & (days.index < week + pd.Timedelta(days=7))]
    assert len(seven) == 7 and seven.index[0].weekday() == 0
    row = weeks.iloc[-1]
    assert (row["open"], row["high"], row["low"], row["close"]) == (
        seven["open"].iloc[0],
        seven["high"].max(),
        seven["low"].min(),
        seven["close"].iloc[-1],
    )


def test_bucket_opens_is_vectorised_candle_open_time():
    rng = np.random.default_rng(7)
    stamps = pd.DatetimeIndex(pd.to_datetime(rng.integers(1.5e12, 1.8e12, 200), unit="ms", utc=True))
    for interval in INTERVALS:
        assert list(bucket_opens(stamps, interval)) == [candle_open_time(ts, interval) for ts in stamps], interval


def test_which_intervals_build_which():
    assert can_build("1m", "15m") and can_build("5m", "1h") and can_build("1h", "1w") and can_build("1d", "1M")
    assert can_build("1d", "3d") and can_build("4h", "1d")
    assert not can_build("8h", "12h") and not can_build("3d", "1w") and not can_build("1w", "1M")
    assert not can_build("1h", "1h") and not can_build("4h", "1h")


# ------------------------------------------------------------ the clock: closed candles only


def test_no_candle_closes_after_now(shared):
    source = at(shared, "2026-03-10 13:59:59")
    for interval in ("15m", "1h", "4h", "1d", "1w"):
        candles = source.klines("ETHUSDT", interval, 50)
        assert candles.index[-1] + interval_timedelta(interval) <= source.now()
        assert candles.index[-1] + 2 * interval_timedelta(interval) > source.now()  # and none is missing


def test_a_candle_appears_exactly_when_it_closes(shared):
    before = at(shared, "2026-03-10 13:59:59.999").klines("BTCUSDT", "1h", 3)
    after = at(shared, "2026-03-10 14:00").klines("BTCUSDT", "1h", 3)
    assert before.index[-1] == T("2026-03-10 12:00", tz="UTC")
    assert after.index[-1] == T("2026-03-10 13:00", tz="UTC")
    pd.testing.assert_frame_equal(before.iloc[1:], after.iloc[:2])


def test_end_cuts_like_at(shared):
    source = at(shared, "2026-04-01 12:00")
    candles = source.klines("BTCUSDT", "4h", 5, end=T("2026-03-02 09:30", tz="UTC"))
    assert candles.index[-1] == T("2026-03-02 04:00", tz="UTC")
    assert len(candles) == 5
    future = source.klines("BTCUSDT", "4h", 5, end=T("2026-06-01", tz="UTC"))  # end after now: now wins
    assert future.index[-1] == T("2026-04-01 08:00", tz="UTC")


def test_start_returns_candles_from_start(shared):
    source = at(shared, "2026-04-01 12:00")
    since = source.klines("SOLUSDT", "1h", None, start=T("2026-04-01 05:30", tz="UTC"))
    assert list(since.index.hour) == [6, 7, 8, 9, 10, 11]
    first_two = source.klines("SOLUSDT", "1h", 2, start=T("2026-04-01 05:30", tz="UTC"))
    assert list(first_two.index.hour) == [6, 7]
    assert source.klines("SOLUSDT", "1h", None, start=T("2026-04-01 11:30", tz="UTC")).empty  # 12:00 has not closed


def test_start_returns_what_the_data_has_and_fails_only_on_nothing(shared):
    source = at(shared, "2026-04-01 12:00")
    tail = source.klines("BTCUSDT", "1m", None, start=T("2025-07-23 23:57", tz="UTC"))  # the 1m file ends 23:59
    assert list(tail.index.minute) == [57, 58, 59]
    with pytest.raises(MarketDataError, match="No sample data for BTCUSDT 1m candles from 2025-07-24 00:00"):
        source.klines("BTCUSDT", "1m", None, start=T("2025-07-24", tz="UTC"))


def test_replay_clock_advances_at_speed():
    ticks = iter([100.0, 100.0, 130.0])
    clock = replay_clock(T("2026-04-01", tz="UTC"), 60, monotonic=lambda: next(ticks))
    assert clock() == T("2026-04-01", tz="UTC")
    assert clock() == T("2026-04-01 00:30", tz="UTC")


def test_default_clock_starts_where_every_bundled_symbol_has_data():
    source = SampleSource(SAMPLE_DIR, speed=0)
    start = source.now()
    assert start == T("2026-04-09", tz="UTC")  # SOLUSDT's data ends 2026-04-16: seven days of runway
    for symbol in source.symbols():
        assert source.klines(symbol, "1h", 10).index[-1] == start - pd.Timedelta(hours=1)
        assert source.price(symbol) > 0


def test_default_start_prefers_the_time_most_symbols_cover():
    day = pd.Timedelta(days=1)
    spans = {
        "A": (T("2024-01-01", tz="UTC"), T("2024-03-01", tz="UTC")),
        "B": (T("2024-01-01", tz="UTC"), T("2024-03-01", tz="UTC")),
        "C": (T("2024-02-20", tz="UTC"), T("2024-06-01", tz="UTC")),  # mostly after the others
    }
    assert default_start(spans, 7 * day) == T("2024-02-23", tz="UTC")
    short = {"A": (T("2024-01-01", tz="UTC"), T("2024-01-03", tz="UTC"))}
    assert default_start(short, 7 * day) == T("2024-01-01", tz="UTC")  # never before the data


# ------------------------------------------------------------ price, finest interval, forming candle


def test_price_is_the_close_of_the_latest_finest_candle(shared):
    source = at(shared, "2025-07-01 10:07:30")
    assert source.finest_interval("BTCUSDT", source.now()) == "1m"
    minutes = sample_candles("BTCUSDT", "1m")
    assert source.price("BTCUSDT") == minutes.loc[T("2025-07-01 10:06", tz="UTC"), "close"]
    source = at(shared, "2026-04-01 12:20")
    assert source.finest_interval("BTCUSDT", source.now()) == "15m"
    assert source.price("BTCUSDT") == sample_candles("BTCUSDT", "15m").loc[T("2026-04-01 12:00", tz="UTC"), "close"]
    assert source.finest_interval("SOLUSDT", source.now()) == "1h"
    assert source.finest_interval("BTCUSDT", T("2023-05-01", tz="UTC")) == "4h"


def test_forming_candle_is_built_from_closed_finer_candles(shared):
    source = at(shared, "2026-03-10 14:50")
    forming = source.forming_candle("ETHUSDT", "1h")
    quarters = sample_candles("ETHUSDT", "15m").loc["2026-03-10 14:00":"2026-03-10 14:30"]
    assert forming.name == T("2026-03-10 14:00", tz="UTC")
    assert list(forming) == [
        quarters["open"].iloc[0],
        quarters["high"].max(),
        quarters["low"].min(),
        quarters["close"].iloc[-1],
        pytest.approx(quarters["volume"].sum()),
    ]
    assert source.price("ETHUSDT") == forming["close"]
    assert at(shared, "2026-03-10 14:10").forming_candle("ETHUSDT", "1h") is None  # nothing closed yet


# ------------------------------------------------------------ errors


def test_unknown_symbol_names_the_available_ones(shared):
    with pytest.raises(InvalidSymbolError, match="BTCUSDT, ETHUSDT, SOLUSDT"):
        shared.klines("XRPUSDT", "1h")
    with pytest.raises(InvalidSymbolError):
        shared.price("DOGEUSDT")


def test_bad_interval(shared):
    with pytest.raises(InvalidIntervalError, match="7m"):
        shared.klines("BTCUSDT", "7m")


@pytest.mark.parametrize(
    ("symbol", "interval", "now"),
    [
        ("SOLUSDT", "1h", "2026-07-01"),  # after SOLUSDT's data ends
        ("BTCUSDT", "5m", "2026-04-01"),  # 5m only exists where the 1m file is
        ("BTCUSDT", "15m", "2025-10-01"),  # between the 1m file and the 15m file
        ("ETHUSDT", "1h", "2023-06-01"),  # before the 1h data, and 4h cannot build 1h
    ],
)
def test_a_period_without_data_is_a_clear_error(shared, symbol, interval, now):
    with pytest.raises(MarketDataError, match=f"No sample data for {symbol} {interval}.*covers"):
        at(shared, now).klines(symbol, interval, 10)


def test_no_data_for_price_names_the_files(shared):
    with pytest.raises(MarketDataError, match="No sample data for SOLUSDT"):
        at(shared, "2026-07-01").price("SOLUSDT")


def test_empty_folder(tmp_path):
    with pytest.raises(MarketDataError, match="no sample data files"):
        SampleSource(tmp_path)


# ------------------------------------------------------------ file formats and given frames


def test_headerless_binance_archive_with_microseconds(tmp_path):
    candles = make_candles([(10, 12, 9, 11), (11, 13, 10, 12), (12, 12.5, 11, 11.5)], start="2025-02-01", freq="1h")
    us = candles.index.as_unit("us").asi8
    rows = [
        f"{t},{o},{h},{lo},{c},{v},{t + 3_599_999_999},1.0,5,0.1,0.2,0"
        for t, (o, h, lo, c, v) in zip(us, candles.to_numpy(), strict=True)
    ]
    path = tmp_path / "ABCUSDT-1h.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(rows) + "\n")
    pd.testing.assert_frame_equal(read_klines_csv(path), candles, check_freq=False)
    (tmp_path / "ABCUSDT-2h.csv").write_text("open_time,open,high,low,close,volume,extra\n")  # header only: ignored
    source = SampleSource(tmp_path, clock=ManualClock("2025-02-01 03:00"))
    assert source.symbols() == ["ABCUSDT"]
    assert source.klines("ABCUSDT", "1h", 10).equals(candles)


def test_given_frames_are_served(tmp_path):
    candles = make_candles([(1, 2, 0.5, 1.5)] * 6, start="2025-01-06", freq="1h")
    source = SampleSource(frames={("XYZUSDT", "1h"): candles}, clock=ManualClock("2025-01-06 05:30"))
    got = source.klines("XYZUSDT", "2h", 10)
    assert list(got.index.hour) == [0, 2]
    assert got["volume"].tolist() == [200.0, 200.0]


def test_concurrent_first_use_agrees_with_sequential_use():
    from concurrent.futures import ThreadPoolExecutor

    source = SampleSource(SAMPLE_DIR, clock=ManualClock("2026-04-01 12:00"))
    reference = SampleSource(SAMPLE_DIR, clock=ManualClock("2026-04-01 12:00"))
    jobs = [(symbol, interval) for symbol in ("BTCUSDT", "ETHUSDT") for interval in ("1h", "4h", "1w")] * 3
    with ThreadPoolExecutor(8) as pool:
        frames = list(pool.map(lambda job: source.klines(*job, 50), jobs))
    for (symbol, interval), frame in zip(jobs, frames, strict=True):
        pd.testing.assert_frame_equal(frame, reference.klines(symbol, interval, 50))


def test_a_series_without_candles_is_a_market_data_error_not_an_empty_frame():
    empty = pd.DataFrame(columns=["open", "high", "low", "close", "volume"], index=pd.DatetimeIndex([], tz="UTC"))
    source = SampleSource(frames={("ABCUSDT", "1h"): empty.astype("float64")}, clock=lambda: T("2026-01-01", tz="UTC"))
    with pytest.raises(MarketDataError, match="No sample data for ABCUSDT 2h") as caught:
        source.klines("ABCUSDT", "2h", 500)
    assert "\n" not in str(caught.value)
