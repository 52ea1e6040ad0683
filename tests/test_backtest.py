"""Backtest: equality with the slow bar-by-bar analysis, no lookahead, outcome resolution, journal, CLI."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

import ml_engine
from engine.signal_model import Signal, TradeDirection
from ict_signal_engine import analyze
from market.sample_source import SampleSource
from research import backtest, replay
from research.backtest import run_backtest
from research.replay import CandleArrays, resolve_position
from research.simulation import backtest_symbol
from research.stats import stats_of
from store.journal import Journal
from tests.helpers import make_candles
from tracking.costs import Costs
from tracking.state import Position, PositionState, apply_candle


def gross_position(signal, *args, **kwargs):
    """A position without costs: these tests check the mechanics in gross R (costs: test_costs.py)."""
    return Position.from_signal(signal, *args, costs=Costs.none(), **kwargs)


ROOT = Path(__file__).resolve().parent.parent
NOW = pd.Timestamp("2026-01-01", tz="UTC")
# inside the bundled 1m BTCUSDT data (2025-05-31 .. 2025-07-23): outcomes resolve on 1m candles
START = pd.Timestamp("2025-06-02 00:00", tz="UTC")
END = pd.Timestamp("2025-06-06 00:00", tz="UTC")


@pytest.fixture(scope="module")
def market():
    return SampleSource(ROOT / "data" / "sample", clock=lambda: NOW)


@pytest.fixture(scope="module")
def run(market):
    return backtest_symbol(market, "BTCUSDT", "1h", start=START, end=END, show_progress=False)


# --- the fast path equals the slow bar-by-bar way ------------------------------------------------------------


def slow_backtest(market, symbol: str, timeframe: str, start, end):
    """Reference: at every bar close T, first feed the open position the 1m candles closed by T (fetched from the
    market one bar at a time), then, when flat, run the live ``analyze`` as of T."""
    trades, position = [], None
    step = pd.Timedelta(timeframe)
    t = start
    while t <= end:
        if position is not None and position.is_active:
            candles = market.klines(symbol, "1m", None, start=t - step, end=t)
            for ts, row in candles.iterrows():
                position, _ = apply_candle(
                    position, ts.to_pydatetime(), row.open, row.high, row.low, row.close,
                    close_time=(ts + pd.Timedelta("1min")).to_pydatetime(),
                )  # fmt: skip
                if not position.is_active:
                    break
            trades[-1] = (trades[-1][0], position)
        if position is None or not position.is_active:
            result = analyze(market, symbol, timeframe, end=t).result
            if result.direction is not None:
                position = Position.from_signal(result)
                trades.append((result, position))
        t += step
    return trades


def test_fast_path_equals_the_slow_bar_by_bar_way(market, run):
    slow = slow_backtest(market, "BTCUSDT", "1h", START, END)
    assert len(run.trades) >= 3, "the sample period should produce signals"
    assert len(slow) == len(run.trades)
    for trade, (signal, position) in zip(run.trades, slow, strict=True):
        assert trade.signal.to_json() == signal.to_json()
        if position.is_active:  # the slow loop stops at END; the fast one may resolve beyond it
            assert trade is run.trades[-1]
            continue
        assert trade.position.outcome == position.outcome
        assert trade.resolution == ("1m",)


def test_evaluated_bars_equal_the_live_analysis(market, run):
    """Every bar the engine ran on (not only the signals) equals ``analyze`` at that bar's close."""
    frames, _, missing = replay.load_frames(market, "BTCUSDT", "1h", start=START, end=END, lookback=500)
    causal = replay.EngineCursor(frames, symbol="BTCUSDT", timeframe="1h", absent=missing)  # the live windows
    first = int(frames["1h"].index.searchsorted(START - pd.Timedelta("1h")))
    for i in range(first, first + 6):
        fast = causal.result(i)
        slow = analyze(market, "BTCUSDT", "1h", end=causal.close_time(i)).result
        assert fast.to_json() == slow.to_json()


def test_one_position_at_a_time(run):
    for before, after in zip(run.trades, run.trades[1:], strict=False):
        assert before.closed
        assert after.signal.time >= before.position.last_checked


# --- no lookahead ----------------------------------------------------------------------------------------------


def test_appending_candles_never_changes_earlier_decisions(market, run):
    shorter = backtest_symbol(
        market, "BTCUSDT", "1h", start=START, end=END - pd.Timedelta(hours=30), show_progress=False
    )
    assert 0 < len(shorter.trades) < len(run.trades) or len(shorter.trades) == len(run.trades)
    for short, full in zip(shorter.trades, run.trades, strict=False):
        assert short.signal.to_json() == full.signal.to_json()
        if short.closed:
            assert short.position.outcome == full.position.outcome
    assert shorter.evaluated <= run.evaluated


# --- outcome resolution on hand-built paths --------------------------------------------------------------------


def hand_signal(*, entry=100.0, low=None, sl=95.0, tps=(110.0, 120.0, 130.0), short=False) -> Signal:
    s = -1 if short else 1
    return Signal(
        symbol="TESTUSDT",
        timeframe="1h",
        direction=TradeDirection.SHORT if short else TradeDirection.LONG,
        entry=entry,
        entry_low=low if low is not None else entry,
        entry_high=entry if not short or low is None else entry + (entry - low),
        sl=entry - s * (entry - sl) if not short else entry + (entry - sl),
        tp1=entry + s * (tps[0] - entry),
        tp2=entry + s * (tps[1] - entry),
        tp3=entry + s * (tps[2] - entry),
        time=datetime(2024, 1, 1, tzinfo=UTC),
        rule_confidence=50.0,
    )


def arrays(rows, *, freq="1h", start="2024-01-01 00:00") -> CandleArrays:
    return CandleArrays.from_frame(make_candles(rows, start=start, freq=freq), freq.replace("min", "m"))


def test_tp1_then_back_to_break_even():
    pos, used = resolve_position(
        gross_position(hand_signal()),
        [arrays([(100, 104, 99, 103), (103, 111, 102, 108), (108, 109, 99.5, 100)])],
    )
    out = pos.outcome
    assert (out.reason, out.highest_target, out.r_multiple) == (PositionState.BE, 1, 0.0)
    assert ml_engine.label_of({"outcome": out.to_json()}) == (1, 0.0)
    assert used == ("1h",)


def test_stop_counts_first_when_one_candle_touches_both():
    pos, _ = resolve_position(gross_position(hand_signal()), [arrays([(100, 131, 94, 100)])])
    assert pos.outcome.reason is PositionState.SL and pos.outcome.r_multiple == -1.0
    assert ml_engine.label_of({"outcome": pos.outcome.to_json()}) == (0, -1.0)


def test_short_runs_to_tp3():
    sig = hand_signal(short=True)
    pos, _ = resolve_position(gross_position(sig), [arrays([(100, 101, 89, 90), (90, 91, 69, 70)])])
    assert pos.outcome.reason is PositionState.TP3 and pos.outcome.r_multiple == pytest.approx(6.0)


def test_finest_candles_then_the_entry_timeframe_where_they_end():
    """1m candles cover the first two minutes only; the 1h candles continue from the next hour."""
    fine = arrays([(100, 101, 99, 100), (100, 102, 99, 101)], freq="1min")
    coarse = arrays([(100, 103, 98, 101), (101, 111, 100, 109), (109, 121, 108, 115), (115, 116, 94, 95)])
    pos, used = resolve_position(gross_position(hand_signal()), [fine, coarse])
    assert used == ("1m", "1h")
    # the 00:00 hour opened before the minutes ended (00:02): the hours continue at 01:00 (TP1), 02:00 (TP2),
    # 03:00 (back to the break-even stop)
    assert pos.outcome.reason is PositionState.BE and pos.outcome.highest_target == 2


def test_pending_limit_entry_expires_unfilled():
    sig = hand_signal(entry=100.0, low=99.0)
    pos = gross_position(sig)
    assert pos.state is PositionState.PENDING
    rows = [(102, 104, 101, 103)] * 12
    pos, _ = resolve_position(pos, [arrays(rows)])
    assert pos.outcome.reason is PositionState.EXPIRED and pos.outcome.fill_price is None
    assert ml_engine.label_of({"outcome": pos.outcome.to_json()}) is None


def test_position_still_open_when_the_data_ends():
    pos, _ = resolve_position(gross_position(hand_signal()), [arrays([(100, 104, 99, 103)])])
    assert pos.is_active and pos.outcome is None


# --- journal, summary, CLI --------------------------------------------------------------------------------------


def test_journal_in_the_live_format_feeds_the_ml(tmp_path, market):
    result = run_backtest(
        market,
        ["BTCUSDT"],
        "1h",
        start=START,
        end=START + pd.Timedelta(hours=40),
        journal_path=tmp_path / "bt.json",
        equity_path=tmp_path / "eq.png",
        show_progress=False,
    )
    book = Journal(tmp_path / "bt.json")
    records = book.records()
    assert [r["id"] for r in records] == [t.signal.id for t in result.trades]
    closed = [r for r in records if r["outcome"]]
    assert len(closed) == sum(t.closed for t in result.trades)
    assert book.stats().overall.closed == result.stats().trades
    assert len(ml_engine.extract_samples(records)) == sum(
        t.traded and (t.outcome.highest_target >= 1 or t.outcome.reason is PositionState.SL) for t in result.trades
    )
    assert (tmp_path / "eq.png").read_bytes().startswith(b"\x89PNG")
    summary = result.to_json()
    json.dumps(summary, allow_nan=False)
    assert summary["signals"] == len(result.trades)
    assert set(summary["overall"]) >= {"win_rate", "average_r", "profit_factor", "expectancy_r", "max_drawdown_r"}


def _env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM", "BINANCE", "SAMPLE"))}
    env.update(MARKET_DATA="sample", BOT_DATA_DIR=str(tmp_path), SAMPLE_START="2026-01-01T00:00:00Z")
    env.update(SAMPLE_SPEED="0")
    return env


VERDICT_KEYS = {"setup", "probability", "evidence", "broadcast"}  # the gate's verdict, added by ``signal --json``


def signal_of(stdout: str) -> dict:
    """``signal --json``'s signal: its one object without the gate's verdict keys (not part of the signal)."""
    data = json.loads(stdout)
    assert set(data) >= VERDICT_KEYS
    return {k: v for k, v in data.items() if k not in VERDICT_KEYS}


def test_cli_json_is_one_object_and_signals_equal_the_signal_cli(tmp_path):
    """Both commands as a user runs them, each in its own process (own hash seed)."""
    env = _env(tmp_path) | {"MIN_CONFIDENCE": "0"}  # every signal: each is compared with the signal CLI
    out = subprocess.run(
        [sys.executable, "bot.py", "backtest", "BTCUSDT", "1h", "--start", "2025-06-02", "--end", "2025-06-05",
         "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)  # exactly one JSON object on stdout
    assert summary["signals"] >= 2 and summary["journal"] and summary["equity_png"]
    records = Journal(tmp_path / "backtest_journal.json").records()
    assert len(records) == summary["signals"] and (tmp_path / "backtest_equity.png").exists()
    for record in (records[0], records[-1]):
        sig = subprocess.run(
            [sys.executable, "bot.py", "signal", "BTCUSDT", "1h", "--at", record["signal"]["time"], "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert sig.returncode == 0, sig.stderr
        assert signal_of(sig.stdout) == record["signal"]


@pytest.mark.parametrize(
    ("symbol", "tf", "period", "flags"),
    [
        ("BTCUSDT", "1h", ("2025-06-02", "2025-06-23"), ["--fast"]),  # --fast: the same exact mode (an alias)
        ("ETHUSDT", "4h", ("2025-07-01", "2025-12-01"), []),
    ],
)
def test_backtest_trades_equal_the_signal_cli_at_random_signal_bars(tmp_path, symbol, tf, period, flags):
    """Seeded random trades of two symbols and timeframes, each against ``signal --at`` its time (subprocesses)."""
    env = _env(tmp_path) | {"MIN_CONFIDENCE": "0"}  # every signal is taken
    journal = tmp_path / "bt.json"
    argv = ["backtest", symbol, tf, "--start", period[0], "--end", period[1], "--journal", str(journal), "--json"]
    out = subprocess.run(
        [sys.executable, "bot.py", *argv, *flags],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    trades = {t["time"]: t for t in json.loads(out.stdout)["trades"]}
    records = Journal(journal).records()
    assert len(records) >= 8
    for record in random.Random(f"{symbol} {tf}").sample(records, 3):
        sig = subprocess.run(
            [sys.executable, "bot.py", "signal", symbol, tf, "--at", record["signal"]["time"], "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert sig.returncode == 0, sig.stderr
        live = signal_of(sig.stdout)
        assert live == record["signal"]
        trade = trades.get(record["signal"]["time"])  # None: still open at the end of the period
        if trade is not None:
            assert (trade["direction"], trade["entry"], trade["sl"]) == (live["direction"], live["entry"], live["sl"])


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["backtest", "BTCUSDT", "7x"], "unknown timeframe"),
        (["backtest", "NOPEUSDT", "1h"], "Unknown symbol"),
        (["backtest", "BTCUSDT", "1h", "--start", "yesterdayish"], "not a date"),
        (["backtest", "BTCUSDT", "1h", "--start", "2025-02-01", "--end", "2025-01-01"], "before --end"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, monkeypatch, capsys, argv, fragment):
    import bot

    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert bot.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err


def test_expected_next_bar_after_close():
    """The next candidate bar is the first whose close is at or after the closing candle's close."""
    close = datetime(2024, 1, 1, 10, 37, tzinfo=UTC)
    closes = pd.date_range("2024-01-01 01:00", periods=24, freq="1h", tz="UTC").as_unit("ns").asi8
    nxt = int(closes.searchsorted(replay._ns(close), side="left"))
    assert pd.Timestamp(closes[nxt], tz="UTC") == pd.Timestamp("2024-01-01 11:00", tz="UTC")
    assert replay._dt(replay._ns(close)) == close and close - timedelta(0) == close


# --- one mode: the block-aligned windows, one detector run per block -----------------------------------------


def test_the_cursor_equals_analyses_over_at_every_bar_it_is_asked(market):
    """On demand (sparse bars, as the replay asks them) = ``analyses_over`` over every bar, across block edges."""
    frames, _, missing = replay.load_frames(market, "ETHUSDT", "4h", start=START, end=END, lookback=1000)
    bars = range(len(frames["4h"]) - 600, len(frames["4h"]))  # 600 bars: at least two block boundaries
    every = dict(replay.engine.analyses_over(frames, symbol="ETHUSDT", timeframe="4h", bars=bars, absent=missing))
    cursor = replay.EngineCursor(frames, symbol="ETHUSDT", timeframe="4h", absent=missing)
    asked = [i for i in bars if i % 7 in (0, 3)]
    assert all(cursor.result(i).to_json() == every[i].to_json() for i in asked)
    assert sum(every[i].direction is not None for i in asked) > 0


def test_fast_is_an_alias_of_the_one_mode():
    assert backtest.Mode("fast") is backtest.Mode.EXACT is backtest.Mode.FAST
    with pytest.raises(ValueError):
        backtest.Mode("sloppy")


@pytest.mark.parametrize(
    ("symbol", "tf", "start", "days"),
    [("BTCUSDT", "1h", START, 45), ("ETHUSDT", "4h", pd.Timestamp("2025-07-01", tz="UTC"), 150)],
)
def test_later_start_gives_identical_trades_once_both_replays_are_flat_at_one_bar(market, symbol, tf, start, days):
    """Two backtests starting three weeks apart: from the first bar after the later start where both were flat,
    they take the same trades (the windows do not depend on where the loaded data starts; the old fast mode,
    detectors over all the loaded history, differed here on ETHUSDT 4h)."""
    kwargs = {"end": start + pd.Timedelta(days=days), "show_progress": False}
    early = backtest_symbol(market, symbol, tf, start=start, **kwargs)
    late = backtest_symbol(market, symbol, tf, start=start + pd.Timedelta(days=21), **kwargs)

    def busy(run, t):  # a position of ``run`` was pending or open at bar close t (no new signal taken)
        return any(x.signal.time < t and (x.position.is_active or t < x.position.last_checked) for x in run.trades)

    closes = pd.date_range(late.first_bar_time, late.last_bar_time, freq=tf)
    join = next(t for t in closes if not busy(early, t) and not busy(late, t))
    after = [[x for x in run.trades if x.signal.time >= join] for run in (early, late)]
    assert len(after[0]) >= 5
    assert [x.signal.to_json() for x in after[0]] == [x.signal.to_json() for x in after[1]]
    assert [x.position for x in after[0]] == [x.position for x in after[1]]


def test_fast_mode_never_looks_ahead(market):
    kwargs = {"start": START, "show_progress": False, "mode": backtest.Mode.FAST}
    full = backtest_symbol(market, "BTCUSDT", "1h", end=START + pd.Timedelta(days=20), **kwargs)
    short = backtest_symbol(market, "BTCUSDT", "1h", end=START + pd.Timedelta(days=12), **kwargs)
    assert len(full.trades) > len(short.trades) >= 3
    for a, b in zip(short.trades, full.trades, strict=False):
        assert a.signal.to_json() == b.signal.to_json()
        if a.closed:
            assert a.position == b.position


def test_finest_candles_then_the_next_finest_then_the_entry_timeframe():
    """1m for two hours, then 1h where the minutes end, then the 4h entry timeframe where the hours end."""
    flat = [(100.0, 100.5, 99.5, 100.0)]
    minutes = make_candles(flat * 120, start="2024-01-01 04:00", freq="1min")
    hours = make_candles(flat * 8 + [(100, 111, 99.8, 110)], start="2024-01-01 00:00", freq="1h")
    fours = make_candles(flat * 3 + [(101, 121, 100.5, 120), (120, 131, 119, 130)], start="2024-01-01 00:00", freq="4h")
    source = SampleSource(
        frames={("TESTUSDT", "1m"): minutes, ("TESTUSDT", "1h"): hours, ("TESTUSDT", "4h"): fours},
        clock=lambda: pd.Timestamp("2024-02-01", tz="UTC"),
    )
    sig = hand_signal()  # a market entry at 100, stop 95, targets 110/120/130, at the close of the 00:00 4h candle
    sig = Signal(
        **{**{f: getattr(sig, f) for f in sig.__slots__ if f != "id"}, "time": datetime(2024, 1, 1, 4, tzinfo=UTC)}
    )
    entry = CandleArrays.from_frame(fours, "4h")
    chunks = list(replay._finest_chunks(source, "TESTUSDT", "4h", sig, entry, end=pd.Timestamp("2024-02-01", tz="UTC")))
    assert [c.interval for c in chunks] == ["1m", "1h", "4h"]
    pos, used = resolve_position(gross_position(sig), chunks)
    assert used == ("1m", "1h", "4h")
    # 1h candle at 08:00 hits TP1 (110); the 4h candle at 12:00 hits TP2 (120); at 16:00 TP3 (130)
    assert pos.outcome.reason is PositionState.TP3 and pos.outcome.highest_target == 3


# --- what the bot would have sent, net of costs; one bad bar never ends the run ----------------------------------


@pytest.fixture(scope="module")
def all_signals(market):
    """Every signal, default costs (the ``run`` fixture's replay)."""
    return run_backtest(market, ["BTCUSDT"], "1h", start=START, end=END, show_progress=False)


def test_only_signals_at_or_above_the_threshold_are_taken(market, all_signals):
    confidences = sorted(t.signal.confidence for t in all_signals.trades)
    assert len(confidences) >= 3
    threshold = confidences[len(confidences) // 2]
    gated = run_backtest(market, ["BTCUSDT"], "1h", start=START, end=END, show_progress=False, min_confidence=threshold)
    assert gated.trades and all(t.signal.confidence >= threshold for t in gated.trades)
    assert gated.runs[0].below_threshold >= 1  # some signals under it were seen and not taken
    assert gated.to_json()["min_confidence"] == threshold and all_signals.to_json()["min_confidence"] is None


def test_zero_costs_give_gross_figures_and_default_costs_lower_every_trade(market, all_signals):
    free = run_backtest(market, ["BTCUSDT"], "1h", start=START, end=END, show_progress=False, costs=Costs.none())
    assert free.to_json()["costs"] == {"fee_pct": 0.0, "slippage_pct": 0.0}
    traded = [t for t in free.to_json()["trades"] if t["r_net"] is not None]
    assert traded and all(t["r_net"] == t["r_gross"] for t in traded)
    costly = [t for t in all_signals.to_json()["trades"] if t["r_net"] is not None]
    assert costly and all(t["r_net"] < t["r_gross"] for t in costly)
    assert [t["r_gross"] for t in costly] == [t["r_gross"] for t in traded]  # costs change no decision


def test_a_bar_that_raises_is_reported_and_the_run_goes_on(market, run, monkeypatch):
    from research import simulation

    bad = next(t.bar for t in run.trades)  # a bar that produced a signal
    original = simulation._Replay.evaluate

    def flaky(self, i):
        if i == bad:
            raise ValueError("signal tp3 must be a positive finite number, got -0.0293")
        return original(self, i)

    monkeypatch.setattr(simulation._Replay, "evaluate", flaky)
    again = backtest_symbol(market, "BTCUSDT", "1h", start=START, end=END, show_progress=False)
    assert [(e.bar, e.reason) for e in again.errors] == [
        (bad, "ValueError: signal tp3 must be a positive finite number, got -0.0293")
    ]
    assert again.errors[0].time == run.trades[0].signal.time  # the close of the bar that failed
    assert again.trades and all(t.bar != bad for t in again.trades)
    assert again.trades[-1].bar > bad  # the replay went on past the failing bar
    report = run_backtest(market, ["BTCUSDT"], "1h", start=START, end=END, show_progress=False)
    assert report.to_json()["errors"][0]["bar"] == bad and "Skipped BTCUSDT bar" in report.text()


def test_summary_stats_are_recomputable_from_the_json_trades(all_signals):
    data = json.loads(json.dumps(all_signals.to_json(), allow_nan=False))
    trades = data["trades"]
    filled = [t for t in trades if t["r_net"] is not None]
    expired = [t for t in trades if t["r_net"] is None]
    assert filled and (len(filled), len(expired)) == (data["closed"], data["expired"])
    assert all(t["r_gross"] is None and t["fill"] is None for t in expired)
    again = stats_of([t["r_net"] for t in filled], [t["tp1_hit"] for t in filled])
    assert asdict(again) == data["overall"]
    assert asdict(stats_of([t["r_gross"] for t in filled], [t["tp1_hit"] for t in filled])) == data["overall_gross"]
    keys = {"symbol", "timeframe", "time", "direction", "setup", "entry", "fill", "sl", "exit", "exit_time"}
    keys |= {"exit_reason", "r_gross", "r_net", "confidence", "probability"}
    assert all(keys <= set(t) for t in trades)
    first = filled[0]
    assert first["time"].endswith("Z") and first["setup"].endswith(f"/{first['direction']}/1h")


def _args(**over):
    base = dict(symbol="BTCUSDT", timeframe="1h", start="2025-06-02", end="2025-06-04", journal=None, equity=None)
    base.update(json=True, fast=True, fee=None, slippage=None, all_signals=False)
    base.update(over)
    return argparse.Namespace(**base)


def test_cli_costs_and_threshold_flags(tmp_path, capsys):
    from config import Settings

    settings = Settings.from_env(_env(tmp_path) | {"MIN_CONFIDENCE": "0", "FEE_PCT": "0.05"}, dotenv=None)
    assert backtest.main(_args(), settings) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["costs"] == {"fee_pct": 0.05, "slippage_pct": 0.02} and data["min_confidence"] == 0
    assert backtest.main(_args(fee=0, slippage=0, all_signals=True), settings) == 0
    free = json.loads(capsys.readouterr().out)
    assert free["costs"] == {"fee_pct": 0.0, "slippage_pct": 0.0} and free["min_confidence"] is None
    assert free["overall"] == free["overall_gross"]
    assert backtest.main(_args(fee=-1), settings) == 2
    assert "--fee" in capsys.readouterr().err
