"""The broadcast gate and the evidence line every signal carries."""

from __future__ import annotations

import json

import pytest

from store.evidence import load_evidence, write_evidence
from store.storage import LoadStatus
from tests.test_formatting import signal
from tracking.gate import Gate, evidence_line, gate_status, verdict

SETUP = "sweep_mss/long/1h"


def record(trades, average_r, gated, **more):
    low, high = average_r - 0.1, average_r + 0.1
    return {"setup": SETUP, "trades": trades, "win_rate": 0.4, "tp1_rate": 0.38, "average_r": average_r,
            "ci_low": low, "ci_high": high, "profit_factor": 1.2, "gated": gated, **more}  # fmt: skip


def evidence_with(tmp_path, *rows):
    write_evidence(
        tmp_path, {"period": {"start": "2024-01-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "setups": rows}
    )
    return load_evidence(tmp_path)


def test_evidence_gate_sends_only_setups_with_a_positive_out_of_sample_edge(tmp_path):
    sig = signal()
    good = verdict(sig, gate=Gate.EVIDENCE, evidence=evidence_with(tmp_path, record(212, 0.2, True)), min_confidence=60)
    assert good.broadcast and good.setup == SETUP and good.probability == 0.38
    assert good.evidence["period"]["start"] == "2024-01-01T00:00:00Z"
    flat = verdict(sig, gate="evidence", evidence=evidence_with(tmp_path, record(212, 0.0, False)), min_confidence=60)
    assert not flat.broadcast and "not above zero" in flat.reason
    few = verdict(sig, gate="evidence", evidence=evidence_with(tmp_path, record(12, 0.9, False)), min_confidence=60)
    assert not few.broadcast and few.probability is None and "fewer than 30" in few.reason
    none = verdict(sig, gate="evidence", evidence=evidence_with(tmp_path), min_confidence=60)
    assert not none.broadcast and none.evidence is None


@pytest.mark.parametrize(("confidence", "sent"), [(59.9, False), (60.0, True)])
def test_confidence_gate_is_the_old_threshold(tmp_path, confidence, sent):
    v = verdict(
        signal(rule_confidence=confidence), gate="confidence", evidence=evidence_with(tmp_path), min_confidence=60
    )
    assert v.broadcast is sent


def test_off_gate_sends_everything(tmp_path):
    assert verdict(
        signal(rule_confidence=1.0), gate="off", evidence=evidence_with(tmp_path), min_confidence=60
    ).broadcast


def test_evidence_line_reads_like_a_record(tmp_path):
    v = verdict(
        signal(), gate="evidence", evidence=evidence_with(tmp_path, record(212, -0.04, False)), min_confidence=60
    )
    assert (
        evidence_line(v)
        == "Setup: sweep + MSS long, 1h · 212 past trades · TP1 hit 38% · avg −0.04 R net (−0.14…+0.06)"
    )
    few = verdict(signal(), gate="evidence", evidence=evidence_with(tmp_path, record(7, 1.0, False)), min_confidence=60)
    assert "not enough evidence" in evidence_line(few)
    assert json.dumps(few.to_json())


def test_health_says_when_nothing_qualifies(tmp_path):
    assert "nothing is broadcast" in gate_status("evidence", evidence_with(tmp_path, record(212, 0.0, False)))
    assert "broadcasting 1 setup" in gate_status("evidence", evidence_with(tmp_path, record(212, 0.3, True)))
    assert "no evidence.json" in gate_status("evidence", load_evidence(tmp_path / "nowhere"))


def test_corrupt_evidence_is_kept_aside_and_means_no_evidence(tmp_path):
    (tmp_path / "evidence.json").write_text("{not json")
    evidence = load_evidence(tmp_path)
    assert evidence.status is LoadStatus.CORRUPT and not evidence.setups
    assert [p.name.startswith("evidence.json.corrupt-") for p in tmp_path.iterdir()] == [True]
