"""Pure renderers of a signal or no-trade result: Telegram HTML (every dynamic string escaped) and plain text.

- ``format_signal_html(result, tz)``: the short form, under 1024 characters so it fits a photo caption.
- ``format_signal_details_html(result, tz)``: the long form (confidence breakdown, components, features).
- ``format_signal_text(result, tz)``: plain text for the terminal (CLI, console mode).

Prices are formatted by magnitude (:func:`format_price`): 2 decimals at 1,000 and above, then more decimals as
the price shrinks, always at least 5 significant digits (0.00001234 -> "0.000012340").
"""

from __future__ import annotations

import html
import math
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from engine.signal_model import NoTrade, Signal, SignalResult, TradeDirection

CAPTION_LIMIT = 1024
_COMPONENT_NAMES = {
    "bos": "BOS",
    "choch": "CHOCH",
    "mss": "MSS",
    "order_block": "OB",
    "breaker": "Breaker",
    "fvg": "FVG",
    "sibi_ssib": "SIBI/SSIB",
    "liquidity_sweep": "Sweep",
    "displacement": "Displacement",
    "ote": "OTE",
    "premium_discount": "Range",
    "target": "Target",
    "whale": "Whale",
    "killzone": "Killzone",
}
_SESSIONS = {
    "asia": "Asia",
    "london": "London",
    "ny_am": "New York AM",
    "london_close": "London close",
    "ny_pm": "New York PM",
}


def format_price(price: float | None) -> str:
    """A price with decimals by magnitude: >= 1000 -> 2 decimals with thousands separators, else enough decimals
    for 5 significant digits (at least 2): 64,210.50 · 3.4512 · 0.000012340."""
    if price is None or not math.isfinite(price):
        return "n/a"
    if price == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(price)))
    decimals = 2 if magnitude >= 3 else max(2, 4 - magnitude)
    return f"{price:,.{decimals}f}"


def _zone(tz: tzinfo | str | None) -> tzinfo:
    if tz is None:
        return ZoneInfo("UTC")
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def format_time(moment: datetime, tz: tzinfo | str | None) -> str:
    """``2025-07-01 14:00 UTC`` in the given zone (its abbreviation, e.g. CEST)."""
    local = moment.astimezone(_zone(tz))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or ''}".strip()


def _pct(target: float, entry: float) -> str:
    return f"{100.0 * (target - entry) / entry:+.2f}%"


def _arrow(result: Signal) -> str:
    return "🟢 LONG" if result.direction is TradeDirection.LONG else "🔴 SHORT"


def _bias_line(result: SignalResult) -> str:
    marks = {"bullish": "▲", "bearish": "▼", "neutral": "•"}
    return " · ".join(f"{tf} {marks.get(b, '•')} {b}" for tf, b in result.bias)


def _confidence_line(result: Signal) -> str:
    line = f"{result.confidence:.0f}/100"
    if result.ml_probability is not None:
        line += f" (rules {result.rule_confidence:.0f}, ML win prob. {100 * result.ml_probability:.0f}%)"
    return line


def _entry_text(s: Signal) -> str:
    if s.entry_low == s.entry_high:
        return f"{format_price(s.entry)} (market)"
    return f"{format_price(s.entry_low)} – {format_price(s.entry_high)} (limit {format_price(s.entry)})"


def _key_components(result: SignalResult, limit: int) -> list[str]:
    lines = []
    for c in result.components:
        if c.name in ("target", "killzone"):
            continue
        lines.append(f"{_COMPONENT_NAMES.get(c.name, c.name)}: {c.detail}")
        if len(lines) >= limit:
            break
    return lines


def _signal_lines(s: Signal, tz: tzinfo | str | None) -> list[tuple[str, str, bool]]:
    """(label, value, bold) rows shared by the HTML and the text form; values are raw (unescaped) strings."""
    r1, r2, r3 = s.r_multiples
    rows = [
        ("Entry", _entry_text(s), True),
        ("SL", f"{format_price(s.sl)} ({_pct(s.sl, s.entry)})", True),
        ("TP1", f"{format_price(s.tp1)} ({r1:g}R)", True),
        ("TP2", f"{format_price(s.tp2)} ({r2:g}R)", True),
        ("TP3", f"{format_price(s.tp3)} ({r3:g}R)", True),
        ("Confidence", _confidence_line(s), False),
        ("Bias", _bias_line(s), False),
    ]
    if s.entry_model:
        rows.append(("Model", s.entry_model.replace("_", " "), False))
    rows.append(("Session", _SESSIONS.get(s.session, s.session or "outside killzones"), False))
    rows.append(("Candle", format_time(s.time, tz), False))
    return rows


def format_signal_html(result: SignalResult, tz: tzinfo | str | None = None, *, component_limit: int = 4) -> str:
    """Short Telegram-HTML form (photo caption, < 1024 characters)."""
    e = html.escape
    if isinstance(result, NoTrade):
        text = _no_trade_html(result, tz, limit=3)
    else:
        head = f"<b>{_arrow(result)} {e(result.symbol)} {e(result.timeframe)}</b>"
        rows = [
            f"{e(label)}: <b>{e(value)}</b>" if bold else f"{e(label)}: {e(value)}"
            for label, value, bold in _signal_lines(result, tz)
        ]
        comps = [f"• {e(line)}" for line in _key_components(result, component_limit)]
        text = "\n".join([head, *rows, *(["<i>Key components</i>", *comps] if comps else [])])
        while len(text) > CAPTION_LIMIT and comps:
            comps.pop()
            text = "\n".join([head, *rows, *(["<i>Key components</i>", *comps] if comps else [])])
    if len(text) > CAPTION_LIMIT:  # hostile or absurdly long input: whole lines only (each line's tags balance)
        kept = []
        for line in text.split("\n"):
            if sum(len(k) + 1 for k in kept) + len(line) > CAPTION_LIMIT:
                break
            kept.append(line)
        text = "\n".join(kept) or "…"
    return text


def _no_trade_html(result: NoTrade, tz: tzinfo | str | None, *, limit: int) -> str:
    e = html.escape
    lines = [
        f"<b>⚪ No trade: {e(result.symbol)} {e(result.timeframe)}</b>",
        *(f"• {e(r)}" for r in result.reasons),
        f"Bias: {e(_bias_line(result))}",
        f"Candle: {e(format_time(result.time, tz))}",
    ]
    comps = _key_components(result, limit)
    if comps:
        lines += ["<i>Seen</i>", *(f"• {e(c)}" for c in comps)]
    if result.unavailable:
        lines.append(f"<i>Unavailable: {e(', '.join(result.unavailable))}</i>")
    return "\n".join(lines)


def format_signal_details_html(result: SignalResult, tz: tzinfo | str | None = None) -> str:
    """Long Telegram-HTML form: levels, confidence breakdown, every component with its levels, the features.

    May exceed one message; the Telegram sender splits below 4096 characters.
    """
    e = html.escape
    if isinstance(result, NoTrade):
        return _no_trade_html(result, tz, limit=len(result.components))
    lines = [f"<b>{_arrow(result)} {e(result.symbol)} {e(result.timeframe)}</b> · <code>{e(result.id)}</code>"]
    lines += [f"{e(label)}: {e(value)}" for label, value, _ in _signal_lines(result, tz)]
    lines.append("")
    lines.append(f"<b>Confidence breakdown</b> (rules {result.rule_confidence:.0f}/100)")
    lines += [f"• {e(name.replace('_', ' '))}: +{points:g}" for name, points in result.confidence_breakdown]
    lines.append("")
    lines.append("<b>Components</b>")
    lines += [f"• {e(_COMPONENT_NAMES.get(c.name, c.name))}: {e(c.detail)}" for c in result.components]
    if result.unavailable:
        lines.append(f"<i>Unavailable: {e(', '.join(result.unavailable))}</i>")
    if result.features:
        lines.append("")
        lines.append("<b>Features</b>")
        lines.append("<code>" + e(", ".join(f"{k}={v:g}" for k, v in result.features)) + "</code>")
    return "\n".join(lines)


def format_signal_text(result: SignalResult, tz: tzinfo | str | None = None) -> str:
    """Plain-text form for the terminal (no markup)."""
    if isinstance(result, NoTrade):
        lines = [f"NO TRADE {result.symbol} {result.timeframe} at {format_time(result.time, tz)}"]
        lines += [f"  - {r}" for r in result.reasons]
        lines.append(f"Bias: {_bias_line(result)}")
        comps = _key_components(result, 6)
        if comps:
            lines.append("Seen:")
            lines += [f"  - {c}" for c in comps]
        if result.unavailable:
            lines.append(f"Unavailable: {', '.join(result.unavailable)}")
        return "\n".join(lines)
    direction = "LONG" if result.direction is TradeDirection.LONG else "SHORT"
    lines = [f"{direction} {result.symbol} {result.timeframe}  [{result.id}]"]
    lines += [f"{label + ':':<12}{value}" for label, value, _ in _signal_lines(result, tz)]
    lines.append("Confidence breakdown: " + ", ".join(f"{k} +{v:g}" for k, v in result.confidence_breakdown))
    lines.append("Components:")
    lines += [f"  - {_COMPONENT_NAMES.get(c.name, c.name)}: {c.detail}" for c in result.components]
    if result.unavailable:
        lines.append(f"Unavailable: {', '.join(result.unavailable)}")
    return "\n".join(lines)
