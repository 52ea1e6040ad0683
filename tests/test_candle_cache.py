"""The candle cache over the Binance client and tests/fake_binance.py (real HTTP, the server's clock controlled):
requests counted at the server, answers compared with the uncached client at the same clock."""

from __future__ import annotations

import pandas as pd
import pytest

from config import Settings
from market.binance_client import BinanceClient, RetryPolicy
from market.candle_cache import CandleCache
from market.factory import create_market_data
from market.source import InvalidSymbolError
from tests.fake_binance import FakeBinance

T = pd.Timestamp
NOW = T("2026-04-01 12:20", tz="UTC")
KLINES = "/api/v3/klines"
FETCH = 750  # engine.windows.WINDOW_FETCH
POLICY = RetryPolicy(read_timeout=30.0, connect_timeout=30.0)


@pytest.fixture(scope="module")
def server():
    with FakeBinance(now=NOW) as fake:
        yield fake


@pytest.fixture
def fake(server):
    server.now, server.used_weight = NOW, 0
    server.requests.clear()
    server._script.clear()
    server.statuses = {s: "TRADING" for s in server.source.symbols()}
    return server


def client(fake: FakeBinance) -> BinanceClient:
    """A client on the server's clock (its ``now()`` follows ``fake.now`` without waiting for a resync)."""
    return BinanceClient(fake.url, policy=POLICY, clock=lambda: fake.now.timestamp())


@pytest.fixture
def cached(fake):
    market = CandleCache(client(fake))
    yield market
    market.close()


def uncached(fake: FakeBinance, *args, **kw) -> pd.DataFrame:
    """The same request from a fresh client at the server's current clock."""
    plain = client(fake)
    try:
        return plain.klines(*args, **kw)
    finally:
        plain.close()


def klines_requests(fake: FakeBinance) -> list[dict[str, str]]:
    return [r.params for r in fake.requests if r.path == KLINES]


def test_repeat_within_the_candle_sends_nothing_and_a_close_fetches_only_the_new_candle(fake, cached):
    first = cached.klines("BTCUSDT", "1h", FETCH)
    assert len(first) == FETCH and len(klines_requests(fake)) == 1
    pd.testing.assert_frame_equal(first, uncached(fake, "BTCUSDT", "1h", FETCH))

    fake.requests.clear()
    fake.now = NOW + pd.Timedelta(minutes=30)  # same hour: no candle can have closed
    again = cached.klines("BTCUSDT", "1h", FETCH)
    assert klines_requests(fake) == []
    pd.testing.assert_frame_equal(again, first)

    fake.now = NOW + pd.Timedelta(hours=1)  # the 12:00 candle has closed
    after = cached.klines("BTCUSDT", "1h", FETCH)
    (asked,) = klines_requests(fake)
    assert int(asked["startTime"]) == T("2026-04-01 12:00", tz="UTC").value // 1_000_000
    assert asked["limit"] == "1"
    assert after.index[-1] == T("2026-04-01 12:00", tz="UTC") and len(after) == FETCH
    pd.testing.assert_frame_equal(after, uncached(fake, "BTCUSDT", "1h", FETCH))


def test_several_closed_candles_come_in_one_request_and_the_answer_equals_the_uncached(fake, cached):
    cached.klines("ETHUSDT", "15m", 500)
    fake.requests.clear()
    fake.now = NOW + pd.Timedelta(hours=5, minutes=7)
    got = cached.klines("ETHUSDT", "15m", 500)
    (asked,) = klines_requests(fake)
    assert asked["limit"] == "20"  # 5 hours of 15m candles (12:15 .. 17:00)
    pd.testing.assert_frame_equal(got, uncached(fake, "ETHUSDT", "15m", 500))
    assert len(cached._series[("ETHUSDT", "15m")].frame) == 520  # appended: the older ones stay (cap 750)


def test_smaller_and_past_requests_come_from_the_cache_larger_ones_refetch(fake, cached):
    cached.klines("BTCUSDT", "4h", 25)
    fake.requests.clear()
    bigger = cached.klines("BTCUSDT", "4h", FETCH)  # more than cached: one full request
    assert len(klines_requests(fake)) == 1
    pd.testing.assert_frame_equal(bigger, uncached(fake, "BTCUSDT", "4h", FETCH))

    fake.requests.clear()
    small = cached.klines("btc/usdt", "4h", 25)  # same series, normalised
    end = NOW - pd.Timedelta(days=3)
    past = cached.klines("BTCUSDT", "4h", 100, end=end)
    assert klines_requests(fake) == []
    pd.testing.assert_frame_equal(small, uncached(fake, "BTCUSDT", "4h", 25))
    pd.testing.assert_frame_equal(past, uncached(fake, "BTCUSDT", "4h", 100, end=end))


def test_start_requests_and_limits_over_the_cap_pass_through(fake, cached):
    cached.klines("BTCUSDT", "1h", FETCH)
    fake.requests.clear()
    start = NOW - pd.Timedelta(hours=10)
    got = cached.klines("BTCUSDT", "1h", None, start=start)
    assert len(klines_requests(fake)) == 1
    pd.testing.assert_frame_equal(got, uncached(fake, "BTCUSDT", "1h", None, start=start))


def test_series_are_bounded_least_recently_used_first(fake):
    market = CandleCache(client(fake), max_series=2, max_candles=100)
    market.klines("BTCUSDT", "1h", 100)
    market.klines("ETHUSDT", "1h", 100)
    market.klines("BTCUSDT", "1h", 100)  # BTC used last: ETH is the oldest
    market.klines("SOLUSDT", "1h", 100)
    assert len(market) == 2 and set(market._series) == {("BTCUSDT", "1h"), ("SOLUSDT", "1h")}
    fetches = market.fetches
    market.klines("BTCUSDT", "1h", 100)
    assert market.fetches == fetches
    market.klines("ETHUSDT", "1h", 100)  # evicted: asked of the client again (whose own page cache answers)
    assert market.fetches == fetches + 1
    fake.now = NOW + pd.Timedelta(hours=3)
    market.klines("ETHUSDT", "1h", 100)
    assert len(market._series[("ETHUSDT", "1h")].frame) == 100  # the cap per series holds after appending
    market.close()


def test_errors_propagate_and_are_not_cached(fake, cached):
    with pytest.raises(InvalidSymbolError):
        cached.klines("NOPEUSDT", "1h", 10)
    assert len(cached) == 0


def test_factory_wraps_binance_and_keeps_the_client_reachable(fake):
    market = create_market_data(Settings(market_data="binance", binance_api_base_url=fake.url))
    assert isinstance(market, CandleCache) and isinstance(market.market, BinanceClient)
    assert market.base_url == fake.url  # other attributes are the client's
    market.close()
