"""Message terms (issue 15, messages): zones named by what they are, the range component about the entry, one
name per liquidity level in the components and on the chart, and a glossary entry for every term the bot prints."""

from dataclasses import replace

import pandas as pd
import pytest

import ict_signal_engine as eng
from engine.planning import EntryPlan
from engine.scoring import components_of
from engine.tables import PoolTable, liquidity_name
from engine.views import Level, Snapshot, StructureView, Zone, ZoneKind
from ict_modules.core import Direction
from market.sample_source import SampleSource
from tests.helpers import SAMPLE_DIR

CLOCK = pd.Timestamp("2026-04-15 00:00", tz="UTC")


def snapshot(**kw) -> Snapshot:
    base = dict(
        bar=100, close=110.0, atr=2.0, structure=StructureView(None, ()), htf_bias=(), zones=(), pools_above=(),
        pools_below=(), htf_pools_above=(), htf_pools_below=(), sweeps=(), displacements=(), whales=(),
        entry_models=(), ote=None, dealing_range=None, swing_lows=(), swing_highs=(), session="", killzone=False,
    )  # fmt: skip
    return Snapshot(**{**base, **kw})


def plan_at(entry: float, zone: Zone | None = None) -> EntryPlan:
    return EntryPlan(entry, entry - 1.0, entry + 1.0, False, zone, "order_block")


@pytest.mark.parametrize(("label", "name", "term"), [("Mitigation", "mitigation_block", "mitigation block"),
                                                     ("Breaker", "breaker", "breaker")])  # fmt: skip
def test_a_mitigation_block_is_not_called_a_breaker(label, name, term):
    zone = Zone(ZoneKind.BREAKER, Direction.BULLISH, 101.0, 99.0, 90, label)
    (component,) = components_of(snapshot(zones=(zone,)), Direction.BULLISH, plan_at(100.0, zone), ())
    assert component.name == name
    assert component.detail.startswith(f"bullish {term} ")
    if name == "mitigation_block":
        assert "breaker" not in component.detail.lower()


def test_the_range_component_describes_the_entry_not_the_last_close():
    snap = snapshot(close=130.0, dealing_range=(90.0, 150.0))  # close in premium, the long's entry in discount
    (rng,) = [c for c in components_of(snap, Direction.BULLISH, plan_at(100.0), ()) if c.name == "premium_discount"]
    assert rng.detail.startswith("entry in discount: 17% of the dealing range")
    (rng,) = [c for c in components_of(snap, None, None, ()) if c.name == "premium_discount"]
    assert rng.detail.startswith("price in premium")
    (rng,) = [c for c in components_of(snap, Direction.BULLISH, plan_at(120.0), ()) if c.name == "premium_discount"]
    assert rng.detail.startswith("entry at equilibrium")


class _Pool:
    def __init__(self, kind: str, price: float, above: bool):
        self.kind, self.price, self.index, self.confirmed_at, self.taken_at = kind, price, 10, 10, None
        self.side = type("Side", (), {"is_above": above})()


def test_one_level_per_price_is_named_by_its_most_specific_pool():
    pools = [_Pool("swing_low", 95.0, False), _Pool("previous_day_low", 95.0, False), _Pool("equal_lows", 90.0, False)]
    _, below = PoolTable.build(pools).resting(100.0, 20)
    assert [(lv.label, lv.price) for lv in below] == [("PDL", 95.0), ("EQL", 90.0)]
    assert liquidity_name(95.0, [Level("SSL", 95.0, 1), Level("PWL", 95.0, 2), Level("EQL", 95.0, 3)]) == "PWL"
    assert liquidity_name(96.0, [Level("SSL", 95.0, 1)]) is None


def test_targets_use_the_name_the_chart_uses():
    # the entry timeframe sees a swing low, a higher timeframe the previous day's low at the same price
    snap = snapshot(close=100.0, pools_below=(Level("SSL", 95.0, 50),), htf_pools_below=(Level("PDL", 95.0, 40),))
    fib_1r = "fib ext -1.27 +1R"
    for targets, want in [
        (((95.0, "SSL"), (93.0, "fib ext -1.27"), (91.0, "fib ext -1.27 +1R")), ["PDL", "fib ext -1.27", fib_1r]),
        (((95.0, "SSL"), (93.0, "SSL +1R"), (91.0, "SSL +1R")), ["PDL", "PDL +1R", "PDL +1R"]),
    ]:  # fmt: skip
        components = components_of(snap, Direction.BEARISH, plan_at(100.0), targets)
        assert [c.detail.rsplit(" ", 1)[0] for c in components if c.name == "target"] == want


def test_the_chart_labels_a_level_as_the_components_do():
    from chat import charts

    market = SampleSource(SAMPLE_DIR, clock=lambda: CLOCK)
    analysis = eng.analyze(market, "BTCUSDT", "1h", end=pd.Timestamp("2026-04-10 12:00", tz="UTC"))
    snap = analysis.snapshot
    near = [*snap.pools_above[:1], *snap.pools_below[:1]]
    assert near, "the sample analysis has resting liquidity near the price"
    renamed = tuple(Level("PWH" if lv.price > snap.close else "PWL", lv.price, lv.index) for lv in near)
    snap = replace(snap, htf_pools_above=renamed[:1] + snap.htf_pools_above, htf_pools_below=renamed[-1:])
    texts = {t.get_text() for t in charts.build_figure(replace(analysis, snapshot=snap)).axes[1].texts}
    expected = {liquidity_name(lv.price, [*near, *renamed]) for lv in near}
    assert expected <= {"PWH", "PWL"} and expected & texts
    assert not {lv.label for lv in near} - {"PWH", "PWL"} & texts
