"""Calibration without Streamlit: temperature scaling fitted on validation, expected calibration error and
reliability curves (scikit-learn's :func:`sklearn.calibration.calibration_curve`), and the ensemble of the
shipped models (averaged calibrated probabilities with its own validation-chosen decision rule).

A temperature divides the logits *after* the decision rule's offsets, so the predicted class never changes:
``softmax((z + b) / T)`` has the argmax of ``z + b`` for every ``T > 0``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.calibration import calibration_curve

from core.config import weights_dir

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"  # per model: temperature, ECE and reliability curves before/after
ENSEMBLE_FILE = "ensemble.json"  # the ensemble's rule, metrics and per-image predictions
ENSEMBLE_NAME = "ensemble"
ENSEMBLE_TITLE = "Ensemble of all three"
N_BINS = 10  # reliability bins of equal width over the top-class confidence
T_BOUNDS = (0.05, 20.0)  # the temperatures searched


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def calibrate_probs(probs: np.ndarray, temperature: float | None) -> np.ndarray:
    """Probabilities ``softmax(z + b)`` turned into ``softmax((z + b) / T)`` (the softmax forgets the shift
    ``log p = z + b - lse``); ``None`` or 1 leaves them as they are. Works on one row or many."""
    if temperature is None or temperature == 1.0:
        return probs
    p = np.asarray(probs, dtype=np.float64)
    one = p.ndim == 1
    out = softmax(np.log(np.clip(np.atleast_2d(p), 1e-300, None)) / float(temperature))
    return out[0] if one else out


def nll(scores: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under ``softmax(scores / T)``."""
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def fit_temperature(scores: np.ndarray, y: Sequence[int]) -> float:
    """The temperature minimising the validation NLL of ``softmax(scores / T)`` (scipy's bounded Brent
    search on ``log T``); ``scores`` are the logits plus the decision rule's offsets."""
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return 1.0
    lo, hi = np.log(T_BOUNDS)
    res = minimize_scalar(lambda t: nll(scores, y, float(np.exp(t))), bounds=(lo, hi), method="bounded")
    return float(np.exp(res.x))


def reliability(probs: np.ndarray, y: Sequence[int], n_bins: int = N_BINS) -> dict:
    """Top-label reliability: per non-empty confidence bin (``n_bins`` of equal width) the mean confidence,
    the accuracy and the count, and the expected calibration error (the count-weighted mean gap). The
    curve is sklearn's ``calibration_curve`` of "the predicted class is right" against its confidence."""
    y = np.asarray(y, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if len(y) == 0:
        return {"confidence": [], "accuracy": [], "count": [], "ece": 0.0, "n": 0}
    conf = probs.max(axis=1)
    right = (probs.argmax(axis=1) == y).astype(int)
    ids = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], conf)  # calibration_curve's bins
    counts = np.bincount(ids, minlength=n_bins)
    bins = [b for b in range(n_bins) if counts[b]]
    if right.min() != right.max():
        acc, mean_conf = calibration_curve(right, conf, n_bins=n_bins, strategy="uniform")
    else:  # calibration_curve wants both outcomes; with one, every bin's accuracy is that outcome
        acc = np.array([right[ids == b].mean() for b in bins])
        mean_conf = np.array([conf[ids == b].mean() for b in bins])
    ece = float(np.sum(np.abs(acc - mean_conf) * counts[bins]) / len(y))
    return {
        "confidence": [round(float(v), 5) for v in mean_conf],
        "accuracy": [round(float(v), 5) for v in acc],
        "count": [int(counts[b]) for b in bins],
        "ece": round(ece, 5),
        "n": int(len(y)),
    }


def ensemble_scores(member_probs: Sequence[np.ndarray]) -> np.ndarray:
    """The log of the members' averaged (calibrated) probabilities: the ensemble's scores, to which its
    decision rule adds per-class offsets as a model's rule does to its logits."""
    mean = np.mean(np.stack([np.asarray(p, dtype=np.float64) for p in member_probs]), axis=0)
    return np.log(np.clip(mean, 1e-300, None))


def _read(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        log.warning("%s is unreadable (%s): ignored", path, exc.__class__.__name__)
        return None
    return doc if isinstance(doc, dict) else None


def load_calibration(folder: Path | None = None) -> dict:
    """``calibration.json`` of the weights folder (``{}`` when absent or unreadable)."""
    return _read(Path(folder or weights_dir()) / CALIBRATION_FILE) or {}


def temperature_for(name: str, sha256: str | None, folder: Path | None = None) -> float | None:
    """The temperature fitted for model ``name``, when the calibration file was fitted on these weights
    (same sha256); None otherwise (the model is then shown uncalibrated)."""
    entry = load_calibration(folder).get("models", {}).get(name) or {}
    t = entry.get("temperature")
    if not isinstance(t, (int, float)) or not (T_BOUNDS[0] <= t <= T_BOUNDS[1]):
        return None
    if sha256 and entry.get("weights_sha256") and entry["weights_sha256"] != sha256:
        log.warning("calibration of %s was fitted on other weights: shown uncalibrated", name)
        return None
    return float(t)


class Ensemble:
    """The shipped ensemble (``weights/ensemble.json``): members, their temperatures, the decision rule on
    the log of the averaged calibrated probabilities, its own temperature, metrics and per-image predictions."""

    def __init__(self, doc: Mapping) -> None:
        self.doc = dict(doc)
        self.members: list[str] = list(doc["members"])
        self.classes: list[str] = list(doc["classes"])
        self.logit_bias: list[float] = [float(b) for b in doc["decision_rule"]["logit_bias"]]
        self.temperature: float = float(doc.get("temperature", 1.0))
        self.metrics: dict = dict(doc.get("metrics", {}))
        self.predictions: dict = dict(doc.get("predictions", {}))
        self.member_sha256: dict = dict(doc.get("member_sha256", {}))

    def combine(self, member_probs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Ensemble probabilities (N×C) from every member's calibrated probabilities (N×C each)."""
        scores = ensemble_scores([member_probs[m] for m in self.members]) + np.asarray(self.logit_bias)
        return softmax(scores / self.temperature)

    def predict(self, member_probs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ensemble's classes."""
        return self.combine(member_probs).argmax(axis=1)


def load_ensemble(folder: Path | None = None) -> Ensemble | None:
    """The ensemble of the weights folder, or None when it has none (or an unreadable one)."""
    doc = _read(Path(folder or weights_dir()) / ENSEMBLE_FILE)
    if doc is None:
        return None
    try:
        ens = Ensemble(doc)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("%s is malformed (%s): no ensemble", ENSEMBLE_FILE, exc.__class__.__name__)
        return None
    if len(ens.logit_bias) != len(ens.classes) or not ens.members or ens.temperature <= 0:
        log.warning("%s does not fit its classes: no ensemble", ENSEMBLE_FILE)
        return None
    return ens
