"""The background work: the outbox drain, the watchlist scan, position monitoring, scheduled reports, retraining
and cache cleanup, and their schedule. Commands call :func:`drain_outbox`, :func:`scan_now` and :func:`retrain`
directly; :func:`schedule_jobs` registers the periodic runs in ``post_init``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

from telegram.ext import Application, ContextTypes

import daily_reports
import ml_engine
import real_time_monitor
from chat import channel
from chat.commands import pd_now, scan_symbols
from chat.sender import Delivery, escape
from chat.services import SERVICES_KEY, NotAvailable, Services, get_services
from chat.tracking_commands import build_report
from position_manager import OutboxKind, PositionStore
from tracking import scanner

logger = logging.getLogger(__name__)

OUTBOX_INTERVAL_SECONDS = 3
OUTBOX_BATCH = 50
RETRAIN_AFTER_OUTCOMES = 50  # closed outcomes since the last training that trigger a retrain


async def drain_outbox(application: Application) -> int:
    """Send pending outbox messages (alerts, broadcasts, reports) through the sender; return how many were sent.

    At most one drain runs at a time. Each row is recorded "in flight" before the call and "sent" after Telegram's
    answer (or after a timeout that may have delivered it); a kill between the two leaves it in flight, and the
    next start settles it without resending (``store.settle_in_flight``). A kill never loses a row nobody tried
    and never sends one twice.
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
            blocked: set[int] = set()  # chats that answered 403 in this batch: their other rows were dropped
            for item in items:
                if item.chat_id in blocked:
                    continue
                if not await asyncio.to_thread(services.store.mark_sending, item.id):
                    continue  # dropped meanwhile (the chat blocked the bot)
                photo = item.photo or await asyncio.to_thread(read_photo, item.photo_path)
                to_channel = item.chat_id == services.settings.broadcast_channel_id
                reply_to = None
                if to_channel and item.kind == OutboxKind.ALERT:
                    reply_to = await asyncio.to_thread(channel.reply_target, services.store, item.html)
                if photo:
                    result = await services.sender.photo(item.chat_id, photo, item.html)
                else:
                    result = await services.sender.text(item.chat_id, item.html, reply_to=reply_to)
                if to_channel and item.kind == OutboxKind.BROADCAST and result.message_ids:
                    await asyncio.to_thread(channel.remember_post, services.store, item.html, result.message_ids)
                if result.settled:  # maybe-delivered counts: a resend could duplicate it
                    note = None if result.ok else f"maybe delivered ({result.reason[:200]})"
                    await asyncio.to_thread(services.store.mark_sent, item.id, note)
                    sent += 1
                else:
                    if result.delivery is Delivery.BLOCKED:
                        blocked.add(item.chat_id)
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
    symbols = await asyncio.to_thread(scan_symbols, services)
    async with services.scan_lock:
        result = await asyncio.to_thread(scanner.run_scan, services, symbols, services.settings.auto_signal_timeframes)
    services.last_scan = pd_now(services.market)  # the market's clock (the replay clock in sample mode)
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
    if services.store is None or services.market is None or services.monitor_lock.locked():
        return
    async with services.monitor_lock:
        report = await asyncio.to_thread(
            real_time_monitor.monitor_tick,
            services.store,
            services.market,
            services.journal,
            settings=services.settings,
        )
    if report.events or report.errors:
        logger.info("monitor: %s", report)
    if report.journaled:
        await count_outcomes(context.application, services, report.journaled)
    services.last_monitor = datetime.now(UTC)
    await drain_outbox(context.application)


async def count_outcomes(application: Application, services: Services, new: int) -> None:
    """Count journaled outcomes (persisted); retrain in the background once enough new ones arrived."""
    store = services.store
    total = int(store.get_state("outcomes_since_train", "0") or 0) + new
    if total < RETRAIN_AFTER_OUTCOMES:
        await asyncio.to_thread(store.set_state, "outcomes_since_train", str(total))
        return
    logger.info("%d new outcomes since the last training: retraining", total)
    application.create_task(run_retrain(services), name="retrain-on-outcomes")


async def retrain(svc: Services) -> str:
    """Train from the journal off the event loop and reload the predictor; the report as text.

    One training at a time (the /train command, the weekly job and the outcome trigger share a lock)."""
    if svc.train_lock.locked():
        return "A training is already running."
    async with svc.train_lock:
        report = await asyncio.to_thread(ml_engine.retrain, svc.settings)
    if svc.predictor is not None:
        await asyncio.to_thread(svc.predictor.load)
    await asyncio.to_thread(svc.refresh_evidence, force=True)  # the gate reads the newest evidence.json
    if svc.store is not None:  # the outcome counter that triggers a retrain starts again
        await asyncio.to_thread(svc.store.set_state, "outcomes_since_train", "0")
    return report.text()


async def run_retrain(services: Services) -> None:
    logger.info("retrain: %s", await retrain(services))


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


def enqueue_report(store: PositionStore, report: daily_reports.Report, day: str) -> int:
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
    if services.store is None:
        return
    today = datetime.now(services.settings.tz)
    for period in report_periods(today):
        try:
            report = await asyncio.to_thread(build_report, services, period)
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
