"""The snapshot: every detector's state as known at the close of one entry bar (``snapshot_at``), plus the
engine's own killzone table for when session_analyzer is unavailable."""

from __future__ import annotations

import bisect
import logging
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from engine.config import SESSIONS, EngineConfig
from engine.registry import Prepared
from engine.tables import (
    PoolTable,
    confirmed_key,
    htf_trend,
    obj_direction,
    recent_events,
    state_by,
    structure_at,
    zone_bounds,
)
from engine.views import EntryModelView, Level, OTEView, Snapshot, Zone
from ict_modules.core import Direction
from ict_modules.ote_calculator import active_ote
from ict_modules.premium_discount import dealing_range_at

logger = logging.getLogger(__name__)

NEW_YORK = ZoneInfo("America/New_York")


def killzone_of(moment: pd.Timestamp) -> str:
    """ICT killzone of ``moment`` in New York local time (DST-aware), or "" (the session_analyzer table).

    asia 20:00-24:00, london 02:00-05:00, ny_am 07:00-10:00, london_close 10:00-12:00, ny_pm 13:30-16:00.
    """
    local = moment.tz_convert(NEW_YORK)
    minutes = local.hour * 60 + local.minute
    for name, start, end in (
        ("asia", 20 * 60, 24 * 60),
        ("london", 2 * 60, 5 * 60),
        ("ny_am", 7 * 60, 10 * 60),
        ("london_close", 10 * 60, 12 * 60),
        ("ny_pm", 13 * 60 + 30, 16 * 60),
    ):
        if start <= minutes < end:
            return name
    return ""


def _session_at(prep: Prepared, bar: int) -> str:
    """Session name (one of SESSIONS or "") for the entry candle ``bar``, from session_analyzer when present."""
    raw = prep.raw.get(("session", prep.timeframe))
    if raw is not None:
        try:
            return _session_from_detector(raw, bar)
        except Exception:
            logger.exception("session_analyzer output unreadable; using the engine's killzone table")
    return killzone_of(prep.entry.index[bar])  # labelled by the candle's open time, as session_analyzer does


def _session_from_detector(raw: Any, bar: int) -> str:
    value = raw[bar]  # session_analyzer.SessionAnalysis: Session or None per bar
    name = str(getattr(value, "value", value) or "").lower()
    return name if name in SESSIONS else ""


# --------------------------------------------------------------------------------------------------------------
# snapshot: every step's input at one bar


def _swings(
    prep: Prepared, bar: int, keep: int = 8
) -> tuple[tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]:
    """The last ``keep`` confirmed internal swing lows and highs at ``bar`` as (bar, price), oldest first."""
    points = prep.raw.get(("swing_points", prep.timeframe)) or ()
    end = bisect.bisect_right(points, bar, key=confirmed_key)
    lows: list[tuple[int, float]] = []
    highs: list[tuple[int, float]] = []
    for p in reversed(points[max(0, end - 6 * keep) : end]):
        target = lows if p.kind.value == "low" else highs
        if len(target) < keep:
            target.append((p.index, p.price))
    return tuple(reversed(lows)), tuple(reversed(highs))


def _ote_and_range(
    prep: Prepared, bar: int, lows: tuple[tuple[int, float], ...], highs: tuple[tuple[int, float], ...]
) -> tuple[OTEView | None, tuple[float, float] | None]:
    """Step 8 inputs: the active OTE leg (ote_calculator) and the dealing range (premium_discount).

    Without those detectors: the leg and the range span the last confirmed internal swing low and high (the leg
    runs from the older to the newer), OTE = its 62%-79% retracement, extensions 0.27/0.62/1.0 of it beyond its end.
    """
    tf = prep.timeframe
    leg = dealing = None
    have_ote = ("ote", tf) in prep.raw
    have_range = ("premium_discount", tf) in prep.raw
    if have_ote:
        setup = active_ote(prep.raw[("ote", tf)], bar)
        if setup is not None:
            bullish = setup.direction is Direction.BULLISH
            leg = OTEView(
                setup.direction,
                setup.leg_low if bullish else setup.leg_high,
                setup.leg_high if bullish else setup.leg_low,
                float(setup.zone_top),
                float(setup.zone_bottom),
                tuple(float(t) for t in setup.targets),
            )
    if have_range:
        current = dealing_range_at(prep.raw[("premium_discount", tf)], bar)
        if current is not None:
            dealing = (float(current.low), float(current.high))
    if (have_ote and have_range) or not (lows and highs):
        return leg, dealing
    (li, lp), (hi, hp) = lows[-1], highs[-1]
    if hp <= lp:
        return leg, dealing
    if not have_range:
        dealing = (lp, hp)
    if not have_ote:
        span = hp - lp
        if li < hi:  # bullish leg low -> high: OTE below the high
            leg = OTEView(
                Direction.BULLISH,
                lp,
                hp,
                hp - 0.62 * span,
                hp - 0.79 * span,
                tuple(hp + e * span for e in (0.27, 0.62, 1.0)),
            )
        else:  # bearish leg high -> low: OTE above the low
            leg = OTEView(
                Direction.BEARISH,
                hp,
                lp,
                lp + 0.79 * span,
                lp + 0.62 * span,
                tuple(lp - e * span for e in (0.27, 0.62, 1.0)),
            )
    return leg, dealing


def _entry_models_at(raw: Any, bar: int, max_age: int) -> tuple[EntryModelView, ...]:
    """Entry models (entry_models) known at ``bar``, at most ``max_age`` bars old, neither invalidated nor expired."""
    out = []
    for m in recent_events(raw, bar, max_age):
        if any(state_by(m, n, bar) for n in ("invalidated_at", "expired_at")):
            continue
        bounds = zone_bounds(m)
        out.append(
            EntryModelView(
                str(m.kind.value),
                m.direction,
                int(m.confirmed_at),
                bounds[0] if bounds else None,
                bounds[1] if bounds else None,
                float(m.stop) if getattr(m, "stop", None) is not None else None,
            )
        )
    return tuple(out)


def _whales_at(raw: Any, bar: int, recent: int) -> tuple[tuple[Direction, int], ...]:
    out = []
    for w in recent_events(raw, bar, recent):
        direction = obj_direction(w)
        if direction is not None:
            out.append((direction, int(w.confirmed_at)))
    return tuple(out)


def snapshot_at(prep: Prepared, bar: int, config: EngineConfig) -> Snapshot:
    """Read every detector's state as known at the close of entry bar ``bar``."""
    tf = prep.timeframe
    frame = prep.entry
    close = float(frame["close"].iat[bar])
    a = float(prep.atr[tf][bar])
    raw = prep.raw
    # entry timeframe: internal structure (timing); higher timeframes: swing structure (bias)
    structure = structure_at(raw.get(("internal_structure", tf), raw.get(("market_structure", tf))), bar)
    htf_bias = []
    htf_above: tuple[Level, ...] = ()
    htf_below: tuple[Level, ...] = ()
    for htf in list(prep.frames)[1:]:
        hb = prep.htf_bar(htf, bar)
        if hb < 0 or not ({("market_structure", htf), ("internal_structure", htf)} & raw.keys()):
            htf_bias.append((htf, None))
            continue
        htf_bias.append((htf, htf_trend(raw.get(("market_structure", htf)), raw.get(("internal_structure", htf)), hb)))
        if not htf_above and not htf_below and ("liquidity_map", htf) in raw:
            htf_above, htf_below = prep.pool_tables[("liquidity_map", htf)].resting(close, hb, limit=4)
    zones: list[Zone] = []
    band = config.zone_range_atr * a
    for table in prep.zone_tables:
        zones += table.active(bar, close - band, close + band)
    empty = PoolTable.build(())
    pools = prep.pool_tables.get(("liquidity_map", tf), empty)
    above, below = pools.resting(close, bar)
    displacements = tuple(
        (d.direction, float(d.body_atr), int(d.index))
        for d in recent_events(raw.get(("displacement", tf)), bar, config.recent_bars)
    )
    lows, highs = _swings(prep, bar)
    ote, dealing = _ote_and_range(prep, bar, lows, highs)
    session = _session_at(prep, bar)
    return Snapshot(
        bar=bar,
        close=close,
        atr=a,
        structure=structure,
        htf_bias=tuple(htf_bias),
        zones=tuple(zones),
        pools_above=above,
        pools_below=below,
        htf_pools_above=htf_above,
        htf_pools_below=htf_below,
        sweeps=tuple(
            sorted(
                pools.sweeps(bar, config.recent_bars)
                + prep.pool_tables.get(("ilp", tf), empty).sweeps(bar, config.recent_bars),
                key=lambda x: x[2],
            )
        ),
        displacements=displacements,
        whales=_whales_at(raw.get(("whale", tf)), bar, config.recent_bars),
        entry_models=_entry_models_at(raw.get(("entry_models", tf)), bar, config.entry_model_max_age),
        ote=ote,
        dealing_range=dealing,
        swing_lows=lows,
        swing_highs=highs,
        session=session,
        killzone=bool(session),
    )
