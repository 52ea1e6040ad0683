"""ATR and column arrays once per frame (issue 12 item 3): the engine's linear-filter ATR equals ``core.atr`` bit
for bit, and the detectors read it and the frame's column arrays instead of extracting their own."""

import numpy as np
import pandas as pd
import pytest

import ict_signal_engine as eng
from engine.indicators import wilder_atr
from ict_modules import core
from ict_modules.breaker_block_detector import detect_breaker_blocks
from ict_modules.core import ohlcv_arrays
from ict_modules.displacement_detector import detect_displacement
from ict_modules.entry_models import detect_entry_models
from ict_modules.fvg_detector import detect_fvgs
from ict_modules.ict_whale_detector import detect_whale_blocks
from ict_modules.ilp_detector import detect_internal_liquidity
from ict_modules.liquidity_map import detect_liquidity
from ict_modules.market_structure import detect_market_structure
from ict_modules.order_block_detector import detect_order_blocks
from ict_modules.ote_calculator import detect_ote
from ict_modules.premium_discount import detect_dealing_ranges
from ict_modules.session_analyzer import detect_sessions
from ict_modules.sibi_ssib_detector import detect_sibi_ssib
from ict_modules.swing_points import detect_swing_points
from tests.helpers import sample_candles, scaled

SERIES = [("BTCUSDT", "1h"), ("BTCUSDT", "1d"), ("BTCUSDT", "1m"), ("ETHUSDT", "4h"), ("ETHUSDT", "5m")]
SERIES += [("SOLUSDT", "1h")]


def hlc(frame):
    return tuple(frame[k].to_numpy(dtype=np.float64) for k in ("high", "low", "close"))


@pytest.mark.parametrize(("symbol", "tf"), SERIES)
def test_filter_atr_is_bit_identical_on_real_candles(symbol, tf):
    frame = sample_candles(symbol, tf)
    for candles in (frame, scaled(frame, 1e-6), frame.iloc[:700], frame.iloc[:15], frame.iloc[:14], frame.iloc[:3]):
        h, lo, c = hlc(candles)
        assert np.array_equal(wilder_atr(h, lo, c, length=14), core.atr(h, lo, c, length=14))


def test_flat_true_ranges_stay_bit_identical():
    for tr in (0.3, 2.0, 1e-7, 123.456):
        h, lo, c = np.full(60, 10 + tr), np.full(60, 10.0), np.full(60, 10 + tr / 2)
        assert np.array_equal(wilder_atr(h, lo, c), core.atr(h, lo, c))


@pytest.mark.parametrize(
    "detect",
    [
        detect_displacement,
        detect_fvgs,
        detect_whale_blocks,
        detect_internal_liquidity,
        detect_liquidity,
        detect_market_structure,
        detect_ote,
        detect_sibi_ssib,
    ],
)
def test_a_given_atr_gives_the_same_objects(detect):
    frame = sample_candles("ETHUSDT", "4h", tail=1500)
    given = wilder_atr(*hlc(frame))
    assert detect(frame, atr_values=given) == detect(frame)


@pytest.mark.parametrize(
    "detect",
    [
        detect_breaker_blocks,
        detect_displacement,
        detect_entry_models,
        detect_fvgs,
        detect_whale_blocks,
        detect_internal_liquidity,
        detect_liquidity,
        detect_market_structure,
        detect_order_blocks,
        detect_ote,
        detect_dealing_ranges,
        detect_sibi_ssib,
        detect_swing_points,
    ],
)
def test_given_column_arrays_give_the_same_objects(detect):
    frame = sample_candles("BTCUSDT", "1h", tail=1500)
    assert detect(frame, arrays=ohlcv_arrays(frame)) == detect(frame)


def test_given_column_arrays_give_the_same_sessions():
    frame = sample_candles("BTCUSDT", "1h", tail=800)
    a, b = detect_sessions(frame, arrays=ohlcv_arrays(frame)), detect_sessions(frame)
    assert np.array_equal(a.codes, b.codes) and a.ranges == b.ranges


def test_prepare_reads_each_column_once_per_frame(monkeypatch):
    """The detectors read the column arrays prepare extracted (before: 132 column look-ups per analysis)."""
    frames = {tf: sample_candles("BTCUSDT", tf, tail=700) for tf in ("1h", "4h", "1d")}
    looked_up = []
    real = pd.DataFrame.__getitem__
    monkeypatch.setattr(pd.DataFrame, "__getitem__", lambda self, key: looked_up.append(key) or real(self, key))
    prep = eng.prepare(frames, timeframe="1h")
    assert prep.unavailable == ()
    assert len(looked_up) == 3 * 5  # open, high, low, close, volume of each frame


def test_prepare_computes_no_atr_in_the_detectors(monkeypatch):
    """Every detector of the registry reads the frame's ATR from prepare (before: 20 ATR runs per analysis)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a detector recomputed the ATR")

    monkeypatch.setattr(core, "true_range", forbidden)  # what core.atr runs first; the engine's filter has its own
    frames = {tf: sample_candles("BTCUSDT", tf, tail=700) for tf in ("1h", "4h", "1d")}
    prep = eng.prepare(frames, timeframe="1h")
    assert prep.unavailable == ()
