"""A newcomer's first run, offline: the CLI falls back to the bundled data, the demo's timeframes, one clock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def closed_port_url() -> str:
    """A local URL nothing listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_bot(tmp_path: Path, *args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "MARKET_", "BINANCE_", "SAMPLE_"))}
    env.update({"BOT_DATA_DIR": str(tmp_path / "data"), "PYTHONIOENCODING": "utf-8", **env_overrides})
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,  # no .env and no data/sample here: the bundled data must be found anyway
        env=env,
        timeout=300,
    )


def test_offline_signal_with_chart_falls_back_to_the_bundled_data(tmp_path):
    proc = run_bot(tmp_path, "signal", "ETHUSDT", "4h", "--chart", "eth.png", BINANCE_API_BASE_URL=closed_port_url())
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "eth.png").read_bytes().startswith(b"\x89PNG")
    notices = [line for line in proc.stderr.splitlines() if "Binance is unreachable" in line]
    assert len(notices) == 1 and "bundled sample data" in notices[0] and "MARKET_DATA=sample" in notices[0]
    assert "ETHUSDT" in proc.stdout


def test_offline_backtest_falls_back_to_the_bundled_data(tmp_path):
    proc = run_bot(tmp_path, "backtest", "SOLUSDT", "1d", "--fast", "--json", BINANCE_API_BASE_URL=closed_port_url())
    assert proc.returncode == 0, proc.stderr
    assert sum("Binance is unreachable" in line for line in proc.stderr.splitlines()) == 1
    assert proc.stdout.lstrip().startswith("{")


# ---------------------------------------------------------------- the demo's timeframes


def test_demo_timeframes_for_every_bundled_symbol():
    import pandas as pd
    import pytest

    from market.sample_source import NoSampleInterval, SampleSource

    now = pd.Timestamp("2026-04-09 00:00", tz="UTC")  # the console's default replay start
    market = SampleSource(ROOT / "data" / "sample", clock=lambda: now)
    for symbol in market.symbols():
        for tf in ("1h", "4h", "1d"):
            assert market.klines(symbol, tf, 10).index[-1] < now, (symbol, tf)
    for symbol in ("BTCUSDT", "ETHUSDT"):  # 15m files; SOLUSDT has no data finer than 1h anywhere
        assert len(market.klines(symbol, "15m", 10)) == 10
    with pytest.raises(NoSampleInterval, match=r"SOLUSDT has 1h, 2h, 4h, 6h, 12h, 1d, 1w there"):
        market.klines("SOLUSDT", "15m", 10)
    with pytest.raises(NoSampleInterval, match=r"covers 2025-05-31.*BTCUSDT has 15m, 30m, 1h"):
        market.klines("BTCUSDT", "1m", 10)
    back_then = SampleSource(ROOT / "data" / "sample", clock=lambda: pd.Timestamp("2025-07-01", tz="UTC"))
    assert len(back_then.klines("BTCUSDT", "3m", 10)) == 10  # finer where the data allows: 1m resampled


def run_console(tmp_path: Path, script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "console"],
        input=script,
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        env={
            **{
                k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "MARKET_", "BINANCE_", "SAMPLE_"))
            },
            "BOT_DATA_DIR": str(tmp_path / "data"),
            "MARKET_DATA": "sample",
            "SAMPLE_DATA_DIR": str(ROOT / "data" / "sample"),
            "PYTHONIOENCODING": "utf-8",
            **env,
        },
        timeout=300,
    )


def test_a_timeframe_the_demo_lacks_names_the_ones_it_has(tmp_path):
    proc = run_console(tmp_path, "/signal BTCUSDT 1m\n/signal SOLUSDT 15m\n")
    assert proc.returncode == 0, proc.stderr
    assert "BTCUSDT has 15m, 30m, 1h" in proc.stdout and "SOLUSDT has 1h, 2h, 4h" in proc.stdout
    assert "try again" not in proc.stdout
    # the default WATCHLIST names BNBUSDT and XRPUSDT: the demo scans the bundled symbols and says so once
    assert proc.stdout.count("Demo watchlist: BTCUSDT, ETHUSDT, SOLUSDT (the bundled data; BNBUSDT, XRPUSDT") == 1


# ---------------------------------------------------------------- a clean session on one clock


def test_console_session_has_no_warnings_and_one_clock(tmp_path):
    """/signal tracks a position (confidence gate, threshold 0), /close closes it on the market's clock so the
    daily report (market time) counts it, /health shows the last scan in market time; no warning anywhere."""
    script = (
        "/start\n/signal SOLUSDT 4h\n/positions\n/close 1\n/scan\n/positions\n/report\n/health\n/signal BTCUSDT 1h\n"
    )
    proc = run_console(tmp_path, script, SAMPLE_START="2026-02-10T08:00:00Z", MIN_CONFIDENCE="0", GATE="confidence")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "SOLUSDT 4h SHORT #1" in proc.stdout  # tracked (the outbox drain ran while the app was running)
    assert "Closed #1" in proc.stdout
    assert "Expired without entry: 1" in proc.stdout  # closed at 2026-02-10 (market), inside the report's day
    assert "Last scan: 2026-02-10T08:0" in proc.stdout
    assert not [line for line in out.splitlines() if "Warning" in line or "WARNING" in line], out
    assert "Traceback" not in out


# ---------------------------------------------------------------- the replay demo


def test_replay_demo_broadcasts_a_signal_and_its_alert_without_typing(tmp_path):
    """``console --replay``: nobody types; a broadcast signal ("Tracking as #N") and then an alert about #N
    (fill, milestone, TP, stop or expiry) appear. The evidence gate passes nothing here (no evidence.json):
    the first line says the demo runs GATE=confidence."""
    import queue
    import re
    import threading
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "MARKET_", "BINANCE_", "SAMPLE_"))}
    env.update(BOT_DATA_DIR=str(tmp_path / "data"), SAMPLE_DATA_DIR=str(ROOT / "data" / "sample"))
    env.update(PYTHONIOENCODING="utf-8", GATE="evidence")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bot.py"), "console", "--replay", "1200"],  # 20 market minutes a second
        stdin=subprocess.PIPE,  # left open: no typing, no end of input
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen, tracked, alert = [], None, None
    give_up = time.monotonic() + 240  # a guard against a demo that never gets there, not a timing assertion
    try:
        while alert is None and time.monotonic() < give_up:
            try:
                line = lines.get(timeout=max(give_up - time.monotonic(), 0.1))
            except queue.Empty:
                break
            seen.append(line)
            if tracked is None and (match := re.search(r"Tracking as #(\d+)", line)):
                tracked = match[1]
            elif tracked is not None and f"#{tracked}" in line and "Tracking as" not in line:
                alert = line
    finally:
        proc.stdin.write("/quit\n")
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    output = "".join(seen)
    assert seen and seen[0].startswith("Replay demo:") and "GATE=confidence" in seen[0], output[:2000]
    assert tracked is not None, output[-3000:]
    assert alert is not None, output[-3000:]
