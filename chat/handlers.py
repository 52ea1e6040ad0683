"""User commands, the one command table, the guard (access, admin, rate limit) and the callback router.

Handlers are thin: parse the arguments, await a service (blocking work in ``asyncio.to_thread``), format with a
pure function, and send through :class:`sender.Sender`. Every command is registered from :func:`commands`
(built by :func:`command_table`), which also produces ``/help`` and the ``setMyCommands`` menu. The same
handlers serve Telegram and console mode.

Errors users can cause (bad arguments, unknown symbols) raise :class:`BadInput` and become one line with an
example; a feature whose service is missing raises :class:`services.NotAvailable` and says so; anything else
goes to the application's error handler (logged with traceback, admins notified, the user gets one polite line).
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatAction, ChatType
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from chat import glossary
from chat.sender import escape
from chat.services import NotAvailable, Services, get_services, optional_module
from market.timeframes import INTERVALS, parse_interval

logger = logging.getLogger(__name__)

Ctx = ContextTypes.DEFAULT_TYPE
Callback = Callable[[Update, Ctx], Awaitable[None]]

DEFAULT_TIMEFRAME = "1h"
MAX_ARG_SHOWN = 32  # characters of a bad argument echoed back
_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")


class BadInput(Exception):
    """A user error: ``str(exc)`` is one line; ``example`` is appended by the guard."""

    def __init__(self, message: str, example: str = "") -> None:
        super().__init__(message)
        self.example = example


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command: the single source for registration, /help and the Telegram menu."""

    name: str
    callback: Callback
    usage: str  # e.g. "/signal SYMBOL [TF]"
    description: str  # one line, shown in /help and the menu
    example: str = ""  # shown after a usage error
    admin: bool = False  # only ADMIN_IDS
    analysis: bool = False  # counts against SIGNAL_RATE_LIMIT (admins exempt)
    max_args: int | None = 0  # None: free text


@dataclass(frozen=True, slots=True)
class UserPrefs:
    """Per-user settings (persisted in the position store)."""

    timeframe: str = DEFAULT_TIMEFRAME
    broadcasts: bool = True
    min_confidence: float | None = None  # None: the bot's MIN_CONFIDENCE


# --------------------------------------------------------------------------------------------------------------
# small pure helpers
# --------------------------------------------------------------------------------------------------------------


def shown(text: str, limit: int = MAX_ARG_SHOWN) -> str:
    """A user-supplied string made safe to echo: printable characters only, truncated, HTML-escaped."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    if len(clean) > limit:
        clean = clean[: limit - 1] + "…"
    return escape(clean)


def parse_symbol(text: str, example: str = "/signal BTCUSDT 1h") -> str:
    """Normalise a symbol argument (``btcusdt`` -> ``BTCUSDT``, ``BTC/USDT`` -> ``BTCUSDT``) or raise BadInput."""
    candidate = re.sub(r"[/\-_]", "", text.strip()).upper()
    if not _SYMBOL.fullmatch(candidate):
        raise BadInput(f"'{shown(text)}' is not a Binance symbol (letters and digits, like BTCUSDT).", example)
    return candidate


def parse_timeframe(text: str, example: str = "/signal BTCUSDT 4h") -> str:
    try:
        return parse_interval(text)
    except ValueError:
        raise BadInput(f"'{shown(text)}' is not a timeframe; use one of {', '.join(INTERVALS)}.", example) from None


def fmt_price(value: float | None) -> str:
    """A price with enough decimals for its magnitude (90,123.45; 1.2345; 0.00001234)."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    decimals = min(10, max(2, 4 - math.floor(math.log10(abs(value)))))
    return f"{value:,.{decimals}f}"


def fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def signal_keyboard(symbol: str, timeframe: str, signal_id: str | None) -> InlineKeyboardMarkup:
    row = [InlineKeyboardButton("🔄 Refresh", callback_data=f"sig|r|{symbol}|{timeframe}")]
    if signal_id:
        row.append(InlineKeyboardButton("📋 Details", callback_data=f"sig|d|{signal_id}"))
    return InlineKeyboardMarkup([row])


def help_text(table: tuple[CommandSpec, ...], *, admin: bool) -> str:
    lines = ["<b>ICT Signal Bot</b> – commands", ""]
    for spec in table:
        if not spec.admin:
            lines.append(f"{escape(spec.usage)} – {escape(spec.description)}")
    if admin:
        lines += ["", "<b>Admin</b>"]
        lines += [f"{escape(s.usage)} – {escape(s.description)}" for s in table if s.admin]
    lines += [
        "",
        f"Timeframes: {', '.join(INTERVALS)}. Example: /signal BTCUSDT 4h",
        "Signals are analysis, not financial advice.",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# sending helpers (everything goes through services.sender)
# --------------------------------------------------------------------------------------------------------------


def chat_id_of(update: Update) -> int | None:
    chat = update.effective_chat
    return chat.id if chat else None


async def reply(update: Update, context: Ctx, text_html: str, markup: InlineKeyboardMarkup | None = None) -> None:
    chat_id = chat_id_of(update)
    if chat_id is not None:
        await get_services(context).sender.text(chat_id, text_html, reply_markup=markup)


def user_prefs(svc: Services, user_id: int) -> UserPrefs:
    """The user's stored settings, or the defaults when none are stored (or the store is not available)."""
    if svc.store is None:
        return UserPrefs()
    stored = svc.store.get_user_settings(user_id)
    return UserPrefs(
        timeframe=stored.default_timeframe or DEFAULT_TIMEFRAME,
        broadcasts=bool(stored.broadcasts),
        min_confidence=stored.min_confidence,
    )


def save_prefs(svc: Services, user_id: int, prefs: UserPrefs) -> None:
    store = svc.require("store")
    position_manager = svc.module("position_manager", "Settings")
    store.set_user_settings(
        user_id,
        position_manager.UserSettings(
            default_timeframe=prefs.timeframe, broadcasts=prefs.broadcasts, min_confidence=prefs.min_confidence
        ),
    )


# --------------------------------------------------------------------------------------------------------------
# user commands
# --------------------------------------------------------------------------------------------------------------


async def cmd_start(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    user = update.effective_user
    name = escape(user.first_name) if user and user.first_name else "trader"
    lines = [
        f"👋 Welcome, {name}!",
        "",
        "I analyse Binance markets with ICT / Smart Money Concepts (order blocks, fair value gaps, liquidity, "
        "market structure, OTE, killzones) and send trade signals with a chart.",
    ]
    chat_id = chat_id_of(update)
    if svc.store is not None and chat_id is not None:
        await asyncio.to_thread(svc.store.subscribe, chat_id)
        lines.append("✅ You are subscribed to signal broadcasts (/unsubscribe to stop).")
    else:
        lines.append("Broadcasts are not available yet in this version.")
    lines += ["", "Try /signal BTCUSDT 1h, or /help for every command."]
    await reply(update, context, "\n".join(lines))


async def cmd_help(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    user = update.effective_user
    admin = svc.settings.is_admin(user.id if user else None)
    await reply(update, context, help_text(commands(), admin=admin))


async def cmd_signal(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    args = context.args or []
    example = "/signal BTCUSDT 1h"
    if not args:
        raise BadInput("Which symbol? Usage: /signal SYMBOL [TIMEFRAME].", example)
    symbol = parse_symbol(args[0], example)
    user = update.effective_user
    if len(args) > 1:
        timeframe = parse_timeframe(args[1], example)
    else:
        timeframe = (await asyncio.to_thread(user_prefs, svc, user.id if user else 0)).timeframe
    await run_signal(update, context, symbol, timeframe)


async def run_signal(update: Update, context: Ctx, symbol: str, timeframe: str) -> None:
    """Analyse ``symbol`` on ``timeframe`` off the event loop and send the chart and the signal (or no trade)."""
    svc = get_services(context)
    chat_id = chat_id_of(update)
    if chat_id is None:
        return
    engine = svc.module("ict_signal_engine", "Signal analysis")
    formatting = svc.module("chat.formatting", "Signal formatting")
    market = svc.require("market")
    md = optional_module("market.source")
    market_errors: tuple[type[BaseException], ...] = (md.MarketDataError,) if md else ()
    await svc.sender.action(chat_id, ChatAction.UPLOAD_PHOTO)  # "sending a photo…" while the analysis runs
    try:
        symbol = await asyncio.to_thread(market.validate_symbol, symbol)
        kwargs: dict[str, Any] = {"predictor": svc.predictor}
        if svc.engine_config is not None:
            kwargs["config"] = svc.engine_config
        analysis = await svc.cpu(engine.analyze, market, symbol, timeframe, **kwargs)
    except market_errors as exc:
        if md is not None and isinstance(exc, md.InvalidSymbolError | md.InvalidIntervalError):
            raise BadInput(str(exc), "/signal BTCUSDT 1h") from None
        await reply(update, context, f"⚠️ Market data problem: {escape(exc)}. Please try again in a minute.")
        return
    result = analysis.result
    tz = svc.settings.tz
    full_html = formatting.format_signal_html(result, tz)
    is_signal = getattr(result, "direction", None) is not None
    signal_id = result.id if is_signal else None
    markup = signal_keyboard(symbol, timeframe, signal_id)
    if is_signal:
        svc.recent.put(result.id, result)
    png = await render_chart(svc, analysis)  # a no-trade gets its chart too: the structure that was seen
    if png is None:
        await svc.sender.text(chat_id, full_html, reply_markup=markup)
    else:  # the sender moves a caption over 1024 characters into a follow-up message
        await svc.sender.photo(chat_id, png, full_html, reply_markup=markup)
    if is_signal and result.confidence >= svc.settings.min_confidence:
        await track(context, svc, chat_id, result, full_html, png)


async def render_chart(svc: Services, analysis: Any) -> bytes | None:
    """The chart PNG, or None (logged) when the chart module is missing or fails: the text still goes out."""
    charts = optional_module("chat.charts")
    if charts is None:
        return None
    try:
        return await svc.cpu(charts.render_signal_chart, analysis)
    except Exception:
        logger.exception("chart rendering failed; sending the signal without a chart")
        return None


async def track(context: Ctx, svc: Services, chat_id: int, signal: Any, html_text: str, png: bytes | None) -> None:
    """Track a requested signal at or above MIN_CONFIDENCE (scanner.track_signal: dedupe, position, journal,
    broadcast). Alerts go to the requester and the eligible subscribers; the broadcast goes to the subscribers
    but not to the requester, who already has the signal: their outbox copy is recorded as sent in the same
    transaction (the scanner's per-chat dedupe key)."""
    scanner = optional_module("tracking.scanner")
    if scanner is None or svc.store is None:
        return

    def work() -> Any:
        store = svc.store
        chats = scanner.recipients_for(store, signal, float(svc.settings.min_confidence))
        chats = [chat_id, *[c for c in chats if c != chat_id]]
        now = pd_now(svc.market)
        with store.transaction():
            own = store.enqueue(chat_id, html_text, None, kind="broadcast", dedupe_key=f"signal:{signal.id}:{chat_id}")
            if own is not None:
                store.mark_sent(own)
            return scanner.track_signal(
                store, svc.cache, svc.journal, signal, chats, html_text=html_text, photo=png, now=now
            )

    try:
        result = await asyncio.to_thread(work)
    except Exception:
        logger.exception("tracking signal %s failed", signal.id)
        return
    if getattr(result, "new", False):
        logger.info("signal %s tracked for chat %s and %d subscriber message(s)", signal.id, chat_id, result.enqueued)
    drain = context.bot_data.get("drain_outbox")
    if drain is not None:
        context.application.create_task(drain(context.application), name="outbox-after-signal")


def pd_now(market: Any) -> datetime:
    """The market's clock as an aware UTC datetime (the replay clock for sample data)."""
    try:
        return market.now().to_pydatetime(warn=False)
    except Exception:
        return datetime.now(UTC)


async def cmd_market(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    market = svc.require("market")
    engine = svc.module("ict_signal_engine", "Market overview")
    symbols = await asyncio.to_thread(scan_symbols, svc)
    timeframe = svc.settings.auto_signal_timeframes[0]
    lines = [f"<b>Market</b> ({escape(timeframe)} analysis, bias per timeframe)", ""]
    rows = await asyncio.gather(*(svc.cpu(market_line, svc, engine, market, s, timeframe) for s in symbols))
    lines += rows
    await reply(update, context, "\n".join(lines))


def market_line(svc: Services, engine: Any, market: Any, symbol: str, timeframe: str) -> str:
    """One line per symbol: price, 24h change, bias per timeframe, nearest zone. Blocking: run in a thread."""
    try:
        price = float(market.price(symbol))
        day = market.klines(symbol, "1h", limit=25)
        change = (price / float(day["close"].iloc[0]) - 1) * 100 if len(day) else float("nan")
        kwargs: dict[str, Any] = {} if svc.engine_config is None else {"config": svc.engine_config}
        result = engine.analyze(market, symbol, timeframe, **kwargs).result
    except Exception as exc:
        logger.info("market line for %s failed: %s", symbol, exc)
        return f"<b>{escape(symbol)}</b>: unavailable ({escape(str(exc).split(':')[0][:60])})"
    bias = " ".join(f"{escape(tf)} {_bias_icon(b)}" for tf, b in result.bias) or "-"
    zone = nearest_zone(result.components, price)
    change_text = "n/a" if math.isnan(change) else f"{change:+.2f}%"
    return f"<b>{escape(symbol)}</b> {fmt_price(price)} ({change_text}) · {bias}" + (f" · {zone}" if zone else "")


def _bias_icon(bias: str) -> str:
    return {"bullish": "▲", "bearish": "▼"}.get(str(bias), "■")


_NOT_ZONES = ("premium", "discount", "range", "target", "session", "killzone")  # components with levels, not zones


def nearest_zone(components: Any, price: float) -> str:
    """The component zone closest to ``price`` as "nearest: bullish OB 64,100–64,300", or ""."""
    best: tuple[float, str] | None = None
    for comp in components or ():
        if comp.top is None or comp.bottom is None or any(w in comp.name for w in _NOT_ZONES):
            continue
        distance = 0.0 if comp.bottom <= price <= comp.top else min(abs(price - comp.top), abs(price - comp.bottom))
        label = f"{comp.direction + ' ' if comp.direction else ''}{comp.name.replace('_', ' ')}"
        text = f"nearest: {escape(label)} {fmt_price(comp.bottom)}–{fmt_price(comp.top)}"
        if best is None or distance < best[0]:
            best = (distance, text)
    return best[1] if best else ""


def scan_symbols(svc: Services) -> tuple[str, ...]:
    """The watchlist, restricted to the symbols the sample data has when MARKET_DATA=sample (Binance: as is)."""
    symbols = current_watchlist(svc)
    if svc.settings.market_data != "sample" or svc.market is None:
        return symbols
    available = set(svc.market.symbols())
    return tuple(s for s in symbols if s in available) or symbols


def current_watchlist(svc: Services) -> tuple[str, ...]:
    """The scan's symbols: the admin-edited list persisted in the store, else WATCHLIST."""
    if svc.store is not None:
        raw = svc.store.get_state("watchlist")  # comma-separated, set by /watchlist
        if raw:
            return tuple(s for s in str(raw).split(",") if s)
    return svc.settings.watchlist


def live_prices(market: Any, symbols: set[str]) -> dict[str, float | None]:
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
    monitor = svc.module("real_time_monitor", "Position tracking")
    positions = await asyncio.to_thread(store.list_open)
    prices: dict[str, float | None] = {}
    if positions and svc.market is not None:
        prices = await asyncio.to_thread(live_prices, svc.market, {p.symbol for p in positions})
    known = {symbol: price for symbol, price in prices.items() if price is not None}
    text = monitor.format_positions_html(positions, known)
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
    monitor = svc.module("real_time_monitor", "Position tracking")
    price = float(await asyncio.to_thread(market.price, position.symbol))
    now = datetime.now(UTC)
    closed = await asyncio.to_thread(monitor.close_and_journal, store, svc.journal, position.id, price, now)
    outcome = closed.outcome
    await reply(
        update,
        context,
        f"✅ Closed #{closed.id} {escape(closed.symbol)} {escape(closed.timeframe)} at {fmt_price(price)}: "
        f"{outcome.r_multiple:+.2f}R ({outcome.pnl_pct:+.2f}%).",
    )


async def cmd_stats(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    journal = svc.require("journal")
    journal_module = svc.module("store.journal", "Statistics")
    text = journal_module.format_stats_html(await asyncio.to_thread(journal.stats))
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
    journal_module = svc.module("store.journal", "The journal")
    records = await asyncio.to_thread(journal.records, count)
    text = journal_module.format_journal_html(records, n=count, tz=svc.settings.tz)
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
    daily_reports = svc.module("daily_reports", "Reports")
    report = await asyncio.to_thread(build_report, daily_reports, svc, period)
    await send_report(svc, chat_id, report)


def build_report(daily_reports: Any, svc: Services, period: str) -> Any:
    """The ``period`` report up to the market's clock (the replay clock with sample data). Blocking."""
    journal = svc.require("journal")
    now = pd_now(svc.market) if svc.market is not None else datetime.now(UTC)
    return daily_reports.build_report(journal, svc.store, period=period, now=now, tz=svc.settings.bot_timezone)


async def send_report(svc: Services, chat_id: int, report: Any) -> None:
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


async def set_broadcasts(svc: Services, user_id: int, chat_id: int, on: bool) -> None:
    """Broadcasts on/off for a chat: the subscriber list and the user's broadcasts setting agree."""
    store = svc.require("store")

    def work() -> None:
        with store.transaction():
            prefs = user_prefs(svc, user_id)
            if prefs.broadcasts != on:
                save_prefs(svc, user_id, replace(prefs, broadcasts=on))
            (store.subscribe if on else store.unsubscribe)(chat_id)

    await asyncio.to_thread(work)


async def cmd_subscribe(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    await set_broadcasts(svc, update.effective_user.id, chat_id_of(update), True)
    await reply(update, context, "✅ Subscribed: you will receive new signals and alerts. /unsubscribe to stop.")


async def cmd_unsubscribe(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    await set_broadcasts(svc, update.effective_user.id, chat_id_of(update), False)
    await reply(update, context, "🔕 Unsubscribed: no more broadcasts. /subscribe to come back.")


SETTINGS_CONFIDENCES = (50, 60, 70, 80)
SETTINGS_TIMEFRAMES = ("15m", "1h", "4h", "1d")


def settings_text(prefs: UserPrefs, default_confidence: float) -> str:
    conf = f"{prefs.min_confidence:g}%" if prefs.min_confidence is not None else f"{default_confidence:g}% (default)"
    return (
        "<b>Your settings</b>\n"
        f"Default timeframe: {escape(prefs.timeframe)}\n"
        f"Broadcasts: {'on' if prefs.broadcasts else 'off'}\n"
        f"Minimum confidence of broadcasts: {conf}\n\n"
        "Tap a button, or: /settings tf 4h · /settings broadcasts off · /settings confidence 70"
    )


def settings_keyboard(prefs: UserPrefs) -> InlineKeyboardMarkup:
    tf_row = [
        InlineKeyboardButton(("✓ " if tf == prefs.timeframe else "") + tf, callback_data=f"set|tf|{tf}")
        for tf in SETTINGS_TIMEFRAMES
    ]
    bc = InlineKeyboardButton(
        "Broadcasts: " + ("on ✓" if prefs.broadcasts else "off ✗"),
        callback_data=f"set|bc|{'off' if prefs.broadcasts else 'on'}",
    )
    conf_row = [
        InlineKeyboardButton(("✓ " if prefs.min_confidence == c else "") + f"≥{c}%", callback_data=f"set|mc|{c}")
        for c in SETTINGS_CONFIDENCES
    ]
    return InlineKeyboardMarkup([tf_row, [bc], conf_row])


def apply_setting(prefs: UserPrefs, key: str, value: str) -> UserPrefs:
    """Return ``prefs`` with one setting changed; raise BadInput for an unknown key or value."""
    key = key.lower()
    if key in ("tf", "timeframe"):
        return replace(prefs, timeframe=parse_timeframe(value, "/settings tf 4h"))
    if key in ("bc", "broadcast", "broadcasts"):
        if value.lower() not in ("on", "off"):
            raise BadInput(f"'{shown(value)}' must be on or off.", "/settings broadcasts off")
        return replace(prefs, broadcasts=value.lower() == "on")
    if key in ("mc", "confidence", "min_confidence"):
        try:
            number = float(value.rstrip("%"))
        except ValueError:
            number = float("nan")
        if not 0 <= number <= 100:
            raise BadInput(f"'{shown(value)}' is not a confidence from 0 to 100.", "/settings confidence 70")
        return replace(prefs, min_confidence=number)
    raise BadInput(f"Unknown setting '{shown(key)}'; use tf, broadcasts or confidence.", "/settings tf 4h")


async def cmd_settings(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    svc.require("store")
    user = update.effective_user
    args = context.args or []
    prefs = await asyncio.to_thread(user_prefs, svc, user.id)
    if args:
        if len(args) != 2:
            raise BadInput("Usage: /settings [tf|broadcasts|confidence VALUE].", "/settings tf 4h")
        before = prefs
        prefs = apply_setting(prefs, args[0], args[1])
        await asyncio.to_thread(save_prefs, svc, user.id, prefs)
        if prefs.broadcasts != before.broadcasts:
            await set_broadcasts(svc, user.id, chat_id_of(update), prefs.broadcasts)
    await reply(update, context, settings_text(prefs, svc.settings.min_confidence), settings_keyboard(prefs))


async def cmd_explain(update: Update, context: Ctx) -> None:
    args = context.args or []
    names = ", ".join(glossary.term_names())
    if not args:
        raise BadInput(f"Which term? Known terms: {escape(names)}.", "/explain FVG")
    query = " ".join(args)[:64]
    term = glossary.lookup(query)
    if term is None:
        raise BadInput(f"I don't know '{shown(query)}'. Known terms: {escape(names)}.", "/explain OB")
    await reply(update, context, f"<b>{escape(term.key)} – {escape(term.title)}</b>\n{escape(term.definition)}")


# --------------------------------------------------------------------------------------------------------------
# callbacks (inline buttons)
# --------------------------------------------------------------------------------------------------------------

_CALLBACK = re.compile(
    r"(sig\|r\|[A-Z0-9]{2,20}\|[0-9]{1,2}[mhdwM]|sig\|d\|[A-Za-z0-9\-]{1,60}|set\|\w{2}\|\w{1,4}|adm\|\w{1,16})"
)


class CallbackAnswer:
    """Answers one callback query exactly once (Telegram shows a spinner until it is answered)."""

    def __init__(self, query: Any) -> None:
        self.query = query
        self.done = False

    async def __call__(self, text: str | None = None) -> None:
        if self.done:
            return
        self.done = True
        try:
            await self.query.answer(text[:190] if text else None)
        except Exception as exc:  # an expired query cannot be answered; nothing else to do
            logger.info("could not answer callback query: %s", exc)


async def on_callback(update: Update, context: Ctx) -> None:
    """Route a button press; every query is answered exactly once, stale or forged data politely."""
    query = update.callback_query
    svc = get_services(context)
    data = query.data or ""
    user_id = query.from_user.id if query.from_user else None
    answer = CallbackAnswer(query)
    try:
        if not svc.settings.is_allowed(user_id):
            logger.warning("refused button %r from user %s (not in ALLOWED_USER_IDS)", data[:64], user_id)
            await answer("This bot is private.")
            return
        if not _CALLBACK.fullmatch(data):
            logger.info("stale or unknown callback data %r from user %s", data[:64], user_id)
            await answer("This button is no longer valid. Send the command again.")
            return
        kind, action, *rest = data.split("|")
        if kind == "adm":
            import admin_module

            if not svc.settings.is_admin(user_id):
                log_refusal(user_id, f"button {data}")
                await answer("⛔ Admins only.")
                return
            await admin_module.on_admin_button(update, context, action, answer)
        elif kind == "sig" and action == "r":
            wait = None if svc.settings.is_admin(user_id) else svc.limiter.hit(user_id or 0)
            if wait is not None:
                await answer(f"Rate limit reached; try again in {math.ceil(wait)} s.")
                return
            await answer("Refreshing…")
            await guarded_call(update, context, lambda: run_signal(update, context, rest[0], parse_interval(rest[1])))
        elif kind == "sig" and action == "d":
            result = svc.recent.get(rest[0])
            if result is None:
                await answer("This signal is no longer in memory; send /signal again for fresh details.")
                return
            formatting = svc.module("chat.formatting", "Signal details")
            await answer()
            await reply(update, context, formatting.format_signal_details_html(result, svc.settings.tz))
        elif kind == "set":
            await settings_button(update, context, action, rest[0])
            await answer("Saved.")
    except (BadInput, NotAvailable) as exc:
        await answer(strip_tags(str(exc)))
    except Exception:
        await answer("Something went wrong; please try again.")
        raise
    finally:
        await answer()


async def settings_button(update: Update, context: Ctx, key: str, value: str) -> None:
    svc = get_services(context)
    query = update.callback_query
    user_id = query.from_user.id
    prefs = apply_setting(await asyncio.to_thread(user_prefs, svc, user_id), key, value)
    await asyncio.to_thread(save_prefs, svc, user_id, prefs)
    if key == "bc" and update.effective_chat is not None:
        await set_broadcasts(svc, user_id, update.effective_chat.id, prefs.broadcasts)
    if query.message is not None:
        await svc.sender.edit(
            query.message.chat.id,
            query.message.message_id,
            settings_text(prefs, svc.settings.min_confidence),
            reply_markup=settings_keyboard(prefs),
        )


def strip_tags(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text))


# --------------------------------------------------------------------------------------------------------------
# the guard: access, admin gating (the one place), rate limit, friendly errors
# --------------------------------------------------------------------------------------------------------------


def log_refusal(user_id: int | None, what: str) -> None:
    logger.warning("refused admin %s from user %s (not in ADMIN_IDS)", what, user_id)


async def guarded_call(update: Update, context: Ctx, call: Callable[[], Awaitable[None]], example: str = "") -> None:
    """Run ``call``; BadInput and NotAvailable become one friendly line, anything else propagates."""
    try:
        await call()
    except BadInput as exc:
        line = f"⚠️ {exc}"
        example = exc.example or example
        if example:
            line += f"\nExample: {escape(example)}"
        await reply(update, context, line)
    except NotAvailable as exc:
        await reply(update, context, f"ℹ️ {escape(exc)}")


async def admitted(update: Update, context: Ctx, what: str) -> bool:
    """The private-bot check (ALLOWED_USER_IDS; admins always pass): refuse, log the user id, return False."""
    user = update.effective_user
    user_id = user.id if user else None
    if get_services(context).settings.is_allowed(user_id):
        return True
    logger.warning("refused %s from user %s (not in ALLOWED_USER_IDS)", what, user_id)
    await reply(update, context, "⛔ This bot is private. Ask its owner for access.")
    return False


def guard(spec: CommandSpec) -> Callback:
    """Wrap a command: private-bot check, admin check, argument count, rate limit, friendly errors."""

    async def run(update: Update, context: Ctx) -> None:
        svc = get_services(context)
        user = update.effective_user
        user_id = user.id if user else None
        if not await admitted(update, context, f"/{spec.name}"):
            return
        is_admin = svc.settings.is_admin(user_id)
        if spec.admin and not is_admin:
            log_refusal(user_id, f"command /{spec.name}")
            await reply(update, context, "⛔ This command is for the bot's admins only.")
            return
        args = context.args or []
        if spec.max_args is not None and len(args) > spec.max_args:
            extra = " ".join(args[spec.max_args :])
            await reply(
                update,
                context,
                f"⚠️ Too many arguments ('{shown(extra)}'). Usage: {escape(spec.usage)}\n"
                f"Example: {escape(spec.example or spec.usage)}",
            )
            return
        if spec.analysis and not is_admin:
            wait = svc.limiter.hit(user_id or 0)
            if wait is not None:
                count, seconds = svc.settings.signal_rate_limit
                await reply(
                    update,
                    context,
                    f"⏳ Rate limit: {count} analyses per {seconds} s. Try again in {math.ceil(wait)} s.",
                )
                return
        await guarded_call(update, context, lambda: spec.callback(update, context), spec.example)

    run.__name__ = f"guarded_{spec.name}"
    return run


# --------------------------------------------------------------------------------------------------------------
# fallbacks: unknown commands, plain text, edited messages
# --------------------------------------------------------------------------------------------------------------


async def on_unknown_command(update: Update, context: Ctx) -> None:
    message = update.effective_message
    if message is None or not message.text:
        return
    first = message.text.split()[0]
    name, _, target = first[1:].partition("@")
    if target and target.lower() != (context.bot.username or "").lower():
        return  # addressed to another bot in a group
    if not target and message.chat.type != ChatType.PRIVATE:
        return  # a bare unknown command in a group may be for another bot
    if not await admitted(update, context, f"unknown command /{name[:32]}"):
        return
    await reply(update, context, f"❓ Unknown command /{shown(name)}. Send /help for the list, e.g. /signal BTCUSDT 1h")


async def on_text(update: Update, context: Ctx) -> None:
    """Anything that is not a command (text, photos, stickers, voice...) in a private chat: one hint line."""
    message = update.effective_message
    if message is None or message.chat.type != ChatType.PRIVATE:
        return
    if not await admitted(update, context, "a plain message"):
        return
    await reply(update, context, "I understand commands. Try /signal BTCUSDT 1h, or /help for the list.")


async def on_edited(update: Update, context: Ctx) -> None:
    message = update.edited_message
    if message is None or not (message.text or "").startswith("/") or message.chat.type != ChatType.PRIVATE:
        return
    if not await admitted(update, context, "an edited command"):
        return
    await reply(
        update,
        context,
        "✏️ Edited messages are not re-run; send the command again as a new message, e.g. /signal BTCUSDT 1h",
    )


# --------------------------------------------------------------------------------------------------------------
# the command table and registration
# --------------------------------------------------------------------------------------------------------------


def command_table() -> tuple[CommandSpec, ...]:
    import admin_module

    user = (
        CommandSpec("start", cmd_start, "/start", "welcome, subscribe to signals", max_args=None),  # deep-link payload
        CommandSpec("help", cmd_help, "/help", "this list"),
        CommandSpec(
            "signal",
            cmd_signal,
            "/signal SYMBOL [TF]",
            "chart + ICT signal or why there is none (TF default: your setting, else 1h)",
            "/signal BTCUSDT 4h",
            analysis=True,
            max_args=2,
        ),
        CommandSpec(
            "market",
            cmd_market,
            "/market",
            "watchlist: price, 24h change, bias per timeframe, nearest zone",
            analysis=True,
        ),
        CommandSpec("positions", cmd_positions, "/positions", "open tracked signals with live P&L"),
        CommandSpec("close", cmd_close, "/close ID", "close a tracked position at the market", "/close 12", max_args=1),
        CommandSpec("stats", cmd_stats, "/stats", "win rate, average R, profit factor by symbol and timeframe"),
        CommandSpec(
            "journal", cmd_journal, "/journal [N]", "the last N journal entries (default 10)", "/journal 20", max_args=1
        ),
        CommandSpec(
            "report",
            cmd_report,
            "/report [daily|weekly|monthly]",
            "performance report with a chart",
            "/report weekly",
            max_args=1,
        ),
        CommandSpec("health", cmd_health, "/health", "market data latency, last scan, jobs, database, model, uptime"),
        CommandSpec("subscribe", cmd_subscribe, "/subscribe", "receive broadcast signals and alerts"),
        CommandSpec("unsubscribe", cmd_unsubscribe, "/unsubscribe", "stop broadcasts"),
        CommandSpec(
            "settings",
            cmd_settings,
            "/settings [tf|broadcasts|confidence VALUE]",
            "your default timeframe, broadcasts on/off, minimum confidence",
            "/settings tf 4h",
            max_args=2,
        ),
        CommandSpec(
            "explain",
            cmd_explain,
            "/explain TERM",
            "ICT glossary (OB, FVG, BOS, CHOCH, OTE, ...)",
            "/explain FVG",
            max_args=3,
        ),
    )
    return user + admin_module.ADMIN_COMMANDS


@functools.cache
def commands() -> tuple[CommandSpec, ...]:
    """The command table (built once; admin commands come from admin_module)."""
    return command_table()


def menu_commands(table: tuple[CommandSpec, ...]) -> list[BotCommand]:
    """The ``setMyCommands`` menu: user commands only (admins know theirs from /help)."""
    return [BotCommand(s.name, s.description[:256]) for s in table if not s.admin]


def register(application: Application) -> tuple[CommandSpec, ...]:
    """Add every handler to ``application`` from the one table; return the table."""
    table = commands()
    new_messages = filters.UpdateType.MESSAGE
    for spec in table:
        application.add_handler(CommandHandler(spec.name, guard(spec), filters=new_messages))
    application.add_handler(CallbackQueryHandler(on_callback))
    application.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE, on_edited))
    application.add_handler(MessageHandler(new_messages & filters.COMMAND, on_unknown_command))
    application.add_handler(MessageHandler(new_messages & ~filters.COMMAND, on_text))  # text, photos, stickers...
    return table
