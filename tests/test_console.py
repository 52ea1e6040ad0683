"""Console mode as a subprocess with piped input: the same handlers, replies on stdout, charts as PNG files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_console(tmp_path: Path, script: str, *args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "MARKET_", "BINANCE_", "ADMIN_"))}
    env.update(
        {
            "BOT_DATA_DIR": str(tmp_path),
            "MARKET_DATA": "sample",
            "SAMPLE_DATA_DIR": str(ROOT / "data" / "sample"),
            "SAMPLE_START": "2026-03-02T12:05:00Z",
            "PYTHONIOENCODING": "utf-8",
        }
    )
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), *args],
        input=script,
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,  # no .env from the repository
        env=env,
        timeout=120,
    )


def test_console_piped_session_uses_the_bot_handlers(tmp_path):
    script = "/help\n/explain fvg\n/signal NOPE!! 1h\n/signal BTCUSDT 7x\n/settings tf 4h\n/settings\n/foo\n/quit\n"
    proc = run_console(tmp_path, script, "console")
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "/signal SYMBOL [TF]" in out and "/broadcast TEXT" in out  # the console user is the local admin
    assert "Fair value gap" in out
    assert "is not a Binance symbol" in out and "is not a timeframe" in out
    assert "Default timeframe: 4h" in out  # persisted through the store, shown by the same settings handler
    assert "[1] 15m" in out  # inline buttons are listed with numbers
    assert "Unknown command /foo" in out
    assert "Traceback" not in out + proc.stderr


def test_console_signal_saves_a_png_chart_and_buttons_can_be_pressed(tmp_path):
    proc = run_console(tmp_path, "/signal ETHUSDT 1h\n2\n", "console")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "ETHUSDT" in out
    charts = list((tmp_path / "charts").glob("*.png"))
    assert charts, out
    assert charts[0].read_bytes().startswith(b"\x89PNG")
    assert str(charts[0]) in out
    assert "Confidence breakdown" in out  # button 2 = details, rendered by the same callback handler


def test_no_token_starts_console_and_unreachable_binance_falls_back_to_sample(tmp_path):
    proc = run_console(
        tmp_path, "/health\n", MARKET_DATA="binance", BINANCE_API_BASE_URL="http://127.0.0.1:9"
    )  # port 9 (discard): connection refused
    assert proc.returncode == 0, proc.stderr
    assert "Binance is unreachable" in proc.stdout and "sample data" in proc.stdout
    assert "Market data (sample)" in proc.stdout


def test_real_entry_point_serves_then_a_409_conflict_exits_with_one_line(tmp_path):
    """``python bot.py`` with a token, against the local Bot API server: it answers /start, then a second
    instance's 409 Conflict stops it with a one-line reason; the token appears nowhere in its output."""
    import threading
    import time

    from tests.fake_telegram import FakeTelegram

    with FakeTelegram() as tg:
        tg.send_message("/start", user_id=77)

        def conflict_after_first_reply():
            deadline = time.monotonic() + 60
            while not tg.calls("sendMessage", chat_id=77) and time.monotonic() < deadline:
                time.sleep(0.05)
            tg.conflict()

        threading.Thread(target=conflict_after_first_reply, daemon=True).start()
        proc = run_console(tmp_path, "", TELEGRAM_BOT_TOKEN=tg.token, TELEGRAM_API_BASE_URL=tg.base_url, ADMIN_IDS="77")
        assert "Welcome" in tg.calls("sendMessage", chat_id=77)[0].text
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("stopped: another instance is already polling")
    assert tg.token not in proc.stdout + proc.stderr
    assert tg.token.split(":")[1] not in proc.stdout + proc.stderr
