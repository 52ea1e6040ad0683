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

from chat.formatting import format_price
from engine.signal_model import Signal, TradeDirection
from engine.views import Snapshot
from ict_modules.core import Direction
from ict_signal_engine import Analysis

logger = logging.getLogger(__name__)

CANDLES = 120
RIGHT_MARGIN = 26  # empty bars on the right for the trade labels
NO_TRADE_MARGIN = 3  # no trade labels: the candles take the width
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
    rc={"font.weight": "normal", "font.size": 12, "axes.labelsize": 12, "xtick.labelsize": 12, "ytick.labelsize": 12},
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
    right = m - 1 + (RIGHT_MARGIN if isinstance(analysis.result, Signal) else NO_TRADE_MARGIN)
    ylim = _y_range(window, analysis)
    before = set(plt.get_fignums())
    try:
        fig, axes = _plot_candles(window, ylim, right)
        ax = axes[0]
        ax.set_xlim(-1, right)
        ax.set_ylim(*ylim)
        labels = _Labels(ax)  # the trade levels first: they have the right of way
        if isinstance(analysis.result, Signal):
            _draw_trade(ax, labels, analysis.result, m, right)
        _draw_context(ax, labels, analysis.snapshot, start, m, ylim)
        ax.set_title(_title(analysis), fontsize=18, fontweight="bold", loc="left")
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
    ticks = list(range(0, len(window), max(1, -(-(len(window) + RIGHT_MARGIN) // 7))))  # about 6 labels
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


_HA = {"left": 0.0, "center": 0.5, "right": 1.0}
_VA = {"bottom": 0.0, "center": 0.5, "top": 1.0}
CONTEXT_FONT = 10  # points; zone / liquidity / structure labels
TRADE_FONT = 11  # points; Entry / SL / TP labels


class _Labels:
    """Text labels placed without overlapping each other (the main source of clutter).

    Each label tries its candidate offsets (dx in label widths, dy in label heights) in order and takes the first
    whose estimated box (about 0.6 em per character) overlaps no placed label and stays inside the axes (and, with
    ``x_max``, left of that bar); an optional label that finds no free place is dropped, a required one (the trade
    levels) falls back to its first offset.
    """

    def __init__(self, ax) -> None:
        self.ax = ax
        self.boxes: list[tuple[float, float, float, float]] = []
        self.px_per_pt = ax.figure.dpi / 72.0

    def add(self, x, y, text: str, *, size: float, ha: str, va: str, offsets, required=False, x_max=None, **kw):
        bold = kw.get("fontweight") == "bold"
        pad = 4.0 if "bbox" in kw else 1.0
        w = len(text) * size * (0.66 if bold else 0.6) * self.px_per_pt + 2 * pad
        h = size * 1.25 * self.px_per_pt + 2 * pad
        ax_x0, ax_y0, ax_x1, ax_y1 = self.ax.bbox.extents
        if x_max is not None:  # a context label stays over the candles, off the trade labels' margin
            ax_x1 = min(ax_x1, self.ax.transData.transform((x_max, y))[0])
        px, py = self.ax.transData.transform((x, y))
        left, bottom = px - _HA[ha] * w, py - _VA[va] * h
        chosen = None
        for dx, dy in offsets:
            box = (left + dx * w, bottom + dy * h, left + dx * w + w, bottom + dy * h + h)
            inside = box[0] >= ax_x0 and box[2] <= ax_x1 and box[1] >= ax_y0 and box[3] <= ax_y1
            if inside and not any(_overlap(box, b) for b in self.boxes):
                chosen = (dx, dy, box)
                break
        if chosen is None:
            if not required:
                return None
            dx, dy = offsets[0]
            chosen = (dx, dy, (left + dx * w, bottom + dy * h, left + dx * w + w, bottom + dy * h + h))
        dx, dy, box = chosen
        self.boxes.append(box)
        return self.ax.annotate(
            text, (x, y), xytext=(dx * w / self.px_per_pt, dy * h / self.px_per_pt), textcoords="offset points",
            fontsize=size, ha=ha, va=va, annotation_clip=False, zorder=6, **kw,
        )  # fmt: skip


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


_HALO = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.75}
_ALONG = ((0, 0), (1, 0), (2, 0), (0, -1), (1, -1), (-1, 0), (0, 1))  # along the level, below it, before, above
_AWAY_UP = ((0, 0), (0, 1), (-1, 0), (1, 0))
_AWAY_DOWN = ((0, 0), (0, -1), (-1, 0), (1, 0))


def _draw_context(ax, labels: _Labels, snap: Snapshot, start: int, m: int, ylim: tuple[float, float]) -> None:
    """Structure marks, nearest liquidity, zones, OTE; labels placed in that order of priority."""
    _draw_marks(ax, labels, snap, start)
    _draw_pools(ax, labels, snap, start, m, ylim)
    _draw_zones(ax, labels, snap, start, m, ylim)
    if snap.ote is not None and _visible(snap.ote.top, snap.ote.bottom, ylim):
        o = snap.ote
        ax.fill_between([m - 13, m - 1], o.bottom, o.top, color="#b58900", alpha=0.15, linewidth=0, zorder=0)
        labels.add(m - 13, o.bottom, "OTE", size=CONTEXT_FONT, ha="left", va="top", offsets=_ALONG,
                   x_max=m + 0.5, color="#8a6a00", bbox=_HALO)  # fmt: skip


def _draw_zones(ax, labels: _Labels, snap: Snapshot, start: int, m: int, ylim, max_zones: int = 6) -> None:
    """The ``max_zones`` most recent zones in view; an FVG that is also a SIBI/SSIB is one box "FVG/SSIB"."""
    merged: dict[tuple[Direction, float, float], tuple[int, list[str]]] = {}
    for z in sorted((z for z in snap.zones if _visible(z.top, z.bottom, ylim)), key=lambda z: z.index):
        key = (z.direction, z.top, z.bottom)
        index, names = merged.get(key, (z.index, []))
        merged[key] = (min(index, z.index), [*names, z.label] if z.label not in names else names)
    for (direction, top, bottom), (index, names) in sorted(merged.items(), key=lambda kv: kv[1][0])[-max_zones:]:
        x0 = max(index - start, 0)
        colour = _colour(direction)
        ax.fill_between([x0, m - 1], bottom, top, color=colour, alpha=0.13, linewidth=0, zorder=0)
        labels.add(x0 + 0.3, top, "/".join(names), size=CONTEXT_FONT, ha="left", va="top", offsets=_ALONG,
                   x_max=m + 0.5, color=colour, bbox=_HALO)  # fmt: skip


def _draw_pools(ax, labels: _Labels, snap: Snapshot, start: int, m: int, ylim) -> None:
    """The nearest 3 resting liquidity pools on each side, dashed from the bar that formed them."""
    for level in (*snap.pools_above[:3], *snap.pools_below[:3]):
        if not ylim[0] <= level.price <= ylim[1]:
            continue
        x0 = max(level.index - start, 0)
        ax.hlines(level.price, x0, m - 1, colors="#555555", linestyles="dashed", linewidth=1.0, alpha=0.7)
        labels.add(x0 + 0.3, level.price, level.label, size=CONTEXT_FONT, ha="left", va="bottom",
                   offsets=(*_ALONG[:3], (0, -1)), x_max=m + 0.5, color="#333333", bbox=_HALO)  # fmt: skip


def _draw_marks(ax, labels: _Labels, snap: Snapshot, start: int) -> None:
    """BOS / CHOCH / MSS: a line from the broken swing to the breaking candle, the kind written beside it."""
    for mark in snap.structure.marks:
        x0, x1 = mark.swing_index - start, mark.index - start
        if x1 < 0:
            continue
        colour = _colour(mark.direction)
        up = mark.direction is Direction.BULLISH
        ax.hlines(mark.level, max(x0, 0), x1, colors=colour, linewidth=1.4, zorder=4)
        labels.add((max(x0, 0) + x1) / 2, mark.level, mark.kind, size=CONTEXT_FONT, ha="center",
                   va="bottom" if up else "top", offsets=_AWAY_UP if up else _AWAY_DOWN, color=colour,
                   fontweight="bold", bbox=_HALO)  # fmt: skip


def _draw_trade(ax, labels: _Labels, s: Signal, m: int, right: float) -> None:
    """Entry zone (blue band), entry, SL and TP1-3 lines over the last bars and the margin, labelled on the right."""
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
    # a label nudged off its line (levels closer than a label height) moves away from the entry
    for price, colour, label in lines:
        ax.hlines(price, x0 - 6, right, colors=colour, linewidth=1.8, zorder=5)
        box = {"boxstyle": "round,pad=0.25", "facecolor": colour, "edgecolor": "none", "alpha": 0.95}
        away = 1 if price >= s.entry else -1
        offsets = ((0, 0), (0, away * 0.6), (0, away * 1.2), (0, -away * 0.6), (0, away * 1.8))
        labels.add(right - 0.3, price, label, size=TRADE_FONT, ha="right", va="center", offsets=offsets,
                   required=True, color="white", fontweight="bold", bbox=box)  # fmt: skip


def _y_range(window: pd.DataFrame, analysis: Analysis) -> tuple[float, float]:
    """Candles always visible; trade levels always visible; context levels only when close to the candles."""
    low, high = float(window["low"].min()), float(window["high"].max())
    r = analysis.result
    if isinstance(r, Signal):
        low = min(low, r.sl, r.tp3, r.entry_low)
        high = max(high, r.sl, r.tp3, r.entry_high)
    pad = 0.04 * (high - low or high * 0.01)
    return low - pad, high + pad
