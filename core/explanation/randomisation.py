"""The model-randomisation sanity check (Adebayo et al. 2018, "Sanity checks for saliency maps"): a map
that explains the *model* must change when the model's weights are destroyed.

On a deep copy of the model, the weights are re-initialised from the head downwards, one block at a time
and cumulatively (the head's last Linear, then its first, then the backbone's last block, …, the stem):
:func:`cascade_steps`. After each step every requested layer's map is recomputed for the class the
*trained* model predicted, and compared with the trained model's map: Spearman rank correlation
(``scipy.stats.spearmanr``) and SSIM (``skimage.metrics.structural_similarity``) of the two maps upsampled
to the native canvas and scaled to [0, 1] by their maxima. Similarity that stays high while the weights
are random means the map shows the photo (edges, the product's outline), not what the model learnt.

A map that is flat after a step (all zero: nothing speaks for the class any more) ranks nothing: its
Spearman correlation with the trained map is counted as 0.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from core.explanation.overlay import upsample

if TYPE_CHECKING:
    from core.prediction.served import ServedModel

log = logging.getLogger(__name__)

# modules whose children are blocks of their own: the cascade looks inside them
WRAPPERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
WRAPPER_NAMES = ("EffNetFeatures", "EfficientNet")
STRIP = ("backbone.net.", "backbone.")  # left off the steps' labels

# (served model, images, class to explain per image, layers) → per image: layer → map
Explainer = Callable[["ServedModel", np.ndarray, np.ndarray, Sequence[str]], list[dict[str, np.ndarray]]]


@dataclass
class CascadeStep:
    """One step of the cascade: the blocks re-initialised so far end with ``label``."""

    label: str
    paths: list[str]  # the modules this step re-initialises (a conv with its BatchNorm is one block)


@dataclass
class Cascade:
    """Similarity of each step's maps to the trained model's, per layer; step 0 is the trained model."""

    steps: list[str]  # "trained", then each step's label
    spearman: dict[str, np.ndarray] = field(default_factory=dict)  # layer → images × steps
    ssim: dict[str, np.ndarray] = field(default_factory=dict)
    maps: list[list[dict[str, np.ndarray]]] = field(default_factory=list)  # step → image → layer → map

    def mean(self, layer: str) -> list[dict[str, float | str]]:
        """The cascade of one layer averaged over the images: ``[{step, spearman, ssim}, …]``."""
        rho, ssim = self.spearman[layer].mean(0), self.ssim[layer].mean(0)
        return [{"step": s, "spearman": float(r), "ssim": float(q)} for s, r, q in zip(self.steps, rho, ssim)]


def _label(paths: Sequence[str]) -> str:
    def short(p: str) -> str:
        for prefix in STRIP:
            if p.startswith(prefix):
                return p[len(prefix) :]
        return p

    return "+".join(short(p) for p in paths)


def _blocks(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """The module's blocks with weights, in forward (registration) order, looking inside wrappers."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        path = f"{prefix}.{name}"
        if next(child.parameters(), None) is None:
            continue
        if isinstance(child, WRAPPERS) or type(child).__name__ in WRAPPER_NAMES:
            out += _blocks(child, path)
        else:
            out.append((path, child))
    return out


def cascade_steps(model: nn.Module) -> list[CascadeStep]:
    """The re-initialisation order, head first: the head's layers with weights, last first, then the
    backbone's blocks from the last to the stem (a BatchNorm goes with the block before it).

    ``baseline``: head.4, head.1, conv2, conv1. ``resnet50``: head.6, head.3, layer4.2 … layer1.0,
    conv1+bn1. ``effnet_lite0``: head.6, head.3, _conv_head+_bn1, _blocks.15 … _blocks.0, _conv_stem+_bn0.
    """
    merged: list[list[str]] = []
    for path, module in _blocks(model.backbone, "backbone") + _blocks(model.head, "head"):
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and merged:
            merged[-1].append(path)
        else:
            merged.append([path])
    return [CascadeStep(_label(paths), paths) for paths in reversed(merged)]


def reinitialise(model: nn.Module, step: CascadeStep, seed: int) -> None:
    """Fresh random weights (each layer's own ``reset_parameters``: PyTorch's default initialisation;
    BatchNorm back to identity with fresh running statistics) for every module of ``step``, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for path in step.paths:
            for m in model.get_submodule(path).modules():
                if callable(getattr(m, "reset_parameters", None)):
                    m.reset_parameters()


def gradcam_maps(
    served: ServedModel, images: np.ndarray, targets: np.ndarray, layers: Sequence[str]
) -> list[dict[str, np.ndarray]]:
    """The default explainer: Grad-CAM of ``layers`` for each image's class (one pass per class)."""
    out: list[dict[str, np.ndarray] | None] = [None] * len(images)
    for t in np.unique(targets):
        idx = np.flatnonzero(targets == t)
        for i, exp in zip(idx, served.explain_many(images[idx], layers, target=int(t))):
            out[i] = exp.maps
    return out  # type: ignore[return-value]


def similarity(a: np.ndarray, b: np.ndarray, size: tuple[int, int]) -> tuple[float, float]:
    """(Spearman, SSIM) of two maps upsampled to ``size`` (H, W) and scaled to [0, 1] by their maxima;
    a flat map's Spearman counts as 0."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    def unit(m: np.ndarray) -> np.ndarray:
        u = np.nan_to_num(upsample(np.asarray(m, dtype=np.float32), size), nan=0.0, posinf=0.0, neginf=0.0)
        u = u - min(float(u.min()), 0.0)
        top = float(u.max())
        return (u / top if top > 0 else u).astype(np.float64)

    ua, ub = unit(a), unit(b)
    rho = 0.0 if np.ptp(ua) == 0 or np.ptp(ub) == 0 else float(spearmanr(ua.ravel(), ub.ravel()).statistic)
    return rho, float(structural_similarity(ua, ub, data_range=1.0))


def cascade(
    served: ServedModel,
    images: np.ndarray,
    layers: Sequence[str] | None = None,
    targets: Sequence[int] | None = None,
    explainer: Explainer = gradcam_maps,
    steps: Sequence[CascadeStep] | None = None,
    seed: int = 0,
    keep_maps: bool = False,
) -> Cascade:
    """Run the cascade on a deep copy of ``served``'s model (the served model is never touched).

    ``images``: uint8 ``N×H×W×3`` native images; ``targets``: the class each map explains (default: the
    trained model's prediction, decision rule applied); ``steps``: default :func:`cascade_steps`;
    ``explainer``: how maps are made (default Grad-CAM; a stub that ignores the weights must stay similar).
    """
    from core.prediction.served import ServedModel

    layers = list(layers or served.layer_paths)
    images = np.asarray(images)
    tg = np.asarray(served.predict(images).argmax(1) if targets is None else targets, dtype=int)
    steps = list(cascade_steps(served.model) if steps is None else steps)
    with served.lock:
        clone = copy.deepcopy(served.model)
    broken = ServedModel(clone, served.spec, served.classes, served.logit_bias)
    trained = explainer(served, images, tg, layers)
    size = images.shape[1:3]
    result = Cascade(["trained"] + [s.label for s in steps])
    rho = {layer: np.ones((len(images), len(steps) + 1)) for layer in layers}
    ssim = {layer: np.ones((len(images), len(steps) + 1)) for layer in layers}
    if keep_maps:
        result.maps.append(trained)
    for k, step in enumerate(steps, 1):
        reinitialise(clone, step, seed + k)
        now = explainer(broken, images, tg, layers)
        if keep_maps:
            result.maps.append(now)
        for i in range(len(images)):
            for layer in layers:
                rho[layer][i, k], ssim[layer][i, k] = similarity(trained[i][layer], now[i][layer], size)
        log.debug("%s step %d/%d (%s) done", served.spec.name, k, len(steps), step.label)
    result.spearman, result.ssim = rho, ssim
    return result
