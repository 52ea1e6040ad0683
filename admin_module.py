"""Admin-only commands and the admin panel.

Gating is not done here: every spec below has ``admin=True`` and :func:`chat.commands.guard` (commands) and
:func:`chat.handlers.on_callback` (panel buttons) refuse non-admins in one place, logging the user id.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from chat.commands import BadInput, CommandSpec, Ctx, chat_id_of, current_watchlist, parse_symbol, reply, shown
from chat.jobs import drain_outbox, retrain, scan_now
from chat.sender import escape
from chat.services import Services, get_services
from chat.tracking_commands import cmd_health
from market.source import MarketDataError
from position_manager import PositionStore

logger = logging.getLogger(__name__)

MAX_BROADCAST_CHARS = 3500
MAX_DOCUMENT_BYTES = 49 * 1024 * 1024  # Telegram bots may upload documents up to 50 MB
# the data stores, by name: nothing else in the data folder (a stray JSON, a copied secret) goes into a backup
BACKUP_FILES = (
    "positions.db",
    "trading_journal.json",
    "bot_stats.json",
    "sent_signals_cache.json",
    "ml_model.pkl",
    "ml_ensemble.pkl",
    "evidence.json",
)


def admin_keyboard(paused: bool) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    "▶️ Resume" if paused else "⏸ Pause", callback_data="adm|resume" if paused else "adm|pause"
                ),
                InlineKeyboardButton("🔍 Scan now", callback_data="adm|scan"),
            ],
            [
                InlineKeyboardButton("👥 Users", callback_data="adm|users"),
                InlineKeyboardButton("🩺 Health", callback_data="adm|health"),
            ],
            [
                InlineKeyboardButton("💾 Backup", callback_data="adm|backup"),
                InlineKeyboardButton("🧠 Train", callback_data="adm|train"),
            ],
        ]
    )


def is_paused(svc: Services) -> bool:
    return svc.store is not None and svc.store.paused


async def cmd_admin(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    paused = await asyncio.to_thread(is_paused, svc)
    watch = await asyncio.to_thread(current_watchlist, svc)
    text = (
        "<b>Admin panel</b>\n"
        f"Scheduled signals: {'PAUSED' if paused else 'running'}\n"
        f"{escape(svc.gate_status())}\n"
        f"Watchlist: {escape(', '.join(watch))} · timeframes {escape(', '.join(svc.settings.auto_signal_timeframes))}\n"
        "Commands: /broadcast TEXT · /pause · /resume · /scan · /train · /backup · /users · /watchlist"
    )
    await reply(update, context, text, admin_keyboard(paused))


async def cmd_broadcast(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    store = svc.require("store")
    message = update.effective_message
    text = (message.text or "").partition(" ")[2].strip() if message else ""
    if not text:
        raise BadInput("What should I send? Usage: /broadcast TEXT.", "/broadcast Maintenance at 18:00 UTC")
    if len(text) > MAX_BROADCAST_CHARS:
        raise BadInput(f"The text is {len(text)} characters; the limit is {MAX_BROADCAST_CHARS}.", "/broadcast Hello")
    body = "📢 " + escape(text)
    count = await asyncio.to_thread(enqueue_to_subscribers, store, body)
    await drain_outbox(context.application)
    await reply(update, context, f"📢 Queued for {count} subscriber(s).")


def enqueue_to_subscribers(store: PositionStore, body: str) -> int:
    chats = store.subscribers()
    with store.transaction():
        for chat_id in chats:
            store.enqueue(chat_id, body, kind="notice")
    return len(chats)


async def set_paused(svc: Services, paused: bool) -> None:
    store = svc.require("store")
    await asyncio.to_thread(store.set_paused, paused)
    logger.info("scheduled signals %s", "paused" if paused else "resumed")


async def cmd_pause(update: Update, context: Ctx) -> None:
    await set_paused(get_services(context), True)
    await reply(update, context, "⏸ Scheduled signals paused (persisted). /resume to restart them.")


async def cmd_resume(update: Update, context: Ctx) -> None:
    await set_paused(get_services(context), False)
    await reply(update, context, "▶️ Scheduled signals resumed.")


async def cmd_scan(update: Update, context: Ctx) -> None:
    await reply(update, context, "🔍 Scanning the watchlist…")
    summary = await scan_now(context.application, forced=True)
    await reply(update, context, summary)


async def cmd_train(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    await reply(update, context, "🧠 Training the model from the journal…")
    text = await retrain(svc)
    await reply(update, context, f"<pre>{escape(text)}</pre>")


def make_backup(data_dir: Path) -> bytes:
    """A zip of the data stores that exist (:data:`BACKUP_FILES`); SQLite is copied with its online backup API so
    the copy is consistent."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in BACKUP_FILES:
            path = data_dir / name
            if not path.is_file():
                continue
            if path.suffix == ".db":
                with tempfile.TemporaryDirectory() as tmp:
                    copy = Path(tmp) / path.name
                    src = sqlite3.connect(path)
                    dst = sqlite3.connect(copy)
                    try:
                        src.backup(dst)
                    finally:
                        dst.close()
                        src.close()
                    archive.write(copy, path.name)
            else:
                archive.write(path, path.name)
    return buffer.getvalue()


async def cmd_backup(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    chat_id = chat_id_of(update)
    if chat_id is None:
        return
    data = await asyncio.to_thread(make_backup, svc.data_dir)
    if len(data) > MAX_DOCUMENT_BYTES:
        await reply(
            update,
            context,
            f"⚠️ The backup is {len(data) / 1e6:.0f} MB, over Telegram's 50 MB limit for bots; "
            f"copy {escape(str(svc.data_dir))} on the server instead.",
        )
        return
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    await svc.sender.document(chat_id, data, f"ict-bot-backup-{stamp}.zip", "💾 Data stores backup")


async def cmd_users(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    store = svc.require("store")
    ids = [str(chat_id) for chat_id in await asyncio.to_thread(store.subscribers)]
    shown_ids = ", ".join(ids[:50]) + (f" … (+{len(ids) - 50})" if len(ids) > 50 else "")
    await reply(
        update,
        context,
        f"<b>Users</b>\nSubscribers: {len(ids)}"
        + (f"\n{escape(shown_ids)}" if ids else "")
        + f"\nAdmins: {len(svc.settings.admin_ids)} · private: {'yes' if svc.settings.allowed_user_ids else 'no'}",
    )


def edit_watchlist(svc: Services, action: str, symbol: str) -> list[str]:
    """Add or remove ``symbol`` atomically (read-modify-write in one store transaction); the new list."""
    store = svc.require("store")
    with store.transaction():
        current = list(current_watchlist(svc))
        if action == "add":
            if symbol not in current:
                current.append(symbol)
        else:
            if symbol not in current:
                raise BadInput(f"{shown(symbol)} is not on the watchlist.", "/watchlist remove SOLUSDT")
            if len(current) == 1:
                raise BadInput("The watchlist needs at least one symbol.", "/watchlist add BTCUSDT")
            current.remove(symbol)
        store.set_state("watchlist", ",".join(current))
    return current


async def cmd_watchlist(update: Update, context: Ctx) -> None:
    svc = get_services(context)
    args = context.args or []
    if not args:
        current = list(await asyncio.to_thread(current_watchlist, svc))
    else:
        action = args[0].lower()
        if len(args) != 2 or action not in ("add", "remove"):
            raise BadInput("Usage: /watchlist [add|remove SYMBOL].", "/watchlist add ADAUSDT")
        symbol = parse_symbol(args[1], "/watchlist add ADAUSDT")
        if action == "add":
            market = svc.require("market")
            try:
                symbol = await asyncio.to_thread(market.validate_symbol, symbol)
            except MarketDataError as exc:
                raise BadInput(str(exc), "/watchlist add ADAUSDT") from None
        current = await asyncio.to_thread(edit_watchlist, svc, action, symbol)
    await reply(update, context, f"👀 Watchlist ({len(current)}): {escape(', '.join(current))}")


async def on_admin_button(update: Update, context: Ctx, action: str, answer: Any) -> None:
    """Admin panel buttons (the caller has checked the user is an admin); ``answer`` answers the query once."""
    svc = get_services(context)
    query = update.callback_query
    if action in ("pause", "resume"):
        await set_paused(svc, action == "pause")
        if query.message is not None:
            await svc.sender.edit(
                query.message.chat.id,
                query.message.message_id,
                f"<b>Admin panel</b>\nScheduled signals: {'PAUSED' if action == 'pause' else 'running'}",
                reply_markup=admin_keyboard(action == "pause"),
            )
        await answer("Paused." if action == "pause" else "Resumed.")
        return
    commands = {
        "scan": cmd_scan,
        "users": cmd_users,
        "health": cmd_health,
        "backup": cmd_backup,
        "train": cmd_train,
    }
    command = commands.get(action)
    if command is None:
        await answer("This button is no longer valid.")
        return
    await answer("Working…")
    context.args = []
    await command(update, context)


ADMIN_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("admin", cmd_admin, "/admin", "admin panel", admin=True),
    CommandSpec(
        "broadcast",
        cmd_broadcast,
        "/broadcast TEXT",
        "send TEXT to every subscriber",
        "/broadcast Maintenance at 18:00 UTC",
        admin=True,
        max_args=None,
    ),
    CommandSpec("pause", cmd_pause, "/pause", "pause scheduled signals", admin=True),
    CommandSpec("resume", cmd_resume, "/resume", "resume scheduled signals", admin=True),
    CommandSpec("scan", cmd_scan, "/scan", "scan the watchlist now", admin=True),
    CommandSpec("train", cmd_train, "/train", "retrain the ML model now", admin=True),
    CommandSpec("backup", cmd_backup, "/backup", "the data stores as a zip document", admin=True),
    CommandSpec("users", cmd_users, "/users", "subscribers and access settings", admin=True),
    CommandSpec(
        "watchlist",
        cmd_watchlist,
        "/watchlist [add|remove SYMBOL]",
        "show or edit the scan watchlist",
        "/watchlist add ADAUSDT",
        admin=True,
        max_args=2,
    ),
)
