"""Flash crashes (issue 14 item 1): a level at or below zero is never a target or a stop, and the engine never raises
on real candles, whatever the price scale."""

import math

import pandas as pd
import pytest

import ict_signal_engine as eng
from engine.config import EngineConfig
from engine.planning import EntryPlan, NoTradeReason, stop_for, targets_for
from engine.signal_model import NoTrade, Signal
from engine.views import Level, OTEView, Snapshot, StructureView
from ict_modules.core import Direction, validate_candles
from market.timeframes import interval_timedelta
from tests.helpers import sample_candles, scaled


def snapshot(**kw):
    base = dict(
        bar=100,
        close=0.8,
        atr=0.05,
        structure=StructureView(None, ()),
        htf_bias=(),
        zones=(),
        pools_above=(),
        pools_below=(),
        htf_pools_above=(),
        htf_pools_below=(),
        sweeps=(),
        displacements=(),
        whales=(),
        entry_models=(),
        ote=None,
        dealing_range=None,
        swing_lows=(),
        swing_highs=(),
        session="",
        killzone=False,
    )
    return Snapshot(**{**base, **kw})


# a bearish leg from 1.0 down to a flash-crash wick at 0.4: its -1.0 extension is 0.4 - 0.6 = -0.2
CRASH_LEG = OTEView(Direction.BEARISH, 1.0, 0.4, 0.874, 0.772, (0.238, 0.028, -0.2))


def test_an_extension_below_zero_is_not_a_target():
    snap = snapshot(ote=CRASH_LEG)
    with pytest.raises(NoTradeReason, match="at or below zero"):
        # TP1 0.238, TP2 0.028; the -1.0 extension (-0.2) is absent and +1R below TP2 is below zero too
        targets_for(snap, Direction.BEARISH, 0.8, 0.9, EngineConfig())
    pool = Level("SSL", 0.6, 90)  # with a pool first, the valid extensions fill TP2 and TP3
    targets = targets_for(snapshot(ote=CRASH_LEG, pools_below=(pool,)), Direction.BEARISH, 0.8, 0.9, EngineConfig())
    assert [t for t, _ in targets] == [0.6, 0.238, 0.028]


def test_a_stop_below_zero_is_no_trade():
    snap = snapshot(close=1.0, atr=0.3)
    plan = EntryPlan(1.0, 0.05, 0.2, False, None, "ote")  # a long whose zone reaches down to the crash wick
    with pytest.raises(NoTradeReason, match="no valid stop"):
        stop_for(snap, Direction.BULLISH, plan, EngineConfig())


def test_signal_validation_failure_becomes_a_no_trade(monkeypatch):
    """The net under the planning rules: a level the Signal rejects is a NoTrade with the reason, never a raise."""
    frames = {"1h": sample_candles("BTCUSDT", "1h", tail=700)}
    prep = eng.prepare(frames, timeframe="1h")
    k = next(k for k in range(699, 400, -1) if isinstance(eng.signal_at(prep, k, symbol="BTCUSDT")[0], Signal))
    real = eng.targets_for

    def below_zero(snap, d, entry, sl, config):
        (t1, l1), (t2, l2), _ = real(snap, d, entry, sl, config)
        return (t1, l1), (t2, l2), (-d.sign * 0.03, "broken")

    monkeypatch.setattr(eng, "targets_for", below_zero)
    result, _ = eng.signal_at(prep, k, symbol="BTCUSDT")
    assert isinstance(result, NoTrade)
    assert result.reasons[0].startswith("invalid levels")


def crashed(frame, at, *, depth=0.35, keep=0.9):
    """Candle ``at`` wicks to ``depth`` x the previous close and closes at ``keep`` x it; the later candles are the
    real ones scaled by ``keep`` (a crash and a partial recovery with real structure after it)."""
    out = frame.copy()
    prev = out["close"].iat[at - 1]
    prices = ["open", "high", "low", "close"]
    out.iloc[at + 1 :, [out.columns.get_loc(c) for c in prices]] *= keep
    first_after = out["open"].iat[at + 1]
    out.iloc[at, [out.columns.get_loc(c) for c in prices]] = [prev, prev, prev * depth, first_after]
    return validate_candles(out)


def resampled(frame, rule):
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    return frame.resample(rule, label="left", closed="left").agg(agg).dropna()


class Market:
    def __init__(self, frames):
        self.frames = frames

    def klines(self, symbol, interval, limit=500, *, start=None, end=None):
        frame = self.frames[interval]
        frame = frame[frame.index + interval_timedelta(interval) <= end]
        return frame.iloc[-limit:] if limit else frame


def assert_valid(result):
    assert isinstance(result, Signal | NoTrade)
    if isinstance(result, Signal):
        levels = (result.entry, result.entry_low, result.entry_high, result.sl, result.tp1, result.tp2, result.tp3)
        assert all(math.isfinite(v) and v > 0 for v in levels)


@pytest.mark.parametrize("symbol", ["SOLUSDT", "ETHUSDT"])
@pytest.mark.parametrize("factor", [1.0, 1e-5])
def test_real_candles_through_a_flash_crash_never_raise(symbol, factor):
    entry = sample_candles(symbol, "1h")
    at = len(entry) - 120
    window = crashed(entry, at).iloc[at - 700 : at + 60]
    window = scaled(window, factor) if factor != 1.0 else window
    frames = {"1h": window, "4h": resampled(window, "4h"), "1d": resampled(window, "1D")}
    prep = eng.prepare(frames, timeframe="1h")
    crash = 700
    for k in range(crash - 2, len(window)):  # every bar from just before the crash to 60 bars after it
        assert_valid(eng.signal_at(prep, k, symbol=symbol)[0])
    market = Market(frames)
    for k in range(crash - 1, len(window), 6):  # the live path, as `signal --at` runs it
        end = window.index[k] + pd.Timedelta(hours=1)
        assert_valid(eng.analyze(market, symbol, "1h", end=end).result)
