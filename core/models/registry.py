"""The one registry: each model's name, title, builder, Grad-CAM layers, training recipe and
fast-path margin; where its shipped weights and card are (``core.config.weights_dir``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from core.config import weights_dir
from core.models.networks import DressCodeNet, build_baseline, build_effnet_lite0, build_resnet50


@dataclass(frozen=True)
class CamLayer:
    """A Grad-CAM layer: module path inside the model and a human label."""

    path: str
    label: str

    @property
    def short(self) -> str:
        """The label without the module it names, for narrow pickers: "textures & shapes · 30×40"
        for "textures & shapes (conv 2 + ReLU, 30×40)"."""
        head, _, rest = self.label.partition(" (")
        size = rest.rstrip(")").rsplit(", ", 1)[-1] if rest else ""
        return f"{head} · {size}" if size else head


@dataclass(frozen=True)
class TrainingDefaults:
    """A model's shipped training recipe: what ``python -m core.train`` uses for options not given.

    ``bf16`` is autocast while training (the saved file's dtype is ``core.train.SAVE_DTYPE``)."""

    epochs: int
    lr: float  # the head's; the backbone's is lr × --backbone-lr-mult
    batch_size: int = 48
    freeze_epochs: int = 1  # first epochs with a frozen backbone (pretrained backbones only)
    epoch_size: int = 6000  # images drawn per epoch
    patience: int = 6  # epochs without a validation macro-F1 gain before stopping
    freeze_bn: bool = False  # keep the backbone's BatchNorm statistics after unfreezing
    bf16: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """Everything the app, training and evaluation need to know about one model."""

    name: str
    title: str
    builder: Callable[..., DressCodeNet]
    cam_layers: tuple[CamLayer, ...]
    default_pretrained: str
    description: str
    training_defaults: TrainingDefaults
    # fast batch path (core.prediction.fastpath): rows whose top two logits are closer than this are re-run
    # in fp32; more than twice the largest bf16 logit error bench measured on validation images
    tie_margin: float = 0.75
    # the layer the app explains by default (index into cam_layers): the deepest one that clearly
    # beats its control in the occlusion check (python -m bench.occlusion; docs/layer-study.md, "Which layers
    # the heatmaps come from")
    default_layer: int = -1

    @property
    def weights_file(self) -> Path:
        """Shipped weights (safetensors)."""
        return weights_dir() / f"{self.name}.safetensors"

    @property
    def card_file(self) -> Path:
        """Shipped model card (JSON)."""
        return weights_dir() / f"{self.name}.json"

    @property
    def default_cam_layer(self) -> CamLayer:
        """The layer the app explains by default (the last one unless ``default_layer`` says otherwise)."""
        return self.cam_layers[self.default_layer]

    def cam_layer(self, path: str) -> CamLayer:
        """Look a layer up by path."""
        for layer in self.cam_layers:
            if layer.path == path:
                return layer
        raise KeyError(f"{path!r} is not a registered Grad-CAM layer of {self.name}")


REGISTRY: dict[str, ModelSpec] = {
    "baseline": ModelSpec(
        "baseline",
        "Baseline CNN",
        build_baseline,
        (
            # after the ReLUs: Grad-CAM of the raw conv outputs counted negative activations the
            # network never passes on, and those maps did not follow an occlusion test (conv 2:
            # +0.05 against a flipped control's +0.09; python -m bench.occlusion --also
            # baseline:backbone.conv2, docs/layer-study.md "Which layers the heatmaps come from")
            CamLayer("backbone.relu1", "early edges (conv 1 + ReLU, 60×80)"),
            CamLayer("backbone.relu2", "textures & shapes (conv 2 + ReLU, 30×40)"),
        ),
        "none",
        "Two Conv2D+ReLU+MaxPool blocks, Flatten, Dense(128)+ReLU, Dense(3), softmax; 60×80 input.",
        TrainingDefaults(epochs=12, lr=1e-3, batch_size=64, freeze_epochs=0, epoch_size=12000),
        tie_margin=0.1,  # a small net: bf16 moves its logits by 0.04 at most
    ),
    "resnet50": ModelSpec(
        "resnet50",
        "ResNet50",
        build_resnet50,
        (
            CamLayer("backbone.layer1", "early edges (layer1, 30×40)"),
            CamLayer("backbone.layer2", "textures (layer2, 15×20)"),
            CamLayer("backbone.layer3", "parts (layer3, 8×10)"),
            CamLayer("backbone.layer4", "whole garment (layer4, 4×5)"),
        ),
        "none",
        "torchvision ResNet50 backbone + dense head (pool, dropout, 256+ReLU, dropout, 3); 120×160 input.",
        TrainingDefaults(epochs=16, lr=1.5e-3, patience=10),
        default_layer=1,  # layer2: the only map beating its flipped control on val occlusion (docs/layer-study.md)
    ),
    "effnet_lite0": ModelSpec(
        "effnet_lite0",
        "EfficientNet-Lite0 (ImageNet)",
        build_effnet_lite0,
        (
            CamLayer("backbone.net._blocks.2", "early edges (block 2, 30×40)"),
            CamLayer("backbone.net._blocks.4", "textures (block 4, 15×20)"),
            CamLayer("backbone.net._blocks.10", "parts (block 10, 8×10)"),
            # every cell of this map sees the whole photo, so it shows coarse context, not places
            CamLayer("backbone.net._conv_head", "whole-photo context (conv head, 4×5)"),
        ),
        "imagenet",
        "ImageNet-pretrained EfficientNet-Lite0 backbone + the same dense head; 120×160 input.",
        TrainingDefaults(epochs=12, lr=1e-3, freeze_bn=True),
        default_layer=2,  # block 10: the conv head's cells all see the whole photo (occlusion: docs/layer-study.md)
    ),
}


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name`` (KeyError lists the known names)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}") from None


def get_module(model: nn.Module, path: str) -> nn.Module:
    """A submodule by dotted path."""
    return model.get_submodule(path)
