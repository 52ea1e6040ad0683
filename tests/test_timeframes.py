import pandas as pd
import pytest

from market.timeframes import candle_open_time, interval_timedelta, parse_interval


def test_parse_interval():
    assert parse_interval("1h") == "1h" and parse_interval("4H") == "4h" and parse_interval(" 1d ") == "1d"
    assert parse_interval("1M") == "1M" and parse_interval("1m") == "1m"
    for bad in ("7h", "", "1hour", "m1"):
        with pytest.raises(ValueError, match="unknown timeframe"):
            parse_interval(bad)


def test_binance_alignment():
    t = pd.Timestamp("2025-07-23 13:37:10", tz="UTC")  # a Wednesday
    assert candle_open_time(t, "4h") == pd.Timestamp("2025-07-23 12:00", tz="UTC")
    assert candle_open_time(t, "15m") == pd.Timestamp("2025-07-23 13:30", tz="UTC")
    assert candle_open_time(t, "1w") == pd.Timestamp("2025-07-21", tz="UTC")  # Monday
    assert candle_open_time(t, "1M") == pd.Timestamp("2025-07-01", tz="UTC")
    assert interval_timedelta("1h") == pd.Timedelta(hours=1)
