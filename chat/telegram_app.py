"""The Telegram application: builder, lifecycle (post_init / post_shutdown), error handler, jobs, polling.

``python bot.py`` with ``TELEGRAM_BOT_TOKEN`` set ends up in :func:`main`. Console mode (``console.py``) builds
the same application with a local request object instead of HTTP, so both modes run the same handlers.

Lifecycle: :func:`build_application` registers the handlers from the one command table; ``post_init`` builds the
services in a worker thread (the ML model loads off the event loop), installs the :class:`sender.Sender`,
registers the command menu and schedules the jobs (:mod:`chat.jobs`); ``post_shutdown`` closes the services.
:func:`running` is the async context manager that starts and stops the updates (used by :func:`main` and the
end-to-end tests): long polling, or with ``TELEGRAM_WEBHOOK_URL`` a webhook server (PTB's ``start_webhook``, the
``webhooks`` extra) bound to ``TELEGRAM_WEBHOOK_LISTEN`` that serves the URL's path and refuses (403) every post
without the ``TELEGRAM_WEBHOOK_SECRET`` header; ``setWebhook`` registers the URL and the secret with Telegram.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from telegram import Update
from telegram.error import Conflict, InvalidToken, NetworkError, TelegramError, TimedOut
from telegram.ext import AIORateLimiter, Application, ContextTypes, Defaults
from telegram.request import BaseRequest

from chat import handlers
from chat.jobs import schedule_jobs
from chat.sender import Sender, escape
from chat.services import SERVICES_KEY, Services, build_services
from config import Settings

logger = logging.getLogger(__name__)

RATE_LIMITER_RETRIES = 3  # RetryAfter answers the rate limiter waits out before the sender's own retries
POLL_TIMEOUT_SECONDS = 25
# PTB waits 5 s for Telegram's answer by default; a send that times out may still be delivered and is then not
# resent (chat.sender), so sends get time to finish: uploads of charts and backups over slow links included
SEND_READ_TIMEOUT_SECONDS = 30.0
SEND_WRITE_TIMEOUT_SECONDS = 30.0


def file_url_for(base_url: str) -> str:
    """The Bot API file URL matching ``base_url`` (``.../bot`` -> ``.../file/bot``)."""
    if base_url.endswith("/bot"):
        return base_url[: -len("/bot")] + "/file/bot"
    return base_url.rstrip("/") + "/file/bot"


def redact(text: str, token: str | None) -> str:
    """``text`` with the bot token replaced by ``***`` (URLs carry the token in their path)."""
    return text.replace(token, "***") if token else text


class TokenFilter(logging.Filter):
    """Removes the bot token from every log record that passes through a handler."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg = redact(message, self.token)
            record.args = None
        if record.exc_info and not record.exc_text:  # tracebacks of HTTP errors may quote the URL
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.token)
        return True


def protect_token(token: str | None) -> None:
    """Keep the token out of logs: httpx logs request URLs at INFO, which contain it; silence and redact."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if token:
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, TokenFilter) for f in handler.filters):
                handler.addFilter(TokenFilter(token))


ServicesFactory = Callable[[], Services]


def build_application(
    settings: Settings,
    *,
    services_factory: ServicesFactory | None = None,
    request: BaseRequest | None = None,
    token: str | None = None,
    mode: str = "telegram",
    jobs: bool = True,
    rate_limiter: bool = True,
    concurrent_updates: int = 32,
) -> Application:
    """The python-telegram-bot Application with every handler, the error handler and the lifecycle hooks.

    ``request`` replaces HTTP (console mode); ``services_factory`` replaces :func:`services.build_services`
    (tests, console fallback). Jobs are scheduled in ``post_init`` when ``jobs`` is true.
    """
    builder = (
        Application.builder()
        .token(token or settings.telegram_bot_token or "")
        .base_url(settings.telegram_api_base_url)
        .base_file_url(file_url_for(settings.telegram_api_base_url))
        .defaults(Defaults(parse_mode="HTML", tzinfo=settings.tz))
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .concurrent_updates(concurrent_updates)
    )
    if rate_limiter:
        builder = builder.rate_limiter(AIORateLimiter(max_retries=RATE_LIMITER_RETRIES))
    if request is not None:
        builder = builder.request(request).get_updates_request(request)
    else:
        builder = builder.read_timeout(SEND_READ_TIMEOUT_SECONDS).write_timeout(SEND_WRITE_TIMEOUT_SECONDS)
    if not jobs:
        builder = builder.job_queue(None)
    application = builder.build()
    application.bot_data["settings"] = settings
    application.bot_data["mode"] = mode
    application.bot_data["jobs"] = jobs
    application.bot_data["services_factory"] = services_factory or partial(build_services, settings, mode=mode)
    handlers.register(application)
    application.add_error_handler(on_error)
    return application


async def post_init(application: Application) -> None:
    factory: ServicesFactory = application.bot_data["services_factory"]
    services = await asyncio.to_thread(factory)  # loads the ML model and opens stores off the event loop
    services.sender = Sender(
        application.bot,
        on_blocked=partial(unsubscribe_blocked, services),
        on_migrated=partial(migrate_chat, services),
    )
    if services.store is not None:  # before the first drain: what a killed process was sending is not resent
        for row in await asyncio.to_thread(services.store.settle_in_flight):
            logger.warning(
                "outbox message %d (%s to chat %s) was in flight when the bot stopped: maybe delivered, not resent",
                row.id,
                row.kind,
                row.chat_id,
            )
    application.bot_data[SERVICES_KEY] = services
    try:
        await application.bot.set_my_commands(handlers.menu_commands(handlers.commands()))
    except TelegramError as exc:
        logger.warning("could not register the command menu: %s", exc)
    if application.bot_data.get("jobs"):
        schedule_jobs(application, services)
    for problem in sorted(services.problems.items()):
        logger.info("failed to start: %s (%s)", *problem)


async def post_shutdown(application: Application) -> None:
    services = application.bot_data.pop(SERVICES_KEY, None)
    if isinstance(services, Services):
        await asyncio.to_thread(services.close)


async def unsubscribe_blocked(services: Services, chat_id: int) -> None:
    """Telegram answered 403 for ``chat_id``: drop its queued messages and send it nothing until it writes again."""
    if services.store is not None:
        dropped = await asyncio.to_thread(services.store.block_chat, chat_id)
        logger.info("chat %s blocked the bot: unsubscribed, %d queued message(s) dropped", chat_id, dropped)


async def migrate_chat(services: Services, old: int, new: int) -> None:
    """A group became a supergroup: its subscription, settings and queued messages follow it to the new id."""
    if services.store is not None:
        await asyncio.to_thread(services.store.migrate_chat, old, new)
        logger.info("chat %s migrated to supergroup %s: subscription and queued messages moved", old, new)


# --------------------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------------------


def describe(update: object) -> str:
    if isinstance(update, Update):
        user = update.effective_user
        message = update.effective_message
        text = (message.text or "")[:60] if message else (update.callback_query.data if update.callback_query else "")
        return f"update {update.update_id} from user {user.id if user else '?'} ({text!r})"
    return repr(update)[:100]


def error_kind(error: BaseException | None) -> str:
    """What makes two errors "the same" for admin reports: the exception type and where it was raised."""
    if error is None:
        return "None"
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(error).__name__}@{where}"


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The one error handler: log with traceback, tell the user one line, notify the admins."""
    error = context.error
    if isinstance(error, Conflict):
        report_conflict(context.application, error)
        return
    if update is None and isinstance(error, NetworkError | TimedOut):
        logger.warning("network problem talking to Telegram: %s", error)
        return
    logger.error("error while handling %s", describe(update), exc_info=error)
    services = context.bot_data.get(SERVICES_KEY)
    if not isinstance(services, Services) or services.sender is None:
        return
    if isinstance(update, Update) and update.effective_chat is not None:
        with contextlib.suppress(Exception):
            await services.sender.text(
                update.effective_chat.id, "😕 Something went wrong on my side. Please try again in a moment."
            )
    if services.mode == "console":
        return  # the console operator already sees the log
    suppressed = services.error_reports.admit(error_kind(error))
    if suppressed is None:
        logger.info("admin report of %s suppressed (one per kind per period)", type(error).__name__)
        return
    tail = "".join(traceback.format_exception(error)[-6:]) if error else ""
    notice = (
        f"⚠️ <b>Error</b> while handling {escape(describe(update))}:\n"
        f"<code>{escape(type(error).__name__)}: {escape(str(error)[:300])}</code>\n<pre>{escape(tail[-2500:])}</pre>"
    )
    if suppressed:
        notice += f"\n({suppressed} more of this kind since the last report were not sent)"
    for admin_id in sorted(services.settings.admin_ids):
        with contextlib.suppress(Exception):
            await services.sender.text(admin_id, notice)


CONFLICT_REASON = (
    "another instance is already polling this bot token (Telegram answered 409 Conflict); "
    "stop the other instance or use a different token"
)


def report_conflict(application: Application, error: Exception) -> None:
    if "fatal" not in application.bot_data:
        logger.error("stopping: %s (%s)", CONFLICT_REASON, error)
        # the updater's final "mark updates read" call will hit the same 409: not worth a traceback
        logging.getLogger("telegram.ext.Updater").setLevel(logging.CRITICAL)
    application.bot_data["fatal"] = CONFLICT_REASON
    stop = application.bot_data.get("stop_event")
    if isinstance(stop, asyncio.Event):
        stop.set()


def polling_error_callback(application: Application) -> Callable[[TelegramError], None]:
    def on_polling_error(error: TelegramError) -> None:
        if isinstance(error, Conflict):
            report_conflict(application, error)
        else:
            logger.warning("polling Telegram failed: %s (retrying)", error)

    return on_polling_error


# --------------------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(
    application: Application, *, poll_timeout: float = POLL_TIMEOUT_SECONDS, poll_interval: float = 0.0
) -> AsyncIterator[Application]:
    """Initialise, run post_init, start polling and the application; undo all of it on exit."""
    stop = application.bot_data.setdefault("stop_event", asyncio.Event())
    await application.initialize()
    settings = application.bot_data.get("settings")
    try:
        await post_init(application)
        if settings is not None and settings.telegram_webhook_url:
            await start_webhook(application, settings)
        else:
            await application.updater.start_polling(
                timeout=poll_timeout,
                poll_interval=poll_interval,
                allowed_updates=Update.ALL_TYPES,
                error_callback=polling_error_callback(application),
            )
        await application.start()
        try:
            yield application
        finally:
            stop.set()
            if application.updater.running:
                await application.updater.stop()
            if application.running:
                await application.stop()
            await post_shutdown(application)
    finally:
        await application.shutdown()


async def start_webhook(application: Application, settings: Settings) -> None:
    """Serve the webhook URL's path on TELEGRAM_WEBHOOK_LISTEN and register URL and secret with Telegram."""
    host, port = settings.telegram_webhook_listen
    path = urlparse(settings.telegram_webhook_url).path.strip("/")
    await application.updater.start_webhook(
        listen=host,
        port=port,
        url_path=path,
        webhook_url=settings.telegram_webhook_url,
        secret_token=settings.telegram_webhook_secret,
        allowed_updates=Update.ALL_TYPES,
        bootstrap_retries=3,
    )
    logger.info("webhook: serving /%s on %s:%d for %s", path, host, port, settings.telegram_webhook_url)


def say(line: str) -> None:
    """One line for the operator on stderr (start-up failures, fatal stops)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


async def serve(settings: Settings) -> int:
    """Run the bot until SIGINT/SIGTERM or a fatal condition; the exit status."""
    application = build_application(settings)
    stop = asyncio.Event()
    application.bot_data["stop_event"] = stop
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with running(application):
            me = application.bot
            logger.info("bot @%s is running (Ctrl+C to stop)", me.username)
            await stop.wait()
    except InvalidToken:
        say("Telegram rejected TELEGRAM_BOT_TOKEN (401 Unauthorized); check the token from @BotFather")
        return 2
    except NetworkError as exc:
        say(f"cannot reach the Telegram Bot API ({redact(str(exc), settings.telegram_bot_token)})")
        return 1
    except OSError as exc:  # e.g. BOT_DATA_DIR not writable
        say(f"cannot start: {exc}")
        return 1
    fatal = application.bot_data.get("fatal")
    if fatal:
        say(f"stopped: {fatal}")
        return 1
    return 0


def main(args: Any, settings: Settings) -> int:
    """``python bot.py`` with a token: run the Telegram bot."""
    if not settings.telegram_bot_token:
        say("TELEGRAM_BOT_TOKEN is not set (use 'python bot.py console' for console mode)")
        return 2
    protect_token(settings.telegram_bot_token)
    return asyncio.run(serve(settings))
