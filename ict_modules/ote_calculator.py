"""Optimal trade entry (OTE): the 62%-79% retracement of the last impulse leg, and Fibonacci extension targets.

Definitions:
    Impulse legs come from confirmed swing points (:func:`~ict_modules.swing_points.detect_swing_points`,
    ``left = right = swing_length``) reduced to a zigzag in bar order: a swing of the same kind as the last zigzag
    point replaces it when more extreme (a higher high, a lower low) and is ignored otherwise; a swing of the other
    kind is appended. Each append or replacement ends a leg from the previous zigzag point to the new one:

    - **bullish leg** (swing low ``L`` -> swing high ``H``): price retraces *down* from ``H``; retracement ``r`` sits
      at ``H - r * (H - L)``. OTE zone = ``[H - 0.79 R, H - 0.62 R]``, sweet spot ``H - 0.705 R`` (longs).
    - **bearish leg** (``H`` -> ``L``): the mirror, retracement *up* from ``L``: ``L + r * R``; OTE zone
      ``[L + 0.62 R, L + 0.79 R]``, sweet spot ``L + 0.705 R`` (shorts).

    ``R = H - L``. A leg is an impulse only when ``R >= min_leg_atr * ATR[confirmed_at]``. Targets are the ICT
    Fibonacci extensions beyond the leg's end (the Fibonacci tool drawn from the leg's start = 1 to its end = 0,
    read at -0.27, -0.62, -1.0): ``H + e * R`` for bullish legs, ``L - e * R`` for bearish, with
    ``e in extensions = (0.27, 0.62, 1.0)`` (-1.0 is the symmetric "measured move").

    A leg is knowable when its end swing is confirmed: ``confirmed_at = end_index + swing_length``. Its state:
    ``entered_at`` = first bar after the end swing that trades into the zone (bullish: ``low <= zone_top``;
    bearish: ``high >= zone_bottom``), counted only up to the leg's end of life; ``extended_at`` = first bar that
    trades beyond the leg's end (a new high above ``H`` for bullish), after which the leg is superseded;
    ``invalidated_at`` = first bar that *closes* beyond the leg's start (below ``L`` for bullish). Legs already
    invalidated at their confirmation are not reported. "The last impulse leg" at bar ``k`` is the most recently
    confirmed leg; it is active while neither extended nor invalidated (:func:`active_ote`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .core import CandleArrays, Direction, atr_or, ohlcv_arrays
from .liquidity_map import LevelSearch, none_if_negative
from .swing_points import pivot_mask

logger = logging.getLogger(__name__)

OTE_LOW = 0.62
OTE_HIGH = 0.79
SWEET_SPOT = 0.705
EXTENSIONS = (0.27, 0.62, 1.0)
_DIRECTION = np.array([Direction.BEARISH, Direction.BULLISH], dtype=object)


@dataclass(frozen=True, slots=True)
class OTESetup:
    direction: Direction  # BULLISH leg (L -> H): long entries in the zone; BEARISH (H -> L): shorts
    start_index: int  # bar of the leg's origin swing
    end_index: int  # bar of the leg's end swing
    leg_low: float
    leg_high: float
    zone_bottom: float
    zone_top: float
    sweet_spot: float
    equilibrium: float  # 50% of the leg
    targets: tuple[float, ...]  # extension levels beyond the leg's end, nearest first
    confirmed_at: int
    entered_at: int | None = None
    extended_at: int | None = None
    invalidated_at: int | None = None

    @property
    def size(self) -> float:
        return self.leg_high - self.leg_low

    def retracement(self, price: float) -> float:
        """Fraction of the leg retraced at ``price``: 0 at the leg's end, 1 at its start (can leave [0, 1])."""
        if self.direction is Direction.BULLISH:
            return (self.leg_high - price) / self.size
        return (price - self.leg_low) / self.size

    def contains(self, price: float) -> bool:
        """Is ``price`` inside the OTE zone (edges included)?"""
        return self.zone_bottom <= price <= self.zone_top

    def is_active(self, bar: int) -> bool:
        """Known and neither extended nor invalidated at the close of ``bar``."""
        ended = [x for x in (self.extended_at, self.invalidated_at) if x is not None]
        return self.confirmed_at <= bar and (not ended or min(ended) > bar)


def _zigzag_legs(bars: list[int], prices: list[float], highs: list[bool]) -> list[tuple[int, int]]:
    """(start, end) positions into the swing arrays of the causal zigzag legs, in bar order (module docstring)."""
    legs: list[tuple[int, int]] = []
    zz: list[int] = []
    for q in range(len(bars)):
        if zz and highs[zz[-1]] == highs[q]:
            last = prices[zz[-1]]
            if not (prices[q] > last if highs[q] else prices[q] < last):
                continue
            zz[-1] = q
        else:
            zz.append(q)
        if len(zz) >= 2:
            legs.append((zz[-2], zz[-1]))
    return legs


def detect_ote(
    candles: pd.DataFrame,
    *,
    swing_length: int = 5,
    min_leg_atr: float = 1.5,
    ote_low: float = OTE_LOW,
    ote_high: float = OTE_HIGH,
    sweet_spot: float = SWEET_SPOT,
    extensions: tuple[float, ...] = EXTENSIONS,
    atr_length: int = 14,
    atr_values: np.ndarray | None = None,
    arrays: CandleArrays | None = None,
) -> list[OTESetup]:
    """OTE setups of every impulse leg, in confirmation order.

    Args:
        candles: validated candle frame.
        swing_length: pivot length in bars of the swings that bound legs; also their confirmation delay.
        min_leg_atr: minimum leg size in ATR multiples (ATR at the confirmation bar).
        ote_low, ote_high: retracement fractions bounding the zone (0.62, 0.79).
        sweet_spot: retracement fraction of the preferred entry (0.705).
        extensions: extension fractions beyond the leg's end for targets (0.27, 0.62, 1.0).
        atr_length: Wilder ATR length in bars.
        atr_values: precomputed ``atr(high, low, close, length=atr_length)`` of these candles (the engine computes
            it once per frame); computed here when omitted.
        arrays: :func:`.core.ohlcv_arrays` of these candles, when the caller already has them.
    """
    if not 0 < ote_low < ote_high < 1:
        raise ValueError("need 0 < ote_low < ote_high < 1")
    _, high, low, close, _ = ohlcv_arrays(candles, arrays)
    n = len(close)
    if n == 0:
        return []
    hb = np.flatnonzero(pivot_mask(high, left=swing_length, right=swing_length, highs=True))
    lb = np.flatnonzero(pivot_mask(low, left=swing_length, right=swing_length, highs=False))
    bars = np.concatenate((hb, lb))
    is_high = np.concatenate((np.ones(len(hb), dtype=bool), np.zeros(len(lb), dtype=bool)))
    order = np.lexsort((~is_high, bars))  # bar order, a high before a low on the same bar
    bars, is_high = bars[order], is_high[order]
    prices = np.where(is_high, high[bars], low[bars])
    legs = _zigzag_legs(bars.tolist(), prices.tolist(), is_high.tolist())
    if not legs:
        return []
    a_pos, b_pos = np.array(legs).T
    start_i, end_i = bars[a_pos], bars[b_pos]
    conf = end_i + swing_length
    bull = is_high[b_pos]
    start_p, end_p = prices[a_pos], prices[b_pos]
    hi = np.where(bull, end_p, start_p)
    lo = np.where(bull, start_p, end_p)
    size = hi - lo
    atr_values = atr_or(atr_values, high, low, close, length=atr_length)
    keep = (size > 0) & (size >= min_leg_atr * atr_values[conf])
    # Retracement r -> price: bullish hi - r*size, bearish lo + r*size.
    sign = np.where(bull, -1.0, 1.0)
    anchor = np.where(bull, hi, lo)
    lvl_a, lvl_b = anchor + sign * ote_low * size, anchor + sign * ote_high * size
    z_bot, z_top = np.minimum(lvl_a, lvl_b), np.maximum(lvl_a, lvl_b)
    after = end_i + 1
    # Entered: bull low <= z_top; bear high >= z_bot. Extended: bull high > hi; bear low < lo.
    # Invalidated: bull close < lo; bear close > hi. Searched for both orientations, then picked.
    up_high, down_low = LevelSearch(high), LevelSearch(-low)
    up_close, down_close = LevelSearch(close), LevelSearch(-close)
    ent_bull = down_low.first_above(after, -z_top, inclusive=True)
    ent_bear = up_high.first_above(after, z_bot, inclusive=True)
    ext_bull = up_high.first_above(after, hi)
    ext_bear = down_low.first_above(after, -lo)
    inv_bull = down_close.first_above(after, -lo)
    inv_bear = up_close.first_above(after, hi)
    entered = np.where(bull, ent_bull, ent_bear)
    extended = np.where(bull, ext_bull, ext_bear)
    invalid = np.where(bull, inv_bull, inv_bear)
    keep &= (invalid < 0) | (invalid > conf)
    big = np.iinfo(np.int64).max
    end_life = np.minimum(np.where(extended < 0, big, extended), np.where(invalid < 0, big, invalid))
    entered = np.where(entered > end_life, -1, entered)
    k = np.flatnonzero(keep)
    bull_k, hi_k, lo_k, size_k = bull[k], hi[k], lo[k], size[k]
    ext = np.asarray(extensions, dtype=np.float64)
    targets = np.where(bull_k[:, None], hi_k[:, None] + ext * size_k[:, None], lo_k[:, None] - ext * size_k[:, None])
    return list(
        map(
            OTESetup,
            _DIRECTION[bull_k.astype(np.int64)].tolist(),
            start_i[k].tolist(),
            end_i[k].tolist(),
            lo_k.tolist(),
            hi_k.tolist(),
            z_bot[k].tolist(),
            z_top[k].tolist(),
            (anchor[k] + sign[k] * sweet_spot * size_k).tolist(),
            ((hi_k + lo_k) / 2).tolist(),
            list(map(tuple, targets.tolist())),
            conf[k].tolist(),
            none_if_negative(entered[k]),
            none_if_negative(extended[k]),
            none_if_negative(invalid[k]),
        )
    )


def active_ote(setups: list[OTESetup], bar: int) -> OTESetup | None:
    """The last impulse leg as known at ``bar`` if it is still active there, else ``None``."""
    last = None
    for setup in setups:  # in confirmation order; among equal confirmation bars the later leg wins
        if setup.confirmed_at <= bar:
            last = setup
    return last if last is not None and last.is_active(bar) else None


def in_ote_zone(candles: pd.DataFrame, setups: list[OTESetup], *, price: str = "close") -> np.ndarray:
    """Per bar: +1 if ``price`` (a candle column) is inside the OTE zone of the active bullish leg, -1 inside
    that of an active bearish leg, 0 otherwise. Causal: bar ``t`` uses only setups known at ``t``."""
    values = candles[price].to_numpy(dtype=np.float64)
    n = len(values)
    out = np.zeros(n, dtype=np.int8)
    if not setups or n == 0:
        return out
    conf = np.array([s.confirmed_at for s in setups])
    order = np.argsort(conf, kind="stable")
    conf = conf[order]
    bars = np.arange(n)
    last = np.searchsorted(conf, bars, side="right") - 1
    has = last >= 0
    pick = order[np.where(has, last, 0)]
    big = np.iinfo(np.int64).max

    def field(get):
        return np.array([get(s) for s in setups])[pick]

    ends = field(
        lambda s: min(x if x is not None else big for x in (s.extended_at, s.invalidated_at)),
    )
    bottom, top = field(lambda s: s.zone_bottom), field(lambda s: s.zone_top)
    sign = field(lambda s: s.direction.sign)
    inside = has & (ends > bars) & (values >= bottom) & (values <= top)
    out[inside] = sign[inside]
    return out
