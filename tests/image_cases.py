"""Generated upload cases: good photos in many encodings and the hostile/broken ones."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from core.images.framing import DEFAULT_PARAMS
from core.images.preprocess import ALLOWED_FORMATS, NATIVE_SIZE

# variants of the framing step, spelled out in full so they mean the same whatever the defaults: the step
# with none of its later parts (version 2); with the shadow step and the white balance as the first ten tries
# had them; with the hull parts (version 3, the twelfth try of docs/framing-retrain-rule.md); version 3 with the
# white balance (version 4, the thirteenth try); and the shipped one, version 4 with a photo whose mask is 5% shadow
# reframed (version 5, the twenty-first try; all before it kept a photo up to 10% shadow)
PLAIN_FRAMING = dataclasses.replace(
    DEFAULT_PARAMS,
    shadow_chroma=0.0,
    white_balance_lightness=0.0,
    shadow_outside_hull=False,
    keep_inside_hull=False,
    shadow_kept_share=0.1,
)
EARLIER_PARTS_FRAMING = dataclasses.replace(PLAIN_FRAMING, shadow_chroma=2.5, white_balance_lightness=80.0)
HULL_PARTS_FRAMING = dataclasses.replace(
    PLAIN_FRAMING, shadow_chroma=2.5, shadow_outside_hull=True, keep_inside_hull=True
)
THIRTEENTH_FRAMING = dataclasses.replace(HULL_PARTS_FRAMING, white_balance_lightness=80.0)
SHIPPED_FRAMING = dataclasses.replace(THIRTEENTH_FRAMING, shadow_kept_share=0.05)


def garment_photo(width: int = 600, height: int = 800, colour: tuple[int, int, int] = (30, 40, 120)) -> Image.Image:
    """A product-photo-like image: a dark 'shirt' shape on white."""
    arr = np.full((height, width, 3), 255, np.uint8)
    h0, h1 = height // 6, height * 5 // 6
    w0, w1 = width // 4, width * 3 // 4
    arr[h0:h1, w0:w1] = colour
    arr[h0 : h0 + height // 8, width // 8 : width * 7 // 8] = colour  # sleeves
    return Image.fromarray(arr)


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    """Image → bytes in ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_bomb(side: int = 20_000) -> bytes:
    """A tiny PNG whose header claims ``side``×``side`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * side
    idat = zlib.compress(row * 64, 9)  # only a few rows: the header is what matters
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


RED, BLUE = (220, 20, 20), (20, 20, 220)


def two_tone(size: tuple[int, int] = NATIVE_SIZE, mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue."""
    w, h = size
    img = Image.new("RGB", size, RED)
    img.paste(BLUE, (w // 2, 0, w, h))
    return img.convert(mode) if mode != "RGB" else img


INKS = {"c": (0, 158, 224), "m": (226, 0, 122), "y": (255, 237, 0), "k": (35, 31, 32)}  # sRGB of each ink


def cmyk_profile() -> bytes:
    """A 2 KB ICC v2 printer profile made here (offline, no licence question): four inks of the
    colours in ``INKS`` that multiply, as an A2B0 ``lut8`` with a 2-point grid to Lab. Decoding a
    CMYK photo through it gives those colours, where a naive conversion gives pure cyan etc."""
    from PIL import ImageCms

    def s15(x: float) -> bytes:
        return struct.pack(">i", round(x * 65536))

    corners = [(c, m, y, k) for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)]  # first ink slowest
    rgb = Image.new("RGB", (len(corners), 1))
    for i, on in enumerate(corners):
        mix = [255.0] * 3
        for ink, used in zip("cmyk", on):
            mix = [v * t / 255 for v, t in zip(mix, INKS[ink])] if used else mix
        rgb.putpixel((i, 0), tuple(round(v) for v in mix))
    lab = ImageCms.profileToProfile(
        rgb, ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), outputMode="LAB"
    )
    raw = lab.tobytes()  # L, then a and b as signed bytes
    clut = bytes(v if i % 3 == 0 else (v + 128) % 256 for i, v in enumerate(raw))  # lut8's Lab: a+128, b+128
    ramp = bytes(range(256))
    identity = b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    text = b"test CMYK: four multiplying inks\0"
    tags = [
        (b"desc", b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8 + 3 + 67)),
        (b"wtpt", b"XYZ " + bytes(4) + s15(0.9642) + s15(1.0) + s15(0.8249)),
        (b"cprt", b"text" + bytes(4) + b"public domain\0"),
        (b"A2B0", b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + identity + ramp * 4 + clut + ramp * 3),
    ]
    table, body, start = b"", b"", 128 + 4 + 12 * len(tags)
    for sig, data in tags:
        body += bytes(-(start + len(body)) % 4)  # tags start on 4-byte boundaries
        table += sig + struct.pack(">II", start + len(body), len(data))
        body += data
    header = (
        struct.pack(">I", start + len(body)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"prtrCMYKLab " + bytes(12)
        + b"acspAPPL" + bytes(24) + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(48)
    )  # fmt: skip
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


HEIC_GARMENT = Path(__file__).parent / "data" / "garment.heic"  # garment_photo() as HEIC, made once


def good_cases() -> dict[str, tuple[bytes, str | None]]:
    """Files that must be classified; value: (bytes, expected note fragment or None)."""
    photo = garment_photo()
    sixteen = Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257)
    floats = Image.fromarray(np.asarray(photo.convert("L"), dtype=np.float32) / 255.0)
    rgba = photo.convert("RGBA")
    a = np.asarray(rgba).copy()
    a[:100, :, 3] = 0
    frames = [garment_photo(colour=c) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    anim = io.BytesIO()
    frames[0].save(anim, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return {
        "photo.jpg": (encode(photo, "JPEG", quality=90), None),
        "photo.png": (encode(photo, "PNG"), None),
        "photo.webp": (encode(photo, "WEBP"), None),
        "photo.bmp": (encode(photo, "BMP"), None),
        "sixteen_bit.png": (encode(sixteen, "PNG"), "16-bit greyscale was scaled"),
        "float.tiff": (encode(floats, "TIFF"), "floating-point"),
        "cmyk.jpg": (encode(photo.convert("CMYK"), "JPEG"), "CMYK"),
        "palette.png": (encode(photo.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), None),
        "rgba.png": (encode(Image.fromarray(a, "RGBA"), "PNG"), "transparent"),
        "animated.gif": (anim.getvalue(), "first frame"),
        **({"iphone.heic": (HEIC_GARMENT.read_bytes(), None)} if "HEIF" in ALLOWED_FORMATS else {}),
        **({"photo.avif": (encode(photo, "AVIF", quality=90), None)} if "AVIF" in ALLOWED_FORMATS else {}),
    }


def bad_cases() -> dict[str, tuple[bytes, str]]:
    """Files that must be refused; value: (bytes, expected message fragment)."""
    photo = garment_photo()
    jpeg = encode(photo, "JPEG", quality=90)
    return {
        "not_an_image.jpg": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", "not an image"),
        "empty.png": (b"", "empty"),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], "damaged or truncated"),
        "bomb.png": (png_bomb(), "too large"),
        "tiny.png": (encode(Image.new("RGB", (1, 1), "white"), "PNG"), "too small"),
        "elongated.png": (encode(Image.new("RGB", (2000, 20), "white"), "PNG"), "elongated"),
        "photo.heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "damaged"),
        "huge_file.jpg": (jpeg + b"\x00" * (26 * 1024 * 1024), "larger than"),
    }
