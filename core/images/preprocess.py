"""Image decoding and the one preprocessing definition shared by training, evaluation and the app.

Every image — a 60×80 dataset JPEG or a 12-megapixel phone photo — goes the same way:

1. :func:`open_image`: decode from bytes with an allowed list of formats, EXIF rotation
   applied, decompression bombs refused, any mode (16-bit, float, CMYK, palette, alpha)
   turned into 8-bit RGB on white.
2. :func:`core.images.framing.normalise_framing`: find the product against a near-uniform background,
   crop to it and place it on white as the catalogue shots are framed (a busy background is
   left as it is and flagged).
3. :func:`to_native`: fit into the dataset's native 60×80 canvas (aspect kept, white
   padding, antialiased downscale) and, when it had to be resized, one JPEG round trip at
   the dataset's quality, so that a large photo looks to the models like their training
   images.
4. Inside each model, :class:`core.models.InputAdapter` upsamples the native canvas to the
   model's input size and normalises it (recorded in the model card).
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError, features

from core.images.framing import DEFAULT_PARAMS as DEFAULT_FRAMING
from core.images.framing import Framing, FramingParams, normalise_framing, resize_mask

log = logging.getLogger(__name__)

try:  # iPhone photos are HEIC: libheif + libde265 through pi-heif (decode only, LGPL wheels)
    from pi_heif import options as heif_options
    from pi_heif import register_heif_opener

    heif_options.THUMBNAILS = heif_options.DEPTH_IMAGES = heif_options.AUX_IMAGES = False  # the photo only
    heif_options.DISABLE_SECURITY_LIMITS = False  # libheif's limits on sizes and box counts stay on
    heif_options.DECODE_THREADS = min(4, os.cpu_count() or 1)  # not more threads than cores
    register_heif_opener()
    HEIF_FORMATS: tuple[str, ...] = ("HEIF",)
except ImportError:  # pragma: no cover - an install without it refuses HEIC with a message
    HEIF_FORMATS = ()
AVIF_FORMATS: tuple[str, ...] = ("AVIF",) if features.check("avif") else ()

NATIVE_SIZE: tuple[int, int] = (60, 80)  # (width, height) of the dataset's images
NATIVE_JPEG_QUALITY = 75  # the dataset was re-encoded at about this quality
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", *HEIF_FORMATS, *AVIF_FORMATS)
FORMAT_NAMES = ", ".join(
    ["JPEG", "PNG", "WebP", "BMP", "GIF", "TIFF", *(["HEIC"] if HEIF_FORMATS else []), *AVIF_FORMATS]
)
# Most phone JPEGs embed a second, smaller image (a preview or depth map): the JPEG plugin then
# opens them as format "MPO" with 2 frames. They are still one photo, decoded as a JPEG.
JPEG_FORMATS: tuple[str, ...] = ("JPEG", "MPO")
ALPHA_MODES: tuple[str, ...] = ("RGBA", "LA", "PA", "RGBa", "La")  # composited on white
MAX_PIXELS = 40_000_000  # refuse larger images (decompression bombs included)
MAX_BYTES = 25 * 1024 * 1024  # same as server.maxUploadSize in .streamlit/config.toml
MIN_SIDE = 8
MAX_ASPECT = 8.0
WHITE = (255, 255, 255)


class ImageInputError(ValueError):
    """An input that is not a usable photo; the message is short and meant for the user."""


@dataclass
class DecodedImage:
    """A decoded RGB image plus notes for the user (e.g. 'animated: first frame used')."""

    image: Image.Image
    source_format: str
    source_mode: str
    notes: list[str] = field(default_factory=list)
    # the file's own W×H, upright; ``image`` may be smaller (a big JPEG decodes at a reduced scale)
    pixel_size: tuple[int, int] | None = None


HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
AVIF_BRANDS = (b"avif", b"avis")


def _heif_brand(data: bytes) -> str | None:
    """ "AVIF" or "HEIF" when ``data`` starts with an ISO-BMFF ``ftyp`` box naming such a brand
    (major or compatible: an AVIF may say ``mif1`` first), else None."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return None
    size = min(int.from_bytes(data[:4], "big"), len(data), 64)
    brands = [data[8:12], *(data[i : i + 4] for i in range(16, size - 3, 4))]
    if any(b in AVIF_BRANDS for b in brands):
        return "AVIF"
    return "HEIF" if any(b in HEIF_BRANDS for b in brands) else None


_SRGB = ImageCms.createProfile("sRGB")
_ICC_OUTPUT_MODE = {"RGB": "RGB", "CMYK": "RGB"}


def _to_srgb(img: Image.Image, icc: bytes) -> Image.Image:
    """Colours from the photo's embedded profile (a phone's Display P3, Adobe RGB, a print CMYK)
    to sRGB, as the dataset's images (which carry none) are, with the relative colorimetric intent;
    the image as it is when the profile is unusable or does not fit its mode."""
    out_mode = _ICC_OUTPUT_MODE.get(img.mode)
    if out_mode is None:
        return img
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        intent = ImageCms.Intent.RELATIVE_COLORIMETRIC
        return ImageCms.profileToProfile(img, source, _SRGB, renderingIntent=intent, outputMode=out_mode) or img
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        log.info("colour profile ignored: %r", exc)
        return img


def _has_transparent_pixels(img: Image.Image) -> bool:
    """Whether any pixel is less than opaque (an alpha channel that is 255 everywhere is not)."""
    if img.mode in ALPHA_MODES:
        return img.getchannel("A").getextrema()[0] < 255  # no copy of the whole image
    if "transparency" in img.info and img.mode in ("P", "RGB", "L"):  # the modes _to_rgb composites
        return img.convert("RGBA").getchannel("A").getextrema()[0] < 255
    return False


DEEP_MODES: tuple[str, ...] = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _to_8bit(img: Image.Image) -> tuple[Image.Image, str]:
    """A 16/32-bit integer or float image → 8-bit ``L`` (``LA`` where a transparent grey value is
    set), and a note for the user (empty when nothing was scaled). Integer values are scaled by
    their bit depth (8-bit ones kept), floats in 0–1 by 255; only other values (signed or 32-bit
    integers, floats beyond 0–1) have their contrast stretched, and the note says so."""
    arr = np.asarray(img)
    key = img.info.get("transparency")
    clear = (arr == key) if isinstance(key, int) else None  # a tRNS grey value: those pixels are transparent
    if img.mode.startswith("I;16"):
        out = (arr.astype(np.uint32) * 255 + 32767) // 65535
        note = "16-bit greyscale was scaled to 8 bits"
    else:
        vals = arr.astype(np.float32)
        finite = vals[np.isfinite(vals)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
            vals, note = vals * 255.0, "floating-point pixels (0–1) were scaled to 8 bits"
        elif img.mode == "I" and lo >= 0.0 and hi <= 255.0:
            note = ""  # 8-bit values in a wider type: nothing to scale
        elif img.mode == "I" and lo >= 0.0 and hi <= 65535.0:
            vals, note = vals / 257.0, "32-bit greyscale with 16-bit values was scaled to 8 bits"
        else:
            vals = (vals - lo) / (hi - lo if hi > lo else 1.0) * 255.0
            note = f"{'floating-point' if img.mode == 'F' else '32-bit'} pixels had their contrast stretched to 8 bits"
        out = np.nan_to_num(vals, nan=0.0, posinf=255.0, neginf=0.0).round()
    grey = Image.fromarray(out.clip(0, 255).astype(np.uint8), "L")
    if clear is not None and clear.any():
        grey.putalpha(Image.fromarray(np.where(clear, 0, 255).astype(np.uint8), "L"))
    return grey, note


def _stored_floor(w: int, h: int, turned: bool) -> tuple[int, int]:
    """:func:`_draft_size` of the upright photo, in the stored image's W×H (an EXIF-turned photo is
    stored on its side, and it is the upright one that is fitted into the canvas)."""
    if not turned:
        return _draft_size(w, h)
    rw, rh = _draft_size(h, w)
    return rh, rw


def _shrink(img: Image.Image, turned: bool) -> Image.Image:
    """``img`` reduced by a whole factor to :func:`_stored_floor` right after decoding, before any
    copy of it is made (a JPEG is already drafted there). Palette, 1-bit and colour-keyed images
    cannot be averaged as they are: they are converted first (one copy), transparency kept."""
    rw, rh = _stored_floor(*img.size, turned)
    k = min(img.width // rw, img.height // rh)
    if k < 2:
        return img
    if "transparency" in img.info:
        img = img.convert("LA" if img.mode in ("L", "1") else "RGBA")
    elif img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    return img.reduce(k)


# EXIF orientation → the transpose that makes the image upright (EXIF 2.3, tag 0x0112)
_SWAPS_SIDES = frozenset({5, 6, 7, 8})  # the orientations whose transpose swaps W and H
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any 8-bit PIL mode → RGB; transparency is composited on white."""
    mode = img.mode
    if mode == "P" or (mode in ("RGB", "L", "LA") and "transparency" in img.info):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ALPHA_MODES:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, WHITE + (255,))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    if mode != "RGB":
        return img.convert("RGB")
    return img


def open_image(data: bytes, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode ``data`` into an RGB image, or raise :class:`ImageInputError` with a short reason."""
    if not data:
        raise ImageInputError("The file is empty.")
    if len(data) > MAX_BYTES:
        raise ImageInputError(f"The file is larger than {MAX_BYTES // 2**20} MB.")
    container = _heif_brand(data)
    if container is not None and container not in ALLOWED_FORMATS:
        need = (
            "HEIC/HEIF photos need the pi-heif package (pip install -r requirements.txt)"
            if container == "HEIF"
            else "AVIF photos need a Pillow built with AVIF support"
        )
        raise ImageInputError(f"{need}; or export the photo as JPEG or PNG.")
    notes: list[str] = []
    try:
        # an ISO-BMFF file goes to the decoder its brands name: an AVIF that lists mif1 first
        # would otherwise reach libheif, which has no AV1 decoder here. Pillow's own bomb check
        # raises above 2 × Image.MAX_IMAGE_PIXELS (about 179 MP); its warning below that is left
        # alone (a warnings.catch_warnings() block is not thread-safe): the limits are checked here.
        img = Image.open(io.BytesIO(data), formats=(container,) if container else ALLOWED_FORMATS)
        fmt, mode = img.format or "?", img.mode
        w, h = img.size
        # a HEIF holds several images at most as a collection: its primary one is the photo,
        # and a MPO's second image is a preview (neither is an animation to rewind)
        if getattr(img, "n_frames", 1) > 1 and fmt not in (*JPEG_FORMATS, *HEIF_FORMATS):
            notes.append(f"animated ({img.n_frames} frames): the first frame was used")
            img.seek(0)
            w, h = img.size  # the frame that is decoded is the one that is checked
        # sizes are judged on the file's own W×H (as stored, before EXIF rotation: a PNG's EXIF may
        # come after its pixels, so reading it would decode them), never on a reduced decode
        if min(w, h) < MIN_SIDE:
            raise ImageInputError(f"The image is too small ({w}×{h} px); at least {MIN_SIDE} px per side.")
        if max(w, h) / min(w, h) > MAX_ASPECT:
            raise ImageInputError(f"The image is too elongated ({w}×{h} px) to be a product photo.")
        # a JPEG's EXIF is in its header: its orientation is known before the pixels are decoded
        early_turn = fmt in JPEG_FORMATS and img.getexif().get(0x0112) in _SWAPS_SIDES
        reduced = _stored_floor(w, h, early_turn)
        if fmt in JPEG_FORMATS and (w >= 2 * reduced[0] or h >= 2 * reduced[1]):
            img.draft("RGB", reduced)  # a big JPEG decodes at 1/2–1/8 scale: much faster, far less memory
        # what is decoded: a 48 MP phone JPEG counts drafted. A progressive JPEG does not: libjpeg
        # buffers all its coefficients at full size whatever the scale, so its own size counts.
        progressive = bool(img.info.get("progressive") or img.info.get("progression"))
        decoded = (w, h) if progressive else img.size
        if decoded[0] * decoded[1] > max_pixels:
            raise ImageInputError(
                f"The image is too large ({w}×{h} px); the limit is {max_pixels // 1_000_000} megapixels"
                + (
                    " for a progressive JPEG, which is decoded at full size (a baseline JPEG is not)."
                    if progressive
                    else "."
                )
            )
        img.load()
        orientation = img.getexif().get(0x0112)
        turned = orientation in _SWAPS_SIDES
        file_size = (h, w) if turned else (w, h)  # upright
        icc = img.info.get("icc_profile")
        if img.mode in ("I", "F") and "transparency" not in img.info:
            img = _shrink(img, turned)  # 32-bit pixels average as they are: reduced before the copies below
        if img.mode in DEEP_MODES:  # 16-bit (no whole-factor reduction for it) and 32-bit → 8-bit L/LA
            img, depth_note = _to_8bit(img)
            if depth_note:
                notes.append(depth_note)
        img = _shrink(img, turned)  # before any copy: a 40 MP PNG is not copied whole
        if orientation in _UPRIGHT:
            img = img.transpose(_UPRIGHT[orientation])
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError("The image is too large (possible decompression bomb).") from None
    except UnidentifiedImageError:
        if container is not None:  # the HEIF/AVIF decoder could not even read its header
            raise ImageInputError("The image file is damaged or truncated and cannot be read.") from None
        raise ImageInputError(f"This is not an image in a supported format ({FORMAT_NAMES}).") from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        IndexError,
        TypeError,
        KeyError,
        RuntimeError,  # libheif's failures through pi-heif; NotImplementedError from Pillow
        struct.error,
    ) as exc:
        log.info("decode failed: %r", exc)
        raise ImageInputError("The image file is damaged or truncated and cannot be read.") from None
    except MemoryError:
        raise ImageInputError("The image needs too much memory to decode.") from None
    try:
        if _has_transparent_pixels(img):
            notes.append("transparent areas were placed on white")
    except (OSError, ValueError) as exc:
        log.info("transparency check failed: %r", exc)
        raise ImageInputError("The image's colour format cannot be converted to RGB.") from None
    if mode == "CMYK":
        notes.append("CMYK colours were converted to RGB")
    if icc and img.mode == "CMYK":  # a CMYK profile converts the ink values themselves
        img = _to_srgb(img, icc)
    try:
        rgb = _to_rgb(img)
    except (OSError, ValueError) as exc:
        log.info("mode conversion failed: %r", exc)
        raise ImageInputError("The image's colour format cannot be converted to RGB.") from None
    if icc and mode != "CMYK":  # an RGB profile (palette and alpha images too), after compositing on white
        rgb = _to_srgb(rgb, icc)
    return DecodedImage(rgb, fmt, mode, notes, file_size)


def _draft_size(w: int, h: int, size: tuple[int, int] = NATIVE_SIZE, oversample: int = 4) -> tuple[int, int]:
    """The smallest decode size a JPEG may be reduced to: ``oversample`` × its fitted size on the canvas.

    The DCT-domain reduction is a crude filter. Decoding to at least 4× the final size and
    leaving the rest to the antialiased resize keeps the canvas within about 0.3 grey levels
    (mean) of a full decode for 600×800 to 3000×4000 photos; reducing as far as 1/8 (down to
    about 1.25× the final size for a 600×800 photo) was 1.4 levels off.
    """
    scale = min(size[0] / w, size[1] / h)
    return min(w, math.ceil(oversample * w * scale)), min(h, math.ceil(oversample * h * scale))


def fit_box(image_size: tuple[int, int], size: tuple[int, int] = NATIVE_SIZE) -> tuple[int, int, int, int]:
    """Where :func:`to_native` puts an image of ``image_size`` (W, H): (left, top, width, height)."""
    w, h = image_size
    scale = min(size[0] / w, size[1] / h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return (size[0] - new[0]) // 2, (size[1] - new[1]) // 2, new[0], new[1]


def to_native(img: Image.Image, size: tuple[int, int] = NATIVE_SIZE) -> Image.Image:
    """Fit an RGB image into the native canvas: aspect kept, centred on white, antialiased.

    An image already at the native size is returned unchanged. A resized one gets one JPEG
    round trip at the dataset's quality, so its texture matches the training images.
    """
    if img.size == size:
        return img
    left, top, nw, nh = fit_box(img.size, size)
    resized = img.resize((nw, nh), Image.Resampling.LANCZOS, reducing_gap=3.0)
    canvas = Image.new("RGB", size, WHITE)
    canvas.paste(resized, (left, top))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=NATIVE_JPEG_QUALITY)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out.convert("RGB")


def canvas_coverage(image_size: tuple[int, int], size: tuple[int, int] = NATIVE_SIZE) -> float:
    """Share of the native canvas an image of ``image_size`` (W, H) covers once fitted into it;
    the rest is white padding (1.0 for the dataset's 3:4 product shots)."""
    w, h = image_size
    scale = min(size[0] / w, size[1] / h)
    return min(1.0, max(1, round(w * scale)) * max(1, round(h * scale)) / (size[0] * size[1]))


def native_mask(mask: np.ndarray, size: tuple[int, int] = NATIVE_SIZE) -> np.ndarray:
    """A bool product mask of an image, placed on the native canvas the way :func:`to_native` places
    the image (False on the padding)."""
    left, top, nw, nh = fit_box((mask.shape[1], mask.shape[0]), size)
    out = np.zeros((size[1], size[0]), bool)
    out[top : top + nh, left : left + nw] = resize_mask(mask, (nw, nh))
    return out


@dataclass
class NativeImage:
    """An image on the native canvas, how it was framed, and its product mask there (None: not found)."""

    image: Image.Image
    framing: Framing
    mask: np.ndarray | None


def frame_and_fit(img: Image.Image, params: FramingParams = DEFAULT_FRAMING) -> NativeImage:
    """A decoded RGB image → framing normalisation → the native canvas; the one path of every image."""
    framing = normalise_framing(img, params)
    mask = None if framing.mask is None else native_mask(framing.mask)
    return NativeImage(to_native(framing.image), framing, mask)


def load_native_rgb(data: bytes) -> Image.Image:
    """Bytes → native 60×80 RGB image (decode, framing normalisation, :func:`to_native`)."""
    return frame_and_fit(open_image(data).image).image


def pil_to_uint8_chw(img: Image.Image) -> np.ndarray:
    """RGB PIL image → ``3×H×W`` uint8 array."""
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))
