"""Benchmark of the 17 ICT detectors, and a side-by-side with the ``smartmoneyconcepts`` package.

    .venv/bin/pip install -r requirements-bench.txt     # or: python3 dev.py bench
    .venv/bin/python bench/bench_modules.py [--quick]

Prints a table (not a test: nothing here asserts a time). Sections:
1. every module of ``ict_modules`` over 10k and 100k real candles (modules that do not exist yet, or whose entry
   point needs inputs other than one candle frame, are listed as skipped with the reason);
2. all modules together, one after the other, over 100k candles;
3. the concepts both projects have (swing points, FVG with mitigation, BOS/CHOCH, order blocks, liquidity), timed
   in ONE process on the same candles, with the ratio smc/ours and how the results differ;
4. one line per concept: ``RESULT concept=<name> candles=100000 ours_s=<t> smc_s=<t> ratio=<smc/ours>``.

Candles: the bundled real Binance series of data/sample are chained end to end (BTCUSDT-1m first, then
ETHUSDT-5m, BTCUSDT-15m, ETHUSDT-15m, BTCUSDT-1h, ETHUSDT-1h, SOLUSDT-1h, ...) until the count is reached. Each
series is multiplied by one factor so that its first open equals the previous series' last close (volume divided
by it), so every candle's shape is real and the price path has no jumps; the timeline is re-stamped as
consecutive 1-minute bars from the first candle's open time (day and week boundaries then fall every 1440 and
10080 bars). The 10k set is the first 10k of the chain (pure BTCUSDT 1m).

Timing: ``time.perf_counter``; ours is the best of ``--repeat`` (5) runs, smc the best of ``--smc-repeat`` (2) runs
after a warm-up call of each smc function on a 2,000-candle frame. Each smc concept time includes its
``swing_highs_lows`` call, as each of ours recomputes its swings. smc returns per-bar arrays; where ours has an
array stage (swing pivots: ``pivot_mask``; liquidity: ``pool_arrays``) that is the side compared in the RESULT
line, and the object API is printed on the line below it. FVG, BOS/CHOCH and OB are compared on our object APIs.
smartmoneyconcepts 0.0.27 declares numba as a dependency but ``smc.py`` uses no ``@njit`` (checked in the
installed source), so the warm-up only loads pandas/numpy code paths; there is no JIT to compile.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import inspect
import io
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ict_modules.core import validate_candles  # noqa: E402

MODULES = (
    "swing_points",
    "market_structure",
    "order_block_detector",
    "breaker_block_detector",
    "fvg_detector",
    "sibi_ssib_detector",
    "displacement_detector",
    "liquidity_map",
    "ilp_detector",
    "ict_whale_detector",
    "smz_mapper",
    "premium_discount",
    "ote_calculator",
    "mtf_analyzer",
    "session_analyzer",
    "entry_models",
    "key_levels",
)
CHAIN = (
    "BTCUSDT-1m",
    "ETHUSDT-5m",
    "BTCUSDT-15m",
    "ETHUSDT-15m",
    "BTCUSDT-1h",
    "ETHUSDT-1h",
    "SOLUSDT-1h",
    "BTCUSDT-4h",
    "ETHUSDT-4h",
    "SOLUSDT-4h",
)
SWING_LENGTH = 10  # pivot length used on both sides of the comparison


# ----------------------------------------------------------------------------------------------- candles
def read_series(name: str) -> pd.DataFrame:
    path = ROOT / "data" / "sample" / f"{name}.csv.gz"
    frame = pd.read_csv(path)
    frame.index = pd.to_datetime(frame.pop("open_time"), unit="ms", utc=True)
    return validate_candles(frame)


def chained_candles(count: int) -> pd.DataFrame:
    """``count`` real candles chained end to end (see module docstring)."""
    parts, have, last_close = [], 0, None
    for name in CHAIN:
        frame = read_series(name)
        values = frame.to_numpy(copy=True)
        if last_close is not None:
            factor = last_close / values[0, 0]
            values[:, :4] *= factor
            values[:, 4] /= factor
        take = values[: count - have]
        parts.append(take)
        have += len(take)
        last_close = take[-1, 3]
        if have >= count:
            break
    if have < count:
        raise SystemExit(f"the sample data holds only {have} candles")
    start = read_series(CHAIN[0]).index[0]
    index = pd.date_range(start, periods=count, freq="1min", tz="UTC")
    frame = pd.DataFrame(np.vstack(parts), index=index, columns=["open", "high", "low", "close", "volume"])
    return validate_candles(frame)


# ----------------------------------------------------------------------------------------------- our modules
SPECIAL = {"swing_points": "swing_structure"}  # both swing sets, as the engine uses them


def resample(candles: pd.DataFrame, rule: str) -> pd.DataFrame:
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    return candles.resample(rule, label="left", closed="left").agg(agg).dropna()


def mtf_adapter(module) -> Callable[[pd.DataFrame], object]:
    """analyze_mtf on the chain as the 1m entry frame plus its higher timeframes (5m, 15m) resampled from it;
    the resampling is done once per frame, outside the timed call."""
    frames: dict[int, dict[str, pd.DataFrame]] = {}

    def run(candles: pd.DataFrame) -> object:
        key = id(candles)
        if key not in frames:
            frames[key] = {"1m": candles, "5m": resample(candles, "5min"), "15m": resample(candles, "15min")}
        return module.analyze_mtf(frames[key], entry_timeframe="1m")

    run.__name__ = "analyze_mtf (1m+5m+15m)"
    return run


def entry_point(module) -> tuple[Callable | None, str]:
    """The module's detector called on one candle frame, or (None, why not)."""
    name = module.__name__.rsplit(".", 1)[-1]
    if name == "mtf_analyzer" and hasattr(module, "analyze_mtf"):
        fn = mtf_adapter(module)
        return fn, fn.__name__
    if name in SPECIAL:
        fn = getattr(module, SPECIAL[name])
    else:
        fns = [
            obj
            for attr, obj in vars(module).items()
            if attr.startswith("detect_") and inspect.isfunction(obj) and obj.__module__ == module.__name__
        ]
        if not fns:
            return None, "no detect_* function"
        fn = fns[0]
    params = list(inspect.signature(fn).parameters.values())
    required = [
        p.name
        for p in params[1:]
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        return None, f"{fn.__name__} needs {', '.join(required)}"
    return fn, fn.__name__


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def size_of(result: object) -> str:
    if isinstance(result, list | tuple):
        return str(len(result))
    if dataclasses.is_dataclass(result):
        parts = [
            f"{f.name}={len(getattr(result, f.name))}"
            for f in dataclasses.fields(result)
            if isinstance(getattr(result, f.name), list | tuple)
        ]
        return " ".join(parts) or type(result).__name__
    if isinstance(result, np.ndarray | pd.DataFrame | pd.Series):
        return f"{type(result).__name__}[{len(result)}]"
    return type(result).__name__


def bench_modules(
    small: pd.DataFrame, large: pd.DataFrame, repeat: int
) -> tuple[dict[str, Callable], dict[str, object]]:
    """Section 1: each module alone. Returns the runnable entry points and their results at ``large``, by name."""
    print(f"\n== 1. every module ({len(small):,} and {len(large):,} candles, best of {repeat}) ==")
    print(f"{'module':<24} {'function':<28} {'10k s':>9} {'100k s':>9}  objects at 100k")
    runnable: dict[str, Callable] = {}
    results: dict[str, object] = {}
    for name in MODULES:
        try:
            module = importlib.import_module(f"ict_modules.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ict_modules.{name}":
                print(f"{name:<24} {'-':<28} {'skipped: module does not exist yet':>20}")
                continue
            raise
        fn, label = entry_point(module)
        if fn is None:
            print(f"{name:<24} {'-':<28} skipped: {label}")
            continue
        try:
            t_small, _ = best_of(lambda fn=fn: fn(small), repeat)
            t_large, result = best_of(lambda fn=fn: fn(large), repeat)
        except Exception as exc:  # a module under construction must not stop the benchmark
            print(f"{name:<24} {label:<28} failed: {type(exc).__name__}: {exc}")
            continue
        print(f"{name:<24} {label:<28} {t_small:>9.4f} {t_large:>9.4f}  {size_of(result)}")
        runnable[name] = fn
        results[name] = result
    return runnable, results


def together(candles: pd.DataFrame, mtf: Callable[[pd.DataFrame], object]) -> dict[str, object]:
    """All 17 modules over one frame, each detector computed ONCE and its result passed to the detectors that
    build on it (as the engine's ``REGISTRY`` does), with the same parameters as the standalone rows of section 1,
    so every module's output is the same objects. Shared: the candle tables (range-search sparse tables), both
    swing sets (structure, breaker sweeps), the internal structure (order blocks, entry models), the swing
    structure (entry models' trend), order blocks (breakers, SMZ, entry models), breakers (SMZ, entry models), FVGs
    (as arrays, to SMZ and entry models), whale blocks (SMZ), OTE setups (entry models) and dealing ranges (ILP).
    ``mtf`` is the
    analyze_mtf adapter of section 1 (higher timeframes resampled outside the timed call)."""
    from ict_modules.breaker_block_detector import detect_breaker_blocks
    from ict_modules.displacement_detector import detect_displacement
    from ict_modules.entry_models import detect_entry_models
    from ict_modules.fvg_detector import fvg_arrays, fvg_objects
    from ict_modules.ict_whale_detector import detect_whale_blocks
    from ict_modules.ilp_detector import detect_internal_liquidity
    from ict_modules.key_levels import detect_key_levels
    from ict_modules.liquidity_map import detect_liquidity
    from ict_modules.market_structure import Pivots, StructureLevel, candle_tables, structure_arrays
    from ict_modules.order_block_detector import detect_order_blocks
    from ict_modules.ote_calculator import detect_ote
    from ict_modules.premium_discount import detect_dealing_ranges
    from ict_modules.session_analyzer import detect_sessions
    from ict_modules.sibi_ssib_detector import detect_sibi_ssib
    from ict_modules.smz_mapper import detect_smz
    from ict_modules.swing_points import swing_structure

    tables = candle_tables(candles)
    swings = swing_structure(candles)
    internal_pivots, swing_pivots = Pivots.from_points(swings.internal), Pivots.from_points(swings.swing)
    trend = structure_arrays(candles, level=StructureLevel.SWING, pivots=swing_pivots, tables=tables)
    internal = structure_arrays(candles, level=StructureLevel.INTERNAL, pivots=internal_pivots, tables=tables)
    order_blocks = detect_order_blocks(candles, events=internal, tables=tables)
    breakers = detect_breaker_blocks(candles, order_blocks=order_blocks, swings=swing_pivots, tables=tables)
    gaps = fvg_arrays(candles)  # the FVG module's arrays: its objects and the SMZ / entry-model inputs
    fvgs = fvg_objects(gaps)
    whales = detect_whale_blocks(candles)
    ranges = detect_dealing_ranges(candles)
    ote = detect_ote(candles)
    return {
        "swing_points": swings,
        "market_structure": trend.events(),
        "order_block_detector": order_blocks,
        "breaker_block_detector": breakers,
        "fvg_detector": fvgs,
        "sibi_ssib_detector": detect_sibi_ssib(candles),
        "displacement_detector": detect_displacement(candles),
        "liquidity_map": detect_liquidity(candles),
        "ilp_detector": detect_internal_liquidity(candles, ranges=ranges),
        "ict_whale_detector": whales,
        "smz_mapper": detect_smz(
            candles, order_blocks=order_blocks, breakers=breakers, fvgs=gaps, whales=whales, tables=tables
        ),
        "premium_discount": ranges,
        "ote_calculator": ote,
        "mtf_analyzer": mtf(candles),
        "session_analyzer": detect_sessions(candles),
        "entry_models": detect_entry_models(
            candles,
            events=internal,
            trend_events=trend,
            order_blocks=order_blocks,
            breakers=breakers,
            fvgs=gaps,
            ote_setups=ote,
            tables=tables,
        ),
        "key_levels": detect_key_levels(candles),
    }


def same(a: object, b: object) -> bool:
    """Deep equality that also compares numpy arrays and pandas objects inside dataclasses."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, pd.DataFrame | pd.Series | pd.Index):
        return a.equals(b)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def fresh_best_of(fn: Callable[[], object], repeat: int, *, collect: bool = True) -> tuple[float, object]:
    """:func:`best_of` for runs that build hundreds of thousands of objects: each run starts after the previous
    run's result is dropped and a full garbage collection, so the cyclic GC passes inside a run scan what that run
    creates (plus the process's existing objects), not the previous run's leftovers. ``collect=False`` times the
    same runs with the cyclic GC disabled (to report its share)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None
        gc.collect()
        if not collect:
            gc.disable()
        try:
            t0 = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - t0)
        finally:
            gc.enable()
    return best, result


def bench_together(large: pd.DataFrame, runnable: dict[str, Callable], alone: dict[str, object], repeat: int) -> None:
    """Section 2: the modules one after the other as standalone calls, then together with shared inputs."""

    def run_all() -> list[object]:
        return [fn(large) for fn in runnable.values()]

    t_each, _ = fresh_best_of(run_all, repeat)
    print(f"\n== 2. all modules over {len(large):,} candles, best of {repeat} (cyclic GC on) ==")
    print(f"{len(runnable)} standalone calls one after the other (each recomputes its inputs): {t_each:.3f} s")
    if set(runnable) != set(MODULES):
        print("together (shared inputs): skipped, not every module is runnable")
        return
    t_all, shared = fresh_best_of(lambda: together(large, runnable["mtf_analyzer"]), repeat)
    differ = [name for name in MODULES if not same(shared[name], alone[name])]
    verdict = "yes" if not differ else "NO, differ: " + ", ".join(differ)
    shared = None
    t_nogc, _ = fresh_best_of(lambda: together(large, runnable["mtf_analyzer"]), repeat, collect=False)
    print(f"all {len(MODULES)} together, each detector computed once and passed on (as the engine): {t_all:.3f} s")
    print(f"  same objects as the standalone calls: {verdict}")
    print(f"  the same with the cyclic GC disabled: {t_nogc:.3f} s (so GC passes take {t_all - t_nogc:.3f} s)")


# ----------------------------------------------------------------------------------------------- side by side
def smc_module():
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a banner on import
        from smartmoneyconcepts import smc
    return smc


def agreement(theirs: set, ours: set) -> str:
    both = len(theirs & ours)
    t = f"{both / len(theirs):.0%}" if theirs else "n/a"
    o = f"{both / len(ours):.0%}" if ours else "n/a"
    return f"common={both} ({t} of theirs, {o} of ours)"


def compare(large: pd.DataFrame, repeat: int, smc_repeat: int) -> list[tuple[str, float, float]]:
    smc = smc_module()
    ohlc = large.reset_index(drop=True)
    warm = ohlc.iloc[:2000].reset_index(drop=True)
    t0 = time.perf_counter()
    w_swings = smc.swing_highs_lows(warm, swing_length=SWING_LENGTH)
    smc.fvg(warm)
    smc.bos_choch(warm, w_swings)
    smc.ob(warm, w_swings)
    smc.liquidity(warm, w_swings)
    print(f"\n== 3. side by side with smartmoneyconcepts {smc.__version__} ({len(large):,} candles, one process) ==")
    print(f"smc warm-up on 2,000 candles: {time.perf_counter() - t0:.2f} s (no numba JIT in smc 0.0.27)")
    print(f"{'concept':<12} {'ours s':>9} {'smc s':>9} {'ratio':>8}")
    results: list[tuple[str, float, float]] = []
    notes: list[str] = []

    def row(concept: str, t_ours: float, t_smc: float) -> None:
        results.append((concept, t_ours, t_smc))
        print(f"{concept:<12} {t_ours:>9.4f} {t_smc:>9.3f} {t_smc / t_ours:>7.0f}x", flush=True)

    # swing points: smc returns per-bar arrays, so the like-for-like side of ours is the pivot masks (the same
    # arrays); the public object API (detect_swing_points, SwingPoint dataclasses) is timed and printed too.
    from ict_modules.swing_points import SwingKind, detect_swing_points, pivot_mask

    high, low = large["high"].to_numpy(), large["low"].to_numpy()

    def swing_arrays():
        return (
            np.flatnonzero(pivot_mask(high, left=SWING_LENGTH, right=SWING_LENGTH, highs=True)),
            np.flatnonzero(pivot_mask(low, left=SWING_LENGTH, right=SWING_LENGTH, highs=False)),
        )

    t_ours, _ = best_of(swing_arrays, repeat)
    t_obj, ours = best_of(lambda: detect_swing_points(large, left=SWING_LENGTH, right=SWING_LENGTH), repeat)
    t_smc, swings = best_of(lambda: smc.swing_highs_lows(ohlc, swing_length=SWING_LENGTH), smc_repeat)
    row("swings", t_ours, t_smc)
    print(
        f"{'  (objects)':<12} {t_obj:>9.4f} {t_smc:>9.3f} {t_smc / t_obj:>7.0f}x"
        "   detect_swing_points -> list of SwingPoint"
    )
    hl = swings["HighLow"].to_numpy()
    theirs_set = {(int(v), i) for i, v in enumerate(hl) if v == v and 0 < i < len(hl) - 1}
    ours_set = {(1 if p.kind is SwingKind.HIGH else -1, p.index) for p in ours}
    raw_high = ohlc["high"] == ohlc["high"].shift(-SWING_LENGTH).rolling(2 * SWING_LENGTH).max()
    raw_low = ohlc["low"] == ohlc["low"].shift(-SWING_LENGTH).rolling(2 * SWING_LENGTH).min()
    notes.append(
        f"swings: theirs {len(theirs_set)} (from {int(raw_high.sum() + raw_low.sum())} raw pivots after removing "
        f"consecutive same-kind ones, plus 2 forced end points), ours {len(ours_set)}; "
        + agreement(theirs_set, ours_set)
        + f"; theirs are labelled at the pivot bar from {SWING_LENGTH} later bars, ours confirmed {SWING_LENGTH} "
        "bars later"
    )

    # FVG
    try:
        fvg_mod = importlib.import_module("ict_modules.fvg_detector")
        fvg_fn = next(
            f
            for a, f in vars(fvg_mod).items()
            if a.startswith("detect_") and getattr(f, "__module__", "") == fvg_mod.__name__
        )
        t_ours, ours_fvg = best_of(lambda: fvg_fn(large), repeat)
        t_smc, theirs_fvg = best_of(lambda: smc.fvg(ohlc), smc_repeat)
        row("fvg", t_ours, t_smc)
        notes.append(fvg_differences(theirs_fvg, ours_fvg, fvg_fn(large, min_size_atr=0.0)))
    except (ModuleNotFoundError, StopIteration):
        print(f"{'fvg':<12} skipped: ict_modules.fvg_detector does not exist yet")

    # BOS / CHOCH
    from ict_modules.market_structure import StructureKind, detect_market_structure

    t_ours, events = best_of(lambda: detect_market_structure(large, level="swing", swing_length=SWING_LENGTH), repeat)
    t_smc, bc = best_of(lambda: smc.bos_choch(ohlc, smc.swing_highs_lows(ohlc, swing_length=SWING_LENGTH)), smc_repeat)
    row("bos_choch", t_ours, t_smc)
    notes.append(structure_differences(bc, events, StructureKind))

    # order blocks
    from ict_modules.order_block_detector import detect_order_blocks

    t_ours, blocks = best_of(lambda: detect_order_blocks(large, level="swing", swing_length=SWING_LENGTH), repeat)
    t_smc, obs = best_of(lambda: smc.ob(ohlc, smc.swing_highs_lows(ohlc, swing_length=SWING_LENGTH)), smc_repeat)
    row("ob", t_ours, t_smc)
    theirs_ob = {(int(v), int(i)) for i, v in enumerate(obs["OB"].to_numpy()) if v == v}
    ours_ob = {(b.direction.sign, b.index) for b in blocks}
    notes.append(
        f"order blocks: theirs {len(theirs_ob)} (bull {sum(1 for d, _ in theirs_ob if d > 0)}), ours {len(ours_ob)} "
        f"(bull {sum(1 for d, _ in ours_ob if d > 0)}); same candle and direction: " + agreement(theirs_ob, ours_ob)
    )

    # liquidity: smc's concept is equal-level groups of swing points with a sweep bar, returned as per-bar arrays;
    # the like-for-like side of ours is the array stage of the swing and equal pools (no previous day/week).
    # The full public detector (objects, day/week pools included) is timed and printed too.
    from ict_modules.liquidity_map import PoolKind, detect_liquidity, pool_arrays

    t_ours, _ = best_of(
        lambda: pool_arrays(large, swing_length=SWING_LENGTH, previous_day=False, previous_week=False), repeat
    )
    t_obj, pools = best_of(lambda: detect_liquidity(large, swing_length=SWING_LENGTH), repeat)
    t_smc, liq = best_of(lambda: smc.liquidity(ohlc, smc.swing_highs_lows(ohlc, swing_length=SWING_LENGTH)), smc_repeat)
    row("liquidity", t_ours, t_smc)
    print(
        f"{'  (objects)':<12} {t_obj:>9.4f} {t_smc:>9.3f} {t_smc / t_obj:>7.0f}x"
        "   detect_liquidity -> list of LiquidityPool, with previous day/week pools"
    )
    notes.append(liquidity_differences(liq, pools, PoolKind, ohlc))

    print("\nHow the results differ (same candles):")
    for note in notes:
        print(f"- {note}")
    return results


def fvg_differences(theirs: pd.DataFrame, ours: list, ours_all: list) -> str:
    """smc marks the middle candle c2 and needs its colour to match; ours names c2 as ``middle_index``."""
    sign, mitigated = theirs["FVG"].to_numpy(), theirs["MitigatedIndex"].to_numpy()
    theirs_map = {(int(v), i): int(m) for i, (v, m) in enumerate(zip(sign, mitigated, strict=True)) if v == v}
    ours_map = {(o.direction.sign, o.middle_index): o.touched_at for o in ours}
    all_map = {(o.direction.sign, o.middle_index): o.touched_at for o in ours_all}
    common = set(theirs_map) & set(all_map)
    same_touch = sum(1 for k in common if (theirs_map[k] or None) == all_map[k])
    return (
        f"fvg: theirs {len(theirs_map)} (middle candle must close in the gap's direction, no minimum size, "
        f"labelled on c2 although c3 is needed: 1 bar lookahead), ours {len(ours_map)} with the default minimum "
        f"size 0.1 ATR; same c2 and direction: {agreement(set(theirs_map), set(ours_map))}; with min_size_atr=0 "
        f"ours {len(all_map)}: {agreement(set(theirs_map), set(all_map))} (ours then also has the gaps whose c2 "
        f"closes against the gap); mitigation (their MitigatedIndex = first touch from c3+1 on = our touched_at) "
        f"equal for {same_touch} of {len(common)} common gaps"
    )


def structure_differences(bc: pd.DataFrame, events: list, kinds) -> str:
    bos, choch, broken = (bc[c].to_numpy() for c in ("BOS", "CHOCH", "BrokenIndex"))
    t_bos = int(np.sum(bos == bos))
    t_choch = int(np.sum(choch == choch))
    theirs_break = {
        (int(b if b == b else c), int(k))
        for b, c, k in zip(bos, choch, broken, strict=True)
        if k == k and (b == b or c == c)
    }
    o_bos = sum(1 for e in events if e.kind is kinds.BOS)
    o_rev = sum(1 for e in events if e.kind is not kinds.BOS)
    ours_break = {(e.direction.sign, e.confirmed_at) for e in events}
    return (
        f"bos/choch: theirs BOS {t_bos} CHOCH {t_choch} (a 4-swing pattern, kept only if broken later and not "
        f"overtaken by a later break: decided with future bars), ours BOS {o_bos} CHOCH/MSS {o_rev} (every first "
        f"close beyond a confirmed swing); same breaking bar and direction: " + agreement(theirs_break, ours_break)
    )


def liquidity_differences(liq: pd.DataFrame, pools: list, kinds, ohlc: pd.DataFrame) -> str:
    side, end, swept = (liq[c].to_numpy() for c in ("Liquidity", "End", "Swept"))
    groups = [(int(s), i, int(e)) for i, (s, e) in enumerate(zip(side, end, strict=True)) if s == s]
    equal = [p for p in pools if p.kind in (kinds.EQUAL_HIGHS, kinds.EQUAL_LOWS)]
    members = {(1 if p.kind is kinds.EQUAL_HIGHS else -1, i) for p in equal for i in p.indices}
    hit = sum(1 for s, i, _ in groups if (s, i) in members)
    band = float(ohlc["high"].max() - ohlc["low"].min()) * 0.01
    return (
        f"liquidity: theirs {len(groups)} equal-level groups (band = 1% of the WHOLE frame's range = {band:.4g} "
        f"price units, known only at the end; {int(np.sum(swept > 0))} swept = high beyond level + band), ours "
        f"{len(equal)} equal pools (band {0.1} ATR at confirmation) among {len(pools)} pools (swing, equal, "
        f"previous day/week), {sum(1 for p in pools if p.swept_at is not None)} swept (wick through, close back) "
        f"and {sum(1 for p in pools if p.run_at is not None)} run; their groups whose first swing is in one of our "
        f"equal pools of the same side: {hit} of {len(groups)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of ours; the best counts")
    parser.add_argument("--smc-repeat", type=int, default=2, help="runs of smc; the best counts")
    parser.add_argument("--no-smc", action="store_true", help="skip the side-by-side")
    args = parser.parse_args(argv)
    large = chained_candles(args.candles)
    small = large.iloc[: args.small]
    print(f"candles: {len(large):,} chained real candles ({', '.join(CHAIN[:4])}, ...), see the docstring")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} cpus, load average {load:.2f} at start (other processes inflate the times)")
    runnable, alone = bench_modules(small, large, args.repeat)
    bench_together(large, runnable, alone, args.repeat)
    if args.no_smc:
        return 0
    results = compare(large, args.repeat, args.smc_repeat)
    print()
    for concept, t_ours, t_smc in results:
        print(
            f"RESULT concept={concept} candles={len(large)} ours_s={t_ours:.6f} smc_s={t_smc:.6f} "
            f"ratio={t_smc / t_ours:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
