"""The market-data source the settings choose: Binance (the default) or the bundled sample replay."""

from __future__ import annotations

from config import Settings
from market.binance_client import BinanceClient
from market.candle_cache import CandleCache
from market.sample_source import SampleSource
from market.source import MarketData


def create_market_data(settings: Settings) -> MarketData:
    """The market-data source chosen by ``settings.market_data`` (``binance`` or ``sample``)."""
    if settings.market_data == "sample":
        return SampleSource(
            settings.sample_data_dir,
            start=settings.sample_start,
            speed=settings.sample_speed,
        )
    return CandleCache(BinanceClient(settings.binance_api_base_url))  # klines only when a candle can have closed
