"""``python bot.py evaluate``: the JSON interface, evidence.json, and one-line answers to bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from research.evidence_stats import setup_stats
from store.evidence import load_evidence
from tests.helpers import SAMPLE_DIR

ROOT = Path(__file__).resolve().parent.parent
SETUP_KEYS = {"setup", "trades", "win_rate", "tp1_rate", "average_r", "ci_low", "ci_high", "profit_factor", "gated"}
TRADE_KEYS = {
    "symbol", "timeframe", "time", "direction", "setup", "entry", "fill", "sl", "exit", "exit_time", "exit_reason",
    "r_gross", "r_net", "confidence", "probability",
}  # fmt: skip


def run(tmp_path, *args):
    env = {**os.environ, "MARKET_DATA": "sample", "SAMPLE_DATA_DIR": str(SAMPLE_DIR), "BOT_DATA_DIR": str(tmp_path)}
    env.pop("TELEGRAM_BOT_TOKEN", None)
    return subprocess.run(
        [sys.executable, "bot.py", "evaluate", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    done = run(folder, "BTCUSDT,ETHUSDT", "4h", "--start", "2024-03-01", "--end", "2025-03-01", "--train-days", "120",
               "--test-days", "60", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), folder


def test_json_has_the_documented_keys(report):
    data, _ = report
    assert {"setups", "gated", "calibration", "variants_tried", "variants", "baseline", "costs"} <= data.keys()
    assert data["costs"] == {"fee_pct": 0.1, "slippage_pct": 0.02}
    assert data["setups"] and all(row.keys() >= SETUP_KEYS for row in data["setups"])
    assert data["variants_tried"] == sum(len(v["plans"]) for v in data["variants"]) > 1
    assert all(t.keys() >= TRADE_KEYS for t in data["gated"]["trades"])
    assert data["baseline"]["stats"]["trades"] > 0


def test_setup_figures_and_the_gated_stats_are_out_of_sample_and_recomputable(report):
    data, _ = report
    first_test = data["choices"][0]["test_start"]
    trades = data["gated"]["trades"]
    assert all(t["time"] >= first_test for t in trades)
    filled = [t for t in trades if t["r_net"] is not None]
    again = setup_stats([t["r_net"] for t in filled], [t["targets_hit"] >= 1 for t in filled])
    assert data["gated"]["stats"]["trades"] == again.trades
    assert data["gated"]["stats"]["average_r"] == again.average_r


def test_evidence_json_is_written_for_the_live_bot(report):
    data, folder = report
    evidence = load_evidence(folder)
    assert set(evidence.setups) == {row["setup"] for row in data["setups"]}
    assert evidence.period == data["period"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["BTCUSDT", "7x"], "timeframe"),
        (["BTCUSDT", "1h", "--start", "yesterday-ish"], "--start"),
        (["BTCUSDT", "1h", "--start", "2025-01-01", "--end", "2024-01-01"], "before"),
        (["BTCUSDT", "1h", "--start", "2025-01-01", "--end", "2025-02-01", "--train-days", "90"], "training window"),
        (["BTCUSDT", "1h", "--fee", "-1"], "fee_pct"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    done = run(tmp_path, *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr
