"""The chart renders a valid PNG for every sample symbol, for signals and no-trade results, and closes its figure."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest

import ict_signal_engine as eng
from chat.charts import render_signal_chart
from engine.signal_model import NoTrade, Signal
from market.sample_source import SampleSource
from tests.helpers import SAMPLE_DIR

PNG = b"\x89PNG\r\n\x1a\n"
CLOCK = pd.Timestamp("2026-04-15 00:00", tz="UTC")


@pytest.fixture(scope="module")
def market():
    return SampleSource(SAMPLE_DIR, clock=lambda: CLOCK)


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "SOLUSDT"])
def test_chart_png_for_every_sample_symbol(market, symbol):
    analysis = eng.analyze(market, symbol, "1h", end=pd.Timestamp("2026-04-10 12:00", tz="UTC"))
    png = render_signal_chart(analysis)
    assert png.startswith(PNG) and len(png) > 20_000
    assert plt.get_fignums() == []


def test_chart_of_a_signal_and_of_a_no_trade(market):
    frames = {tf: market.klines("BTCUSDT", tf, 3000 if tf == "1h" else 1000) for tf in ("1h", "4h", "1d")}
    prep = eng.prepare(frames, timeframe="1h")
    kinds = {}
    for k in range(2999, 2500, -1):
        result, snap = eng.signal_at(prep, k, symbol="BTCUSDT")
        kinds.setdefault(type(result), (k, result, snap))
        if len(kinds) == 2:
            break
    assert set(kinds) == {Signal, NoTrade}
    for k, result, snap in kinds.values():
        window = {tf: f for tf, f in prep.frames.items()}
        window["1h"] = prep.frames["1h"].iloc[: k + 1]
        png = render_signal_chart(eng.Analysis("BTCUSDT", "1h", result, window, snap))
        assert png.startswith(PNG)
    assert plt.get_fignums() == []


def _btc_analysis(market):
    return eng.analyze(market, "BTCUSDT", "1h", end=pd.Timestamp("2026-04-10 12:00", tz="UTC"))


def test_candles_are_drawn_by_mplfinance(market, monkeypatch):
    from chat import charts

    calls = []
    real = charts.mpf.plot

    def spy(data, **kwargs):
        result = real(data, **kwargs)
        calls.append((data, kwargs, result))
        return result

    monkeypatch.setattr(charts.mpf, "plot", spy)
    analysis = _btc_analysis(market)
    png = render_signal_chart(analysis)
    assert png.startswith(PNG)
    assert len(calls) == 1
    data, kwargs, (_fig, axes) = calls[0]
    frame = analysis.frames["1h"]
    assert kwargs["type"] == "candle" and kwargs["returnfig"] and kwargs["volume"]
    assert len(data) == charts.CANDLES and data.index[-1] == frame.index[-1]
    # the overlays went onto mplfinance's price axes (title, zone / level labels), and the figure is closed
    assert axes[0].get_title(loc="left").startswith("BTCUSDT 1h")
    assert len(axes[0].texts) > 0
    assert plt.get_fignums() == []


def test_figure_closed_when_drawing_fails(market, monkeypatch):
    from chat import charts

    def boom(*args, **kwargs):
        raise RuntimeError("overlay failed")

    monkeypatch.setattr(charts, "_draw_context", boom)
    with pytest.raises(RuntimeError):
        render_signal_chart(_btc_analysis(market))
    assert plt.get_fignums() == []


def test_chart_without_volume(market):
    analysis = _btc_analysis(market)
    frames = dict(analysis.frames)
    frames["1h"] = frames["1h"].assign(volume=0.0)
    png = render_signal_chart(eng.Analysis("BTCUSDT", "1h", analysis.result, frames, analysis.snapshot))
    assert png.startswith(PNG)
    assert plt.get_fignums() == []


def test_labels_do_not_overlap_and_optional_ones_are_dropped():
    from chat import charts

    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
        labels = charts._Labels(ax)
        kw = {"size": 10, "ha": "left", "va": "bottom"}
        first = labels.add(10, 50, "FVG", offsets=((0, 0), (0, -1)), **kw)
        second = labels.add(10, 50, "OB", offsets=((0, 0), (0, -1)), **kw)
        third = labels.add(10, 50, "Breaker", offsets=((0, 0), (0, -1)), **kw)  # both places taken
        forced = labels.add(10, 50, "SL 1.0", offsets=((0, 0),), required=True, **kw)
        outside = labels.add(99, 50, "BSL", offsets=((0, 0),), **kw)  # would stick out of the axes
        beyond = labels.add(50, 20, "OTE", offsets=((0, 0),), x_max=52, **kw)
        assert first is not None and first.xyann == (0, 0)
        assert second is not None and second.xyann[1] < 0  # moved one label height down
        assert third is None and outside is None and beyond is None
        assert forced is not None
        assert len(ax.texts) == 3
    finally:
        plt.close(fig)
