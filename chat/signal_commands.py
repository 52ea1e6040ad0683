"""Analysis commands: /signal (chart, signal or why there is none, tracking at MIN_CONFIDENCE) and /market."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatAction

import ict_signal_engine
from chat import charts, formatting, jobs
from chat.account_commands import user_prefs
from chat.commands import (
    BadInput,
    Ctx,
    chat_id_of,
    parse_symbol,
    parse_timeframe,
    pd_now,
    reply,
    scan_symbols,
)
from chat.sender import escape
from chat.services import Services, get_services
from engine.prices import format_price
from market.source import (
    InvalidIntervalError,
    InvalidSymbolError,
    MarketData,
    MarketDataError,
    MarketDataUnavailable,
    RateLimitedError,
)
from tracking import scanner

logger = logging.getLogger(__name__)


def signal_keyboard(symbol: str, timeframe: str, signal_id: str | None) -> InlineKeyboardMarkup:
    row = [InlineKeyboardButton("🔄 Refresh", callback_data=f"sig|r|{symbol}|{timeframe}")]
    if signal_id:
        row.append(InlineKeyboardButton("📋 Details", callback_data=f"sig|d|{signal_id}"))
    return InlineKeyboardMarkup([row])


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
    market: MarketData = svc.require("market")
    await svc.sender.action(chat_id, ChatAction.UPLOAD_PHOTO)  # "sending a photo…" while the analysis runs
    try:
        symbol = await asyncio.to_thread(market.validate_symbol, symbol)
        analysis = await svc.cpu(
            ict_signal_engine.analyze,
            market,
            symbol,
            timeframe,
            config=svc.engine_config,
            predictor=svc.predictor,
            cache=svc.analyses,
        )
    except MarketDataError as exc:
        if isinstance(exc, InvalidSymbolError | InvalidIntervalError):
            raise BadInput(str(exc), "/signal BTCUSDT 1h") from None
        # only a temporary failure is worth retrying; a refused location or missing candles will not come back
        retry = " Please try again in a minute." if isinstance(exc, RateLimitedError | MarketDataUnavailable) else ""
        await reply(update, context, f"⚠️ Market data problem: {escape(exc)}.{retry}")
        return
    result = analysis.result
    tz = svc.settings.tz
    is_signal = getattr(result, "direction", None) is not None
    signal_id = result.id if is_signal else None
    markup = signal_keyboard(symbol, timeframe, signal_id)
    png = await render_chart(svc, analysis)  # a no-trade gets its chart too: the structure that was seen
    if is_signal:
        svc.recent.put(result.id, result)
        v = svc.verdict(result)
        price = await asyncio.to_thread(scanner.current_price, market, result)
        # tracked first, so the requester's message can say "tracking as #12" (or why it is not tracked)
        position_id, why_not = (
            await track(context, svc, chat_id, result, v, price, png) if v.broadcast else (None, None)
        )
        line = formatting.tracking_line(v, position_id, why_not)
        full_html = formatting.format_signal_html(result, tz, verdict=v, tracking=line, price=price)
    else:
        full_html = formatting.format_signal_html(result, tz)
    if png is None:
        await svc.sender.text(chat_id, full_html, reply_markup=markup)
    else:  # the sender moves a caption over 1024 characters into a follow-up message
        await svc.sender.photo(chat_id, png, full_html, reply_markup=markup)


async def render_chart(svc: Services, analysis: ict_signal_engine.Analysis) -> bytes | None:
    """The chart PNG, or None (logged) when rendering fails: the text still goes out."""
    try:
        return await svc.cpu(svc.analyses.chart, analysis, charts.render_signal_chart, tz=svc.settings.tz)
    except Exception:
        logger.exception("chart rendering failed; sending the signal without a chart")
        return None


async def track(
    context: Ctx, svc: Services, chat_id: int, signal: Any, v: Any, price: float | None, png: bytes | None
) -> tuple[int | None, str | None]:
    """Track a requested signal the gate passes (scanner.track_signal: dedupe, position, journal, broadcast).

    Alerts go to the requester and the eligible subscribers; the broadcast goes to the subscribers but not to
    the requester, who gets the signal as the answer: their outbox copy is recorded as sent in the same
    transaction (the scanner's per-chat dedupe key). Returns (position id, None) or (None, why not tracked)."""
    if svc.store is None:
        return None, "position tracking is not available"

    def message(position_id: int) -> str:
        line = formatting.tracking_line(v, position_id)
        return formatting.format_signal_html(signal, svc.settings.tz, verdict=v, tracking=line, price=price)

    def work() -> Any:
        store = svc.store
        chats = scanner.recipients_for(store, signal, svc.default_floor)
        chats = [chat_id, *[c for c in chats if c != chat_id], *scanner.broadcast_channel(svc.settings)]
        now = pd_now(svc.market)
        with store.transaction():
            key = f"signal:{signal.id}:{chat_id}"
            own = store.enqueue(chat_id, scanner.plain_signal_html(signal), None, kind="broadcast", dedupe_key=key)
            if own is not None:
                store.mark_sent(own)
            return scanner.track_signal(
                store, svc.cache, svc.journal, signal, chats, html_text=message, photo=png, now=now
            )

    try:
        result = await asyncio.to_thread(work)
    except Exception:
        logger.exception("tracking signal %s failed", signal.id)
        return None, "tracking failed (logged for the operator)"
    context.application.create_task(jobs.drain_outbox(context.application), name="outbox-after-signal")
    if result.position is None:
        return None, "a duplicate of a signal sent recently"
    if result.new:
        logger.info("signal %s tracked for chat %s and %d subscriber message(s)", signal.id, chat_id, result.enqueued)
    return result.position.id, None


async def cmd_market(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    market: MarketData = svc.require("market")
    symbols = await asyncio.to_thread(scan_symbols, svc)
    timeframe = svc.settings.auto_signal_timeframes[0]
    lines = [f"<b>Market</b> ({escape(timeframe)} analysis, bias per timeframe)", ""]
    rows = await asyncio.gather(*(svc.cpu(market_line, svc, market, s, timeframe) for s in symbols))
    lines += rows
    await reply(update, context, "\n".join(lines))


def market_line(svc: Services, market: MarketData, symbol: str, timeframe: str) -> str:
    """One line per symbol: price, 24h change, bias per timeframe, nearest zone. Blocking: run in a thread."""
    try:
        price = float(market.price(symbol))
        day = market.klines(symbol, "1h", limit=25)
        change = (price / float(day["close"].iloc[0]) - 1) * 100 if len(day) else float("nan")
        result = ict_signal_engine.analyze(
            market, symbol, timeframe, config=svc.engine_config, cache=svc.analyses
        ).result
    except Exception as exc:
        logger.info("market line for %s failed: %s", symbol, exc)
        return f"<b>{escape(symbol)}</b>: unavailable ({escape(str(exc).split(':')[0][:60])})"
    bias = " ".join(f"{escape(tf)} {_bias_icon(b)}" for tf, b in result.bias) or "-"
    zone = nearest_zone(result.components, price)
    change_text = "n/a" if math.isnan(change) else f"{change:+.2f}%"
    return f"<b>{escape(symbol)}</b> {format_price(price)} ({change_text}) · {bias}" + (f" · {zone}" if zone else "")


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
        text = f"nearest: {escape(label)} {format_price(comp.bottom)}–{format_price(comp.top)}"
        if best is None or distance < best[0]:
            best = (distance, text)
    return best[1] if best else ""
