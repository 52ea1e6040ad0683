"""The broadcast gate: which signals are sent to subscribers and tracked, and the honest numbers shown with them.

``GATE=evidence`` (default): a signal is broadcast only when its setup's out-of-sample evidence (``evidence.json``,
written by ``python bot.py evaluate``) passes the gate: at least 30 trades and a one-sided 80% lower bound of the
average net R above 0. ``GATE=confidence``: the rule score at or above ``MIN_CONFIDENCE`` (the bot's behaviour
before evidence existed). ``GATE=off``: every signal. ``/signal`` on request answers every setup either way.

The probability shown is the setup's out-of-sample TP1 rate (TP1 before the stop), a realised frequency over
at least ``GATE_MIN_TRADES`` trades; below that the setup "has not enough evidence" and no probability is shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.signal_model import Signal
from store.evidence import GATE_MIN_TRADES, Evidence
from tracking.setups import setup_label, setup_of


class Gate(StrEnum):
    EVIDENCE = "evidence"
    CONFIDENCE = "confidence"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the bot says about one signal: its setup, its record, and whether the gate sends it."""

    setup: str
    evidence: Mapping[str, Any] | None  # the setup's out-of-sample record, None when evidence.json has none
    probability: float | None  # TP1 before the stop, from the record; None without enough evidence
    broadcast: bool
    reason: str  # one line: why it is or is not broadcast

    def to_json(self) -> dict[str, Any]:
        return {
            "setup": self.setup,
            "probability": self.probability,
            "evidence": None if self.evidence is None else dict(self.evidence),
            "broadcast": self.broadcast,
        }


def verdict(signal: Signal, *, gate: Gate | str, evidence: Evidence, min_confidence: float) -> Verdict:
    """The gate's decision for ``signal`` (see the module docstring)."""
    setup = setup_of(signal)
    record = evidence.of(setup)
    enough = record is not None and (record.get("trades") or 0) >= GATE_MIN_TRADES
    probability = record.get("tp1_rate") if enough else None
    gate = Gate(gate)
    if gate is Gate.OFF:
        return Verdict(setup, record, probability, True, "the gate is off: every signal is broadcast")
    if gate is Gate.CONFIDENCE:
        ok = signal.rule_confidence >= min_confidence
        why = f"rule score {signal.rule_confidence:.0f} {'≥' if ok else '<'} MIN_CONFIDENCE {min_confidence:.0f}"
        return Verdict(setup, record, probability, ok, why)
    if record is None:
        return Verdict(setup, None, None, False, "no out-of-sample evidence for this setup yet")
    if evidence.passes(setup):
        return Verdict(setup, record, probability, True, "its out-of-sample net expectancy is positive")
    if not enough:
        return Verdict(setup, record, probability, False, f"fewer than {GATE_MIN_TRADES} out-of-sample trades")
    return Verdict(setup, record, probability, False, "its out-of-sample net expectancy is not above zero")


def evidence_line(v: Verdict) -> str:
    """``Setup: sweep + MSS long, 1h · 212 past trades · TP1 hit 38% · avg −0.04 R net (−0.18…+0.10)``."""
    head = f"Setup: {setup_label(v.setup)}"
    e = v.evidence
    if e is None or not e.get("trades"):
        return f"{head} · no out-of-sample record yet"
    if e["trades"] < GATE_MIN_TRADES:
        return f"{head} · only {e['trades']} past trades: not enough evidence"
    interval = ""
    if e.get("ci_low") is not None:
        interval = f" ({_r(e['ci_low'])}…{_r(e['ci_high'])})"
    return (
        f"{head} · {e['trades']} past trades · TP1 hit {e['tp1_rate']:.0%} · avg {_r(e['average_r'])} R net{interval}"
    )


def _r(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def gate_status(gate: Gate | str, evidence: Evidence) -> str:
    """One line for /health: what the gate lets through."""
    gate = Gate(gate)
    if gate is not Gate.EVIDENCE:
        return f"Gate: {gate.value}"
    passing = sorted(name for name in evidence.setups if evidence.passes(name))
    if not evidence.setups:
        return "Gate: evidence · no evidence.json yet (run python bot.py evaluate): nothing is broadcast"
    if not passing:
        return "Gate: evidence · no setup shows a positive out-of-sample net edge: nothing is broadcast"
    return f"Gate: evidence · broadcasting {len(passing)} setup(s): " + ", ".join(setup_label(s) for s in passing)
