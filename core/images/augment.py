"""Balancing by augmentation: the transform, N variants of one image, and the two strategies.

Parameters live in :class:`AugmentParams` (one place); the transform is torchvision
``transforms.v2``. Keras-style fill modes for the pixels a transform creates are made by
padding with that mode first, transforming, then cropping back to the original size.
"""

from __future__ import annotations

import math
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
    image: torch.Tensor | np.ndarray,
    n: int,
    params: AugmentParams,
    seed: int | None = 0,
    framing: FramingAugmentParams | None = None,
) -> list[torch.Tensor]:
    """``n`` augmented variants of one image (uint8 ``3×H×W`` tensor or ``H×W×3`` array).

    Uses the same steps as training (with ``framing``, a share of the variants is first
    re-framed as users frame photos and normalised back); ``seed`` makes the variants
    reproducible without touching the caller's global RNG.
    """
    if isinstance(image, torch.Tensor):
        image = image.permute(1, 2, 0).numpy()
    aug = make_augmenter(params, tuple(image.shape[:2]))
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)))  # fresh variants, and the caller's RNG moves on
    rng = np.random.default_rng(seed)
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(n):
            arr = image
            if framing is not None and framing.probability > 0 and rng.random() < framing.probability:
                arr = reframe_random(image, rng, framing)
            out.append(aug(torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))))
    return out


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


@dataclass(frozen=True)
class FramingAugmentParams:
    """Training for framing: with probability ``probability`` a draw is re-shot as a user might
    frame it (zoomed out or in on white, another aspect, stretched, placed anywhere, its white
    background replaced by a colour or texture, a colour cast), then passed through the same
    framing normalisation as every input (:func:`core.images.preprocess.frame_and_fit`)."""

    probability: float = 0.0  # share of draws re-framed; 0 = off
    zoom_out: float = 2.2  # the canvas up to this many times the photo (log-uniform from 1)
    zoom_in: float = 1.25  # or a crop of up to 1/this of the photo (a quarter of the re-framed draws)
    aspect: float = 1.6  # the canvas's W/H times or divided by up to this
    stretch: float = 1.25  # the photo itself stretched in width by up to ×/÷ this
    background: float = 0.5  # probability that the white background becomes a colour or a texture
    cast: float = 0.3  # probability of a warm or cool colour cast (per-channel gains down to 0.75)
    shadow: float = 0.15  # probability of a soft drop shadow (on white draws)
    tilt: float = 0.0  # probability of a tilted shot (rotated on white, the canvas grown to hold it)
    max_tilt: float = 10.0  # … by up to ± this many degrees
    scale: int = 2  # the thumbnail is enlarged this much before re-framing (upload-like)

    def __post_init__(self) -> None:
        if not all(0.0 <= p <= 1.0 for p in (self.probability, self.background, self.cast, self.shadow, self.tilt)):
            raise ValueError("probabilities must be in [0, 1]")
        if not 0.0 <= self.max_tilt <= 45.0:
            raise ValueError("max_tilt is in degrees, 0 to 45")
        if min(self.zoom_out, self.zoom_in, self.aspect, self.stretch) < 1.0:
            raise ValueError("zoom_out, zoom_in, aspect and stretch are factors of at least 1")

    def to_dict(self) -> dict:
        """JSON-ready form (for model cards)."""
        return asdict(self)


def reframe_random(native: np.ndarray, rng: np.random.Generator, params: FramingAugmentParams) -> np.ndarray:
    """One native ``H×W×3`` uint8 thumbnail re-shot with a random framing (see
    :class:`FramingAugmentParams`) and normalised back to the native canvas."""
    from PIL import Image

    from core.images.framings import drop_shadow, enlarge, place, rotate, texture
    from core.images.preprocess import frame_and_fit

    photo = enlarge(Image.fromarray(native), params.scale)
    w, h = photo.size
    if rng.random() < 0.25:  # zoom in: a crop of the photo
        z = rng.uniform(1.0, params.zoom_in)
        cw, ch = round(w / z), round(h / z)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        photo = photo.crop((x, y, x + cw, y + ch))
    s = math.exp(rng.uniform(-math.log(params.stretch), math.log(params.stretch)))
    photo = photo.resize((max(8, round(photo.width * s)), photo.height), Image.Resampling.BICUBIC)
    if params.tilt > 0 and rng.random() < params.tilt:  # drawn only when on: runs without a tilt draw as before
        photo = rotate(photo, float(rng.uniform(-params.max_tilt, params.max_tilt)))
    f = math.exp(rng.uniform(0.0, math.log(params.zoom_out)))
    a = math.exp(rng.uniform(-math.log(params.aspect), math.log(params.aspect)))
    cw = max(photo.width, round(photo.width * f * math.sqrt(a)))
    ch = max(photo.height, round(photo.height * f / math.sqrt(a)))
    surface = None
    if rng.random() < params.background:
        base = (
            tuple(int(v) for v in rng.integers(60, 250, 3))
            if rng.random() < 0.5
            else (int(rng.integers(150, 245)),) * 3
        )
        surface = texture(
            (cw, ch), base, float(rng.uniform(0, 12)), int(rng.integers(2**31)), float(rng.uniform(0, 40))
        )
    if surface is None and rng.random() < params.shadow:
        off = (int(rng.integers(-12, 13)), int(rng.integers(2, 16)))
        photo = drop_shadow(photo, (abs(off[0]), off[1]), float(rng.uniform(3, 10)), int(rng.integers(40, 110)))
        cw, ch = max(cw, photo.width), max(ch, photo.height)
    out = place(photo, (cw, ch), (float(rng.random()), float(rng.random())), surface)
    if rng.random() < params.cast:
        warm = rng.random() < 0.6
        g = rng.uniform(0.75, 0.97, 2)
        gains = (1.0, g[0], g[1]) if warm else (g[1], g[0], 1.0)
        out = Image.fromarray(
            np.clip(np.asarray(out, np.float32) * np.asarray(gains, np.float32), 0, 255).astype(np.uint8)
        )
    return np.asarray(frame_and_fit(out).image)
