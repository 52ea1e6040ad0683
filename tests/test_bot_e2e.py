"""End-to-end: the real python-telegram-bot Application over real HTTP against the local Bot API server.

Market data is the bundled sample source on a fixed clock (no internet). Each test drives a conversation by
injecting updates into ``tests/fake_telegram.py`` and asserting on the Bot API calls the bot made.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import re
import zipfile
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from chat import jobs, telegram_app
from chat.services import build_services
from config import Settings
from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
ADMIN = 1001
USER = 2002
OTHER = 3003
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIXED_NOW = pd.Timestamp("2026-03-02 12:05", tz="UTC")


def sample_market(frames_failing: bool = False):
    from market.sample_source import SampleSource

    return SampleSource(ROOT / "data" / "sample", clock=lambda: FIXED_NOW)


CANDIDATES = tuple((s, tf) for tf in ("1h", "4h", "15m") for s in ("ETHUSDT", "BTCUSDT", "SOLUSDT"))


@functools.cache
def pair_with(kind: str) -> tuple[str, str]:
    """A (symbol, timeframe) whose analysis at FIXED_NOW is a signal (``kind="signal"``) or a no-trade, found by
    running the engine itself, so the tests follow engine tuning instead of hard-coding its output."""
    import ict_signal_engine

    market = sample_market()
    for symbol, tf in CANDIDATES:
        try:
            result = ict_signal_engine.analyze(market, symbol, tf).result
        except Exception:
            continue
        if (result.direction is not None) == (kind == "signal"):
            return symbol, tf
    pytest.fail(f"no {kind} among {CANDIDATES} at {FIXED_NOW}: the sample data or the engine changed")


class FailingMarket:
    """A market-data source whose every call fails like an unreachable Binance."""

    def __init__(self) -> None:
        from market import source as market_data

        self.error = market_data.MarketDataUnavailable("Binance is unreachable (connection refused)")

    def validate_symbol(self, symbol: str) -> str:
        raise self.error

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise self.error

        return fail


async def outbox_marker(tg: FakeTelegram, application, chat_id: int) -> None:
    """Queue a marker behind everything already in the outbox and wait until it is delivered: the drain sends in
    queue order, so whatever was queued before it has been sent by then (absence checks wait for this, not for a
    sleep)."""
    store = application.bot_data["services"].store
    text = f"marker {len(tg.all_calls())}"
    store.enqueue(chat_id, text, kind="notice")
    await jobs.drain_outbox(application)  # a drain already running picks the marker up before it stops
    await tg.wait_for("sendMessage", chat_id=chat_id, where=lambda c: c.text == text)


@pytest.fixture
def tg():
    with FakeTelegram() as server:
        yield server


def make_settings(tg: FakeTelegram, tmp_path: Path, **overrides) -> Settings:
    values = {
        "telegram_bot_token": tg.token,
        "telegram_api_base_url": tg.base_url,
        "admin_ids": frozenset({ADMIN}),
        "market_data": "sample",
        "sample_data_dir": ROOT / "data" / "sample",
        "bot_data_dir": tmp_path,
        "signal_rate_limit": (3, 60),
        "auto_signal_interval_minutes": 1440,
        "monitor_interval_seconds": 3600,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def bot(tg, tmp_path):
    """A running bot (polling the fake server) with a sample market on a fixed clock."""
    async with run_bot(tg, tmp_path) as application:
        yield application


def run_bot(tg: FakeTelegram, tmp_path: Path, market=None, **overrides):
    settings = make_settings(tg, tmp_path, **overrides)
    market = market or sample_market()
    application = telegram_app.build_application(
        settings, services_factory=lambda: build_services(settings, mode="telegram", market=market)
    )
    return telegram_app.running(application, poll_timeout=1)


async def test_start_subscribes_and_menu_is_registered(tg, bot):
    tg.send_message("/start", user_id=USER)
    call = await tg.wait_for("sendMessage", chat_id=USER)
    assert "Welcome" in call.text
    assert "subscribed" in call.text
    menu = tg.calls("setMyCommands")[-1].params["commands"]
    names = {c["command"] for c in menu}
    assert {"start", "help", "signal", "market", "positions", "settings", "explain"} <= names
    assert "broadcast" not in names  # admin commands stay out of the public menu


async def test_help_lists_every_command_with_usage_admin_sees_admin_section(tg, bot):
    tg.send_message("/help", user_id=USER)
    user_help = (await tg.wait_for("sendMessage", chat_id=USER)).text
    for usage in (
        "/signal SYMBOL [TF]",
        "/journal [N]",
        "/report [daily|weekly|monthly]",
        "/explain TERM",
        "/close ID",
    ):
        assert usage.replace("<", "&lt;") in user_help or usage in user_help
    assert "/broadcast" not in user_help
    tg.send_message("/help", user_id=ADMIN)
    admin_help = (await tg.wait_for("sendMessage", chat_id=ADMIN)).text
    for usage in ("/broadcast TEXT", "/watchlist [add|remove SYMBOL]", "/pause", "/backup"):
        assert usage in admin_help


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/signal", "Which symbol"),
        ("/signal BTC$USDT", "is not a Binance symbol"),
        ("/signal BTCUSDT 7x", "is not a timeframe"),
        ("/signal BTCUSDT 1h extra words", "Too many arguments"),
        ("/explain", "Which term"),
        ("/explain flux capacitor", "I don't know"),
        ("/journal lots", "is not a count"),
        ("/report yearly", "is not a report period"),
        ("/close abc", "is not a position id"),
        ("/settings tf 9y", "is not a timeframe"),
        ("/nosuchcommand", "Unknown command"),
        ("hello bot", "I understand commands"),
        ("/start ref-campaign-42", "Welcome"),  # a deep-link payload is accepted
        ("/signal " + "\x00\x01binary" * 3, "is not a Binance symbol"),
        ("/signal " + "A" * 5000, "is not a Binance symbol"),
    ],
)
async def test_bad_input_gets_one_clear_line_with_an_example(tg, bot, text, expected):
    tg.send_message(text, user_id=USER)
    call = await tg.wait_for("sendMessage", chat_id=USER)
    assert expected in call.text
    assert "Traceback" not in call.text
    if expected not in ("I understand commands", "Unknown command", "Welcome"):
        assert "Example: /" in call.text or "Usage:" in call.text
    assert len(call.text) < 1000  # a huge argument is never echoed back in full


async def test_edited_message_and_group_commands(tg, bot):
    tg.send_message("/help", user_id=USER, edited=True)
    call = await tg.wait_for("sendMessage", chat_id=USER)
    assert "Edited messages are not re-run" in call.text
    group = -100555
    tg.send_message("/explain@ict_test_bot OB", user_id=USER, chat_id=group, chat_type="supergroup")
    call = await tg.wait_for("sendMessage", chat_id=group)
    assert "Order block" in call.text
    tg.send_message("/explain@some_other_bot OB", user_id=USER, chat_id=group, chat_type="supergroup")
    tg.send_message("/unknownthing", user_id=USER, chat_id=group, chat_type="supergroup")
    tg.send_message("/explain FVG", user_id=USER, chat_id=group, chat_type="supergroup")
    call = await tg.wait_for("sendMessage", chat_id=group, count=2)
    assert "Fair value gap" in call.text  # the two messages for other bots were ignored
    assert len(tg.calls("sendMessage", chat_id=group)) == 2


async def test_admin_commands_refused_for_non_admin_and_logged(tg, bot, caplog):
    caplog.set_level(logging.WARNING, logger="chat.commands")
    for command in ("/admin", "/pause", "/broadcast hi", "/backup", "/users"):
        tg.send_message(command, user_id=OTHER)
    await tg.wait_for("sendMessage", chat_id=OTHER, count=5)
    assert all("admins only" in c.text for c in tg.calls("sendMessage", chat_id=OTHER))
    assert not tg.calls("sendDocument")
    refusals = [r for r in caplog.records if "refused admin" in r.getMessage()]
    assert len(refusals) == 5 and all(str(OTHER) in r.getMessage() for r in refusals)


async def test_admin_panel_pause_button_broadcast_backup_and_watchlist(tg, bot):
    tg.send_message("/start", user_id=USER)
    await tg.wait_for("sendMessage", chat_id=USER)
    tg.send_message("/admin", user_id=ADMIN)
    panel = await tg.wait_for("sendMessage", chat_id=ADMIN)
    buttons = dict((data, label) for label, data in panel.buttons())
    assert "adm|pause" in buttons and "adm|scan" in buttons
    message = tg.last_message(ADMIN)
    query_id = tg.press("adm|pause", user_id=ADMIN, message=message)
    answer = await tg.wait_for("answerCallbackQuery", where=lambda c: c.params.get("callback_query_id") == query_id)
    assert "Paused" in answer.params.get("text", "")
    services = bot.bot_data["services"]
    assert services.store.paused  # persisted in the store

    tg.send_message("/broadcast Maintenance <tonight> & more", user_id=ADMIN)
    call = await tg.wait_for("sendMessage", chat_id=USER, count=2)
    assert "Maintenance &lt;tonight&gt; &amp; more" in call.text

    tg.send_message("/backup", user_id=ADMIN)
    document = await tg.wait_for("sendDocument", chat_id=ADMIN)
    archive = zipfile.ZipFile(io.BytesIO(document.files["document"]))
    assert "positions.db" in archive.namelist()

    tg.send_message("/watchlist add ETHUSDT", user_id=ADMIN)
    tg.send_message("/watchlist remove BNBUSDT", user_id=ADMIN)
    await tg.wait_for("sendMessage", chat_id=ADMIN, where=lambda c: "Watchlist (" in c.text, count=2)
    tg.send_message("/watchlist", user_id=ADMIN)
    call = await tg.wait_for("sendMessage", chat_id=ADMIN, where=lambda c: "Watchlist (" in c.text, count=3)
    assert "BNBUSDT" not in call.text and "ETHUSDT" in call.text
    assert "BNBUSDT" not in services.store.get_state("watchlist")


async def test_forged_and_stale_callbacks_are_answered_politely(tg, bot):
    ids = [
        tg.press("garbage|data", user_id=USER),
        tg.press("sig|d|BTCUSDT-1h-202001010000-L", user_id=USER),
        tg.press("adm|pause", user_id=USER),
        tg.press("set|tf|99q", user_id=USER),
    ]
    for query_id in ids:
        answer = await tg.wait_for(
            "answerCallbackQuery", where=lambda c, q=query_id: c.params.get("callback_query_id") == q
        )
        assert answer.params.get("text")
    assert len(tg.calls("answerCallbackQuery")) == len(ids)  # each exactly once


async def test_settings_buttons_persist_across_restart(tg, tmp_path):
    async with run_bot(tg, tmp_path) as application:
        tg.send_message("/settings", user_id=USER)
        panel = await tg.wait_for("sendMessage", chat_id=USER)
        assert ("4h", "set|tf|4h") in panel.buttons()
        message = tg.last_message(USER)
        tg.press("set|tf|4h", user_id=USER, message=message)
        edit = await tg.wait_for("editMessageText", chat_id=USER)
        assert "Default timeframe: 4h" in edit.text
        tg.send_message("/settings confidence 75", user_id=USER)
        await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: "not a probability): 75" in c.text)
        del application
    async with run_bot(tg, tmp_path):
        tg.send_message("/settings", user_id=USER)
        call = await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: "Your settings" in c.text, count=3)
        assert "Default timeframe: 4h" in call.text and "not a probability): 75" in call.text


async def test_private_bot_refuses_strangers(tg, tmp_path):
    async with run_bot(tg, tmp_path, allowed_user_ids=frozenset({USER})):
        for text in ("/help", "/signal BTCUSDT", "/nosuch", "hello"):
            tg.send_message(text, user_id=OTHER)
        await tg.wait_for("sendMessage", chat_id=OTHER, count=4)
        assert all("private" in c.text for c in tg.calls("sendMessage", chat_id=OTHER))
        tg.send_message("/help", user_id=USER)
        assert "commands" in (await tg.wait_for("sendMessage", chat_id=USER)).text
        tg.send_message("/help", user_id=ADMIN)  # admins are always allowed
        assert "Admin" in (await tg.wait_for("sendMessage", chat_id=ADMIN)).text


async def test_flood_control_429_is_retried_and_the_message_arrives(tg, bot):
    tg.flood("sendMessage", retry_after=1, times=1)
    tg.send_message("/explain OTE", user_id=USER)
    call = await tg.wait_for("sendMessage", chat_id=USER)
    assert "Optimal trade entry" in call.text
    failed = [c for c in tg.all_calls() if c.method == "sendMessage" and c.status == 429]
    assert len(failed) == 1 and failed[0].at < call.at


async def test_blocked_user_is_unsubscribed_on_403(tg, bot):
    services = bot.bot_data["services"]
    services.store.subscribe(USER)
    tg.block("sendMessage")
    tg.send_message("/explain BOS", user_id=USER)
    for _ in range(200):
        if not services.store.is_subscribed(USER):
            break
        await asyncio.sleep(0.01)
    assert not services.store.is_subscribed(USER)


async def test_conflict_409_is_reported_and_stops(tg, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    tg.conflict()
    settings = make_settings(tg, tmp_path)
    application = telegram_app.build_application(
        settings, services_factory=lambda: build_services(settings, mode="telegram", market=None)
    )
    async with telegram_app.running(application, poll_timeout=1):
        await asyncio.wait_for(application.bot_data["stop_event"].wait(), timeout=10)
    assert "another instance" in application.bot_data["fatal"]
    assert any("409 Conflict" in r.getMessage() for r in caplog.records)
    assert tg.token not in caplog.text


async def test_health_reports_jobs_database_and_model(tg, bot):
    tg.send_message("/health", user_id=USER)
    call = await tg.wait_for("sendMessage", chat_id=USER)
    parts = (
        "Market data",
        "Last scan",
        "scan: next",
        "monitor: next",
        "daily report",
        "Database: ok",
        "Outbox: 0 pending",
    )
    for part in (*parts, "Model:", "uptime"):
        assert part in call.text
    jobs = {job.name: job.job for job in bot.job_queue.jobs()}
    assert set(jobs) == {"scan", "monitor", "outbox", "daily report", "weekly retrain", "cache cleanup"}
    assert all(j.max_instances == 1 and j.coalesce and j.misfire_grace_time for j in jobs.values())
    assert jobs["scan"].trigger.interval.total_seconds() == 1440 * 60


async def test_rate_limit_says_when_to_try_again_admins_exempt(tg, tmp_path):
    async with run_bot(tg, tmp_path, market=FailingMarket(), signal_rate_limit=(2, 600)):
        for _ in range(3):
            tg.send_message("/signal BTCUSDT 1h", user_id=USER)
        call = await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: "Rate limit" in c.text)
        assert "Try again in" in call.text
        for _ in range(3):
            tg.send_message("/signal BTCUSDT 1h", user_id=ADMIN)
        await tg.wait_for("sendMessage", chat_id=ADMIN, count=3)
        assert not [c for c in tg.calls("sendMessage", chat_id=ADMIN) if "Rate limit" in c.text]


async def test_binance_failing_is_a_clear_reply_and_the_bot_keeps_serving(tg, tmp_path):
    """The real Binance client against the local Binance-shaped server: 503s until the client gives up."""
    from market.binance_client import BinanceClient
    from tests.fake_binance import FakeBinance, Reply

    with FakeBinance(now="2026-03-02 12:05") as binance:
        market = BinanceClient(binance.url, sleep=lambda seconds: None)  # no real back-off waits
        async with run_bot(tg, tmp_path, market=market, market_data="binance", binance_api_base_url=binance.url):
            tg.send_message("/signal BTCUSDT 4h", user_id=USER)
            first = await tg.wait_for(("sendPhoto", "sendMessage"), chat_id=USER, within=60)
            assert "BTCUSDT" in first.text
            binance.script(*[Reply.server_error(503)] * market.policy.attempts)
            tg.send_message("/signal ETHUSDT 1h", user_id=USER)
            call = await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: "Market data problem" in c.text)
            assert "try again" in call.text and "Traceback" not in call.text
            tg.send_message("/explain SIBI", user_id=USER)
            call = await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: "Sell-side imbalance" in c.text)
            tg.send_message("/signal ETHUSDT 1h", user_id=USER)  # Binance is back
            call = await tg.wait_for(("sendPhoto", "sendMessage"), chat_id=USER, where=lambda c: "ETHUSDT" in c.text)
            assert "Market data problem" not in call.text


async def test_unexpected_error_is_logged_user_gets_one_line_admins_are_notified(tg, tmp_path, caplog):
    class BrokenMarket(FailingMarket):
        def validate_symbol(self, symbol: str) -> str:
            raise ZeroDivisionError("engine bug")

    caplog.set_level(logging.ERROR, logger="telegram_app")
    async with run_bot(tg, tmp_path, market=BrokenMarket()):
        tg.send_message("/signal BTCUSDT 1h", user_id=USER)
        call = await tg.wait_for("sendMessage", chat_id=USER)
        assert "Something went wrong" in call.text and "ZeroDivisionError" not in call.text
        notice = await tg.wait_for("sendMessage", chat_id=ADMIN)
        assert "ZeroDivisionError" in notice.text and "engine bug" in notice.text
    record = next(r for r in caplog.records if "error while handling" in r.getMessage())
    assert record.exc_info is not None


def levels_in(text: str) -> dict[str, float]:
    """Entry / SL / TP1-3 as shown in the message text."""
    from chat.sender import strip_html

    plain = strip_html(text)
    found = {}
    for label in ("Entry", "SL", "TP1", "TP2", "TP3"):
        match = re.search(rf"^{label}: ([0-9][0-9,]*\.?[0-9]*)", plain, re.MULTILINE)
        assert match, f"{label} missing in {plain!r}"
        found[label] = float(match[1].replace(",", ""))
    return found


async def test_signal_sends_a_png_chart_and_ordered_levels_then_buttons_work(tg, bot):
    symbol, tf = pair_with("signal")
    tg.send_message(f"/signal {symbol} {tf}", user_id=USER)
    photo = await tg.wait_for("sendPhoto", chat_id=USER, within=60)
    assert photo.files["photo"].startswith(PNG_MAGIC)
    assert len(photo.text) <= 1024 and f"{symbol} {tf}" in photo.text
    levels = levels_in(photo.text)
    sign = -1 if "SHORT" in photo.text.upper() else 1
    assert "LONG" in photo.text.upper() or sign == -1
    ordered = [sign * levels[k] for k in ("SL", "Entry", "TP1", "TP2", "TP3")]
    assert ordered == sorted(ordered) and len(set(ordered)) == 5, levels

    buttons = dict(photo.buttons())
    assert set(buttons.values()) == {
        f"sig|r|{symbol}|{tf}",
        next(v for v in buttons.values() if v.startswith("sig|d|")),
    }
    details = next(v for v in buttons.values() if v.startswith("sig|d|"))
    tg.press(details, user_id=USER, message=tg.last_message(USER))
    detail = await tg.wait_for("sendMessage", chat_id=USER, within=30)
    assert "why the rules chose it" in detail.text and "Features" not in detail.text
    tg.press(f"sig|r|{symbol}|{tf}", user_id=USER, message=tg.last_message(USER))
    await tg.wait_for("sendPhoto", chat_id=USER, count=2, within=60)
    await tg.wait_for("answerCallbackQuery", count=2)
    assert len(tg.calls("answerCallbackQuery")) == 2  # each press answered exactly once


async def test_no_trade_is_a_chart_with_reasons_and_a_refresh_button(tg, bot):
    symbol, tf = pair_with("no-trade")
    tg.send_message(f"/signal {symbol} {tf}", user_id=USER)
    call = await tg.wait_for(("sendPhoto", "sendMessage"), chat_id=USER, within=60)
    assert call.method == "sendPhoto" and call.files["photo"].startswith(PNG_MAGIC)
    assert "No trade" in call.text and "•" in call.text  # the reasons
    assert call.buttons() == [("🔄 Refresh", f"sig|r|{symbol}|{tf}")]


async def test_requested_signal_the_gate_passes_is_tracked_and_broadcast_once(tg, tmp_path):
    from engine.signal_model import Signal

    async with run_bot(tg, tmp_path, gate="off") as application:
        services = application.bot_data["services"]
        services.store.subscribe(OTHER)
        services.store.subscribe(USER)
        symbol, tf = pair_with("signal")
        tg.send_message(f"/signal {symbol} {tf}", user_id=USER)
        answer = await tg.wait_for("sendPhoto", chat_id=USER, within=60)
        results = list(services.recent._items.values())
        assert results and isinstance(results[-1], Signal)
        signal = results[-1]
        broadcast = await tg.wait_for("sendPhoto", chat_id=OTHER, within=30)  # via the outbox
        assert broadcast.files["photo"].startswith(PNG_MAGIC)
        position = services.store.get_by_signal(signal.id)
        assert position is not None and set(position.recipients) >= {USER, OTHER}
        tracked = f"Tracking as #{position.id}, alerts will follow"
        assert tracked in answer.text and tracked in broadcast.text and f"#{symbol}" in broadcast.text
        await outbox_marker(tg, application, USER)  # a second copy queued for the requester would arrive before it
        assert len(tg.calls("sendPhoto", chat_id=USER)) == 1  # the requester is not sent a second copy
        tg.send_message("/positions", user_id=USER)
        call = await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: "Open positions" in c.text)
        assert symbol in call.text
        tg.send_message(f"/close {position.id}", user_id=OTHER)  # shared position: only an admin may close
        call = await tg.wait_for("sendMessage", chat_id=OTHER, where=lambda c: "only an admin" in c.text)
        tg.send_message(f"/close {position.id}", user_id=ADMIN)
        call = await tg.wait_for("sendMessage", chat_id=ADMIN, where=lambda c: "Closed #" in c.text)
        assert not services.store.get(position.id).is_active


async def test_stats_journal_report_commands_and_the_report_job(tg, bot):
    from types import SimpleNamespace

    tg.send_message("/stats", user_id=USER)
    assert "Statistics" in (await tg.wait_for("sendMessage", chat_id=USER)).text
    tg.send_message("/journal 5", user_id=USER)
    assert "Journal" in (await tg.wait_for("sendMessage", chat_id=USER, count=2)).text
    tg.send_message("/report weekly", user_id=USER)
    report = await tg.wait_for(("sendPhoto", "sendMessage"), chat_id=USER, count=3)
    assert "eekly" in report.text
    services = bot.bot_data["services"]
    services.store.subscribe(OTHER)
    job_context = SimpleNamespace(application=bot, bot_data=bot.bot_data)
    await jobs.job_report(job_context)
    await jobs.job_report(job_context)  # a second run the same day sends nothing new
    first = await tg.wait_for(("sendPhoto", "sendMessage"), chat_id=OTHER)
    assert "aily" in first.text
    await outbox_marker(tg, bot, OTHER)  # anything the two runs queued is sent before the marker
    expected = len(jobs.report_periods(datetime.now(services.settings.tz)))
    sent = [c for c in tg.calls(chat_id=OTHER) if c.method in ("sendPhoto", "sendMessage")]
    assert len(sent) == expected + 1  # the reports and the marker


async def test_scan_train_market_and_pause_state(tg, tmp_path):
    async with run_bot(tg, tmp_path, watchlist=("BTCUSDT", "ETHUSDT"), auto_signal_timeframes=("4h",)) as app:
        tg.send_message("/market", user_id=USER)
        call = await tg.wait_for("sendMessage", chat_id=USER, within=60)
        assert "BTCUSDT" in call.text and "ETHUSDT" in call.text and "%" in call.text
        tg.send_message("/scan", user_id=ADMIN)
        call = await tg.wait_for("sendMessage", chat_id=ADMIN, where=lambda c: "Scan done" in c.text, within=60)
        assert "2 pairs" in call.text
        assert app.bot_data["services"].store.get_state("last_scan")
        tg.send_message("/pause", user_id=ADMIN)
        await tg.wait_for("sendMessage", chat_id=ADMIN, where=lambda c: "paused" in c.text)
        assert "paused" in await jobs.scan_now(app)  # the scheduled scan skips while paused
        tg.send_message("/resume", user_id=ADMIN)
        await tg.wait_for("sendMessage", chat_id=ADMIN, where=lambda c: "resumed" in c.text)
        assert not app.bot_data["services"].store.paused
        tg.send_message("/train", user_id=ADMIN)
        call = await tg.wait_for("sendMessage", chat_id=ADMIN, where=lambda c: "<pre>" in c.text, within=60)
        assert "outcomes" in call.text  # the training report (too few outcomes in an empty journal)


async def test_subscribe_unsubscribe_and_broadcast_setting_agree(tg, bot):
    services = bot.bot_data["services"]
    tg.send_message("/subscribe", user_id=USER)
    await tg.wait_for("sendMessage", chat_id=USER)
    assert services.store.is_subscribed(USER) and services.store.get_user_settings(USER).broadcasts
    tg.send_message("/settings broadcasts off", user_id=USER)
    await tg.wait_for("sendMessage", chat_id=USER, count=2)
    assert not services.store.is_subscribed(USER)
    tg.send_message("/subscribe", user_id=USER)
    await tg.wait_for("sendMessage", chat_id=USER, count=3)
    assert services.store.is_subscribed(USER) and services.store.get_user_settings(USER).broadcasts
    tg.send_message("/unsubscribe", user_id=USER)
    await tg.wait_for("sendMessage", chat_id=USER, count=4)
    assert not services.store.is_subscribed(USER) and not services.store.get_user_settings(USER).broadcasts


async def test_outbox_left_by_a_killed_process_is_delivered_after_restart(tg, tmp_path):
    from position_manager import PositionStore

    store = PositionStore(tmp_path / "positions.db")  # what a previous process queued before it was killed
    store.enqueue(USER, "🎯 <b>TP1 hit</b> on BTCUSDT", kind="alert")
    store.enqueue(OTHER, "📢 signal", b"\x89PNG\r\n\x1a\nfake", kind="broadcast")
    store.close()
    tg.flood("sendMessage", retry_after=1)
    async with run_bot(tg, tmp_path) as app:
        alert = await tg.wait_for("sendMessage", chat_id=USER, within=30)
        photo = await tg.wait_for("sendPhoto", chat_id=OTHER, within=30)
        assert "TP1 hit" in alert.text and photo.files["photo"].startswith(PNG_MAGIC)
        counts = app.bot_data["services"].store.outbox_counts()
        for _ in range(100):
            if counts.pending == 0:
                break
            await asyncio.sleep(0.02)
            counts = app.bot_data["services"].store.outbox_counts()
        assert (counts.pending, counts.sent, counts.failed) == (0, 2, 0)


async def test_non_text_messages_get_a_hint_in_private_and_silence_in_groups(tg, bot):
    for chat_type, chat_id in (("private", USER), ("group", -4242)):
        message = tg.message("x", user_id=USER, chat_id=chat_id, chat_type=chat_type)
        del message["text"]
        message["location"] = {"latitude": 51.5, "longitude": -0.12}
        tg._push({"message": message})
    call = await tg.wait_for("sendMessage", chat_id=USER)
    assert "I understand commands" in call.text
    tg.send_message("/explain OB", user_id=USER, chat_id=-4242, chat_type="group")  # the marker, pushed after
    await tg.wait_for("sendMessage", chat_id=-4242)
    group_calls = tg.calls(chat_id=-4242)
    assert len(group_calls) == 1 and "Order block" in group_calls[0].text  # only the marker's answer


async def test_signal_without_timeframe_uses_the_users_setting(tg, bot):
    tg.send_message("/settings tf 4h", user_id=USER)
    await tg.wait_for("sendMessage", chat_id=USER)
    tg.send_message("/signal btc/usdt", user_id=USER)
    call = await tg.wait_for(("sendPhoto", "sendMessage"), chat_id=USER, count=2, within=60)
    assert "BTCUSDT 4h" in call.text
    assert any(b[1] == "sig|r|BTCUSDT|4h" for b in call.buttons())
    assert tg.calls("sendChatAction", chat_id=USER)  # "sending a photo…" while the analysis ran


# -- hostile input, admin gating, error reports (issue 14) -----------------------------------------------------


def group_message(tg: FakeTelegram, chat_id: int) -> dict:
    """A bot message (e.g. an admin panel) in a group, for button presses there."""
    return {
        "message_id": 777,
        "date": int(datetime.now().timestamp()),
        "chat": {"id": chat_id, "type": "supergroup", "title": "Traders"},
        "from": tg.bot_user,
        "text": "(panel)",
    }


async def admin_marker(tg: FakeTelegram, user_id: int = ADMIN) -> None:
    """A /help round trip for ``user_id``: whatever the bot sent that chat before has arrived by then."""
    before = len(tg.calls("sendMessage", chat_id=user_id))
    tg.send_message("/help", user_id=user_id)
    await tg.wait_for("sendMessage", chat_id=user_id, after=before, where=lambda c: "commands" in c.text)


async def test_forged_refresh_buttons_get_a_clear_answer_and_no_error_report(tg, bot):
    ids = [tg.press(data, user_id=USER) for data in ("sig|r|BTCUSDT|99h", "sig|r|BTCUSDT|0m", "sig|r|BTCUSDT|7w")]
    for query_id in ids:
        answer = await tg.wait_for(
            "answerCallbackQuery", where=lambda c, q=query_id: c.params.get("callback_query_id") == q
        )
        assert "is not a timeframe" in answer.params.get("text", "")
    await admin_marker(tg)
    assert not [c for c in tg.calls("sendMessage") if "Error" in c.text or "went wrong" in c.text]
    assert len(tg.calls("answerCallbackQuery")) == len(ids)  # each exactly once


class BrokenMarket:
    """A market-data source with a bug: every call raises a RuntimeError (not a MarketDataError)."""

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise RuntimeError("boom")

        return fail


async def test_error_reports_to_admins_are_deduplicated_and_counted(tg, tmp_path):
    from chat.services import ReportThrottle

    admins = (ADMIN, ADMIN + 1)
    now = [0.0]
    async with run_bot(
        tg, tmp_path, market=BrokenMarket(), admin_ids=frozenset(admins), signal_rate_limit=(100, 60)
    ) as app:
        app.bot_data["services"].error_reports = ReportThrottle(600, clock=lambda: now[0])
        for _ in range(12):
            tg.send_message("/signal BTCUSDT 1h", user_id=USER)
        await tg.wait_for("sendMessage", chat_id=USER, count=12, where=lambda c: "went wrong" in c.text)
        for admin in admins:
            await admin_marker(tg, admin)
            reports = [c for c in tg.calls("sendMessage", chat_id=admin) if "<b>Error</b>" in c.params["text"]]
            assert len(reports) == 1 and "RuntimeError: boom" in reports[0].text
        now[0] = 601.0  # the period is over: the next error of that kind is reported, with the count
        tg.send_message("/signal BTCUSDT 1h", user_id=USER)
        report = await tg.wait_for(
            "sendMessage", chat_id=ADMIN, where=lambda c: "<b>Error</b>" in c.params["text"], count=2
        )
        assert "11 more of this kind" in report.text


async def test_empty_admin_ids_make_nobody_admin(tg, tmp_path):
    async with run_bot(tg, tmp_path, admin_ids=frozenset()) as app:
        for user in (ADMIN, USER):
            tg.send_message("/pause", user_id=user)
            await tg.wait_for("sendMessage", chat_id=user, where=lambda c: "admins only" in c.text)
            query_id = tg.press("adm|pause", user_id=user)
            answer = await tg.wait_for(
                "answerCallbackQuery", where=lambda c, q=query_id: c.params.get("callback_query_id") == q
            )
            assert "Admins only" in answer.params.get("text", "")
            tg.send_message("/help", user_id=user)
            call = await tg.wait_for("sendMessage", chat_id=user, where=lambda c: "commands" in c.text)
            assert "Admin" not in call.text and "/broadcast" not in call.text
        assert not app.bot_data["services"].store.paused


async def test_admin_buttons_in_a_group_obey_the_presser_not_the_chat(tg, bot):
    group = -100777
    store = bot.bot_data["services"].store
    for data in ("adm|pause", "adm|backup", "adm|users"):
        query_id = tg.press(data, user_id=USER, message=group_message(tg, group))
        answer = await tg.wait_for(
            "answerCallbackQuery", where=lambda c, q=query_id: c.params.get("callback_query_id") == q
        )
        assert "Admins only" in answer.params.get("text", "")
    assert not store.paused
    query_id = tg.press("adm|pause", user_id=ADMIN, message=group_message(tg, group))
    answer = await tg.wait_for("answerCallbackQuery", where=lambda c: c.params.get("callback_query_id") == query_id)
    assert "Paused" in answer.params.get("text", "") and store.paused
    assert not tg.calls("sendDocument") and not tg.calls("sendMessage", chat_id=group)


async def test_after_a_403_queued_messages_to_that_chat_are_dropped_until_the_user_writes_again(tg, bot):
    """Issue 14 item 4: one 403, then nothing more to that chat (queued alerts included) until the user writes."""
    store = bot.bot_data["services"].store
    store.subscribe(USER)
    first = store.enqueue(USER, "alert 1", kind="alert")
    for text in ("alert 2", "alert 3"):
        store.enqueue(USER, text, kind="alert")
    store.enqueue(OTHER, "for other", kind="alert")
    assert first is not None
    tg.block("sendMessage")  # the next sendMessage (alert 1, the oldest row) answers 403
    await outbox_marker(tg, bot, OTHER)
    to_user = [c for c in tg.all_calls() if c.method == "sendMessage" and c.chat_id == USER]
    assert [c.status for c in to_user] == [403]  # tried once, the two queued after it dropped
    assert any(c.text == "for other" for c in tg.calls("sendMessage", chat_id=OTHER))
    assert store.is_blocked(USER) and not store.is_subscribed(USER)
    assert store.enqueue(USER, "alert 4", kind="alert") is None  # nothing more is queued for that chat
    await outbox_marker(tg, bot, OTHER)
    assert len([c for c in tg.all_calls() if c.method == "sendMessage" and c.chat_id == USER]) == 1

    tg.send_message("/help", user_id=USER)  # the user writes again
    await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: "commands" in c.text)
    assert not store.is_blocked(USER)
    assert store.enqueue(USER, "alert 5", kind="alert") is not None
    await jobs.drain_outbox(bot)
    await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: c.text == "alert 5")
    assert not store.is_subscribed(USER)  # broadcasts stay off until /subscribe


async def test_a_message_in_flight_at_a_kill_is_not_sent_again_after_the_restart(tg, tmp_path, caplog):
    """Issue 14 item 3: the previous process recorded the send "in flight" and died before Telegram's answer."""
    from position_manager import PositionStore

    store = PositionStore(tmp_path / "positions.db")
    in_flight = store.enqueue(USER, "🎯 TP1 hit (maybe delivered before the kill)", kind="alert")
    store.enqueue(USER, "🎯 TP2 hit (queued, never tried)", kind="alert")
    assert store.mark_sending(in_flight)
    store._conn.close()  # killed: no mark_sent
    caplog.set_level(logging.WARNING, logger="chat.telegram_app")
    async with run_bot(tg, tmp_path) as app:
        await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: "TP2" in c.text)
        await outbox_marker(tg, app, USER)
        assert not [c for c in tg.all_calls() if c.method == "sendMessage" and "TP1" in c.params.get("text", "")]
        ((sent_at, note),) = app.bot_data["services"].store._q(
            "SELECT sent_at, last_error FROM outbox WHERE id=?", (in_flight,)
        )
        assert sent_at is not None and "maybe delivered" in note  # settled at the start, recorded as such
    assert f"outbox message {in_flight} (alert to chat {USER}) was in flight" in caplog.text


def evidence_for(signal, *, gated: bool) -> dict:
    """An evidence.json whose only setup is ``signal``'s, passing the gate or not."""
    from tracking.setups import setup_of

    row = dict(trades=80, win_rate=0.4, tp1_rate=0.45, average_r=0.2 if gated else -0.1, ci_low=-0.05)
    row.update(ci_high=0.45 if gated else 0.1, profit_factor=1.3 if gated else 0.9, gated=gated)
    return {"period": {"start": "2024-01-01", "end": "2026-01-01"}, "setups": {setup_of(signal): row}}


@pytest.mark.parametrize("gated", [True, False])
async def test_the_evidence_gate_decides_what_a_scan_broadcasts(tg, tmp_path, gated):
    """GATE=evidence (the default): a scan broadcasts the signal only when evidence.json passes its setup; the
    message says it is tracked and shows the setup's record; otherwise nothing is sent and /health says why."""
    import json

    import ict_signal_engine

    symbol, tf = pair_with("signal")
    signal = ict_signal_engine.analyze(sample_market(), symbol, tf).result
    (tmp_path / "evidence.json").write_text(json.dumps(evidence_for(signal, gated=gated)))
    async with run_bot(tg, tmp_path, watchlist=(symbol,), auto_signal_timeframes=(tf,)) as application:
        services = application.bot_data["services"]
        assert services.settings.gate == "evidence"
        services.store.subscribe(OTHER)
        summary = await jobs.scan_now(application, forced=True)
        await outbox_marker(tg, application, OTHER)
        sent = [c for c in tg.calls(chat_id=OTHER) if c.method in ("sendPhoto", "sendMessage")]
        position = services.store.get_by_signal(signal.id)
        tg.send_message("/health", user_id=USER)
        health = await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: "Health" in c.text)
    if gated:
        assert position is not None and "1 new" in summary
        assert len(sent) == 2 and sent[0].method == "sendPhoto"  # the signal, then the marker
        text = sent[0].text
        assert f"Tracking as #{position.id}, alerts will follow" in text and f"#{symbol}" in text
        assert (
            "80 past trades · TP1 hit 45% · avg +0.20 R net" in text and "Probability: TP1 before the stop 45%" in text
        )
        assert "/100" not in text and "<code>" in text
        assert "Gate: evidence · broadcasting 1 setup(s)" in health.text
    else:
        assert position is None and "0 new" in summary and "1 not passed by the gate" in summary
        assert len(sent) == 1  # the marker only
        assert "no setup shows a positive out-of-sample net edge: nothing is broadcast" in health.text


async def test_version_command(tg, bot):
    from chat import __version__

    tg.send_message("/version", user_id=USER)
    call = await tg.wait_for("sendMessage", chat_id=USER)
    assert call.text.startswith(f"ICT Signal Bot {__version__}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_webhook_mode_serves_posted_updates_and_refuses_a_wrong_secret(tg, tmp_path):
    """TELEGRAM_WEBHOOK_URL: the bot registers its URL and secret (setWebhook) instead of polling; an update
    posted with the secret is answered, one with a wrong or missing secret is refused (403) and never handled."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/tg/hook"  # config requires https; Settings built directly for the local test
    overrides = dict(telegram_webhook_url=url, telegram_webhook_listen=("127.0.0.1", port))
    async with run_bot(tg, tmp_path, telegram_webhook_secret="right-Secret_1", **overrides):
        registered = tg.calls("setWebhook")[-1].params
        assert registered["url"] == url and registered["secret_token"] == "right-Secret_1"
        assert not tg.calls("getUpdates")  # no polling in webhook mode
        status, _ = await tg.post_to_webhook("/help", user_id=OTHER, secret="wrong")
        assert status == 403
        status, _ = await tg.post_to_webhook("/help", user_id=OTHER, secret="")
        assert status == 403
        status, _ = await tg.post_to_webhook("/version", user_id=USER)
        assert status == 200
        call = await tg.wait_for("sendMessage", chat_id=USER, within=30)
        assert "ICT Signal Bot" in call.text
        status, _ = await tg.post_to_webhook("/start", user_id=USER)
        await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: "Welcome" in c.text, within=30)
        assert not tg.calls(chat_id=OTHER)  # the refused posts were never handled


async def test_broadcast_channel_gets_each_signal_once_and_alerts_as_replies(tg, tmp_path):
    """BROADCAST_CHANNEL_ID: the scan's signal is posted to the channel once (a second scan adds nothing), the
    channel is a recipient of the position, and an alert to it is a reply to that post."""
    import real_time_monitor
    from position_manager import OutboxKind
    from tracking.state import EventKind, PositionEvent

    channel = -1001234567890
    symbol, tf = pair_with("signal")
    overrides = dict(watchlist=(symbol,), auto_signal_timeframes=(tf,), gate="off", broadcast_channel_id=channel)
    async with run_bot(tg, tmp_path, **overrides) as application:
        services = application.bot_data["services"]
        await jobs.scan_now(application, forced=True)
        post = await tg.wait_for("sendPhoto", chat_id=channel, within=60)
        assert "Tracking as #" in post.text
        position = next(iter(services.store.list_open()))
        assert channel in position.recipients
        await jobs.scan_now(application, forced=True)  # the same signal again: a duplicate, not re-posted
        event = PositionEvent(EventKind.FILLED, "FILLED", position.opened_at, position.entry)
        alert = real_time_monitor.format_event_html(position, event)
        services.store.enqueue(channel, alert, kind=OutboxKind.ALERT, dedupe_key="test-alert")
        await jobs.drain_outbox(application)
        reply = await tg.wait_for("sendMessage", chat_id=channel, within=30)
        await outbox_marker(tg, application, channel)
    post_id = next(m for m in tg._state.sent.values() if m["chat"]["id"] == channel and "photo" in m)["message_id"]
    assert reply.params["reply_parameters"]["message_id"] == post_id  # PTB 22 sends reply_parameters
    assert len(tg.calls("sendPhoto", chat_id=channel)) == 1
