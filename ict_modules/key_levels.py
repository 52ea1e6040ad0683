"""Key levels: previous day / week / month high, low and open; new day and new week opening gaps.

Periods are calendar periods in UTC, like Binance's daily/weekly/monthly candles: a day starts at 00:00 UTC, a
week on Monday 00:00 UTC, a month on the 1st at 00:00 UTC. A candle belongs to the period of its open time.

Period levels: for every period, its open (first candle's open), high, low, close and the bars of the high and
low (first occurrence). A period's high and low are only known when it ends: ``confirmed_at`` is its last bar when
that bar's close time (``open time + interval``) reaches the next period, else the first bar of a later period
(data gap); a period still running at the end of the data is not reported. The "previous day high" at bar b is the
high of the last DAY period confirmed at or before b (:func:`previous_levels`). Taken: ``high_taken_at`` /
``low_taken_at`` are the first bars after ``confirmed_at`` trading beyond the level (``high > level`` /
``low < level``).

Opening gaps (ICT's NDOG / NWOG, adapted to a 24/7 market): ICT measures them between the futures session close
and the next open (NDOG: 17:00 to 18:00 New York; NWOG: Friday close to Sunday evening open). Crypto trades
without a break, so here the gap is between the LAST CLOSE of the previous period and the FIRST OPEN of the new one:
NDOG at each UTC day boundary, NWOG at each Monday 00:00 UTC. Direction: BULLISH when the new open is above the
previous close (gap up), BEARISH below. Zero-size gaps (open == previous close, usual on Binance) are skipped, and
gaps below ``min_gap_atr`` x ATR (of the bars before the new period) are dropped. ``confirmed_at = index`` = the
new period's first bar; ``filled_at`` = first bar from ``index`` on that trades through the whole gap (gap up:
``low <= bottom``; gap down: ``high >= top``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from .core import Direction, atr, ohlcv_arrays
from .market_structure import first_beyond, range_argextreme, sparse_table

logger = logging.getLogger(__name__)

_DAY_NS = 86_400 * 10**9


class PeriodKind(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class GapKind(StrEnum):
    NDOG = "ndog"  # new day opening gap
    NWOG = "nwog"  # new week opening gap


@dataclass(frozen=True, slots=True)
class PeriodLevels:
    """Open/high/low/close of one completed period; prices in quote units, bars as frame positions."""

    period: PeriodKind
    opened: pd.Timestamp  # period start (UTC)
    start: int  # first bar of the period
    end: int  # last bar of the period
    open: float
    high: float
    low: float
    close: float
    high_index: int
    low_index: int
    confirmed_at: int
    high_taken_at: int | None = None
    low_taken_at: int | None = None


@dataclass(frozen=True, slots=True)
class OpeningGap:
    """A new day / new week opening gap between the previous close and the new open."""

    kind: GapKind
    direction: Direction  # BULLISH = gap up
    top: float
    bottom: float
    index: int  # first bar of the new period
    size_atr: float
    confirmed_at: int  # == index
    filled_at: int | None = None

    @property
    def ce(self) -> float:
        """Consequent encroachment: the gap's midpoint."""
        return (self.top + self.bottom) / 2.0


@dataclass(frozen=True, slots=True)
class KeyLevels:
    levels: tuple[PeriodLevels, ...]  # per period kind, in time order (DAY, then WEEK, then MONTH)
    gaps: tuple[OpeningGap, ...]  # in bar order (an NDOG before an NWOG on the same bar)


def period_ids(times: pd.DatetimeIndex, period: PeriodKind) -> np.ndarray:
    """An integer per timestamp, equal for timestamps in the same UTC period and increasing with time."""
    ns = times.as_unit("ns").asi8
    days = ns // _DAY_NS
    if period is PeriodKind.DAY:
        return days
    if period is PeriodKind.WEEK:
        return (days - 4) // 7  # 1970-01-05, day 4, was a Monday
    return (times.year * 12 + times.month).to_numpy(dtype=np.int64)


def _interval(times: pd.DatetimeIndex, interval: pd.Timedelta | str | None) -> pd.Timedelta | None:
    if interval is not None:
        return pd.Timedelta(interval)
    if len(times) < 2:
        return None
    return pd.Timedelta(int(np.diff(times.as_unit("ns").asi8).min()), unit="ns")


def _period_levels(
    candles: pd.DataFrame, period: PeriodKind, step: pd.Timedelta, tables: dict[str, list[np.ndarray]]
) -> list[PeriodLevels]:
    o, h, low, c, _ = ohlcv_arrays(candles)
    n = len(c)
    times = candles.index
    ids = period_ids(times, period)
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    ends = np.concatenate((starts[1:] - 1, [n - 1]))
    over = period_ids(times[ends] + step, period) != ids[ends]
    confirmed = np.where(over, ends, ends + 1)
    keep = confirmed < n
    starts, ends, confirmed = starts[keep], ends[keep], confirmed[keep]
    if not len(starts):
        return []
    hi_idx = range_argextreme(tables["high_max"], starts, ends, maximum=True)
    lo_idx = range_argextreme(tables["low_min"], starts, ends, maximum=False)
    hi_taken = first_beyond(tables["high_max"], confirmed + 1, h[hi_idx], above=True, strict=True)
    lo_taken = first_beyond(tables["low_min"], confirmed + 1, low[lo_idx], above=False, strict=True)
    first_times = times[starts]
    if period is PeriodKind.DAY:
        opened = first_times.floor("D")
    elif period is PeriodKind.WEEK:
        opened = (first_times - pd.to_timedelta(first_times.day_of_week, unit="D")).floor("D")
    else:
        opened = first_times.floor("D") - pd.to_timedelta(first_times.day - 1, unit="D")
    return [
        PeriodLevels(
            period,
            t,
            s,
            e,
            op,
            hi,
            lo,
            cl,
            hx,
            lx,
            cf,
            ht if ht < n else None,
            lt if lt < n else None,
        )
        for t, s, e, op, hi, lo, cl, hx, lx, cf, ht, lt in zip(
            opened,
            starts.tolist(),
            ends.tolist(),
            o[starts].tolist(),
            h[hi_idx].tolist(),
            low[lo_idx].tolist(),
            c[ends].tolist(),
            hi_idx.tolist(),
            lo_idx.tolist(),
            confirmed.tolist(),
            hi_taken.tolist(),
            lo_taken.tolist(),
            strict=True,
        )
    ]


def _opening_gaps(
    candles: pd.DataFrame, kind: GapKind, min_gap_atr: float, atr_length: int, tables: dict[str, list[np.ndarray]]
) -> list[OpeningGap]:
    o, h, low, c, _ = ohlcv_arrays(candles)
    n = len(c)
    ids = period_ids(candles.index, PeriodKind.DAY if kind is GapKind.NDOG else PeriodKind.WEEK)
    first = np.flatnonzero(ids[1:] != ids[:-1]) + 1  # first bars of new periods (with a previous candle)
    prev_close, new_open = c[first - 1], o[first]
    top, bottom = np.maximum(prev_close, new_open), np.minimum(prev_close, new_open)
    yard = atr(h, low, c, length=atr_length)[first - 1]
    size_atr = (top - bottom) / yard
    keep = (top > bottom) & (size_atr >= min_gap_atr)
    first, top, bottom, size_atr = first[keep], top[keep], bottom[keep], size_atr[keep]
    up = new_open[keep] > prev_close[keep]
    fill_up = first_beyond(tables["low_min"], first, bottom, above=False, strict=False)
    fill_down = first_beyond(tables["high_max"], first, top, above=True, strict=False)
    filled = np.where(up, fill_up, fill_down)
    return [
        OpeningGap(kind, Direction.BULLISH if u else Direction.BEARISH, t, b, i, s, i, f if f < n else None)
        for u, t, b, i, s, f in zip(
            up.tolist(), top.tolist(), bottom.tolist(), first.tolist(), size_atr.tolist(), filled.tolist(), strict=True
        )
    ]


def detect_key_levels(
    candles: pd.DataFrame,
    *,
    periods: Iterable[PeriodKind | str] = tuple(PeriodKind),
    interval: pd.Timedelta | str | None = None,
    min_gap_atr: float = 0.01,
    atr_length: int = 14,
) -> KeyLevels:
    """Completed period levels and opening gaps of ``candles`` (see the module docstring).

    Args:
        candles: validated candle frame (UTC open times).
        periods: which period kinds to report (day, week, month).
        interval: candle duration; ``None`` = the smallest step between consecutive open times (a one-bar frame
            then has no completed period). Used only to tell when a period is over.
        min_gap_atr: minimum opening-gap size in ATR multiples; the default 0.01 drops one-tick gaps (0 keeps
            every non-zero gap).
        atr_length: Wilder ATR length in bars (for the gap size).
    """
    _, h, low, _, _ = ohlcv_arrays(candles)
    if len(h) == 0:
        return KeyLevels((), ())
    tables = {"high_max": sparse_table(h, maximum=True), "low_min": sparse_table(low, maximum=False)}
    step = _interval(candles.index, interval)
    levels: list[PeriodLevels] = []
    if step is not None:
        for period in dict.fromkeys(PeriodKind(p) for p in periods):
            levels += _period_levels(candles, period, step, tables)
    gaps = _opening_gaps(candles, GapKind.NDOG, min_gap_atr, atr_length, tables)
    gaps += _opening_gaps(candles, GapKind.NWOG, min_gap_atr, atr_length, tables)
    gaps.sort(key=lambda g: (g.index, g.kind is GapKind.NWOG))
    return KeyLevels(tuple(levels), tuple(gaps))


def previous_levels(key_levels: KeyLevels, bar: int, period: PeriodKind | str) -> PeriodLevels | None:
    """The last completed ``period`` known at the close of ``bar`` (e.g. the previous day's high/low/open)."""
    kind = PeriodKind(period)
    known = [p for p in key_levels.levels if p.period is kind and p.confirmed_at <= bar]
    return known[-1] if known else None


def period_opens(candles: pd.DataFrame, period: PeriodKind | str) -> np.ndarray:
    """Per bar: the opening price of the period the bar belongs to (e.g. the midnight / weekly open), causal."""
    ids = period_ids(candles.index, PeriodKind(period))
    o = candles["open"].to_numpy(dtype=np.float64)
    if not len(o):
        return o.copy()
    new = np.concatenate(([True], ids[1:] != ids[:-1]))
    first = np.maximum.accumulate(np.where(new, np.arange(len(o)), 0))
    return o[first]
