"""Kill -9 a process while it writes every store; then every store loads and holds every acknowledged record."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from journal import Journal
from position_manager import PositionStore
from signal_cache import SignalCache
from storage import LoadStatus, load_json

ROOT = Path(__file__).resolve().parent.parent
RUNS = 10

# The child tracks signal after signal (position + outbox in SQLite, journal + stats JSON, cache JSON) and prints
# "ack <signal id>" only after track_signal returned, i.e. after every store acknowledged the write.
CHILD = r"""
import sys
from datetime import UTC, datetime, timedelta
sys.path.insert(0, sys.argv[2])
from journal import Journal
from position_manager import PositionStore
from scanner import track_signal
from signal_cache import SignalCache
from signal_model import Signal, TradeDirection

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
        wanted = rng.randint(3, 25)
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
