"""Bootstrap and run the project with nothing but Python 3.11+.

    python3 dev.py run [bot.py arguments]   # create .venv, install, run the bot (console mode without a token)
    python3 dev.py test [pytest arguments]  # create .venv, install dev tools, run the test suite
    python3 dev.py bench [script]           # install the bench peers, run the benchmarks in bench/

The virtual environment is (re)installed only when a requirements file changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
REQUIREMENTS = {"run": "requirements.txt", "test": "requirements-dev.txt", "bench": "requirements-bench.txt"}


def ensure_env(mode: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11+ is needed, this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    req = ROOT / REQUIREMENTS[mode]
    files = sorted(ROOT.glob("requirements*.txt"))
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files) + mode.encode()).hexdigest()
    stamp = VENV / f".installed-{mode}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"installing {req.name} ...", flush=True)
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)], check=True
    )
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in REQUIREMENTS:
        print(__doc__)
        return 2
    mode, rest = argv[0], argv[1:]
    ensure_env(mode)
    if mode == "run":
        cmd = [str(PYTHON), "bot.py", *rest]
    elif mode == "test":
        cmd = [str(PYTHON), "-m", "pytest", *rest]
    else:
        scripts = rest or [str(p) for p in sorted((ROOT / "bench").glob("bench_*.py"))]
        return max((subprocess.call([str(PYTHON), s], cwd=ROOT) for s in scripts), default=0)
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
