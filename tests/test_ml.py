"""ML engine and predictor: labels from journal records, time-ordered validation, activation, robust loading."""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import ml_engine
from ml_engine import ModelKind, TrainStatus, extract_samples, label_of, should_retrain, train
from ml_predictor import MLPredictor, read_model
from research.ml_metrics import ModelMetrics, activation, roc_auc

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def record(i: int, features: dict[str, float], win: bool, *, nested: bool = True, r_win: float = 1.5) -> dict:
    sig = {
        "id": f"BTCUSDT-1h-{i}-L",
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "time": (T0 + timedelta(hours=4 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "direction": "long",
        "r_multiples": [1.5, 2.5, 4.0],
        "features": features,
    }
    closed = T0 + timedelta(hours=4 * (i + 1 + i % 5))  # the outcome closes 1 to 5 signals later
    outcome = {
        "reason": "TP1" if win else "SL",
        "r_multiple": r_win if win else -1.0,
        "closed_at": closed.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return {"signal": sig, "outcome": outcome} if nested else {**sig, "outcome": outcome}


def synthetic(n: int, *, seed: int, informative: bool) -> list[dict]:
    """Journal of ``n`` closed signals; with ``informative`` the win chance rises steeply with feature ``x0``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f = {f"x{k}": float(rng.normal()) for k in range(5)}
        p = 1 / (1 + np.exp(-2.5 * f["x0"])) if informative else 0.4
        out.append(record(i, f, bool(rng.random() < p), nested=bool(i % 2)))
    return out


# --- labels ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ({"reason": "TP1", "r_multiple": 1.5}, (1, 1.5)),
        ({"reason": "tp3", "r_multiple": 4.2}, (1, 4.2)),
        ({"reason": "BE", "r_multiple": 0.5}, (1, 0.5)),  # break-even only after TP1
        ({"reason": "SL", "r_multiple": -1.0}, (0, -1.0)),
        ({"reason": "SL"}, (0, -1.0)),  # missing R: a full stop is -1 R
        ({"reason": "TP2"}, (1, 2.5)),  # missing R: the signal's R multiple of that target
        ({"reason": "MANUAL", "r_multiple": 0.3, "highest_target": 2}, (1, 0.3)),
        ({"reason": "MANUAL", "r_multiple": -0.3}, None),  # closed by hand before TP1 or SL: no label
        ({"reason": "EXPIRED", "r_multiple": 0.0}, None),  # never filled
        ({"exit_reason": "TP1", "r": 1.2}, (1, 1.2)),  # tolerated spelling
    ],
)
def test_label_is_tp1_before_sl(outcome, expected):
    rec = record(0, {"a": 1.0}, True)
    rec["outcome"] = outcome
    assert label_of(rec) == expected


def test_open_positions_and_records_without_features_are_skipped():
    open_rec = record(0, {"a": 1.0}, True)
    del open_rec["outcome"]
    no_features = record(1, {}, True)
    garbage = record(2, {"a": 1.0}, True)
    garbage["signal"]["time"] = "not a time"
    good = record(3, {"a": 1.0, "b": float("nan"), "c": "text"}, False)
    samples = extract_samples([open_rec, no_features, garbage, good, "junk", None])
    assert len(samples) == 1
    assert dict(samples[0].features) == {"a": 1.0}  # non-finite and non-numeric features dropped
    assert samples[0].label == 0


def test_samples_are_sorted_by_time():
    recs = synthetic(20, seed=1, informative=True)[::-1]
    times = [s.time for s in extract_samples(recs)]
    assert times == sorted(times)


def test_purge_is_by_outcome_close_time_not_by_count():
    recs = synthetic(100, seed=1, informative=False)  # test period: samples 70..99, opening at signal 70's time
    opens = T0 + timedelta(hours=4 * 70)
    late = recs[10]["outcome"]  # an early signal whose outcome ran into the test period: never trains
    late["closed_at"] = (opens + timedelta(hours=1)).isoformat()
    recs[20]["outcome"]["closed_at"] = opens.isoformat()  # closes as the test opens: still open then
    recs[30]["outcome"]["closed_at"] = (opens - timedelta(seconds=1)).isoformat()  # closed just before: trains
    del recs[40]["outcome"]["closed_at"]  # close time unknown: never trains
    rows, test_start = ml_engine.purged_split(extract_samples(recs))
    assert test_start == 70
    purged = set(range(70)) - set(rows.tolist())
    assert purged == {10, 20, 40, 67, 68, 69}  # 67..69 close 3..5 signals later, at or after the opening
    assert 30 in rows and 66 in rows  # 66 closes at signal 68's time: before the opening


def test_auc_matches_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y * 0.5, 1)  # with ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))


# --- activation rule: one test per condition, at its boundary ------------------------------------------------


def metrics(**changes) -> ModelMetrics:
    """Held-out metrics that pass every condition of the rule (lower bound 0.6 - 1.645 * 0.05 = 0.518)."""
    base = dict(
        test_samples=200,
        auc=0.6,
        auc_se=0.05,
        brier=0.2,
        brier_baseline=0.25,
        threshold=0.4,
        kept=20,
        win_rate_all=0.4,
        win_rate_kept=0.5,
        expectancy_all=0.0,
        expectancy_kept=0.1,
    )
    return ModelMetrics(**{**base, **changes})


def test_activation_passes_when_every_condition_holds():
    assert activation(metrics()) == (True, "beats baseline: kept +0.100 R vs all +0.000 R per signal")


def test_activation_needs_both_classes():
    active, reason = activation(metrics(auc=None, auc_se=None))
    assert not active and "single outcome class" in reason


def test_activation_needs_the_auc_lower_bound_above_one_half():
    assert activation(metrics(auc=0.5 + 1.645 * 0.05 + 0.001))[0]
    active, reason = activation(metrics(auc=0.5 + 1.645 * 0.05 - 0.001))  # lower bound just below 0.5
    assert not active and "not significantly above 0.5" in reason
    assert not activation(metrics(auc=0.45, auc_se=0.001))[0]  # a confident AUC below 0.5 (a flipped test)


def test_activation_corrects_the_auc_bound_for_every_comparison():
    assert metrics(comparisons=1).auc_z == pytest.approx(1.6449, abs=1e-4)
    assert metrics(comparisons=2).auc_z == pytest.approx(1.9600, abs=1e-4)  # Bonferroni: 0.05 / 2
    between = metrics(auc=0.5 + 1.8 * 0.05)  # significant alone, not among two models
    assert activation(between)[0]
    active, reason = activation(replace(between, comparisons=2))
    assert not active and "over 2 comparisons" in reason


@pytest.mark.parametrize(("test_samples", "min_kept"), [(50, 10), (200, 20), (301, 31)])
def test_activation_needs_enough_kept_signals(test_samples, min_kept):
    assert activation(metrics(test_samples=test_samples, kept=min_kept))[0]
    active, reason = activation(metrics(test_samples=test_samples, kept=min_kept - 1))
    assert not active and f"keeps only {min_kept - 1} of {test_samples}" in reason


def test_activation_needs_a_strictly_better_expectancy():
    assert activation(metrics(expectancy_all=0.0999))[0]
    for kept in (0.1, 0.05):  # equal, or worse
        active, reason = activation(metrics(expectancy_all=0.1, expectancy_kept=kept))
        assert not active and "did not beat baseline" in reason


def test_retrains_count_as_comparisons(tmp_path):
    recs = synthetic(200, seed=3, informative=True)
    first = train(recs, tmp_path, kinds=(ModelKind.SINGLE, ModelKind.ENSEMBLE))
    second = train(recs, tmp_path, kinds=(ModelKind.SINGLE, ModelKind.ENSEMBLE))
    assert [m.metrics.comparisons for m in first.models] == [2, 2]
    assert [m.metrics.comparisons for m in second.models] == [4, 4]
    assert ml_engine.read_header(tmp_path / "ml_model.pkl")["trainings"] == 2


# --- calibration ---------------------------------------------------------------------------------------------


def known_probability_journal(n: int, seed: int) -> tuple[list[dict], np.ndarray]:
    """Journal whose win chance is a known, non-logistic function of ``x0`` (a logistic model is miscalibrated)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    truth = 1 / (1 + np.exp(-2.5 * x[:, 0] ** 3 - 0.3))
    wins = rng.random(n) < truth
    recs = [record(i, {f"x{k}": float(x[i, k]) for k in range(3)}, bool(wins[i])) for i in range(n)]
    return recs, truth


def test_probabilities_are_calibrated_on_a_known_probability_journal():
    from research.ml_models import fit

    train_recs, _ = known_probability_journal(1500, seed=1)
    fresh, truth = known_probability_journal(20000, seed=2)
    names = ["x0", "x1", "x2"]
    train_samples, fresh_samples = extract_samples(train_recs), extract_samples(fresh)
    x = ml_engine.matrix(train_samples, names)
    model = fit(ModelKind.SINGLE, x, np.array([s.label for s in train_samples]))
    p = model.predict_proba(ml_engine.matrix(fresh_samples, names))[:, 1]
    realized = np.array([s.label for s in fresh_samples])
    bins = np.clip((p * 10).astype(int), 0, 9)
    checked = 0
    for b in range(10):
        inside = bins == b
        if inside.sum() < 300:
            continue
        checked += 1
        assert abs(realized[inside].mean() - p[inside].mean()) < 0.1, b  # realized frequency = prediction
        assert abs(truth[inside].mean() - p[inside].mean()) < 0.1, b  # and the known probability
    assert checked >= 5


# --- training ----------------------------------------------------------------------------------------------------


def test_training_recovers_a_known_feature_and_activates(tmp_path):
    report = train(synthetic(600, seed=7, informative=True), tmp_path)
    assert report.status is TrainStatus.TRAINED
    assert report.samples == 600 and report.test_samples == 180 and report.gap_samples == 3  # 417..419 still open
    for model in report.models:
        m = model.metrics
        assert m.auc > 0.75, model
        assert m.expectancy_kept > m.expectancy_all
        assert m.brier < m.brier_baseline
        assert model.active, model.reason
        assert sum(b.count for b in m.calibration) == m.test_samples
    header = ml_engine.read_header(tmp_path / "ml_model.pkl")
    assert header["features"] == ["x0", "x1", "x2", "x3", "x4"]
    assert header["samples"] == 600 and header["active"] is True
    assert header["versions"]["sklearn"]
    assert {"auc", "brier", "expectancy_kept", "expectancy_all", "calibration"} <= set(header["metrics"])
    assert "Trained on 600" in report.text() and "ACTIVE" in report.text()
    assert report.to_json()["models"][0]["metrics"]["auc_lower"] > 0.5


@pytest.mark.parametrize("seed", [11, 12])
def test_training_on_noise_claims_no_skill(tmp_path, seed):
    report = train(synthetic(500, seed=seed, informative=False), tmp_path, kinds=(ModelKind.SINGLE,))
    assert report.status is TrainStatus.TRAINED
    assert not report.active, report.text()
    assert ml_engine.read_header(tmp_path / "ml_model.pkl")["active"] is False  # saved, not activated
    predictor = MLPredictor(tmp_path)
    predictor.load()
    assert not predictor.active
    assert predictor.predict({f"x{k}": 0.0 for k in range(5)}) is None
    assert "not active" in predictor.status()


def test_validation_is_time_ordered_not_shuffled(tmp_path):
    """The feature helps early and hurts later: a shuffled split would see skill, the later period does not."""
    rng = np.random.default_rng(5)
    recs = []
    for i in range(500):
        x = float(rng.normal())
        sign = 1 if i < 300 else -1
        recs.append(
            record(i, {"x0": x, "x1": float(rng.normal())}, bool(rng.random() < 1 / (1 + np.exp(-3 * sign * x))))
        )
    report = train(recs, tmp_path, kinds=(ModelKind.SINGLE,))
    m = report.models[0].metrics
    assert m.auc < 0.5
    assert not report.active


def test_too_few_samples_trains_nothing(tmp_path):
    report = train(synthetic(150, seed=1, informative=True), tmp_path)
    assert report.status is TrainStatus.NOT_ENOUGH_SAMPLES
    assert report.samples == 150 and report.min_samples == ml_engine.MIN_SAMPLES
    assert not list(tmp_path.iterdir())
    assert "need 200" in report.text()


def test_should_retrain(tmp_path):
    recs = synthetic(260, seed=2, informative=True)
    assert not should_retrain(recs[:199], tmp_path)
    assert should_retrain(recs[:200], tmp_path)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    train(recs[:200], tmp_path, kinds=(ModelKind.SINGLE,), now=now)
    assert not should_retrain(recs[:200], tmp_path, now=now + timedelta(days=30))  # nothing new
    assert not should_retrain(recs[:210], tmp_path, now=now + timedelta(days=1))  # few new, model fresh
    assert should_retrain(recs[:210], tmp_path, now=now + timedelta(days=8))  # weekly
    assert should_retrain(recs[:250], tmp_path, now=now + timedelta(days=1))  # 50 new outcomes


def test_merge_records_prefers_the_first_journal():
    live = [record(1, {"a": 1.0}, True)]
    back = [record(1, {"a": 2.0}, False), record(2, {"a": 3.0}, False)]
    merged = ml_engine.merge_records(live, back)
    assert len(merged) == 2 and merged[0] is live[0]


def test_load_journal_records_tolerates_shapes(tmp_path):
    path = tmp_path / "j.json"
    assert ml_engine.load_journal_records(path) == []
    path.write_text('{"records": [{"a": 1}, 3]}')
    assert ml_engine.load_journal_records(path) == [{"a": 1}]
    path.write_text("[{")
    assert ml_engine.load_journal_records(path) == []


# --- predictor ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    train(synthetic(400, seed=9, informative=True), path)
    return path


def test_predictor_uses_the_active_model(trained_dir):
    predictor = MLPredictor(trained_dir)
    assert predictor.status() == "model not loaded yet"
    predictor.load()
    assert predictor.active and predictor.model.kind == "ensemble"
    low = predictor.predict({"x0": -2.0, "x1": 0, "x2": 0, "x3": 0, "x4": 0})
    high = predictor.predict({"x0": 2.0, "x1": 0, "x2": 0, "x3": 0, "x4": 0, "extra": 5.0})
    assert 0 <= low < 0.5 < high <= 1
    status = predictor.status()
    assert "ensemble model trained" in status and "on 400 samples" in status and "active (in use)" in status


def test_predictor_without_model_is_a_no_op(tmp_path):
    predictor = MLPredictor(tmp_path / "nowhere")
    predictor.load()
    assert not predictor.active
    assert predictor.predict({"x0": 1.0}) is None
    assert predictor.status() == "no model"


def test_predictor_with_corrupt_files_is_a_logged_no_op(tmp_path, caplog):
    (tmp_path / "ml_model.pkl").write_bytes(b"\x80\x05garbage that is not a pickle")
    (tmp_path / "ml_ensemble.pkl").write_bytes(b"")
    predictor = MLPredictor(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ml_predictor"):
        predictor.load()
    assert not predictor.active
    assert predictor.predict({"x0": 1.0}) is None
    assert "unreadable" in predictor.status()
    assert sum("not used" in r.getMessage() for r in caplog.records) == 2


def test_predictor_with_truncated_model_is_a_no_op(trained_dir, tmp_path):
    data = (trained_dir / "ml_ensemble.pkl").read_bytes()
    (tmp_path / "ml_ensemble.pkl").write_bytes(data[: len(data) // 2])
    predictor = MLPredictor(tmp_path)
    predictor.load()
    assert not predictor.active and predictor.predict({"x0": 1.0}) is None


def test_predictor_rejects_a_stale_model(trained_dir, tmp_path, caplog):
    header = ml_engine.read_header(trained_dir / "ml_model.pkl")
    estimator = read_model(trained_dir / "ml_model.pkl").estimator
    header["versions"] = {**header["versions"], "sklearn": "0.24.2"}
    ml_engine.save_model(tmp_path / "ml_model.pkl", header, estimator)
    predictor = MLPredictor(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ml_predictor"):
        predictor.load()
    assert not predictor.active
    assert predictor.predict({f"x{k}": 0.0 for k in range(5)}) is None
    assert "stale" in predictor.status() and "0.24.2" in caplog.text


def test_predictor_with_mismatched_features_is_a_logged_no_op(trained_dir, caplog):
    predictor = MLPredictor(trained_dir)
    predictor.load()
    with caplog.at_level(logging.WARNING, logger="ml_predictor"):
        assert predictor.predict({"other": 1.0}) is None
        assert predictor.predict({"other": 2.0}) is None
        assert predictor.predict({"x0": "not a number", "x1": 0, "x2": 0, "x3": 0, "x4": 0}) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once for the missing features, once for the failed conversion


def test_predictor_reads_only_its_data_dir(trained_dir, tmp_path):
    predictor = MLPredictor(tmp_path)
    predictor.load()
    assert not predictor.active  # a model elsewhere is never picked up


class _Marker:
    """Unpickling this creates the directory ``path``: code run by a model file."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_an_old_pickle_model_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "ml_model.pkl").write_bytes(pickle.dumps(_Marker(marker)))  # the old format: pickle first
    predictor = MLPredictor(tmp_path)
    predictor.load()
    assert not marker.exists()
    assert not predictor.active and "unrecognised model file format" in predictor.status()
    assert ml_engine.read_header(tmp_path / "ml_model.pkl") is None and not marker.exists()


def test_a_payload_naming_a_foreign_callable_is_refused_without_running_it(trained_dir, tmp_path):
    marker = tmp_path / "pwned"
    header = ml_engine.read_header(trained_dir / "ml_model.pkl")  # a valid header, checksum recomputed
    ml_engine.save_model(tmp_path / "ml_model.pkl", header, _Marker(marker))
    predictor = MLPredictor(tmp_path)
    predictor.load()
    assert not marker.exists()
    assert not predictor.active and "refused" in predictor.status()


def test_a_tampered_payload_is_refused(trained_dir, tmp_path):
    data = bytearray((trained_dir / "ml_model.pkl").read_bytes())
    data[-20] ^= 0xFF
    (tmp_path / "ml_model.pkl").write_bytes(bytes(data))
    model = read_model(tmp_path / "ml_model.pkl")
    assert model.estimator is None and "sha256" in model.problem
    assert read_model(trained_dir / "ml_model.pkl").estimator is not None  # the original loads


def test_isotonic_calibrated_models_pass_the_allow_list(tmp_path):
    import sklearn

    from ml_predictor import FORMAT_VERSION
    from research.ml_models import ISOTONIC_MIN, fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(ISOTONIC_MIN + 100, 3))
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-x[:, 0]))).astype(int)
    model = fit(ModelKind.SINGLE, x, y)
    assert model.method == "isotonic"
    header = {"format": FORMAT_VERSION, "features": ["a", "b", "c"], "versions": {"sklearn": sklearn.__version__}}
    ml_engine.save_model(tmp_path / "ml_model.pkl", header, model)
    loaded = read_model(tmp_path / "ml_model.pkl")
    assert loaded.problem == "" and np.allclose(loaded.estimator.predict_proba(x), model.predict_proba(x))


def test_models_load_only_from_the_data_dir(trained_dir, tmp_path):
    (tmp_path / "ml_ensemble.pkl").symlink_to(trained_dir / "ml_ensemble.pkl")
    predictor = MLPredictor(tmp_path)
    predictor.load()
    assert not predictor.active and "outside the data directory" in predictor.status()
    elsewhere = read_model(trained_dir / "ml_model.pkl", data_dir=tmp_path)
    assert elsewhere.estimator is None and "outside the data directory" in elsewhere.problem


# --- CLI and cold start ------------------------------------------------------------------------------------------


def test_train_cli_json_report(tmp_path, capsys):
    import argparse
    import json

    from config import Settings

    (tmp_path / "trading_journal.json").write_text(json.dumps({"records": synthetic(300, seed=4, informative=True)}))
    settings = Settings(bot_data_dir=tmp_path)
    assert ml_engine.main(argparse.Namespace(from_backtest=False, json=True, fast=False), settings) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "trained" and report["samples"] == 300
    assert {m["kind"] for m in report["models"]} == {"single", "ensemble"}


@pytest.mark.parametrize(("informative", "first"), [(True, "Model (single) activated: its held-out AUC "),
                                                     (False, "Model (single) not activated: ")])  # fmt: skip
def test_train_cli_prints_a_plain_verdict_first(tmp_path, capsys, informative, first):
    import argparse
    import json

    from config import Settings

    records = synthetic(500, seed=7 if informative else 11, informative=informative)
    (tmp_path / "trading_journal.json").write_text(json.dumps({"records": records}))
    assert (
        ml_engine.main(argparse.Namespace(from_backtest=False, json=False, fast=False), Settings(bot_data_dir=tmp_path))
        == 0
    )
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(first) and lines[1].startswith("Model (ensemble) ")
    if informative:
        assert "beats chance" in lines[0] and lines[0].endswith("the bot now uses it.")
    else:
        assert lines[0].endswith("the bot runs without it.")
    assert lines[2] == "" and lines[3].startswith("Trained on 500")  # then the details


def test_verdict_of_noise_and_of_too_few_outcomes(tmp_path):
    noise = train(synthetic(500, seed=11, informative=False), tmp_path, kinds=(ModelKind.SINGLE,))
    m = noise.models[0].metrics
    assert ml_engine.verdict(noise) == (
        f"Model not activated: its held-out AUC {m.auc:.2f} (lower bound {m.auc_lower:.2f}) does not beat chance; "
        "the bot runs without it."
    )
    few = train(synthetic(150, seed=1, informative=True), tmp_path / "few")
    assert ml_engine.verdict(few).startswith("No model trained: 150 labelled outcomes, 200 needed; the bot runs")


def test_cold_start_writes_a_training_journal(tmp_path):
    from config import Settings
    from research import backtest
    from tests.helpers import SAMPLE_DIR

    settings = Settings(bot_data_dir=tmp_path, sample_data_dir=SAMPLE_DIR, market_data="sample")
    path = tmp_path / ml_engine.COLD_START_JOURNAL_FILE
    summary = backtest.cold_start(
        settings, journal_path=path, timeframes=("4h",), days=40, mode=backtest.Mode.FAST, show_progress=False
    )
    assert "sample BTCUSDT 4h" in summary and "sample SOLUSDT 4h" in summary
    records = ml_engine.load_journal_records(path)
    assert records and all(r["signal"]["timeframe"] == "4h" for r in records)
    assert {r["signal"]["symbol"] for r in records} <= {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    assert ml_engine.extract_samples(records)  # closed outcomes with labels


def test_train_cli_cold_start_failure_is_one_line(tmp_path, capsys):
    import argparse

    from config import Settings

    settings = Settings(bot_data_dir=tmp_path, sample_data_dir=tmp_path / "no-such-dir", market_data="sample")
    assert ml_engine.main(argparse.Namespace(from_backtest=True, json=False, fast=True), settings) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("train: ") and "\n" not in err


def test_cold_start_is_offline_safe(tmp_path):
    from config import Settings
    from market.source import MarketDataUnavailable
    from research import backtest
    from tests.helpers import SAMPLE_DIR

    def offline(settings):
        raise MarketDataUnavailable("Binance unreachable: connection refused")

    settings = Settings(bot_data_dir=tmp_path, sample_data_dir=SAMPLE_DIR, market_data="binance")
    summary = backtest.cold_start(
        settings,
        journal_path=tmp_path / "cs.json",
        timeframes=("4h",),
        days=20,
        mode=backtest.Mode.FAST,
        show_progress=False,
        online=offline,
    )
    assert "Binance not used (Binance unreachable: connection refused): sample data only" in summary
    assert "sample BTCUSDT 4h" in summary and (tmp_path / "cs.json").exists()
