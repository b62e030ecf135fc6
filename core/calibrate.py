"""Calibrate the shipped models and build their ensemble, on the saved validation split; score both on test.

    python -m core.calibrate --data DIR

For each model: a temperature ``T`` fitted on validation (NLL of ``softmax((logits + logit_bias) / T)``),
its expected calibration error and reliability curve before and after, on validation and test
(``weights/calibration.json``). The ensemble averages the members' calibrated probabilities; per-class
offsets on the log of that average are chosen on validation exactly like a model's own decision rule
(:func:`core.scoring.metrics.choose_logit_bias`, macro-F1), then a temperature of its own; its metrics with
bootstrap intervals, per-image predictions and reliability go to ``weights/ensemble.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from core.cli import non_negative_int, positive_int
from core.config import DEFAULT_SPLIT_FILE, find_default_data_dir, weights_dir
from core.data.cache import load_native_images
from core.data.catalog import DEFAULT_LABEL_COLUMN, load_styles
from core.data.split import get_or_make_split
from core.models.card import WeightsError
from core.models.registry import REGISTRY
from core.prediction.served import ServedModel
from core.scoring.calibration import (
    CALIBRATION_FILE,
    ENSEMBLE_FILE,
    ENSEMBLE_NAME,
    N_BINS,
    ensemble_scores,
    fit_temperature,
    nll,
    reliability,
    softmax,
)
from core.scoring.metrics import choose_logit_bias, classification_report, format_report, majority_baseline

log = logging.getLogger(__name__)
SPLITS = ("val", "test")


def calibrate_model(scores: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict:
    """Temperature on validation ``scores`` (logits + the rule's offsets); NLL, ECE and reliability curves
    before (T = 1) and after, per split."""
    t = fit_temperature(scores["val"], labels["val"])
    out: dict = {"temperature": round(t, 5), "nll": {}, "ece": {}, "reliability": {}}
    for s in SPLITS:
        before, after = reliability(softmax(scores[s]), labels[s]), reliability(softmax(scores[s] / t), labels[s])
        out["nll"][s] = {"before": round(nll(scores[s], labels[s]), 5), "after": round(nll(scores[s], labels[s], t), 5)}
        out["ece"][s] = {"before": before["ece"], "after": after["ece"]}
        out["reliability"][s] = {"before": before, "after": after}
    return out


def build_ensemble(
    member_probs: dict[str, dict[str, np.ndarray]],
    labels: dict[str, np.ndarray],
    ids: dict[str, list[int]],
    classes: list[str],
    n_boot: int = 1000,
    seed: int = 42,
) -> dict:
    """The ensemble of ``member_probs`` (model → split → calibrated N×C): its rule and temperature chosen on
    validation, its metrics (as a card's), predictions and reliability on every split."""
    scores = {s: ensemble_scores([p[s] for p in member_probs.values()]) for s in SPLITS}
    bias, objective = choose_logit_bias(scores["val"], labels["val"])
    ruled = {s: scores[s] + np.asarray(bias) for s in SPLITS}
    t = fit_temperature(ruled["val"], labels["val"])
    doc: dict = {
        "name": ENSEMBLE_NAME,
        "members": list(member_probs),
        "classes": list(classes),
        "combine": "mean of the members' calibrated probabilities (each model's rule and temperature applied)",
        "decision_rule": {
            "kind": "argmax of log(mean probability) + per-class offsets chosen on the validation split",
            "logit_bias": bias,
            "objective": "macro-F1 on validation (ties: smallest offsets)",
            "validation_objective": round(objective, 5),
        },
        "temperature": round(t, 5),
        "metrics": {},
        "predictions": {},
        "nll": {},
        "ece": {},
        "reliability": {},
    }
    for s in SPLITS:
        pred = ruled[s].argmax(1)
        rep = classification_report(labels[s], pred, classes, n_boot=n_boot, seed=seed)
        plain = classification_report(labels[s], scores[s].argmax(1), classes, n_boot=0)
        plain.pop("ci95", None)
        rep["argmax_without_rule"] = plain
        rep["majority_class_reference"] = majority_baseline(labels[s], classes)
        doc["metrics"][s] = rep
        doc["predictions"][s] = {"ids": [int(i) for i in ids[s]], "pred": "".join(str(int(k)) for k in pred)}
        before, after = reliability(softmax(ruled[s]), labels[s]), reliability(softmax(ruled[s] / t), labels[s])
        doc["nll"][s] = {"before": round(nll(ruled[s], labels[s]), 5), "after": round(nll(ruled[s], labels[s], t), 5)}
        doc["ece"][s] = {"before": before["ece"], "after": after["ece"]}
        doc["reliability"][s] = {"before": before, "after": after}
        log.info("%s", format_report(rep, f"== ensemble on {s} =="))
    return doc


def calibrate(
    data_dir: Path,
    folder: Path | None = None,
    split_file: Path = DEFAULT_SPLIT_FILE,
    n_boot: int = 1000,
    names: Sequence[str] = tuple(REGISTRY),
) -> tuple[dict, dict]:
    """Fit every model's temperature and the ensemble on ``data_dir``'s saved validation split; write
    ``calibration.json`` and ``ensemble.json`` into ``folder`` (default: the weights folder). Returns both."""
    folder = Path(folder or weights_dir())
    served = {n: ServedModel.load(n, folder) for n in names}
    first = next(iter(served.values())).card
    classes = list(first.classes)
    if any(list(m.card.classes) != classes for m in served.values()):
        raise WeightsError("the models' cards list different classes: they cannot be averaged")
    catalog = load_styles(data_dir, classes, first.data.get("label_column", DEFAULT_LABEL_COLUMN))
    split = get_or_make_split(catalog, split_file, first.training.get("seed", 42))
    ids = {s: list(split[s]) for s in SPLITS}
    if not all(ids.values()):
        raise WeightsError(f"the saved split {split_file} has no validation or test image in {data_dir}")
    label_of = catalog.label_of()
    labels = {s: np.array([label_of[i] for i in ids[s]], dtype=np.int64) for s in SPLITS}
    images = {s: load_native_images(catalog, ids[s]) for s in SPLITS}
    calibration: dict = {
        "what": "temperature scaling per model, fitted on the validation split (NLL of softmax((logits + "
        "logit_bias) / T)); the predicted class is unchanged. ECE: top-label, "
        f"{N_BINS} equal-width confidence bins.",
        "command": "python -m core.calibrate --data DIR",
        "bins": N_BINS,
        "models": {},
    }
    member_probs: dict[str, dict[str, np.ndarray]] = {}
    for name, m in served.items():
        bias = np.asarray(m.card.logit_bias or [0.0] * len(classes))
        scores = {}
        for s in SPLITS:
            log.info("%s: logits of %d %s images", name, len(ids[s]), s)
            scores[s] = m.logits(images[s]).astype(np.float64) + bias
        entry = calibrate_model(scores, labels)
        entry["weights_sha256"] = m.card.weights["sha256"]
        calibration["models"][name] = entry
        member_probs[name] = {s: softmax(scores[s] / entry["temperature"]) for s in SPLITS}
        log.info(
            "%s: T = %.3f, val ECE %s, test ECE %s",
            name,
            entry["temperature"],
            entry["ece"]["val"],
            entry["ece"]["test"],
        )
    ensemble = build_ensemble(member_probs, labels, ids, classes, n_boot, first.training.get("seed", 42))
    ensemble["member_sha256"] = {n: m.card.weights["sha256"] for n, m in served.items()}
    ensemble["member_temperatures"] = {n: calibration["models"][n]["temperature"] for n in served}
    ensemble["command"] = calibration["command"]
    (folder / CALIBRATION_FILE).write_text(json.dumps(calibration, indent=1) + "\n")
    (folder / ENSEMBLE_FILE).write_text(json.dumps(ensemble, indent=1) + "\n")
    return calibration, ensemble


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(
        prog="python -m core.calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=None, help="dataset folder, Kaggle layout (default: auto-detect)")
    p.add_argument("--weights", type=Path, default=None, help="weights folder, read and written (default: weights/)")
    p.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT_FILE, help="saved split (weights/split.json)")
    p.add_argument("--bootstrap", type=non_negative_int, default=1000, help="resamples for the 95%% intervals")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads (default 2)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    data = args.data or find_default_data_dir()
    if data is None:
        p.error("no --data given and no dataset found")
    try:
        calibration, ensemble = calibrate(data, args.weights, args.split_file, args.bootstrap)
    except (WeightsError, FileNotFoundError) as exc:
        p.exit(2, f"{p.prog}: error: {exc}\n")
    for name, entry in calibration["models"].items():
        print(f"{name}: T={entry['temperature']:.3f} ECE val {entry['ece']['val']} test {entry['ece']['test']}")  # noqa: T201
    for s in SPLITS:
        m = ensemble["metrics"][s]
        print(f"ensemble {s}: balanced acc. {m['balanced_accuracy']:.3f} macro-F1 {m['macro_f1']:.3f}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
