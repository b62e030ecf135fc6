"""The fast batch path of the multi-photo table: BatchNorm folded into the convolutions,
bfloat16 weights, channels-last memory — and an fp32 re-check of every near tie, so the
predicted class is the one the plain fp32 path gives.

Why it is safe: folding a BatchNorm (eval mode) into the convolution before it is exact
algebra; bfloat16 moves a logit by at most ~0.34 for ResNet50, ~0.15 for EfficientNet-Lite0
and ~0.04 for the baseline (``bench`` measures it on validation images), so a row whose top two
(decision-rule) scores are further apart than the model's margin (``ModelSpec.tie_margin``,
more than twice that) cannot change class. Rows closer than that are recomputed on the fp32
model. Grad-CAM explanations keep using the unchanged fp32 model.

Speed comes in two tiers. At once: the backbone traced and frozen by TorchScript. In the
background, from the first use: the same bfloat16 backbone compiled by ``torch.compile``
(Inductor with weight freezing: oneDNN convolutions with pre-packed weights and the ReLUs and
residual additions fused into them, about twice as fast on a CPU). The compiled graph takes
over once it is built and checked (15–25 s for two models with an empty Inductor cache, a
few seconds once its on-disk cache holds the kernels); until then, or where
compiling is impossible (no C++ compiler, ``DRESSCODE_COMPILE=0``), the traced one serves.

On a CPU without bfloat16 in hardware (AVX2 only: oneDNN would emulate it, several times slower than
fp32) :class:`core.prediction.served.ServedModel` keeps the copy in fp32 (still folded, channels-last,
traced and compiled) with the much smaller :data:`FP32_TIE_MARGIN`.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from core.models.networks import DressCodeNet
from core.prediction.inference import BATCH_SIZE, no_logits, predict_logits, to_float_batch

log = logging.getLogger(__name__)
# TorchScript's deprecation notices, once per process, narrowly: a warnings.catch_warnings() block
# around the trace is not thread-safe and could drop or leak filters set by other sessions' threads
warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)

# Default margin: rows whose best and second-best (rule-adjusted) logits are closer than this
# are re-run in fp32. ``python -m bench`` measures the largest bf16-vs-fp32 logit difference on
# validation images and prints it next to the margin; it must stay below half of the margin.
TIE_MARGIN = 0.75
# The margin of an fp32 copy: folding is exact up to fp32 rounding (about 1e-5 on a logit; the copy is checked
# against the model when built, and its compiled graph within half this margin).
FP32_TIE_MARGIN = 0.01

# torch.compile is not thread-safe: one compilation at a time, and compiled graphs run only
# while none is in progress (their "fail on recompile" stance is process-wide)
_COMPILE_LOCK = threading.Lock()
# The compiled graph has one fixed batch size (no recompiling): larger than the traced graph's
# chunks, where oneDNN's fused kernels run ~15% faster per image (measured: 2.9 ms at 32 vs
# 3.5 ms at 16 per ResNet50 image).
COMPILED_BATCH = 32


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


def split_head(head: nn.Module) -> tuple[nn.Sequential, nn.Linear]:
    """A model's head as (everything before its classification layer, that ``nn.Linear``): the first part's
    output is the embedding (:meth:`FastBatchPredictor.fast_embeddings`, :meth:`ServedModel.embeddings`)."""
    if not (isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear)):
        raise TypeError("the head must be an nn.Sequential ending with its classification nn.Linear")
    return head[:-1], head[-1]


class FastBatchPredictor:
    """Batch logits from a folded bfloat16 copy of ``model``; near ties re-run in fp32."""

    def __init__(
        self,
        model: DressCodeNet,
        dtype: torch.dtype = torch.bfloat16,
        margin: float = TIE_MARGIN,
        compile_backbone: bool = False,
        compiled_batch: int = COMPILED_BATCH,
    ) -> None:
        self.reference = model
        self.margin = margin
        self.dtype = dtype
        folded, self.fused = fold_batchnorm(model)
        # a fixed probe batch and its fp32 logits: the fold and the compiled graph are checked on it
        self._probe = np.random.default_rng(0).integers(0, 256, (4, 80, 60, 3), dtype=np.uint8)
        self._probe_logits = predict_logits(model, self._probe)
        if not np.allclose(predict_logits(folded, self._probe), self._probe_logits, rtol=1e-3, atol=1e-3):
            log.warning("%s: BatchNorm folding changed the outputs; using the model unfolded", type(model).__name__)
            folded, self.fused = copy.deepcopy(model).eval(), 0
        for p in folded.parameters():
            p.requires_grad_(False)
        self.adapter = folded.adapter  # resizing and normalisation stay in fp32 …
        self.head = folded.head  # … and so does the small head, so logits are not rounded to bf16
        backbone = folded.backbone.to(dtype=dtype, memory_format=torch.channels_last)
        self.backbone = _frozen_graph(backbone, torch.zeros(2, 3, *self.adapter.size_hw, dtype=dtype))
        self.rechecked = 0  # rows re-run in fp32 by the last call
        # the compiled tier: built in the background for chunks of exactly ``compiled_batch``
        self.compiled_batch = compiled_batch
        self.compiled: nn.Module | None = None
        self.compile_state = "off"  # off | compiling | ready | failed
        self.compile_seconds: float | None = None
        self._compiled_ready = threading.Event()
        if compile_backbone:
            self.compile_state = "compiling"
            threading.Thread(target=self._compile, args=(backbone,), name="dresscode-compile", daemon=True).start()
        else:
            self._compiled_ready.set()

    def _compile(self, backbone: nn.Module) -> None:
        """Compile ``backbone`` with Inductor (weights frozen), check it, then let it serve."""
        t0 = time.perf_counter()
        try:
            import torch._inductor.config as inductor_config

            n = len(self._probe)
            exact = torch.from_numpy(self._probe_logits)
            with torch.inference_mode():  # the probe images, repeated to the compiled batch size
                x = self.adapter(to_float_batch(np.resize(self._probe, (self.compiled_batch, *self._probe.shape[1:]))))
                x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
            with _COMPILE_LOCK, torch.inference_mode(), inductor_config.patch(freezing=True):
                compiled = torch.compile(backbone, dynamic=False)
                got, eager = self.head(compiled(x)[:n].float()), self.head(backbone(x)[:n].float())
            err, eager_err = float((got - exact).abs().max()), float((eager - exact).abs().max())
            limit = 1.5 * eager_err + 0.01  # the bf16 margin was measured on the eager bf16 graph
            if self.dtype == torch.float32:
                limit = min(limit, self.margin / 2)  # an fp32 copy's small margin must still hold
            if not err <= limit:
                raise ValueError(f"compiled logits are off by {err:.3f}, eager {self.dtype} ones by {eager_err:.3f}")
            self.compiled, self.compile_state = compiled, "ready"
            seconds = time.perf_counter() - t0
            log.info("backbone compiled in %.1f s (logit error %.3f, eager %.3f)", seconds, err, eager_err)
        except Exception as exc:  # compiling is an optimisation only: the traced graph keeps serving
            self.compile_state = "failed"
            log.warning("backbone not compiled (%s: %s); the traced graph serves", type(exc).__name__, exc)
        finally:
            self.compile_seconds = time.perf_counter() - t0
            self._compiled_ready.set()

    def wait_compiled(self, timeout: float | None = None) -> bool:
        """Block until background compilation has finished (or was never started); True if the
        compiled graph serves."""
        self._compiled_ready.wait(timeout)
        return self.compiled is not None

    def _backbone_of(self, n: int) -> tuple[nn.Module, int]:
        """The graph for a chunk of ``n`` images, and the batch size to pad the chunk to: the
        compiled one only for chunks at least half its fixed batch (padding costs compute)."""
        compiled = self.compiled
        if compiled is not None and self.compiled_batch // 2 <= n <= self.compiled_batch:
            return compiled, self.compiled_batch
        return self.backbone, n

    def _run_compiled(self, compiled: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
        """The compiled graph on ``x``, or None while another model compiles or if it would have
        to recompile (then it is dropped for good: a recompile would stall the table for seconds)."""
        if not _COMPILE_LOCK.acquire(blocking=False):
            return None
        try:
            with torch.compiler.set_stance("fail_on_recompile"):
                return compiled(x)
        except Exception as exc:
            log.warning("compiled backbone dropped (%s: %s); the traced graph serves", type(exc).__name__, exc)
            self.compiled, self.compile_state = None, "failed"
            return None
        finally:
            _COMPILE_LOCK.release()

    def fast_logits(self, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """bfloat16 logits for uint8 ``N×H×W×3`` images, no re-check; chunks of ``batch_size``
        for the traced graph, of ``compiled_batch`` once the compiled one serves."""
        return self._forward(images, batch_size, self.head)

    def fast_embeddings(self, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """The input of the head's last layer (an ``nn.Linear``; float32 ``N×D``) on the fast path: the
        bfloat16 backbone, then the fp32 head without its last layer."""
        return self._forward(images, batch_size, split_head(self.head)[0])

    def _forward(self, images: np.ndarray, batch_size: int, head: nn.Module) -> np.ndarray:
        """``head`` (fp32) on the backbone's bfloat16 features of uint8 ``N×H×W×3`` images, chunk by chunk."""
        out = []
        step = batch_size if self.compiled is None else self.compiled_batch
        with torch.inference_mode():
            for i in range(0, len(images), step):
                x = self.adapter(to_float_batch(images[i : i + step])).to(self.dtype)
                n = len(x)
                graph, padded = self._backbone_of(n)
                y = None
                if graph is not self.backbone:  # the compiled graph has one fixed shape: pad the chunk to it
                    xp = torch.cat([x, x.new_zeros((padded - n, *x.shape[1:]))]) if padded > n else x
                    y = self._run_compiled(graph, xp.contiguous(memory_format=torch.channels_last))
                if y is None:  # the traced graph, on the chunk as it is
                    y = self.backbone(x.contiguous(memory_format=torch.channels_last))
                out.append(head(y[:n].float()).flatten(1).numpy())
        if out:
            return np.concatenate(out)
        return (
            no_logits(self.head)
            if head is self.head
            else np.zeros((0, split_head(self.head)[1].in_features), np.float32)
        )

    def logits(
        self, images: np.ndarray, logit_bias: Sequence[float] | None = None, batch_size: int = BATCH_SIZE
    ) -> np.ndarray:
        """Logits whose rule-adjusted argmax equals the fp32 path's: fast logits, with every row
        whose top two scores are within ``margin`` replaced by its fp32 logits."""
        return self.recheck(images, self.fast_logits(images, batch_size), logit_bias, batch_size)

    def recheck(
        self,
        images: np.ndarray,
        z: np.ndarray,
        logit_bias: Sequence[float] | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> np.ndarray:
        """``z`` (the fast logits of ``images``) with every near-tie row replaced, in place, by
        its fp32 logits; sets ``rechecked``."""
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
    (same numbers, ~10% faster than eager; its ReLUs and residual additions still run as
    separate ops); the eager module if that fails."""
    x = example.contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            frozen = torch.jit.freeze(torch.jit.trace(backbone, x))
            if torch.equal(frozen(x), backbone(x)):
                return frozen
    except Exception as exc:  # tracing is an optimisation only
        log.info("backbone not traced (%s); running it eagerly", exc.__class__.__name__)
    return backbone
