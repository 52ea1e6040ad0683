"""Kill -9 a process while it writes every store; then every store loads and holds every acknowledged record."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from position_manager import PositionStore
from signal_cache import SignalCache
from store.journal import Journal
from store.storage import LoadStatus, load_json

ROOT = Path(__file__).resolve().parent.parent
RUNS = 10

# The child tracks signal after signal (position + outbox in SQLite, journal + stats JSON, cache JSON) and prints
# "ack <signal id>" only after track_signal returned, i.e. after every store acknowledged the write.
CHILD = r"""
import sys
from datetime import UTC, datetime, timedelta
sys.path.insert(0, sys.argv[2])
from store.journal import Journal
from position_manager import PositionStore
from tracking.scanner import track_signal
from signal_cache import SignalCache
from engine.signal_model import Signal, TradeDirection

data, offset = sys.argv[1], int(sys.argv[3])
store = PositionStore(f"{data}/positions.db")
journal = Journal(data)
cache = SignalCache(f"{data}/sent_signals_cache.json")
t0 = datetime(2025, 1, 1, tzinfo=UTC)
i = offset
while True:
    when = t0 + timedelta(minutes=i)
    price = 100.0 * 1.1 ** (i % 20)  # 10% apart: never a duplicate of the previous few
    sig = Signal(symbol="BTCUSDT", timeframe="1m", direction=TradeDirection.LONG, entry=price, entry_low=price,
                 entry_high=price, sl=price * 0.98, tp1=price * 1.02, tp2=price * 1.04, tp3=price * 1.08,
                 time=when, rule_confidence=70.0, features=tuple((f"f{k}", float(i + k)) for k in range(20)))
    if not track_signal(store, cache, journal, sig, [1, 2], now=when).new:
        raise SystemExit(f"{sig.id} was not tracked")
    print("ack", sig.id, flush=True)
    i += 1
"""


def test_stores_survive_kill_9_mid_write(tmp_path):
    rng = random.Random(7)
    acked: list[str] = []
    kills = 0
    for run in range(RUNS):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(ROOT), str(run * 100_000)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        wanted = rng.randint(3, 12)
        got = 0
        while got < wanted:
            line = child.stdout.readline()
            if not line:
                raise AssertionError(f"child died: {child.stderr.read()[-2000:]}")
            if line.startswith("ack "):
                acked.append(line.split()[1])
                got += 1
        time.sleep(rng.random() * 0.01)  # land somewhere inside the next write
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        kills += 1
        for line in child.stdout:  # acks printed before the kill landed also count
            if line.startswith("ack "):
                acked.append(line.split()[1])
    assert kills == RUNS and len(acked) >= RUNS * 3

    # every JSON store is intact (no quarantine needed) and holds every acknowledged record
    for name in ("trading_journal.json", "bot_stats.json", "sent_signals_cache.json"):
        assert load_json(tmp_path / name, default=dict).status is LoadStatus.OK, name
    assert not list(tmp_path.glob("*.corrupt-*"))
    journal = Journal(tmp_path)
    assert not journal.rebuilt
    journaled = {r["id"] for r in journal.records()}
    assert set(acked) <= journaled
    stats = json.loads((tmp_path / "bot_stats.json").read_text())
    assert stats["overall"]["signals"] >= len(acked)
    cached = {e.signal_id for e in SignalCache(tmp_path / "sent_signals_cache.json")._entries}
    assert set(acked) <= cached
    store = PositionStore(tmp_path / "positions.db")
    assert store.integrity_ok()
    tracked = {p.signal_id for p in store.all_positions()}
    assert set(acked) <= tracked
    # every acknowledged signal's alerts are queued for both recipients
    pending = store.pending_outbox(limit=100_000)
    assert len(pending) >= 2 * len(acked)
    store.close()


# The child follows one position minute by minute with the real monitor on 1m candles and prints "ack <minute>"
# after each tick; killed at random moments and restarted, it resumes from positions.db.
MONITOR_CHILD = r"""
import sys
from datetime import UTC, datetime, timedelta
sys.path.insert(0, sys.argv[2])
import pandas as pd
from store.journal import Journal
from position_manager import PositionStore
from tracking.costs import Costs
from tracking.state import Position
from real_time_monitor import monitor_tick
from market.sample_source import SampleSource
from tests.test_crash_safety import monitor_path, monitor_signal, T_START

data = sys.argv[1]
store = PositionStore(f"{data}/positions.db")
journal = Journal(data)
clock = [T_START]
market = SampleSource(frames={("BTCUSDT", "1m"): monitor_path()}, clock=lambda: pd.Timestamp(clock[0]))
sig = monitor_signal()
if store.get_by_signal(sig.id) is None:
    p = store.add(Position.from_signal(sig, recipients=(1, 2), costs=Costs.none()), signal=sig)  # gross R
    journal.record_signal(sig, position_id=p.id)
minute = int(store.get_state("test.minute", "0"))
while minute < len(monitor_path()):
    minute += 1
    clock[0] = T_START + timedelta(minutes=minute, seconds=5)
    monitor_tick(store, market, journal, now=clock[0], evaluate_80=lambda position: None)
    store.set_state("test.minute", str(minute))
    print("ack", minute, flush=True)
print("done", flush=True)
"""

T_START = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)


def monitor_signal():
    from engine.signal_model import Signal, TradeDirection

    return Signal(
        symbol="BTCUSDT", timeframe="1h", direction=TradeDirection.LONG, entry=100.0, entry_low=100.0,
        entry_high=100.0, sl=95.0, tp1=105.0, tp2=110.0, tp3=120.0, time=T_START, rule_confidence=70.0,
    )  # fmt: skip


def monitor_path():
    """A 1m walk that sends every kind of alert: milestones, the stop warning, TP1, TP2, TP3 and the close."""
    from tests.helpers import make_candles

    closes = [100.5, 101.4, 99, 97.3, 99, 102.6, 103, 103.9, 105.2, 106.4, 107.6, 108.9, 110.3, 113, 116, 117.5, 120.5]
    rows, prev = [], 100.0
    for c in closes:
        rows.append((prev, max(prev, c) + 0.05, min(prev, c) - 0.05, c))
        prev = c
    return make_candles(rows, start="2025-01-06 12:00", freq="1min")


def run_monitor_child(data: Path, *, kill_after: int | None, rng: random.Random) -> tuple[list[int], bool]:
    child = subprocess.Popen(
        [sys.executable, "-c", MONITOR_CHILD, str(data), str(ROOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    acks, done = [], False
    while True:
        line = child.stdout.readline()
        if not line:
            break
        if line.startswith("done"):
            done = True
            break
        acks.append(int(line.split()[1]))
        if kill_after is not None and len(acks) >= kill_after:
            time.sleep(rng.random() * 0.02)
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(10)
    if not done and kill_after is None:
        raise AssertionError(child.stderr.read()[-2000:])
    return acks, done


def outbox_texts(store: PositionStore) -> list[tuple[int, str]]:
    return sorted((m.chat_id, m.html) for m in store.pending_outbox(limit=10_000))


def test_monitor_killed_repeatedly_sends_every_alert_exactly_once(tmp_path):
    rng = random.Random(11)
    reference = tmp_path / "reference"
    killed = tmp_path / "killed"
    reference.mkdir()
    killed.mkdir()
    run_monitor_child(reference, kill_after=None, rng=rng)
    done, kills = False, 0
    while not done:
        _, done = run_monitor_child(killed, kill_after=rng.randint(1, 4), rng=rng)
        kills += not done
    assert kills >= 1  # how many kills land before the child finishes depends on machine load
    ref_store, store = PositionStore(reference / "positions.db"), PositionStore(killed / "positions.db")
    expected = outbox_texts(ref_store)
    keys = ref_store.milestones_sent(1)
    assert {"TP1_25", "SL_50", "TP1", "TP2", "TP3", "CLOSED"} <= keys
    assert outbox_texts(store) == expected  # the same alerts, each exactly once per recipient
    assert store.get(1) == ref_store.get(1)
    assert store.get(1).state.value == "TP3"
    record = Journal(killed).get(monitor_signal().id)
    assert record["outcome"]["reason"] == "TP3" and record["outcome"]["r_multiple"] == 4.0
    ref_store.close()
    store.close()
