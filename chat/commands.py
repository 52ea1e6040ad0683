"""What every command module shares, one layer below them: the command spec, user-input errors and parsers,
reply helpers, the guard (private-bot check, admin gating in one place, argument count, rate limit, friendly
errors) and the small watchlist/clock helpers. ``chat.handlers`` (the table) and ``admin_module`` both import it.
"""

from __future__ import annotations

import html
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from chat.sender import escape
from chat.services import NotAvailable, Services, get_services
from market.source import MarketData
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


def strip_tags(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def chat_id_of(update: Update) -> int | None:
    chat = update.effective_chat
    return chat.id if chat else None


async def reply(update: Update, context: Ctx, text_html: str, markup: InlineKeyboardMarkup | None = None) -> None:
    chat_id = chat_id_of(update)
    if chat_id is not None:
        await get_services(context).sender.text(chat_id, text_html, reply_markup=markup)


def pd_now(market: MarketData | None) -> datetime:
    """The market's clock as an aware UTC datetime (the replay clock for sample data)."""
    try:
        return market.now().to_pydatetime(warn=False)
    except Exception:
        return datetime.now(UTC)


def current_watchlist(svc: Services) -> tuple[str, ...]:
    """The scan's symbols: the admin-edited list persisted in the store, else WATCHLIST."""
    if svc.store is not None:
        raw = svc.store.get_state("watchlist")  # comma-separated, set by /watchlist
        if raw:
            return tuple(s for s in str(raw).split(",") if s)
    return svc.settings.watchlist


def scan_symbols(svc: Services) -> tuple[str, ...]:
    """The watchlist, restricted to the symbols the sample data has when MARKET_DATA=sample (Binance: as is)."""
    symbols = current_watchlist(svc)
    if svc.settings.market_data != "sample" or svc.market is None:
        return symbols
    available = set(svc.market.symbols())
    return tuple(s for s in symbols if s in available) or symbols


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
