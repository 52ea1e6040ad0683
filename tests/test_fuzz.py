"""Issue 14 fuzz: 2,000+ seeded random and hostile messages and button presses through the real PTB Application.

Every message gets an answer in its chat and every button press a callback answer; no traceback is logged or
shown; the admins get at most a few error reports (one per kind per period); the stores still load after.
Messages come from distinct users, so each one's answer is found in its own chat and the per-user rate limit
of /signal does not hide anything. The few inputs that start an analysis (a real symbol) are capped, so the run
stays short; everything else is answered from validation, the glossary, the settings or the stores.
"""

from __future__ import annotations

import asyncio
import logging
import random
import string
import time

import pytest

from chat import telegram_app
from chat.services import build_services
from position_manager import PositionStore
from tests.fake_telegram import FakeTelegram
from tests.test_bot_e2e import ADMIN, make_settings, sample_market

SEED = 20261207
MESSAGES = 1500
PRESSES = 600
BATCH = 100
MAX_ANALYSES = 4  # inputs that run the engine: a real symbol and timeframe (a chart), /market (the watchlist)
HEAVY = ("market", "report", "scan", "train")  # admin-only ones are refused, but budgeted all the same
MAX_ADMIN_REPORTS = 3
FIRST_USER = 500_000

HOSTILE = [
    "<b>bold</b><script>alert(1)</script>",
    "</code></pre><a href='javascript:x'>x</a>",
    "*bold* _it_ `code` [link](http://x) ~~s~~ ||spoiler||",
    "&amp; &lt; &#x27; &#0; &bogus;",
    "../../../../etc/passwd",
    "..\\..\\windows\\system32",
    "/dev/zero",
    "'; DROP TABLE positions; --",
    "1 OR 1=1",
    '" UNION SELECT * FROM outbox --',
    "%s%s%s%n",
    "{0}{1}{__class__}",
    "${jndi:ldap://x}",
    "\x00\x01\x02\x7f",
    "\u202etxet desrever\u202c",
    "\u200b\u200d\ufeff",
    "🚀🌕💎🙌" * 20,
    "ÄÖÜ ß ñ 中文 العربية עברית 日本語",
    "𝕳𝖊𝖑𝖑𝖔 \U0001f9ea\U0001fae0",
    "BTC\nUSDT",
    "   ",
    "-1",
    "99999999999999999999999999",
    "NaN",
    "1e308",
]
SYMBOLS = ["BTC$USDT", "btc/usdt", "ETH-USDT", "../BTC", "BTCUSDT;--", "SOL USDT", "X" * 64, "DOGEUSDT", "", "0"]
REAL = [("BTCUSDT", "4h"), ("ETHUSDT", "1h"), ("SOLUSDT", "4h")]
TIMEFRAMES = ["1h", "4h", "1d", "7x", "0m", "-1h", "1M", "99999d", "h1", ""]
COMMANDS = [
    "start", "help", "signal", "market", "positions", "close", "stats", "journal", "report", "health", "version",
    "subscribe", "unsubscribe", "settings", "explain", "admin", "broadcast", "pause", "resume", "scan", "train",
    "backup", "users", "watchlist", "nosuchcommand", "SIGNAL", "start@ict_test_bot", "signal@other_bot",
]  # fmt: skip
CALLBACKS = [
    "adm|pause", "adm|resume", "adm|scan", "adm|train", "adm|backup", "adm|users", "adm|health", "adm|",
    "sig|d|BTCUSDT-1h-202001010000-L", "sig|d|", "sig|r|BTC$USDT|1h", "sig|r|BTCUSDT|9y", "sig|r|",
    "sig|r|../../etc|1h", "set|tf|99q", "set|tf|1h", "set|bc|on", "set|bc|maybe", "set|mc|101", "set|mc|-5",
    "set|mc|abc", "set|", "garbage", "|||", "", "sig|d|' OR 1=1 --",
]  # fmt: skip


class Budget:
    """How many inputs that start a real analysis are still allowed."""

    def __init__(self, n: int) -> None:
        self.left = n

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


def noise(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(HOSTILE)
    if kind == 1:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 40)))
    if kind == 2:
        return rng.choice(string.ascii_letters) * rng.choice((100, 4096, 10_000))  # up to 10 kB
    if kind == 3:
        return rng.choice(SYMBOLS)
    if kind == 4:
        return rng.choice(TIMEFRAMES)
    return " ".join(rng.choice(HOSTILE + SYMBOLS) for _ in range(rng.randrange(1, 4)))


def random_message(rng: random.Random, budget: Budget) -> str:
    if rng.random() < 0.15:
        return noise(rng)  # not a command
    command = rng.choice(COMMANDS)
    if command in HEAVY and not budget.take():
        command = "help"
    if command.startswith("signal") and rng.random() < 0.05 and budget.take():
        return "/signal " + " ".join(rng.choice(REAL))
    if command == "signal" and rng.random() < 0.3:  # a real symbol with a hostile timeframe: no analysis
        return f"/signal BTCUSDT {rng.choice(TIMEFRAMES[3:])}"
    args = [noise(rng) for _ in range(rng.choice((0, 1, 1, 2, 3)))]
    if command == "settings" and args:
        args.insert(0, rng.choice(("tf", "broadcasts", "confidence", "x")))
    if command == "watchlist" and args:
        args.insert(0, rng.choice(("add", "remove", "drop")))
    return " ".join(["/" + command, *args])[:12_000]


def random_callback(rng: random.Random, budget: Budget) -> str:
    if rng.random() < 0.03 and budget.take():
        return "sig|r|{}|{}".format(*rng.choice(REAL))
    if rng.random() < 0.3:
        raw = "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(0, 30)))
        return raw.encode()[:64].decode("utf-8", "ignore")  # Telegram caps callback data at 64 bytes
    data = rng.choice(CALLBACKS)
    return (
        data if rng.random() < 0.7 else (data + rng.choice(HOSTILE + SYMBOLS)).encode()[:64].decode("utf-8", "ignore")
    )


@pytest.fixture
def tg():
    with FakeTelegram() as server:
        yield server


def answered_chats(tg: FakeTelegram) -> set[int]:
    return {c.chat_id for c in tg.calls() if c.method in ("sendMessage", "sendPhoto", "sendDocument")}


def answered_queries(tg: FakeTelegram) -> set[str]:
    return {str(c.params.get("callback_query_id")) for c in tg.calls("answerCallbackQuery")}


def for_another_bot(text: str) -> bool:
    """``/cmd@other_bot`` is addressed to another bot: ignored by design, as in groups."""
    return text.startswith("/") and "@" in text.split()[0] and not text.split()[0].endswith("@ict_test_bot")


def unanswered(tg: FakeTelegram, messages: dict[int, str], presses: dict[str, str]) -> list[str]:
    chats, queries = answered_chats(tg), answered_queries(tg)
    return [t[:80] for u, t in messages.items() if u not in chats and not for_another_bot(t)] + [
        f"press {d!r}" for q, d in presses.items() if q not in queries
    ]


async def settle(missing, *, within: float = 120.0) -> None:
    """Wait until ``missing()`` (the inputs still unanswered) is empty."""
    deadline = time.monotonic() + within
    while left := missing():
        assert time.monotonic() < deadline, f"unanswered: {left}"
        await asyncio.sleep(0.05)


async def test_fuzz_every_input_is_answered_without_tracebacks(tg, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    rng = random.Random(SEED)
    budget = Budget(MAX_ANALYSES)
    kinds = ["message"] * MESSAGES + ["press"] * PRESSES
    rng.shuffle(kinds)
    messages: dict[int, str] = {}  # chat (= user) -> the text it sent
    presses: dict[str, str] = {}  # callback query id -> its data
    settings = make_settings(tg, tmp_path, signal_rate_limit=(100, 60))
    application = telegram_app.build_application(
        settings,
        services_factory=lambda: build_services(settings, mode="telegram", market=sample_market()),
        rate_limiter=False,  # PTB's limiter would pace 2,000 answers at Telegram's 30 per second
    )
    async with telegram_app.running(application, poll_timeout=1):
        for start in range(0, len(kinds), BATCH):
            for i, kind in enumerate(kinds[start : start + BATCH], start):
                user = FIRST_USER + i
                if kind == "message":
                    text = random_message(rng, budget)
                    edited = rng.random() < 0.03
                    if not edited or text.startswith("/"):  # an edited plain message is ignored by design
                        messages[user] = text
                    tg.send_message(text, user_id=user, edited=edited)
                else:
                    data = random_callback(rng, budget)
                    presses[tg.press(data, user_id=user)] = data
            await settle(lambda: unanswered(tg, messages, presses))
    assert len(messages) + len(presses) >= 2000
    sent = [c for c in tg.calls() if c.method in ("sendMessage", "sendPhoto", "answerCallbackQuery")]
    assert not [c.text[:200] for c in sent if "Traceback" in c.text or "Something went wrong" in c.text]
    assert not [r.getMessage()[:200] for r in caplog.records if r.exc_info]
    reports = [c for c in tg.calls("sendMessage", chat_id=ADMIN) if "Error" in c.text]
    assert len(reports) <= MAX_ADMIN_REPORTS
    silent = sum(1 for t in messages.values() if for_another_bot(t))
    print(f"fuzz: {len(messages)} messages ({silent} to another bot), {len(presses)} presses, {len(sent)} answers,")
    print(f"fuzz: {len(reports)} admin error reports, {MAX_ANALYSES - budget.left} engine runs")
    store = PositionStore(tmp_path / "positions.db")  # the stores load and are intact after the storm
    assert store.integrity_ok()
    store.close()
