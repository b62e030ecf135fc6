"""The fast batch path of the multi-photo table: BatchNorm folded into the convolutions,
bfloat16 weights, channels-last memory — and an fp32 re-check of every near tie, so the
predicted class is the one the plain fp32 path gives.

Why it is safe: folding a BatchNorm (eval mode) into the convolution before it is exact
algebra; bfloat16 moves a logit by at most ~0.33 for the ResNet50 and EfficientNet and ~0.04
for the baseline (``bench`` measures it on validation images), so a row whose top two
(decision-rule) scores are further apart than the model's margin (``ModelSpec.tie_margin``,
more than twice that) cannot change class. Rows closer than that are recomputed on the fp32
model. Grad-CAM explanations keep using the unchanged fp32 model.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from core.inference import BATCH_SIZE, predict_logits, to_float_batch
from core.models import DressCodeNet

log = logging.getLogger(__name__)

# Default margin: rows whose best and second-best (rule-adjusted) logits are closer than this
# are re-run in fp32. ``python -m bench`` measures the largest bf16-vs-fp32 logit difference on
# validation images and prints it next to the margin; it must stay below half of the margin.
TIE_MARGIN = 0.75


def fold_batchnorm(module: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``module`` with each ``Conv2d`` → ``BatchNorm2d`` sibling pair fused.

    Pairs are found in registration order (conv then its BatchNorm, as in torchvision's ResNet
    and EfficientNet-Lite); :class:`FastBatchPredictor` checks the result numerically, so a
    module whose forward does not follow that order is never used folded. Returns the copy
    and the number of fused pairs.
    """
    folded = copy.deepcopy(module).eval()
    fused = 0
    for parent in folded.modules():
        names = list(parent._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = parent._modules[a], parent._modules[b]
            if type(bn) is nn.BatchNorm2d and isinstance(conv, nn.Conv2d) and bn.num_features == conv.out_channels:
                parent._modules[a] = fuse_conv_bn_eval(conv, bn)
                parent._modules[b] = nn.Identity()
                fused += 1
    return folded, fused


class FastBatchPredictor:
    """Batch logits from a folded bfloat16 copy of ``model``; near ties re-run in fp32."""

    def __init__(self, model: DressCodeNet, dtype: torch.dtype = torch.bfloat16, margin: float = TIE_MARGIN) -> None:
        self.reference = model
        self.margin = margin
        self.dtype = dtype
        folded, self.fused = fold_batchnorm(model)
        if not _same_function(model, folded):
            log.warning("%s: BatchNorm folding changed the outputs; using the model unfolded", type(model).__name__)
            folded, self.fused = copy.deepcopy(model).eval(), 0
        for p in folded.parameters():
            p.requires_grad_(False)
        self.adapter = folded.adapter  # resizing and normalisation stay in fp32 …
        self.head = folded.head  # … and so does the small head, so logits are not rounded to bf16
        backbone = folded.backbone.to(dtype=dtype, memory_format=torch.channels_last)
        self.backbone = _frozen_graph(backbone, torch.zeros(2, 3, *self.adapter.size_hw, dtype=dtype))
        self.rechecked = 0  # rows re-run in fp32 by the last call

    def fast_logits(self, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """bfloat16 logits for uint8 ``N×H×W×3`` images, no re-check."""
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                x = self.adapter(to_float_batch(images[i : i + batch_size]))
                x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
                out.append(self.head(self.backbone(x).float()).numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def logits(
        self, images: np.ndarray, logit_bias: Sequence[float] | None = None, batch_size: int = BATCH_SIZE
    ) -> np.ndarray:
        """Logits whose rule-adjusted argmax equals the fp32 path's: fast logits, with every row
        whose top two scores are within ``margin`` replaced by its fp32 logits."""
        z = self.fast_logits(images, batch_size)
        if len(z) == 0:
            self.rechecked = 0
            return z
        adjusted = z + (0.0 if logit_bias is None else np.asarray(logit_bias, dtype=np.float32))
        top2 = np.sort(adjusted, axis=1)[:, -2:]
        close = np.flatnonzero(top2[:, 1] - top2[:, 0] < self.margin)
        self.rechecked = len(close)
        if len(close):
            z[close] = predict_logits(self.reference, images[close], batch_size=batch_size)
        return z


def _frozen_graph(backbone: nn.Module, example: torch.Tensor) -> nn.Module:
    """The backbone traced (on ``example``, shaped like its input) and frozen by TorchScript
    (oneDNN fuses convolutions with the ReLUs and additions after them: same numbers, ~10%
    faster); the eager module if that fails."""
    x = example.contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notice
            frozen = torch.jit.freeze(torch.jit.trace(backbone, x))
            if torch.equal(frozen(x), backbone(x)):
                return frozen
    except Exception as exc:  # tracing is an optimisation only
        log.info("backbone not traced (%s); running it eagerly", exc.__class__.__name__)
    return backbone


def _same_function(a: nn.Module, b: nn.Module, atol: float = 1e-3) -> bool:
    """True when two models give the same fp32 logits on a fixed batch of random images."""
    images = np.random.default_rng(0).integers(0, 256, (4, 80, 60, 3), dtype=np.uint8)
    return bool(np.allclose(predict_logits(a, images), predict_logits(b, images), rtol=1e-3, atol=atol))
