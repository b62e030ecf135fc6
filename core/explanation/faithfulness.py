"""Deletion and insertion curves: does removing the pixels a map ranks first hurt the explained class
more than removing pixels at random, and more than removing the map's least important pixels first?

A map (any resolution) is upsampled to the native canvas and its pixels are ranked, most important
first (ties broken at random, seeded, so that a map's flat zero region has no positional order).

- *Deletion* (default ``deletion_fill="road"``): the deleted pixels are filled by ROAD's noisy linear
  imputation (Rong et al. 2022, "Remove and Debias"; pytorch-grad-cam's ``NoisyLinearImputer``): each one
  the weighted mean of its neighbours, solved as one sparse system, plus slight noise. Filling with a
  constant (``"white"``, the catalogue photos' background) makes scattered deleted pixels a pattern of
  their own: a random order then hurts the class by that pattern, not by what it removes, and the map
  is compared with an artefact (measured once on validation, the baseline's map against random pixels:
  0.575 vs 0.608 with white, 0.581 vs 0.712 imputed). Everything deleted (fraction 1) is the photo's mean colour.
- *Insertion* (default ``insertion_fill="blur"``, as in RISE, Petsiuk et al. 2018): the curve starts from a
  blurred copy of the photo (Gaussian, radius ``BLUR_RADIUS``) and reveals the sharp pixels in the map's
  order. A different start than deletion's on purpose: from a white canvas, inserting the top k % is
  deleting the bottom 100 − k %, and the insertion curve would repeat the flipped map's deletion curve.

Every perturbed image of a call is scored in one batched :meth:`ServedModel.predict` (the card's
decision rule applied); the curve is the explained class's probability against the fraction of pixels
deleted or inserted, and its area (trapezoid rule over [0, 1]) is the score: low deletion AUC and high
insertion AUC mean the map ranks the pixels the model needs first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFilter

from core.explanation.overlay import upsample

if TYPE_CHECKING:
    from core.prediction.served import ServedModel

FILLS = ("road", "white", "blur")
ORDERS = ("map", "random", "flipped")  # the map's order, a random order, least important first
DEFAULT_FRACTIONS = tuple(np.round(np.linspace(0.0, 1.0, 11), 3))  # 0, 10 %, …, 100 %
QUICK_FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # Classify's one line: 2 × 7 perturbed images
BLUR_RADIUS = 6.0  # px on the 60×80 canvas: the product's shape stays, its details go
ROAD_NOISE = 0.01  # ROAD's noise on imputed pixels (pytorch-grad-cam's default), on the 0–1 scale


@dataclass
class Curve:
    """The explained class's probability after deleting (or inserting) each fraction of the pixels."""

    fractions: np.ndarray
    probs: np.ndarray

    @property
    def auc(self) -> float:
        """Area under the curve over the fractions (trapezoid rule)."""
        return float(np.trapezoid(self.probs, self.fractions))

    def at(self, fraction: float) -> float:
        """The probability at ``fraction`` (interpolated between the measured fractions)."""
        return float(np.interp(fraction, self.fractions, self.probs))


@dataclass
class Faithfulness:
    """One map of one photo: its deletion and insertion curves per pixel order (``ORDERS``)."""

    target: int  # the class whose probability the curves follow
    full: float  # its probability on the untouched photo
    deletion_fill: str
    insertion_fill: str
    deletion: dict[str, Curve] = field(default_factory=dict)  # order → curve
    insertion: dict[str, Curve] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """The AUCs as flat keys: ``deletion_auc``, ``deletion_auc_random``, ``insertion_auc_flipped`` …"""
        out = {}
        for kind, curves in (("deletion", self.deletion), ("insertion", self.insertion)):
            for order, curve in curves.items():
                out[f"{kind}_auc" + ("" if order == "map" else f"_{order}")] = curve.auc
        return out


def pixel_order(cam: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices of an ``size`` (H, W) canvas, the map's most important first (the map upsampled
    bilinearly, as the overlays draw it); ties in random order."""
    heat = np.nan_to_num(upsample(np.asarray(cam, dtype=np.float32), size), nan=0.0).ravel()
    return np.lexsort((rng.random(heat.size), -heat))  # last key first: by heat, then the random tie-break


def filled(image: np.ndarray, fill: str) -> np.ndarray:
    """What a deleted pixel becomes with a constant fill: white, or the pixel of a blurred copy of ``image``
    (``"road"`` depends on which pixels are deleted: :func:`imputed`)."""
    if fill == "white":
        return np.full_like(image, 255)
    if fill == "blur":
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(BLUR_RADIUS)))
    raise ValueError(f"fill must be one of {FILLS}, not {fill!r}")


def imputed(image: np.ndarray, known: np.ndarray, seed: int = 0) -> np.ndarray:
    """``image`` (uint8 H×W×3) with every pixel where ``known`` (bool H×W) is False replaced by ROAD's noisy
    linear imputation from the known ones: pytorch-grad-cam's ``NoisyLinearImputer`` without its own noise
    (it would draw from torch's global generator, shared by every thread), then Gaussian noise of
    ``ROAD_NOISE`` from a local generator seeded with ``seed``; with no known pixel, the photo's mean colour."""
    import torch
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    if known.all():
        return image.copy()
    if not known.any():
        return np.broadcast_to(image.reshape(-1, image.shape[-1]).mean(0).round(), image.shape).astype(np.uint8)
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    y = NoisyLinearImputer(noise=0.0)(x, torch.from_numpy(known.astype(np.float32))).permute(1, 2, 0).numpy()
    missing = ~known
    y[missing] += np.random.default_rng(seed).normal(0.0, ROAD_NOISE, (int(missing.sum()), y.shape[-1]))
    return (np.clip(y, 0, 1) * 255).round().astype(np.uint8)


def perturbed(
    image: np.ndarray, order: np.ndarray, fractions: Sequence[float], insert: bool, fill: str = "road", seed: int = 0
) -> np.ndarray:
    """One image per fraction: the first ``fraction`` of ``order`` deleted (filled), or, with ``insert``,
    revealed on the filled canvas. uint8 ``len(fractions)×H×W×3``. With ``fill="road"`` the pixels not shown
    are imputed from the shown ones (:func:`imputed`), fraction by fraction."""
    h, w = image.shape[:2]
    if fill == "road":
        out = []
        for f in fractions:
            chosen = np.zeros(h * w, bool)
            chosen[order[: int(round(float(f) * h * w))]] = True
            out.append(imputed(image, (chosen if insert else ~chosen).reshape(h, w), seed))
        return np.stack(out) if out else np.zeros((0, *image.shape), np.uint8)
    base = filled(image, fill)
    src, dst = (image, base) if insert else (base, image)  # src: the pixels that go in; dst: the start
    out = np.repeat(dst.reshape(1, h * w, -1), len(fractions), 0)
    flat = src.reshape(h * w, -1)
    for k, f in enumerate(fractions):
        take = order[: int(round(float(f) * h * w))]
        out[k, take] = flat[take]
    return out.reshape(len(fractions), h, w, -1)


def curves(
    served: ServedModel,
    image: np.ndarray,
    cam: np.ndarray,
    target: int,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    deletion_fill: str = "road",
    insertion_fill: str = "blur",
    orders: Sequence[str] = ORDERS,
    insertion: bool = True,
    seed: int = 0,
) -> Faithfulness:
    """Deletion (and, with ``insertion``, insertion) curves of ``cam`` for class ``target`` on the native
    ``image``, for each pixel order in ``orders``: every perturbed image in one batched predict."""
    unknown = [o for o in orders if o not in ORDERS]
    if unknown:
        raise ValueError(f"unknown orders {unknown}; known: {ORDERS}")
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    by_map = pixel_order(cam, (h, w), rng)
    made = {
        "map": by_map,
        "random": rng.permutation(h * w),
        "flipped": pixel_order(-np.asarray(cam, dtype=np.float32), (h, w), rng),
    }
    fr = np.asarray(fractions, dtype=float)
    kinds = [("deletion", False, deletion_fill)] + ([("insertion", True, insertion_fill)] if insertion else [])
    batch = [image[None]]
    for _, insert, fill in kinds:
        batch += [perturbed(image, made[o], fr, insert, fill, seed) for o in orders]
    probs = served.predict(np.concatenate(batch))[:, target]
    out = Faithfulness(int(target), float(probs[0]), deletion_fill, insertion_fill)
    pos = 1
    for kind, _, _ in kinds:
        for o in orders:
            getattr(out, kind)[o] = Curve(fr, probs[pos : pos + len(fr)])
            pos += len(fr)
    return out


def deletion_line(result: Faithfulness, class_name: str, fraction: float = 0.1) -> str:
    """One sentence: what deleting the map's top ``fraction`` of pixels does to the class, against as many
    random pixels, e.g. "removing the top 10% of this map drops Formal from 0.93 to 0.41 (random 10%: 0.90)"."""
    full, top = round(result.full, 2), round(result.deletion["map"].at(fraction), 2)
    rand = result.deletion["random"].at(fraction)
    if top == full:
        moved = f"leaves {class_name} at {full:.2f}"
    else:
        moved = f"{'drops' if top < full else 'raises'} {class_name} from {full:.2f} to {top:.2f}"
    return f"removing the top {fraction:.0%} of this map {moved} (random {fraction:.0%}: {rand:.2f})"
