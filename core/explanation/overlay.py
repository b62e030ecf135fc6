"""Drawing Grad-CAM maps, without Streamlit: a map upsampled to the image the model saw, scaled to a
maximum, coloured with a colour map, blended over that image, enlarged for display (whole pixels,
nothing smoothed) and encoded as PNG; the raw map at layer resolution with its colour strip.

Arrays in, arrays (or PNG bytes) out: the pages only show them.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image

COLORMAPS: tuple[str, ...] = ("jet", "inferno", "viridis", "magma", "turbo")
DISPLAY_HEIGHT = 320  # overlays and raw maps are enlarged by a whole factor to about this height
DOWNLOAD_HEIGHT = 640  # downloaded overlays are at least this tall: big enough for a slide


def upsample(cam: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """A layer-resolution map at ``size`` (H, W): ``bilinear`` (smooth) or ``nearest`` (one block per
    cell). torch's interpolation, as Captum's ``LayerAttribution.interpolate``: the same numbers the
    occlusion check measured the maps with."""
    m = torch.from_numpy(np.asarray(cam))[None, None]
    return F.interpolate(m, size, mode=mode).squeeze().numpy()


def cam_top(cam: np.ndarray) -> float:
    """The top of a map's colour scale: its maximum at layer resolution, so the overlay, the raw map and
    a shared scale agree whatever the upsampling (smoothing never exceeds it); 0 for an all-zero map."""
    return float(np.max(cam, initial=0.0))


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


def cam_overlay(
    cam: np.ndarray,
    image: np.ndarray,
    opacity: float = 0.5,
    cmap: str = "jet",
    smooth: bool = True,
    vmax: float | None = None,
    height: int = DISPLAY_HEIGHT,
) -> np.ndarray:
    """A layer-resolution map over ``image`` (the model's input, H×W×3 uint8), enlarged by a whole factor
    towards ``height``. The colour scale tops out at ``vmax``, by default the map's own maximum at layer
    resolution (:func:`cam_top`), so a map looks the same on every page whatever the upsampling."""
    up = upsample(cam, image.shape[:2], "bilinear" if smooth else "nearest")
    top = cam_top(cam) if vmax is None else vmax
    img = overlay(image, normalise(up, top), opacity, cmap)
    return enlarge(img, max(1, height // img.shape[0]))


def colour_strip(cmap: str, width: int = 256, height: int = 12) -> np.ndarray:
    """A horizontal colour bar image (low → high)."""
    ramp = np.tile(np.linspace(0, 1, width)[None, :], (height, 1))
    return colorize(ramp, cmap)


def raw_map_image(cam: np.ndarray, vmax: float, cmap: str, height: int = DISPLAY_HEIGHT) -> np.ndarray:
    """The layer-resolution map, one flat block per cell (enlarged towards ``height``), with a colour strip
    below it on the scale 0 → ``vmax``. One image, so a narrow column shrinks it instead of cropping it."""
    cells = colorize(normalise(cam, vmax), cmap)
    grid = enlarge(cells, max(1, height // cells.shape[0]))
    width = grid.shape[1]
    gap = np.full((max(4, width // 32), width, 3), 255, dtype=np.uint8)
    return np.concatenate([grid, gap, colour_strip(cmap, width, max(8, width // 16))])


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an H×W×3 uint8 array as PNG."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def download_png(image: np.ndarray, min_height: int = DOWNLOAD_HEIGHT) -> bytes:
    """PNG bytes for a download, enlarged by a whole factor (nothing smoothed) to at least ``min_height``."""
    return png_bytes(enlarge(image, -(-min_height // image.shape[0])))
