"""Model cards (``weights/NAME.json``) and safetensors weights with sha256 verification."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.models.networks import DressCodeNet
from core.models.registry import get_spec

log = logging.getLogger(__name__)


class WeightsError(RuntimeError):
    """Weights or model card missing, corrupt or not matching; the message is for the user."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions that matter for reproducing a model."""
    import numpy
    import PIL
    import torchvision

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
    }
    try:
        import captum

        out["captum"] = captum.__version__
    except ImportError:
        pass
    return out


@dataclass
class ModelCard:
    """Everything recorded about one trained weights file (JSON on disk)."""

    name: str
    classes: list[str]
    data: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)
    architecture: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    decision_rule: dict = field(default_factory=lambda: {"kind": "argmax", "logit_bias": None})
    metrics: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    predictions: dict = field(default_factory=dict)  # split → {"ids": [...], "pred": "0120…"}

    @property
    def logit_bias(self) -> list[float] | None:
        """Per-class logit offsets chosen on validation, or None for plain argmax."""
        return self.decision_rule.get("logit_bias")

    def to_json(self) -> str:
        """Serialise."""
        return json.dumps(self.__dict__, indent=1)

    def save(self, path: Path) -> None:
        """Write as JSON."""
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        """Read a card; :class:`WeightsError` when missing or malformed."""
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"model card {path.name} is missing (looked in {path.parent})")
        try:
            doc = json.loads(path.read_text())
            card = cls(**doc)
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
            raise WeightsError(f"model card {path.name} is malformed ({exc.__class__.__name__})") from None
        if (
            not isinstance(card.classes, list)
            or not card.classes
            or not isinstance(card.weights, dict)
            or not card.weights.get("sha256")
            or not all(isinstance(x, dict) for x in (card.decision_rule, card.metrics, card.training, card.data))
        ):
            raise WeightsError(f"model card {path.name} lacks classes or the weights' sha256")
        return card


def save_weights(model: DressCodeNet, path: Path, dtype: torch.dtype = torch.float32) -> str:
    """Save the state dict as safetensors (floats cast to ``dtype``); returns its sha256."""
    state = {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt"})
    return sha256_file(path)


def model_files(name: str, weights_dir: Path | None = None) -> tuple[Path, Path]:
    """``name``'s weights file and model card in ``weights_dir`` (None: the shipped ones in ``weights/``)."""
    spec = get_spec(name)
    if weights_dir is None:
        return spec.weights_file, spec.card_file
    return Path(weights_dir) / spec.weights_file.name, Path(weights_dir) / spec.card_file.name


def load_model(name: str, weights_dir: Path | None = None, verify: bool = True) -> tuple[DressCodeNet, ModelCard]:
    """Build ``name`` from the registry and load its shipped weights after checking sha256.

    Raises :class:`WeightsError` with a short message when the card or the weights are
    missing, malformed, tampered with, or do not fit the architecture. A file whose hash
    does not match is never deserialised.
    """
    spec = get_spec(name)
    weights_path, card_path = model_files(name, weights_dir)
    card = ModelCard.load(card_path)
    if not weights_path.is_file():
        raise WeightsError(f"weights file {weights_path.name} is missing (looked in {weights_path.parent})")
    if verify:
        digest = sha256_file(weights_path)
        if digest != card.weights["sha256"]:
            raise WeightsError(
                f"weights file {weights_path.name} does not match its model card's sha256 "
                "(corrupt or modified); it was not loaded"
            )
    try:
        state = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise WeightsError(f"weights file {weights_path.name} cannot be read ({exc.__class__.__name__})") from None
    model = spec.builder(len(card.classes), "none")
    try:
        model.load_state_dict(state)  # copies into the fp32 parameters, converting fp16 tensor by tensor
    except RuntimeError:
        raise WeightsError(f"weights file {weights_path.name} does not fit the {name} architecture") from None
    check_card_fits(card, model, card_path.name)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, card


def check_card_fits(card: ModelCard, model: DressCodeNet, card_name: str) -> None:
    """:class:`WeightsError` unless the card's classes, decision rule and preprocessing can drive
    ``model``: the sha256 covers the weights only, and these fields decide every prediction."""
    classes = card.classes
    if not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
        raise WeightsError(f"model card {card_name} lists classes that are not distinct names: {classes}")
    bias = card.logit_bias
    if bias is not None and (
        not isinstance(bias, list)
        or len(bias) != len(classes)
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bias)
    ):
        raise WeightsError(
            f"model card {card_name} has a decision rule {bias!r} that is not one finite offset per class "
            f"({len(classes)} classes)"
        )
    expected = json.loads(json.dumps(model.prep.to_dict()))
    if card.preprocessing and card.preprocessing != expected:
        raise WeightsError(
            f"model card {card_name} records preprocessing {card.preprocessing} but the code does {expected}; "
            "the weights were trained for other inputs"
        )
