"""What ``python -m core.score`` scores and how each file is read: the inputs (a folder, a ``styles.csv``-style
table or a list of paths) and :func:`decode_item`, the app's upload path for one file
(:func:`core.images.upload.read_upload`: decoding, framing normalisation, the native canvas).

Kept free of the models (no torchvision, Captum or scikit-learn): the local engine's decoding workers import
only this, so they start quickly and hold little memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.catalog import read_styles
from core.images.preprocess import MAX_BYTES, NATIVE_SIZE
from core.images.upload import read_upload

log = logging.getLogger(__name__)

# the file types the app's drop zone takes (pages/ui/dataset.py UPLOAD_TYPES): a folder's other files are
# not photos (a README, a styles.csv) and are counted, not scored
IMAGE_SUFFIXES = frozenset(
    f".{s}" for s in ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "heic", "heif", "avif")
)
BLANK = np.full((NATIVE_SIZE[1], NATIVE_SIZE[0], 3), 255, np.uint8)  # the slot of a file that failed


@dataclass(frozen=True)
class Item:
    """One image to score: its id (the table's id, else the path as found or listed) and its file."""

    id: str
    path: str


@dataclass
class Decoded:
    """One file read and decoded the app's way: its native canvas, or the reason it could not be read."""

    id: str
    path: str
    native: np.ndarray | None
    framing: str | None = None
    framing_note: str = ""
    notes: str = ""
    error: str | None = None


# ---- what to score
def list_inputs(source: Path) -> tuple[list[Item], int]:
    """The images ``source`` names, in order, each id once, and how many entries were left out (a folder's
    files that are not images, repeated ids). ``source`` is a folder (its image files, recursively), a
    ``styles.csv``-style table (``id`` column → ``images/<id>.jpg`` beside it) or a text file of paths
    (one a line; blank lines and ``#`` comments skipped; relative paths are relative to the list's folder).
    A listed file that is missing is still an item: its row says so."""
    source = Path(source)
    if source.is_dir():
        items, left_out = _folder_items(source)
    elif source.suffix.lower() == ".csv":
        items, left_out = _table_items(source), 0
    elif source.is_file():
        items, left_out = _list_items(source), 0
    else:
        raise FileNotFoundError(f"{source} is neither a folder, a .csv table nor a list of paths")
    seen: set[str] = set()
    unique = []
    for it in items:
        if it.id not in seen:
            seen.add(it.id)
            unique.append(it)
    if len(unique) < len(items):
        log.warning("%s names %d ids more than once; each is scored once", source, len(items) - len(unique))
    return unique, left_out + len(items) - len(unique)


def _folder_items(folder: Path) -> tuple[list[Item], int]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder)))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if len(images) < len(files):
        log.info("%s: %d files that are not images (by name) are not scored", folder, len(files) - len(images))
    return [Item(p.relative_to(folder).as_posix(), str(p.resolve())) for p in images], len(files) - len(images)


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _table_items(csv_path: Path) -> list[Item]:
    rows, _ = read_styles(csv_path)
    if rows and "id" not in rows[0]:
        raise KeyError(f"{csv_path} has no 'id' column")
    images = csv_path.resolve().parent / "images"
    return [Item(r["id"].strip(), str(images / f"{r['id'].strip()}.jpg")) for r in rows if r.get("id", "").strip()]


def _list_items(list_path: Path) -> list[Item]:
    base = list_path.resolve().parent
    items = []
    for line in list_path.read_text(encoding="utf-8", errors="replace").splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            items.append(Item(text, str((base / text).resolve() if not Path(text).is_absolute() else Path(text))))
    return items


# ---- reading one file: the app's upload path
def decode_item(item: Item) -> Decoded:
    """``item``'s file read and decoded as an upload is (decoding, framing, the native canvas); a file that is
    missing, too large or not an image gives its reason, never an exception."""
    path = Path(item.path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            return Decoded(item.id, item.path, None, error=f"The file is larger than {MAX_BYTES // 2**20} MB.")
        data = path.read_bytes()
    except FileNotFoundError:
        return Decoded(item.id, item.path, None, error="No such file.")
    except OSError as exc:
        return Decoded(item.id, item.path, None, error=f"The file could not be read ({exc.strerror or exc}).")
    photo = read_upload(path.name, data)
    if photo.error is not None:
        return Decoded(item.id, item.path, None, error=photo.error)
    return Decoded(item.id, item.path, photo.native, photo.framing, photo.framing_note, "; ".join(photo.notes), None)
