"""Step 3 (entry model), step 11 (confidence), the ML feature vector and the result's components."""

from __future__ import annotations

import math
from collections.abc import Sequence

from engine.config import SESSIONS, WEIGHTS
from engine.planning import EntryPlan, zones_at_entry
from engine.prices import format_price
from engine.signal_model import Component
from engine.tables import liquidity_name, snapshot_levels, zone_component_name, zone_term
from engine.views import Level, Snapshot, ZoneKind
from ict_modules.core import Direction

ENTRY_MODEL_POINTS = {
    "sweep_mss": 15.0,
    "ote_pullback": 12.0,
    "breaker_retest": 12.0,
    "zone_retracement": 8.0,
}
STRUCTURE_POINTS = {"MSS": 15.0, "CHOCH": 12.0, "BOS": 10.0}


def entry_model_of(snap: Snapshot, d: Direction, plan: EntryPlan, in_ote: bool) -> tuple[str, int | None]:
    """Step 3: the entry model. The entry_models kind when the entry zone came from one of its models (a live model
    of ``d`` confirmed within ``entry_model_max_age`` bars), else classified from the parts: sweep -> MSS/CHOCH ->
    FVG/OB entry = "sweep_mss"; entry in the OTE of a leg in the trend = "ote_pullback"; a breaker =
    "breaker_retest"; any other zone in the trend = "zone_retracement"."""
    if plan.source in ENTRY_MODEL_POINTS:
        return plan.source, None
    last = snap.structure.last
    swept = any(f is d for f, _, _ in snap.sweeps)
    if (
        swept
        and last is not None
        and last.direction is d
        and last.kind in ("MSS", "CHOCH")
        and plan.zone is not None
        and plan.zone.kind in (ZoneKind.FVG, ZoneKind.ORDER_BLOCK, ZoneKind.SIBI_SSIB)
    ):
        return "sweep_mss", None
    if in_ote:
        return "ote_pullback", None
    if plan.zone is not None and plan.zone.kind is ZoneKind.BREAKER:
        return "breaker_retest", None
    return "zone_retracement", None


def confidence_of(
    snap: Snapshot, d: Direction, plan: EntryPlan, model: str, agree: int, in_discount: bool, in_ote: bool
) -> tuple[tuple[str, float], ...]:
    """Step 11: points per WEIGHTS row (see docs/engine.md)."""
    n_htf = len(snap.htf_bias)
    neutral = sum(1 for _, b in snap.htf_bias if b is None)
    alignment = (agree + 0.5 * neutral) / n_htf if n_htf else 0.5
    last = snap.structure.last
    structure = STRUCTURE_POINTS.get(last.kind, 10.0) if last is not None and last.direction is d else 0.0
    kinds = {z.kind for z in zones_at_entry(snap, d, plan) if z.kind is not ZoneKind.SMZ}
    parts = {
        "htf_alignment": WEIGHTS["htf_alignment"] * alignment,
        "structure": structure,
        "entry_model": ENTRY_MODEL_POINTS.get(model, 10.0),
        "zone_confluence": min(WEIGHTS["zone_confluence"], 5.0 * len(kinds)),
        "liquidity_sweep": WEIGHTS["liquidity_sweep"] if any(f is d for f, _, _ in snap.sweeps) else 0.0,
        "displacement": WEIGHTS["displacement"] if any(x is d for x, _, _ in snap.displacements) else 0.0,
        "premium_discount_ote": 5.0 * in_discount + 5.0 * in_ote,
        "killzone": WEIGHTS["killzone"] if snap.killzone else 0.0,
        "whale": WEIGHTS["whale"] if any(x is d for x, _ in snap.whales) else 0.0,
    }
    return tuple((k, round(min(v, WEIGHTS[k]), 2)) for k, v in parts.items())


FEATURES: tuple[str, ...] = (
    *(f"conf_{k}" for k in WEIGHTS),
    "direction",
    "htf_agree_ratio",
    "htf_oppose_ratio",
    "risk_atr",
    "entry_distance_atr",
    "entry_zone_width_atr",
    "tp1_r",
    "tp2_r",
    "tp3_r",
    "atr_pct",
    "range_position",
    "market_entry",
    "zones_with_direction",
    "zones_against_direction",
    "bars_since_structure",
    "displacement_max_atr",
    *(f"session_{s}" for s in SESSIONS),
)


def features_of(
    snap: Snapshot,
    d: Direction,
    plan: EntryPlan,
    sl: float,
    tps: Sequence[float],
    breakdown: Sequence[tuple[str, float]],
    agree: int,
    oppose: int,
) -> tuple[tuple[str, float], ...]:
    """The ML feature vector: ``FEATURES`` in order, finite floats (see docs/engine.md for definitions)."""
    a = snap.atr
    risk = abs(plan.entry - sl)
    n_htf = len(snap.htf_bias) or 1
    if snap.dealing_range is not None:
        lo, hi = snap.dealing_range
        position = min(max((plan.entry - lo) / (hi - lo), -1.0), 2.0)
    else:
        position = 0.5
    last = snap.structure.last
    disp = [b for x, b, _ in snap.displacements if x is d]
    values = {
        **{f"conf_{k}": v for k, v in breakdown},
        "direction": float(d.sign),
        "htf_agree_ratio": agree / n_htf,
        "htf_oppose_ratio": oppose / n_htf,
        "risk_atr": risk / a,
        "entry_distance_atr": abs(snap.close - plan.entry) / a,
        "entry_zone_width_atr": (plan.high - plan.low) / a,
        "tp1_r": abs(tps[0] - plan.entry) / risk,
        "tp2_r": abs(tps[1] - plan.entry) / risk,
        "tp3_r": abs(tps[2] - plan.entry) / risk,
        "atr_pct": 100.0 * a / snap.close,
        "range_position": position,
        "market_entry": float(plan.market),
        "zones_with_direction": float(sum(1 for z in snap.zones if z.direction is d)),
        "zones_against_direction": float(sum(1 for z in snap.zones if z.direction is not d)),
        "bars_since_structure": float(min(snap.bar - last.index, 200)) if last is not None else 200.0,
        "displacement_max_atr": max(disp, default=0.0),
        **{f"session_{s}": float(snap.session == s) for s in SESSIONS},
    }
    return tuple((name, round(float(values[name]), 6)) for name in FEATURES)


def fmt_price(price: float) -> str:
    """Compact price for component details (formatting.py renders the user-facing numbers)."""
    return format_price(price)


def range_text(subject: str, price: float, lo: float, hi: float) -> str:
    """Where ``price`` (the entry of a trade, else the last close) sits in the dealing range ``lo``-``hi``:
    discount below its equilibrium (50%), premium above, equilibrium at it; the same split the score uses."""
    eq = (lo + hi) / 2
    if math.isclose(price, eq, rel_tol=1e-9):
        where = "at equilibrium"
    else:
        where = "in discount" if price < eq else "in premium"
    share = (price - lo) / (hi - lo) if hi > lo else 0.5
    span = f"{fmt_price(lo)}-{fmt_price(hi)} (EQ {fmt_price(eq)})"
    if not 0.0 <= share <= 1.0:
        return f"{subject} {where}, {'below' if share < 0 else 'above'} the dealing range {span}"
    return f"{subject} {where}: {share:.0%} of the dealing range {span}"


def target_names(targets: Sequence[tuple[float, str]], levels: Sequence[Level]) -> list[str]:
    """Each target's name as the chart names its level (:func:`liquidity_name`); a "+1R" target keeps the (renamed)
    name of the target it extends."""
    names: list[str] = []
    for level, label in targets:
        if label.endswith(" +1R") and names:
            names.append(f"{names[-1].split(' +')[0]} +1R")
        else:
            names.append(liquidity_name(level, levels) or label)
    return names


def components_of(
    snap: Snapshot, d: Direction | None, plan: EntryPlan | None, targets: Sequence[tuple[float, str]]
) -> tuple[Component, ...]:
    out: list[Component] = []
    last = snap.structure.last
    if last is not None:
        out.append(
            Component(
                last.kind.lower(),
                f"{last.direction.value} {last.kind} through {fmt_price(last.level)}",
                last.direction.value,
                last.level,
                last.level,
            )
        )
    if plan is not None and d is not None:
        for z in zones_at_entry(snap, d, plan):
            out.append(
                Component(
                    zone_component_name(z),
                    f"{z.direction.value} {zone_term(z)} {fmt_price(z.bottom)}-{fmt_price(z.top)}",
                    z.direction.value,
                    z.top,
                    z.bottom,
                )
            )
    sweeps = [x for x in snap.sweeps if d is None or x[0] is d]
    for favours, level, _ in sweeps[-1:]:
        side = "sell-side" if favours is Direction.BULLISH else "buy-side"
        out.append(
            Component("liquidity_sweep", f"{side} liquidity swept at {fmt_price(level)}", favours.value, level, level)
        )
    displacements = [x for x in snap.displacements if d is None or x[0] is d]
    for x, body, _ in displacements[-1:]:
        out.append(Component("displacement", f"{x.value} displacement {body:.1f} ATR", x.value))
    if snap.ote is not None:
        o = snap.ote
        out.append(
            Component(
                "ote",
                f"{o.direction.value} OTE 62-79% {fmt_price(o.bottom)}-{fmt_price(o.top)}",
                o.direction.value,
                o.top,
                o.bottom,
            )
        )
    if snap.dealing_range is not None:
        lo, hi = snap.dealing_range
        subject = ("entry", plan.entry) if plan is not None else ("price", snap.close)
        out.append(Component("premium_discount", range_text(*subject, lo, hi), None, hi, lo))
    for (level, _), name in zip(targets, target_names(targets, snapshot_levels(snap)), strict=True):
        out.append(Component("target", f"{name} {fmt_price(level)}", None, level, level))
    for x, _ in [w for w in snap.whales if d is None or w[0] is d][-1:]:
        out.append(Component("whale", f"{x.value} whale activity", x.value))
    if snap.session:
        out.append(Component("killzone", f"{snap.session} killzone", None))
    return tuple(out)
