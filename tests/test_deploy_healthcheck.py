"""deploy/healthcheck.py, the container health check: on a fake /proc tree, and once for real."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy import healthcheck

ROOT = Path(__file__).resolve().parent.parent


def fake_proc(root: Path, processes: dict[int, tuple[list[str], str]]) -> Path:
    for pid, (argv, state) in processes.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        (root / str(pid) / "stat").write_text(f"{pid} (py (thon)) {state} 1 1 1 0 -1\n")
    (root / "self").mkdir()
    return root


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/usr/local/bin/python", "bot.py"], True),
        (["python3.11", "-u", "bot.py", "-v"], True),
        (["/opt/x/.venv/bin/python", "/opt/x/bot.py"], True),
        (["python", "bot.py", "backtest", "BTCUSDT", "1h"], False),
        (["python", "deploy/healthcheck.py"], False),
        (["/bin/sh", "-c", "python bot.py"], False),
        (["python", "robot.py"], False),
        ([], False),
    ],
)
def test_health_check_recognises_the_bot_command(argv, expected):
    assert healthcheck.is_bot_command(argv) is expected


def test_health_check_on_a_fake_proc_tree(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    bot = (["/usr/local/bin/python", "bot.py"], "S")
    assert healthcheck.problems(fake_proc(tmp_path / "a", {1: bot, 7: (["sleep"], "R")}), data, 99) == []
    zombie = fake_proc(tmp_path / "b", {1: (bot[0], "Z")})
    assert healthcheck.problems(zombie, data, 99) == ["no running 'python bot.py' process"]
    only_self = fake_proc(tmp_path / "c", {5: bot})
    assert healthcheck.problems(only_self, data, 5) == ["no running 'python bot.py' process"]
    alive = fake_proc(tmp_path / "d", {1: bot})
    assert healthcheck.problems(alive, data / "missing", 99) == [f"BOT_DATA_DIR {data / 'missing'} is not a directory"]
    monkeypatch.setattr(healthcheck.os, "access", lambda path, mode: False)
    assert healthcheck.problems(alive, data, 99) == [f"BOT_DATA_DIR {data} is not writable"]


def test_health_check_script_finds_a_running_bot_py(tmp_path):
    """For real: a process started as ``python bot.py`` (a stand-in that sleeps) makes the script exit 0."""
    (tmp_path / "bot.py").write_text("import time\ntime.sleep(60)\n")
    stand_in = subprocess.Popen([sys.executable, "bot.py"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 10
        cmdline = Path(f"/proc/{stand_in.pid}/cmdline")
        while time.monotonic() < deadline:  # until the child has exec'd python bot.py
            if healthcheck.is_bot_command([a.decode() for a in cmdline.read_bytes().split(b"\0") if a]):
                break
            time.sleep(0.05)
        result = subprocess.run(
            [sys.executable, str(ROOT / "deploy" / "healthcheck.py")],
            env={"BOT_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        stand_in.kill()
        stand_in.wait()
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr
