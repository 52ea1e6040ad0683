"""Container health check: is the bot process alive and is its data directory writable? Exit 0 or 1.

    python deploy/healthcheck.py          (the Dockerfile's HEALTHCHECK and compose.yaml run this)

It needs no network, so a Telegram or Binance outage does not mark the container unhealthy. The bot writes no
heartbeat file, so this is a process check: a ``python bot.py`` process (the Telegram bot, not a one-off
``bot.py backtest``) exists and is neither a zombie nor stopped, and ``BOT_DATA_DIR`` is a writable directory.
It cannot see a hung event loop. Docker only reports the status; ``restart: unless-stopped`` acts on exits.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

DEAD_STATES = frozenset("ZTtXx")  # zombie, stopped, traced, dead (/proc/PID/stat field 3)


def is_bot_command(argv: Sequence[str]) -> bool:
    """``python [-opts] bot.py [-v]``: the long-running bot, not a sub-command such as ``bot.py train``."""
    if not argv or not Path(argv[0]).name.startswith("python"):
        return False
    for index, arg in enumerate(argv[1:], start=1):
        if arg.startswith("-"):
            continue
        rest = argv[index + 1 :]
        return Path(arg).name == "bot.py" and all(a.startswith("-") for a in rest)
    return False


def process_state(stat_line: str) -> str:
    """The one-letter state of a ``/proc/PID/stat`` line (after the parenthesised name, which may hold spaces)."""
    return stat_line.rsplit(")", 1)[1].split()[0]


def bot_alive(proc: Path, own_pid: int) -> bool:
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == own_pid:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text(encoding="utf-8", errors="replace")
        except OSError:  # the process ended while we looked, or is not ours to read
            continue
        command = [a.decode("utf-8", "replace") for a in argv if a]
        if is_bot_command(command) and process_state(stat) not in DEAD_STATES:
            return True
    return False


def problems(proc: Path, data_dir: Path, own_pid: int) -> list[str]:
    found = []
    if not bot_alive(proc, own_pid):
        found.append("no running 'python bot.py' process")
    if not data_dir.is_dir():
        found.append(f"BOT_DATA_DIR {data_dir} is not a directory")
    elif not os.access(data_dir, os.W_OK):
        found.append(f"BOT_DATA_DIR {data_dir} is not writable")
    return found


def main() -> int:
    found = problems(Path("/proc"), Path(os.environ.get("BOT_DATA_DIR") or "data"), os.getpid())
    sys.stdout.write(("; ".join(found) if found else "ok") + "\n")  # docker shows it in `docker inspect`
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
