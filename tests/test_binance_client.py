"""The Binance client over real HTTP against tests/fake_binance.py: paging, closed candles, faults, cache."""

from __future__ import annotations

import re
import threading
from dataclasses import replace

import pandas as pd
import pytest
import requests

import ict_signal_engine
from config import Settings
from market.binance_client import BinanceClient, RetryPolicy, api_error, klines_frame
from market.factory import create_market_data
from market.sample_source import SampleSource
from market.source import (
    InvalidIntervalError,
    InvalidSymbolError,
    MarketData,
    MarketDataError,
    MarketDataUnavailable,
    RateLimitedError,
    RestrictedLocationError,
)
from tests.fake_binance import SAMPLE_DIR, FakeBinance, Reply

T = pd.Timestamp
NOW = T("2026-04-01 12:20", tz="UTC")
KLINES = "/api/v3/klines"


@pytest.fixture(scope="module")
def server():
    with FakeBinance(now=NOW) as fake:
        yield fake


@pytest.fixture
def fake(server):
    """The shared server, reset: clock at NOW, empty script and log, zero weight."""
    server.now, server.used_weight = NOW, 0
    server.requests.clear()
    server._script.clear()
    server.statuses = {s: "TRADING" for s in server.source.symbols()}
    return server


GENEROUS = 30.0  # seconds: timeouts that are not the subject of a test never fire, however loaded the machine
SHORT = 0.3  # the read timeout of timeout tests, whose server never answers (Reply.silent)


class World:
    """One clock for the test: the fake server's ``now``; the client's sleeps advance it.

    Timeouts are generous unless a test is about them; ``expect_timeout()`` makes the next read timeout short
    (for a ``Reply.silent()``) and the retries after it generous again.
    """

    def __init__(self, fake: FakeBinance, **policy: float) -> None:
        self.fake = fake
        self.sleeps: list[float] = []
        self.relax_after_sleep = False
        defaults = {"read_timeout": GENEROUS, "connect_timeout": GENEROUS}
        self.client = BinanceClient(
            fake.url,
            policy=RetryPolicy(**{**defaults, **policy}),
            sleep=self.sleep,
            clock=lambda: fake.now.timestamp(),
            jitter=lambda: 0.5,
        )

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.fake.now += pd.Timedelta(seconds=seconds)
        if self.relax_after_sleep:
            self.client.policy = replace(self.client.policy, read_timeout=GENEROUS)

    def expect_timeout(self, *, relax_after_sleep: bool) -> None:
        """Sync the clock first (generous), then read with the SHORT timeout."""
        self.client.now()
        self.client.policy = replace(self.client.policy, read_timeout=SHORT)
        self.relax_after_sleep = relax_after_sleep


@pytest.fixture
def world(fake):
    w = World(fake)
    yield w
    w.client.close()


def expected(interval: str, limit: int | None = 500, *, now=NOW, symbol="BTCUSDT", **kw) -> pd.DataFrame:
    """The same request answered by the sample source at the same clock."""
    return SampleSource(SAMPLE_DIR, clock=lambda: now).klines(symbol, interval, limit, **kw)


# ---------------------------------------------------------------- candles


def test_is_a_market_data(world):
    assert isinstance(world.client, MarketData)
    assert world.client.finest_interval("BTCUSDT", NOW) == "1m"
    assert world.client.now() == NOW


def test_klines_are_the_closed_candles(world, fake):
    got = world.client.klines("BTCUSDT", "1h", 5)
    pd.testing.assert_frame_equal(got, expected("1h", 5))
    assert got.index[-1] == T("2026-04-01 11:00", tz="UTC")
    assert got.dtypes.eq("float64").all() and str(got.index.tz) == "UTC"
    raw = requests.get(f"{fake.url}{KLINES}", params={"symbol": "BTCUSDT", "interval": "1h", "limit": 2}).json()
    assert raw[-1][0] == int(T("2026-04-01 12:00", tz="UTC").timestamp() * 1000)  # Binance sends the forming one


def test_forming_candle_is_dropped_even_with_a_skewed_local_clock(fake):
    world = World(fake)
    world.client._clock = lambda: fake.now.timestamp() + 3600  # local clock an hour fast
    got = world.client.klines("ETHUSDT", "15m", 3)
    assert world.client.now() == NOW  # server time, not the local clock
    assert got.index[-1] == T("2026-04-01 12:00", tz="UTC")


def test_klines_frame_drops_rows_that_have_not_closed():
    boundary = T("2026-04-01 12:00", tz="UTC")
    rows = [
        [int(ts.timestamp() * 1000), "1", "2", "0.5", "1.5", "10", 0]
        for ts in (boundary - pd.Timedelta("1h"), boundary)
    ]
    frame = klines_frame(rows, boundary)
    assert list(frame.index) == [boundary - pd.Timedelta("1h")]
    with pytest.raises(MarketDataUnavailable, match="invalid candles"):
        klines_frame([[rows[0][0], "1", "0.5", "2", "1.5", "10"]], boundary)  # high below low


def test_long_history_is_paged(world, fake):
    got = world.client.klines("BTCUSDT", "1h", 2500)
    assert fake.count(KLINES) == 3
    assert all(int(r.params["limit"]) <= 1000 for r in fake.requests if r.path == KLINES)
    pd.testing.assert_frame_equal(got, expected("1h", 2500))


def test_start_pages_forward_to_the_cutoff(world, fake):
    start = T("2026-01-01", tz="UTC")
    got = world.client.klines("ETHUSDT", "1h", None, start=start)
    assert fake.count(KLINES) == 3  # 2171 candles
    pd.testing.assert_frame_equal(got, expected("1h", None, symbol="ETHUSDT", start=start))
    assert got.index[0] == start and got.index[-1] == T("2026-04-01 11:00", tz="UTC")
    first = world.client.klines("ETHUSDT", "1h", 10, start=start)
    assert len(first) == 10 and first.index[0] == start


def test_end_gives_the_candles_known_at_that_time(world):
    end = T("2026-03-02 09:30", tz="UTC")
    got = world.client.klines("BTCUSDT", "4h", 6, end=end)
    assert got.index[-1] == T("2026-03-02 04:00", tz="UTC")  # the 08:00 candle closes at 12:00
    pd.testing.assert_frame_equal(got, expected("4h", 6, end=end))
    later = world.client.klines("BTCUSDT", "1d", 3, end=T("2030-01-01", tz="UTC"))  # end after now: now wins
    assert later.index[-1] == T("2026-03-31", tz="UTC")


def test_an_empty_klines_answer_is_a_market_data_error(world, fake):
    fake.script(Reply(body=b"[]", path=KLINES))
    with pytest.raises(MarketDataError) as caught:
        world.client.klines("BTCUSDT", "2h", 500)
    message = str(caught.value)
    assert "no closed 2h candles for BTCUSDT" in message and "\n" not in message
    fake.script(Reply(body=b"[]", path=KLINES))  # through the engine, as /signal calls it: not a ValueError
    with pytest.raises(MarketDataError, match="no closed 1h candles"):
        ict_signal_engine.analyze(world.client, "BTCUSDT", "1h")


def test_a_window_with_only_the_forming_candle_is_empty_too(world, fake):
    forming = f'[[{int(NOW.floor("h").timestamp() * 1000)},"1","2","0.5","1.5","10",0]]'.encode()
    fake.script(Reply(body=forming, path=KLINES))
    with pytest.raises(MarketDataError, match="no closed 1h candles"):
        world.client.klines("BTCUSDT", "1h", 5)


def test_a_window_after_start_may_be_empty(world, fake):
    got = world.client.klines("BTCUSDT", "1h", None, start=NOW)  # nothing has closed since: not an error
    assert got.empty


# ---------------------------------------------------------------- cache


def test_closed_candles_are_not_fetched_twice(world, fake):
    first = world.client.klines("BTCUSDT", "1h", 300)
    fake.now += pd.Timedelta(minutes=30)  # same hour: the same closed candles
    again = world.client.klines("BTCUSDT", "1h", 300)
    pd.testing.assert_frame_equal(first, again)
    assert fake.count(KLINES) == 1
    assert world.client.pages.hits == 1
    fake.now += pd.Timedelta(hours=1)  # a new candle has closed
    newer = world.client.klines("BTCUSDT", "1h", 300)
    assert fake.count(KLINES) == 2 and newer.index[-1] == first.index[-1] + pd.Timedelta(hours=1)


# ---------------------------------------------------------------- faults


def test_429_waits_retry_after_then_succeeds(world, fake):
    fake.script(Reply.rate_limited(retry_after=7, path=KLINES))
    got = world.client.klines("BTCUSDT", "15m", 4)
    assert world.sleeps == [7.0]
    assert [r.status for r in fake.requests if r.path == KLINES] == [429, 200]
    assert len(got) == 4


def test_429_without_retry_after_waits_the_longest_backoff(world, fake):
    fake.script(Reply.rate_limited(retry_after=None))
    world.client.price("BTCUSDT")
    assert world.sleeps == [world.client.policy.max_backoff]


def test_long_ban_raises_and_keeps_every_caller_quiet(world, fake):
    fake.script(Reply.rate_limited(retry_after=600, status=418))
    with pytest.raises(RateLimitedError, match=r"banned this IP.*in 600 s"):
        world.client.klines("BTCUSDT", "1h", 5)
    sent = fake.count()
    with pytest.raises(RateLimitedError, match="resume after"):
        world.client.price("ETHUSDT")  # another caller: no request during the ban
    assert fake.count() == sent and world.sleeps == []
    fake.now += pd.Timedelta(seconds=601)
    assert world.client.price("ETHUSDT") > 0


def test_quiet_period_is_shared_by_concurrent_callers(world, fake):
    world.client.now()  # time sync done
    a_waits, b_done, sleeps = threading.Event(), threading.Event(), []

    def sleep(seconds: float) -> None:
        sleeps.append((threading.current_thread().name, seconds))
        if threading.current_thread().name == "A":
            a_waits.set()  # A sits in its Retry-After wait while B asks
            b_done.wait(GENEROUS)
            return
        world.sleep(seconds)

    world.client._sleep = sleep
    fake.script(Reply.rate_limited(retry_after=5, path="/api/v3/ticker/price"))
    a = threading.Thread(target=world.client.price, args=("BTCUSDT",), name="A")
    a.start()
    assert a_waits.wait(GENEROUS)
    b = threading.Thread(target=lambda: (world.client.price("ETHUSDT"), b_done.set()), name="B")
    b.start()
    b.join(GENEROUS)
    a.join(GENEROUS)
    assert sleeps == [("A", 5.0), ("B", 5.0)]  # B waited out A's Retry-After before sending anything
    asked = [(r.params["symbol"], r.status) for r in fake.requests if r.path == "/api/v3/ticker/price"]
    assert asked == [("BTCUSDT", 429), ("ETHUSDT", 200), ("BTCUSDT", 200)]


def test_persistent_429_is_a_rate_limit_error(world, fake):
    fake.script(*[Reply.rate_limited(retry_after=1)] * 4)
    with pytest.raises(RateLimitedError, match="4 attempts"):
        world.client.price("BTCUSDT")
    assert world.sleeps == [1.0, 1.0, 1.0]


def test_5xx_backs_off_exponentially_then_succeeds(world, fake):
    fake.script(Reply.server_error(500), Reply.server_error(502), Reply.server_error(503))
    assert world.client.price("BTCUSDT") == expected("15m", 1)["close"].iloc[-1]
    assert world.sleeps == [0.375, 0.75, 1.5]  # 0.5 * 2**n with the jitter factor 0.75


def test_5xx_forever_is_unavailable(world, fake):
    fake.script(*[Reply.server_error(503, path=KLINES)] * 4)
    with pytest.raises(MarketDataUnavailable, match=r"4 attempts.*HTTP 503"):
        world.client.klines("BTCUSDT", "1h", 5)
    assert fake.count(KLINES) == 4


def test_timeout_then_success(world, fake):
    world.expect_timeout(relax_after_sleep=True)  # the first try times out, the retry has time to spare
    fake.script(Reply.silent(path=KLINES))
    got = world.client.klines("BTCUSDT", "1h", 5)
    pd.testing.assert_frame_equal(got, expected("1h", 5, now=fake.now))
    assert fake.count(KLINES) == 2 and len(world.sleeps) == 1


def test_timeout_forever_is_unavailable(fake):
    world = World(fake, attempts=2)
    world.expect_timeout(relax_after_sleep=False)
    fake.script(*[Reply.silent(path=KLINES)] * 2)
    with pytest.raises(MarketDataUnavailable, match="timed out"):
        world.client.klines("BTCUSDT", "1h", 5)
    assert fake.count(KLINES) == 2


def test_malformed_json_is_retried_then_unavailable(world, fake):
    fake.script(Reply.malformed())
    assert len(world.client.klines("BTCUSDT", "1h", 5)) == 5
    fake.script(*[Reply.malformed()] * 4)
    with pytest.raises(MarketDataUnavailable, match="malformed JSON"):
        world.client.klines("BTCUSDT", "4h", 5)


def test_unknown_symbol(world, fake):
    with pytest.raises(InvalidSymbolError, match="no symbol BTCUSD"):
        world.client.klines("btcusd", "1h", 5)
    assert fake.count() == 2  # the time sync and one klines request: no retries
    with pytest.raises(InvalidSymbolError):
        world.client.validate_symbol("NOPEUSDT")
    with pytest.raises(InvalidSymbolError, match="expected something like"):
        world.client.validate_symbol("!!")


def test_validate_symbol_is_cached_and_checks_status(world, fake):
    assert world.client.validate_symbol("eth/usdt") == "ETHUSDT"
    assert world.client.validate_symbol("ETHUSDT") == "ETHUSDT"
    assert fake.count("/api/v3/exchangeInfo") == 1
    fake.statuses["LUNAUSDT"] = "BREAK"
    with pytest.raises(InvalidSymbolError, match=r"not trading on Binance \(BREAK\)"):
        world.client.validate_symbol("LUNAUSDT")
    assert world.client.symbols() == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def test_bad_interval(world, fake):
    with pytest.raises(InvalidIntervalError, match="7m"):
        world.client.klines("BTCUSDT", "7m", 5)
    assert fake.count(KLINES) == 0
    fake.script(Reply.error(-1120, "Invalid interval.", path=KLINES))
    with pytest.raises(InvalidIntervalError, match="Invalid interval"):
        world.client.klines("BTCUSDT", "1h", 5)


def test_api_error_mapping():
    params = {"symbol": "BTCUSDT", "interval": "1h"}
    bad_interval = {"code": -1100, "msg": "Illegal characters found in parameter 'interval'"}
    assert isinstance(api_error(400, bad_interval, params), InvalidIntervalError)
    bad_symbol = {"code": -1100, "msg": "Illegal characters found in parameter 'symbol'"}
    assert isinstance(api_error(400, bad_symbol, params), InvalidSymbolError)
    other = api_error(403, None, params)
    assert type(other) is MarketDataError and "HTTP 403" in str(other)


def test_restricted_location_suggests_the_mirror(world, fake):
    fake.script(Reply.restricted())
    with pytest.raises(
        RestrictedLocationError, match=re.escape("BINANCE_API_BASE_URL=https://data-api.binance.vision")
    ):
        world.client.price("BTCUSDT")
    assert fake.count() == 1


def test_high_request_weight_pauses_until_the_next_minute(world, fake):
    fake.now = T("2026-04-01 12:20:45", tz="UTC")
    fake.used_weight = 4900  # above 80% of 6000
    world.client.price("BTCUSDT")
    assert world.sleeps == []
    world.client.price("BTCUSDT")
    assert world.sleeps == [15.0] and world.client.used_weight >= 4900


def test_latency(world):
    assert world.client.latency_ms() >= 0


def test_factory(tmp_path):
    sample = create_market_data(Settings(market_data="sample", sample_data_dir=SAMPLE_DIR, sample_speed=0))
    assert isinstance(sample, SampleSource) and sample.now() == T("2026-04-09", tz="UTC")
    started = create_market_data(
        Settings(market_data="sample", sample_data_dir=SAMPLE_DIR, sample_start=NOW.to_pydatetime())
    )
    assert started.now() >= NOW
    client = create_market_data(Settings(binance_api_base_url="http://127.0.0.1:9/"))
    assert isinstance(client.market, BinanceClient) and client.base_url == "http://127.0.0.1:9"
