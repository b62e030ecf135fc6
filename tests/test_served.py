"""core.prediction.served.ServedModel: one door into a model — predictions, the fast path and explanations agree,
and they share the model's one lock."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from test_gradcam import images

from core.models.registry import REGISTRY, get_spec
from core.prediction.fastpath import FP32_TIE_MARGIN
from core.prediction.inference import bf16_is_fast
from core.prediction.served import ServedModel

CLASSES = ["Casual", "Formal", "Smart Casual"]


@pytest.fixture(scope="module")
def tiny() -> ServedModel:
    """The baseline CNN with random weights (a tiny model), frozen as the app loads it, with a decision rule."""
    torch.manual_seed(0)
    model = get_spec("baseline").builder(3, "none").eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return ServedModel(model, get_spec("baseline"), CLASSES, [0.0, 0.01, -0.01])


def test_predict_and_explain_agree(tiny: ServedModel) -> None:
    imgs = images(5, seed=21)
    probs = tiny.predict(imgs)
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1.0)
    for img, row in zip(imgs, probs):
        exp = tiny.explain(img)
        np.testing.assert_allclose(exp.probs, row, rtol=1e-5, atol=1e-6)
        assert exp.predicted == int(row.argmax())


def test_fast_path_gives_the_fp32_classes(tiny: ServedModel) -> None:
    imgs = images(20, seed=22)
    slow, quick = tiny.predict(imgs, batch_size=8), tiny.predict(imgs, batch_size=8, fast=True)
    np.testing.assert_array_equal(quick.argmax(1), slow.argmax(1))
    assert tiny.fast_predictor is tiny.fast_predictor  # built once
    # the bf16 margin where the CPU runs bf16 in hardware, the fp32 copy's elsewhere (tests/test_fastpath.py, both ways)
    assert tiny.fast_predictor.margin == (tiny.spec.tie_margin if bf16_is_fast() else FP32_TIE_MARGIN)
    np.testing.assert_array_equal(tiny.logits(imgs).argmax(1), np.argmax(tiny.logits(imgs, fast=True), 1))


def test_prediction_and_explanation_share_one_lock(tiny: ServedModel) -> None:
    img = images(1, seed=23)[0]
    done = {}

    def explain() -> None:
        done["explain"] = tiny.explain(img)

    def predict() -> None:
        done["predict"] = tiny.predict(img[None])

    with tiny.lock:  # while the model is busy, neither an explanation nor a prediction starts
        threads = [threading.Thread(target=f) for f in (explain, predict)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=0.5)
        assert not done and all(t.is_alive() for t in threads)
    for t in threads:
        t.join(timeout=60)
    assert set(done) == {"explain", "predict"}
    assert not tiny.lock.locked()


def test_attributes(tiny: ServedModel) -> None:
    assert tiny.name == "baseline" and tiny.classes == CLASSES and tiny.logit_bias == [0.0, 0.01, -0.01]
    assert tiny.layer_paths == [c.path for c in get_spec("baseline").cam_layers]
    assert tiny.card is None
    assert tiny.explain_single_layer(images(1)[0], tiny.layer_paths[0], 1).ndim == 2


@pytest.mark.skipif(not REGISTRY["baseline"].weights_file.is_file(), reason="shipped weights are not present")
def test_load_serves_the_shipped_model_with_its_card() -> None:
    served = ServedModel.load("baseline")
    assert served.card is not None and served.name == "baseline"
    assert served.classes == served.card.classes and served.logit_bias == served.card.logit_bias
    assert not served.model.training and not any(p.requires_grad for p in served.model.parameters())
