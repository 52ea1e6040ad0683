"""The one command table, its registration, /help, the callback router and the fallbacks.

Handlers are thin: parse the arguments, await a service (blocking work in a worker thread), format with a pure
function, and send through :class:`chat.sender.Sender`. Every command is registered from :func:`commands` (built
by :func:`command_table`), which also produces ``/help`` and the ``setMyCommands`` menu. The same handlers serve
Telegram and console mode. The commands live by family in ``signal_commands``, ``tracking_commands``,
``account_commands`` and ``admin_module``; what they share (spec, guard, reply helpers) in ``chat.commands``.

Errors users can cause (bad arguments, unknown symbols, forged buttons) raise :class:`chat.commands.BadInput` and
become one line with an example; a service that failed to start raises :class:`chat.services.NotAvailable` with
its reason; anything else goes to the application's error handler (logged with traceback, admins notified, the
user gets one polite line).
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import math
import platform
import re

import telegram
from telegram import BotCommand, Update
from telegram.constants import ChatType
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, MessageHandler, TypeHandler, filters

import admin_module
from chat import __version__, formatting
from chat.account_commands import (
    cmd_explain,
    cmd_settings,
    cmd_start,
    cmd_subscribe,
    cmd_unsubscribe,
    settings_button,
)
from chat.commands import (
    BadInput,
    CallbackAnswer,
    CommandSpec,
    Ctx,
    admitted,
    guard,
    guarded_call,
    help_text,
    log_refusal,
    parse_symbol,
    parse_timeframe,
    reply,
    shown,
    strip_tags,
)
from chat.services import NotAvailable, get_services
from chat.signal_commands import cmd_market, cmd_signal, run_signal
from chat.tracking_commands import cmd_close, cmd_health, cmd_journal, cmd_positions, cmd_report, cmd_stats

logger = logging.getLogger(__name__)


def version_text() -> str:
    runtime = f"Python {platform.python_version()} · python-telegram-bot {telegram.__version__}"
    return f"ICT Signal Bot {__version__} · {runtime}"


async def cmd_version(update: Update, context: Ctx) -> None:
    await reply(update, context, html.escape(version_text()))


async def cmd_help(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    user = update.effective_user
    admin = svc.settings.is_admin(user.id if user else None)
    await reply(update, context, help_text(commands(), admin=admin))


_CALLBACK = re.compile(
    r"(sig\|r\|[A-Z0-9]{2,20}\|[0-9]{1,2}[mhdwM]|sig\|d\|[A-Za-z0-9\-]{1,60}|set\|\w{2}\|\w{1,4}|adm\|\w{1,16})"
)


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
            # the data is the user's to forge: parsed like typed input (BadInput -> a clear answer, never a crash)
            symbol = parse_symbol(rest[0])
            timeframe = parse_timeframe(rest[1])
            await answer("Refreshing…")
            await guarded_call(update, context, lambda: run_signal(update, context, symbol, timeframe))
        elif kind == "sig" and action == "d":
            result = svc.recent.get(rest[0])
            if result is None:
                await answer("This signal is no longer in memory; send /signal again for fresh details.")
                return
            await answer()
            details = formatting.format_signal_details_html(result, svc.settings.tz, verdict=svc.verdict(result))
            await reply(update, context, details)
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


def command_table() -> tuple[CommandSpec, ...]:
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
        CommandSpec("version", cmd_version, "/version", "the bot's version"),
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


async def on_any_update(update: Update, context: Ctx) -> None:
    """Runs before every handler (group -1): a chat that blocked the bot and writes again may be sent to again."""
    chat = update.effective_chat
    store = get_services(context).store
    if chat is not None and store is not None and await asyncio.to_thread(store.unblock_chat, chat.id):
        logger.info("chat %s wrote again after blocking the bot: sending to it resumes", chat.id)


def register(application: Application) -> tuple[CommandSpec, ...]:
    """Add every handler to ``application`` from the one table; return the table."""
    table = commands()
    new_messages = filters.UpdateType.MESSAGE
    application.add_handler(TypeHandler(Update, on_any_update), group=-1)
    for spec in table:
        application.add_handler(CommandHandler(spec.name, guard(spec), filters=new_messages))
    application.add_handler(CallbackQueryHandler(on_callback))
    application.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE, on_edited))
    application.add_handler(MessageHandler(new_messages & filters.COMMAND, on_unknown_command))
    application.add_handler(MessageHandler(new_messages & ~filters.COMMAND, on_text))  # text, photos, stickers...
    return table
