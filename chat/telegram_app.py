"""The Telegram application: builder, lifecycle (post_init / post_shutdown), error handler, jobs, polling.

``python bot.py`` with ``TELEGRAM_BOT_TOKEN`` set ends up in :func:`main`. Console mode (``console.py``) builds
the same application with a local request object instead of HTTP, so both modes run the same handlers.

Lifecycle: :func:`build_application` registers the handlers from the one command table; ``post_init`` builds the
services in a worker thread (the ML model loads off the event loop), installs the :class:`sender.Sender`,
registers the command menu and schedules the jobs; ``post_shutdown`` closes the services. :func:`running` is the
async context manager that starts and stops polling (used by :func:`main` and the end-to-end tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, time
from functools import partial
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.error import Conflict, InvalidToken, NetworkError, TelegramError, TimedOut
from telegram.ext import AIORateLimiter, Application, ContextTypes, Defaults
from telegram.request import BaseRequest

from chat import handlers
from chat.sender import Delivery, Sender, escape
from chat.services import SERVICES_KEY, NotAvailable, Services, build_services, get_services, optional_module
from config import Settings

logger = logging.getLogger(__name__)

OUTBOX_INTERVAL_SECONDS = 3
OUTBOX_BATCH = 50
RATE_LIMITER_RETRIES = 3  # RetryAfter answers the rate limiter waits out before the sender's own retries
POLL_TIMEOUT_SECONDS = 25


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
    if not jobs:
        builder = builder.job_queue(None)
    application = builder.build()
    application.bot_data["settings"] = settings
    application.bot_data["mode"] = mode
    application.bot_data["jobs"] = jobs
    application.bot_data["services_factory"] = services_factory or partial(build_services, settings, mode=mode)
    application.bot_data["drain_outbox"] = drain_outbox
    application.bot_data["scan_now"] = scan_now
    handlers.register(application)
    application.add_error_handler(on_error)
    return application


async def post_init(application: Application) -> None:
    factory: ServicesFactory = application.bot_data["services_factory"]
    services = await asyncio.to_thread(factory)  # loads the ML model and opens stores off the event loop
    services.sender = Sender(application.bot, on_blocked=partial(unsubscribe_blocked, services))
    application.bot_data[SERVICES_KEY] = services
    try:
        await application.bot.set_my_commands(handlers.menu_commands(handlers.commands()))
    except TelegramError as exc:
        logger.warning("could not register the command menu: %s", exc)
    if application.bot_data.get("jobs"):
        schedule_jobs(application, services)
    for problem in sorted(services.problems.items()):
        logger.info("not available: %s (%s)", *problem)


async def post_shutdown(application: Application) -> None:
    services = application.bot_data.pop(SERVICES_KEY, None)
    if isinstance(services, Services):
        await asyncio.to_thread(services.close)


async def unsubscribe_blocked(services: Services, chat_id: int) -> None:
    if services.store is not None:
        await asyncio.to_thread(services.store.unsubscribe, chat_id)


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
    tail = "".join(traceback.format_exception(error)[-6:]) if error else ""
    notice = (
        f"⚠️ <b>Error</b> while handling {escape(describe(update))}:\n"
        f"<code>{escape(type(error).__name__)}: {escape(str(error)[:300])}</code>\n<pre>{escape(tail[-2500:])}</pre>"
    )
    if services.mode == "console":
        return  # the console operator already sees the log
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
# outbox, scan, monitor, reports, retrain, cache cleanup
# --------------------------------------------------------------------------------------------------------------


async def drain_outbox(application: Application) -> int:
    """Send pending outbox messages (alerts, broadcasts, reports) through the sender; return how many were sent.

    At most one drain runs at a time; a message is marked sent only after Telegram accepted it, so a kill at any
    moment loses nothing (at worst one message is sent twice).
    """
    services = application.bot_data.get(SERVICES_KEY)
    if not isinstance(services, Services) or services.store is None or services.sender is None:
        return 0
    if services.outbox_lock.locked():
        return 0
    sent = 0
    async with services.outbox_lock:
        while True:
            items = await asyncio.to_thread(services.store.pending_outbox, OUTBOX_BATCH)
            if not items:
                return sent
            for item in items:
                photo = item.photo or await asyncio.to_thread(read_photo, item.photo_path)
                if photo:
                    result = await services.sender.photo(item.chat_id, photo, item.html)
                else:
                    result = await services.sender.text(item.chat_id, item.html)
                if result.ok:
                    await asyncio.to_thread(services.store.mark_sent, item.id)
                    sent += 1
                else:
                    permanent = result.delivery in (Delivery.BLOCKED, Delivery.FAILED)
                    await asyncio.to_thread(services.store.mark_failed, item.id, result.reason, permanent)
                    if not permanent:
                        return sent  # Telegram is struggling: leave the rest for the next run


def read_photo(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        logger.warning("outbox photo %s unreadable (%s); sending the text only", path, exc)
        return None


async def scan_now(application: Application, *, forced: bool = False) -> str:
    """Run the watchlist scan once (skipped while paused unless ``forced``); a one-line HTML summary."""
    services = get_services(application)
    if not forced and services.store is not None and services.store.paused:
        return "Scheduled signals are paused."
    if services.scan_lock.locked():
        return "A scan is already running."
    scanner = services.module("tracking.scanner", "Scanning")
    symbols = await asyncio.to_thread(handlers.scan_symbols, services)
    async with services.scan_lock:
        result = await asyncio.to_thread(scanner.run_scan, services, symbols, services.settings.auto_signal_timeframes)
    services.last_scan = datetime.now(UTC)
    if services.store is not None:
        await asyncio.to_thread(services.store.set_state, "last_scan", services.last_scan.isoformat(timespec="seconds"))
    await drain_outbox(application)
    return escape(result.summary())


async def job_scan(context: ContextTypes.DEFAULT_TYPE) -> None:
    try:
        logger.info("scheduled scan: %s", await scan_now(context.application))
    except NotAvailable as exc:
        logger.info("scheduled scan skipped: %s", exc)


async def job_monitor(context: ContextTypes.DEFAULT_TYPE) -> None:
    services = get_services(context)
    monitor = optional_module("real_time_monitor")
    if monitor is None or services.store is None or services.market is None or services.monitor_lock.locked():
        return
    async with services.monitor_lock:
        report = await asyncio.to_thread(
            monitor.monitor_tick, services.store, services.market, services.journal, settings=services.settings
        )
    if report.events or report.errors:
        logger.info("monitor: %s", report)
    if report.journaled:
        await count_outcomes(context.application, services, report.journaled)
    services.last_monitor = datetime.now(UTC)
    await drain_outbox(context.application)


RETRAIN_AFTER_OUTCOMES = 50  # closed outcomes since the last training that trigger a retrain


async def count_outcomes(application: Application, services: Services, new: int) -> None:
    """Count journaled outcomes (persisted); retrain in the background once enough new ones arrived."""
    store = services.store
    total = int(store.get_state("outcomes_since_train", "0") or 0) + new
    if total < RETRAIN_AFTER_OUTCOMES:
        await asyncio.to_thread(store.set_state, "outcomes_since_train", str(total))
        return
    logger.info("%d new outcomes since the last training: retraining", total)
    application.create_task(run_retrain(services), name="retrain-on-outcomes")


async def run_retrain(services: Services) -> None:
    import admin_module

    try:
        logger.info("retrain: %s", await admin_module.retrain(services))
    except NotAvailable as exc:
        logger.info("retrain skipped: %s", exc)


async def job_outbox(context: ContextTypes.DEFAULT_TYPE) -> None:
    await drain_outbox(context.application)


def report_periods(local_day: datetime) -> list[str]:
    """Reports due on ``local_day``: daily always, weekly on Mondays, monthly on the 1st."""
    periods = ["daily"]
    if local_day.weekday() == 0:
        periods.append("weekly")
    if local_day.day == 1:
        periods.append("monthly")
    return periods


def enqueue_report(store: Any, report: Any, day: str) -> int:
    """Queue ``report`` for every subscriber in one transaction; the dedupe key makes a re-run a no-op."""
    queued = 0
    with store.transaction():
        for chat_id in store.subscribers():
            key = f"report:{report.period}:{day}:{chat_id}"
            queued += store.enqueue(chat_id, report.html, report.png, kind="report", dedupe_key=key) is not None
    return queued


async def job_report(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Daily report to the subscribers; also weekly on Mondays and monthly on the 1st (BOT_TIMEZONE dates)."""
    services = get_services(context)
    daily_reports = optional_module("daily_reports")
    if daily_reports is None or services.store is None:
        return
    today = datetime.now(services.settings.tz)
    for period in report_periods(today):
        try:
            report = await asyncio.to_thread(handlers.build_report, daily_reports, services, period)
        except NotAvailable as exc:
            logger.info("%s report skipped: %s", period, exc)
            return
        queued = await asyncio.to_thread(enqueue_report, services.store, report, f"{today:%Y-%m-%d}")
        logger.info("%s report queued for %d subscribers", period, queued)
    await drain_outbox(context.application)


async def job_retrain(context: ContextTypes.DEFAULT_TYPE) -> None:
    await run_retrain(get_services(context))


async def job_cache_cleanup(context: ContextTypes.DEFAULT_TYPE) -> None:
    services = get_services(context)
    cleanup = getattr(services.cache, "cleanup", None)
    if callable(cleanup):
        removed = await asyncio.to_thread(cleanup)
        logger.info("signal cache cleanup removed %s entries", removed)


def schedule_jobs(application: Application, services: Services) -> None:
    """Register the periodic jobs: no overlapping runs, missed runs coalesced into one."""
    jq = application.job_queue
    settings = services.settings
    tz = settings.tz

    def opts(grace: float) -> dict[str, Any]:
        return {"max_instances": 1, "coalesce": True, "misfire_grace_time": int(grace)}

    scan_every = settings.auto_signal_interval_minutes * 60
    jq.run_repeating(job_scan, interval=scan_every, first=30, name="scan", job_kwargs=opts(scan_every / 2))
    monitor_every = settings.monitor_interval_seconds
    jq.run_repeating(job_monitor, interval=monitor_every, first=5, name="monitor", job_kwargs=opts(monitor_every))
    jq.run_repeating(job_outbox, interval=OUTBOX_INTERVAL_SECONDS, first=1, name="outbox", job_kwargs=opts(10))
    report_at = settings.daily_report_time.replace(tzinfo=tz)
    jq.run_daily(job_report, time=report_at, name="daily report", job_kwargs=opts(3600))
    # PTB counts days from Sunday = 0: retrain on Sundays at 03:30 local time.
    jq.run_daily(job_retrain, time=time(3, 30, tzinfo=tz), days=(0,), name="weekly retrain", job_kwargs=opts(6 * 3600))
    jq.run_repeating(job_cache_cleanup, interval=3600, first=120, name="cache cleanup", job_kwargs=opts(600))


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
    try:
        await post_init(application)
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
