"""Regenerate the small HEIC files in this folder (needs the dev-only encoder pillow-heif).

    python tests/data/make_heic.py

The app decodes HEIC with pi-heif, which cannot encode; these files let the tests run without an
encoder. ``collection.heic`` holds two images: a large blue one first and the small red primary
(the photo), like a HEIC collection whose first image is not the one to show.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pillow_heif
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]  # tests/ and the project root
from image_cases import garment_photo, two_tone  # noqa: E402


def main() -> None:
    """Write every fixture."""
    pillow_heif.from_pillow(two_tone((300, 400))).save(HERE / "two_tone_300x400.heic", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": pillow-heif's Pillow plugin stores it as a rotation
    pillow_heif.register_heif_opener()  # in this script only: the app and the tests decode with pi-heif
    two_tone((300, 400)).save(HERE / "two_tone_300x400_turned.heic", format="HEIF", quality=90, exif=exif.tobytes())
    pillow_heif.from_pillow(garment_photo()).save(HERE / "garment.heic", quality=90)
    collection = pillow_heif.from_pillow(Image.new("RGB", (400, 400), (20, 20, 220)))
    collection.add_from_pillow(Image.new("RGB", (60, 80), (220, 20, 20)))
    collection.save(HERE / "collection.heic", quality=90, primary_index=1)


if __name__ == "__main__":
    main()
