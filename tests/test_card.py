"""core.models.card: safetensors weights + model card round trip, and load_model's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.models.card import ModelCard, WeightsError, library_versions, load_model, save_weights, sha256_file
from core.models.networks import build_baseline

CLASSES = ["Casual", "Formal", "Smart Casual"]


def write_baseline(
    weights_dir: Path, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[torch.nn.Module, ModelCard]:
    """A random baseline saved as ``baseline.safetensors`` + ``baseline.json`` in ``weights_dir``."""
    torch.manual_seed(seed)
    model = build_baseline(3)
    digest = save_weights(model, weights_dir / "baseline.safetensors", dtype)
    card = ModelCard(
        name="baseline",
        classes=list(CLASSES),
        history=[{"epoch": 1, "val_macro_f1": 0.5}],
        decision_rule={"kind": "argmax + offsets", "logit_bias": [0.0, 0.25, 1.0]},
        metrics={"test": {"accuracy": 0.9}},
        weights={"file": "baseline.safetensors", "sha256": digest},
        versions=library_versions(),
        notes=["test card"],
    )
    card.save(weights_dir / "baseline.json")
    return model, card


def test_save_weights_digest(tmp_path: Path) -> None:
    model = build_baseline(3)
    path = tmp_path / "deep" / "w.safetensors"
    digest = save_weights(model, path)
    assert path.is_file() and digest == sha256_file(path) and len(digest) == 64
    import hashlib

    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_card_round_trip(tmp_path: Path) -> None:
    _, card = write_baseline(tmp_path)
    loaded = ModelCard.load(tmp_path / "baseline.json")
    assert loaded == card
    assert loaded.logit_bias == [0.0, 0.25, 1.0]
    assert json.loads(card.to_json())["weights"]["sha256"] == card.weights["sha256"]
    assert ModelCard(name="x", classes=["a"]).logit_bias is None
    assert {"python", "torch", "torchvision", "numpy", "pillow"} <= set(card.versions)


def test_load_model_round_trip(tmp_path: Path) -> None:
    original, card = write_baseline(tmp_path)
    model, loaded_card = load_model("baseline", weights_dir=tmp_path)
    assert loaded_card == card
    for (k, a), (k2, b) in zip(original.state_dict().items(), model.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    x = torch.rand(2, 3, 80, 60)
    with torch.no_grad():
        assert torch.allclose(original.eval()(x), model(x))


def test_load_model_fp16_weights(tmp_path: Path) -> None:
    original, _ = write_baseline(tmp_path, dtype=torch.float16)
    model, _ = load_model("baseline", weights_dir=tmp_path)
    w = model.backbone.conv1.weight
    assert w.dtype == torch.float32
    assert torch.allclose(w, original.backbone.conv1.weight, atol=1e-3)
    assert not torch.equal(w, original.backbone.conv1.weight)  # really went through fp16


def test_tampered_weights_refused(tmp_path: Path) -> None:
    write_baseline(tmp_path)
    path = tmp_path / "baseline.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # one bit in the tensor data: still a valid safetensors file
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match its model card's sha256"):
        load_model("baseline", weights_dir=tmp_path)
    model, _ = load_model("baseline", weights_dir=tmp_path, verify=False)  # readable when not verified
    assert model is not None


def test_missing_files_refused(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="baseline.json is missing"):
        load_model("baseline", weights_dir=tmp_path)
    write_baseline(tmp_path)
    (tmp_path / "baseline.safetensors").unlink()
    with pytest.raises(WeightsError, match="baseline.safetensors is missing"):
        load_model("baseline", weights_dir=tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "",
        "[1, 2, 3]",
        '{"name": "baseline", "classes": ["a"], "weights": {"sha256": "ab"}, "unexpected_key": 1}',
        '{"name": "baseline", "classes": [], "weights": {"sha256": "ab"}}',
        '{"name": "baseline", "classes": ["a", "b", "c"], "weights": {}}',
        '{"name": "baseline", "classes": "abc", "weights": {"sha256": "ab"}}',
    ],
    ids=["syntax", "empty", "list", "unknown-key", "no-classes", "no-sha256", "classes-not-list"],
)
def test_malformed_card_refused(tmp_path: Path, text: str) -> None:
    write_baseline(tmp_path)
    (tmp_path / "baseline.json").write_text(text)
    with pytest.raises(WeightsError):
        load_model("baseline", weights_dir=tmp_path)


def test_card_weights_not_an_object_refused(tmp_path: Path) -> None:
    (tmp_path / "baseline.json").write_text('{"name": "baseline", "classes": ["a", "b", "c"], "weights": null}')
    with pytest.raises(WeightsError):
        ModelCard.load(tmp_path / "baseline.json")


def test_unreadable_weights_with_matching_hash(tmp_path: Path) -> None:
    _, card = write_baseline(tmp_path)
    path = tmp_path / "baseline.safetensors"
    path.write_bytes(b"\x00" * 100)
    card.weights["sha256"] = sha256_file(path)
    card.save(tmp_path / "baseline.json")
    with pytest.raises(WeightsError, match="cannot be read"):
        load_model("baseline", weights_dir=tmp_path)


def test_weights_not_fitting_architecture(tmp_path: Path) -> None:
    _, card = write_baseline(tmp_path)
    card.classes = ["Casual", "Formal"]  # 2 classes: the head's shape differs
    card.save(tmp_path / "baseline.json")
    with pytest.raises(WeightsError, match="does not fit the baseline architecture"):
        load_model("baseline", weights_dir=tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("decision_rule", {"kind": "offsets", "logit_bias": [0.0, -1.0]}, "not one finite offset per class"),
        ("decision_rule", {"kind": "offsets", "logit_bias": [0.0, float("nan"), 1.0]}, "not one finite offset"),
        ("decision_rule", {"kind": "offsets", "logit_bias": "0,0,0"}, "not one finite offset"),
        ("classes", ["Casual", "Casual", "Formal"], "not distinct names"),
        ("preprocessing", {"native_size": [60, 80], "input_size": [30, 40]}, "records preprocessing"),
    ],
    ids=["bias-short", "bias-nan", "bias-text", "classes-repeated", "other-preprocessing"],
)
def test_card_fields_that_decide_predictions_are_checked(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    """The sha256 covers the weights only: a card that cannot drive them is refused at load time."""
    model, card = write_baseline(tmp_path)
    card.preprocessing = json.loads(json.dumps(model.prep.to_dict()))
    card.save(tmp_path / "baseline.json")
    load_model("baseline", weights_dir=tmp_path)  # the code's own preprocessing passes
    setattr(card, field, value)
    card.save(tmp_path / "baseline.json")
    with pytest.raises(WeightsError, match=message):
        load_model("baseline", weights_dir=tmp_path)


def test_unknown_model_name(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        load_model("vgg16", weights_dir=tmp_path)


@pytest.mark.parametrize("name", ["baseline", "resnet50", "effnet_lite0"])
def test_shipped_cards_were_measured_with_the_framing_step_that_ships(name: str) -> None:
    """A card's metrics hold only for the step they were measured through: a new step version needs new cards."""
    from core.config import WEIGHTS_DIR
    from core.evaluate import framing_record

    card = ModelCard.load(WEIGHTS_DIR / f"{name}.json")
    assert card.data["framing_normalisation"] == framing_record()
