"""Temperature scaling, ECE and reliability curves, and the ensemble: fitted on validation, the class unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from core import calibrate
from core.models.registry import REGISTRY
from core.prediction.served import ServedModel
from core.scoring.calibration import (
    calibrate_probs,
    fit_temperature,
    load_ensemble,
    nll,
    reliability,
    softmax,
    temperature_for,
)

ROOT = Path(__file__).resolve().parent.parent


def overconfident(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores three times too sharp: the labels are drawn from softmax(z), the scores are 3z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(z)])
    return 3 * z, y


def test_temperature_undoes_overconfidence_and_lowers_nll_and_ece() -> None:
    scores, y = overconfident()
    t = fit_temperature(scores, y)
    assert 2.2 < t < 4.0
    assert nll(scores, y, t) < nll(scores, y)
    assert reliability(softmax(scores / t), y)["ece"] < reliability(softmax(scores), y)["ece"]


def test_calibrating_probabilities_keeps_the_class_and_equals_scaling_the_scores() -> None:
    scores, _ = overconfident(50)
    bias = np.array([0.0, 0.5, 1.5])
    p = softmax(scores + bias)
    for t in (0.5, 2.0, 7.0):
        q = calibrate_probs(p, t)
        np.testing.assert_allclose(q, softmax((scores + bias) / t), atol=1e-9)
        np.testing.assert_array_equal(q.argmax(1), p.argmax(1))
    np.testing.assert_allclose(calibrate_probs(p[0], 2.0), softmax((scores[:1] + bias) / 2.0)[0], atol=1e-9)
    assert calibrate_probs(p, None) is p


def test_reliability_curve_is_sklearns_and_ece_weights_bins_by_count() -> None:
    scores, y = overconfident(400, seed=3)
    probs = softmax(scores)
    rel = reliability(probs, y)
    right = (probs.argmax(1) == y).astype(int)
    acc, conf = calibration_curve(right, probs.max(1), n_bins=10)
    np.testing.assert_allclose(rel["accuracy"], acc, atol=1e-5)
    np.testing.assert_allclose(rel["confidence"], conf, atol=1e-5)
    assert sum(rel["count"]) == len(y) == rel["n"]
    gaps = np.abs(np.array(rel["accuracy"]) - rel["confidence"]) * rel["count"]
    assert rel["ece"] == pytest.approx(gaps.sum() / len(y), abs=1e-4)
    all_right = reliability(np.eye(3)[y] * 0.7 + 0.1, y)  # every prediction right at 0.8 confidence
    assert all_right["accuracy"] == [1.0] and all_right["ece"] == pytest.approx(0.2)


@pytest.fixture()
def weights_copy(tmp_path: Path) -> Path:
    """The shipped cards, with links to the shipped weights, in a folder of their own."""
    folder = tmp_path / "weights"
    folder.mkdir()
    for spec in REGISTRY.values():
        if not spec.weights_file.is_file():
            pytest.skip("shipped weights are not present")
        shutil.copy(spec.card_file, folder / spec.card_file.name)
        (folder / spec.weights_file.name).symlink_to(spec.weights_file)
    return folder


def test_calibrate_writes_temperatures_and_an_ensemble_chosen_on_validation(
    tiny_dataset: Path, weights_copy: Path, tmp_path: Path
) -> None:
    split_file = tmp_path / "split.json"
    assert calibrate.main(["--data", str(tiny_dataset), "--weights", str(weights_copy), "--split-file",
                           str(split_file), "--bootstrap", "20", "--threads", "1"]) == 0  # fmt: skip
    cal = json.loads((weights_copy / "calibration.json").read_text())
    ens_doc = json.loads((weights_copy / "ensemble.json").read_text())
    assert set(cal["models"]) == set(REGISTRY) == set(ens_doc["members"])
    for name, entry in cal["models"].items():
        assert entry["temperature"] > 0 and set(entry["ece"]) == {"val", "test"}
        assert entry["nll"]["val"]["after"] <= entry["nll"]["val"]["before"] + 1e-9  # fitted on validation
        served = ServedModel.load(name, weights_copy)
        assert served.temperature == pytest.approx(entry["temperature"]) and served.calibrated
        plain = ServedModel(served.model, served.spec, served.classes, served.logit_bias, served.card)
        imgs = np.random.default_rng(0).integers(0, 256, (4, 80, 60, 3), dtype=np.uint8)
        np.testing.assert_array_equal(served.predict(imgs).argmax(1), plain.predict(imgs).argmax(1))
        exp = served.explain(imgs[0])
        np.testing.assert_allclose(exp.probs, served.predict(imgs[:1])[0], atol=1e-5)
    ens = load_ensemble(weights_copy)
    assert ens is not None and ens.members == list(REGISTRY)
    assert ens_doc["decision_rule"]["objective"].startswith("macro-F1 on validation")
    for s in ("val", "test"):
        m = ens.metrics[s]
        assert m["n"] == len(ens.predictions[s]["ids"]) and 0 <= m["balanced_accuracy"] <= 1
        assert "ci95" in m and "majority_class_reference" in m
    # another model's weights: its temperature no longer applies
    assert temperature_for("baseline", "0" * 64, weights_copy) is None


DATA = ROOT.parent / "shared" / "data" / "fashion-small"


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared dataset absent")
@pytest.mark.skipif(not (ROOT / "weights" / "ensemble.json").is_file(), reason="no shipped ensemble")
def test_shipped_ensemble_scores_are_its_predictions_on_the_saved_split() -> None:
    from core.data.catalog import load_styles
    from core.models.card import ModelCard
    from core.scoring.metrics import classification_report

    ens = load_ensemble(ROOT / "weights")
    assert ens is not None
    cal = json.loads((ROOT / "weights" / "calibration.json").read_text())
    for name in ens.members:  # built on the shipped weights, with their temperatures
        card = ModelCard.load(REGISTRY[name].card_file)
        assert ens.member_sha256[name] == card.weights["sha256"] == cal["models"][name]["weights_sha256"]
        assert ens.doc["member_temperatures"][name] == cal["models"][name]["temperature"]
        assert card.predictions["test"]["ids"] == ens.predictions["test"]["ids"]  # the same images
    label_of = load_styles(DATA, ens.classes).label_of()
    for s in ("val", "test"):
        ids, pred = ens.predictions[s]["ids"], [int(k) for k in ens.predictions[s]["pred"]]
        rep = classification_report([label_of[i] for i in ids], pred, ens.classes, n_boot=0)
        for key in ("balanced_accuracy", "macro_f1", "accuracy"):
            assert rep[key] == pytest.approx(ens.metrics[s][key])
