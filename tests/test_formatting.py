"""Renderers: escaping of hostile text, caption length, price formatting, time zones, no-trade."""

import re
from datetime import UTC, datetime

import pytest

from chat.formatting import (
    CAPTION_LIMIT,
    format_price,
    format_signal_details_html,
    format_signal_html,
    format_signal_text,
)
from engine.signal_model import Component, NoTrade, Signal, TradeDirection

T = datetime(2025, 7, 1, 14, tzinfo=UTC)
HOSTILE = "<b>&evil</b><script>"


def signal(**over):
    base = dict(
        symbol="BTCUSDT",
        timeframe="1h",
        direction=TradeDirection.LONG,
        entry=64210.5,
        entry_low=64100.0,
        entry_high=64321.0,
        sl=63500.0,
        tp1=65500.0,
        tp2=66000.0,
        tp3=67000.0,
        time=T,
        rule_confidence=72.0,
        confidence_breakdown=(("htf_alignment", 20.0), ("structure", 15.0), ("entry_model", 37.0)),
        bias=(("1h", "bullish"), ("4h", "bullish"), ("1d", "neutral")),
        components=(
            Component("order_block", "bullish OB 64,100.00-64,321.00", "bullish", 64321.0, 64100.0),
            Component("liquidity_sweep", "sell-side liquidity swept at 63,900.00", "bullish", 63900.0, 63900.0),
            Component("target", "BSL 65,500.00", None, 65500.0, 65500.0),
        ),
        session="ny_am",
        entry_model="sweep_mss",
        features=(("risk_atr", 1.5), ("tp1_r", 1.82)),
    )
    base.update(over)
    return Signal(**base)


def visible_text(html_text):
    """Telegram-HTML minus the tags we emit: what is left must not contain raw < > or bare &."""
    return re.sub(r"</?(b|i|code)>", "", html_text)


@pytest.mark.parametrize("render", [format_signal_html, format_signal_details_html])
def test_hostile_text_is_escaped(render):
    s = signal(
        symbol=HOSTILE,
        components=(Component("order_block", HOSTILE, "bullish", 1.0, 0.5),),
        entry_model=HOSTILE,
        session=HOSTILE,
    )
    out = render(s, "UTC")
    rest = visible_text(out)
    assert "<" not in rest and ">" not in rest
    assert "&lt;b&gt;&amp;evil&lt;/b&gt;" in out
    assert not re.search(r"&(?!amp;|lt;|gt;|quot;|#x27;)", rest)
    nt = NoTrade(HOSTILE, "1h", T, (HOSTILE,), components=(Component("fvg", HOSTILE),), unavailable=(HOSTILE,))
    rest = visible_text(render(nt, "UTC"))
    assert "<" not in rest and ">" not in rest


def test_short_form_fits_a_caption_even_with_many_components():
    many = tuple(Component("fvg", "bullish FVG " + "x" * 120, "bullish", 1.0, 0.5) for _ in range(30))
    out = format_signal_html(signal(components=many), "UTC")
    assert len(out) <= CAPTION_LIMIT
    assert "TP3" in out and "Confidence" in out
    long_symbol = format_signal_html(signal(symbol="X" * 3000), "UTC")
    assert (
        len(long_symbol) <= CAPTION_LIMIT
        and "XXXX" not in long_symbol
        and long_symbol.count("<b>") == long_symbol.count("</b>")
    )


def test_signal_content():
    out = format_signal_html(signal(), "UTC")
    assert "LONG" in out and "BTCUSDT 1h" in out
    assert "64,100.00 – 64,321.00" in out and "63,500.00" in out
    assert "65,500.00 (1.81R)" in out and "67,000.00" in out
    assert "72/100" in out and "1h ▲ bullish" in out and "1d • neutral" in out
    assert "New York AM" in out and "2025-07-01 14:00 UTC" in out
    assert "Sweep: sell-side liquidity swept at 63,900.00" in out
    details = format_signal_details_html(signal(ml_probability=0.7), "UTC")
    assert "structure: +15" in details and "risk_atr=1.5" in details
    assert "ML win prob. 70%" in details


def test_short_mirror_and_market_entry():
    s = signal(
        direction=TradeDirection.SHORT,
        entry=100.0,
        entry_low=100.0,
        entry_high=100.0,
        sl=102.0,
        tp1=96.0,
        tp2=94.0,
        tp3=90.0,
    )
    out = format_signal_text(s, "UTC")
    assert out.startswith("SHORT BTCUSDT 1h")
    assert "100.00 (market)" in out and "TP1:" in out and "(2R)" in out
    assert "+2.00%" in out  # the stop of a short is above the entry


def test_time_in_the_given_zone():
    assert "2025-07-01 16:00 CEST" in format_signal_text(signal(), "Europe/Berlin")
    assert "2025-07-01 10:00 EDT" in format_signal_html(signal(), "America/New_York")


def test_no_trade_lists_reasons():
    nt = NoTrade("ETHUSDT", "4h", T, ("R:R too low: TP1 pays 0.9R < 1.5R",), bias=(("4h", "bearish"),))
    for out in (format_signal_text(nt, "UTC"), format_signal_html(nt, "UTC")):
        assert "No trade" in out or "NO TRADE" in out
        assert "R:R too low" in out and "4h ▼ bearish" in out


@pytest.mark.parametrize(
    ("price", "text"),
    [
        (91234.5, "91,234.50"),
        (3456.789, "3,456.79"),
        (150.12345, "150.12"),
        (2.512345, "2.5123"),
        (0.00001234, "0.000012340"),
        (None, "n/a"),
    ],
)
def test_price_by_magnitude(price, text):
    assert format_price(price) == text


def test_html_uses_only_balanced_telegram_tags():
    from html.parser import HTMLParser

    class Check(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack = []

        def handle_starttag(self, tag, attrs):
            assert tag in ("b", "i", "code") and not attrs
            self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack and self.stack.pop() == tag

    hostile = signal(symbol=HOSTILE, components=(Component("fvg", HOSTILE + "</i>"),))
    nt = NoTrade(HOSTILE, "1h", T, ("a <i>b", "c & d"), unavailable=("fvg",))
    for result in (signal(), hostile, nt):
        for render in (format_signal_html, format_signal_details_html):
            checker = Check()
            checker.feed(render(result, "UTC"))
            checker.close()
            assert checker.stack == []
