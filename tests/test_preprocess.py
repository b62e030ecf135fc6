"""core.images.preprocess: decoding any upload to RGB, refusing bad inputs, fitting to the native canvas."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from image_cases import BLUE, INKS, RED, cmyk_profile, garment_photo, two_tone
from PIL import Image

from core.images.preprocess import (
    MAX_BYTES,
    NATIVE_SIZE,
    ImageInputError,
    load_native_rgb,
    open_image,
    pil_to_uint8_chw,
    to_native,
)

WHITE = (255, 255, 255)


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    """Encode ``img`` in ``fmt`` to bytes."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature + IHDR claiming ``width×height`` and an empty IDAT: no real pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    """Colours equal within ``tol`` per channel (lossy formats)."""
    return all(abs(x - y) <= tol for x, y in zip(a, b))


# ---------------------------------------------------------------- formats and modes
@pytest.mark.parametrize(
    ("fmt", "kw"),
    [("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"quality": 95}), ("BMP", {}), ("GIF", {}), ("TIFF", {})],
)
def test_open_formats(fmt: str, kw: dict) -> None:
    data = encode(two_tone(), fmt, **kw)
    dec = open_image(data)
    assert dec.source_format == fmt
    assert dec.image.mode == "RGB" and dec.image.size == NATIVE_SIZE
    assert close(dec.image.getpixel((5, 40)), RED)
    assert close(dec.image.getpixel((55, 40)), BLUE)
    assert dec.notes == []


def test_animated_gif_first_frame_and_note() -> None:
    first, second = Image.new("RGB", NATIVE_SIZE, RED), Image.new("RGB", NATIVE_SIZE, BLUE)
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    dec = open_image(data)
    assert any("animated" in n and "2 frames" in n for n in dec.notes)
    assert close(dec.image.getpixel((30, 40)), RED)


SRGB_D50_PRIMARIES = {  # sRGB's red, green and blue in XYZ, adapted to the ICC's D50 white
    "r": (0.4361, 0.2225, 0.0139),
    "g": (0.3851, 0.7169, 0.0971),
    "b": (0.1431, 0.0606, 0.7141),
}


def rgb_icc_profile(primaries: dict[str, tuple[float, float, float]], gamma: float = 2.2) -> bytes:
    """A minimal ICC v2 RGB display profile (matrix + gamma curves), written by hand."""

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(v: tuple[float, float, float]) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(s15(c) for c in v)

    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    name = b"test profile\0"
    tags = [
        (b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name + b"\0" * 12 + b"\0" * 67),
        (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", xyz(primaries["r"])),
        (b"gXYZ", xyz(primaries["g"])),
        (b"bXYZ", xyz(primaries["b"])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\0\0\0\0none\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = [], b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table.append(sig + struct.pack(">II", offset + len(body), len(data)))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + b"\0\0\0\0"
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(table) + body


def test_embedded_colour_profile_is_converted_to_srgb() -> None:
    """A profile whose red is sRGB's green: a 'red' pixel of such a photo is green on screen, and to the models."""
    swapped = {**SRGB_D50_PRIMARIES, "r": SRGB_D50_PRIMARIES["g"], "g": SRGB_D50_PRIMARIES["r"]}
    img = Image.new("RGB", NATIVE_SIZE, (230, 20, 20))
    dec = open_image(encode(img, "PNG", icc_profile=rgb_icc_profile(swapped)))
    r, g, b = dec.image.getpixel((30, 40))
    assert g > 180 and r < 80, (r, g, b)
    # a profile that is (close to) sRGB leaves colours (close to) as they are
    same = open_image(encode(img, "PNG", icc_profile=rgb_icc_profile(SRGB_D50_PRIMARIES)))
    assert close(same.image.getpixel((30, 40)), (230, 20, 20), 20)
    # palette and alpha images with an RGB profile are converted too (after compositing on white)
    for other in (img.convert("RGBA"), img.convert("P")):
        conv = open_image(encode(other, "PNG", icc_profile=rgb_icc_profile(swapped)))
        r, g, b = conv.image.getpixel((30, 40))
        assert g > 180 and r < 80, (other.mode, r, g, b)
    # and a broken profile is ignored, not fatal
    broken = open_image(encode(img, "PNG", icc_profile=b"\0" * 200))
    assert broken.image.getpixel((30, 40)) == (230, 20, 20)


def test_a_large_photo_with_a_profile_is_reduced_before_its_colour_conversion() -> None:
    from PIL import ImageCms

    swapped = {**SRGB_D50_PRIMARIES, "r": SRGB_D50_PRIMARIES["g"], "g": SRGB_D50_PRIMARIES["r"]}
    icc = rgb_icc_profile(swapped)
    big = garment_photo(60, 80).resize((1200, 1600), Image.Resampling.LANCZOS)
    dec = open_image(encode(big, "PNG", icc_profile=icc))
    assert dec.image.size == (240, 320) and dec.pixel_size == (1200, 1600)  # reduced 5×, to 4× the canvas
    full = ImageCms.profileToProfile(
        big, ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"), outputMode="RGB"
    )
    ours, reference = (np.asarray(to_native(x), dtype=float) for x in (dec.image, full))
    assert np.abs(ours - reference).mean() < 1.0  # grey levels: the same canvas as converting at full size


def test_cmyk_jpeg() -> None:
    img = Image.new("CMYK", NATIVE_SIZE, (0, 0, 0, 0))  # no ink: white
    img.paste((255, 0, 0, 0), (0, 0, 30, 80))  # full cyan
    dec = open_image(encode(img, "JPEG", quality=95))
    assert dec.source_mode == "CMYK" and dec.image.mode == "RGB"
    assert close(dec.image.getpixel((10, 40)), (0, 255, 255))
    assert close(dec.image.getpixel((50, 40)), WHITE)
    assert any("CMYK" in n for n in dec.notes)


@pytest.mark.parametrize("size", [(60, 80), (1500, 2000)])  # the second takes the drafted, reduced path
def test_cmyk_jpeg_colours_go_through_its_profile(size: tuple[int, int]) -> None:
    w, h = size
    img = Image.new("CMYK", size, (0, 0, 0, 0))
    for k, ink in enumerate(((255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255))):
        img.paste(ink, (0, k * h // 4, w // 2, (k + 1) * h // 4))  # the four inks down the left half
    dec = open_image(encode(img, "JPEG", quality=95, icc_profile=cmyk_profile()))
    out = dec.image.resize((2, 4), Image.Resampling.BOX)  # one cell per ink, the right half blank
    for k, ink in enumerate("cmyk"):
        assert close(out.getpixel((0, k)), INKS[ink], 12), (ink, out.getpixel((0, k)))  # the profile's inks …
        assert close(out.getpixel((1, k)), WHITE, 6)
    assert not close(out.getpixel((0, 0)), (0, 255, 255), 60)  # … not the naive conversion's pure cyan


def test_palette_png() -> None:
    img = two_tone().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    dec = open_image(encode(img, "PNG"))
    assert dec.source_mode == "P" and dec.image.mode == "RGB"
    assert close(dec.image.getpixel((5, 40)), RED) and close(dec.image.getpixel((55, 40)), BLUE)


def test_palette_with_transparency_on_white() -> None:
    img = Image.new("P", NATIVE_SIZE, 0)
    img.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    img.paste(1, (0, 0, 30, 80))
    data = encode(img, "GIF", transparency=0)  # index 0 (black) is transparent
    dec = open_image(data)
    assert dec.image.getpixel((50, 40)) == WHITE
    assert dec.image.getpixel((10, 40)) == (200, 10, 10)
    assert any("transparent" in n for n in dec.notes)


def test_rgba_composited_on_white() -> None:
    img = Image.new("RGBA", NATIVE_SIZE, (0, 0, 0, 0))  # fully transparent black
    img.paste((200, 0, 0, 255), (0, 0, 30, 40))  # opaque red
    img.paste((0, 0, 0, 128), (0, 40, 30, 80))  # half-transparent black
    dec = open_image(encode(img, "PNG"))
    assert dec.source_mode == "RGBA"
    assert dec.image.getpixel((50, 10)) == WHITE
    assert dec.image.getpixel((10, 10)) == (200, 0, 0)
    assert all(abs(c - 127) <= 2 for c in dec.image.getpixel((10, 60)))
    assert any("transparent" in n for n in dec.notes)


def test_opaque_rgba_gets_no_transparency_note() -> None:
    img = Image.new("RGBA", NATIVE_SIZE, (200, 0, 0, 255))  # an alpha channel that is opaque everywhere
    dec = open_image(encode(img, "PNG"))
    assert dec.source_mode == "RGBA" and dec.notes == []
    assert dec.image.getpixel((10, 10)) == (200, 0, 0)


def test_la_composited_on_white() -> None:
    img = Image.new("LA", NATIVE_SIZE, (0, 0))
    img.paste((50, 255), (0, 0, 30, 80))
    dec = open_image(encode(img, "PNG"))
    assert dec.image.getpixel((50, 40)) == WHITE
    assert dec.image.getpixel((10, 40)) == (50, 50, 50)


def test_rgb_png_with_colour_key_transparency_on_white() -> None:
    img = Image.new("RGB", NATIVE_SIZE, (0, 0, 0))
    img.paste(RED, (0, 0, 30, 80))
    dec = open_image(encode(img, "PNG", transparency=(0, 0, 0)))  # black is transparent
    assert dec.image.getpixel((50, 40)) == WHITE


def test_16bit_png_scaled_not_stretched() -> None:
    arr = np.zeros((80, 60), np.uint16)
    arr[:, 30:] = 32896  # half of full scale: must come out as mid-grey (128), not white
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    dec = open_image(encode(img, "PNG"))
    assert dec.source_mode.startswith("I;16") or dec.source_mode == "I"
    out = np.asarray(dec.image)
    assert out.shape == (80, 60, 3)
    assert out[:, :30].max() == 0
    assert np.all(np.abs(out[:, 30:].astype(int) - 128) <= 1)


def test_16bit_png_uniform_white() -> None:
    img = Image.fromarray(np.full((80, 60), 65535, np.uint16))
    out = np.asarray(open_image(encode(img, "PNG")).image)
    assert out.min() == 255


def test_float_tiff_unit_range() -> None:
    arr = np.zeros((80, 60), np.float32)
    arr[:, 30:] = 0.5
    arr[:10] = 1.0
    dec = open_image(encode(Image.fromarray(arr), "TIFF"))
    assert dec.source_mode == "F"
    out = np.asarray(dec.image)
    assert out[40, 5].tolist() == [0, 0, 0]
    assert all(abs(c - 127) <= 1 for c in out[40, 50])
    assert out[5, 5].tolist() == [255, 255, 255]


def test_float_tiff_wide_range_rescaled() -> None:
    arr = np.full((80, 60), -100.0, np.float32)
    arr[:, 30:] = 900.0
    out = np.asarray(open_image(encode(Image.fromarray(arr), "TIFF")).image)
    assert out[40, 5].tolist() == [0, 0, 0] and out[40, 50].tolist() == [255, 255, 255]


def test_16_bit_grey_with_a_transparent_value_goes_on_white() -> None:
    arr = np.full((80, 60), 20000, np.uint16)
    arr[:, 30:] = 0  # tRNS grey value 0: transparent
    dec = open_image(encode(Image.fromarray(arr), "PNG", transparency=0))
    out = np.asarray(dec.image)
    assert out[40, 50].tolist() == [255, 255, 255]  # not black
    assert out[40, 5].tolist() == [78] * 3  # 20000 / 65535 of full scale
    assert "transparent areas were placed on white" in dec.notes


def test_float_pixels_beyond_one_are_stretched_and_said() -> None:
    arr = np.zeros((80, 60), np.float32)
    arr[:, 30:] = 1.5  # linear HDR-like values: read as 0–255 they would be nearly black
    dec = open_image(encode(Image.fromarray(arr), "TIFF"))
    assert np.asarray(dec.image)[40, 50, 0] == 255
    assert dec.notes == ["floating-point pixels had their contrast stretched to 8 bits"]


def test_32_bit_grey_with_16_bit_values_is_scaled_not_stretched() -> None:
    arr = np.full((80, 60), 30000, np.int32)
    arr[:, 30:] = 40000
    dec = open_image(encode(Image.fromarray(arr, "I"), "TIFF"))
    out = np.asarray(dec.image)
    assert out[40, 5, 0] == 117 and out[40, 50, 0] == 156  # by bit depth, not 0 and 255
    assert dec.notes == ["32-bit greyscale with 16-bit values was scaled to 8 bits"]


@pytest.mark.parametrize(
    ("mode", "fmt", "extra"),
    [
        ("RGBA", "PNG", {}),
        ("P", "PNG", {"transparency": 0}),
        ("RGB", "PNG", {"transparency": (0, 0, 0)}),
        ("L", "WEBP", {}),
    ],
)
def test_big_non_jpeg_is_reduced_right_after_decoding(mode: str, fmt: str, extra: dict) -> None:
    img = two_tone((3000, 4000)).convert(mode) if mode != "RGBA" else two_tone((3000, 4000)).convert("RGBA")
    if extra.get("transparency") is not None:  # a transparent band along the top
        img.paste(0 if mode == "P" else (0, 0, 0), (0, 0, 3000, 400))
    dec = open_image(encode(img, fmt, **extra))
    assert dec.pixel_size == (3000, 4000)
    assert dec.image.size == (250, 334)  # one whole-factor reduction to about 4× the canvas (240×320)
    if extra:
        assert "transparent areas were placed on white" in dec.notes
        assert np.asarray(dec.image)[10, 125].tolist() == [255, 255, 255]  # the key colour, on white
        assert min(np.asarray(dec.image)[300, 10]) < 255  # the photo kept its colour


def test_big_png_turned_by_exif_after_reduction() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    dec = open_image(encode(two_tone((4000, 3000)), "PNG", exif=exif.tobytes()))
    assert dec.pixel_size == (3000, 4000) and dec.image.size == (250, 334)
    assert close(dec.image.getpixel((125, 5)), RED) and close(dec.image.getpixel((125, 325)), BLUE)


def test_jpeg_limit_counts_the_reduced_decode() -> None:
    big = two_tone((2000, 1500))  # 3 MP, drafted to 1/8: about 0.05 MP decoded
    assert open_image(encode(big, "JPEG", quality=80), max_pixels=1_000_000).pixel_size == (2000, 1500)
    with pytest.raises(ImageInputError, match=r"too large \(2000×1500 px\).*progressive JPEG"):  # decoded whole
        open_image(encode(big, "JPEG", quality=80, progressive=True), max_pixels=1_000_000)
    with pytest.raises(ImageInputError, match=r"too large \(2000×1500 px\)"):
        open_image(encode(big, "PNG"), max_pixels=1_000_000)  # a PNG is decoded whole


def test_thin_jpeg_is_judged_on_its_own_size() -> None:
    with pytest.raises(ImageInputError, match=r"too elongated \(4000×30 px\)"):
        open_image(encode(two_tone((4000, 30)), "JPEG", quality=80))


def test_exif_orientation_applied() -> None:
    stored = two_tone((80, 40))  # stored landscape: left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    dec = open_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert dec.image.size == (40, 80)
    assert close(dec.image.getpixel((20, 10)), RED)  # the left edge went to the top
    assert close(dec.image.getpixel((20, 70)), BLUE)
    assert dec.pixel_size == (40, 80)


@pytest.mark.parametrize("stored", [(1920, 1080), (1000, 999)])  # the second decodes to a square
def test_pixel_size_is_the_files_even_when_decoded_smaller(stored: tuple[int, int]) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    dec = open_image(encode(two_tone(stored), "JPEG", quality=90, exif=exif.tobytes()))
    assert dec.image.size[0] < stored[1] and dec.pixel_size == stored[::-1]  # drafted, turned upright


def test_large_jpeg_draft_path_to_native() -> None:
    data = encode(two_tone((1500, 2000)), "JPEG", quality=90)
    native = load_native_rgb(data)
    assert native.size == NATIVE_SIZE and native.mode == "RGB"
    assert close(native.getpixel((10, 40)), RED, 25) and close(native.getpixel((50, 40)), BLUE, 25)


def test_phone_jpeg_with_an_embedded_preview_is_one_photo_decoded_reduced() -> None:
    stored = two_tone((1500, 2000))  # phones store a preview (or depth map) as a second MPO frame
    data = encode(stored, "MPO", quality=90, save_all=True, append_images=[stored.resize((150, 200))])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    dec = open_image(data)
    assert dec.notes == []  # not "animated"
    assert dec.image.size[0] < 1500 and dec.pixel_size == (1500, 2000)  # the JPEG draft path was taken
    assert close(dec.image.getpixel((10, 10)), RED, 25)


def test_draft_size_keeps_four_times_the_canvas_size() -> None:
    from core.images.preprocess import _draft_size

    assert _draft_size(600, 800) == (240, 320)  # fitted 60×80 → at least 240×320 decoded
    assert _draft_size(3000, 4000) == (240, 320)
    assert _draft_size(4000, 3000) == (240, 180)  # landscape: fitted 60×45
    assert _draft_size(100, 120) == (100, 120)  # small photos are never reduced


def test_reduced_jpeg_decode_stays_closer_to_a_full_decode_than_a_1_8_reduction(monkeypatch) -> None:
    from PIL import JpegImagePlugin

    import core.images.preprocess as P

    data = encode(garment_photo(60, 80).resize((600, 800), Image.Resampling.LANCZOS), "JPEG", quality=90)

    def native() -> np.ndarray:
        return np.asarray(load_native_rgb(data), dtype=float)

    reduced = native()
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", lambda self, mode, size: None)
    full = native()
    monkeypatch.undo()
    monkeypatch.setattr(P, "_draft_size", lambda w, h: (w // 8, h // 8))  # 75×100: barely above 60×80
    crude = native()
    assert np.abs(reduced - full).mean() < 0.5 * np.abs(crude - full).mean()


# ---------------------------------------------------------------- refused inputs
def _heic() -> bytes:
    """The start of a HEIC file, then nothing: a header no decoder can read."""
    return b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64


def _truncated_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)), "JPEG", quality=90)
    return data[: len(data) // 2]


BAD_INPUTS = {
    "empty": lambda: b"",
    "random": lambda: np.random.default_rng(1).bytes(4096),
    "text": lambda: b"<html><body>not an image</body></html>",
    "truncated_jpeg": _truncated_jpeg,
    "png_without_pixels": lambda: png_header_only(100, 100),
    "one_pixel": lambda: encode(Image.new("RGB", (1, 1), RED), "PNG"),
    "tiny": lambda: encode(Image.new("RGB", (5, 80), RED), "PNG"),
    "elongated": lambda: encode(Image.new("RGB", (800, 20), RED), "PNG"),
    "bomb_header": lambda: png_header_only(60000, 60000),
    "over_max_pixels_header": lambda: png_header_only(7000, 7000),
    "heic": _heic,
    "avif": lambda: b"\x00\x00\x00\x1cftypavif" + b"\x00" * 64,
    "ppm_not_allowed": lambda: encode(Image.new("RGB", NATIVE_SIZE, RED), "PPM"),
    "ico_not_allowed": lambda: encode(Image.new("RGB", (64, 64), RED), "ICO"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_inputs_raise_image_input_error(name: str) -> None:
    data = BAD_INPUTS[name]()
    with pytest.raises(ImageInputError) as exc:
        open_image(data)
    assert str(exc.value) and len(str(exc.value)) < 200


def test_small_max_pixels_refuses() -> None:
    data = encode(Image.new("RGB", NATIVE_SIZE, RED), "PNG")
    assert open_image(data).image.size == NATIVE_SIZE
    with pytest.raises(ImageInputError, match="too large"):
        open_image(data, max_pixels=1000)


def test_bomb_messages() -> None:
    with pytest.raises(ImageInputError, match="too large"):
        open_image(png_header_only(60000, 60000))
    with pytest.raises(ImageInputError, match="too large"):
        open_image(png_header_only(7000, 7000))


STORED = Path(__file__).parent / "data"  # small HEIC files (made once with pillow-heif's encoder)


def stored_or_encoded(fmt: str, name: str) -> bytes:
    """The two-tone 300×400 photo as a HEIC file from tests/data, or encoded as AVIF by Pillow."""
    import core.images.preprocess as P

    if fmt not in P.ALLOWED_FORMATS:
        pytest.skip(f"no {fmt} decoder in this installation")
    return (STORED / name).read_bytes() if fmt == "HEIF" else encode(two_tone((300, 400)), fmt, quality=90)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_iphone_heic_and_avif_photos_decode(fmt: str) -> None:
    data = stored_or_encoded(fmt, "two_tone_300x400.heic")
    assert data[4:8] == b"ftyp"
    dec = open_image(data)
    assert dec.source_format == fmt and dec.pixel_size == (300, 400) and dec.notes == []
    assert close(dec.image.getpixel((10, 200)), RED, 25) and close(dec.image.getpixel((290, 200)), BLUE, 25)
    assert load_native_rgb(data).size == NATIVE_SIZE


def test_turned_heic_is_turned_upright_once_like_a_jpeg() -> None:
    heic = open_image(stored_or_encoded("HEIF", "two_tone_300x400_turned.heic"))  # EXIF orientation 6 at encoding
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display", as phones write it
    jpeg = open_image(encode(two_tone((300, 400)), "JPEG", quality=90, exif=exif.tobytes()))
    assert heic.image.size == jpeg.image.size == heic.pixel_size == (400, 300)
    for xy in ((200, 10), (200, 290)):
        assert close(heic.image.getpixel(xy), jpeg.image.getpixel(xy), 25)


def test_heic_collection_decodes_its_primary_photo_and_checks_that_size() -> None:
    """The first image of this HEIC is a 400×400 blue square, its primary (the photo) a 60×80 red one."""
    data = stored_or_encoded("HEIF", "collection.heic")
    dec = open_image(data, max_pixels=60 * 80)  # the 400×400 first image would be over this limit
    assert dec.image.size == (60, 80) and dec.notes == []  # not an "animation" rewound to the wrong image
    assert close(dec.image.getpixel((30, 40)), RED, 25)


def test_heic_is_decoded_by_pi_heif_with_extras_off() -> None:
    import core.images.preprocess as P

    if "HEIF" not in P.ALLOWED_FORMATS:
        pytest.skip("no HEIF decoder in this installation")
    import pi_heif

    assert Image.OPEN["HEIF"][0].__module__.startswith("pi_heif")  # not the GPL pillow-heif's plugin
    assert not (pi_heif.options.THUMBNAILS or pi_heif.options.DEPTH_IMAGES or pi_heif.options.AUX_IMAGES)
    assert pi_heif.options.DISABLE_SECURITY_LIMITS is False


def test_avif_that_names_mif1_first_goes_to_the_avif_decoder() -> None:
    data = bytearray(stored_or_encoded("AVIF", ""))
    assert data[4:12] == b"ftypavif"
    data[8:12] = b"mif1"  # valid: avif stays among the compatible brands
    dec = open_image(bytes(data))
    assert dec.source_format == "AVIF" and close(dec.image.getpixel((10, 200)), RED, 25)


def test_a_decoder_runtime_error_is_a_friendly_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.images.preprocess as P

    def fails(*_args: object) -> None:
        raise RuntimeError("libheif: decoding failed")

    monkeypatch.setattr(P, "_shrink", fails)  # a step inside the decode
    with pytest.raises(ImageInputError, match="damaged or truncated"):
        open_image(encode(two_tone(), "PNG"))


@pytest.mark.parametrize(
    ("brands", "container"),
    [
        (b"heic" + b"\0\0\0\0" + b"mif1heic", "HEIF"),
        (b"mif1" + b"\0\0\0\0" + b"mif1avif", "AVIF"),  # an AVIF may name mif1 first
        (b"avif" + b"\0\0\0\0" + b"avifmif1", "AVIF"),
        (b"isom" + b"\0\0\0\0" + b"isommp41", None),  # an MP4 video is neither
    ],
)
def test_heif_and_avif_are_told_apart_by_all_their_brands(brands: bytes, container: str | None) -> None:
    from core.images.preprocess import _heif_brand

    box = struct.pack(">I", 8 + len(brands)) + b"ftyp" + brands
    assert _heif_brand(box + b"\0" * 32) == container


def test_damaged_heic_is_called_damaged() -> None:
    with pytest.raises(ImageInputError, match="damaged or truncated"):
        open_image(_heic())


def test_heic_without_a_decoder_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.images.preprocess as P

    monkeypatch.setattr(P, "ALLOWED_FORMATS", tuple(f for f in P.ALLOWED_FORMATS if f != "HEIF"))
    with pytest.raises(ImageInputError, match="pi-heif.*JPEG or PNG"):
        open_image(_heic())


def test_too_many_bytes() -> None:
    with pytest.raises(ImageInputError, match="larger than"):
        open_image(b"\xff" * (MAX_BYTES + 1))


def test_image_input_error_is_value_error() -> None:
    assert issubclass(ImageInputError, ValueError)


# ---------------------------------------------------------------- native canvas
def test_to_native_keeps_native_input() -> None:
    img = two_tone()
    assert to_native(img) is img


@pytest.mark.parametrize(("size", "pad_axis"), [((1200, 1200), "rows"), ((2000, 1000), "rows"), ((600, 1600), "cols")])
def test_large_product_photo_padded_white(size: tuple[int, int], pad_axis: str) -> None:
    w, h = size
    photo = Image.new("RGB", size, (30, 30, 30))  # the product fills the whole photo
    out = to_native(photo)
    assert out.size == NATIVE_SIZE and out.mode == "RGB"
    arr = np.asarray(out).astype(int)
    scale = min(60 / w, 80 / h)
    cw, ch = round(w * scale), round(h * scale)
    if pad_axis == "rows":
        pad = (80 - ch) // 2
        assert pad >= 10
        assert arr[: pad - 2].min() >= 245 and arr[ch + pad + 2 :].min() >= 245  # white bands
        assert arr[40, 5:55].max() <= 50  # the product in the middle
    else:
        pad = (60 - cw) // 2
        assert pad >= 8
        assert arr[:, : pad - 2].min() >= 245 and arr[:, cw + pad + 2 :].min() >= 245
        assert arr[10:70, 30].max() <= 50


def test_to_native_same_aspect_fills_canvas() -> None:
    out = to_native(two_tone((30, 40)))
    assert out.size == NATIVE_SIZE
    assert close(out.getpixel((2, 2)), RED, 25) and close(out.getpixel((57, 77)), BLUE, 25)


def test_pil_to_uint8_chw() -> None:
    arr = pil_to_uint8_chw(two_tone())
    assert arr.shape == (3, 80, 60) and arr.dtype == np.uint8
    assert arr[:, 40, 5].tolist() == list(RED) and arr[:, 40, 55].tolist() == list(BLUE)


@pytest.mark.parametrize(
    ("size", "noted"), [((600, 800), False), ((800, 800), False), ((1920, 1080), True), ((1200, 150), True)]
)
def test_a_photo_that_is_mostly_padding_gets_a_note(size: tuple[int, int], noted: bool) -> None:
    from core.images.upload import read_upload

    buf = io.BytesIO()
    Image.new("RGB", size, (90, 60, 40)).save(buf, "JPEG")
    photo = read_upload("p.jpg", buf.getvalue())
    assert photo.error is None and photo.native.shape == (80, 60, 3)
    padding = [n for n in photo.notes if "white padding" in n]
    assert bool(padding) is noted
    if noted:
        assert f"{size[0]}×{size[1]}" in padding[0]


def test_decoding_in_threads_leaves_the_warning_filters_alone() -> None:
    import threading
    import warnings

    before = list(warnings.filters)
    data = encode(two_tone(), "PNG")
    threads = [threading.Thread(target=lambda: [open_image(data) for _ in range(300)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert warnings.filters == before  # catch_warnings() blocks in threads used to leak an "error" filter
