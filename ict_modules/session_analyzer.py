"""ICT killzones (trading sessions) from candle timestamps, in New York local time (DST-aware).

Killzones, New York local time (America/New_York via ``zoneinfo``; half-open ``[start, end)``), the common ICT
definitions (ICT's killzone lectures; the same table as the engine's fallback):
    asia          20:00 - 24:00
    london        02:00 - 05:00
    ny_am         07:00 - 10:00   (New York AM / New York open)
    london_close  10:00 - 12:00
    ny_pm         13:30 - 16:00
Because the hours are local to New York, their UTC times move by one hour with US daylight saving time (e.g.
London is 07:00-10:00 UTC in winter, 06:00-09:00 UTC in summer; on the spring-forward day, 02:00-03:00 does not
exist and London lasts two hours, 07:00-09:00 UTC; on the fall-back day London is 07:00-10:00 UTC).

Labels: by default a candle is labelled by its OPEN time (the candle starts inside the killzone); with
``label_at="close"`` by its last instant (close time - 1 ns, when a signal on it is issued: the engine's fallback
convention). For candles aligned to the killzone boundaries (1m .. 30m; 1h except at 13:30) both agree; 4h and daily
candles straddle killzones and their labels are coarse. Times come from the candle index only, never the wall clock.

Session ranges: each occurrence of a killzone (consecutive bars with the same label and the same New York date)
gives a :class:`SessionRange` with its high and low. It is known once the session is over: ``confirmed_at`` is its
last bar when that bar's close time (``open + interval``) lies outside the session, else the first later bar
(data gap). ``high_taken_at`` / ``low_taken_at``: first bar after ``confirmed_at`` trading beyond the range
(``high > range high`` / ``low < range low``): the session's liquidity taken.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from .core import CandleArrays, ohlcv_arrays
from .market_structure import first_beyond, range_argextreme, sparse_table

logger = logging.getLogger(__name__)

NEW_YORK = ZoneInfo("America/New_York")


class Session(StrEnum):
    ASIA = "asia"
    LONDON = "london"
    NY_AM = "ny_am"
    LONDON_CLOSE = "london_close"
    NY_PM = "ny_pm"


class LabelTime(StrEnum):
    OPEN = "open"  # a candle is labelled by its open time
    CLOSE = "close"  # ... by its last instant (close time - 1 ns)


SESSIONS: tuple[Session, ...] = tuple(Session)
# (session, start, end) in minutes after New York local midnight, half-open
KILLZONES: tuple[tuple[Session, int, int], ...] = (
    (Session.ASIA, 20 * 60, 24 * 60),
    (Session.LONDON, 2 * 60, 5 * 60),
    (Session.NY_AM, 7 * 60, 10 * 60),
    (Session.LONDON_CLOSE, 10 * 60, 12 * 60),
    (Session.NY_PM, 13 * 60 + 30, 16 * 60),
)
NO_SESSION = -1


@dataclass(frozen=True, slots=True)
class SessionRange:
    """High and low of one killzone occurrence; prices in quote units, bars as frame positions."""

    session: Session
    date: str  # New York local date of the session, ISO (YYYY-MM-DD)
    start: int  # first bar
    end: int  # last bar
    high: float
    low: float
    high_index: int
    low_index: int
    confirmed_at: int  # the bar at whose close the session is known to be over
    high_taken_at: int | None = None
    low_taken_at: int | None = None


@dataclass(frozen=True, slots=True)
class SessionAnalysis:
    """Per-bar killzone codes (index into :data:`SESSIONS`, -1 = none) and the completed session ranges.

    ``analysis[bar]`` is the :class:`Session` of that bar or ``None``.
    """

    codes: np.ndarray  # int8 per bar
    ranges: tuple[SessionRange, ...]

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, bar: int) -> Session | None:
        code = int(self.codes[bar])
        return SESSIONS[code] if code >= 0 else None

    def labels(self) -> list[Session | None]:
        return [SESSIONS[c] if c >= 0 else None for c in self.codes.tolist()]

    def in_killzone(self) -> np.ndarray:
        return self.codes >= 0


def _wall(times: pd.DatetimeIndex) -> np.ndarray:
    """New York local wall-clock times as int64 nanoseconds since the local epoch."""
    return times.tz_convert(NEW_YORK).tz_localize(None).as_unit("ns").asi8


def session_codes(times: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """(killzone code per timestamp, New York local day number per timestamp) for UTC ``times``."""
    wall = _wall(times)
    minute_ns = 60 * 10**9
    day = wall // (1440 * minute_ns)
    minutes = (wall // minute_ns) % 1440
    codes = np.full(len(wall), NO_SESSION, dtype=np.int8)
    for code, (_, start, end) in enumerate(KILLZONES):
        codes[(minutes >= start) & (minutes < end)] = code
    return codes, day


def session_of(moment: pd.Timestamp) -> Session | None:
    """The killzone of one aware timestamp, or ``None``."""
    codes, _ = session_codes(pd.DatetimeIndex([pd.Timestamp(moment).tz_convert("UTC")]))
    return SESSIONS[codes[0]] if codes[0] >= 0 else None


def detect_sessions(
    candles: pd.DataFrame,
    *,
    interval: pd.Timedelta | str | None = None,
    label_at: LabelTime | str = LabelTime.OPEN,
    arrays: CandleArrays | None = None,
) -> SessionAnalysis:
    """Killzone label of every candle and the completed session ranges (see the module docstring).

    Args:
        candles: validated candle frame (UTC open times).
        interval: candle duration; ``None`` = the smallest step between consecutive open times (a one-bar frame
            then has no completed sessions). Tells when a session is over (and where a candle ends).
        label_at: ``"open"`` labels a candle by its open time; ``"close"`` by its last instant (close time minus
            1 ns: the moment a signal on that candle is issued). They differ only for candles that straddle a
            killzone boundary (e.g. 4h candles). A one-bar frame without ``interval`` is labelled by its open.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.
    """
    times = candles.index
    n = len(times)
    if interval is not None:
        step = pd.Timedelta(interval)
    elif n >= 2:
        step = pd.Timedelta(int(np.diff(times.as_unit("ns").asi8).min()), unit="ns")
    else:
        return SessionAnalysis(session_codes(times)[0], ())
    if LabelTime(label_at) is LabelTime.CLOSE:
        times = times + step - pd.Timedelta(1, unit="ns")
        step = pd.Timedelta(1, unit="ns")
    codes, day = session_codes(times)
    close_codes, close_day = session_codes(times + step)
    inside = codes >= 0
    # occurrence boundaries: a bar starts a new run when its (code, day) differs from the previous bar's
    new_run = inside.copy()
    new_run[1:] &= (codes[1:] != codes[:-1]) | (day[1:] != day[:-1])
    starts = np.flatnonzero(new_run)
    if not len(starts):
        return SessionAnalysis(codes, ())
    last = np.zeros(n, dtype=bool)  # last bar of each run
    last[:-1] = inside[:-1] & (~inside[1:] | new_run[1:])
    last[-1] = inside[-1]
    ends = np.flatnonzero(last)
    over = (close_codes[ends] != codes[ends]) | (close_day[ends] != day[ends])
    confirmed = np.where(over, ends, ends + 1)
    keep = confirmed < n
    starts, ends, confirmed = starts[keep], ends[keep], confirmed[keep]
    if not len(starts):
        return SessionAnalysis(codes, ())

    _, high, low, _, _ = ohlcv_arrays(candles, arrays)
    high_table, low_table = sparse_table(high, maximum=True), sparse_table(low, maximum=False)
    high_idx = range_argextreme(high_table, starts, ends, maximum=True)  # first bar of the session high
    low_idx = range_argextreme(low_table, starts, ends, maximum=False)
    run_high, run_low = high[high_idx], low[low_idx]
    high_taken = first_beyond(high_table, confirmed + 1, run_high, above=True, strict=True)
    low_taken = first_beyond(low_table, confirmed + 1, run_low, above=False, strict=True)
    dates = pd.to_datetime(day[starts], unit="D").strftime("%Y-%m-%d")
    ranges = tuple(
        SessionRange(
            SESSIONS[codes[s]],
            d,
            s,
            e,
            hi,
            lo,
            hx,
            lx,
            c,
            ht if ht < n else None,
            lt if lt < n else None,
        )
        for s, e, d, hi, lo, hx, lx, c, ht, lt in zip(
            starts.tolist(),
            ends.tolist(),
            dates,
            run_high.tolist(),
            run_low.tolist(),
            high_idx.tolist(),
            low_idx.tolist(),
            confirmed.tolist(),
            high_taken.tolist(),
            low_taken.tolist(),
            strict=True,
        )
    )
    return SessionAnalysis(codes, ranges)
