"""Framing normalisation: find the product against its background and frame it like a catalogue shot.

The models learnt from the dataset's thumbnails: one product on white, filling a 3:4 frame. A
user's photo is often framed otherwise (padded to a white square, a landscape frame, zoomed
out, on a grey table). :func:`normalise_framing` is the one step that training, evaluation,
the app and the batch path all run on a decoded RGB image, before :func:`core.images.preprocess.to_native`:

1. The background is estimated from the photo's border: a plane (a gradient allowed) fitted per
   CIELAB channel to the border pixels, refitted on the pixels that agree with it. When too few
   border pixels agree, the background is *busy* (a room, a person): the photo is left as it is
   and flagged.
2. On a near-uniform background of any colour, the product is the set of pixels that differ from
   that plane: thresholded, closed, holes filled and small specks dropped with scikit-image, and
   its connected components labelled. A bright tinted background (white under warm or cool light)
   is first made neutral: the photo is white-balanced on it.
3. A cast shadow (darker than the background, its hue, soft-edged, outside the convex hull of the
   rest of the product) is left out of the mask.
4. A photo already framed like the dataset (3:4, on white, product filling the frame and centred)
   is kept exactly as it is, so the dataset's own images barely change. Any other is cropped to
   the product, its background softened to white through a feathered mask (on a white backdrop only
   outside its convex hull, and the shadow: a pale shirt's front is not painted white, some off-white
   between arms or legs stays), and placed on a white 3:4 canvas at the dataset's typical fill.

The product mask travels with the image (:attr:`Framing.mask`), so the app can tell how much of a
Grad-CAM map falls on the product.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import color, filters, measure, morphology

log = logging.getLogger(__name__)

# part of the decoded-image cache key: change it when the default output changes (tries of docs/framing-retrain-rule.md:
# 3 the shadow step and hull parts, the twelfth; 4 the white balance, the 13th; 5 ``shadow_kept_share`` 0.05, the 21st)
FRAMING_VERSION = 5
CANVAS_ASPECT = 3 / 4  # width / height of the dataset's thumbnails (60×80)

KEPT, REFRAMED, BUSY, NO_PRODUCT = "kept", "reframed", "busy", "no_product"


@dataclass(frozen=True)
class FramingParams:
    """Thresholds of the framing step (chosen on the validation split with ``bench.framing``)."""

    analysis_side: int = 160  # the mask is found on a copy whose longer side is at most this (px)
    border: float = 0.04  # width of the border ring, as a share of the shorter side (at least 1 px)
    smooth_sigma: float = 1.0  # Gaussian blur before any colour distance (JPEG noise, fabric texture)
    agree_delta_e: float = 10.0  # a border pixel agrees with the background within this CIELAB distance
    uniform_share: float = 0.7  # a background is near-uniform when this share of its border agrees
    product_delta_e: float = 12.0  # a pixel is product when this far from the background (at least)
    noise_factor: float = 4.0  # … and at least this many robust SDs of the border's own scatter
    min_component: float = 0.002  # specks smaller than this share of the image are dropped
    keep_component: float = 0.1  # components smaller than this share of the largest are left out
    white_lightness: float = 90.0  # a background counts as white above this CIELAB L* …
    white_chroma: float = 6.0  # … and below this chroma
    kept_fill: float = 0.7  # a 3:4 photo on white whose product fills at least this much is kept
    kept_offset: float = 0.12  # … and whose product centre is at most this far off the frame's centre
    aspect_tolerance: float = 0.05  # how close to 3:4 a photo must be to count as 3:4 (relative)
    target_fill: float = 1.0  # a reframed product fills the canvas (chosen on val over 0.87, 0.93, 0.97, 1.0)
    feather: float = 0.7  # softening of the mask's edge, in analysis pixels
    # a cast shadow: pixels darker than the background with its hue (within ``shadow_chroma`` ΔE in
    # a*b*, at most ``shadow_max_drop`` L* darker) and not on a sharp edge (Sobel of L* below
    # ``shadow_edge``); 0 turns the shadow step off
    shadow_chroma: float = 2.5  # over 4: half the false shadows on val, the same shadows found (with the hull parts)
    shadow_max_drop: float = 45.0
    shadow_edge: float = 8.0
    shadow_min_keep: float = 0.5  # … undone when it would leave less than this share of the mask
    shadow_kept_share: float = 0.05  # a photo whose mask was this much shadow is reframed, unless … (0.1 until v5)
    shadow_kept_fill: float = 0.85  # … its product, shadow left out, still fills this much of the frame
    # a bright tinted background (L* at least this, chroma above ``white_chroma``; a pastel backdrop too) is taken
    # as white under coloured light and the photo white-balanced on it (gains up to ``max_gain``); 0: off
    white_balance_lightness: float = 80.0
    max_gain: float = 1.5
    # a shadow lies outside the product: inside the product's convex hull (shadow left out) all stays product
    shadow_outside_hull: bool = True
    # on white only what lies outside that hull (and a cast shadow) is softened: a pale product keeps its parts
    keep_inside_hull: bool = True

    def to_dict(self) -> dict:
        """JSON-ready form (model cards, benchmark files)."""
        return asdict(self)


DEFAULT_PARAMS = FramingParams()


@dataclass
class Framing:
    """The framed image, what was done and why, and the product mask in the framed image's pixels."""

    image: Image.Image
    action: str  # kept | reframed | busy | no_product
    note: str  # one sentence for the user ("" when kept)
    background: tuple[int, int, int] | None = None  # the border's mean colour, sRGB
    box: tuple[int, int, int, int] | None = None  # product box in the input image (left, top, right, bottom)
    mask: np.ndarray | None = None  # bool H×W of ``image``: True on the product; None when not found
    caution: bool = False  # framed, but on a backdrop where the models are known to be weak (a dark one)

    @property
    def flagged(self) -> bool:
        """True for a busy background (not framed) or a backdrop the models are known to be weak on (``caution``)."""
        return self.action == BUSY or self.caution


def _analysis_copy(img: Image.Image, side: int) -> tuple[np.ndarray, float]:
    """RGB float array (0–1) whose longer side is at most ``side``, and its scale to the input."""
    scale = min(1.0, side / max(img.size))
    if scale < 1.0:
        small = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    else:
        small = img
    return np.asarray(small.convert("RGB"), dtype=np.float32) / 255.0, scale


def _border_mask(h: int, w: int, share: float) -> np.ndarray:
    """Bool H×W: the ring of width ``share`` × the shorter side (at least 1 px)."""
    b = max(1, round(share * min(h, w)))
    ring = np.zeros((h, w), bool)
    ring[:b], ring[-b:], ring[:, :b], ring[:, -b:] = True, True, True, True
    return ring


def _fit_plane(lab: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Least-squares ``a + b·x + c·y`` per channel; returns the 3×3 coefficients."""
    design = np.stack([np.ones_like(xs), xs, ys], axis=1)
    coef, *_ = np.linalg.lstsq(design, lab, rcond=None)
    return coef


def _plane_at(coef: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The plane's Lab value at coordinates ``xs``, ``ys`` (0–1 over the image; any matching shapes)."""
    return coef[0] + xs[..., None] * coef[1] + ys[..., None] * coef[2]


def _plane(coef: np.ndarray, h: int, w: int) -> np.ndarray:
    """The fitted background as an H×W×3 Lab image."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return _plane_at(coef, xx / max(w - 1, 1), yy / max(h - 1, 1))


def _smoothed_lab(rgb: np.ndarray, params: FramingParams) -> np.ndarray:
    """An RGB float image (0–1) blurred (JPEG noise, fabric texture) and converted to CIELAB."""
    smooth = filters.gaussian(rgb, sigma=params.smooth_sigma, channel_axis=-1, preserve_range=True)
    return color.rgb2lab(np.clip(smooth, 0.0, 1.0))


@dataclass
class _Background:
    uniform: bool
    lab: np.ndarray  # H×W×3 fitted background (Lab)
    scatter: float  # robust SD of the agreeing border pixels' distance (ΔE)
    mean_lab: np.ndarray
    coef: np.ndarray  # the plane: a + b·x + c·y per Lab channel, x and y in 0–1 over the image
    shadow: float = 0.0  # share of the first mask found to be a cast shadow and left out
    shadow_mask: np.ndarray | None = None  # that shadow (analysis pixels), when one was left out
    gains: tuple[float, float, float] | None = None  # white balance applied before the mask, if any


def estimate_background(lab: np.ndarray, params: FramingParams = DEFAULT_PARAMS) -> _Background:
    """Fit the background plane to the border ring of a smoothed Lab image, robustly (two refits)."""
    h, w = lab.shape[:2]
    ring = _border_mask(h, w, params.border)
    ys, xs = np.nonzero(ring)
    ysn, xsn = ys / max(h - 1, 1), xs / max(w - 1, 1)
    values = lab[ring]
    agree = np.linalg.norm(values - np.median(values, axis=0), axis=1) < 2 * params.agree_delta_e
    coef = np.zeros((3, 3), np.float32)
    coef[0] = np.median(values, axis=0)
    for _ in range(2):
        if agree.sum() < 4:
            break
        coef = _fit_plane(values[agree], ysn[agree], xsn[agree]).astype(np.float32)
        fitted = _plane_at(coef, xsn, ysn)
        dist = np.linalg.norm(values - fitted, axis=1)
        agree = dist < params.agree_delta_e
    share = float(agree.mean()) if agree.size else 0.0
    scatter = float(1.4826 * np.median(np.abs(dist[agree] - np.median(dist[agree])))) if agree.sum() > 3 else 0.0
    background = _plane(coef, h, w)
    return _Background(share >= params.uniform_share, background, scatter, background[ring].mean(axis=0), coef)


def _product_threshold(bg: _Background, params: FramingParams) -> float:
    """How far (ΔE) from the background a pixel must be to count as product: the floor, or more on a
    textured surface (a multiple of the border's own scatter)."""
    return max(params.product_delta_e, params.noise_factor * bg.scatter)


def product_mask(rgb: np.ndarray, params: FramingParams = DEFAULT_PARAMS) -> tuple[np.ndarray | None, _Background]:
    """Bool mask of the product in an RGB float image (0–1), or None when the background is busy
    or nothing stands out from it; plus the background estimate (with the cast shadow's share)."""
    lab = _smoothed_lab(rgb, params)
    bg = estimate_background(lab, params)
    if not bg.uniform:
        return None, bg
    gains = white_balance_gains(bg.mean_lab, params)
    if gains is not None:  # white under tinted light: find the product in the corrected photo
        lab = _smoothed_lab(np.clip(rgb * np.asarray(gains, np.float32), 0.0, 1.0), params)
        bg = estimate_background(lab, params)
        bg.gains = gains
    dist = np.linalg.norm(lab - bg.lab, axis=-1)
    mask = _clean(dist > _product_threshold(bg, params), params)
    if mask is None:
        return None, bg
    if params.shadow_chroma > 0:
        whole = mask
        mask, bg.shadow = _without_shadow(mask, lab, bg, params)
        bg.shadow_mask = whole & ~mask if bg.shadow > 0 else None
    return mask, bg


def _clean(raw: np.ndarray, params: FramingParams) -> np.ndarray | None:
    """Closed, holes filled, specks dropped, and only the components of some size kept (None: none)."""
    radius = max(1, round(min(raw.shape) / 60))
    mask = morphology.closing(raw, morphology.disk(radius))
    mask = ndimage.binary_fill_holes(mask)
    mask = morphology.remove_small_objects(mask, max_size=max(1, int(params.min_component * raw.size)))
    labels = measure.label(mask, connectivity=2)
    regions = measure.regionprops(labels)
    if not regions:
        return None
    largest = max(r.area for r in regions)
    keep = [r.label for r in regions if r.area >= params.keep_component * largest]
    return np.isin(labels, keep)


def _without_shadow(
    mask: np.ndarray, lab: np.ndarray, bg: _Background, params: FramingParams
) -> tuple[np.ndarray, float]:
    """The mask less a cast shadow, and the shadow's share of the mask.

    A shadow darkens the background and keeps its hue, and its edges are soft; a product's
    outline is sharp. So the product is what differs from the background otherwise, plus every
    sharp edge, closed and filled (a white shirt's interior is shadow-like, its outline is not);
    with ``shadow_outside_hull``, whatever lies inside that product's convex hull too (a shadow falls
    beside a product, not inside it); what is left of the mask is shadow. When that would remove more
    than half of the mask (a pale, soft product), the mask is kept whole.
    """
    drop = bg.lab[..., 0] - lab[..., 0]
    hue_apart = np.linalg.norm(lab[..., 1:] - bg.lab[..., 1:], axis=-1)
    shadow_like = (hue_apart < params.shadow_chroma) & (drop > 0) & (drop < params.shadow_max_drop)
    sharp = filters.sobel(lab[..., 0]) >= params.shadow_edge
    core = mask & (~shadow_like | sharp)
    radius = max(1, round(min(mask.shape) / 60))
    product = ndimage.binary_fill_holes(morphology.closing(core, morphology.disk(radius))) & mask
    product = morphology.remove_small_objects(product, max_size=max(1, int(params.min_component * mask.size)))
    if params.shadow_outside_hull and product.any():
        product = mask & (product | morphology.convex_hull_image(product))
    total = int(mask.sum())
    if total == 0 or product.sum() < params.shadow_min_keep * total:
        return mask, 0.0
    return product, 1.0 - float(product.sum()) / total


def _colour_name(lab_mean: np.ndarray, params: FramingParams) -> str:
    """A plain name for a background colour ("white", "light grey", "dark", "coloured")."""
    lightness, chroma = float(lab_mean[0]), float(np.hypot(lab_mean[1], lab_mean[2]))
    if chroma > 12:
        return "coloured"
    if lightness >= params.white_lightness and chroma < params.white_chroma:
        return "white"
    if lightness >= 70:
        return "light grey"
    return "grey" if lightness >= 40 else "dark"


def _is_white(lab_mean: np.ndarray, params: FramingParams) -> bool:
    return (
        float(lab_mean[0]) >= params.white_lightness and float(np.hypot(lab_mean[1], lab_mean[2])) < params.white_chroma
    )


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the True pixels, right/bottom exclusive."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bool mask resized to ``size`` (W, H), bilinear then ≥ 0.5."""
    m = Image.fromarray(mask.astype(np.uint8) * 255, "L").resize(size, Image.BILINEAR)
    return np.asarray(m) >= 128


def _fill(box: tuple[int, int, int, int], shape: tuple[int, int]) -> float:
    """How much of the frame the box fills: the larger of its height and width shares."""
    left, top, right, bottom = box
    return max((bottom - top) / shape[0], (right - left) / shape[1])


def _looks_catalogue(box: tuple[int, int, int, int], shape: tuple[int, int], params: FramingParams) -> bool:
    """A 3:4 frame whose product fills it and sits near its centre: framed like the dataset."""
    h, w = shape
    if abs((w / h) / CANVAS_ASPECT - 1.0) > params.aspect_tolerance:
        return False
    left, top, right, bottom = box
    fill = _fill(box, shape)
    cx, cy = (left + right) / 2 / w, (top + bottom) / 2 / h
    return fill >= params.kept_fill and max(abs(cx - 0.5), abs(cy - 0.5)) <= params.kept_offset


def normalise_framing(img: Image.Image, params: FramingParams = DEFAULT_PARAMS) -> Framing:
    """Frame one decoded RGB image like the catalogue thumbnails (see the module docstring)."""
    img = img.convert("RGB")
    if min(img.size) < 4:  # nothing to estimate a border from
        return Framing(img, NO_PRODUCT, "the image is too small to find a product in: used as it is")
    rgb, scale = _analysis_copy(img, params.analysis_side)
    mask, bg = product_mask(rgb, params)
    background = tuple(int(v) for v in np.clip(color.lab2rgb(bg.mean_lab[None, None])[0, 0] * 255, 0, 255).round())
    if not bg.uniform:
        return Framing(
            img,
            BUSY,
            "busy background: the models learnt from photos of one product on white; treat the answer with care",
            background,
        )
    if mask is None:
        return Framing(
            img, NO_PRODUCT, "no product stands out from the background: the photo was used as it is", background
        )
    box = _box(mask)
    if (
        _is_white(bg.mean_lab, params)
        and (bg.shadow <= params.shadow_kept_share or _fill(box, mask.shape) >= params.shadow_kept_fill)
        and bg.gains is None
        and _looks_catalogue(box, mask.shape, params)
    ):
        full_box = tuple(int(round(v / scale)) for v in box)
        return Framing(img, KEPT, "", background, full_box, resize_mask(mask, img.size))
    return _reframe(img, mask, box, scale, bg, background, params)


def _refine_box(
    img: Image.Image, box: tuple[int, int, int, int], scale: float, bg: _Background, params: FramingParams
) -> tuple[float, float, float, float]:
    """The product box found on the analysis copy, re-measured at (up to 4×) finer resolution in a
    window around it, so that a small product in a large photo is not cropped a few pixels off."""
    h_small, w_small = bg.lab.shape[:2]
    pad = 2
    x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
    x1, y1 = min(w_small, box[2] + pad), min(h_small, box[3] + pad)
    window = img.crop((round(x0 / scale), round(y0 / scale), round(x1 / scale), round(y1 / scale)))
    fine = min(1.0, 4 * params.analysis_side / max(window.size))
    if fine < 1.0:
        window = window.resize(
            (max(1, round(window.width * fine)), max(1, round(window.height * fine))), Image.BILINEAR
        )
    lab = _smoothed_lab(np.asarray(window, dtype=np.float32) / 255.0, params)
    # the background plane at the window's pixels (its coordinates run over the analysis copy)
    hh, ww = lab.shape[:2]
    ys = np.linspace(y0, y1 - 1, hh)[:, None] / max(h_small - 1, 1)
    xs = np.linspace(x0, x1 - 1, ww)[None, :] / max(w_small - 1, 1)
    found = np.linalg.norm(lab - _plane_at(bg.coef, xs, ys), axis=-1) > _product_threshold(bg, params)
    found = morphology.remove_small_objects(found, max_size=max(1, int(params.min_component * found.size)))
    if not found.any():
        return tuple(v / scale for v in box)  # type: ignore[return-value]
    fl, ft, fr, fb = _box(found)
    k = (x1 - x0) / scale / ww  # window pixel → input pixel
    kv = (y1 - y0) / scale / hh
    return x0 / scale + fl * k, y0 / scale + ft * kv, x0 / scale + fr * k, y0 / scale + fb * kv


def _reframe(
    img: Image.Image,
    mask: np.ndarray,
    box: tuple[int, int, int, int],
    scale: float,
    bg: _Background,
    background: tuple[int, int, int],
    params: FramingParams,
) -> Framing:
    """Crop to the product, soften the background to white and centre it on a white 3:4 canvas."""
    if bg.gains is not None:
        img = apply_gains(img, bg.gains)
    # the product mask (with keep_inside_hull on white: its hull less the shadow), feathered: alpha for softening
    if params.keep_inside_hull and _is_white(bg.mean_lab, params):
        soften = ~morphology.convex_hull_image(mask)  # the hull holds the mask
        if bg.shadow_mask is not None:  # with its soft edge, which the mask's threshold left out
            grown = morphology.dilation(bg.shadow_mask, morphology.disk(max(1, round(min(mask.shape) / 40))))
            soften |= grown & ~mask
        alpha_small = 1.0 - filters.gaussian(soften.astype(np.float32), sigma=params.feather)
    else:
        alpha_small = filters.gaussian(mask.astype(np.float32), sigma=params.feather)
    alpha = Image.fromarray((np.clip(alpha_small, 0, 1) * 255).astype(np.uint8), "L").resize(img.size, Image.BILINEAR)
    left, top, right, bottom = _refine_box(img, box, scale, bg, params) if scale < 1.0 else box
    bw, bh = max(right - left, 1.0), max(bottom - top, 1.0)
    canvas_h = max(bh / params.target_fill, bw / (CANVAS_ASPECT * params.target_fill))
    canvas_w = canvas_h * CANVAS_ASPECT
    cx, cy = (left + right) / 2, (top + bottom) / 2
    crop = (round(cx - canvas_w / 2), round(cy - canvas_h / 2))
    size = (max(1, round(canvas_w)), max(1, round(canvas_h)))
    white = Image.new("RGB", img.size, (255, 255, 255))
    softened = Image.composite(img, white, alpha)
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(softened, (-crop[0], -crop[1]))
    mask_full = resize_mask(mask, img.size)
    mask_canvas = np.zeros((size[1], size[0]), bool)
    src = mask_full[max(0, crop[1]) : crop[1] + size[1], max(0, crop[0]) : crop[0] + size[0]]
    oy, ox = max(0, -crop[1]), max(0, -crop[0])
    mask_canvas[oy : oy + src.shape[0], ox : ox + src.shape[1]] = src
    name = _colour_name(bg.mean_lab, params)
    note = f"product found on a {name} background: cropped and placed on white"
    if bg.shadow > params.shadow_kept_share:
        note += ", its shadow left out"
    if bg.gains is not None:
        note += ", colours corrected for the tinted light"
    caution = name == "dark"
    if caution:  # the held-out framings' dark backdrop: val Formal recall 0.55–0.62 of the unframed (docs/framing.md)
        note += "; dark parts of a product can be lost with a dark backdrop, so treat the answer with care"
    full_box = (round(left), round(top), round(right), round(bottom))
    return Framing(canvas, REFRAMED, note, background, full_box, mask_canvas, caution)


def white_balance_gains(
    lab_mean: np.ndarray, params: FramingParams = DEFAULT_PARAMS
) -> tuple[float, float, float] | None:
    """Per-channel sRGB gains that make a bright tinted background neutral (white under coloured
    light), or None for a neutral, darker or off one (a coloured table keeps its colour)."""
    if params.white_balance_lightness <= 0:
        return None
    lightness, chroma = float(lab_mean[0]), float(np.hypot(lab_mean[1], lab_mean[2]))
    if lightness < params.white_balance_lightness or chroma <= params.white_chroma:
        return None
    rgb = np.clip(color.lab2rgb(np.asarray(lab_mean, np.float64)[None, None])[0, 0], 1e-3, 1.0)
    return tuple(float(min(params.max_gain, rgb.max() / v)) for v in rgb)  # type: ignore[return-value]


def apply_gains(img: Image.Image, gains: tuple[float, float, float]) -> Image.Image:
    """``img`` with each RGB channel multiplied by its gain (clipped at 255)."""
    bands = [band.point([min(255, round(v * g)) for v in range(256)]) for band, g in zip(img.split(), gains)]
    return Image.merge("RGB", bands)


def share_on_product(cam: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of a non-negative Grad-CAM map's mass that falls on the product ``mask`` (the map is
    resized bilinearly to the mask's H×W); None for an all-zero map."""
    cam = np.clip(np.asarray(cam, dtype=np.float32), 0.0, None)
    if cam.shape != mask.shape:
        cam = np.asarray(Image.fromarray(cam, "F").resize((mask.shape[1], mask.shape[0]), Image.BILINEAR))
        cam = np.clip(cam, 0.0, None)
    total = float(cam.sum())
    if total <= 0 or not np.isfinite(total):
        return None
    return float(cam[mask].sum() / total)
