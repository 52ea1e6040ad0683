import numpy as np
import pandas as pd
import pytest

from ict_modules.core import known_at
from ict_modules.session_analyzer import Session, SessionRange, detect_sessions, session_of
from tests.helpers import CAUSALITY_SERIES, cut_points, make_candles, sample_candles, scaled


def hourly(start: str, hours: int, rows=None):
    return make_candles(rows or [(100.0, 101.0, 99.0, 100.0)] * hours, start=start, freq="1h")


def utc_hours(candles, analysis, session: Session, date: str) -> list[int]:
    return [
        t.hour for t, s in zip(candles.index, analysis.labels(), strict=True) if s is session and str(t.date()) == date
    ]


def test_winter_and_summer_killzones_in_utc():
    winter = hourly("2024-01-15 00:00", 24)  # EST = UTC-5
    a = detect_sessions(winter)
    assert utc_hours(winter, a, Session.ASIA, "2024-01-15") == [1, 2, 3, 4]  # 20:00-24:00 NY of Jan 14
    assert utc_hours(winter, a, Session.LONDON, "2024-01-15") == [7, 8, 9]
    assert utc_hours(winter, a, Session.NY_AM, "2024-01-15") == [12, 13, 14]
    assert utc_hours(winter, a, Session.LONDON_CLOSE, "2024-01-15") == [15, 16]
    assert utc_hours(winter, a, Session.NY_PM, "2024-01-15") == [19, 20]  # 18:00 UTC opens at 13:00 NY
    summer = hourly("2024-07-15 00:00", 24)  # EDT = UTC-4
    b = detect_sessions(summer)
    assert utc_hours(summer, b, Session.ASIA, "2024-07-15") == [0, 1, 2, 3]
    assert utc_hours(summer, b, Session.LONDON, "2024-07-15") == [6, 7, 8]
    assert utc_hours(summer, b, Session.NY_AM, "2024-07-15") == [11, 12, 13]
    assert utc_hours(summer, b, Session.NY_PM, "2024-07-15") == [18, 19]
    assert b[5] is None and b[6] is Session.LONDON


def test_spring_forward_boundary():
    # US DST starts Sunday 2024-03-10 at 02:00 EST -> 03:00 EDT
    c = hourly("2024-03-09 00:00", 72)
    a = detect_sessions(c)
    assert utc_hours(c, a, Session.LONDON, "2024-03-09") == [7, 8, 9]  # EST
    assert utc_hours(c, a, Session.LONDON, "2024-03-10") == [7, 8]  # 02:00 NY never happens: 03:00 and 04:00 EDT
    assert utc_hours(c, a, Session.LONDON, "2024-03-11") == [6, 7, 8]  # EDT
    # Asia of Mar 9 (EST) runs 01:00-05:00 UTC Mar 10; Asia of Mar 10 (EDT) runs 00:00-04:00 UTC Mar 11
    assert utc_hours(c, a, Session.ASIA, "2024-03-10") == [1, 2, 3, 4]
    assert utc_hours(c, a, Session.ASIA, "2024-03-11") == [0, 1, 2, 3]


def test_fall_back_boundary():
    # US DST ends Sunday 2024-11-03 at 02:00 EDT -> 01:00 EST (01:00-02:00 happens twice)
    c = hourly("2024-11-02 00:00", 72)
    a = detect_sessions(c)
    assert utc_hours(c, a, Session.LONDON, "2024-11-02") == [6, 7, 8]  # EDT
    assert utc_hours(c, a, Session.LONDON, "2024-11-03") == [7, 8, 9]  # EST: 06:00 UTC is the second 01:00
    assert utc_hours(c, a, Session.NY_AM, "2024-11-04") == [12, 13, 14]
    assert session_of(pd.Timestamp("2024-11-03 05:30", tz="UTC")) is None  # first 01:30 EDT
    assert session_of(pd.Timestamp("2024-11-03 06:30", tz="UTC")) is None  # second 01:30, EST
    assert session_of(pd.Timestamp("2024-11-03 07:00", tz="UTC")) is Session.LONDON


def test_half_hour_boundary_on_15m_candles():
    c = make_candles([(100.0, 101.0, 99.0, 100.0)] * 8, start="2024-01-15 18:00", freq="15min")  # 13:00 NY
    a = detect_sessions(c)
    assert a.labels() == [
        None,
        None,
        Session.NY_PM,
        Session.NY_PM,
        Session.NY_PM,
        Session.NY_PM,
        Session.NY_PM,
        Session.NY_PM,
    ]


def test_session_range_high_low_confirmation_and_taken():
    # winter London = bars 7, 8, 9 (UTC hours) of the day
    rows = [(100.0, 101.0, 99.0, 100.0)] * 24
    rows[7] = (100.0, 103.0, 99.5, 102.0)  # London high 103 at bar 7
    rows[8] = (102.0, 102.5, 98.0, 98.5)  # London low 98 at bar 8
    rows[9] = (98.5, 103.0, 98.5, 102.0)  # equal high later: the first one counts
    rows[12] = (100.0, 103.5, 99.0, 103.2)  # NY AM takes the London high
    c = hourly("2024-01-15 00:00", 24, rows)
    london = [r for r in detect_sessions(c).ranges if r.session is Session.LONDON]
    assert london == [
        SessionRange(Session.LONDON, "2024-01-15", 7, 9, 103.0, 98.0, 7, 8, 9, 12, None),
    ]


def test_nothing_to_find_and_unfinished_session():
    quiet_hours = hourly("2024-01-15 10:00", 2)  # 05:00-07:00 NY: no killzone
    a = detect_sessions(quiet_hours)
    assert a.ranges == () and not a.in_killzone().any() and len(a) == 2
    assert len(detect_sessions(quiet_hours.iloc[:0])) == 0
    # London not yet over at the last candle (08:00 UTC closes at 09:00 UTC = 04:00 NY)
    partial = hourly("2024-01-15 06:00", 3)
    assert [s for s in detect_sessions(partial).labels()] == [None, Session.LONDON, Session.LONDON]
    assert detect_sessions(partial).ranges == ()
    over = hourly("2024-01-15 06:00", 4)  # the 09:00 candle closes at 05:00 NY: London is over at its close
    assert [(r.session, r.confirmed_at) for r in detect_sessions(over).ranges] == [(Session.LONDON, 3)]
    # one bar and no interval: labels only
    assert detect_sessions(hourly("2024-01-15 09:00", 1)).ranges == ()
    assert [r.confirmed_at for r in detect_sessions(hourly("2024-01-15 09:00", 1), interval="1h").ranges] == [0]


def test_data_gap_confirms_at_the_next_bar():
    c = hourly("2024-01-15 06:00", 6)
    gap = c.drop(c.index[3:5])  # 09:00 and 10:00 UTC missing: London ends at 08:00, known at the 11:00 bar
    (r,) = [r for r in detect_sessions(gap, interval="1h").ranges if r.session is Session.LONDON]
    assert (r.start, r.end, r.confirmed_at) == (1, 2, 3)


@pytest.mark.parametrize("symbol,interval", CAUSALITY_SERIES)
def test_causal_on_real_candles(symbol, interval):
    candles = sample_candles(symbol, interval, tail=3000)
    full = detect_sessions(candles)
    assert {r.session for r in full.ranges} == set(Session) or interval == "4h"
    assert any(r.high_taken_at is not None for r in full.ranges)
    for k in cut_points(len(candles)):
        part = detect_sessions(candles.iloc[:k])
        assert np.array_equal(part.codes, full.codes[:k])
        assert list(part.ranges) == known_at(full.ranges, k - 1)


def test_scale_invariance():
    candles = sample_candles("SOLUSDT", "1h", tail=2000)
    a, b = detect_sessions(candles), detect_sessions(scaled(candles))
    assert np.array_equal(a.codes, b.codes)
    key = [(r.session, r.start, r.end, r.high_index, r.low_index, r.high_taken_at, r.low_taken_at) for r in a.ranges]
    assert key == [
        (r.session, r.start, r.end, r.high_index, r.low_index, r.high_taken_at, r.low_taken_at) for r in b.ranges
    ]


def test_label_at_close_for_straddling_candles():
    # 1h candle 18:00-19:00 UTC = 13:00-14:00 NY (winter): opens outside NY PM, ends inside it
    one = hourly("2024-01-15 18:00", 2)
    assert detect_sessions(one).labels() == [None, Session.NY_PM]
    assert detect_sessions(one, label_at="close").labels() == [Session.NY_PM, Session.NY_PM]
    # 4h candle 12:00-16:00 UTC = 07:00-11:00 NY: opens in NY AM, ends in London close
    four = make_candles([(100.0, 101.0, 99.0, 100.0)] * 3, start="2024-01-15 08:00", freq="4h")
    # (08:00 UTC = 03:00 NY, 12:00 = 07:00, 16:00 = 11:00; last instants 06:59, 10:59, 14:59 NY)
    assert detect_sessions(four).labels() == [Session.LONDON, Session.NY_AM, Session.LONDON_CLOSE]
    assert detect_sessions(four, label_at="close").labels() == [None, Session.LONDON_CLOSE, Session.NY_PM]
    # aligned 15m candles: both conventions agree
    c = sample_candles("BTCUSDT", "15m", tail=2000)
    assert np.array_equal(detect_sessions(c).codes, detect_sessions(c, label_at="close").codes)


@pytest.mark.parametrize("symbol,interval", [("BTCUSDT", "1h"), ("ETHUSDT", "4h")])
def test_causal_with_close_labels(symbol, interval):
    candles = sample_candles(symbol, interval, tail=2000)
    full = detect_sessions(candles, label_at="close")
    for k in cut_points(len(candles)):
        part = detect_sessions(candles.iloc[:k], label_at="close")
        assert np.array_equal(part.codes, full.codes[:k])
        assert list(part.ranges) == known_at(full.ranges, k - 1)
