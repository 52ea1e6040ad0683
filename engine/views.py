"""The engine's neutral view of detector output: zones, levels, structure marks, and the ``Snapshot`` every step
reads at one bar (also what the chart draws)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ict_modules.core import Direction


class ZoneKind(StrEnum):
    ORDER_BLOCK = "order_block"
    BREAKER = "breaker"
    FVG = "fvg"
    SIBI_SSIB = "sibi_ssib"
    WHALE = "whale"
    SMZ = "smz"


ZONE_DETECTORS = (
    ("order_blocks", ZoneKind.ORDER_BLOCK),
    ("breaker_blocks", ZoneKind.BREAKER),
    ("fvg", ZoneKind.FVG),
    ("sibi_ssib", ZoneKind.SIBI_SSIB),
)
ZONE_LABELS = {
    ZoneKind.ORDER_BLOCK: "OB",
    ZoneKind.BREAKER: "Breaker",
    ZoneKind.FVG: "FVG",
    ZoneKind.SIBI_SSIB: "SIBI/SSIB",
    ZoneKind.WHALE: "Whale",
    ZoneKind.SMZ: "SMZ",
}


@dataclass(frozen=True, slots=True)
class Zone:
    """A price zone as the engine sees it (one per detector object), active at the bar it was read at."""

    kind: ZoneKind
    direction: Direction
    top: float
    bottom: float
    index: int  # bar where the zone formed (for the chart)
    label: str  # short chart label: "OB", "FVG", "Breaker", "SIBI", "SSIB"

    @property
    def mid(self) -> float:
        return (self.top + self.bottom) / 2


@dataclass(frozen=True, slots=True)
class StructureMark:
    """A BOS / CHOCH / MSS as the chart draws it: broken level, the swing bar and the breaking bar."""

    kind: str  # "BOS", "CHOCH", "MSS"
    direction: Direction
    level: float
    swing_index: int
    index: int  # bar that broke the level


@dataclass(frozen=True, slots=True)
class Level:
    """A horizontal level for the chart (liquidity pools)."""

    label: str
    price: float
    index: int


@dataclass(frozen=True, slots=True)
class StructureView:
    trend: Direction | None
    marks: tuple[StructureMark, ...]  # recent marks, oldest first

    @property
    def last(self) -> StructureMark | None:
        return self.marks[-1] if self.marks else None


@dataclass(frozen=True, slots=True)
class EntryModelView:
    name: str  # "sweep_mss", "ote_pullback", "breaker_retest", ...
    direction: Direction
    index: int
    top: float | None = None
    bottom: float | None = None
    stop: float | None = None  # the model's protecting structure


@dataclass(frozen=True, slots=True)
class OTEView:
    """The last impulse leg's OTE band (62%-79% retracement) and its extension targets (nearest first)."""

    direction: Direction
    start: float  # leg origin price (low of a bullish leg)
    end: float  # leg end price (high of a bullish leg)
    top: float
    bottom: float
    targets: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the steps read at one bar; also what the chart draws."""

    bar: int
    close: float
    atr: float
    structure: StructureView
    htf_bias: tuple[tuple[str, Direction | None], ...]
    zones: tuple[Zone, ...]
    pools_above: tuple[Level, ...]  # resting buy-side liquidity above the close, nearest first
    pools_below: tuple[Level, ...]  # resting sell-side liquidity below the close, nearest first
    htf_pools_above: tuple[Level, ...]
    htf_pools_below: tuple[Level, ...]
    sweeps: tuple[tuple[Direction, float, int], ...]  # (side that was swept as trade direction it favours, level, bar)
    displacements: tuple[tuple[Direction, float, int], ...]  # (direction, body in ATR, bar)
    whales: tuple[tuple[Direction, int], ...]
    entry_models: tuple[EntryModelView, ...]
    ote: OTEView | None
    dealing_range: tuple[float, float] | None  # (low, high)
    swing_lows: tuple[tuple[int, float], ...]  # confirmed internal swing lows (bar, price), most recent last
    swing_highs: tuple[tuple[int, float], ...]
    session: str  # one of SESSIONS or ""
    killzone: bool
