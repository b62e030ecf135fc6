"""core.images.augment: parameters, the transform, fill modes, reproducible variants and both balancing strategies."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from core.images.augment import (
    FILL_MODES,
    AugmentParams,
    augment_batch,
    augment_variants,
    balance_with_copies,
    balanced_sampler_indices,
    make_augmenter,
)

STILL = dict(rotation=0.0, shear=0.0, shift=0.0)


def uniform_image(value: int | tuple[int, int, int], hw: tuple[int, int] = (80, 60)) -> torch.Tensor:
    """A uint8 ``3×H×W`` tensor of one colour."""
    colour = torch.tensor(value if isinstance(value, tuple) else (value,) * 3, dtype=torch.uint8)
    return colour.view(3, 1, 1).expand(3, *hw).clone()


def pattern_image(seed: int = 0) -> torch.Tensor:
    """A random-looking uint8 ``3×80×60`` tensor (so transforms visibly change it)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 200, (3, 80, 60), generator=g, dtype=torch.uint8)


def test_params_validation_and_dict() -> None:
    with pytest.raises(ValueError, match="fill_mode"):
        AugmentParams(fill_mode="wrap")
    p = AugmentParams(fill_mode="reflect")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.rotation = 3.0  # type: ignore[misc]
    d = p.to_dict()
    assert d == {
        "rotation": 15.0,
        "shear": 10.0,
        "shift": 0.1,
        "hflip": True,
        "fill_mode": "reflect",
        "fill_value": 255,
        "color_jitter": 0.0,
        "hue": 0.0,
        "grayscale": 0.0,
    }
    assert AugmentParams(**d) == p
    assert set(FILL_MODES) == {"nearest", "constant", "reflect"}
    for bad in (dict(color_jitter=1.0), dict(color_jitter=-0.1), dict(hue=0.6), dict(grayscale=1.5)):
        with pytest.raises(ValueError, match="color_jitter"):
            AugmentParams(**bad)


def test_colour_options() -> None:
    """Grey-scale copies have equal channels; colour jitter changes colours, not geometry."""
    img = pattern_image()
    torch.manual_seed(0)
    grey = make_augmenter(AugmentParams(**STILL, hflip=False, grayscale=1.0))(img)
    assert grey.shape == img.shape and grey.dtype == torch.uint8
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert not torch.equal(grey, img)
    jitter = make_augmenter(AugmentParams(**STILL, hflip=False, color_jitter=0.4, hue=0.1))
    outs = [jitter(img) for _ in range(4)]
    assert all(o.shape == img.shape and o.dtype == torch.uint8 for o in outs)
    assert not any(torch.equal(o, img) for o in outs)
    # jitter keeps the layout: per-pixel brightness stays correlated with the original
    flat = img.float().mean(0).flatten()
    for o in outs:
        corr = torch.corrcoef(torch.stack([flat, o.float().mean(0).flatten()]))[0, 1]
        assert corr > 0.5


@pytest.mark.parametrize("fill_mode", sorted(FILL_MODES))
def test_augmenter_shape_dtype(fill_mode: str) -> None:
    torch.manual_seed(0)
    aug = make_augmenter(AugmentParams(fill_mode=fill_mode))
    img = pattern_image()
    out = aug(img)
    assert out.shape == (3, 80, 60) and out.dtype == torch.uint8
    assert not torch.equal(out, img)  # it did transform
    batch = augment_batch(torch.stack([img, pattern_image(1)]), aug)
    assert batch.shape == (2, 3, 80, 60) and batch.dtype == torch.uint8


def test_augmenter_other_size() -> None:
    aug = make_augmenter(AugmentParams(), size_hw=(40, 30))
    out = aug(pattern_image()[:, :40, :30])
    assert out.shape == (3, 40, 30)


def test_still_params_identity_or_flip() -> None:
    img = pattern_image()
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out = make_augmenter(AugmentParams(**STILL, hflip=True))(img)
        if torch.equal(out, img):
            seen.add("same")
        elif torch.equal(out, img.flip(-1)):
            seen.add("flipped")
        else:
            pytest.fail("a transform with no rotation/shear/shift must be the identity or a flip")
    assert seen == {"same", "flipped"}
    torch.manual_seed(0)
    assert torch.equal(make_augmenter(AugmentParams(**STILL, hflip=False))(img), img)


def _corner_whites(variants: list[torch.Tensor]) -> int:
    """Pixels ≥ 250 (all channels) in the 8×8 corners of the variants."""
    n = 0
    for v in variants:
        for corner in (v[:, :8, :8], v[:, :8, -8:], v[:, -8:, :8], v[:, -8:, -8:]):
            n += int((corner >= 250).all(0).sum())
    return n


def test_constant_fill_whitens_corners_under_big_rotation() -> None:
    dark = uniform_image(20)
    variants = augment_variants(dark, 8, AugmentParams(rotation=45, shear=0, shift=0, fill_mode="constant"), seed=0)
    assert _corner_whites(variants) > 50


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect"])
def test_nearest_reflect_do_not_create_white(fill_mode: str) -> None:
    dark = uniform_image(20)
    variants = augment_variants(dark, 8, AugmentParams(rotation=45, shear=10, shift=0.1, fill_mode=fill_mode), seed=0)
    assert _corner_whites(variants) == 0
    assert max(int(v.max()) for v in variants) <= 25  # no constant-255 pixels anywhere


def test_reflect_differs_from_nearest() -> None:
    img = pattern_image()
    p = dict(rotation=40, shear=0, shift=0.0, hflip=False)
    near = augment_variants(img, 2, AugmentParams(**p, fill_mode="nearest"), seed=3)
    refl = augment_variants(img, 2, AugmentParams(**p, fill_mode="reflect"), seed=3)
    assert not torch.equal(near[0], refl[0])


def test_variants_reproducible_and_rng_untouched() -> None:
    img = pattern_image()
    params = AugmentParams()
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(5)
    state = torch.get_rng_state()
    a = augment_variants(img, 5, params, seed=11)
    assert torch.equal(torch.get_rng_state(), state)
    b = augment_variants(img, 5, params, seed=11)
    c = augment_variants(img, 5, params, seed=12)
    assert len(a) == 5
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert len({x.numpy().tobytes() for x in a}) == 5  # five different variants
    # the global generators continue exactly as if nothing happened
    expected = torch.Generator().manual_seed(123)
    assert torch.equal(torch.rand(4), torch.rand(4, generator=expected))
    np_expected = np.random.RandomState(5).rand(3)
    assert np.array_equal(np.random.rand(3), np_expected)
    assert random.random() == random.Random(5).random()


def test_variants_from_numpy_hwc() -> None:
    img = pattern_image()
    from_np = augment_variants(img.permute(1, 2, 0).numpy(), 3, AugmentParams(), seed=4)
    from_t = augment_variants(img, 3, AugmentParams(), seed=4)
    assert all(torch.equal(x, y) for x, y in zip(from_np, from_t))
    assert from_np[0].shape == (3, 80, 60)


def test_variants_without_seed_differ_between_calls() -> None:
    img = pattern_image()
    a = augment_variants(img, 3, AugmentParams(), seed=None)
    b = augment_variants(img, 3, AugmentParams(), seed=None)
    assert not all(torch.equal(x, y) for x, y in zip(a, b))


def _three_colour_set(counts: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``N×80×60×3`` images: class k is pure colour in channel k (so copies can be traced)."""
    imgs, labels = [], []
    for cls, n in enumerate(counts):
        colour = [0, 0, 0]
        colour[cls] = 200
        imgs += [np.broadcast_to(np.array(colour, np.uint8), (80, 60, 3))] * n
        labels += [cls] * n
    return np.stack(imgs), np.array(labels)


def test_balance_with_copies_equal_counts() -> None:
    images, labels = _three_colour_set((10, 4, 2))
    out_imgs, out_labels = balance_with_copies(images, labels, AugmentParams(), seed=0)
    assert np.bincount(out_labels).tolist() == [10, 10, 10]
    assert out_imgs.shape == (30, 80, 60, 3) and out_imgs.dtype == np.uint8
    assert np.array_equal(out_imgs[:16], images) and np.array_equal(out_labels[:16], labels)
    for img, lab in zip(out_imgs[16:], out_labels[16:]):
        assert int(np.argmax(img.reshape(-1, 3).mean(0))) == lab  # a copy of its own class
    again = balance_with_copies(images, labels, AugmentParams(), seed=0)
    assert np.array_equal(again[0], out_imgs)


def test_balance_with_copies_already_balanced_and_missing_class() -> None:
    images, labels = _three_colour_set((3, 3, 3))
    out_imgs, out_labels = balance_with_copies(images, labels, AugmentParams())
    assert out_imgs is images and np.array_equal(out_labels, labels)
    images, labels = _three_colour_set((5, 0, 2))
    _, out_labels = balance_with_copies(images, labels, AugmentParams())
    assert np.bincount(out_labels).tolist() == [5, 0, 5]


def test_balanced_sampler_roughly_equal() -> None:
    labels = np.array([0] * 1000 + [1] * 100 + [2] * 10)
    idx = balanced_sampler_indices(labels, 3000, np.random.default_rng(0))
    assert idx.shape == (3000,)
    assert idx.min() >= 0 and idx.max() < len(labels)
    counts = np.bincount(labels[idx], minlength=3)
    assert np.all(np.abs(counts - 1000) < 120), counts
    assert len(np.unique(idx[labels[idx] == 2])) == 10  # every rare image is drawn
    same = balanced_sampler_indices(labels, 3000, np.random.default_rng(0))
    assert np.array_equal(idx, same)


def test_balanced_sampler_sparse_labels() -> None:
    labels = np.array([2] * 50 + [0] * 5)
    idx = balanced_sampler_indices(labels, 1000, np.random.default_rng(1))
    counts = np.bincount(labels[idx], minlength=3)
    assert counts[1] == 0 and abs(counts[0] - 500) < 80 and abs(counts[2] - 500) < 80
