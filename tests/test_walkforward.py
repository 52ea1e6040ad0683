"""Walk-forward evidence: no decision sees the future, the gate and the probabilities behave as documented."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from config import Settings
from research.candidates import CandidateTask, run_task
from research.evaluate import history_market
from research.evidence_stats import gate_passes, lower_bound, mean_interval, setup_stats
from research.walkforward import Candidate, Window, calibration, choose, one_at_a_time, oos_trades, windows
from tests.helpers import SAMPLE_DIR
from tracking.costs import Costs
from tracking.setups import setup_of

T0 = datetime(2024, 1, 1, tzinfo=UTC)
FREE = Costs.none()


def candidate(at: datetime, r_path: str, *, setup: str = "s/long/1h", hours: int = 5, **features) -> Candidate:
    """A long at 100 with the stop at 99 (1 R = 1) and targets at 101, 102, 103; ``r_path``: 'sl', 'be' (TP1 then
    back to entry), 'tp3'."""
    hits = {"sl": (), "be": (at + timedelta(hours=1),), "tp3": tuple(at + timedelta(hours=h) for h in (1, 2, 3))}[
        r_path
    ]
    exit_price = {"sl": 99.0, "be": 100.0, "tp3": 103.0}[r_path]
    return Candidate(
        symbol="X",
        timeframe="1h",
        time=at,
        setup=setup,
        sign=1,
        entry=100.0,
        sl=99.0,
        targets=(101.0, 102.0, 103.0),
        fill=100.0,
        market_entry=False,
        hits=hits,
        exit_price=exit_price,
        exit_time=at + timedelta(hours=hours),
        exit_reason={"sl": "SL", "be": "BE", "tp3": "TP3"}[r_path],
        confidence=50.0,
        features=features,
    )


def test_plan_exits_follow_the_full_path():
    be = candidate(T0, "be")
    assert be.r((0, 0, 100), FREE) == (0.0, 0.0)
    assert be.r((50, 30, 20), FREE) == pytest.approx((0.5, 0.5))  # half at TP1 (+1 R), the rest at break-even
    assert be.close_time((100, 0, 0)) == T0 + timedelta(hours=1)
    assert be.close_time((50, 30, 20)) == be.exit_time
    assert candidate(T0, "tp3").r((50, 30, 20), FREE)[0] == pytest.approx(0.5 * 1 + 0.3 * 2 + 0.2 * 3)
    gross, net = candidate(T0, "sl").r((0, 0, 100), Costs(0.1, 0.02))
    assert gross == -1 and net < -1  # fees and the slipped stop make a loss bigger


def test_one_position_per_setup_at_a_time():
    first = candidate(T0, "sl", hours=5)
    inside = candidate(T0 + timedelta(hours=2), "sl")
    other_setup = candidate(T0 + timedelta(hours=2), "sl", setup="t/long/1h")
    after = candidate(T0 + timedelta(hours=5), "sl")
    assert one_at_a_time([after, inside, first, other_setup], (0, 0, 100)) == [first, other_setup, after]


def test_windows_roll_from_start_plus_training():
    ws = windows(T0, T0 + timedelta(days=100), 60, 15)
    assert [w.test_start for w in ws] == [T0 + timedelta(days=d) for d in (60, 75, 90)]
    assert ws[-1].test_end == T0 + timedelta(days=100)
    assert all(w.test_start - w.train_start == timedelta(days=60) for w in ws)


@pytest.mark.parametrize(("mean", "passes"), [(0.4, True), (0.0, False), (-0.3, False)])
def test_gate_on_known_edges(mean, passes):
    rng = np.random.default_rng(1)
    r = rng.normal(mean, 1.0, 400)
    r = r - r.mean() + mean  # exactly the intended edge
    assert gate_passes(r) is passes


def test_gate_needs_thirty_trades():
    r = [1.0, 0.5] * 14  # 28 winners: no amount of luck passes with fewer than 30 trades
    assert not gate_passes(r)
    assert gate_passes([*r, 1.0, 0.8])


def test_intervals_are_student_t():
    r = [1.0, -1.0, 2.0, -1.0, 0.5]
    low, high = mean_interval(r)
    assert (low + high) / 2 == pytest.approx(np.mean(r))
    assert high - low == pytest.approx(2 * 2.776445 * np.std(r, ddof=1) / np.sqrt(5), rel=1e-5)
    assert lower_bound(r, 0.8) > low
    s = setup_stats([1.0, -1.0, 2.0], [True, False, True])
    assert (s.trades, s.win_rate, s.profit_factor) == (3, pytest.approx(2 / 3, abs=1e-4), 3.0)


def test_choice_uses_only_trades_closed_before_the_test_window():
    w = Window(T0, T0 + timedelta(days=30), T0 + timedelta(days=40))
    good = [candidate(T0 + timedelta(hours=6 * k), "tp3", hours=5) for k in range(40)]
    late = candidate(w.test_start - timedelta(minutes=30), "tp3", hours=5)  # every exit after the window opens
    choice = choose([*good, late], w, FREE)
    assert choice.variant is not None and "s/long/1h" in choice.kept
    assert max(s.trades for s in choice.scores) == 40


def test_probability_is_calibrated_on_a_known_rate():
    """Setups with a known TP1 probability: the training rate predicts the test rate within sampling error."""
    rng = np.random.default_rng(7)
    truth = {"a/long/1h": 0.25, "b/long/1h": 0.55}
    cands = []
    for setup, p in truth.items():
        for k in range(2000):
            at = T0 + timedelta(hours=6 * k)
            cands.append(candidate(at, "be" if rng.random() < p else "sl", setup=setup, hours=1))
    w = Window(T0, T0 + timedelta(days=250), T0 + timedelta(days=500))
    choice = choose(cands, w, FREE, plans=((50, 30, 20),))
    assert choice.probabilities["a/long/1h"] == pytest.approx(0.25, abs=0.05)
    rows = calibration(oos_trades(cands, choice, FREE))
    assert len(rows) == 2
    for row in rows:
        assert row["realized"] == pytest.approx(row["predicted"], abs=0.06)


def _scrambled_copy(tmp_path, after: pd.Timestamp):
    """BTCUSDT 1h/4h/1d sample files with every candle after ``after`` replaced by a random other one."""
    rng = np.random.default_rng(3)
    for interval in ("1h", "4h", "1d"):
        frame = pd.read_csv(SAMPLE_DIR / f"BTCUSDT-{interval}.csv.gz")
        late = (pd.to_datetime(frame["open_time"], unit="ms", utc=True) > after).to_numpy()
        cols = ["open", "high", "low", "close", "volume"]
        values = frame.loc[late, cols].to_numpy()
        frame.loc[late, cols] = values[rng.permutation(len(values))]
        with gzip.open(tmp_path / f"BTCUSDT-{interval}.csv.gz", "wt") as fh:
            frame.to_csv(fh, index=False)


def test_scrambling_the_future_changes_no_earlier_decision(tmp_path):
    start, end, cut = (
        datetime(2024, 3, 1, tzinfo=UTC),
        datetime(2024, 10, 1, tzinfo=UTC),
        pd.Timestamp("2024-08-01", tz="UTC"),
    )
    _scrambled_copy(tmp_path, cut)
    task = CandidateTask("BTCUSDT", "1h", start, end)
    runs = []
    for folder in (SAMPLE_DIR, tmp_path):
        market = history_market(Settings(market_data="sample", sample_data_dir=folder))
        cands = run_task(task, market, setup_of)
        runs.append((cands, [choose(cands, w, Costs()) for w in windows(start, end, 60, 15)]))
    (real, real_choices), (scrambled, scrambled_choices) = runs
    assert [c for c in real if c.time >= cut] != [c for c in scrambled if c.time >= cut]  # the scramble bites
    before = [i for i, ch in enumerate(real_choices) if ch.window.test_start <= cut]
    assert len(before) >= 5
    for i in before:
        a, b = real_choices[i], scrambled_choices[i]
        assert (a.variant, a.plan, a.kept, a.scores, a.probabilities) == (
            b.variant,
            b.plan,
            b.kept,
            b.scores,
            b.probabilities,
        )
