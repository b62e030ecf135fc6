"""Can a heatmap be trusted? The randomisation cascade, deletion/insertion curves and the nearest training
images (core.explanation.randomisation, .faithfulness, .neighbours): each check must fail when broken."""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import nn

from core.data.cache import load_native_images
from core.data.catalog import load_styles
from core.data.split import make_split
from core.explanation import faithfulness, neighbours, randomisation
from core.models.card import ModelCard
from core.models.networks import DressCodeNet, Preprocessing
from core.models.registry import REGISTRY, get_spec
from core.prediction.served import ServedModel

CLASSES = ["Casual", "Formal", "Smart Casual"]
H, W = 80, 60
SIGNAL = (slice(8, 28), slice(6, 26))  # the square whose colour decides the class (hand-made model)
DISTRACTOR = (slice(52, 72), slice(34, 54))  # a dark square the hand-made model ignores
NAVY, RED = (30, 30, 90), (200, 40, 40)


# ---------------------------------------------------------------- a tiny trained model
def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """White canvases with a 16×16 square whose colour is the class (red Casual, navy Formal) at a random
    place, and a grey or green distractor square elsewhere that says nothing about the class."""
    rng = np.random.default_rng(seed)
    images = np.full((n, H, W, 3), 255, np.uint8)
    labels = rng.integers(0, 2, n)
    for k in range(n):
        y, x = rng.integers(2, H - 18), rng.integers(2, W - 18)
        images[k, y : y + 16, x : x + 16] = NAVY if labels[k] else RED
        while True:
            y2, x2 = rng.integers(2, H - 18), rng.integers(2, W - 18)
            if abs(y2 - y) > 17 or abs(x2 - x) > 17:
                break
        images[k, y2 : y2 + 16, x2 : x2 + 16] = (120, 120, 120) if rng.random() < 0.5 else (40, 160, 60)
    noisy = images.astype(np.int16) + rng.integers(-8, 9, images.shape)
    return noisy.clip(0, 255).astype(np.uint8), labels


def tiny_net() -> DressCodeNet:
    """A small CNN with the baseline's layer names (so the baseline's Grad-CAM layers apply)."""
    backbone = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(8, 16, 3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
        )
    )
    head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 20 * 15, 32), nn.ReLU(), nn.Linear(32, 3))
    return DressCodeNet(Preprocessing(), backbone, head)


@pytest.fixture(scope="module")
def trained() -> ServedModel:
    """The tiny CNN trained on the synthetic task (a few seconds on one thread), frozen as the app loads it."""
    torch.manual_seed(0)
    model = tiny_net()
    images, labels = synthetic(600, seed=1)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        idx = torch.randint(0, len(x), (32,), generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    served = ServedModel(model, get_spec("baseline"), CLASSES)
    test, truth = synthetic(40, seed=2)
    assert (served.predict(test).argmax(1) == truth).mean() >= 0.95, "the tiny model did not learn the task"
    return served


def edge_stub(
    served: ServedModel, images: np.ndarray, targets: np.ndarray, layers: Sequence[str]
) -> list[dict[str, np.ndarray]]:
    """An "explainer" that ignores the model: the image's edge strength (what a map that only shows the
    photo would look like)."""
    grey = images.astype(np.float32).mean(-1)
    edges = np.abs(np.diff(grey, axis=1, prepend=grey[:, :1])) + np.abs(np.diff(grey, axis=2, prepend=grey[:, :, :1]))
    return [{layer: e for layer in layers} for e in edges]


# ---------------------------------------------------------------- randomisation
def test_cascade_order_is_head_first_then_blocks_down_to_the_stem() -> None:
    assert [s.label for s in randomisation.cascade_steps(tiny_net())] == ["head.3", "head.1", "conv2", "conv1"]
    base = [s.label for s in randomisation.cascade_steps(get_spec("baseline").builder(3, "none"))]
    assert base == ["head.4", "head.1", "conv2", "conv1"]
    res = randomisation.cascade_steps(get_spec("resnet50").builder(3, "none"))
    labels = [s.label for s in res]
    assert labels[:5] == ["head.6", "head.3", "layer4.2", "layer4.1", "layer4.0"]
    assert labels[-2:] == ["layer1.0", "conv1+bn1"] and len(labels) == 2 + 3 + 6 + 4 + 3 + 1
    assert res[-1].paths == ["backbone.conv1", "backbone.bn1"]
    eff = [s.label for s in randomisation.cascade_steps(get_spec("effnet_lite0").builder(3, "none"))]
    assert eff[:4] == ["head.6", "head.3", "_conv_head+_bn1", "_blocks.15"]
    assert eff[-2:] == ["_blocks.0", "_conv_stem+_bn0"] and len(eff) == 2 + 1 + 16 + 1


def test_full_randomisation_destroys_a_real_map_but_not_one_that_ignores_the_weights(trained: ServedModel) -> None:
    images, labels = synthetic(8, seed=3)
    before = {k: v.clone() for k, v in trained.model.state_dict().items()}
    real = randomisation.cascade(trained, images, targets=labels)
    stub = randomisation.cascade(trained, images, targets=labels, explainer=edge_stub)
    assert real.steps == ["trained", "head.3", "head.1", "conv2", "conv1"]
    for layer in trained.layer_paths:
        assert np.allclose(stub.spearman[layer], 1.0) and np.allclose(stub.ssim[layer], 1.0)  # same map every step
        final = real.mean(layer)[-1]  # an early layer's map keeps more of the photo's structure (SSIM)
        assert final["spearman"] < 0.5 and final["ssim"] < 0.8, (layer, real.mean(layer))
        assert real.mean(layer)[0] == {"step": "trained", "spearman": 1.0, "ssim": 1.0}
    assert real.mean("backbone.relu2")[-1]["ssim"] < 0.5
    # the served model is untouched: the cascade worked on a copy
    after = trained.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_cascade_that_forgot_to_reinitialise_would_be_caught(trained: ServedModel, monkeypatch) -> None:
    """The check itself: with re-initialisation switched off, Grad-CAM's similarity stays 1 (what a broken
    check would report), so the assertion above really depends on the weights being destroyed."""
    monkeypatch.setattr(randomisation, "reinitialise", lambda *a, **k: None)
    images, labels = synthetic(4, seed=3)
    c = randomisation.cascade(trained, images, targets=labels)
    assert all(np.allclose(c.spearman[layer], 1.0) for layer in trained.layer_paths)


def test_similarity_of_a_flat_map_ranks_nothing() -> None:
    rng = np.random.default_rng(0)
    m = rng.random((20, 15))
    assert randomisation.similarity(m, m, (H, W)) == pytest.approx((1.0, 1.0))
    rho, _ = randomisation.similarity(m, np.zeros_like(m), (H, W))
    assert rho == 0.0


# ---------------------------------------------------------------- deletion and insertion
@pytest.fixture(scope="module")
def hand_made() -> ServedModel:
    """A linear model that reads only the SIGNAL square: Formal's logit grows with its darkness."""
    backbone = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 1, 1), relu=nn.ReLU()))
    with torch.no_grad():
        backbone.conv.weight.fill_(-1 / 6)  # input normalised to [-1, 1]: darkness = 1 - mean(rgb) in [0, 1]
        backbone.conv.bias.fill_(0.5)
        head = nn.Sequential(nn.Flatten(), nn.Linear(H * W, 3))
        head[1].weight.zero_()
        mask = torch.zeros(H, W)
        mask[SIGNAL] = 1
        head[1].weight[1] = 30 * mask.flatten() / mask.sum()  # steep: a blurred square is not dark enough
        head[1].bias.copy_(torch.tensor([0.0, -19.0, -25.0]))
    model = DressCodeNet(Preprocessing(), backbone, head).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return ServedModel(model, get_spec("baseline"), CLASSES)


def signal_photo() -> tuple[np.ndarray, np.ndarray]:
    """A Formal photo for the hand-made model, and the map that points at its discriminative pixels."""
    img = np.full((H, W, 3), 255, np.uint8)
    img[SIGNAL] = NAVY
    img[DISTRACTOR] = (40, 40, 40)
    oracle = np.zeros((H, W), np.float32)
    oracle[SIGNAL] = 1.0
    oracle[DISTRACTOR] = 0.2  # ranked after the signal, before the background
    return img, oracle


# the flipped map's lead over random: with ROAD a randomly deleted pixel of the square is filled in from its
# dark neighbours, so random deletion barely hurts either (that is the point of imputing)
@pytest.mark.parametrize(
    "fills, flip_lead", [(("road", "blur"), 0.03), (("white", "white"), 0.3), (("blur", "blur"), 0.3)]
)
def test_a_map_on_the_discriminative_pixels_beats_random_and_its_flip_is_worst(
    hand_made: ServedModel, fills, flip_lead
) -> None:
    img, oracle = signal_photo()
    r = faithfulness.curves(hand_made, img, oracle, target=1, deletion_fill=fills[0], insertion_fill=fills[1])
    assert r.full > 0.9
    dele, ins = r.deletion, r.insertion
    assert dele["map"].auc < dele["random"].auc - 0.1 and dele["flipped"].auc > dele["random"].auc + flip_lead
    assert ins["map"].auc > ins["random"].auc + 0.3 and ins["flipped"].auc < ins["random"].auc - 0.1
    assert dele["map"].at(0.1) < 0.2 < 0.8 < dele["random"].at(0.1)  # the signal is 8 % of the canvas
    assert set(r.summary()) == {
        f"{kind}_auc{suffix}" for kind in ("deletion", "insertion") for suffix in ("", "_random", "_flipped")
    }


def test_a_flat_or_misplaced_map_does_not_beat_random(hand_made: ServedModel) -> None:
    img, oracle = signal_photo()
    wrong = np.zeros_like(oracle)
    wrong[DISTRACTOR] = 1.0  # points at the dark square the model ignores
    r = faithfulness.curves(hand_made, img, wrong, target=1)
    assert r.deletion["map"].auc > r.deletion["random"].auc
    flat = faithfulness.curves(hand_made, img, np.zeros_like(oracle), target=1)
    assert abs(flat.deletion["map"].auc - flat.deletion["random"].auc) < 0.1  # ties broken at random


def test_one_batched_predict_and_the_classify_line(hand_made: ServedModel, monkeypatch) -> None:
    img, oracle = signal_photo()
    calls = []
    real = hand_made.predict
    monkeypatch.setattr(hand_made, "predict", lambda x, *a, **k: calls.append(len(x)) or real(x, *a, **k))
    r = faithfulness.curves(
        hand_made, img, oracle, 1, faithfulness.QUICK_FRACTIONS, orders=("map", "random"), insertion=False
    )
    assert calls == [1 + 2 * len(faithfulness.QUICK_FRACTIONS)]  # one forward of ~20 images
    line = faithfulness.deletion_line(r, "Formal")
    assert line.startswith(f"removing the top 10% of this map drops Formal from {r.full:.2f} to ")
    assert f"(random 10%: {r.deletion['random'].at(0.1):.2f})" in line


def test_perturbed_deletes_and_inserts_exactly_the_ranked_pixels() -> None:
    img, _ = signal_photo()
    order = np.arange(H * W)
    out = faithfulness.perturbed(img, order, [0.0, 0.5, 1.0], insert=False, fill="white")
    assert (out[0] == img).all() and (out[2] == 255).all()
    assert (out[1][: H // 2] == 255).all() and (out[1][H // 2 :] == img[H // 2 :]).all()
    back = faithfulness.perturbed(img, order, [0.0, 1.0], insert=True, fill="blur")
    assert (back[1] == img).all() and not (back[0] == img).all()


def test_road_imputation_keeps_known_pixels_and_fills_from_their_neighbours() -> None:
    ramp = np.linspace(0, 200, W, dtype=np.float32)[None, :, None] + np.zeros((H, W, 3), np.float32)
    img = ramp.round().astype(np.uint8)  # a horizontal ramp: linear imputation restores it
    known = np.ones((H, W), bool)
    known[30:50, 20:40] = False
    out = faithfulness.imputed(img, known, seed=3)
    assert (out[known] == img[known]).all()
    err = np.abs(out[~known].astype(int) - img[~known].astype(int))
    assert err.mean() < 3 and err.max() <= 15  # the ramp, plus ROAD's noise (σ = 0.01 of the range, 2.55 levels)
    assert (faithfulness.imputed(img, known, seed=3) == out).all()  # seeded: the same curve every time
    assert (faithfulness.imputed(img, np.ones_like(known)) == img).all()
    blank = faithfulness.imputed(img, np.zeros_like(known))
    assert (blank == img.reshape(-1, 3).mean(0).round().astype(np.uint8)).all()  # nothing known: the mean colour
    order = np.arange(H * W)
    steps = faithfulness.perturbed(img, order, [0.0, 0.5, 1.0], insert=False, fill="road")
    assert (steps[0] == img).all() and (steps[1][H // 2 :] == img[H // 2 :]).all()
    assert (steps[1][: H // 2] != 255).any()  # filled from the image, not white
    with pytest.raises(ValueError, match="fill must be one of"):
        faithfulness.perturbed(img, order, [0.5], insert=False, fill="paint")


# ---------------------------------------------------------------- nearest training images
def with_card(served: ServedModel, sha: str) -> ServedModel:
    card = ModelCard("baseline", CLASSES, weights={"sha256": sha})
    return ServedModel(served.model, served.spec, served.classes, served.logit_bias, card)


def test_embedding_is_the_input_of_the_last_linear(trained: ServedModel) -> None:
    images, _ = synthetic(5, seed=4)
    last = trained.model.head[-1]
    as_logits = lambda v: v @ last.weight.numpy().T + last.bias.numpy()  # noqa: E731
    exact = trained.embeddings(images, batch_size=2, fast=False)
    assert exact.shape == (5, 32)
    np.testing.assert_allclose(as_logits(exact), trained.logits(images), rtol=1e-4, atol=1e-4)
    vec = neighbours.embed(trained, images, batch_size=2)  # the index's path: the fast (bfloat16) one
    assert vec.shape == (5, 32) and vec.dtype == np.float32
    np.testing.assert_allclose(as_logits(vec), trained.fast_predictor.fast_logits(images), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(vec, exact, rtol=0.05, atol=0.05 * float(np.abs(exact).max()))


def test_unit_vectors_make_the_euclidean_order_the_cosine_order() -> None:
    rng = np.random.default_rng(0)
    vectors, query = rng.normal(size=(40, 8)), rng.normal(size=(2, 8))
    index = neighbours.NeighbourIndex(range(40), [0] * 40, vectors * rng.uniform(0.1, 10, (40, 1)))
    found = index.search(query * 3.0, k=5)
    cos = 1 - (query / np.linalg.norm(query, axis=1, keepdims=True)) @ neighbours.unit(vectors).T
    for f, row in zip(found, cos):
        assert f.ids == np.argsort(row)[:5].tolist()
        np.testing.assert_allclose(f.distances, np.sort(row)[:5], atol=1e-5)
    with pytest.raises(ValueError, match="N×D"):
        neighbours.unit(np.zeros(3))
    with_zero = neighbours.NeighbourIndex([1, 2, 3], [0, 1, 2], np.array([[1.0, 0], [0, 0], [0, 2.0]]))
    assert len(with_zero) == 2 and with_zero.ids.tolist() == [1, 3]  # no direction, no cosine: left out
    none, some = with_zero.search(np.array([[0.0, 0.0], [1.0, 1.0]]), k=2)
    assert none.ids == [] and some.ids and some.distances[0] == pytest.approx(1 - np.sqrt(0.5))


def test_an_indexed_image_finds_itself_first(trained: ServedModel) -> None:
    images, labels = synthetic(30, seed=5)
    index = neighbours.NeighbourIndex(range(100, 130), labels, neighbours.embed(trained, images))
    found = index.nearest(trained, images[[3, 17]], k=6)
    assert [f.ids[0] for f in found] == [103, 117]
    assert all(len(f.ids) == 6 and f.distances[0] == pytest.approx(0.0, abs=1e-5) for f in found)
    assert all(f.distances == sorted(f.distances) for f in found)
    assert [f.labels[0] for f in found] == [int(labels[3]), int(labels[17])]


def test_the_index_is_cached_and_rebuilt_when_the_weights_change(trained: ServedModel, tiny_dataset) -> None:
    catalog = load_styles(tiny_dataset)
    train = make_split(catalog)["train"]
    a = with_card(trained, "a" * 64)
    index, how = neighbours.build_index(a, catalog, train)
    assert not how["cached"] and len(index) == len(train)
    again, how = neighbours.build_index(a, catalog, train)
    assert how["cached"] and np.array_equal(again.vectors, index.vectors)
    _, how = neighbours.build_index(with_card(trained, "b" * 64), catalog, train)
    assert not how["cached"]  # other weights: a new index
    _, how = neighbours.build_index(a, catalog, train[:-1])
    assert not how["cached"]  # another split: a new index
    pid = train[5]
    photo = neighbours.embed(a, load_native_images(catalog, [pid]))
    assert index.search(photo, k=6)[0].ids[0] == pid  # a training image finds itself


def test_a_deep_copy_of_the_model_is_what_the_cascade_changes(trained: ServedModel) -> None:
    clone = copy.deepcopy(trained.model)
    step = randomisation.cascade_steps(clone)[0]
    randomisation.reinitialise(clone, step, seed=1)
    assert not torch.equal(clone.head[3].weight, trained.model.head[3].weight)
    assert torch.equal(clone.head[1].weight, trained.model.head[1].weight)  # only the step's module


def test_bench_trust_writes_every_number_and_the_readme_block(tiny_dataset, tmp_path, monkeypatch) -> None:
    from bench import trust as bench_trust

    monkeypatch.setenv("DRESSCODE_DATA", str(tiny_dataset))
    monkeypatch.setattr(bench_trust, "get_or_make_split", lambda catalog: make_split(catalog))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench_trust.START}\nold\n{bench_trust.END}\nafter\n")
    out = tmp_path / "trust.json"
    argv = ["--json", str(out), "--limit", "3", "--models", "baseline", "--threads", "1", "--readme", str(readme)]
    assert bench_trust.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["meta"]["images"] == 3 and res["meta"]["per_class"] == "1 Casual, 1 Formal, 1 Smart Casual"
    layers = res["models"]["baseline"]["layers"]
    assert set(layers) == {c.path for c in get_spec("baseline").cam_layers}
    for row in layers.values():
        assert [s["step"] for s in row["randomisation_similarity"]] == ["trained", "head.4", "head.1", "conv2", "conv1"]
        for key in ("deletion_auc", "insertion_auc"):
            for suffix in ("", "_random", "_flipped"):
                assert 0.0 <= row[key + suffix] <= 1.0
    nn_ = res["models"]["baseline"]["neighbours"]
    assert nn_["indexed_images"] > 50 and nn_["per_photo_ms_mean"] > 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
    assert "| `baseline` | `backbone.relu2` (default) |" in text and "| `baseline` | `backbone.relu1` |" in text
    assert "3 test images (1 Casual, 1 Formal, 1 Smart Casual)" in text
    for row in layers.values():
        gain = row["deletion_gain_vs_random"]
        assert gain["ci95"][0] <= gain["mean"] <= gain["ci95"][1]
        assert gain["mean"] == pytest.approx(row["deletion_auc_random"] - row["deletion_auc"], abs=1e-9)
    readme.write_text(f"{bench_trust.START}\n{bench_trust.END}\n")
    assert bench_trust.main(["--json", str(out), "--readme", str(readme), "--no-measure"]) == 0
    assert readme.read_text().count("| `baseline` |") == 3  # two layers and the index, from the JSON
    # --update measures the models named and keeps the others' rows (here a stand-in row from "an earlier run")
    res = json.loads(out.read_text())
    earlier = dict(res["models"]["baseline"], date="2026-01-02", machine="elsewhere")
    res["models"] = {"resnet50": earlier, **res["models"]}
    out.write_text(json.dumps(res))
    assert bench_trust.main([*argv, "--update"]) == 0
    updated = json.loads(out.read_text())
    assert list(updated["models"]) == [n for n in REGISTRY if n in ("baseline", "resnet50")]
    assert updated["models"]["resnet50"] == earlier and updated["models"]["baseline"]["date"] == res["meta"]["date"]
    assert "`resnet50` on 2026-01-02 (elsewhere)" in readme.read_text()
    with pytest.raises(SystemExit, match="other images"):
        bench_trust.main([*argv[:3], "2", *argv[4:], "--update"])


def test_the_deletion_gains_interval_brackets_the_mean_and_is_seeded() -> None:
    from bench.trust import bootstrap_mean_ci

    gains = np.random.default_rng(1).normal(0.1, 0.2, 30)
    low, high = bootstrap_mean_ci(gains)
    assert low < gains.mean() < high and 0.1 < high - low < 0.2  # about ±2 standard errors (0.2/√30 = 0.037)
    assert bootstrap_mean_ci(gains) == [low, high]
    assert bootstrap_mean_ci(gains + 0.5)[0] > 0.0  # a clear gain: the interval clears zero
    assert bootstrap_mean_ci(np.array([0.3])) == [0.3, 0.3]  # one image (--limit 1): nothing to resample
    assert bootstrap_mean_ci(np.full(5, 0.2)) == pytest.approx([0.2, 0.2])
