import numpy as np
import pandas as pd
import pytest

from ict_modules.core import Direction, known_at
from ict_modules.key_levels import (
    GapKind,
    KeyLevels,
    PeriodKind,
    detect_key_levels,
    period_opens,
    previous_levels,
)
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled

FLAT = (100.0, 101.0, 99.0, 100.0)


def hourly(rows, start="2024-01-01 00:00"):  # 2024-01-01 is a Monday
    return make_candles(rows, start=start, freq="1h")


def three_days():
    rows = [FLAT] * 72
    rows[0] = (100.5, 101.0, 99.0, 100.0)  # day 1 open 100.5
    rows[5] = (100.0, 110.0, 99.5, 100.0)  # day 1 high 110 at bar 5
    rows[10] = (100.0, 100.5, 90.0, 100.0)  # day 1 low 90 at bar 10
    rows[30] = (100.0, 111.0, 99.0, 100.0)  # day 2 takes the day 1 high
    rows[60] = (100.0, 101.0, 89.0, 100.0)  # day 3 takes the day 1 low
    return hourly(rows)


def test_previous_day_levels_confirmation_and_taken():
    kl = detect_key_levels(three_days(), periods=[PeriodKind.DAY])
    days = kl.levels
    assert [(d.start, d.end, d.confirmed_at) for d in days] == [(0, 23, 23), (24, 47, 47), (48, 71, 71)]
    d1 = days[0]
    assert d1.opened == pd.Timestamp("2024-01-01", tz="UTC")
    assert (d1.open, d1.high, d1.low, d1.close) == (100.5, 110.0, 90.0, 100.0)
    assert (d1.high_index, d1.low_index) == (5, 10)
    assert (d1.high_taken_at, d1.low_taken_at) == (30, 60)
    assert (days[1].high, days[1].high_taken_at) == (111.0, None)
    assert previous_levels(kl, 22, "day") is None  # day 1 not over yet
    assert previous_levels(kl, 23, "day") is d1
    assert previous_levels(kl, 47, PeriodKind.DAY) is days[1]


def test_unfinished_period_is_not_reported():
    c = three_days().iloc[:71]  # the third day's last hour is missing: day 3 still running
    assert [d.end for d in detect_key_levels(c, periods=["day"]).levels] == [23, 47]


def test_weeks_start_monday_utc_and_months():
    daily = make_candles([FLAT] * 40, start="2024-01-01", freq="1D")  # Mon 1 Jan .. Fri 9 Feb
    kl = detect_key_levels(daily, periods=["week", "month"])
    weeks = [x for x in kl.levels if x.period is PeriodKind.WEEK]
    assert [(w.start, w.end, w.confirmed_at) for w in weeks] == [
        (0, 6, 6),
        (7, 13, 13),
        (14, 20, 20),
        (21, 27, 27),
        (28, 34, 34),
    ]
    assert {w.opened.day_of_week for w in weeks} == {0}
    (jan,) = [x for x in kl.levels if x.period is PeriodKind.MONTH]
    assert (jan.start, jan.end, jan.confirmed_at, jan.opened) == (0, 30, 30, pd.Timestamp("2024-01-01", tz="UTC"))
    # a week starting on a Wednesday in the data still has its period open on Monday
    mid = make_candles([FLAT] * 10, start="2024-01-03", freq="1D")
    (w,) = [x for x in detect_key_levels(mid, periods=["week"]).levels]
    assert (w.opened, w.start, w.end) == (pd.Timestamp("2024-01-01", tz="UTC"), 0, 4)


def test_data_gap_confirms_at_next_bar():
    c = three_days()
    gap = c.drop(c.index[20:26])  # day 1 ends at 19:00, the next bar is 02:00 of day 2
    (d1, *_) = detect_key_levels(gap, periods=["day"]).levels
    assert (d1.end, d1.confirmed_at) == (19, 20)


def gap_rows(prev_close: float, new_open: float):
    rows = [FLAT] * 48
    rows[23] = (100.0, max(101.0, prev_close), min(99.0, prev_close), prev_close)
    rows[24] = (new_open, max(new_open, 101.0) + 1, min(new_open, 99.0), new_open)
    return rows


def test_bullish_and_bearish_ndog():
    # Tuesday -> Wednesday: a day boundary, not a week boundary
    up = detect_key_levels(hourly(gap_rows(100.0, 102.0), start="2024-01-02"), periods=[]).gaps
    assert [(g.kind, g.direction, g.bottom, g.top, g.index, g.confirmed_at) for g in up] == [
        (GapKind.NDOG, Direction.BULLISH, 100.0, 102.0, 24, 24)
    ]
    assert up[0].ce == 101.0 and up[0].filled_at == 24  # the first bar's low 99 trades through the gap
    down = detect_key_levels(hourly(gap_rows(100.0, 98.0), start="2024-01-02"), periods=[]).gaps
    assert [(g.kind, g.direction, g.bottom, g.top) for g in down] == [(GapKind.NDOG, Direction.BEARISH, 98.0, 100.0)]
    assert down[0].filled_at == 24


def test_gap_fill_waits_for_price_and_nwog_on_monday():
    rows = gap_rows(100.0, 103.0)
    rows[24] = (103.0, 104.0, 102.5, 103.5)  # stays above the gap
    rows[25:] = [(103.5, 104.0, 102.0, 103.0)] * 23
    rows[30] = (103.0, 103.5, 99.5, 100.0)  # trades through 100: filled
    c = hourly(rows, start="2023-12-31")  # Sunday -> Monday 2024-01-01: day and week boundary
    gaps = detect_key_levels(c, periods=[]).gaps
    assert [(g.kind, g.direction, g.index, g.filled_at) for g in gaps] == [
        (GapKind.NDOG, Direction.BULLISH, 24, 30),
        (GapKind.NWOG, Direction.BULLISH, 24, 30),
    ]


def test_nothing_to_find():
    flat = hourly([FLAT] * 48, start="2024-01-02")
    kl = detect_key_levels(flat, periods=[])
    assert kl == KeyLevels((), ())  # open == previous close: no gap; no periods asked
    assert detect_key_levels(hourly([FLAT] * 20)).levels == ()  # no period completed
    assert detect_key_levels(flat.iloc[:0]) == KeyLevels((), ())
    tick = gap_rows(100.0, 100.001)  # a one-tick gap is below the default 0.01 ATR
    assert detect_key_levels(hourly(tick, start="2024-01-02")).gaps == ()
    assert len(detect_key_levels(hourly(tick, start="2024-01-02"), min_gap_atr=0).gaps) == 1


def test_period_opens():
    c = three_days()
    opens = period_opens(c, "day")
    assert opens[0] == opens[23] == 100.5 and opens[24] == opens[47] == 100.0
    assert np.all(period_opens(c, "week") == 100.5)


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal_on_real_candles(symbol, interval):
    candles = sample_candles(symbol, interval, tail=3000)
    full = detect_key_levels(candles, min_gap_atr=0)
    assert {x.period for x in full.levels} == set(PeriodKind)
    assert full.gaps
    for k in cut_points(len(candles)):
        part = detect_key_levels(candles.iloc[:k], min_gap_atr=0)
        assert list(part.levels) == known_at(full.levels, k - 1)
        assert list(part.gaps) == known_at(full.gaps, k - 1)


def test_scale_invariance():
    candles = sample_candles("SOLUSDT", "1h", tail=3000)
    a, b = detect_key_levels(candles, min_gap_atr=0), detect_key_levels(scaled(candles), min_gap_atr=0)

    def key(kl):
        return (
            [(x.period, x.start, x.end, x.high_index, x.low_index, x.high_taken_at, x.low_taken_at) for x in kl.levels],
            [(g.kind, g.direction, g.index, g.filled_at) for g in kl.gaps],
        )

    assert key(a) == key(b)
