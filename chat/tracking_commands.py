"""Tracking commands: /positions, /close, /stats, /journal, /report and /health."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from telegram import Update

import daily_reports
import real_time_monitor
from chat.commands import BadInput, Ctx, chat_id_of, fmt_duration, pd_now, reply, shown
from chat.sender import escape
from chat.services import Services, get_services
from engine.prices import format_price
from market.source import MarketData
from store import journal as journal_format

logger = logging.getLogger(__name__)


def live_prices(market: MarketData, symbols: set[str]) -> dict[str, float | None]:
    """Current prices per symbol; None where the source fails (blocking: run in a thread)."""
    out: dict[str, float | None] = {}
    for symbol in sorted(symbols):
        try:
            out[symbol] = float(market.price(symbol))
        except Exception as exc:
            logger.warning("price of %s unavailable: %s", symbol, exc)
            out[symbol] = None
    return out


async def cmd_positions(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    store = svc.require("store")
    positions = await asyncio.to_thread(store.list_open)
    prices: dict[str, float | None] = {}
    if positions and svc.market is not None:
        prices = await asyncio.to_thread(live_prices, svc.market, {p.symbol for p in positions})
    known = {symbol: price for symbol, price in prices.items() if price is not None}
    text = real_time_monitor.format_positions_html(positions, known)
    if positions:
        text += "\nClose one with /close ID."
    await reply(update, context, text)


async def cmd_close(update: Update, context: Ctx) -> None:
    """Close a tracked position at the current price. Admins may close any position; other users only
    positions tracked for them alone (their own /signal), since broadcast positions are shared."""
    svc = get_services(context)
    args = context.args or []
    if len(args) != 1:
        raise BadInput("Which position? Usage: /close ID (the id is shown in /positions).", "/close 12")
    text = args[0].lstrip("#")
    if not text.isdigit() or len(text) > 12:
        raise BadInput(f"'{shown(args[0])}' is not a position id (a number from /positions).", "/close 12")
    store = svc.require("store")
    market = svc.require("market")
    position = await asyncio.to_thread(store.get, int(text))
    if position is None or not position.is_active:
        raise BadInput(f"There is no open position #{int(text)}; see /positions.", "/close 12")
    user = update.effective_user
    user_id = user.id if user else None
    if not svc.settings.is_admin(user_id) and tuple(position.recipients) != (chat_id_of(update),):
        raise BadInput("This position is shared with all subscribers; only an admin can close it.", "/positions")
    price = float(await asyncio.to_thread(market.price, position.symbol))
    now = pd_now(market)  # the market's clock: the replay clock in sample mode, like the position's open
    closed = await asyncio.to_thread(real_time_monitor.close_and_journal, store, svc.journal, position.id, price, now)
    outcome = closed.outcome
    await reply(
        update,
        context,
        f"✅ Closed #{closed.id} {escape(closed.symbol)} {escape(closed.timeframe)} at {format_price(price)}: "
        f"{outcome.r_multiple:+.2f}R ({outcome.pnl_pct:+.2f}%).",
    )


async def cmd_stats(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    journal = svc.require("journal")
    text = journal_format.format_stats_html(await asyncio.to_thread(journal.stats))
    await reply(update, context, text)


async def cmd_journal(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    args = context.args or []
    count = 10
    if args:
        if not args[0].isdigit() or not 1 <= int(args[0]) <= 100:
            raise BadInput(f"'{shown(args[0])}' is not a count from 1 to 100.", "/journal 20")
        count = int(args[0])
    journal = svc.require("journal")
    records = await asyncio.to_thread(journal.records, count)
    text = journal_format.format_journal_html(records, n=count, tz=svc.settings.tz)
    await reply(update, context, text)


REPORT_PERIODS = ("daily", "weekly", "monthly")


async def cmd_report(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    args = context.args or []
    period = (args[0].lower() if args else "daily")[:16]
    if period not in REPORT_PERIODS:
        raise BadInput(f"'{shown(args[0])}' is not a report period; use daily, weekly or monthly.", "/report weekly")
    chat_id = chat_id_of(update)
    if chat_id is None:
        return
    report = await asyncio.to_thread(build_report, svc, period)
    await send_report(svc, chat_id, report)


def build_report(svc: Services, period: str) -> daily_reports.Report:
    """The ``period`` report up to the market's clock (the replay clock with sample data). Blocking."""
    journal = svc.require("journal")
    now = pd_now(svc.market) if svc.market is not None else datetime.now(UTC)
    return daily_reports.build_report(journal, svc.store, period=period, now=now, tz=svc.settings.bot_timezone)


async def send_report(svc: Services, chat_id: int, report: daily_reports.Report) -> None:
    png = report.png
    text = report.html
    if png:
        await svc.sender.photo(chat_id, png, text, filename="report.png")
    else:
        await svc.sender.text(chat_id, text)


async def cmd_health(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    lines = ["<b>Health</b>"]
    now = datetime.now(UTC)
    lines.append(f"Mode: {svc.mode} · uptime {fmt_duration((now - svc.started_at).total_seconds())}")
    if svc.market is None:
        lines.append(f"Market data: unavailable ({escape(svc.problems.get('market', 'not configured'))})")
    else:
        try:
            latency = await asyncio.to_thread(svc.market.latency_ms)
            lines.append(f"Market data ({escape(svc.settings.market_data)}): {latency:.0f} ms")
        except Exception as exc:
            lines.append(f"Market data ({escape(svc.settings.market_data)}): unreachable ({escape(str(exc)[:100])})")
    last_scan = _state(svc, "last_scan") or (svc.last_scan.isoformat(timespec="seconds") if svc.last_scan else None)
    paused = _state(svc, "paused") == "1"
    lines.append(f"Last scan: {escape(last_scan or 'never')}" + (" · scheduled signals PAUSED" if paused else ""))
    await asyncio.to_thread(svc.refresh_evidence)  # a new `evaluate` run is picked up here
    lines.append(escape(svc.gate_status()))
    jobs = context.job_queue.jobs() if context.bot_data.get("jobs") else ()
    if jobs:
        lines.append("Jobs:")
        for job in sorted(jobs, key=lambda j: j.name or ""):
            nxt = job.next_t.astimezone(svc.settings.tz).strftime("%Y-%m-%d %H:%M:%S %Z") if job.next_t else "-"
            lines.append(f"  • {escape(job.name or '?')}: next {escape(nxt)}")
    else:
        lines.append("Jobs: none (console mode runs no schedule)" if svc.mode == "console" else "Jobs: none")
    if svc.store is None:
        lines.append(f"Database: unavailable ({escape(svc.problems.get('store', '?'))})")
    else:
        db = svc.data_dir / "positions.db"
        size = db.stat().st_size / 1024 if db.exists() else 0
        counts = await asyncio.to_thread(svc.store.outbox_counts)
        subscribers = len(await asyncio.to_thread(svc.store.subscribers))
        lines.append(f"Database: ok ({escape(db.name)}, {size:.0f} KiB, {subscribers} subscribers)")
        lines.append(f"Outbox: {counts.pending} pending, {counts.sent} sent, {counts.failed} failed")
    if svc.predictor is None:
        lines.append(f"Model: unavailable ({escape(svc.problems.get('predictor', '?'))})")
    else:
        lines.append(f"Model: {escape(svc.predictor.status())}")
    await reply(update, context, "\n".join(lines))


def _state(svc: Services, key: str) -> str | None:
    if svc.store is None:
        return None
    value = svc.store.get_state(key)
    return None if value is None else str(value)
