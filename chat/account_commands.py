"""Account commands: /start, /subscribe, /unsubscribe, /settings (and its buttons) and /explain."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from chat import glossary
from chat.commands import DEFAULT_TIMEFRAME, BadInput, Ctx, chat_id_of, parse_timeframe, reply, shown
from chat.sender import escape
from chat.services import Services, get_services
from store.outbox import UserSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UserPrefs:
    """Per-user settings (persisted in the position store)."""

    timeframe: str = DEFAULT_TIMEFRAME
    broadcasts: bool = True
    min_confidence: float | None = None  # None: the bot's MIN_CONFIDENCE


def user_prefs(svc: Services, user_id: int) -> UserPrefs:
    """The user's stored settings, or the defaults when none are stored (or the store failed to start)."""
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
    store.set_user_settings(
        user_id,
        UserSettings(
            default_timeframe=prefs.timeframe, broadcasts=prefs.broadcasts, min_confidence=prefs.min_confidence
        ),
    )


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
        lines.append(f"<i>{escape(svc.gate_status())}</i>")
    else:
        reason = svc.problems.get("store", "no chat")
        lines.append(f"Broadcasts are not available right now ({escape(reason)}).")
    lines += ["", "Try /signal BTCUSDT 1h, or /help for every command."]
    await reply(update, context, "\n".join(lines))


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
    text = "✅ Subscribed: you will receive new signals and alerts. /unsubscribe to stop."
    await reply(update, context, f"{text}\n<i>{escape(svc.gate_status())}</i>")


async def cmd_unsubscribe(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    await set_broadcasts(svc, update.effective_user.id, chat_id_of(update), False)
    await reply(update, context, "🔕 Unsubscribed: no more broadcasts. /subscribe to come back.")


SETTINGS_CONFIDENCES = (50, 60, 70, 80)


SETTINGS_TIMEFRAMES = ("15m", "1h", "4h", "1d")


def settings_text(prefs: UserPrefs, default_floor: float, gate_line: str = "") -> str:
    """``default_floor``: the rule-score minimum of users who set none (Services.default_floor; 0 = none)."""
    if prefs.min_confidence is not None:
        floor = f"{prefs.min_confidence:g}"
    else:
        floor = f"{default_floor:g} (default)" if default_floor > 0 else "none (default)"
    return (
        "<b>Your settings</b>\n"
        f"Default timeframe: {escape(prefs.timeframe)}\n"
        f"Broadcasts: {'on' if prefs.broadcasts else 'off'}\n"
        f"Minimum rule score of broadcasts (0-100, not a probability): {floor}\n"
        + (f"<i>{escape(gate_line)}</i>\n" if gate_line else "")
        + "\nTap a button, or: /settings tf 4h · /settings broadcasts off · /settings confidence 70"
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
        InlineKeyboardButton(("✓ " if prefs.min_confidence == c else "") + f"≥{c}", callback_data=f"set|mc|{c}")
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
    await reply(update, context, settings_text(prefs, svc.default_floor, svc.gate_status()), settings_keyboard(prefs))


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
            settings_text(prefs, svc.default_floor, svc.gate_status()),
            reply_markup=settings_keyboard(prefs),
        )


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
