"""Issue 14 kill -9 loop: the real bot (PTB Application, stores, scanner, monitor, outbox) in a child process
against the local Bot API server, killed with SIGKILL again and again while it scans, monitors, answers and
sends; then it runs once to the end and stops cleanly.

Afterwards every store loads intact, every message a committed outbox row holds was delivered exactly once (or,
when a kill hit the send itself, settled as "maybe delivered" and not resent: at most one such row per kill),
every broadcast the admin saw acknowledged ("Queued for N") reached every subscriber once, no (chat, text) was
delivered twice, and no signal is tracked twice. ``tests/test_crash_safety.py`` kills the stores' writers alone;
this kills the whole bot. ``KILLS`` is the CI variant. The last test is the short variant of the soak
(``bench/bench_soak.py``, a simulated day): a few simulated hours, asserting only that nothing leaks.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.bench_soak import WARM_UP_SAMPLES, soak
from position_manager import PositionStore
from signal_cache import SignalCache
from store.journal import Journal
from store.storage import LoadStatus, load_json
from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
KILLS = 10
ADMIN = 1001
USERS = (2001, 2002, 2003)
SEED = 14

# The child: a "zygote" that imports the bot and parses the sample candles once, then forks one bot process per
# "run" line on stdin (a fork starts in a fraction of the seconds a fresh interpreter needs) and reaps it on
# "wait PID". Each bot is the real application with its stores in argv[1]; the sample market's clock is a
# function of the wall clock (argv[4]: when the run began), so it moves on across restarts instead of starting
# over. A bot scans, runs the monitor and drains the outbox in a loop, and answers the parent's updates meanwhile.
CHILD = r"""
import asyncio, os, signal, sys, time, types
sys.path.insert(0, sys.argv[2])
from pathlib import Path
import pandas as pd
from chat import jobs, telegram_app
from chat.services import build_services
from config import Settings
from market.sample_source import SampleSource

data, root, base_url, began, speed = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
t0 = pd.Timestamp("2026-03-02 00:00", tz="UTC")
market = SampleSource(f"{root}/data/sample", clock=lambda: t0 + pd.Timedelta(seconds=(time.time() - began) * speed))
settings = Settings(
    telegram_bot_token="123456:TEST-fake-token-abcdefghijklmnop", telegram_api_base_url=base_url,
    admin_ids=frozenset({1001}), market_data="sample", bot_data_dir=Path(data), gate="off",
    watchlist=("BTCUSDT", "ETHUSDT"), auto_signal_timeframes=("15m", "1h"), signal_rate_limit=(100, 60),
    auto_signal_interval_minutes=1440, monitor_interval_seconds=3600,
)
for symbol in settings.watchlist:  # parse the candle files here, once, before forking
    for interval in ("1m", "5m", "15m", "1h", "4h", "1d"):
        try:
            market.klines(symbol, interval, limit=10)
        except Exception:
            pass


async def bot(final):
    application = telegram_app.build_application(
        settings, services_factory=lambda: build_services(settings, mode="telegram", market=market),
        rate_limiter=False,
    )
    context = types.SimpleNamespace(application=application, bot_data=application.bot_data)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with telegram_app.running(application, poll_timeout=1):
        print("ready", flush=True)
        started = time.monotonic()
        while not stop.is_set():
            await jobs.scan_now(application, forced=True)
            await jobs.job_monitor(context)
            await jobs.drain_outbox(application)
            settled = time.monotonic() - started > 3  # the updates left by the last kill have been handled
            if final and settled and application.bot_data["services"].store.outbox_counts().pending == 0:
                print("drained", flush=True)
            await asyncio.sleep(0.05)


print("zygote", flush=True)
for line in sys.stdin:
    command = line.split()
    if command[0] == "run":
        pid = os.fork()
        if pid == 0:
            try:
                asyncio.run(bot(final=len(command) > 1))
            finally:
                os._exit(0)
        print("pid", pid, flush=True)
    elif command[0] == "wait":
        print("status", os.waitstatus_to_exitcode(os.waitpid(int(command[1]), 0)[1]), flush=True)
"""


class Zygote:
    """The child process above: ``run()`` starts a bot and returns its pid once it is ready."""

    def __init__(self, data: Path, tg: FakeTelegram, began: float, log: Path) -> None:
        args = [sys.executable, "-c", CHILD, str(data), str(ROOT), tg.base_url, repr(began), "1800"]
        self.log = log
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, cwd=ROOT
        )
        self.expect("zygote")

    def line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the child died: {self.log.read_text()[-3000:]}")
        return line.strip()

    def expect(self, word: str) -> list[str]:
        """Read lines until ``word``; the lines before it."""
        seen = []
        while (line := self.line()) != word:
            seen.append(line)
        return seen

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def run(self, *, final: bool = False) -> int:
        self.send("run final" if final else "run")
        before = self.expect("ready")
        pids = [int(line.split()[1]) for line in before if line.startswith("pid ")]
        return pids[0] if pids else int(self.expect_prefix("pid "))

    def expect_prefix(self, prefix: str) -> str:
        while not (line := self.line()).startswith(prefix):
            pass
        return line[len(prefix) :]

    def reap(self, pid: int) -> int:
        self.send(f"wait {pid}")
        return int(self.expect_prefix("status "))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def wait_until(condition, *, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def outbox_rows(db: Path) -> list[tuple[int, int, str, int | None, int, str | None, int | None]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT id, chat_id, html, sent_at, failed, last_error, sending_at FROM outbox").fetchall()


def test_bot_killed_repeatedly_loses_nothing_acknowledged_and_sends_nothing_twice(tmp_path):
    rng = random.Random(SEED)
    began = time.time()
    broadcasts = 0
    with FakeTelegram() as tg:
        for user in (ADMIN, *USERS):
            tg.send_message("/start", user_id=user)  # subscribers: every broadcast and alert goes to them
        zygote = Zygote(tmp_path, tg, began, tmp_path / "child.log")
        for kill in range(KILLS):
            pid = zygote.run()
            if kill == 0:  # updates run concurrently: let the /start subscriptions land before the first broadcast
                wait_until(lambda: all(tg.calls("sendMessage", chat_id=u) for u in (ADMIN, *USERS)), within=60)
            deadline = time.monotonic() + rng.uniform(0.3, 2.0)
            while time.monotonic() < deadline:  # traffic while it works: a broadcast, a request
                broadcasts += 1
                tg.send_message(f"/broadcast B{broadcasts} news", user_id=ADMIN)
                tg.send_message(f"/signal {rng.choice(('BTCUSDT', 'ETHUSDT'))} 1h", user_id=rng.choice(USERS))
                time.sleep(rng.uniform(0.05, 0.4))
            os.kill(pid, signal.SIGKILL)
            assert zygote.reap(pid) == -signal.SIGKILL
        pid = zygote.run(final=True)  # runs until everything queued is sent
        zygote.expect("drained")
        os.kill(pid, signal.SIGTERM)
        assert zygote.reap(pid) == 0, (tmp_path / "child.log").read_text()[-3000:]
        zygote.close()
        calls = [c for c in tg.calls() if c.method in ("sendMessage", "sendPhoto")]

    # every store loads intact
    for name in ("trading_journal.json", "bot_stats.json", "sent_signals_cache.json"):
        if (tmp_path / name).exists():
            assert load_json(tmp_path / name, default=dict).status is LoadStatus.OK, name
    assert not list(tmp_path.glob("*.corrupt-*"))
    assert not Journal(tmp_path).rebuilt
    SignalCache(tmp_path / "sent_signals_cache.json")
    store = PositionStore(tmp_path / "positions.db")
    assert store.integrity_ok()
    positions = store.all_positions()
    store.close()

    # nothing twice: per (chat, text) at the Bot API, and per signal among the positions
    delivered = Counter((c.chat_id, c.text) for c in calls)
    rows = outbox_rows(tmp_path / "positions.db")
    outbox_texts = {(chat, html) for _, chat, html, *_ in rows}
    assert not {k: n for k, n in delivered.items() if n > 1 and k in outbox_texts}
    signal_ids = Counter(p.signal_id for p in positions)
    assert not {s: n for s, n in signal_ids.items() if n > 1}

    # nothing acknowledged lost: every committed row went out once or was settled "maybe delivered" at a kill
    maybe = [r for r in rows if r[5] and "maybe delivered" in r[5]]
    assert len(maybe) <= KILLS
    for row in rows:
        row_id, chat, html, sent_at, failed, _, sending_at = row
        assert sent_at is not None and not failed, (row_id, chat, html[:80])
        if row not in maybe and sending_at is not None:  # sending_at None: the requester's copy, answered directly
            assert delivered[(chat, html)] == 1, (row_id, chat, html[:80])
    acked = [int(c.text.split()[3]) for c in calls if c.chat_id == ADMIN and c.text.startswith("📢 Queued for")]
    assert acked and all(n == 1 + len(USERS) for n in acked)
    news = Counter(c.text for c in calls if c.text.startswith("📢 B"))
    assert len([t for t, n in news.items() if n == 1 + len(USERS)]) >= len(acked) - len(maybe)
    with sqlite3.connect(f"file:{tmp_path / 'positions.db'}?mode=ro", uri=True) as conn:
        kinds = dict(conn.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall())
    assert kinds.get("alert", 0) > 0  # the monitor ran between the kills: its alerts are in the count
    print(json.dumps({"kills": KILLS, "outbox_rows": kinds, "maybe_delivered": len(maybe),
                      "positions": len(positions), "broadcasts_acked": len(acked)}))  # fmt: skip


async def test_short_soak_leaks_no_figures_and_no_file_descriptors():
    """Four simulated hours of scans, monitoring, alerts, charts and the outbox (bench_soak at 1,440x): no
    matplotlib figure outlives its chart, and the open file descriptors stop growing after the warm-up."""
    samples, schedule, calls = await soak(hours=4, speed=1440, n_subscribers=3, quiet=True)
    assert calls["sendPhoto"] > 0 and sum(len(job.lateness) for job in schedule) > 0  # charts were drawn
    *running, stopped = samples
    assert stopped["figures"] == 0 and stopped["pyplot"] == 0, stopped  # a figure in a chart thread is not a leak
    warm = max(s["fds"] for s in running[: WARM_UP_SAMPLES + 1])
    assert max(s["fds"] for s in running[WARM_UP_SAMPLES + 1 :]) <= warm + 5, running
