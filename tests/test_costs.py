"""Costs and the exit plan: hand-computed trades (fees, slippage, break-even, each partial), the pure R function,
the state machine's outcomes under a plan, the journal's net figures, the monitor's partial-exit alert."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.signal_model import TradeDirection
from real_time_monitor import format_event_html
from store.journal import bucket_of, outcome_r
from tests.test_positions import make_signal, mirror, walk
from tracking.costs import Costs, Exit, exits_of, parse_exit_plan, trade_r
from tracking.state import EventKind, Position, PositionState, close_position

COSTS = Costs(fee_pct=0.1, slippage_pct=0.02)
LONG, SHORT = TradeDirection.LONG, TradeDirection.SHORT

# Long limit at 100 (risk 5: SL 95; TP 105/110/120); fee 0.1 % per side, slippage 0.02 % on market orders.
# Every expected number below is worked out by hand in the comment next to it.


def test_long_limit_stopped_out_by_hand():
    # exit 95 is a stop: 95 * (1 - 0.0002) = 94.981; move -5.019; fees 0.001 * (100 + 94.981) = 0.194981
    gross, net = trade_r(sign=1, entry=100, sl=95, fill=100, exits=[Exit(95, 1, True)], costs=COSTS, market_entry=False)
    assert gross == pytest.approx(-1.0)
    assert net == pytest.approx((-5.019 - 0.194981) / 5)  # -1.0427962


def test_long_tp3_limit_exit_pays_fees_only():
    # target = limit order, no slippage: move 20; fees 0.001 * (100 + 120) = 0.22
    gross, net = trade_r(
        sign=1, entry=100, sl=95, fill=100, exits=[Exit(120, 1, False)], costs=COSTS, market_entry=False
    )
    assert (gross, net) == (pytest.approx(4.0), pytest.approx((20 - 0.22) / 5))  # 3.956


def test_short_market_entry_stop_slips_both_ways():
    # short, market entry 100: sold at 100 * (1 - 0.0002) = 99.98; stop 105 bought at 105 * 1.0002 = 105.021
    # move -(105.021 - 99.98) = -5.041; fees 0.001 * (99.98 + 105.021) = 0.205001
    gross, net = trade_r(
        sign=-1, entry=100, sl=105, fill=100, exits=[Exit(105, 1, True)], costs=COSTS, market_entry=True
    )
    assert gross == pytest.approx(-1.0)
    assert net == pytest.approx((-5.041 - 0.205001) / 5)  # -1.0492002


def test_short_market_entry_tp3():
    # move -(80 - 99.98) = 19.98; fees 0.001 * (99.98 + 80) = 0.17998
    gross, net = trade_r(
        sign=-1, entry=100, sl=105, fill=100, exits=[Exit(80, 1, False)], costs=COSTS, market_entry=True
    )
    assert (gross, net) == (pytest.approx(4.0), pytest.approx((19.98 - 0.17998) / 5))  # 3.960004


def test_zero_costs_give_the_gross_figures():
    exits = [Exit(105, 0.5, False), Exit(99, 0.5, True)]
    gross, net = trade_r(sign=1, entry=100, sl=95, fill=100, exits=exits, costs=Costs.none(), market_entry=True)
    assert net == gross == pytest.approx((2.5 - 0.5) / 5)


def test_exit_plan_parsing_and_exits():
    assert parse_exit_plan("50, 30, 20") == (50.0, 30.0, 20.0)
    for bad in ("50,30", "50,30,30", "-10,10,100", "a,b,c", "50,30,20,0"):
        with pytest.raises(ValueError):
            parse_exit_plan(bad)
    # TP1 and TP2 reached under 50,30,20, the rest stopped at 100
    assert exits_of((50, 30, 20), (105, 110, 120), 2, 100, final_market=True) == [
        Exit(105, 0.5, False),
        Exit(110, 0.3, False),
        Exit(100, pytest.approx(0.2), True),
    ]


# --- the state machine under costs and a plan --------------------------------------------------------------------


def position(direction=LONG, *, market=False, plan=(0, 0, 100), costs=COSTS) -> Position:
    return Position.from_signal(make_signal(direction, market=market), exit_plan=plan, costs=costs)


@pytest.mark.parametrize("direction", [LONG, SHORT])
def test_break_even_after_tp1_is_a_small_net_loss(direction):
    # limit fill 100, TP1 105 (stop -> 100), back to 100: exit 100 slipped to 99.98 (long) / 100.02 (short)
    # move -0.02; fees 0.001 * (100 + 99.98) = 0.19998 (short: 0.001 * (100 + 100.02) = 0.20002)
    p, _ = walk(
        position(direction), mirror([(102, 102, 99.8, 100.5), (101, 105.5, 101, 105), (104, 104, 99, 99.5)], direction)
    )
    assert p.state is PositionState.BE
    fees = 0.19998 if direction is LONG else 0.20002
    assert p.outcome.r_gross == pytest.approx(0.0)
    assert p.outcome.r_net == pytest.approx((-0.02 - fees) / 5, abs=1e-4)  # outcomes keep 4 decimals
    assert p.outcome.r_multiple == pytest.approx(p.outcome.r_net, abs=1e-4)  # every figure shown is net


def test_each_partial_of_a_50_30_20_plan():
    p = position(plan=(50, 30, 20))
    p, events = walk(p, [(102, 102, 99.8, 100.5), (101, 105.5, 101, 105)])  # filled at 100, TP1
    tp1 = [e for e in events if e.kind is EventKind.TARGET_HIT]
    assert [(e.target, e.share) for e in tp1] == [(1, 50)] and p.open_share == 50 and p.sl == 100
    p, events = walk(p, [(105, 110.5, 105, 110)], start=p.last_checked)  # TP2: 30 % more
    assert [(e.target, e.share) for e in events if e.kind is EventKind.TARGET_HIT] == [(2, 30)]
    assert p.open_share == pytest.approx(20) and p.state is PositionState.TP2
    p, events = walk(p, [(110, 120.5, 110, 120)], start=p.last_checked)  # TP3: the last 20 %
    assert p.state is PositionState.TP3
    # 0.5 * 5 + 0.3 * 10 + 0.2 * 20 = 9.5 per unit; fees 0.001 * (100 + 52.5 + 33 + 24) = 0.2095
    assert p.outcome.r_gross == pytest.approx(9.5 / 5)
    assert p.outcome.r_net == pytest.approx((9.5 - 0.2095) / 5, abs=1e-4)
    assert p.outcome.avg_exit_price == pytest.approx(0.5 * 105 + 0.3 * 110 + 0.2 * 120)


def test_50_30_20_plan_tp1_tp2_then_break_even():
    p = position(plan=(50, 30, 20))
    p, _ = walk(p, [(102, 102, 99.8, 100.5), (101, 110.5, 101, 110), (109, 109, 99, 99.5)])
    assert p.state is PositionState.BE and p.outcome.highest_target == 2
    # 0.5 * 5 + 0.3 * 10 + 0.2 * (99.98 - 100) = 5.496; fees 0.001 * (100 + 52.5 + 33 + 0.2 * 99.98) = 0.205496
    assert p.outcome.r_gross == pytest.approx(5.5 / 5)
    assert p.outcome.r_net == pytest.approx((5.496 - 0.205496) / 5, abs=1e-4)


def test_50_30_20_plan_tp1_then_break_even_short():
    p = position(SHORT, plan=(50, 30, 20))
    p, _ = walk(p, mirror([(102, 102, 99.8, 100.5), (101, 105.5, 101, 105), (104, 104, 99, 99.5)], SHORT))
    assert p.state is PositionState.BE
    # 0.5 * 5 + 0.5 * -(100.02 - 100) = 2.49; fees 0.001 * (100 + 0.5 * 95 + 0.5 * 100.02) = 0.19751
    assert p.outcome.r_gross == pytest.approx(0.5)
    assert p.outcome.r_net == pytest.approx((2.49 - 0.19751) / 5, abs=1e-4)


def test_a_plan_with_nothing_left_closes_at_that_target():
    p, events = walk(position(plan=(100, 0, 0)), [(102, 102, 99.8, 100.5), (101, 105.5, 101, 105)])
    assert p.state is PositionState.TARGETS and not p.is_active
    assert [e.key for e in events] == ["FILLED", "TP1", "CLOSED"]
    assert p.outcome.r_gross == pytest.approx(1.0)
    assert p.outcome.r_net == pytest.approx((5 - 0.001 * 205) / 5, abs=1e-4)


def test_manual_close_after_tp1_is_a_market_exit_of_the_rest():
    p, _ = walk(position(plan=(50, 30, 20)), [(102, 102, 99.8, 100.5), (101, 105.5, 101, 105)])
    _, outcome = close_position(p, 107.0, datetime(2025, 1, 7, tzinfo=UTC))
    # 0.5 * 5 + 0.5 * (107 * 0.9998 - 100) = 2.5 + 3.4893; fees 0.001 * (100 + 52.5 + 0.5 * 106.9786) = 0.2059893
    assert outcome.r_gross == pytest.approx((2.5 + 3.5) / 5)
    assert outcome.r_net == pytest.approx((2.5 + 3.4893 - 0.2059893) / 5, abs=1e-4)


def test_outcome_json_round_trip_keeps_gross_and_net():
    p, _ = walk(position(), [(102, 102, 99.8, 100.5), (100, 100, 94, 95)])
    data = p.outcome.to_json()
    assert data["r_gross"] == -1.0 and data["r_net"] == p.outcome.r_multiple
    from tracking.state import Outcome

    assert Outcome.from_json(data) == p.outcome


def test_monitor_alert_says_what_part_was_closed():
    p, events = walk(position(plan=(50, 30, 20)), [(102, 102, 99.8, 100.5), (101, 105.5, 101, 105)])
    hit = next(e for e in events if e.kind is EventKind.TARGET_HIT)
    text = format_event_html(p, hit)
    assert "50% of the position closed at TP1, 50% still open" in text and "break-even" in text


# --- the journal: net everywhere, old gross outcomes charged the default costs ------------------------------------


def test_journal_stats_are_net_and_old_outcomes_are_charged_costs():
    sig = make_signal(market=False).to_json()
    old_be = {"outcome": {"reason": "BE", "fill_price": 100.0, "exit_price": 100.0, "r_multiple": 0.0}, "signal": sig}
    # no r_net: recorded before costs; exit 100 slipped to 99.98, fees 0.001 * 199.98
    assert outcome_r(old_be["outcome"], sig) == (0.0, pytest.approx((-0.02 - 0.19998) / 5))
    new_win = {"outcome": {"reason": "TP3", "fill_price": 100.0, "exit_price": 120.0, "r_multiple": 3.956,
                           "r_gross": 4.0, "r_net": 3.956}, "signal": sig}  # fmt: skip
    bucket = bucket_of([old_be, new_win])
    assert (bucket.closed, bucket.wins, bucket.losses, bucket.breakevens) == (2, 1, 1, 0)  # BE is a net loss
    assert bucket.total_r == pytest.approx(3.956 + (-0.02 - 0.19998) / 5)
    assert bucket.total_r_gross == pytest.approx(4.0)
