"""Pure renderers of a signal or no-trade result: Telegram HTML (every dynamic string escaped) and plain text.

- ``format_signal_html(result, tz, ...)``: the short form, under 1024 characters so it fits a photo caption.
- ``format_signal_details_html(result, tz, ...)``: the long form (the rule score and its parts, every component).
- ``format_signal_text(result, tz, ...)``: plain text for the terminal (CLI, console mode).

The numbers a user reads are honest ones: the setup's out-of-sample TP1 rate as the probability (or "not enough
evidence") and its record (:func:`tracking.gate.evidence_line`), given as ``verdict``. The 0-100 rule score is not
a probability: it appears only in the details view and in JSON. A message also says whether the bot tracks the
signal (``tracking``: :func:`tracking_line`). Prices use the one formatter (:func:`engine.prices.format_price`);
in HTML the prices a trader copies are in ``<code>`` (tap to copy).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from engine.prices import format_price
from engine.signal_model import Component, NoTrade, Signal, SignalResult, TradeDirection
from market.timeframes import interval_timedelta
from tracking.gate import Verdict, evidence_line
from tracking.setups import ENTRY_MODEL_NAMES
from tracking.state import PENDING_EXPIRY_CANDLES

__all__ = [
    "CAPTION_LIMIT",
    "format_price",
    "format_signal_details_html",
    "format_signal_html",
    "format_signal_text",
    "format_time",
    "tracking_line",
]

CAPTION_LIMIT = 1024
_COMPONENT_NAMES = {
    "bos": "BOS",
    "choch": "CHOCH",
    "mss": "MSS",
    "order_block": "OB",
    "breaker": "Breaker",
    "mitigation_block": "Mitigation block",
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


def tracking_line(verdict: Verdict | None, position_id: int | None = None, why_not: str | None = None) -> str | None:
    """``📌 Tracking as #12, alerts will follow`` or ``Not tracked: <why>``; None when nothing is known.

    ``why_not`` overrides the verdict's reason (e.g. a duplicate of a signal sent recently)."""
    if position_id is not None:
        return f"📌 Tracking as #{position_id}, alerts will follow"
    if why_not:
        return f"Not tracked: {why_not}"
    if verdict is not None and not verdict.broadcast:
        return f"Not tracked: {verdict.reason}"
    return None


def probability_text(verdict: Verdict) -> str:
    if verdict.probability is None:
        return "not enough evidence"
    return f"TP1 before the stop {verdict.probability:.0%} (out-of-sample rate of this setup)"


def _entry_text(s: Signal, price: Callable[[float], str]) -> str:
    if s.entry_low == s.entry_high:
        return f"{price(s.entry)} (market)"
    return f"{price(s.entry_low)} – {price(s.entry_high)} (limit {price(s.entry)})"


def _validity(s: Signal, tz: tzinfo | str | None) -> str | None:
    """How long a limit entry stays valid: the position's pending expiry (tracking.state)."""
    if s.entry_low == s.entry_high:
        return None
    try:
        until = s.time + PENDING_EXPIRY_CANDLES * interval_timedelta(s.timeframe)
    except (ValueError, KeyError):
        return f"{PENDING_EXPIRY_CANDLES} candles"
    return f"{PENDING_EXPIRY_CANDLES} candles, until {format_time(until, tz)}"


def _distance(s: Signal, now: float) -> str:
    """``entry 0.45% below`` the current price (or ``at the entry``)."""
    if now <= 0:
        return ""
    change = 100.0 * (s.entry - now) / now
    if abs(change) < 0.005:
        return "at the entry"
    return f"entry {abs(change):.2f}% {'above' if change > 0 else 'below'}"


def distinct_components(components: tuple[Component, ...] | list[Component]) -> list[Component]:
    """The components without repeats: one zone seen by two detectors (an FVG that is also a SIBI/SSIB) once."""
    seen: set[tuple] = set()
    out = []
    for c in components:
        is_zone = c.top is not None and c.bottom is not None and c.top != c.bottom
        key = ("zone", round(c.top, 10), round(c.bottom, 10)) if is_zone else (c.name, c.detail)
        if key in seen:
            continue
        seen.add(key)
        out.append(c)
    return out


def _key_components(result: SignalResult, limit: int) -> list[str]:
    lines = []
    for c in distinct_components(result.components):
        if c.name in ("target", "killzone"):
            continue
        lines.append(f"{_COMPONENT_NAMES.get(c.name, c.name)}: {c.detail}")
        if len(lines) >= limit:
            break
    return lines


def _signal_lines(
    s: Signal,
    tz: tzinfo | str | None,
    *,
    price: Callable[[float], str],
    esc: Callable[[str], str],
    verdict: Verdict | None,
    now: float | None,
) -> list[tuple[str, str, bool]]:
    """(label, value, bold) rows shared by the HTML and the text form; ``price`` renders a price (``<code>`` in
    HTML) and ``esc`` escapes every other dynamic string."""
    r1, r2, r3 = s.r_multiples
    rows = [("Entry", _entry_text(s, price), True)]
    valid = _validity(s, tz)
    if valid:
        rows.append(("Valid", esc(valid), False))
    if now is not None:
        distance = _distance(s, now)
        rows.append(("Price now", price(now) + (esc(f" · {distance}") if distance else ""), False))
    rows.append(("SL", f"{price(s.sl)} ({_pct(s.sl, s.entry)})", True))
    for label, level, r in (("TP1", s.tp1, r1), ("TP2", s.tp2, r2), ("TP3", s.tp3, r3)):
        rows.append((label, f"{price(level)} ({_pct(level, s.entry)}, {r:g}R)", True))
    if verdict is not None:
        rows.append(("Probability", esc(probability_text(verdict)), False))
    rows.append(("Bias", esc(_bias_line(s)), False))
    if s.entry_model and verdict is None:  # with a verdict the setup line names the model
        rows.append(("Model", esc(ENTRY_MODEL_NAMES.get(s.entry_model, s.entry_model.replace("_", " "))), False))
    rows.append(("Session", esc(_SESSIONS.get(s.session, s.session or "outside killzones")), False))
    rows.append(("Candle", esc(format_time(s.time, tz)), False))
    return rows


def _code_price(value: float) -> str:
    return f"<code>{html.escape(format_price(value))}</code>"


def _tag(symbol: str) -> str:
    """``#BTCUSDT``: a hashtag Telegram links (letters, digits and underscores only)."""
    return "#" + "".join(ch for ch in symbol if ch.isalnum() or ch == "_")


def _same(text: str) -> str:
    return text


def format_signal_html(
    result: SignalResult,
    tz: tzinfo | str | None = None,
    *,
    verdict: Verdict | None = None,
    tracking: str | None = None,
    price: float | None = None,
    component_limit: int = 4,
) -> str:
    """Short Telegram-HTML form (photo caption, < 1024 characters).

    ``verdict``: the gate's verdict (probability and evidence lines); ``tracking``: the :func:`tracking_line`;
    ``price``: the current price (shown with the entry's distance)."""
    e = html.escape
    if isinstance(result, NoTrade):
        text = _no_trade_html(result, tz, limit=3)
    else:
        head = [f"<b>{_arrow(result)} {e(result.symbol)} {e(result.timeframe)}</b>"]
        if tracking:
            head.append(f"<i>{e(tracking)}</i>")
        rows = [
            f"{e(label)}: <b>{value}</b>" if bold else f"{e(label)}: {value}"
            for label, value, bold in _signal_lines(result, tz, price=_code_price, esc=e, verdict=verdict, now=price)
        ]
        if verdict is not None:
            rows.append(e(evidence_line(verdict)))
        tail = [e(_tag(result.symbol))]
        comps = [f"• {e(line)}" for line in _key_components(result, component_limit)]

        def assemble() -> str:
            return "\n".join([*head, *rows, *(["<i>Key components</i>", *comps] if comps else []), *tail])

        text = assemble()
        while len(text) > CAPTION_LIMIT and comps:
            comps.pop()
            text = assemble()
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


def _reason_name(name: str) -> str:
    return _REASON_NAMES.get(name, name.replace("_", " "))


_REASON_NAMES = {  # engine.config.WEIGHTS keys as a trader reads them
    "htf_alignment": "higher timeframes agree",
    "structure": "structure break in the direction",
    "entry_model": "entry model",
    "zone_confluence": "zones overlapping the entry",
    "liquidity_sweep": "opposite liquidity swept first",
    "displacement": "displacement in the direction",
    "premium_discount_ote": "entry in discount/premium and OTE",
    "killzone": "inside a killzone",
    "whale": "whale activity in the direction",
}


def format_signal_details_html(
    result: SignalResult, tz: tzinfo | str | None = None, *, verdict: Verdict | None = None
) -> str:
    """Long Telegram-HTML form: levels, the evidence, the rule score's reasons, every component (readable text).

    May exceed one message; the Telegram sender splits below 4096 characters.
    """
    e = html.escape
    if isinstance(result, NoTrade):
        return _no_trade_html(result, tz, limit=len(result.components))
    lines = [f"<b>{_arrow(result)} {e(result.symbol)} {e(result.timeframe)}</b> · <code>{e(result.id)}</code>"]
    lines += [
        f"{e(label)}: {value}"
        for label, value, _ in _signal_lines(result, tz, price=_code_price, esc=e, verdict=verdict, now=None)
    ]
    if verdict is not None:
        lines.append(e(evidence_line(verdict)))
    lines.append("")
    lines.append(
        f"<b>Confidence breakdown</b>: why the rules chose it (rule score {result.rule_confidence:.0f}/100, "
        "not a probability)"
    )
    lines += [f"• {e(_reason_name(name))}: +{points:g}" for name, points in result.confidence_breakdown]
    if result.ml_probability is not None:
        lines.append(f"• ML model: {100 * result.ml_probability:.0f}% estimated chance of a win")
    lines.append("")
    lines.append("<b>What the chart shows</b>")
    lines += [
        f"• {e(_COMPONENT_NAMES.get(c.name, c.name))}: {e(c.detail)}" for c in distinct_components(result.components)
    ]
    if result.unavailable:
        lines.append(f"<i>Unavailable: {e(', '.join(result.unavailable))}</i>")
    return "\n".join(lines)


def format_signal_text(
    result: SignalResult,
    tz: tzinfo | str | None = None,
    *,
    verdict: Verdict | None = None,
    tracking: str | None = None,
    price: float | None = None,
) -> str:
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
    if tracking:
        lines.append(tracking)
    rows = _signal_lines(result, tz, price=format_price, esc=_same, verdict=verdict, now=price)
    lines += [f"{label + ':':<13}{value}" for label, value, _ in rows]
    if verdict is not None:
        lines.append(evidence_line(verdict))
    lines.append(
        f"Rule score {result.rule_confidence:.0f}/100 (not a probability): "
        + ", ".join(f"{_reason_name(k)} +{v:g}" for k, v in result.confidence_breakdown)
    )
    lines.append("Components:")
    lines += [f"  - {_COMPONENT_NAMES.get(c.name, c.name)}: {c.detail}" for c in distinct_components(result.components)]
    if result.unavailable:
        lines.append(f"Unavailable: {', '.join(result.unavailable)}")
    return "\n".join(lines)
