"""Trading costs and the exit plan: the one pure function that turns a trade's fills into gross and net R.

Definitions (``s`` = +1 long, -1 short; shares are fractions of the position summing to 1):

- **Planned risk** ``risk = |entry - sl|`` per unit, the signal's entry and original stop: every R divides by it.
- **Gross R** ``= sum(share * s * (exit - fill)) / risk``: the price move alone, as the trade was planned.
- **Slippage** (``slippage_pct``, percent of price, against the trader) applies to orders that cross the book:
  a market entry (``fill * (1 + s * slip)``), and market exits: stops (``exit * (1 - s * slip)``, the break-even
  stop after TP1 included) and manual / end-of-data closes. Limit orders (a resting entry, the targets) fill at
  their price.
- **Fees** (``fee_pct`` per side, percent of notional): ``fee * (fill' + sum(share * exit'))`` per unit, on the
  slipped prices ``fill'`` / ``exit'`` (what the exchange really charges on).
- **Net R** ``= (sum(share * s * (exit' - fill')) - fees) / risk``. With ``fee_pct = slippage_pct = 0`` it equals
  the gross R. A trade is a win when its net R is above 0: a break-even exit after costs is a small loss.
- **Exit plan** (``EXIT_PLAN``, e.g. ``50,30,20``): the percent of the position closed at TP1, TP2 and TP3; the
  stop moves to break-even (the fill) after TP1; whatever is open when a stop triggers closes there. ``0,0,100``
  is the whole position to TP3 (the bot's behaviour before plans existed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_FEE_PCT = 0.1  # Binance spot taker fee, per side
DEFAULT_SLIPPAGE_PCT = 0.02
DEFAULT_EXIT_PLAN: tuple[float, float, float] = (0.0, 0.0, 100.0)


@dataclass(frozen=True, slots=True)
class Costs:
    """Per-side fee and slippage, both in percent (0.1 = 0.1 %)."""

    fee_pct: float = DEFAULT_FEE_PCT
    slippage_pct: float = DEFAULT_SLIPPAGE_PCT

    def __post_init__(self) -> None:
        for name in ("fee_pct", "slippage_pct"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 5:
                raise ValueError(f"{name} must be a number from 0 to 5 (percent), got {value!r}")

    @classmethod
    def none(cls) -> Costs:
        return cls(0.0, 0.0)

    @classmethod
    def from_settings(cls, settings: object) -> Costs:
        return cls(
            float(getattr(settings, "fee_pct", DEFAULT_FEE_PCT)),
            float(getattr(settings, "slippage_pct", DEFAULT_SLIPPAGE_PCT)),
        )

    def to_json(self) -> dict[str, float]:
        return {"fee_pct": self.fee_pct, "slippage_pct": self.slippage_pct}


DEFAULT_COSTS = Costs()


@dataclass(frozen=True, slots=True)
class Exit:
    """One exit of part of a position: ``share`` (0..1) closed at ``price``; ``market`` = a stop or market close
    (slipped), else a resting limit order (a target)."""

    price: float
    share: float
    market: bool


def parse_exit_plan(raw: str | Sequence[float]) -> tuple[float, float, float]:
    """``"50,30,20"`` -> (50.0, 30.0, 20.0); three non-negative numbers summing to 100, else ValueError."""
    parts = [p.strip() for p in raw.split(",")] if isinstance(raw, str) else list(raw)
    try:
        shares = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError("expected three percentages for TP1,TP2,TP3 summing to 100, e.g. 50,30,20") from None
    if len(shares) != 3 or any(not math.isfinite(v) or v < 0 for v in shares) or abs(sum(shares) - 100) > 1e-6:
        raise ValueError("expected three non-negative percentages for TP1,TP2,TP3 summing to 100, e.g. 50,30,20")
    return shares  # type: ignore[return-value]


def exits_of(
    plan: Sequence[float], targets: Sequence[float], targets_hit: int, final_price: float | None, *, final_market: bool
) -> list[Exit]:
    """The exits of a position that reached ``targets_hit`` targets under ``plan`` (percent per target), the rest
    closing at ``final_price`` (a stop or market close when ``final_market``; None when nothing is left)."""
    exits = [Exit(float(targets[n]), plan[n] / 100.0, False) for n in range(targets_hit) if plan[n] > 0]
    rest = 1.0 - sum(plan[:targets_hit]) / 100.0
    if rest > 1e-9 and final_price is not None:
        exits.append(Exit(float(final_price), rest, final_market))
    return exits


def trade_r(
    *, sign: int, entry: float, sl: float, fill: float, exits: Sequence[Exit], costs: Costs, market_entry: bool
) -> tuple[float, float]:
    """(gross R, net R) of a filled trade; see the module docstring. ``exits`` shares must sum to 1."""
    risk = abs(entry - sl)
    if not risk > 0:
        raise ValueError("planned risk |entry - sl| must be positive")
    slip, fee = costs.slippage_pct / 100.0, costs.fee_pct / 100.0
    fill_net = fill * (1 + sign * slip) if market_entry else fill
    gross = sum(x.share * sign * (x.price - fill) for x in exits)
    moves = 0.0
    notional = fill_net
    for x in exits:
        price = x.price * (1 - sign * slip) if x.market else x.price
        moves += x.share * sign * (price - fill_net)
        notional += x.share * price
    return gross / risk, (moves - fee * notional) / risk


def average_exit(exits: Sequence[Exit]) -> float | None:
    """Size-weighted average exit price (unslipped), None without exits."""
    total = sum(x.share for x in exits)
    return sum(x.share * x.price for x in exits) / total if total > 0 else None
