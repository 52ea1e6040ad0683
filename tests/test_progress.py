"""Long jobs show progress when stderr is not a terminal (issue 15, messages): a plain line every few seconds on
stderr, never the ``\\r`` bar, never on stdout (``--json`` stays one JSON object)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from research import simulation
from research.simulation import Progress
from tests.helpers import SAMPLE_DIR

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_few_seconds_when_not_a_terminal(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(simulation.time, "perf_counter", clock)
    monkeypatch.delenv("PROGRESS_EVERY_S", raising=False)
    out = io.StringIO()  # not a terminal
    progress = Progress(120, "BTCUSDT 1h", stream=out)
    for done in range(1, 121):
        clock.now = 100.0 + done * 0.125  # 15 s in all
        progress.update(done)
    progress.close()
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines() == [
        "BTCUSDT 1h: 1/120 bars (1%), 0 s",  # at once: the job started
        "BTCUSDT 1h: 41/120 bars (34%), 5 s",
        "BTCUSDT 1h: 81/120 bars (68%), 10 s",
        "BTCUSDT 1h: 120/120 bars (100%), 15 s",
    ]


def test_a_short_job_says_it_started_and_ended_and_disabled_prints_nothing(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(simulation.time, "perf_counter", clock)
    lines = {}
    for enabled in (None, False):
        out = io.StringIO()
        progress = Progress(10, "x", stream=out, enabled=enabled, every=5.0)
        for done in range(1, 11):
            clock.now += 0.1
            progress.update(done)
        progress.close()
        lines[enabled] = out.getvalue().splitlines()
    assert lines == {None: ["x: 1/10 bars (10%), 0 s", "x: 10/10 bars (100%), 1 s"], False: []}


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("PROGRESS_EVERY_S", "2")
    assert simulation.progress_every() == 2.0
    monkeypatch.setenv("PROGRESS_EVERY_S", "often")
    assert simulation.progress_every() == simulation.PROGRESS_EVERY_S == 5.0


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MARKET_DATA": "sample", "SAMPLE_DATA_DIR": str(SAMPLE_DIR), "BOT_DATA_DIR": str(tmp_path)}
    env.pop("PROGRESS_EVERY_S", None)  # the default: a line at the start, every 5 s and at the end
    env.pop("TELEGRAM_BOT_TOKEN", None)
    return subprocess.run(
        [sys.executable, "bot.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "label"),
    [
        (("backtest", "BTCUSDT", "4h", "--start", "2026-01-01", "--end", "2026-03-01", "--json"), "BTCUSDT 4h: "),
        (("evaluate", "BTCUSDT", "4h", "--start", "2025-09-01", "--end", "2026-03-01", "--train-days", "60",
          "--test-days", "30", "--json"), "BTCUSDT 4h candidates: "),
    ],
)  # fmt: skip
def test_long_jobs_report_progress_on_a_piped_stderr_and_keep_stdout_json(tmp_path, args, label):
    done = run(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)  # stdout is one JSON object: no progress in it
    progress = [line for line in done.stderr.splitlines() if line.startswith(label)]
    assert progress and "\r" not in done.stderr
    assert progress[-1].startswith(f"{label}") and "(100%)" in progress[-1]
    if args[0] == "evaluate":
        assert any(line.startswith("evaluate: 3/3 steps") for line in done.stderr.splitlines())
