"""``evidence.json``: each setup's out-of-sample record, net of costs, written by ``python bot.py evaluate``.

The live bot reads it at start (and after a retrain) to label every signal with its setup's record and to let
the evidence gate decide what is broadcast. A missing file means "no evidence yet"; a corrupt one is kept aside
and treated as missing (``store.storage.load_json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.storage import LoadStatus, atomic_write_json, load_json

EVIDENCE_FILE = "evidence.json"
GATE_MIN_TRADES = 30  # fewer out-of-sample trades than this is "not enough evidence"
GATE_CONFIDENCE = 0.80  # one-sided: the lower bound of the mean net R must be above 0 at this level
SETUP_KEYS = ("trades", "win_rate", "tp1_rate", "average_r", "ci_low", "ci_high", "profit_factor", "gated")


def write_evidence(data_dir: Path, report: Mapping[str, Any]) -> Path:
    """Keep the period, the costs and the per-setup rows of an evaluation report."""
    path = Path(data_dir) / EVIDENCE_FILE
    setups = {row["setup"]: {k: row.get(k) for k in SETUP_KEYS} for row in report["setups"]}
    atomic_write_json(path, {"period": report["period"], "costs": report.get("costs"), "setups": setups})
    return path


@dataclass(frozen=True, slots=True)
class Evidence:
    """What ``evidence.json`` says; ``status`` is MISSING when no evaluation has been run."""

    period: Mapping[str, str] | None
    setups: Mapping[str, Mapping[str, Any]]
    status: LoadStatus

    def of(self, setup: str) -> Mapping[str, Any] | None:
        """The setup's record with the period, or None when the evaluation has no entry for it."""
        row = self.setups.get(setup)
        return None if row is None else {**row, "period": dict(self.period or {})}

    def passes(self, setup: str) -> bool:
        row = self.setups.get(setup)
        return bool(row and row.get("gated"))

    @property
    def any_passes(self) -> bool:
        return any(row.get("gated") for row in self.setups.values())


def _validate(data: Any) -> dict:
    if not isinstance(data, dict) or not isinstance(data.get("setups"), dict):
        raise ValueError("evidence.json must hold an object with 'setups'")
    for name, row in data["setups"].items():
        if not isinstance(name, str) or not isinstance(row, dict):
            raise ValueError("each setup must map a name to an object")
    return data


def load_evidence(data_dir: Path) -> Evidence:
    result = load_json(Path(data_dir) / EVIDENCE_FILE, default=lambda: {"setups": {}}, validate=_validate)
    return Evidence(result.data.get("period"), result.data["setups"], result.status)
