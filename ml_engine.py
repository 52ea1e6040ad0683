"""Training of the ML models from the journal's closed outcomes (offline, or the /train command and retrain job).

Definitions
-----------
- **Features**: the signal's feature vector (``Signal.features``, stored in every journal record as
  ``features``). The model's feature list is every name present in at least half of the labelled samples, sorted;
  a feature missing from a record is imputed with the training median.
- **Label**: 1 when the position reached TP1 before its stop (outcome TP1, TP2, TP3, or BE: break-even is only
  reachable after TP1 moved the stop), 0 when the stop was hit first (SL). Records that never resolved that way
  (EXPIRED: the limit entry was never filled; MANUAL close before TP1/SL; still open) carry no label and are
  ignored. When the outcome states the highest target reached, that number decides (``>= 1`` is a win).
- **R multiple**: the outcome's net R (``r_net``: profit after fees and slippage in units of the planned risk
  |entry - SL|; older outcomes are charged the default costs); it is what the expectancy below is measured in.

Validation (time-ordered only; nothing is shuffled across time)
-------------------------------------------------------------
Samples are sorted by signal time. The last ``test_fraction`` (30%) are the held-out test period, which opens at
the signal time of its first sample. The purge is by time, not by count: an earlier sample trains only when its
outcome closed (``closed_at`` of the outcome) strictly before the test period opens, so no outcome still running
then can leak into training; a sample without a close time never trains. The rest are purged (``gap``). Each
model's probability is calibrated on the training period only (``research.ml_models.fit``). On the test period the
report gives ROC AUC (with its Hanley-McNeil standard error), the Brier score (and the no-skill Brier score of
always predicting the training win rate), a reliability table (10 probability bins: count, mean prediction,
observed win rate), and the number that matters: the **expectancy in R of the signals the model keeps**
(p >= threshold) versus the expectancy of **all** signals. The threshold is the training period's win rate:
the model keeps a signal when it rates it better than the average signal.

Activation rule: a model is activated (``active: True``) only if, on the held-out period, (1) both classes are
present, (2) the one-sided 95% lower bound of its AUC, Bonferroni-corrected for every model compared by this and
the earlier trainings (AUC - z(1 - 0.05/m) SE, ``research.ml_metrics``), is above 0.5, (3) it keeps at least
``max(10, 10%)`` of the test signals and (4) their expectancy is strictly higher than that of all signals.
Otherwise it is saved with ``active: False`` and the reason, and the bot runs without it. Models are only trained
when at least ``MIN_SAMPLES`` (200) labelled outcomes exist. After validation, the saved estimator is refitted on
all labelled samples (train + gap + test); the metrics stored with it are those of the held-out evaluation. The
header counts the trainings done in the data directory (``trainings``): ``m`` = models per training x trainings.

Models (scikit-learn Pipelines, ``random_state=0``)
-------------------------------------------------
- ``ml_model.pkl`` (single): median imputer -> standard scaler -> L2 logistic regression.
- ``ml_ensemble.pkl``: soft voting of gradient boosting (depth 2), random forest (min 10 samples a leaf) and the
  logistic regression above.
- Both calibrated: Platt scaling below 1,000 training samples, isotonic from there, over time-ordered folds.

File format (``ml_predictor.write_model``): a JSON header (format, kind, features, library versions, training
date, sample count, metrics, active, reason, threshold, and the payload's sha256), then the pickled estimator. The
predictor checks the header before it unpickles anything, and unpickles with an allow-list. Files are written
atomically (temporary file, fsync, rename) and only ever inside ``BOT_DATA_DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from ml_predictor import ENSEMBLE_FILE, FORMAT_VERSION, MODEL_FILE, read_header, write_model
from research.ml_metrics import ModelMetrics, activation, evaluate
from research.ml_models import ModelKind, fit, fit_predict, library_versions
from store.journal import outcome_r

logger = logging.getLogger(__name__)

MIN_SAMPLES = 200  # labelled outcomes needed before a model is trained (and hence used)
TEST_FRACTION = 0.3
RETRAIN_EVERY = timedelta(days=7)
RETRAIN_NEW_OUTCOMES = 50  # or 25% of the last model's sample count, whichever is larger
JOURNAL_FILE = "trading_journal.json"
COLD_START_JOURNAL_FILE = "cold_start_journal.json"  # written by train --from-backtest
WIN_REASONS = {"TP1", "TP2", "TP3", "BE"}
LOSS_REASONS = {"SL"}
MODEL_FILES = {ModelKind.SINGLE: MODEL_FILE, ModelKind.ENSEMBLE: ENSEMBLE_FILE}


# ---------------------------------------------------------------------------------------------------------------
# Journal records -> labelled samples
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled outcome: when, what the signal looked like, whether TP1 came before SL, and the R earned."""

    time: datetime  # aware UTC close time of the signal candle
    features: Mapping[str, float]
    label: int  # 1: TP1 reached before SL; 0: SL first
    r_multiple: float
    symbol: str = ""
    timeframe: str = ""
    closed: datetime | None = None  # when the outcome closed (None: unknown, never used for training)


def _signal_part(record: Mapping[str, Any]) -> Mapping[str, Any]:
    inner = record.get("signal")
    return inner if isinstance(inner, Mapping) else record


def _outcome_part(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for key in ("outcome", "result", "close"):
        value = record.get(key)
        if isinstance(value, Mapping):
            return value
    sig = record.get("signal")
    if isinstance(sig, Mapping) and isinstance(sig.get("outcome"), Mapping):
        return sig["outcome"]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _highest_target(outcome: Mapping[str, Any]) -> int | None:
    for key in ("highest_target", "max_target", "target_reached", "targets_hit", "highest_tp", "tp_hit"):
        if key not in outcome or outcome[key] is None:
            continue
        raw = outcome[key]
        if isinstance(raw, str):
            text = raw.strip().upper().removeprefix("TP")
            if text.isdigit():
                return int(text)
            if text in {"", "NONE", "0"}:
                return 0
            continue
        number = _number(raw)
        if number is not None:
            return int(number)
    return None


def _reason(outcome: Mapping[str, Any]) -> str:
    for key in ("reason", "exit_reason", "state", "status", "result"):
        value = outcome.get(key)
        if isinstance(value, str) and value:
            return value.strip().upper()
    return ""


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def label_of(record: Mapping[str, Any]) -> tuple[int, float] | None:
    """(label, R multiple) of a closed journal record, or None when it carries no TP1-vs-SL outcome."""
    outcome = _outcome_part(record)
    if outcome is None:
        return None
    reason = _reason(outcome)
    highest = _highest_target(outcome)
    if highest is not None and (highest >= 1 or reason in LOSS_REASONS):
        label = 1 if highest >= 1 else 0
    elif reason in WIN_REASONS:
        label = 1
    elif reason in LOSS_REASONS:
        label = 0
    else:
        return None
    r = _net_r(record, outcome)
    if r is None:
        r = _fallback_r(record, reason)
    if r is None:
        return None
    return label, r


def _net_r(record: Mapping[str, Any], outcome: Mapping[str, Any]) -> float | None:
    """The outcome's net R (after fees and slippage); one recorded before costs existed is charged the default
    costs on its single exit (``store.journal.outcome_r``)."""
    r = _number(outcome.get("r_net", outcome.get("r_multiple", outcome.get("r"))))
    if r is not None and outcome.get("r_net") is None and outcome.get("fill_price") is not None:
        return outcome_r(outcome, _signal_part(record))[1]
    return r


def _fallback_r(record: Mapping[str, Any], reason: str) -> float | None:
    if reason == "SL":
        return -1.0
    if reason == "BE":
        return 0.0
    multiples = _signal_part(record).get("r_multiples")
    if reason in {"TP1", "TP2", "TP3"} and isinstance(multiples, Sequence) and len(multiples) >= 3:
        return _number(multiples[int(reason[2]) - 1])
    return None


def extract_samples(records: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """Labelled samples from journal records (any tolerated shape), sorted by signal time; others skipped."""
    out = []
    for record in records:
        if not isinstance(record, Mapping):
            continue
        labelled = label_of(record)
        if labelled is None:
            continue
        sig = _signal_part(record)
        moment = _parse_time(sig.get("time") or record.get("time") or sig.get("signal_time"))
        raw = sig.get("features") or record.get("features")
        if moment is None or not isinstance(raw, Mapping):
            continue
        features = {str(k): v for k, v in ((k, _number(v)) for k, v in raw.items()) if v is not None}
        if not features:
            continue
        out.append(
            Sample(
                time=moment,
                features=features,
                label=labelled[0],
                r_multiple=labelled[1],
                symbol=str(sig.get("symbol", "")),
                timeframe=str(sig.get("timeframe", "")),
                closed=_closed_time(record),
            )
        )
    out.sort(key=lambda s: (s.time, s.symbol, s.timeframe))
    return out


def _closed_time(record: Mapping[str, Any]) -> datetime | None:
    outcome = _outcome_part(record) or {}
    return _parse_time(outcome.get("closed_at") or outcome.get("exit_time") or outcome.get("closed"))


def load_journal_records(path: Path) -> list[dict[str, Any]]:
    """Records of a journal file in the live format (a list, or an object holding the list); [] if unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        logger.warning("journal %s is unreadable (%s); ignoring it", path, exc)
        return []
    if isinstance(data, Mapping):
        for key in ("records", "trades", "entries", "journal", "signals"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            data = list(data.values()) if all(isinstance(v, Mapping) for v in data.values()) else []
    return [r for r in data if isinstance(r, Mapping)] if isinstance(data, list) else []


# ---------------------------------------------------------------------------------------------------------------
# Model input
# ---------------------------------------------------------------------------------------------------------------


def feature_names(samples: Sequence[Sample], *, min_share: float = 0.5) -> list[str]:
    """Names present in at least ``min_share`` of the samples, sorted (stable model input order)."""
    counts: dict[str, int] = {}
    for s in samples:
        for name in s.features:
            counts[name] = counts.get(name, 0) + 1
    return sorted(n for n, c in counts.items() if c >= min_share * len(samples))


def matrix(samples: Sequence[Sample], names: Sequence[str]) -> np.ndarray:
    return np.array([[s.features.get(n, np.nan) for n in names] for s in samples], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------


class TrainStatus(StrEnum):
    TRAINED = "trained"
    NOT_ENOUGH_SAMPLES = "not enough samples"


@dataclass(frozen=True, slots=True)
class ModelReport:
    kind: ModelKind
    path: str
    active: bool
    reason: str
    metrics: ModelMetrics


@dataclass(frozen=True, slots=True)
class TrainReport:
    status: TrainStatus
    samples: int  # labelled samples
    min_samples: int
    records: int = 0  # journal records read
    train_samples: int = 0
    gap_samples: int = 0
    test_samples: int = 0
    train_period: tuple[str, str] | None = None
    test_period: tuple[str, str] | None = None
    features: tuple[str, ...] = ()
    models: tuple[ModelReport, ...] = ()
    seconds: float = 0.0
    trained_at: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def active(self) -> bool:
        return any(m.active for m in self.models)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for model, raw in zip(self.models, out["models"], strict=True):
            raw["metrics"]["auc_lower"] = model.metrics.auc_lower
        return out

    def text(self) -> str:
        """Human-readable report (CLI, /train reply)."""
        if self.status is TrainStatus.NOT_ENOUGH_SAMPLES:
            return (
                f"Not enough outcomes to train: {self.samples} labelled of {self.records} journal records "
                f"(need {self.min_samples}). No model is used until then; "
                "`python bot.py train --from-backtest` creates outcomes from the bundled history."
            )
        lines = [
            f"Trained on {self.samples} labelled outcomes ({len(self.features)} features) in {self.seconds:.1f} s.",
            f"Time-ordered split: train {self.train_samples} ({self.train_period[0]} .. {self.train_period[1]}), "
            f"purged {self.gap_samples} (outcome still open when the held-out period opens), "
            f"held-out {self.test_samples} ({self.test_period[0]} .. {self.test_period[1]}).",
        ]
        for m in self.models:
            x = m.metrics
            auc = "n/a" if x.auc is None else f"{x.auc:.3f} ± {x.auc_se:.3f}"
            if x.auc_lower is not None:
                auc += f" (lower bound {x.auc_lower:.3f} over {x.comparisons} comparisons)"
            kept = "n/a" if x.expectancy_kept is None else f"{x.expectancy_kept:+.3f} R"
            lines += [
                f"{m.kind.value} model ({Path(m.path).name}): {'ACTIVE' if m.active else 'not active'} - {m.reason}",
                f"  AUC {auc}; Brier {x.brier:.4f} (no-skill {x.brier_baseline:.4f}); threshold p >= {x.threshold:.3f}",
                f"  held-out expectancy: all {x.test_samples} signals {x.expectancy_all:+.3f} R "
                f"(win rate {x.win_rate_all:.1%}); kept {x.kept}: {kept}"
                + ("" if x.win_rate_kept is None else f" (win rate {x.win_rate_kept:.1%})"),
                "  reliability (p bin: n, mean p, observed): "
                + "; ".join(
                    f"{b.low:.1f}-{b.high:.1f}: {b.count}, {b.mean_predicted:.2f}, {b.observed_rate:.2f}"
                    for b in x.calibration
                    if b.count
                ),
            ]
        lines += list(self.notes)
        return "\n".join(lines)


def purged_split(samples: Sequence[Sample], *, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, int]:
    """(training indices, test_start) for time-sorted samples: test = ``[test_start, n)``; an earlier sample
    trains only when its outcome closed before the test period opens (the first test sample's signal time)."""
    n = len(samples)
    test_start = n - max(1, round(n * test_fraction))
    opens = samples[test_start].time
    return np.array([i for i in range(test_start) if _closed_before(samples[i], opens)], dtype=int), test_start


def _closed_before(sample: Sample, moment: datetime) -> bool:
    return sample.closed is not None and sample.closed < moment


def previous_trainings(data_dir: Path) -> int:
    """How many trainings earlier model files in ``data_dir`` record (0 without a model)."""
    headers = [read_header(Path(data_dir) / name) for name in MODEL_FILES.values()]
    return max((int(h.get("trainings") or 1) for h in headers if h), default=0)


def train(
    records: Iterable[Mapping[str, Any]],
    data_dir: Path,
    *,
    min_samples: int = MIN_SAMPLES,
    test_fraction: float = TEST_FRACTION,
    kinds: Sequence[ModelKind] = (ModelKind.SINGLE, ModelKind.ENSEMBLE),
    now: datetime | None = None,
) -> TrainReport:
    """Train, validate on the later period, save each model (active or not) into ``data_dir``; return the report.

    With fewer than ``min_samples`` labelled outcomes nothing is trained and existing model files are left alone.
    """
    import time as _time

    started = _time.perf_counter()
    records = list(records)
    samples = extract_samples(records)
    now = now or datetime.now(UTC)
    if len(samples) < min_samples:
        logger.info("training skipped: %d labelled outcomes < %d", len(samples), min_samples)
        return TrainReport(TrainStatus.NOT_ENOUGH_SAMPLES, len(samples), min_samples, records=len(records))
    names = feature_names(samples)
    x, y = matrix(samples, names), np.array([s.label for s in samples])
    r = np.array([s.r_multiple for s in samples])
    fit_rows, test_start = purged_split(samples, test_fraction=test_fraction)
    train_rate = float(y[fit_rows].mean()) if len(fit_rows) else 0.5
    notes = []
    if len(set(y[fit_rows].tolist())) < 2:
        notes.append("training period has a single outcome class: models predict a constant")
    reports = []
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    trainings = previous_trainings(data_dir) + 1
    for kind in kinds:
        probs = fit_predict(kind, x[fit_rows], y[fit_rows], x[test_start:])
        metrics = evaluate(
            y[test_start:],
            r[test_start:],
            probs,
            threshold=train_rate,
            train_rate=train_rate,
            comparisons=len(kinds) * trainings,
        )
        active, reason = activation(metrics)
        final = fit(kind, x, y)
        path = data_dir / MODEL_FILES[kind]
        header = {
            "format": FORMAT_VERSION,
            "kind": kind.value,
            "features": names,
            "versions": library_versions(),
            "trained_at": now.isoformat(),
            "samples": len(samples),
            "trainings": trainings,
            "metrics": {**asdict(metrics), "auc_lower": metrics.auc_lower},
            "active": active,
            "reason": reason,
            "threshold": metrics.threshold,
            "label": "TP1 reached before SL",
        }
        save_model(path, header, final)
        logger.info("saved %s model to %s (active=%s: %s)", kind.value, path, active, reason)
        reports.append(ModelReport(kind, str(path), active, reason, metrics))
    iso = lambda i: samples[i].time.strftime("%Y-%m-%d")  # noqa: E731
    return TrainReport(
        TrainStatus.TRAINED,
        len(samples),
        min_samples,
        records=len(records),
        train_samples=len(fit_rows),
        gap_samples=test_start - len(fit_rows),
        test_samples=len(samples) - test_start,
        train_period=(iso(int(fit_rows[0])), iso(int(fit_rows[-1]))) if len(fit_rows) else ("-", "-"),
        test_period=(iso(test_start), iso(len(samples) - 1)),
        features=tuple(names),
        models=tuple(reports),
        seconds=round(_time.perf_counter() - started, 2),
        trained_at=now.isoformat(),
        notes=tuple(notes),
    )


def save_model(path: Path, header: Mapping[str, Any], estimator: Any) -> None:
    """Write a model file (JSON header, then the estimator; format of ``ml_predictor``) atomically."""
    write_model(path, header, estimator)


# ---------------------------------------------------------------------------------------------------------------
# Retraining schedule
# ---------------------------------------------------------------------------------------------------------------


def should_retrain(
    journal_records: Iterable[Mapping[str, Any]],
    data_dir: Path,
    *,
    now: datetime | None = None,
    min_samples: int = MIN_SAMPLES,
) -> bool:
    """True when a (re)training is due.

    - no model file yet: when at least ``min_samples`` labelled outcomes exist;
    - else: when at least ``max(RETRAIN_NEW_OUTCOMES, 25% of the model's samples)`` new labelled outcomes arrived
      since the model was trained, or the model is older than ``RETRAIN_EVERY`` (7 days) and any new labelled
      outcome arrived (the weekly job).
    """
    labelled = len(extract_samples(journal_records))
    header = read_header(Path(data_dir) / MODEL_FILE)
    if header is None:
        return labelled >= min_samples
    trained_at = _parse_time(header.get("trained_at"))
    previous = int(header.get("samples") or 0)
    new = labelled - previous
    if new >= max(RETRAIN_NEW_OUTCOMES, math.ceil(0.25 * previous)):
        return True
    now = now or datetime.now(UTC)
    return new > 0 and (trained_at is None or now - trained_at >= RETRAIN_EVERY)


def retrain(settings, *, records: Iterable[Mapping[str, Any]] | None = None) -> TrainReport:
    """Train from the live journal and the cold-start journal (if present) in ``settings.bot_data_dir``.

    Live records win over cold-start records of the same signal id. A manual ``bot.py backtest`` journal is not
    training data (it may cover anything the user tried).

    The /train command and the retrain job call this (off the event loop); the bot then reloads its predictor.
    """
    data_dir = Path(settings.bot_data_dir)
    if records is None:
        records = merge_records(
            load_journal_records(data_dir / JOURNAL_FILE), load_journal_records(data_dir / COLD_START_JOURNAL_FILE)
        )
    return train(records, data_dir)


def merge_records(*journals: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Concatenate journals, keeping the first record of each signal id (live before backtest)."""
    seen: set[str] = set()
    out = []
    for journal in journals:
        for record in journal:
            key = str(_signal_part(record).get("id") or record.get("id") or "")
            if key and key in seen:
                continue
            seen.add(key)
            out.append(record)
    return out


# ---------------------------------------------------------------------------------------------------------------
# CLI: python bot.py train [--from-backtest] [--json]
# ---------------------------------------------------------------------------------------------------------------


def main(args: argparse.Namespace, settings) -> int:
    """``python bot.py train [--from-backtest [--fast]] [--json]``: 0 done (trained or not enough outcomes),
    1 when the cold-start backtest or the training failed (one line on stderr)."""
    data_dir = Path(settings.bot_data_dir)
    notes = []
    try:
        if getattr(args, "from_backtest", False):
            from research import backtest

            mode = backtest.Mode.FAST if getattr(args, "fast", False) else backtest.Mode.EXACT
            summary = backtest.cold_start(settings, journal_path=data_dir / COLD_START_JOURNAL_FILE, mode=mode)
            notes.append(summary)
            print(summary, file=sys.stderr)
        report = retrain(settings)
    except Exception as exc:  # a CLI: one readable line, the traceback in the debug log
        logger.debug("training failed", exc_info=True)
        print(f"train: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps({**report.to_json(), "verdict": verdict(report), "cold_start": notes}, default=str))
    else:
        print(verdict(report))  # the answer first, then the figures behind it
        print()
        print(report.text())
    return 0


def verdict(report: TrainReport) -> str:
    """The training's outcome in plain language, one sentence per model (``train`` prints it before the details)."""
    if report.status is TrainStatus.NOT_ENOUGH_SAMPLES:
        return (
            f"No model trained: {report.samples} labelled outcomes, {report.min_samples} needed; the bot runs without "
            "it. `python bot.py train --from-backtest` creates outcomes from the bundled history."
        )
    many = len(report.models) > 1
    return "\n".join(_model_verdict(m, f" ({m.kind.value})" if many else "") for m in report.models)


def _model_verdict(m: ModelReport, name: str) -> str:
    x = m.metrics
    if m.active:
        return (
            f"Model{name} activated: its held-out AUC {x.auc:.2f} (lower bound {x.auc_lower:.2f}) beats chance and "
            f"the {x.kept} signals it keeps averaged {x.expectancy_kept:+.2f} R against {x.expectancy_all:+.2f} R for "
            "all; the bot now uses it."
        )
    if x.auc is None:
        why = "the held-out period has only one kind of outcome, so its skill cannot be measured"
    elif x.auc_lower is None or x.auc_lower <= 0.5:
        why = f"its held-out AUC {x.auc:.2f} (lower bound {x.auc_lower or 0.0:.2f}) does not beat chance"
    elif m.reason.startswith("did not beat"):
        why = f"the signals it keeps averaged {x.expectancy_kept:+.2f} R, not above {x.expectancy_all:+.2f} R for all"
    else:
        why = f"it {m.reason}"  # keeps too few held-out signals to judge
    return f"Model{name} not activated: {why}; the bot runs without it."
