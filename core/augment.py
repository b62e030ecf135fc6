"""Balancing by augmentation: the transform, N variants of one image, and the two strategies.

Parameters live in :class:`AugmentParams` (one place); the transform is torchvision
``transforms.v2``. Keras-style fill modes for the pixels a transform creates are made by
padding with that mode first, transforming, then cropping back to the original size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torchvision.transforms import v2

FILL_MODES: dict[str, str] = {"nearest": "edge", "constant": "constant", "reflect": "reflect"}


@dataclass(frozen=True)
class AugmentParams:
    """Random rotation, shear, shifts, horizontal flip and the fill mode of created pixels;
    optionally colour jitter and grey-scale copies (off by default)."""

    rotation: float = 15.0  # degrees, ±
    shear: float = 10.0  # degrees, ±
    shift: float = 0.10  # fraction of width/height, ±
    hflip: bool = True
    fill_mode: str = "nearest"  # nearest | constant | reflect
    fill_value: int = 255  # for fill_mode == "constant" (white, like the product photos)
    color_jitter: float = 0.0  # brightness, contrast and saturation factors in [1 - c, 1 + c]; 0 = off
    hue: float = 0.0  # hue shift, ± fraction of the colour circle (at most 0.5); 0 = off
    grayscale: float = 0.0  # probability of a grey-scale copy; 0 = off

    def __post_init__(self) -> None:
        if self.fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {sorted(FILL_MODES)}, not {self.fill_mode!r}")
        if not (0.0 <= self.color_jitter < 1.0 and 0.0 <= self.hue <= 0.5 and 0.0 <= self.grayscale <= 1.0):
            raise ValueError("need 0 <= color_jitter < 1, 0 <= hue <= 0.5 and 0 <= grayscale <= 1")

    def to_dict(self) -> dict:
        """JSON-ready form (for model cards)."""
        return asdict(self)


def make_augmenter(params: AugmentParams, size_hw: tuple[int, int] = (80, 60)) -> v2.Compose:
    """The training transform for uint8 ``3×H×W`` tensors of size ``size_hw``."""
    h, w = size_hw
    pad = max(h, w) // 2
    mode = FILL_MODES[params.fill_mode]
    steps: list[v2.Transform] = [
        v2.Pad(pad, fill=params.fill_value, padding_mode=mode),
        v2.RandomAffine(
            degrees=params.rotation,
            translate=(params.shift * w / (w + 2 * pad), params.shift * h / (h + 2 * pad)),
            shear=(-params.shear, params.shear, -params.shear, params.shear) if params.shear else None,
            interpolation=v2.InterpolationMode.BILINEAR,
            fill=params.fill_value,
        ),
        v2.CenterCrop((h, w)),
    ]
    if params.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if params.color_jitter or params.hue:
        c = params.color_jitter
        steps.append(v2.ColorJitter(brightness=c, contrast=c, saturation=c, hue=params.hue))
    if params.grayscale:
        steps.append(v2.RandomGrayscale(p=params.grayscale))
    return v2.Compose(steps)


def augment_variants(
    image: torch.Tensor | np.ndarray, n: int, params: AugmentParams, seed: int | None = 0
) -> list[torch.Tensor]:
    """``n`` augmented variants of one image (uint8 ``3×H×W`` tensor or ``H×W×3`` array).

    Uses the same transform as training; ``seed`` makes the variants reproducible without
    touching the caller's global RNG.
    """
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    aug = make_augmenter(params, tuple(image.shape[-2:]))
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)))  # fresh variants, and the caller's RNG moves on
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [aug(image) for _ in range(n)]


def augment_batch(batch: torch.Tensor, aug: v2.Compose) -> torch.Tensor:
    """Apply ``aug`` independently to each uint8 image of ``B×3×H×W``."""
    return torch.stack([aug(img) for img in batch])


def balance_with_copies(
    images: np.ndarray, labels: Sequence[int], params: AugmentParams, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Strategy (a), the original: add augmented copies of minority images until every class
    has as many images as the largest. Returns new ``N×H×W×3`` images and labels."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    target = counts.max()
    rng = np.random.default_rng(seed)
    aug = make_augmenter(params, images.shape[1:3])
    extra_imgs, extra_labels = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for cls, n in enumerate(counts):
            if n == 0 or n == target:
                continue
            src = rng.choice(np.flatnonzero(labels == cls), size=target - n, replace=True)
            chw = torch.from_numpy(np.ascontiguousarray(images[src].transpose(0, 3, 1, 2)))
            out = augment_batch(chw, aug).permute(0, 2, 3, 1).numpy()
            extra_imgs.append(out)
            extra_labels.append(np.full(len(src), cls))
    if not extra_imgs:
        return images, labels
    return np.concatenate([images, *extra_imgs]), np.concatenate([labels, *extra_labels])


def balanced_sampler_indices(labels: Sequence[int], epoch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Strategy (b): indices drawn with equal probability per class (with replacement);
    each draw gets a fresh augmentation in the training loop."""
    labels = np.asarray(labels)
    classes = [c for c in np.unique(labels)]
    per_class = [np.flatnonzero(labels == c) for c in classes]
    which = rng.integers(0, len(classes), size=epoch_size)
    return np.array([per_class[k][rng.integers(0, len(per_class[k]))] for k in which])
