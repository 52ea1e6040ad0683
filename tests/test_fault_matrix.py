"""Issue 14 fault matrix, end to end: the real PTB Application against the local Bot API server, market data from
the local Binance server through the real ``BinanceClient``; one row per fault.

Every row checks the same four properties: the bot keeps running (a later command is answered), the user gets
one clear reply (no traceback, no Python exception name), ``/health`` shows the degraded part while the fault
lasts, and once the fault clears every request is answered and nothing is delivered twice (messages counted per
(method, chat, text) at the fake Bot API). The observed replies are the "observed" column of docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from chat import jobs, telegram_app
from chat.sender import strip_html
from market.binance_client import BinanceClient, RetryPolicy
from tests.fake_binance import FakeBinance, Reply
from tests.fake_telegram import Call, FakeTelegram
from tests.test_bot_e2e import ADMIN, USER, outbox_marker, run_bot

KLINES = "/api/v3/klines"
SYMBOL, TF = "BTCUSDT", "4h"
ANSWERS = ("sendMessage", "sendPhoto")


class SkewClock:
    """``time.time`` plus a skew the test moves forward: a Retry-After period passes without waiting for it."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.time() + self.skew


@dataclass(frozen=True)
class BinanceFault:
    name: str
    apply: Callable[[FakeBinance], None]
    reply: str  # in the answer to /signal while the fault lasts
    health: str  # in /health's market line while the fault lasts
    skip_seconds: float = 0.0  # how far the clock moves when the fault clears (a Retry-After period)
    retry_hint: bool | None = None  # the reply suggests trying again (only where waiting can help); None: not checked


def outage(reply: Reply) -> Callable[[FakeBinance], None]:
    def apply(fake: FakeBinance) -> None:
        fake.fault = reply

    return apply


def burst(*replies: Reply) -> Callable[[FakeBinance], None]:
    return lambda fake: fake.script(*replies)


BINANCE_FAULTS = [
    BinanceFault("429 Retry-After 2 s: waited out", burst(Reply.rate_limited(2)), SYMBOL, "ms"),
    BinanceFault(
        "429 Retry-After 600 s", outage(Reply.rate_limited(600)), "rate-limited this IP", "requests resume after", 601
    ),
    BinanceFault(
        "418 IP ban", outage(Reply.rate_limited(900, status=418)), "banned this IP", "requests resume after", 901
    ),
    BinanceFault("451 restricted location", outage(Reply.restricted()), "HTTP 451", "HTTP 451", retry_hint=False),
    BinanceFault("5xx burst within the retries", burst(*[Reply.server_error(502)] * 3), SYMBOL, "ms"),
    BinanceFault("5xx outage", outage(Reply.server_error(503)), "HTTP 503", "unreachable", retry_hint=True),
    BinanceFault("timeouts", outage(Reply.silent()), "timed out", "timed out"),
    BinanceFault("dropped connections", outage(Reply.dropped()), "connection failed", "connection failed"),
    BinanceFault("malformed JSON", outage(Reply.malformed()), "malformed JSON", "malformed JSON"),
    BinanceFault(
        "empty klines", outage(Reply(body=b"[]", path=KLINES)), "no closed 4h candles", "ms", retry_hint=False
    ),
    BinanceFault(
        "delisted symbol (-1121)", outage(Reply.error(-1121, "Invalid symbol.", path=KLINES)), "no symbol", "ms"
    ),
]


@pytest.fixture
def tg():
    with FakeTelegram() as server:
        yield server


def answers_to(tg: FakeTelegram, chat_id: int) -> list[Call]:
    return [c for c in tg.calls() if c.method in ANSWERS and c.chat_id == chat_id]


def assert_nothing_doubled(tg: FakeTelegram) -> None:
    """No message sent twice for one cause: between two user updates (one request's answers, or the outbox
    messages of one drain) no chat gets the same (method, text) twice. Identical answers to two requests count
    once each."""
    starts = sorted(STARTS)
    windows: Counter = Counter()
    for call in tg.calls():
        if call.method in ANSWERS:
            windows[(bisect.bisect(starts, call.at), call.method, call.chat_id, call.text)] += 1
    doubled = {key: n for key, n in windows.items() if n > 1}
    assert not doubled, doubled


STARTS: list[float] = []  # when the test sent each update or ran each drain: the windows of one cause


@pytest.fixture(autouse=True)
def _fresh_windows():
    STARTS.clear()


def new_window() -> None:
    STARTS.append(time.monotonic())


def assert_clear(call: Call) -> None:
    for leak in ("Traceback", "Exception", "Error:", "requests.", "httpx"):
        assert leak not in call.text, call.text


async def ask(tg: FakeTelegram, text: str, where: Callable[[Call], bool], *, user: int = USER) -> Call:
    """Send ``text`` and return the first answer after it that satisfies ``where``."""
    new_window()
    sent_at = time.monotonic()
    tg.send_message(text, user_id=user)
    return await tg.wait_for(ANSWERS, chat_id=user, where=lambda c: c.at >= sent_at and where(c), within=60)


def market_line(call: Call) -> str:
    return next(line for line in call.text.splitlines() if line.startswith("Market data"))


@pytest.mark.parametrize("fault", BINANCE_FAULTS, ids=lambda f: f.name)
async def test_binance_fault(tg, tmp_path, fault: BinanceFault, caplog):
    caplog.set_level(logging.WARNING)
    clock = SkewClock()
    with FakeBinance(now="2026-03-02 12:05") as binance:
        policy = RetryPolicy(connect_timeout=0.5, read_timeout=0.4)
        market = BinanceClient(binance.url, policy=policy, sleep=lambda seconds: None, clock=clock)
        async with run_bot(tg, tmp_path, market=market, market_data="binance", binance_api_base_url=binance.url):
            fault.apply(binance)
            during = await ask(tg, f"/signal {SYMBOL} {TF}", lambda c: True)
            assert fault.reply in during.text, during.text
            if fault.retry_hint is not None:
                assert ("try again" in during.text) is fault.retry_hint, during.text
            assert_clear(during)
            health = await ask(tg, "/health", lambda c: "Health" in c.text)
            assert fault.health in market_line(health), market_line(health)
            print(f"observed | {fault.name} | {strip_html(during.text)[:160]!r} | {market_line(health)}")
            await ask(tg, "/explain FVG", lambda c: "Fair value gap" in c.text)  # the bot keeps serving

            binance.fault = None
            clock.skew += fault.skip_seconds
            after = await ask(tg, f"/signal {SYMBOL} 1h", lambda c: True)  # another request: another answer
            assert SYMBOL in after.text and "Market data problem" not in after.text, after.text
            health = await ask(tg, "/health", lambda c: "Health" in c.text)
            assert "unreachable" not in market_line(health)
            assert_nothing_doubled(tg)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


# --------------------------------------------------------------------------------------------------------------
# Telegram faults: sample market data; the faults hit the Bot API calls of replies and of the outbox
# --------------------------------------------------------------------------------------------------------------

GROUP, SUPERGROUP = -4242, -1004242


async def fast_sleep(seconds: float) -> None:
    await asyncio.sleep(min(seconds, 0.05))  # the sender's network back-off, shortened (flood waits stay real)


async def health_outbox(tg: FakeTelegram) -> str:
    health = await ask(tg, "/health", lambda c: "Health" in c.text)
    return next(line for line in health.text.splitlines() if line.startswith("Outbox"))


async def alert(app, chat_id: int, text: str) -> None:
    new_window()
    app.bot_data["services"].store.enqueue(chat_id, text, kind="alert")
    await jobs.drain_outbox(app)


async def row_flood_429(tg, app):
    tg.flood("sendMessage", retry_after=1, times=2)
    await alert(app, USER, "ALERT 429")
    await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: c.text == "ALERT 429")
    assert "0 pending" in await health_outbox(tg)


async def row_5xx_within_retries(tg, app):
    tg.fail("sendMessage", 502, "Bad Gateway", times=2)
    await alert(app, USER, "ALERT 502")
    await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: c.text == "ALERT 502")
    assert "0 pending" in await health_outbox(tg)


async def row_5xx_outage(tg, app):
    tg.fail("sendMessage", 500, "Internal Server Error", times=6)  # outlasts the sender's 5 attempts
    await alert(app, USER, "ALERT 500")
    assert "1 pending" in await health_outbox(tg)  # deferred, waiting: /health's reply takes the 6th 500
    new_window()
    await jobs.drain_outbox(app)  # the next run of the outbox job
    await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: c.text == "ALERT 500")
    assert "0 pending" in await health_outbox(tg)


async def row_timeout(tg, app):
    tg.slow("sendMessage", 2.0)  # Telegram delivers it, but after the client's 1 s read timeout
    await alert(app, USER, "ALERT slow")
    await outbox_marker(tg, app, USER)
    assert "0 pending" in await health_outbox(tg)  # settled as maybe delivered, never resent
    reply = await ask(tg, "/explain OB", lambda c: "Order block" in c.text)
    assert_clear(reply)


async def row_forbidden(tg, app):
    tg.block("sendMessage")
    await alert(app, USER, "ALERT blocked")
    services = app.bot_data["services"]
    assert not services.store.is_subscribed(USER)
    new_window()
    tg.send_message("/health", user_id=ADMIN)
    health = await tg.wait_for("sendMessage", chat_id=ADMIN, where=lambda c: "Health" in c.text)
    assert "1 failed" in health.text and "0 subscribers" in health.text  # the dropped alert, the lost subscriber
    back = await ask(tg, "/subscribe", lambda c: "ubscribed" in c.text)  # the user is back: served again
    assert_clear(back)
    assert services.store.is_subscribed(USER)
    await alert(app, USER, "ALERT after unblock")
    await tg.wait_for("sendMessage", chat_id=USER, where=lambda c: c.text == "ALERT after unblock")


async def row_too_long(tg, app):
    tg.enforce_limits = True
    new_window()
    tg.send_message("/broadcast " + "<b>&" * 700, user_id=ADMIN)  # escaped: 7,700 characters of HTML
    await tg.wait_for("sendMessage", chat_id=ADMIN, where=lambda c: "Queued for" in c.text)
    await outbox_marker(tg, app, USER)
    parts = [c.text for c in tg.calls("sendMessage", chat_id=USER) if "&amp;" in c.text]
    assert len(parts) >= 2 and "".join(parts).count("&lt;b&gt;&amp;") == 700  # split, nothing cut or doubled
    await ask(tg, f"/signal {SYMBOL} {TF}", lambda c: SYMBOL in c.text)  # a long caption moves to a follow-up
    assert "0 pending" in await health_outbox(tg)


async def row_chat_migrated(tg, app):
    services = app.bot_data["services"]
    services.store.subscribe(GROUP)
    tg.migrate("sendMessage", SUPERGROUP)
    await alert(app, GROUP, "ALERT to the group")
    await tg.wait_for("sendMessage", chat_id=SUPERGROUP, where=lambda c: c.text == "ALERT to the group")
    assert services.store.is_subscribed(SUPERGROUP) and not services.store.is_subscribed(GROUP)
    await alert(app, SUPERGROUP, "ALERT next")  # later messages go to the supergroup directly
    await tg.wait_for("sendMessage", chat_id=SUPERGROUP, where=lambda c: c.text == "ALERT next")
    assert "0 pending" in await health_outbox(tg)


async def row_polling_5xx(tg, app):
    tg.fail("getUpdates", 502, "Bad Gateway", times=3)
    reply = await ask(tg, "/explain FVG", lambda c: "Fair value gap" in c.text)
    assert_clear(reply)


TELEGRAM_FAULTS = {
    "429 RetryAfter": row_flood_429,
    "5xx within the retries": row_5xx_within_retries,
    "5xx outage": row_5xx_outage,
    "timeout after the request went out": row_timeout,
    "403 blocked": row_forbidden,
    "too-long message": row_too_long,
    "chat migrated to a supergroup": row_chat_migrated,
    "5xx on getUpdates": row_polling_5xx,
}


@pytest.mark.parametrize("name", list(TELEGRAM_FAULTS))
async def test_telegram_fault(tg, tmp_path, monkeypatch, caplog, name):
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(telegram_app, "SEND_READ_TIMEOUT_SECONDS", 1.0)
    async with run_bot(tg, tmp_path) as app:
        app.bot_data["services"].sender._sleep = fast_sleep
        await ask(tg, "/start", lambda c: "Welcome" in c.text)
        await TELEGRAM_FAULTS[name](tg, app)
        await ask(tg, "/explain SIBI", lambda c: "Sell-side imbalance" in c.text)  # still serving
        assert_nothing_doubled(tg)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
