"""The analysis cache: the same candles, config and model answer with the same Analysis object; a closed candle,
another config or another model computes anew; charts are rendered once per analysis."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pytest

import ict_signal_engine
from config import Settings
from engine.analysis_cache import AnalysisCache, model_version
from engine.config import EngineConfig
from market.sample_source import SampleSource
from position_manager import PositionStore
from signal_cache import SignalCache
from store.journal import Journal
from tests import test_bot_e2e as e2e
from tests.fake_binance import SAMPLE_DIR
from tests.fake_telegram import FakeTelegram
from tracking.scanner import run_scan

T = pd.Timestamp
NOW = T("2026-04-01 12:20", tz="UTC")


class CountingMarket:
    """The sample source on a settable clock, counting klines calls (each analysis makes them)."""

    def __init__(self, now: pd.Timestamp = NOW, *, lag: int = 0) -> None:
        self.clock = now
        self.calls = 0
        self.lag = lag  # candles the source is behind its clock (a slow exchange)
        self.source = SampleSource(SAMPLE_DIR, clock=lambda: self.clock)

    def now(self) -> pd.Timestamp:
        return self.clock

    def klines(self, symbol, interval, limit=500, *, start=None, end=None):
        self.calls += 1
        frame = self.source.klines(symbol, interval, limit, start=start, end=end)
        return frame.iloc[: len(frame) - self.lag] if self.lag and interval == "1h" else frame


@dataclass
class Model:
    header: dict = field(default_factory=dict)
    path: str = "model.bin"


@dataclass(eq=False)
class Predictor:
    model: Model
    active: bool = True

    def predict(self, features):
        return 0.6


@pytest.fixture
def market():
    return CountingMarket()


def analyze(market, cache, **kw):
    return ict_signal_engine.analyze(market, "BTCUSDT", "1h", cache=cache, **kw)


def test_a_hit_returns_the_same_object_without_fetching(market):
    cache = AnalysisCache()
    first = analyze(market, cache)
    calls = market.calls
    market.clock = NOW + pd.Timedelta(minutes=30)  # still the same hour
    again = analyze(market, cache)
    assert again is first and market.calls == calls
    assert cache.analyses.hits == 1


def test_the_next_candle_close_recomputes(market):
    cache = AnalysisCache()
    first = analyze(market, cache)
    market.clock = NOW + pd.Timedelta(hours=1)
    later = analyze(market, cache)
    assert later is not first
    assert later.frames["1h"].index[-1] == first.frames["1h"].index[-1] + pd.Timedelta(hours=1)
    fresh = ict_signal_engine.analyze(market, "BTCUSDT", "1h")
    assert later.result == fresh.result  # the cached path analyses the same candles as the uncached one


def test_another_config_or_model_misses():
    market = CountingMarket()
    cache = AnalysisCache()
    base = analyze(market, cache)
    assert analyze(market, cache, config=EngineConfig(min_risk_reward=2.0)) is not base
    assert analyze(market, cache, config=EngineConfig()) is base  # equal config: a hit

    predictor = Predictor(Model({"trained": "2026-03-01"}))
    with_model = analyze(market, cache, predictor=predictor)
    assert with_model is not base and analyze(market, cache, predictor=predictor) is with_model
    predictor.model = Model({"trained": "2026-03-02"})  # a retrain
    assert analyze(market, cache, predictor=predictor) is not with_model
    assert analyze(market, cache, predictor=Predictor(Model(), active=False)) is base  # inactive: no model


def test_a_source_behind_its_clock_is_not_cached():
    market = CountingMarket(lag=1)
    cache = AnalysisCache()
    first = analyze(market, cache)
    assert analyze(market, cache) is not first and len(cache.analyses) == 0


def test_the_cache_is_bounded(market):
    cache = AnalysisCache(maxsize=2)
    a = analyze(market, cache)
    analyze(market, cache, config=EngineConfig(min_risk_reward=2.0))
    analyze(market, cache, config=EngineConfig(min_risk_reward=2.5))
    assert len(cache.analyses) == 2 and analyze(market, cache) is not a  # the oldest was evicted


def test_charts_are_rendered_once_per_analysis_and_options(market):
    cache = AnalysisCache()
    analysis = analyze(market, cache)
    renders = []

    def render(a, *, tz=None):
        renders.append((a, tz))
        return f"png {len(renders)}".encode()

    assert cache.chart(analysis, render, tz="UTC") == b"png 1"
    assert cache.chart(analysis, render, tz="UTC") == b"png 1"
    assert cache.chart(analysis, render, tz="Europe/Sofia") == b"png 2"
    market.clock = NOW + pd.Timedelta(hours=1)
    assert cache.chart(analyze(market, cache), render, tz="UTC") == b"png 3"


def test_model_version_follows_the_model_file_header():
    assert model_version(None) is None
    assert model_version(Predictor(Model({"a": 1}))) == model_version(Predictor(Model({"a": 1})))
    assert model_version(Predictor(Model({"a": 1}))) != model_version(Predictor(Model({"a": 2})))


def test_a_scan_within_the_same_candles_reads_no_candles(tmp_path):
    settings = Settings(watchlist=("BTCUSDT", "ETHUSDT"), auto_signal_timeframes=("1h",))
    store, signals, journal = PositionStore(tmp_path / "p.db"), SignalCache(tmp_path / "c.json"), Journal(tmp_path)
    market, cache = CountingMarket(), AnalysisCache()
    first = run_scan(market, store, signals, journal, settings, analyses=cache)
    calls = market.calls
    again = run_scan(market, store, signals, journal, settings, analyses=cache)
    assert first.pairs == again.pairs == 2 and calls >= 2 * 3
    assert market.calls == calls and cache.analyses.hits == 2
    store.close()


class CountingSample:
    """The e2e tests' sample market, counting klines calls."""

    def __init__(self) -> None:
        self.market, self.calls = e2e.sample_market(), 0

    def klines(self, *args, **kw):
        self.calls += 1
        return self.market.klines(*args, **kw)

    def __getattr__(self, name):
        return getattr(self.market, name)


@pytest.fixture
def tg():
    with FakeTelegram() as server:
        yield server


async def test_the_refresh_button_within_the_candle_answers_from_the_cache(tg, tmp_path):
    symbol, timeframe = e2e.pair_with("no-trade")
    market = CountingSample()
    async with e2e.run_bot(tg, tmp_path, market=market) as application:
        tg.send_message(f"/signal {symbol} {timeframe}", user_id=e2e.USER)
        first = await tg.wait_for("sendPhoto", chat_id=e2e.USER, within=60)
        calls = market.calls
        tg.press(f"sig|r|{symbol}|{timeframe}", user_id=e2e.USER, message=tg.last_message(e2e.USER))
        await tg.wait_for("sendPhoto", chat_id=e2e.USER, count=2, within=60)
        again = tg.calls("sendPhoto")[-1]
        cache = application.bot_data["services"].analyses
    assert market.calls == calls and cache.analyses.hits == 1 and cache.charts.hits == 1
    assert again.files["photo"] == first.files["photo"]
