"""Journal and stats stores: records, outcomes, aggregate numbers, corruption handling, formatting."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from engine.signal_model import Component, Signal, TradeDirection
from position_manager import PositionStore
from store.journal import Journal, compute_stats, format_journal_html, format_stats_html
from store.storage import LoadStatus, atomic_write_json, load_json
from tests.test_positions import T0, make_signal, walk
from tracking.costs import Costs
from tracking.state import Position, close_position


def gross_position(signal, *args, **kwargs):
    """A position without costs: these tests check the mechanics in gross R (costs: test_costs.py)."""
    return Position.from_signal(signal, *args, costs=Costs.none(), **kwargs)


def closed_outcome(signal: Signal, price: float, minutes: int = 30):
    p = gross_position(signal)
    if p.fill_price is None:
        p, _ = walk(p, [(100, 100, 100, 100)])
    _, outcome = close_position(p, price, signal.time + timedelta(minutes=minutes))
    return outcome


def test_record_signal_then_outcome_and_stats_file(tmp_path):
    j = Journal(tmp_path)
    s1 = make_signal(market=True)
    s2 = make_signal(TradeDirection.SHORT, market=True, time=T0 + timedelta(hours=1))
    assert j.record_signal(s1, position_id=1) is True
    assert j.record_signal(s1, position_id=1) is False  # once per signal
    j.record_signal(s2, position_id=2)
    j.record_outcome(s1.id, closed_outcome(s1, 110.0))  # +2R
    j.record_outcome(s2.id, closed_outcome(s2, 105.0))  # short from 100, stop 105: -1R
    again = Journal(tmp_path)
    assert [r["id"] for r in again.records()] == [s1.id, s2.id]
    rec = again.get(s1.id)
    assert rec["signal"]["symbol"] == "BTCUSDT" and rec["features"] == {"atr_pct": 1.0}
    assert rec["outcome"]["reason"] == "MANUAL" and rec["outcome"]["r_multiple"] == pytest.approx(2.0)
    stats = json.loads((tmp_path / "bot_stats.json").read_text())
    assert stats["overall"]["closed"] == 2 and stats["overall"]["wins"] == 1 and stats["overall"]["losses"] == 1
    assert stats["overall"]["win_rate"] == pytest.approx(50.0)
    assert stats["overall"]["profit_factor"] == pytest.approx(2.0)
    assert stats["by_direction"]["short"]["losses"] == 1


def test_stats_numbers_on_a_known_journal():
    def rec(symbol, tf, direction, r, reason="MANUAL", fill=100.0):
        outcome = None if r is None else {"reason": reason, "r_multiple": r, "fill_price": fill}
        return {
            "id": f"{symbol}{tf}{r}{reason}",
            "signal": {"symbol": symbol, "timeframe": tf, "direction": direction},
            "outcome": outcome,
        }

    records = [
        rec("BTCUSDT", "1h", "long", 3.0, "TP3"),
        rec("BTCUSDT", "1h", "long", -1.0, "SL"),
        rec("BTCUSDT", "4h", "short", 0.0, "BE"),
        rec("ETHUSDT", "1h", "short", -1.0, "SL"),
        rec("ETHUSDT", "1h", "long", 1.5, "MANUAL"),
        rec("ETHUSDT", "1h", "long", None),  # open
        rec("SOLUSDT", "4h", "long", 0.0, "EXPIRED", fill=None),
    ]
    stats = compute_stats(records)
    o = stats.overall
    assert (o.signals, o.open, o.expired, o.closed) == (7, 1, 1, 5)
    assert (o.wins, o.losses, o.breakevens) == (2, 2, 1)
    assert o.win_rate == pytest.approx(40.0)
    assert o.total_r == pytest.approx(2.5) and o.avg_r == pytest.approx(0.5)
    assert o.profit_factor == pytest.approx(4.5 / 2.0)
    assert (o.best_r, o.worst_r) == (3.0, -1.0)
    by_symbol = dict(stats.by_symbol)
    assert by_symbol["ETHUSDT"].closed == 2 and by_symbol["ETHUSDT"].open == 1
    assert dict(stats.by_timeframe)["4h"].breakevens == 1
    text = format_stats_html(stats)
    assert "40.0%" in text and "+0.50R" in text
    assert "Profit factor: 2.25" in text


def test_corrupt_journal_is_quarantined_and_rebuilt_from_positions_db(tmp_path, caplog):
    store = PositionStore(tmp_path / "positions.db")
    sig = make_signal(market=True)
    p = store.add(gross_position(sig), signal=sig)
    store.close_manual(p.id, 105.0, T0 + timedelta(minutes=5))
    store.close()
    j = Journal(tmp_path)
    j.record_signal(sig, position_id=p.id)
    (tmp_path / "trading_journal.json").write_text('{"version": 1, "records": [{"id": "x", "sig')  # torn
    with caplog.at_level(logging.WARNING):
        rebuilt = Journal(tmp_path)
    assert rebuilt.rebuilt
    assert list(tmp_path.glob("trading_journal.json.corrupt-*"))
    assert "kept aside" in caplog.text
    (record,) = rebuilt.records()
    assert record["id"] == sig.id and record["outcome"]["r_multiple"] == pytest.approx(1.0)
    assert load_json(tmp_path / "trading_journal.json", default=list).status is LoadStatus.OK


def test_corrupt_stats_file_is_recomputed_and_backtest_journal_has_its_own_files(tmp_path):
    j = Journal(tmp_path)
    j.record_signal(make_signal())
    (tmp_path / "bot_stats.json").write_text("garbage")
    Journal(tmp_path)
    assert json.loads((tmp_path / "bot_stats.json").read_text())["overall"]["signals"] == 1
    bt = Journal(tmp_path / "backtest_journal.json")
    assert bt.stats_path.name == "backtest_journal_stats.json" and len(bt) == 0
    (tmp_path / "backtest_journal.json").write_text("[not json")
    assert len(Journal(tmp_path / "backtest_journal.json")) == 0  # started empty, no positions.db rebuild


def test_load_json_validation_and_atomic_write(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})
    assert load_json(path, default=dict).data == {"a": 1}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind
    bad = load_json(path, default=dict, validate=lambda d: d["missing"])
    assert bad.status is LoadStatus.CORRUPT and bad.quarantined.exists() and not path.exists()
    assert load_json(path, default=list).status is LoadStatus.MISSING


def test_journal_formatting_escapes_and_limits(tmp_path):
    j = Journal(tmp_path)
    nasty = Signal(
        **{
            **{
                f: getattr(make_signal(market=True), f)
                for f in (
                    "direction",
                    "entry",
                    "entry_low",
                    "entry_high",
                    "sl",
                    "tp1",
                    "tp2",
                    "tp3",
                    "time",
                    "rule_confidence",
                )
            },
            "symbol": "<b>X</b>USDT",
            "timeframe": "1h",
            "components": (Component("fvg", "a<b"),),
        }
    )
    j.record_signal(nasty, position_id=7)
    for k in range(3):
        j.record_signal(make_signal(market=True, time=T0 + timedelta(hours=k + 1)))
    text = format_journal_html(j.records(), n=2)
    assert text.count("•") == 2
    full = format_journal_html(j.records(), n=10)
    assert "&lt;b&gt;X&lt;/b&gt;USDT" in full and "<b>X</b>" not in full
    assert "#7" in full
    assert "No tracked signals" in format_journal_html([], n=5)
    assert "No tracked signals" in format_stats_html(compute_stats([]))


def test_batch_writes_once_at_the_end(tmp_path):
    j = Journal(tmp_path)
    path = tmp_path / "trading_journal.json"
    with j.batch():
        j.record_signal(make_signal())
        j.record_signal(make_signal(timeframe="4h"))
        assert not path.exists() or json.loads(path.read_text())["records"] == []
    assert len(json.loads(path.read_text())["records"]) == 2
    assert json.loads((tmp_path / "bot_stats.json").read_text())["overall"]["signals"] == 2
