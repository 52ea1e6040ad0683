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


def test_candles_and_volume_are_one_collection_each(market):
    from matplotlib.collections import PolyCollection

    from chat import charts

    analysis = _btc_analysis(market)
    fig = charts.build_figure(analysis)
    price_ax, volume_ax = fig.axes[1], fig.axes[0]
    bodies = [c for c in price_ax.collections if isinstance(c, PolyCollection) and len(c.get_paths()) == charts.CANDLES]
    volume = [c for c in volume_ax.collections if isinstance(c, PolyCollection)]
    assert len(bodies) == 1 and len(volume) == 1 and len(volume[0].get_paths()) == charts.CANDLES
    assert len(volume_ax.patches) == 0 and len(price_ax.patches) == 0  # no per-bar patches
    assert volume_ax.get_yticks().size == 0 and volume_ax.yaxis.get_offset_text().get_text() == ""


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
        flat = pd.DataFrame({"low": [1.0], "high": [2.0]})  # one candle out of the way at x=0
        labels = charts._Labels(ax, fig.canvas.get_renderer(), flat, (0, 100))
        kw = {"px": 14, "ha": "left", "va": "bottom"}
        first = labels.add(10, 50, "FVG", offsets=((0, 0), (0, -1)), **kw)
        second = labels.add(10, 50, "OB", offsets=((0, 0), (0, -1)), **kw)
        third = labels.add(10, 50, "Breaker", offsets=((0, 0), (0, -1)), **kw)  # both places taken
        forced = labels.add(10, 50, "SL 1.0", offsets=((0, 0),), required=True, **kw)
        outside = labels.add(99, 50, "BSL", offsets=((0, 0),), **kw)  # would stick out of the axes
        beyond = labels.add(50, 20, "OTE", offsets=((0, 0),), x_max=52, **kw)
        on_candle = labels.add(0, 1.5, "EQL", offsets=((0, 0),), ha="center", va="center", px=14)
        assert first is not None and first.get_position()[1] > 50
        assert second is not None and second.get_position()[1] < 50  # moved one label height down
        assert third is None and outside is None and beyond is None and on_candle is None
        assert forced is not None
        assert len(ax.texts) == 3
    finally:
        plt.close(fig)


# ---------------------------------------------------------------- read on a phone


def _analyses(market):
    """A signal and two no-trade charts from the sample data (the same cases the render benchmark uses)."""
    cases = [("SOLUSDT", "4h", "2026-02-10 08:00"), ("BTCUSDT", "1h", "2026-04-10 12:00"),
             ("ETHUSDT", "1h", "2026-02-10 08:00")]  # fmt: skip
    return [eng.analyze(market, s, tf, end=pd.Timestamp(t, tz="UTC")) for s, tf, t in cases]


def _drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _label_boxes(fig, renderer):
    """Window extents of every placed label (its background box, which contains the text)."""
    ax = fig.axes[1]
    boxes = []
    for text in ax.texts:
        patch = text.get_bbox_patch()
        boxes.append((text.get_text(), (patch or text).get_window_extent(renderer)))
    return boxes


def test_no_two_labels_overlap_and_none_covers_a_candle(market):
    from chat import charts

    for analysis in _analyses(market):
        fig = charts.build_figure(analysis)
        renderer = _drawn(fig)
        boxes = _label_boxes(fig, renderer)
        assert len(boxes) >= 2
        for i, (name_a, a) in enumerate(boxes):
            for name_b, b in boxes[i + 1 :]:
                assert not a.overlaps(b), (analysis.symbol, name_a, name_b)
        ax = fig.axes[1]
        frame = analysis.frames[analysis.timeframe].iloc[-charts.CANDLES :]
        for x, (low, high) in enumerate(zip(frame["low"], frame["high"], strict=True)):
            (cx, lo), (_, hi) = ax.transData.transform([(x, low), (x, high)])
            for name, box in boxes:
                inside_x = box.x0 < cx < box.x1
                assert not (inside_x and lo < box.y1 and hi > box.y0), (analysis.symbol, name, x)


def test_a_signal_draws_its_zone_and_leaves_out_opposite_zones(market):
    from chat import charts

    analysis = _analyses(market)[0]
    assert isinstance(analysis.result, Signal)
    fig = charts.build_figure(analysis)
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert [t.split()[0] for t in texts if t.split()[0] in ("Entry", "SL", "TP1", "TP2", "TP3")] == [
        "Entry", "SL", "TP1", "TP2", "TP3"
    ]  # fmt: skip
    assert len(texts) <= 6 + charts.MAX_CONTEXT_LABELS_SIGNAL  # trade levels, the last-price tag, context
    bull = {"CHOCH", "BOS", "MSS", "FVG", "OB"} & {t for t in texts}
    colours = [t.get_color() for t in fig.axes[1].texts if t.get_text() in bull]
    assert charts.BULL not in colours  # a short shows no bullish context


def test_no_trade_chart_shows_its_reason_and_the_level_it_cites(market):
    from chat import charts

    analysis = _analyses(market)[2]
    reason = analysis.result.reasons[0]
    assert "PDL" in reason
    texts = [t.get_text() for t in charts.build_figure(analysis).axes[1].texts]
    assert f"No trade: {reason}" in texts
    assert any(t.startswith("PDL ") for t in texts)


def test_time_axis_in_bot_timezone_named_and_on_round_hours(market):
    from chat import charts

    analysis = _analyses(market)[1]
    fig = charts.build_figure(analysis, tz="Asia/Kolkata")  # UTC+05:30: round local hours are :30 in UTC
    volume_ax = fig.axes[0]
    assert "Asia/Kolkata" in volume_ax.get_xlabel()
    frame = analysis.frames["1h"].iloc[-charts.CANDLES :]
    ticks = [int(t) for t in volume_ax.get_xticks()]
    local = frame.index.tz_convert("Asia/Kolkata")
    assert ticks and all(local[i].hour % 24 in (0, 1) for i in ticks)  # first candle of each local day
    labels = [t.get_text() for t in volume_ax.get_xticklabels()]
    assert str(local[ticks[0]].year) in labels[0]


def test_time_ticks_show_the_year_where_it_changes():
    from zoneinfo import ZoneInfo

    from chat import charts

    index = pd.date_range("2025-12-30 20:00", periods=120, freq="15min", tz="UTC")
    ticks, labels = charts.time_ticks(index, ZoneInfo("UTC"))
    assert labels[0].endswith("2025") and labels[-1] == "01 Jan 2026"
    assert all(index[i].minute == 0 for i in ticks)


def test_a_price_above_100k_is_compact_and_fully_inside_the_figure(market):
    import dataclasses

    from chat import charts

    analysis = _analyses(market)[1]  # BTC ~72k: scaled to ~122k
    k = 122_000 / float(analysis.frames["1h"]["close"].iloc[-1])
    frames = dict(analysis.frames)
    frames["1h"] = frames["1h"].assign(**{c: frames["1h"][c] * k for c in ("open", "high", "low", "close")})
    sig = _analyses(market)[0].result
    scaled = dataclasses.replace(
        sig,
        **{
            f: getattr(sig, f) * k * 1000 / 84.63
            for f in ("entry", "entry_low", "entry_high", "sl", "tp1", "tp2", "tp3")
        },
    )  # a short around 122k
    for result in (analysis.result, scaled):
        fig = charts.build_figure(eng.Analysis("BTCUSDT", "1h", result, frames, analysis.snapshot))
        renderer = _drawn(fig)
        figure_box = fig.bbox
        texts = [*fig.axes[1].texts, *fig.axes[1].get_yticklabels(), *fig.axes[0].get_xticklabels(), *fig.texts]
        shown = [t for t in texts if t.get_visible() and t.get_text()]
        for text in shown:
            box = (text.get_bbox_patch() or text).get_window_extent(renderer)
            assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1, text.get_text()
            assert figure_box.y0 <= box.y0 and box.y1 <= figure_box.y1, text.get_text()
        ticks = [t.get_text() for t in fig.axes[1].get_yticklabels() if t.get_text()]
        assert ticks and all(t.endswith("k") and len(t) <= 6 for t in ticks), ticks


def test_every_label_is_at_least_14_px(market):
    from chat import charts

    for analysis in _analyses(market)[:2]:
        fig = charts.build_figure(analysis)
        ax, volume_ax = fig.axes[1], fig.axes[0]
        texts = [*ax.texts, *ax.get_yticklabels(), *volume_ax.get_xticklabels(), volume_ax.xaxis.label, *fig.texts]
        for text in texts:
            if text.get_text():
                assert text.get_fontsize() * charts.BASE_DPI / 72 >= 14 - 1e-9, text.get_text()


def test_compact_axis_prices():
    from chat.charts import axis_price

    assert axis_price(120_000, 1000, 125_000) == "120k"
    assert axis_price(120_500, 500, 125_000) == "120.5k"
    assert axis_price(64_500, 500, 65_000) == "64,500"
    assert axis_price(2.25, 0.25, 3) == "2.25"
