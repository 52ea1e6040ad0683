"""The monitor on a real market-data source (the sample source over given 1m frames, with an injected clock)."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace

import pandas as pd
import pytest

from engine.signal_model import TradeDirection
from ict_80_alert_handler import Action, Check, Recommendation, decide, evaluate
from ict_modules.core import Direction
from market.sample_source import SampleSource
from position_manager import PositionStore
from real_time_monitor import close_and_journal, format_positions_html, monitor_tick, sync_journal
from store.journal import Journal
from tests.helpers import make_candles, sample_candles
from tests.test_positions import T0, make_signal
from tracking.costs import Costs
from tracking.state import Position, PositionState


def gross_position(signal, *args, **kwargs):
    """A position without costs: these tests check the mechanics in gross R (costs: test_costs.py)."""
    return Position.from_signal(signal, *args, costs=Costs.none(), **kwargs)


RECIPIENTS = (111, 222)


class Clock:
    def __init__(self, at):
        self.at = pd.Timestamp(at)

    def __call__(self):
        return self.at


def path_1m(rows, start=T0):
    return make_candles(rows, start=pd.Timestamp(start).strftime("%Y-%m-%d %H:%M"), freq="1min")


def setup(tmp_path, rows, *, market_entry=True, direction=TradeDirection.LONG):
    clock = Clock(T0)
    market = SampleSource(frames={("BTCUSDT", "1m"): path_1m(rows)}, clock=clock)
    store = PositionStore(tmp_path / "positions.db")
    journal = Journal(tmp_path)
    sig = make_signal(direction, market=market_entry)
    p = store.add(gross_position(sig, recipients=RECIPIENTS), signal=sig)
    journal.record_signal(sig, position_id=p.id)
    return clock, market, store, journal, p


def no_80(position):
    raise AssertionError("the 80% handler should not be asked here")


def test_monitor_catches_a_wick_between_two_checks(tmp_path):
    rows = [(100, 100.5, 99.5, 100.2)] * 5 + [(100.2, 100.3, 94.8, 99.9)] + [(99.9, 100.4, 99.6, 100.1)] * 4
    clock, market, store, journal, p = setup(tmp_path, rows)
    clock.at = pd.Timestamp(T0 + timedelta(minutes=3))
    first = monitor_tick(store, market, journal, evaluate_80=no_80)
    assert first.candles == 3 and store.get(p.id).state is PositionState.OPEN
    clock.at = pd.Timestamp(T0 + timedelta(minutes=10))
    assert market.price("BTCUSDT") == pytest.approx(100.1)  # the last price is back above the entry
    second = monitor_tick(store, market, journal, evaluate_80=no_80)
    stored = store.get(p.id)
    assert stored.state is PositionState.SL, "the 1m wick to 94.8 (stop 95) happened between the checks"
    assert stored.closed_at == T0 + timedelta(minutes=5)
    assert second.closed == 1 and second.journaled == 1
    record = journal.get(p.signal_id)
    assert record["outcome"]["reason"] == "SL" and record["outcome"]["r_multiple"] == pytest.approx(-1.0)
    assert journal.stats().overall.losses == 1
    msgs = store.pending_outbox()
    assert sorted(m.chat_id for m in msgs if "Stopped out" in m.html) == list(RECIPIENTS)


def test_every_alert_once_per_recipient_also_across_a_restart(tmp_path):
    rows = [
        (102, 102.5, 101.5, 102),  # pending (limit at 100)
        (102, 102, 99.9, 100.3),  # filled
        (100.3, 101.4, 100.1, 101.3),  # 28% to TP1 -> TP1_25
        (101.3, 101.4, 97.4, 97.8),  # 52% to the stop -> SL_50
        (97.8, 102.7, 97.7, 102.6),  # 54% to TP1 -> TP1_50
        (102.6, 105.2, 102.5, 105.1),  # TP1, stop to BE
        (105.1, 106.4, 105, 106.3),  # 28% to TP2 -> TP2_25
        (106.3, 106.4, 105.5, 106),
    ]
    clock, market, store, journal, p = setup(tmp_path, rows, market_entry=False)
    expected = ["FILLED", "TP1_25", "SL_50", "TP1_50", "TP1", "TP2_25"]
    for minute in range(1, len(rows) + 1):
        clock.at = pd.Timestamp(T0 + timedelta(minutes=minute))
        monitor_tick(store, market, journal, evaluate_80=no_80)
        if minute == 4:  # restart the process halfway: a new store on the same file
            store.close()
            store = PositionStore(tmp_path / "positions.db")
    assert store.milestones_sent(p.id) == set(expected)
    msgs = store.pending_outbox(limit=100)
    assert len(msgs) == len(expected) * len(RECIPIENTS)
    for chat in RECIPIENTS:
        assert len([m for m in msgs if m.chat_id == chat]) == len(expected)
    # a re-run over the same candles (as after a crash before the state was saved) adds nothing
    store.update(p)  # back to the state as first stored (PENDING, nothing seen)
    again = monitor_tick(store, market, journal, evaluate_80=no_80)
    assert again.enqueued == 0 and len(store.pending_outbox(limit=100)) == len(msgs)
    assert store.get(p.id).state is PositionState.TP1
    store.close()


def test_80_percent_milestone_sends_the_recommendation(tmp_path):
    rows = [(100, 100.5, 99.5, 100.2), (100.2, 104.2, 100.1, 104.1)]  # 84% to TP1
    clock, market, store, journal, p = setup(tmp_path, rows)
    clock.at = pd.Timestamp(T0 + timedelta(minutes=2))
    seen = []

    def fake_80(position):
        seen.append(position.id)
        return Recommendation(
            Action.MOVE_SL_BE, ("bearish OB ahead",), (Check("opposing_zone", False, "bearish OB ahead"),)
        )

    report = monitor_tick(store, market, journal, evaluate_80=fake_80)
    assert seen == [p.id] and report.enqueued == 2
    (msg, _) = store.pending_outbox()
    assert "MOVE SL TO BREAK-EVEN" in msg.html and "bearish OB ahead" in msg.html and msg.kind == "recommendation"


def test_80_percent_handler_failure_still_sends_the_milestone(tmp_path):
    rows = [(100, 100.5, 99.5, 100.2), (100.2, 104.2, 100.1, 104.1)]
    clock, market, store, journal, _p = setup(tmp_path, rows)
    clock.at = pd.Timestamp(T0 + timedelta(minutes=2))

    def broken(position):
        raise RuntimeError("no candles")

    monitor_tick(store, market, journal, evaluate_80=broken)
    (msg, _) = store.pending_outbox()
    assert "80% of the way to TP1" in msg.html and "analysis unavailable" in msg.html


def test_coarse_source_is_logged_once_per_symbol(tmp_path, caplog):
    clock = Clock(T0 + timedelta(hours=3))
    candles = make_candles([(100, 100.5, 99.5, 100.2)] * 6, start="2025-01-06 12:00", freq="5min")
    market = SampleSource(frames={("BTCUSDT", "5m"): candles}, clock=clock)
    store = PositionStore(tmp_path / "positions.db")
    store.add(gross_position(make_signal(market=True), recipients=RECIPIENTS))
    with caplog.at_level(logging.WARNING, logger="real_time_monitor"):
        monitor_tick(store, market, None, evaluate_80=no_80)
        monitor_tick(store, market, None, evaluate_80=no_80)
    assert caplog.text.count("no 1m candles for BTCUSDT") == 1
    store.close()


def test_symbol_failure_is_reported_not_fatal(tmp_path):
    rows = [(100, 100.5, 99.5, 100.2)] * 3
    clock, market, store, journal, p = setup(tmp_path, rows)
    other = make_signal(time=T0)
    other = type(other)(
        **{**{f: getattr(other, f) for f in other.__dataclass_fields__ if f != "id"}, "symbol": "ETHUSDT"}
    )
    store.add(gross_position(other))
    clock.at = pd.Timestamp(T0 + timedelta(minutes=3))
    report = monitor_tick(store, market, journal, evaluate_80=no_80)
    assert report.errors and "ETHUSDT" in report.errors[0]
    assert store.get(p.id).last_checked == T0 + timedelta(minutes=3)


def test_manual_close_is_journaled_and_positions_listing(tmp_path):
    rows = [(100, 100.5, 99.5, 100.2)] * 3
    _clock, _market, store, journal, p = setup(tmp_path, rows)
    text = format_positions_html(store.list_open(), {"BTCUSDT": 102.5})
    assert "+0.50R" in text and f"#{p.id}" in text
    closed = close_and_journal(store, journal, p.id, 102.5, T0 + timedelta(minutes=2))
    assert closed.state is PositionState.MANUAL
    assert journal.get(p.signal_id)["outcome"]["reason"] == "MANUAL"
    assert sync_journal(store, journal) == 0
    assert "None right now" in format_positions_html(store.list_open(), {})


# ----------------------------------------------------------------------------------------------------------------
# 80% handler decisions
# ----------------------------------------------------------------------------------------------------------------


def snap(trend=Direction.BULLISH, zones=(), sweeps=(), displacements=(), last=None):
    return SimpleNamespace(
        structure=SimpleNamespace(trend=trend, last=last),
        zones=tuple(zones),
        sweeps=tuple(sweeps),
        displacements=tuple(displacements),
        close=104.0,
    )


def analysis(s, result=None):
    return SimpleNamespace(snapshot=s, result=result, frames={})


def test_handler_holds_when_everything_is_intact():
    p = gross_position(make_signal(market=True))
    rec = evaluate(p, analysis(snap(displacements=[(Direction.BULLISH, 1.8, 490)])), price=104.0)
    assert rec.action is Action.HOLD and len(rec.checks) == 4


def test_handler_move_be_partial_and_close_now():
    p = gross_position(make_signal(market=True))
    bear_ob = SimpleNamespace(direction=Direction.BEARISH, top=104.8, bottom=104.4, mid=104.6, label="bearish OB")
    rec = evaluate(p, analysis(snap(zones=[bear_ob])), price=104.0)
    assert rec.action is Action.MOVE_SL_BE and "bearish OB" in rec.reasons[0]
    rec = evaluate(p, analysis(snap(zones=[bear_ob], sweeps=[(Direction.BEARISH, 104.3, 495)])), price=104.0)
    assert rec.action is Action.PARTIAL_CLOSE
    rec = evaluate(p, analysis(snap(trend=Direction.BEARISH, displacements=[(Direction.BEARISH, 2.0, 499)])), price=104)
    assert rec.action is Action.CLOSE_NOW
    short = gross_position(make_signal(TradeDirection.SHORT, market=True))
    rec = evaluate(short, analysis(snap(trend=Direction.BEARISH)), price=96.0)
    assert rec.action is Action.HOLD
    assert decide(short, (Check("momentum", False, "x"),), opposite_signal=True) is Action.CLOSE_NOW


def test_handler_runs_the_real_engine_on_real_candles():
    frames = {tf: sample_candles("BTCUSDT", tf, tail=300) for tf in ("1h", "4h", "1d")}
    last = frames["1h"]["close"].iloc[-1]
    sig = make_signal(market=True, scale=last / 100, time=frames["1h"].index[-1].to_pydatetime())
    rec = evaluate(gross_position(sig), frames)
    assert isinstance(rec.action, Action) and len(rec.checks) == 4 and rec.price == pytest.approx(last)


def test_80_percent_without_a_recommendation_sends_the_plain_milestone(tmp_path):
    rows = [(100, 100.5, 99.5, 100.2), (100.2, 104.2, 100.1, 104.1)]
    clock, market, store, journal, _p = setup(tmp_path, rows)
    clock.at = pd.Timestamp(T0 + timedelta(minutes=2))
    monitor_tick(store, market, journal, evaluate_80=lambda position: None)
    (msg, _) = store.pending_outbox()
    assert "80% of the way to TP1" in msg.html and msg.kind == "alert"


def test_savepoint_undoes_only_its_own_changes(tmp_path):
    store = PositionStore(tmp_path / "positions.db")
    with store.transaction():
        store.enqueue(1, "kept")
        with pytest.raises(RuntimeError), store.savepoint():
            store.enqueue(1, "undone")
            raise RuntimeError("bad row")
        store.enqueue(1, "kept too")
    assert [m.html for m in store.pending_outbox()] == ["kept", "kept too"]
    store.close()


def test_80_percent_handler_on_the_sample_market_through_the_engine():
    from ict_80_alert_handler import format_recommendation_html, recommend_for
    from tests.helpers import SAMPLE_DIR

    at = pd.Timestamp("2026-07-24 04:00:20", tz="UTC")
    market = SampleSource(SAMPLE_DIR, clock=lambda: at)
    last = float(market.klines("BTCUSDT", "1h", 1)["close"].iloc[-1])
    sig = make_signal(market=True, scale=last / 104.0, time=(at - pd.Timedelta(hours=5)).to_pydatetime())
    position = gross_position(sig)
    rec = recommend_for(position, market)
    assert rec.price == pytest.approx(last)
    assert [c.name for c in rec.checks] == ["structure", "opposing_zone", "liquidity", "momentum"]
    text = format_recommendation_html(position, rec)
    assert "80% of the way to TP1" in text and rec.action.label in text


def test_monitor_catches_a_wick_through_the_binance_client(tmp_path):
    from market.binance_client import BinanceClient
    from tests.fake_binance import FakeBinance

    rows = [(100, 100.5, 99.5, 100.2)] * 5 + [(100.2, 100.3, 94.8, 99.9)] + [(99.9, 100.4, 99.6, 100.1)] * 10
    store = PositionStore(tmp_path / "positions.db")
    journal = Journal(tmp_path)
    sig = make_signal(market=True)
    p = store.add(gross_position(sig, recipients=RECIPIENTS), signal=sig)
    with FakeBinance(
        now=T0 + timedelta(minutes=3, seconds=5), data_dir=None, frames={("BTCUSDT", "1m"): path_1m(rows)}
    ) as fake:
        market = BinanceClient(fake.url, clock=lambda: fake.now.timestamp())  # local clock = the exchange's
        try:
            monitor_tick(store, market, journal, now=T0 + timedelta(minutes=3, seconds=5), evaluate_80=no_80)
            assert store.get(p.id).state is PositionState.OPEN
            fake.now = pd.Timestamp(T0 + timedelta(minutes=10, seconds=5))
            assert market.price("BTCUSDT") > 99.5  # the price is back above the entry at the second check
            monitor_tick(store, market, journal, now=T0 + timedelta(minutes=10, seconds=5), evaluate_80=no_80)
        finally:
            market.close()
    stored = store.get(p.id)
    assert stored.state is PositionState.SL and stored.closed_at == T0 + timedelta(minutes=5)
    assert journal.get(sig.id)["outcome"]["reason"] == "SL"
    store.close()


def test_80_percent_passed_within_the_same_tick_as_the_target_sends_no_stale_advice(tmp_path):
    rows = [(100, 100.5, 99.5, 100.2), (100.2, 104.2, 100.1, 104.1), (104.1, 105.5, 104, 105.2)]
    clock, market, store, journal, _p = setup(tmp_path, rows)
    clock.at = pd.Timestamp(T0 + timedelta(minutes=3))  # one tick sees the 80% candle and the TP1 candle
    report = monitor_tick(store, market, journal, evaluate_80=no_80)
    texts = [m.html for m in store.pending_outbox() if m.chat_id == RECIPIENTS[0]]
    assert report.events == 2 and len(texts) == 2
    assert "80% of the way to TP1" in texts[0] and "TP1 hit" in texts[1]
