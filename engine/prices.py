"""The one price formatter every layer uses: captions, /positions, alerts, component details, reports, charts.

Significant-digit based: at least :data:`SIGNIFICANT` significant digits and at least 2 decimals, with thousands
separators, so one market always reads the same (``83.100``, ``64,210.50``, ``0.000012340``), whatever the source
of the number (engine, position store, JSON).
"""

from __future__ import annotations

import math

SIGNIFICANT = 5
MAX_DECIMALS = 10
MISSING = "—"


def price_decimals(price: float) -> int:
    """Decimals shown for ``price``: enough for 5 significant digits, at least 2, at most 10."""
    if price == 0:
        return 2
    exponent = int(f"{abs(price):.{SIGNIFICANT - 1}e}".split("e")[1])  # after rounding: 9.99999 reads as 10.000
    return min(MAX_DECIMALS, max(2, SIGNIFICANT - 1 - exponent))


def format_price(price: float | None) -> str:
    """``64,210.50`` · ``83.100`` · ``3.4512`` · ``0.000012340``; ``—`` for a missing or non-finite value."""
    try:
        value = float(price)  # numpy scalars and numbers read from JSON alike
    except (TypeError, ValueError):
        return MISSING
    if isinstance(price, bool) or not math.isfinite(value):
        return MISSING
    return f"{value:,.{price_decimals(value)}f}"
