"""The position state machine on hand-built 1m paths, and the SQLite store (milestones once, across restarts)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from engine.signal_model import Signal, TradeDirection
from position_manager import MIGRATIONS, PositionStore, UserSettings
from tracking.costs import Costs
from tracking.state import PENDING_EXPIRY_CANDLES, EventKind, Position, PositionState, apply_candle, close_position

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)


def gross_position(signal, *args, **kwargs):
    """A position without costs: these tests check the mechanics in gross R (costs: test_costs.py)."""
    return Position.from_signal(signal, *args, costs=Costs.none(), **kwargs)


MIN = timedelta(minutes=1)


def make_signal(direction=TradeDirection.LONG, *, market=False, scale=1.0, timeframe="1h", time=T0) -> Signal:
    """Long: zone 99-101 (entry 100), SL 95, TP 105/110/120. Short mirrors around 100. ``scale`` multiplies prices."""
    s = direction.sign
    entry = 100.0
    low, high = (entry, entry) if market else (99.0, 101.0)
    return Signal(
        symbol="BTCUSDT",
        timeframe=timeframe,
        direction=direction,
        entry=entry * scale,
        entry_low=low * scale,
        entry_high=high * scale,
        sl=(entry - 5 * s) * scale,
        tp1=(entry + 5 * s) * scale,
        tp2=(entry + 10 * s) * scale,
        tp3=(entry + 20 * s) * scale,
        time=time,
        rule_confidence=70.0,
        features=(("atr_pct", 1.0),),
    )


def mirror(rows, direction):
    """Rows written for a long around 100; for a short reflect prices around 100 (high<->low swap)."""
    if direction is TradeDirection.LONG:
        return rows
    return [(200 - o, 200 - lo, 200 - h, 200 - c) for o, h, lo, c in rows]


def walk(position, rows, *, start=T0, step=MIN, scale=1.0):
    events = []
    for i, (o, h, lo, c) in enumerate(rows):
        ts = start + i * step
        position, ev = apply_candle(position, ts, o * scale, h * scale, lo * scale, c * scale, close_time=ts + step)
        events.extend(ev)
    return position, events


BOTH = pytest.mark.parametrize("direction", [TradeDirection.LONG, TradeDirection.SHORT])


@BOTH
@pytest.mark.parametrize("scale", [1.0, 1e-6])
def test_limit_entry_then_tp1_moves_stop_to_break_even_then_be_stop(direction, scale):
    p = gross_position(make_signal(direction, scale=scale))
    assert p.state is PositionState.PENDING
    rows = mirror(
        [
            (102, 103, 101.5, 102),  # above the entry: still pending
            (102, 102, 99.8, 100.5),  # trades 100: filled at 100
            (100.5, 103.9, 100.2, 103.8),  # 78% of the way to TP1: 25, 50, 75 crossed; 75 emitted
            (104, 105.5, 103.5, 105),  # TP1 hit: stop -> 100
            (105, 105.2, 101, 101.5),  # no stop
            (101.5, 101.6, 99.9, 100.2),  # break-even stop hit
        ],
        direction,
    )
    p, events = walk(p, rows, scale=scale)
    keys = [e.key for e in events]
    assert keys == ["FILLED", "TP1_75", "TP1", "CLOSED"]
    assert p.state is PositionState.BE
    assert p.sl == pytest.approx(100 * scale)
    out = p.outcome
    assert out.reason is PositionState.BE and out.highest_target == 1
    assert out.r_multiple == pytest.approx(0.0, abs=1e-9)
    assert out.fill_price == pytest.approx(100 * scale)
    assert out.mfe_r == pytest.approx(1.1)  # 105.5 - 100 = 5.5 = 1.1 R
    assert out.duration_seconds == 4 * 60  # filled at minute 1, closed at minute 5
    assert p.closed_at == T0 + 5 * MIN


@BOTH
def test_ambiguous_candle_touching_stop_and_target_counts_the_stop_first(direction):
    p = gross_position(make_signal(direction, market=True))
    assert p.state is PositionState.OPEN and p.fill_price == 100
    p, events = walk(p, mirror([(100, 106, 94, 100)], direction))  # TP1 (105) and SL (95) both touched
    assert [e.key for e in events] == ["CLOSED"]
    assert p.state is PositionState.SL
    assert p.outcome.r_multiple == pytest.approx(-1.0)
    assert p.outcome.highest_target == 0


def test_gap_through_the_stop_exits_at_the_open():
    p = gross_position(make_signal(market=True))
    p, _ = walk(p, [(93, 94, 92, 93)])
    assert p.state is PositionState.SL and p.exit_price == 93
    assert p.outcome.r_multiple == pytest.approx(-1.4)


@BOTH
def test_entry_and_stop_in_the_same_candle_closes_at_sl(direction):
    p = gross_position(make_signal(direction))
    p, events = walk(p, mirror([(102, 102, 94, 96)], direction))
    assert [e.key for e in events] == ["FILLED", "CLOSED"]
    assert p.state is PositionState.SL and p.outcome.r_multiple == pytest.approx(-1.0)


def test_fill_candle_targets_count_on_the_close_only():
    # the high (106) came before the fill (the candle opened at 104): TP1 is not credited, the close (101) is below
    p, events = walk(gross_position(make_signal()), [(104, 106, 99.5, 101)])
    assert [e.key for e in events] == ["FILLED"]
    assert p.state is PositionState.OPEN
    # a fill candle closing above TP1 counts it
    p, events = walk(gross_position(make_signal()), [(101, 106, 99.5, 105.5)])
    assert [e.key for e in events] == ["FILLED", "TP1"]


def test_targets_in_one_candle_and_tp3_close():
    p = gross_position(make_signal(market=True))
    p, events = walk(p, [(100, 111, 99, 110.5), (110.5, 121, 110, 120.5)])
    assert [e.key for e in events] == ["TP1", "TP2", "TP3", "CLOSED"]
    assert p.state is PositionState.TP3
    assert p.outcome.r_multiple == pytest.approx(4.0)
    assert p.outcome.pnl_pct == pytest.approx(20.0)
    assert p.outcome.highest_target == 3


def test_break_even_stop_set_inside_a_candle_is_judged_on_the_close():
    p = gross_position(make_signal(market=True))
    # TP1 hit, the low 99.5 is below break-even but may have come first; the close (102) is above: still TP1
    p, _ = walk(p, [(100, 105.5, 99.5, 102)])
    assert p.state is PositionState.TP1
    # TP1 hit and the candle CLOSES below break-even: closed BE at the fill price
    q = gross_position(make_signal(market=True))
    q, events = walk(q, [(100, 105.5, 99, 99.5)])
    assert [e.key for e in events] == ["TP1", "CLOSED"] and q.state is PositionState.BE
    assert q.exit_price == 100


@BOTH
def test_pending_expires_after_n_candles_of_its_timeframe(direction):
    p = gross_position(make_signal(direction))
    assert p.expires_at == T0 + PENDING_EXPIRY_CANDLES * timedelta(hours=1)
    rows = mirror([(103, 104, 102, 103)] * (PENDING_EXPIRY_CANDLES * 60 + 5), direction)
    p, events = walk(p, rows)
    assert [e.key for e in events] == ["CLOSED"] and events[0].outcome.reason is PositionState.EXPIRED
    assert p.state is PositionState.EXPIRED
    assert p.closed_at == p.expires_at
    assert p.outcome.r_multiple == 0 and p.outcome.fill_price is None


def test_pending_expires_when_tp1_trades_before_the_entry():
    p, events = walk(gross_position(make_signal()), [(102, 105.2, 101.5, 105)])
    assert [e.key for e in events] == ["CLOSED"] and p.state is PositionState.EXPIRED


def test_milestones_each_once_and_highest_only_when_several_cross():
    p = gross_position(make_signal(market=True))
    p, events = walk(p, [(100, 101.3, 99.9, 101), (101, 101.4, 100.5, 101), (101, 104.1, 100.8, 104)])
    assert [(e.key, e.percent) for e in events] == [("TP1_25", 25), ("TP1_80", 80)]
    assert {"TP1_25", "TP1_50", "TP1_75", "TP1_80"} <= p.milestones
    # after TP1 the milestones toward TP2 are measured from TP1 (105 -> 110)
    p, events = walk(p, [(104, 105, 103, 105), (105, 107.6, 104.9, 107)], start=T0 + 10 * MIN)
    assert [e.key for e in events] == ["TP1", "TP2_50"]


def test_stop_warning_once_at_half_way_to_the_stop_and_not_after_tp1():
    p = gross_position(make_signal(market=True))
    p, events = walk(p, [(100, 100.2, 97.4, 98), (98, 98, 97, 97.5), (97.5, 99, 97.2, 98)])
    assert [e.key for e in events] == ["SL_50"]
    assert events[0].kind is EventKind.STOP_WARNING


def test_manual_close_and_closed_positions_do_not_change():
    p = gross_position(make_signal(market=True))
    p, _ = walk(p, [(100, 103, 99, 102)])
    closed, outcome = close_position(p, 102.5, T0 + 2 * MIN)
    assert closed.state is PositionState.MANUAL
    assert outcome.r_multiple == pytest.approx(0.5)
    assert outcome.reason is PositionState.MANUAL
    again, events = apply_candle(closed, T0 + 3 * MIN, 100, 130, 80, 100)
    assert again is closed and events == []
    with pytest.raises(ValueError):
        close_position(closed, 100, T0)


def test_candles_before_last_checked_are_ignored():
    p = gross_position(make_signal(market=True))
    p, _ = walk(p, [(100, 101, 99.5, 100.5)])
    same, events = apply_candle(p, T0, 100, 130, 80, 100)  # re-read of the first candle
    assert same is p and events == []
    before, events = apply_candle(p, T0 - MIN, 100, 130, 80, 100)  # a candle before the signal
    assert before is p and events == []


# ----------------------------------------------------------------------------------------------------------------
# Store
# ----------------------------------------------------------------------------------------------------------------


def test_store_round_trip_schema_and_wal(tmp_path):
    path = tmp_path / "positions.db"
    store = PositionStore(path)
    assert store.schema_version == len(MIGRATIONS)
    sig = make_signal()
    p = store.add(gross_position(sig, recipients=[5, 6, 5]), signal=sig)
    assert p.id > 0 and p.recipients == (5, 6)
    assert store.add(gross_position(sig)).id == p.id  # the same signal is tracked once
    p2, _ = walk(p, [(102, 102, 99.8, 100.5), (100.5, 104, 100.2, 103.9)])
    store.update(p2)
    store.close()
    store = PositionStore(path)
    loaded = store.get(p.id)
    assert loaded == p2
    assert [x.id for x in store.list_open()] == [p.id]
    assert store.signal_json(p.id)["id"] == sig.id
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()


def test_milestones_recorded_once_also_across_a_restart(tmp_path):
    path = tmp_path / "positions.db"
    store = PositionStore(path)
    p = store.add(gross_position(make_signal()))
    assert store.mark_milestone(p.id, "TP1_25") is True
    assert store.mark_milestone(p.id, "TP1_25") is False
    store.close()
    store = PositionStore(path)
    assert store.mark_milestone(p.id, "TP1_25") is False
    assert store.mark_milestone(p.id, "TP1_50") is True
    assert store.milestones_sent(p.id) == {"TP1_25", "TP1_50"}
    store.close()


def test_close_manual_in_store(tmp_path):
    store = PositionStore(tmp_path / "positions.db")
    p = store.add(gross_position(make_signal(market=True)))
    closed, outcome = store.close_manual(p.id, 103.0, T0 + MIN)
    assert closed.exit_price == 103.0
    assert outcome.r_multiple == pytest.approx(0.6)
    assert store.get(p.id).state is PositionState.MANUAL
    assert store.list_open() == []
    assert [x.id for x in store.unjournaled_closed()] == [p.id]
    store.mark_journaled(p.id)
    assert store.unjournaled_closed() == []
    with pytest.raises(KeyError):
        store.close_manual(999, 1.0, T0)
    with pytest.raises(ValueError):
        store.close_manual(p.id, 1.0, T0)
    store.close()


def test_outbox_transaction_rolls_back_with_the_state_change(tmp_path):
    store = PositionStore(tmp_path / "positions.db")
    p = store.add(gross_position(make_signal(market=True)))
    with pytest.raises(RuntimeError), store.transaction():
        store.enqueue(1, "<b>hi</b>", dedupe_key="x")
        store.mark_milestone(p.id, "TP1_25")
        raise RuntimeError("killed")
    assert store.pending_outbox() == [] and store.milestones_sent(p.id) == set()
    with store.transaction():
        first = store.enqueue(1, "<b>hi</b>", b"\x89PNG", kind="broadcast", dedupe_key="x")
        assert store.enqueue(1, "<b>hi</b>", dedupe_key="x") is None
    (msg,) = store.pending_outbox()
    assert msg.id == first and msg.photo == b"\x89PNG" and msg.kind == "broadcast"
    store.mark_failed(msg.id, "timeout", permanent=False)
    assert store.pending_outbox()[0].attempts == 1
    store.mark_sent(msg.id)
    assert store.pending_outbox() == []
    second = store.enqueue(2, "x")
    store.mark_failed(second, "Forbidden: bot was blocked by the user", permanent=True)
    assert store.pending_outbox() == []
    counts = store.outbox_counts()
    assert (counts.pending, counts.sent, counts.failed) == (0, 1, 1)
    store.close()


def test_subscribers_settings_and_state_persist(tmp_path):
    path = tmp_path / "positions.db"
    store = PositionStore(path)
    assert store.subscribe(10) is True and store.subscribe(10) is False
    store.subscribe(11)
    store.unsubscribe(11, reason="blocked")
    store.set_user_settings(10, UserSettings(default_timeframe="4h", broadcasts=False, min_confidence=75))
    store.set_paused(True)
    store.set_state("last_scan", "2025-01-01T00:00:00Z")
    store.close()
    store = PositionStore(path)
    assert store.subscribers() == [10]
    assert store.get_user_settings(10) == UserSettings("4h", False, 75.0)
    assert store.get_user_settings(99) == UserSettings()
    assert store.paused is True
    assert store.get_state("last_scan") == "2025-01-01T00:00:00Z"
    assert store.get_state("missing", "d") == "d"
    with pytest.raises(ValueError):
        store.set_user_settings(10, UserSettings(min_confidence=150))
    store.close()


def test_corrupt_database_is_kept_aside_and_started_empty(tmp_path, caplog):
    path = tmp_path / "positions.db"
    path.write_bytes(b"this is not a database" * 100)
    store = PositionStore(path)
    assert store.quarantined is not None and store.quarantined.exists()
    assert store.list_open() == [] and store.schema_version == len(MIGRATIONS)
    assert "kept aside" in caplog.text
    store.subscribe(1)
    store.close()
    assert PositionStore(path).subscribers() == [1]


def test_tracking_starts_when_the_signal_is_sent():
    sent = T0 + timedelta(minutes=14, seconds=30)
    p = gross_position(make_signal(market=True), start=sent)
    assert p.opened_at == T0 and p.last_checked == sent
    # the stop was touched before the signal was sent: not applied
    p, events = walk(p, [(100, 100, 94, 99)] * 15 + [(99, 101, 98, 100)])
    assert p.state is PositionState.OPEN and events == []
    assert gross_position(make_signal(), start=T0 - timedelta(hours=1)).last_checked == T0


# --- boundaries a mutation would move (issue 14: each test fails when its comparison is loosened or tightened) ----


@BOTH
def test_a_candle_touching_the_stop_exactly_is_a_stop(direction):
    # an open position (market entry 100, stop 95): the low is exactly the stop
    p, events = walk(gross_position(make_signal(direction, market=True)), mirror([(100, 101, 95, 99)], direction))
    assert p.state is PositionState.SL and [e.key for e in events] == ["CLOSED"]
    assert p.exit_price == (95 if direction is TradeDirection.LONG else 105)
    # the fill candle: filled at 100, then the low touches 95 exactly
    q, events = walk(gross_position(make_signal(direction)), mirror([(102, 102, 95, 96)], direction))
    assert q.state is PositionState.SL and [e.key for e in events] == ["FILLED", "CLOSED"]


@BOTH
def test_a_candle_touching_the_limit_entry_exactly_fills_it(direction):
    p, events = walk(gross_position(make_signal(direction)), mirror([(102, 103, 100, 100.5)], direction))
    assert [e.key for e in events] == ["FILLED"] and p.state is PositionState.OPEN
    assert p.fill_price == 100
    # a hair away does not fill
    q, events = walk(gross_position(make_signal(direction)), mirror([(102, 103, 100.01, 100.5)], direction))
    assert events == [] and q.state is PositionState.PENDING


@BOTH
def test_a_gap_through_the_limit_entry_fills_at_the_open(direction):
    p, _ = walk(gross_position(make_signal(direction)), mirror([(98, 99, 97.5, 98.5)], direction))
    assert p.state is PositionState.OPEN
    assert p.fill_price == (98 if direction is TradeDirection.LONG else 102)  # the better price, not the entry


def test_a_pending_order_expires_exactly_at_its_expiry_candle():
    hour = timedelta(hours=1)
    away, touch = (103, 104, 102, 103), (101, 101, 99.5, 100)
    p = gross_position(make_signal())
    assert p.expires_at == T0 + PENDING_EXPIRY_CANDLES * hour
    # the candle opening exactly at the expiry instant would fill, but the order is gone by then
    late, events = walk(p, [away] * PENDING_EXPIRY_CANDLES + [touch], step=hour)
    assert late.state is PositionState.EXPIRED and late.closed_at == p.expires_at
    assert [e.key for e in events] == ["CLOSED"]
    # one candle earlier (the last one before the expiry) still fills
    in_time, events = walk(p, [away] * (PENDING_EXPIRY_CANDLES - 1) + [touch], step=hour)
    assert in_time.state is PositionState.OPEN and [e.key for e in events] == ["FILLED"]
