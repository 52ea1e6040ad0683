"""The signal chart: recent candles, the trade and a little context, rendered to a 1200x800 PNG for a phone.

Drawn with plain matplotlib (an Agg ``Figure``, no pyplot state), entry timeframe, the last ``CANDLES`` candles
at x = 0..m-1 (gaps removed): wicks as one line collection, bodies and volume as one polygon collection each.

What a trader reads first gets the ink:
- a signal: its entry zone (a strong blue band from the bar its zone formed), entry, SL and TP1-TP3 lines with
  labels in the right margin; context only in the trade's direction, faded (opposite zones are left out);
- a no trade: its reason in a box and the level the reason cites (a liquidity label such as PDL, or a price);
- both: the last price as a tag on the price axis, the latest structure mark and the nearest liquidity.
Labels are few (trade labels plus at most ``MAX_CONTEXT_LABELS``), at least ``MIN_FONT_PX`` tall, and placed so
that no label box overlaps another or a candle (``_Labels``); one that finds no free place is dropped.
Axes: prices on the right with compact labels (``120.5k``) in a margin measured to fit them; time in
``tz`` (BOT_TIMEZONE) with ticks on round hours / days / months, the year where it changes, and the zone named
in the axis label.
"""

from __future__ import annotations

import io
import logging
import re
from datetime import tzinfo
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import MaxNLocator

from engine.prices import format_price
from engine.signal_model import Signal, TradeDirection
from engine.tables import liquidity_name, snapshot_levels
from engine.views import Level, Snapshot
from ict_modules.core import Direction
from ict_signal_engine import Analysis

logger = logging.getLogger(__name__)

CANDLES = 120
RIGHT_MARGIN = 28  # empty bars on the right for the trade labels
NO_TRADE_MARGIN = 3
WIDTH_PX, HEIGHT_PX, BASE_DPI = 1200, 800, 100
BULL, BEAR, ENTRY, GREY = "#1b9e5a", "#d64545", "#2f6fdf", "#555555"
VOLUME_COLOURS = {True: "#9fd3b6", False: "#eeb1b1"}
MIN_FONT_PX = 14
TICK_PX, CONTEXT_PX, TRADE_PX, TITLE_PX = 14, 15, 15, 22
MAX_CONTEXT_LABELS = 3
MAX_CONTEXT_LABELS_SIGNAL = 2  # a signal already has five trade labels
PRICE_SHARE = 0.84  # of the plot height; the volume panel has the rest
MARGIN_PX = {"left": 14, "top": 46, "bottom": 52, "gap": 6}
TIME_STEPS = (  # (bucket width, unit) candidates for the time ticks, finest first
    *((h, "h") for h in (1, 2, 3, 4, 6, 12)),
    *((d, "d") for d in (1, 2, 3, 7, 14)),
    *((n, "M") for n in (1, 2, 3, 6, 12)),
)
MAX_TIME_TICKS = 7
POOL_LABEL = re.compile(r"\b(PDH|PDL|PWH|PWL|BSL|SSL|EQH|EQL|HOD|LOD)\b")
CITED_PRICE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+)(?!\s*(?:R\b|ATR|%|x\b))")


def pt(px: float) -> float:
    """Font size in points for ``px`` pixels on the 100-dpi base figure."""
    return px * 72.0 / BASE_DPI


def _colour(direction: Direction | None) -> str:
    if direction is None:
        return GREY
    return BULL if direction is Direction.BULLISH else BEAR


def _title(analysis: Analysis) -> str:
    r = analysis.result
    head = f"{analysis.symbol} {analysis.timeframe}"
    if isinstance(r, Signal):
        side = "LONG" if r.direction is TradeDirection.LONG else "SHORT"
        return f"{head} · {side} · confidence {r.confidence:.0f}"
    return f"{head} · no trade"


def render_signal_chart(
    analysis: Analysis, *, candles: int = CANDLES, dpi: int = BASE_DPI, tz: tzinfo | str | None = None
) -> bytes:
    """PNG bytes of the chart of ``analysis`` (see the module docstring); times in ``tz`` (default UTC)."""
    fig = build_figure(analysis, candles=candles, tz=tz)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"compress_level": 3})
    return buffer.getvalue()


def build_figure(analysis: Analysis, *, candles: int = CANDLES, tz: tzinfo | str | None = None) -> Figure:
    """The drawn figure (tests read its artists); :func:`render_signal_chart` saves it."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else (tz or ZoneInfo("UTC"))
    frame = analysis.frames[analysis.timeframe]
    start = max(0, len(frame) - candles)
    window = frame.iloc[start:]
    m = len(window)
    signal = analysis.result if isinstance(analysis.result, Signal) else None
    right = m - 1 + (RIGHT_MARGIN if signal else NO_TRADE_MARGIN)
    ylim = _y_range(window, analysis)
    fig = Figure(figsize=(WIDTH_PX / BASE_DPI, HEIGHT_PX / BASE_DPI), dpi=BASE_DPI, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    ax, vol = _layout(fig, renderer, window, ylim, right)
    _draw_candles(ax, vol, window)
    _time_axis(ax, vol, window, zone)
    labels = _Labels(ax, renderer, window, ylim, MAX_CONTEXT_LABELS_SIGNAL if signal else MAX_CONTEXT_LABELS)
    _last_price(ax, renderer, window)
    if signal is not None:
        _draw_trade(ax, labels, signal, analysis.snapshot, start, m, right)
    else:
        _draw_no_trade(ax, labels, analysis, start, m)
    _draw_context(ax, labels, analysis.snapshot, start, m, ylim, signal)
    fig.text(MARGIN_PX["left"] / WIDTH_PX, 1 - 10 / HEIGHT_PX, _title(analysis), fontsize=pt(TITLE_PX),
             fontweight="bold", ha="left", va="top")  # fmt: skip
    return fig


# ---------------------------------------------------------------- axes


def _price_ticks(ylim: tuple[float, float]) -> tuple[np.ndarray, float]:
    ticks = MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]).tick_values(*ylim)
    ticks = ticks[(ticks >= ylim[0]) & (ticks <= ylim[1])]
    step = float(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(ylim[1] - ylim[0]) or 1.0
    return ticks, step


def axis_price(value: float, step: float, top: float) -> str:
    """A compact tick label: ``120.5k`` from 100,000 on, else thousands separators and the step's decimals."""
    scale, suffix = (1000.0, "k") if top >= 100_000 else (1.0, "")
    unit = step / scale
    decimals = 0
    while decimals < 8 and abs(round(unit * 10**decimals) - unit * 10**decimals) > 1e-6 * 10**decimals:
        decimals += 1
    return f"{value / scale:,.{decimals}f}{suffix}"


def _text_px(renderer, text: str, px: float, bold: bool = False) -> tuple[float, float]:
    """Width and height in pixels of ``text`` at ``px`` pixels (the renderer's own metrics)."""
    prop = FontProperties(size=pt(px), weight="bold" if bold else "normal")
    width, height, _ = renderer.get_text_width_height_descent(text, prop, ismath=False)
    return width, height


def _layout(fig: Figure, renderer, window: pd.DataFrame, ylim, right: float):
    """Price and volume axes, the right margin measured to fit the widest price label and the last-price tag."""
    ticks, step = _price_ticks(ylim)
    tick_labels = [axis_price(v, step, ylim[1]) for v in ticks]
    last = format_price(float(window["close"].iloc[-1]))
    widest = max(
        [_text_px(renderer, s, TICK_PX)[0] for s in tick_labels] + [_text_px(renderer, last, TICK_PX, True)[0]]
    )
    right_px = widest + 36  # tick, the tag offset and its box padding
    left, top, bottom, gap = (MARGIN_PX[k] for k in ("left", "top", "bottom", "gap"))
    width = 1 - (left + right_px) / WIDTH_PX
    height = 1 - (top + bottom + gap) / HEIGHT_PX
    x0, y0 = left / WIDTH_PX, bottom / HEIGHT_PX
    vol = fig.add_axes((x0, y0, width, height * (1 - PRICE_SHARE)))
    ax = fig.add_axes((x0, y0 + height * (1 - PRICE_SHARE) + gap / HEIGHT_PX, width, height * PRICE_SHARE), sharex=vol)
    ax.set_xlim(-1, right)
    ax.set_ylim(*ylim)
    ax.yaxis.tick_right()
    ax.set_yticks(ticks, tick_labels, fontsize=pt(TICK_PX))
    ax.xaxis.set_visible(False)  # the volume panel shows the time; vertical grid lines come with its ticks
    ax.grid(True, axis="y", color="#d8d8d8", linestyle=":", linewidth=0.8)
    vol.set_yticks([])  # no scale and no offset text: the bars' relative height is what matters
    for axes in (ax, vol):
        axes.set_axisbelow(True)
        for spine in axes.spines.values():
            spine.set_color("#888888")
    return ax, vol


def _draw_candles(ax, vol, window: pd.DataFrame) -> None:
    """Wicks (one LineCollection), bodies and volume bars (one PolyCollection each)."""
    x = np.arange(len(window), dtype=float)
    o, h, lo, c = (window[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    up = c >= o
    colours = np.where(up, BULL, BEAR)
    ax.add_collection(LineCollection(np.stack([np.c_[x, lo], np.c_[x, h]], axis=1), colors=colours, linewidths=1.0))
    body_lo, body_hi = np.minimum(o, c), np.maximum(o, c)
    body_hi = np.maximum(body_hi, body_lo + (ax.get_ylim()[1] - ax.get_ylim()[0]) * 1e-3)  # a doji stays visible
    ax.add_collection(PolyCollection(_rects(x, body_lo, body_hi, 0.35), facecolors=colours, edgecolors=colours,
                                     linewidths=0.5))  # fmt: skip
    if "volume" in window.columns and float(window["volume"].max()) > 0:
        v = window["volume"].to_numpy(dtype=float)
        vol.add_collection(PolyCollection(_rects(x, np.zeros_like(v), v, 0.4),
                                          facecolors=[VOLUME_COLOURS[bool(u)] for u in up], linewidths=0))  # fmt: skip
        vol.set_ylim(0, float(v.max()) * 1.05)


def _rects(x: np.ndarray, bottom: np.ndarray, top: np.ndarray, half: float) -> np.ndarray:
    return np.stack([np.c_[x - half, bottom], np.c_[x - half, top], np.c_[x + half, top], np.c_[x + half, bottom]], 1)


def time_ticks(index: pd.DatetimeIndex, tz: tzinfo, max_ticks: int = MAX_TIME_TICKS) -> tuple[list[int], list[str]]:
    """Bars that open a new round hour / day / month bucket in ``tz``, at most ``max_ticks``, with their labels."""
    local = index.tz_convert(tz)
    naive = local.tz_localize(None).to_numpy()  # local wall-clock times: buckets by the local calendar
    counts = {unit: naive.astype(f"datetime64[{unit}]").astype(np.int64) for unit in ("h", "D", "M")}
    for width, unit in TIME_STEPS:
        shift = 3 if unit == "d" else 0  # day 0 (1970-01-01) was a Thursday: 7-day buckets start on Monday
        key = (counts[unit.upper() if unit == "d" else unit] + shift) // width
        starts = [int(i) for i in np.flatnonzero(key[1:] != key[:-1]) + 1]
        if len(starts) <= max_ticks:
            break
    labels, previous = [], None
    for i in starts:
        t = local[i]
        day = t.strftime("%d %b")
        if previous is None or t.year != previous.year:
            day += t.strftime(" %Y")
        if unit == "M":
            day = t.strftime("%b %Y") if previous is None or t.year != previous.year else t.strftime("%b")
        elif unit == "h" and (t.hour or t.minute):
            day = t.strftime("%H:%M") if previous is not None and previous.date() == t.date() else f"{day} {t:%H:%M}"
        labels.append(day)
        previous = t
    return starts, labels


def _time_axis(ax, vol, window: pd.DataFrame, tz: tzinfo) -> None:
    ticks, labels = time_ticks(pd.DatetimeIndex(window.index), tz)
    vol.set_xticks(ticks, labels, fontsize=pt(TICK_PX))
    for axes in (ax, vol):  # one collection each instead of a grid line per tick
        axes.vlines(ticks, 0, 1, transform=axes.get_xaxis_transform(), colors="#d8d8d8", linestyles=":", lw=0.8)
    name = getattr(tz, "key", None) or str(tz)
    vol.set_xlabel(f"time ({name})", fontsize=pt(TICK_PX), loc="right", labelpad=2, color="#444444")


def _last_price(ax, renderer, window: pd.DataFrame) -> None:
    """A dotted line at the last close and its price as a tag on the axis; tick labels under the tag are hidden."""
    close, opened = float(window["close"].iloc[-1]), float(window["open"].iloc[-1])
    colour = BULL if close >= opened else BEAR
    ax.axhline(close, color=colour, linestyle=(0, (1, 2)), linewidth=1.0, zorder=1)
    tag_h = _text_px(renderer, "0", TICK_PX, True)[1] + 8
    y_px = ax.transData.transform((0, close))[1]
    for tick in ax.yaxis.get_major_ticks():
        if abs(ax.transData.transform((0, tick.get_loc()))[1] - y_px) < tag_h:
            tick.label2.set_visible(False)
    ax.annotate(format_price(close), (1.0, close), xycoords=("axes fraction", "data"), xytext=(3, 0),
                textcoords="offset points", ha="left", va="center", fontsize=pt(TICK_PX), fontweight="bold",
                color="white", annotation_clip=False, zorder=7,
                bbox={"boxstyle": "square,pad=0.2", "facecolor": colour, "edgecolor": "none"})  # fmt: skip


# ---------------------------------------------------------------- labels


class _Labels:
    """Labels placed so that no box overlaps another label or a candle (the main source of clutter).

    Each label tries its candidate offsets (dx in label widths, dy in label heights) in order and takes the first
    whose box (measured by the renderer, plus the background's padding) stays inside the axes (left of
    ``x_max`` when given), overlaps no placed label and no candle's high-low range; an optional label with no free
    place is dropped, a required one (the trade levels, in the empty right margin) takes its first offset.
    """

    PAD_PX = 4.0

    def __init__(self, ax, renderer, window: pd.DataFrame, ylim, max_context: int = MAX_CONTEXT_LABELS) -> None:
        self.ax, self.renderer, self.max_context = ax, renderer, max_context
        self.boxes: list[tuple[float, float, float, float]] = []
        self.context = 0
        pts = ax.transData.transform(np.c_[np.arange(len(window)), window["low"].to_numpy(dtype=float)])
        self.candle_x = pts[:, 0]
        self.candle_lo = pts[:, 1]
        self.candle_hi = ax.transData.transform(np.c_[np.arange(len(window)), window["high"].to_numpy(dtype=float)])[
            :, 1
        ]
        self.half_bar = abs(ax.transData.transform((1, 0))[0] - ax.transData.transform((0, 0))[0]) / 2

    def block(self, box: tuple[float, float, float, float]) -> None:
        """Reserve a region (e.g. the no-trade reason box) so labels keep off it."""
        self.boxes.append(box)

    def free(self, box: tuple[float, float, float, float]) -> bool:
        if any(_overlap(box, b) for b in self.boxes):
            return False
        near = (self.candle_x + self.half_bar > box[0]) & (self.candle_x - self.half_bar < box[2])
        return not bool(np.any(near & (self.candle_hi > box[1]) & (self.candle_lo < box[3])))

    def add(self, x, y, text: str, *, px: float, ha: str, va: str, offsets, required=False, x_max=None, **kw):
        if not required and self.context >= self.max_context:
            return None
        w, h = _text_px(self.renderer, text, px, kw.get("fontweight") == "bold")
        h = max(h, _text_px(self.renderer, "lp", px)[1])  # matplotlib's line height is at least that of "lp"
        w, h = w + 2 * self.PAD_PX + 2, h + 2 * self.PAD_PX + 2  # 1 px of air around the background box
        ax_x0, ax_y0, ax_x1, ax_y1 = self.ax.bbox.extents
        if x_max is not None:
            ax_x1 = min(ax_x1, self.ax.transData.transform((x_max, y))[0])
        px_x, px_y = self.ax.transData.transform((x, y))
        left = px_x - {"left": 0.0, "center": 0.5, "right": 1.0}[ha] * w
        bottom = px_y - {"bottom": 0.0, "center": 0.5, "top": 1.0}[va] * h
        candidates = [(dx, dy, (left + dx * w, bottom + dy * h, left + dx * w + w, bottom + dy * h + h))
                      for dx, dy in offsets]  # fmt: skip
        chosen = next(
            (c for c in candidates if _inside(c[2], (ax_x0, ax_y0, ax_x1, ax_y1)) and self.free(c[2])),
            candidates[0] if required else None,
        )
        if chosen is None:
            return None
        box = chosen[2]
        self.boxes.append(box)
        self.context += not required
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        xy = self.ax.transData.inverted().transform(centre)
        pad = self.PAD_PX / (pt(px) * BASE_DPI / 72.0)  # the box padding in font sizes
        bbox = {"boxstyle": f"round,pad={pad:.2f}", "edgecolor": "none", **kw.pop("bbox", {})}
        return self.ax.text(*xy, text, fontsize=pt(px), ha="center", va="center", zorder=6,
                            clip_on=False, bbox=bbox, **kw)  # fmt: skip


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(box, area) -> bool:
    return box[0] >= area[0] and box[2] <= area[2] and box[1] >= area[1] and box[3] <= area[3]


HALO = {"facecolor": "white", "alpha": 0.85}
ALONG = ((0, 0), (1, 0), (0, -1), (1, -1), (0, 1), (-1, 0), (2, 0), (-1, -1))
AWAY_UP = ((0, 0), (0, 1), (-1, 0), (1, 0), (0, 2))
AWAY_DOWN = ((0, 0), (0, -1), (-1, 0), (1, 0), (0, -2))


# ---------------------------------------------------------------- trade / no trade


def _draw_trade(ax, labels: _Labels, s: Signal, snap: Snapshot, start: int, m: int, right: float) -> None:
    """The entry zone from the bar its zone formed, entry / SL / TP lines over the margin, labelled on the right."""
    long = s.direction is TradeDirection.LONG
    own = [z for z in snap.zones if z.bottom <= s.entry_high and z.top >= s.entry_low and
           (z.direction is Direction.BULLISH) == long]  # fmt: skip
    x0 = max(min((z.index - start for z in own), default=m - 15), 0)
    low, high = min(s.entry_low, s.entry_high), max(s.entry_low, s.entry_high)
    if high > low:
        ax.fill_between([x0, right], low, high, color=ENTRY, alpha=0.22, linewidth=0, zorder=0)
        ax.hlines([low, high], x0, right, colors=ENTRY, linewidth=1.0, alpha=0.8, zorder=2)
    r1, r2, r3 = s.r_multiples
    lines = [
        (s.entry, ENTRY, f"Entry {format_price(s.entry)}"),
        (s.sl, BEAR, f"SL {format_price(s.sl)}"),
        (s.tp1, BULL, f"TP1 {format_price(s.tp1)} · {r1:g}R"),
        (s.tp2, BULL, f"TP2 {format_price(s.tp2)} · {r2:g}R"),
        (s.tp3, BULL, f"TP3 {format_price(s.tp3)} · {r3:g}R"),
    ]
    for price, colour, text in lines:
        ax.hlines(price, m - 1, right, colors=colour, linewidth=2.0, zorder=5)
        away = 1 if price >= s.entry else -1
        offsets = ((0, 0), (0, away * 0.55), (0, away * 1.1), (0, -away * 0.55), (0, away * 1.65), (0, away * 2.2))
        labels.add(right - 0.3, price, text, px=TRADE_PX, ha="right", va="center", offsets=offsets, required=True,
                   color="white", fontweight="bold", bbox={"facecolor": colour, "alpha": 0.95})  # fmt: skip


def cited_level(reason: str, snap: Snapshot) -> tuple[str, float] | None:
    """The level a no-trade reason names: a liquidity label in the snapshot (PDL, BSL...) or a price in the text."""
    pools = [*snap.pools_above, *snap.pools_below, *snap.htf_pools_above, *snap.htf_pools_below]
    for name in POOL_LABEL.findall(reason):
        level = next((p for p in pools if p.label == name), None)
        if level is not None:
            return name, float(level.price)
    match = CITED_PRICE.search(reason)
    if match:
        return format_price(float(match[1].replace(",", ""))), float(match[1].replace(",", ""))
    return None


def _draw_no_trade(ax, labels: _Labels, analysis: Analysis, start: int, m: int) -> None:
    """The first reason in a box at the top left, and the level it cites as a line with its label."""
    reasons = getattr(analysis.result, "reasons", ()) or ("no setup",)
    reason = reasons[0]
    text = ax.text(0.01, 0.985, f"No trade: {reason}", transform=ax.transAxes, ha="left", va="top", zorder=8,
                   fontsize=pt(CONTEXT_PX), color="#222222",
                   bbox={"boxstyle": "round,pad=0.35", "facecolor": "#fff7d6", "edgecolor": "#c9a227"})  # fmt: skip
    renderer = labels.renderer
    patch = text.get_bbox_patch()
    patch.set_clip_on(False)
    text.update_bbox_position_size(renderer)
    labels.block(tuple(patch.get_window_extent(renderer).extents))
    cited = cited_level(reason, analysis.snapshot)
    lo, hi = ax.get_ylim()
    if cited is None or not lo <= cited[1] <= hi:
        return
    name, price = cited
    ax.axhline(price, color="#c9a227", linewidth=2.0, linestyle="--", zorder=4)
    labels.add(m - 1.5, price, f"{name} {format_price(price)}" if name != format_price(price) else name,
               px=CONTEXT_PX, ha="right", va="bottom", offsets=((0, 0), (0, -1), (-1, 0), (-1, -1), (-2, 0)),
               required=True, color="#7a5c00", fontweight="bold", bbox=HALO)  # fmt: skip


# ---------------------------------------------------------------- context


def _draw_context(ax, labels: _Labels, snap: Snapshot, start: int, m: int, ylim, signal: Signal | None) -> None:
    """The latest structure mark, the nearest liquidity on each side and up to two zones, faded.

    With a signal only context in its direction is drawn (a short does not need the bullish zones)."""
    want = (
        None
        if signal is None
        else (Direction.BULLISH if signal.direction is TradeDirection.LONG else Direction.BEARISH)
    )
    marks = [mk for mk in snap.structure.marks if mk.index - start >= 0 and (want is None or mk.direction is want)]
    if marks:
        mark = marks[-1]
        x0, x1 = max(mark.swing_index - start, 0), mark.index - start
        up = mark.direction is Direction.BULLISH
        ax.hlines(mark.level, x0, x1, colors=_colour(mark.direction), linewidth=1.6, zorder=4)
        labels.add((x0 + x1) / 2, mark.level, mark.kind, px=CONTEXT_PX, ha="center", va="bottom" if up else "top",
                   offsets=AWAY_UP if up else AWAY_DOWN, color=_colour(mark.direction), fontweight="bold",
                   bbox=HALO)  # fmt: skip
    for level in _nearest_pools(snap, ylim, signal):
        x0 = max(level.index - start, 0)
        ax.hlines(level.price, x0, m - 1, colors=GREY, linestyles="dashed", linewidth=1.0, alpha=0.7, zorder=3)
        name = liquidity_name(level.price, snapshot_levels(snap)) or level.label  # as the signal's targets
        labels.add(x0 + 0.5, level.price, name, px=CONTEXT_PX, ha="left", va="bottom", offsets=ALONG,
                   x_max=m + 0.5, color="#333333", bbox=HALO)  # fmt: skip
    zones = [
        z for z in snap.zones if (want is None or z.direction is want) and z.bottom <= ylim[1] and z.top >= ylim[0]
    ]
    if signal is not None:  # the entry zone is already drawn, strongly
        zones = [z for z in zones if not (z.bottom <= signal.entry_high and z.top >= signal.entry_low)]
    for z in sorted(zones, key=lambda z: z.index)[-2:]:
        x0 = max(z.index - start, 0)
        ax.fill_between([x0, m - 1], z.bottom, z.top, color=_colour(z.direction), alpha=0.08, linewidth=0, zorder=0)
        labels.add(x0 + 0.5, z.top, z.label, px=CONTEXT_PX, ha="left", va="top", offsets=ALONG, x_max=m + 0.5,
                   color=_colour(z.direction), bbox=HALO)  # fmt: skip


def _nearest_pools(snap: Snapshot, ylim, signal: Signal | None) -> list[Level]:
    """The nearest pool above and below in view; with a signal only the side its targets are on."""
    sides = [snap.pools_above[:1], snap.pools_below[:1]]
    if signal is not None:
        sides = [sides[0] if signal.direction is TradeDirection.LONG else sides[1]]
    return [p for side in sides for p in side if ylim[0] <= p.price <= ylim[1]]


def _y_range(window: pd.DataFrame, analysis: Analysis) -> tuple[float, float]:
    """Candles and trade levels always visible; a no trade keeps room at the top for its reason."""
    low, high = float(window["low"].min()), float(window["high"].max())
    r = analysis.result
    if isinstance(r, Signal):
        low = min(low, r.sl, r.tp3, r.entry_low)
        high = max(high, r.sl, r.tp3, r.entry_high)
    span = high - low or high * 0.01
    headroom = 0.0 if isinstance(r, Signal) else 0.1 * span  # the no-trade reason box sits above the candles
    return low - 0.05 * span, high + 0.05 * span + headroom
