"""Heatmap rendering: colour maps, overlays on the model's input image, PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from PIL import Image

COLORMAPS: tuple[str, ...] = ("jet", "inferno", "viridis", "magma", "turbo")


def normalise(cam: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Scale a non-negative map to [0, 1] by ``vmax`` (default: its own maximum)."""
    top = float(cam.max()) if vmax is None else float(vmax)
    if top <= 0 or not np.isfinite(top):
        return np.zeros_like(cam, dtype=np.float32)
    return np.clip(cam / top, 0.0, 1.0).astype(np.float32)


def colorize(unit_map: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A [0, 1] map → H×W×3 uint8 colours."""
    lut = colormaps[cmap]
    return (lut(unit_map)[..., :3] * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, unit_map: np.ndarray, opacity: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend the coloured map over ``image`` (H×W×3 uint8, same H×W) with ``opacity``."""
    colours = colorize(unit_map, cmap).astype(np.float32)
    out = (1 - opacity) * image.astype(np.float32) + opacity * colours
    return out.round().clip(0, 255).astype(np.uint8)


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement for display (pixels stay honest)."""
    if factor <= 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an H×W×3 uint8 array as PNG."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()
