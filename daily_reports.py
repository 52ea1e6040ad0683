"""Performance reports (daily at ``DAILY_REPORT_TIME``, weekly on Mondays, monthly on the 1st, and ``/report``).

Definitions: the report covers the window ``(now - length, now]`` with length 1 day (daily), 7 days (weekly) or
30 days (monthly). "Signals sent" = journal records recorded in the window; "closed" = outcomes whose close time is
in the window and that were filled (EXPIRED ones are listed apart); win / loss / break-even and R as in
:mod:`store.journal` (net R, after fees and slippage: > 0 / < 0 / == 0). Open positions = the store's active
positions now. The chart is the cumulative net R of the trades closed in the last 30 days (always 30 days,
whatever the period), a PNG rendered
with matplotlib's Agg backend into bytes (figure closed); ``png`` is None when no trade closed in those 30 days.
Times are shown in ``tz`` (``BOT_TIMEZONE``).
"""

from __future__ import annotations

import html
import io
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from store.journal import bucket_of, outcome_class, record_r

logger = logging.getLogger(__name__)

PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(days=7), "monthly": timedelta(days=30)}
CHART_DAYS = 30


@dataclass(frozen=True, slots=True)
class Report:
    period: str
    start: datetime
    end: datetime
    html: str
    png: bytes | None
    signals: int
    closed: int
    wins: int
    losses: int
    breakevens: int
    expired: int
    total_r: float
    open_positions: int

    @property
    def chart_png(self) -> bytes | None:  # the name the Telegram layer reads
        return self.png

    @property
    def win_rate(self) -> float | None:
        return 100.0 * self.wins / self.closed if self.closed else None


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _closed_at(record: Mapping[str, Any]) -> datetime | None:
    return _time((record.get("outcome") or {}).get("closed_at"))


def build_report(
    journal: Any,
    store: Any = None,
    *,
    period: str = "daily",
    now: datetime | None = None,
    tz: str | ZoneInfo = "UTC",
) -> Report:
    """The report for ``period`` ending at ``now`` (see the module docstring).

    Also callable as ``build_report(services, period)`` with the bot's services container.
    """
    if hasattr(journal, "require") and hasattr(journal, "settings"):  # the Telegram layer's services container
        svc = journal
        return build_report(svc.journal, svc.store, period=store or period, tz=svc.settings.bot_timezone)
    if period not in PERIODS:
        raise ValueError(f"unknown report period {period!r}; use daily, weekly or monthly")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = end - PERIODS[period]
    records = journal.records() if journal is not None else []
    sent = [r for r in records if (t := _time(r.get("recorded_at"))) is not None and start < t <= end]
    finished = [r for r in records if (t := _closed_at(r)) is not None and start < t <= end]
    closed = [r for r in finished if outcome_class(r.get("outcome"), r.get("signal")) not in ("open", "expired")]
    expired = [r for r in finished if outcome_class(r.get("outcome"), r.get("signal")) == "expired"]
    bucket = bucket_of(closed)
    open_positions = store.list_open() if store is not None else []
    chart_records = [
        r
        for r in records
        if (t := _closed_at(r)) is not None
        and end - timedelta(days=CHART_DAYS) < t <= end
        and outcome_class(r.get("outcome"), r.get("signal")) not in ("open", "expired")
    ]
    png = render_cumulative_r(chart_records, end=end, tz=zone) if chart_records else None
    text = _html(period, start, end, zone, sent, closed, expired, bucket, open_positions)
    return Report(
        period=period,
        start=start,
        end=end,
        html=text,
        png=png,
        signals=len(sent),
        closed=bucket.closed,
        wins=bucket.wins,
        losses=bucket.losses,
        breakevens=bucket.breakevens,
        expired=len(expired),
        total_r=round(bucket.total_r, 4),
        open_positions=len(open_positions),
    )


def _r(record: Mapping[str, Any]) -> float:
    """Net R of a closed record (store.journal.record_r), 0 for open or expired ones."""
    r = record_r(record)
    return 0.0 if r is None else r[1]


def _name(record: Mapping[str, Any]) -> str:
    sig = record.get("signal") or {}
    return f"{sig.get('symbol', '?')} {sig.get('timeframe', '?')} {str(sig.get('direction', '?')).upper()}"


def _html(period, start, end, zone, sent, closed, expired, bucket, open_positions) -> str:
    title = {"daily": "Daily", "weekly": "Weekly", "monthly": "Monthly"}[period]
    span = f"{start.astimezone(zone):%Y-%m-%d %H:%M} – {end.astimezone(zone):%Y-%m-%d %H:%M %Z}"
    lines = [f"📋 <b>{title} report</b>", html.escape(span)]
    if not sent and not closed and not expired:
        lines.append("No signals were sent and no trades closed in this period.")
    else:
        lines.append(f"Signals sent: {len(sent)}")
        if closed:
            win_rate = 100.0 * bucket.wins / bucket.closed
            lines += [
                f"Closed: {bucket.closed} · wins {bucket.wins} · losses {bucket.losses}"
                f" · break-even {bucket.breakevens}",
                f"Win rate: {win_rate:.1f}% · total {bucket.total_r:+.2f}R · average {bucket.avg_r:+.2f}R"
                " (net of fees and slippage)",
            ]
            best = max(closed, key=_r)
            worst = min(closed, key=_r)
            lines.append(
                f"Best: {html.escape(_name(best))} {_r(best):+.2f}R"
                f" · worst: {html.escape(_name(worst))} {_r(worst):+.2f}R"
            )
        else:
            lines.append("No trades closed in this period.")
        if expired:
            lines.append(f"Expired without entry: {len(expired)}")
    pending = sum(1 for p in open_positions if p.state.value == "PENDING")
    lines.append(f"Open positions: {len(open_positions)}" + (f" ({pending} waiting for entry)" if pending else ""))
    if closed:
        per_symbol: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for r in closed:
            per_symbol[str((r.get("signal") or {}).get("symbol", "?"))].append(r)
        lines.append("\n<b>By symbol</b>")
        for symbol, rows in sorted(per_symbol.items()):
            b = bucket_of(rows)
            lines.append(
                f"{html.escape(symbol)}: {b.closed} closed, {b.wins}W/{b.losses}L/{b.breakevens}BE, {b.total_r:+.2f}R"
            )
    return "\n".join(lines)


def render_cumulative_r(records: list[Mapping[str, Any]], *, end: datetime, tz: ZoneInfo) -> bytes:
    """PNG of the cumulative R of ``records`` (closed trades) ordered by close time, over the last 30 days."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(((_closed_at(r), _r(r)) for r in records), key=lambda x: x[0])
    times = [end - timedelta(days=CHART_DAYS)] + [t for t, _ in rows]
    cumulative = [0.0]
    for _, r in rows:
        cumulative.append(cumulative[-1] + r)
    times = [t.astimezone(tz) for t in times]
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    try:
        ax.step(times, cumulative, where="post", color="#1f77b4", linewidth=1.8)
        ax.fill_between(times, cumulative, step="post", alpha=0.15, color="#1f77b4")
        ax.axhline(0, color="#888888", linewidth=0.8)
        ax.set_title(f"Cumulative R, last {CHART_DAYS} days ({len(rows)} closed trades)")
        ax.set_ylabel("R")
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)
