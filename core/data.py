"""Dataset loading in the Kaggle *Fashion Product Images* layout, duplicate-aware split.

Layout: DIR/styles.csv and DIR/images/<id>.jpg. Run

    python -m core.data --data DIR

to print the class counts per split, the skipped rows by reason, and how many validation
and test images show a product that training has (same name up to colour words).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL
from PIL import features

from core.framing import FRAMING_VERSION
from core.preprocess import NATIVE_SIZE, ImageInputError, load_native_rgb

log = logging.getLogger(__name__)

DEFAULT_CLASSES: tuple[str, ...] = ("Casual", "Formal", "Smart Casual")
DEFAULT_LABEL_COLUMN = "usage"
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_FRACTIONS: tuple[float, float, float] = (0.70, 0.15, 0.15)
DEFAULT_SPLIT_FILE = Path(__file__).resolve().parent.parent / "weights" / "split.json"
DATA_ENV_VAR = "DRESSCODE_DATA"
_N_FIELDS = 10  # columns of styles.csv; the last one (productDisplayName) may hold commas


@dataclass
class Catalog:
    """Usable rows of ``styles.csv``: one entry per product with an image and a known class."""

    root: Path
    classes: tuple[str, ...]
    label_column: str
    ids: list[int]
    labels: list[int]  # index into ``classes``
    rows: dict[int, dict[str, str]]  # every usable row's fields, for auxiliary labels
    skipped: dict[str, int] = field(default_factory=dict)
    recovered_rows: int = 0

    def image_path(self, product_id: int) -> Path:
        """Path of one product's image."""
        return self.root / "images" / f"{product_id}.jpg"

    def counts(self, ids: Sequence[int] | None = None) -> dict[str, int]:
        """Class counts over ``ids`` (default: all usable rows)."""
        label_of = dict(zip(self.ids, self.labels))
        chosen = self.ids if ids is None else ids
        c = Counter(label_of[i] for i in chosen)
        return {name: c.get(k, 0) for k, name in enumerate(self.classes)}

    def label_of(self) -> dict[int, int]:
        """Mapping id → class index."""
        return dict(zip(self.ids, self.labels))


def find_default_data_dir() -> Path | None:
    """The dataset folder from ``$DRESSCODE_DATA`` or ``../shared/data/fashion-small``, if present."""
    candidates = []
    if os.environ.get(DATA_ENV_VAR):
        candidates.append(Path(os.environ[DATA_ENV_VAR]))
    here = Path(__file__).resolve().parent.parent
    candidates.append(here.parent / "shared" / "data" / "fashion-small")
    for c in candidates:
        if (c / "styles.csv").is_file() and (c / "images").is_dir():
            return c
    return None


def read_styles(csv_path: Path) -> tuple[list[dict[str, str]], int]:
    """Read ``styles.csv``; rows with commas in the last column are joined back, not dropped.

    Returns the rows (dicts by header name) and how many rows were recovered.
    """
    rows: list[dict[str, str]] = []
    recovered = 0
    with open(csv_path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader)]
        n = len(header)
        for fields in reader:
            if not fields:
                continue
            if len(fields) > n:
                fields = fields[: n - 1] + [",".join(fields[n - 1 :])]
                recovered += 1
            elif len(fields) < n:
                fields = fields + [""] * (n - len(fields))
            rows.append(dict(zip(header, fields)))
    return rows, recovered


def load_styles(
    root: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    label_column: str = DEFAULT_LABEL_COLUMN,
) -> Catalog:
    """Load the usable rows: label in ``classes`` and an image file present.

    Skipped rows are counted by reason: ``empty_label``, ``other_label``, ``no_image``,
    ``bad_id``.
    """
    root = Path(root)
    csv_path = root / "styles.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"no styles.csv in {root} (expected the Kaggle layout)")
    rows, recovered = read_styles(csv_path)
    if rows and label_column not in rows[0]:
        raise KeyError(f"column {label_column!r} not in styles.csv (have {sorted(rows[0])})")
    class_index = {c: k for k, c in enumerate(classes)}
    existing = {p.name for p in (root / "images").iterdir()} if (root / "images").is_dir() else set()
    skipped: Counter[str] = Counter()
    ids: list[int] = []
    labels: list[int] = []
    kept: dict[int, dict[str, str]] = {}
    for row in rows:
        raw_id = row.get("id", "").strip()
        label = row.get(label_column, "").strip()
        if not raw_id.isdigit():
            skipped["bad_id"] += 1
            continue
        if label in ("", "NA", "nan"):
            skipped["empty_label"] += 1
            continue
        if label not in class_index:
            skipped["other_label"] += 1
            continue
        if f"{int(raw_id)}.jpg" not in existing:
            skipped["no_image"] += 1
            continue
        pid = int(raw_id)
        if pid in kept:
            skipped["duplicate_id"] += 1
            continue
        ids.append(pid)
        labels.append(class_index[label])
        kept[pid] = row
    log.info("loaded %d usable rows from %s; skipped %s", len(ids), csv_path, dict(skipped))
    return Catalog(root, tuple(classes), label_column, ids, labels, kept, dict(skipped), recovered)


def _file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def duplicate_groups(catalog: Catalog) -> dict[int, str]:
    """Map each id to the sha1 of its image bytes; byte-identical images share a key."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        digests = list(pool.map(_file_digest, (catalog.image_path(i) for i in catalog.ids)))
    return dict(zip(catalog.ids, digests))


# words that name a colour in product names; the ``baseColour`` column's words are added
_COLOUR_WORDS = frozenset(
    "black white grey gray red blue green yellow orange pink purple brown beige cream navy maroon silver "
    "gold olive teal khaki charcoal multi off light dark".split()
)


def product_keys(catalog: Catalog) -> dict[int, str]:
    """Map each id to its product: the display name in lower case without colour words.

    Colour variants of one product ("Highlander Men Red Striped Shirt", "… White Striped
    Shirt") share a key. Colour words are the ``baseColour`` column's plus common ones
    (and "light", "dark", "off", "multi"). Rows without a name get a key of their own.
    """
    words = set(_COLOUR_WORDS)
    for row in catalog.rows.values():
        words.update(row.get("baseColour", "").lower().split())
    keys = {}
    for pid in catalog.ids:
        tokens = re.findall(r"[a-z0-9]+", catalog.rows[pid].get("productDisplayName", "").lower())
        kept = [t for t in tokens if t not in words]
        keys[pid] = " ".join(kept) if kept else f"#{pid}"
    return keys


def products_in_train(
    catalog: Catalog, train_ids: Sequence[int], ids: Sequence[int], keys: dict[int, str] | None = None
) -> set[int]:
    """The ``ids`` whose product (see :func:`product_keys`) has a same-class image among ``train_ids``."""
    keys = product_keys(catalog) if keys is None else keys
    label_of = catalog.label_of()
    seen = {(keys[i], label_of[i]) for i in train_ids}
    return {i for i in ids if (keys[i], label_of[i]) in seen}


def twins_in_train(
    catalog: Catalog, split: dict[str, list[int]], keys: dict[int, str] | None = None
) -> dict[str, dict[str, tuple[int, int]]]:
    """Per evaluation split and class: (images whose product has a same-class training image, images).

    A high share means that split's score for that class partly measures recognising
    products seen in training rather than recognising the class on new products.
    """
    keys = product_keys(catalog) if keys is None else keys
    label_of = catalog.label_of()
    known = products_in_train(catalog, split["train"], [i for s in SPLITS[1:] for i in split[s]], keys)
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for s in SPLITS[1:]:
        out[s] = {}
        for k, name in enumerate(catalog.classes):
            members = [i for i in split[s] if label_of[i] == k]
            out[s][name] = (sum(i in known for i in members), len(members))
    return out


def val_twins_in_train(
    catalog: Catalog, split: dict[str, list[int]], classes: Sequence[str], keys: dict[int, str] | None = None
) -> list[int]:
    """Training ids of ``classes`` whose product also appears, with the same class, in validation.

    Leaving them out of training makes validation score those classes on unseen products.
    """
    unknown = set(classes) - set(catalog.classes)
    if unknown:
        raise ValueError(f"unknown classes {sorted(unknown)}; have {list(catalog.classes)}")
    keys = product_keys(catalog) if keys is None else keys
    label_of = catalog.label_of()
    chosen = {catalog.classes.index(c) for c in classes}
    in_val = {(keys[i], label_of[i]) for i in split["val"] if label_of[i] in chosen}
    return sorted(i for i in split["train"] if (keys[i], label_of[i]) in in_val)


def make_split(
    catalog: Catalog,
    seed: int = 42,
    fractions: Sequence[float] = SPLIT_FRACTIONS,
    groups: dict[int, str] | None = None,
) -> dict[str, list[int]]:
    """Stratified train/val/test split that keeps byte-identical images together.

    Groups of identical images are the unit: each group goes whole to one split. Groups
    are stratified by their majority label, shuffled with ``seed``, and filled into the
    splits class by class so each split gets its fraction of every class's images.
    """
    if groups is None:
        groups = duplicate_groups(catalog)
    members: dict[str, list[int]] = defaultdict(list)
    for pid in catalog.ids:
        members[groups[pid]].append(pid)
    label_of = catalog.label_of()
    by_class: dict[int, list[str]] = defaultdict(list)
    for key in sorted(members):
        majority = Counter(label_of[i] for i in members[key]).most_common(1)[0][0]
        by_class[majority].append(key)
    rng = np.random.default_rng(seed)
    split: dict[str, list[int]] = {s: [] for s in SPLITS}
    cum = np.cumsum(fractions)
    for cls in sorted(by_class):
        keys = by_class[cls]
        rng.shuffle(keys)
        total = sum(len(members[k]) for k in keys)
        taken = 0
        for key in keys:
            # assign by the position of the group's midpoint in the class's image count
            mid = (taken + len(members[key]) / 2) / total
            which = int(np.searchsorted(cum, mid, side="right"))
            split[SPLITS[min(which, len(SPLITS) - 1)]].extend(members[key])
            taken += len(members[key])
    return {s: sorted(v) for s, v in split.items()}


def split_fingerprint(split: dict[str, list[int]]) -> str:
    """A short sha256 of the id lists, recorded in model cards."""
    payload = json.dumps({s: sorted(int(i) for i in split[s]) for s in SPLITS}, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def save_split(split: dict[str, list[int]], path: Path, meta: dict | None = None) -> None:
    """Write the split as lists of ids per split (plus metadata and fingerprint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"fingerprint": split_fingerprint(split), "meta": meta or {}}
    doc.update({s: split[s] for s in SPLITS})
    path.write_text(json.dumps(doc, separators=(",", ":")))


def load_split(path: Path) -> dict[str, list[int]]:
    """Read a split written by :func:`save_split`."""
    doc = json.loads(Path(path).read_text())
    return {s: [int(i) for i in doc[s]] for s in SPLITS}


def find_split(
    fingerprints: Iterable[str], candidates: Iterable[Path], ids: Iterable[int] | None = None
) -> dict[str, list[int]] | None:
    """The split saved in the first existing candidate file whose id lists have one of
    ``fingerprints``, whole or restricted to ``ids`` (a model card fingerprints the split as
    restricted to its data copy); None when no candidate has."""
    wanted = set(fingerprints)
    have = None if ids is None else set(ids)
    for path in dict.fromkeys(Path(c) for c in candidates):
        if not path.is_file():
            continue
        saved = load_split(path)
        found = {split_fingerprint(saved)}
        if have is not None:
            found.add(split_fingerprint({s: [i for i in saved[s] if i in have] for s in SPLITS}))
        if wanted & found:
            return saved
    return None


def get_or_make_split(catalog: Catalog, split_file: Path = DEFAULT_SPLIT_FILE, seed: int = 42) -> dict[str, list[int]]:
    """The saved split restricted to this catalog's ids; made and saved if the file is absent.

    Ids of the saved split that this copy of the data lacks are dropped; usable ids that the
    saved split does not know are left out (logged), so that no image leaks between splits.
    """
    split_file = Path(split_file)
    if split_file.is_file():
        meta = json.loads(split_file.read_text()).get("meta", {})
        if meta.get("label_column", catalog.label_column) != catalog.label_column or list(
            meta.get("classes", catalog.classes)
        ) != list(catalog.classes):
            log.warning(
                "%s was made for %s %s; making a fresh split for %s %s (pass --split-file to save one)",
                split_file,
                meta.get("label_column"),
                meta.get("classes"),
                catalog.label_column,
                list(catalog.classes),
            )
            return make_split(catalog, seed=seed)
        saved = load_split(split_file)
        have = set(catalog.ids)
        split = {s: [i for i in saved[s] if i in have] for s in SPLITS}
        unknown = have - set().union(*map(set, saved.values()))
        if unknown:
            log.warning("%d usable ids are not in %s and are left out", len(unknown), split_file)
        return split
    split = make_split(catalog, seed=seed)
    meta = {
        "seed": seed,
        "fractions": list(SPLIT_FRACTIONS),
        "classes": list(catalog.classes),
        "label_column": catalog.label_column,
        "grouping": "sha1 of image bytes; a group of identical images stays in one split",
    }
    save_split(split, split_file, meta)
    log.info("wrote new split to %s", split_file)
    return split


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dresscode"


# bump when decoding or preprocessing changes what an image turns into (4: MPO reduced decode, profiles to sRGB)
CACHE_VERSION = 5  # 5: framing normalisation (core.framing)


def _files_state(catalog: Catalog, ids: list[int]) -> list[tuple[int, int]]:
    """(size, mtime in ns) of every image file, so that a replaced file invalidates the cache."""
    out = []
    for pid in ids:
        try:
            st = catalog.image_path(pid).stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((-1, -1))
    return out


def decoder_versions() -> list[str | None]:
    """Pillow's, libjpeg's and LittleCMS's versions: what decodes a dataset image (None: not built in)."""
    return [PIL.__version__, features.version("jpg"), features.version("littlecms2")]


def _cache_key(catalog: Catalog, ids: list[int]) -> str:
    """The decoded-image cache's key: folder, ids, every file's size and mtime, the canvas, the
    cache version, and the decoders' versions (another libjpeg can decode other pixels)."""
    parts = [
        str(catalog.root.resolve()),
        ids,
        _files_state(catalog, ids),
        NATIVE_SIZE,
        CACHE_VERSION,
        FRAMING_VERSION,
        decoder_versions(),
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def load_native_images(
    catalog: Catalog, ids: Sequence[int], use_cache: bool = True, unreadable: list[int] | None = None
) -> np.ndarray:
    """Decode images to the native canvas: uint8 array ``N×H×W×3`` (80×60 for this dataset).

    Every image goes through :func:`core.preprocess.load_native_rgb`, the same function the
    app uses for uploads. A file that cannot be read keeps its slot as a white canvas, with a
    warning, and its id is appended to ``unreadable`` when a list is given. A decoded copy is
    cached under ``~/.cache/dresscode``, keyed by the folder, the ids and every file's size and
    modification time; a batch with unreadable files is not cached.
    """
    ids = [int(i) for i in ids]
    cache = _cache_dir() / f"images-{_cache_key(catalog, ids)}.npy"
    if use_cache and cache.is_file():
        arr = np.load(cache, mmap_mode=None)
        if arr.shape[0] == len(ids):
            return arr
    failed: list[int] = []

    def decode(pid: int) -> np.ndarray:
        try:
            return np.asarray(load_native_rgb(catalog.image_path(pid).read_bytes()))
        except (ImageInputError, OSError) as exc:  # a corrupt or vanished dataset file
            log.warning("image %s unreadable (%s); using a blank canvas", pid, exc)
            failed.append(pid)
            return np.full((NATIVE_SIZE[1], NATIVE_SIZE[0], 3), 255, np.uint8)

    with ThreadPoolExecutor(max_workers=4) as pool:
        arr = (
            np.stack(list(pool.map(decode, ids))) if ids else np.zeros((0, NATIVE_SIZE[1], NATIVE_SIZE[0], 3), np.uint8)
        )
    if unreadable is not None:
        unreadable.extend(sorted(failed))
    if use_cache and len(ids) > 64 and not failed:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp.npy")  # writers never share one
            np.save(tmp, arr)
            tmp.replace(cache)
        except OSError as exc:
            log.warning("could not write image cache %s: %s", cache, exc)
    return arr


def describe(catalog: Catalog, split: dict[str, list[int]]) -> str:
    """A plain-text report: class counts per split, skipped rows by reason, and how many
    validation and test images show a product that training has (same class)."""
    lines = [f"data: {catalog.root}", f"label column: {catalog.label_column}"]
    lines.append(f"rows recovered (commas in the last column): {catalog.recovered_rows}")
    width = max(len(c) for c in catalog.classes) + 2
    lines.append("class".ljust(width) + "".join(s.rjust(8) for s in (*SPLITS, "total")))
    for name in catalog.classes:
        per = [catalog.counts(split[s])[name] for s in SPLITS]
        lines.append(name.ljust(width) + "".join(f"{n:8d}" for n in (*per, sum(per))))
    tot = [len(split[s]) for s in SPLITS]
    lines.append("total".ljust(width) + "".join(f"{n:8d}" for n in (*tot, sum(tot))))
    lines.append(f"usable rows with an image: {len(catalog.ids)}")
    lines.append("skipped rows by reason:")
    for reason, n in sorted(catalog.skipped.items()):
        lines.append(f"  {reason}: {n}")
    lines.append(f"split fingerprint: {split_fingerprint(split)}")
    lines.append("images whose product (name without colour words) is in train with the same class:")
    twins = twins_in_train(catalog, split)
    lines.append("class".ljust(width) + "".join(s.rjust(14) for s in twins))
    for name in catalog.classes:
        cells = (f"{twins[s][name][0]} of {twins[s][name][1]}" for s in twins)
        lines.append(name.ljust(width) + "".join(c.rjust(14) for c in cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print class counts per split, skipped rows and shared products."""
    p = argparse.ArgumentParser(
        prog="python -m core.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=None, help="dataset folder (Kaggle layout; default: auto-detect)")
    p.add_argument("--label-column", default=DEFAULT_LABEL_COLUMN, help="styles.csv column to count (usage)")
    p.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES), help="class names, in order")
    p.add_argument(
        "--split-file", type=Path, default=DEFAULT_SPLIT_FILE, help="saved split; made there if absent (weights/)"
    )
    p.add_argument("--seed", type=int, default=42, help="seed of a split made here (42)")
    p.add_argument("--new-split", action="store_true", help="make a fresh split instead of the saved one")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = args.data or find_default_data_dir()
    if data is None:
        p.error(f"no --data given and no dataset found (set ${DATA_ENV_VAR})")
    catalog = load_styles(data, args.classes, args.label_column)
    if args.new_split:
        split = make_split(catalog, seed=args.seed)
    else:
        split = get_or_make_split(catalog, args.split_file, args.seed)
    print(describe(catalog, split))  # noqa: T201 - CLI output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
