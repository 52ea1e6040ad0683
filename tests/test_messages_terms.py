"""Message terms (issue 15, messages): zones named by what they are, the range component about the entry, one
name per liquidity level in the components and on the chart, and a glossary entry for every term the bot prints."""

import html
import re
from dataclasses import replace

import pandas as pd
import pytest

import ict_signal_engine as eng
from engine.planning import EntryPlan
from engine.scoring import components_of
from engine.tables import PoolTable, liquidity_name
from engine.views import Level, Snapshot, StructureView, Zone, ZoneKind
from ict_modules.core import Direction
from market.sample_source import SampleSource
from tests.helpers import SAMPLE_DIR

CLOCK = pd.Timestamp("2026-04-15 00:00", tz="UTC")


def snapshot(**kw) -> Snapshot:
    base = dict(
        bar=100, close=110.0, atr=2.0, structure=StructureView(None, ()), htf_bias=(), zones=(), pools_above=(),
        pools_below=(), htf_pools_above=(), htf_pools_below=(), sweeps=(), displacements=(), whales=(),
        entry_models=(), ote=None, dealing_range=None, swing_lows=(), swing_highs=(), session="", killzone=False,
    )  # fmt: skip
    return Snapshot(**{**base, **kw})


def plan_at(entry: float, zone: Zone | None = None) -> EntryPlan:
    return EntryPlan(entry, entry - 1.0, entry + 1.0, False, zone, "order_block")


@pytest.mark.parametrize(("label", "name", "term"), [("Mitigation", "mitigation_block", "mitigation block"),
                                                     ("Breaker", "breaker", "breaker")])  # fmt: skip
def test_a_mitigation_block_is_not_called_a_breaker(label, name, term):
    zone = Zone(ZoneKind.BREAKER, Direction.BULLISH, 101.0, 99.0, 90, label)
    (component,) = components_of(snapshot(zones=(zone,)), Direction.BULLISH, plan_at(100.0, zone), ())
    assert component.name == name
    assert component.detail.startswith(f"bullish {term} ")
    if name == "mitigation_block":
        assert "breaker" not in component.detail.lower()


def test_the_range_component_describes_the_entry_not_the_last_close():
    snap = snapshot(close=130.0, dealing_range=(90.0, 150.0))  # close in premium, the long's entry in discount
    (rng,) = [c for c in components_of(snap, Direction.BULLISH, plan_at(100.0), ()) if c.name == "premium_discount"]
    assert rng.detail.startswith("entry in discount: 17% of the dealing range")
    (rng,) = [c for c in components_of(snap, None, None, ()) if c.name == "premium_discount"]
    assert rng.detail.startswith("price in premium")
    (rng,) = [c for c in components_of(snap, Direction.BULLISH, plan_at(120.0), ()) if c.name == "premium_discount"]
    assert rng.detail.startswith("entry at equilibrium")


class _Pool:
    def __init__(self, kind: str, price: float, above: bool):
        self.kind, self.price, self.index, self.confirmed_at, self.taken_at = kind, price, 10, 10, None
        self.side = type("Side", (), {"is_above": above})()


def test_one_level_per_price_is_named_by_its_most_specific_pool():
    pools = [_Pool("swing_low", 95.0, False), _Pool("previous_day_low", 95.0, False), _Pool("equal_lows", 90.0, False)]
    _, below = PoolTable.build(pools).resting(100.0, 20)
    assert [(lv.label, lv.price) for lv in below] == [("PDL", 95.0), ("EQL", 90.0)]
    assert liquidity_name(95.0, [Level("SSL", 95.0, 1), Level("PWL", 95.0, 2), Level("EQL", 95.0, 3)]) == "PWL"
    assert liquidity_name(96.0, [Level("SSL", 95.0, 1)]) is None


def test_targets_use_the_name_the_chart_uses():
    # the entry timeframe sees a swing low, a higher timeframe the previous day's low at the same price
    snap = snapshot(close=100.0, pools_below=(Level("SSL", 95.0, 50),), htf_pools_below=(Level("PDL", 95.0, 40),))
    fib_1r = "fib ext -1.27 +1R"
    for targets, want in [
        (((95.0, "SSL"), (93.0, "fib ext -1.27"), (91.0, "fib ext -1.27 +1R")), ["PDL", "fib ext -1.27", fib_1r]),
        (((95.0, "SSL"), (93.0, "SSL +1R"), (91.0, "SSL +1R")), ["PDL", "PDL +1R", "PDL +1R"]),
    ]:  # fmt: skip
        components = components_of(snap, Direction.BEARISH, plan_at(100.0), targets)
        assert [c.detail.rsplit(" ", 1)[0] for c in components if c.name == "target"] == want


def test_the_chart_labels_a_level_as_the_components_do():
    from chat import charts

    market = SampleSource(SAMPLE_DIR, clock=lambda: CLOCK)
    analysis = eng.analyze(market, "BTCUSDT", "1h", end=pd.Timestamp("2026-04-10 12:00", tz="UTC"))
    snap = analysis.snapshot
    near = [*snap.pools_above[:1], *snap.pools_below[:1]]
    assert near, "the sample analysis has resting liquidity near the price"
    renamed = tuple(Level("PWH" if lv.price > snap.close else "PWL", lv.price, lv.index) for lv in near)
    snap = replace(snap, htf_pools_above=renamed[:1] + snap.htf_pools_above, htf_pools_below=renamed[-1:])
    texts = {t.get_text() for t in charts.build_figure(replace(analysis, snapshot=snap)).axes[1].texts}
    expected = {liquidity_name(lv.price, [*near, *renamed]) for lv in near}
    assert expected <= {"PWH", "PWL"} and expected & texts
    assert not {lv.label for lv in near} - {"PWH", "PWL"} & texts


# -- /explain knows every term the bot prints ----------------------------------------------------------------------

# Capitals that are not trading terms: sides of a trade, the no-trade header, a model state in the training
# report, the time zone; AM / PM only occur inside the killzone names ("New York AM"), checked as whole names.
NOT_TERMS = {"LONG", "SHORT", "NO", "TRADE", "ACTIVE", "UTC", "AM", "PM"}
# Words (not abbreviations) the bot prints as terms of the trade; checked whenever they appear.
WORD_TERMS = (
    "premium", "discount", "equilibrium", "dealing range", "killzone", "displacement", "sweep", "breaker",
    "mitigation block", "whale", "bias", "break-even", "expectancy", "profit factor", "win rate", "net", "gross",
    "gated", "setup", "probability", "walk-forward", "out-of-sample", "calibration", "edge vs random", "rule score",
    "fib ext", "market", "held-out", "Asia", "London", "New York AM", "London close", "New York PM",
)  # fmt: skip
# The brief's list of terms: every one has an entry whether or not today's sample prints it.
REQUIRED = (
    "ATR", "R", "sweep + MSS", "OTE pullback", "breaker retest", "zone retracement", "PDH", "PDL", "PWH", "PWL",
    "EQH", "EQL", "BSL", "SSL", "IBSL", "ISSL", "SIBI", "SSIB", "BISI", "MSS", "MSB", "BOS", "CHOCH", "OB", "FVG",
    "IFVG", "CE", "OTE", "Asia", "London", "New York AM", "London close", "New York PM", "premium", "discount",
    "equilibrium", "break-even", "BE", "TP1", "TP2", "TP3", "SL", "expectancy", "profit factor", "PF", "net R",
    "gate", "setup", "probability", "maxDD", "win rate", "AUC", "Brier", "EQ", "fib ext", "mitigation block",
)  # fmt: skip


def _signal_texts() -> list[str]:
    from chat import formatting
    from engine.signal_model import NoTrade, Signal

    market = SampleSource(SAMPLE_DIR, clock=lambda: CLOCK)
    texts = [formatting.tracking_line(None, 12) or "", formatting.tracking_line(None, None, "below the threshold")]
    for symbol in ("BTCUSDT", "ETHUSDT"):
        frames = {tf: market.klines(symbol, tf, 1200 if tf == "1h" else 700) for tf in ("1h", "4h", "1d")}
        prep = eng.prepare(frames, timeframe="1h")
        seen = {Signal: 0, NoTrade: 0}
        for k in range(1199, 800, -5):
            result, _ = eng.signal_at(prep, k, symbol=symbol)
            if seen[type(result)] >= 3:
                continue
            seen[type(result)] += 1
            texts += [formatting.format_signal_html(result), formatting.format_signal_details_html(result),
                      formatting.format_signal_text(result)]  # fmt: skip
            if min(seen.values()) >= 3:
                break
        assert min(seen.values()) >= 1, seen  # both kinds of message rendered
    return texts


def _alert_texts() -> list[str]:
    from datetime import timedelta

    import ict_80_alert_handler as h80
    from engine.signal_model import TradeDirection
    from real_time_monitor import format_event_html
    from tests.test_positions import make_signal
    from tracking.state import Position, apply_candle

    texts = []
    paths = {  # a long filled, near TP1, through the targets; a short filled, near its stop, stopped
        TradeDirection.LONG: [(102, 102, 100, 101), (101, 104, 100.5, 103.8), (104, 105.5, 103, 105),
                              (105, 110.5, 104, 110), (110, 121, 109, 120)],
        TradeDirection.SHORT: [(99, 100.5, 98, 99), (99, 104, 98.5, 103.8), (104, 106, 103, 105.5)],
    }  # fmt: skip
    for direction, candles in paths.items():
        signal = make_signal(direction)
        position, t = Position.from_signal(signal), signal.time
        for o, hi, lo, c in candles:
            t += timedelta(hours=1)
            position, events = apply_candle(position, t, o, hi, lo, c, close_time=t + timedelta(hours=1))
            texts += [format_event_html(position, e) for e in events]
        checks = (h80.Check("structure", True, "structure still bullish: last BOS up"),)
        for action in h80.Action:
            rec = h80.Recommendation(action, ("TP1 within reach",), checks)
            texts.append(h80.format_recommendation_html(position, rec, target=1))
    return texts


def _report_texts(tmp_path) -> list[str]:
    import ml_engine
    from config import Settings
    from daily_reports import build_report
    from research import evaluate
    from research.backtest import run_backtest
    from store.journal import Journal
    from tests.test_ml import synthetic
    from tests.test_positions import make_signal
    from tests.test_reports import NOW, outcome
    from tracking.costs import Costs

    journal = Journal(tmp_path, clock=lambda: NOW)
    for hours, reason, r in [(10, "SL", -1.0), (8, "TP3", 4.0), (6, "BE", 0.0)]:
        sent = NOW - pd.Timedelta(hours=hours)
        signal = make_signal(market=True, time=sent)
        journal.record_signal(signal, at=sent)
        journal.record_outcome(signal.id, outcome(reason, r, sent + pd.Timedelta(hours=2)))
    texts = [build_report(journal, None, period=p, now=NOW).html for p in ("daily", "weekly")]
    market = SampleSource(SAMPLE_DIR, clock=lambda: CLOCK)
    backtest = run_backtest(market, ["BTCUSDT"], "4h", start=pd.Timestamp("2025-11-01", tz="UTC"),
                            end=pd.Timestamp("2026-03-01", tz="UTC"), journal_path=tmp_path / "bt.json",
                            equity_path=tmp_path / "bt.png", show_progress=False)  # fmt: skip
    texts.append(backtest.text())
    settings = Settings(market_data="sample", sample_data_dir=SAMPLE_DIR, bot_data_dir=tmp_path)
    request = evaluate.Request(("BTCUSDT",), ("4h",), pd.Timestamp("2025-06-01", tz="UTC").to_pydatetime(),
                               pd.Timestamp("2026-03-01", tz="UTC").to_pydatetime(), 90, 60, Costs())  # fmt: skip
    texts.append(evaluate.format_report(evaluate.evaluate(settings, request)))
    trained = ml_engine.train(synthetic(500, seed=7, informative=True), tmp_path / "ml")
    texts += [ml_engine.verdict(trained), trained.text()]
    return texts


def action_labels() -> list[str]:
    import ict_80_alert_handler as h80

    return [a.label for a in h80.Action]


def _plain(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", text))


def unknown_terms(texts: list[str]) -> set[str]:
    """Terms in ``texts`` that ``/explain`` does not know: abbreviations (two or more capitals, or capitals and a
    digit: TP1, maxDD), R multiples, entry model and setup names, and the ``WORD_TERMS`` that appear."""
    from chat import glossary
    from tracking.setups import ENTRY_MODEL_NAMES

    plain = "\n".join(_plain(t) for t in texts)
    found = {w for w in WORD_TERMS if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", plain, re.IGNORECASE)}
    found |= {name for key, name in ENTRY_MODEL_NAMES.items() if name in plain or key in plain}
    if re.search(r"\d R?\b|\dR\b| R\b", plain):
        found.add("R")
    words = re.sub(r"\d{4}-\d\d-\d\dT[\d:]+Z", " ", plain)  # ISO times in reports ("T00")
    for label in action_labels():  # the 80% alert's actions are plain words in capitals ("CLOSE NOW")
        words = words.replace(label, " ")
    for token in re.findall(r"[A-Za-z][A-Za-z0-9]*", words):
        capitals = sum(c.isupper() for c in token)
        if (capitals >= 2 or (capitals and token[-1].isdigit())) and not token.endswith("USDT"):
            found.add(token)
    return {t for t in found - NOT_TERMS if glossary.lookup(t) is None}


def test_every_required_term_has_an_entry():
    from chat import glossary

    assert [t for t in REQUIRED if glossary.lookup(t) is None] == []


def test_every_term_in_real_messages_and_reports_has_an_entry(tmp_path):
    texts = _signal_texts() + _alert_texts() + _report_texts(tmp_path)
    plain = _plain("\n".join(texts))
    for sample in ("TP1", "SL", "OB", "ATR", "expectancy", "PF", "maxDD", "activated: its held-out AUC"):
        assert sample in plain  # the harvest reached signals, components, alerts and reports
    assert unknown_terms(texts) == set()


def test_the_term_check_finds_an_unknown_abbreviation():
    assert unknown_terms(["<b>Target</b>: XYZQ 101.5 · 2.0R"]) == {"XYZQ"}
