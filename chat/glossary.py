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
        (
            "killzones",
            "session",
            "sessions",
            "kill zone",
            "asia",
            "london",
            "new york am",
            "ny am",
            "london close",
            "new york pm",
            "ny pm",
            "outside killzones",
        ),
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
        ("ndog", "nwog", "key level"),
    ),
    Term(
        "PDH/PDL",
        "Previous day high / low",
        "The high (PDH) and low (PDL) of the previous UTC day: resting buy stops above the PDH, sell stops below "
        "the PDL. A target or a sweep named PDH/PDL is that level.",
        ("pdh", "pdl", "previous day high", "previous day low"),
    ),
    Term(
        "PWH/PWL",
        "Previous week high / low",
        "The high (PWH) and low (PWL) of the previous week: larger pools of liquidity than the day's levels. "
        "A level that is both is named by the week.",
        ("pwh", "pwl", "previous week high", "previous week low"),
    ),
    Term(
        "EQH/EQL",
        "Equal highs / equal lows",
        "Two or more swing highs (EQH) or lows (EQL) at about the same price: stops cluster beyond them, so they "
        "are obvious liquidity targets (buy-side above EQH, sell-side below EQL).",
        ("eqh", "eql", "equal highs", "equal lows"),
    ),
    Term(
        "Entry model",
        "ICT entry models",
        "Recipes the engine recognises: liquidity sweep -> MSS with displacement -> entry at the FVG/OB; OTE "
        "pullback in trend; breaker retest.",
        ("entry models", "model"),
    ),
    Term(
        "Sweep + MSS",
        "Entry model: liquidity sweep then market structure shift",
        "Price sweeps a liquidity pool, then shifts structure (MSS or CHOCH) the other way with displacement; the "
        "entry is a retracement into the FVG or OB that the shift left behind. The model the score rates highest.",
        ("sweep mss", "sweep_mss", "sweep and mss", "sweep + mss"),
    ),
    Term(
        "OTE pullback",
        "Entry model: OTE pullback",
        "In a trend, the entry waits for price to retrace into the 62%-79% OTE band of the last impulse leg.",
        ("ote_pullback", "ote retracement"),
    ),
    Term(
        "Breaker retest",
        "Entry model: breaker retest",
        "Price returns to a breaker block (a failed order block, flipped) and the entry is taken on that retest.",
        ("breaker_retest",),
    ),
    Term(
        "Zone retracement",
        "Entry model: zone retracement",
        "Any other pullback into an OB, FVG or SIBI/BISI in the trend's direction; the weakest entry model.",
        ("zone_retracement",),
    ),
    Term(
        "ATR",
        "Average true range",
        "The average candle range (14 candles) on the signal's timeframe. Stops get an ATR buffer, and "
        "displacement is measured in ATR (2.6 ATR = a body 2.6 times the average range).",
        ("average true range",),
    ),
    Term(
        "Fib extension",
        "Fibonacci extension target",
        "A target projected beyond the last impulse leg (e.g. fib ext -1.27 = 127% of the leg past its end), used "
        "when no resting liquidity lies beyond the entry.",
        ("fib ext", "fibonacci extension", "extension"),
    ),
    Term(
        "Market entry",
        "Market and limit entries",
        "(market): enter at the current price, the entry zone is already reached. Otherwise a limit order at the "
        "zone's midpoint, valid for a number of candles; unfilled, the signal expires.",
        ("market", "limit entry", "limit", "limit order"),
    ),
    Term(
        "Setup",
        "Setup",
        "Entry model, direction and timeframe (e.g. sweep + MSS long, 1h). Evidence and the gate are kept per "
        "setup, since one setup can work while another does not.",
        ("setups",),
    ),
    Term(
        "Gate",
        "Evidence gate",
        "A setup's signals are broadcast and tracked only while its out-of-sample record (walk-forward, net of "
        "costs) shows enough trades and a positive edge. 'Gated stream': the trades the gate would have sent.",
        ("gated", "evidence gate", "gated stream"),
    ),
    Term(
        "Probability",
        "Probability (TP1 rate)",
        "The setup's out-of-sample rate of reaching TP1 before the stop, from its evidence; 'not enough evidence' "
        "until it has enough trades. The 0-100 rule score is not a probability.",
        ("probability of tp1", "tp1 rate", "evidence"),
    ),
    Term(
        "Rule score",
        "Rule score (confidence)",
        "0-100 points from the rules (timeframe agreement, structure, entry model, confluence, sweep, displacement, "
        "premium/discount, killzone, whale). It ranks setups; it is not a probability.",
        ("score", "confidence", "confidence breakdown"),
    ),
    Term(
        "Expectancy",
        "Expectancy (average R)",
        "The average result per trade in R: win rate x average win - loss rate x average loss. Above 0 after "
        "costs means an edge.",
        ("avg r", "average r", "expectancy r"),
    ),
    Term(
        "Win rate",
        "Win rate",
        "The share of closed trades that ended with a gain (net of costs).",
        ("win", "winrate", "hit rate"),
    ),
    Term(
        "PF",
        "Profit factor",
        "Gross gains divided by gross losses (in R). Above 1 the trades made money; 1.5 means 1.5 R won per R lost.",
        ("profit factor",),
    ),
    Term(
        "Net R",
        "Net and gross R",
        "Net R is after fees and slippage (the costs of the exchange), gross R before them. Totals add the R of "
        "every closed trade.",
        ("net", "gross", "r net", "r gross", "net of costs", "before costs", "total r", "costs"),
    ),
    Term(
        "Max drawdown",
        "Maximum drawdown (maxDD)",
        "The largest fall of the cumulative R from a previous peak: the worst losing stretch to sit through.",
        ("maxdd", "drawdown", "dd"),
    ),
    Term(
        "Walk-forward",
        "Walk-forward, out of sample",
        "Rules are chosen on a training window and then traded on the next, unseen test window, window after "
        "window. Only those out-of-sample (held-out) trades count as evidence.",
        ("walk forward", "out of sample", "oos", "held out", "test window", "training window"),
    ),
    Term(
        "Edge vs random",
        "Edge against random entries",
        "Average R of the setup minus that of random entries with the same exits, direction and timing (the "
        "control): above 0 the setup's entries add something beyond chance.",
        ("edge", "random entries", "control", "baseline"),
    ),
    Term(
        "Calibration",
        "Calibration",
        "How often a predicted probability comes true: of signals given 40%, about 40% should reach TP1.",
        ("reliability",),
    ),
    Term(
        "AUC",
        "Area under the ROC curve",
        "How well the ML model ranks winners above losers on held-out signals: 0.5 is chance, 1.0 perfect. The "
        "model is used only when the lower bound of its AUC is above 0.5 and it improves expectancy.",
        ("roc auc", "ml model", "model activated"),
    ),
    Term(
        "Brier",
        "Brier score",
        "Mean squared error of predicted probabilities against outcomes (lower is better); compared with the "
        "no-skill score of always predicting the base rate.",
        ("brier score",),
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
        ("sl", "tp", "stop", "stop loss", "take profit", "tp1", "tp2", "tp3", "be", "break even", "breakeven"),
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
