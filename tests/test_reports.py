"""The daily / weekly / monthly report's numbers on a known journal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daily_reports import build_report
from position_manager import PositionStore
from store.journal import Journal
from tests.test_positions import make_signal
from tracking.costs import Costs
from tracking.state import Position


def gross_position(signal, *args, **kwargs):
    """A position without costs: these tests check the mechanics in gross R (costs: test_costs.py)."""
    return Position.from_signal(signal, *args, costs=Costs.none(), **kwargs)


NOW = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)


def outcome(reason, r, closed_at, fill=100.0):
    return {
        "reason": reason,
        "exit_price": 100.0 + 5 * r if fill else None,
        "fill_price": fill,
        "r_multiple": r,
        "r_gross": r,
        "r_net": r,  # recorded with costs: the windows are under test here, not the costs
        "pnl_pct": 5.0 * r,
        "opened_at": "2025-03-01T00:00:00Z",
        "filled_at": "2025-03-01T00:00:00Z" if fill else None,
        "closed_at": closed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_seconds": 3600.0,
        "mfe_r": 1.0,
        "mae_r": 0.5,
        "highest_target": 3 if r > 1 else 0,
    }


@pytest.fixture
def known(tmp_path):
    journal = Journal(tmp_path, clock=lambda: NOW)
    store = PositionStore(tmp_path / "positions.db")
    # (hours before NOW the signal was sent, symbol tweak via timeframe, outcome or None)
    plan = [
        (30, "1h", ("TP3", 4.0, NOW - timedelta(hours=20))),  # sent before the day, closed inside it: counted closed
        (10, "1h", ("SL", -1.0, NOW - timedelta(hours=5))),
        (9, "4h", ("BE", 0.0, NOW - timedelta(hours=3))),
        (8, "15m", ("MANUAL", 1.5, NOW - timedelta(hours=2))),
        (7, "2h", ("EXPIRED", 0.0, NOW - timedelta(hours=1), None)),
        (6, "30m", None),  # still open
        (24 * 5, "1d", ("SL", -1.0, NOW - timedelta(days=4))),  # in the week and the month only
        (24 * 40, "1w", ("TP3", 3.0, NOW - timedelta(days=39))),  # outside every window
    ]
    for hours, tf, out in plan:
        sent = NOW - timedelta(hours=hours)
        sig = make_signal(market=True, timeframe=tf, time=sent)
        journal.record_signal(sig, at=sent)
        if out is not None:
            reason, r, closed, *fill = out
            journal.record_outcome(sig.id, outcome(reason, r, closed, *(fill or [100.0])))
        else:
            store.add(gross_position(sig))
    yield journal, store
    store.close()


def test_daily_report_numbers(known):
    journal, store = known
    rep = build_report(journal, store, period="daily", now=NOW, tz="Europe/Berlin")
    assert rep.signals == 5  # sent at -10, -9, -8, -7, -6 hours
    assert (rep.closed, rep.wins, rep.losses, rep.breakevens, rep.expired) == (4, 2, 1, 1, 1)
    assert rep.total_r == pytest.approx(4.5)
    assert rep.win_rate == pytest.approx(50.0)
    assert rep.open_positions == 1
    text = rep.html
    assert "Daily report" in text and "Win rate: 50.0%" in text and "total +4.50R" in text
    assert "average +1.12R" in text or "average +1.13R" in text
    assert "Best: BTCUSDT 1h LONG +4.00R" in text and "worst: BTCUSDT 1h LONG -1.00R" in text
    assert "BTCUSDT: 4 closed, 2W/1L/1BE, +4.50R" in text
    assert "CET" in text  # shown in BOT_TIMEZONE
    assert rep.png.startswith(b"\x89PNG") and rep.chart_png is rep.png


def test_weekly_and_monthly_windows(known):
    journal, store = known
    weekly = build_report(journal, store, period="weekly", now=NOW)
    assert (weekly.closed, weekly.losses) == (5, 2) and weekly.total_r == pytest.approx(3.5)
    monthly = build_report(journal, store, period="monthly", now=NOW)
    assert monthly.closed == 5  # the trade closed 39 days ago is outside
    with pytest.raises(ValueError):
        build_report(journal, store, period="yearly", now=NOW)


def test_empty_period_says_so_plainly(tmp_path):
    journal = Journal(tmp_path)
    rep = build_report(journal, None, period="daily", now=NOW)
    assert "No signals were sent and no trades closed in this period." in rep.html
    assert rep.png is None and rep.closed == 0 and rep.open_positions == 0
