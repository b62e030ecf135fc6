"""The low-level batched forward on native-canvas images, and the decision rule: training calls it on the
model it trains; everything else predicts through :class:`core.prediction.served.ServedModel`, which uses it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from torch import nn

# The app's multi-photo table uses the fast path (core.prediction.fastpath): folded bfloat16 weights, with
# near ties re-run in fp32, so each row's class is the one its own fp32 explanation shows.
BATCH_FAST = True
BATCH_SIZE = 16  # images per forward pass in the table: small batches stay in cache (bench/ measures it)
DEFAULT_BATCH = 32  # images per forward pass of the fp32 path (see predict_logits)


def bf16_is_fast() -> bool:
    """Whether this CPU runs bfloat16 in hardware (AVX512-BF16 or AMX). Elsewhere oneDNN emulates it: on an
    AVX2-only CPU autocast was measured 7.6× slower than fp32 for EfficientNet-Lite0."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without these queries: assume not
        return False


def to_float_batch(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``N×H×W×3`` array (or ``N×3×H×W`` tensor) → float ``N×3×H×W`` in [0, 1]."""
    if isinstance(images, np.ndarray):
        if not images.flags.writeable:
            images = images.copy()
        images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return images.float().div_(255.0)


def apply_decision_rule(logits: np.ndarray, logit_bias: Sequence[float] | None) -> np.ndarray:
    """Class probabilities: softmax of logits plus the validation-chosen offsets (if any)."""
    z = np.asarray(logits, dtype=np.float64)
    if logit_bias is not None:
        z = z + np.asarray(logit_bias, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_logits(
    model: nn.Module, images: np.ndarray, batch_size: int = DEFAULT_BATCH, bf16: bool = False
) -> np.ndarray:
    """Logits for uint8 ``N×H×W×3`` native images, in batches, under inference mode.

    ``bf16`` uses bfloat16 autocast (faster on CPUs with AMX/AVX512-BF16); the default fp32
    path is the one the model cards' metrics were measured with. Batches of 32 keep the
    activations in cache: 1.2× (ResNet50) to 1.6× (EfficientNet-Lite0) faster than 128 on
    2 threads, with the same per-image predictions on every val/test image.
    """
    out = []
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    with eval_mode(model), torch.inference_mode(), ctx:
        for i in range(0, len(images), batch_size):
            x = to_float_batch(images[i : i + batch_size])
            if bf16:
                x = x.contiguous(memory_format=torch.channels_last)
            out.append(model(x).float().numpy())
    return np.concatenate(out) if out else no_logits(model)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block, every submodule's own training flag put back after (a model
    being trained can be scored between its steps)."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, was in modes.items():
            m.training = was


def no_logits(model: nn.Module) -> np.ndarray:
    """The logits of no images: ``0 × classes`` (from the last linear layer), so that a decision
    rule and an argmax still apply to them."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return np.zeros((0, last[-1].out_features if last else 0), dtype=np.float32)
