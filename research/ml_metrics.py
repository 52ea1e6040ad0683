"""Held-out metrics of the ML models and the activation rule (see ml_engine's docstring for the definitions).

Pure numpy: ROC AUC with its Hanley-McNeil standard error, Brier scores, a reliability table and the expectancy of
the signals a model keeps; ``activation`` decides whether a validated model may be used by the live bot.

Every training compares several models, and every retrain looks again: the AUC's lower bound is Bonferroni-
corrected, ``AUC - z(1 - 0.05 / comparisons) * SE``, where ``comparisons`` counts every model evaluated by this and
all earlier trainings in the data directory (2 models, first training: z = 1.96; third training: 6, z = 2.39).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

logger = logging.getLogger(__name__)

ALPHA = 0.05  # one-sided family-wise error rate of the activation rule's AUC test


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    low: float  # probability bin [low, high)
    high: float
    count: int
    mean_predicted: float | None
    observed_rate: float | None


@dataclass(frozen=True, slots=True)
class ModelMetrics:
    """Held-out (later period) metrics of one model. Expectancies in R per signal."""

    test_samples: int
    auc: float | None
    auc_se: float | None
    brier: float
    brier_baseline: float  # always predicting the training win rate
    threshold: float
    kept: int
    win_rate_all: float
    win_rate_kept: float | None
    expectancy_all: float
    expectancy_kept: float | None
    calibration: tuple[CalibrationBin, ...] = ()
    comparisons: int = 1  # models and retrains compared so far: the Bonferroni divisor of ALPHA

    @property
    def auc_z(self) -> float:
        """The one-sided normal quantile of ``1 - ALPHA / comparisons`` (1.645 for one comparison)."""
        return NormalDist().inv_cdf(1 - ALPHA / max(1, self.comparisons))

    @property
    def auc_lower(self) -> float | None:
        """One-sided lower confidence bound of the AUC, Bonferroni-corrected for ``comparisons``."""
        return None if self.auc is None or self.auc_se is None else self.auc - self.auc_z * self.auc_se


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Mann-Whitney ROC AUC with ties counted half; None when a class is absent."""
    labels = np.asarray(labels, dtype=int)
    n1, n0 = int(labels.sum()), int(len(labels) - labels.sum())
    if n1 == 0 or n0 == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = np.asarray(scores)[order]
    i = 0
    while i < len(sorted_scores):  # average ranks over ties
        j = i
        while j + 1 < len(sorted_scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> tuple[CalibrationBin, ...]:
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = idx == b
        count = int(mask.sum())
        out.append(
            CalibrationBin(
                low=round(float(edges[b]), 2),
                high=round(float(edges[b + 1]), 2),
                count=count,
                mean_predicted=round(float(probs[mask].mean()), 4) if count else None,
                observed_rate=round(float(labels[mask].mean()), 4) if count else None,
            )
        )
    return tuple(out)


def evaluate(
    labels: np.ndarray,
    r: np.ndarray,
    probs: np.ndarray,
    *,
    threshold: float,
    train_rate: float,
    comparisons: int = 1,
) -> ModelMetrics:
    """Held-out metrics of predicted win probabilities ``probs`` against ``labels`` and R multiples ``r``."""
    labels = np.asarray(labels, dtype=int)
    auc = roc_auc(labels, probs)
    se = auc_standard_error(auc, int(labels.sum()), int(len(labels) - labels.sum())) if auc is not None else None
    kept = probs >= threshold
    n_kept = int(kept.sum())
    return ModelMetrics(
        test_samples=len(labels),
        auc=None if auc is None else round(auc, 4),
        auc_se=None if se is None else round(se, 4),
        brier=round(float(np.mean((probs - labels) ** 2)), 4),
        brier_baseline=round(float(np.mean((train_rate - labels) ** 2)), 4),
        threshold=round(float(threshold), 4),
        kept=n_kept,
        win_rate_all=round(float(labels.mean()), 4),
        win_rate_kept=round(float(labels[kept].mean()), 4) if n_kept else None,
        expectancy_all=round(float(r.mean()), 4),
        expectancy_kept=round(float(r[kept].mean()), 4) if n_kept else None,
        calibration=reliability(labels, probs),
        comparisons=comparisons,
    )


def activation(metrics: ModelMetrics) -> tuple[bool, str]:
    """(active, reason): the activation rule of the module docstring."""
    if metrics.auc is None:
        return False, "held-out period has a single outcome class"
    lower = metrics.auc_lower
    if lower is None or lower <= 0.5:
        return False, (
            f"AUC {metrics.auc:.3f} not significantly above 0.5 (lower bound {lower:.3f}, "
            f"Bonferroni over {metrics.comparisons} comparisons)"
        )
    min_kept = max(10, math.ceil(0.1 * metrics.test_samples))
    if metrics.kept < min_kept:
        return False, f"keeps only {metrics.kept} of {metrics.test_samples} held-out signals (< {min_kept})"
    if metrics.expectancy_kept is None or metrics.expectancy_kept <= metrics.expectancy_all:
        return False, (
            f"did not beat baseline: kept {metrics.expectancy_kept:+.3f} R vs all {metrics.expectancy_all:+.3f} R"
        )
    return True, (
        f"beats baseline: kept {metrics.expectancy_kept:+.3f} R vs all {metrics.expectancy_all:+.3f} R per signal"
    )
