"""Grad-CAM explanations with Captum, safe on a model shared by many sessions and threads.

One :class:`GradCamExplainer` wraps one loaded model: the lock of the served model that owns it
(:class:`core.prediction.served.ServedModel`) serialises every forward and attribution on it,
hooks live only for the duration of a call (Captum removes them in a ``finally``) and the
model's ``training`` and ``requires_grad`` flags are put back after.

A call computes the prediction and the Grad-CAM of *every* requested layer from one forward
and one backward pass: Captum's ``compute_layer_gradients_and_eval`` takes a list of layers,
and the prediction is read from the same forward. Drawing the maps is :mod:`core.explanation.overlay`'s.
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
from captum.attr import LayerGradCam
from torch import nn

from core.models.networks import DressCodeNet
from core.models.registry import ModelSpec
from core.prediction.inference import apply_decision_rule, to_float_batch


@dataclass
class Explanation:
    """One image explained by one model."""

    probs: np.ndarray  # class probabilities after the decision rule, shape (n_classes,)
    predicted: int  # argmax of probs
    target: int  # the class the maps explain
    maps: dict[str, np.ndarray]  # layer path → raw Grad-CAM at layer resolution (h×w, ≥ 0)
    model_input: np.ndarray  # H×W×3 uint8: the image exactly as the backbone saw it (overlays are drawn on it)
    versus: int | None = None  # set: the maps show evidence for ``target`` over this class (contrastive)


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
    """Grad-CAM maps (and the prediction read from the same forward) for one model, thread-safe
    through ``lock``: the lock of the :class:`core.prediction.served.ServedModel` that owns the model, so that
    its predictions and explanations take turns on it (a fresh lock when none is given)."""

    def __init__(
        self,
        model: DressCodeNet,
        spec: ModelSpec,
        classes: Sequence[str],
        logit_bias: Sequence[float] | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.model = model
        self.spec = spec
        self.classes = list(classes)
        self.logit_bias = None if logit_bias is None else list(logit_bias)
        self.lock = threading.Lock() if lock is None else lock
        bias = torch.zeros(len(self.classes)) if logit_bias is None else torch.tensor(logit_bias, dtype=torch.float32)
        self._bias = bias

    @property
    def layer_paths(self) -> list[str]:
        """The registered Grad-CAM layers, early to late."""
        return [c.path for c in self.spec.cam_layers]

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
