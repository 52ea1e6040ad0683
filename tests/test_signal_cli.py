"""``python bot.py signal`` end to end through a subprocess on the sample data: output, JSON keys, exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SAMPLE_DIR

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"symbol", "timeframe", "time", "direction", "reasons", "entry", "sl", "tp1", "tp2", "tp3", "r_multiples",
        "confidence", "ml_probability", "components"}  # fmt: skip


def run(*args, tmp_path):
    env = {
        **os.environ,
        "MARKET_DATA": "sample",
        "SAMPLE_DATA_DIR": str(SAMPLE_DIR),
        "SAMPLE_START": "2026-04-10T00:00:00Z",
        "BOT_DATA_DIR": str(tmp_path),
        "TELEGRAM_BOT_TOKEN": "",
    }
    return subprocess.run(
        [sys.executable, "bot.py", "signal", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_json_at_a_time_with_chart(tmp_path):
    chart = tmp_path / "out.png"
    proc = run("ETHUSDT", "4h", "--at", "2025-03-01T13:30", "--json", "--chart", str(chart), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert set(data) >= KEYS
    assert data["symbol"] == "ETHUSDT" and data["timeframe"] == "4h"
    assert data["time"] == "2025-03-01T12:00:00Z"  # the candle closing at or before --at
    assert data["direction"] in ("long", "short", None)
    if data["direction"] is None:
        assert data["reasons"] and data["entry"] is None
    else:
        assert len(data["r_multiples"]) == 3 and 0 <= data["confidence"] <= 100
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_at_after_the_sample_clock_start_is_honoured(tmp_path):
    proc = run("BTCUSDT", "15m", "--at", "2026-06-01T10:07:00+00:00", "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["time"] == "2026-06-01T10:00:00Z"


def test_text_output(tmp_path):
    proc = run("btcusdt", "1h", "--at", "2026-03-01", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith(("LONG BTCUSDT 1h", "SHORT BTCUSDT 1h", "NO TRADE BTCUSDT 1h"))
    assert "2026-03-01 00:00 UTC" in proc.stdout or "BTCUSDT-1h-202603010000" in proc.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("NOPEUSDT", "1h"), "NOPEUSDT"),
        (("BTCUSDT", "7h"), "timeframe"),
        (("BTCUSDT", "1h", "--at", "yesterday-ish"), "--at"),
        (("BTCUSDT", "1h", "--at", "2001-01-01"), "2001"),
    ],
)
def test_bad_input_exit_2_one_line(tmp_path, args, needle):
    proc = run(*args, tmp_path=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if " INFO " not in line]
    assert len(lines) == 1 and needle in lines[0]
    assert proc.stdout == ""


def test_market_data_failure_exit_1(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env_dir = {"SAMPLE_DATA_DIR": str(empty)}
    proc = subprocess.run(
        [sys.executable, "bot.py", "signal", "BTCUSDT"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "MARKET_DATA": "sample", "BOT_DATA_DIR": str(tmp_path), "TELEGRAM_BOT_TOKEN": "", **env_dir},
    )  # fmt: skip
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1


def test_json_adds_the_gate_verdict_with_the_setup_evidence(tmp_path):
    """A signal's JSON carries exactly Verdict.to_json(): setup, probability, evidence (with the period), broadcast."""
    record = dict(trades=212, win_rate=0.31, tp1_rate=0.38, average_r=0.04, ci_low=-0.1, ci_high=0.18, gated=True)
    evidence = {"period": {"start": "2024-01-01", "end": "2025-12-31"}, "setups": {"sweep_mss/short/1h": record}}
    (tmp_path / "evidence.json").write_text(json.dumps(evidence))
    proc = run("BTCUSDT", "1h", "--at", "2026-02-03T08:00", "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) >= KEYS | {"setup", "probability", "evidence", "broadcast"}
    assert data["setup"] == "sweep_mss/short/1h" and data["broadcast"] is True and data["probability"] == 0.38
    assert data["evidence"] == {**record, "period": evidence["period"]}
    text = run("BTCUSDT", "1h", "--at", "2026-02-03T08:00", tmp_path=tmp_path).stdout
    assert "Setup: sweep + MSS short, 1h · 212 past trades · TP1 hit 38%" in text and "would broadcast" in text
    (tmp_path / "evidence.json").unlink()
    data = json.loads(run("BTCUSDT", "1h", "--at", "2026-02-03T08:00", "--json", tmp_path=tmp_path).stdout)
    assert data["evidence"] is None and data["probability"] is None and data["broadcast"] is False
