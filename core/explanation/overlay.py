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


def _font(size: int):  # noqa: ANN202 - a PIL font
    """Pillow's bundled font at ``size`` px (FreeType); its bitmap font where FreeType is missing."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (OSError, ValueError, TypeError):
        return ImageFont.load_default()


def _wrap(text: str, font, width: int) -> list[str]:  # noqa: ANN001 - a PIL font
    """``text`` broken at spaces into lines no wider than ``width`` px (a longer word keeps its line)."""
    out: list[str] = []
    for word in text.split(" "):
        if out and font.getlength(out[-1] + " " + word) <= width:
            out[-1] += " " + word
        else:
            out.append(word)
    return out or [""]


def annotated_download(
    image: np.ndarray, lines: list[str], cmap: str, vmax: float, min_height: int = DOWNLOAD_HEIGHT
) -> bytes:
    """A download that stands alone: the overlay enlarged to at least ``min_height`` (whole pixels), below it
    ``lines`` of text (model, class, confidence, layer) and the colour bar with its scale 0 → ``vmax``."""
    from PIL import ImageDraw

    big = enlarge(image, -(-min_height // image.shape[0]))
    w = max(big.shape[1], 360)
    size = max(14, w // 28)
    font, small = _font(size), _font(max(12, size - 4))
    pad = size // 2
    bar_h = max(12, size)
    lines = [part for line in lines for part in _wrap(line, font, w - 2 * pad)]
    text_h = len(lines) * (size + pad // 2) + pad
    canvas = Image.new("RGB", (w, big.shape[0] + text_h + bar_h + 3 * pad + size), (255, 255, 255))
    canvas.paste(Image.fromarray(big), ((w - big.shape[1]) // 2, 0))
    draw = ImageDraw.Draw(canvas)
    y = big.shape[0] + pad
    for line in lines:
        draw.text((pad, y), line, fill=(20, 20, 20), font=font)
        y += size + pad // 2
    y += pad // 2
    strip = colour_strip(cmap, w - 2 * pad, bar_h)
    canvas.paste(Image.fromarray(strip), (pad, y))
    y += bar_h + 2
    scale = f"{vmax:.3g}" if vmax > 0 else "0 (an all-zero map)"
    draw.text((pad, y), "0 · low evidence", fill=(60, 60, 60), font=small)
    right = f"high evidence · {scale}"
    draw.text((w - pad - draw.textlength(right, font=small), y), right, fill=(60, 60, 60), font=small)
    return png_bytes(np.asarray(canvas))
