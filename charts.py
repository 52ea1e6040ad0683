"""The signal chart: recent candles with the ICT context and the trade levels, rendered to PNG bytes.

Drawn (entry timeframe, the last ``CANDLES`` candles): candlesticks and a small volume panel by mplfinance
(``mpf.plot(..., returnfig=True)``), then on its price axes with matplotlib: active OB / FVG / SIBI-SSIB / breaker
zones shaded from the bar they formed (green = bullish, red = bearish), resting liquidity (dashed, labelled
BSL/SSL/EQH/PDH...), recent BOS / CHOCH / MSS marks (a line from the broken swing to the breaking candle), the OTE
band, and for a signal the entry zone (blue), SL (red) and TP1-TP3 (green) with price labels on the right.
mplfinance places candle i at x = i (non-trading gaps removed), so every overlay uses the bar index in the window.
matplotlib's Agg backend; the figure is closed after rendering; sized for a phone (1200x800 px).
"""

from __future__ import annotations

import io
import logging

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import mplfinance as mpf
import pandas as pd

from formatting import format_price
from ict_modules.core import Direction
from ict_signal_engine import Analysis, Snapshot
from signal_model import Signal, TradeDirection

logger = logging.getLogger(__name__)

CANDLES = 120
RIGHT_MARGIN = 18  # empty bars on the right for the labels
BULL = "#1b9e5a"
BEAR = "#d64545"
ENTRY = "#2f6fdf"
FIGSIZE = (12.0, 8.0)  # inches; 1200x800 px at the default dpi
PANEL_RATIOS = (6, 1)  # price : volume
# mplfinance's default margins (left .18, right .10, top .12, bottom .18 of the figure) scaled down: the labels
# sit inside the axes, prices are on the right.
PADDING = {"left": 0.3, "right": 0.8, "top": 0.5, "bottom": 0.36}

_MARKET = mpf.make_marketcolors(
    up=BULL, down=BEAR, edge="inherit", wick="inherit", volume={"up": "#9fd3b6", "down": "#eeb1b1"}
)
_MARKET["vcedge"] = _MARKET["volume"]  # volume bar edges a shade darker than the fill (not the default blue)
STYLE = mpf.make_mpf_style(
    base_mpf_style="default",
    marketcolors=_MARKET,
    facecolor="white",
    edgecolor="#444444",
    gridcolor="#d0d0d0",
    gridstyle=":",
    y_on_right=True,
    rc={"font.weight": "normal", "font.size": 11, "axes.labelsize": 11, "xtick.labelsize": 11, "ytick.labelsize": 11},
)


def _colour(direction: Direction | None) -> str:
    if direction is None:
        return "#777777"
    return BULL if direction is Direction.BULLISH else BEAR


def _title(analysis: Analysis) -> str:
    r = analysis.result
    head = f"{analysis.symbol} {analysis.timeframe}"
    if isinstance(r, Signal):
        side = "LONG" if r.direction is TradeDirection.LONG else "SHORT"
        return f"{head} · {side} · confidence {r.confidence:.0f}"
    return f"{head} · no trade"


def render_signal_chart(analysis: Analysis, *, candles: int = CANDLES, dpi: int = 100) -> bytes:
    """PNG bytes of the chart of ``analysis`` (see the module docstring)."""
    frame = analysis.frames[analysis.timeframe]
    n = len(frame)
    start = max(0, n - candles)
    window = frame.iloc[start:]
    m = len(window)
    right = m - 1 + RIGHT_MARGIN
    ylim = _y_range(window, analysis)
    before = set(plt.get_fignums())
    try:
        fig, axes = _plot_candles(window, ylim, right)
        ax = axes[0]
        _draw_context(ax, analysis.snapshot, start, m, ylim)
        if isinstance(analysis.result, Signal):
            _draw_trade(ax, analysis.result, m, right)
        ax.set_xlim(-1, right)
        ax.set_ylim(*ylim)
        ax.set_title(_title(analysis), fontsize=16, fontweight="bold", loc="left")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"compress_level": 3})
        return buffer.getvalue()
    finally:
        for num in set(plt.get_fignums()) - before:  # also a figure mplfinance made before failing
            plt.close(num)


def _plot_candles(window: pd.DataFrame, ylim: tuple[float, float], right: float):
    """mplfinance candles (x = 0..m-1) over a volume panel; time labels on about 6 ticks, prices formatted."""
    volume = "volume" in window.columns and bool((window["volume"] > 0).any())
    extra = {"panel_ratios": PANEL_RATIOS} if volume else {}
    fig, axes = mpf.plot(
        window,
        type="candle",
        style=STYLE,
        volume=volume,
        returnfig=True,
        figsize=FIGSIZE,
        scale_padding=PADDING,
        xlim=(-1, right),
        ylim=ylim,
        ylabel="",
        ylabel_lower="",
        xrotation=0,
        warn_too_much_data=10 * CANDLES,
        **extra,
    )
    ax = axes[0]
    ticks = list(range(0, len(window), max(1, len(window) // 6)))
    daily = len(window) > 1 and window.index[1] - window.index[0] >= pd.Timedelta(days=1)
    fmt = "%Y-%m-%d" if daily else "%m-%d %H:%M"
    ax.set_xticks(ticks)  # the axes share x: the labels show on the bottom panel
    ax.set_xticklabels([window.index[i].strftime(fmt) for i in ticks])
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: format_price(v)))
    if volume:
        vol = axes[2]
        vol.set_yticks([])
        vol.text(0.005, 0.9, "volume", transform=vol.transAxes, fontsize=9, color="#777777", va="top")
    return fig, axes


def _visible(top: float, bottom: float, ylim: tuple[float, float]) -> bool:
    return bottom <= ylim[1] and top >= ylim[0]


def _draw_context(ax, snap: Snapshot, start: int, m: int, ylim: tuple[float, float], max_zones: int = 6) -> None:
    """Zones (the ``max_zones`` most recent that are in view), OTE, nearest liquidity, structure marks."""
    merged: dict[tuple[Direction, float, float], tuple[int, list[str]]] = {}
    for z in sorted((z for z in snap.zones if _visible(z.top, z.bottom, ylim)), key=lambda z: z.index):
        key = (z.direction, z.top, z.bottom)  # an FVG that is also a SIBI/SSIB is one box "FVG/SSIB"
        index, labels = merged.get(key, (z.index, []))
        merged[key] = (min(index, z.index), [*labels, z.label] if z.label not in labels else labels)
    for (direction, top, bottom), (index, labels) in sorted(merged.items(), key=lambda kv: kv[1][0])[-max_zones:]:
        x0 = max(index - start, 0)
        colour = _colour(direction)
        ax.fill_between([x0, m - 1], bottom, top, color=colour, alpha=0.13, linewidth=0, zorder=0)
        ax.text(x0 + 0.3, top, "/".join(labels), color=colour, fontsize=9, va="top", ha="left", clip_on=True)
    if snap.ote is not None and _visible(snap.ote.top, snap.ote.bottom, ylim):
        o = snap.ote
        ax.fill_between([m - 13, m - 1], o.bottom, o.top, color="#b58900", alpha=0.15, linewidth=0, zorder=0)
        ax.text(m - 13, o.bottom, "OTE", color="#8a6a00", fontsize=9, va="top", clip_on=True)
    for level in (*snap.pools_above[:3], *snap.pools_below[:3]):
        if not ylim[0] <= level.price <= ylim[1]:
            continue
        x0 = max(level.index - start, 0)
        ax.hlines(level.price, x0, m - 1, colors="#555555", linestyles="dashed", linewidth=1.0, alpha=0.7)
        ax.text(x0 + 0.3, level.price, level.label, color="#333333", fontsize=9, va="bottom", ha="left", clip_on=True)
    for mark in snap.structure.marks:
        x0, x1 = mark.swing_index - start, mark.index - start
        if x1 < 0:
            continue
        colour = _colour(mark.direction)
        va = "bottom" if mark.direction is Direction.BULLISH else "top"
        ax.hlines(mark.level, max(x0, 0), x1, colors=colour, linewidth=1.4)
        ax.text((max(x0, 0) + x1) / 2, mark.level, mark.kind, color=colour, fontsize=9, fontweight="bold",
                ha="center", va=va, clip_on=True)  # fmt: skip


def _draw_trade(ax, s: Signal, m: int, right: float) -> None:
    x0 = m - 1
    if s.entry_high > s.entry_low:
        ax.fill_between([x0 - 6, right], s.entry_low, s.entry_high, color=ENTRY, alpha=0.18, linewidth=0)
    r1, r2, r3 = s.r_multiples
    lines = [
        (s.entry, ENTRY, f"Entry {format_price(s.entry)}"),
        (s.sl, BEAR, f"SL {format_price(s.sl)}"),
        (s.tp1, BULL, f"TP1 {format_price(s.tp1)} ({r1:g}R)"),
        (s.tp2, BULL, f"TP2 {format_price(s.tp2)} ({r2:g}R)"),
        (s.tp3, BULL, f"TP3 {format_price(s.tp3)} ({r3:g}R)"),
    ]
    for price, colour, label in lines:
        ax.hlines(price, x0 - 6, right, colors=colour, linewidth=1.8)
        box = {"boxstyle": "round,pad=0.25", "facecolor": colour, "edgecolor": "none", "alpha": 0.95}
        ax.text(
            right - 0.3, price, label, color="white", fontsize=10, fontweight="bold", ha="right", va="center", bbox=box
        )


def _y_range(window: pd.DataFrame, analysis: Analysis) -> tuple[float, float]:
    """Candles always visible; trade levels always visible; context levels only when close to the candles."""
    low, high = float(window["low"].min()), float(window["high"].max())
    r = analysis.result
    if isinstance(r, Signal):
        low = min(low, r.sl, r.tp3, r.entry_low)
        high = max(high, r.sl, r.tp3, r.entry_high)
    pad = 0.04 * (high - low or high * 0.01)
    return low - pad, high + pad
