"""The ML estimators: which scikit-learn pipelines the training builds and how they are fitted.

scikit-learn is imported inside the functions: the bot's start and the CLI's other commands never pay for it.

Every fitted model's probability is calibrated (``fit``): the logistic regression alone is calibrated only when
its linear log-odds are right, and a soft vote of trees is not calibrated at all.
"""

from __future__ import annotations

import logging
import platform
from enum import StrEnum

import numpy as np

logger = logging.getLogger(__name__)

CALIBRATION_FOLDS = 3  # time-ordered folds of the probability calibration
ISOTONIC_MIN = 1000  # samples from which isotonic calibration replaces Platt scaling (sklearn's advice)


class ModelKind(StrEnum):
    SINGLE = "single"
    ENSEMBLE = "ensemble"


def build_model(kind: ModelKind):
    """A fresh, unfitted scikit-learn Pipeline (deterministic: random_state=0)."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, VotingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    def logistic() -> Pipeline:
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
                ("model", LogisticRegression(C=0.5, max_iter=2000)),
            ]
        )

    if kind is ModelKind.SINGLE:
        return logistic()
    trees = [
        (
            "gb",
            GradientBoostingClassifier(
                n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8, random_state=0
            ),
        ),
        ("rf", RandomForestClassifier(n_estimators=200, min_samples_leaf=10, random_state=0, n_jobs=1)),
    ]
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("vote", VotingClassifier([*trees, ("lr", logistic())], voting="soft")),
        ]
    )


def library_versions() -> dict[str, str]:
    import sklearn

    return {"python": platform.python_version(), "sklearn": sklearn.__version__, "numpy": np.__version__}


class Constant:
    """Stand-in estimator when a training set has a single class: predicts that class's rate."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack([np.full(len(x), 1 - self.rate), np.full(len(x), self.rate)])


def calibration_method(n: int) -> str:
    """Isotonic from ``ISOTONIC_MIN`` samples on (it fits any monotone distortion), Platt's sigmoid below."""
    return "isotonic" if n >= ISOTONIC_MIN else "sigmoid"


def fit(kind: ModelKind, x: np.ndarray, y: np.ndarray, *, calibrate: bool = True):
    """The model of ``kind`` fitted on time-sorted ``(x, y)``, its probability calibrated on the same samples.

    Calibration (``CalibratedClassifierCV`` over ``TimeSeriesSplit(CALIBRATION_FOLDS)``): each fold's model is
    fitted on earlier samples and its calibrator on the next later block, never on anything outside ``(x, y)``;
    the prediction averages the folds. When a fold's earlier samples hold a single class the model stays
    uncalibrated (logged); a single class overall gives the ``Constant`` rate.
    """
    if len(set(y.tolist())) < 2:
        return Constant(float(y.mean()) if len(y) else 0.5)
    if not calibrate:
        return build_model(kind).fit(x, y)
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import TimeSeriesSplit

    folds = TimeSeriesSplit(CALIBRATION_FOLDS)
    if any(len(set(y[train].tolist())) < 2 for train, _ in folds.split(x)):
        logger.warning("a calibration fold has a single outcome class: %s model left uncalibrated", kind.value)
        return build_model(kind).fit(x, y)
    method = calibration_method(len(y))
    return CalibratedClassifierCV(build_model(kind), method=method, cv=folds).fit(x, y)


def fit_predict(kind: ModelKind, x_train, y_train, x_test) -> np.ndarray:
    model = fit(kind, x_train, y_train)
    return np.asarray(model.predict_proba(x_test))[:, 1]
