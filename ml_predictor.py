"""Runtime side of the ML: load the trained models once, turn a signal's features into a win probability.

Rules
-----
- Model files are only ever read from the bot's data directory (``BOT_DATA_DIR``): ``ml_ensemble.pkl`` and
  ``ml_model.pkl`` written by ``ml_engine``. Each file is a pickle stream of a plain header dict (features,
  library versions, training date, samples, held-out metrics, ``active``) followed by the estimator; the estimator
  is only unpickled when the header's scikit-learn major.minor version equals the running one.
- The probability comes from the ensemble when it is active, else from the single model when it is active, else
  there is none (``predict`` returns None). A model that did not beat the no-model baseline on its held-out period
  is loaded for ``status()`` but never used.
- A missing, stale (library version mismatch), unreadable/corrupt model, or features that do not match the model's
  feature list, is a logged no-op: ``predict`` returns None and the bot shows the rule confidence alone.
- The probability is ``P(TP1 reached before SL)``. The displayed confidence blends it with the rule confidence in
  ``Signal.confidence``: ``0.6 * rule_confidence + 0.4 * 100 * p`` (0..100).

``load()`` does file I/O and unpickling: call it once, off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import logging
import math
import pickle
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MODEL_FILE = "ml_model.pkl"
ENSEMBLE_FILE = "ml_ensemble.pkl"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class LoadedModel:
    path: Path
    header: Mapping[str, Any]
    estimator: Any | None  # None when stale/unusable
    problem: str = ""  # why it is not usable ("" when usable)

    @property
    def kind(self) -> str:
        return str(self.header.get("kind", "model"))

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.header.get("features") or ())

    @property
    def active(self) -> bool:
        return self.estimator is not None and not self.problem and bool(self.header.get("active"))


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:2])


def read_model(path: Path) -> LoadedModel | None:
    """Read one model file; None when missing; a LoadedModel with ``problem`` set when unusable. Never raises."""
    try:
        with open(path, "rb") as handle:
            header = pickle.load(handle)
            if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
                return LoadedModel(path, {}, None, "unrecognised model file format")
            import sklearn

            trained_with = (header.get("versions") or {}).get("sklearn", "?")
            if _major_minor(trained_with) != _major_minor(sklearn.__version__):
                return LoadedModel(
                    path,
                    header,
                    None,
                    f"stale: trained with scikit-learn {trained_with}, running {sklearn.__version__}",
                )
            if not header.get("features"):
                return LoadedModel(path, header, None, "model file lists no features")
            estimator = pickle.load(handle)
    except FileNotFoundError:
        return None
    except Exception as exc:  # any unpickling failure means a corrupt or foreign file: never crash the bot
        return LoadedModel(path, {}, None, f"unreadable ({type(exc).__name__}: {exc})"[:200])
    if not hasattr(estimator, "predict_proba"):
        return LoadedModel(path, header, None, "file holds no probabilistic model")
    return LoadedModel(path, header, estimator)


class MLPredictor:
    """Win probability for a signal's features from the active model in ``data_dir`` (or None)."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self._models: list[LoadedModel] = []
        self._loaded = False
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def load(self) -> None:
        """(Re)read the model files. Blocking file I/O: call off the event loop. Never raises."""
        models = []
        for name in (ENSEMBLE_FILE, MODEL_FILE):
            model = read_model(self.data_dir / name)
            if model is None:
                continue
            if model.problem:
                logger.warning("ML model %s not used: %s", model.path, model.problem)
            elif not model.active:
                logger.info("ML model %s loaded but not active: %s", model.path, model.header.get("reason", ""))
            else:
                logger.info("ML model %s active (%s)", model.path, model.header.get("reason", ""))
            models.append(model)
        with self._lock:
            self._models = models
            self._loaded = True
            self._warned = set()

    @property
    def model(self) -> LoadedModel | None:
        """The model used for predictions: the active ensemble, else the active single model, else None."""
        return next((m for m in self._models if m.active), None)

    @property
    def active(self) -> bool:
        return self.model is not None

    def predict(self, features: Mapping[str, float]) -> float | None:
        """P(TP1 before SL) in 0..1, or None without an active model or when the features do not fit it."""
        model = self.model
        if model is None:
            return None
        missing = [name for name in model.features if name not in features]
        if missing:
            self._warn_once(
                f"missing:{','.join(missing)}",
                "ML model %s expects features %s that the signal lacks; no ML probability (retrain the model)",
                model.path.name,
                missing[:5],
            )
            return None
        try:
            row = [[float(features[name]) for name in model.features]]
            p = float(model.estimator.predict_proba(row)[0][1])
        except Exception as exc:  # a broken estimator must not break a signal
            self._warn_once(f"error:{type(exc).__name__}", "ML prediction failed with %s: %s", model.path.name, exc)
            return None
        if not math.isfinite(p):
            return None
        return min(max(p, 0.0), 1.0)

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)

    def status(self) -> str:
        """One line for /health, e.g. "ensemble model trained 2026-11-25 on 812 samples, AUC 0.61, active"."""
        if not self._loaded:
            return "model not loaded yet"
        if not self._models:
            return "no model"
        parts = []
        for m in self._models:
            name = m.path.name
            if m.problem and not m.header:
                parts.append(f"{name}: {m.problem}")
                continue
            h = m.header
            auc = (h.get("metrics") or {}).get("auc")
            desc = (
                f"{m.kind} model trained {str(h.get('trained_at', '?'))[:10]} on {h.get('samples', '?')} samples, "
                f"AUC {'n/a' if auc is None else f'{auc:.2f}'}"
            )
            if m.problem:
                parts.append(f"{desc}, not used: {m.problem}")
            elif m.active:
                parts.append(f"{desc}, active" + (" (in use)" if m is self.model else ""))
            else:
                parts.append(f"{desc}, not active: {h.get('reason') or 'did not beat baseline'}")
        return "; ".join(parts)
