"""Do the Grad-CAM maps point where hiding the photo hurts? The occlusion check behind
``python -m bench.occlusion`` and the choice of each model's default layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from core.explanation.gradcam import Explanation
from core.explanation.overlay import upsample

if TYPE_CHECKING:
    from core.prediction.served import ServedModel


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get average ranks); NaN when either side is constant."""
    import pandas as pd  # its rank() averages ties; only the occlusion check needs it

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # a flat map ranks nothing
    return float(np.corrcoef(pd.Series(a).rank(), pd.Series(b).rank())[0, 1])


def occlusion_agreement(
    served: ServedModel,
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
    exp = served.explain(image, layers=layers)
    pos = [(y, x) for y in range(0, h - patch + 1, stride) for x in range(0, w - patch + 1, stride)]
    occluded = np.repeat(image[None], len(pos), 0)
    for k, (y, x) in enumerate(pos):
        occluded[k, y : y + patch, x : x + patch] = 128
    logit = served.logits(image[None])[0, exp.target]  # each forward under the served model's lock
    drop = logit - served.logits(occluded)[:, exp.target]
    out = {}
    for layer in layers:
        cam = upsample(exp.maps[layer], (h, w))  # on the native canvas
        heat, flipped = (np.array([c[y : y + patch, x : x + patch].mean() for y, x in pos]) for c in (cam, cam[::-1]))
        out[layer] = (spearman(heat, drop), spearman(flipped, drop))
    return exp, out
