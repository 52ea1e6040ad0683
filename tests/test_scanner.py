"""The scheduled scan end-to-end against the local Binance-shaped server, and the scan's rules on a stub engine."""

from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace

import pandas as pd

from config import Settings
from engine.signal_model import NoTrade
from market.binance_client import BinanceClient
from position_manager import PositionStore, UserSettings
from signal_cache import SignalCache
from store.journal import Journal
from tests.fake_binance import FakeBinance
from tests.test_positions import T0, make_signal
from tracking.scanner import run_scan, track_signal
from tracking.state import PositionState

# The close of the 2026-07-24 03:00 UTC BTCUSDT 1h candle: the engine finds a long setup there on the sample data.
SCAN_AT = "2026-07-24 04:00:20"


def stores(tmp_path):
    return (
        PositionStore(tmp_path / "positions.db"),
        SignalCache(tmp_path / "sent_signals_cache.json"),
        Journal(tmp_path),
    )


def test_scheduled_scan_end_to_end_broadcasts_once_per_subscriber(tmp_path):
    settings = Settings(watchlist=("BTCUSDT", "ETHUSDT"), auto_signal_timeframes=("1h",), min_confidence=60)
    store, cache, journal = stores(tmp_path)
    for chat in (101, 102, 103, 104):
        store.subscribe(chat)
    store.set_user_settings(103, UserSettings(broadcasts=False))
    store.set_user_settings(104, UserSettings(min_confidence=99))
    with FakeBinance(now=SCAN_AT) as fake:
        market = BinanceClient(fake.url)
        try:
            report = run_scan(market, store, cache, journal, settings)
            requests_first = fake.count("/api/v3/klines")
            again = run_scan(market, store, cache, journal, settings)
        finally:
            market.close()
    assert report.status == "done" and report.errors == ()
    assert report.pairs == 2 and report.tracked >= 1
    msgs = store.pending_outbox(limit=100)
    broadcasts = [m for m in msgs if m.kind == "broadcast"]
    assert len(broadcasts) == 2 * report.tracked  # one per eligible subscriber and signal
    assert sorted({m.chat_id for m in broadcasts}) == [101, 102]
    assert all(m.photo and m.photo.startswith(b"\x89PNG") for m in broadcasts)
    assert all("BTCUSDT" in m.html or "ETHUSDT" in m.html for m in broadcasts)
    (position, *_) = store.list_open()
    assert position.recipients == (101, 102) and position.state in (PositionState.PENDING, PositionState.OPEN)
    assert journal.get(position.signal_id)["position_id"] == position.id
    assert requests_first >= 2 * 3  # entry timeframe + two higher timeframes per pair
    # the same scan again (and after a restart of the cache) sends nothing new
    assert again.tracked == 0 and again.duplicates >= report.tracked
    assert len(store.pending_outbox(limit=100)) == len(msgs)
    restarted = SignalCache(tmp_path / "sent_signals_cache.json")
    assert restarted.is_duplicate(_signal_of(store, position), pd.Timestamp(SCAN_AT, tz="UTC"))
    store.close()


def _signal_of(store, position):
    from engine.signal_model import Signal, TradeDirection

    data = store.signal_json(position.id)
    return Signal(
        symbol=data["symbol"],
        timeframe=data["timeframe"],
        direction=TradeDirection(data["direction"]),
        entry=data["entry"],
        entry_low=data["entry_zone"][0],
        entry_high=data["entry_zone"][1],
        sl=data["sl"],
        tp1=data["tp1"],
        tp2=data["tp2"],
        tp3=data["tp3"],
        time=pd.Timestamp(data["time"]).to_pydatetime(),
        rule_confidence=data["rule_confidence"],
    )


def stub_settings(**kw):
    return Settings(watchlist=("AAAUSDT", "BBBUSDT"), auto_signal_timeframes=("1h", "4h"), min_confidence=60, **kw)


def stub_analyze(results):
    def analyze(market, symbol, tf, *, predictor=None):
        value = results.get((symbol, tf))
        if isinstance(value, Exception):
            raise value
        return SimpleNamespace(result=value or NoTrade(symbol, tf, T0, ("nothing",)))

    return analyze


def test_scan_rules_threshold_failures_and_per_user_settings(tmp_path):
    store, cache, journal = stores(tmp_path)
    store.subscribe(1)
    store.subscribe(2)
    store.set_user_settings(2, UserSettings(min_confidence=80))
    strong = make_signal()  # confidence 70
    weak = make_signal(timeframe="4h")
    weak = type(weak)(
        **{**{f: getattr(weak, f) for f in weak.__dataclass_fields__ if f != "id"}, "rule_confidence": 40}
    )
    results = {("AAAUSDT", "1h"): strong, ("AAAUSDT", "4h"): weak, ("BBBUSDT", "1h"): RuntimeError("HTTP 500")}
    report = run_scan(
        None,
        store,
        cache,
        journal,
        stub_settings(),
        analyze=stub_analyze(results),
        now=T0,
        render_chart=lambda a: b"\x89PNG-fake",
        format_html=lambda s, tz: f"<b>{s.id}</b>",
    )
    assert (report.pairs, report.signals, report.below_threshold, report.tracked) == (3, 2, 1, 1)
    assert len(report.errors) == 1 and "BBBUSDT 1h" in report.errors[0]
    (msg,) = store.pending_outbox()
    assert msg.chat_id == 1 and msg.html == f"<b>{strong.id}</b>" and msg.photo == b"\x89PNG-fake"
    assert store.get_state("last_scan") is not None
    store.close()


def test_paused_scan_and_forced_scan(tmp_path):
    store, cache, journal = stores(tmp_path)
    store.set_paused(True)
    analyze = stub_analyze({("AAAUSDT", "1h"): make_signal()})
    assert run_scan(None, store, cache, journal, stub_settings(), analyze=analyze, now=T0).status == "paused"
    forced = run_scan(None, store, cache, journal, stub_settings(), analyze=analyze, now=T0, forced=True)
    assert forced.status == "done" and forced.tracked == 1
    store.close()


def test_one_scan_at_a_time(tmp_path):
    store, cache, journal = stores(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def slow(market, symbol, tf, *, predictor=None):
        entered.set()
        release.wait(5)
        return SimpleNamespace(result=NoTrade(symbol, tf, T0, ("x",)))

    results = []
    worker = threading.Thread(
        target=lambda: results.append(run_scan(None, store, cache, journal, stub_settings(), analyze=slow, now=T0))
    )
    worker.start()
    assert entered.wait(5)
    second = run_scan(None, store, cache, journal, stub_settings(), analyze=slow, now=T0)
    release.set()
    worker.join(5)
    assert second.status == "skipped" and results[0].status == "done"
    store.close()


def test_track_signal_on_request_does_not_resend_and_is_idempotent(tmp_path):
    store, cache, journal = stores(tmp_path)
    sig = make_signal()
    first = track_signal(store, cache, journal, sig, [7], notify=False, now=T0)
    assert first.new and first.enqueued == 0 and first.position.recipients == (7,)
    assert journal.get(sig.id) is not None
    again = track_signal(store, cache, journal, sig, [7], now=T0 + timedelta(minutes=1))
    assert not again.new and again.position is None  # the duplicate cache stops it
    assert len(store.list_open()) == 1 and store.pending_outbox() == []
    # without the cache entry (lost by a kill before it was written) the store still tracks it once
    again = track_signal(store, None, journal, sig, [7], now=T0)
    assert not again.new and again.position.id == first.position.id
    store.close()


def test_a_scanned_position_follows_the_configured_exit_plan_and_costs(tmp_path):
    store, cache, journal = stores(tmp_path)
    store.subscribe(1)
    settings = stub_settings(exit_plan=(50.0, 30.0, 20.0), fee_pct=0.05, slippage_pct=0.01, gate="confidence")
    run_scan(
        None,
        store,
        cache,
        journal,
        settings,
        analyze=stub_analyze({("AAAUSDT", "1h"): make_signal()}),
        now=T0,
        render_chart=lambda a: b"",
        format_html=lambda s, tz: s.id,
    )
    (position,) = store.list_open()
    assert position.exit_plan == (50.0, 30.0, 20.0)
    assert (position.costs.fee_pct, position.costs.slippage_pct) == (0.05, 0.01)
    store.close()


def test_scan_uses_market_clock_for_the_cache(tmp_path):
    store, cache, journal = stores(tmp_path)
    market = SimpleNamespace(now=lambda: pd.Timestamp(T0))
    run_scan(market, store, cache, journal, stub_settings(), analyze=stub_analyze({("AAAUSDT", "1h"): make_signal()}))
    (entry,) = cache._entries
    assert entry.sent_at == "2025-01-06T12:00:00Z"
    store.close()


def test_a_sent_signal_is_followed_to_its_outcome_end_to_end(tmp_path):
    """Scan -> broadcast -> monitor on 1m candles through the Binance client -> journal, stats and report."""
    from daily_reports import build_report
    from real_time_monitor import monitor_tick

    settings = Settings(watchlist=("BTCUSDT",), auto_signal_timeframes=("1h",), min_confidence=60)
    store, cache, journal = stores(tmp_path)
    store.subscribe(101)
    store.subscribe(102)
    # 2025-06-15 12:00 UTC candle close: a long setup inside the bundled BTCUSDT 1m data (2025-05-31..2025-07-23)
    with FakeBinance(now="2025-06-15 13:00:20") as fake:
        market = BinanceClient(fake.url, clock=lambda: fake.now.timestamp())
        try:
            report = run_scan(market, store, cache, journal, settings)
            assert report.tracked == 1, report
            (position,) = store.list_open()
            for _ in range(72 * 2):  # every 30 minutes for up to three days
                fake.now = fake.now + pd.Timedelta(minutes=30)
                tick = monitor_tick(store, market, journal, settings=settings)
                assert tick.errors == ()
                if not store.list_open():
                    break
        finally:
            market.close()
    closed = store.get(position.id)
    assert closed.state.is_closed and closed.outcome is not None
    record = journal.get(closed.signal_id)
    assert record["outcome"] == closed.outcome.to_json()
    assert journal.stats().overall.closed + journal.stats().overall.expired == 1
    sent = store.milestones_sent(closed.id)
    assert "CLOSED" in sent
    msgs = store.pending_outbox(limit=1000)
    for chat in (101, 102):
        mine = [m for m in msgs if m.chat_id == chat]
        assert len([m for m in mine if m.kind == "broadcast"]) == 1
        alerts = [m for m in mine if m.kind != "broadcast"]
        assert len(alerts) == len(sent - {"TP3"})  # every alert once (the TP3 hit is announced by the close)
    day = build_report(journal, store, period="daily", now=closed.closed_at + timedelta(minutes=1))
    assert day.closed + day.expired == 1 and day.open_positions == 0
    store.close()


# ---------------------------------------------------------------- concurrent klines


KLINES = "/api/v3/klines"


def _scan_once(tmp_path, fake, concurrency, **client):
    settings = Settings(
        watchlist=("BTCUSDT", "NOPEUSDT", "ETHUSDT", "SOLUSDT"), auto_signal_timeframes=("1h", "4h"), min_confidence=0
    )
    store, cache, journal = stores(tmp_path)
    store.subscribe(101)
    market = BinanceClient(fake.url, **client)
    before = len(fake.requests)
    try:
        report = run_scan(market, store, cache, journal, settings, concurrency=concurrency, render_chart=lambda a: b"")
    finally:
        market.close()
    signals = sorted(str(store.signal_json(p.id)) for p in store.list_open())
    outbox = sorted(m.html for m in store.pending_outbox(limit=100))
    store.close()
    counts = (report.pairs, report.signals, report.tracked, report.broadcasts, report.errors)
    asked = [(r.params["symbol"], r.params["interval"]) for r in fake.requests[before:] if r.path == KLINES]
    return counts, signals, outbox, asked


def test_concurrent_scan_equals_the_serial_scan(tmp_path):
    with FakeBinance(now=SCAN_AT) as fake:
        fake.rendezvous(4, KLINES, after=1)  # after the first (serial) one, 4 klines requests must be in flight
        concurrent = _scan_once(tmp_path / "concurrent", fake, 6)
        most_at_once = fake.max_in_flight
        serial = _scan_once(tmp_path / "serial", fake, 1)
    assert concurrent[:3] == serial[:3]  # same pairs, signals, errors, tracked positions and messages
    assert concurrent[0][0] == 6 and concurrent[0][1] >= 1 and "NOPEUSDT" in " ".join(concurrent[0][4])
    assert 4 <= most_at_once <= 6 + 1  # the pool's 6, plus the scan thread's own (clock) request at most
    assert len(set(concurrent[3])) == len(concurrent[3])  # a frame shared by two pairs is fetched once
    assert set(serial[3]) <= set(concurrent[3])


def test_concurrent_fetching_respects_the_weight_budget(tmp_path):
    """Above 80% of the minute's weight every fetching thread waits for the next minute before it asks."""
    lock, sleeps = threading.Lock(), []
    with FakeBinance(now=SCAN_AT) as fake:

        def sleep(seconds: float) -> None:
            with lock:
                sleeps.append((threading.current_thread().name, seconds))
                fake.now += pd.Timedelta(seconds=seconds)

        fake.used_weight = 4900  # of 6000: Binance's counter stays high in this test
        counts, *_ = _scan_once(tmp_path, fake, 6, sleep=sleep, clock=lambda: fake.now.timestamp())
    assert counts[0] == 6
    fetchers = [s for name, s in sleeps if name.startswith("klines")]
    assert fetchers and all(0 < s <= 60 for s in fetchers)
