"""Walk-forward evidence: choose on a training window only, trade the next test window, roll.

The engine's signals over the whole period are computed once (the engine is causal, so a signal at bar k is
the same whatever comes after it) and each is followed to its end once, along the full path (TP1, break-even,
TP2, TP3, stop). An exit plan only decides which shares close where on that path, so every plan's net R is
derived from the same path without a second simulation (``Candidate.exits``).

Per window (training window = the ``train_days`` before the test window opens):
1. only candidates whose trade closed before the test window opens are known (purged by close time);
2. every variant (a documented filter of signals) × exit plan is scored on them (mean net R; reported, never
   chosen on a test window); the best with at least ``GATE_MIN_TRADES`` trades is chosen, else no trading;
3. the setups kept are those whose training trades pass the gate (``evidence_stats.gate_passes``);
4. the test window's signals of the chosen variant are traded (one position per symbol × timeframe × setup
   at a time, as the live duplicate rule does), with the chosen plan; those of kept setups form the gated
   stream, what the gate would have sent at the time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from research.evidence_stats import gate_passes, setup_stats
from store.evidence import GATE_MIN_TRADES
from tracking.costs import Costs, Exit, exits_of, trade_r

ExitPlan = tuple[float, float, float]  # percent of the position closed at TP1, TP2, TP3
EXIT_PLANS: tuple[ExitPlan, ...] = ((0, 0, 100), (50, 30, 20), (50, 50, 0), (100, 0, 0), (34, 33, 33))


@dataclass(frozen=True, slots=True)
class Candidate:
    """One signal and the full path of its trade (plan-independent)."""

    symbol: str
    timeframe: str
    time: datetime  # close of the signal candle
    setup: str
    sign: int  # +1 long, -1 short
    entry: float  # planned entry (R is measured against |entry - sl|)
    sl: float
    targets: tuple[float, float, float]
    fill: float | None  # None: never filled (expired)
    market_entry: bool  # filled at market (slippage applies) rather than by a resting limit
    hits: tuple[datetime, ...]  # when TP1, TP2, TP3 were reached, in order
    exit_price: float | None  # where the rest of the position closed on the full path (stop, break-even, TP3)
    exit_time: datetime
    exit_reason: str  # SL, BE, TP3, EXPIRED, OPEN (data ended)
    confidence: float
    features: dict[str, float] = field(default_factory=dict, compare=False)
    signal: object = field(default=None, compare=False, repr=False)

    @property
    def filled(self) -> bool:
        return self.fill is not None

    @property
    def closed(self) -> bool:
        return self.exit_reason != "OPEN"

    def exits(self, plan: ExitPlan) -> list[Exit]:
        """The closes under ``plan``: the planned shares at the targets reached, the rest where the path ended."""
        final_market = self.exit_reason in ("SL", "BE")
        return exits_of(plan, self.targets, len(self.hits), self.exit_price, final_market=final_market)

    def r(self, plan: ExitPlan, costs: Costs) -> tuple[float, float]:
        """(gross R, net R) of the filled trade under ``plan`` and ``costs``."""
        return trade_r(
            sign=self.sign,
            entry=self.entry,
            sl=self.sl,
            fill=self.fill,
            exits=self.exits(plan),
            costs=costs,
            market_entry=self.market_entry,
        )

    def close_time(self, plan: ExitPlan) -> datetime:
        """When the position is flat under ``plan``."""
        done = 0
        for k, at in enumerate(self.hits):
            done += plan[k] if k < 2 else 100
            if done >= 100:
                return at
        return self.exit_time


@dataclass(frozen=True, slots=True)
class Variant:
    """A refinement tried as a filter of the engine's signals; ``name`` appears in every report."""

    name: str
    description: str
    keep: Callable[[Candidate], bool]


def _f(c: Candidate, name: str, default: float = 0.0) -> float:
    return c.features.get(name, default)


VARIANTS: tuple[Variant, ...] = (
    Variant("all", "every signal the engine issues", lambda c: True),
    Variant(
        "premium_discount",
        "longs only from discount, shorts only from premium (entry below / above the dealing range's 50%)",
        lambda c: (_f(c, "range_position", 0.5) < 0.5) if c.sign > 0 else (_f(c, "range_position", 0.5) > 0.5),
    ),
    Variant(
        "sweep", "a liquidity sweep of the opposite side before the entry", lambda c: _f(c, "conf_liquidity_sweep") > 0
    ),
    Variant("displacement", "a displacement candle in the trade's direction", lambda c: _f(c, "conf_displacement") > 0),
    Variant("killzone", "signal candle inside an ICT killzone", lambda c: _f(c, "conf_killzone") > 0),
    Variant(
        "confidence60", "rule score at or above 60 (the live threshold before evidence)", lambda c: c.confidence >= 60
    ),
    Variant(
        "wide_stop",
        "stop at least 1.5% of price away, so that costs (~0.24% a round trip) stay under ~0.16 R",
        lambda c: abs(c.entry - c.sl) / c.entry >= 0.015,
    ),
    Variant(
        "htf_aligned",
        "more higher timeframes agree with the direction than oppose it",
        lambda c: _f(c, "htf_agree_ratio") > _f(c, "htf_oppose_ratio"),
    ),
)


@dataclass(frozen=True, slots=True)
class Window:
    train_start: datetime
    test_start: datetime
    test_end: datetime


def windows(start: datetime, end: datetime, train_days: int, test_days: int) -> list[Window]:
    """Consecutive test windows from ``start + train_days`` to ``end``, each with the ``train_days`` before it."""
    out, test_start = [], start + timedelta(days=train_days)
    while test_start < end:
        test_end = min(test_start + timedelta(days=test_days), end)
        out.append(Window(test_start - timedelta(days=train_days), test_start, test_end))
        test_start = test_end
    return out


def one_at_a_time(candidates: Iterable[Candidate], plan: ExitPlan) -> list[Candidate]:
    """Signals in time order, skipping one while a position of the same symbol × timeframe × setup is open."""
    busy: dict[tuple[str, str, str], datetime] = {}
    taken = []
    for c in sorted(candidates, key=lambda c: c.time):
        key = (c.symbol, c.timeframe, c.setup)
        if key in busy and c.time < busy[key]:
            continue
        busy[key] = c.close_time(plan)
        taken.append(c)
    return taken


@dataclass(frozen=True, slots=True)
class Scored:
    variant: str
    plan: ExitPlan
    trades: int
    average_r: float | None


@dataclass(frozen=True, slots=True)
class Choice:
    window: Window
    variant: Variant | None  # None: nothing had enough training trades
    plan: ExitPlan
    kept: frozenset[str]  # setups the gate passes on the training window
    scores: tuple[Scored, ...]  # every variant × plan on the training window (reported, losers too)
    probabilities: dict[str, float]  # setup -> TP1 rate on the training window (shrunk to the overall rate)


def known_before(candidates: Iterable[Candidate], w: Window, plan: ExitPlan) -> list[Candidate]:
    """Training candidates: signalled in the training window and closed before the test window opens."""
    return [
        c
        for c in candidates
        if w.train_start <= c.time < w.test_start and c.closed and c.close_time(plan) <= w.test_start
    ]


def traded(candidates: Iterable[Candidate], plan: ExitPlan) -> list[Candidate]:
    return [c for c in one_at_a_time(candidates, plan) if c.filled]


def choose(
    candidates: Sequence[Candidate],
    w: Window,
    costs: Costs,
    *,
    variants: Sequence[Variant] = VARIANTS,
    plans: Sequence[ExitPlan] = EXIT_PLANS,
    shrink: float = 10.0,
) -> Choice:
    """Everything decided for window ``w``, from its training window only."""
    scores, best = [], None
    for plan in plans:
        known = known_before(candidates, w, plan)
        for v in variants:
            rs = [c.r(plan, costs)[1] for c in traded((c for c in known if v.keep(c)), plan)]
            avg = sum(rs) / len(rs) if rs else None
            scores.append(Scored(v.name, plan, len(rs), None if avg is None else round(avg, 4)))
            if len(rs) >= GATE_MIN_TRADES and (best is None or avg > best[0]):
                best = (avg, v, plan)
    if best is None:
        return Choice(w, None, plans[0], frozenset(), tuple(scores), {})
    _, variant, plan = best
    trades = traded((c for c in known_before(candidates, w, plan) if variant.keep(c)), plan)
    by_setup: dict[str, list[Candidate]] = {}
    for c in trades:
        by_setup.setdefault(c.setup, []).append(c)
    overall = sum(bool(c.hits) for c in trades) / len(trades)
    kept = frozenset(s for s, cs in by_setup.items() if gate_passes([c.r(plan, costs)[1] for c in cs]))
    probabilities = {
        s: (sum(bool(c.hits) for c in cs) + shrink * overall) / (len(cs) + shrink) for s, cs in by_setup.items()
    }
    return Choice(w, variant, plan, kept, tuple(scores), probabilities)


@dataclass(frozen=True, slots=True)
class OosTrade:
    """An out-of-sample trade: the candidate, the plan it was traded with and what the window decided."""

    candidate: Candidate
    plan: ExitPlan
    r_gross: float
    r_net: float
    gated: bool  # its setup was kept on the training window
    probability: float | None  # the setup's training TP1 rate, None for a setup not seen in training


def oos_trades(candidates: Sequence[Candidate], choice: Choice, costs: Costs) -> list[OosTrade]:
    """The chosen variant's signals of the test window, traded with the chosen plan."""
    if choice.variant is None:
        return []
    w, plan = choice.window, choice.plan
    # a trade still open when the data ends has no result yet: it is left out, as in the backtest
    inside = (c for c in candidates if w.test_start <= c.time < w.test_end and c.closed and choice.variant.keep(c))
    out = []
    for c in one_at_a_time(inside, plan):
        gross, net = c.r(plan, costs) if c.filled else (None, None)
        out.append(OosTrade(c, plan, gross, net, c.setup in choice.kept, choice.probabilities.get(c.setup)))
    return out


def stats_of(trades: Sequence[OosTrade]) -> dict:
    filled = [t for t in trades if t.r_net is not None]
    return setup_stats([t.r_net for t in filled], [bool(t.candidate.hits) for t in filled]).as_dict()


def calibration(trades: Sequence[OosTrade], edges: Sequence[float] = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0)) -> list:
    """Predicted TP1 probability against the realised TP1 rate, per probability bin (filled trades)."""
    rows = []
    for lo, hi in itertools.pairwise(edges):
        inside = [t for t in trades if t.r_net is not None and t.probability is not None and lo <= t.probability < hi]
        if inside:
            rows.append(
                {
                    "p_low": lo,
                    "p_high": hi,
                    "n": len(inside),
                    "predicted": round(sum(t.probability for t in inside) / len(inside), 4),
                    "realized": round(sum(bool(t.candidate.hits) for t in inside) / len(inside), 4),
                }
            )
    return rows


def by_setup(trades: Sequence[OosTrade]) -> dict[str, list[OosTrade]]:
    groups: dict[str, list[OosTrade]] = {}
    for t in trades:
        groups.setdefault(t.candidate.setup, []).append(t)
    return dict(sorted(groups.items()))


def gate_at_end(trades: Sequence[OosTrade]) -> bool:
    """Would the live gate pass this setup on all its out-of-sample trades?"""
    return gate_passes([t.r_net for t in trades if t.r_net is not None])


def fixed(w: Window, variant: Variant, plan: ExitPlan) -> Choice:
    """A pre-set choice (no training): how a fixed configuration did out of sample, for reference."""
    return Choice(w, variant, plan, frozenset(), (), {})


def variant_named(name: str) -> Variant:
    return next(v for v in VARIANTS if v.name == name)
