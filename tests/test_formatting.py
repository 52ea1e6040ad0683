"""Renderers: escaping of hostile text, caption length, price formatting, time zones, no-trade."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chat.formatting import (
    CAPTION_LIMIT,
    format_price,
    format_signal_details_html,
    format_signal_html,
    format_signal_text,
    tracking_line,
)
from engine.signal_model import Component, NoTrade, Signal, TradeDirection
from store.evidence import Evidence
from store.storage import LoadStatus
from tracking.gate import verdict

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
    assert "TP3" in out and "#BTCUSDT" in out
    long_symbol = format_signal_html(signal(symbol="X" * 3000), "UTC")
    assert (
        len(long_symbol) <= CAPTION_LIMIT
        and "XXXX" not in long_symbol
        and long_symbol.count("<b>") == long_symbol.count("</b>")
    )


def test_signal_content():
    out = format_signal_html(signal(), "UTC")
    assert "LONG" in out and "BTCUSDT 1h" in out
    assert "<code>64,100.00</code> – <code>64,321.00</code>" in out and "<code>63,500.00</code>" in out
    assert "<code>65,500.00</code> (+2.01%, 1.81R)" in out and "<code>67,000.00</code> (+4.34%" in out
    assert "1h ▲ bullish" in out and "1d • neutral" in out
    assert "New York AM" in out and "2025-07-01 14:00 UTC" in out
    assert "Sweep: sell-side liquidity swept at 63,900.00" in out
    assert "Valid: 10 candles, until 2025-07-02 00:00 UTC" in out  # 10 one-hour candles after the signal candle
    assert out.endswith("#BTCUSDT")
    details = format_signal_details_html(signal(ml_probability=0.7), "UTC")
    assert "structure break in the direction: +15" in details and "rule score 72/100, not a probability" in details
    assert "risk_atr" not in details  # readable reasons, not the feature vector
    assert "ML model: 70%" in details


def test_the_rule_score_is_not_shown_as_a_confidence():
    for out in (format_signal_html(signal(), "UTC"), format_signal_text(signal(), "UTC")):
        assert "Confidence" not in out and "72/100" not in out.split("Rule score")[0]


EVIDENCE = Evidence(
    {"start": "2024-01-01", "end": "2025-01-01"},
    {
        "sweep_mss/long/1h": dict(
            trades=212, win_rate=0.3, tp1_rate=0.38, average_r=0.04, ci_low=-0.1, ci_high=0.18, gated=True
        ),
        "sweep_mss/short/1h": dict(
            trades=12, win_rate=0.3, tp1_rate=0.5, average_r=0.3, ci_low=-0.5, ci_high=1.1, gated=False
        ),
    },
    LoadStatus.OK,
)


def test_probability_and_evidence_lines_replace_the_score():
    v = verdict(signal(), gate="evidence", evidence=EVIDENCE, min_confidence=60)
    out = format_signal_html(signal(), "UTC", verdict=v, tracking=tracking_line(v, 12))
    assert "<i>📌 Tracking as #12, alerts will follow</i>" in out
    assert "Probability: TP1 before the stop 38%" in out
    assert "Setup: sweep + MSS long, 1h · 212 past trades · TP1 hit 38% · avg +0.04 R net (−0.10…+0.18)" in out
    short = signal(direction=TradeDirection.SHORT, sl=65000.0, tp1=63000.0, tp2=62000.0, tp3=61000.0)
    v = verdict(short, gate="evidence", evidence=EVIDENCE, min_confidence=60)
    text = format_signal_text(short, "UTC", verdict=v, tracking=tracking_line(v))
    assert "Probability: not enough evidence" in text and "only 12 past trades: not enough evidence" in text
    assert "Not tracked: fewer than 30 out-of-sample trades" in text


def test_tracking_line():
    passed = verdict(signal(), gate="evidence", evidence=EVIDENCE, min_confidence=60)
    unknown = verdict(signal(timeframe="4h"), gate="evidence", evidence=EVIDENCE, min_confidence=60)
    assert tracking_line(passed, 7) == "📌 Tracking as #7, alerts will follow"
    assert tracking_line(passed) is None
    assert tracking_line(passed, why_not="a duplicate") == "Not tracked: a duplicate"
    assert tracking_line(unknown) == "Not tracked: no out-of-sample evidence for this setup yet"
    assert tracking_line(None) is None


def test_current_price_and_distance_to_the_entry():
    out = format_signal_html(signal(), "UTC", price=64500.0)
    assert "Price now: <code>64,500.00</code> · entry 0.45% below" in out
    text = format_signal_text(signal(), "UTC", price=64000.0)
    assert "entry 0.33% above" in text
    market = signal(entry=64210.5, entry_low=64210.5, entry_high=64210.5)
    assert "Valid" not in format_signal_text(market, "UTC")  # a market entry does not wait


def test_one_zone_seen_by_two_detectors_is_listed_once():
    comps = (
        Component("fvg", "bullish FVG 64,100.00-64,321.00", "bullish", 64321.0, 64100.0),
        Component("sibi_ssib", "bullish SSIB 64,100.00-64,321.00", "bullish", 64321.0, 64100.0),
        Component("order_block", "bullish OB 63,900.00-64,000.00", "bullish", 64000.0, 63900.0),
    )
    for out in (
        format_signal_html(signal(components=comps), "UTC"),
        format_signal_details_html(signal(components=comps), "UTC"),
        format_signal_text(signal(components=comps), "UTC"),
    ):
        assert "FVG" in out and "SSIB" not in out and "OB: bullish OB" in out


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
    assert "100.00 (market)" in out and "TP1:" in out and "(-4.00%, 2R)" in out
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
        (83.1, "83.100"),
        (84.37078066, "84.371"),
        (9.99999, "10.000"),  # rounding to 5 digits moves the magnitude: still 5 significant digits
        (None, "—"),
        (float("nan"), "—"),
    ],
)
def test_price_by_magnitude(price, text):
    assert format_price(price) == text


def test_one_price_formatter_everywhere():
    """Captions, commands, alerts, the journal, component details and the recommendation render a price alike."""
    import ict_80_alert_handler
    import real_time_monitor
    from engine import scoring
    from store import journal

    for value in (83.1, 84.37078066, 64210.5, 0.00001234):
        shown = format_price(value)
        assert real_time_monitor._p(value) == f"<code>{shown}</code>"  # alerts: tap-to-copy
        assert journal._price(value) == shown
        assert ict_80_alert_handler._price(value) == shown
        assert scoring.fmt_price(value) == shown
    root = Path(__file__).resolve().parents[1]
    ad_hoc = re.compile(
        r"\{[^{}]*:(?:,?\.\d+f|\.\d+g)\}\"? if (?:value|price)"  # the old "2 decimals above 100, else .6g"
        r"|\{[^{}]*(?:price|level|entry|sl|tp\d)[^{}]*:\.6g\}"  # a price through .6g
    )
    sources = [*root.glob("*.py"), *root.glob("chat/*.py"), *root.glob("engine/*.py"), *root.glob("tracking/*.py")]
    offenders = [p.name for p in sources if ad_hoc.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


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


def test_a_mitigation_block_component_has_a_readable_title():
    block = Component("mitigation_block", "bullish mitigation block 64,100-64,321", "bullish", 64321.0, 64100.0)
    text = visible_text(format_signal_html(signal(components=(block,)), "UTC"))
    assert "Mitigation block: bullish mitigation block" in text and "mitigation_block" not in text
