"""Multi-timeframe analysis: the market-structure bias of each timeframe and how well they align.

Definition:
    - Higher timeframes of an entry timeframe: :data:`HIGHER_TIMEFRAMES` (15m -> 1h, 4h; 1h -> 4h, 1d;
      4h -> 1d, 1w; 1d -> 1w; the other Binance intervals map to the next ones up at roughly 4x and 16x).
    - Bias of one timeframe: the trend of its swing-level structure (:mod:`.market_structure`: direction of the
      last BOS/CHOCH/MSS); when the swing level has no break yet, the internal-level trend; NEUTRAL without either.
    - Alignment score, in [-1, 1]: the mean of the higher timeframes' bias signs (+1 bullish, -1 bearish,
      0 neutral) over the higher timeframes present in ``frames`` (every frame with a longer interval than the
      entry one). +1 = all higher timeframes bullish, -1 = all bearish, 0 = mixed, neutral or none given.
      :meth:`MTFAnalysis.score_for` gives it from one trade direction's point of view.

Pure over the frames given: the caller cuts every frame to the candles closed at the same moment (the analysis
uses the last bar of each frame).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import pandas as pd

from .core import Direction
from .market_structure import StructureKind, StructureLevel, candle_tables, structure_arrays

logger = logging.getLogger(__name__)

# Binance intervals in ascending order (kept here: ict_modules imports nothing of the project outside itself).
INTERVAL_ORDER = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M")

HIGHER_TIMEFRAMES: dict[str, tuple[str, ...]] = {
    "1m": ("5m", "15m"),
    "3m": ("15m", "1h"),
    "5m": ("15m", "1h"),
    "15m": ("1h", "4h"),
    "30m": ("2h", "8h"),
    "1h": ("4h", "1d"),
    "2h": ("8h", "1d"),
    "4h": ("1d", "1w"),
    "6h": ("1d", "1w"),
    "8h": ("1d", "1w"),
    "12h": ("1d", "1w"),
    "1d": ("1w",),
    "3d": ("1w", "1M"),
    "1w": ("1M",),
    "1M": (),
}


def higher_timeframes(tf: str) -> tuple[str, ...]:
    """The higher timeframes whose bias an entry on ``tf`` is checked against; ValueError for unknown ``tf``."""
    try:
        return HIGHER_TIMEFRAMES[tf]
    except KeyError:
        raise ValueError(f"unknown timeframe {tf!r}; use one of {', '.join(INTERVAL_ORDER)}") from None


class Bias(StrEnum):
    BULLISH = "bullish"
    BEARISH = "bearish"
    NEUTRAL = "neutral"

    @property
    def sign(self) -> int:
        return {Bias.BULLISH: 1, Bias.BEARISH: -1, Bias.NEUTRAL: 0}[self]

    @property
    def direction(self) -> Direction | None:
        return None if self is Bias.NEUTRAL else Direction(self.value)

    @classmethod
    def of(cls, direction: Direction | None) -> Bias:
        return cls.NEUTRAL if direction is None else cls(direction.value)


@dataclass(frozen=True, slots=True)
class TimeframeBias:
    timeframe: str
    bias: Bias  # swing trend, else internal trend
    swing_trend: Bias
    internal_trend: Bias
    last_kind: StructureKind | None  # kind of the break that set ``bias``
    last_break_bar: int | None  # its bar in this timeframe's frame
    candles: int  # bars in the frame


@dataclass(frozen=True, slots=True)
class MTFAnalysis:
    entry_timeframe: str
    entry: TimeframeBias | None  # None when the entry frame is empty
    higher: tuple[TimeframeBias, ...]  # the higher timeframes present, ascending
    alignment: float  # [-1, 1], see module docstring

    @property
    def htf_bias(self) -> Bias:
        """The higher timeframes' consensus: the sign of ``alignment``."""
        return Bias.BULLISH if self.alignment > 0 else Bias.BEARISH if self.alignment < 0 else Bias.NEUTRAL

    def score_for(self, direction: Direction) -> float:
        """Alignment in [-1, 1] from ``direction``'s side: +1 every higher timeframe agrees, -1 every one opposes."""
        return self.alignment * direction.sign

    @property
    def aligned(self) -> bool:
        """The entry bias is directional and equals the higher-timeframe consensus."""
        return self.entry is not None and self.entry.bias is not Bias.NEUTRAL and self.entry.bias is self.htf_bias


def timeframe_bias(
    candles: pd.DataFrame, timeframe: str, *, internal_length: int = 3, swing_length: int = 10
) -> TimeframeBias:
    """Bias of one frame at its last bar (see module docstring)."""
    tables = candle_tables(candles)
    kw = {"internal_length": internal_length, "swing_length": swing_length, "tables": tables}
    swing = structure_arrays(candles, level=StructureLevel.SWING, **kw)
    internal = structure_arrays(candles, level=StructureLevel.INTERNAL, **kw)

    def last(arrays) -> Bias:
        return Bias.NEUTRAL if len(arrays) == 0 else Bias.BULLISH if arrays.bullish[-1] else Bias.BEARISH

    source = swing if len(swing) else internal
    kinds = (StructureKind.BOS, StructureKind.CHOCH, StructureKind.MSS)
    return TimeframeBias(
        timeframe=timeframe,
        bias=last(source),
        swing_trend=last(swing),
        internal_trend=last(internal),
        last_kind=kinds[int(source.kinds[-1])] if len(source) else None,
        last_break_bar=int(source.bars[-1]) if len(source) else None,
        candles=len(candles),
    )


def analyze_mtf(
    frames: Mapping[str, pd.DataFrame],
    *,
    entry_timeframe: str,
    internal_length: int = 3,
    swing_length: int = 10,
) -> MTFAnalysis:
    """Bias per timeframe and the alignment score of the higher timeframes (see module docstring).

    Args:
        frames: candle frames by Binance interval, each cut to the candles closed at the analysis moment. Frames
            of intervals shorter than or equal to ``entry_timeframe`` (other than it) are ignored.
        entry_timeframe: the interval of the entry frame.
        internal_length, swing_length: pivot lengths in bars of the structure levels.
    """
    if entry_timeframe not in INTERVAL_ORDER:
        raise ValueError(f"unknown timeframe {entry_timeframe!r}")
    rank = INTERVAL_ORDER.index(entry_timeframe)
    kw = {"internal_length": internal_length, "swing_length": swing_length}
    entry_frame = frames.get(entry_timeframe)
    entry = timeframe_bias(entry_frame, entry_timeframe, **kw) if entry_frame is not None and len(entry_frame) else None
    higher = tuple(
        timeframe_bias(frames[tf], tf, **kw) for tf in INTERVAL_ORDER[rank + 1 :] if tf in frames and len(frames[tf])
    )
    alignment = sum(b.bias.sign for b in higher) / len(higher) if higher else 0.0
    return MTFAnalysis(entry_timeframe, entry, higher, float(alignment))
