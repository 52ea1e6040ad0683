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
