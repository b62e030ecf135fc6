"""Grad-CAM explanations with Captum, safe on a model shared by many sessions and threads.

One :class:`GradCamExplainer` wraps one loaded model: a lock serialises every forward and
attribution on it, hooks live only for the duration of a call (Captum removes them in a
``finally``) and the model's ``training`` and ``requires_grad`` flags are put back after.

A call computes the prediction and the Grad-CAM of *every* requested layer from one forward
and one backward pass: Captum's ``compute_layer_gradients_and_eval`` takes a list of layers,
and the prediction is read from the same forward.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from core.fastpath import COMPILE, FastBatchPredictor
from core.inference import apply_decision_rule, predict_logits, to_float_batch
from core.models import DressCodeNet, ModelSpec


@dataclass
class Explanation:
    """One image explained by one model."""

    probs: np.ndarray  # class probabilities after the decision rule, shape (n_classes,)
    predicted: int  # argmax of probs
    target: int  # the class the maps explain
    maps: dict[str, np.ndarray]  # layer path → raw Grad-CAM at layer resolution (h×w, ≥ 0)
    model_input: np.ndarray  # H×W×3 uint8: the image exactly as the backbone saw it
    versus: int | None = None  # set: the maps show evidence for ``target`` over this class (contrastive)

    def upsampled(self, layer: str, mode: str = "bilinear") -> np.ndarray:
        """The map of ``layer`` at model-input resolution (``bilinear`` or ``nearest``)."""
        m = torch.from_numpy(self.maps[layer])[None, None]
        size = self.model_input.shape[:2]
        return LayerAttribution.interpolate(m, size, mode).squeeze().numpy()


@contextmanager
def explaining(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen weights for the duration of an explanation (no weight gradients
    are computed); the training and requires_grad flags are put back afterwards. Only flags
    that differ are touched: the app's models are already in eval mode and frozen."""
    training = [m for m in model.modules() if m.training]
    trainable = [p for p in model.parameters() if p.requires_grad]
    try:
        for m in training:
            m.training = False
        for p in trainable:
            p.requires_grad_(False)
        yield
    finally:
        for m in training:
            m.training = True
        for p in trainable:
            p.requires_grad_(True)


class GradCamExplainer:
    """Predictions and Grad-CAM maps for one model, thread-safe through one lock."""

    def __init__(
        self, model: DressCodeNet, spec: ModelSpec, classes: Sequence[str], logit_bias: Sequence[float] | None = None
    ) -> None:
        self.model = model
        self.spec = spec
        self.classes = list(classes)
        self.logit_bias = None if logit_bias is None else list(logit_bias)
        self.lock = threading.Lock()
        bias = torch.zeros(len(self.classes)) if logit_bias is None else torch.tensor(logit_bias, dtype=torch.float32)
        self._bias = bias
        self._fast: FastBatchPredictor | None = None  # built on first fast predict

    @property
    def layer_paths(self) -> list[str]:
        """The registered Grad-CAM layers, early to late."""
        return [c.path for c in self.spec.cam_layers]

    @property
    def fast_predictor(self) -> FastBatchPredictor:
        """The folded bfloat16 batch copy of the model (built on first use, which also starts
        compiling its backbone in the background unless ``DRESSCODE_COMPILE=0``)."""
        with self.lock:
            return self._fast_predictor()

    def _fast_predictor(self) -> FastBatchPredictor:
        if self._fast is None:
            self._fast = FastBatchPredictor(self.model, margin=self.spec.tie_margin, compile_backbone=COMPILE)
        return self._fast

    def predict(self, images: np.ndarray, batch_size: int = 64, fast: bool = False) -> np.ndarray:
        """Probabilities (decision rule applied) for uint8 ``N×H×W×3`` native images.

        ``fast``: the folded bfloat16 copy with fp32 re-checks of near ties
        (:class:`core.fastpath.FastBatchPredictor`) — same predicted class as the default fp32 path.
        """
        with self.lock:
            if fast:
                logits = self._fast_predictor().logits(images, self.logit_bias, batch_size=batch_size)
            else:
                logits = predict_logits(self.model, images, batch_size=batch_size)
        return apply_decision_rule(logits, self.logit_bias)

    def explain(
        self,
        image: np.ndarray,
        layers: Sequence[str] | None = None,
        target: int | None = None,
        contrast: bool = False,
    ) -> Explanation:
        """Prediction + Grad-CAM of ``layers`` (default: the registry's default layer) for
        ``target`` (default: the predicted class), from one forward and one backward.

        ``contrast`` (with a ``target`` the model did not predict): Grad-CAM of the target's logit
        minus the predicted class's, i.e. what speaks for the target *over* the prediction ("why
        not Formal?"); ``Explanation.versus`` then names the predicted class.
        """
        return self.explain_many(image[None], layers, target, contrast)[0]

    def explain_many(
        self,
        images: np.ndarray,
        layers: Sequence[str] | None = None,
        target: int | None = None,
        contrast: bool = False,
    ) -> list[Explanation]:
        """:meth:`explain` of each of the uint8 ``N×H×W×3`` ``images``, from one forward and one
        backward for all of them (a gallery page costs one pass, not one per photo). The model is
        in eval mode, so each image's gradients are its own: the maps equal one-by-one ones."""
        layers = list(layers) if layers else [self.spec.default_cam_layer.path]
        unknown = [p for p in layers if p not in self.layer_paths]
        if unknown:
            raise KeyError(f"not registered Grad-CAM layers of {self.spec.name}: {unknown}")
        x = to_float_batch(images)
        captured: dict[str, torch.Tensor] = {}

        def forward(inp: torch.Tensor) -> torch.Tensor:  # one score column, explained as target 0
            logits = self.model(inp)
            captured["logits"] = logits.detach()
            chosen = (logits.detach() + self._bias).argmax(1, keepdim=True)  # the prediction, rule applied
            captured["chosen"] = chosen[:, 0]
            if target is None:
                return logits.gather(1, chosen)
            score = logits[:, target : target + 1]
            if contrast:  # over the prediction, where the model predicted another class
                other = (chosen != target).to(score.dtype)
                score = score - other * logits.gather(1, chosen)
            return score

        modules = [self.model.get_submodule(p) for p in layers]
        # Autograd starts at the earliest requested layer: nothing before it is recorded.
        earliest = self.model.get_submodule(min(layers, key=self.layer_paths.index))
        with self.lock, explaining(self.model):
            handle = earliest.register_forward_pre_hook(_track_from_here)
            try:
                grads, evals = compute_layer_gradients_and_eval(forward, modules, (x,), 0)
            finally:
                handle.remove()
            model_input = self.model.model_input(x)
        cams = {path: _grad_cam(g[0], a[0])[:, 0].numpy() for path, g, a in zip(layers, grads, evals)}
        probs = apply_decision_rule(captured["logits"].numpy(), self.logit_bias)
        seen = (model_input.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        out = []
        for i, row in enumerate(probs):
            predicted = int(captured["chosen"][i])  # the class the forward explained: label and map agree even at a tie
            chosen = predicted if target is None else int(target)
            versus = predicted if contrast and target is not None and predicted != target else None
            maps = {path: cam[i] for path, cam in cams.items()}
            out.append(Explanation(row, predicted, chosen, maps, seen[i], versus))
        return out

    def explain_single_layer(self, image: np.ndarray, layer: str, target: int) -> np.ndarray:
        """Grad-CAM of one layer straight from Captum's ``LayerGradCam`` (reference path)."""
        x = to_float_batch(image[None])
        with self.lock, explaining(self.model):
            x.requires_grad_(True)
            gc = LayerGradCam(self.model, self.model.get_submodule(layer))
            attr = gc.attribute(x, target=target, relu_attributions=True)
        return attr.detach()[0, 0].numpy()


def _track_from_here(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the layer's input becomes a leaf that requires grad."""
    return tuple(a.detach().requires_grad_(True) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def _grad_cam(grad: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Captum LayerGradCam's formula: ReLU(Σ_c mean_hw(∂y/∂A_c) · A_c)."""
    weights = grad.mean(dim=tuple(range(2, grad.dim())), keepdim=True)
    return F.relu((weights * act).sum(dim=1, keepdim=True)).detach().float()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get average ranks); NaN when either side is constant."""
    import pandas as pd  # its rank() averages ties; only the occlusion check needs it

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # a flat map ranks nothing
    return float(np.corrcoef(pd.Series(a).rank(), pd.Series(b).rank())[0, 1])


def occlusion_agreement(
    explainer: GradCamExplainer,
    image: np.ndarray,
    layers: Sequence[str],
    patch: int = 12,
    stride: int = 6,
) -> tuple[Explanation, dict[str, tuple[float, float]]]:
    """Does each layer's map point where hiding the image hurts the explained class?

    Greys out every ``patch``×``patch`` square of the native ``image`` (step ``stride``) and
    returns, per layer, the rank correlation between the map's mean over the square and the
    drop of the explained class's logit, and the same for the map flipped upside down (a
    control: a map that only follows where products usually are scores alike on both).
    """
    h, w = image.shape[:2]
    if h < patch or w < patch:
        raise ValueError(f"a {w}×{h} image is smaller than the {patch}×{patch} patch")
    exp = explainer.explain(image, layers=layers)
    pos = [(y, x) for y in range(0, h - patch + 1, stride) for x in range(0, w - patch + 1, stride)]
    occluded = np.repeat(image[None], len(pos), 0)
    for k, (y, x) in enumerate(pos):
        occluded[k, y : y + patch, x : x + patch] = 128
    with explainer.lock:  # one model, shared: every forward under its lock
        logit = predict_logits(explainer.model, image[None])[0, exp.target]
        drop = logit - predict_logits(explainer.model, occluded)[:, exp.target]
    out = {}
    for layer in layers:
        m = torch.from_numpy(exp.maps[layer])[None, None]
        cam = LayerAttribution.interpolate(m, (h, w), "bilinear").squeeze().numpy()  # on the native canvas
        heat, flipped = (np.array([c[y : y + patch, x : x + patch].mean() for y, x in pos]) for c in (cam, cam[::-1]))
        out[layer] = (spearman(heat, drop), spearman(flipped, drop))
    return exp, out
