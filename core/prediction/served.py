"""One door into a loaded model: :class:`ServedModel` predicts (plain fp32 or the fast batch path)
and explains (Grad-CAM), every forward and attribution under one lock.

The app, evaluation and the benchmarks all predict and explain through it; training keeps calling
:func:`core.prediction.inference.predict_logits` on the model it is training.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from core.config import compile_enabled
from core.explanation.gradcam import Explanation, GradCamExplainer
from core.models.card import ModelCard, load_model
from core.models.networks import DressCodeNet
from core.models.registry import ModelSpec, get_spec
from core.prediction.fastpath import FP32_TIE_MARGIN, FastBatchPredictor, split_head
from core.prediction.inference import (
    DEFAULT_BATCH,
    apply_decision_rule,
    bf16_is_fast,
    eval_mode,
    predict_logits,
    to_float_batch,
)
from core.scoring.calibration import calibrate_probs, temperature_for


class ServedModel:
    """A model with its registry entry, classes and decision rule, shared by every session and thread.

    It holds the one lock of the model, the fp32 path (:func:`core.prediction.inference.predict_logits`), the
    fast batch path (:class:`core.prediction.fastpath.FastBatchPredictor`, built on first use) and the
    Grad-CAM explainer (:class:`core.explanation.gradcam.GradCamExplainer`, on the same lock).

    ``temperature``: fitted on validation (``weights/calibration.json``, :mod:`core.calibrate`); the
    probabilities of :meth:`predict` and :meth:`explain` are ``softmax((logits + logit_bias) / T)``, so the
    predicted class is the rule's. None: uncalibrated (T = 1).
    """

    def __init__(
        self,
        model: DressCodeNet,
        spec: ModelSpec,
        classes: Sequence[str],
        logit_bias: Sequence[float] | None = None,
        card: ModelCard | None = None,
        temperature: float | None = None,
    ) -> None:
        self.model = model
        self.spec = spec
        self.classes = list(classes)
        self.logit_bias = None if logit_bias is None else list(logit_bias)
        self.card = card
        self.temperature = temperature
        self.lock = threading.Lock()
        self._cam = GradCamExplainer(model, spec, self.classes, self.logit_bias, lock=self.lock)
        self._fast: FastBatchPredictor | None = None  # built on first fast predict

    @classmethod
    def load(cls, name: str, weights_dir: Path | None = None) -> ServedModel:
        """The shipped model ``name`` (or the one in ``weights_dir``), its sha256 checked, with its card's
        classes and decision rule; raises :class:`core.models.card.WeightsError` as
        :func:`core.models.card.load_model` does."""
        model, card = load_model(name, weights_dir)
        temperature = temperature_for(name, card.weights.get("sha256"), weights_dir)
        return cls(model, get_spec(name), card.classes, card.logit_bias, card, temperature)

    @property
    def calibrated(self) -> bool:
        """Whether the probabilities are temperature-scaled (a temperature fitted on these weights)."""
        return self.temperature is not None

    @property
    def name(self) -> str:
        """The registry name."""
        return self.spec.name

    @property
    def layer_paths(self) -> list[str]:
        """The registered Grad-CAM layers, early to late."""
        return [c.path for c in self.spec.cam_layers]

    @property
    def fast_predictor(self) -> FastBatchPredictor:
        """The folded batch copy of the model, bfloat16 where the CPU runs it in hardware (built on first use,
        which also starts compiling its backbone in the background unless ``DRESSCODE_COMPILE=0``)."""
        with self.lock:
            return self._fast_predictor()

    @property
    def fast_dtype(self) -> torch.dtype:
        """The batch copy's precision: bfloat16 where the CPU runs it in hardware, else float32 (emulated
        bfloat16 would be slower than the fp32 model itself). What the neighbour index's cache is keyed by."""
        return torch.bfloat16 if bf16_is_fast() else torch.float32

    def _fast_predictor(self) -> FastBatchPredictor:
        if self._fast is None:
            dtype = self.fast_dtype
            self._fast = FastBatchPredictor(
                self.model,
                dtype=dtype,
                margin=self.spec.tie_margin if dtype == torch.bfloat16 else FP32_TIE_MARGIN,
                compile_backbone=compile_enabled(),
            )
        return self._fast

    def logits(self, images: np.ndarray, batch_size: int = DEFAULT_BATCH, fast: bool = False) -> np.ndarray:
        """Logits (no decision rule) for uint8 ``N×H×W×3`` native images, in batches of ``batch_size``.

        ``fast``: the folded bfloat16 copy with fp32 re-checks of near ties
        (:class:`core.prediction.fastpath.FastBatchPredictor`) — same rule-adjusted class as the default fp32 path.
        """
        with self.lock:
            if fast:
                return self._fast_predictor().logits(images, self.logit_bias, batch_size=batch_size)
            return predict_logits(self.model, images, batch_size=batch_size)

    def predict(self, images: np.ndarray, batch_size: int = DEFAULT_BATCH, fast: bool = False) -> np.ndarray:
        """Class probabilities (the card's decision rule applied, then the temperature) for uint8 ``N×H×W×3``
        native images; ``fast`` as in :meth:`logits`."""
        return calibrate_probs(
            apply_decision_rule(self.logits(images, batch_size, fast), self.logit_bias), self.temperature
        )

    def embeddings(self, images: np.ndarray, batch_size: int = DEFAULT_BATCH, fast: bool = True) -> np.ndarray:
        """The penultimate embedding (the input of the head's classification layer, float32 ``N×D``) of
        uint8 ``N×H×W×3`` native images: by default on the fast path (:meth:`FastBatchPredictor.fast_embeddings`,
        several times quicker than fp32), or fp32 with ``fast=False``. The lock is taken chunk by chunk, so a
        long run (a neighbour index over the training split) lets other sessions through between chunks."""
        body, last = split_head(self.model.head)  # checked once, before any work
        out = []
        for i in range(0, len(images), batch_size):
            chunk = images[i : i + batch_size]
            with self.lock:
                if fast:
                    out.append(self._fast_predictor().fast_embeddings(chunk, batch_size))
                    continue
                with eval_mode(self.model), torch.inference_mode():
                    x = self.model.backbone(self.model.adapter(to_float_batch(chunk)))
                    out.append(body(x).flatten(1).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, last.in_features), np.float32)

    def _calibrated(self, exp: Explanation) -> Explanation:
        if self.temperature is None:
            return exp
        return dataclasses.replace(exp, probs=calibrate_probs(exp.probs, self.temperature))

    def explain(
        self,
        image: np.ndarray,
        layers: Sequence[str] | None = None,
        target: int | None = None,
        contrast: bool = False,
    ) -> Explanation:
        """Prediction + Grad-CAM of one image (:meth:`core.explanation.gradcam.GradCamExplainer.explain`)."""
        return self._calibrated(self._cam.explain(image, layers, target, contrast))

    def explain_many(
        self,
        images: np.ndarray,
        layers: Sequence[str] | None = None,
        target: int | None = None,
        contrast: bool = False,
    ) -> list[Explanation]:
        """:meth:`explain` of several images in one pass
        (:meth:`core.explanation.gradcam.GradCamExplainer.explain_many`)."""
        return [self._calibrated(e) for e in self._cam.explain_many(images, layers, target, contrast)]

    def explain_single_layer(self, image: np.ndarray, layer: str, target: int) -> np.ndarray:
        """Grad-CAM of one layer from Captum's ``LayerGradCam`` (the reference path)."""
        return self._cam.explain_single_layer(image, layer, target)
