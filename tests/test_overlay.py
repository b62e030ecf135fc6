"""core.explanation.overlay without Streamlit: upsampling, scaling, colours, overlays, raw maps and PNG bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

from core.explanation import overlay as O


def hot_cell_map() -> np.ndarray:
    """A 4×5 layer-resolution map (ResNet50 layer4's grid) with one hot cell."""
    cam = np.zeros((4, 5), np.float32)
    cam[1, 2] = 2.0
    cam[3, 0] = 0.5
    return cam


def test_upsample_is_captums_interpolation() -> None:
    from captum.attr import LayerAttribution

    cam = np.random.default_rng(0).random((8, 10)).astype(np.float32)
    for mode in ("bilinear", "nearest"):
        ref = LayerAttribution.interpolate(torch.from_numpy(cam)[None, None], (160, 120), mode).squeeze().numpy()
        got = O.upsample(cam, (160, 120), mode)
        assert got.shape == (160, 120) and got.dtype == np.float32
        np.testing.assert_array_equal(got, ref)  # the same numbers the maps were always drawn with
    blocky = O.upsample(hot_cell_map(), (160, 120), "nearest")
    assert set(np.unique(blocky)) == {0.0, 0.5, 2.0}  # nearest keeps the cells' values
    assert O.upsample(hot_cell_map(), (160, 120)).max() < 2.0  # smoothing lowers a lone peak


def test_normalise_and_cam_top() -> None:
    cam = hot_cell_map()
    assert O.cam_top(cam) == 2.0 and O.cam_top(np.zeros((4, 5))) == 0.0
    unit = O.normalise(cam)
    assert unit.dtype == np.float32 and unit.min() == 0.0 and unit.max() == 1.0
    assert O.normalise(cam, 4.0).max() == 0.5  # a shared scale above the map's own top
    assert O.normalise(cam, 1.0).max() == 1.0  # clipped at the top
    assert not O.normalise(np.zeros((4, 5))).any() and not O.normalise(cam, float("nan")).any()


@pytest.mark.parametrize("cmap", O.COLORMAPS)
def test_colours_of_the_scale_ends(cmap: str) -> None:
    colours = O.colorize(np.array([[0.0, 1.0]]), cmap)
    assert colours.shape == (1, 2, 3) and colours.dtype == np.uint8
    want = (np.array(colormaps[cmap]([0.0, 1.0]))[:, :3] * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(colours[0], want)
    assert not np.array_equal(colours[0, 0], colours[0, 1])


def test_overlay_blends_and_the_max_gets_the_top_colour() -> None:
    image = np.full((80, 60, 3), 200, np.uint8)
    unit = np.zeros((80, 60), np.float32)
    unit[10, 20] = 1.0
    top = O.colorize(np.ones((1, 1)), "jet")[0, 0]
    full = O.overlay(image, unit, 1.0, "jet")
    assert full.shape == image.shape and full.dtype == np.uint8
    np.testing.assert_array_equal(full[10, 20], top)  # jet's top: dark red
    assert tuple(top) == (128, 0, 0)
    np.testing.assert_array_equal(O.overlay(image, unit, 0.0, "jet"), image)  # opacity 0: the image
    half = O.overlay(image, unit, 0.5, "jet")[10, 20].astype(int)
    np.testing.assert_array_equal(half, np.round((200 + top.astype(float)) / 2).astype(int))


def test_cam_overlay_at_display_size_on_the_maps_own_scale() -> None:
    cam, image = hot_cell_map(), np.zeros((160, 120, 3), np.uint8)
    shown = O.cam_overlay(cam, image, 1.0, "jet", smooth=True)
    assert shown.shape == (320, 240, 3) and shown.dtype == np.uint8  # enlarged 2× towards 320 px
    assert np.array_equal(shown, O.cam_overlay(cam, image, 1.0, "jet", True, vmax=2.0))  # default: layer max
    own_max = O.enlarge(O.overlay(image, O.normalise(O.upsample(cam, (160, 120))), 1.0, "jet"), 2)
    assert not np.array_equal(shown, own_max)  # not the smoothed map's own (lower) maximum
    blocky = O.cam_overlay(cam, image, 1.0, "jet", smooth=False)
    top = O.colorize(np.ones((1, 1)), "jet")[0, 0]
    assert (blocky == top).all(axis=2).sum() == (160 // 4) * (120 // 5) * 4  # the hot cell, at full colour
    assert O.cam_overlay(cam, np.zeros((80, 60, 3), np.uint8), height=320).shape == (320, 240, 3)  # 4×


def test_raw_map_image_and_colour_strip() -> None:
    strip = O.colour_strip("viridis", 100, 10)
    assert strip.shape == (10, 100, 3)
    np.testing.assert_array_equal(strip[0, 0], O.colorize(np.zeros((1, 1)), "viridis")[0, 0])
    np.testing.assert_array_equal(strip[0, -1], O.colorize(np.ones((1, 1)), "viridis")[0, 0])
    raw = O.raw_map_image(hot_cell_map(), 2.0, "jet", height=320)
    assert raw.dtype == np.uint8 and raw.shape[1] == 5 * 80 and raw.shape[0] > 4 * 80  # the grid, a gap, a strip
    np.testing.assert_array_equal(raw[80 + 40, 2 * 80 + 40], O.colorize(np.ones((1, 1)), "jet")[0, 0])


def test_png_round_trip_and_download_size() -> None:
    img = np.zeros((320, 240, 3), np.uint8)
    img[:160] = 255
    img[200:210, 10:20] = (10, 200, 30)
    back = np.asarray(Image.open(io.BytesIO(O.png_bytes(img))))
    np.testing.assert_array_equal(back, img)
    big = np.asarray(Image.open(io.BytesIO(O.download_png(img))))
    assert big.shape == (640, 480, 3) and np.array_equal(big[::2, ::2], img)  # whole pixels, same content
    assert np.asarray(Image.open(io.BytesIO(O.download_png(np.zeros((700, 10, 3), np.uint8))))).shape[0] == 700
