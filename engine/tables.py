"""Reading detector output as known at a bar, duck-typed on the causality convention of ``ict_modules.core``:
zone and pool tables (vectorised masks over every object), structure, and recent events."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.views import ZONE_LABELS, Level, Snapshot, StructureMark, StructureView, Zone, ZoneKind
from ict_modules.core import Direction

DEAD_STATES = ("invalidated_at", "filled_at", "inverted_at", "broken_at", "expired_at", "run_at", "swept_at")


def _known(obj: Any, bar: int) -> bool:
    return getattr(obj, "confirmed_at", 0) <= bar


def state_by(obj: Any, name: str, bar: int) -> bool:
    """True when ``obj``'s state change ``name`` (a ``*_at`` bar) had happened by ``bar``."""
    value = getattr(obj, name, None)
    return value is not None and value <= bar


def obj_direction(obj: Any) -> Direction | None:
    value = getattr(obj, "direction", None)
    if value is None:
        return None
    try:
        return Direction(str(getattr(value, "value", value)).lower())
    except ValueError:
        return None


def zone_bounds(obj: Any) -> tuple[float, float] | None:
    top = getattr(obj, "top", None)
    bottom = getattr(obj, "bottom", None)
    if top is None or bottom is None:
        return None
    top, bottom = float(top), float(bottom)
    return (top, bottom) if top >= bottom else (bottom, top)


@dataclass(frozen=True)
class ZoneTable:
    """One zone detector's objects as arrays, so the zones active at any bar are a vectorised mask.

    ``dead`` = the first bar of any dead state (invalidated, filled, inverted, ...), a large number while alive.
    """

    kind: ZoneKind
    objects: tuple[Any, ...]
    confirmed: np.ndarray
    dead: np.ndarray
    top: np.ndarray
    bottom: np.ndarray

    @classmethod
    def build(cls, objects: Any, kind: ZoneKind, dead: Sequence[str] = DEAD_STATES) -> ZoneTable:
        usable = [o for o in objects or () if zone_bounds(o) is not None and obj_direction(o) is not None]
        never = np.iinfo(np.int64).max

        def first_dead(o: Any) -> int:
            bars = [getattr(o, name, None) for name in dead]
            return min((b for b in bars if b is not None), default=never)

        bounds = [zone_bounds(o) for o in usable]
        return cls(
            kind,
            tuple(usable),
            np.array([o.confirmed_at for o in usable], dtype=np.int64),
            np.array([first_dead(o) for o in usable], dtype=np.int64),
            np.array([b[0] for b in bounds], dtype=np.float64),
            np.array([b[1] for b in bounds], dtype=np.float64),
        )

    def active(self, bar: int, low: float = -math.inf, high: float = math.inf) -> list[Zone]:
        """Zones known and alive at ``bar`` that overlap the price band ``[low, high]``."""
        mask = (self.confirmed <= bar) & (self.dead > bar) & (self.bottom <= high) & (self.top >= low)
        out = []
        for i in np.flatnonzero(mask):
            o = self.objects[i]
            direction = obj_direction(o)
            index = int(getattr(o, "index", o.confirmed_at))
            out.append(Zone(self.kind, direction, float(self.top[i]), float(self.bottom[i]), index,
                            zone_label(self.kind, direction, o)))  # fmt: skip
        return out


def zones_at(objects: Any, bar: int, kind: ZoneKind, *, dead: Sequence[str] = DEAD_STATES) -> list[Zone]:
    """Active zones at ``bar``: known (``confirmed_at <= bar``) and no dead state (invalidated, filled, ...) yet."""
    return ZoneTable.build(objects, kind, dead).active(bar)


def zone_label(kind: ZoneKind, direction: Direction, obj: Any = None) -> str:
    """Short label; the direction is shown by colour (chart) or words (components)."""
    if kind is ZoneKind.SIBI_SSIB:
        return "SSIB" if direction is Direction.BULLISH else "SIBI"
    if kind is ZoneKind.BREAKER and str(getattr(getattr(obj, "kind", None), "value", "")) == "mitigation":
        return MITIGATION_LABEL
    return ZONE_LABELS[kind]


MITIGATION_LABEL = "Mitigation"  # a failed OB whose move swept no liquidity: not a breaker
# The term a component line uses for a zone label (the chart keeps the short label).
ZONE_TERMS = {"Breaker": "breaker", MITIGATION_LABEL: "mitigation block"}


def zone_term(z: Zone) -> str:
    """How a component names zone ``z``: "breaker" and "mitigation block" are different objects (a breaker's
    failed OB swept liquidity first, a mitigation block's did not), the rest by their chart label."""
    return ZONE_TERMS.get(z.label, z.label)


def zone_component_name(z: Zone) -> str:
    """The component name of zone ``z``: its kind, except that a mitigation block is not called a breaker."""
    return "mitigation_block" if z.label == MITIGATION_LABEL else z.kind.value


def structure_at(events: Sequence[Any] | None, bar: int, *, keep: int = 6) -> StructureView:
    """Trend and the recent BOS/CHOCH/MSS marks known at ``bar`` from ``market_structure`` events (bar order).

    The trend is the direction of the last break known at ``bar`` (neutral before the first one).
    """
    if not events:
        return StructureView(None, ())
    end = bisect.bisect_right(events, bar, key=lambda e: e.confirmed_at)
    marks = tuple(
        StructureMark(
            str(e.kind.value).upper(), e.direction, float(e.swing_price), int(e.swing_index), int(e.confirmed_at)
        )
        for e in events[max(0, end - keep) : end]
    )
    return StructureView(marks[-1].direction if marks else None, marks)


def htf_trend(swing: Sequence[Any] | None, internal: Sequence[Any] | None, bar: int) -> Direction | None:
    """Bias of a higher timeframe at ``bar`` as mtf_analyzer defines it: the swing-level trend, else the
    internal-level trend, else neutral (None)."""
    trend = structure_at(swing, bar, keep=1).trend
    return trend if trend is not None else structure_at(internal, bar, keep=1).trend


NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class PoolTable:
    """Liquidity pools (liquidity_map or ILP objects) as arrays: resting pools and sweeps at any bar, vectorised."""

    objects: tuple[Any, ...]
    confirmed: np.ndarray
    taken: np.ndarray  # first bar swept or run through, NEVER while resting
    swept: np.ndarray  # bar swept (wick through, close back), NEVER if not
    price: np.ndarray
    above: np.ndarray  # buy-side (above highs)

    @classmethod
    def build(cls, pools: Any) -> PoolTable:
        objs = tuple(pools or ())

        def bar(value: int | None) -> int:
            return NEVER if value is None else int(value)

        return cls(
            objs,
            np.array([p.confirmed_at for p in objs], dtype=np.int64),
            np.array([bar(p.taken_at) for p in objs], dtype=np.int64),
            np.array([bar(getattr(p, "swept_at", None)) for p in objs], dtype=np.int64),
            np.array([p.price for p in objs], dtype=np.float64),
            np.array([pool_side(p).is_above for p in objs], dtype=bool),
        )

    def resting(self, close: float, bar: int, *, limit: int = 6) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """Resting (known, untaken) liquidity at ``bar``: buy-side above ``close`` and sell-side below, nearest
        first, one level per price."""
        live = (self.confirmed <= bar) & (self.taken > bar)
        up = np.flatnonzero(live & self.above & (self.price > close))
        down = np.flatnonzero(live & ~self.above & (self.price < close))
        up = up[np.argsort(self.price[up], kind="stable")]
        down = down[np.argsort(-self.price[down], kind="stable")]
        return self._levels(up, limit), self._levels(down, limit)

    def _levels(self, order: np.ndarray, limit: int) -> tuple[Level, ...]:
        out: list[Level] = []
        for i in order.tolist():
            p = self.objects[i]
            label = POOL_LABELS.get(str(getattr(p.kind, "value", p.kind)), "liquidity")
            if out and math.isclose(out[-1].price, p.price, rel_tol=1e-9):
                # one level per price, named by its most specific pool (a swing low that is also the PDL is "PDL")
                if liquidity_rank(label) < liquidity_rank(out[-1].label):
                    out[-1] = Level(label, out[-1].price, out[-1].index)
                continue
            if len(out) == limit:
                break
            out.append(Level(label, float(p.price), int(p.index)))
        return tuple(out)

    def sweeps(self, bar: int, recent: int) -> tuple[tuple[Direction, float, int], ...]:
        """Sweeps (wick through, close back) in ``bar - recent + 1 .. bar``: a swept sell-side pool favours longs
        (``BULLISH``), a swept buy-side pool shorts; oldest first."""
        hit = np.flatnonzero((self.swept > bar - recent) & (self.swept <= bar) & (self.confirmed <= self.swept))
        hit = hit[np.argsort(self.swept[hit], kind="stable")]
        return tuple(
            (Direction.BEARISH if self.above[i] else Direction.BULLISH, float(self.price[i]), int(self.swept[i]))
            for i in hit.tolist()
        )


def pools_at(pools: Any, close: float, bar: int, *, limit: int = 6) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
    """Resting liquidity at ``bar``: buy-side above ``close`` and sell-side below, nearest first."""
    return PoolTable.build(pools).resting(close, bar, limit=limit)


def sweeps_at(pools: Any, bar: int, recent: int) -> tuple[tuple[Direction, float, int], ...]:
    """Liquidity sweeps in the last ``recent`` bars up to ``bar`` (see :meth:`PoolTable.sweeps`)."""
    return PoolTable.build(pools).sweeps(bar, recent)


POOL_LABELS = {
    "swing_high": "BSL",
    "swing_low": "SSL",
    "equal_highs": "EQH",
    "equal_lows": "EQL",
    "previous_day_high": "PDH",
    "previous_day_low": "PDL",
    "previous_week_high": "PWH",
    "previous_week_low": "PWL",
}


# Most specific first: previous week / day levels, then equal highs / lows, then plain swing pools.
LIQUIDITY_SPECIFICITY = ("PWH", "PWL", "PDH", "PDL", "EQH", "EQL", "BSL", "SSL")


def liquidity_rank(label: str) -> int:
    return LIQUIDITY_SPECIFICITY.index(label) if label in LIQUIDITY_SPECIFICITY else len(LIQUIDITY_SPECIFICITY)


def liquidity_name(price: float, levels: Iterable[Level]) -> str | None:
    """The one name of the liquidity at ``price``: the most specific label among ``levels`` at that price (None when
    no level is there). The chart and the signal's components both name levels through this function."""
    names = [lv.label for lv in levels if math.isclose(lv.price, price, rel_tol=1e-9)]
    return min(names, key=liquidity_rank, default=None)


def snapshot_levels(snap: Snapshot) -> tuple[Level, ...]:
    """Every resting liquidity level a snapshot holds (entry timeframe and higher timeframes)."""
    return (*snap.pools_above, *snap.pools_below, *snap.htf_pools_above, *snap.htf_pools_below)


def pool_side(pool: Any) -> Any:
    """A pool's LiquiditySide (liquidity_map pools carry ``side``; ILP pools derive it from their kind)."""
    side = getattr(pool, "side", None)
    return side if side is not None else pool.kind.side


def recent_events(objects: Any, bar: int, recent: int) -> list[Any]:
    """Objects confirmed within the last ``recent`` bars up to ``bar`` (``objects`` in ``confirmed_at`` order)."""
    if not objects:
        return []
    lo = bisect.bisect_right(objects, bar - recent, key=confirmed_key)
    hi = bisect.bisect_right(objects, bar, key=confirmed_key)
    return list(objects[lo:hi])


def confirmed_key(obj: Any) -> int:
    return obj.confirmed_at
