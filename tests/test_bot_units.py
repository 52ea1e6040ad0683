"""Unit tests of the Telegram layer's pure parts: HTML splitting, the sender's retries, parsing, glossary,
rate limiter, command table, token redaction, report schedule."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from chat import account_commands, commands, glossary, handlers, jobs, sender, signal_commands, telegram_app
from chat.services import RateLimiter, RecentResults, Services
from config import Settings
from engine import prices

# -- split_html ----------------------------------------------------------------------------------------------


def _balanced(chunk: str) -> bool:
    stack = []
    for closing, name in re.findall(r"<(/?)([a-z]+)[^>]*>", chunk):
        if closing:
            if not stack or stack.pop() != name:
                return False
        else:
            stack.append(name)
    return not stack


@pytest.mark.parametrize("limit", [50, 200, 4000])
def test_split_html_respects_limit_keeps_tags_balanced_and_loses_nothing(limit):
    text = "<b>Title &amp; more</b>\n" + "\n".join(f"<i>line {i}</i> &lt;x&gt; " + "y" * (i % 30) for i in range(300))
    text += "\n<pre>" + "\n".join("code " * 5 for _ in range(50)) + "</pre>"
    chunks = sender.split_html(text, limit)
    assert all(sender.utf16_len(c) <= limit for c in chunks)
    assert all(_balanced(c) for c in chunks)
    assert "".join(sender.strip_html(c).replace("\n", "") for c in chunks) == sender.strip_html(text).replace("\n", "")


def test_split_html_never_cuts_an_entity_or_a_tag_in_a_long_line():
    text = ("a&amp;b <b>bold</b> " * 400).strip()
    chunks = sender.split_html(text, 100)
    assert len(chunks) > 10
    for chunk in chunks:
        assert not re.search(r"&[a-z]*$", chunk) and not re.search(r"<[^>]*$", chunk)
        assert _balanced(chunk)


def test_split_counts_utf16_units_and_short_text_is_one_chunk():
    assert sender.split_html("hi") == ["hi"]
    assert sender.split_html("  \n ") == []
    emoji = "🟢" * 3000  # 6000 UTF-16 units
    assert all(sender.utf16_len(c) <= 4000 for c in sender.split_html(emoji))


def test_escape_and_strip():
    assert sender.escape("<b>&") == "&lt;b&gt;&amp;"
    assert sender.strip_html("<b>a &amp; b</b>") == "a & b"


# -- Sender against a scripted bot -------------------------------------------------------------------------


class ScriptedBot:
    """Raises the scripted exceptions in order, then succeeds; records what it was asked to send."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.sent: list[dict] = []

    async def send_message(self, chat_id, text, **kwargs):
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append({"chat_id": chat_id, "text": text, **kwargs})
        return SimpleNamespace(message_id=len(self.sent))

    async def send_photo(self, chat_id, photo, **kwargs):
        return await self.send_message(chat_id, "<photo>", photo=photo, **kwargs)


async def _no_sleep(seconds):
    _no_sleep.slept.append(seconds)


async def test_sender_waits_out_retry_after_and_delivers():
    _no_sleep.slept = []
    bot = ScriptedBot(RetryAfter(7), RetryAfter(3))
    result = await sender.Sender(bot, sleep=_no_sleep).text(5, "<b>hi</b>")
    assert result.ok and len(bot.sent) == 1
    assert _no_sleep.slept == [7.0, 3.0]


async def test_sender_reports_forbidden_and_calls_on_blocked():
    blocked = []

    async def on_blocked(chat_id):
        blocked.append(chat_id)

    bot = ScriptedBot(Forbidden("Forbidden: bot was blocked by the user"))
    result = await sender.Sender(bot, on_blocked=on_blocked, sleep=_no_sleep).text(9, "x")
    assert result.delivery is sender.Delivery.BLOCKED and blocked == [9]


async def test_sender_falls_back_to_plain_text_when_html_is_rejected():
    bot = ScriptedBot(BadRequest("Can't parse entities: unsupported start tag"))
    result = await sender.Sender(bot, sleep=_no_sleep).text(1, "<b>a &amp; b</b>")
    assert result.ok and bot.sent[0]["text"] == "a & b" and bot.sent[0]["parse_mode"] is None


def _timed_out(cause: Exception) -> TimedOut:
    """TimedOut as PTB raises it: from the httpx timeout."""
    try:
        raise TimedOut() from cause
    except TimedOut as exc:
        return exc


async def test_sender_defers_after_persistent_network_errors():
    _no_sleep.slept = []
    failures = [NetworkError("httpx.ConnectError: refused") for _ in range(sender.MAX_ATTEMPTS - 1)]
    bot = ScriptedBot(*failures, _timed_out(httpx.ConnectTimeout("connect")))
    result = await sender.Sender(bot, sleep=_no_sleep).text(1, "x")
    assert result.delivery is sender.Delivery.DEFERRED and not bot.sent


@pytest.mark.parametrize("cause", [httpx.ReadTimeout("read"), httpx.WriteTimeout("write"), None])
async def test_a_send_that_timed_out_after_going_out_is_not_sent_again(cause, caplog):
    """Telegram may have delivered it (issue 14 item 2): no blind resend, the result says "maybe delivered"."""
    bot = ScriptedBot(_timed_out(cause) if cause else TimedOut())
    result = await sender.Sender(bot, sleep=_no_sleep).text(1, "x")
    assert result.delivery is sender.Delivery.UNCERTAIN and result.settled and not result.ok
    assert bot.sent == [] and not bot.failures  # one call only, the scripted success never requested
    assert "maybe delivered" in caplog.text


async def test_a_timeout_before_the_request_went_out_is_retried():
    bot = ScriptedBot(_timed_out(httpx.ConnectTimeout("connect")), _timed_out(httpx.PoolTimeout("pool")))
    result = await sender.Sender(bot, sleep=_no_sleep).text(1, "x")
    assert result.ok and len(bot.sent) == 1


async def test_a_long_text_goes_on_after_a_maybe_delivered_chunk():
    bot = ScriptedBot(_timed_out(httpx.ReadTimeout("read")))
    result = await sender.Sender(bot, sleep=_no_sleep).text(1, "\n".join("y" * 1000 for _ in range(8)))
    assert result.delivery is sender.Delivery.UNCERTAIN and len(bot.sent) >= 1  # chunk 1 not resent, rest sent


def test_sends_get_a_longer_read_timeout_than_ptbs_5_s(tmp_path):
    settings = Settings.from_env(
        {"BOT_DATA_DIR": str(tmp_path), "TELEGRAM_BOT_TOKEN": "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"}, dotenv=None
    )
    application = telegram_app.build_application(settings, jobs=False)
    request = application.bot.request
    assert request.read_timeout == telegram_app.SEND_READ_TIMEOUT_SECONDS > 5


async def test_sender_splits_long_text_and_puts_the_keyboard_on_the_last_part():
    bot = ScriptedBot()
    markup = signal_commands.signal_keyboard("BTCUSDT", "1h", "BTCUSDT-1h-202601010000-L")
    result = await sender.Sender(bot, sleep=_no_sleep).text(1, "\n".join(["line " * 20] * 200), reply_markup=markup)
    assert result.ok and len(bot.sent) > 1
    assert [m["reply_markup"] is markup for m in bot.sent] == [False] * (len(bot.sent) - 1) + [True]


async def test_long_photo_caption_moves_to_a_follow_up_message():
    bot = ScriptedBot()
    caption = "<b>x</b>" + "y" * 1500
    result = await sender.Sender(bot, sleep=_no_sleep).photo(1, b"\x89PNG", caption)
    assert result.ok
    assert bot.sent[0]["caption"] is None and "y" * 100 in bot.sent[1]["text"]


# -- parsing and formatting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [("btcusdt", "BTCUSDT"), ("BTC/USDT", "BTCUSDT"), ("eth-usdt", "ETHUSDT")]
)
def test_parse_symbol_normalises(raw, expected):
    assert commands.parse_symbol(raw) == expected


@pytest.mark.parametrize("raw", ["", "B", "BTC$", "x" * 40, "\x00\x01"])
def test_parse_symbol_rejects_garbage_with_a_safe_echo(raw):
    with pytest.raises(commands.BadInput) as info:
        commands.parse_symbol(raw)
    assert "\x00" not in str(info.value) and len(str(info.value)) < 200


def test_parse_timeframe():
    assert commands.parse_timeframe("4H") == "4h"
    assert commands.parse_timeframe("1M") == "1M"
    with pytest.raises(commands.BadInput):
        commands.parse_timeframe("2y")


@pytest.mark.parametrize(
    ("value", "text"), [(97123.456, "97,123.46"), (1.23456, "1.2346"), (0.0000123456, "0.000012346"), (None, "—")]
)
def test_format_price_scales_with_magnitude(value, text):
    assert prices.format_price(value) == text


def test_apply_setting():
    prefs = account_commands.UserPrefs()
    assert account_commands.apply_setting(prefs, "tf", "4h").timeframe == "4h"
    assert account_commands.apply_setting(prefs, "broadcasts", "off").broadcasts is False
    assert account_commands.apply_setting(prefs, "confidence", "70%").min_confidence == 70
    for key, value in (("tf", "5y"), ("broadcasts", "maybe"), ("confidence", "150"), ("colour", "red")):
        with pytest.raises(commands.BadInput):
            account_commands.apply_setting(prefs, key, value)


def test_callback_data_fits_telegram_limit_and_forged_data_is_rejected():
    markup = signal_commands.signal_keyboard("ABCDEFGHIJKLMNOPQRST", "15m", "ABCDEFGHIJKLMNOPQRST-15m-202601010000-L")
    for row in markup.inline_keyboard:
        for button in row:
            assert len(button.callback_data.encode()) <= 64
            assert handlers._CALLBACK.fullmatch(button.callback_data)
    for forged in ("sig|r|BTC USDT|1h", "adm|pause;drop", "set|tf|" + "x" * 50, "", "sig|x|y"):
        assert not handlers._CALLBACK.fullmatch(forged)


# -- the command table ---------------------------------------------------------------------------------------


def test_command_table_covers_the_spec_and_is_consistent():
    table = handlers.commands()
    names = [spec.name for spec in table]
    assert len(names) == len(set(names))
    user = {"start", "help", "signal", "market", "positions", "close", "stats", "journal", "report", "health"}
    user |= {"subscribe", "unsubscribe", "settings", "explain", "version"}
    admin = {"admin", "broadcast", "pause", "resume", "scan", "train", "backup", "users", "watchlist"}
    assert {s.name for s in table if not s.admin} == user
    assert {s.name for s in table if s.admin} == admin
    for spec in table:
        assert spec.usage.startswith(f"/{spec.name}") and spec.description
        assert re.fullmatch(r"[a-z]{1,32}", spec.name)
    help_text = commands.help_text(table, admin=True)
    assert all(sender.escape(spec.usage) in help_text for spec in table)
    assert {c.command for c in handlers.menu_commands(table)} == user


# -- glossary ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "term",
    ["OB", "fvg", "BOS", "choch", "MSS", "SIBI", "BISI", "ssib", "BSL", "SSL", "OTE", "killzone", "breaker",
     "mitigation block", "premium", "discount", "equilibrium", "IFVG", "displacement", "liquidity sweep",
     "order-block", "Fair Value Gap", "ibsl", "nwog", "whale"],
)  # fmt: skip
def test_glossary_knows_every_term_the_bot_uses(term):
    found = glossary.lookup(term)
    assert found is not None and len(found.definition) > 40


def test_glossary_sibi_is_bearish_and_bisi_bullish():
    assert "bearish" in glossary.lookup("SIBI").definition.lower()
    assert "bullish" in glossary.lookup("BISI").definition.lower()
    assert glossary.lookup("nonsense") is None


# -- rate limiter and recent results -------------------------------------------------------------------------


def test_rate_limiter_sliding_window_with_injected_clock():
    now = [0.0]
    limiter = RateLimiter(2, 60, clock=lambda: now[0])
    assert limiter.hit(1) is None and limiter.hit(1) is None
    assert limiter.hit(1) == pytest.approx(60)
    assert limiter.hit(2) is None  # per user
    now[0] = 30
    assert limiter.hit(1) == pytest.approx(30)
    now[0] = 60.5
    assert limiter.hit(1) is None


def test_recent_results_is_bounded():
    recent = RecentResults(capacity=2)
    for key in "abc":
        recent.put(key, key.upper())
    assert recent.get("a") is None and recent.get("c") == "C"


# -- application helpers -------------------------------------------------------------------------------------


def test_file_url_matches_base_url():
    assert telegram_app.file_url_for("https://api.telegram.org/bot") == "https://api.telegram.org/file/bot"
    assert telegram_app.file_url_for("http://127.0.0.1:8081/bot") == "http://127.0.0.1:8081/file/bot"


def test_token_filter_redacts_urls_in_log_records(caplog):
    token = "123456:ABCdefGHIjklMNOpqrSTUvwx"
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "POST %s", (f"https://x/bot{token}/getMe",), None)
    assert telegram_app.TokenFilter(token).filter(record)
    assert token not in record.getMessage() and "***" in record.getMessage()
    try:
        raise ConnectionError(f"could not reach https://x/bot{token}/getUpdates")
    except ConnectionError:
        import sys

        failing = logging.LogRecord("telegram", logging.ERROR, __file__, 1, "polling failed", (), sys.exc_info())
    telegram_app.TokenFilter(token).filter(failing)
    formatted = logging.Formatter().format(failing)
    assert "ConnectionError" in formatted and token not in formatted


@pytest.mark.parametrize(
    ("day", "periods"),
    [
        (datetime(2026, 6, 1), ["daily", "weekly", "monthly"]),  # a Monday and the 1st
        (datetime(2026, 6, 2), ["daily"]),
        (datetime(2026, 6, 8), ["daily", "weekly"]),
        (datetime(2026, 7, 1), ["daily", "monthly"]),
    ],
)
def test_report_schedule(day, periods):
    assert jobs.report_periods(day) == periods


def test_retry_after_seconds_accepts_int_and_timedelta():
    assert sender.retry_after_seconds(RetryAfter(5)) == 5
    assert sender.retry_after_seconds(RetryAfter(timedelta(seconds=2))) == 2
    assert sender.retry_after_seconds(RetryAfter(10_000)) == sender.MAX_RETRY_AFTER_SECONDS


async def test_enough_new_outcomes_trigger_one_retrain(tmp_path):
    from position_manager import PositionStore

    store = PositionStore(tmp_path / "positions.db")
    started = []
    app = SimpleNamespace(create_task=lambda coro, name=None: (started.append(name), coro.close()))
    services = Services(settings=SimpleNamespace(), mode="telegram", store=store)
    await jobs.count_outcomes(app, services, jobs.RETRAIN_AFTER_OUTCOMES - 1)
    assert started == [] and store.get_state("outcomes_since_train") == str(jobs.RETRAIN_AFTER_OUTCOMES - 1)
    await jobs.count_outcomes(app, services, 1)
    assert started == ["retrain-on-outcomes"]
    store.close()


async def test_editing_to_the_same_content_is_not_an_error():
    class Bot(ScriptedBot):
        async def edit_message_text(self, text, **kwargs):
            raise BadRequest("Bad Request: message is not modified: specified new message content is the same")

    result = await sender.Sender(Bot(), sleep=_no_sleep).edit(1, 2, "same")
    assert result.ok


def test_backup_holds_exactly_the_named_data_stores(tmp_path):
    """Issue 14 item 7: a stray JSON or pickle in the data folder is not sent."""
    import io
    import zipfile

    import admin_module
    from position_manager import PositionStore

    PositionStore(tmp_path / "positions.db").close()
    for name in ("trading_journal.json", "bot_stats.json", "ml_model.pkl", "secrets.json", "notes.json", "x.pkl"):
        (tmp_path / name).write_text("{}", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "evidence.json").write_text("{}", encoding="utf-8")
    names = zipfile.ZipFile(io.BytesIO(admin_module.make_backup(tmp_path))).namelist()
    assert sorted(names) == ["bot_stats.json", "ml_model.pkl", "positions.db", "trading_journal.json"]


def test_evidence_is_loaded_at_start_and_reloaded_when_the_file_changes(tmp_path):
    import json
    import os

    from engine.signal_model import Signal, TradeDirection

    settings = Settings(bot_data_dir=tmp_path, market_data="sample")
    svc = Services(settings=settings, mode="telegram")
    assert svc.refresh_evidence(force=True) and not svc.evidence.setups
    assert "no evidence.json yet" in svc.gate_status() and svc.default_floor == 0.0
    signal = Signal(
        symbol="BTCUSDT", timeframe="1h", direction=TradeDirection.LONG, entry=100.0, entry_low=99.0,
        entry_high=101.0, sl=98.0, tp1=103.0, tp2=104.0, tp3=106.0, time=datetime(2025, 7, 1, 14, tzinfo=UTC),
        rule_confidence=90.0, entry_model="sweep_mss",
    )  # fmt: skip
    assert not svc.verdict(signal).broadcast  # GATE=evidence without evidence: nothing is broadcast
    row = dict(trades=40, win_rate=0.4, tp1_rate=0.5, average_r=0.3, ci_low=0.01, ci_high=0.6, gated=True)
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps({"period": {"start": "a", "end": "b"}, "setups": {"sweep_mss/long/1h": row}}))
    os.utime(path, (1_000_000, 1_000_000))
    assert svc.refresh_evidence()  # the file appeared
    assert not svc.refresh_evidence()  # unchanged: not read again
    assert svc.verdict(signal).broadcast and svc.verdict(signal).probability == 0.5
    path.write_text(json.dumps({"setups": {"sweep_mss/long/1h": {**row, "gated": False}}}))
    os.utime(path, (2_000_000, 2_000_000))
    assert svc.refresh_evidence() and not svc.verdict(signal).broadcast
    confidence = Services(settings=Settings(bot_data_dir=tmp_path, gate="confidence", min_confidence=70), mode="x")
    assert confidence.default_floor == 70.0 and confidence.verdict(signal).broadcast


def test_settings_text_names_the_rule_score_and_the_default_floor():
    prefs = account_commands.UserPrefs()
    text = account_commands.settings_text(prefs, 0.0, "Gate: evidence · no evidence.json yet")
    assert "rule score" in text and "none (default)" in text and "%" not in text and "Gate: evidence" in text
    assert "60 (default)" in account_commands.settings_text(prefs, 60.0)


def test_one_version_for_pyproject_bot_and_version_command(capsys):
    import tomllib
    from pathlib import Path

    import bot
    from chat import __version__

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert __version__ == pyproject["project"]["version"]
    with pytest.raises(SystemExit) as done:
        bot.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"ICT Signal Bot {__version__}"
    assert handlers.version_text().startswith(f"ICT Signal Bot {__version__} · Python 3.")


def test_channel_reads_the_position_from_the_bots_own_texts():
    """The broadcast channel links an alert to its signal post through the texts the bot renders: the signal's
    tracking line and the monitor's alert title (a change of either format breaks this test, not the channel)."""
    from chat import channel, formatting
    from tracking.gate import Verdict

    verdict = Verdict("sweep_mss/long/1h", None, None, True, "the gate is off")
    assert channel.signal_position(formatting.tracking_line(verdict, 42)) == 42
    assert channel.signal_position(formatting.tracking_line(verdict, why_not="a duplicate")) is None
    assert channel.alert_position("✅ <b>BTCUSDT 1h LONG</b> #7: entry filled at 64,210.50") == 7
    assert channel.alert_position("📢 maintenance at 18:00") is None
