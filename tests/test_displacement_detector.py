"""Displacement ties (issue 14 item 9): on tick-quantized prices a body of exactly 0.6 of the range is decided the
same way at every price scale."""

import pandas as pd
import pytest

from ict_modules.displacement_detector import detect_displacement, displacement_mask
from tests.helpers import make_candles

# PEPEUSDT 1h 2024-04-30 00:00 had a body of 21 ticks in a range of 35 (exactly 0.6). The quiet bars before it
# (5-tick ranges) keep the ATR small, so only the body/range ratio decides.
BASES = (107, 114, 121, 128, 135, 1000, 4321)  # tick levels where float rounding splits the tie across scales


def tick_candles(base: int, tick: float) -> pd.DataFrame:
    quiet = [(base, base + 3, base - 2, base + 1)] * 20
    tie = (base, base + 30, base - 5, base + 21)  # body 21 ticks, range 35 ticks
    rows = [tuple(v * tick for v in row) for row in [*quiet, tie]]
    return make_candles(rows)


@pytest.mark.parametrize("base", BASES)
def test_an_exact_tie_is_decided_the_same_at_every_scale(base):
    decisions = {tick: int(displacement_mask(tick_candles(base, tick))[-1]) for tick in (1.0, 1e-6, 1e-8)}
    assert set(decisions.values()) == {1}, decisions  # a tie reaches the ratio: bullish displacement
    assert len({len(detect_displacement(tick_candles(base, tick))) for tick in (1.0, 1e-6, 1e-8)}) == 1


def test_one_tick_short_of_the_ratio_is_not_a_displacement():
    for tick in (1.0, 1e-6, 1e-8):
        candles = tick_candles(1000, tick)
        candles.iloc[-1, candles.columns.get_loc("close")] = 1020 * tick  # body 20 of 35 ticks: 0.571
        assert displacement_mask(candles)[-1] == 0
