"""The fake Binance server answers like Binance: the contract other tests rely on."""

from __future__ import annotations

import pandas as pd
import pytest
import requests

from tests.fake_binance import FakeBinance, Reply, fake_binance  # noqa: F401 - the fixture is tested too
from tests.helpers import make_candles, sample_candles

T = pd.Timestamp


def ms(ts: str) -> int:
    return int(T(ts, tz="UTC").timestamp() * 1000)


@pytest.fixture(scope="module")
def fake():
    with FakeBinance(now="2026-04-01 12:20") as server:
        yield server


def get(fake: FakeBinance, path: str, **params) -> requests.Response:
    return requests.get(fake.url + path, params=params, timeout=5)


def test_latest_klines_include_the_forming_candle(fake):
    rows = get(fake, "/api/v3/klines", symbol="BTCUSDT", interval="1h", limit=3).json()
    assert [r[0] for r in rows] == [ms("2026-04-01 10:00"), ms("2026-04-01 11:00"), ms("2026-04-01 12:00")]
    assert all(len(r) == 12 for r in rows) and rows[0][6] == ms("2026-04-01 11:00") - 1
    quarter = sample_candles("BTCUSDT", "15m").loc[T("2026-04-01 12:00", tz="UTC")]
    assert [float(x) for x in rows[-1][1:5]] == list(quarter[["open", "high", "low", "close"]])  # 12:00-12:15 only
    closed = sample_candles("BTCUSDT", "1h").loc[T("2026-04-01 11:00", tz="UTC")]
    assert [float(x) for x in rows[1][1:6]] == list(closed)


def test_start_and_end_time(fake):
    first = get(fake, "/api/v3/klines", symbol="ETHUSDT", interval="4h", startTime=ms("2026-03-01"), limit=2).json()
    assert [r[0] for r in first] == [ms("2026-03-01 00:00"), ms("2026-03-01 04:00")]
    last = get(fake, "/api/v3/klines", symbol="ETHUSDT", interval="4h", endTime=ms("2026-03-01"), limit=2).json()
    assert [r[0] for r in last] == [ms("2026-02-28 20:00"), ms("2026-03-01 00:00")]


def test_binance_errors_and_headers(fake):
    bad = get(fake, "/api/v3/klines", symbol="NOPE", interval="1h")
    assert bad.status_code == 400 and bad.json() == {"code": -1121, "msg": "Invalid symbol."}
    assert get(fake, "/api/v3/klines", symbol="BTCUSDT", interval="7m").json()["code"] == -1120
    assert get(fake, "/api/v3/klines", symbol="BTCUSDT", interval="1h", limit=1001).json()["code"] == -1130
    ok = get(fake, "/api/v3/time")
    assert ok.json() == {"serverTime": ms("2026-04-01 12:20")}
    assert int(ok.headers["X-MBX-USED-WEIGHT-1M"]) == fake.used_weight > 0


def test_script_is_consumed_in_order_and_by_path(fake):
    fake.script(Reply.rate_limited(retry_after=3, path="/api/v3/ping"), Reply.server_error(502))
    assert get(fake, "/api/v3/time").status_code == 502
    limited = get(fake, "/api/v3/ping")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert get(fake, "/api/v3/ping").status_code == 200
    assert [r.status for r in fake.requests[-3:]] == [502, 429, 200]


def test_given_frames_and_the_fixture(fake_binance):  # noqa: F811 - the fixture under test
    assert fake_binance.count() == 0 and fake_binance.url.startswith("http://127.0.0.1:")
    candles = make_candles([(1, 2, 0.5, 1.5)] * 5, start="2025-01-01", freq="D")
    with FakeBinance(data_dir=None, frames={("ABCUSDT", "1d"): candles}, now="2025-01-04 06:00") as fake:
        rows = get(fake, "/api/v3/klines", symbol="ABCUSDT", interval="1d").json()
        assert len(rows) == 4 and rows[-1][5] == "0.0"  # the forming day is flat until something closes
        info = get(fake, "/api/v3/exchangeInfo").json()
        assert [s["symbol"] for s in info["symbols"]] == ["ABCUSDT"]
        assert float(get(fake, "/api/v3/ticker/price", symbol="ABCUSDT").json()["price"]) == 1.5
