"""Backtest statistics, the replay's analysis windows and the equity chart (no engine run needed)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pandas as pd
import pytest

from research import replay
from research.simulation import Progress
from research.stats import render_equity_png, stats_of
from tests.helpers import sample_candles


def test_stats_on_a_known_sequence():
    s = stats_of([2.0, -1.0, -1.0, 0.0, 3.0, -1.0], [True, False, False, True, True, False])
    assert (s.trades, s.wins, s.losses, s.breakeven) == (6, 2, 3, 1)
    assert s.win_rate == pytest.approx(2 / 6, abs=1e-4)
    assert s.average_r == pytest.approx(2 / 6, abs=1e-4)
    assert s.expectancy_r == pytest.approx(s.average_r)
    assert s.average_win_r == 2.5 and s.average_loss_r == -1.0
    assert s.profit_factor == pytest.approx(5 / 3, abs=1e-4)
    assert s.total_r == 2.0
    # equity 0, 2, 1, 0, 0, 3, 2: the deepest fall from a peak is 2 -> 0
    assert s.max_drawdown_r == 2.0
    assert s.tp1_rate == 0.5


def test_stats_edge_cases():
    empty = stats_of([])
    assert empty.trades == 0 and empty.win_rate is None and empty.max_drawdown_r == 0.0
    no_losses = stats_of([1.5, 2.0])
    assert no_losses.profit_factor is None and no_losses.max_drawdown_r == 0.0
    only_losses = stats_of([-1.0, -1.0, -1.0])
    assert only_losses.max_drawdown_r == 3.0 and only_losses.profit_factor == 0.0


def test_the_replay_reads_the_live_windows_with_one_detector_run_per_block(monkeypatch):
    """Stubbed engine: each bar asked is read from a window starting at a 250-candle boundary 500-749 candles back,
    ending with that bar (higher timeframes start at their own boundary; ``signal_at`` cuts them at the bar's close);
    the detectors run once per block, not once per bar."""
    h1 = sample_candles("BTCUSDT", "1h").iloc[:1400]
    h4 = sample_candles("BTCUSDT", "4h")
    h4 = h4[(h4.index >= h1.index[0] - pd.Timedelta(days=30)) & (h4.index <= h1.index[-1])]
    runs = []
    monkeypatch.setattr(replay.engine, "prepare", lambda windows, **_: runs.append(windows) or windows)
    monkeypatch.setattr(replay.engine, "signal_at", lambda prep, bar, **_: (SimpleNamespace(prep=prep, bar=bar), 0))
    cursor = replay.EngineCursor({"1h": h1, "4h": h4}, symbol="BTCUSDT", timeframe="1h")
    asked = range(760, 1400, 3)
    for i in asked:
        seen = cursor.result(i)
        window = seen.prep["1h"].iloc[: seen.bar + 1]
        number = window.index[0].value // 3_600_000_000_000
        assert window.index[-1] == h1.index[i] and 500 <= len(window) <= 749 and number % 250 == 0
        first4h = seen.prep["4h"].index[0]  # its own block boundary, or the first 4h candle loaded
        assert first4h == h4.index[0] or (first4h.value // (4 * 3_600_000_000_000)) % 250 == 0
        assert cursor.close_time(i) == h1.index[i] + pd.Timedelta(hours=1)
    assert 3 <= len(runs) <= 6  # 640 bars: about 3 blocks (a 4h window start may split one), not 214 runs


def test_progress_bar_writes_only_when_enabled():
    out = io.StringIO()
    Progress(10, "x", stream=out, enabled=False).update(5)
    assert out.getvalue() == ""
    Progress(10, "x", stream=out).update(5)  # StringIO is not a terminal: a plain line, no bar
    assert out.getvalue() == "x: 5/10 bars (50%), 0 s\n"
    out = io.StringIO()
    bar = Progress(10, "BTCUSDT 1h", stream=out, enabled=True)
    bar.update(5)
    bar.close()
    assert "BTCUSDT 1h" in out.getvalue() and "100.0%" in out.getvalue()


def test_equity_png():
    times = pd.date_range("2025-01-01", periods=4, freq="D", tz="UTC").to_pydatetime()
    png = render_equity_png(times, [1.0, -1.0, 2.0, -1.0], "test")
    assert png.startswith(b"\x89PNG")
    assert render_equity_png([], [], "empty").startswith(b"\x89PNG")
