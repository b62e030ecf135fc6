"""A tiny generated dataset in the Kaggle *Fashion Product Images (small)* layout.

:func:`make_fixture_dataset` writes ``styles.csv`` and ``images/<id>.jpg`` (60×80 JPEGs whose
content depends on the class, so a model can learn) with the real file's quirks:

- rows whose ``productDisplayName`` holds unquoted commas (extra fields to be re-joined),
  plus one properly quoted comma row (not a recovery);
- a row whose image is missing;
- byte-identical images shared by several ids (one group within a class, one pair with
  conflicting labels);
- a row with an unknown usage (``Sports``), one with an empty usage and one with ``NA``;
- an image a few pixels smaller than 60×80;
- a row with a non-numeric id.

The module-level constants describe what a correct loader must find; they are written by
hand from the construction below, not computed by the code under test.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
CLASSES: tuple[str, ...] = ("Casual", "Formal", "Smart Casual")
DEFAULT_N_PER_CLASS = 36
FIRST_ID = 10001
SIZE = (60, 80)  # width, height
SMALL_SIZE = (57, 77)

# ids of the special rows (all among the usable rows unless said otherwise)
RECOVERED = {  # id -> exact productDisplayName written with unquoted commas
    FIRST_ID + 1: "Puma Men, Black Running Shoes",
    1000 + FIRST_ID + 2: "Arrow Men Formal Shirt, Blue, Slim Fit",
}
QUOTED_ID = FIRST_ID + 3  # commas inside a quoted field: csv handles it, not a "recovery"
QUOTED_NAME = "Nike Women, Quoted Tee"
DUPLICATE_GROUP = (FIRST_ID + 4, FIRST_ID + 5, FIRST_ID + 6)  # Casual, one image shared by three ids
CONFLICT_PAIR = (FIRST_ID + 7, 1000 + FIRST_ID + 7)  # Casual + Formal sharing one image
SMALL_ID = 1000 + FIRST_ID + 9  # a Formal image of 57×77 px
FOOTWEAR_EVERY = 5  # usable rows with index % 5 == 0 are masterCategory "Footwear"

# rows that a loader of the three usage classes must skip
SPORTS_IDS = (9001, 9002)  # usage "Sports", images present
EMPTY_USAGE_ID = 9003  # usage "", image present
NA_USAGE_ID = 9004  # usage "NA", image present
MISSING_IMAGE_ID = 9005  # usage "Casual", no image file
BAD_ID = "x9006"  # non-numeric id
EXPECTED_SKIPPED = {"other_label": 2, "empty_label": 2, "no_image": 1, "bad_id": 1}
EXPECTED_RECOVERED = 2

# class look: (RGB colour, shape)
_LOOKS = {
    "Casual": ((205, 40, 40), "ellipse"),
    "Formal": ((35, 35, 50), "rectangle"),
    "Smart Casual": ((40, 90, 215), "triangle"),
    "Sports": ((40, 180, 60), "ellipse"),
}


def class_id(cls: int, k: int) -> int:
    """The product id of the ``k``-th usable row of class index ``cls``."""
    return FIRST_ID + 1000 * cls + k


def expected_counts(n_per_class: int = DEFAULT_N_PER_CLASS) -> dict[str, int]:
    """Usable images per usage class."""
    return {c: n_per_class for c in CLASSES}


def expected_master_counts(n_per_class: int = DEFAULT_N_PER_CLASS) -> dict[str, int]:
    """Usable images per ``masterCategory`` (Apparel/Footwear), whatever the usage."""
    footwear = len(CLASSES) * len(range(0, n_per_class, FOOTWEAR_EVERY))
    # the Sports, empty- and NA-usage rows have images and are Apparel
    apparel = len(CLASSES) * n_per_class - footwear + len(SPORTS_IDS) + 2
    return {"Apparel": apparel, "Footwear": footwear}


def render(label: str, rng: np.random.Generator, size: tuple[int, int] = SIZE) -> Image.Image:
    """A product-like picture: a class-coloured shape on white, jittered, with mild noise."""
    w, h = size
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    colour, shape = _LOOKS[label]
    colour = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in colour)
    dx, dy = rng.integers(-5, 6, size=2)
    x0, y0, x1, y1 = 12 + dx, 14 + dy, w - 12 + dx, h - 12 + dy
    if shape == "ellipse":
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif shape == "rectangle":
        draw.rectangle((x0 + 4, y0 - 6, x1 - 4, y1 + 4), fill=colour)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=colour)
    arr = np.asarray(img, dtype=np.int16) + rng.normal(0, 6, (h, w, 3)).astype(np.int16)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def jpeg_bytes(img: Image.Image, quality: int = 75) -> bytes:
    """Encode as JPEG at the dataset's quality."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _row(pid: int | str, usage: str, name: str, master: str = "Apparel") -> list[str]:
    return [str(pid), "Men", master, "Topwear", "Tshirts", "Red", "Summer", "2012", usage, name]


def make_fixture_dataset(root: Path, n_per_class: int = DEFAULT_N_PER_CLASS, seed: int = 0) -> Path:
    """Write the tiny dataset under ``root`` (created) and return ``root``.

    Every class gets ``n_per_class`` usable rows; ``n_per_class`` must be at least 10 so the
    special rows exist. Output is deterministic for a given ``seed``.
    """
    if n_per_class < 10:
        raise ValueError("n_per_class must be at least 10")
    root = Path(root)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines: list[str] = [HEADER]
    blobs: dict[int, bytes] = {}

    def plain(row: list[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(row)
        return buf.getvalue()

    for cls, label in enumerate(CLASSES):
        for k in range(n_per_class):
            pid = class_id(cls, k)
            master = "Footwear" if k % FOOTWEAR_EVERY == 0 else "Apparel"
            size = SMALL_SIZE if pid == SMALL_ID else SIZE
            blobs[pid] = jpeg_bytes(render(label, rng, size))
            if pid in RECOVERED:
                # written raw: the commas split the last column into extra fields
                lines.append(",".join(_row(pid, label, RECOVERED[pid], master)))
            elif pid == QUOTED_ID:
                lines.append(plain(_row(pid, label, QUOTED_NAME, master)))
            else:
                lines.append(plain(_row(pid, label, f"{label} product {pid}", master)))
    for pid in DUPLICATE_GROUP[1:]:
        blobs[pid] = blobs[DUPLICATE_GROUP[0]]
    blobs[CONFLICT_PAIR[1]] = blobs[CONFLICT_PAIR[0]]

    for pid in SPORTS_IDS:
        blobs[pid] = jpeg_bytes(render("Sports", rng))
        lines.append(plain(_row(pid, "Sports", f"Sports product {pid}")))
    blobs[EMPTY_USAGE_ID] = jpeg_bytes(render("Casual", rng))
    lines.append(plain(_row(EMPTY_USAGE_ID, "", "No usage product")))
    blobs[NA_USAGE_ID] = jpeg_bytes(render("Formal", rng))
    lines.append(plain(_row(NA_USAGE_ID, "NA", "NA usage product")))
    lines.append(plain(_row(MISSING_IMAGE_ID, "Casual", "Product without an image")))
    lines.append(plain(_row(BAD_ID, "Casual", "Product with a broken id")))

    (root / "styles.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for pid, data in blobs.items():
        (images / f"{pid}.jpg").write_bytes(data)
    return root
