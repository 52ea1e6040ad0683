"""Runtime side of the ML: load the trained models once, turn a signal's features into a win probability.

Rules
-----
- Model files are only ever read from the bot's data directory (``BOT_DATA_DIR``; a path or symlink leading
  outside it is refused): ``ml_ensemble.pkl`` and ``ml_model.pkl`` written by ``ml_engine``. A file is ``MAGIC``,
  a 4-byte big-endian length, a JSON header (features, library versions, training date, samples, held-out
  metrics, ``active``, and the sha256 and size of the payload), then the pickled estimator. Nothing is unpickled
  before the header is read as JSON and checked: the format, the features, the scikit-learn major.minor version
  (equal to the running one) and the payload's sha256. The payload is then unpickled with an allow-list (estimator
  classes of scikit-learn and ``research.ml_models``, numpy arrays): a file naming any other callable is refused
  before that callable runs. Files of the old all-pickle format are refused unread (retrain).
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

import hashlib
import io
import json
import logging
import math
import os
import pickle
import struct
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

logger = logging.getLogger(__name__)

MODEL_FILE = "ml_model.pkl"
ENSEMBLE_FILE = "ml_ensemble.pkl"
FORMAT_VERSION = 2
MAGIC = b"ICT-SIGNAL-BOT-MODEL\n"
MAX_HEADER_BYTES = 1 << 20
REBUILDERS = {  # functions a numpy/scikit-learn pickle calls to rebuild arrays and random states
    ("copyreg", "_reconstructor"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
}
CLASS_MODULES = ("sklearn.", "numpy.dtypes", "numpy.random._", "research.ml_models")  # classes only
CLASSES = {("numpy", "dtype"), ("numpy", "ndarray"), ("builtins", "slice"), ("builtins", "set")}


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


# ---------------------------------------------------------------------------------------------------------------
# The model file: MAGIC, 4-byte header length, JSON header, pickled estimator
# ---------------------------------------------------------------------------------------------------------------


class ModelFileError(Exception):
    """A model file that must not be (or cannot be) loaded; ``str(exc)`` says why in one line."""


def write_model(path: Path, header: Mapping[str, Any], estimator: Any) -> None:
    """Write MAGIC, the JSON header (with the payload's sha256 and size) and the pickled estimator, atomically."""
    payload = pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
    meta = {**header, "payload_sha256": hashlib.sha256(payload).hexdigest(), "payload_bytes": len(payload)}
    head = json.dumps(meta, default=str).encode("utf-8")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(MAGIC + struct.pack(">I", len(head)) + head + payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_header(handle: BinaryIO) -> dict[str, Any]:
    """The JSON header at the start of an open model file; ModelFileError for anything else (nothing unpickled)."""
    if handle.read(len(MAGIC)) != MAGIC:
        raise ModelFileError("unreadable: unrecognised model file format (not written by this version: retrain)")
    size_bytes = handle.read(4)
    size = struct.unpack(">I", size_bytes)[0] if len(size_bytes) == 4 else -1
    if not 0 < size <= MAX_HEADER_BYTES:
        raise ModelFileError("model file header is truncated or oversized")
    try:
        header = json.loads(handle.read(size).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ModelFileError("model file header is not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise ModelFileError("unreadable: unrecognised model file format version")
    return header


def read_header(path: Path) -> dict[str, Any] | None:
    """The JSON header of a model file, or None when missing or not a model file of this version (logged)."""
    try:
        with open(path, "rb") as handle:
            return _read_header(handle)
    except FileNotFoundError:
        return None
    except (OSError, ModelFileError) as exc:
        logger.warning("model header %s unreadable: %s", path, exc)
        return None


class _AllowListUnpickler(pickle.Unpickler):
    """Unpickles only estimator classes (scikit-learn, numpy arrays, research.ml_models) and numpy's rebuilders.

    A pickle runs code through the callables it names; naming anything else (``os.system``, ``builtins.eval``,
    ``numpy.load``) raises before it is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        if "." in name:  # a dotted name would reach through an allowed module into anything it imports
            raise pickle.UnpicklingError(f"refused {module}.{name}")
        if (module, name) in REBUILDERS:
            return super().find_class(module, name)
        if not (module.startswith(CLASS_MODULES) or (module, name) in CLASSES):
            raise pickle.UnpicklingError(f"refused {module}.{name}")
        found = super().find_class(module, name)
        if not isinstance(found, type):
            raise pickle.UnpicklingError(f"refused {module}.{name} (not a class)")
        return found


def read_model(path: Path, *, data_dir: Path | None = None) -> LoadedModel | None:
    """Read one model file; None when missing; a LoadedModel with ``problem`` set when unusable. Never raises.

    Checked before anything is unpickled: the file lies inside ``data_dir`` (symlinks resolved), its JSON header
    (format, features, scikit-learn major.minor) and the sha256 of the payload. The payload is then unpickled with
    an allow-list of estimator classes.
    """
    path = Path(path)
    home = Path(data_dir if data_dir is not None else path.parent).resolve()
    header: dict[str, Any] = {}
    try:
        if not path.resolve().is_relative_to(home):
            return LoadedModel(path, {}, None, f"refused: outside the data directory {home}")
        with open(path, "rb") as handle:
            header = _read_header(handle)
            problem = _header_problem(header)
            if problem:
                return LoadedModel(path, header, None, problem)
            payload = handle.read(int(header.get("payload_bytes") or 0) + 1)
        if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
            return LoadedModel(path, header, None, "refused: the estimator does not match the header's sha256")
        estimator = _AllowListUnpickler(io.BytesIO(payload)).load()
    except FileNotFoundError:
        return None
    except ModelFileError as exc:
        return LoadedModel(path, header, None, str(exc))
    except Exception as exc:  # any unpickling failure means a corrupt or foreign file: never crash the bot
        return LoadedModel(path, header, None, f"unreadable ({type(exc).__name__}: {exc})"[:200])
    if not hasattr(estimator, "predict_proba"):
        return LoadedModel(path, header, None, "file holds no probabilistic model")
    return LoadedModel(path, header, estimator)


def _header_problem(header: Mapping[str, Any]) -> str:
    """Why a (well-formed) header's estimator must not be loaded, or ""."""
    import sklearn  # here, not at import: the bot starts without scikit-learn until a model exists

    trained_with = (header.get("versions") or {}).get("sklearn", "?")
    if _major_minor(trained_with) != _major_minor(sklearn.__version__):
        return f"stale: trained with scikit-learn {trained_with}, running {sklearn.__version__}"
    if not header.get("features"):
        return "model file lists no features"
    if not isinstance(header.get("payload_sha256"), str) or not isinstance(header.get("payload_bytes"), int):
        return "model file header has no payload checksum"
    return ""


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
            model = read_model(self.data_dir / name, data_dir=self.data_dir)
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
