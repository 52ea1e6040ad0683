"""Short definitions of every ICT / Smart Money Concepts term the bot uses (for ``/explain TERM``).

Pure data and a lookup; no Telegram. Definitions follow the canonical ICT meanings the detectors implement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Term:
    key: str  # canonical short name shown to the user
    title: str
    definition: str
    aliases: tuple[str, ...] = ()


TERMS: tuple[Term, ...] = (
    Term(
        "OB",
        "Order block",
        "The last opposite-colour candle (or run of candles) before a displacement that breaks structure. "
        "Bullish OB: last down-close candle before a strong up-move; bearish OB: the mirror. Price often "
        "returns to it; its 50% level is the mean threshold. Mitigated when revisited, invalidated when a "
        "candle closes through its far edge.",
        ("order block", "orderblock", "order-block"),
    ),
    Term(
        "FVG",
        "Fair value gap",
        "A three-candle imbalance. Bullish: high of candle 1 < low of candle 3; bearish: low of candle 1 > "
        "high of candle 3. The gap is often revisited; its 50% is the consequent encroachment (CE).",
        ("fair value gap", "imbalance", "gap"),
    ),
    Term(
        "IFVG",
        "Inverse fair value gap",
        "An FVG that price closed through: it flips polarity and may act as support/resistance from the other side.",
        ("inverse fvg", "inverted fvg", "inversion fvg"),
    ),
    Term(
        "CE",
        "Consequent encroachment",
        "The 50% level of a fair value gap; a common reaction point.",
        ("consequent encroachment",),
    ),
    Term(
        "BOS",
        "Break of structure",
        "A candle closes beyond the last swing high (uptrend) or swing low (downtrend) in the direction of the "
        "trend: continuation.",
        ("break of structure",),
    ),
    Term(
        "CHOCH",
        "Change of character",
        "The first close beyond a swing against the current trend: an early sign of reversal.",
        ("choch", "change of character", "choc"),
    ),
    Term(
        "MSS",
        "Market structure shift (MSB)",
        "A change of character made with displacement after a liquidity sweep: the stronger reversal signal "
        "ICT entry models wait for.",
        ("msb", "market structure shift", "market structure break"),
    ),
    Term(
        "SIBI",
        "Sell-side imbalance, buy-side inefficiency",
        "A bearish FVG formed inside a bearish displacement leg: price moved down so fast that buyers were "
        "under-served. Often a resistance on the retrace.",
        ("sell side imbalance",),
    ),
    Term(
        "BISI",
        "Buy-side imbalance, sell-side inefficiency (SSIB)",
        "A bullish FVG formed inside a bullish displacement leg; the mirror of SIBI. Often a support on the retrace.",
        ("ssib", "buy side imbalance"),
    ),
    Term(
        "BSL",
        "Buy-side liquidity",
        "Resting buy stops above swing highs and equal highs (shorts' stops, breakout buyers). Price is drawn to it.",
        ("buy side liquidity", "buyside liquidity"),
    ),
    Term(
        "SSL",
        "Sell-side liquidity",
        "Resting sell stops below swing lows and equal lows (longs' stops). Price is drawn to it.",
        ("sell side liquidity", "sellside liquidity"),
    ),
    Term(
        "Liquidity sweep",
        "Liquidity sweep (stop hunt)",
        "A wick trades through a liquidity pool and the candle closes back inside: stops were taken, often "
        "before a reversal. A close through the pool instead is a run on liquidity (continuation).",
        ("sweep", "stop hunt", "liquidity grab", "run", "liquidity run"),
    ),
    Term(
        "ILP",
        "Internal liquidity pools (IBSL / ISSL)",
        "Liquidity resting inside the current dealing range: internal buy-side (IBSL) above internal highs and "
        "internal sell-side (ISSL) below internal lows.",
        ("ibsl", "issl", "internal liquidity"),
    ),
    Term(
        "OTE",
        "Optimal trade entry",
        "The 62%-79% retracement of the last impulse leg (70.5% sweet spot): where ICT looks to enter a pullback.",
        ("optimal trade entry",),
    ),
    Term(
        "Premium/discount",
        "Premium and discount",
        "Split the dealing range at 50%: above is premium (sell there), below is discount (buy there).",
        ("premium", "discount", "pd array", "premium discount"),
    ),
    Term(
        "Equilibrium",
        "Equilibrium",
        "The 50% level of the dealing range, between premium and discount.",
        ("eq", "equilibrium"),
    ),
    Term(
        "Dealing range",
        "Dealing range",
        "The range between the last significant swing high and swing low, which premium/discount and OTE use.",
        ("range",),
    ),
    Term(
        "Displacement",
        "Displacement",
        "An energetic candle or leg: a large body (several ATR) with small wicks, showing institutional intent. "
        "Structure breaks, order blocks and FVGs made with displacement count for more.",
        ("impulse",),
    ),
    Term(
        "Breaker",
        "Breaker block",
        "An order block that failed after a liquidity sweep and flips polarity: a failed bullish OB becomes "
        "resistance, a failed bearish OB becomes support.",
        ("breaker block",),
    ),
    Term(
        "Mitigation block",
        "Mitigation block",
        "Like a breaker, a failed order block that flips polarity, but without a prior liquidity sweep.",
        ("mitigation",),
    ),
    Term(
        "Killzone",
        "Killzones",
        "The sessions with the most institutional activity, in New York time: Asia (20:00-00:00), London "
        "(02:00-05:00), New York AM (07:00-10:00), London close (10:00-12:00), New York PM (13:30-16:00).",
        ("killzones", "session", "sessions", "kill zone"),
    ),
    Term(
        "Whale block",
        "Whale block",
        "A candle or zone with abnormal volume (rolling z-score) together with displacement or absorption "
        "(high volume in a small range).",
        ("whale", "whales"),
    ),
    Term(
        "SMZ",
        "Smart-money zone",
        "Supply/demand zones merged from order blocks, breakers, FVGs and whale blocks, ranked by strength, "
        "touches and freshness.",
        ("smart money zone", "supply", "demand", "zone"),
    ),
    Term(
        "MTF",
        "Multi-timeframe bias",
        "The trend on the higher timeframes (15m -> 1h, 4h; 1h -> 4h, 1d; 4h -> 1d, 1w; 1d -> 1w); a signal "
        "aligned with them scores higher.",
        ("bias", "htf", "multi timeframe"),
    ),
    Term(
        "Key levels",
        "Key levels",
        "Previous day/week/month high, low and open (PDH, PDL, PWH, PWL...) and the new day/week opening gaps "
        "(NDOG, NWOG).",
        ("pdh", "pdl", "pwh", "pwl", "ndog", "nwog", "key level"),
    ),
    Term(
        "Entry model",
        "ICT entry models",
        "Recipes the engine recognises: liquidity sweep -> MSS with displacement -> entry at the FVG/OB; OTE "
        "pullback in trend; breaker retest.",
        ("entry models", "model"),
    ),
    Term(
        "R",
        "R multiple",
        "Reward measured in units of risk: (target - entry) / (entry - stop). TP1 at 2R pays twice the risk.",
        ("r multiple", "rr", "r:r", "risk reward"),
    ),
    Term(
        "SL/TP",
        "Stop loss and take profits",
        "SL sits beyond the structure that protects the idea plus an ATR buffer. TP1 < TP2 < TP3 sit at "
        "liquidity targets (mirrored for shorts). At TP1 the stop moves to break-even (BE).",
        ("sl", "tp", "stop", "stop loss", "take profit", "tp1", "tp2", "tp3", "be", "break even"),
    ),
)


def _norm(text: str) -> str:
    return re.sub(r"[\s_/\-]+", " ", text.strip().lower()).strip()


_INDEX: dict[str, Term] = {}
for _term in TERMS:
    for _name in (_term.key, _term.title, *_term.aliases):
        _INDEX.setdefault(_norm(_name), _term)


def lookup(query: str) -> Term | None:
    """The term for ``query`` (case, spaces, dashes and slashes ignored), or None."""
    return _INDEX.get(_norm(query))


def term_names() -> list[str]:
    return [t.key for t in TERMS]
